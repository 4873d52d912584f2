"""Private NATS servers for tests: a JetStream cluster of ``size`` nodes on free 127.0.0.1 ports.

``NatsCluster(folder, size=3)`` writes one configuration per node (its client port, its cluster
port, routes to the others, a JetStream store under ``folder``) and ``start()`` runs them, returning
once every node accepts connections and JetStream has a meta leader (a stream can be created).
``mqtt=True`` also opens nats-server's MQTT gateway on each node (``mqtt_ports``).
``kill(i)`` ends node ``i`` with SIGKILL, ``restart(i)`` starts it again on the same ports and store.
The system server on 4222 is never used; only PIDs started here are signalled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import nats
from nats.js.errors import APIError

from tests.mosquitto import free_port

BINARY_CANDIDATES = ("nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server")
START_TIMEOUT = 30.0


class NatsError(RuntimeError):
    """A server did not start or JetStream did not become ready; the message has the log's end."""


def find_binary() -> str | None:
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class NatsCluster:
    def __init__(self, folder: Path, *, size: int = 3, binary: str | None = None, mqtt: bool = False) -> None:
        found = binary or find_binary()
        if found is None:
            raise NatsError("nats-server is not installed")
        self.binary = found
        self.folder = folder
        self.size = size
        self.ports = [free_port() for _ in range(size)]
        self.cluster_ports = [free_port() for _ in range(size)] if size > 1 else []
        # nats-server's MQTT gateway (3.1.1): MQTT topic a/b/c is NATS subject a.b.c
        self.mqtt_ports = [free_port() for _ in range(size)] if mqtt else []
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    @property
    def url(self) -> str:
        """All nodes, comma-separated (what ``engine run --cluster`` takes)."""
        return ",".join(self.urls)

    def config(self, i: int) -> str:
        store = self.folder / f"n{i}" / "js"
        lines = [
            f"server_name: n{i}",
            f"listen: 127.0.0.1:{self.ports[i]}",
            "max_payload: 4MB",
            f"jetstream {{ store_dir: {str(store)!r}, max_memory_store: 64MB, max_file_store: 1GB }}",
        ]
        if self.mqtt_ports:
            lines.append(f"mqtt {{ listen: 127.0.0.1:{self.mqtt_ports[i]} }}")
        if self.size > 1:
            routes = ", ".join(
                f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.cluster_ports) if j != i
            )
            lines.append(
                f"cluster {{ name: soc-test, listen: 127.0.0.1:{self.cluster_ports[i]}, routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    def log_path(self, i: int) -> Path:
        return self.folder / f"n{i}" / "nats.log"

    def start(self) -> None:
        for i in range(self.size):
            self._start_node(i)
        for i in range(self.size):
            self._wait_port(i)
        # in a thread of its own: start() is also called from async tests, inside a running loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self._wait_jetstream()).result()

    def _start_node(self, i: int) -> None:
        node = self.folder / f"n{i}"
        node.mkdir(parents=True, exist_ok=True)
        conf = node / "nats.conf"
        conf.write_text(self.config(i))
        log = self.log_path(i).open("ab")
        self._procs[i] = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()

    def _wait_port(self, i: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            proc = self._procs[i]
            if proc is None or proc.poll() is not None:
                raise NatsError(f"nats-server n{i} exited at start\n{self.log_tail(i)}")
            try:
                with socket.create_connection(("127.0.0.1", self.ports[i]), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise NatsError(f"nats-server n{i} did not listen in time\n{self.log_tail(i)}")
            time.sleep(0.02)

    async def _wait_jetstream(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        nc = await nats.connect(servers=self.urls, connect_timeout=2)
        try:
            js = nc.jetstream(timeout=2)
            while True:
                try:
                    await js.account_info()
                    if self.size > 1:
                        # a meta leader answers before every peer can hold a replica: a stream of
                        # ``size`` replicas was refused now and then ("no suitable peers for
                        # placement"), so ready means such a stream can be made
                        await js.add_stream(
                            name="TEST_READY", subjects=["test.ready"], num_replicas=self.size
                        )
                        await js.delete_stream("TEST_READY")
                    return
                except (APIError, TimeoutError, nats.errors.Error) as exc:
                    if time.monotonic() > deadline:
                        raise NatsError(f"JetStream not ready: {exc}\n{self.log_tail(0)}") from None
                    await asyncio.sleep(0.1)
        finally:
            await nc.close()

    def pid(self, i: int) -> int | None:
        proc = self._procs[i]
        return proc.pid if proc is not None else None

    def kill(self, i: int) -> None:
        self._end(i, signal.SIGKILL)

    def restart(self, i: int) -> None:
        self._end(i, signal.SIGTERM)
        self._start_node(i)
        self._wait_port(i)

    def stop(self) -> None:
        for i in range(self.size):
            self._end(i, signal.SIGTERM)

    def _end(self, i: int, sig: signal.Signals) -> None:
        proc, self._procs[i] = self._procs[i], None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, i: int, lines: int = 30) -> str:
        try:
            text = self.log_path(i).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
