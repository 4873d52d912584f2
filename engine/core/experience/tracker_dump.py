"""The pydantic model of an ``SlaTracker`` dump (``SlaTracker.load`` validates one with it).

Kept apart from ``tracker``, which the build compiles with mypyc: a module that declares a pydantic
model stays interpreted (``engine.compiled.NOT_COMPILED``), and the tracker's per-event queries
(``next_breach``, 3 calls per event in the replay) run compiled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from engine.core.experience.sla import BreachKind

__all__ = ["_Dump"]  # for ``tracker`` alone; the names as they were (pydantic words its errors with them)


class _DumpModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _DumpSubject(_DumpModel):
    tier: str
    first_seen: float
    last: float
    down_since: float | None
    intervals: list[list[float]]
    availability_breached: bool
    time_to_restore_breached: bool

    @field_validator("intervals")
    @classmethod
    def _pairs(cls, v: list[list[float]]) -> list[list[float]]:
        if any(len(pair) != 2 or pair[0] > pair[1] for pair in v):
            raise ValueError("each interval must be [start, end] with start ≤ end")
        return v


class _DumpMos(_DumpModel):
    at: float
    mos: float
    below: bool


class _DumpBreach(_DumpModel):
    subject: str
    tier: str
    kind: BreachKind
    at: float
    detail: dict[str, float]


class _Dump(_DumpModel):
    version: Literal[2]
    subjects: dict[str, _DumpSubject]
    mos: dict[str, _DumpMos]
    breaches: list[_DumpBreach]
