"""Prometheus / Alertmanager alerts in: one postable alert → one native alarm payload.

Prometheus posts a JSON list of alerts to ``/api/v2/alerts``::

    {"labels": {"alertname": "InstanceDown", "instance": "olt-7:9100", "severity": "critical"},
     "annotations": {"summary": "olt-7 is down"},
     "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:04:00Z",
     "generatorURL": "http://prometheus:9090/graph?..."}

``alert_to_alarm`` maps it onto the engine's alarm vocabulary (docs/api.md has the table). The
mapping is lenient and never raises: what it cannot map it leaves out or passes through, and the
core's validation dead-letters the result with the field and the reason, exactly as for an alarm
sent over MQTT. One odd alert thus never costs Prometheus the rest of its batch.

The alarm's identity is the label set, as in Alertmanager: ``alarm_id`` is ``am:`` and the first 16
hex digits of the SHA-256 of the sorted labels. Prometheus re-sends a firing alert with an
``endsAt`` a few minutes ahead; once ``endsAt`` is past (≤ now) the alert is resolved, and becomes a
clear at ``endsAt``. Go's zero time (``0001-01-01T00:00:00Z``), which Alertmanager uses for "unset",
counts as unset for both times. Pure: ``now`` is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from engine.model.messages import EVENT_TYPES
from engine.model.timeutil import BeforeEpoch, parse_time

__all__ = ["SEVERITY_MAP", "alert_to_alarm", "fingerprint", "instance_host"]

SEVERITY_MAP: Final[Mapping[str, str]] = {
    "critical": "critical",
    "error": "major",
    "major": "major",
    "warning": "warning",
    "minor": "minor",
    "info": "indeterminate",
    "none": "indeterminate",
    "indeterminate": "indeterminate",
}
DEFAULT_SEVERITY: Final = "major"  # no severity label, or one not in SEVERITY_MAP
DEFAULT_EVENT_TYPE: Final = "qualityOfServiceAlarm"
MAX_SPECIFIC_PROBLEM: Final = 256  # engine.model.messages.Alarm limits
MAX_TEXT: Final = 4096

# Labels that become fields of their own, so they are left out of the specific_problem string.
_MAPPED: Final = frozenset({"alertname", "severity", "event_type", "specific_problem", "ne_id"})
_EVENT_TYPES: Final = {t.lower(): t for t in EVENT_TYPES}


def _labels(alert: Mapping[str, Any]) -> dict[str, str]:
    raw = alert.get("labels")
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in raw.items()}


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits of SHA-256 over the sorted label pairs (JSON-encoded, so no two sets collide)."""
    canonical = orjson.dumps(sorted(labels.items()))
    return hashlib.sha256(canonical).hexdigest()[:16]


def instance_host(instance: str) -> str:
    """``host:9100`` → ``host``, ``[::1]:9100`` → ``::1``, ``https://host:8443/x`` → ``host``."""
    if "://" in instance:
        return urlsplit(instance).hostname or instance
    if instance.startswith("["):
        end = instance.find("]")
        return instance[1:end] if end > 0 else instance
    host, sep, port = instance.rpartition(":")
    if sep and host and ":" not in host and port.isdigit():
        return host
    return instance


def _element(labels: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(ne_id, the label it came from): ``ne_id``, else ``instance`` without its port, else ``job``."""
    if labels.get("ne_id"):
        return labels["ne_id"], "ne_id"
    if labels.get("instance"):
        return instance_host(labels["instance"]), "instance"
    if labels.get("job"):
        return labels["job"], "job"
    return None, None


def _severity(labels: Mapping[str, str]) -> str:
    value = labels.get("severity", "").strip().lower()
    return SEVERITY_MAP.get(value, DEFAULT_SEVERITY)


def _event_type(labels: Mapping[str, str]) -> str:
    value = labels.get("event_type")
    if not value:
        return DEFAULT_EVENT_TYPE
    return _EVENT_TYPES.get(value.lower(), value)  # an unknown type is left for the core to refuse


def _specific_problem(labels: Mapping[str, str], ne_label: str | None) -> str | None:
    if labels.get("specific_problem"):
        return labels["specific_problem"]
    rest = sorted((k, v) for k, v in labels.items() if k not in _MAPPED and k != ne_label)
    if not rest:
        return None
    text = ",".join(f"{k}={v}" for k, v in rest)
    if len(text) > MAX_SPECIFIC_PROBLEM:  # keep it valid and still distinct
        text = text[: MAX_SPECIFIC_PROBLEM - 17] + "~" + fingerprint(dict(rest))
    return text


def _time(value: object) -> object:
    """Epoch seconds; ``None`` when unset (absent, empty, Go's zero time); the raw value if unreadable."""
    if value is None or value == "":
        return None
    try:
        t = parse_time(value)
    except BeforeEpoch:  # Go's zero time
        return None
    except ValueError:
        return value
    return None if t <= 0 else t


def alert_to_alarm(alert: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """One Alertmanager postable alert → a native alarm payload (a JSON-ready dict).

    ``ne_id`` from label ``ne_id``, else ``instance`` (port stripped), else ``job``;
    ``probable_cause`` from ``alertname``; ``severity`` through ``SEVERITY_MAP`` (absent or unknown:
    ``major``), ``cleared`` once ``endsAt`` ≤ ``now``; ``event_type`` from label ``event_type``,
    else ``qualityOfServiceAlarm``; ``specific_problem`` from label ``specific_problem``, else the
    other labels as ``k=v,k=v`` sorted; ``alarm_id`` ``am:<fingerprint of all labels>``;
    ``event_time`` ``startsAt`` (``now`` when unset), or ``endsAt`` for a clear; ``text`` the
    ``summary`` annotation, else ``description``. Fields with no source are left out, and an
    unreadable time is passed through, for the core to dead-letter with a reason.
    """
    labels = _labels(alert)
    ne_id, ne_label = _element(labels)
    alarm: dict[str, Any] = {}
    if ne_id is not None:
        alarm["ne_id"] = ne_id
    if labels.get("alertname"):
        alarm["probable_cause"] = labels["alertname"]
    alarm["severity"] = _severity(labels)
    alarm["event_type"] = _event_type(labels)
    specific = _specific_problem(labels, ne_label)
    if specific is not None:
        alarm["specific_problem"] = specific
    alarm["alarm_id"] = "am:" + fingerprint(labels)

    starts = _time(alert.get("startsAt"))
    ends = _time(alert.get("endsAt"))
    if isinstance(ends, float) and ends <= now:
        alarm["severity"] = "cleared"
        alarm["event_time"] = ends
    elif ends is not None and not isinstance(ends, float):
        alarm["event_time"] = ends  # unreadable endsAt: the alert's state is unknown, refuse it
    else:
        alarm["event_time"] = now if starts is None else starts

    annotations = alert.get("annotations")
    if isinstance(annotations, Mapping):
        text = annotations.get("summary") or annotations.get("description")
        if isinstance(text, str) and text:
            alarm["text"] = text[:MAX_TEXT]
    return alarm
