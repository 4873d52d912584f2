"""The demo's webhook receiver, over real HTTP on loopback: signatures, duplicates, scripted failures,
and the terminal lines and summary it prints."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bench.scenarios import alarm, fiber_cut, site_power_failure
from engine.tools.receiver import WebhookReceiver, render_line, sign, verify_signature
from tests.harness import run

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret"
NOW = 1_767_225_631.0  # 2026-01-01T00:00:31Z


def _records() -> list[dict[str, Any]]:
    """Real incident records from the core: the fiber cut's opened and resolved (without the
    `updated` of the platinum customers' SLA breach between them)."""
    return [r for r in run(fiber_cut()).records if r["event"] != "updated"]


class Clock:
    """A fixed wall clock for signature tolerance checks."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


def _key(record: dict[str, Any]) -> dict[str, str]:
    return {"Idempotency-Key": f"{record['incident_id']}:{record['version']}"}


async def test_signed_records_are_verified_and_kept_in_order() -> None:
    """Records signed with the shared secret are accepted (200), kept in order and passed to on_record."""
    seen: list[Any] = []
    opened, resolved = _records()
    async with WebhookReceiver(secret=SECRET, clock=Clock(NOW), on_record=seen.append) as rx:
        for record in (opened, resolved):
            body = orjson.dumps(record)
            status, answer = await _post(rx.url, body, {**sign(SECRET, body, int(NOW)), **_key(record)})
            assert (status, answer["status"]) == (200, "accepted")
    assert rx.records == [opened, resolved]
    assert seen == [opened, resolved]
    assert rx.counts.accepted == 2
    assert rx.counts.bad_signatures == 0


async def test_signature_format_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """The header format is pinned independently of ``sign``: sha256=hex(HMAC(secret, "<ts>." + body))."""
    body = b'{"incident_id": "inc-1", "event": "opened", "version": 1}'
    mac = hmac.new(SECRET.encode(), b"1767225631." + body, hashlib.sha256).hexdigest()
    headers = {"X-SOC-Timestamp": "1767225631", "X-SOC-Signature": f"sha256={mac}"}
    assert sign(SECRET, body, 1_767_225_631) == headers
    async with WebhookReceiver(secret=SECRET, clock=Clock(NOW)) as rx:
        status, _ = await _post(rx.url, body, headers)
    assert status == 200
    assert rx.records == [orjson.loads(body)]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing X-SOC-Timestamp header"),
        ({"X-SOC-Timestamp": str(int(NOW))}, "missing X-SOC-Signature header"),
        ({**sign("wrong", b"{}", int(NOW))}, "signature does not match"),
        ({**sign(SECRET, b"{}", int(NOW) - 301)}, "301 s old"),
        ({**sign(SECRET, b"{}", int(NOW) + 301)}, "301 s in the future"),
        ({"X-SOC-Timestamp": "yesterday", "X-SOC-Signature": "sha256=00"}, "not epoch seconds"),
        ({"X-SOC-Timestamp": str(int(NOW)), "X-SOC-Signature": "md5=00"}, "must be sha256=<hex>"),
    ],
)
async def test_bad_signatures_are_rejected_with_401_and_counted(headers: dict[str, str], reason: str) -> None:
    """A missing, wrong, stale or malformed signature answers 401, is counted, and keeps nothing."""
    async with WebhookReceiver(secret=SECRET, clock=Clock(NOW)) as rx:
        status, answer = await _post(rx.url, b"{}", headers)
    assert status == 401
    assert reason in answer["reason"]
    assert rx.counts.bad_signatures == 1
    assert rx.records == []


def test_signature_tolerance_is_inclusive_at_300_seconds() -> None:
    """A timestamp exactly 300 s old still verifies; the comparison ignores the hex digits' case."""
    headers = sign(SECRET, b"x", int(NOW) - 300)
    upper = headers["X-SOC-Signature"].upper().replace("SHA256=", "sha256=")
    assert verify_signature(SECRET, b"x", headers["X-SOC-Timestamp"], upper, now=NOW) is None


async def test_duplicates_by_idempotency_key_are_counted_not_kept() -> None:
    """A retried delivery (same Idempotency-Key) answers 200 "duplicate" and is kept only once."""
    opened, _ = _records()
    body = orjson.dumps(opened)
    async with WebhookReceiver() as rx:
        first = await _post(rx.url, body, _key(opened))
        second = await _post(rx.url, body, _key(opened))
        other_version = await _post(rx.url, body, {"Idempotency-Key": f"{opened['incident_id']}:2"})
    assert [first[1]["status"], second[1]["status"], other_version[1]["status"]] == [
        "accepted",
        "duplicate",
        "accepted",
    ]
    assert second[0] == 200
    assert rx.counts.duplicates == 1
    assert len(rx.records) == 2


async def test_without_the_header_the_key_comes_from_the_record() -> None:
    """No Idempotency-Key header: incident_id and version of the record de-duplicate instead."""
    opened, _ = _records()
    async with WebhookReceiver() as rx:
        await _post(rx.url, orjson.dumps(opened))
        _, answer = await _post(rx.url, orjson.dumps(opened))
    assert answer == {"status": "duplicate", "key": f"{opened['incident_id']}:1"}
    assert len(rx.records) == 1


async def test_failing_first_n_requests_answers_500_then_200() -> None:
    """statuses=[500, 500]: the first two requests fail (nothing kept), the retry is accepted."""
    opened, _ = _records()
    body = orjson.dumps(opened)
    async with WebhookReceiver(statuses=[500, 500]) as rx:
        codes = [(await _post(rx.url, body, _key(opened)))[0] for _ in range(3)]
    assert codes == [500, 500, 200]
    assert rx.counts.failed_on_purpose == 2
    assert rx.counts.duplicates == 0
    assert rx.records == [opened]


async def test_any_json_is_kept_and_malformed_json_is_400() -> None:
    """A JSON document that is not an incident record is kept; a body that is not JSON answers 400."""
    async with WebhookReceiver() as rx:
        ok = await _post(rx.url, b'{"status": "firing", "alerts": []}')
        bad = await _post(rx.url, b"{not json")
        async with aiohttp.ClientSession() as session, session.get(rx.url) as resp:
            counters = orjson.loads(await resp.read())
    assert (ok[0], bad[0]) == (200, 400)
    assert rx.records == [{"status": "firing", "alerts": []}]
    assert counters["requests"] == 2
    assert counters["malformed"] == 1


async def test_wait_records_returns_once_enough_have_arrived() -> None:
    """wait_records(n) wakes up after the n-th record, whichever request brought it."""
    opened, resolved = _records()
    async with WebhookReceiver() as rx:
        await _post(rx.url, orjson.dumps(opened))
        await _post(rx.url, orjson.dumps(resolved))
        await rx.wait_records(2)
    assert len(rx.records) == 2


def test_render_line_for_opened_and_resolved() -> None:
    """One line per record: time (UTC), event, priority, score, short id, state, root, customers,
    suppressed symptoms; a resolved record says how and after how long."""
    opened, resolved = _records()
    assert render_line(opened) == (
        "00:00:31  OPENED   P1 100.0  inc-8d44…  outage    agg-3 lossOfSignal  "
        "1000 customers (platinum 20, gold 80, silver 300, bronze 600)  50 suppressed"
    )
    assert render_line(resolved).endswith("50 suppressed  cleared, open 34m 29s")
    merged = {**resolved, "resolution": "merged", "merged_into": "inc-0123456789abcdef"}
    assert render_line(merged).endswith("50 suppressed  merged into inc-0123…")
    assert render_line(resolved).startswith("00:35:00  RESOLVED P1 100.0  inc-8d44…")


def test_render_line_shows_what_an_update_changed() -> None:
    """An updated record lists the changes since the incident's previous record the receiver kept."""
    lines = site_power_failure()[:2]  # power fails, the OLT follows 20 s later: still within settle
    lines.append(alarm("cell-c1", "lossOfSignal", 40.0, "critical"))  # after the opening: an update
    records = run(lines).records
    rx = WebhookReceiver()
    rx.records.extend(records)
    updated = next(r for r in records if r["event"] == "updated")
    assert rx.render_line(updated) == (
        "00:00:40  UPDATED  P2 77.9  inc-3b22…  outage    pwr-c mainsFailure  "
        "20 customers (gold 2, silver 6, bronze 12)  2 suppressed (was 1)"
    )


def test_render_line_colours_on_request_and_other_json_as_text() -> None:
    """Colour codes appear only when asked for; a record of another shape is shown as compact JSON."""
    opened, _ = _records()
    assert "\033[" not in render_line(opened)
    assert render_line(opened, color=True).startswith("00:00:31  \033[1;31mOPENED")
    assert render_line({"status": "firing"}) == '--:--:--  RECEIVED {"status":"firing"}'


def test_summary_counts_incidents_by_event_and_priority() -> None:
    """summary(): incidents with opened/updated/resolved counts, by best priority, and the counters."""
    rx = WebhookReceiver()
    # the site power failure opens P2 and is updated to P1 when its gold customers come within
    # 30 min of their SLA breach: its best priority is P1
    rx.records.extend(_records() + run(site_power_failure()).records)
    rx.counts.duplicates = 1
    assert rx.summary() == (
        "incidents: 2 (opened 2, updated 1, resolved 2)\n"
        "by priority: P1 2\n"
        "requests: 0, kept 0, duplicates 1, bad signatures 0, malformed 0, failed on purpose 0"
    )


def test_status_codes_are_validated() -> None:
    """A scripted status that is not an HTTP code is refused when the receiver is built."""
    with pytest.raises(ValueError, match="HTTP status codes"):
        WebhookReceiver(statuses=[500, 42])


async def test_the_command_prints_each_record_and_a_summary_on_interrupt() -> None:
    """``python -m engine.tools.receiver --port 0``: says where it listens, prints one line per
    record, and on Ctrl-C (SIGINT) prints the summary and exits 0."""
    opened, _ = _records()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        # Ctrl-C as on a terminal: SIGINT at its default even when the test runner was started with
        # it ignored (a background job of a non-interactive shell), which the child would inherit.
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler);"
        " runpy.run_module('engine.tools.receiver', run_name='__main__', alter_sys=True)",
        "--port",
        "0",
        "--fail-first",
        "1",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):  # a hang guard (cold start, loaded machine), not a timing assertion
            first = (await proc.stdout.readline()).decode()
            url = first.removeprefix("listening on ").strip()
            assert (await _post(url, orjson.dumps(opened)))[0] == 500
            assert (await _post(url, orjson.dumps(opened)))[0] == 200
            line = (await proc.stdout.readline()).decode()
            proc.send_signal(signal.SIGINT)
            rest, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert first.startswith("listening on http://127.0.0.1:")
    assert line.startswith("00:00:31  OPENED   P1 100.0  inc-8d44…")
    assert rest.decode().splitlines() == [
        "incidents: 1 (opened 1, updated 0, resolved 0)",
        "by priority: P1 1",
        "requests: 2, kept 1, duplicates 0, bad signatures 0, malformed 0, failed on purpose 1",
    ]
    assert (proc.returncode, err) == (0, b"")


def test_render_line_escapes_control_characters_from_the_record() -> None:
    """Alarm text with terminal escapes (clear screen, window title) is printed escaped: the
    operator's terminal is never driven by what a network element sent."""
    opened, _ = _records()
    evil = {
        **opened,
        "state": "outage\x1b[2J",
        "root_cause": {**opened["root_cause"], "probable_cause": "los\x1b]0;owned\x07", "ne_id": "agg\x9b3"},
    }
    line = render_line(evil, color=True)
    assert "\x1b[2J" not in line
    assert "\x07" not in line
    assert "\x9b" not in line
    assert "outage\\x1b[2J" in line
    assert "los\\x1b]0;owned\\x07" in line
    assert "agg\\x9b3" in line
    assert line.count("\x1b[") == 2  # only the engine's own colour and reset around the head
    other = render_line(["\u009b2J", {"x": "\u202e"}])
    assert "\x9b" not in other
    assert "\u202e" not in other


def test_render_line_says_who_acknowledged() -> None:
    """An update that records an acknowledgement names who took the incident (and the note)."""
    opened, _ = _records()
    acked = {**opened, "event": "updated", "version": 2, "acknowledged": {"by": "noc-alice", "note": "on it"}}
    assert render_line(acked, opened).endswith("acknowledged by noc-alice (on it)")
    later = {**acked, "version": 3}
    assert "acknowledged" not in render_line(later, acked)  # said once, when it happened
