"""Shared fixtures for tests against a real broker (see ``tests/mosquitto.py``): ``mosquitto``, a
private, freshly started broker per test; ``make_mosquitto``, the same with options (TLS, users);
``topic_prefix``, topics unique to the running test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mosquitto import Mosquitto, find_binary
from tests.mosquitto import topic_prefix as _topic_prefix


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that hold a test marked slow run first, the rest in their usual order: on `make
    test`'s two workers (whole files each, in this order) the longest files start early, instead of
    one of them running alone at the end while the other worker has finished."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file's own order is kept


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
