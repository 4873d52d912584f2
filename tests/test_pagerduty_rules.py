"""Every PagerDuty Events API v2 event the engine sends, checked field by field against the rules of
PagerDuty's documentation (developer.pagerduty.com, "Send an Alert Event" / "Events API v2
Overview"). No licensed copy of PagerDuty's schema is available, so the rules are written out here,
one function, each with the documented limit it enforces:

- top level: ``routing_key`` (required, a non-empty string: the integration key), ``event_action``
  (required: ``trigger``, ``acknowledge`` or ``resolve``), ``dedup_key`` (a string of at most 255
  characters; required for acknowledge and resolve), ``client``/``client_url`` (optional strings),
  ``images``/``links`` (optional arrays), nothing else;
- ``payload`` (required for trigger): ``summary`` (required, 1…1024 characters), ``source``
  (required, non-empty), ``severity`` (required: ``critical``, ``error``, ``warning``, ``info``),
  ``timestamp`` (optional, ISO 8601), ``component``/``group``/``class`` (optional strings),
  ``custom_details`` (optional object), nothing else;
- an incident's acknowledge and resolve carry the dedup_key its trigger had.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, alarm
from engine.adapters.formats import render
from engine.service.config import ReceiverSettings
from tests.harness import run
from tests.test_formats import NAMES, record

PAGER = ReceiverSettings(
    name="pd", url="http://127.0.0.1:9/pd", format="pagerduty", routing_key="0123456789abcdef0123456789abcdef"
)
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
TOP = {"routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "images", "links"}
PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


def violations(event: dict[str, Any]) -> list[str]:
    """Where an Events API v2 event breaks the documented rules (empty: it conforms)."""
    out = [f"unknown field {k!r}" for k in sorted(set(event) - TOP)]
    key = event.get("routing_key")
    if not isinstance(key, str) or not key:
        out.append("routing_key: required, a non-empty string")
    action = event.get("event_action")
    if action not in ACTIONS:
        out.append(f"event_action: {action!r} not one of {ACTIONS}")
    dedup = event.get("dedup_key")
    if dedup is None and action in ("acknowledge", "resolve"):
        out.append(f"dedup_key: required for {action}")
    if dedup is not None and (not isinstance(dedup, str) or not 1 <= len(dedup) <= 255):
        out.append("dedup_key: a string of 1…255 characters")
    for name in ("client", "client_url"):
        if name in event and not isinstance(event[name], str):
            out.append(f"{name}: a string")
    for name in ("images", "links"):
        if name in event and not isinstance(event[name], list):
            out.append(f"{name}: an array")
    payload = event.get("payload")
    if payload is None:
        if action == "trigger":
            out.append("payload: required for trigger")
        return out
    if not isinstance(payload, dict):
        return [*out, "payload: an object"]
    out += [f"payload: unknown field {k!r}" for k in sorted(set(payload) - PAYLOAD)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
        out.append("payload.summary: required, 1…1024 characters")
    source = payload.get("source")
    if not isinstance(source, str) or not source:
        out.append("payload.source: required, non-empty")
    if payload.get("severity") not in SEVERITIES:
        out.append(f"payload.severity: {payload.get('severity')!r} not one of {SEVERITIES}")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            out.append(f"payload.timestamp: not ISO 8601: {payload['timestamp']!r}")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            out.append(f"payload.{name}: a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        out.append("payload.custom_details: an object")
    return out


def event_of(rec: dict[str, Any]) -> dict[str, Any]:
    raw, _ = render("pagerduty", rec, PAGER)
    parsed: dict[str, Any] = orjson.loads(raw)
    return parsed


@pytest.mark.parametrize("name", NAMES)
def test_every_event_conforms(name: str) -> None:
    """The event of every kind of record (opened, updated, acknowledged, resolved, merged, without
    customers, at risk) follows every documented rule."""
    assert violations(event_of(record(name))) == []


def test_the_checker_catches_each_rule() -> None:
    """The checker is not vacuous: each rule, broken on purpose, is reported."""
    good = event_of(record("opened"))
    cases: dict[str, Callable[[dict[str, Any]], object]] = {
        "routing_key": lambda e: e.update(routing_key=""),
        "event_action": lambda e: e.update(event_action="escalate"),
        "dedup_key": lambda e: e.update(dedup_key="x" * 256),
        "payload.summary": lambda e: e["payload"].update(summary="x" * 1025),
        "payload.source": lambda e: e["payload"].pop("source"),
        "payload.severity": lambda e: e["payload"].update(severity="major"),
        "payload.timestamp": lambda e: e["payload"].update(timestamp="yesterday"),
        "unknown field": lambda e: e.update(priority=1),
        "payload: required": lambda e: e.pop("payload"),
    }
    for rule, breaks in cases.items():
        bad = copy.deepcopy(good)
        breaks(bad)
        assert any(v.startswith(rule) for v in violations(bad)), rule


def test_long_texts_stay_within_the_limits() -> None:
    """A summary built from a very long probable cause and element name is cut to 1024 characters;
    the dedup key (the incident id) stays within 255 however long the root's names are."""
    rec = record("opened")
    rec["root_cause"] = dict(rec["root_cause"], probable_cause="p" * 3000, ne_id="n" * 3000)
    event = event_of(rec)
    assert violations(event) == []
    assert len(event["payload"]["summary"]) == 1024


def test_trigger_acknowledge_resolve_share_the_dedup_key() -> None:
    """One incident's life as PagerDuty sees it: trigger (opened, updated), acknowledge (the
    operator's acknowledgement), resolve (the root clears): one dedup_key throughout, so they land
    on one PagerDuty incident; every event conforms."""
    lines = [alarm("agg-1", "lossOfSignal", 0, "critical"), alarm("agg-2", "lossOfSignal", 60, "critical")]
    live = run(lines)
    assert live.pipeline is not None
    first = live.records[0]
    acked = live.pipeline.acknowledge(first["incident_id"], "alice", "on it", T0 + 120)
    assert acked is not None
    p = live.pipeline
    t = p.clock + 1
    resolved = []
    for ne in ("agg-2", "agg-1"):
        clear = alarm(ne, "lossOfSignal", 0, "cleared")
        resolved += p.feed(clear["topic"], {**clear["payload"], "event_time": t}, t).records
    resolved += p.advance_to(t + 3600).records
    later = [r.to_wire() for r in [acked, *resolved]]
    records = [r for r in [*live.records, *later] if r["incident_id"] == first["incident_id"]]
    events = [event_of(r) for r in records]
    assert events[0]["event_action"] == "trigger"
    assert [e["event_action"] for e in events][-2:] == ["acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {first["incident_id"]}
    assert [violations(e) for e in events] == [[] for _ in events]
