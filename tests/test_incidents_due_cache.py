"""``IncidentBook.next_due`` keeps its answer until something changes: the kept answer is never stale.

The book forgets the answer in every method that may change an incident or its timer heap
(``IncidentBook._changing``). A mutation that forgot to forget it would make the pipeline fire an
incident's timer late or never. Here every call of ``next_due`` over the bundled examples (both
ruleset variants) and every scripted scenario is checked against the answer computed afresh, and
the decisions must still be the recorded ones (``docs/decision-digests.tsv``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import digests
from engine.core.incidents import IncidentBook

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_next_due_kept_answer_is_the_recomputed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = IncidentBook.next_due
    calls = {"all": 0, "kept": 0, "wrong": 0}

    def checked(self: IncidentBook) -> float | None:
        calls["all"] += 1
        calls["kept"] += self._next_known and not self._quarantine
        answer = kept(self)
        if answer != self._next_due():  # computed afresh: the heap's top, stale entries dropped
            calls["wrong"] += 1
        return answer

    monkeypatch.setattr(IncidentBook, "next_due", checked)
    tsv = (ROOT / "docs" / "decision-digests.tsv").read_text().splitlines()
    expected = {name: digest for name, digest, *_ in (line.split("\t") for line in tsv)}
    seen = 0
    for name, (digest, _records, _dead) in [*digests._examples(), *digests._scenarios()]:
        assert digest == expected[name], name
        seen += 1
    assert seen >= 7
    assert calls["wrong"] == 0, calls
    # the kept answer is used (else this test would check nothing): most calls find nothing changed
    assert calls["kept"] > calls["all"] // 4, calls
