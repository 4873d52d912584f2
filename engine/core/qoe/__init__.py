"""Quality-of-experience models (pure computations, no I/O). Voice: the ITU-T G.107 E-model (``emodel``)."""

from __future__ import annotations

from engine.core.qoe.emodel import (
    EModelResult,
    G107Params,
    G107Terms,
    codecs,
    e_model,
    mos_to_r,
    r_to_mos,
    voip_quality,
)

__all__ = [
    "EModelResult",
    "G107Params",
    "G107Terms",
    "codecs",
    "e_model",
    "mos_to_r",
    "r_to_mos",
    "voip_quality",
]
