"""Derived MOS of KPI samples that report none: the G.107 E-model's for a voice sample with delay
(``derived_mos``), P.1203 mode 0's for a video sample with bitrate, height and frame rate
(``derived_video_mos``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.core.qoe.emodel import voip_quality
from engine.core.qoe.video import video_quality

__all__ = [
    "VIDEO_METRICS",
    "VIDEO_SERVICES",
    "VOICE_SERVICES",
    "derived_mos",
    "derived_video_mos",
    "with_derived_mos",
]

# Service types whose samples get an E-model MOS when they carry delay but no MOS (``observe_sample``).
VOICE_SERVICES: frozenset[str] = frozenset({"voice", "voip"})
# Service types whose samples get a P.1203 mode 0 MOS when they carry bitrate, height and frame rate
# but no MOS (``derived_video_mos``).
VIDEO_SERVICES: frozenset[str] = frozenset({"video", "iptv"})
VIDEO_METRICS = ("bitrate_kbps", "height", "framerate")  # what a video sample needs for a derived MOS


def with_derived_mos(
    metrics: Mapping[str, float],
    service: str | None,
    *,
    voice: frozenset[str] = VOICE_SERVICES,
    codec: str = "G.711",
) -> Mapping[str, float]:
    """``metrics`` with a ``mos`` added when the sample reports none and one can be derived: the
    G.107 E-model's for a service in ``voice`` (``derived_mos``), P.1203 mode 0's for one in
    ``VIDEO_SERVICES`` (``derived_video_mos``); ``metrics`` itself otherwise."""
    if "mos" in metrics:
        return metrics
    if service in voice:
        mos = derived_mos(metrics, codec)
    elif service in VIDEO_SERVICES:
        mos = derived_video_mos(metrics)
    else:
        return metrics
    return metrics if mos is None else {**metrics, "mos": mos}


_MAX_DELAY_MS = 10_000.0  # the range engine.core.qoe.emodel.voip_quality accepts; MOS is 1 long before


def derived_mos(metrics: Mapping[str, float], codec: str = "G.711") -> float | None:
    """E-model (ITU-T G.107) MOS of a voice sample from ``latency_ms`` and optional ``jitter_ms`` and
    ``loss_pct``, with ``engine.core.qoe.emodel.voip_quality``'s defaults: every other G.107 parameter at
    its default, packet-loss concealment on, random loss, and a fixed de-jitter buffer of 2 × jitter
    that adds its size to the delay and loses the Gaussian tail beyond it (1.2 %).

    None when latency is missing or any of the three is negative or not finite. Delay and jitter above
    10 s are taken as 10 s and loss above 100 % as 100 % (the MOS is 1 there anyway). An unknown codec
    raises ``ValueError``."""
    latency = metrics.get("latency_ms")
    if latency is None:
        return None
    jitter = metrics.get("jitter_ms", 0.0)
    loss = metrics.get("loss_pct", 0.0)
    if not all(math.isfinite(x) and x >= 0.0 for x in (latency, jitter, loss)):
        return None
    result = voip_quality(
        delay_ms=min(latency, _MAX_DELAY_MS),
        jitter_ms=min(jitter, _MAX_DELAY_MS),
        loss_pct=min(loss, 100.0),
        codec=codec,
    )
    return result.mos


# ------------------------------------------------------------------------------------------ video MOS


def derived_video_mos(metrics: Mapping[str, float]) -> float | None:
    """ITU-T P.1203 mode 0 session MOS (``engine.core.qoe.video.video_quality``, docs/qoe-video.md) of a
    video sample that reports ``bitrate_kbps``, ``height`` and ``framerate`` (optional: ``width``,
    default 16:9 of the height; ``stalls`` and ``stall_seconds``, the rebuffering events of the
    measured period and their total length; ``initial_delay_s``; ``duration_s``, default 60).

    None when a required metric is missing or the values are outside the model (it raises
    ``ValueError`` for them: a negative bitrate, a fractional stall count, stalls without time…)."""
    if any(m not in metrics for m in VIDEO_METRICS):
        return None
    height = metrics["height"]
    width = metrics.get("width", round(height * 16 / 9))
    stalls = metrics.get("stalls", 0.0)
    if not all(float(x).is_integer() for x in (width, height, stalls)):
        return None
    try:
        return video_quality(
            bitrate_kbps=metrics["bitrate_kbps"],
            width=int(width),
            height=int(height),
            framerate=metrics["framerate"],
            stalls=int(stalls),
            stall_seconds=metrics.get("stall_seconds", 0.0),
            initial_delay_s=metrics.get("initial_delay_s", 0.0),
            duration_s=metrics.get("duration_s", 60.0),
        ).mos
    except ValueError:
        return None
