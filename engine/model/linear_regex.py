"""Regular expressions from users, matched in time linear in the input (RE2).

Every regex a user writes meets input from the network: a ruleset's ``{regex: …}`` condition reads
an alarm's text (up to ~64 KiB) and other fields, an Alertmanager matcher (``=~``, ``!~``: an API
``filter``, a silence) reads labels, the API's ``receiver`` reads receiver names. Python's ``re``
backtracks: ``(a+)+$`` searched in thirty ``a`` and a ``!`` takes hours, and it held the event loop
(the daemon, ``/healthz`` included) or the replay for as long. RE2 (Google's ``google-re2``, the
engine of Go's ``regexp`` and so of Alertmanager) runs every pattern it accepts as an automaton, in
time linear in the input, with its memory bounded (``MAX_MEM``): no pattern and no input can stall
a match.

RE2 has no backreference, lookaround, conditional group, atomic group or possessive quantifier: no
linear-time engine can run the first three, and the others only control backtracking. A pattern
using one is *refused* where it is given (``RegexRefused``: a ruleset error with its file, line,
rule and field; an API 400 naming the matcher), never matched another way. So is a pattern in
Python's spelling that RE2 writes differently (``\\Z`` is RE2's ``\\z``). docs/robustness.md says
why this and not a time-out, and what else differs from Python's ``re``.

Both sides are bytes (UTF-8; a lone surrogate, which Python's ``str`` can hold, is encoded as
itself, ``surrogatepass``, and RE2 reads it as one character), so no input raises.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import re2

__all__ = ["MAX_MEM", "LinearRegex", "RegexRefused", "linear_regex"]

MAX_MEM: Final = 8 << 20  # RE2's default bound on a compiled pattern's memory (program and DFA cache)
_CACHED: Final = 256  # patterns kept compiled by ``linear_regex`` (Python's ``re`` keeps 512)
# Answers kept by text for a ruleset's conditions (``LinearRegex.search_kept``): they read fields
# whose values repeat (an element's id, its site, a probable cause), and RE2's wrapper costs about
# 1-3.4 µs a match against 0.07 µs for a look-up. Only short texts are kept, and the table is emptied
# when full: at most ``_ANSWERS`` texts of at most ``_ANSWER_TEXT`` characters per pattern (about
# 0.3 MB), and only the loaded rulesets' patterns keep any. Matchers from the API (filters,
# silences, receivers), which any client can vary, are not kept.
_ANSWERS: Final = 1024
_ANSWER_TEXT: Final = 128

# What RE2 says → what the user wrote, for a pattern Python's ``re`` accepts and RE2 refuses.
_OPERATORS: Final = {
    "(?=": "a lookahead (?=…)",
    "(?!": "a negative lookahead (?!…)",
    "(?<=": "a lookbehind (?<=…)",
    "(?<!": "a negative lookbehind (?<!…)",
    "(?(": "a conditional group (?(…)…|…), which refers back to a group",
    "(?>": "an atomic group (?>…)",
    "(?#": "a comment group (?#…)",
}


class RegexRefused(ValueError):
    """A pattern the linear-time engine does not run: not a regex at all, or one using a feature
    RE2 lacks (``unsupported``). ``reason`` says which; ``describe`` words it for a place."""

    def __init__(self, pattern: str, reason: str, *, unsupported: bool) -> None:
        self.pattern = pattern
        self.reason = reason
        self.unsupported = unsupported
        super().__init__(self.describe())

    def describe(self, noun: str = "regex", *, quoted: bool = True) -> str:
        """``regex '(a)\\\\1' uses a feature a linear-time regex engine cannot run: a backreference
        (\\1)``, or ``invalid regex '(': missing ): (``; without the pattern when not ``quoted``
        (the place quotes it): ``the regex uses …``, ``invalid regex: …``."""
        pattern = f" {self.pattern!r}" if quoted else ""
        if self.unsupported:
            subject = f"{noun}{pattern}" if quoted else f"the {noun}"
            return f"{subject} uses a feature a linear-time regex engine cannot run: {self.reason}"
        return f"invalid {noun}{pattern}: {self.reason}"


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # the error is ours to report, not RE2's to print on stderr
    return options


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class LinearRegex:
    """One pattern compiled by RE2; ``search`` and ``fullmatch`` answer whether it matches.

    Raises ``RegexRefused`` when built from a pattern RE2 does not run."""

    __slots__ = ("_re2", "_searched", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        try:
            self._re2: Any = re2.compile(_bytes(pattern), _options())
        except re2.error as exc:
            raise _refusal(pattern, exc) from None
        self._searched: dict[str, bool] = {}  # ``search_kept``'s answers by text (``_ANSWERS``)

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in ``text`` (``re.search``)."""
        return self._re2.search(_bytes(text)) is not None

    def search_kept(self, text: str) -> bool:
        """``search``, its answer kept by text (a ruleset's condition: values repeat; bounded)."""
        answers = self._searched
        answer = answers.get(text)
        if answer is None:
            answer = self._re2.search(_bytes(text)) is not None
            if len(text) <= _ANSWER_TEXT:
                if len(answers) >= _ANSWERS:
                    answers.clear()
                answers[text] = answer
        return answer

    def fullmatch(self, text: str) -> bool:
        """Whether the pattern matches the whole of ``text`` (``re.fullmatch``; Alertmanager's
        ``^(?:…)$``: RE2's ``$`` is the end of the text, as Go's)."""
        return self._re2.fullmatch(_bytes(text)) is not None

    def __repr__(self) -> str:
        return f"LinearRegex({self.pattern!r})"


@functools.lru_cache(maxsize=_CACHED)
def linear_regex(pattern: str) -> LinearRegex:
    """``LinearRegex(pattern)``, the last ``_CACHED`` kept compiled (a refusal is not kept)."""
    return LinearRegex(pattern)


def _refusal(pattern: str, exc: Exception) -> RegexRefused:
    said = exc.args[0] if exc.args else str(exc)
    message = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    try:
        re.compile(pattern)
    except Exception:  # not a regex in Python's syntax either (re.error, RecursionError, OverflowError)
        return RegexRefused(pattern, message, unsupported=False)
    return RegexRefused(pattern, _feature(pattern, message), unsupported=True)


def _feature(pattern: str, message: str) -> str:
    """What RE2's error ``message`` points at, in the user's terms (RE2's words when unknown)."""
    kind, _, where = message.partition(": ")
    if kind == "invalid escape sequence":
        if where[1:].isdigit():
            return f"a backreference ({where})"
        if where == "\\Z":
            return "\\Z (the end of the text is \\z in RE2 syntax)"
        if where in ("\\u", "\\U"):
            return f"the escape {where}… (a code point is \\x{{…}} in RE2 syntax)"
        return f"the escape {where}"
    if kind == "invalid perl operator":
        if where == "(?P" and "(?P=" in pattern:
            return "a backreference to a named group (?P=…)"
        if where in _OPERATORS:
            return _OPERATORS[where]
        if where.startswith("(?"):
            return f"the group or flag {where}… (RE2 knows the flags i, m, s and U)"
    if kind == "bad repetition operator" and where[-1:] == "+":
        return f"a possessive quantifier ({where})"
    if kind == "invalid repetition size":
        return f"a repetition count over 1000 ({where})"
    if kind.startswith("pattern too large"):
        return f"a pattern larger than the engine's memory bound of {MAX_MEM >> 20} MiB"
    return message
