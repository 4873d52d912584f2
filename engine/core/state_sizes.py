"""How much state the core holds: the size of every container in its parts, by attribute path.

A debugging and testing aid for issue 11's "memory flat on long runs": every map the core keeps
about an alarm, an incident or a rule's window must be released when the alarm is forgotten and
the incident resolves, so that a long run holds only what is alive now. ``state_sizes(pipeline)``
walks the pipeline's parts (objects of the core's own modules, and the rule host) and reports the
length of each dict, list, set and deque it finds, e.g. ``incidents._graph._parent: 12``. It does
not look inside the containers (an incident's members are counted by the incident map, not one by
one), nor at the static topology, compiled program and settings.

The walk is generic on purpose: a map added later is counted without anyone remembering to list
it, so ``tests/test_state_bounded.py`` catches a new leak as well as an old one. It reads private
attributes; it is for tests, benchmarks and debugging, never for decisions.

A part whose maps nest (a map of maps, whose own length says nothing of what it holds) reports the
inner ones itself: an object with an ``inner_sizes()`` method has its answer counted under its path
too (``Neighbourhood``: ``_at[root]``, the elements holding root candidates, and ``_at[root][*]``,
the candidates). Such parts kept in a map are walked as well, one path per key (the correlator's
``_near[neighbour:2]``, a ``Neighbourhood`` per relation): the walk opens a map only for them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["STATIC_MODULES", "WALKED_MODULES", "state_sizes"]

# Objects of these modules are walked; anything else is a leaf (the topology lives in engine.model,
# the compiled program in engine.rules.compiler: static, not walked). The settings are static too.
WALKED_MODULES = ("engine.core.", "engine.rules.host")
STATIC_MODULES = ("engine.core.settings",)
_CONTAINERS = (dict, list, set, frozenset, deque)
_MAX_DEPTH = 8


def state_sizes(root: object) -> dict[str, int]:
    """``{attribute path: length}`` for every container reachable from ``root`` through the core's
    objects (first path found wins for an object reached twice), in discovery order."""
    out: dict[str, int] = {}
    _walk(root, "", out, set(), 0)
    return out


def _walked(value: object) -> bool:
    kind = type(value)
    module = kind.__module__ or ""
    if hasattr(kind, "model_fields"):  # a pydantic model: settings, static
        return False
    return module.startswith(WALKED_MODULES) and not module.startswith(STATIC_MODULES)


def _attributes(obj: object) -> Mapping[str, Any]:
    found: dict[str, Any] = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        # a class compiled by mypyc (``engine.compiled``) lists its attributes in ``__mypyc_attrs__``
        for slot in (*getattr(cls, "__slots__", ()), *getattr(cls, "__mypyc_attrs__", ())):
            if slot not in found and hasattr(obj, slot):
                found[slot] = getattr(obj, slot)
    return found


def _walk(obj: object, path: str, out: dict[str, int], seen: set[int], depth: int) -> None:
    if id(obj) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(obj))
    for name, value in _attributes(obj).items():
        where = f"{path}.{name}" if path else name
        if isinstance(value, _CONTAINERS):
            out[where] = len(value)
            if isinstance(value, dict) and value and all(map(_reports_inner, value.values())):
                for key, part in value.items():  # parts kept by name (bounded by the rules)
                    _walk(part, f"{where}[{key}]", out, seen, depth + 1)
        elif isinstance(value, tuple):  # parts held in a fixed tuple (the forms): walk them
            _walk_items(value, where, out, seen, depth)
        elif _walked(value):
            _walk(value, where, out, seen, depth + 1)
    inner = getattr(obj, "inner_sizes", None)
    if callable(inner):
        for name, size in inner().items():
            out[f"{path}.{name}" if path else name] = size


def _reports_inner(value: object) -> bool:
    return _walked(value) and callable(getattr(value, "inner_sizes", None))


def _walk_items(items: tuple[Any, ...], path: str, out: dict[str, int], seen: set[int], depth: int) -> None:
    for i, item in enumerate(items):
        if _walked(item):
            label = getattr(item, "name", None)
            _walk(item, f"{path}[{label if isinstance(label, str) and label else i}]", out, seen, depth + 1)
