"""Every command shown in README.md and docs/*.md runs as written.

The commands are the lines of the ```bash fenced blocks (a line ending in ``\\`` continues on the
next). Each document's blocks run in order in a temporary copy of the repository (so a command
that writes files changes nothing here), with the worktree's ``.venv/bin`` first on ``PATH``
(``engine`` is the installed command, as after ``source .venv/bin/activate``), no ``ENGINE_*``
variables, and a timeout.
A command fails the test, named by ``file:line``, when it exits non-zero or prints a traceback.

A block that cannot run here (a synopsis with placeholders, a daemon that runs until stopped, a
benchmark of minutes) is preceded directly by ``<!-- not-tested: <reason> -->``; the reason is
mandatory. A document's blocks run in order in a copy of their own; documents run four at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
TIMEOUT = 180.0  # seconds per command
NOT_TESTED = re.compile(r"^<!--\s*not-tested:(?P<reason>.*?)-->\s*$")
# Caches and what other tests write while this one copies (hypothesis' example database, the browser
# tests' screenshots: with `make test`'s two workers they change under the copy) are left out.
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",
    "*.egg-info", "var", "out", "artifacts", "build",
)  # fmt: skip


@dataclass(frozen=True)
class Command:
    where: str  # file:line of its first line, relative to the repository
    text: str


@dataclass(frozen=True)
class Block:
    where: str  # file:line of the opening fence
    commands: tuple[Command, ...]
    skip_reason: str | None  # None: run it; "" would be an empty reason (an error)


def bash_blocks(path: Path) -> Iterator[Block]:
    """The ```bash blocks of a Markdown file, with their commands and their not-tested reason."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT)
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```bash":
            i += 1
            continue
        fence = i
        marker = NOT_TESTED.match(lines[fence - 1].strip()) if fence > 0 else None
        commands: list[Command] = []
        i += 1
        pending: list[str] = []
        start = 0
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            if not pending:
                start = i
            if line.strip() or pending:
                pending.append(line)
            if pending and not line.rstrip().endswith("\\"):
                text = "\n".join(pending).strip()
                if text and not text.startswith("#"):
                    commands.append(Command(f"{rel}:{start + 1}", text))
                pending = []
            i += 1
        i += 1
        yield Block(f"{rel}:{fence + 1}", tuple(commands), marker.group("reason").strip() if marker else None)


BLOCKS = [block for doc in DOCS for block in bash_blocks(doc)]
RUN = [b for b in BLOCKS if b.skip_reason is None]


@dataclass(frozen=True)
class Outcome:
    command: Command
    status: int | None  # None: timed out
    output: str


def _run(command: Command, cwd: Path) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            ["bash", "-c", command.text],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(command, None, f"still running after {TIMEOUT:.0f} s")
    output = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
    return Outcome(command, proc.returncode, output)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Outcome]]:
    """Each document's blocks run in order, as a reader runs them (a later block may use what an
    earlier one wrote), in a copy of the repository of the document's own; documents four at a time."""
    by_document: dict[str, list[Block]] = {}
    for block in RUN:
        by_document.setdefault(block.where.rsplit(":", 1)[0], []).append(block)

    copies = [tmp_path_factory.mktemp("docs") / "repo" for _ in by_document]  # mktemp is not thread-safe

    def run_document(blocks: list[Block], copy: Path) -> list[tuple[str, list[Outcome]]]:
        shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
        (copy / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)
        return [(block.where, [_run(command, copy) for command in block.commands]) for block in blocks]

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(run_document, by_document.values(), copies)
        return {where: results for document in done for where, results in document}


def test_every_skipped_block_says_why() -> None:
    """A ``<!-- not-tested: … -->`` marker without a reason is refused: the reader (and the lead)
    must see why a documented command is not run."""
    empty = [b.where for b in BLOCKS if b.skip_reason == ""]
    assert not empty, f"not-tested marker without a reason before {', '.join(empty)}"


def test_the_documents_have_commands_to_run() -> None:
    """The extraction finds the README's blocks (a guard against a parser that finds nothing)."""
    assert any(b.where.startswith("README.md:") for b in RUN)
    assert sum(len(b.commands) for b in RUN) >= 10


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_documented_commands_run_as_written(block: Block, outcomes: dict[str, list[Outcome]]) -> None:
    """Each command of the block exits 0 and prints no Python traceback."""
    failures = [
        f"{o.command.where}: `{o.command.text}` "
        + ("timed out" if o.status is None else f"exited {o.status}")
        + f"\n{o.output[-2000:]}"
        for o in outcomes[block.where]
        if o.status != 0 or "Traceback (most recent call last)" in o.output
    ]
    assert not failures, "\n\n".join(failures)


def test_the_readme_puts_engine_on_path_before_its_first_engine_command() -> None:
    """After `make run` the `engine` command is in .venv/bin, not on PATH: the README says how
    (`source .venv/bin/activate`, or `.venv/bin/engine`) before its first bare `engine` command."""
    readme = [b for b in BLOCKS if b.where.startswith("README.md:")]
    commands = [c for b in readme for c in b.commands]
    activate = next(i for i, c in enumerate(commands) if c.text.startswith("source .venv/bin/activate"))
    first_engine = next(i for i, c in enumerate(commands) if c.text.startswith("engine "))
    assert activate < first_engine, commands[first_engine].where
    assert any(c.text.startswith(".venv/bin/engine ") for c in commands)
