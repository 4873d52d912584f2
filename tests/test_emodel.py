"""The ITU-T G.107 E-model (engine.core.qoe.emodel): default rating, MOS mapping, delay and loss impairments,
the jitter-buffer model, validation and the ``engine qoe voip`` entry point. Expected figures are worked
by hand in the comments (or are the values G.107 / G.113 publish), never copied from the code's output."""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson
import pytest

from engine.core.qoe.emodel import (
    G107Params,
    codecs,
    e_model,
    late_loss_fraction,
    mos_to_r,
    r_to_mos,
    voip_quality,
)
from engine.tools.qoe import voip_main as main

# ---------------------------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("term", "expected", "tol"),
    [
        # No = 10·log10(10^-7 + 10^(Nos/10) + 10^(Nor/10) + 10^-6.2) with Nos = 35-8-3-100+0.004·(35-10-3-14)²
        # = -75.744, Pre = 35 + 10·log10(1 + 10^-0.8) = 35.669, Nor = 2-121+35.669+0.008·0.669² = -83.327:
        # No = -61.18 dBm0p, so Ro = 15 - 1.5·(8 - 61.18) = 94.77 (the G.107 figure).
        ("no", -61.18, 0.01),
        ("ro", 94.77, 0.01),
        # Xolr = 10 + 0.2·(64 - 61.18 - 2) = 10.164 → Iolr = 20·((1 + 1.2705^8)^(1/8) - 1.2705) = 0.44;
        # STMRo = 15 → Ist ≈ 0; Q = 37, G = 92.03, Y = -0.348+5.476-10.226, Z = -0.767 → Iq = 0.97.
        ("iolr", 0.44, 0.01),
        ("ist", 0.0, 0.01),
        ("iq", 0.97, 0.01),
        ("is_", 1.41, 0.01),
        # T = 0: Idte = 0; Tr = 0: Rle = 10.5·117 = 1228.5, Idle = 169 / (Rle - Ro) ≈ 0.149; Ta = 0: Idd = 0.
        ("idte", 0.0, 0.0),
        ("idle", 0.149, 0.001),
        ("idd", 0.0, 0.0),
        ("ie_eff", 0.0, 0.0),
        # 94.77 - 1.41 - 0.15 - 0 + 0 = 93.2, the default R of G.107 (06/2015) §7.7.
        ("r", 93.2, 0.05),
    ],
)
def test_default_parameters_reproduce_g107_terms(term: str, expected: float, tol: float) -> None:
    """With every G.107 Table 3 default, each E-model term matches the hand calculation and R = 93.2."""
    assert getattr(e_model(G107Params()), term) == pytest.approx(expected, abs=tol)


def test_default_mos_is_4_41() -> None:
    """The default R of 93.2 maps to MOS 4.41 (1 + 3.262 + 93.2·33.2·6.8·7e-6 = 4.409)."""
    result = voip_quality(delay_ms=0.0)
    assert result.r == pytest.approx(93.2, abs=0.05)
    assert result.mos == pytest.approx(4.41, abs=0.005)


# ------------------------------------------------------------------------------------------ R → MOS → R


@pytest.mark.parametrize(
    ("r", "mos"),
    [
        (50.0, 2.58),  # 1 + 1.75 + 50·(-10)·50·7e-6 = 2.575
        (60.0, 3.10),  # 1 + 2.1 + 0 = 3.1
        (70.0, 3.60),  # 1 + 2.45 + 70·10·30·7e-6 = 3.597
        (80.0, 4.02),  # 1 + 2.8 + 80·20·20·7e-6 = 4.024
        (90.0, 4.34),  # 1 + 3.15 + 90·30·10·7e-6 = 4.339
        (100.0, 4.50),  # 1 + 3.5 + 0
    ],
)
def test_r_to_mos_published_points(r: float, mos: float) -> None:
    """G.107 Annex B: the cubic R → MOS mapping gives the published points (to two decimals)."""
    assert r_to_mos(r) == pytest.approx(mos, abs=0.005)


@pytest.mark.parametrize(
    ("r", "mos"),
    [
        (-1e6, 1.0),
        (-0.001, 1.0),
        (0.0, 1.0),
        (3.2, 1.0),  # the raw cubic gives 0.989 here; clamped to the bottom of the scale
        (6.5, 1.0),  # raw cubic 0.99995
        (100.001, 4.5),
        (150.0, 4.5),
    ],
)
def test_r_to_mos_ends(r: float, mos: float) -> None:
    """MOS is 1 for R < 0, 4.5 for R > 100, and never below 1 where the cubic dips under 1 (0 < R < 6.52)."""
    assert r_to_mos(r) == mos


def test_r_to_mos_is_monotonic_and_bounded() -> None:
    """Over R in [-10, 110] (steps of 0.25) the mapping stays in [1, 4.5] and never decreases as R grows."""
    grid = [x / 4 for x in range(-40, 441)]
    mos = [r_to_mos(r) for r in grid]
    assert all(1.0 <= m <= 4.5 for m in mos)
    assert all(b >= a for a, b in itertools.pairwise(mos))


@pytest.mark.parametrize(
    ("mos", "r"),
    [
        (1.0, 0.0),  # the smallest R that reaches MOS 1
        (2.58, 50.10),  # MOS(50) = 2.575 and the slope there is 0.0525 per R: 50 + 0.005/0.0525
        (3.1, 60.0),
        (3.6, 70.06),  # MOS(70) = 3.597 < 3.6, so the floor needs a little more than 70
        (4.5, 100.0),
    ],
)
def test_mos_to_r_inverts_the_mapping(mos: float, r: float) -> None:
    """mos_to_r returns the smallest R reaching the MOS target; mapping it back gives the target again."""
    found = mos_to_r(mos)
    assert found == pytest.approx(r, abs=0.01)
    assert r_to_mos(found) == pytest.approx(mos, abs=1e-6)


@pytest.mark.parametrize("mos", [0.99, 4.51, math.nan, -3.0])
def test_mos_to_r_rejects_targets_off_the_scale(mos: float) -> None:
    """A MOS target outside [1, 4.5] is a ValueError naming the parameter and its range."""
    with pytest.raises(ValueError, match=r"mos must be in \[1, 4\.5\]"):
        mos_to_r(mos)


# ------------------------------------------------------------------------------------------------- delay


@pytest.mark.parametrize(
    ("delay_ms", "idte", "idle", "idd", "id_"),
    [
        # Ta = T = 150, Tr = 300.
        # Idte: TERV = 65 - 40·log10(16/2) = 28.876, Re = 80 + 2.5·14.876 = 117.19, Roe = -1.5·(-63.18)
        #       = 94.77; Roe - Re = -22.42 → -11.21 + √(125.7 + 100) - 1 = 2.81.
        # Idle: Rle = 1228.5 / 301^0.25 = 294.9; Ro - Rle = -200.2 → -100.1 + √(100.1² + 169) = 0.84.
        # Idd:  X = log2(1.5) = 0.585 → 25·((1 + X^6)^(1/6) - 3·(1 + (X/3)^6)^(1/6) + 2) = 0.16.
        (150.0, 2.81, 0.84, 0.16, 3.82),
        # Ta = T = 400, Tr = 800.
        # Idte: TERV = 65 - 40·log10(41/3.667) = 23.07, Re = 102.7; Roe - Re = -7.9 → -3.94 + 10.75 - 1
        #       = 5.81.
        # Idle: Rle = 1228.5 / 801^0.25 = 230.9 → -68.1 + √(68.1² + 169) = 1.23.
        # Idd:  X = 2 → 25·(65^(1/6) - 3·(1 + (2/3)^6)^(1/6) + 2) = 25·(2.00516 - 3.04237 + 2) = 24.07.
        (400.0, 5.81, 1.23, 24.07, 31.11),
    ],
)
def test_delay_impairment_at_150_and_400_ms(
    delay_ms: float, idte: float, idle: float, idd: float, id_: float
) -> None:
    """Id = Idte + Idle + Idd with the default echo parameters (TELR 65 dB, WEPL 110 dB), T = Ta = delay,
    Tr = 2·delay, matches the hand calculation. (The Cole-Rosenbluth approximation 0.024·d + 0.11·(d - 177.3)
    gives 3.6 and 34.1: the same range, which the exact formulas refine.)"""
    res = voip_quality(delay_ms=delay_ms)
    assert (res.idte, res.idle, res.idd, res.id) == pytest.approx((idte, idle, idd, id_), abs=0.01)


@pytest.mark.parametrize(("ta", "zero"), [(0.0, True), (50.0, True), (100.0, True), (100.5, False)])
def test_pure_delay_impairment_starts_above_mt(ta: float, zero: bool) -> None:
    """Idd is 0 for Ta <= mT = 100 ms and positive beyond (G.107 eq. 7-27)."""
    idd = e_model(G107Params(ta=ta)).idd
    assert (idd == 0.0) is zero
    assert idd >= 0.0


@pytest.mark.parametrize(
    ("echo_delay_ms", "round_trip_ms", "idte", "idle"),
    [
        # T = 0 removes talker echo entirely (below 1 ms it is sidetone); Idle as for Tr = 300: 0.84.
        (0.0, None, 0.0, 0.84),
        # Tr = 0 brings Idle back to its default 0.149; Idte as for T = 150: 2.81.
        (None, 0.0, 2.81, 0.149),
    ],
)
def test_echo_delays_can_be_set_apart_from_mouth_to_ear(
    echo_delay_ms: float | None, round_trip_ms: float | None, idte: float, idle: float
) -> None:
    """T (talker echo) and Tr (listener echo) can override the symmetric-path defaults T = Ta, Tr = 2·Ta,
    each without touching the other, and leaving Idd (a function of Ta only) unchanged."""
    res = voip_quality(delay_ms=150.0, echo_delay_ms=echo_delay_ms, round_trip_ms=round_trip_ms)
    assert (res.idte, res.idle) == pytest.approx((idte, idle), abs=0.01)
    assert res.idd == pytest.approx(0.16, abs=0.01)


# -------------------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize(
    ("codec", "plc", "loss", "burst_r", "ie_eff"),
    [
        ("G.729A", True, 2.0, 1.0, 19.0),  # 11 + 84·2/(2 + 19) = 19.0
        ("G.729A", True, 2.0, 2.0, 19.4),  # 11 + 84·2/(1 + 19) = 19.4: bursty loss hurts more
        ("G.729", True, 0.0, 1.0, 11.0),  # no loss: Ie alone
        ("G.711", True, 2.0, 1.0, 7.01),  # 95·2/(2 + 25.1)
        ("G.711", False, 2.0, 1.0, 30.16),  # 95·2/(2 + 4.3)
        ("g.711/no-plc", True, 2.0, 1.0, 30.16),  # the table name works too, case-insensitively
        ("G.723.1", True, 2.0, 1.0, 23.84),  # 15 + 80·2/(2 + 16.1)
        ("G.729A", True, 20.0, 8.0, 89.14),  # 11 + 84·20/(2.5 + 19): bursty, still below 95
        ("G.729A", True, 30.0, 8.0, 95.0),  # 11 + 84·30/(3.75 + 19) = 121.8: capped at 95
        ("G.729A", True, 100.0, 8.0, 95.0),  # everything lost: 95, not 277.7
    ],
)
def test_effective_equipment_impairment(
    codec: str, plc: bool, loss: float, burst_r: float, ie_eff: float
) -> None:
    """Ie,eff = Ie + (95 - Ie)·Ppl/(Ppl/BurstR + Bpl) with the codec's G.113 Ie and Bpl, at most 95
    (with BurstR > 1 the formula passes 95 once Ppl/BurstR + Bpl < Ppl, here above 21.7 %)."""
    res = voip_quality(delay_ms=0.0, codec=codec, plc=plc, loss_pct=loss, burst_r=burst_r)
    assert res.ie_eff == pytest.approx(ie_eff, abs=0.005)
    assert res.r == pytest.approx(93.206 - ie_eff, abs=0.01)


def test_codec_table() -> None:
    """codecs() lists exactly the G.113 Appendix I (Ie, Bpl) pairs the module supports."""
    assert codecs() == {
        "G.711": (0.0, 25.1),
        "G.711/no-PLC": (0.0, 4.3),
        "G.729": (11.0, 19.0),
        "G.729A": (11.0, 19.0),
        "G.723.1": (15.0, 16.1),
    }


@pytest.mark.parametrize(
    ("codec", "plc", "message"),
    [
        ("Opus", True, r"codec: unknown codec 'Opus'; known codecs: G\.711, G\.711/no-PLC, G\.729, G\.729A"),
        ("GSM-FR", True, r"unknown codec 'GSM-FR'"),
        ("G.729A", False, r"plc: no-PLC values are tabulated only for G\.711"),
    ],
)
def test_unknown_codec_or_variant_is_rejected(codec: str, plc: bool, message: str) -> None:
    """An unsupported codec, or a no-PLC variant nobody measured, is a ValueError naming the known codecs."""
    with pytest.raises(ValueError, match=message):
        voip_quality(delay_ms=50.0, codec=codec, plc=plc)


@pytest.mark.parametrize("advantage", [0.0, 5.0, 10.0, 20.0])
def test_advantage_factor_adds_to_r(advantage: float) -> None:
    """A is added to R one for one (G.107 Table 2 maxima: 0, 5, 10, 20)."""
    base = voip_quality(delay_ms=120.0, loss_pct=1.0).r
    assert voip_quality(delay_ms=120.0, loss_pct=1.0, advantage=advantage).r == pytest.approx(
        base + advantage
    )


# ------------------------------------------------------------------------------------------------ jitter


@pytest.mark.parametrize(
    ("factor", "late_pct"),
    [
        (1.0, 12.96),  # ½·erfc(√(2/π)) = P(Z > 2/√π = 1.128) = 1 - 0.8704
        (2.0, 1.20),  # P(Z > 2.257)
        (3.0, 0.036),  # P(Z > 3.385)
    ],
)
def test_late_loss_is_the_gaussian_tail_beyond_the_buffer(factor: float, late_pct: float) -> None:
    """With σ = J·√π/2 (RFC 3550 jitter of Gaussian transit times) a buffer of k·J loses P(Z > 2k/√π)."""
    assert 100.0 * late_loss_fraction(factor) == pytest.approx(late_pct, abs=0.005)


@pytest.mark.parametrize(
    ("jitter", "loss", "factor", "delay", "ppl"),
    [
        (0.0, 0.0, 2.0, 100.0, 0.0),  # no jitter: no buffer, no late loss
        (20.0, 0.0, 2.0, 140.0, 1.201),  # 40 ms buffer; 1.20 % late
        (20.0, 1.0, 2.0, 140.0, 2.189),  # 1 + 0.99·1.201 = 2.189 % lost in all
        (10.0, 0.0, 3.0, 130.0, 0.036),  # 30 ms buffer; 0.036 % late
    ],
)
def test_jitter_adds_buffer_delay_and_late_loss(
    jitter: float, loss: float, factor: float, delay: float, ppl: float
) -> None:
    """Jitter J becomes a k·J ms buffer added to the 100 ms one-way delay and a late-loss share combined with
    network loss as independent events."""
    res = voip_quality(delay_ms=100.0, jitter_ms=jitter, loss_pct=loss, jitter_buffer_factor=factor)
    assert res.jitter_buffer_ms == pytest.approx(factor * jitter)
    assert res.delay_ms == pytest.approx(delay)
    assert res.loss_pct == pytest.approx(ppl, abs=0.001)


# ---------------------------------------------------------------------------------------- monotonicity

_GRID = [0.0, 1.0, 10.0, 50.0, 99.0, 100.0, 101.0, 150.0, 177.3, 250.0, 400.0, 800.0]


@pytest.mark.parametrize("codec", ["G.711", "G.729A", "G.723.1"])
@pytest.mark.parametrize(
    ("knob", "values", "fixed"),
    [
        ("delay_ms", _GRID, {"jitter_ms": 5.0, "loss_pct": 1.0}),
        ("loss_pct", [0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0], {"delay_ms": 150.0}),
        ("jitter_ms", [0.0, 0.01, 1.0, 5.0, 20.0, 50.0, 100.0, 300.0], {"delay_ms": 80.0, "loss_pct": 0.5}),
        ("burst_r", [1.0, 1.5, 2.0, 4.0, 8.0], {"delay_ms": 80.0, "loss_pct": 3.0}),
    ],
)
def test_more_impairment_never_raises_r(
    codec: str, knob: str, values: list[float], fixed: dict[str, Any]
) -> None:
    """Raising delay, loss, jitter or burstiness (the rest fixed) never raises R or MOS."""
    inputs: list[dict[str, Any]] = [{**fixed, knob: v} for v in values]
    results = [voip_quality(codec=codec, **kw) for kw in inputs]
    for before, after in itertools.pairwise(results):
        assert after.r <= before.r + 1e-9
        assert after.mos <= before.mos + 1e-9


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay_ms": -1.0}, r"delay_ms must be in \[0, 10000\] \(got -1\.0\)"),
        ({"delay_ms": math.nan}, r"delay_ms must be in \[0, 10000\]"),
        ({"delay_ms": math.inf}, r"delay_ms must be in \[0, 10000\]"),
        ({"delay_ms": 10.0, "jitter_ms": -0.5}, r"jitter_ms must be in \[0, 10000\]"),
        ({"delay_ms": 10.0, "loss_pct": 100.5}, r"loss_pct must be in \[0, 100\]"),
        ({"delay_ms": 10.0, "burst_r": 0.5}, r"burst_r must be in \[1, 8\]"),
        ({"delay_ms": 10.0, "burst_r": 9.0}, r"burst_r must be in \[1, 8\]"),
        ({"delay_ms": 10.0, "advantage": 21.0}, r"advantage must be in \[0, 20\]"),
        ({"delay_ms": 10.0, "advantage": -1.0}, r"advantage must be in \[0, 20\]"),
        ({"delay_ms": 10.0, "jitter_buffer_factor": 0.0}, r"jitter_buffer_factor must be in \(0, 10\]"),
        ({"delay_ms": 10.0, "echo_delay_ms": -1.0}, r"echo_delay_ms must be in \[0, 10000\]"),
        ({"delay_ms": 10.0, "round_trip_ms": -1.0}, r"round_trip_ms must be in \[0, 20000\]"),
    ],
)
def test_invalid_parameters_name_the_parameter_and_range(kwargs: dict[str, Any], message: str) -> None:
    """Every out-of-range input is a ValueError that names the parameter and its allowed range."""
    with pytest.raises(ValueError, match=message):
        voip_quality(**kwargs)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (G107Params(qdu=0.5), r"qdu must be >= 1"),
        (G107Params(mt=0.0), r"mt and st must be > 0"),
        (G107Params(ta=-1.0), r"delays t, tr, ta must be >= 0"),
        (G107Params(bpl=0.0), r"need ppl >= 0, bpl > 0, burst_r > 0"),
    ],
)
def test_e_model_rejects_impossible_inputs(params: G107Params, message: str) -> None:
    """The full model refuses inputs its formulas cannot take (log of qdu < 1, zero mT, negative delay)."""
    with pytest.raises(ValueError, match=message):
        e_model(params)


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_prints_every_term_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`engine qoe voip` prints indented JSON with R, MOS and every impairment term, and exits 0."""
    status = main(["--delay-ms", "0", "--codec", "G.729A", "--loss-pct", "2"])
    out = capsys.readouterr()
    assert status == 0
    assert out.err == ""
    assert out.out.startswith("{\n  ")
    doc = orjson.loads(out.out)
    assert set(doc) == {
        "r", "mos", "ro", "is", "id", "ie_eff", "a", "idte", "idle", "idd",
        "delay_ms", "loss_pct", "codec", "jitter_buffer_ms", "late_loss_pct",
    }  # fmt: skip
    assert doc["codec"] == "G.729A"
    assert doc["ie_eff"] == pytest.approx(19.0)
    assert doc["r"] == pytest.approx(93.206 - 19.0, abs=0.01)
    assert doc["mos"] == pytest.approx(r_to_mos(doc["r"]))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--delay-ms", "150", "--no-plc", "--loss-pct", "2"], {"codec": "G.711/no-PLC", "ie_eff": 30.16}),
        (["--delay-ms", "100", "--jitter-ms", "20"], {"delay_ms": 140.0, "late_loss_pct": 1.2}),
        (["--delay-ms", "100", "--advantage", "10"], {"a": 10.0}),
        (["--delay-ms", "100", "--loss-pct", "2", "--burst-r", "2", "--codec", "g.729a"], {"ie_eff": 19.4}),
    ],
)
def test_cli_options_reach_the_model(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: dict[str, Any]
) -> None:
    """Each CLI option changes the matching input of the model."""
    assert main(argv) == 0
    doc = orjson.loads(capsys.readouterr().out)
    for key, value in expected.items():
        assert doc[key] == (value if isinstance(value, str) else pytest.approx(value, abs=0.01))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --delay-ms"),
        (["--delay-ms", "abc"], "argument --delay-ms: invalid float value: 'abc'"),
        (["--delay-ms", "-5"], "delay_ms must be in [0, 10000]"),
        (["--delay-ms", "nan"], "delay_ms must be in [0, 10000]"),
        (["--delay-ms", "10", "--codec", "Opus"], "known codecs: G.711, G.711/no-PLC"),
        (["--delay-ms", "10", "--codec", "G.729", "--no-plc"], "plc: no-PLC values are tabulated only"),
        (["--delay-ms", "10", "--advantage", "30"], "advantage must be in [0, 20]"),
        (["--delay-ms", "10", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_cli_bad_input_exits_2_with_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad arguments print nothing on stdout, the reason on stderr, and exit with status 2."""
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "engine qoe voip: error: " in out.err
    assert message in out.err


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints the usage with every option on stdout and exits 0."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--delay-ms",
        "--jitter-ms",
        "--loss-pct",
        "--codec",
        "--no-plc",
        "--burst-r",
        "--advantage",
    ):
        assert option in out


def test_idtes_replaces_idte_above_stmr_20_whatever_the_echo_delay() -> None:
    """STMR 23 dB, T 0.5 ms: Idte is 0 below 1 ms, then Idtes = √(0 + Ist²) = Ist (eq. 7-24 applies
    whatever T, as in the public transcriptions of G.107: docs/qoe-voip.md, Verification)."""
    t = e_model(G107Params(stmr=23.0, t=0.5))
    assert t.idte == pytest.approx(t.ist)
    assert t.ist == pytest.approx(1.4003, abs=1e-4)
    assert t.r == pytest.approx(90.405, abs=1e-3)
