"""``engine qoe voip`` and ``engine qoe video``: the command lines of the QoE models.

The models themselves (``engine.core.qoe.emodel``, ``engine.core.qoe.video``) are pure functions of
the core; this module parses arguments, calls them and prints the result as indented JSON.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

import orjson

from engine.core.qoe.emodel import codecs, voip_quality
from engine.core.qoe.video import DISPLAYS, video_quality
from engine.service.cliargs import Parser

VOIP_PROG = "engine qoe voip"
VOIP_DESCRIPTION = "ITU-T G.107 E-model: R factor and MOS of a VoIP call from delay, jitter, loss, codec."


def add_voip_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``engine qoe voip``, for a parser of the caller's."""
    p.add_argument("--delay-ms", type=float, required=True, help="one-way network delay, ms")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="RFC 3550 interarrival jitter, ms")
    p.add_argument("--loss-pct", type=float, default=0.0, help="network packet loss, per cent")
    p.add_argument("--codec", default="G.711", help=f"one of {', '.join(codecs())} (default G.711)")
    p.add_argument(
        "--plc", action=argparse.BooleanOptionalAction, default=True, help="packet-loss concealment"
    )
    p.add_argument("--burst-r", type=float, default=1.0, help="G.107 burst ratio, 1..8 (1 = random)")
    p.add_argument("--advantage", type=float, default=0.0, help="G.107 advantage factor A, 0..20")
    p.add_argument("--jitter-buffer-factor", type=float, default=2.0, help="buffer = factor × jitter")
    p.add_argument("--echo-delay-ms", type=float, default=None, help="talker echo delay T (default Ta)")
    p.add_argument("--round-trip-ms", type=float, default=None, help="4-wire round trip Tr (default 2·Ta)")


def voip_main(argv: Sequence[str] | None = None) -> int:
    """``engine qoe voip``: print the E-model result as indented JSON; 2 on bad arguments."""
    parser = Parser(prog=VOIP_PROG, description=VOIP_DESCRIPTION)
    add_voip_arguments(parser)
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # the parser has printed the usage error (2) or the help (0)
        return exc.code if isinstance(exc.code, int) else 2
    return run_voip(args)


def run_voip(args: argparse.Namespace) -> int:
    """Compute and print the E-model result for parsed ``add_arguments`` options; 2 on bad values."""
    try:
        result = voip_quality(
            delay_ms=args.delay_ms,
            jitter_ms=args.jitter_ms,
            loss_pct=args.loss_pct,
            codec=args.codec,
            plc=args.plc,
            burst_r=args.burst_r,
            advantage=args.advantage,
            jitter_buffer_factor=args.jitter_buffer_factor,
            echo_delay_ms=args.echo_delay_ms,
            round_trip_ms=args.round_trip_ms,
        )
    except ValueError as exc:
        sys.stderr.write(f"{VOIP_PROG}: error: {exc}\n")
        return 2
    sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


_RESOLUTION = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def _resolution(text: str) -> tuple[int, int]:
    m = _RESOLUTION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}")
    return int(m.group(1)), int(m.group(2))


VIDEO_PROG = "engine qoe video"
VIDEO_DESCRIPTION = (
    "Video/IPTV session MOS (1-5) from probe figures: ITU-T P.1203.1 mode 0 + P.1203.3 "
    "stalling integration (parametric part). See docs/qoe-video.md."
)


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``engine qoe video``, for a parser of the caller's."""
    p.add_argument("--bitrate-kbps", type=float, required=True, metavar="KBPS", help="video bitrate")
    p.add_argument("--resolution", type=_resolution, required=True, metavar="WxH", help="coding resolution")
    p.add_argument("--fps", type=float, required=True, help="frame rate")
    p.add_argument("--stalls", type=int, default=0, metavar="N", help="rebuffering events (default 0)")
    p.add_argument("--stall-seconds", type=float, default=0.0, metavar="S", help="their total length")
    p.add_argument("--initial-delay", type=float, default=0.0, metavar="S", help="initial loading delay")
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="media duration (default 60)")
    p.add_argument("--display", default="tv", choices=sorted(DISPLAYS), help="viewing device (default tv)")
    p.add_argument("--codec", default="h264", help="video codec (H.264 only)")


def build_video_parser() -> argparse.ArgumentParser:
    p = Parser(prog=VIDEO_PROG, description=VIDEO_DESCRIPTION)
    add_video_arguments(p)
    return p


def video_main(argv: Sequence[str] | None = None) -> int:
    """``engine qoe video …``: print the result as indented JSON; 2 on bad usage or input."""
    parser = build_video_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (2) or the help (0)
        return exc.code if isinstance(exc.code, int) else 2
    return run_video(args)


def run_video(args: argparse.Namespace) -> int:
    """Compute and print the result for parsed ``add_arguments`` options; 2 on bad values."""
    width, height = args.resolution
    try:
        result = video_quality(
            bitrate_kbps=args.bitrate_kbps,
            width=width,
            height=height,
            framerate=args.fps,
            stalls=args.stalls,
            stall_seconds=args.stall_seconds,
            initial_delay_s=args.initial_delay,
            duration_s=args.duration,
            display=args.display,
            codec=args.codec,
        )
    except ValueError as exc:
        print(f"{VIDEO_PROG}: error: {exc}", file=sys.stderr)
        return 2
    out = {
        "mos": round(result.mos, 3),
        "model": result.model,
        "terms": {k: round(v, 4) for k, v in result.terms.items()},
    }
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
