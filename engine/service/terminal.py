"""Text for a terminal: control characters escaped, so what a sender wrote cannot drive the screen.

Alarm text (``specific_problem``, ``additional_text``, element names, topics) comes from the
network, and anything printed raw reaches the operator's terminal as is: ``\\x1b[2J`` clears it,
``\\x1b]0;…\\x07`` retitles the window, ``\\x9b`` is a one-byte CSI for some terminals, and U+202E
reverses what follows. ``printable(text)`` replaces every such character with a visible escape:

* C0 controls and DEL (``\\x00``–``\\x1f``, ``\\x7f``) → ``\\xNN`` (``\\n``, ``\\r``, ``\\t`` as such);
* C1 controls (``\\x80``–``\\x9f``) → ``\\xNN``;
* the Unicode line and paragraph separators and the bidirectional controls (U+2028, U+2029,
  U+200E/F, U+202A–U+202E, U+2066–U+2069, U+061C) → ``\\uNNNN``.

``keep`` names the characters left alone (a multi-line report keeps ``"\\n"``; a table ``"\\t"``).
The engine's own colours are added after escaping, around text already made safe.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["printable"]

_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with every terminal control character escaped (see the module docstring)."""
    if not _UNSAFE.search(text):
        return text
    if not keep:
        return _UNSAFE.sub(_escape, text)
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)
