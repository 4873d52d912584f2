"""Nothing outside the core uses its internals: an ast walk over every module outside ``engine/core``.

The core's surface for the rest of the engine is written out here:

- ``Pipeline``'s commands and a few attributes (``PIPELINE_PUBLIC``): what drives it (``feed``,
  ``tick``, ``next_due``, ``snapshot``/``restore``, ``acknowledge``, ``silence``…) and ``query``,
  the read-only query interface (``engine.core.query.CoreQuery``) through which everything else
  reads the core's state: alarms, incidents, health, service quality, counters, rule firings.
  The pipeline's parts (``alarms``, ``incidents``, ``quality``, ``correlator``, ``stats``…) are
  the core's business: reading one from outside is a finding.
- No private name of the core (``_x``: a module-level name of a core module, an attribute or method
  of a core class) is imported or read outside the core.

An expression "is a pipeline" when it is an attribute named ``pipeline`` (``self.pipeline``,
``self._core.pipeline``), a name annotated ``Pipeline`` (or a subclass) in its function, a name
assigned from a pipeline, or a call of ``Pipeline``, a subclass or a function annotated to return
one. That is a heuristic, not type inference: ``test_the_walk_finds_each_shape`` checks that it
catches each shape, so the walk can fail.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.core.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1] / "engine"
CORE = ROOT / "core"

PIPELINE_PUBLIC = frozenset(
    {
        # driving it: input, timers, commands, state
        "feed",
        "tick",
        "next_due",
        "advance_to",
        "drain",
        "stuck",
        "acknowledge",
        "silence",
        "snapshot",
        "restore",
        "close",
        "on_resolved",
        "retry_quarantined",
        # reading it
        "query",
        "summary",
        "clock",
        "topology",
        "settings",
    }
)
"""What a module outside ``engine/core`` may use of a ``Pipeline``."""

_WORD = re.compile(r"\b(\w+)\b")


def _outside_core() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if CORE not in p.parents)


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def core_private_names() -> frozenset[str]:
    """Private names the core binds: module-level names, functions, classes, class members,
    ``__slots__`` entries and ``self._x`` attributes."""
    names: set[str] = set()
    for path in CORE.rglob("*.py"):
        tree = _parse(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (
                        isinstance(item, ast.Assign)
                        and isinstance(item.value, ast.Tuple)
                        and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets)
                    ):
                        names.update(
                            e.value
                            for e in item.value.elts
                            if isinstance(e, ast.Constant) and isinstance(e.value, str)
                        )
    return frozenset(n for n in names if _is_private(n))


class _Finder:
    """Findings of one module: pipeline internals read and core privates used."""

    def __init__(self, tree: ast.Module, surface: Surface, privates: frozenset[str]) -> None:
        self.tree = tree
        self.surface = surface
        self.privates = privates
        self.found: set[tuple[int, str]] = set()

    def _mentions_pipeline(self, annotation: ast.expr | None) -> bool:
        if annotation is None:
            return False
        return any(w in self.surface.types for w in _WORD.findall(ast.unparse(annotation)))

    def _is_pipeline(self, node: ast.expr, names: set[str]) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr == "pipeline"
        if isinstance(node, ast.Name):
            return node.id in names
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            return called in self.surface.types or called in self.surface.functions
        return False

    def _names(self, fn: ast.FunctionDef | ast.AsyncFunctionDef | None, body: list[ast.stmt]) -> set[str]:
        """Names that hold a pipeline in one scope (parameters and assignments), to a fixpoint."""
        names: set[str] = set()
        if fn is not None:
            a = fn.args
            names.update(
                arg.arg
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]
                if self._mentions_pipeline(arg.annotation)
            )
        nodes = [n for stmt in body for n in ast.walk(stmt)]
        while True:
            before = len(names)
            for n in nodes:
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                    if self._mentions_pipeline(n.annotation) or (
                        n.value is not None and self._is_pipeline(n.value, names)
                    ):
                        names.add(n.target.id)
                elif isinstance(n, ast.Assign) and self._is_pipeline(n.value, names):
                    names.update(t.id for t in n.targets if isinstance(t, ast.Name))
                elif isinstance(n, ast.NamedExpr) and self._is_pipeline(n.value, names):
                    names.add(n.target.id)
            if len(names) == before:
                return names

    def _check(self, body: list[ast.stmt], names: set[str]) -> None:
        for node in (n for stmt in body for n in ast.walk(stmt)):
            if not isinstance(node, ast.Attribute):
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if _is_private(node.attr) and node.attr in self.privates and not own:
                self.found.add((node.lineno, f"reads the core's private {ast.unparse(node)}"))
            elif self._is_pipeline(node.value, names) and node.attr not in self.surface.allowed:
                where = f"{ast.unparse(node.value)}.{node.attr}"
                self.found.add((node.lineno, f"reads the pipeline's {node.attr!r} ({where})"))

    def run(self) -> list[tuple[int, str]]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engine.core"):
                for alias in node.names:
                    if _is_private(alias.name):
                        self.found.add(
                            (node.lineno, f"imports the core's private {node.module}.{alias.name}")
                        )
        subclass_methods = {
            id(item)
            for node in ast.walk(self.tree)
            if isinstance(node, ast.ClassDef) and any(_name(b) in self.surface.types for b in node.bases)
            for item in node.body
        }
        for fn in ast.walk(self.tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                # nested functions are walked with their own names too (and see the enclosing ones)
                names = self._names(fn, fn.body)
                if id(fn) in subclass_methods:
                    names.add("self")
                self._check(fn.body, names)
        top = [
            s
            for s in self.tree.body
            if not isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        self._check(top, self._names(None, top))
        return sorted(self.found)


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else ""


@dataclass(frozen=True)
class Surface:
    types: frozenset[str]  # Pipeline and its subclasses
    functions: frozenset[str]  # functions annotated to return one
    allowed: frozenset[str]  # PIPELINE_PUBLIC and what a subclass outside the core adds of its own


def surface(trees: list[ast.Module]) -> Surface:
    types = {"Pipeline"}
    extra: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(_name(b) == "Pipeline" for b in node.bases):
                types.add(node.name)
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        extra.add(item.target.id)
                    elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        extra.add(item.name)
    functions = {
        node.name
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.returns is not None
        and any(w in types for w in _WORD.findall(ast.unparse(node.returns)))
    }
    return Surface(frozenset(types), frozenset(functions), PIPELINE_PUBLIC | extra)


def findings(sources: dict[str, ast.Module], privates: frozenset[str]) -> list[str]:
    """``path:line: what`` for each use of the core's internals in ``sources`` (name → parsed module)."""
    found: list[str] = []
    where = surface(list(sources.values()))
    for name, tree in sources.items():
        found.extend(f"{name}:{line}: {what}" for line, what in _Finder(tree, where, privates).run())
    return found


def test_the_public_surface_is_real() -> None:
    """Every name of ``PIPELINE_PUBLIC`` exists on ``Pipeline`` (a renamed command fails here, not
    silently in the walk)."""
    tree = _parse(CORE / "pipeline.py")
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Pipeline"]
    attributes = {
        n.attr
        for n in ast.walk(cls)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id == "self"
        and isinstance(n.ctx, ast.Store)
    }
    missing = sorted(n for n in PIPELINE_PUBLIC if not hasattr(Pipeline, n) and n not in attributes)
    assert missing == []


def test_nothing_outside_the_core_uses_its_internals() -> None:
    """No module outside ``engine/core`` reads a part of the pipeline beyond its public surface, nor
    a private name of the core: they ask ``Pipeline.query`` (``engine.core.query``)."""
    sources = {str(p.relative_to(ROOT.parent)): _parse(p) for p in _outside_core()}
    found = findings(sources, core_private_names())
    assert found == [], "the core's internals used outside engine/core:\n" + "\n".join(found)


VIOLATIONS = """
from engine.core.pipeline import Pipeline, _element_record
from engine.core import reports

class Holder:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def count(self) -> int:
        return len(self.pipeline.alarms)                       # 10: attribute .pipeline

def built() -> Pipeline:
    return Pipeline(None, [])

def report(p: Pipeline, holder: Holder) -> object:
    firings = p.correlator.host.firings                        # 16: annotated parameter
    q = built()
    q.incidents.incidents()                                    # 18: a function returning one
    fresh = holder.pipeline
    fresh.quality.windows                                      # 20: assigned from a pipeline
    if (again := Pipeline(None, [])) is not None:
        again.stats.messages                                   # 22: walrus, constructor
    p.query.incidents()                                        # allowed: the query interface
    p.feed("t", b"", 0.0)                                      # allowed: a command
    return reports._views(p.query), firings, q._query         # 25: two privates

class AsOf(Pipeline):
    until: float | None = None

    def drain(self) -> None:
        self.until = 1.0                                       # allowed: its own attribute
        self.calendar.silences                                 # 32: a subclass reading a part

def outside(x: object) -> None:
    x._client._on_connect()                                    # not the core's privates
"""


def test_the_walk_finds_each_shape() -> None:
    """The checker itself: each way of holding a pipeline and each private use is found, with its
    line, and the public surface, a subclass's own attributes and other libraries' privates are not."""
    found = findings({"m.py": ast.parse(VIOLATIONS)}, frozenset({"_element_record", "_views", "_query"}))
    assert found == [
        "m.py:2: imports the core's private engine.core.pipeline._element_record",
        "m.py:10: reads the pipeline's 'alarms' (self.pipeline.alarms)",
        "m.py:16: reads the pipeline's 'correlator' (p.correlator)",
        "m.py:18: reads the pipeline's 'incidents' (q.incidents)",
        "m.py:20: reads the pipeline's 'quality' (fresh.quality)",
        "m.py:22: reads the pipeline's 'stats' (again.stats)",
        "m.py:25: reads the core's private q._query",
        "m.py:25: reads the core's private reports._views",
        "m.py:32: reads the pipeline's 'calendar' (self.calendar)",
    ]


@pytest.mark.parametrize("name", ["_views", "_synthetic_rule", "_own", "_by_signature"])
def test_core_privates_are_collected(name: str) -> None:
    """Module-level names, functions and ``self._x`` attributes of core modules are all private names."""
    assert name in core_private_names()
