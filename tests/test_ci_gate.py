"""What CI runs and what a developer runs: the README's test command, `.ci/run`, and the slow tests.

`make test` is the gate (README, "Two commands"); `.ci/run` calls exactly it. The tests marked
``slow`` (the full PCIC 24V replay, the real-log snapshot test, the 24V conversion) are skipped by a
bare ``pytest`` (pyproject's ``addopts``) so a developer's run stays quick, and selected back by
``make test`` with ``-m``, so CI still runs them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLOW = {
    "tests/test_pcic_replay.py::test_full_24v_replay_processes_every_event_and_resolves_every_incident",
    "tests/test_snapshot.py::test_restore_on_a_real_alarm_log_continues_byte_identically",
    "tests/test_pcic.py::test_real_24v_microwave_network_converts",
}
FILES = sorted({s.split("::")[0] for s in SLOW})


def _collected(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args, *FILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.split("[")[0] for line in proc.stdout.splitlines() if "::" in line}


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    """`.ci/run` ends with `exec make test`, and `make test` is the test command the README gives."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().splitlines()
    assert ci[-1] == "exec make test"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (
        "\nmake test   # creates .venv, installs, then ruff, mypy --strict and the whole pytest suite\n"
        in readme
    )


def test_a_bare_pytest_skips_the_slow_tests_and_make_test_selects_them() -> None:
    """The slow tests are collected by `make test`'s selection (-m 'slow or not slow') and not by a
    bare `pytest`; `make test`'s pytest command carries that selection."""
    assert _collected("-m", "slow or not slow") >= SLOW
    assert not SLOW & _collected()
    dry = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "pytest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ".venv/bin/pytest -q -m 'slow or not slow'" in dry.stdout, dry.stdout + dry.stderr
