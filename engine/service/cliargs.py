"""Argument types and the parser shared by every command line of the engine.

A user's mistake on the command line is answered by one line on stderr that names the argument and
says what is wrong, and exit status 2 (argparse's convention), never a traceback. The checks live
here as argparse ``type=`` callables, so every subcommand that takes a port, a URL, a rate, an
input file or an output file refuses the same mistakes with the same words:

    engine replay: error: argument --out: no such directory: /nonexistent/dir (see `engine replay --help`)

Only what can be known before the command runs is checked here (the file exists and is a file, the
folder an output goes to exists, the number is in range, the URL has a scheme and a host). What a
file contains is checked by its loader, which names the file, the item and the line.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

__all__ = [
    "Parser",
    "broker_url",
    "http_url",
    "input_file",
    "input_path",
    "int_range",
    "output_dir",
    "output_file",
    "port",
    "rate",
    "time_arg",
]

_EPOCH_MAX = 253402300799.0  # 9999-12-31T23:59:59Z: the last second RFC 3339 can write


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: ``PROG: error: MESSAGE (see `PROG --help`)``, exit 2.

    Subparsers made by ``add_subparsers`` are of this class too (argparse uses the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see `{self.prog} --help`)\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer within ``low``..``high`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            _fail(f"not an integer: {text!r}")
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"within {low}..{high}"
            _fail(f"must be {bound}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def port(text: str) -> int:
    """A TCP port, 0..65535 (0: any free port)."""
    return int_range(0, 65535)(text)


def rate(text: str) -> float:
    """A scenario speed: a finite number ≥ 0 (1 real time, 10 ten times faster, 0 as fast as possible)."""
    try:
        value = float(text)
    except ValueError:
        _fail(f"not a number: {text!r}")
    if not (math.isfinite(value) and value >= 0):
        _fail(f"must be a finite number ≥ 0 (0: as fast as possible), got {text!r}")
    return value


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host (and a valid port if one is given)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        _fail(f"not a valid URL: {text!r} ({exc})")
    if parts.scheme not in ("http", "https"):
        _fail(f"expected an http:// or https:// URL such as http://127.0.0.1:8080, got {text!r}")
    if not parts.hostname:
        _fail(f"no host in {text!r}")
    return text


def broker_url(text: str) -> str:
    """An MQTT broker URL, ``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS)."""
    from engine.service.config import parse_broker_url  # noqa: PLC0415  (pydantic: not for `engine --help`)

    try:
        parse_broker_url(text)
    except ValueError as exc:
        _fail(str(exc))
    return text


def input_file(text: str) -> Path:
    """A file that exists, is not a directory, and can be read."""
    path = Path(text)
    if not path.exists():
        _fail(f"no such file: {text}")
    if path.is_dir():
        _fail(f"is a directory, expected a file: {text}")
    if not os.access(path, os.R_OK):
        _fail(f"cannot read (permission denied): {text}")
    return path


def input_path(text: str) -> Path:
    """A file or a directory that exists and can be read."""
    path = Path(text)
    if not path.exists():
        _fail(f"no such file or directory: {text}")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        _fail(f"cannot read (permission denied): {text}")
    return path


def output_file(text: str) -> Path:
    """A file to write: not a directory, in a directory that exists and can be written to."""
    path = Path(text)
    if path.is_dir():
        _fail(f"is a directory, expected a file: {text}")
    parent = path.parent
    if not parent.exists():
        _fail(f"no such directory: {parent}")
    if not parent.is_dir():
        _fail(f"not a directory: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        _fail(f"cannot write (permission denied): {text}")
    return path


def output_dir(text: str) -> Path:
    """A directory to write into: an existing directory, or a new one whose parent exists."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        _fail(f"exists and is not a directory: {text}")
    if not path.exists() and not path.parent.is_dir():
        _fail(f"no such directory: {path.parent}")
    return path


def time_arg(text: str) -> float:
    """RFC 3339 with an offset or ``Z`` (``2026-01-01T00:10:00Z``), or epoch seconds → epoch seconds."""
    from engine.model.timeutil import parse_time  # noqa: PLC0415  (pydantic: not for `engine --help`)

    value: object = text
    with contextlib.suppress(ValueError):
        value = float(text)
    try:
        t = parse_time(value)
    except ValueError as exc:
        _fail(f"{exc} (use RFC 3339 such as 2026-01-01T00:10:00Z, or epoch seconds)")
    if not 0 <= t <= _EPOCH_MAX:
        _fail(f"out of range (years 1970..9999): {text!r}")
    return t


def stderr_line(message: str) -> None:
    """Print ``error: MESSAGE`` as one line on stderr (a runtime error of a command)."""
    print(f"error: {_one_line(message)}", file=sys.stderr)
