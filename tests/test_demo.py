"""`engine demo`, the README's first command, end to end: embedded broker, daemon, simulator, receiver."""

from __future__ import annotations

import io

from engine.demo import run_demo


async def test_the_demo_runs_end_to_end_and_every_incident_resolves() -> None:
    """At 20× speed the demo's fiber cut and power failure become P1/P2 incidents, delivered signed
    (one refused on purpose and retried), all resolved; nothing else is needed on the machine."""
    out = io.StringIO()
    status = await run_demo(rate=20.0, http_port=0, out=out)
    text = out.getvalue()
    assert status == 0, text
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
