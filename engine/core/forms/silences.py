"""Silences: maintenance windows added at run time (Alertmanager's ``POST /api/v2/silences``).

A silence is a time window and a list of label matchers, as in Alertmanager. The engine's
maintenance covers *elements* (``engine.core.forms.maintenance``), so a silence here matches an element
through the labels an element has: ``ne_id`` (its id), ``site``, ``region`` and ``service`` (the
service types whose platform it belongs to; several values, a positive matcher needs one of them, a
negative one none). ``instance`` is accepted with ``=`` only: its host part is the element, as for
alerts (``olt-7:9100`` → ``olt-7``). A matcher on any other label is refused when the silence is
posted (``silence_error``): an engine maintenance window cannot mute one alert type.

Matchers follow Alertmanager: ``=``, ``!=``, ``=~``, ``!~``; a regular expression is anchored at
both ends, in RE2 syntax and matched in linear time as by Alertmanager's Go ``regexp``
(``engine.model.linear_regex``: a backreference or lookaround is refused with the matcher, never
run); a missing label is the empty string; every matcher must match. ``parse_matcher`` reads
the text form of the API's ``filter`` parameter (``alertname="Foo"``, ``severity=~"crit.*"``).

Pure: the adapter generates ids and passes ``now``; ``Silences`` is part of the core's state
(journaled commands, snapshotted), owned by the core task through ``Calendar``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.model.alertmanager_in import instance_host  # one rule for alerts and silences
from engine.model.linear_regex import RegexRefused, linear_regex

__all__ = [
    "SILENCE_LABELS",
    "Matcher",
    "MatcherError",
    "Silence",
    "Silences",
    "parse_matcher",
]

SILENCE_LABELS: Final = ("ne_id", "instance", "site", "region", "service")
MAX_SILENCES: Final = 1000  # silences not expired: more is refused
RETENTION: Final = 5 * 86400.0  # expired silences are listed this long (Alertmanager's default)
MAX_TEXT: Final = 4096  # createdBy, comment, a matcher's value

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Alertmanager's pkg/labels ParseMatcher: name, operator, value (quoted or not), on the text stripped
# of surrounding white space (a lazy value before a trailing `\s*$` in the pattern itself made it
# quadratic in the spaces inside a value: 0.5 s of the event loop for an 8 KB filter)
_MATCHER = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*)", re.DOTALL)
_OPS: Final = {"=": (False, True), "!=": (False, False), "=~": (True, True), "!~": (True, False)}


class MatcherError(ValueError):
    """A matcher that cannot be read or used; the message says why."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self) -> None:
        if not _LABEL_NAME.match(self.name):
            raise MatcherError(f"invalid label name {self.name!r}")
        if self.is_regex:
            try:
                linear_regex(self.value)
            except RegexRefused as exc:
                raise MatcherError(
                    f"matcher {self.text()}: {exc.describe('regular expression', quoted=False)}"
                ) from None

    def _positive(self, value: str) -> bool:
        if self.is_regex:  # compiled once (kept by linear_regex), linear in the value
            return linear_regex(self.value).fullmatch(value)
        return value == self.value

    def matches(self, value: str | None) -> bool:
        """Whether a label with this value (``None``: absent, i.e. empty) satisfies the matcher."""
        hit = self._positive(value or "")
        return hit if self.is_equal else not hit

    def matches_any(self, values: Iterable[str]) -> bool:
        """A label with several values (``service``): positive needs one to match, negative none."""
        values = list(values) or [""]
        hits = [self._positive(v) for v in values]
        return any(hits) if self.is_equal else not any(hits)

    def text(self) -> str:
        op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{op[(self.is_regex, self.is_equal)]}"{escaped}"'

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


def parse_matcher(text: str) -> Matcher:
    """Alertmanager's text form: ``name="value"``, ``name=~"re"``, ``name!=value``.

    Raises ``MatcherError``."""
    m = _MATCHER.fullmatch(text.strip())
    if m is None:
        raise MatcherError(f"bad matcher format: {text}")
    name, op, raw = m.groups()
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(ch, "\\" + ch))
            continue
        if ch == "\\" and i < len(raw) - 1:
            escaped = True
        elif ch == '"':
            if not quoted or i < len(raw) - 1:
                raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
            quoted = False
        else:
            out.append(ch)
    if quoted:
        raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
    is_regex, is_equal = _OPS[op]
    return Matcher(name, "".join(out), is_regex, is_equal)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels.get(m.name)) for m in matchers)


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float

    def state(self, now: float) -> str:
        if self.ends_at <= now:
            return "expired"
        return "pending" if self.starts_at > now else "active"

    def covers(self, attrs: ElementLabels, now: float) -> bool:
        return self.state(now) == "active" and all(attrs.match(m) for m in self.matchers)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.to_json() for m in self.matchers],
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "createdBy": self.created_by,
            "comment": self.comment,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Silence:
        return cls(
            id=d["id"],
            matchers=tuple(
                Matcher(m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in d["matchers"]
            ),
            starts_at=float(d["startsAt"]),
            ends_at=float(d["endsAt"]),
            created_by=d["createdBy"],
            comment=d["comment"],
            updated_at=float(d["updatedAt"]),
        )


@dataclass(frozen=True, slots=True)
class ElementLabels:
    """The labels of an element a silence can match."""

    ne_id: str
    site: str | None
    region: str | None
    services: frozenset[str]

    def match(self, m: Matcher) -> bool:
        if m.name == "service":
            return m.matches_any(sorted(self.services))
        if m.name == "instance":  # `=` only (silence_error): its host part is the element
            return instance_host(m.value) == self.ne_id
        value = {"ne_id": self.ne_id, "site": self.site, "region": self.region}.get(m.name)
        return m.matches(value)


def silence_error(matchers: Iterable[Matcher]) -> str | None:
    """Why these matchers cannot make a silence of the engine, or ``None``."""
    matchers = list(matchers)
    if not matchers:
        return "at least one matcher is required"
    for i, m in enumerate(matchers):
        if m.name not in SILENCE_LABELS:
            return (
                f"matcher {i} ({m.text()}): the engine silences elements (a silence is a maintenance "
                f"window), by {', '.join(SILENCE_LABELS)}; label {m.name!r} cannot be silenced"
            )
        if m.name == "instance" and (m.is_regex or not m.is_equal):
            return f"matcher {i} ({m.text()}): label 'instance' takes '=' only (its host is the element)"
        if len(m.value) > MAX_TEXT:
            return f"matcher {i}: value is {len(m.value)} characters, limit is {MAX_TEXT}"
    if all(m.matches("") for m in matchers):
        return "at least one matcher must not match the empty string"
    return None


class Silences:
    """The silences of the core, by id, in creation order. ``set``/``expire`` return an error or ``None``."""

    def __init__(self) -> None:
        self._by_id: dict[str, Silence] = {}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __iter__(self) -> Any:
        return iter(list(self._by_id.values()))

    def get(self, silence_id: str) -> Silence | None:
        return self._by_id.get(silence_id)

    def set(
        self, silence: Silence, now: float, *, replaces: str | None = None
    ) -> tuple[str | None, str | None]:
        """Create ``silence``, or update the silence ``replaces``: ``(id, None)`` or ``(None, error)``.

        As in Alertmanager, an update of a silence that is not expired and keeps its matchers is made
        in place (same id); otherwise the old one is expired and ``silence`` is created with its new id.
        An end time already past is refused; so is a start after the end."""
        if silence.starts_at >= silence.ends_at:
            return None, "start time must be before end time"
        if silence.ends_at < now:
            return None, "end time can't be in the past"
        reason = silence_error(silence.matchers)
        if reason is not None:
            return None, reason
        self._purge(now)
        if replaces is not None:
            old = self._by_id.get(replaces)
            if old is None:
                return None, f"silence {replaces} not found"
            if old.state(now) != "expired" and old.matchers == silence.matchers:
                starts = old.starts_at if old.state(now) == "active" else silence.starts_at
                kept = Silence(
                    old.id, old.matchers, starts, silence.ends_at, silence.created_by, silence.comment, now
                )
                self._by_id[old.id] = kept
                return old.id, None
            self.expire(old.id, now)
        if sum(1 for s in self._by_id.values() if s.state(now) != "expired") >= MAX_SILENCES:
            return None, f"too many silences: {MAX_SILENCES} are active or pending; expire some first"
        if silence.id in self._by_id:
            return None, f"silence {silence.id} exists"
        self._by_id[silence.id] = silence
        return silence.id, None

    def expire(self, silence_id: str, now: float) -> str | None:
        """End the silence now (a pending one: it never starts). Already expired: nothing to do."""
        old = self._by_id.get(silence_id)
        if old is None:
            return f"silence {silence_id} not found"
        state = old.state(now)
        if state == "expired":
            return None
        starts = now if state == "pending" else old.starts_at
        self._by_id[silence_id] = Silence(old.id, old.matchers, starts, now, old.created_by, old.comment, now)
        return None

    def command(self, command: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Apply ``{"op": "set", "silence": {...}, "replaces": id}`` or ``{"op": "expire", "id": id}``:
        ``{"id": ...}``, or ``{"error": ..., "not_found": bool}`` when it was refused."""
        if command["op"] == "expire":
            sid = str(command["id"])
            error = self.expire(sid, now)
            result: dict[str, Any] = {"id": sid} if error is None else {"error": error}
        else:
            new = Silence.from_json(command["silence"])
            got, error = self.set(new, now, replaces=command.get("replaces"))
            result = {"id": got} if error is None else {"error": error}
        if error is not None:
            result["not_found"] = error.endswith("not found")
        return result

    def covering(self, attrs: ElementLabels, now: float) -> list[Silence]:
        return [s for s in self._by_id.values() if s.covers(attrs, now)]

    def _purge(self, now: float) -> None:
        for sid in [sid for sid, s in self._by_id.items() if s.ends_at + RETENTION < now]:
            del self._by_id[sid]

    def dump(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self._by_id.values()]

    def load(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._by_id = {d["id"]: Silence.from_json(d) for d in items}
