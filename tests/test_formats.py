"""Receiver formats rendered from real incident records (built by the core), checked against the
standards' own documents where we have them (TMF656 v4 swagger and v5 OpenAPI), and the webhook
signature."""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from bench.scenarios import T0, alarm, fiber_cut
from engine.adapters.formats import ALERTMANAGER_ZERO_TIME, FormatError, render, sign, verify
from engine.service.config import ReceiverSettings
from tests.harness import run

ROOT = Path(__file__).resolve().parents[1]
TMF656 = ROOT.parent / "shared" / "standards" / "tmf656"
RECEIVER = ReceiverSettings(name="soc", url="http://127.0.0.1:9/hook")
PAGER = ReceiverSettings(name="pd", url="http://127.0.0.1:9/pd", format="pagerduty", routing_key="R0UTING")


@functools.cache
def _records() -> dict[str, dict[str, Any]]:
    """Named real records: the fiber cut (opened, resolved), a redundancy loss (opened at_risk, then
    updated to outage, then acknowledged by an operator), and a cell alarm without customer impact."""
    cut = run(fiber_cut())
    both = run(
        [alarm("agg-1", "lossOfSignal", 0, "critical"), alarm("agg-2", "lossOfSignal", 60, "critical")]
    )
    agg1 = [r for r in both.records if r["root_cause"]["ne_id"] == "agg-1"]
    assert both.pipeline is not None
    acked = both.pipeline.acknowledge(agg1[0]["incident_id"], "alice", "on it", T0 + 120)
    assert acked is not None
    cell = run([alarm("cell-c1", "lossOfSignal", 0, "critical")])
    merged = copy.deepcopy(cut.events("resolved")[0])
    merged.update(resolution="merged", merged_into="inc-00000000000000aa")
    return {
        "opened": cut.events("opened")[0],
        "resolved": cut.events("resolved")[0],
        "at_risk": agg1[0],
        "updated": agg1[1],
        "acknowledged": acked.to_wire(),
        "no_customers": cell.records[0],
        "merged": merged,
    }


def record(name: str) -> dict[str, Any]:
    return copy.deepcopy(_records()[name])


def body(fmt: str, name: str, receiver: ReceiverSettings = RECEIVER) -> dict[str, Any]:
    raw, content_type = render(fmt, record(name), receiver)
    assert content_type == "application/json"
    parsed: dict[str, Any] = orjson.loads(raw)
    return parsed


NAMES = ["opened", "resolved", "at_risk", "updated", "acknowledged", "no_customers", "merged"]


def test_the_records_cover_the_cases() -> None:
    """The named records really are what the tests below assume (events, acknowledgement, impact)."""
    r = _records()
    assert [r[n]["event"] for n in NAMES] == [
        "opened",
        "resolved",
        "opened",
        "updated",
        "updated",
        "opened",
        "resolved",
    ]
    assert r["acknowledged"]["acknowledged"]["by"] == "alice"
    assert r["updated"]["acknowledged"] is None
    assert r["at_risk"]["state"] == "at_risk"
    assert r["no_customers"]["impact"]["services"] == {}


# -- generic ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_generic_is_the_record_itself(name: str) -> None:
    """The generic format is the incident record, unchanged, as JSON."""
    assert body("generic", name) == record(name)


# -- TMF656 ----------------------------------------------------------------------------------------
@functools.cache
def _swagger() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((TMF656 / "TMF656-ServiceProblem-v4.0.0.swagger.json").read_text())
    return parsed


_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _v5() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.load(
        (TMF656 / "TMF656-Service_Problem_Management-v5.0.0.oas.yaml").read_text(), Loader=_YamlLoader
    )
    return parsed


def _conforms(schema: Mapping[str, Any], value: Any, where: str, errors: list[str]) -> None:
    """A small Swagger 2 checker: $ref, type, enum, required, items, and no unknown properties."""
    defs = _swagger()["definitions"]
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if kind in checks and not checks[kind](value):
        errors.append(f"{where}: expected {kind}, got {type(value).__name__}")
        return
    if kind == "array":
        for i, item in enumerate(value):
            _conforms(schema["items"], item, f"{where}[{i}]", errors)
    if "properties" in schema and isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: required {key!r} missing")
        for key, item in value.items():
            if key not in schema["properties"]:
                errors.append(f"{where}: {key!r} is not a property of this schema")
            else:
                _conforms(schema["properties"][key], item, f"{where}.{key}", errors)


@pytest.mark.parametrize("name", NAMES)
def test_tmf656_conforms_to_the_v4_swagger(name: str) -> None:
    """Every field is a v4 ServiceProblem property of the right type (refs checked recursively, their
    required fields included), status is one of ServiceProblemStateType, and every field the v4
    create schema requires is present."""
    sp = body("tmf656", name)
    defs = _swagger()["definitions"]
    errors: list[str] = []
    _conforms(defs["ServiceProblem"], sp, "ServiceProblem", errors)
    assert errors == []
    required = defs["ServiceProblem_Create"]["required"]
    assert set(required) == {"category", "priority", "description", "reason", "originatorParty"}
    assert [key for key in required if key not in sp] == []
    assert any(key in sp for key in ("affectedResource", "affectedService", "affectedLocation"))


@pytest.mark.parametrize("name", NAMES)
def test_tmf656_has_what_the_v5_create_schema_requires(name: str) -> None:
    """v5 (ServiceProblem_FVO) also requires @type; the v4 field names we use satisfy its list."""
    fvo = _v5()["components"]["schemas"]["ServiceProblem_FVO"]["allOf"]
    required = [key for part in fvo for key in part.get("required", [])]
    assert "@type" in required
    sp = body("tmf656", name)
    assert [key for key in required if key not in sp] == []
    assert sp["@type"] == "ServiceProblem"


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("opened", "pending", "opened by alarm correlation"),
        ("at_risk", "pending", "opened by alarm correlation"),
        ("updated", "pending", "impact or priority changed"),
        ("acknowledged", "acknowledged", "acknowledged by alice: on it"),
        ("resolved", "resolved", "root cause cleared"),
        ("merged", "resolved", "merged into inc-00000000000000aa"),
    ],
)
def test_tmf656_status_mapping(name: str, status: str, reason: str) -> None:
    """The documented status mapping, with the reason of the change."""
    sp = body("tmf656", name)
    assert (sp["status"], sp["statusChangeReason"]) == (status, reason)
    assert sp["statusChangeDate"] == record(name)["time"]


def test_tmf656_fields_of_the_fiber_cut() -> None:
    """The opened fiber cut: identity, priority, importance, services, root cause and customers."""
    rec = record("opened")
    sp = body("tmf656", "opened")
    assert sp["id"] == rec["incident_id"]
    assert "href" not in sp
    assert sp["name"] == "P1 outage: lossOfSignal on agg-3 (site-d), 1000 customer(s)"
    assert sp["description"] == rec["explanation"][0]
    assert (sp["category"], sp["priority"], sp["impactImportanceFactor"]) == ("customerImpact", 1, "100")
    assert sp["reason"] == "lossOfSignal (critical) on agg-3 (switch, site site-d, south)"
    assert sp["originatingSystem"] == "soc-engine"
    assert sp["creationDate"] == rec["opened_at"]
    assert "resolutionDate" not in sp
    assert sp["affectedNumberOfServices"] == 1250
    assert [s["id"] for s in sp["affectedService"]] == ["internet", "voip"]
    assert sp["rootCauseResource"] == [
        {"id": "agg-3", "name": "agg-3 (switch)", "@type": "ResourceRef", "@referredType": "Resource"}
    ]
    assert "rootCauseService" not in sp
    assert len(sp["affectedResource"]) == 51
    assert len(sp["underlyingAlarm"]) == 51
    chars = {c["name"]: c["value"] for c in sp["characteristic"]}
    assert chars["affectedServices.internet"] == 1000
    assert chars["affectedServices.voip"] == 250
    assert (chars["incidentVersion"], chars["serviceState"], chars["suppressedAlarms"]) == (1, "outage", 50)
    pattern = {c["name"]: c["value"] for c in sp["impactPattern"]["characteristic"]}
    assert pattern == {
        "customers.total": 1000,
        "customers.bronze": 600,
        "customers.gold": 80,
        "customers.platinum": 20,
        "customers.silver": 300,
        "customers.outage": 1000,
    }


def test_tmf656_resolved_and_merged() -> None:
    """A resolution carries resolutionDate; a merge also names the surviving problem as parent."""
    resolved = body("tmf656", "resolved")
    assert resolved["resolutionDate"] == record("resolved")["resolved_at"]
    assert "parentProblem" not in resolved
    merged = body("tmf656", "merged")
    assert merged["parentProblem"] == [
        {"id": "inc-00000000000000aa", "@type": "ServiceProblemRef", "@referredType": "ServiceProblem"}
    ]


def test_tmf656_without_customer_impact_still_names_the_affected_resource() -> None:
    """No affected service: affectedService is absent and the root element is the affected resource."""
    sp = body("tmf656", "no_customers")
    assert "affectedService" not in sp
    assert sp["affectedNumberOfServices"] == 0
    assert [r["id"] for r in sp["affectedResource"]] == ["cell-c1"]


# -- PagerDuty -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("opened", "trigger"),
        ("at_risk", "trigger"),
        ("updated", "trigger"),
        ("acknowledged", "acknowledge"),
        ("resolved", "resolve"),
        ("merged", "resolve"),
    ],
)
def test_pagerduty_event_action(name: str, action: str) -> None:
    """resolved → resolve; an update carrying an operator acknowledgement → acknowledge; else trigger.
    The dedup key is the incident id, so every event lands on the same PagerDuty incident."""
    event = body("pagerduty", name, PAGER)
    assert event["event_action"] == action
    assert event["dedup_key"] == record(name)["incident_id"]
    assert (event["routing_key"], event["client"]) == ("R0UTING", "soc-engine")


@pytest.mark.parametrize(
    ("priority", "severity"), [(1, "critical"), (2, "error"), (3, "warning"), (4, "info"), (5, "info")]
)
def test_pagerduty_severity_follows_priority(priority: int, severity: str) -> None:
    """P1 critical, P2 error, P3 warning, P4 and P5 info."""
    rec = record("opened")
    rec["priority"] = priority
    raw, _ = render("pagerduty", rec, PAGER)
    assert orjson.loads(raw)["payload"]["severity"] == severity


def test_pagerduty_payload_fields() -> None:
    """The payload has what Events API v2 requires (summary ≤ 1024, source, severity) and the context."""
    rec = record("opened")
    payload = body("pagerduty", "opened", PAGER)["payload"]
    assert len(payload["summary"]) <= 1024
    assert payload["summary"] == "P1 outage: lossOfSignal on agg-3 (site-d), 1000 customer(s)"
    assert (payload["source"], payload["component"], payload["group"], payload["class"]) == (
        "agg-3",
        "agg-3",
        "site-d",
        "lossOfSignal",
    )
    assert payload["timestamp"] == rec["time"]
    details = payload["custom_details"]
    assert (details["incident_id"], details["version"], details["customers"]) == (rec["incident_id"], 1, 1000)
    assert details["explanation"] == rec["explanation"]


# -- Alertmanager ----------------------------------------------------------------------------------
AM_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
AM_ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


@pytest.mark.parametrize(
    ("name", "status", "ends"),
    [
        ("opened", "firing", None),
        ("updated", "firing", None),
        ("acknowledged", "firing", None),
        ("resolved", "resolved", "resolved_at"),
    ],
)
def test_alertmanager_status_and_times(name: str, status: str, ends: str | None) -> None:
    """firing until resolved; startsAt is when the incident opened; endsAt the resolution time, or
    Alertmanager's zero time while firing."""
    rec = record(name)
    msg = body("alertmanager", name)
    assert set(msg) == AM_KEYS
    assert (msg["version"], msg["truncatedAlerts"], msg["status"], msg["receiver"]) == ("4", 0, status, "soc")
    (a,) = msg["alerts"]
    assert set(a) == AM_ALERT_KEYS
    assert a["status"] == status
    assert a["startsAt"] == rec["opened_at"]
    assert a["endsAt"] == (rec[ends] if ends else ALERTMANAGER_ZERO_TIME)


def test_alertmanager_labels_and_grouping() -> None:
    """Labels are strings naming the incident, priority, state and root element; one group per
    incident, with a fingerprint stable across its versions and distinct between incidents."""
    opened = body("alertmanager", "opened")
    resolved = body("alertmanager", "resolved")
    other = body("alertmanager", "updated")
    labels = opened["alerts"][0]["labels"]
    assert labels == {
        "alertname": "SOCIncident",
        "incident_id": record("opened")["incident_id"],
        "priority": "P1",
        "severity": "critical",
        "state": "outage",
        "ne_id": "agg-3",
        "probable_cause": "lossOfSignal",
        "element_type": "switch",
        "site": "site-d",
        "region": "south",
    }
    assert opened["commonLabels"] == labels
    assert opened["groupLabels"] == {"incident_id": labels["incident_id"]}
    assert opened["groupKey"] == resolved["groupKey"] != other["groupKey"]
    fingerprints = [m["alerts"][0]["fingerprint"] for m in (opened, resolved, other)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
    annotations = opened["alerts"][0]["annotations"]
    assert annotations["description"].splitlines() == record("opened")["explanation"]


# -- errors ----------------------------------------------------------------------------------------
def test_unknown_format_and_broken_record_raise_format_error() -> None:
    """An unknown format, or a record without a field the format needs, is a FormatError."""
    with pytest.raises(FormatError, match="unknown format 'xml'"):
        render("xml", record("opened"), RECEIVER)
    broken = record("opened")
    del broken["priority"]
    with pytest.raises(FormatError, match="as tmf656"):
        render("tmf656", broken, RECEIVER)


# -- signature -------------------------------------------------------------------------------------
SECRET = "s3cret"
BODY = b'{"incident_id": "inc-1"}'
TS = 1_767_225_600


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """The documented construction, computed independently."""
    expected = hmac.new(SECRET.encode(), f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, TS, BODY) == f"sha256={expected}"
    assert sign(SECRET, str(TS), BODY) == sign(SECRET, TS, BODY)


GOOD = sign(SECRET, TS, BODY)


@pytest.mark.parametrize(
    ("case", "secret", "timestamp", "payload", "signature", "now", "ok"),
    [
        ("signed", SECRET, TS, BODY, GOOD, TS + 10, True),
        ("a little clock skew", SECRET, str(TS), BODY, GOOD, TS - 10, True),
        ("body tampered", SECRET, TS, BODY + b" ", GOOD, TS, False),
        ("timestamp tampered", SECRET, TS + 1, BODY, GOOD, TS, False),
        ("wrong secret", "other", TS, BODY, GOOD, TS, False),
        ("forged signature", SECRET, TS, BODY, "sha256=" + "0" * 64, TS, False),
        ("stale", SECRET, TS, BODY, GOOD, TS + 301, False),
        ("from the future", SECRET, TS, BODY, GOOD, TS - 301, False),
        ("not a timestamp", SECRET, "yesterday", BODY, GOOD, TS, False),
    ],
)
def test_verify(
    *, case: str, secret: str, timestamp: int | str, payload: bytes, signature: str, now: float, ok: bool
) -> None:
    """verify accepts exactly the signed body at its timestamp, within the tolerance (300 s)."""
    assert verify(secret, timestamp, payload, signature, now=now) is ok, case


def test_verify_tolerance_is_configurable() -> None:
    """A receiver may narrow (or widen) the tolerance window."""
    sig = sign(SECRET, TS, BODY)
    assert not verify(SECRET, TS, BODY, sig, now=TS + 30, tolerance=10)
    assert verify(SECRET, TS, BODY, sig, now=TS + 3000, tolerance=3600)
