"""Video/IPTV QoE (``engine.core.qoe.video``): ITU-T P.1203.1 mode 0 O.22 against the reference values of the
public itu-p1203 implementation, the P.1203.3 stalling integration against figures worked by hand,
monotonicity and bounds, input validation, and the ``engine qoe video`` command line."""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson
import pytest

from engine.core.qoe.video import MODEL, mos_from_r, r_from_mos, video_quality
from engine.tools.qoe import video_main as main

# P.1203.3 final mapping, eq. (30): f1 + f2·MOS.
F1, F2 = 0.02833052, 0.98117059


def _session(**kw: Any) -> float:
    args: dict[str, Any] = {"bitrate_kbps": 3000.0, "width": 1280, "height": 720, "framerate": 30.0}
    args.update(kw)
    return video_quality(**args).mos


# (coding width, height, bitrate kbit/s, fps, expected O.22): the mode-0 cases of itu-p1203's
# test/test.py (``test_model_functions``), display 1920x1080, expected to 3 decimals.
REFERENCE_O22 = [
    (1920, 1080, 2801.27587623, 30.0, 4.311),
    (852, 480, 629.203792838, 30.0, 2.664),
    (426, 240, 224.771246112, 30.0, 1.085),
]


@pytest.mark.parametrize(("width", "height", "bitrate", "fps", "expected"), REFERENCE_O22)
def test_o22_reproduces_reference_implementation(
    width: int, height: int, bitrate: float, fps: float, expected: float
) -> None:
    """P.1203.1 mode 0 O.22 matches the reference implementation's own test values to ±0.001."""
    r = video_quality(bitrate_kbps=bitrate, width=width, height=height, framerate=fps)
    assert r.terms["o22_video_quality"] == pytest.approx(expected, abs=1e-3)
    assert r.model == MODEL


# (inputs, expected session MOS) worked by hand from the published coefficients:
#  a) 1080p, 2801 kbit/s, no stalls: O.22 = 4.311 (above); O.34 = av1 + av2·5 + av3·4.311 + av4·5·4.311
#     = 5.66 → clamped to 5; stalling impact = 1 → MOS 5; O.46 = f1 + f2·5 = 4.93418347.
#  b) same, one 10 s stall in 60 s: placed mid-session (30 s), recency weight
#     c_ref7 + (1 − c_ref7)·0.5^((60 − 30)/10) = 0.48412879 + 0.51587121/8 = 0.54861269, weighted length
#     5.4861269 s; one event → average interval 0; impact = e^(−1/9.35158684)·e^(−5.4861269/60/0.91890815)
#     = 0.81347656; MOS = 1 + 4·0.81347656 = 4.25390622; O.46 = f1 + f2·4.25390622 = 4.20213820.
#  c) same, 2 stalls of 4 s total + 2 s initial delay in 60 s: events at 0, 20, 40 s, 2 s each, weights
#     0.49218928, 0.51637074, 0.61309659 → 3.24331322 s; average interval 20 s; impact =
#     e^(−3/9.35158684)·e^(−3.24331322/60/0.91890815)·e^(−20/60/11.0567558) = 0.66380016;
#     O.46 = f1 + f2·(1 + 4·0.66380016) = 3.61470589.
HAND_CASES: list[tuple[dict[str, Any], float]] = [
    ({"bitrate_kbps": 2801.27587623, "width": 1920, "height": 1080}, F1 + F2 * 5.0),
    (
        {"bitrate_kbps": 2801.27587623, "width": 1920, "height": 1080, "stalls": 1, "stall_seconds": 10.0},
        4.20213820,
    ),
    (
        {
            "bitrate_kbps": 2801.27587623,
            "width": 1920,
            "height": 1080,
            "stalls": 2,
            "stall_seconds": 4.0,
            "initial_delay_s": 2.0,
        },
        3.61470589,
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), HAND_CASES)
def test_session_mos_matches_hand_computation(kwargs: dict[str, Any], expected: float) -> None:
    """The P.1203.3 parametric integration (O.34, stalling impact eq. 29, eq. 30) gives the hand figures."""
    assert _session(framerate=30.0, **kwargs) == pytest.approx(expected, abs=1e-6)


def test_mobile_display_applies_handheld_adjustment() -> None:
    """display="mobile" maps O.22 through P.1203.1 eq. (13): 4.311 → −0.60293 + 2.12382·x − 0.36936·x²
    + 0.03409·x³ = 4.4197 (hand-computed)."""
    tv = video_quality(bitrate_kbps=2801.27587623, width=1920, height=1080, framerate=30.0, display="tv")
    mobile = video_quality(
        bitrate_kbps=2801.27587623, width=1920, height=1080, framerate=30.0, display="mobile"
    )
    assert tv.terms["o22_video_quality"] == pytest.approx(4.311, abs=1e-3)
    assert mobile.terms["o22_video_quality"] == pytest.approx(4.4197, abs=2e-3)


@pytest.mark.parametrize(
    ("width", "height", "fps", "upscaling", "framerate"),
    [
        (1920, 1080, 30.0, False, False),  # display resolution, full frame rate: neither degradation
        (1280, 720, 30.0, True, False),  # upscaled to 1080p
        (1920, 1080, 15.0, False, True),  # below 24 fps
        (640, 360, 12.0, True, True),
        (1920, 1080, 24.0, False, False),  # 24 fps is the threshold: no frame-rate degradation
    ],
)
def test_upscaling_and_framerate_terms_appear_only_when_they_apply(
    width: int, height: int, fps: float, upscaling: bool, framerate: bool
) -> None:
    """Upscaling degradation > 0 only below the 1920x1080 display; frame-rate degradation only < 24 fps."""
    t = video_quality(bitrate_kbps=4000.0, width=width, height=height, framerate=fps).terms
    assert (t["upscaling_degradation"] > 0) is upscaling
    assert (t["framerate_degradation"] > 0) is framerate


@pytest.mark.parametrize("q", [0.0, 3.25, 10.0, 37.5, 60.0, 80.0, 99.0, 100.0])
def test_r_from_mos_inverts_mos_from_r(q: float) -> None:
    """RfromMOS is the inverse of MOSfromR on 0..100 (MOS 1.05 ↔ 0, 4.9 ↔ 100)."""
    assert r_from_mos(mos_from_r(q)) == pytest.approx(q, abs=1e-6)


@pytest.mark.parametrize(
    ("width", "height", "fps"), [(1920, 1080, 30.0), (1280, 720, 25.0), (640, 360, 15.0)]
)
@pytest.mark.parametrize("display", ["tv", "mobile"])
def test_more_bitrate_never_lowers_mos(width: int, height: int, fps: float, display: str) -> None:
    """At fixed resolution and frame rate, MOS (and O.22) is non-decreasing in bitrate."""
    rates = [50.0 * 1.25**k for k in range(40)]  # 50 kbit/s … ~300 Mbit/s
    results = [
        video_quality(bitrate_kbps=b, width=width, height=height, framerate=fps, display=display)
        for b in rates
    ]
    for lo, hi in itertools.pairwise(results):
        assert hi.mos >= lo.mos
        assert hi.terms["o22_video_quality"] >= lo.terms["o22_video_quality"]


@pytest.mark.parametrize("duration", [10.0, 60.0, 300.0])
@pytest.mark.parametrize("total", [0.5, 5.0, 60.0, 600.0, 5000.0])
def test_more_stalls_never_raise_mos(duration: float, total: float) -> None:
    """With the same total stall time, more stalls never raise the MOS (1 … 40 stalls; floor f1 + f2)."""
    ms = [_session(stalls=n, stall_seconds=total, duration_s=duration) for n in range(1, 41)]
    assert all(b <= a for a, b in itertools.pairwise(ms))
    assert ms[-1] < ms[0] or ms[0] == pytest.approx(F1 + F2)  # strictly, unless already at the floor


@pytest.mark.parametrize("stalls", [1, 3, 10])
@pytest.mark.parametrize("initial", [0.0, 4.0])
def test_longer_stalls_never_raise_mos(stalls: int, initial: float) -> None:
    """With the same number of stalls, more stall time never raises the MOS, and any stall lowers it."""
    no_stall = _session(initial_delay_s=initial)
    ms = [
        _session(stalls=stalls, stall_seconds=s, initial_delay_s=initial) for s in (0.1, 1, 5, 20, 100, 1000)
    ]
    assert all(b <= a for a, b in itertools.pairwise(ms))
    assert ms[0] < no_stall


def test_longer_initial_delay_never_raises_mos() -> None:
    """A longer initial loading delay never raises the MOS; any delay lowers it."""
    ms = [_session(stalls=2, stall_seconds=3.0, initial_delay_s=d) for d in (0.0, 0.5, 2.0, 10.0, 60.0)]
    assert all(b < a for a, b in itertools.pairwise(ms))


def test_mos_always_within_bounds() -> None:
    """From the best to the worst inputs the MOS stays in [1, 5] and every term is finite."""
    grid = itertools.product(
        [1e-3, 100.0, 3000.0, 1e6],  # bitrate
        [(160, 90), (1280, 720), (3840, 2160)],
        [1.0, 15.0, 60.0],
        [(0, 0.0), (1, 0.1), (50, 1e5)],
        [0.0, 1e4],
        [1.0, 3600.0],
        ["tv", "mobile"],
    )
    for br, (w, h), fps, (n, s), init, dur, disp in grid:
        r = video_quality(
            bitrate_kbps=br,
            width=w,
            height=h,
            framerate=fps,
            stalls=n,
            stall_seconds=s,
            initial_delay_s=init,
            duration_s=dur,
            display=disp,
        )
        assert 1.0 <= r.mos <= 5.0
        assert all(math.isfinite(v) for v in r.terms.values())


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"bitrate_kbps": 0.0}, "bitrate_kbps"),
    ({"bitrate_kbps": -5.0}, "bitrate_kbps"),
    ({"bitrate_kbps": math.nan}, "bitrate_kbps"),
    ({"bitrate_kbps": "3000"}, "bitrate_kbps"),
    ({"width": 0}, "width"),
    ({"height": 720.5}, "height"),
    ({"height": True}, "height"),
    ({"framerate": 0.0}, "framerate"),
    ({"framerate": math.inf}, "framerate"),
    ({"stalls": -1}, "stalls"),
    ({"stall_seconds": -1.0, "stalls": 1}, "stall_seconds"),
    ({"stall_seconds": 3.0}, "stall_seconds"),  # stall time without stalls
    ({"stalls": 2}, "stall_seconds"),  # stalls without stall time
    ({"initial_delay_s": -0.1}, "initial_delay_s"),
    ({"duration_s": 0.0}, "duration_s"),
    ({"display": "cinema"}, "display"),
    ({"codec": "h265"}, "codec"),
    ({"bitrate_kbps": 1e-300}, "bitrate_kbps 1e-300 is below what P.1203.1 mode 0 can rate"),
    ({"stalls": 20_000_000, "stall_seconds": 5.0}, "stalls must be ≤ 10000"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_INPUTS)
def test_bad_input_raises_value_error_naming_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    """Every invalid or inconsistent input raises ValueError whose message names the parameter."""
    with pytest.raises(ValueError, match=name):
        _session(**kwargs)


def test_accepted_spellings() -> None:
    """H.264 spellings (h264, AVC, avc1) and display names in any case give the same result."""
    base = _session()
    assert _session(codec="AVC") == base
    assert _session(codec="avc1") == base
    assert _session(display="TV") == base
    assert _session(display="pc") == base


def test_cli_prints_indented_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`engine qoe video` prints the MOS (3 decimals), the model and the terms as indented JSON, exit 0."""
    argv = ["--bitrate-kbps", "2801.27587623", "--resolution", "1920x1080", "--fps", "30"]
    argv += ["--stalls", "1", "--stall-seconds", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("{\n  ")
    doc = orjson.loads(out)
    assert doc["mos"] == pytest.approx(4.202, abs=5e-4)
    assert doc["model"] == MODEL
    assert doc["terms"]["stall_events"] == 1.0
    assert doc["terms"]["o22_video_quality"] == pytest.approx(4.311, abs=1e-3)


CLI_ERRORS: list[tuple[list[str], str]] = [
    (["--resolution", "1920x1080", "--fps", "30"], "--bitrate-kbps"),  # missing required
    (["--bitrate-kbps", "3000", "--resolution", "1920*1080", "--fps", "30"], "WIDTHxHEIGHT"),
    (["--bitrate-kbps", "abc", "--resolution", "1920x1080", "--fps", "30"], "--bitrate-kbps"),
    (["--bitrate-kbps", "-1", "--resolution", "1920x1080", "--fps", "30"], "bitrate_kbps"),
    (["--bitrate-kbps", "3000", "--resolution", "0x1080", "--fps", "30"], "width"),
    (
        ["--bitrate-kbps", "3000", "--resolution", "1920x1080", "--fps", "30", "--stalls", "2"],
        "stall_seconds",
    ),
    (["--bitrate-kbps", "3000", "--resolution", "1920x1080", "--fps", "30", "--codec", "vp9"], "codec"),
    (["--bitrate-kbps", "3000", "--resolution", "1920x1080", "--fps", "30", "--display", "x"], "--display"),
]


@pytest.mark.parametrize(("argv", "message"), CLI_ERRORS)
def test_cli_bad_input_exits_2_with_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad usage or bad input: exit 2, nothing on stdout, the reason (naming the option) on stderr."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints the usage under the name `engine qoe video` and exits 0."""
    assert main(["--help"]) == 0
    assert "engine qoe video" in capsys.readouterr().out
