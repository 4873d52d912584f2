"""The expert causal graph (``true_dag_edges.csv``) is ground truth: nothing the engine runs reads it.

Only scoring reads it (``engine.tools.datasets.pcic.causal_pairs``, called by ``bench``). An audit hook
records every file opened while the dataset is converted, written, mined and replayed; and the
package's source is searched for any other way to the file.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

from bench.replay import replay
from engine.tools.datasets.pcic import DAG_FILE, causal_pairs, convert, write
from engine.tools.mining import mine_file

PACKAGE = Path(__file__).resolve().parents[1] / "engine"
_opened: list[str] = []
_armed: list[bool] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _armed and event == "open" and args and isinstance(args[0], str | bytes | Path):
        _opened.append(str(args[0]))


sys.addaudithook(_hook)  # cannot be removed; records only while armed


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "net"
    folder.mkdir()
    rows = "".join(f"{1 + i % 2},{1 + i % 4},{100 * i},{100 * i + 5}\n" for i in range(40))
    (folder / "Alarm.csv").write_text("alarm_id,device_id,start_timestamp,end_timestamp\n" + rows)
    (folder / "topology_edges.csv").write_text("device_a,device_b\n1,2\n1,3\n1,4\n")
    (folder / DAG_FILE).write_text("cause_alarm_id,effect_alarm_id\n1,2\n")
    return folder


def test_converting_and_replaying_never_open_the_expert_graph(tmp_path: Path) -> None:
    """Convert, write, mine and replay a folder that has an expert graph: the file is never opened,
    though the hook does see the files that are (the alarms, the outputs, the events mined, the
    ruleset written); scoring opens it."""
    folder = _folder(tmp_path)
    _opened.clear()
    _armed.append(True)
    try:
        converted = convert(folder)
        paths = write(converted, tmp_path / "out")
        mine_file(paths["events"], paths["topology"], out=tmp_path / "mined.yaml", min_support=1)
        replay(converted)
    finally:
        _armed.clear()
    assert any(p.endswith("Alarm.csv") for p in _opened)
    assert sum(p.endswith("events.jsonl") for p in _opened) >= 2  # written, then read by the miner
    assert any(p.endswith("mined.yaml") for p in _opened)
    assert not [p for p in _opened if p.endswith(DAG_FILE)]

    _armed.append(True)
    try:
        assert causal_pairs(folder) == {("pcicType1", "pcicType2")}
    finally:
        _armed.clear()
    assert any(p.endswith(DAG_FILE) for p in _opened)  # the hook would have seen it


def _uses(tree: ast.Module) -> list[tuple[str, str]]:
    """(name, enclosing function) of every load of DAG_FILE, every call of causal_pairs or
    _dag_type_pairs, and every string constant naming the file outside a docstring."""
    out: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Name) and child.id == "DAG_FILE" and isinstance(child.ctx, ast.Load):
                out.append(("DAG_FILE", function))
            elif isinstance(child, ast.Call):
                f = child.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in ("causal_pairs", "_dag_type_pairs"):
                    out.append((f"{name}()", function))
            elif (
                isinstance(child, ast.Constant)
                and isinstance(child.value, str)
                and "true_dag_edges" in child.value
                and not isinstance(node, ast.Expr)  # a docstring
            ):
                out.append((repr(child.value), function))
            visit(child, inner)

    visit(tree, "<module>")
    return out


def test_the_package_reaches_the_expert_graph_only_through_causal_pairs() -> None:
    """In ``engine/``, the file is named once (``DAG_FILE``), read only by ``_dag_type_pairs``, which
    only ``causal_pairs`` calls, and nothing in the package calls ``causal_pairs`` (scoring does)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        uses = _uses(ast.parse(path.read_text(encoding="utf-8")))
        if uses:
            found[str(path.relative_to(PACKAGE))] = uses
    assert found == {
        "tools/datasets/pcic.py": [
            ("'true_dag_edges.csv'", "<module>"),
            ("DAG_FILE", "_dag_type_pairs"),
            ("_dag_type_pairs()", "causal_pairs"),
        ]
    }
