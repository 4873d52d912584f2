"""`engine demo`, the README's first command, end to end: embedded broker, daemon, simulator, receiver."""

from __future__ import annotations

import asyncio
import contextlib
import io

import aiohttp

from engine.tools.demo import run_demo


async def test_the_demo_runs_end_to_end_and_every_incident_resolves() -> None:
    """At rate 0 (as fast as possible) the demo's fiber cut and power failure become P1/P2 incidents,
    delivered signed (one refused on purpose and retried), all resolved; nothing else is needed on
    the machine. Its logs, written where no terminal is (a pipe, a file, this test), are readable
    lines like its own, never JSON objects amid them: the refused delivery reads as a warning."""
    out = io.StringIO()
    logs_out = io.StringIO()  # not a terminal, like a pipe; and never closed under later tests' logs
    seen_live: list[str] = []
    watcher = asyncio.create_task(_watch_dashboard(out, seen_live))
    try:
        status = await run_demo(rate=0.0, http_port=0, out=out, log_stream=logs_out)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    text = out.getvalue()
    assert status == 0, text
    assert text.splitlines()[0].startswith("dashboard: http://127.0.0.1:"), "the dashboard's URL comes first"
    assert seen_live, "the fiber cut's incident showed on the dashboard while the demo ran"
    assert "(as fast as possible)" in text
    assert "OPENED   P1" in text
    assert "agg-3 lossOfSignal" in text
    assert "50 suppressed" in text
    assert "bad signatures 0" in text
    assert "failed on purpose 1" in text
    summary = next(line for line in text.splitlines() if line.startswith("incidents:"))
    opened = int(summary.split("opened ")[1].split(",")[0])
    resolved = int(summary.split("resolved ")[1].split(")")[0])
    assert opened >= 2
    assert resolved == opened
    logs = logs_out.getvalue().splitlines()
    retry = [line for line in logs if "delivery failed: will retry" in line]
    assert retry, logs
    assert "[warning" in retry[0]
    assert "\x1b[" not in retry[0]  # no colour codes off a terminal
    assert not [line for line in logs if line.lstrip().startswith("{")], logs


async def _watch_dashboard(out: io.StringIO, seen: list[str]) -> None:
    """Read the dashboard's URL from the demo's first line, then its incident list until agg-3 shows."""
    while not out.getvalue().startswith("dashboard: "):
        await asyncio.sleep(0.05)
    url = out.getvalue().splitlines()[0].split()[1]
    async with aiohttp.ClientSession() as http:
        while not seen:
            async with http.get(url) as r:
                if "agg-3" in await r.text():
                    seen.append(url)
            await asyncio.sleep(0.2)
