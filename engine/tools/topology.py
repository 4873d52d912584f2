"""``engine topology compact IN OUT``: rewrite a topology file with its customers in the compact form.

The input is loaded and validated like any topology (a bad one is refused with the usual
``file: item: reason``); the output keeps ``tiers``, ``service_types`` and ``elements`` as they are and
replaces ``customers`` (and any ``customer_groups`` or ``customers_by_access``) with
``customers_by_access`` in canonical order (``engine.model.topology.Topology.customers_by_access``), or
with ``customer_groups`` (``Topology.compact_customers``, the earlier compact form) when asked. JSON is
written one element and one entry a line; YAML in block style with flow-style lists. The output loads
to the same topology: the same elements, customers (id, tier, access, services in their order, name)
and customer groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from engine.errors import EngineError
from engine.model.topology import collector_paused, read_topology_file, topology_from_dict

SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class Compacted:
    customers: int
    groups: int
    size_in: int
    size_out: int


FORMS = ("customers_by_access", "customer_groups")
_CUSTOMER_KEYS = ("customers", *FORMS)


def compact_file(src: Path, dst: Path, form: str = FORMS[0]) -> Compacted:
    """Read, validate and rewrite ``src`` as ``dst`` (JSON or YAML by its suffix), its customers in
    ``form`` (one of ``FORMS``)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    if dst.suffix.lower() not in SUFFIXES:
        raise EngineError(f"{dst}: unsupported file type {dst.suffix!r} (use .yaml, .yml or .json)")
    with collector_paused():  # millions of fresh containers, as in ``load_topology``
        source, doc, size_in = read_topology_file(src)
        topology = topology_from_dict(doc, source=source)
        out = {k: v for k, v in doc.items() if k not in _CUSTOMER_KEYS}
        del doc  # the customers' part of the document goes back before the output is built
        if form == "customer_groups":
            out[form] = topology.compact_customers()
        else:
            out[form] = topology.customers_by_access()
        data = _json(out) if dst.suffix.lower() == ".json" else _yaml(out)
    try:
        dst.write_bytes(data)
    except OSError as exc:
        raise EngineError(f"{dst}: cannot write: {exc.strerror or exc}") from None
    return Compacted(topology.customer_count(), len(topology.all_groups()), size_in, len(data))


def _json(doc: dict[str, Any]) -> bytes:
    """One line per element and per customer group; the rest compact."""
    parts = [b"{"]
    for n, (key, value) in enumerate(doc.items()):
        parts.append(b"," if n else b"")
        parts.append(b"\n" + orjson.dumps(key) + b": ")
        if key in ("elements", *FORMS) and isinstance(value, list):
            parts.append(_lines(value))
        else:
            parts.append(orjson.dumps(value))
    parts.append(b"\n}\n")
    return b"".join(parts)


def _lines(items: Iterable[Any]) -> bytes:
    body = b",\n  ".join(map(orjson.dumps, items))
    return b"[\n  " + body + b"\n]" if body else b"[]"


def _yaml(doc: dict[str, Any]) -> bytes:
    text: str = yaml.dump(
        doc,
        Dumper=yaml.CSafeDumper,
        sort_keys=False,
        default_flow_style=None,
        width=1 << 30,
        allow_unicode=True,
    )
    return text.encode("utf-8")
