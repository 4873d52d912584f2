"""The embedded amqtt broker of ``engine demo``: lifecycle, and QoS 1 through it with aiomqtt over
MQTT 3.1.1 (the only version amqtt speaks)."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import pytest

from engine.tools.broker import EmbeddedBroker, EmbeddedBrokerError

V311 = aiomqtt.ProtocolVersion.V311


def _client(broker: EmbeddedBroker, identifier: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=identifier, protocol=V311)


def _other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_starts_and_stops_twice_in_one_process() -> None:
    """Two brokers one after the other, then the same instance entered again: each gets a free port,
    serves a client, and leaves no task behind; afterwards its port refuses connections."""
    first = EmbeddedBroker()
    ports = []
    for broker in (first, EmbeddedBroker(), first):
        async with broker:
            assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
            async with _client(broker, "probe") as client:
                await client.publish("test/lifecycle", b"x", qos=1)
            ports.append(broker.port)
            stopped = broker.port
        assert not broker.running
        assert _other_tasks() == set()
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", stopped, protocol=V311):
                pass
    assert all(p > 0 for p in ports)


async def test_qos1_round_trip_with_protocol_311() -> None:
    """A QoS 1 publish is acknowledged, and a QoS 1 subscriber receives every message, in order."""
    topic = "test/qos1_round_trip"
    async with (
        EmbeddedBroker() as broker,
        _client(broker, "subscriber") as sub,
        _client(broker, "publisher") as pub,
    ):
        await sub.subscribe(f"{topic}/#", qos=1)
        for i in range(20):
            await pub.publish(f"{topic}/{i}", f"message {i}".encode(), qos=1)  # returns on PUBACK
        received = []
        async with asyncio.timeout(10):  # a guard against a hang, not a timing assertion
            async for message in sub.messages:
                received.append((str(message.topic), message.payload, message.qos))
                if len(received) == 20:
                    break
    assert received == [(f"{topic}/{i}", f"message {i}".encode(), 1) for i in range(20)]


async def test_clients_still_connected_are_disconnected_on_exit() -> None:
    """Leaving the block with a client connected stops the broker cleanly; the client sees the loss."""
    async with EmbeddedBroker() as broker:
        client = _client(broker, "lingering")
        await client.__aenter__()
        await client.subscribe("test/lingering", qos=1)
    with pytest.raises(aiomqtt.MqttError):
        await client.publish("test/lingering", b"x", qos=1, timeout=5)
    await client.__aexit__(None, None, None)
    assert _other_tasks() == set()


async def test_a_port_in_use_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    """Asking for a port that is taken raises EmbeddedBrokerError naming it, and logs no traceback."""
    async with EmbeddedBroker() as broker:
        with pytest.raises(EmbeddedBrokerError, match=f"127.0.0.1:{broker.port}: .*in use"):
            async with EmbeddedBroker(port=broker.port):
                pass
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_amqtt_loggers_are_quiet_while_running_and_restored_after() -> None:
    """amqtt and transitions log at WARNING while the broker runs (unless debug); levels come back."""
    amqtt_log = logging.getLogger("amqtt")
    saved = amqtt_log.level
    amqtt_log.setLevel(logging.DEBUG)
    try:
        async with EmbeddedBroker():
            assert amqtt_log.level == logging.WARNING
            assert logging.getLogger("transitions").getEffectiveLevel() >= logging.WARNING
        assert amqtt_log.level == logging.DEBUG
        async with EmbeddedBroker(debug=True):
            assert amqtt_log.level == logging.DEBUG
    finally:
        amqtt_log.setLevel(saved)


def test_url_needs_a_running_broker() -> None:
    """Before start (or after stop) there is no port to name."""
    with pytest.raises(RuntimeError, match="not running"):
        _ = EmbeddedBroker().url
