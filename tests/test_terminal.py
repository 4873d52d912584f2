"""Text printed to a terminal: control characters from the network are shown, never obeyed."""

from __future__ import annotations

import pytest

from engine.service.terminal import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("fan failure", "fan failure"),
        ("\x1b[2Jcleared", "\\x1b[2Jcleared"),  # ESC: clear screen
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC: window title, BEL
        ("a\x9bb", "a\\x9bb"),  # C1 CSI
        ("x\x00y\x7f", "x\\x00y\\x7f"),
        ("line\nnext\r\ttab", "line\\nnext\\r\\ttab"),
        ("abc\u202edef", "abc\\u202edef"),  # right-to-left override
        ("sep\u2028", "sep\\u2028"),
        ("Zürich – 東京", "Zürich – 東京"),  # ordinary text stays as it is
    ],
)
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    """C0, DEL, C1, line separators and bidi controls become visible escapes; other text is kept."""
    assert printable(text) == shown


def test_keep_leaves_the_named_characters() -> None:
    """A multi-line report keeps its newlines and still escapes the rest."""
    assert printable("a\nb\x1b[2J\n", keep="\n") == "a\nb\\x1b[2J\n"
