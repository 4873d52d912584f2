"""durable-rules 2.0.28 reads past a fired join's frame when its facts are retracted (not fixed yet).

The segfault of ``python -m bench mining --dataset 24V_439N_Microwave --orient topology`` (in
``retract_fact`` ← ``Correlator.forget``) comes from this, traced with valgrind down to the smallest
case below: a two-alias rule fires on ``r`` and ``s``, then both facts are retracted. The action frame
of the firing is freed once its action completes (``deleteDispatchingActionFrame`` in durable's
``src/rules/events.c``) but stays flagged ``isDispatching`` and stays among the locations of both facts.
Retracting ``r`` zeroes ``r``'s slot in that stale frame (``deleteMessageFromFrame``) without lowering
its ``messageCount``; retracting ``s`` then scans the frame for ``messageCount`` used slots, finds one
fewer, and reads on past the frame's 16 slots into the rest of the pool and beyond the allocation,
zeroing any slot there that happens to hold ``s``'s message offset. Whether that crashes depends on
what lies past the pool (the 24V replay: a 12-frame action pool, 8 bytes past its end).

The check runs the case in a child under valgrind (a segfault or report fails the test, not pytest)
and expects no valgrind report from ``deleteMessageFromFrame``; it is ``xfail(strict)`` until the host
stops retracting more than one fact of a fired frame, so the day it passes the mark must go.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASE = """
from engine.rules.host import RuleHost
h = RuleHost()
h.load("x", {"pair": {"all": [{"r": {"$and": [{"role": "root"}]}}, {"s": {"$and": [{"role": "sym"}]}}],
                      "run": "pair"}})
r = {"sid": "a", "id": "r", "role": "root"}
s = {"sid": "a", "id": "s", "role": "sym"}
h.assert_fact("x", s)
assert len(h.assert_fact("x", r)) == 1
h.retract_fact("x", r)
h.retract_fact("x", s)
h.close()
print("ok")
"""


def _under_valgrind(code: str) -> subprocess.CompletedProcess[str]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (apt-get install valgrind)")
    env = {**os.environ, "PYTHONMALLOC": "malloc", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [valgrind, "-q", sys.executable, "-X", "faulthandler", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def _ran(done: subprocess.CompletedProcess[str]) -> None:
    """The child must have finished the case (else a plain failure, never the expected one)."""
    if done.returncode != 0 or done.stdout.strip() != "ok":
        pytest.fail(f"the child did not finish (exit {done.returncode}):\n{done.stderr[-3000:]}")


def test_one_retract_of_a_fired_frame_stays_in_bounds() -> None:
    """Control: retracting one fact of the fired frame reads nothing it should not."""
    done = _under_valgrind(CASE.replace('h.retract_fact("x", s)\n', ""))
    _ran(done)
    assert "deleteMessageFromFrame" not in done.stderr, done.stderr[-3000:]


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="durable-rules reads past a stale action frame when a second fact of a fired join is "
    "retracted (the 24V mined-ruleset segfault); see engine/rules/host.py",
)
def test_retracting_both_facts_of_a_fired_frame_stays_in_bounds() -> None:
    done = _under_valgrind(CASE)
    _ran(done)
    assert "deleteMessageFromFrame" not in done.stderr, done.stderr[-3000:]
