"""Drive the pure core from replay lines, in memory; shared by the scenario tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.scenarios import example_topology
from engine.core.incidents import IncidentRecord
from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings, core_settings_from_data
from engine.model.topology import Topology, topology_from_dict
from engine.rules.schema import Ruleset, load_rulesets
from engine.tools.replay import Replayer


@dataclass
class Run:
    records: list[dict[str, Any]] = field(default_factory=list)  # as replay output: JSON form
    typed: list[IncidentRecord] = field(default_factory=list)  # the same, as the core returned them
    dead: list[dict[str, Any]] = field(default_factory=list)
    pipeline: Pipeline | None = None

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == kind]

    def incident_ids(self) -> list[str]:
        return sorted({r["incident_id"] for r in self.records})

    def last(self, incident_id: str) -> dict[str, Any]:
        return [r for r in self.records if r["incident_id"] == incident_id][-1]

    def output(self) -> bytes:
        return b"".join(orjson.dumps(r) + b"\n" for r in self.records)


def settings(**core: Any) -> CoreSettings:
    return core_settings_from_data(core)


def run(
    lines: Iterable[dict[str, Any]],
    *,
    topology: Topology | None = None,
    rulesets: list[Ruleset] | None = None,
    core: CoreSettings | None = None,
) -> Run:
    topo = topology or topology_from_dict(example_topology())
    pipeline = Pipeline(topo, rulesets or load_rulesets(None), core or CoreSettings())
    out = Run(pipeline=pipeline)
    replayer = Replayer(
        pipeline, emit=out.records.append, dead_letter=out.dead.append, on_record=out.typed.append
    )
    replayer.run(orjson.dumps(line) for line in lines)
    return out
