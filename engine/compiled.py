"""Which core runs: the one compiled by mypyc, or the source. Decided once, when ``engine`` is imported.

``tools/build_compiled.py`` (run by ``make`` at set-up and by ``make compiled``) compiles the modules
``compiled_sources`` names with mypyc, in place: an extension module beside each source (Python's
import prefers it to the ``.py``) and one shared library (``engine/core__mypyc.*.so``), then writes a
manifest (``engine/compiled-build.json``) with the sha256 of every source it compiled. The compiled
modules are used only when that build is whole and current: the manifest is there and written for
this interpreter, it names exactly the modules ``compiled_sources`` selects, every extension is
there and every source still has the hash it was compiled from. Otherwise, and whenever
``ENGINE_PURE_PYTHON=1`` is set, a finder first in ``sys.meta_path`` loads each module of the package
that has an extension beside it from its ``.py`` instead: an edited module never runs its old
compiled code, and the whole core runs one way or the other, never a mix.

The decisions are the same either way (``bench digests --check`` on both; ``tests/test_compiled.py``).
``CORE`` says which runs and why, e.g. ``compiled with mypyc (50 modules)`` or ``pure Python (compiled
build stale: engine/core/kpi.py changed; `make compiled` rebuilds it)``: ``engine --version`` prints
it and the daemon's start line logs it.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "CORE", "ENV", "MANIFEST", "compiled_sources", "decide", "install"]

ENV = "ENGINE_PURE_PYTHON"
ROOT = Path(__file__).resolve().parent.parent  # the checkout (the package's parent)
MANIFEST = ROOT / "engine" / "compiled-build.json"

NOT_COMPILED = (
    # declare pydantic models: mypyc 2.4's C for them does not compile (CPyModule_pydantic___main)
    "engine/core/settings.py",
    "engine/core/kqi/catalog.py",
    "engine/core/experience/index.py",
    "engine/core/experience/sla.py",
    "engine/core/experience/tracker_dump.py",  # (kept apart from ``tracker``, which is compiled)
    # check the types of their arguments at run time (a ValueError naming the parameter), which the
    # compiled functions refuse first with a TypeError (tests/test_video_qoe.py)
    "engine/core/qoe/emodel.py",
    "engine/core/qoe/video.py",
    # a frozen dataclass keeping two more attributes in its ``__dict__`` (``_by_element``, ``_below``),
    # which a native class does not have; the cluster's routing, not the replay's path
    "engine/core/partitions.py",
)
# outside ``engine/core``: the decoder (its pydantic and msgspec declarations apart, interpreted, in
# ``engine/model/message_models.py``), times, the replay
EXTRA = ("engine/model/messages.py", "engine/model/timeutil.py", "engine/tools/replay.py")
REBUILD = "`make compiled` rebuilds it"


def compiled_sources(root: Path = ROOT) -> list[str]:
    """The sources the build compiles, relative to ``root``: every module of ``engine/core`` but the
    packages' ``__init__`` (mypyc gives them a wrong ``__path__``) and ``NOT_COMPILED``, plus
    ``EXTRA``."""
    core = [p.relative_to(root).as_posix() for p in (root / "engine" / "core").rglob("*.py")]
    chosen = [p for p in core if not p.endswith("/__init__.py") and p not in NOT_COMPILED]
    return sorted([*chosen, *(p for p in EXTRA if (root / p).is_file())])


def module_name(source: str) -> str:
    """``engine/core/kpi.py`` -> ``engine.core.kpi``."""
    return source.removesuffix(".py").replace("/", ".")


def extension_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def decide(root: Path = ROOT, environ: Mapping[str, str] = os.environ) -> tuple[bool, str]:
    """(run the compiled modules?, what runs and why, in words)."""
    if environ.get(ENV, "") not in ("", "0"):
        return False, f"pure Python ({ENV}={environ[ENV]})"
    manifest = root / "engine" / "compiled-build.json"
    try:
        built = json.loads(manifest.read_text(encoding="utf-8"))
        modules: dict[str, dict[str, str]] = built["modules"]
        suffix: str = built["suffix"]
        group: str = built["group"]
    except FileNotFoundError:
        return False, f"pure Python (not compiled: no build; {REBUILD})"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"pure Python (compiled build unreadable: {exc!r}; {REBUILD})"
    if suffix != extension_suffix():
        return False, f"pure Python (compiled build made for another interpreter ({suffix}); {REBUILD})"
    wanted = compiled_sources(root)
    listed = sorted(entry["source"] for entry in modules.values())
    if listed != wanted:
        new = sorted(set(wanted) - set(listed)) or sorted(set(listed) - set(wanted))
        return False, f"pure Python (compiled build stale: {', '.join(new[:3])} added or removed; {REBUILD})"
    missing = [s for s in wanted if not (root / (s.removesuffix(".py") + suffix)).is_file()]
    if not (root / group).is_file():
        missing.insert(0, group)
    if missing:
        return False, f"pure Python (compiled build incomplete: {', '.join(missing[:3])} missing; {REBUILD})"
    changed = [
        entry["source"]
        for entry in modules.values()
        if hashlib.sha256((root / entry["source"]).read_bytes()).hexdigest() != entry["sha256"]
    ]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return (
            False,
            f"pure Python (compiled build stale: {', '.join(sorted(changed)[:3])}{more} changed; {REBUILD})",
        )
    return True, f"compiled with mypyc ({len(modules)} modules)"


class SourceFinder:
    """First in ``sys.meta_path`` when the source runs: a module of the package with an extension
    module beside its ``.py`` is loaded from the ``.py``."""

    def __init__(self, package: str = "engine") -> None:
        self._prefix = package + "."
        self._suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith(self._prefix) or not path:
            return None
        name = fullname.rpartition(".")[2]
        for folder in path:
            source = os.path.join(folder, name + ".py")
            if os.path.isfile(source):
                if any(os.path.isfile(os.path.join(folder, name + s)) for s in self._suffixes):
                    return importlib.util.spec_from_file_location(fullname, source)
                return None
        return None


def install() -> tuple[bool, str]:
    """Decide, and put the source finder first in ``sys.meta_path`` when the source is to run."""
    compiled, why = decide()
    if not compiled and not any(isinstance(f, SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFinder())
    return compiled, why


COMPILED, CORE = install()
