"""Helpers for the daemon's integration tests: settings, a publisher, a daemon in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import yaml

from bench.scenarios import example_topology
from engine.service.config import EngineSettings, load_settings, parse_broker_url
from engine.service.daemon import Daemon
from engine.tools.receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]

FAST_CORE = {"incidents": {"settle": "1s", "hold_down": "2s", "update_interval": "0.5s"}}


def write_config(
    folder: Path,
    *,
    broker_url: str | None,
    prefix: str,
    receivers: Iterable[Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A complete engine config file for one test: its own topics, store, ports and receivers."""
    folder.mkdir(parents=True, exist_ok=True)
    topology = folder / "topology.yaml"
    if not topology.exists():
        topology.write_text(yaml.safe_dump(example_topology(), sort_keys=False))
    config: dict[str, Any] = {
        "core": FAST_CORE,
        "topology": str(topology),
        "mqtt": {
            "enabled": broker_url is not None,
            "url": broker_url or "mqtt://127.0.0.1:1",
            "client_id": f"engine-{prefix.replace('/', '-')[-60:]}",
            "alarm_topics": [f"{prefix}/alarms/#"],
            "probe_topics": [f"{prefix}/probes/#"],
            "dead_letter_topic": f"{prefix}/deadletter",
            "incident_topic": f"{prefix}/incidents",
            "reconnect": {"initial": "100ms", "max": "1s"},
        },
        "store": {"path": str(folder / "engine.sqlite"), "snapshot_interval": "2s"},
        "http": {"port": 0},
        "receivers": [
            {"retry": {"initial": "100ms", "max": "500ms"}, "breaker": {"failures": 1000}, **r}
            for r in receivers
        ],
        "logging": {"level": "info", "format": "json"},
        "shutdown_timeout": "5s",
    }
    if extra:
        for key, value in extra.items():
            config[key] = value
    path = folder / "engine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def settings(path: Path) -> EngineSettings:
    return load_settings(path, environ={})


def with_prefix(lines: Iterable[Mapping[str, Any]], prefix: str) -> list[tuple[str, bytes]]:
    """Replay lines (`soc/alarms/...`) re-rooted under a test's topic prefix, payloads as bytes."""
    out = []
    for line in lines:
        topic = str(line["topic"]).replace("soc/", f"{prefix}/", 1)
        out.append((topic, orjson.dumps(line["payload"])))
    return out


def host_port(url: str) -> tuple[str, int]:
    address = parse_broker_url(url)
    return address.host, address.port


@contextlib.asynccontextmanager
async def collecting(url: str, topic_filter: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Subscribe (QoS 1) and collect every JSON payload on ``topic_filter`` into the yielded list."""
    host, port = host_port(url)
    got: list[dict[str, Any]] = []
    async with aiomqtt.Client(hostname=host, port=port, identifier=f"watch-{time.monotonic_ns()}") as client:
        await client.subscribe(topic_filter, qos=1)

        async def watch() -> None:
            async for msg in client.messages:
                got.append(orjson.loads(bytes(msg.payload)))

        task = asyncio.create_task(watch())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def publish(url: str, messages: Iterable[tuple[str, bytes]], *, qos: int = 1) -> int:
    """Publish with QoS 1 (each acknowledged by the broker) from a fresh client."""
    host, port = host_port(url)
    n = 0
    async with aiomqtt.Client(hostname=host, port=port, identifier=f"pub-{time.monotonic_ns()}") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos)
            n += 1
    return n


async def until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


class DaemonProcess:
    """`python -m engine run --config FILE` in a subprocess, for kill -9 and signal tests."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ENGINE_HTTP__PORT", None)
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", "--config", str(self.config)],
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def wait_started(self, *, timeout: float = 20.0) -> None:
        await until(
            lambda: b"engine started" in self.log.read_bytes() or self._dead(), timeout=timeout, what="start"
        )
        if self._dead():
            raise AssertionError(f"daemon exited early:\n{self.log.read_text()[-3000:]}")

    def started_lines(self) -> list[dict[str, Any]]:
        """The `engine started` log records (JSON), one per start."""
        out = []
        for line in self.log.read_bytes().splitlines():
            if b'"engine started"' in line:
                out.append(orjson.loads(line))
        return out

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, *, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def running_daemon(
    folder: Path,
    *,
    broker_url: str | None,
    prefix: str,
    extra: Mapping[str, Any] | None = None,
    ready: bool = True,
) -> AsyncIterator[tuple[Daemon, WebhookReceiver]]:
    """A webhook receiver (receiver ``noc``), this test's config (``write_config``) and the daemon in
    this process, ready (MQTT subscribed, when ``ready``): what most daemon tests start with."""
    async with WebhookReceiver() as rx:
        cfg = write_config(
            folder,
            broker_url=broker_url,
            prefix=prefix,
            receivers=[{"name": "noc", "url": rx.url}],
            extra=extra,
        )
        async with Daemon(settings(cfg)) as daemon:
            if ready:
                await until(lambda: daemon.ready, timeout=10, what="readiness")
            yield daemon, rx
