"""The HTTP API over a real aiohttp server on 127.0.0.1, driven by a real aiohttp client.

The daemon is replaced by ``FakeCore``, a small in-memory implementation of ``CoreView``; payloads
it receives are checked with the real ``engine.model.messages.Decoder``. ``alert_to_alarm`` (the
Alertmanager mapping) is tested here too, as a pure function, since this API is its only user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from engine.adapters.http import CoreView, HttpApi, Overloaded
from engine.core.pipeline import Pipeline
from engine.core.query import CoreQuery
from engine.errors import InvalidMessage
from engine.model.alertmanager_in import alert_to_alarm, fingerprint
from engine.model.messages import Alarm, Decoder
from engine.model.timeutil import parse_time
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.service.config import HttpSettings
from engine.service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]

ALARM_TOPIC = "soc/alarms/http"
PROBE_TOPIC = "soc/probes/http"
DECODER = Decoder()
TOKEN = "s3cret-token"
NOW = parse_time("2026-01-01T00:10:00Z")

INCIDENT: dict[str, Any] = {
    "incident_id": "inc-8d44853b8cfe8679",
    "event": "opened",
    "version": 1,
    "priority": 1,
    "score": 91.3,
    "state": "outage",
    "root_cause": {"ne_id": "agg-3", "alarm_id": "agg-3:lossOfSignal:port 1/1/1"},
    "alarms": ["agg-3:lossOfSignal:port 1/1/1", "olt-001:linkDown"],
    "suppressed": [{"alarm_id": "olt-001:linkDown", "reason": "explained by agg-3:lossOfSignal:port 1/1/1"}],
    "explanation": ["root cause: lossOfSignal (critical, effect outage) on agg-3"],
    "acknowledged": None,
}
ALARM: dict[str, Any] = {
    "ne_id": "agg-3",
    "severity": "critical",
    "probable_cause": "lossOfSignal",
    "specific_problem": "port 1/1/1",
    "event_time": "2026-01-01T00:00:01.200Z",
}
SAMPLE: dict[str, Any] = {
    "probe_id": "p-17",
    "target": "olt-001",
    "time": "2026-01-01T00:00:00Z",
    "metrics": {"latency_ms": 38.5},
}
BATCH: dict[str, Any] = {"samples": [SAMPLE, SAMPLE]}
TMF642: dict[str, Any] = {
    "id": "A-7",
    "alarmedObject": {"id": "olt-001"},
    "perceivedSeverity": "Major",
    "probableCause": "linkDown",
    "alarmRaisedTime": "2026-01-01T00:00:02Z",
}


class FakeCore:
    """An in-memory ``CoreView``: fixed records, and a log of what the API asked for."""

    def __init__(self) -> None:
        self.ready_flag = True
        self.parts = {"rules": True, "store": True, "mqtt": True}
        self.records = {INCIDENT["incident_id"]: dict(INCIDENT)}
        self.query: CoreQuery | None = None  # no core state (a test sets a pipeline's query)
        self.ingested: list[tuple[str, bytes, str]] = []
        self.capacity: int | None = None  # Overloaded once this many messages are queued
        self.queries: list[dict[str, Any]] = []
        self.acks: list[tuple[str, str, str | None]] = []
        self.reload_result: tuple[bool, str] | Exception = (True, "reloaded: 2 rulesets")
        self.broken: Exception | None = None  # raised by incident()
        self.quarantined: list[dict[str, Any]] = []  # degraded()

    @property
    def ready(self) -> bool:
        return self.ready_flag

    def readiness(self) -> dict[str, bool]:
        return dict(self.parts)

    def degraded(self) -> list[dict[str, Any]]:
        return list(self.quarantined)

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        if self.broken is not None:
            raise self.broken
        return self.records.get(incident_id)

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        self.queries.append(
            {"state": state, "priority": priority, "since": since, "open_only": open_only, "limit": limit}
        )
        return list(self.records.values())[:limit]

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None:
        if self.capacity is not None and len(self.ingested) >= self.capacity:
            raise Overloaded(retry_after=2.5)
        self.ingested.append((topic, payload, source))

    async def acknowledge(self, incident_id: str, *, by: str, note: str | None) -> dict[str, Any] | None:
        self.acks.append((incident_id, by, note))
        record = self.records.get(incident_id)
        if record is None:
            return None
        updated = dict(record, event="updated", version=record["version"] + 1)
        updated["acknowledged"] = {"by": by, "note": note}
        self.records[incident_id] = updated
        return updated

    async def reload(self) -> tuple[bool, str]:
        if isinstance(self.reload_result, Exception):
            raise self.reload_result
        return self.reload_result

    def alarm_topic(self) -> str:
        return ALARM_TOPIC

    def probe_topic(self) -> str:
        return PROBE_TOPIC


def _conforms(core: CoreView) -> CoreView:
    return core  # mypy checks here that FakeCore implements the protocol


@asynccontextmanager
async def serve(core: FakeCore, **settings: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A running API on a free port and a client session pointed at it."""
    async with (
        HttpApi(HttpSettings(port=0, **settings), _conforms(core), Metrics(version="9.9.9")) as api,
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api.port}") as session,
    ):
        yield session


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
async def http(core: FakeCore) -> AsyncIterator[aiohttp.ClientSession]:
    async with serve(core) as session:
        yield session


@pytest.fixture
def default_logging() -> Iterator[None]:
    """structlog's defaults (no level filter), whatever an earlier test configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def js(obj: Any) -> bytes:
    return orjson.dumps(obj)


# ------------------------------------------------------------------------------------ health, metrics


async def test_healthz_answers_while_running(http: aiohttp.ClientSession) -> None:
    """/healthz is 200 with a small JSON body as long as the process serves requests."""
    async with http.get("/healthz") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ok"}


async def test_readyz_follows_the_core(http: aiohttp.ClientSession, core: FakeCore) -> None:
    """/readyz is 200 when the core is ready, 503 when not; the body is the readiness map either way."""
    async with http.get("/readyz") as r:
        assert (r.status, await r.json()) == (200, {"rules": True, "store": True, "mqtt": True})
    core.ready_flag = False
    core.parts["mqtt"] = False
    async with http.get("/readyz") as r:
        assert (r.status, await r.json()) == (503, {"rules": True, "store": True, "mqtt": False})


async def test_readyz_lists_the_quarantined_parts_of_a_degraded_core(
    http: aiohttp.ClientSession, core: FakeCore
) -> None:
    """A core with a quarantined part still serves: /readyz stays 200 and names the part, its error
    and its retry under ``degraded``."""
    fault = {"part": "quality", "item": "ne:olt-7/voip", "error": "OverflowError: x", "retry_at": None}
    core.quarantined = [fault]
    async with http.get("/readyz") as r:
        assert r.status == 200
        assert await r.json() == {"rules": True, "store": True, "mqtt": True, "degraded": [fault]}


async def test_metrics_serves_the_prometheus_text_format(http: aiohttp.ClientSession) -> None:
    """/metrics is the private registry in the text format, parseable by Prometheus' own parser."""
    async with http.get("/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["soc_build_info"].samples[0].labels == {"version": "9.9.9"}
    assert "soc_messages" in families


# ----------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token"),
        ({"Authorization": "Bearer "}, "missing bearer token"),
        ({"Authorization": "Bearer wrong-token"}, "invalid bearer token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid bearer token"),
    ],
)
async def test_token_is_required_when_configured(
    core: FakeCore, headers: dict[str, str], detail: str
) -> None:
    """With a token set, requests without the right bearer token get 401 and a Bearer challenge."""
    async with serve(core, token=TOKEN) as http:
        for method, path in [
            ("GET", "/metrics"),
            ("GET", "/incidents"),
            ("POST", "/events"),
            ("GET", "/nope"),
        ]:
            async with http.request(method, path, headers=headers, data=js(ALARM)) as r:
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert await r.json() == {"error": "unauthorized", "detail": detail}
    assert core.ingested == []


async def test_token_opens_every_endpoint_but_health_needs_none(core: FakeCore) -> None:
    """The right token (scheme in any case) is accepted; /healthz and /readyz never need it."""
    async with serve(core, token=TOKEN) as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(path) as r:
                assert r.status == 200
        for scheme in ("Bearer", "bearer"):
            async with http.get("/incidents", headers={"Authorization": f"{scheme} {TOKEN}"}) as r:
                assert r.status == 200
            async with http.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"}) as r:
                assert r.status == 200


async def test_wrong_tokens_lock_the_address_out_and_are_counted(core: FakeCore) -> None:
    """5 wrong bearer tokens from one address within 15 minutes: its requests get 429 with
    Retry-After for 15 minutes, the right token included (not even checked); health stays open;
    the refusals and the lockout are on /metrics."""
    wrong = {"Authorization": "Bearer wrong-token"}
    right = {"Authorization": f"Bearer {TOKEN}"}
    metrics = Metrics(version="9.9.9")
    async with (
        HttpApi(HttpSettings(port=0, token=TOKEN), core, metrics) as api,
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api.port}") as http,
    ):
        for _ in range(4):
            async with http.get("/incidents", headers=wrong) as r:
                assert r.status == 401
        async with http.get("/incidents", headers=right) as r:
            assert r.status == 200  # 4 failures: not locked yet
        async with http.get("/incidents", headers=wrong) as r:
            assert r.status == 401  # the 5th locks the address
        async with http.get("/incidents", headers=right) as r:
            assert r.status == 429
            assert 890 <= int(r.headers["Retry-After"]) <= 900
            assert await r.json() == {
                "error": "too many requests",
                "detail": "too many invalid bearer tokens from this address (5 within 15 minutes): "
                "locked for 15 minutes more",
            }
        async with http.get("/healthz") as r:
            assert r.status == 200
        async with http.get("/metrics", headers=right) as r:
            assert r.status == 429
    text = metrics.render().decode()
    assert 'soc_http_auth_refused_total{result="refused"} 5.0' in text
    assert 'soc_http_auth_refused_total{result="locked_out"} 2.0' in text
    assert "soc_http_lockouts_total 1.0" in text


# -------------------------------------------------------------------------------------------- queries


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"state": None, "priority": None, "since": None, "open_only": True, "limit": 100}),
        ("?state=outage&priority=1", {"state": "outage", "priority": 1}),
        ("?state=at_risk&priority=5&limit=1000", {"state": "at_risk", "priority": 5, "limit": 1000}),
        ("?since=2026-01-01T00:00:00Z", {"since": parse_time("2026-01-01T00:00:00Z")}),
        ("?since=2026-01-01T01:00:00%2B01:00", {"since": parse_time("2026-01-01T00:00:00Z")}),
        ("?since=1767225600", {"since": 1767225600.0}),
        ("?since=1767225600.5", {"since": 1767225600.5}),
        ("?open=false", {"open_only": False}),
        ("?open=TRUE&limit=1", {"open_only": True, "limit": 1}),
    ],
)
async def test_incident_filters_reach_the_core(
    http: aiohttp.ClientSession, core: FakeCore, query: str, expected: dict[str, Any]
) -> None:
    """Query parameters are parsed into the core's keyword arguments; absent ones take the defaults."""
    async with http.get("/incidents" + query) as r:
        assert r.status == 200
        body = await r.json()
    assert body == {"incidents": [INCIDENT], "count": 1}
    defaults = {"state": None, "priority": None, "since": None, "open_only": True, "limit": 100}
    assert core.queries == [defaults | expected]


@pytest.mark.parametrize(
    ("query", "parameter", "reason"),
    [
        ("?state=down", "state", "expected one of outage, degraded, at_risk, got 'down'"),
        ("?state=", "state", "expected one of outage, degraded, at_risk, got ''"),
        ("?priority=0", "priority", "expected an integer 1..5, got '0'"),
        ("?priority=P1", "priority", "expected an integer 1..5, got 'P1'"),
        ("?since=yesterday", "since", "expected an RFC 3339 time with an offset or epoch seconds"),
        ("?since=2026-01-01T00:00:00", "since", "expected an RFC 3339 time with an offset or epoch seconds"),
        ("?since=-5", "since", "expected an RFC 3339 time with an offset or epoch seconds"),
        ("?open=yes", "open", "expected true or false, got 'yes'"),
        ("?limit=0", "limit", "expected an integer 1..1000, got '0'"),
        ("?limit=1001", "limit", "expected an integer 1..1000, got '1001'"),
        ("?limit=ten", "limit", "expected an integer 1..1000, got 'ten'"),
        ("?state=outage&state=degraded", "state", "given more than once"),
    ],
)
async def test_bad_incident_filters_are_400_naming_the_parameter(
    http: aiohttp.ClientSession, core: FakeCore, query: str, parameter: str, reason: str
) -> None:
    """A value outside the documented set is refused with 400; the error names the parameter."""
    async with http.get("/incidents" + query) as r:
        assert r.status == 400
        body = await r.json()
    assert body["error"] == f"invalid query parameter {parameter!r}"
    assert body["detail"].startswith(reason)
    assert core.queries == []


async def test_unknown_incident_filter_is_400(http: aiohttp.ClientSession) -> None:
    """A misspelt parameter is refused rather than silently ignored."""
    async with http.get("/incidents?priorty=1") as r:
        assert r.status == 400
        assert await r.json() == {
            "error": "unknown query parameter 'priorty'",
            "detail": "expected one of state, priority, since, open, limit",
        }


async def test_incident_by_id(http: aiohttp.ClientSession) -> None:
    """/incidents/{id} is the core's latest record, or 404 with the id when the core has none."""
    async with http.get(f"/incidents/{INCIDENT['incident_id']}") as r:
        assert (r.status, await r.json()) == (200, INCIDENT)
    async with http.get("/incidents/inc-0000000000000000") as r:
        assert r.status == 404
        assert await r.json() == {"error": "not found", "detail": "no incident 'inc-0000000000000000'"}


@pytest.fixture(scope="module")
def example_query() -> Iterator[CoreQuery]:
    """The query interface of a pipeline on the example topology, nothing fed."""
    pipeline = Pipeline(load_topology(ROOT / "examples" / "topology.yaml"), load_rulesets(None))
    yield pipeline.query
    pipeline.close()


@pytest.mark.parametrize("case", [("/elements", "agg-3", "element"), ("/customers", "c-00001", "customer")])
async def test_element_and_customer_views(
    http: aiohttp.ClientSession, core: FakeCore, example_query: CoreQuery, case: tuple[str, str, str]
) -> None:
    """/elements/{id} and /customers/{id} are the core's view (its query interface), or 404 naming
    what is unknown; a core that does not expose its state answers 501."""
    path, known, what = case
    async with http.get(f"{path}/{known}") as r:
        assert r.status == 501
        assert (await r.json())["error"] == "not implemented"
    core.query = example_query
    async with http.get(f"{path}/{known}") as r:
        assert r.status == 200
        body = await r.json()
        assert body[what]["id"] == known
        assert body["incidents"] == []
    async with http.get(f"{path}/nobody") as r:
        assert r.status == 404
        assert await r.json() == {"error": "not found", "detail": f"no {what} 'nobody'"}


# ---------------------------------------------------------------------------------------- acknowledge


async def test_ack_returns_the_updated_record(http: aiohttp.ClientSession, core: FakeCore) -> None:
    """POST /incidents/{id}/ack passes who and the note to the core and returns the new record."""
    incident_id = INCIDENT["incident_id"]
    async with http.post(f"/incidents/{incident_id}/ack", data=js({"by": "alice", "note": "on it"})) as r:
        assert r.status == 200
        record = await r.json()
    assert record["acknowledged"] == {"by": "alice", "note": "on it"}
    assert record["version"] == 2
    async with http.post(f"/incidents/{incident_id}/ack", json={"by": "bob"}) as r:
        assert r.status == 200
    assert core.acks == [(incident_id, "alice", "on it"), (incident_id, "bob", None)]


async def test_ack_of_an_unknown_incident_is_404(http: aiohttp.ClientSession) -> None:
    """The core answering None (unknown or not open) becomes 404."""
    async with http.post("/incidents/inc-x/ack", json={"by": "alice"}) as r:
        assert r.status == 404
        assert await r.json() == {"error": "not found", "detail": "no open incident 'inc-x'"}


@pytest.mark.parametrize(
    ("body", "error", "detail"),
    [
        (b"{}", "invalid acknowledgement", "by: field required"),
        (b'{"by": ""}', "invalid acknowledgement", "by: must be a non-empty string"),
        (b'{"by": 7}', "invalid acknowledgement", "by: must be a non-empty string"),
        (b'{"by": "a", "note": 3}', "invalid acknowledgement", "note: expected a string, got number"),
        (b'{"by": "a", "who": "b"}', "invalid acknowledgement", "unknown field(s): who"),
        (b'["alice"]', "invalid acknowledgement", "expected a JSON object, got array"),
        (b'{"by": "a"', "invalid JSON", "malformed JSON: "),
        (b"", "invalid JSON", "malformed JSON: "),
    ],
)
async def test_ack_rejects_bad_bodies(
    http: aiohttp.ClientSession, core: FakeCore, body: bytes, error: str, detail: str
) -> None:
    """An acknowledgement needs a JSON object with a non-empty ``by``; anything else is 400 and why."""
    async with http.post(f"/incidents/{INCIDENT['incident_id']}/ack", data=body) as r:
        assert r.status == 400
        answer = await r.json()
    assert answer["error"] == error
    assert answer["detail"].startswith(detail)
    assert core.acks == []


# --------------------------------------------------------------------------------------------- events


def kinds(core: FakeCore) -> list[str]:
    """What the real decoder makes of each ingested payload (``alarm``/``samples``, or ``invalid``)."""
    out: list[str] = []
    for topic, payload, source in core.ingested:
        assert source == "http"
        try:
            out.append(DECODER.decode(topic, payload).kind)
        except InvalidMessage:
            out.append("invalid")
    return out


@pytest.mark.parametrize(
    ("payload", "topic", "kind"),
    [
        (ALARM, ALARM_TOPIC, "alarm"),
        (TMF642, ALARM_TOPIC, "alarm"),
        (SAMPLE, PROBE_TOPIC, "samples"),
        (BATCH, PROBE_TOPIC, "samples"),
    ],
)
async def test_one_event_is_routed_by_its_shape(
    http: aiohttp.ClientSession, core: FakeCore, payload: dict[str, Any], topic: str, kind: str
) -> None:
    """One payload goes, as sent, to the alarm topic, or to the probe topic if it has samples/metrics."""
    body = js(payload)
    async with http.post("/events", data=body) as r:
        assert r.status == 202
        counts = await r.json()
    alarms = 1 if kind == "alarm" else 0
    assert counts == {"queued": 1, "alarms": alarms, "samples": 1 - alarms}
    assert core.ingested == [(topic, body, "http")]
    assert kinds(core) == [kind]


async def test_a_list_of_events_is_split_in_order(http: aiohttp.ClientSession, core: FakeCore) -> None:
    """A JSON array is one message per item, each routed on its own, in the order sent."""
    async with http.post("/events", json=[ALARM, SAMPLE, TMF642, BATCH]) as r:
        assert r.status == 202
        assert await r.json() == {"queued": 4, "alarms": 2, "samples": 2}
    assert [t for t, _, _ in core.ingested] == [ALARM_TOPIC, PROBE_TOPIC, ALARM_TOPIC, PROBE_TOPIC]
    assert [orjson.loads(p) for _, p, _ in core.ingested] == [ALARM, SAMPLE, TMF642, BATCH]
    assert kinds(core) == ["alarm", "samples", "alarm", "samples"]


async def test_a_list_item_nested_deeper_than_orjson_writes_is_queued_and_deeper_still_is_400(
    http: aiohttp.ClientSession, core: FakeCore
) -> None:
    """orjson reads 1,024 levels but writes 254: an item nested 300 deep is queued (its bytes written
    by the standard library, compact as orjson's); one nested 1,000 deep is a 400 that names the
    item, and nothing is queued (both were a 500: ``TypeError: Recursion limit reached``)."""
    deep = b'{"ne_id":"olt-001","x":' + b"[" * 300 + b"]" * 300 + b"}"
    async with http.post("/events", data=b"[" + js(ALARM) + b"," + deep + b"]") as r:
        assert r.status == 202
        assert await r.json() == {"queued": 2, "alarms": 2, "samples": 0}
    assert [p for _, p, _ in core.ingested] == [js(ALARM), deep]
    deeper = b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    async with http.post("/events", data=b"[" + js(ALARM) + b"," + deeper + b"]") as r:
        assert r.status == 400
        body = await r.json()
    assert (
        body["detail"]
        == "item 1: payload nested too deeply to be written back as JSON (about 990 levels at most)"
    )
    assert len(core.ingested) == 2


async def test_json_lines_are_one_event_per_line(http: aiohttp.ClientSession, core: FakeCore) -> None:
    """With Content-Type application/x-ndjson each non-blank line is a message, passed on as sent."""
    lines = [js(ALARM), b"", js(SAMPLE) + b"\r", b"   ", js(TMF642)]
    body = b"\n".join(lines) + b"\n"
    async with http.post("/events", data=body, headers={"Content-Type": "application/x-ndjson"}) as r:
        assert r.status == 202
        assert await r.json() == {"queued": 3, "alarms": 2, "samples": 1}
    assert [p for _, p, _ in core.ingested] == [js(ALARM), js(SAMPLE), js(TMF642)]


async def test_validation_is_left_to_the_core(http: aiohttp.ClientSession, core: FakeCore) -> None:
    """Well-formed JSON that is no valid message is still queued (as an alarm): the core dead-letters it."""
    async with http.post("/events", json=[{"ne_id": "x"}, 42, "text", [1]]) as r:
        assert r.status == 202
        assert await r.json() == {"queued": 4, "alarms": 4, "samples": 0}
    assert kinds(core) == ["invalid"] * 4


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (b'{"ne_id": "a",', "application/json", "malformed JSON: "),
        (b'{"x": NaN}', "application/json", "malformed JSON: "),
        (b"", "application/json", "empty body"),
        (b"  \n ", "application/x-ndjson", "empty body"),
        (js(ALARM) + b"\n" + js(SAMPLE) + b"\n{oops}\n", "application/x-ndjson", "line 3: malformed JSON: "),
        (
            js(ALARM) + b"\n" + js(SAMPLE) + b"\n",
            "application/x-www-form-urlencoded",  # curl -d's default
            "malformed JSON: unexpected content after document: line 2 column 1 (char ",
        ),
    ],
)
async def test_invalid_json_is_400_and_queues_nothing(
    http: aiohttp.ClientSession, core: FakeCore, body: bytes, content_type: str, detail: str
) -> None:
    """A body that does not parse is refused as a whole, with the reason (and the line for JSON lines);
    JSON lines sent without their content type are told which one they need."""
    async with http.post("/events", data=body, headers={"Content-Type": content_type}) as r:
        assert r.status == 400
        answer = await r.json()
    assert answer["error"] == "invalid JSON"
    assert answer["detail"].startswith(detail)
    if content_type == "application/x-www-form-urlencoded":
        assert answer["detail"].endswith("need Content-Type: application/x-ndjson")
    assert core.ingested == []


async def test_a_body_over_max_body_is_413(core: FakeCore) -> None:
    """A body larger than max_body is refused with 413, whether its length is announced or chunked."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b" " * 1024

    async with serve(core, max_body=2048) as http:
        async with http.post("/events", data=b"[" + b" " * 4096 + b"]") as r:
            assert r.status == 413
            assert await r.json() == {"error": "body too large", "detail": "the limit is 2048 bytes"}
        async with http.post("/events", data=chunks()) as r:
            assert r.status == 413
        async with http.post("/events", data=b"[" + b" " * 2000 + b"]") as r:
            assert r.status == 202
    assert core.ingested == []


async def test_overload_is_503_with_retry_after(http: aiohttp.ClientSession, core: FakeCore) -> None:
    """When the core is Overloaded the answer is 503, Retry-After, and how many items got in."""
    core.capacity = 2
    async with http.post("/events", json=[ALARM, SAMPLE, ALARM, ALARM, ALARM]) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "3"
        assert await r.json() == {
            "error": "overloaded",
            "detail": {"reason": "intake queue is full", "queued": 2, "refused": 3},
        }
    assert len(core.ingested) == 2


# ------------------------------------------------------------------------------------------ alertmanager

FIRING: dict[str, Any] = {
    "labels": {"alertname": "InstanceDown", "instance": "olt-7:9100", "job": "node", "severity": "critical"},
    "annotations": {"summary": "olt-7 is down", "description": "no scrape for 5 minutes"},
    "startsAt": "2026-01-01T00:00:00Z",
    "endsAt": "2999-01-01T00:00:00Z",
    "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
}
RESOLVED: dict[str, Any] = dict(
    FIRING,
    labels={"alertname": "HighLatency", "ne_id": "agg-3", "severity": "warning"},
    endsAt="2026-01-01T00:05:00Z",
)


def decoded(payload: dict[str, Any]) -> Alarm:
    """The alarm the real decoder reads from a converted alert."""
    alarm = DECODER.decode(ALARM_TOPIC, js(payload)).alarm
    assert alarm is not None
    return alarm


@pytest.mark.parametrize(
    ("labels", "ne_id"),
    [
        ({"ne_id": "agg-3", "instance": "x:1", "job": "j"}, "agg-3"),
        ({"instance": "olt-7:9100", "job": "node"}, "olt-7"),
        ({"instance": "10.0.0.7:9100"}, "10.0.0.7"),
        ({"instance": "[2001:db8::7]:9100"}, "2001:db8::7"),
        ({"instance": "2001:db8::7"}, "2001:db8::7"),
        ({"instance": "https://olt-7.example:8443/probe"}, "olt-7.example"),
        ({"instance": "olt-7"}, "olt-7"),
        ({"instance": "", "job": "node"}, "node"),
        ({"job": "node"}, "node"),
    ],
)
def test_alert_element_comes_from_ne_id_instance_or_job(labels: dict[str, str], ne_id: str) -> None:
    """ne_id is label ne_id, else instance without its port (or URL parts), else job."""
    alarm = alert_to_alarm({"labels": {"alertname": "A", **labels}}, now=NOW)
    assert alarm["ne_id"] == ne_id
    assert decoded(alarm).ne_id == ne_id


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", "critical"),
        ("CRITICAL", "critical"),
        ("error", "major"),
        ("major", "major"),
        ("warning", "warning"),
        ("minor", "minor"),
        ("info", "indeterminate"),
        ("none", "indeterminate"),
        (None, "major"),
        ("page", "major"),
    ],
)
def test_alert_severity_mapping(severity: str | None, expected: str) -> None:
    """Label severity maps onto X.733 severities; absent or unknown is major."""
    labels = {"alertname": "A", "job": "j"} | ({"severity": severity} if severity is not None else {})
    assert decoded(alert_to_alarm({"labels": labels}, now=NOW)).severity == expected


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        (None, "qualityOfServiceAlarm"),
        ("equipmentAlarm", "equipmentAlarm"),
        ("CommunicationsAlarm", "communicationsAlarm"),
    ],
)
def test_alert_event_type(event_type: str | None, expected: str) -> None:
    """event_type is qualityOfServiceAlarm unless a label event_type names another X.733 type."""
    labels = {"alertname": "A", "job": "j"} | ({"event_type": event_type} if event_type else {})
    assert decoded(alert_to_alarm({"labels": labels}, now=NOW)).event_type == expected


def test_alert_with_an_unknown_event_type_is_left_for_the_core() -> None:
    """An event_type label the engine does not know is passed on, and the decoder refuses it by name."""
    alarm = alert_to_alarm({"labels": {"alertname": "A", "job": "j", "event_type": "bogus"}}, now=NOW)
    with pytest.raises(InvalidMessage) as err:
        decoded(alarm)
    assert [f for f, _ in err.value.errors] == ["event_type"]


@pytest.mark.parametrize(
    ("labels", "specific"),
    [
        ({"specific_problem": "port 1/1/1", "device": "eth0", "job": "j"}, "port 1/1/1"),
        ({"instance": "h:1", "job": "node", "device": "eth0", "severity": "major"}, "device=eth0,job=node"),
        ({"ne_id": "agg-3", "instance": "h:1"}, "instance=h:1"),
        ({"job": "node"}, None),
    ],
)
def test_alert_specific_problem(labels: dict[str, str], specific: str | None) -> None:
    """specific_problem is its label, else the labels not mapped elsewhere as sorted k=v pairs."""
    alarm = alert_to_alarm({"labels": {"alertname": "A", **labels}}, now=NOW)
    assert alarm.get("specific_problem") == specific
    assert decoded(alarm).specific_problem == specific


def test_a_long_label_set_still_gives_a_valid_specific_problem() -> None:
    """Remaining labels longer than the 256-character limit are cut and made distinct with a hash."""
    labels = {"alertname": "A", "job": "j"} | {f"label_{i:02d}": "v" * 20 for i in range(20)}
    other = dict(labels, label_19="w" * 20)
    one, two = (alert_to_alarm({"labels": x}, now=NOW)["specific_problem"] for x in (labels, other))
    assert len(one) == len(two) == 256
    assert one != two
    assert decoded(alert_to_alarm({"labels": labels}, now=NOW)).specific_problem == one


def test_alert_identity_is_the_label_set() -> None:
    """alarm_id is am: + 16 hex of the label set: stable in any label order, distinct for other labels."""
    labels = {"alertname": "A", "job": "j", "severity": "critical"}
    a = alert_to_alarm({"labels": labels}, now=NOW)
    b = alert_to_alarm({"labels": {"severity": "critical", "job": "j", "alertname": "A"}}, now=NOW + 60)
    c = alert_to_alarm({"labels": {"alertname": "A", "job": "j", "severity": "warning"}}, now=NOW)
    assert a["alarm_id"] == b["alarm_id"] == "am:" + fingerprint(labels)
    assert a["alarm_id"] != c["alarm_id"]
    assert len(a["alarm_id"]) == 3 + 16
    assert int(a["alarm_id"][3:], 16) >= 0
    # A cleared alert keeps the identity of the firing one, so it clears it.
    cleared = alert_to_alarm({"labels": labels, "endsAt": NOW}, now=NOW)
    assert cleared["alarm_id"] == a["alarm_id"]
    assert cleared["severity"] == "cleared"


@pytest.mark.parametrize(
    ("starts", "ends", "severity", "event_time"),
    [
        ("2026-01-01T00:00:00Z", None, "critical", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z", "critical", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:10:00Z", "cleared", "2026-01-01T00:10:00Z"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:04:00.250Z", "cleared", "2026-01-01T00:04:00.250Z"),
        ("2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "critical", "2026-01-01T00:00:00Z"),
        (None, None, "critical", "2026-01-01T00:10:00Z"),
        ("0001-01-01T00:00:00Z", "", "critical", "2026-01-01T00:10:00Z"),
        ("2026-01-01T00:00:00.123456789Z", None, "critical", "2026-01-01T00:00:00.123456Z"),
    ],
)
def test_alert_times(starts: str | None, ends: str | None, severity: str, event_time: str) -> None:
    """Firing at startsAt (now when unset); once endsAt ≤ now, a clear at endsAt. Go's zero time is unset."""
    alert: dict[str, Any] = {"labels": {"alertname": "A", "job": "j", "severity": "critical"}}
    if starts is not None:
        alert["startsAt"] = starts
    if ends is not None:
        alert["endsAt"] = ends
    alarm = decoded(alert_to_alarm(alert, now=NOW))
    assert (alarm.severity, alarm.event_time) == (severity, parse_time(event_time))


@pytest.mark.parametrize("field", ["startsAt", "endsAt"])
def test_an_unreadable_alert_time_is_dead_lettered_by_the_core(field: str) -> None:
    """A time that does not parse is passed on as event_time, which the decoder refuses with its reason."""
    alarm = alert_to_alarm({"labels": {"alertname": "A", "job": "j"}, field: "soon"}, now=NOW)
    with pytest.raises(InvalidMessage) as err:
        decoded(alarm)
    assert err.value.errors == [("event_time", "not an RFC 3339 time: 'soon'")]


@pytest.mark.parametrize(
    ("annotations", "text"),
    [
        ({"summary": "down", "description": "long story"}, "down"),
        ({"description": "long story"}, "long story"),
        ({"runbook_url": "http://wiki"}, None),
        ({"summary": "x" * 5000}, "x" * 4096),
        ("not an object", None),
    ],
)
def test_alert_text_is_the_summary_or_description(annotations: object, text: str | None) -> None:
    """text is the summary annotation, else description, cut to the 4096-character limit."""
    alarm = alert_to_alarm({"labels": {"alertname": "A", "job": "j"}, "annotations": annotations}, now=NOW)
    assert decoded(alarm).text == text


def test_an_alert_without_element_or_name_is_left_for_the_core() -> None:
    """No alertname and no ne_id/instance/job: the fields are left out and the decoder names both."""
    alarm = alert_to_alarm({"labels": {"team": "noc"}, "startsAt": "2026-01-01T00:00:00Z"}, now=NOW)
    with pytest.raises(InvalidMessage) as err:
        decoded(alarm)
    assert sorted(f for f, _ in err.value.errors) == ["ne_id", "probable_cause"]
    assert alert_to_alarm({"labels": "junk"}, now=NOW)["alarm_id"] == "am:" + fingerprint({})


# ------------------------------------------------------------------------------------------------ reload


@pytest.mark.parametrize(
    ("result", "status", "body"),
    [
        ((True, "reloaded: 2 rulesets"), 200, {"status": "reloaded", "message": "reloaded: 2 rulesets"}),
        (
            (False, "rules.yaml: line 3: unknown key"),
            409,
            {"error": "reload refused", "detail": "rules.yaml: line 3: unknown key"},
        ),
        (
            RuntimeError("store closed"),
            500,
            {"error": "reload failed", "detail": "RuntimeError: store closed"},
        ),
    ],
)
async def test_reload(
    http: aiohttp.ClientSession,
    core: FakeCore,
    result: tuple[bool, str] | Exception,
    status: int,
    body: dict[str, Any],
) -> None:
    """POST /-/reload: 200 with the message, 409 when refused (old config runs on), 500 if it raised."""
    core.reload_result = result
    async with http.post("/-/reload") as r:
        assert (r.status, await r.json()) == (status, body)


# ------------------------------------------------------------------------------------- errors, lifecycle


@pytest.mark.usefixtures("default_logging")
async def test_unexpected_exceptions_are_500_without_a_traceback(
    http: aiohttp.ClientSession, core: FakeCore
) -> None:
    """A bug behind an endpoint is logged with its traceback; the client gets a plain JSON 500."""
    core.broken = KeyError("secret internals")
    with capture_logs() as logs:
        async with http.get(f"/incidents/{INCIDENT['incident_id']}") as r:
            assert r.status == 500
            text = await r.text()
    assert orjson.loads(text) == {"error": "internal error", "detail": "see the engine's log"}
    assert "secret" not in text
    assert "Traceback" not in text
    failure = next(e for e in logs if e["event"] == "http handler failed")
    assert failure["log_level"] == "error"
    assert failure["exc_info"] is True


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/nowhere", 404, "not found"),
        ("DELETE", "/incidents", 405, "method not allowed"),
        ("GET", "/events", 405, "method not allowed"),
    ],
)
async def test_routing_errors_are_json(
    http: aiohttp.ClientSession, method: str, path: str, status: int, error: str
) -> None:
    """Unknown paths and methods get the same JSON error shape; 405 keeps its Allow header."""
    async with http.request(method, path) as r:
        assert r.status == status
        assert r.content_type == "application/json"
        assert (await r.json())["error"] == error
        if status == 405:
            assert "Allow" in r.headers


@pytest.mark.usefixtures("default_logging")
async def test_requests_are_logged_at_debug(http: aiohttp.ClientSession) -> None:
    """Each request leaves one debug line with method, path, status and duration."""
    with capture_logs() as logs:
        async with http.get("/incidents?state=outage") as r:
            assert r.status == 200
        async with http.get("/incidents/nope") as r:
            assert r.status == 404
    lines = [e for e in logs if e["event"] == "http request"]
    assert [(e["method"], e["path"], e["query"], e["status"]) for e in lines] == [
        ("GET", "/incidents", "state=outage", 200),
        ("GET", "/incidents/nope", None, 404),
    ]
    assert all(e["log_level"] == "debug" and e["ms"] >= 0 for e in lines)


async def test_the_server_stops_on_exit(core: FakeCore) -> None:
    """Port 0 picks a free port; leaving the context closes it, and .port says it is not running."""
    api = HttpApi(HttpSettings(port=0), core, Metrics())
    with pytest.raises(RuntimeError, match="not running"):
        _ = api.port
    async with api:
        port = api.port
        assert port > 0
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
    with pytest.raises(RuntimeError, match="not running"):
        _ = api.port
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
