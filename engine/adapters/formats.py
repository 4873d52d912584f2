"""Incident records rendered for receivers, and the webhook signature. Pure: no I/O, no clock.

``render(fmt, record, receiver)`` returns ``(body, content_type)`` for one incident record (see
README "Incidents") in one of the receiver formats:

* ``generic``: the record itself, JSON.
* ``tmf656``: a TM Forum ServiceProblem (TMF656 v4 field names; ``@type`` as v5 requires).
* ``tmf656-event``: the same ServiceProblem in a TMF656 v4 notification (``ServiceProblemCreateEvent``,
  ``…StateChangeEvent``, ``…AttributeValueChangeEvent``), as a TMF656 hub delivers it to a listener.
* ``pagerduty``: a PagerDuty Events API v2 event (trigger / acknowledge / resolve).
* ``alertmanager``: the Prometheus Alertmanager webhook payload, version 4, one alert.

docs/delivery.md has the field-by-field mapping tables; keep them in step with this module.

``sign`` and ``verify`` implement the webhook signature: ``sha256=`` + hex HMAC-SHA256 over
``f"{timestamp}.".encode() + body``, with the key the receiver's ``secret``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from engine.errors import EngineError
from engine.service.config import ReceiverSettings

JSON = "application/json"
ORIGINATING_SYSTEM = "soc-engine"
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt of a firing alert

# Priority (1 most urgent … 5) → PagerDuty severity; Alertmanager's `severity` label uses it too.
SEVERITY_OF_PRIORITY = {1: "critical", 2: "error", 3: "warning", 4: "info", 5: "info"}


class FormatError(EngineError, ValueError):
    """The record cannot be rendered in that format (unknown format, record missing a field)."""


def render(fmt: str, record: Mapping[str, Any], receiver: ReceiverSettings) -> tuple[bytes, str]:
    """The request body and its content type for ``record`` in format ``fmt``."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise FormatError(f"unknown format {fmt!r}; expected one of {', '.join(_RENDERERS)}")
    try:
        return orjson.dumps(renderer(record, receiver)), JSON
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"cannot render {record.get('incident_id')!r} as {fmt}: {exc!r}") from None


# -- generic ------------------------------------------------------------------------------------
def generic(record: Mapping[str, Any], receiver: ReceiverSettings) -> dict[str, Any]:
    return dict(record)


# -- TMF656 ServiceProblem ----------------------------------------------------------------------
def tmf656_status(record: Mapping[str, Any]) -> str:
    """``resolved`` → resolved; otherwise ``acknowledged`` once an operator took the incident, else
    ``pending`` (TMF656 has no "submitted"/"new" state: pending = waiting for someone to act)."""
    if record["event"] == "resolved":
        return "resolved"
    return "acknowledged" if record.get("acknowledged") else "pending"


def impact_importance(record: Mapping[str, Any]) -> str:
    """TMF656 impactImportanceFactor ("0" no impact … "100" worst): the priority score, which already
    weighs the service state (outage > degraded > at_risk), customers by tier, criticality and
    severity."""
    score = float(record.get("score") or 0.0)
    return str(max(0, min(100, round(score))))


def tmf656(record: Mapping[str, Any], receiver: ReceiverSettings) -> dict[str, Any]:
    root = record.get("root_cause") or {}
    impact = record.get("impact") or {}
    services: Mapping[str, int] = impact.get("services") or {}
    customers = impact.get("customers") or {}
    iid = record["incident_id"]
    event = record["event"]
    ne = root.get("ne_id")
    explanation = record.get("explanation") or []

    sp: dict[str, Any] = {
        "id": iid,
        "@type": "ServiceProblem",
        "name": _title(record),
        "description": explanation[0] if explanation else _title(record),
        "category": "customerImpact",
        "priority": int(record["priority"]),
        "status": tmf656_status(record),
        "statusChangeDate": record["time"],
        "statusChangeReason": _status_reason(record),
        "creationDate": record.get("opened_at") or record["time"],
        "lastUpdate": record["time"],
        "impactImportanceFactor": impact_importance(record),
        "affectedNumberOfServices": sum(int(n) for n in services.values()),
        "originatingSystem": ORIGINATING_SYSTEM,
        "originatorParty": {
            "id": ORIGINATING_SYSTEM,
            "name": "SOC correlation engine",
            "role": "originator",
            "@type": "RelatedParty",
            "@referredType": "Organization",
        },
        "reason": _reason(record),
    }
    if event == "resolved":
        sp["resolutionDate"] = record.get("resolved_at") or record["time"]
        if record.get("merged_into"):
            sp["parentProblem"] = [
                {"id": record["merged_into"], "@type": "ServiceProblemRef", "@referredType": "ServiceProblem"}
            ]
    if services:
        sp["affectedService"] = [
            {"id": kind, "name": kind, "@type": "ServiceRef", "@referredType": "Service"}
            for kind in sorted(services)
        ]
    affected = _affected_elements(record)
    if affected:
        sp["affectedResource"] = [_resource_ref(ne_id) for ne_id in affected]
    if ne:
        sp["rootCauseResource"] = [_resource_ref(ne, root.get("element_type"))]
    if root.get("site"):
        sp["affectedLocation"] = [
            {
                "id": root["site"],
                "name": root["site"],
                "role": "rootCauseSite",
                "@type": "RelatedPlace",
                "@referredType": "GeographicSite",
            }
        ]
    if record.get("alarms"):
        sp["underlyingAlarm"] = [
            {"id": key, "@type": "ResourceAlarmRef", "@referredType": "Alarm"} for key in record["alarms"]
        ]
    chars = [
        _char("incidentVersion", int(record["version"])),
        _char("incidentEvent", event),
        _char("serviceState", record.get("state")),
        _char("score", float(record.get("score") or 0.0)),
        _char("rootCauseAlarm", root.get("alarm_id")),
        _char("probableCause", root.get("probable_cause")),
        _char("correlationRule", root.get("rule")),
        _char("suppressedAlarms", len(record.get("suppressed") or [])),
        _char("affectedElements", int(impact.get("elements") or 0)),
    ]
    chars += [_char(f"affectedServices.{kind}", int(services[kind])) for kind in sorted(services)]
    if record.get("resolution"):
        chars.append(_char("resolution", record["resolution"]))
    if record.get("acknowledged"):
        ack = record["acknowledged"]
        chars.append(_char("acknowledgedBy", ack.get("by")))
    sp["characteristic"] = [c for c in chars if c["value"] is not None]
    pattern = [_char("customers.total", int(customers.get("total") or 0))]
    by_tier: Mapping[str, int] = customers.get("by_tier") or {}
    pattern += [_char(f"customers.{tier}", int(by_tier[tier])) for tier in sorted(by_tier)]
    by_state: Mapping[str, Mapping[str, Any]] = impact.get("by_state") or {}
    pattern += [
        _char(f"customers.{state}", int(by_state[state].get("customers") or 0)) for state in sorted(by_state)
    ]
    sp["impactPattern"] = {
        "description": "customers affected: total, by tier, and by service state (outage, degraded, at_risk)",
        "characteristic": pattern,
        "@type": "ImpactPattern",
    }
    return sp


def tmf656_event_type(record: Mapping[str, Any]) -> str:
    """``opened`` → Create; ``resolved`` and the update an acknowledgement makes (status pending →
    acknowledged) → StateChange; any other ``updated`` → AttributeValueChange."""
    if record["event"] == "opened":
        return "ServiceProblemCreateEvent"
    ack = record.get("acknowledged")
    if record["event"] == "resolved" or (ack and ack.get("at") == record["time"]):
        return "ServiceProblemStateChangeEvent"
    return "ServiceProblemAttributeValueChangeEvent"


def tmf656_event(record: Mapping[str, Any], receiver: ReceiverSettings) -> dict[str, Any]:
    """A TMF656 v4 notification carrying the ServiceProblem; ``eventId`` is stable per record
    (``<incident_id>:<version>``), so a receiver can drop a redelivery."""
    sp = tmf656(record, receiver)
    return {
        "eventId": f"{record['incident_id']}:{record['version']}",
        "eventTime": record["time"],
        "eventType": tmf656_event_type(record),
        "correlationId": record["incident_id"],
        "domain": "serviceProblemManagement",
        "title": sp["name"],
        "description": sp["statusChangeReason"],
        "priority": str(sp["priority"]),
        "timeOcurred": record["time"],  # sic: the v4 swagger's spelling
        "event": {"serviceProblem": sp},
    }


def _char(name: str, value: Any) -> dict[str, Any]:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(value), "object")
    return {"name": name, "value": value, "valueType": kind, "@type": "Characteristic"}


def _resource_ref(ne_id: str, element_type: str | None = None) -> dict[str, Any]:
    name = f"{ne_id} ({element_type})" if element_type else ne_id
    return {"id": ne_id, "name": name, "@type": "ResourceRef", "@referredType": "Resource"}


def _affected_elements(record: Mapping[str, Any]) -> list[str]:
    """The root element, then the elements of the suppressed symptoms, each once."""
    seen: dict[str, None] = {}
    root_ne = (record.get("root_cause") or {}).get("ne_id")
    if root_ne:
        seen[root_ne] = None
    for s in record.get("suppressed") or []:
        if s.get("ne_id"):
            seen[s["ne_id"]] = None
    return list(seen)


def _status_reason(record: Mapping[str, Any]) -> str:
    event = record["event"]
    if event == "resolved":
        if record.get("resolution") == "merged":
            return f"merged into {record.get('merged_into')}"
        return "root cause cleared"
    if record.get("acknowledged"):
        ack = record["acknowledged"]
        note = f": {ack['note']}" if ack.get("note") else ""
        return f"acknowledged by {ack.get('by')}{note}"
    return "opened by alarm correlation" if event == "opened" else "impact or priority changed"


def _reason(record: Mapping[str, Any]) -> str:
    root = record.get("root_cause") or {}
    if not root.get("probable_cause"):
        return "Unknown"
    where = ", ".join(
        x
        for x in (
            root.get("element_type"),
            f"site {root['site']}" if root.get("site") else None,
            root.get("region"),
        )
        if x
    )
    text = f"{root['probable_cause']} ({root.get('severity')}) on {root.get('ne_id')}"
    return f"{text} ({where})" if where else text


# -- PagerDuty Events API v2 --------------------------------------------------------------------
def pagerduty_action(record: Mapping[str, Any]) -> str:
    """resolved → resolve; an updated record carrying ``acknowledged`` → acknowledge; else trigger."""
    if record["event"] == "resolved":
        return "resolve"
    if record["event"] == "updated" and record.get("acknowledged"):
        return "acknowledge"
    return "trigger"


def pagerduty(record: Mapping[str, Any], receiver: ReceiverSettings) -> dict[str, Any]:
    root = record.get("root_cause") or {}
    impact = record.get("impact") or {}
    customers = impact.get("customers") or {}
    priority = int(record["priority"])
    details: dict[str, Any] = {
        "incident_id": record["incident_id"],
        "version": record["version"],
        "event": record["event"],
        "priority": f"P{priority}",
        "score": record.get("score"),
        "state": record.get("state"),
        "root_alarm": root.get("alarm_id"),
        "customers": customers.get("total", 0),
        "customers_by_tier": customers.get("by_tier", {}),
        "services": impact.get("services", {}),
        "elements": impact.get("elements", 0),
        "suppressed_alarms": len(record.get("suppressed") or []),
        "opened_at": record.get("opened_at"),
        "explanation": list(record.get("explanation") or []),
    }
    for key in ("resolved_at", "resolution", "merged_into", "acknowledged"):
        if record.get(key):
            details[key] = record[key]
    payload: dict[str, Any] = {
        "summary": _title(record)[:1024],
        "source": root.get("ne_id") or ORIGINATING_SYSTEM,
        "severity": SEVERITY_OF_PRIORITY.get(priority, "info"),
        "timestamp": record["time"],
        "custom_details": details,
    }
    for key, value in (
        ("component", root.get("ne_id")),
        ("group", root.get("site") or root.get("region")),
        ("class", root.get("probable_cause")),
    ):
        if value:
            payload[key] = value
    return {
        "routing_key": receiver.routing_key,
        "event_action": pagerduty_action(record),
        "dedup_key": record["incident_id"],
        "payload": payload,
        "client": ORIGINATING_SYSTEM,
    }


# -- Alertmanager webhook v4 --------------------------------------------------------------------
def alertmanager(record: Mapping[str, Any], receiver: ReceiverSettings) -> dict[str, Any]:
    root = record.get("root_cause") or {}
    iid = record["incident_id"]
    priority = int(record["priority"])
    resolved = record["event"] == "resolved"
    status = "resolved" if resolved else "firing"
    labels = {
        "alertname": "SOCIncident",
        "incident_id": iid,
        "priority": f"P{priority}",
        "severity": SEVERITY_OF_PRIORITY.get(priority, "info"),
        "state": str(record.get("state")),
        "ne_id": root.get("ne_id"),
        "probable_cause": root.get("probable_cause"),
        "element_type": root.get("element_type"),
        "site": root.get("site"),
        "region": root.get("region"),
    }
    labels = {k: str(v) for k, v in labels.items() if v is not None}
    annotations = {
        "summary": _title(record),
        "description": "\n".join(record.get("explanation") or []),
    }
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": record.get("opened_at") or record["time"],
        "endsAt": (record.get("resolved_at") or record["time"]) if resolved else ALERTMANAGER_ZERO_TIME,
        "generatorURL": "",
        "fingerprint": hashlib.blake2b(iid.encode(), digest_size=8).hexdigest(),
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{incident_id="{iid}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver.name,
        "groupLabels": {"incident_id": iid},
        "commonLabels": dict(labels),
        "commonAnnotations": dict(annotations),
        "externalURL": "",
        "alerts": [alert],
    }


def _title(record: Mapping[str, Any]) -> str:
    """One line: P1 outage: lossOfSignal on agg-3 (site-d), 1000 customers [resolved]."""
    root = record.get("root_cause") or {}
    impact = record.get("impact") or {}
    customers = (impact.get("customers") or {}).get("total", 0)
    site = f" ({root['site']})" if root.get("site") else ""
    text = (
        f"P{record['priority']} {record.get('state')}: {root.get('probable_cause') or 'unknown cause'}"
        f" on {root.get('ne_id') or 'unknown element'}{site}, {customers} customer(s)"
    )
    return f"{text} [resolved]" if record["event"] == "resolved" else text


_RENDERERS: dict[str, Callable[[Mapping[str, Any], ReceiverSettings], dict[str, Any]]] = {
    "generic": generic,
    "tmf656": tmf656,
    "tmf656-event": tmf656_event,
    "pagerduty": pagerduty,
    "alertmanager": alertmanager,
}


# -- signature ----------------------------------------------------------------------------------
def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: int | str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance: float = 300,
) -> bool:
    """True if ``signature`` (the X-SOC-Signature header) signs ``body`` at ``timestamp`` (the
    X-SOC-Timestamp header, Unix seconds) and that timestamp is within ``tolerance`` seconds of
    ``now``. The comparison is constant-time; a malformed timestamp is False."""
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), signature.strip().encode())
