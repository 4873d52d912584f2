"""Huawei PCIC 2021 / CSL 2023 alarm datasets → engine topology, event replay and alarm effects.

Theory of operation
-------------------
A dataset folder holds integer-coded CSV files: ``Alarm.csv`` (``alarm.csv`` in the CSL 2023 sample)
with ``alarm_id`` (the alarm *type*), ``device_id``, ``start_timestamp``, ``end_timestamp`` in relative
seconds; ``topology_edges.csv`` (``device_a,device_b``, undirected physical links, optional); and
``true_dag_edges.csv`` (``cause_alarm_id,effect_alarm_id``, the expert causal graph between alarm
types, optional). The conversion is deterministic: the same files always give byte-identical output.

Elements
    Every device seen in the alarms or in the topology becomes the element ``dev-<id>``, of type
    ``microwave`` or ``wireless`` when the folder name says so (``*Microwave*`` / ``*Wireless*``),
    else ``device``. No site or region. Elements are listed by device number.

Dependencies (the rule)
    The topology edges are undirected, the engine's dependencies are not. For each connected component
    of the edge graph the *hub* is the device of highest degree (ties → lowest device number). A
    breadth-first search from the hub gives every device its distance to the hub. A device depends on
    its neighbours that are exactly one step closer to the hub: one such neighbour → a required
    dependency (``depends_on: [dev-3]``); several → one redundancy group, any one of which is enough
    (``depends_on: [[dev-3, dev-9]]``), sorted by device number. The hub has no dependencies, nor
    does a device without edges. Every dependency points strictly closer to a hub, so the result is a
    DAG by construction; :func:`convert` still checks it. Self-loops and repeated edges are ignored.

Alarms
    Alarm type ``N`` becomes probable cause ``pcicTypeN``; every alarm has severity ``major`` and
    event type ``communicationsAlarm``, no ``specific_problem`` and no ``alarm_id``, so its identity
    is (device, type). Each row gives a raise at ``start`` and a clear (severity ``cleared``) at
    ``end``, at ``base_epoch`` (2021-01-01T00:00:00Z by default) plus the relative seconds, written as
    RFC 3339 with :func:`engine.model.timeutil.format_time`, on topic ``soc/alarms/dev-<id>``. Messages are
    sorted by time; ties keep the file order, and one row's raise comes before its clear. A row whose
    end is before its start (the CSL 2023 sample has five, by 1-10 s) is cleared at its start and
    counted as ``end_before_start``. A raise of an identity while another row of the same identity is
    still open (raised, its clear not yet emitted) is kept — the engine deduplicates it, and the first
    clear that follows closes the alarm — and counted as an ``overlap``.

Effects
    None known: the vendor's alarm types carry no semantics, so every type is ``degraded`` (the
    configuration a new user starts from). Which types take an element down is learned from the
    history by ``engine rules mine`` (:mod:`engine.tools.mining`). The conversion never reads
    ``true_dag_edges.csv``: the expert graph is ground truth, read only by :func:`causal_pairs` for
    scoring (``bench``), so that nothing the engine runs can use the answer to grade the exam.

Malformed input (a missing file, a header without the expected columns, a row with the wrong number
of fields or a value that is not a non-negative integer) raises :class:`engine.errors.ConfigError`
naming the file and the line.

Usage: ``python -m engine.tools.datasets.pcic DATASET_DIR --out DIR [--limit N]``.
"""

from __future__ import annotations

import csv
import re
import sys
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from engine.errors import ConfigError
from engine.model.timeutil import format_time
from engine.service.cliargs import Parser, int_range, output_dir

__all__ = [
    "BASE_EPOCH",
    "DAG_FILE",
    "Converted",
    "causal_pairs",
    "convert",
    "element_id",
    "main",
    "probable_cause",
    "transitive_closure",
    "write",
]

BASE_EPOCH = 1609459200.0  # 2021-01-01T00:00:00Z
ALARM_FILES = ("Alarm.csv", "alarm.csv")  # PCIC 2021 spells it with a capital, the CSL 2023 sample not
TOPOLOGY_FILE = "topology_edges.csv"
DAG_FILE = "true_dag_edges.csv"
ALARM_COLUMNS = ("alarm_id", "device_id", "start_timestamp", "end_timestamp")
TOPOLOGY_COLUMNS = ("device_a", "device_b")
DAG_COLUMNS = ("cause_alarm_id", "effect_alarm_id")
SEVERITY = "major"
EVENT_TYPE = "communicationsAlarm"
TOPIC_PREFIX = "soc/alarms/"

_UINT = re.compile(r"[0-9]+")


def element_id(device: int) -> str:
    """Device number → element id (``dev-<id>``)."""
    return f"dev-{device}"


def probable_cause(alarm_type: int) -> str:
    """Alarm type number → probable cause (``pcicType<N>``)."""
    return f"pcicType{alarm_type}"


@dataclass(frozen=True)
class Converted:
    """One dataset in the engine's shapes.

    ``topology`` is the topology document, ``events`` the replay messages in order, ``config`` the core
    config section ``{"alarms": {"effects": [...]}}``, ``summary`` the figures of the conversion.
    The expert causal graph is not part of it: :func:`causal_pairs` reads it, for scoring only.
    """

    name: str
    topology: dict[str, Any]
    events: list[dict[str, Any]]
    config: dict[str, Any]
    summary: dict[str, Any]


# --- reading ---------------------------------------------------------------------------------------


def _read_csv(path: Path, columns: Sequence[str]) -> list[tuple[int, tuple[int, ...]]]:
    """Rows of non-negative integers, as ``(line number, values in the order of columns)``.

    The header must name every column (in any order; other columns are ignored). Blank lines are
    skipped. Anything else wrong raises ``ConfigError`` with the file and the line.
    """
    source = str(path)
    if not path.is_file():
        raise ConfigError(source, "", "file not found" if not path.exists() else "not a regular file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ConfigError(source, "line 1", f"empty file, expected a header {','.join(columns)}")
            names = [h.strip() for h in header]
            missing = [c for c in columns if c not in names]
            if missing:
                raise ConfigError(
                    source,
                    f"line {reader.line_num}",
                    f"header {','.join(names)!r} lacks {', '.join(missing)} (expected {','.join(columns)})",
                )
            index = [names.index(c) for c in columns]
            rows: list[tuple[int, tuple[int, ...]]] = []
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(names):
                    raise ConfigError(
                        source, f"line {line}", f"expected {len(names)} fields, got {len(row)}: {row!r}"
                    )
                values: list[int] = []
                for column, i in zip(columns, index, strict=True):
                    text = row[i].strip()
                    if not _UINT.fullmatch(text):
                        raise ConfigError(
                            source,
                            f"line {line}",
                            f"{column}: expected a non-negative integer, got {row[i]!r}",
                        )
                    values.append(int(text))
                rows.append((line, tuple(values)))
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 text: {exc.reason}") from None
    except csv.Error as exc:
        raise ConfigError(source, f"line {reader.line_num}", f"malformed CSV: {exc}") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror or exc}") from None
    return rows


def _alarm_file(directory: Path) -> Path:
    for name in ALARM_FILES:
        if (directory / name).is_file():
            return directory / name
    return directory / ALARM_FILES[0]  # reported as missing by _read_csv


def _dataset_dir(dataset_dir: str | Path) -> Path:
    directory = Path(dataset_dir)
    if not directory.is_dir():
        reason = "no such directory" if not directory.exists() else "not a directory"
        raise ConfigError(str(directory), "", f"{reason} (expected a dataset folder with {ALARM_FILES[0]})")
    return directory


def _dag_type_pairs(directory: Path) -> list[tuple[int, int]]:
    return [(cause, effect) for _, (cause, effect) in _read_csv(directory / DAG_FILE, DAG_COLUMNS)]


def causal_pairs(dataset_dir: str | Path) -> frozenset[tuple[str, str]]:
    """The expert causal graph as ``(cause probable_cause, effect probable_cause)`` pairs.

    Raises ``ConfigError`` if ``true_dag_edges.csv`` is missing or malformed: a dataset without one
    has no ground truth, which is not the same as an empty one.
    """
    directory = _dataset_dir(dataset_dir)
    return frozenset((probable_cause(c), probable_cause(e)) for c, e in _dag_type_pairs(directory))


def transitive_closure(pairs: Iterable[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Every ``(a, c)`` such that a chain of one or more pairs leads from ``a`` to ``c``."""
    successors: dict[str, set[str]] = {}
    for a, b in pairs:
        successors.setdefault(a, set()).add(b)
    closure: set[tuple[str, str]] = set()
    for start, direct in successors.items():
        seen: set[str] = set()
        stack = list(direct)
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(successors.get(node, ()))
        closure.update((start, node) for node in seen)
    return frozenset(closure)


# --- topology --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    parents: dict[int, tuple[int, ...]]  # device → neighbours one step closer to its hub (sorted)
    hubs: tuple[int, ...]
    isolated: int


def _layout(devices: Iterable[int], edges: Iterable[tuple[int, int]]) -> _Layout:
    """The dependency rule of the module docstring."""
    neighbours: dict[int, set[int]] = {d: set() for d in devices}
    for a, b in edges:
        neighbours.setdefault(a, set())
        neighbours.setdefault(b, set())
        if a != b:
            neighbours[a].add(b)
            neighbours[b].add(a)
    parents: dict[int, tuple[int, ...]] = {}
    hubs: list[int] = []
    isolated = 0
    seen: set[int] = set()
    for device in sorted(neighbours):
        if device in seen:
            continue
        if not neighbours[device]:
            seen.add(device)
            parents[device] = ()
            isolated += 1
            continue
        component: list[int] = []  # collect it first, to choose the hub
        queue = deque([device])
        seen.add(device)
        while queue:
            node = queue.popleft()
            component.append(node)
            for other in neighbours[node]:
                if other not in seen:
                    seen.add(other)
                    queue.append(other)
        hub = min(component, key=lambda d: (-len(neighbours[d]), d))
        hubs.append(hub)
        distance = {hub: 0}
        queue = deque([hub])
        while queue:
            node = queue.popleft()
            for other in neighbours[node]:
                if other not in distance:
                    distance[other] = distance[node] + 1
                    queue.append(other)
        for node in component:
            parents[node] = tuple(sorted(n for n in neighbours[node] if distance[n] == distance[node] - 1))
    _check_acyclic(parents)
    return _Layout(parents=parents, hubs=tuple(hubs), isolated=isolated)


def _check_acyclic(parents: dict[int, tuple[int, ...]]) -> None:
    """Kahn's algorithm over device → parents; a leftover device means a cycle (a bug in the rule)."""
    pending = {d: len(ps) for d, ps in parents.items()}
    children: dict[int, list[int]] = {}
    for d, ps in parents.items():
        for p in ps:
            children.setdefault(p, []).append(d)
    ready = [d for d, n in pending.items() if n == 0]
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for child in children.get(node, ()):
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    if done != len(parents):
        raise AssertionError(f"dependency graph has a cycle among {len(parents) - done} devices")


def _element_type(name: str) -> str:
    lowered = name.lower()
    if "microwave" in lowered:
        return "microwave"
    if "wireless" in lowered:
        return "wireless"
    return "device"


# --- conversion ------------------------------------------------------------------------------------


def convert(
    dataset_dir: str | Path, *, base_epoch: float = BASE_EPOCH, limit: int | None = None
) -> Converted:
    """Convert one dataset folder (see the module docstring for every rule).

    ``limit`` keeps the first ``limit`` alarm rows of the file (in file order). Raises ``ConfigError``
    for a missing folder or alarm file and for any malformed CSV file.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    directory = _dataset_dir(dataset_dir)
    name = directory.resolve().name

    alarm_rows = [values for _, values in _read_csv(_alarm_file(directory), ALARM_COLUMNS)]
    if limit is not None:
        alarm_rows = alarm_rows[:limit]
    topology_path = directory / TOPOLOGY_FILE
    edges = (
        [(a, b) for _, (a, b) in _read_csv(topology_path, TOPOLOGY_COLUMNS)] if topology_path.exists() else []
    )

    # elements and dependencies
    devices = {device for _, device, _, _ in alarm_rows} | {d for edge in edges for d in edge}
    layout = _layout(devices, edges)
    kind = _element_type(name)
    elements: list[dict[str, Any]] = []
    redundancy_groups = 0
    dependencies = 0
    for device in sorted(layout.parents):
        ps = layout.parents[device]
        depends_on: list[Any] = []
        if len(ps) == 1:
            depends_on = [element_id(ps[0])]
        elif ps:
            depends_on = [[element_id(p) for p in ps]]
            redundancy_groups += 1
        dependencies += len(depends_on)
        elements.append({"id": element_id(device), "type": kind, "depends_on": depends_on})
    topology: dict[str, Any] = {"service_types": {}, "elements": elements, "customers": []}

    # messages: (relative time, row, 0 raise / 1 clear) orders by time, then file order, raise first
    end_before_start = 0
    keyed: list[tuple[int, int, int]] = []
    for row, (_, _, start, end) in enumerate(alarm_rows):
        if end < start:
            end_before_start += 1
        keyed.append((start, row, 0))
        keyed.append((max(start, end), row, 1))
    keyed.sort()
    events: list[dict[str, Any]] = []
    open_rows: Counter[tuple[int, int]] = Counter()
    overlaps = 0
    for t, row, clear in keyed:
        alarm_type, device = alarm_rows[row][0], alarm_rows[row][1]
        identity = (device, alarm_type)
        if clear:
            open_rows[identity] -= 1
        else:
            if open_rows[identity] > 0:
                overlaps += 1
            open_rows[identity] += 1
        ne = element_id(device)
        payload = {
            "ne_id": ne,
            "severity": "cleared" if clear else SEVERITY,
            "probable_cause": probable_cause(alarm_type),
            "event_type": EVENT_TYPE,
            "event_time": format_time(base_epoch + t),
        }
        events.append({"topic": TOPIC_PREFIX + ne, "payload": payload})

    # effects: no semantics (see the module docstring); never the expert graph
    config: dict[str, Any] = {"alarms": {"effects": [{"effect": "degraded"}]}}

    summary: dict[str, Any] = {
        "name": name,
        "alarms": len(alarm_rows),
        "messages": len(events),
        "alarm_types": len({alarm_type for alarm_type, _, _, _ in alarm_rows}),
        "devices": len(devices),
        "elements": len(elements),
        "topology_edges": len({(min(a, b), max(a, b)) for a, b in edges if a != b}),
        "components": len(layout.hubs),
        "isolated_devices": layout.isolated,
        "dependencies": dependencies,
        "redundancy_groups": redundancy_groups,
        "overlaps": overlaps,
        "end_before_start": end_before_start,
        "span_seconds": keyed[-1][0] - keyed[0][0] if keyed else 0,
    }
    return Converted(name=name, topology=topology, events=events, config=config, summary=summary)


# --- output ----------------------------------------------------------------------------------------


def write(converted: Converted, out_dir: str | Path) -> dict[str, Path]:
    """Write ``topology.yaml``, ``events.jsonl`` and ``config.yaml``.

    ``events.jsonl`` holds one compact JSON object per line. Returns the paths by kind: ``topology``,
    ``events``, ``config``. The expert graph is not written: it is no input of the engine.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "topology": out / "topology.yaml",
        "events": out / "events.jsonl",
        "config": out / "config.yaml",
    }
    paths["topology"].write_text(
        yaml.safe_dump(converted.topology, sort_keys=False, default_flow_style=None), encoding="utf-8"
    )
    with paths["events"].open("wb") as fh:
        for event in converted.events:
            fh.write(orjson.dumps(event) + b"\n")
    paths["config"].write_text(yaml.safe_dump(converted.config, sort_keys=False), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    """``DATASET_DIR --out DIR [--limit N]``: convert, write, print the summary as JSON."""
    parser = Parser(
        prog="python -m engine.tools.datasets.pcic",
        description="Convert a PCIC 2021 / CSL 2023 alarm dataset folder to engine inputs.",
    )
    parser.add_argument("dataset_dir", metavar="DATASET_DIR", type=Path)
    parser.add_argument("--out", required=True, type=output_dir, metavar="DIR", help="output folder")
    parser.add_argument("--limit", type=int_range(0), metavar="N", help="keep the first N alarm rows")
    args = parser.parse_args(argv)
    try:
        converted = convert(args.dataset_dir, limit=args.limit)
        write(converted, args.out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(converted.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
