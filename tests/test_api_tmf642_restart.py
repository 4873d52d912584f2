"""TMF642 state survives the daemon: an operator's acknowledgement and an OSS's hub subscription
are in the store, through a clean stop and a ``kill -9``. A real daemon process on one SQLite file,
a real aiohttp listener on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from engine.adapters.api_tmf642 import KEEP_INACTIVE, Tmf642Api
from engine.tools.receiver import WebhookReceiver
from tests.daemon_harness import DaemonProcess, running_daemon, until, write_config

TOKEN = "tmf-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "/tmf-api/alarmManagement/v4"
ALARM: dict[str, Any] = {
    "alarmType": "Communications Alarm",
    "perceivedSeverity": "Critical",
    "probableCause": "lossOfSignal",
    "specificProblem": "port 1/1/1",
    "alarmedObject": {"id": "agg-3"},
    "sourceSystemId": "ems-7",
    "externalAlarmId": "ems-7:4711",
    "state": "raised",
    "alarmRaisedTime": "2026-01-01T00:00:00Z",
}


async def _restarted(proc: DaemonProcess) -> str:
    n = len(proc.started_lines()) if proc.log.exists() else 0
    proc.start()
    await proc.wait_started()  # the first start; after it, "engine started" is already in the log
    await until(lambda: len(proc.started_lines()) > n, timeout=20, what="a start")
    return f"http://127.0.0.1:{proc.started_lines()[-1]['http_port']}{BASE}"


async def _acked(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/alarm/ems-7:4711") as r:
        assert r.status == 200, await r.text()
        alarm: dict[str, Any] = await r.json()
    return alarm


async def test_ack_task_and_subscription_survive_a_stop_and_a_kill_9(tmp_path: Path) -> None:
    """Subscribe, raise, acknowledge (PATCH) and ackAlarms; stop cleanly, start: still acknowledged
    by the same user, the task still there; kill -9, start: the same; then a clear is delivered to
    the listener subscribed before both restarts."""
    cfg = write_config(
        tmp_path, broker_url=None, prefix="test/tmf-restart", extra={"http": {"port": 0, "token": TOKEN}}
    )
    proc = DaemonProcess(cfg, tmp_path / "daemon.log")
    async with WebhookReceiver() as rx, aiohttp.ClientSession(headers=AUTH) as http:
        try:
            base = await _restarted(proc)
            async with http.post(f"{base}/hub", json={"callback": rx.url.rstrip("/")}) as r:
                assert r.status == 201, await r.text()
                sub = await r.json()
            async with http.post(f"{base}/alarm", json=ALARM) as r:
                assert r.status == 201, await r.text()
            patch = {
                "ackState": "acknowledged",
                "ackUserId": "ann",
                "ackSystemId": "noc-7",
                "comment": [{"comment": "fibre crew sent", "userId": "ann"}],
            }
            async with http.patch(f"{base}/alarm/ems-7:4711", json=patch) as r:
                assert r.status == 200, await r.text()
            task = {"ackUserId": "bob", "ackSystemId": "oss", "alarmPattern": [{"id": "ems-7:4711"}]}
            async with http.post(f"{base}/ackAlarms", json=task) as r:
                assert r.status == 201, await r.text()
                task_id = (await r.json())["id"]
            async with http.patch(f"{base}/alarm/ems-7:4711", json={**patch, "comment": []}) as r:
                assert r.status == 200, await r.text()

            comments = patch["comment"]
            for stop in (proc.terminate, proc.kill9):
                stop()
                base = await _restarted(proc)
                alarm = await _acked(http, base)
                assert alarm["ackState"] == "acknowledged", (stop.__name__, alarm)
                assert (alarm["ackUserId"], alarm["ackSystemId"]) == ("ann", "noc-7"), stop.__name__
                assert alarm["comment"] == comments, stop.__name__
                # written just before the next stop (the kill -9: the 200 means committed)
                more = [{"comment": f"after {stop.__name__}", "userId": "ann"}]
                async with http.patch(f"{base}/alarm/ems-7:4711", json={"comment": more}) as r:
                    assert r.status == 200, await r.text()
                comments = [*comments, *more]
                async with http.get(f"{base}/ackAlarms/{task_id}") as r:
                    assert r.status == 200, (stop.__name__, await r.text())
                    assert [a["id"] for a in (await r.json())["ackedAlarm"]] == ["ems-7:4711"]

            before = len(rx.records)
            async with http.patch(f"{base}/alarm/ems-7:4711", json={"state": "cleared"}) as r:
                assert r.status == 200, await r.text()
            await until(
                lambda: any(e["eventType"] == "AlarmStateChangeEvent" for e in rx.records[before:]),
                timeout=15,
                what="the clear, delivered to the listener subscribed before the restarts",
            )
            cleared = next(e for e in rx.records[before:] if e["eventType"] == "AlarmStateChangeEvent")
            assert cleared["event"]["alarm"]["state"] == "cleared"
            assert cleared["event"]["alarm"]["ackUserId"] == "ann"
            assert cleared["event"]["alarm"]["comment"] == comments
            async with http.delete(f"{base}/hub/{sub['id']}") as r:
                assert r.status == 204
            proc.terminate()
            base = await _restarted(proc)
            async with http.delete(f"{base}/hub/{sub['id']}") as r:
                assert r.status == 404, "an unsubscribed listener came back after a restart"
        finally:
            proc.stop()


async def test_the_state_of_alarms_no_longer_active_is_purged_after_its_retention(tmp_path: Path) -> None:
    """Acknowledged alarms: the cleared one's state goes from memory and from the SQLite file once
    older than the retention; the active one's stays, however old."""
    extra = {"http": {"port": 0, "token": TOKEN}}
    async with running_daemon(tmp_path, broker_url=None, prefix="test/tmf-purge", extra=extra) as (d, _rx):
        assert d.http is not None
        api = next(r for r in d.http._route_sets if isinstance(r, Tmf642Api))
        base = f"http://127.0.0.1:{d.http.port}{BASE}"
        other = {**ALARM, "externalAlarmId": "ems-7:4712", "specificProblem": "port 1/1/2"}
        async with aiohttp.ClientSession(headers=AUTH) as http:
            for body in (ALARM, other):
                async with http.post(f"{base}/alarm", json=body) as r:
                    assert r.status == 201, await r.text()
                async with http.patch(
                    f"{base}/alarm/{body['externalAlarmId']}", json={"ackState": "acknowledged"}
                ) as r:
                    assert r.status == 200, await r.text()
            async with http.patch(f"{base}/alarm/ems-7:4711", json={"state": "cleared"}) as r:
                assert r.status == 200, await r.text()
            await until(
                lambda: not getattr(d.pipeline.alarms.get("ems-7:4711"), "active", True),
                timeout=10,
                what="clear",
            )
            assert api.purge(time.time()) == 0, "purged before its retention"
            assert api.purge(time.time() + KEEP_INACTIVE + 1) == 1
            assert [a for a, _, _ in d.store.tmf642_alarm_states()] == ["ems-7:4712"]
            async with http.get(f"{base}/alarm/ems-7:4712") as r:
                assert (await r.json())["ackState"] == "acknowledged"
