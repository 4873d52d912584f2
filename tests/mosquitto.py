"""A private Mosquitto broker for tests: its own port, configuration, persistence folder and log.

``Mosquitto(folder)`` writes ``mosquitto.conf`` into ``folder`` and ``start()`` runs
``mosquitto -c`` on a free 127.0.0.1 port, returning once the port accepts connections.
``stop()`` ends it with SIGTERM (Mosquitto then saves its persistence database), ``kill()`` with
SIGKILL (no save), ``restart()`` starts it again on the same port with the same database, so
persistent sessions and their queued messages survive a ``stop()`` / ``restart()``.

Options: ``tls=make_certificates(folder)`` serves TLS (``mqtts://``) with a throwaway CA (needs the
``openssl`` command), ``require_certificate`` asks clients for a certificate from that CA, and
``users={"name": "password"}`` turns anonymous access off (needs ``mosquitto_passwd``).
``freeze()``/``thaw()`` stop and continue the process (SIGSTOP/SIGCONT): connections stay open but
nothing is answered.

The system broker on 1883 is never used. ``topic_prefix(nodeid)`` gives each test its own topics.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

BINARY_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3


class MosquittoError(RuntimeError):
    """The broker did not start or stop as expected; the message includes the end of its log."""


def find_binary() -> str | None:
    """The path of the mosquitto executable, or ``None`` when it is not installed."""
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(folder: Path, *, client_name: str = "soc-engine") -> Certificates:
    """Generate ``Certificates`` in ``folder`` with the ``openssl`` command (EC P-256, valid 2 days)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MosquittoError("openssl is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    run(
        "req", "-x509", "-new", *newkey, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, subject, usage, alt in (
        ("server", "/CN=127.0.0.1", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        ("client", f"/CN={client_name}", "clientAuth", ""),
    ):
        ext = folder / f"{name}.ext"
        ext.write_text(
            f"{alt}basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
        )
        run("req", "-new", *newkey, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name,
        )  # fmt: skip
    return Certificates(
        ca=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
    )


def topic_prefix(nodeid: str) -> str:
    """A topic prefix unique to one test, derived from its pytest node id (no wildcards, no ``$``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    return f"test/{name}"


class Mosquitto:
    """One private broker process. Use ``start()``/``stop()`` or ``with Mosquitto(folder) as broker``."""

    def __init__(
        self,
        folder: Path,
        *,
        binary: str | None = None,
        port: int | None = None,
        tls: Certificates | None = None,
        require_certificate: bool = False,
        users: Mapping[str, str] | None = None,
    ) -> None:
        found = binary or find_binary()
        if found is None:
            raise MosquittoError("mosquitto is not installed")
        self.binary = found
        self.folder = folder
        self.port = port or free_port()
        self._port_chosen_here = port is None  # until the first start: another free port may replace it
        self.tls = tls
        self.require_certificate = require_certificate
        self.users = dict(users or {})
        self.password_path = folder / "passwords"
        self.config_path = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        self.data_path = folder / "data"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config(self) -> str:
        """The configuration file's text."""
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self.data_path}/",
            # The default (1000 per client) silently drops the rest of a backlog.
            "max_queued_messages 100000",
            # 0: no broker-side cap, so an MQTT v5 client's Receive Maximum alone bounds what is in flight.
            "max_inflight_messages 0",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.users:
            lines.append(f"password_file {self.password_path}")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        if os.geteuid() == 0:  # as root, mosquitto would switch to the `mosquitto` user: stay ourselves
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections. A port chosen here that another
        process took between ``free_port()`` and the broker's bind (an outgoing connection's local
        port, say: other tests run beside this one) is replaced by a fresh one, on the first start."""
        for attempt in range(PORT_ATTEMPTS):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._start()
            except MosquittoError:
                taken = "Address already in use" in self.log_path.read_text(errors="replace")[logged:]
                if not (taken and self._port_chosen_here and attempt + 1 < PORT_ATTEMPTS):
                    raise
                self.port = free_port()
                continue
            self._port_chosen_here = False  # restart() keeps the port its clients know
            return

    def _start(self) -> None:
        if self.running:
            raise MosquittoError("already running")
        self.data_path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        if self.users:
            self._write_passwords()
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self._process = None
                raise MosquittoError(f"mosquitto exited at start: {stderr.strip()}\n{self.log_tail()}")
            if self._accepts_connections():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise MosquittoError(f"mosquitto did not listen on {self.port} in time\n{self.log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM and wait: clients are disconnected and the persistence database is saved."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: nothing is saved since the last autosave; a frozen broker is not woken
        first, so it answers nothing more."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """``stop()`` then ``start()`` on the same port with the same persistence database."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered until ``thaw()``."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze()``."""
        self._signal(signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the broker's log (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            raise MosquittoError("not running")
        self._process.send_signal(sig)

    def _write_passwords(self) -> None:
        tool = shutil.which("mosquitto_passwd")
        if tool is None:
            raise MosquittoError("mosquitto_passwd is not installed")
        self.password_path.unlink(missing_ok=True)
        self.password_path.touch()
        for user, password in self.users.items():
            args = [tool, "-b", str(self.password_path), user, password]
            subprocess.run(args, check=True, capture_output=True)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if sig != signal.SIGKILL:  # SIGKILL ends a frozen broker as it is, answering nothing more
                process.send_signal(signal.SIGCONT)  # in case it is frozen
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
