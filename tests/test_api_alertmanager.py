"""The Alertmanager API v2 of the engine, with the real clients and the official spec.

A real daemon (HTTP only, bearer token on) serves the API; ``prometheus`` (Debian) with an alerting
rule pushes to it, ``amtool`` (Debian ``prometheus-alertmanager``) adds, queries and silences
against it, and schemathesis checks it against ``../shared/standards/alertmanager/
api-v2-openapi.yaml``. The silence logic (matchers, states, maintenance) is tested on the pure
core. Tests needing a missing binary are skipped with the reason (``.ci/run`` installs them).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bench.scenarios import example_topology
from engine.adapters.api_alertmanager import (
    AlertmanagerApi,
    alert_error,
    alert_schema_errors,
    postable_silence,
)
from engine.adapters.http import HttpApi, Overloaded
from engine.core.forms.silences import Matcher, MatcherError, Silence, Silences, parse_matcher
from engine.core.pipeline import Pipeline
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.service.config import HttpSettings
from engine.service.daemon import Daemon
from engine.service.metrics import Metrics
from tests.daemon_harness import DaemonProcess, running_daemon, until, write_config
from tests.test_http import FakeCore

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "standards" / "alertmanager" / "api-v2-openapi.yaml"
TOKEN = "am-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ----------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('alertname="Foo"', Matcher("alertname", "Foo")),
        ("alertname=Foo", Matcher("alertname", "Foo")),
        (' severity =~ "crit.*" ', Matcher("severity", "crit.*", True, True)),
        ('ne_id!="olt-1"', Matcher("ne_id", "olt-1", False, False)),
        ("site!~site-[ab]", Matcher("site", "site-[ab]", True, False)),
        (r'summary="a \"quoted\" word"', Matcher("summary", 'a "quoted" word')),
        ('x=""', Matcher("x", "")),
    ],
)
def test_matchers_are_read_as_alertmanager_writes_them(text: str, want: Matcher) -> None:
    """The filter syntax of Alertmanager (pkg/labels): the four operators, quoted or bare values."""
    assert parse_matcher(text) == want


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alertname", "bad matcher format"),
        ('a="b"c"', "unescaped double quote"),
        ('a="b', "unescaped double quote"),
        ("1a=b", "bad matcher format"),
        ('a=~"("', "invalid regular expression"),
    ],
)
def test_bad_matchers_say_why(text: str, reason: str) -> None:
    """A matcher that cannot be read is an error that says why."""
    with pytest.raises(MatcherError, match=reason):
        parse_matcher(text)


def test_regex_matchers_are_anchored_and_absent_labels_are_empty() -> None:
    """As in Alertmanager: ``=~`` matches the whole value; a missing label is the empty string."""
    assert Matcher("a", "ol.", True).matches("olt")
    assert not Matcher("a", "ol", True).matches("olt")
    assert Matcher("a", "", False, True).matches(None)
    assert Matcher("a", "x", False, False).matches(None)


def _silence(sid: str, *matchers: Matcher, starts: float = 0.0, ends: float = 100.0) -> Silence:
    return Silence(sid, matchers, starts, ends, "noc", "works", 0.0)


def test_silence_states_updates_and_expiry() -> None:
    """pending → active → expired on the clock; an update keeping the matchers keeps the id; one
    changing them expires the old silence; expiring a pending one means it never starts."""
    s = Silences()
    assert s.set(_silence("a", Matcher("ne_id", "agg-3"), starts=10, ends=20), 0) == ("a", None)
    assert [x.state(t) for t in (5, 10, 20) for x in s] == ["pending", "active", "expired"]
    assert s.set(_silence("b", Matcher("ne_id", "agg-3"), starts=10, ends=30), 12, replaces="a") == (
        "a",
        None,
    )
    assert s.get("a") is not None
    assert s.get("a").ends_at == 30  # type: ignore[union-attr]
    assert s.set(_silence("c", Matcher("site", "site-d"), ends=40), 12, replaces="a") == ("c", None)
    assert s.get("a").state(12) == "expired"  # type: ignore[union-attr]
    assert s.set(_silence("d", Matcher("ne_id", "x"), starts=50, ends=60), 12) == ("d", None)
    assert s.expire("d", 13) is None
    assert s.get("d").state(55) == "expired"  # type: ignore[union-attr]
    assert s.expire("nope", 13) == "silence nope not found"
    assert s.set(_silence("e", Matcher("ne_id", "x")), 12, replaces="nope") == (
        None,
        "silence nope not found",
    )


@pytest.mark.parametrize(
    ("matchers", "reason"),
    [
        ((Matcher("alertname", "Foo"),), "label 'alertname' cannot be silenced"),
        ((Matcher("instance", "olt-7:.*", True),), "'instance' takes '=' only"),
        ((Matcher("ne_id", ".*", True),), "must not match the empty string"),
    ],
)
def test_silences_the_engine_cannot_keep_are_refused(matchers: tuple[Matcher, ...], reason: str) -> None:
    """A silence is a maintenance window over elements: other labels are refused, with the reason."""
    got, error = Silences().set(_silence("x", *matchers), 0)
    assert got is None
    assert error is not None
    assert reason in error


def _alarm(ne_id: str, cause: str, t: float, severity: str = "critical") -> bytes:
    return orjson.dumps({"ne_id": ne_id, "probable_cause": cause, "severity": severity, "event_time": t})


def test_a_silence_holds_an_incident_like_a_maintenance_window_and_expiry_releases_it(
    tmp_path: Path,
) -> None:
    """A silence on site-d (agg-3's site) holds agg-3's incident back while active; expiring it
    early opens the incident at the next tick, not at the silence's planned end; it survives a
    snapshot."""
    topo_file = tmp_path / "topology.yaml"
    import yaml  # noqa: PLC0415

    topo_file.write_text(yaml.safe_dump(example_topology(), sort_keys=False))
    p = Pipeline(load_topology(topo_file), load_rulesets(None))
    try:
        t0 = 1_000_000.0
        silence = {
            "id": "s-1",
            "matchers": [{"name": "site", "value": "site-d", "isRegex": False, "isEqual": True}],
            "startsAt": t0,
            "endsAt": t0 + 3600,
            "createdBy": "noc",
            "comment": "fiber works",
            "updatedAt": t0,
        }
        assert p.silence({"op": "set", "silence": silence, "replaces": None}, t0) == {"id": "s-1"}
        assert p.calendar.covering_all("agg-3", t0 + 1) == ["s-1"]
        assert p.calendar.covering_all("olt-7", t0 + 1) == []
        p.feed("soc/alarms/x", _alarm("agg-3", "lossOfSignal", t0 + 1), t0 + 1)
        assert p.advance_to(t0 + 60).records == []  # held by the silence
        blob = p.snapshot()
        assert p.silence({"op": "expire", "id": "s-1"}, t0 + 61) == {"id": "s-1"}
        opened = p.advance_to(t0 + 62).records
        assert [r.event for r in opened] == ["opened"]
        assert "held back by maintenance window s-1" in " ".join(opened[0].explanation)
        q = Pipeline(load_topology(topo_file), load_rulesets(None))
        try:
            q.restore(blob)
            assert q.calendar.covering_all("agg-3", t0 + 61) == ["s-1"]
        finally:
            q.close()
    finally:
        p.close()


# ----------------------------------------------------------------------------- the running API


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str]]:
    """The daemon, HTTP only, token on: (daemon, base URL)."""
    async with running_daemon(
        tmp_path, broker_url=None, prefix="test/am", extra={"http": {"port": 0, "token": TOKEN}}
    ) as (d, _rx):
        assert d.http is not None
        yield d, f"http://127.0.0.1:{d.http.port}"


async def _req(method: str, url: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.request(method, url, data=raw if raw is not None else orjson.dumps(body)) as r,
    ):
        text = await r.read()
        return r.status, (orjson.loads(text) if text else None)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"labels": {}}', "body: expected a JSON array of alerts, got object"),
        (b"[{}]", "[0].labels: required"),
        (b'[{"labels": {"a": 1}}]', "[0].labels.a: expected a string, got number"),
        (b'[{"labels": {"a": "b"}, "startsAt": "yesterday"}]', "[0].startsAt: expected an RFC 3339"),
        (b"[1", "body: malformed JSON"),
        (b"", "body: expected JSON, got nothing"),
    ],
)
async def test_post_alerts_refuses_what_breaks_the_spec_with_a_json_string(
    daemon: tuple[Daemon, str], body: bytes, error: str
) -> None:
    """400 with a JSON string body (the spec's BadRequest) naming the place; nothing is taken."""
    d, base = daemon
    status, got = await _req("POST", f"{base}/api/v2/alerts", raw=body)
    assert status == 400
    assert isinstance(got, str)
    assert error in got
    assert d.pipeline.stats.messages.get("alarm", 0) == 0


async def test_post_alerts_takes_the_valid_alerts_and_names_the_refused_ones(
    daemon: tuple[Daemon, str],
) -> None:
    """As Alertmanager: spec-valid alerts it would refuse (no label, bad label name, ending before
    starting) are named in the 400; the valid ones of the batch are taken."""
    d, base = daemon
    alerts = [
        {"labels": {}},
        {"labels": {"alertname": "X", "ne_id": "olt-004"}, "startsAt": "2026-01-02T00:00:00Z",
         "endsAt": "2026-01-01T00:00:00Z"},
        {"labels": {"alertname": "LinkDown", "ne_id": "olt-004", "severity": "critical"}},
        {"labels": {"bad-name": "x"}},
    ]  # fmt: skip
    status, got = await _req("POST", f"{base}/api/v2/alerts", alerts)
    assert status == 400
    assert got == (
        "[0]: at least one label pair required; [1]: start time must be before end time; "
        "[3]: invalid label set: invalid name 'bad-name'"
    )
    await until(lambda: d.pipeline.stats.messages.get("alarm", 0) == 1, timeout=10, what="the valid alert")


async def test_read_side_shows_inhibition_groups_by_incident_and_filters(daemon: tuple[Daemon, str]) -> None:
    """A root and its symptom: the symptom is suppressed, ``inhibitedBy`` the root's fingerprint;
    one group per incident; ``filter`` and ``inhibited=false`` select as in Alertmanager."""
    d, base = daemon
    now = time.time()
    for payload in (_alarm("agg-3", "lossOfSignal", now), _alarm("olt-001", "linkDown", now + 0.1)):
        await d.ingest(d.alarm_topic(), payload, source="test")
    status, alerts = await _req("GET", f"{base}/api/v2/alerts")
    assert status == 200
    by_name = {a["labels"]["ne_id"]: a for a in alerts}
    root, symptom = by_name["agg-3"], by_name["olt-001"]
    assert root["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}
    assert symptom["status"]["state"] == "suppressed"
    assert symptom["status"]["inhibitedBy"] == [root["fingerprint"]]
    assert symptom["labels"]["site"] == "site-d1"
    assert symptom["labels"]["alertname"] == "linkDown"
    _, groups = await _req("GET", f"{base}/api/v2/alerts/groups")
    assert len(groups) == 1
    assert groups[0]["labels"]["incident_id"].startswith("inc-")
    assert sorted(a["labels"]["ne_id"] for a in groups[0]["alerts"]) == ["agg-3", "olt-001"]
    _, got = await _req("GET", f"{base}/api/v2/alerts?inhibited=false")
    assert [a["labels"]["ne_id"] for a in got] == ["agg-3"]
    _, got = await _req("GET", f"{base}/api/v2/alerts?filter=alertname%3D~%22link.%2A%22")
    assert [a["labels"]["ne_id"] for a in got] == ["olt-001"]
    status, got = await _req("GET", f"{base}/api/v2/alerts?filter=nope")
    assert (status, got) == (400, "filter: bad matcher format: nope")
    status, got = await _req("GET", f"{base}/api/v2/alerts?active=maybe")
    assert (status, got) == (400, "active in query must be of type boolean: 'maybe'")


async def test_silence_errors_are_spec_answers(daemon: tuple[Daemon, str]) -> None:
    """Unknown silence: 404 (get, delete, update); a silence the engine cannot keep: 400, why."""
    _, base = daemon
    unknown = "6c1d2b4e-0000-4000-8000-000000000000"
    assert (await _req("GET", f"{base}/api/v2/silence/{unknown}"))[0] == 404
    assert (await _req("DELETE", f"{base}/api/v2/silence/{unknown}"))[0] == 404
    silence = {
        "matchers": [{"name": "alertname", "value": "Foo", "isRegex": False}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "noc",
        "comment": "x",
    }
    status, got = await _req("POST", f"{base}/api/v2/silences", silence)
    assert status == 400
    assert "label 'alertname' cannot be silenced" in got
    silence["matchers"] = [{"name": "ne_id", "value": "agg-3", "isRegex": False}]
    status, got = await _req("POST", f"{base}/api/v2/silences", {**silence, "id": unknown})
    assert (status, got) == (404, f"silence {unknown} not found")
    status, got = await _req("POST", f"{base}/api/v2/silences", {**silence, "endsAt": "2020-01-01T00:00:00Z"})
    assert status == 400
    assert got in ("start time must be before end time", "end time can't be in the past")


async def test_a_catastrophic_filter_answers_and_healthz_stays_responsive(daemon: tuple[Daemon, str]) -> None:
    """The reviewer's freeze: ``alertname=~"(a+)+$"`` against an alert named thirty-two ``a`` and a
    ``!`` kept Python's backtracking ``re`` (and so the event loop, ``/healthz`` included) busy for
    hours. RE2 answers at once, anchored as in Alertmanager: only the alert named ``a…a`` matches;
    ``/healthz``, asked at the same time, answers too."""
    d, base = daemon
    alerts = [
        {"labels": {"alertname": "a" * 32 + "!", "instance": "agg-1", "severity": "critical"}},
        {"labels": {"alertname": "a" * 32, "instance": "agg-2", "severity": "critical"}},
    ]
    assert (await _req("POST", f"{base}/api/v2/alerts", alerts))[0] == 200
    await until(lambda: d.pipeline.stats.messages.get("alarm", 0) == 2, timeout=10, what="both alerts")
    filtered, health = await asyncio.gather(
        _req("GET", f"{base}/api/v2/alerts?filter=alertname%3D~%22(a%2B)%2B%24%22"),
        _req("GET", f"{base}/healthz"),
    )
    status, got = filtered
    assert status == 200
    assert [a["labels"]["alertname"] for a in got] == ["a" * 32]
    assert health[0] == 200
    status, got = await _req("GET", f"{base}/api/v2/alerts?filter=alertname%21~%22(a%2B)%2B%24%22")
    assert [a["labels"]["alertname"] for a in got] == ["a" * 32 + "!"]


async def test_a_regex_re2_cannot_run_is_a_400_naming_the_matcher(daemon: tuple[Daemon, str]) -> None:
    """A backreference or lookaround in a filter, a silence's matcher or ``receiver`` is refused
    with a 400 naming the matcher and the feature (Alertmanager's Go ``regexp`` refuses them too):
    never run by a backtracking engine."""
    _, base = daemon
    status, got = await _req("GET", f"{base}/api/v2/alerts?filter=alertname%3D~%22(a)%5C1%22")
    assert (status, got) == (
        400,
        'filter: matcher alertname=~"(a)\\\\1": the regular expression uses a feature a linear-time '
        "regex engine cannot run: a backreference (\\1)",
    )
    silence = {
        "matchers": [{"name": "ne_id", "value": "(?!agg-3)agg-.*", "isRegex": True}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "noc",
        "comment": "x",
    }
    status, got = await _req("POST", f"{base}/api/v2/silences", silence)
    assert (status, got) == (
        400,
        'matchers[0]: matcher ne_id=~"(?!agg-3)agg-.*": the regular expression uses a feature a '
        "linear-time regex engine cannot run: a negative lookahead (?!…)",
    )
    status, got = await _req("GET", f"{base}/api/v2/alerts?receiver=(%3F%3C%3Dx)noc")
    assert (status, got) == (
        400,
        "receiver: regular expression '(?<=x)noc' uses a feature a linear-time regex engine cannot "
        "run: a lookbehind (?<=…)",
    )


# ------------------------------------------------------------------------------ real clients


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install {package}; .ci/run does it)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=cwd
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_prometheus_alerting_rule_opens_an_incident(daemon: tuple[Daemon, str], tmp_path: Path) -> None:
    """A real Prometheus, evaluating a rule every second, sends its alert (bearer token from its
    ``authorization`` config) and the engine opens an incident rooted at the alert's element."""
    binary = _need("prometheus", "prometheus")
    d, base = daemon
    port = base.rsplit(":", 1)[1]
    (tmp_path / "rules.yml").write_text(
        "groups:\n  - name: olt\n    rules:\n      - alert: AggUnreachable\n        expr: vector(1)\n"
        "        labels: {ne_id: agg-3, severity: critical}\n"
        "        annotations: {summary: agg-3 does not answer}\n"
    )
    (tmp_path / "prometheus.yml").write_text(
        "global: {evaluation_interval: 1s}\n"
        f"rule_files: [{tmp_path / 'rules.yml'}]\n"
        "alerting:\n  alertmanagers:\n    - api_version: v2\n"
        f"      authorization: {{credentials: {TOKEN}}}\n"
        f"      static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{_free_port()}",
                "--rules.alert.resend-delay=1s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await until(lambda: bool(d.store.incidents()), timeout=40, what="Prometheus' alert as an incident")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    (incident,) = d.store.incidents()
    assert incident["root_cause"]["ne_id"] == "agg-3"
    assert incident["root_cause"]["probable_cause"] == "AggUnreachable"
    assert incident["event"] == "opened"
    _, alerts = await _req("GET", f"{base}/api/v2/alerts")
    assert alerts[0]["labels"] == {"alertname": "AggUnreachable", "ne_id": "agg-3", "severity": "critical"}
    assert alerts[0]["generatorURL"].startswith("http://")


async def test_amtool_adds_queries_silences_and_expires(daemon: tuple[Daemon, str], tmp_path: Path) -> None:
    """amtool (bearer token through ``--http.config.file``): ``alert add``, ``alert query``,
    ``silence add`` (the alert shows as suppressed), ``silence query``, ``silence expire``."""
    binary = _need("amtool", "prometheus-alertmanager")
    d, base = daemon
    (tmp_path / "http.yml").write_text(f"authorization:\n  credentials: {TOKEN}\n")
    am = [binary, f"--alertmanager.url={base}", f"--http.config.file={tmp_path / 'http.yml'}"]

    rc, _, err = await _run(*am, "alert", "add", "alertname=LinkDown", "ne_id=olt-004", "severity=critical",
                            "--annotation=summary=olt-004 link down")  # fmt: skip
    assert rc == 0, err
    await until(lambda: d.pipeline.stats.messages.get("alarm", 0) == 1, timeout=10, what="the alert")
    rc, out, err = await _run(*am, "-o", "json", "alert", "query", "alertname=LinkDown")
    assert rc == 0, err
    (alert,) = json.loads(out)
    assert alert["labels"] == {"alertname": "LinkDown", "ne_id": "olt-004", "severity": "critical"}
    assert alert["annotations"] == {"summary": "olt-004 link down"}
    assert alert["status"]["state"] == "active"

    rc, out, err = await _run(*am, "silence", "add", "ne_id=olt-004", "--comment=fiber works", "--author=noc")
    assert rc == 0, err
    silence_id = out.strip()
    rc, out, err = await _run(*am, "-o", "json", "silence", "query")
    assert rc == 0, err
    (silence,) = json.loads(out)
    assert (silence["id"], silence["status"]["state"], silence["createdBy"]) == (silence_id, "active", "noc")
    rc, out, _ = await _run(*am, "-o", "json", "alert", "query")
    assert json.loads(out) == []  # amtool's default: not silenced
    rc, out, _ = await _run(*am, "-o", "json", "alert", "query", "--silenced")
    (alert,) = json.loads(out)
    assert alert["status"]["silencedBy"] == [silence_id]

    rc, _, err = await _run(*am, "silence", "expire", silence_id)
    assert rc == 0, err
    rc, out, _ = await _run(*am, "-o", "json", "silence", "query", "--expired")
    assert [s["status"]["state"] for s in json.loads(out)] == ["expired"]
    rc, out, _ = await _run(*am, "-o", "json", "alert", "query")
    assert len(json.loads(out)) == 1
    rc, _, err = await _run(*am, "silence", "add", "alertname=LinkDown", "--comment=x")
    assert rc != 0
    assert "label 'alertname' cannot be silenced" in err


async def test_schemathesis_against_the_official_spec(daemon: tuple[Daemon, str], tmp_path: Path) -> None:
    """schemathesis generates valid and invalid requests from Alertmanager's own OpenAPI file for
    every operation we serve: no server error, status codes, content types and response bodies as
    the spec has them, invalid input refused. ``positive_data_acceptance`` is left out on purpose:
    Alertmanager itself refuses spec-valid alerts (no label) and silences (ending in the past), and
    the engine refuses silences on labels other than the element's (docs/api.md)."""
    if not SPEC.exists():
        pytest.skip(f"the spec is not at {SPEC}")
    st = Path(sys.executable).parent / "schemathesis"
    if not st.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    _, base = daemon
    rc, out, err = await _run(
        str(st),
        "run",
        str(SPEC),
        f"--url={base}/api/v2",
        f"--header=Authorization: Bearer {TOKEN}",
        "--checks=not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,negative_data_rejection",
        "--max-examples=8",
        "--phases=examples,fuzzing",
        "--no-color",
        "--seed=1",
        cwd=tmp_path,  # its .schemathesis folder
    )
    assert rc == 0, out[-6000:] + err[-2000:]


class _FullIntake:
    """An ``AlertmanagerCore`` whose intake is full (only what POST needs is real)."""

    query: Any = None

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None:
        raise Overloaded(retry_after=2.5)

    def alarm_topic(self) -> str:
        return "soc/alarms/http"

    async def silence(self, command: dict[str, Any]) -> dict[str, Any] | None:
        raise Overloaded(retry_after=2.5)

    def receiver_names(self) -> list[str]:
        return []


async def test_a_full_intake_is_503_with_retry_after_and_a_json_string() -> None:
    """Overload answers Prometheus and amtool 503 with Retry-After (they retry), body a string."""
    full = _FullIntake()
    async with HttpApi(
        HttpSettings(port=0), FakeCore(), Metrics(), route_sets=[AlertmanagerApi(full)]
    ) as api:
        base = f"http://127.0.0.1:{api.port}/api/v2"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/alerts", json=[{"labels": {"alertname": "A", "ne_id": "x"}}]) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "3"
                assert (
                    await r.json() == "overloaded: intake queue is full; 0 of 1 alerts queued, retry the rest"
                )
            async with http.delete(f"{base}/silence/x") as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "3"  # the core's own delay, as for alerts


async def test_a_silence_survives_a_kill_9_from_the_journal(tmp_path: Path) -> None:
    """A silence is core state: journaled before it is answered, so a daemon killed with SIGKILL
    (no snapshot since) has it again after the restart, from the journal."""
    store = {"path": str(tmp_path / "engine.sqlite"), "snapshot_interval": "1h"}
    cfg = write_config(
        tmp_path, broker_url=None, prefix="test/am-kill", extra={"store": store, "http": {"port": 0}}
    )
    silence = {
        "matchers": [{"name": "region", "value": "south", "isRegex": False}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "noc",
        "comment": "regional works",
    }
    proc = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        proc.start()
        await proc.wait_started()
        base = f"http://127.0.0.1:{proc.started_lines()[-1]['http_port']}/api/v2"
        status, got = await _req("POST", f"{base}/silences", silence)
        assert status == 200
        silence_id = got["silenceID"]
        proc.kill9()
        proc.start()
        await until(lambda: len(proc.started_lines()) == 2, timeout=30, what="the second start")
        assert proc.started_lines()[-1]["journal_replayed"] >= 1
        base = f"http://127.0.0.1:{proc.started_lines()[-1]['http_port']}/api/v2"
        status, got = await _req("GET", f"{base}/silence/{silence_id}")
        assert status == 200
        assert (got["comment"], got["status"]["state"]) == ("regional works", "active")
    finally:
        proc.stop()


def test_go_zero_time_is_unset_in_alerts_and_a_long_past_start_in_silences() -> None:
    """amtool posts Go's zero time (``0001-01-01T00:00:00Z``) for what it leaves unset; a time
    before 1970 is otherwise refused (``BeforeEpoch``), so the API reads this one as 0, as before."""
    zero = "0001-01-01T00:00:00.000Z"
    alert = {"labels": {"alertname": "LinkDown", "ne_id": "olt-1"}, "startsAt": zero, "endsAt": zero}
    assert alert_schema_errors([alert]) == []
    assert alert_error(alert) is None
    _, fields = postable_silence(
        {"matchers": [{"name": "ne_id", "value": "olt-1", "isRegex": False}], "startsAt": zero,
         "endsAt": "2026-01-01T00:00:00Z", "createdBy": "noc", "comment": "works"}
    )  # fmt: skip
    assert (fields["startsAt"], fields["endsAt"]) == (0.0, 1767225600.0)
