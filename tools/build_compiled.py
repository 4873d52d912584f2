"""Compile the engine's core with mypyc, in place, and write the manifest ``engine.compiled`` reads.

Run by ``make`` after ``pip install -e`` (``--or-pure``: a failed compile leaves the pure-Python
core and says so, set-up goes on) and by ``make compiled`` (a failure is an error). ``--clean``
removes the build. The modules are those ``engine.compiled.compiled_sources`` names (every module of
``engine/core`` but the packages' ``__init__``, the five that declare pydantic models and the three
whose callers rely on interpreted behaviour, plus ``engine/model/messages.py`` (the decoder; its
pydantic and msgspec declarations are in ``engine/model/message_models.py``, interpreted),
``engine/model/timeutil.py`` and ``engine/tools/replay.py``: 50); one shared library
(``engine/core__mypyc.*.so``) with a small extension module beside each source.

The manifest (``engine/compiled-build.json``, git-ignored) lists each compiled module with the
sha256 of the source it was built from, the interpreter's extension suffix and the mypy version.
It is removed first and written last: a build that failed half-way has none, so the switch runs the
source. Hashes are taken before the compile: a source edited while it runs is stale at once.

Figures (docs/performance.md, section "mypyc"): about 2 minutes of CPU at ``-O3``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "engine" / "compiled-build.json"
BUILD = ROOT / "build" / "mypyc"
GROUP = "engine.core"

sys.path.insert(0, str(ROOT))
from engine.compiled import compiled_sources, module_name  # noqa: E402 (the checkout on the path first)


def sources() -> list[str]:
    """The compiled modules' sources, relative to the checkout, sorted (``engine.compiled`` says which)."""
    return compiled_sources(ROOT)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def suffix() -> str:
    ext = sysconfig.get_config_var("EXT_SUFFIX")
    assert isinstance(ext, str)
    return ext


def built_files() -> list[Path]:
    """Every file a build left in the package: an extension module beside a source, and the group's
    library (whatever the selection was when it was built)."""
    ext = suffix()
    found = [
        p
        for p in (ROOT / "engine").rglob(f"*{ext}")
        if p.with_name(p.name.removesuffix(ext) + ".py").is_file()
    ]
    group = ROOT / (GROUP.replace(".", "/") + "__mypyc" + ext)
    return [*found, group] if group.exists() else found


def clean() -> None:
    MANIFEST.unlink(missing_ok=True)
    for p in built_files():
        p.unlink()
    shutil.rmtree(BUILD, ignore_errors=True)


def compile_in_place(files: list[str], jobs: int) -> None:
    """mypycify, then setuptools' build_ext --inplace, in a child process (its own mypy state)."""
    script = f"""
import sys
from setuptools import setup
from mypyc.build import mypycify
exts = mypycify({files!r}, opt_level="3", multi_file=True, group_name={GROUP!r},
                target_dir={str(BUILD)!r})
for e in exts:
    # mypyc writes the group's headers under its target dir; the extensions need it on their path
    e.include_dirs = [*e.include_dirs, {str(BUILD)!r}, {str(BUILD / "engine")!r}]
setup(name="engine-core-compiled", ext_modules=exts,
      script_args=["--quiet", "build_ext", "--inplace", "--parallel", "{jobs}",
                   "--build-temp", {str(BUILD / "tmp")!r}])
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)


def build(jobs: int) -> None:
    files = sources()
    clean()
    hashes = {module_name(s): {"source": s, "sha256": sha256(ROOT / s)} for s in files}
    start = time.monotonic()
    before = os.times()
    compile_in_place(files, jobs)
    after = os.times()
    missing = [s for s in files if not (ROOT / f"{s.removesuffix('.py')}{suffix()}").exists()]
    if missing:
        raise RuntimeError(f"the build made no extension for {', '.join(missing)}")
    import mypy.version  # noqa: PLC0415 (only once compiled: mypy is a dev dependency)

    MANIFEST.write_text(
        json.dumps(
            {
                "mypy": mypy.version.__version__,
                "suffix": suffix(),
                "group": GROUP.replace(".", "/") + "__mypyc" + suffix(),
                "modules": hashes,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    print(
        f"compiled core: {len(files)} modules with mypyc in {time.monotonic() - start:.0f} s "
        f"({cpu:.0f} s of CPU); manifest {MANIFEST.relative_to(ROOT)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the build (the source runs)")
    parser.add_argument(
        "--or-pure",
        action="store_true",
        help="if the compile fails, say so and exit 0: the pure-Python core runs (set-up)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel C compiles")
    args = parser.parse_args(argv)
    if args.clean:
        clean()
        print("compiled core removed: the pure-Python core runs")
        return 0
    try:
        build(args.jobs)
        return 0
    except subprocess.CalledProcessError as exc:
        why = f"the compile exited with status {exc.returncode}: see above"
    except (RuntimeError, OSError) as exc:
        why = str(exc)
    clean()
    message = f"the core could not be compiled with mypyc ({why})"
    if not args.or_pure:
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(
        f"\n*** {message}.\n*** Set-up goes on with the pure-Python core (the same decisions, slower); "
        "`make compiled` tries again (it needs gcc and the Python headers).\n",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
