"""Video / IPTV streaming QoE from what probes report: ITU-T P.1203 mode 0, simplified.

The short-term video quality O.22 is ITU-T P.1203.1 mode 0 (bitrate, coding resolution, frame rate;
H.264). The session score integrates O.22 with stalling through the *parametric* part of ITU-T
P.1203.3 (stalling impact, audiovisual integration, final mapping); its random-forest part is left
out, so the result is an estimate in the P.1203 style, not a conformant O.46. Every coefficient, its
source and every simplification are listed in ``docs/qoe-video.md``.

Pure computation, no I/O except :func:`main` (``engine qoe video``), which prints JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DISPLAYS", "MODEL", "VideoQoE", "mos_from_r", "r_from_mos", "video_quality"]

MODEL = "ITU-T P.1203.1 mode 0 (O.22) + P.1203.3 parametric stalling integration, no RF part"

# ITU-T P.1203.1 mode 0: compression (coding) degradation.
_A1, _A2, _A3, _A4 = 11.9983519, -2.99991847, 41.2475074001, 0.13183165961
_Q1, _Q2, _Q3 = 4.66, -0.07, 4.06
# ITU-T P.1203.1: degradation due to upscaling (u1, u2) and to frame-rate reduction (t1..t3).
_U1, _U2 = 72.61, 0.32
_T1, _T2, _T3 = 30.98, 1.29, 64.65
_FRAMERATE_NO_DEGRADATION = 24.0  # frame rates from here up carry no frame-rate degradation
# ITU-T P.1203.1 clause 8.4.1, eq. (13): handheld (mobile) adjustment of O.22.
_HTV = (-0.60293, 2.12382, -0.36936, 0.03409)
# ITU-T P.1203.1 MOSfromR / RfromMOS on the internal 0..100 quality scale.
_MOS_MIN, _MOS_MAX = 1.05, 4.9
# ITU-T P.1203.3 eqs. (19)-(21): audiovisual integration O.34 from O.21 (audio) and O.22 (video).
_AV1, _AV2, _AV3, _AV4 = -0.00069084, 0.15374283, 0.97153861, 0.02461776
# ITU-T P.1203.3 clause 8.1.1.1: recency weight of a stalling event; eq. (29): stalling impact.
_C_REF7, _C_REF8 = 0.48412879, 10.0
_S1, _S2, _S3 = 9.35158684, 0.91890815, 11.0567558
# ITU-T P.1203.3 eq. (30): final linear mapping of O.46.
_F1, _F2 = 0.02833052, 0.98117059

_ASSUMED_AUDIO_O21 = 5.0  # no audio measurement: constant high audio quality, as itu-p1203 does
_DISPLAY_PIXELS = 1920 * 1080  # P.1203 input I.GEN displaySize default; the model is specified to 1080p

DISPLAYS: dict[str, str] = {"tv": "pc", "pc": "pc", "mobile": "mobile"}  # → P.1203 device type
_H264 = frozenset({"h264", "h.264", "avc", "avc1"})


@dataclass(frozen=True)
class VideoQoE:
    """A session MOS in [1, 5], the model that produced it, and its intermediate terms."""

    mos: float
    model: str
    terms: dict[str, float]


def mos_from_r(q: float) -> float:
    """P.1203.1 MOSfromR: internal quality 0..100 → MOS, clamped to [1.05, 4.9]."""
    raw = _MOS_MIN + (_MOS_MAX - _MOS_MIN) * q / 100.0 + q * (q - 60.0) * (100.0 - q) * 7e-6
    return min(_MOS_MAX, max(_MOS_MIN, raw))


# MOSfromR's cubic dips below 1.05 just above q = 0 and rises from its minimum at this q to 100.
_Q_TURN = (320.0 - math.sqrt(320.0**2 - 12.0 * 500.0)) / 6.0


def r_from_mos(mos: float) -> float:
    """P.1203.1 RfromMOS, the inverse of :func:`mos_from_r`: 0 at MOS ≤ 1.05, 100 at MOS ≥ 4.9.

    Solved by bisection on the increasing branch of the cubic; the reference implementation
    tabulates the same inverse at 0.25 steps of q and interpolates linearly.
    """
    if mos <= _MOS_MIN:
        return 0.0
    if mos >= _MOS_MAX:
        return 100.0
    lo, hi = _Q_TURN, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        raw = _MOS_MIN + (_MOS_MAX - _MOS_MIN) * mid / 100.0 + mid * (mid - 60.0) * (100.0 - mid) * 7e-6
        if raw < mos:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def _stall_weight(position_s: float, duration_s: float) -> float:
    """P.1203.3 clause 8.1.1.1: a stall's length counts fully at the end, down to c_ref7 long before."""
    return _C_REF7 + (1.0 - _C_REF7) * math.pow(0.5, (duration_s - position_s) / _C_REF8)


def _check_number(name: str, value: float, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if v < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")
    return v


MAX_STALLS = 10_000  # far beyond any real session; each stall is one event of the integration


def _check_int(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value!r}")
    return value


def video_quality(
    *,
    bitrate_kbps: float,
    width: int,
    height: int,
    framerate: float,
    stalls: int = 0,
    stall_seconds: float = 0.0,
    initial_delay_s: float = 0.0,
    duration_s: float = 60.0,
    display: str = "tv",
    codec: str = "h264",
) -> VideoQoE:
    """Session MOS (1..5) of a constant-quality H.264 stream with rebuffering, P.1203 mode 0 style.

    ``stalls`` rebuffering events of ``stall_seconds`` *in total* (split evenly, spread evenly over
    the session), plus an initial loading delay; ``duration_s`` is the media duration. ``display``:
    ``tv``/``pc`` (P.1203 device "pc", 1920x1080) or ``mobile`` (handheld adjustment). Raises
    ValueError naming the parameter on bad input.
    """
    br = _check_number("bitrate_kbps", bitrate_kbps, positive=True)
    w = _check_int("width", width, minimum=1)
    h = _check_int("height", height, minimum=1)
    fps = _check_number("framerate", framerate, positive=True)
    n_stalls = _check_int("stalls", stalls, minimum=0)
    if n_stalls > MAX_STALLS:
        raise ValueError(f"stalls must be ≤ {MAX_STALLS} (a session's rebuffering events), got {n_stalls}")
    total_stall = _check_number("stall_seconds", stall_seconds, positive=False)
    initial = _check_number("initial_delay_s", initial_delay_s, positive=False)
    dur = _check_number("duration_s", duration_s, positive=True)
    if not isinstance(display, str) or display.lower() not in DISPLAYS:
        raise ValueError(f"display must be one of {', '.join(DISPLAYS)}, got {display!r}")
    device = DISPLAYS[display.lower()]
    if not isinstance(codec, str) or codec.lower() not in _H264:
        raise ValueError(f"codec: P.1203.1 mode 0 is specified for H.264 only, got {codec!r}")
    if n_stalls == 0 and total_stall > 0:
        raise ValueError(f"stall_seconds is {total_stall:g} but stalls is 0")
    if n_stalls > 0 and total_stall == 0:
        raise ValueError(f"stalls is {n_stalls} but stall_seconds is 0 (P.1203.3 ignores zero-length stalls)")

    # --- P.1203.1 mode 0: short-term video quality O.22 -------------------------------------------
    coding_px = w * h
    inner = _A3 + math.log(br) + math.log(br * br / (coding_px * fps) + _A4)
    if inner <= 0:  # the quantization model's logarithm has no value: ~1e-18 kbps and below
        raise ValueError(f"bitrate_kbps {br:g} is below what P.1203.1 mode 0 can rate at {w}x{h} {fps:g} fps")
    quant = _A1 + _A2 * math.log(inner)
    mos_cod = _clamp(_Q1 + _Q2 * math.exp(_Q3 * quant), 1.0, 5.0)
    deg_cod = _clamp(100.0 - r_from_mos(mos_cod), 0.0, 100.0)
    scale = max(_DISPLAY_PIXELS / coding_px, 1.0)
    deg_scal = _clamp(_U1 * math.log10(_U2 * (scale - 1.0) + 1.0), 0.0, 100.0)
    deg_fr = 0.0
    if fps < _FRAMERATE_NO_DEGRADATION:
        deg_fr = _clamp((100.0 - deg_cod - deg_scal) * (_T1 - _T2 * fps) / (_T3 + fps), 0.0, 100.0)
    o22 = mos_from_r(100.0 - _clamp(deg_cod + deg_scal + deg_fr, 0.0, 100.0))
    if device == "mobile":
        a, b, c, d = _HTV
        o22 = _clamp(a + b * o22 + c * o22**2 + d * o22**3, 1.0, 5.0)

    # --- P.1203.3: audiovisual integration (constant quality over the session) --------------------
    o21 = _ASSUMED_AUDIO_O21
    o34 = _clamp(_AV1 + _AV2 * o21 + _AV3 * o22 + _AV4 * o21 * o22, 1.0, 5.0)
    o35 = o34  # a constant O.34 series: weighted mean = O.34, negative bias and compensations are 0

    # --- P.1203.3: stalling ---------------------------------------------------------------------
    events: list[tuple[float, float]] = []  # (media position s, length s)
    if initial > 0:
        events.append((0.0, initial))
    events.extend((dur * i / (n_stalls + 1), total_stall / n_stalls) for i in range(1, n_stalls + 1))
    weighted_len = sum(length * _stall_weight(pos, dur) for pos, length in events)
    avg_interval = (events[-1][0] - events[0][0]) / (len(events) - 1) if len(events) > 1 else 0.0
    stalling_impact = (
        math.exp(-len(events) / _S1)
        * math.exp(-weighted_len / dur / _S2)
        * math.exp(-avg_interval / dur / _S3)
    )
    o23 = 1.0 + 4.0 * stalling_impact
    mos_stalled = _clamp(1.0 + (o35 - 1.0) * stalling_impact, 1.0, 5.0)
    o46 = _clamp(_F1 + _F2 * mos_stalled, 1.0, 5.0)  # the RF term (weight 0.25) is replaced by mos_stalled

    terms = {
        "coding_mos": mos_cod,
        "coding_degradation": deg_cod,
        "upscaling_degradation": deg_scal,
        "framerate_degradation": deg_fr,
        "o22_video_quality": o22,
        "o34_audiovisual_quality": o34,
        "stall_events": float(len(events)),
        "weighted_stall_seconds": weighted_len,
        "avg_stall_interval_s": avg_interval,
        "stalling_impact": stalling_impact,
        "o23_stalling_quality": o23,
        "stalling_degradation": o35 - mos_stalled,
    }
    return VideoQoE(mos=o46, model=MODEL, terms=terms)
