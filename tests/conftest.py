"""Shared fixtures for tests against a real broker (see ``tests/mosquitto.py``): ``mosquitto``, a
private, freshly started broker per test; ``make_mosquitto``, the same with options (TLS, users);
``topic_prefix``, topics unique to the running test.

And the ``source_only`` marker: a test that replaces a method of a core class (fault injection,
counting calls) cannot do so on the core compiled by mypyc (a native class refuses it). When the
compiled core runs (``engine.compiled.COMPILED``), such tests run in a child pytest on the source
(``ENGINE_PURE_PYTHON=1``), one child per test file, and each reports the child's outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engine import compiled
from tests.mosquitto import Mosquitto, find_binary
from tests.mosquitto import topic_prefix as _topic_prefix


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that hold a test marked slow run first, the rest in their usual order: on `make
    test`'s two workers (whole files each, in this order) the longest files start early, instead of
    one of them running alone at the end while the other worker has finished. On the compiled core,
    the tests marked ``source_only`` become ``OnTheSource`` items."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file's own order is kept
    if compiled.COMPILED:
        for i, item in enumerate(items):
            if item.get_closest_marker("source_only") and isinstance(item, pytest.Function):
                assert item.parent is not None
                items[i] = OnTheSource.from_parent(item.parent, name=item.name, original=item)


class OnTheSource(pytest.Item):
    """A ``source_only`` test run by a child pytest on the source (``ENGINE_PURE_PYTHON=1``): the
    first of a file's such tests runs them all in one child; each reports its own outcome."""

    _outcomes: ClassVar[dict[Path, dict[str, tuple[str, str]]]] = {}

    def __init__(self, *, original: pytest.Function, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.original = original
        self.own_markers = list(original.own_markers)
        self.keywords.update(original.keywords)

    def runtest(self) -> None:
        outcomes = self._outcomes.get(self.path)
        if outcomes is None:
            outcomes = self._outcomes[self.path] = self._run_file()
        outcome, text = outcomes.get(self.name, ("missing", "the child pytest did not report it"))
        if outcome == "skipped":
            pytest.skip(text)
        if outcome != "passed":
            raise AssertionError(f"on the source (ENGINE_PURE_PYTHON=1), {outcome}:\n{text}")

    def _run_file(self) -> dict[str, tuple[str, str]]:
        mine = [i for i in self.session.items if isinstance(i, OnTheSource) and i.path == self.path]
        report = self.config.rootpath / ".pytest_cache" / f"source-only-{os.getpid()}-{self.path.stem}.xml"
        report.parent.mkdir(exist_ok=True)
        env = {**os.environ, compiled.ENV: "1"}
        env.pop("PYTEST_XDIST_WORKER", None)
        argv = [
            "-q",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            "-m",
            "slow or not slow",
            f"--junitxml={report}",
        ]
        child = subprocess.run(
            [sys.executable, "-m", "pytest", *argv, *(i.original.nodeid for i in mine)],
            cwd=self.config.rootpath,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        outcomes: dict[str, tuple[str, str]] = {}
        if report.is_file():
            for case in ET.parse(report).getroot().iter("testcase"):
                outcome, text = "passed", ""
                for kind in ("failure", "error", "skipped"):
                    found = case.find(kind)
                    if found is not None:
                        outcome, text = kind, (found.get("message") or "") + "\n" + (found.text or "")
                        break
                name = case.get("name", "")
                if outcomes.get(name, ("passed", ""))[0] == "passed":  # (a teardown's error: a second entry)
                    outcomes[name] = (outcome, text)
            report.unlink()
        if not outcomes:
            outcomes = {i.name: ("error", child.stdout[-4000:] + child.stderr[-4000:]) for i in mine}
        return outcomes

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.name} (on the source, ENGINE_PURE_PYTHON=1)"


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``make_mosquitto(**options)`` starts a private broker (options of ``Mosquitto``); all are
    stopped after the test. Skips the test when mosquitto is not installed."""
    if find_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does it)")
    started: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto-{len(started)}", **options)
        started.append(broker)
        broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in started:
            broker.stop()


@pytest.fixture
def mosquitto(make_mosquitto: Callable[..., Mosquitto]) -> Mosquitto:
    """A private Mosquitto on a free 127.0.0.1 port, persistence on, anonymous; stopped after the test."""
    return make_mosquitto()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """``test/<node id>``: a topic prefix no other test uses."""
    return _topic_prefix(request.node.nodeid)
