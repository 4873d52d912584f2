"""The two ends of ``bench daemon``'s latency run, each in a process of its own.

The daemon under test must not share its event loop (nor its interpreter lock) with the load: a
publisher awaiting each PUBACK in the daemon's loop reached a few hundred messages/s while the bench
printed the rate it had asked for, and a webhook receiver in that loop takes CPU from the daemon it
times. So:

* ``publish``: a paced MQTT 3.1.1 QoS 1 publisher on a raw socket (aiomqtt tops out near 7,000
  QoS 1 messages/s in one process: too slow to load the daemon). It writes what is due at each
  wake-up, notes the wall-clock time each alarm left, counts PUBACKs, and reports the rate it
  actually reached.
* ``receive``: a ``WebhookReceiver`` that notes when the first record naming each alarm arrived.

Both take wall-clock times (``time.time``) on the same machine; the parent subtracts them. Both run
with Python's garbage collector off: the receiver keeps every record and the publisher every send
time, and a full collection of either (100 ms and more after a few thousand incidents) showed up as
the daemon's latency.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import orjson

from engine.model.timeutil import format_time
from engine.tools.receiver import WebhookReceiver

CLEAR_AFTER = 100  # each alarm is cleared this many raises later
# X.733 probable causes, in turn: a feed names a few hundred causes at most, so the rules' decisions
# per signature are reused as in a real network (one cause per alarm defeated that cache and timed
# durable-rules on every alarm instead).
CAUSES = (
    "lossOfSignal",
    "linkDown",
    "powerProblem",
    "equipmentMalfunction",
    "thresholdCrossed",
    "degradedSignal",
    "temperatureUnacceptable",
    "communicationsSubsystemFailure",
)


def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varlen(len(body)) + body


def _connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid  # clean session, 60 s
    return _packet(0x10, body)


def _publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    t = topic.encode()
    return _packet(0x32, len(t).to_bytes(2, "big") + t + mid.to_bytes(2, "big") + payload)


def feed_message(
    i: int, elements: list[str], now: float, root: str = "bench"
) -> tuple[str | None, str, bytes] | None:
    """Message ``i`` of the latency feed: even ``i`` raise alarm ``i // 2`` on an element of its
    own, odd ``i`` clear the alarm raised ``CLEAR_AFTER`` raises before (None before there is one).
    Returns (the alarm's key when it is a raise, topic, payload)."""
    raise_no, clearing = i // 2 - (CLEAR_AFTER if i % 2 else 0), bool(i % 2)
    if raise_no < 0:
        return None
    ne, cause = elements[raise_no % len(elements)], CAUSES[raise_no % len(CAUSES)]
    payload = {
        "ne_id": ne,
        "severity": "cleared" if clearing else "major",
        "probable_cause": cause,
        "event_time": format_time(now),
    }
    return (None if clearing else f"{ne}:{cause}"), f"{root}/alarms/{ne}", orjson.dumps(payload)


async def _publish(
    host: str, port: int, rate: float, count: int, elements: list[str], *, root: str = "bench"
) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(_connect_packet(f"bench-lat-pub-{time.monotonic_ns()}"))
    await writer.drain()
    connack = await reader.readexactly(4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"the broker refused the publisher: CONNACK {connack.hex()}")
    acked = 0

    async def count_acks() -> None:
        nonlocal acked
        buffer = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 4 and buffer[0] == 0x40:  # PUBACK: 0x40 0x02 mid
                acked += 1
                buffer = buffer[4:]
            if buffer and buffer[0] != 0x40:
                raise RuntimeError(f"unexpected packet from the broker: {buffer[:8].hex()}")

    acks = asyncio.create_task(count_acks())
    sent: dict[str, float] = {}
    published = 0
    start, wall_start = time.perf_counter(), time.time()
    i = 0
    while i < count:
        due = min(count, int((time.perf_counter() - start) * rate) + 1)
        chunk = []
        now = time.time()
        while i < due:
            msg = feed_message(i, elements, now, root)
            # timed from when it was due, not when it left: a publisher that fell behind (the
            # machine busy) must not hide the wait from the latency (coordinated omission)
            scheduled = wall_start + i / rate
            i += 1
            if msg is None:
                continue
            key, topic, payload = msg
            if key is not None:
                sent[key] = scheduled
            published += 1
            chunk.append(_publish_packet(topic, payload, published % 65535 + 1))
        if chunk:
            writer.write(b"".join(chunk))
            await writer.drain()
        next_at = start + i / rate
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    elapsed = time.perf_counter() - start
    deadline = time.monotonic() + 30
    while acked < published and time.monotonic() < deadline and not acks.done():
        await asyncio.sleep(0.01)
    if acks.done() and not acks.cancelled() and (error := acks.exception()) is not None:
        raise error
    acks.cancel()
    writer.write(b"\xe0\x00")  # DISCONNECT
    writer.close()
    return {"sent": sent, "slots": count, "published": published, "acked": acked, "seconds": elapsed}


def publish(spec: dict[str, Any], conn: Connection) -> None:
    """Process body: publish ``spec["count"]`` messages of the feed at ``spec["rate"]`` to the broker
    at ``spec["host"]``/``spec["port"]``, on topics under ``spec["root"]``; send the result on
    ``conn``."""
    gc.disable()  # the instrument must not pause: a full collection of ``sent`` would bunch the feed
    try:
        result = _publish(
            spec["host"], spec["port"], spec["rate"], spec["count"], spec["elements"], root=spec["root"]
        )
        conn.send(asyncio.run(result))
    except Exception as exc:  # reported to the parent, which prints it
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


async def _receive(conn: Connection) -> None:
    arrivals: dict[str, float] = {}

    def arrived(rec: dict[str, Any]) -> None:
        now = time.time()
        arrivals.setdefault(rec["root_cause"]["alarm_id"], now)
        for symptom in rec.get("suppressed") or ():
            arrivals.setdefault(symptom["alarm_id"], now)

    async with WebhookReceiver(on_record=arrived) as rx:
        conn.send(rx.url)
        while True:
            if conn.poll():
                command = conn.recv()
                if command == "count":
                    conn.send(len(arrivals))
                elif command == "dump":
                    conn.send(arrivals)
                    return
            await asyncio.sleep(0.02)


def receive(conn: Connection) -> None:
    """Process body: serve a webhook receiver; its URL first on ``conn``, then answer ``count`` and
    ``dump`` (the arrivals, then stop)."""
    gc.disable()  # nor here: a pause would delay the arrival times it notes (runs are short)
    asyncio.run(_receive(conn))


def start(target: Any, *args: Any) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    """``target(*args, conn)`` in a new (spawned) process; returns it and the parent's end."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    child.close()
    return proc, parent
