"""``engine impact what-if``: planned work on the example network, in text and JSON, and its errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from engine.cli import main
from engine.model.timeutil import format_time
from engine.service.daemon import Daemon
from tests.daemon_harness import settings, until, write_config
from tests.test_cli import engine

TOPOLOGY = str(Path(__file__).resolve().parents[1] / "examples" / "topology.yaml")


def test_one_member_of_a_redundant_pair_puts_its_dependents_at_risk(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """agg-1 down: olt-7 and cell-c1 still work through agg-2 but are at risk, with their 20
    customers; nobody loses service; no SLA breach."""
    assert main(["impact", "what-if", "--down", "agg-1", "--topology", TOPOLOGY, "--format", "json"]) == 0
    r = orjson.loads(capsys.readouterr().out)
    assert (r["elements_down"], r["elements_at_risk"]) == (["agg-1"], ["cell-c1", "olt-7"])
    assert r["customers_losing_service"]["customers"] == 0
    assert r["customers_at_risk"]["customers"] == 20
    assert r["customers_at_risk"]["by_tier"] == {"bronze": 12, "gold": 2, "silver": 6}
    assert r["sla_breaches"] == []


def test_both_members_for_five_hours_lose_service_and_breach_slas(capsys: pytest.CaptureFixture[str]) -> None:
    """agg-1 and agg-2 down for 5 h: olt-7 and cell-c1 are down, 20 customers lose service; gold
    breaches its 4 h time to restore and its 43.2 min budget, silver its 216 min budget, bronze
    (99 %, 7.2 h) does not."""
    args = ["impact", "what-if", "--down", "agg-1,agg-2", "--topology", TOPOLOGY, "--hours", "5"]
    assert main([*args, "--format", "json"]) == 0
    r = orjson.loads(capsys.readouterr().out)
    assert r["elements_down"] == ["agg-1", "agg-2", "cell-c1", "olt-7"]
    assert r["customers_losing_service"]["customers"] == 20
    assert r["customers_losing_service"]["services"] == {"internet": 20, "voip": 5}
    assert [(b["tier"], b["customers"], len(b["reasons"])) for b in r["sla_breaches"]] == [
        ("gold", 2, 2),
        ("silver", 6, 1),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "customers losing service: 20 (by tier: bronze 12, gold 2, silver 6" in text
    assert "SLA breach: gold, 2 customer(s): longer than the time to restore (4h)" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--down", "agg-1,olt-999"], "error: --down: unknown element(s): olt-999"),
        (["--down", ","], "error: --down: give at least one element"),
        (["--down", "agg-1", "--hours", "0"], "error: --hours: must be a number of hours > 0, got 0.0"),
        (["--down", "agg-1", "--at", "0"], "error: --at goes with --store"),
        (["--down", "agg-1", "--token", "t"], "error: --token goes with --api"),
        (
            ["--down", "agg-1", "--api", "http://127.0.0.1:1"],
            "error: --topology does not go with --api (the engine uses its own)",
        ),
        (
            ["--down", "agg-1", "--store", "-"],
            "error: --topology does not go with --store (the daemon's, from --config)",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["impact", "what-if", "--topology", TOPOLOGY, *extra]) == 2
    assert capsys.readouterr().err == message + "\n"


async def test_the_api_takes_the_live_network_into_account(tmp_path: Path, topic_prefix: str) -> None:
    """``GET /impact/what-if`` on a daemon where agg-2 is already down: taking agg-1 down too is an
    outage for olt-7's 20 customers (on paper alone it only puts them at risk); errors are 400s
    naming the parameter."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)
    alarm = {
        "ne_id": "agg-2",
        "severity": "critical",
        "probable_cause": "lossOfSignal",
        "event_time": time.time(),
    }
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with http.post(f"{base}/events", data=orjson.dumps(alarm)) as r:
            assert r.status == 202
        await until(lambda: "agg-2" in daemon.pipeline.query.own_health(), timeout=10, what="the alarm")
        async with http.get(f"{base}/impact/what-if", params={"down": "agg-1", "hours": "5"}) as r:
            assert r.status == 200
            report = await r.json()
        assert report["current_state"] is True
        assert report["already_down_or_degraded"] == ["agg-2"]
        assert report["customers_losing_service"]["customers"] == 20
        assert [b["tier"] for b in report["sla_breaches"]] == ["gold", "silver"]
        async with http.get(f"{base}/impact/what-if") as r:
            assert r.status == 400
            assert (await r.json())["error"] == "missing query parameter 'down'"
        async with http.get(f"{base}/impact/what-if", params={"down": "olt-999"}) as r:
            assert r.status == 400
            body = await r.json()
        assert (body["error"], body["detail"]) == (
            "invalid query parameter 'down'",
            "unknown element(s): olt-999",
        )
        async with http.get(f"{base}/impact/what-if", params={"down": "agg-1", "hours": "x"}) as r:
            assert r.status == 400


def test_without_a_network_or_with_an_engine_that_cannot_be_reached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --topology, --store or --api is a one-line error; so is --store without the daemon's config,
    and an engine that does not answer."""
    assert main(["impact", "what-if", "--down", "agg-1"]) == 2
    assert capsys.readouterr().err == (
        "error: give --topology FILE (on paper), --store (with --config) or --api URL\n"
    )
    assert main(["impact", "what-if", "--down", "agg-1", "--store", "-"]) == 2
    assert capsys.readouterr().err == (
        "error: --store needs the daemon's --config (topology, rulesets, core settings)\n"
    )
    assert main(["impact", "what-if", "--down", "agg-1", "--api", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot ask http://127.0.0.1:1/impact/what-if?down=agg-1&hours=1.0: "), err
    assert err.count("\n") == 1


async def test_the_live_network_from_the_daemons_store_and_its_api_now_and_as_of_a_time(
    tmp_path: Path, topic_prefix: str
) -> None:
    """agg-2 goes down on a running daemon. ``--api`` (the daemon's own report) and ``--store -``
    (its store, read-only while it runs) both say taking agg-1 down too is an outage for 20
    customers; ``--store --at`` a time before the alarm says they are only at risk then. After the
    daemon stopped, its final snapshot is later than that time: ``--at`` is refused, and the current
    state is still read. Bad inputs over the API are one-line errors naming the parameter."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix, extra={"store": {
        "path": str(tmp_path / "engine.sqlite"), "snapshot_interval": "1h"}})  # fmt: skip
    before = time.time()
    await asyncio.sleep(0.05)
    alarm = {
        "ne_id": "agg-2",
        "severity": "critical",
        "probable_cause": "lossOfSignal",
        "event_time": time.time(),
    }
    what_if = ["impact", "what-if", "--down", "agg-1", "--hours", "5", "--format", "json"]
    from_store = [*what_if, "--store", "-", "--config", str(cfg)]
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with http.post(f"{base}/events", data=orjson.dumps(alarm)) as r:
            assert r.status == 202
        await until(lambda: "agg-2" in daemon.pipeline.query.own_health(), timeout=10, what="the alarm")
        daemon.store.commit()
        api, now, then, bad = await asyncio.gather(
            asyncio.to_thread(engine, *what_if, "--api", base),
            asyncio.to_thread(engine, *from_store),
            asyncio.to_thread(engine, *from_store, "--at", format_time(before)),
            asyncio.to_thread(engine, "impact", "what-if", "--down", "olt-999", "--api", base),
        )
    for res in (api, now):
        assert res.status == 0, res.stderr
        report = orjson.loads(res.stdout)
        assert report["already_down_or_degraded"] == ["agg-2"]
        assert report["customers_losing_service"]["customers"] == 20
        assert [b["tier"] for b in report["sla_breaches"]] == ["gold", "silver"]
        assert report["as_of"] is not None
    assert then.status == 0, then.stderr
    report = orjson.loads(then.stdout)
    assert (report["already_down_or_degraded"], report["as_of"]) == ([], format_time(before))
    assert (report["customers_losing_service"]["customers"], report["customers_at_risk"]["customers"]) == (
        0,
        20,
    )
    assert bad.status == 2
    assert bad.stderr == (
        f"error: {base}/impact/what-if?down=olt-999&hours=1.0: HTTP 400 invalid query parameter 'down': "
        "unknown element(s): olt-999\n"
    )
    after = engine(*from_store, "--at", format_time(before))
    assert after.status == 2
    assert after.stderr.startswith("error: --at: "), after.stderr
    assert "its latest snapshot is from" in after.stderr
    assert f"after {format_time(before)}; the state before it is not kept" in after.stderr
    res = engine("impact", "what-if", "--down", "agg-1", "--hours", "5", "--store", "-", "--config", cfg)
    text = res.stdout.decode()
    assert text.startswith("planned: agg-1 down for 5 h (already down or degraded as of "), text
    assert "customers losing service: 20 (by tier: bronze 12, gold 2, silver 6" in text
