"""The embedded MQTT broker of ``engine demo``: amqtt, in-process, on loopback.

``async with EmbeddedBroker() as broker:`` starts an amqtt broker on 127.0.0.1 and a free port (or
the one given), anonymous clients allowed, no persistence, no ``$SYS`` topics; ``broker.url`` is
``mqtt://127.0.0.1:PORT``. Leaving the block disconnects every client and stops the broker; no task
is left behind. One instance may be entered again after it has been left.

amqtt speaks MQTT 3.1.1 only (connect with protocol 3.1.1), handles a few thousand messages a
second and queues nothing for anonymous clients while they are away: right for a demo on one
machine, not for production. Its loggers (and those of ``transitions``, its state machine library)
are held at WARNING while it runs unless ``debug`` is set, then restored.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from engine.errors import EngineError

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]

_NOISY_LOGGERS = ("amqtt", "transitions")
_LISTENER = "default"


class EmbeddedBrokerError(EngineError):
    """The embedded broker could not start (the port is taken, most often)."""


class EmbeddedBroker:
    """An amqtt broker for the life of an ``async with`` block. See the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, debug: bool = False) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within 0..65535, got {port}")
        self.host = host
        self._requested_port = port
        self.debug = debug
        self._broker: Any = None  # amqtt.broker.Broker while running
        self._port: int | None = None
        self._saved_levels: dict[str, int] = {}

    @property
    def port(self) -> int:
        """The port the broker listens on (only while running)."""
        if self._port is None:
            raise RuntimeError("the embedded broker is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def __aenter__(self) -> EmbeddedBroker:
        if self._broker is not None:
            raise RuntimeError("the embedded broker is already running")
        self._quiet_loggers()
        try:
            await self._start()
        except BaseException:
            self._restore_loggers()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Disconnect every client and close the listener. Idempotent."""
        broker, self._broker, self._port = self._broker, None, None
        if broker is None:
            return
        try:
            await broker.shutdown()
        finally:
            self._restore_loggers()

    # -- internals

    async def _start(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - demo only
        from amqtt.errors import BrokerError  # noqa: PLC0415

        config = {
            "listeners": {_LISTENER: {"type": "tcp", "bind": f"{self.host}:{self._requested_port}"}},
            # Only anonymous access: no $SYS publisher, no event or packet loggers, no persistence.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        failed = logging.getLogger("amqtt.broker")
        level = failed.level
        if not self.debug:
            # amqtt logs its own traceback when the listener cannot bind; our error says it once.
            failed.setLevel(logging.CRITICAL)
        try:
            await broker.start()
        except BrokerError as exc:
            cause = exc.__cause__ or exc
            where = f"{self.host}:{self._requested_port}"
            raise EmbeddedBrokerError(f"cannot start the embedded MQTT broker on {where}: {cause}") from None
        finally:
            failed.setLevel(level)
        self._broker = broker
        self._port = _bound_port(broker)

    def _quiet_loggers(self) -> None:
        if self.debug:
            return
        for name in _NOISY_LOGGERS:
            logger = logging.getLogger(name)
            self._saved_levels[name] = logger.level
            if logger.getEffectiveLevel() < logging.WARNING:
                logger.setLevel(logging.WARNING)

    def _restore_loggers(self) -> None:
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_levels.clear()


def _bound_port(broker: Any) -> int:
    """The port the listener got (the requested one, or the one the OS chose for port 0)."""
    server = broker._servers[_LISTENER].instance  # amqtt has no public accessor for it
    port: int = server.sockets[0].getsockname()[1]
    return port
