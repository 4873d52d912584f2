"""``python -m bench postmortems``: the replay with and without the daemon's post-mortems, on the real
24V log's first rows (the explanations must all succeed; the report names each figure)."""

from __future__ import annotations

import re

import pytest

from bench import postmortems
from bench.replay import DEFAULT_SHARED, dataset_dir

REAL_24V = dataset_dir(DEFAULT_SHARED, "24V_439N_Microwave")
needs_24v = pytest.mark.skipif(not REAL_24V.is_dir(), reason=f"needs the PCIC 2021 data in {REAL_24V}")


@needs_24v
def test_the_report_names_the_cost_of_the_explanations(capsys: pytest.CaptureFixture[str]) -> None:
    assert postmortems.main(["--limit", "400", "--conversion", "storm", "--retain", "86400"]) == 0
    out = capsys.readouterr().out
    assert "cleared alarms kept 86400 s" in out
    head = re.search(r"storm: ([\d,]+) events, ([\d,]+) incidents explained as they resolved\n", out)
    assert head is not None, out
    assert int(head[2].replace(",", "")) > 0  # the premise: incidents resolved
    assert "failed" not in out  # every one explained
    assert re.search(r"the core alone: [\d.]+ s CPU; with post-mortems [\d.]+ s \([\d.]+×\)", out), out
    assert re.search(r"alarms held 0 to 1,000: [\d,]+ incidents, mean [\d.]+ ms", out), out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        postmortems.main(["--retain", "-5"])
    assert exc.value.code == 2
    assert "--retain within 0..31536000 seconds" in capsys.readouterr().err
