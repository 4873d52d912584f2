"""The ITU-T G.107 (06/2015) E-model: conversational voice quality of a narrowband (3.1 kHz) call.

Pure computations, no I/O (``main`` is the CLI of ``engine qoe voip`` and only prints). The transmission
rating factor is

    R = Ro - Is - Id - Ie,eff + A                                                    (G.107 eq. 7-1)

with every term computed from the G.107 formulas (§7.2 to §7.6), not from shortcuts: with all the G.107
§7.7 default values R = 93.21 (the standard quotes 93.2). ``e_model`` takes every G.107 input
(``G107Params``); ``voip_quality`` is the network-facing front end: one-way delay, jitter, loss, codec.

Where each constant comes from, and the disagreements between the sources, is in ``docs/qoe-voip.md``.

Assumptions of ``voip_quality`` (also in the docs):

* ``delay_ms`` is the one-way network delay. The mouth-to-ear delay is that plus the de-jitter buffer:
  Ta = delay_ms + B. The talker-echo path delay T defaults to Ta and the listener-echo round trip Tr to
  2·Ta (symmetric path); both can be given separately.
* Jitter: ``jitter_ms`` J is the RFC 3550 interarrival jitter, i.e. the mean absolute difference of the
  transit times of consecutive packets. Transit times are modelled as independent Gaussian with standard
  deviation σ; then E|D| = 2σ/√π, so σ = J·√π/2. A fixed de-jitter buffer of B = k·J ms (k =
  ``jitter_buffer_factor``, default 2) plays every packet out B ms after the mean transit time: it adds B
  to the one-way delay, and packets later than that are discarded as lost:
  q = P(X > B) = ½·erfc(k·√(2/π)) (1.20 % for k = 2, 0.036 % for k = 3), independent of J.
  Late loss and network loss combine as independent events: Ppl = p + (1 - p)·q.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = [
    "EModelResult",
    "G107Params",
    "G107Terms",
    "codecs",
    "e_model",
    "late_loss_fraction",
    "mos_to_r",
    "r_to_mos",
    "voip_quality",
]

# Codec equipment impairment Ie and packet-loss robustness Bpl, ITU-T G.113 (11/2007) Appendix I
# (Table I.3 for the pairs with a measured Bpl). Only codecs with both an Ie and a Bpl the sources agree
# on: see docs/qoe-voip.md for what was left out and why.
_CODECS: dict[str, tuple[float, float]] = {
    "G.711": (0.0, 25.1),  # with the G.711 Appendix I packet-loss concealment
    "G.711/no-PLC": (0.0, 4.3),  # no concealment, random loss
    "G.729": (11.0, 19.0),  # 8 kbit/s; some planning guides give Ie = 10 for G.729 without Annex A
    "G.729A": (11.0, 19.0),  # 8 kbit/s, Annex A (+VAD): the codec G.113 Table I.3 measured
    "G.723.1": (15.0, 16.1),  # 6.3 kbit/s MP-MLQ (+VAD), 30 ms packets
}
_PLC_VARIANTS = {"G.711": "G.711/no-PLC"}

_MOS_FLOOR_R = (160.0 - math.sqrt(160.0**2 - 4000.0)) / 2.0  # 6.5153: the cubic of eq. B-4 is < 1 below


@dataclass(frozen=True)
class G107Params:
    """Every input of the E-model, with the G.107 (06/2015) Table 3 default values.

    Loudness ratings and losses in dB, noise in dBm0p / dBmp / dB(A), delays in ms, Ppl in per cent.
    """

    slr: float = 8.0  # send loudness rating
    rlr: float = 2.0  # receive loudness rating
    stmr: float = 15.0  # sidetone masking rating
    lstr: float = 18.0  # listener sidetone rating (= STMR + Dr)
    ds: float = 3.0  # D-value of telephone, send side
    dr: float = 3.0  # D-value of telephone, receive side
    telr: float = 65.0  # talker echo loudness rating
    wepl: float = 110.0  # weighted echo path loss
    t: float = 0.0  # mean one-way delay of the echo path
    tr: float = 0.0  # round-trip delay in a 4-wire loop
    ta: float = 0.0  # absolute (mouth-to-ear) delay
    qdu: float = 1.0  # number of quantization distortion units
    ie: float = 0.0  # equipment impairment factor
    bpl: float = 4.3  # packet-loss robustness factor (irrelevant while ppl = 0)
    ppl: float = 0.0  # random packet-loss probability, per cent
    burst_r: float = 1.0  # burst ratio (1 = random loss)
    nc: float = -70.0  # circuit noise referred to the 0 dBr point
    nfor: float = -64.0  # noise floor at the receive side
    ps: float = 35.0  # room noise at the send side
    pr: float = 35.0  # room noise at the receive side
    a: float = 0.0  # advantage factor
    mt: float = 100.0  # minimum perceivable delay (delay sensitivity class "default")
    st: float = 1.0  # delay sensitivity


@dataclass(frozen=True)
class G107Terms:
    """Every intermediate of one E-model evaluation."""

    no: float  # total noise power at the 0 dBr point, dBm0p (eq. 7-3)
    ro: float
    iolr: float
    ist: float
    iq: float
    is_: float
    idte: float
    idle: float
    idd: float
    id: float
    ie_eff: float
    a: float
    r: float


def _log10_sum(*levels_db: float) -> float:
    return 10.0 * math.log10(sum(10.0 ** (x / 10.0) for x in levels_db))


def e_model(p: G107Params = G107Params()) -> G107Terms:  # a frozen dataclass: a safe shared default
    """Evaluate the G.107 (06/2015) E-model for the given inputs; all terms in R units."""
    if p.qdu < 1.0:
        raise ValueError(f"qdu must be >= 1 (got {p.qdu})")
    if p.mt <= 0.0 or p.st <= 0.0:
        raise ValueError(f"mt and st must be > 0 (got mt={p.mt}, st={p.st})")
    if min(p.t, p.tr, p.ta) < 0.0:
        raise ValueError(f"delays t, tr, ta must be >= 0 (got t={p.t}, tr={p.tr}, ta={p.ta})")
    if p.ppl < 0.0 or p.bpl <= 0.0 or p.burst_r <= 0.0:
        raise ValueError(f"need ppl >= 0, bpl > 0, burst_r > 0 (got {p.ppl}, {p.bpl}, {p.burst_r})")

    # §7.2 Basic signal-to-noise ratio Ro.
    olr = p.slr + p.rlr
    nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0) ** 2  # eq. 7-4
    pre = p.pr + 10.0 * math.log10(1.0 + 10.0 ** ((10.0 - p.lstr) / 10.0))  # eq. 7-6
    nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0) ** 2  # eq. 7-5
    nfo = p.nfor + p.rlr  # eq. 7-7
    no = _log10_sum(p.nc, nos, nor, nfo)  # eq. 7-3
    ro = 15.0 - 1.5 * (p.slr + no)  # eq. 7-2

    # §7.3 Simultaneous impairment Is = Iolr + Ist + Iq.
    xolr = olr + 0.2 * (64.0 + no - p.rlr)  # eq. 7-10
    iolr = 20.0 * ((1.0 + (xolr / 8.0) ** 8) ** (1.0 / 8.0) - xolr / 8.0)  # eq. 7-9
    stmro = -10.0 * math.log10(10.0 ** (-p.stmr / 10.0) + math.exp(-p.t / 4.0) * 10.0 ** (-p.telr / 10.0))
    ist = (  # eq. 7-11
        12.0 * (1.0 + ((stmro - 13.0) / 6.0) ** 8) ** (1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4) ** 35) ** (1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0) ** 13) ** (1.0 / 13.0)
        + 29.0
    )
    q = 37.0 - 15.0 * math.log10(p.qdu)  # eq. 7-17
    g = 1.07 + 0.258 * q + 0.0602 * q**2  # eq. 7-16
    z = 46.0 / 30.0 - g / 40.0  # eq. 7-15
    y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0  # eq. 7-14
    iq = 15.0 * math.log10(1.0 + 10.0**y + 10.0**z)  # eq. 7-13
    is_ = iolr + ist + iq  # eq. 7-8

    # §7.4 Delay impairment Id = Idte + Idle + Idd.
    roe = -1.5 * (no - p.rlr)  # eq. 7-20
    terv = (
        p.telr - 40.0 * math.log10((1.0 + p.t / 10.0) / (1.0 + p.t / 150.0)) + 6.0 * math.exp(-0.3 * p.t**2)
    )  # eq. 7-22
    if p.stmr < 9.0:
        terv += ist / 2.0  # TERVs, eq. 7-23
    re = 80.0 + 2.5 * (terv - 14.0)  # eq. 7-21
    if p.t < 1.0:
        idte = 0.0  # below 1 ms talker echo is perceived as sidetone
    else:
        idte = ((roe - re) / 2.0 + math.sqrt((roe - re) ** 2 / 4.0 + 100.0) - 1.0) * (1.0 - math.exp(-p.t))
    if p.stmr > 20.0:
        # Idtes, eq. 7-24: replaces Idte whatever T (so Ist alone below 1 ms), as the public
        # implementations that transcribe G.107 do (docs/qoe-voip.md, Verification)
        idte = math.sqrt(idte**2 + ist**2)
    rle = 10.5 * (p.wepl + 7.0) * (p.tr + 1.0) ** -0.25  # eq. 7-26
    idle = (ro - rle) / 2.0 + math.sqrt((ro - rle) ** 2 / 4.0 + 169.0)  # eq. 7-25
    if p.ta <= p.mt:
        idd = 0.0  # eq. 7-27
    else:
        x = math.log10(p.ta / p.mt) / math.log10(2.0)  # eq. 7-29
        e = 6.0 * p.st
        idd = 25.0 * ((1.0 + x**e) ** (1.0 / e) - 3.0 * (1.0 + (x / 3.0) ** e) ** (1.0 / e) + 2.0)  # 7-28
    id_ = idte + idle + idd  # eq. 7-18

    # §7.5 Effective equipment impairment (eq. 7-30) and §7.6 advantage factor.
    # Capped at 95, every packet lost: with BurstR > 1 the formula passes 95 once Ppl/BurstR + Bpl <
    # Ppl (e.g. G.729A, BurstR 8, Ppl above ~22 %), far outside the range it was fitted on (≤ 20 %).
    ie_eff = min(95.0, p.ie + (95.0 - p.ie) * p.ppl / (p.ppl / p.burst_r + p.bpl))
    r = ro - is_ - id_ - ie_eff + p.a
    return G107Terms(
        no=no,
        ro=ro,
        iolr=iolr,
        ist=ist,
        iq=iq,
        is_=is_,
        idte=idte,
        idle=idle,
        idd=idd,
        id=id_,
        ie_eff=ie_eff,
        a=p.a,
        r=r,
    )


def r_to_mos(r: float) -> float:
    """MOS (conversational quality, estimated) from R, G.107 Annex B eq. B-4.

    1 for R < 0, 4.5 for R > 100, else 1 + 0.035R + R(R-60)(100-R)·7e-6. That cubic dips below 1
    (to 0.989 at R ≈ 3.2) for 0 < R < 6.5153; the result is clamped to 1 there, as the MOS scale has no
    value below 1, so the mapping is monotonic (non-decreasing) over the whole R axis.
    """
    if math.isnan(r):
        raise ValueError("r must be a number (got nan)")
    if r < 0.0:
        return 1.0
    if r > 100.0:
        return 4.5
    return max(1.0, 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6)


def mos_to_r(mos: float) -> float:
    """The smallest R in [0, 100] whose ``r_to_mos`` reaches ``mos`` (bisection), e.g. a MOS floor of
    3.6 needs R >= 70.06. ``mos`` must lie in [1, 4.5]."""
    if not 1.0 <= mos <= 4.5:
        raise ValueError(f"mos must be in [1, 4.5] (got {mos})")
    lo, hi = 0.0, 100.0
    if r_to_mos(lo) >= mos:
        return lo
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if r_to_mos(mid) >= mos:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-10:
            break
    return hi


def codecs() -> dict[str, tuple[float, float]]:
    """Known codecs: name -> (Ie, Bpl), from ITU-T G.113 Appendix I (see docs/qoe-voip.md)."""
    return dict(_CODECS)


def _resolve_codec(codec: str, plc: bool) -> str:
    by_upper = {name.upper(): name for name in _CODECS}
    name = by_upper.get(codec.strip().upper())
    if name is None:
        raise ValueError(f"codec: unknown codec {codec!r}; known codecs: {', '.join(_CODECS)}")
    if not plc and name in _PLC_VARIANTS:
        return _PLC_VARIANTS[name]
    if not plc and name not in _PLC_VARIANTS.values():
        raise ValueError(
            f"plc: no-PLC values are tabulated only for G.711 (G.113 measured {name} with its built-in "
            "concealment); use plc=True"
        )
    return name


@dataclass(frozen=True)
class EModelResult:
    """The outcome of ``voip_quality``: R, MOS, and every term that went into R."""

    r: float
    mos: float
    ro: float
    is_: float
    id: float
    ie_eff: float
    a: float
    idte: float
    idle: float
    idd: float
    delay_ms: float  # mouth-to-ear delay Ta used: network one-way delay + jitter buffer
    loss_pct: float  # packet loss Ppl used: network loss combined with late loss
    codec: str
    jitter_buffer_ms: float
    late_loss_pct: float

    def to_dict(self) -> dict[str, float | str]:
        """Plain mapping for JSON; the simultaneous-impairment key is ``is`` (not ``is_``)."""
        out: dict[str, float | str] = {}
        for key, value in asdict(self).items():
            out["is" if key == "is_" else key] = value
        return out


def _check(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False) -> None:
    ok = math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name} must be in {bracket}{lo:g}, {hi:g}] (got {value})")


def late_loss_fraction(jitter_buffer_factor: float) -> float:
    """Fraction of packets arriving after a buffer of k·J under the Gaussian jitter model (J > 0)."""
    return 0.5 * math.erfc(jitter_buffer_factor * math.sqrt(2.0 / math.pi))


def voip_quality(
    *,
    delay_ms: float,
    jitter_ms: float = 0.0,
    loss_pct: float = 0.0,
    codec: str = "G.711",
    plc: bool = True,
    burst_r: float = 1.0,
    advantage: float = 0.0,
    jitter_buffer_factor: float = 2.0,
    echo_delay_ms: float | None = None,
    round_trip_ms: float | None = None,
) -> EModelResult:
    """E-model R and MOS of a VoIP call; all G.107 parameters not named here take their defaults.

    ``delay_ms`` one-way network delay; ``jitter_ms`` RFC 3550 jitter; ``loss_pct`` network packet loss;
    ``burst_r`` G.107 BurstR (1 = random loss); ``advantage`` G.107 A (0..20). ``echo_delay_ms`` (T) and
    ``round_trip_ms`` (Tr) default to the mouth-to-ear delay Ta and 2·Ta. See the module docstring for the
    jitter-buffer model.
    """
    _check("delay_ms", delay_ms, 0.0, 10_000.0)
    _check("jitter_ms", jitter_ms, 0.0, 10_000.0)
    _check("loss_pct", loss_pct, 0.0, 100.0)
    _check("burst_r", burst_r, 1.0, 8.0)
    _check("advantage", advantage, 0.0, 20.0)
    _check("jitter_buffer_factor", jitter_buffer_factor, 0.0, 10.0, lo_open=True)
    if echo_delay_ms is not None:
        _check("echo_delay_ms", echo_delay_ms, 0.0, 10_000.0)
    if round_trip_ms is not None:
        _check("round_trip_ms", round_trip_ms, 0.0, 20_000.0)
    name = _resolve_codec(codec, plc)
    ie, bpl = _CODECS[name]

    buffer_ms = jitter_buffer_factor * jitter_ms
    late = late_loss_fraction(jitter_buffer_factor) if jitter_ms > 0.0 else 0.0
    p_net = loss_pct / 100.0
    ppl = 100.0 * (p_net + (1.0 - p_net) * late)
    ta = delay_ms + buffer_ms
    t = ta if echo_delay_ms is None else echo_delay_ms
    tr = 2.0 * ta if round_trip_ms is None else round_trip_ms

    terms = e_model(G107Params(t=t, ta=ta, tr=tr, ie=ie, bpl=bpl, ppl=ppl, burst_r=burst_r, a=advantage))
    return EModelResult(
        r=terms.r,
        mos=r_to_mos(terms.r),
        ro=terms.ro,
        is_=terms.is_,
        id=terms.id,
        ie_eff=terms.ie_eff,
        a=terms.a,
        idte=terms.idte,
        idle=terms.idle,
        idd=terms.idd,
        delay_ms=ta,
        loss_pct=ppl,
        codec=name,
        jitter_buffer_ms=buffer_ms,
        late_loss_pct=100.0 * late,
    )
