"""Key quality indicators (KQIs) per service type, over sliding windows of KPI samples.

A KQI (ITU-T E.800 sense: a quality characteristic as the user of a service perceives it) is one metric
of the probes' KPI samples, aggregated over a sliding window and compared with a target:

* ``KqiDef``: name, E.800-style category (accessibility, retainability, integrity, availability), the
  sample metric, the aggregate (mean, max, min, p50/p95/p99 by the nearest-rank method, last, or a
  ratio of two summed metrics), the window, the objective direction, the target and an optional limit.
* ``KqiCatalog``: the KQIs of every service type; ``KqiCatalog.defaults()`` holds the ITU-T G.1010 /
  G.114 / G.107 figures and the operator conventions documented in ``docs/kqi.md``.
* ``KqiWindows``: bounded, time-sorted sample series per (scope, metric) and their evaluation into
  ``KqiState`` s. A scope is an element's samples of one service (``ne:<id>/<service type>``) or a
  customer's service path (``path:<customer>/<service type>``).
* ``derived_mos``: the G.107 E-model MOS of a voice sample that carries delay (jitter, loss) but no MOS.

The package: ``catalog`` (definitions and defaults), ``windows`` (sample series, aggregates,
evaluation, persistence), ``mos`` (the derived MOS of samples that report none).

Pure: no clock reads, no I/O; ``now`` (epoch seconds) is always passed in. Deterministic: the same
observations give the same states, dumps and records.
"""

from __future__ import annotations

from engine.core.kqi.catalog import (
    AGGREGATES,
    CATEGORIES,
    Aggregate,
    Category,
    KqiCatalog,
    KqiDef,
    ServiceKqis,
    Status,
)
from engine.core.kqi.mos import (
    VIDEO_SERVICES,
    VOICE_SERVICES,
    derived_mos,
    derived_video_mos,
    with_derived_mos,
)
from engine.core.kqi.windows import KqiState, KqiWindows, aggregate, element_scope, mean, path_scope, ratio

__all__ = [
    "AGGREGATES",
    "CATEGORIES",
    "VIDEO_SERVICES",
    "VOICE_SERVICES",
    "Aggregate",
    "Category",
    "KqiCatalog",
    "KqiDef",
    "KqiState",
    "KqiWindows",
    "ServiceKqis",
    "Status",
    "aggregate",
    "derived_mos",
    "derived_video_mos",
    "element_scope",
    "mean",
    "path_scope",
    "ratio",
    "with_derived_mos",
]
