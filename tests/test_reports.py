"""`engine report services|customers|customer|sla` on a replay and on the daemon's store, and the same
data on the HTTP API (`GET /services`, `/services/{type}`, `/sla`, `/customers/{id}`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.scenarios import T0, alarm, clear
from engine.service.daemon import Daemon
from tests.daemon_harness import settings, until, write_config
from tests.test_cli import EXAMPLE_TOPOLOGY, engine


def _events(t0: float = T0) -> list[dict[str, Any]]:
    """olt-002 (platinum c-00050 behind it) down at t0; four internet paths behind olt-7 at 300 ms and
    two behind olt-001 at 20 ms, every 15 s for 2 min."""
    lines = [alarm("olt-002", "lossOfSignal", t0 - T0, "critical")]
    for i in range(8):
        for c in ("c-00001", "c-00002", "c-00003", "c-00005"):
            lines.append(_sample("olt-7", c, t0 + 15.0 * i, 300.0))
        for c in ("c-00021", "c-00022"):
            lines.append(_sample("olt-001", c, t0 + 15.0 * i, 20.0))
    return lines


def _path_sample(
    target: str, customer: str, t: float, *, probe: str, service: str, metrics: dict[str, float]
) -> dict[str, Any]:
    payload = {
        "probe_id": probe,
        "target": target,
        "service": service,
        "customer": customer,
        "time": t,
        "metrics": metrics,
    }
    return {"topic": f"soc/probes/{probe}", "payload": payload}


def _sample(target: str, customer: str, t: float, latency: float) -> dict[str, Any]:
    return _path_sample(target, customer, t, probe="p", service="internet", metrics={"latency_ms": latency})


def _voip_mos(target: str, customer: str, t: float, mos: float) -> dict[str, Any]:
    return _path_sample(target, customer, t, probe="pm", service="voip", metrics={"mos": mos})


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in _events()))
    return path


def test_report_from_a_replay(tmp_path: Path) -> None:
    events = _write(tmp_path)
    base = ("--replay", events, "--topology", EXAMPLE_TOPOLOGY)
    r = engine("report", "sla", *base, "--json")
    assert r.status == 0, r.stderr
    sla = orjson.loads(r.stdout)
    # state as of the last line (105 s): c-00050's 1,296 s platinum budget has 1,191 s left
    assert sla["tiers"]["platinum"]["seconds_to_first_breach"] == 1191.0
    assert sla["tiers"]["platinum"]["customers_down"] == 1
    r = engine("report", "services", *base, "--json")
    svc = orjson.loads(r.stdout)["services"]["internet"]
    assert svc["kqis"]["paths"] == 6
    assert svc["kqis"]["degraded_paths"] == 4
    r = engine("report", "customer", "--customer", "c-00001", *base, "--json")
    c = orjson.loads(r.stdout)
    assert c["experience"]["index"] == 0.0  # latency violated (0) and olt-7 degraded by inference (cap 50)
    latency = next(k for k in c["kqis"]["internet"] if k["name"] == "internet.latency")
    assert (latency["status"], latency["value"], latency["target"]) == ("violated", 300.0, 100.0)
    r = engine("report", "customers", *base, "--limit", "3")
    assert r.status == 0
    text = r.stdout.decode()
    assert "worst experience first" in text
    assert text.count("\nc-") == 3
    r = engine("report", "customer", "--customer", "nobody", *base)
    assert (r.status, r.stderr.strip()) == (1, "error: no customer 'nobody' in the topology")
    r = engine("report", "sla", "--topology", EXAMPLE_TOPOLOGY)
    assert r.status == 2
    assert "give --replay FILE" in r.stderr


def test_report_of_a_replay_with_bad_lines(tmp_path: Path) -> None:
    """A file with no readable event is refused (exit 2, the file and the first bad line named);
    one with some bad lines is reported, with one warning that counts them."""
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)
    r = engine("report", "services", "--replay", binary, "--topology", EXAMPLE_TOPOLOGY)
    assert r.status == 2
    assert r.stderr.startswith(f"error: {binary}: no event could be read: ")
    assert "(line 1: malformed JSON" in r.stderr
    assert r.stdout == b""
    mixed = _write(tmp_path)
    with mixed.open("ab") as fh:
        fh.write(b"not json\n")
    r = engine("report", "services", "--replay", mixed, "--topology", EXAMPLE_TOPOLOGY, "--json")
    assert r.status == 0, r.stderr
    assert orjson.loads(r.stdout)["services"]["internet"]["kqis"]["paths"] == 6
    lines = len(_events()) + 1
    assert r.stderr.strip().startswith(
        f"warning: {mixed}: 1 line skipped as bad (line {lines}: malformed JSON"
    )


def test_report_sla_text_lists_the_breaches_of_a_replay(tmp_path: Path) -> None:
    """olt-002 (platinum c-00050 behind it) down from 0 to 1,400 s: the platinum budget, 30 d ×
    0.0005 = 1,296 s, is exhausted at T0 + 1,296 s = 00:21:36 and the breach is recorded when the
    outage ends (gold's 2,592 s and the others' budgets are not reached). Silver c-00108 measures
    voip MOS 3.3 (floor 3.6) every 30 s from 0 to 120 s: the evaluation due at 120 s (every 60 s
    from the first sample; it fires before the 120 s sample, over 4 samples ≥ min_samples 3) records
    a MOS breach at 00:02:00. The text report, not only --json, lists both, in the order recorded."""
    path = tmp_path / "outage.jsonl"
    lines = [alarm("olt-002", "lossOfSignal", 0, "critical")]
    lines += [_voip_mos("olt-005", "c-00108", T0 + 30.0 * i, 3.3) for i in range(5)]
    lines.append(clear("olt-002", "lossOfSignal", 1400))
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    r = engine("report", "sla", "--replay", path, "--topology", EXAMPLE_TOPOLOGY)
    assert r.status == 0, r.stderr
    text = r.stdout.decode()
    assert text.endswith(
        "breaches recorded: 2\n"
        "  2026-01-01T00:02:00.000Z silver mos: customer c-00108; mos 3.3, floor 3.6\n"
        "  2026-01-01T00:21:36.000Z platinum availability: group olt-002 internet (1 customer(s)); "
        "budget 1296.0, target 0.9995, period 2592000.0\n"
    )


async def test_report_endpoints_and_the_store_of_a_daemon(tmp_path: Path, topic_prefix: str) -> None:
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)
    body = b"\n".join(orjson.dumps(line["payload"]) for line in _events(time.time() - 120))
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with http.post(
            f"{base}/events", data=body, headers={"Content-Type": "application/x-ndjson"}
        ) as r:
            assert r.status == 202
        await until(lambda: daemon.pipeline.quality.windows.observed >= 48, timeout=10, what="the samples")
        async with http.get(f"{base}/services") as r:
            assert r.status == 200
            assert (await r.json())["services"]["internet"]["kqis"]["paths"] == 6
        async with http.get(f"{base}/services/voip") as r:
            assert r.status == 200
            assert (await r.json())["targets"][0]["name"] == "voip.one_way_delay"
        async with http.get(f"{base}/services/fax") as r:
            assert r.status == 404
            assert "no service type 'fax' (known: internet, voip)" in (await r.json())["detail"]
        async with http.get(f"{base}/customers/c-00050") as r:
            assert r.status == 200
            c = await r.json()
        assert c["sla"]["down"] is True
        assert c["sla"]["budget"] == 1296.0
        assert c["experience"]["band"] == "bad"
        async with http.get(f"{base}/sla") as r:
            assert (await r.json())["tiers"]["platinum"]["customers_down"] == 1
    res = engine("report", "sla", "--store", "-", "--config", cfg, "--json")
    assert res.status == 0, res.stderr
    assert orjson.loads(res.stdout)["tiers"]["platinum"]["customers_down"] == 1
