"""The curl examples of docs/api.md that need a daemon run, as written, against one.

Blocks marked ``<!-- not-tested: ... tests/test_api_docs.py runs this block against one -->`` are
taken in document order and run with bash (``set -euo pipefail``) with ``E`` (the daemon's URL),
``TOKEN`` and ``A`` (the header) set, from the repository root. Every ``curl -sf`` fails the block on
an HTTP error, so a block passes only when every request in it succeeds.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.daemon_harness import running_daemon

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"
MARK = "tests/test_api_docs.py runs this block against one"
TOKEN = "docs-token"
_BLOCK = re.compile(r"<!-- not-tested:[^\n]*?" + re.escape(MARK) + r"[^\n]*-->\n```bash\n(.*?)\n```", re.S)


def doc_blocks() -> list[str]:
    return _BLOCK.findall(DOC.read_text())


def test_the_marked_blocks_are_found() -> None:
    """The marker is read: the Alertmanager section alone has five such blocks."""
    assert len(doc_blocks()) >= 5


async def test_docs_api_curl_examples_run_against_a_daemon(tmp_path: Path) -> None:
    """Each marked block of docs/api.md exits 0 against a running daemon with a token."""
    if subprocess.run(["sh", "-c", "command -v curl"], capture_output=True, check=False).returncode:
        pytest.skip("curl is not installed")
    async with running_daemon(
        tmp_path, broker_url=None, prefix="test/docs", extra={"http": {"port": 0, "token": TOKEN}}
    ) as (daemon, _rx):
        assert daemon.http is not None
        env = {
            **os.environ,
            "E": f"http://127.0.0.1:{daemon.http.port}",
            "TOKEN": TOKEN,
            "A": f"Authorization: Bearer {TOKEN}",
        }
        for block in doc_blocks():
            proc = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                "set -euo pipefail\n" + block,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            why = f"block failed:\n{block}\nstdout: {out.decode()}\nstderr: {err.decode()}"
            assert proc.returncode == 0, why
        assert any(a.probable_cause == "InstanceDown" for a in daemon.pipeline.alarms.active())
        tmf = daemon.pipeline.alarms.get("ems-7:4711")  # raised, acknowledged, cleared over TMF642
        assert tmf is not None
        assert not tmf.active
        (silence,) = list(daemon.pipeline.calendar.silences)
        assert silence.comment == "CHG-1234 battery replacement"
        assert silence.state(daemon.pipeline.clock + 1) == "expired"  # the block expires it
