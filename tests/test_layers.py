"""The package layout's arrows point one way (docs/architecture.md): a walk over every module's imports.

Layers, bottom to top: ``engine.errors`` and ``engine.model`` (the vocabulary: messages, topology,
schedules, times), ``engine.rules`` (the rule language: schema, compiler, the durable-rules host),
``engine.core`` (the pure core and its rule forms), ``engine.adapters``, ``engine.service`` (daemon
wiring, config, logs, metrics), ``engine.tools`` and the CLI. A module may import its own layer and
the layers below it, with two exceptions written out here: adapters may use the service's
infrastructure (config models, metrics registry, logs) but not its wiring, and nothing but the CLI
and the tools themselves imports a tool. The core imports nothing that does I/O, reads a clock or
runs an event loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "engine"

LAYERS = ("errors", "model", "rules", "core", "adapters", "service", "tools", "cli")
"""Bottom to top. ``engine/__init__``, ``__main__`` and ``compiled`` are outside the order (version; entry
point; which core runs)."""

SERVICE_INFRASTRUCTURE = {"engine.service.config", "engine.service.metrics", "engine.service.logs"}
"""What an adapter may take from the service: settings models, the metrics registry, logging."""

CORE_FORBIDDEN = {
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "time",
    "threading",
    "multiprocessing",
    "subprocess",
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "sqlite3",
    "signal",
    "logging",
    "structlog",
    "urllib",
    "http",
    "aiohttp",
    "aiomqtt",
    "paho",
    "nats",
    "amqtt",
}
"""Modules the core may not import: I/O, clocks, event loops, logging, networking."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of ``path``, relative ones resolved, names that are
    modules (``from engine.tools import qoe``) counted as the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package[: len(package) - (node.level - 1)]
                base = ".".join([*stem, *([node.module] if node.module else [])])
            found.append((node.lineno, base))
            for alias in node.names:
                sub = ROOT.parent.joinpath(*f"{base}.{alias.name}".split("."))
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    found.append((node.lineno, f"{base}.{alias.name}"))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "engine" or len(parts) == 1 or parts[1] in {"__main__"}:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None when it may."""
    src, dst = _layer(importer), _layer(imported)
    if src == "core":
        top = imported.split(".", maxsplit=1)[0]
        if top in CORE_FORBIDDEN or imported in CORE_FORBIDDEN:
            return f"the core may not import {imported} (I/O, clock, event loop or logging)"
    if src is None or dst is None or src == dst:
        return None
    if dst == "tools" and src != "cli":
        return "only the CLI and other tools import a tool"
    if src == "adapters" and dst == "service":
        if any(imported == m or imported.startswith(m + ".") for m in SERVICE_INFRASTRUCTURE):
            return None
        return "an adapter may use the service's config, metrics and logs, not its wiring"
    if LAYERS.index(dst) > LAYERS.index(src):
        return f"{src} is below {dst}: the arrow points up"
    return None


def _all_modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "vendor" not in p.parts)


def test_every_import_points_down() -> None:
    problems = []
    for path in _all_modules():
        importer = _module_name(path)
        for line, imported in _imports(path):
            why = _violation(importer, imported)
            if why:
                problems.append(f"{path.relative_to(ROOT.parent)}:{line}: imports {imported}: {why}")
    assert problems == []


def test_the_layers_are_packages() -> None:
    for layer in LAYERS[1:-1]:
        assert (ROOT / layer / "__init__.py").is_file(), layer
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "cli.py", "compiled.py", "errors.py"]


@pytest.mark.parametrize(
    ("importer", "imported", "expected"),
    [
        ("engine.core.pipeline", "engine.adapters.store", "the arrow points up"),
        ("engine.core.pipeline", "engine.service.config", "the arrow points up"),
        ("engine.core.incidents", "asyncio", "the core may not import asyncio"),
        ("engine.core.incidents", "time", "the core may not import time"),
        ("engine.core.forms.groups", "urllib.parse", "the core may not import urllib.parse"),
        ("engine.rules.compiler", "engine.core.alarms", "the arrow points up"),
        ("engine.rules.schema", "engine.adapters.http", "the arrow points up"),
        ("engine.model.topology", "engine.rules.schema", "the arrow points up"),
        ("engine.adapters.http", "engine.tools.replay", "only the CLI and other tools import a tool"),
        ("engine.service.daemon", "engine.tools.demo", "only the CLI and other tools import a tool"),
        ("engine.adapters.http", "engine.service.daemon", "not its wiring"),
        ("engine.adapters.http", "engine.service.metrics", None),
        ("engine.cli", "engine.tools.replay", None),
        ("engine.tools.demo", "engine.service.daemon", None),
        ("engine.core.pipeline", "engine.rules.host", None),
        ("engine.core.pipeline", "collections", None),
    ],
)
def test_the_rule_itself(importer: str, imported: str, expected: str | None) -> None:
    """The checker refuses what it must (so the walk above cannot pass by checking nothing)."""
    why = _violation(importer, imported)
    if expected is None:
        assert why is None
    else:
        assert why is not None
        assert expected in why
