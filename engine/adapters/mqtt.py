"""MQTT in and out: ``MqttSource`` feeds alarms and probe samples to the core, ``MqttPublisher`` sends
incident records and dead letters. Each owns one connection and re-establishes it for ever.

Theory of operation
-------------------
Inbound messages are QoS 1 and acknowledged by the application, not by the client library: paho's
``manual_ack`` is switched on before the connection exists (paho would otherwise PUBACK whatever
arrives between CONNACK and the switch), and each ``Inbound`` carries an ``ack()`` that sends the
PUBACK. The daemon calls it only after the message is committed to its journal, so a crash loses
nothing: the broker still holds every unacknowledged message in our persistent session (MQTT v5
``clean_start=False`` with a Session Expiry Interval, or v3.1.1 ``clean_session=False``) and
delivers it again, with the DUP flag, on the next connection.

Each connection is a fresh ``aiomqtt.Client`` (a ``_Link``). A packet id only means something on
the connection it arrived on, so ``ack()`` of a message from an earlier connection is a no-op
counted in ``stats["stale_acks"]``: the broker redelivers that message and the core deduplicates.
Each ``ack()`` acts once; a second call does nothing (it could otherwise acknowledge a later
message that reused the packet id).

Flow control: the v5 Receive Maximum asks the broker to keep at most that many unacknowledged
messages in flight. The source takes paho's ``on_message`` over from aiomqtt (aiomqtt's queue and
``messages`` iterator are not used: its ``Message`` drops the DUP flag, and its iterator's
task-per-message hand-over can hide a message in transit): messages wait in the link's inbox
(bounded: ``client_queue_size``, default twice the Receive Maximum) and then in ``queue`` (bounded:
``settings.queue_size``), whose ``put`` the reader awaits. Mosquitto 2.0.11 does not honour
Receive Maximum once PUBACKs flow (each PUBACK of the oldest message releases up to a window's
worth of queued ones), and a v3.1.1 client has only the broker's ``max_inflight_messages``; so when
the inbox is full the message is dropped *unacknowledged* (``dropped_by_client``) and, once
everything taken on that connection has been acknowledged, the connection is recycled: left as a
stop leaves it (the last PUBACKs, then a PINGREQ whose PINGRESP shows the broker has read them, then
DISCONNECT) and connected again at once; the broker delivers the dropped messages again. Nothing is
lost and nothing acknowledged comes again; the cost is a reconnect.

Reconnection: any failure (refused, timed out, dropped, subscription refused) ends the ``_Link``;
the task waits a jittered exponential backoff (``settings.reconnect``), reset after each successful
subscribe, and connects again. Statistics and queues live in the source, not the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import ssl
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeVar

import aiomqtt
import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from engine.errors import ConfigError, EngineError
from engine.service.config import Backoff, MqttSettings, TlsSettings

T = TypeVar("T")

__all__ = [
    "Inbound",
    "MqttPublisher",
    "MqttSource",
    "PublishError",
    "backoff_delays",
    "tls_context",
]

SOURCE_STATS: Final = (
    "received",  # messages handed to ``queue``
    "acked",  # PUBACKs sent (ack() on a live connection)
    "reconnects",  # connections after the first
    "connect_failures",  # attempts that never got a CONNACK
    "dropped_by_client",  # the inbox (client_queue_size) was full: dropped unacknowledged, sent again
    "stale_acks",  # ack() of a message whose connection is gone (the broker redelivers it)
    "recycles",  # connections closed on purpose to get dropped messages redelivered
    "sessions_lost",  # reconnects where the broker had no session for us (messages may be lost)
)
PUBLISHER_STATS: Final = (
    "published",  # publish() calls the broker acknowledged (QoS 1) or that were sent (QoS 0)
    "publish_failures",  # publish() calls that raised PublishError
    "buffered",  # publish_nowait() calls accepted
    "dropped",  # publish_nowait() calls refused: the buffer was full
    "reconnects",
    "connect_failures",
)
SESSION_EXPIRY_MAX: Final = 0xFFFFFFFF  # v5: "never expires"
PENDING_CALLS_WARNING: Final = 1000  # aiomqtt warns above this many publishes awaiting PUBACK
OPERATION_TIMEOUT: Final = 10.0  # CONNACK, SUBACK and clean DISCONNECT
STOP_RETRY: Final = 1.0  # seconds between cancellations of a connection task that will not end
LEAVE_BARRIER: Final = 0.5  # seconds a leaving source waits for the PINGRESP behind its last PUBACKs
# (below STOP_RETRY, so that the stop's next cancellation does not fall inside the wait)
READ_CHUNK: Final = 65536  # bytes taken from the socket per recv() (paho asks for 1 byte at a time)
READ_PACKETS: Final = 1000  # packets decoded per turn of the event loop before it yields
LARGE_PUBLISH: Final = 4 * READ_CHUNK  # a longer PUBLISH cut by a read is left to paho (linear)
_PUBACK: Final = struct.Struct("!BBH")  # a PUBACK: 0x40, remaining length 2, packet id (v3.1.1 and v5)


class PublishError(EngineError):
    """A publish was not acknowledged: not connected in time, the connection dropped, or refused.

    ``broker_down``: the broker was away or did not answer in time (a retry after a reconnect may
    succeed); False when the publish itself was refused (a topic the client or the broker will not
    take), which retrying does not mend."""

    def __init__(self, topic: str, reason: str, *, broker_down: bool = True) -> None:
        self.topic = topic
        self.reason = reason
        self.broker_down = broker_down
        super().__init__(f"publish to {topic!r} failed: {reason}")


class Inbound:
    """One message from the broker. Call ``ack()`` once it is durable (after the journal commit).

    ``received`` is the source's clock when the message arrived, ``duplicate`` the broker's DUP flag
    (this may have been delivered before). ``ack()`` acts once; a second call does nothing. A plain
    class with slots rather than a frozen dataclass: one is built per message (a frozen dataclass
    sets each field through ``object.__setattr__``, and a closure per ``ack`` cost as much again)."""

    __slots__ = ("_link", "_mid", "_qos", "_settled", "_source", "duplicate", "payload", "received", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        received: float,
        duplicate: bool,
        *,
        source: MqttSource,
        link: _Link,
        mid: int,
        qos: int,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.received = received
        self.duplicate = duplicate
        self._source = source
        self._link = link
        self._mid = mid
        self._qos = qos
        self._settled = False

    def ack(self) -> None:
        """Acknowledge the message (its PUBACK leaves with the others of this turn of the loop)."""
        self._source.ack_many((self,))

    def __repr__(self) -> str:
        return (
            f"Inbound(topic={self.topic!r}, payload={self.payload!r}, received={self.received!r},"
            f" duplicate={self.duplicate!r})"
        )


def tls_context(tls: TlsSettings | None) -> ssl.SSLContext:
    """An SSL context for the broker connection from ``mqtt.tls`` (``None``: system CAs, verified).

    ``ca_file`` replaces the system CAs (only its CAs are trusted); ``cert_file`` (with ``key_file``,
    or a PEM holding both) is our client certificate; ``insecure`` turns off certificate and host
    name verification.
    Raises ``ConfigError`` naming the setting when a file is missing or unusable.
    """
    tls = tls or TlsSettings()
    if tls.key_file is not None and tls.cert_file is None:
        raise ConfigError("mqtt.tls", "key_file", "needs cert_file (the client certificate)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslsocket_class = _ClosingSSLSocket
    if tls.ca_file is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            ctx.load_verify_locations(cafile=str(tls.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("mqtt.tls", "ca_file", f"cannot load {tls.ca_file}: {exc}") from None
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            files = f"{tls.cert_file}" + (f" / {tls.key_file}" if tls.key_file else "")
            raise ConfigError("mqtt.tls", "cert_file", f"cannot load {files}: {exc}") from None
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho leaves the socket of a failed handshake open."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def backoff_delays(policy: Backoff, *, rng: Callable[[], float] = random.random) -> Iterator[float]:
    """Endless reconnect delays: ``initial``, ×``factor`` each time, capped at ``max``, each ±``jitter``."""
    base = policy.initial
    while True:
        yield max(0.0, base * (1.0 + policy.jitter * (2.0 * rng() - 1.0)))
        base = min(policy.max, base * policy.factor)


class _Reconnect(Exception):
    """End this connection and connect again: ``delay`` False skips the backoff (a recycle)."""

    def __init__(self, reason: str, *, delay: bool = True) -> None:
        super().__init__(reason)
        self.delay = delay


# A PUBLISH as decoded, with what aiomqtt's Message leaves out: (topic, payload, qos, mid, DUP,
# arrival time). A plain tuple: one per message, built by the decoder itself.
_Received = tuple[str, bytes, int, int, bool, float]


@dataclass(eq=False)
class _Link:
    """One connection: its client, and what only means something while that connection lives."""

    client: aiomqtt.Client
    number: int
    up: bool = False  # CONNACK received and not disconnected since
    session_present: bool = False
    outstanding: int = 0  # handed to the queue, not yet acknowledged
    dropped: int = 0  # dropped because the inbox was full
    recycling: bool = False
    down_reason: str = ""
    lost: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # done once the connection is lost or is to be left (a recycle): nothing more is taken from it
    leaving: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    inbox: deque[_Received] = field(default_factory=deque)  # received, not yet taken by the reader
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # inbox grew, or the link went down
    acks: list[int] = field(default_factory=list)  # packet ids acknowledged, PUBACKs not yet queued
    acks_sent: bool = False  # PUBACKs were sent on this connection (``_leave`` then waits for a PINGRESP)
    pongs: int = 0  # PINGRESPs received
    pong: asyncio.Future[None] | None = None  # set once ``pongs`` reaches ``pongs_wanted``
    pongs_wanted: int = 0
    # (MQTT v5?, clock, receive): PUBLISH packets the reader decodes itself, stamped with the clock
    # and handed to receive in batches (``_BufferedRecv.take_publishes``)
    publish: tuple[bool, Callable[[], float], Callable[[list[_Received]], None]] | None = None

    @property
    def paho(self) -> paho.Client:
        return self.client._client

    @property
    def live(self) -> bool:
        return self.up and self.paho.is_connected()


class _BufferedRecv:
    """paho's ``_sock_recv`` with a buffer: paho reads each packet's fixed header one byte per call
    (three or four ``recv`` system calls per message); this takes up to ``READ_CHUNK`` bytes at once
    and serves paho's small reads from them. Raises ``BlockingIOError`` (through paho's own
    ``_sock_recv``) when both buffer and socket are empty, which paho reads as "wait for more"."""

    __slots__ = ("_data", "_pos", "_recv", "starved")

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._data = b""
        self._pos = 0
        self.starved = False  # the last ``take_publishes`` stopped for want of bytes

    @property
    def buffered(self) -> int:
        return len(self._data) - self._pos

    def take_publishes(self, v5: bool, limit: int, received: float) -> list[_Received]:
        """Every whole PUBLISH (QoS 0 or 1) at the front of the buffer, in order, at most ``limit``,
        each stamped ``received``. When the buffer is empty or ends inside a PUBLISH, the socket is
        read first (the packet's start kept). Stops at anything else, left for paho's
        ``_packet_read``: another packet type, QoS 2, a topic that is not UTF-8, a malformed packet
        (never read into the next one), the end of the stream. ``starved`` then says whether it
        stopped for bytes the socket does not have yet (paho would find nothing to read either). A
        PUBLISH longer than ``LARGE_PUBLISH`` that is not whole yet is paho's too: gathering it here
        would copy the packet's start again at every read (a 32 MiB one took 7 s of the loop)."""
        out: list[_Received] = []
        data, pos = self._data, self._pos
        n = len(data)
        self.starved = False
        while len(out) < limit:
            if pos < n:
                header = data[pos]
                if header & 0xF0 != 0x30:
                    break
                remaining = _varint(data, pos + 1, n)  # the remaining length
                if remaining is None:
                    if n - pos > 5:
                        break  # longer than 4 bytes: malformed, paho reports it
                else:
                    length, i = remaining
                    end = i + length
                    if end <= n:
                        message = _decode_publish(header, data, i, end, v5)
                        if message is None:
                            break
                        out.append((*message, received))
                        pos = end
                        continue
                    if length > LARGE_PUBLISH:
                        break  # paho gathers it in a bytearray: no copy of the whole per read
            try:  # the buffer is empty or ends inside a PUBLISH
                more = self._recv(READ_CHUNK)
            except BlockingIOError:
                self.starved = True
                break
            except OSError:  # paho's read meets it too, and ends the connection
                break
            if not more:  # the peer closed: paho's read finds out
                break
            data = data[pos:] + more if pos < n else more
            pos, n = 0, len(data)
        self._data, self._pos = data, pos
        return out

    def __call__(self, n: int) -> bytes:
        if self._pos >= len(self._data):
            data = self._recv(READ_CHUNK)
            if len(data) <= n:  # all of it wanted, or b"" (the peer closed)
                self._data, self._pos = b"", 0
                return data
            self._data, self._pos = data, 0
        start = self._pos
        self._pos = end = min(start + n, len(self._data))
        return self._data[start:end]


def _bulk_reader(link: _Link, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """The socket's reader callback: decode every packet that has arrived (up to ``READ_PACKETS``
    per turn of the loop), not one per wake-up as ``paho.loop_read`` does under aiomqtt (its
    ``max_packets`` argument is ignored); with ``_BufferedRecv`` a burst of messages costs one
    ``recv`` per 64 KiB instead of four per message. Errors end the connection as aiomqtt's own
    reader does. Relies on paho 2.x internals (``_packet_read``, ``_loop_rc_handle``, ``_sock_recv``),
    pinned in pyproject."""
    client = link.paho
    buffer = _BufferedRecv(client._sock_recv)
    client._sock_recv = buffer  # type: ignore[method-assign,assignment]

    def read() -> None:
        taken = 0
        try:
            for _ in range(READ_PACKETS):
                if client._sock is None:
                    return
                # Whole PUBLISH packets in the buffer, between two of paho's packets: ours to decode
                # (``publish``: the source's; paho's framer costs a dict and two locks per packet).
                publish = link.publish
                if publish is not None and client._in_packet["command"] == 0:
                    v5, clock, receive = publish
                    batch = buffer.take_publishes(v5, READ_PACKETS - taken, clock())
                    if batch:
                        taken += len(batch)
                        receive(batch)
                    if buffer.starved:
                        return
                    if taken >= READ_PACKETS:
                        break
                rc = client._packet_read()
                if rc == paho.MQTT_ERR_AGAIN:
                    return
                if rc != paho.MQTT_ERR_SUCCESS:
                    client._loop_rc_handle(rc)
                    return
            if buffer.buffered:  # the socket may be quiet now: the rest would wait for its next byte
                loop.call_soon(read)
        except Exception as exc:
            disconnected = link.client._disconnected
            if not disconnected.done():
                disconnected.set_exception(exc)
        finally:
            if taken:  # what paho notes after each packet it reads (its keepalive reads it)
                with client._msgtime_mutex:
                    client._last_bytes_received = paho.time_func()

    return read


def _publish_decoder(
    client: paho.Client, v5: bool, deliver: Callable[[str, bytes, int, int, bool], None]
) -> Callable[[], MQTTErrorCode]:
    """paho's ``_handle_publish`` for QoS 0 and 1 without what we do not use: no ``MQTTMessage``, no
    MQTT v5 property objects (skipped by their length; parsing them was ~6 % of the daemon's CPU),
    no topic-callback matching. ``deliver(topic, payload, qos, mid, dup)`` gets the message; QoS 2
    and a topic that is not UTF-8 go to paho's own handler (which reports it as paho does).
    Acknowledgement is manual (``manual_ack_set``), so nothing is sent here."""
    original = client._handle_publish

    def handle_publish() -> MQTTErrorCode:
        packet = client._in_packet
        data = packet["packet"]
        message = _decode_publish(packet["command"], data, 0, len(data), v5)
        if message is None:
            return original()
        deliver(*message)
        return paho.MQTT_ERR_SUCCESS

    return handle_publish


def _decode_publish(
    header: int, data: bytes | bytearray, start: int, stop: int, v5: bool
) -> tuple[str, bytes, int, int, bool] | None:
    """``(topic, payload, qos, mid, dup)`` of the PUBLISH whose fixed header is ``header`` and whose
    variable header and payload are ``data[start:stop]``; None for QoS 2 or a topic that is not
    UTF-8, and for a packet whose topic, packet id or properties would run past ``stop`` (never read
    from the next packet: paho's handler then reports the packet as malformed)."""
    qos = (header & 0x06) >> 1
    if qos > 1 or start + 2 > stop:
        return None
    end = start + 2 + ((data[start] << 8) | data[start + 1])
    if end > stop:
        return None
    try:
        topic = data[start + 2 : end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    mid = 0
    if qos:
        if end + 2 > stop:
            return None
        mid = (data[end] << 8) | data[end + 1]
        end += 2
    if v5:  # skip the properties: a variable-length integer, then that many bytes
        properties = _varint(data, end, stop)
        if properties is None:
            return None
        length, end = properties
        end += length
        if end > stop:
            return None
    return topic, bytes(data[end:stop]), qos, mid, bool(header & 0x08)


def _varint(data: bytes | bytearray, i: int, stop: int) -> tuple[int, int] | None:
    """The MQTT variable-length integer at ``data[i]`` (at most 4 bytes, all before ``stop``) and the
    position after it; None when it is cut by ``stop`` or longer than 4 bytes."""
    value, shift = 0, 0
    while True:
        if i >= stop or shift > 21:
            return None
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _send_acks(link: _Link) -> None:
    """Send the link's pending PUBACKs (4 bytes each) in one write, now, instead of one packet, one
    wake-up of aiomqtt's writer and one ``send`` each (``paho.ack``). What the socket does not take
    at once, aiomqtt's writer sends when it can (``_packet_queue`` registered it)."""
    mids, link.acks = link.acks, []
    if mids and link.live:
        link.acks_sent = True
        pack = _PUBACK.pack
        data = b"".join([pack(0x40, 2, mid) for mid in mids])
        client = link.paho
        # paho's _packet_queue, without its request to aiomqtt for a writer (an add_writer call that
        # would run later, possibly on a closed socket): loop_write asks for one only if the socket
        # did not take everything.
        client._out_packet.append(
            {
                "command": 0x40,
                "mid": 0,
                "qos": 0,
                "pos": 0,
                "to_process": len(data),
                "packet": data,
                "info": None,
            }
        )
        client.loop_write()


async def _answered(link: _Link, request: Awaitable[T]) -> T:
    """The broker's answer to ``request`` (a SUBSCRIBE or a QoS 1 PUBLISH awaiting its SUBACK or
    PUBACK), or ``_Reconnect`` as soon as the connection is lost: aiomqtt leaves such a wait to its
    own timeout when the broker goes away, so a broker killed between our SUBSCRIBE and the catch-up
    marker's PUBACK held the reconnect for ``OPERATION_TIMEOUT``. The request is cancelled then."""
    waiting = asyncio.ensure_future(request)
    try:
        await asyncio.wait((waiting, link.lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await waiting
    if waiting.cancelled():
        raise _Reconnect(f"disconnected: {link.down_reason}", delay=not link.recycling)
    return waiting.result()


async def _handled_before(link: _Link) -> None:
    """Send a PINGREQ and wait (at most ``LEAVE_BARRIER``) for its PINGRESP, which the broker sends
    once it has handled everything we sent before it, our last PUBACKs included. A DISCONNECT is
    no such proof: Mosquitto reads one packet per connection per turn of its loop, and a client that
    reconnects at once with the same id can take the session over before the old connection's
    last PUBACKs are read; the broker then sends those messages again (seen in the test suite). A
    broker that does not answer in time, or a lost connection, ends the wait: the DISCONNECT
    follows anyway. A keepalive PINGREQ of paho's still unanswered is answered first: then the
    second PINGRESP is ours."""
    client = link.paho
    link.pongs_wanted = link.pongs + (2 if client._ping_t else 1)
    link.pong = asyncio.get_running_loop().create_future()
    if client._send_pingreq() != paho.MQTT_ERR_SUCCESS:
        return
    with contextlib.suppress(TimeoutError, _Reconnect):
        async with asyncio.timeout(LEAVE_BARRIER):
            await _answered(link, link.pong)


class _Connection:
    """The reconnect loop shared by source and publisher; subclasses say what a connection does."""

    _stat_names: tuple[str, ...] = ()

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self.stats: dict[str, int] = dict.fromkeys(self._stat_names, 0)
        self._link: _Link | None = None
        self._links = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._delays = backoff_delays(settings.reconnect)
        self._tls = tls_context(settings.tls) if settings.uses_tls else None
        self._log = structlog.get_logger("engine.mqtt").bind(
            broker=f"{settings.host}:{settings.port}", client_id=client_id
        )

    # -- what subclasses provide -----------------------------------------------------------------
    def _persistent(self) -> bool:
        raise NotImplementedError

    async def _serve(self, link: _Link) -> None:
        """Use a connected link until it fails (raise) or is lost."""
        raise NotImplementedError

    def _on_up(self, link: _Link) -> None:
        """Called when CONNACK arrives (in paho's callback)."""

    def _on_down(self, link: _Link) -> None:
        """Called when the connection is lost or closed (in paho's callback)."""

    def _on_message(self, link: _Link, message: paho.MQTTMessage) -> None:
        """Called for each PUBLISH from the broker (in paho's callback)."""

    # -- lifecycle -------------------------------------------------------------------------------
    def _start(self, name: str) -> None:
        if self._task is not None:
            raise RuntimeError(f"{type(self).__name__} is not reentrant")
        self._task = asyncio.create_task(self._run(), name=name)

    async def _stop(self) -> None:
        """End the connection task. A cancellation can be lost on the way (Python 3.11's
        ``asyncio.wait_for`` returns the result of a future that completes as it is cancelled, and
        aiomqtt waits on CONNACK with it): the loop stops at its next turn (``_stopping``) and the
        task is cancelled again until it ends, so stopping never hangs on a reconnect loop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_RETRY)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    async def _run(self) -> None:
        connected_before = False
        while not self._stopping:
            link = self._new_link()
            delay = True
            try:
                try:
                    await link.client.__aenter__()
                except aiomqtt.MqttError as exc:
                    self.stats["connect_failures"] += 1
                    raise _Reconnect(f"connect failed: {exc}") from None
                try:
                    if connected_before:
                        self.stats["reconnects"] += 1
                        if self._persistent() and not link.session_present:
                            self.stats["sessions_lost"] += 1
                            self._log.warning(
                                "mqtt session lost: the broker kept nothing for us while we were away"
                            )
                    connected_before = True
                    self._log.info("mqtt connected", link=link.number, session_present=link.session_present)
                    await self._serve(link)
                finally:
                    await self._leave(link)
            except _Reconnect as exc:
                delay = exc.delay
                reason = str(exc)
            except aiomqtt.MqttError as exc:
                reason = f"disconnected: {exc.__cause__ or exc}"
                delay = not link.recycling
            except Exception as exc:  # paho failures outside MqttError, or a bug: log it, keep going
                reason = f"{type(exc).__name__}: {exc}"
                self._log.error("mqtt connection failed unexpectedly", exc_info=True)
            finally:
                self._release(link)
            if not delay:
                self._log.info("mqtt reconnecting", reason=reason)
                continue
            wait = next(self._delays)
            self._log.warning("mqtt connection down", reason=reason, retry_in=round(wait, 3))
            await asyncio.sleep(wait)

    def _healthy(self) -> None:
        """The connection works (subscribed, or connected for a publisher): restart the backoff."""
        self._delays = backoff_delays(self.settings.reconnect)

    def _new_link(self) -> _Link:
        s = self.settings
        user, password = s.credentials
        persistent = self._persistent()
        kwargs: dict[str, Any] = {}
        if s.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.ReceiveMaximum = s.receive_maximum
            if persistent:
                props.SessionExpiryInterval = int(min(s.session_expiry, SESSION_EXPIRY_MAX))
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=not persistent, properties=props)
        else:
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=not persistent)
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=self.client_id,
            username=user,
            password=password,
            keepalive=s.keepalive,
            timeout=OPERATION_TIMEOUT,
            tls_context=self._tls,
            **kwargs,
        )
        client.pending_calls_threshold = PENDING_CALLS_WARNING
        self._links += 1
        link = _Link(client, self._links)
        self._link = link
        self._hook(link)
        return link

    def _hook(self, link: _Link) -> None:
        """Wrap aiomqtt's paho callbacks (connect, disconnect, socket open), take over on_message, and
        read the socket in bulk (``_bulk_reader``)."""
        client = link.paho
        client.manual_ack_set(True)  # before connecting: a resumed session delivers right after CONNACK
        loop = asyncio.get_running_loop()
        read = _bulk_reader(link, loop)

        def on_socket_open(c: paho.Client, userdata: Any, sock: Any) -> None:
            # Called on aiomqtt's connect thread; aiomqtt registers its reader with
            # call_soon_threadsafe, and ours, queued after it, replaces it.
            link.client._on_socket_open(c, userdata, sock)
            loop.call_soon_threadsafe(loop.add_reader, sock.fileno(), read)

        def write() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # as aiomqtt's writer: the connection is broken
                disconnected = link.client._disconnected
                if not disconnected.done():
                    disconnected.set_exception(exc)

        def on_register_write(c: paho.Client, userdata: Any, sock: Any) -> None:
            # aiomqtt's, except that the writer is not added once the socket is gone: a DISCONNECT
            # queued while another write was pending is sent (and the socket closed) before it.
            fd = sock.fileno()

            def add() -> None:
                if client._sock is sock:
                    loop.add_writer(fd, write)

            loop.call_soon_threadsafe(add)

        def on_connect(
            c: paho.Client,
            userdata: Any,
            flags: paho.ConnectFlags,
            reason: ReasonCode,
            properties: Properties | None = None,
        ) -> None:
            if not reason.is_failure:
                link.up = True
                link.session_present = bool(flags.session_present)
                self._on_up(link)
            link.client._on_connect(c, userdata, flags, reason, properties)

        def on_disconnect(
            c: paho.Client,
            userdata: Any,
            flags: paho.DisconnectFlags,
            reason: ReasonCode,
            properties: Properties | None = None,
        ) -> None:
            link.down_reason = str(reason)
            self._down(link)
            connecting = link.client._connected
            if not connecting.done():  # closed before CONNACK (TLS refused, broker going down…)
                connecting.set_exception(aiomqtt.MqttError(f"connection closed before CONNACK: {reason}"))
            link.client._on_disconnect(c, userdata, flags, reason, properties)

        def on_message(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
            self._on_message(link, message)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.on_socket_open = on_socket_open
        client.on_socket_register_write = on_register_write
        handle_pingresp = client._handle_pingresp

        def on_pingresp() -> MQTTErrorCode:
            rc = handle_pingresp()
            link.pongs += 1
            pong = link.pong
            if pong is not None and not pong.done() and link.pongs >= link.pongs_wanted:
                pong.set_result(None)
            return rc

        client._handle_pingresp = on_pingresp  # type: ignore[method-assign]

    def _down(self, link: _Link) -> None:
        was_up, link.up = link.up, False
        link.wakeup.set()
        if not link.lost.done():
            link.lost.set_result(None)
        if not link.leaving.done():
            link.leaving.set_result(None)
        if was_up:
            self._on_down(link)

    async def _leave(self, link: _Link) -> None:
        """Disconnect cleanly if still connected (a normal DISCONNECT keeps the session). PUBACKs
        still waiting for the end of this turn of the loop (``_send_acks``) go first, and when any
        were sent on this connection, a PINGREQ whose answer shows the broker has handled them
        (``_handled_before``): otherwise the broker could send those messages again."""
        try:
            _send_acks(link)
            if link.acks_sent and link.live:
                await _handled_before(link)
            with contextlib.suppress(aiomqtt.MqttError):
                await link.client.__aexit__(None, None, None)
        finally:
            self._down(link)

    def _release(self, link: _Link) -> None:
        """Close whatever sockets paho still holds (a cancelled connect leaves them open), and take
        the exceptions aiomqtt left in the client's futures: after an unexpected disconnection
        (a broker restart) ``_disconnected`` holds an ``MqttCodeError`` that its ``__aexit__`` never
        reads, and asyncio would log "Future exception was never retrieved" when it is collected.
        The reason is already logged by the reconnect loop."""
        self._down(link)
        with contextlib.suppress(Exception):
            link.paho._reset_sockets()
        for future in (link.client._connected, link.client._disconnected):
            if future.done() and not future.cancelled():
                future.exception()  # marks it retrieved


class MqttSource(_Connection):
    """Subscribes to the alarm and probe topics and puts each message on ``queue`` as an ``Inbound``.

    ``async with MqttSource(settings) as source:`` starts the connection task; ``queue`` is bounded
    (``settings.queue_size``) and the reader waits while it is full. With ``direct=True`` there is no
    reader task and ``queue`` stays empty: the consumer takes messages from the connection's inbox in
    batches with ``drain(limit)`` (the daemon's core task does, woken by ``arrived``), so a burst costs
    one turn of the event loop per batch instead of one hand-over per message. ``subscribed`` is set
    after each successful (re)subscribe and cleared when the connection is lost. ``pause()`` stops taking
    messages (what the broker sends meanwhile waits unacknowledged); ``resume()`` continues. On exit
    the connection is closed cleanly and nothing still queued is acknowledged: the broker keeps it.
    """

    _stat_names = SOURCE_STATS

    def __init__(
        self,
        settings: MqttSettings,
        *,
        clock: Callable[[], float] = time.time,
        client_id: str | None = None,
        client_queue_size: int | None = None,
        direct: bool = False,
    ) -> None:
        super().__init__(settings, client_id or settings.client_id)
        if client_queue_size is not None and client_queue_size < 1:
            raise ValueError(f"client_queue_size must be at least 1, got {client_queue_size}")
        self._clock = clock
        self.direct = direct
        self.arrived = asyncio.Event()  # direct: set when a message arrives (the consumer clears it)
        self._client_queue = client_queue_size or max(2 * settings.receive_maximum, 100)
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue(maxsize=settings.queue_size)
        self.subscribed = asyncio.Event()
        self._taking = asyncio.Event()
        self._taking.set()
        self._in_hand = 0  # a message taken from the connection, not yet on ``queue``
        # Catch-up after a start: the marker we publish to ourselves once subscribed comes back
        # behind whatever the broker held for our session; ``caught_up`` is set when the reader takes
        # it, i.e. once every message queued before it is on ``queue``.
        self.caught_up = asyncio.Event()
        self.caught_up_at = 0  # messages put on ``queue`` before the marker came back
        self.sync_topic = f"{settings.sync_topic}/{self.client_id}" if settings.sync_topic else None
        self._marker = f"{self.client_id}:{time.time_ns()}:{random.getrandbits(64):016x}".encode()
        topics = (*settings.alarm_topics, *settings.probe_topics)
        self._subscriptions = tuple(dict.fromkeys(topics + ((self.sync_topic,) if self.sync_topic else ())))

    async def __aenter__(self) -> MqttSource:
        self._start(f"mqtt-source {self.client_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    def pause(self) -> None:
        """Stop taking messages from the connection (graceful shutdown: stop intake first)."""
        self._taking.clear()

    def resume(self) -> None:
        self._taking.set()

    @property
    def paused(self) -> bool:
        return not self._taking.is_set()

    @property
    def backlog(self) -> int:
        """Messages received on the current connection and not yet on ``queue`` (all unacknowledged)."""
        link = self._link
        if link is None or not link.up:
            return self._in_hand
        return sum(1 for m in link.inbox if m[0] != self.sync_topic) + self._in_hand

    @property
    def waiting(self) -> int:
        """What ``drain`` would find now (direct mode): the inbox of the live, subscribed connection,
        0 while paused. Cheap (``backlog`` counts the inbox message by message)."""
        link = self._link
        if link is None or not self._taking.is_set() or not self.subscribed.is_set() or link.leaving.done():
            return 0
        return len(link.inbox)

    # -- the connection --------------------------------------------------------------------------
    def _persistent(self) -> bool:
        return True

    def _on_down(self, link: _Link) -> None:
        self.subscribed.clear()
        self.arrived.set()

    def _hook(self, link: _Link) -> None:
        super()._hook(link)

        def deliver(topic: str, payload: bytes, qos: int, mid: int, dup: bool) -> None:
            self._receive(link, [(topic, payload, qos, mid, dup, self._clock())])

        def receive(batch: list[_Received]) -> None:
            self._receive(link, batch)

        v5 = self.settings.protocol == "5"
        link.paho._handle_publish = _publish_decoder(link.paho, v5, deliver)  # type: ignore[method-assign]
        link.publish = (v5, self._clock, receive)  # whole PUBLISH packets in the buffer skip paho's framer

    def _on_message(self, link: _Link, message: paho.MQTTMessage) -> None:
        """A message through paho's own decoder (QoS 2, or a topic that is not UTF-8)."""
        received = (message.topic, bytes(message.payload), message.qos, message.mid, bool(message.dup))
        self._receive(link, [(*received, self._clock())])

    def _receive(self, link: _Link, batch: list[_Received]) -> None:
        inbox = link.inbox
        room = self._client_queue - len(inbox)
        if len(batch) <= room:
            inbox.extend(batch)
        else:
            # Not acknowledged, so the broker still owns them; the link is recycled once drained.
            room = max(0, room)
            inbox.extend(batch[:room])
            dropped = len(batch) - room
            if not link.dropped:
                self._log.warning(
                    "mqtt client queue full: dropping unacknowledged messages until the link is recycled",
                    client_queue_size=self._client_queue,
                )
            link.dropped += dropped
            self.stats["dropped_by_client"] += dropped
            if not room:
                return
        if self.direct:
            self.arrived.set()
        else:
            link.wakeup.set()

    def drain(self, limit: int) -> list[Inbound]:
        """Up to ``limit`` messages from the current connection's inbox, in order (``direct`` mode).
        Nothing while paused, before subscribing or once the connection is lost (what it held comes
        again on the next one). Each ``Inbound.ack()`` acts once; acks are sent together at the end
        of the event loop's turn."""
        link = self._link
        if link is None or not self._taking.is_set() or not self.subscribed.is_set() or link.leaving.done():
            return []
        inbox = link.inbox
        out: list[Inbound] = []
        append, take = out.append, inbox.popleft
        sync = self.sync_topic
        while inbox and len(out) < limit:
            topic, payload, qos, mid, dup, received = message = take()
            if topic == sync:
                self._sync_message(link, message)
                continue
            append(Inbound(topic, payload, received, dup, source=self, link=link, mid=mid, qos=qos))
        link.outstanding += len(out)
        self.stats["received"] += len(out)
        return out

    def flush_acks(self) -> None:
        """Send the acknowledgements made so far now, rather than at the end of this turn of the
        event loop (the daemon calls it right after each commit)."""
        if self._link is not None:
            _send_acks(self._link)

    def _sync_message(self, link: _Link, message: _Received) -> None:
        """Our catch-up marker (a marker of an earlier run is just dropped)."""
        _, payload, qos, mid, _, _ = message
        if qos > 0 and link.live:  # not an input: not in the stats, never redelivered
            link.paho.ack(mid, qos)
        if payload == self._marker and not self.caught_up.is_set():
            self.caught_up_at = self.stats["received"]
            self.caught_up.set()
            self._log.info("mqtt caught up with the backlog of our session")

    async def _serve(self, link: _Link) -> None:
        await self._subscribe(link)
        if self.direct:  # the consumer drains the inbox itself
            self.arrived.set()
            await link.leaving
            raise self._ended(link)
        inbox = link.inbox
        while True:
            await self._taking.wait()
            while True:
                if link.leaving.done():  # what is still in the inbox comes again on the next connection
                    raise self._ended(link)
                if inbox:
                    break
                link.wakeup.clear()
                await link.wakeup.wait()
            message = inbox.popleft()
            topic, payload, qos, mid, dup, received = message
            if topic == self.sync_topic:
                self._sync_message(link, message)
                continue
            self._in_hand = 1
            try:
                await self._taking.wait()  # paused while we waited for the message: hold it
                inbound = Inbound(topic, payload, received, dup, source=self, link=link, mid=mid, qos=qos)
                link.outstanding += 1
                await self.queue.put(inbound)
            finally:
                self._in_hand = 0
            self.stats["received"] += 1

    async def _subscribe(self, link: _Link) -> None:
        if self.settings.protocol == "5":
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
            topics: Any = [(t, options) for t in self._subscriptions]
        else:
            topics = [(t, 1) for t in self._subscriptions]
        granted: list[int | ReasonCode] = list(
            await _answered(link, link.client.subscribe(topics, timeout=OPERATION_TIMEOUT))
        )
        refused = [
            f"{t}: {code}" for t, code in zip(self._subscriptions, granted, strict=False) if _refused(code)
        ]
        if refused:
            self._log.error("mqtt subscription refused", refused=refused)
            raise _Reconnect(f"subscription refused: {', '.join(refused)}")
        self.subscribed.set()
        self._healthy()
        self._log.info("mqtt subscribed", topics=list(self._subscriptions))
        if self.caught_up.is_set():
            return
        if self.sync_topic is None:
            self.caught_up.set()  # no marker: the backlog is whatever arrives first
            return
        try:
            await _answered(
                link, link.client.publish(self.sync_topic, self._marker, qos=1, timeout=OPERATION_TIMEOUT)
            )
        except aiomqtt.MqttCodeError as exc:  # refused (an ACL): catch-up cannot be known; go on
            self._log.warning("mqtt catch-up marker refused: not waiting for the backlog", reason=str(exc))
            self.caught_up.set()

    def ack_many(self, messages: Sequence[Inbound]) -> None:
        """Acknowledge each message not yet acknowledged, in order, with one look at the connection
        for them all (the daemon acknowledges a drained chunk this way once it is committed;
        ``Inbound.ack()`` is this for one message): its PUBACK is queued on the live connection it
        came on, or it is counted stale."""
        current = self._link
        live = current is not None and current.live
        acked = stale = 0
        mids: list[int] = []
        for m in messages:
            if m._settled:
                continue
            m._settled = True
            link = m._link
            link.outstanding -= 1
            if link is not current or not live:
                stale += 1
                continue
            if m._qos > 0:
                mids.append(m._mid)
            acked += 1
        self.stats["stale_acks"] += stale
        self.stats["acked"] += acked
        if current is None or not live:
            return
        if mids:
            if not current.acks:  # sent with the other acks of this turn of the loop (_send_acks)
                asyncio.get_running_loop().call_soon(_send_acks, current)
            current.acks.extend(mids)
        if current.dropped and current.outstanding == 0 and not current.inbox and not self._in_hand:
            self._recycle(current)

    def _recycle(self, link: _Link) -> None:
        """Everything kept on this link is acknowledged: reconnect so the broker resends the dropped.
        Nothing more is taken from the link (what arrives meanwhile comes again); the connection task
        leaves it as a stop does (``_leave``: the last PUBACKs, the PINGREQ barrier, a clean
        DISCONNECT), so the broker has handled every PUBACK before the next connection takes the
        session over, then reconnects at once."""
        if link.recycling:
            return
        link.recycling = True
        _send_acks(link)
        self.stats["recycles"] += 1
        self._log.info("mqtt recycling the connection to get dropped messages again", dropped=link.dropped)
        link.wakeup.set()
        if not link.leaving.done():
            link.leaving.set_result(None)

    @staticmethod
    def _ended(link: _Link) -> _Reconnect:
        """Why the connection task leaves ``link``: a recycle (reconnect at once) or a lost connection."""
        if link.recycling:
            return _Reconnect("recycling the connection", delay=False)
        return _Reconnect(f"disconnected: {link.down_reason}")


def _refused(code: int | ReasonCode) -> bool:
    """A SUBACK code that refuses the subscription (0x80 and above, in v3.1.1 and v5 alike)."""
    return code.is_failure if isinstance(code, ReasonCode) else code >= 0x80


class MqttPublisher(_Connection):
    """Publishes on its own connection (client id + ``-pub``, clean session), reconnecting for ever.

    ``publish()`` returns once the broker acknowledged a QoS 1 message (PUBACK) and raises
    ``PublishError`` if that does not happen within ``timeout`` (waiting for a connection counts) or
    the connection drops first: the caller retries, so delivery is at least once.
    ``publish_nowait()`` is best effort (dead letters): into a bounded buffer that a background task
    publishes at QoS 1, retrying each message until it is acknowledged; False when the buffer is full.
    """

    _stat_names = PUBLISHER_STATS

    def __init__(
        self, settings: MqttSettings, *, client_id: str | None = None, buffer_size: int = 1000
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        super().__init__(settings, (client_id or settings.client_id) + "-pub")
        self.connected = asyncio.Event()
        self._buffer: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=buffer_size)
        self._unsent = 0  # accepted by publish_nowait, not yet acknowledged
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._drainer: asyncio.Task[None] | None = None
        self._dropping = False

    async def __aenter__(self) -> MqttPublisher:
        self._start(f"mqtt-publisher {self.client_id}")
        self._drainer = asyncio.create_task(self._drain(), name=f"mqtt-publisher-buffer {self.client_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
        await self._stop()

    @property
    def buffered(self) -> int:
        """Messages accepted by ``publish_nowait`` and not yet acknowledged by the broker."""
        return self._unsent

    async def flush(self, timeout: float) -> bool:
        """Wait until everything ``publish_nowait`` accepted is acknowledged; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._flushed.wait()
        except TimeoutError:
            return False
        return True

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout: float = 10.0
    ) -> None:
        """Publish and wait for the broker's PUBACK (QoS 1) or the send (QoS 0)."""
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {qos}")
        try:
            async with asyncio.timeout(timeout):
                await self.connected.wait()
                link = self._link
                if link is None or not link.live:
                    raise PublishError(topic, "not connected")
                try:
                    await _answered(
                        link, link.client.publish(topic, payload, qos=qos, retain=retain, timeout=math.inf)
                    )
                except _Reconnect:
                    raise PublishError(topic, "connection lost before the broker acknowledged") from None
        except TimeoutError:
            self.stats["publish_failures"] += 1
            what = "acknowledged" if self.connected.is_set() else "connected"
            raise PublishError(topic, f"not {what} within {timeout:g}s") from None
        except aiomqtt.MqttError as exc:
            self.stats["publish_failures"] += 1
            raise PublishError(topic, str(exc), broker_down=not self.connected.is_set()) from None
        except ValueError as exc:  # the client refuses the topic itself (a wildcard, too long)
            self.stats["publish_failures"] += 1
            raise PublishError(topic, f"refused by the MQTT client: {exc}", broker_down=False) from None
        except PublishError:
            self.stats["publish_failures"] += 1
            raise
        self.stats["published"] += 1

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """Queue a QoS 1 publish without waiting. False (and ``stats["dropped"]``) when the buffer is full."""
        try:
            self._buffer.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            if not self._dropping:
                self._dropping = True
                self._log.warning("mqtt publish buffer full: dropping", size=self._buffer.maxsize)
            return False
        self.stats["buffered"] += 1
        self._unsent += 1
        self._flushed.clear()
        return True

    async def _drain(self) -> None:
        while True:
            topic, payload = await self._buffer.get()
            delays = backoff_delays(self.settings.reconnect)
            while True:
                try:
                    await self.publish(topic, payload, qos=1, timeout=OPERATION_TIMEOUT)
                    break
                except PublishError:
                    await self.connected.wait()
                    await asyncio.sleep(next(delays))
            self._unsent -= 1
            if self._unsent == 0:
                self._flushed.set()
            self._dropping = False

    # -- the connection --------------------------------------------------------------------------
    def _persistent(self) -> bool:
        return False

    def _on_up(self, link: _Link) -> None:
        self.connected.set()

    def _on_down(self, link: _Link) -> None:
        self.connected.clear()

    async def _serve(self, link: _Link) -> None:
        self._healthy()
        await link.lost
        raise _Reconnect(f"disconnected: {link.down_reason}")
