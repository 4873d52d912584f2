"""The core's state as one JSON document, and back: ``Pipeline.snapshot()`` / ``Pipeline.restore()``.

Restoring a snapshot into a pipeline built from the same topology and rulesets continues exactly as
the original would (same records, byte for byte). Each part dumps and loads its own state; every
rule form under ``forms``, by its name in the registry (a form the snapshot does not know starts
fresh; one the registry no longer has is ignored).

Formats: 4 (this one). 3 and 2, written before the forms shared one interface, kept the
correlator's state and the silences beside ``forms`` (``correlator``, ``silences``): they are read
too (``_before_forms``); 2 also kept an incident's acknowledgement time as RFC 3339 text, which
``engine.core.incident_state.load_incident`` reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.core.pipeline import Pipeline

SNAPSHOT_FORMAT = 4
SNAPSHOT_READS = (2, 3, SNAPSHOT_FORMAT)


def snapshot(p: Pipeline) -> bytes:
    state = {
        "format": SNAPSHOT_FORMAT,
        "clock": p.clock,
        "alarms": p.alarms.dump(),
        "incidents": p.incidents.dump(),
        **p.health.dump(),
        "kpis": p.kpis.dump(),
        "forms": p.forms.dump(),
        "quality": p.quality.dump(),
        "quarantine": p.quarantine.dump(),
        "event_watermark": p.times.watermark,
        "stats": p.stats.dump(),
    }
    return orjson.dumps(state)


def restore(p: Pipeline, blob: bytes) -> dict[str, int]:
    """Load a snapshot into a fresh pipeline. Re-asserts the correlation facts into durable-rules
    without applying what they match again. With a changed topology, the alarms of elements that
    no longer exist are dropped, and the incidents rooted at them resolve after the hold-down (as
    if their root cleared now); the counts are returned."""
    state = orjson.loads(blob)
    if state.get("format") not in SNAPSHOT_READS:
        raise EngineError(
            f"snapshot format {state.get('format')!r} is not {SNAPSHOT_FORMAT} (nor 2 or 3): cannot restore"
        )
    if state["format"] < SNAPSHOT_FORMAT:
        state = _before_forms(state)
    p.clock = state["clock"]
    gone = p.alarms.load(state["alarms"], keep=lambda ne: ne in p.topology)
    p.health.load(state)
    p.incidents.load(state["incidents"])
    p.forms.load(state["forms"])
    p.kpis.load(state["kpis"])
    p.quality.load(state["quality"])
    p.quarantine.load(state.get("quarantine", ()))
    root_removed = p.incidents.roots_removed(gone, p.clock) if gone else 0
    p.times.watermark = state.get("event_watermark", 0.0)
    p.stats.load(state["stats"])
    return {"alarms_dropped": len(gone), "incidents_root_removed": root_removed}


def _before_forms(state: dict[str, Any]) -> dict[str, Any]:
    """A format-2 or -3 snapshot with its forms in format 4's shape: the correlator's state and the
    silences were kept beside the other forms' (``correlator``, ``silences``), not under ``forms``.
    Its format stays, for the incidents' loader."""
    forms = {**state["forms"], "correlator": state["correlator"], "maintenance": state.get("silences", [])}
    return {**state, "forms": forms}
