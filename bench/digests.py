"""Digests of the core's decisions, to prove a change of the core leaves them byte-identical.

Each input is replayed through a fresh core as ``engine replay`` would (the built-in rulesets unless
said otherwise) and the incident records, one compact JSON object per line, are hashed (blake2b,
128 bits). Inputs: the bundled example files (``examples/*.jsonl`` on ``examples/topology.yaml``,
also with the shipped ``rulesets/``), every scripted scenario of ``engine.tools.scenarios`` on the example
network, and the PCIC 2021 logs as ``engine dataset pcic`` converts them (when ``../shared`` has them).

``python -m bench digests`` prints one line per input: name, digest, records, dead letters.
``--out FILE`` also writes them; ``--check FILE`` compares with a file written before and exits 1
naming every input whose decisions changed (or is missing). ``--quick`` leaves out the PCIC logs.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson

from bench.replay import DATASETS, DEFAULT_SHARED, dataset_dir, replay
from engine.core.pipeline import Pipeline
from engine.model.topology import load_topology, topology_from_dict
from engine.rules.schema import Ruleset, load_rulesets
from engine.tools.datasets.pcic import convert
from engine.tools.replay import Replayer, dumps
from engine.tools.scenarios import SCENARIOS, example_topology, replay_lines

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RULESETS = ROOT / "rulesets"


def _digest(records: Iterable[bytes]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for line in records:
        h.update(line)
    return h.hexdigest()


def _replay(pipeline: Pipeline, lines: Iterable[bytes]) -> tuple[str, int, int]:
    records: list[bytes] = []
    dead: list[object] = []
    Replayer(pipeline, emit=lambda r: records.append(dumps(r)), dead_letter=dead.append).run(lines)
    return _digest(records), len(records), len(dead)


def _examples() -> Iterator[tuple[str, tuple[str, int, int]]]:
    topology = load_topology(EXAMPLES / "topology.yaml")
    variants: list[tuple[str, list[Ruleset]]] = [
        ("built-in", load_rulesets(None)),
        ("rulesets/", load_rulesets([RULESETS])),
    ]
    for path in sorted(EXAMPLES.glob("*.jsonl")):
        for label, rulesets in variants:
            lines = path.read_bytes().splitlines()
            yield f"examples/{path.name} [{label}]", _replay(Pipeline(topology, rulesets), lines)


def _scenarios() -> Iterator[tuple[str, tuple[str, int, int]]]:
    topology = topology_from_dict(example_topology())
    for name in sorted(SCENARIOS):
        scenario = SCENARIOS[name]()
        lines = [orjson.dumps(line) for line in replay_lines(scenario, start=1_767_225_600.0)]
        yield f"scenario {name}", _replay(Pipeline(topology, load_rulesets(None)), lines)


def _pcic(shared: Path) -> Iterator[tuple[str, tuple[str, int, int]]]:
    for name in DATASETS:
        folder = dataset_dir(shared, name)
        if not folder.is_dir():
            print(f"(skipped {name}: not at {folder})", file=sys.stderr)
            continue
        result = replay(convert(folder))
        yield f"pcic {name}", (_digest(dumps(r) for r in result.records), len(result.records), 0)


def _read(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, rest = line.partition("\t")
            out[name] = rest
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench digests", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="leave out the PCIC logs")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, metavar="DIR")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the digests there")
    parser.add_argument("--check", type=Path, metavar="FILE", help="compare with digests written before")
    args = parser.parse_args(argv)
    if args.check is not None and not args.check.is_file():
        parser.error(f"argument --check: no such file: {args.check}")

    rows: dict[str, str] = {}
    sources = [_examples(), _scenarios()] + ([] if args.quick else [_pcic(args.shared)])
    for source in sources:
        for name, (digest, records, dead) in source:
            rows[name] = f"{digest}\trecords={records}\tdead_letters={dead}"
            print(f"{name}\t{rows[name]}", flush=True)
    if args.out is not None:
        args.out.write_text("".join(f"{k}\t{v}\n" for k, v in rows.items()), encoding="utf-8")
    if args.check is None:
        return 0
    before = _read(args.check)
    changed = [name for name, value in rows.items() if name in before and before[name] != value]
    missing = [name for name in before if name not in rows and not (args.quick and name.startswith("pcic"))]
    for name in changed:
        print(f"CHANGED {name}: was {before[name]}, now {rows[name]}")
    for name in missing:
        print(f"MISSING {name}: in {args.check}, not replayed now")
    same = len([n for n in rows if n in before]) - len(changed)
    print(f"{same} identical, {len(changed)} changed, {len(missing)} missing (against {args.check})")
    return 1 if changed or missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
