"""The daemon's rulesets at start and at reload: names the topology lacks are warnings, not refusals (an
inventory change must not block a reload); a ruleset file that cannot be read is a refused reload."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from engine.service.daemon import Daemon
from tests.daemon_harness import settings, write_config

WORKS = """\
name: site-works
rules:
  - name: works
    maintenance:
      scope: {elements: [agg-3, agg-33]}
      schedule: {cron: "0 3 * * 0", duration: 1h}
  - name: vip
    priority: {when: {tiers: [platnum]}, set: 1}
"""


@pytest.fixture
def default_logging() -> Iterator[None]:
    """structlog's defaults (no level filter), whatever an earlier test configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def unknown_names(logs: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["log_level"], e["event"], Path(e["file"]).name, e["line"], e["rule"], e["field"], e["value"])
        for e in logs
        if str(e["event"]).startswith("ruleset names an unknown")
    ]


@pytest.mark.usefixtures("default_logging")
async def test_names_the_topology_lacks_are_warnings_at_start_and_reload(
    tmp_path: Path, topic_prefix: str
) -> None:
    """A maintenance scope or a priority condition naming what the topology lacks is logged as a warning
    (file, line, rule, field, name) when the daemon starts and when it reloads, and the rules load all
    the same; a reload after the fix warns only about what is left."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "works.yaml").write_text(WORKS)
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix, extra={"rulesets": [str(rules)]})
    with capture_logs() as logs:
        async with Daemon(settings(cfg)) as daemon:
            at_start = unknown_names(logs)
            assert {"site-works/works", "site-works/vip"} <= set(daemon.pipeline.program.rules)
            (rules / "works.yaml").write_text(WORKS.replace("platnum", "platinum"))
            assert (await daemon.reload())[0]
            on_reload = unknown_names(logs)[len(at_start) :]
    element = ("warning", "ruleset names an unknown element", "works.yaml", 5, "works")
    assert at_start == [
        (*element, "maintenance.scope.elements", "agg-33"),
        (
            "warning",
            "ruleset names an unknown tier",
            "works.yaml",
            8,
            "vip",
            "priority.when.tiers",
            "platnum",
        ),
    ]
    assert on_reload == [(*element, "maintenance.scope.elements", "agg-33")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(
            b"name: caf\xe9\nrules: []\n",
            "line 1: not valid UTF-8: byte 0xe9 at offset 9 (invalid continuation byte)",
            id="latin-1",
        ),
        pytest.param(WORKS.encode() + b"  - name: x\xff\n", "line 9: not valid UTF-8", id="tail"),
    ],
)
async def test_a_reload_with_a_ruleset_that_is_not_utf8_is_refused(
    tmp_path: Path, topic_prefix: str, content: bytes, reason: str
) -> None:
    """A ruleset file that is not UTF-8 makes a reload a clean refusal naming the file and line (the
    running rules stay), not a decoding error escaping the core."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "works.yaml").write_text(WORKS)
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix, extra={"rulesets": [str(rules)]})
    async with Daemon(settings(cfg)) as daemon:
        before = set(daemon.pipeline.program.rules)
        (rules / "works.yaml").write_bytes(content)
        ok, message = await daemon.reload()
        assert (ok, set(daemon.pipeline.program.rules)) == (False, before)
        assert message.startswith(f"{rules / 'works.yaml'}: {reason}")
