"""Firings per rule: counted in the rule host, carried over a snapshot or reload for the rules still
loaded, exposed on /metrics and the dashboard's Operations page; and an incident's version history
over HTTP (``GET /incidents/{id}/history``)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import orjson

from bench.scenarios import example_topology, fiber_cut
from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings
from engine.model.timeutil import parse_time
from engine.model.topology import topology_from_dict
from engine.rules.host import RuleHost
from engine.rules.schema import load_rulesets
from engine.service.daemon import Daemon
from tests.daemon_harness import settings, until, write_config

RULE = "default/topology-root-cause"
TOKEN = "t0ken-for-history"


def test_host_counts_firings_per_rule_and_its_parts() -> None:
    """Each match counts under its action; parts (``rule#part``) fold into their rule; the per-rule
    counts sum to the total."""
    host = RuleHost()
    host.load(
        "x",
        {
            "r0": {"all": [{"m": {"$and": [{"k": "root"}]}}], "run": "rs/pair#root"},
            "r1": {"all": [{"m": {"$and": [{"k": "sym"}]}}], "run": "rs/other#p1"},
            "r2": {"all": [{"m": {"$and": [{"k": "sym"}]}}], "run": "rs/pair#symptom"},
        },
    )
    host.assert_fact("x", {"sid": "s", "id": "1", "k": "root"})
    host.assert_fact("x", {"sid": "s", "id": "2", "k": "sym"})
    host.assert_fact("x", {"sid": "s", "id": "3", "k": "sym"})
    assert host.rule_firings == {"rs/pair#root": 1, "rs/pair#symptom": 2, "rs/other#p1": 2}
    assert host.firings_by_rule() == {"rs/pair": 3, "rs/other": 2}
    assert sum(host.firings_by_rule().values()) == host.firings == 5


def _fed_pipeline() -> Pipeline:
    p = Pipeline(topology_from_dict(example_topology()), load_rulesets(None), CoreSettings())
    for line in fiber_cut()[:51]:
        t = parse_time(line["payload"]["event_time"])
        p.advance_to(t)
        p.feed(line["topic"], orjson.dumps(line["payload"]), t)
    return p


def test_rule_firings_survive_a_snapshot_restore_without_the_refirings() -> None:
    """A restore re-asserts the live facts (durable fires again); the counts are the dumped ones,
    not those plus the re-firings."""
    p = _fed_pipeline()
    before = p.correlator.firings_by_rule()
    assert before[RULE] >= 50  # one join per suppressed link-down
    q = Pipeline(topology_from_dict(example_topology()), load_rulesets(None), CoreSettings())
    q.restore(p.snapshot())
    assert q.correlator.firings_by_rule() == before
    assert q.correlator.firings == p.correlator.firings


def test_restore_drops_the_counts_of_rules_no_longer_loaded() -> None:
    blob = orjson.loads(_fed_pipeline().snapshot())
    blob["forms"]["correlator"]["host"]["rule_firings"]["gone/rule"] = 7
    q = Pipeline(topology_from_dict(example_topology()), load_rulesets(None), CoreSettings())
    q.restore(orjson.dumps(blob))
    assert "gone/rule" not in q.correlator.rule_firings
    assert q.correlator.firings_by_rule()[RULE] >= 50


async def test_firings_on_metrics_and_operations_page_and_history_over_http(
    tmp_path: Path, topic_prefix: str
) -> None:
    """A fiber cut over POST /events: the rule's firings on /metrics and on the Operations page;
    the incident's versions on GET /incidents/{id}/history (token required, 404 for no incident)."""
    cfg = write_config(
        tmp_path, broker_url=None, prefix=topic_prefix, extra={"http": {"port": 0, "token": TOKEN}}
    )
    lines = fiber_cut()
    raises = b"\n".join(orjson.dumps(x["payload"]) for x in lines[:51])
    clears = b"\n".join(orjson.dumps(x["payload"]) for x in lines[51:])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ndjson = {**auth, "Content-Type": "application/x-ndjson"}
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with http.post(f"{base}/events", data=raises, headers=ndjson) as resp:
            assert resp.status == 202, await resp.text()
        await until(lambda: bool(daemon.store.incidents()), timeout=10, what="the incident")
        async with http.post(f"{base}/events", data=clears, headers=ndjson) as resp:
            assert resp.status == 202, await resp.text()
        await until(
            lambda: daemon.store.incidents()[0]["event"] == "resolved", timeout=20, what="the resolution"
        )
        (incident,) = daemon.store.incidents()
        iid = incident["incident_id"]
        firings = daemon.pipeline.correlator.firings_by_rule()[RULE]
        assert firings >= 50

        async with http.get(f"{base}/incidents/{iid}/history") as resp:
            assert resp.status == 401
        async with http.get(f"{base}/incidents/{iid}/history", headers=auth) as resp:
            assert resp.status == 200
            history = await resp.json()
        assert history["incident_id"] == iid
        assert history["count"] == len(history["versions"]) >= 2
        assert history["versions"] == daemon.store.incident_history(iid)
        assert history["versions"][0]["event"] == "opened"
        assert history["versions"][-1]["event"] == "resolved"
        numbers = [v["version"] for v in history["versions"]]
        assert numbers == sorted(numbers)
        async with http.get(f"{base}/incidents/no-such-incident/history", headers=auth) as resp:
            assert resp.status == 404
            assert "no-such-incident" in await resp.text()

        async with http.get(f"{base}/ui/operations", headers=auth) as resp:
            assert resp.status == 200
            page = await resp.text()
        row = re.search(rf"<tr><th scope=\"row\"><code>{RULE}</code>.*?</tr>", page, re.S)
        assert row is not None, page
        assert re.findall(r'<td class="num">(\d+)</td>', row.group(0))[0] == str(firings)

        def metric() -> str | None:
            text = daemon.metrics.render().decode()
            pattern = r'soc_rule_firings_by_rule_total\{rule="topology-root-cause",ruleset="default"\} (\S+)'
            found = re.search(pattern, text)
            return found.group(1) if found else None

        await until(lambda: metric() == f"{float(firings)}", timeout=10, what="the per-rule metric")
        async with http.get(f"{base}/metrics", headers=auth) as resp:
            assert f'rule="topology-root-cause",ruleset="default"}} {float(firings)}' in await resp.text()
