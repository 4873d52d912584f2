"""The switch between the core compiled by mypyc and its source (``engine.compiled``), and the
decisions being the same on whichever core runs.

``decide`` on a made-up tree (whole build, stale source, missing extension, another interpreter,
the environment variable); then the real import in a child interpreter: with ``ENGINE_PURE_PYTHON=1``
every compiled module loads from its ``.py``; on the real build (``make`` made it) from its extension;
on a copy of the build with one source edited, from the ``.py`` again, ``engine --version`` naming
the edited file. And the full decision digests (PCIC logs included) on the core this suite runs on:
the quick ones missed a compiled-only difference once (``priority.py``'s ``weighted``: 0 written 0.0).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import digests
from bench.replay import DATASETS, DEFAULT_SHARED, dataset_dir
from engine import compiled

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = compiled.extension_suffix()
needs_build = pytest.mark.skipif(
    not compiled.COMPILED, reason=f"the compiled core does not run here: {compiled.CORE}"
)


def _tree(root: Path) -> None:
    """A made-up checkout whose build is whole: two core modules, a package, the extras, a manifest."""
    for source in ("engine/core/a.py", "engine/core/sub/b.py", *compiled.EXTRA):
        (root / source).parent.mkdir(parents=True, exist_ok=True)
        (root / source).write_text(f"# {source}\n")
    (root / "engine/core/__init__.py").write_text("")
    (root / "engine/core/sub/__init__.py").write_text("")
    (root / "engine/core/settings.py").write_text("# not compiled (pydantic models)\n")
    modules = {}
    for source in compiled.compiled_sources(root):
        (root / (source.removesuffix(".py") + SUFFIX)).write_bytes(b"")
        digest = hashlib.sha256((root / source).read_bytes()).hexdigest()
        modules[compiled.module_name(source)] = {"source": source, "sha256": digest}
    group = "engine/core__mypyc" + SUFFIX
    (root / group).write_bytes(b"")
    manifest = {"mypy": "2.4.1", "suffix": SUFFIX, "group": group, "modules": modules}
    (root / "engine/compiled-build.json").write_text(json.dumps(manifest))


def test_a_whole_current_build_runs_compiled(tmp_path: Path) -> None:
    """Every selected module built from the source there now, for this interpreter: compiled."""
    _tree(tmp_path)
    assert compiled.compiled_sources(tmp_path) == [
        "engine/core/a.py",
        "engine/core/sub/b.py",
        "engine/model/messages.py",
        "engine/model/timeutil.py",
        "engine/tools/replay.py",
    ]
    assert compiled.decide(tmp_path, {}) == (True, "compiled with mypyc (5 modules)")
    assert compiled.decide(tmp_path, {compiled.ENV: "0"})[0] is True


def test_the_environment_variable_runs_the_source(tmp_path: Path) -> None:
    """``ENGINE_PURE_PYTHON=1`` runs the source on a whole build, and says so."""
    _tree(tmp_path)
    assert compiled.decide(tmp_path, {compiled.ENV: "1"}) == (False, "pure Python (ENGINE_PURE_PYTHON=1)")


def test_an_edited_source_runs_the_source_and_names_the_file(tmp_path: Path) -> None:
    """A compiled module's source changed since the build: the whole core runs from source."""
    _tree(tmp_path)
    with (tmp_path / "engine/core/sub/b.py").open("a") as f:
        f.write("X = 1\n")
    assert compiled.decide(tmp_path, {}) == (
        False,
        "pure Python (compiled build stale: engine/core/sub/b.py changed; `make compiled` rebuilds it)",
    )


def test_an_incomplete_or_foreign_or_missing_build_runs_the_source(tmp_path: Path) -> None:
    """A missing extension, a module added since the build, a build for another interpreter, no
    build at all: each runs the source, saying why."""
    _tree(tmp_path)
    (tmp_path / ("engine/core/a" + SUFFIX)).unlink()
    assert compiled.decide(tmp_path, {})[1].startswith(
        "pure Python (compiled build incomplete: engine/core/a"
    )
    _tree(tmp_path)
    (tmp_path / "engine/core/c.py").write_text("")
    assert "engine/core/c.py added or removed" in compiled.decide(tmp_path, {})[1]
    (tmp_path / "engine/core/c.py").unlink()
    manifest = tmp_path / "engine/compiled-build.json"
    manifest.write_text(manifest.read_text().replace(SUFFIX, ".cpython-399-x.so"))
    assert "made for another interpreter" in compiled.decide(tmp_path, {})[1]
    manifest.unlink()
    assert compiled.decide(tmp_path, {}) == (
        False,
        "pure Python (not compiled: no build; `make compiled` rebuilds it)",
    )


PROBE = """
import importlib, sys
from engine import compiled
files = {s: importlib.import_module(compiled.module_name(s)).__file__ for s in compiled.compiled_sources()}
print(compiled.CORE)
print(sorted({f.rsplit("/", 1)[1].split(".", 1)[1] for f in files.values()}))
print("engine.core__mypyc" in sys.modules)
"""


def _probe(cwd: Path, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != compiled.ENV}
    r = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        env={**environ, "PYTHONPATH": str(cwd), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.splitlines()


def test_with_the_environment_variable_every_compiled_module_loads_from_its_source() -> None:
    """``ENGINE_PURE_PYTHON=1``: all of them from ``.py``, the group's library never loaded."""
    core, kinds, group = _probe(ROOT, ENGINE_PURE_PYTHON="1")
    assert (core, kinds, group) == ("pure Python (ENGINE_PURE_PYTHON=1)", "['py']", "False")


@needs_build
def test_the_whole_build_loads_every_compiled_module_compiled() -> None:
    """The build ``make`` made: every compiled module is its extension."""
    core, kinds, group = _probe(ROOT)
    assert core == compiled.CORE
    assert core.startswith("compiled with mypyc")
    assert (kinds, group) == (f"['{SUFFIX[1:]}']", "True")


@needs_build
def test_a_stale_build_loads_every_module_from_source(tmp_path: Path) -> None:
    """A copy of the build with ``engine/core/kpi.py`` edited: every module from source (the core
    never runs half compiled), and ``engine --version`` says why."""
    shutil.copytree(ROOT / "engine", tmp_path / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "engine/core/kpi.py").open("a") as f:
        f.write("\n# edited\n")
    core, kinds, group = _probe(tmp_path)
    assert (
        core == "pure Python (compiled build stale: engine/core/kpi.py changed; `make compiled` rebuilds it)"
    )
    assert (kinds, group) == ("['py']", "False")
    r = subprocess.run(
        [sys.executable, "-m", "engine", "--version"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.splitlines()[1] == f"core: {core}"


@pytest.mark.slow
def test_the_full_decision_digests_on_the_core_that_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``bench digests --check docs/decision-digests.tsv`` with the PCIC logs, on this process's core
    (compiled where ``make`` built it): the quick digests missed a compiled-only difference once."""
    missing = [name for name in DATASETS if not dataset_dir(DEFAULT_SHARED, name).is_dir()]
    quick = ["--quick"] if missing else []
    status = digests.main(["--check", str(ROOT / "docs/decision-digests.tsv"), *quick])
    out = capsys.readouterr().out
    assert status == 0, f"{compiled.CORE}:\n{out}"
    if missing:
        pytest.skip(f"quick digests identical on {compiled.CORE}; PCIC logs missing: {', '.join(missing)}")
