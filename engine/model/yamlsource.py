"""YAML/JSON loading that remembers where every value came from, so errors can name the line.

``load_document(text, source)`` returns the plain data and a ``Locator`` that maps a path of keys and
indices (as pydantic reports it in ``loc``) to the 1-based line of the nearest node that has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import ConfigError

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,unused-ignore]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

PathKey = tuple[str | int, ...]


@dataclass
class Locator:
    """Lines of the nodes of one document, by path."""

    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = key[:-1]


def load_document(text: str, source: str, error: type[ConfigError] = ConfigError) -> tuple[Any, Locator]:
    """Parse YAML (JSON is YAML) and return ``(data, locator)``; syntax errors name the line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(source, where, f"malformed YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise error(source, "", f"malformed YAML: {exc}") from None
    locator = Locator(source)
    if node is None:
        return None, locator
    return _build(node, (), locator, error), locator


def load_file(path: str | Path, error: type[ConfigError] = ConfigError) -> tuple[Any, Locator]:
    """``load_document`` of a UTF-8 file; an unreadable or undecodable file is ``error`` too."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise error(str(p), "", "file not found") from None
    except OSError as exc:
        raise error(str(p), "", f"cannot read file: {exc}") from None
    return load_document(decode_utf8(raw, str(p), error), str(p), error)


def decode_utf8(raw: bytes, source: str, error: type[ConfigError] = ConfigError) -> str:
    """``raw`` as text; bytes that are not UTF-8 are ``error`` naming the line, the byte and its offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(
            source,
            f"line {line}",
            f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} ({exc.reason})",
        ) from None


def _build(node: yaml.Node, path: PathKey, loc: Locator, error: type[ConfigError]) -> Any:
    loc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise error(
                    loc.source, f"line {key_node.start_mark.line + 1}", "mapping keys must be scalars"
                )
            key = key_node.value
            if key in out:
                raise error(loc.source, f"line {key_node.start_mark.line + 1}", f"duplicate key {key!r}")
            out[key] = _build(value_node, (*path, key), loc, error)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), loc, error) for i, item in enumerate(node.value)]
    # Scalars: let the safe constructor resolve the tag (int, float, bool, null, str, timestamp).
    constructor = _Loader(" ")
    try:
        return constructor.construct_object(node, deep=True)
    finally:
        constructor.dispose()
