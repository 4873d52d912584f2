"""TMF642 Alarm Management API v4 served by the engine, checked against the official swagger.

hypothesis-jsonschema generates ``Alarm_Create`` bodies from ``../shared/standards/tmf642/
TMF642-Alarm-v4.0.0.swagger.json``: every one that also keeps to the engine's vocabulary (the
swagger types severity, alarm type and the element as free strings; the engine needs X.733 values
and a known element) is accepted by the same checks ``POST /alarm`` runs; every swagger-valid body
outside it, and every body broken on purpose (a required field dropped, a field of the wrong type),
is refused naming the TMF field. A real daemon serves the endpoints for the rest.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from bench.scenarios import example_topology
from engine.adapters.api_tmf642 import ALARM_CREATE_REQUIRED, alarm_create_errors
from engine.errors import InvalidMessage
from engine.model.messages import EVENT_TYPES, Decoder
from engine.service.daemon import Daemon
from engine.tools.receiver import WebhookReceiver
from tests.daemon_harness import running_daemon, until

ROOT = Path(__file__).resolve().parents[1]
SWAGGER = ROOT.parent / "shared" / "standards" / "tmf642" / "TMF642-Alarm-v4.0.0.swagger.json"
TOPIC = "soc/alarms/http"
TOKEN = "tmf-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "/tmf-api/alarmManagement/v4"
ELEMENTS = [e["id"] for e in example_topology()["elements"]]
DECODER = Decoder(known_elements=set(ELEMENTS))
SEVERITIES = ["Critical", "major", "MINOR", "warning", "indeterminate"]
TYPES = [t[0].upper() + t[1:] for t in EVENT_TYPES] + ["Communications Alarm", "equipmentAlarm"]

pytestmark = pytest.mark.skipif(not SWAGGER.exists(), reason=f"the TMF642 swagger is not at {SWAGGER}")


def _swagger() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SWAGGER.read_text())
    return doc


def _schema(narrow: bool) -> dict[str, Any]:
    """``Alarm_Create`` with the swagger's definitions; ``narrow``: what the engine's vocabulary
    adds (X.733 severity and alarm type, an element of the topology, sane times and texts)."""
    doc = _swagger()
    schema: dict[str, Any] = copy.deepcopy(doc["definitions"]["Alarm_Create"])
    schema["definitions"] = doc["definitions"]
    if narrow:
        props = schema["properties"]
        props["perceivedSeverity"] = {"enum": SEVERITIES}
        props["alarmType"] = {"enum": TYPES}
        props["state"] = {"enum": ["raised", "updated"]}
        props["alarmedObject"] = {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"enum": ELEMENTS}, "@type": {"type": "string"}},
        }
        stamp = {"enum": ["2026-01-01T00:00:00Z", "2026-06-30T12:34:56.789+02:00"]}
        for name in ("alarmRaisedTime", "alarmChangedTime", "alarmReportingTime"):
            props[name] = stamp
        # a comment's time too: the engine refuses a time before the epoch, which `date-time` allows
        schema["definitions"]["Comment"]["properties"]["time"] = stamp
        props.pop("alarmClearedTime")  # a clear is the clear of a raised alarm: tested over HTTP
        props["probableCause"] = {"type": "string", "minLength": 1, "maxLength": 256}
        props["specificProblem"] = {"type": "string", "maxLength": 256}
        props["alarmDetails"] = {"type": "string", "maxLength": 4096}
        props["crossedThresholdInformation"] = {
            "type": "object",
            "required": ["indicatorName", "direction", "observedValue"],
            "properties": {
                "indicatorName": {"type": "string", "minLength": 1, "maxLength": 256},
                "direction": {"enum": ["up", "down", "UP"]},
                "observedValue": {"enum": ["12.5", "0", "-3"]},
            },
        }
    return schema


_FAST = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


def _engine_errors(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``POST /alarm`` refuses: the swagger's checks, then the engine's decoder."""
    errors = alarm_create_errors(obj)
    if errors:
        return errors
    try:
        DECODER.decode(TOPIC, obj)
    except InvalidMessage as exc:
        return exc.errors
    return []


@_FAST
@given(from_schema(_schema(narrow=True)))
def test_every_valid_alarm_in_the_engine_vocabulary_is_accepted(alarm: dict[str, Any]) -> None:
    """A swagger-valid Alarm_Create with X.733 values and a known element is accepted as it is."""
    assert _engine_errors(alarm) == []


_TMF_NAMES = set(_swagger()["definitions"]["Alarm_Create"]["properties"]) | {""}


@_FAST
@given(from_schema(_schema(narrow=False)))
def test_any_swagger_valid_alarm_is_accepted_or_refused_naming_a_tmf_field(alarm: dict[str, Any]) -> None:
    """Free strings where the engine needs its vocabulary: refused, and the reason names the TMF
    field (``perceivedSeverity``, ``alarmedObject.id``…), never an engine field name."""
    for field, reason in _engine_errors(alarm):
        assert field.split(".")[0].split("[")[0] in _TMF_NAMES, (field, reason)
        assert reason


_WRONG = {"string": 7, "boolean": "yes", "array": {"x": 1}, "object": ["x"]}


@_FAST
@given(from_schema(_schema(narrow=True)), st.data())
def test_every_broken_alarm_is_refused_naming_the_field(alarm: dict[str, Any], data: st.DataObject) -> None:
    """A required field dropped, or a field given a value of another type than the swagger's: refused,
    with that field named."""
    props = _swagger()["definitions"]["Alarm_Create"]["properties"]
    broken = dict(alarm)
    if data.draw(st.booleans()):
        field = data.draw(st.sampled_from(ALARM_CREATE_REQUIRED))
        broken.pop(field)
    else:
        field = data.draw(st.sampled_from(sorted(props)))
        kind = props[field].get("type", "object")
        broken[field] = _WRONG[kind]
    fields = [f for f, _ in alarm_create_errors(broken)]
    assert field in fields


# ------------------------------------------------------------------------------- over HTTP


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str]]:
    async with running_daemon(
        tmp_path, broker_url=None, prefix="test/tmf", extra={"http": {"port": 0, "token": TOKEN}}
    ) as (d, _rx):
        assert d.http is not None
        yield d, f"http://127.0.0.1:{d.http.port}{BASE}"


ALARM: dict[str, Any] = {
    "alarmType": "Communications Alarm",
    "perceivedSeverity": "Critical",
    "probableCause": "lossOfSignal",
    "specificProblem": "port 1/1/1",
    "alarmedObject": {"id": "agg-3", "@type": "Switch"},
    "sourceSystemId": "ems-7",
    "externalAlarmId": "ems-7:4711",
    "state": "raised",
    "alarmRaisedTime": "2026-01-01T00:00:00Z",
}


async def test_create_get_list_ack_and_clear(daemon: tuple[Daemon, str]) -> None:
    """POST → 201 with the alarm (through the core: it opens an incident); GET by id and by
    filter; PATCH acknowledges; clearAlarms clears it through the core."""
    d, base = daemon
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{base}/alarm", json=ALARM) as r:
            assert r.status == 201, await r.text()
            created = await r.json()
        assert created["id"] == "ems-7:4711"
        assert created["state"] == "raised"
        assert created["sourceSystemId"] == "ems-7"
        assert r.headers["Location"] == created["href"]
        await until(lambda: bool(d.pipeline.incidents.incident_of("ems-7:4711")), timeout=10, what="incident")
        async with http.get(f"{base}/alarm/ems-7%3A4711?fields=perceivedSeverity") as r:
            assert await r.json() == {
                "id": "ems-7:4711",
                "href": created["href"],
                "perceivedSeverity": "critical",
            }
        async with http.get(f"{base}/alarm?alarmedObject.id=agg-3&state=raised") as r:
            assert [a["id"] for a in await r.json()] == ["ems-7:4711"]
            assert r.headers["X-Total-Count"] == "1"
        async with http.patch(
            f"{base}/alarm/ems-7:4711", json={"ackState": "acknowledged", "ackUserId": "ann"}
        ) as r:
            assert r.status == 200
            assert (await r.json())["ackState"] == "acknowledged"
        task = {
            "clearUserId": "ann",
            "clearSystemId": "oss",
            "alarmClearedTime": "2026-01-01T00:05:00Z",
            "alarmPattern": [{"alarmedObject": {"id": "agg-3"}, "probableCause": "lossOfSignal"}],
        }
        async with http.post(f"{base}/clearAlarms", json=task) as r:
            assert r.status == 201
            assert [a["id"] for a in (await r.json())["clearedAlarm"]] == ["ems-7:4711"]
        alarm = d.pipeline.alarms.get("ems-7:4711")
        assert alarm is not None
        assert not alarm.active


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in ALARM.items() if k != "sourceSystemId"}, "sourceSystemId: required"),
        ({**ALARM, "perceivedSeverity": "Huge"}, "perceivedSeverity: 'Huge' is not one of"),
        ({**ALARM, "alarmedObject": {"id": "nowhere-1"}}, "alarmedObject.id: unknown element 'nowhere-1'"),
        ({**ALARM, "serviceAffecting": "yes"}, "serviceAffecting: expected a boolean, got string"),
    ],
)
async def test_create_refuses_naming_the_tmf_field(daemon: tuple[Daemon, str], body: Any, field: str) -> None:
    """400 with a TMF ``Error`` whose message names the TMF field; nothing reaches the core."""
    d, base = daemon
    async with aiohttp.ClientSession(headers=AUTH) as http, http.post(f"{base}/alarm", json=body) as r:
        assert r.status == 400
        error = await r.json()
    assert error["code"] == "400"
    assert field in error["message"]
    assert d.pipeline.stats.messages.get("alarm", 0) == 0


async def test_hub_delivers_create_change_and_clear_events(daemon: tuple[Daemon, str]) -> None:
    """A subscriber's listener gets AlarmCreateEvent, AlarmAttributeValueChangeEvent (the
    acknowledgement) and AlarmStateChangeEvent (the clear), for an alarm that came in over TMF642."""
    _, base = daemon
    async with WebhookReceiver() as rx, aiohttp.ClientSession(headers=AUTH) as http:
        callback = rx.url.rstrip("/")
        async with http.post(f"{base}/hub", json={"callback": callback}) as r:
            assert r.status == 201
            sub = await r.json()
        async with http.post(f"{base}/alarm", json=ALARM) as r:
            assert r.status == 201
        await until(lambda: len(rx.records) >= 1, timeout=10, what="the create event")
        async with http.patch(f"{base}/alarm/ems-7:4711", json={"ackState": "acknowledged"}) as r:
            assert r.status == 200
        await until(lambda: len(rx.records) >= 2, timeout=10, what="the change event")
        async with http.patch(f"{base}/alarm/ems-7:4711", json={"state": "cleared"}) as r:
            assert r.status == 200
        await until(lambda: len(rx.records) >= 3, timeout=10, what="the clear event")
        kinds = [e["eventType"] for e in rx.records]
        assert kinds == ["AlarmCreateEvent", "AlarmAttributeValueChangeEvent", "AlarmStateChangeEvent"]
        assert rx.records[2]["event"]["alarm"]["state"] == "cleared"
        async with http.delete(f"{base}/hub/{sub['id']}") as r:
            assert r.status == 204


async def test_schemathesis_against_the_official_swagger(daemon: tuple[Daemon, str], tmp_path: Path) -> None:
    """schemathesis, from the official TMF642 swagger, on the operations served (alarm, ackAlarms,
    clearAlarms, hub): no server error; status codes, content types and bodies (TMF ``Error``
    included) as documented; invalid requests refused. Same checks as for Alertmanager's spec."""
    st_bin = Path(sys.executable).parent / "schemathesis"
    if not st_bin.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    _, base = daemon
    proc = await asyncio.create_subprocess_exec(
        str(st_bin),
        "run",
        str(SWAGGER),
        f"--url={base}",
        f"--header=Authorization: Bearer {TOKEN}",
        "--checks=not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,negative_data_rejection",
        "--max-examples=5",
        "--phases=examples,fuzzing",
        "--include-path-regex=^/(alarm|ackAlarms|clearAlarms|hub)",
        "--no-color",
        "--seed=1",
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, out.decode()[-6000:]


def test_a_time_before_1970_is_refused_with_its_reason() -> None:
    """A TMF642 time before the epoch is refused as the decoder refuses it, saying so (not as an
    unreadable date-time)."""
    errors = alarm_create_errors({"alarmRaisedTime": "1969-07-20T20:17:00Z"})
    assert (
        "alarmRaisedTime",
        "time '1969-07-20T20:17:00Z' is before 1970-01-01T00:00:00Z (the Unix epoch)",
    ) in errors
