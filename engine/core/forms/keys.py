"""Key fields of the stateful forms (``by`` of group and threshold, ``equal`` of inhibit and pair)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.core.alarms import ActiveAlarm
from engine.model.topology import Topology


def key_of(alarm: ActiveAlarm, fields: Sequence[str], topology: Topology) -> tuple[str, ...]:
    """The values of ``fields`` for an alarm (element fields from the topology; absent → "")."""
    el = topology.element(alarm.ne_id)
    out: list[str] = []
    for f in fields:
        if f == "element_type":
            out.append(el.type)
        elif f == "site":
            out.append(el.site or "")
        elif f == "region":
            out.append(el.region or "")
        else:
            value = getattr(alarm, f)
            out.append("" if value is None else str(value))
    return tuple(out)


def describe(fields: Sequence[str], values: Sequence[str]) -> str:
    """``site=s1, probable_cause=x`` (or ``any`` for an empty key)."""
    return ", ".join(f"{f}={v or '-'}" for f, v in zip(fields, values, strict=True)) or "any"


def scope_id(values: Sequence[str]) -> str:
    """A key as one identifier fragment, for synthetic alarm ids."""
    return "|".join(values) if values else "*"
