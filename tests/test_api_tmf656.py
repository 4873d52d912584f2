"""TMF656 Service Problem: the outgoing events against the v4 swagger's event definitions, and the
read API (incidents as ServiceProblems) served by a real daemon, checked against the same swagger
(and by schemathesis)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from engine.adapters.formats import tmf656_event_type
from engine.service.daemon import Daemon
from tests.daemon_harness import running_daemon, until
from tests.test_formats import NAMES, TMF656, _conforms, _swagger, body, record

SWAGGER = TMF656 / "TMF656-ServiceProblem-v4.0.0.swagger.json"
TOKEN = "tmf656-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.skipif(not SWAGGER.exists(), reason=f"the TMF656 swagger is not at {SWAGGER}")


@pytest.mark.parametrize(
    ("name", "event_type"),
    [
        ("opened", "ServiceProblemCreateEvent"),
        ("at_risk", "ServiceProblemCreateEvent"),
        ("no_customers", "ServiceProblemCreateEvent"),
        ("updated", "ServiceProblemAttributeValueChangeEvent"),
        ("acknowledged", "ServiceProblemStateChangeEvent"),
        ("resolved", "ServiceProblemStateChangeEvent"),
        ("merged", "ServiceProblemStateChangeEvent"),
    ],
)
def test_tmf656_events_conform_to_the_v4_event_definitions(name: str, event_type: str) -> None:
    """Each record's ``tmf656-event`` body is the swagger's event of its type (every field a property
    of that definition, of its type; the payload's serviceProblem a v4 ServiceProblem, refs and their
    required fields checked): opened → Create, acknowledgement and resolution → StateChange (status
    changes), other updates → AttributeValueChange."""
    assert tmf656_event_type(record(name)) == event_type
    event = body("tmf656-event", name)
    defs = _swagger()["definitions"]
    errors: list[str] = []
    _conforms(defs[event_type], event, event_type, errors)
    assert errors == []
    assert event["eventType"] == event_type
    assert event["eventId"] == f"{record(name)['incident_id']}:{record(name)['version']}"
    assert event["event"]["serviceProblem"] == body("tmf656", name)


def test_every_named_record_is_covered() -> None:
    """The parametrization above covers every named record of test_formats."""
    assert {"opened", "at_risk", "no_customers", "updated", "acknowledged", "resolved", "merged"} == set(
        NAMES
    )


# ------------------------------------------------------------------------------------- the API


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str]]:
    async with running_daemon(
        tmp_path, broker_url=None, prefix="test/tmf656", extra={"http": {"port": 0, "token": TOKEN}}
    ) as (d, _rx):
        assert d.http is not None
        await d.ingest(
            d.alarm_topic(),
            orjson.dumps(
                {
                    "ne_id": "agg-3",
                    "probable_cause": "lossOfSignal",
                    "severity": "critical",
                    "event_time": time.time(),
                }
            ),
            source="test",
        )
        await until(lambda: bool(d.store.incidents()), timeout=20, what="the incident")
        yield d, f"http://127.0.0.1:{d.http.port}/tmf-api/serviceProblemManagement/v4"


async def test_incidents_are_served_as_v4_service_problems(daemon: tuple[Daemon, str]) -> None:
    """GET /serviceProblem and /serviceProblem/{id}: v4 ServiceProblems with their href; filters and
    fields; an unknown id is a TMF Error 404; POST is 405 (problems come from correlation)."""
    d, base = daemon
    (incident,) = d.store.incidents()
    defs = _swagger()["definitions"]
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{base}/serviceProblem") as r:
            assert r.status == 200
            (sp,) = await r.json()
        errors: list[str] = []
        _conforms(defs["ServiceProblem"], sp, "ServiceProblem", errors)
        assert errors == []
        assert sp["id"] == incident["incident_id"]
        assert sp["href"].endswith(f"/serviceProblem/{sp['id']}")
        assert sp["rootCauseResource"][0]["id"] == "agg-3"
        async with http.get(f"{base}/serviceProblem/{sp['id']}?fields=status,priority") as r:
            got = await r.json()
        assert got == {"id": sp["id"], "href": sp["href"], "status": "pending", "priority": sp["priority"]}
        async with http.get(f"{base}/serviceProblem?status=resolved") as r:
            assert await r.json() == []
        async with http.get(f"{base}/serviceProblem/inc-nope") as r:
            assert r.status == 404
            error: dict[str, Any] = await r.json()
        errors = []
        _conforms(defs["Error"], error, "Error", errors)
        assert errors == []
        async with http.post(f"{base}/serviceProblem", json={}) as r:
            assert r.status == 405


async def test_schemathesis_against_the_official_swagger(daemon: tuple[Daemon, str], tmp_path: Path) -> None:
    """schemathesis on the served operations (GET serviceProblem, list and one), same checks as for
    the other APIs: no server error, documented statuses, content types and bodies, bad input refused."""
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
        "--include-path-regex=^/serviceProblem",
        "--include-method=GET",
        "--no-color",
        "--seed=1",
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, out.decode()[-6000:]
