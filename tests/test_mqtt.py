"""The MQTT adapter (``engine.adapters.mqtt``) against private Mosquitto brokers: QoS 1 intake with
application-controlled acknowledgement, persistent sessions, reconnection, flow control and
overflow, the publisher's acknowledged and best-effort paths, TLS and credentials."""

from __future__ import annotations

import asyncio
import gc
import shutil
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from engine.adapters import mqtt as mqtt_module
from engine.adapters.mqtt import Inbound, MqttPublisher, MqttSource, PublishError, backoff_delays, tls_context
from engine.errors import ConfigError
from engine.service.config import Backoff, MqttSettings, TlsSettings
from tests.mosquitto import Certificates, Mosquitto, make_certificates

WAIT = 10.0  # seconds any awaited condition may take before the test fails
FAST = Backoff(initial=0.05, max=0.2, factor=2.0, jitter=0.2)


# --- helpers --------------------------------------------------------------------------------------
def mqtt_settings(broker: Mosquitto, prefix: str, **overrides: Any) -> MqttSettings:
    values: dict[str, Any] = {
        "url": broker.url,
        "client_id": "engine-" + prefix.rsplit("/", 1)[-1][-40:],
        "alarm_topics": (f"{prefix}/alarms/#",),
        "probe_topics": (f"{prefix}/probes/#",),
        "reconnect": FAST,
    }
    values.update(overrides)
    return MqttSettings(**values)


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait for ``condition()`` to hold; fail naming ``what`` if it does not within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def take(source: MqttSource, n: int) -> list[Inbound]:
    return [await asyncio.wait_for(source.queue.get(), WAIT) for _ in range(n)]


async def publish_raw(
    broker: Mosquitto, messages: Iterable[tuple[str, bytes]], *, protocol: str = "5", retain: bool = False
) -> None:
    """Publish at QoS 1 with a plain aiomqtt client (each call returns after the PUBACK)."""
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=version) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=retain)


def alarms(prefix: str, n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/alarms/ne-{i}", b"%d" % i) for i in range(start, start + n)]


# --- receiving ------------------------------------------------------------------------------------
async def test_receives_alarms_and_probes_in_order(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """Messages on the alarm and probe filters reach ``queue`` once each and in publish order, with the
    topic, the payload, the source's clock at arrival and the DUP flag clear; other topics do not."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    sent = [
        (f"{topic_prefix}/alarms/ne-{i}", b'{"i": %d}' % i)
        if i % 2
        else (f"{topic_prefix}/probes/p-{i}", b'{"i": %d}' % i)
        for i in range(20)
    ]
    async with MqttSource(settings, clock=lambda: 1234.5) as source:
        await until(source.subscribed.is_set, "subscribed")
        await publish_raw(mosquitto, [(f"{topic_prefix}/other/x", b"not ours"), *sent])
        got = await take(source, len(sent))
        assert source.stats["received"] == len(sent)
    assert [(m.topic, m.payload) for m in got] == sent
    assert {(m.received, m.duplicate) for m in got} == {(1234.5, False)}


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_unacknowledged_messages_are_redelivered(
    mosquitto: Mosquitto, topic_prefix: str, protocol: str
) -> None:
    """Leaving without acknowledging keeps messages in the persistent session: the next connection gets
    exactly the unacknowledged ones again (DUP set), and not those acknowledged before."""
    settings = mqtt_settings(mosquitto, topic_prefix, protocol=protocol)
    sent = alarms(topic_prefix, 5)
    async with MqttSource(settings) as source:
        await until(source.subscribed.is_set, "subscribed")
        await publish_raw(mosquitto, sent, protocol=protocol)
        got = await take(source, 5)
        got[0].ack()
        got[1].ack()
        assert source.stats["acked"] == 2
    async with MqttSource(settings) as again:
        redelivered = await take(again, 3)
        for m in redelivered:
            m.ack()
        await publish_raw(mosquitto, [(f"{topic_prefix}/alarms/marker", b"marker")], protocol=protocol)
        (marker,) = await take(again, 1)
    assert [(m.topic, m.payload) for m in redelivered] == sent[2:]
    assert all(m.duplicate for m in redelivered)
    assert (marker.payload, marker.duplicate) == (b"marker", False)


async def test_acks_made_as_the_source_stops_are_sent_before_it_disconnects(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Acknowledgements go out together at the end of the event loop's turn. When the stop's
    cancellation reaches the connection task earlier in that turn (the stop began first), the
    connection's close sends them before its DISCONNECT: the broker does not send those messages
    again."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    sent = alarms(topic_prefix, 3)
    source = MqttSource(settings)
    await source.__aenter__()
    stopping: asyncio.Future[None] | None = None
    try:
        await until(source.subscribed.is_set, "subscribed")
        await publish_raw(mosquitto, sent)
        got = await take(source, 3)
        stopping = asyncio.ensure_future(source.__aexit__(None, None, None))
        await asyncio.sleep(0)  # the stop has cancelled the connection task; its step runs next
        got[0].ack()
        got[1].ack()
    finally:
        await (stopping if stopping is not None else source.__aexit__(None, None, None))
    assert source.stats["acked"] == 2
    async with MqttSource(settings) as again:
        (redelivered,) = await take(again, 1)
        redelivered.ack()
    assert (redelivered.topic, redelivered.payload, redelivered.duplicate) == (*sent[2], True)


async def test_pause_stops_intake_and_resume_continues(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """While paused, messages stay with the connection (``backlog``), unacknowledged and off ``queue``;
    ``resume()`` hands them over in order."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    sent = alarms(topic_prefix, 3)
    async with MqttSource(settings) as source:
        await until(source.subscribed.is_set, "subscribed")
        source.pause()
        await publish_raw(mosquitto, sent)
        await until(lambda: source.backlog == 3, "three messages held by the paused source")
        assert (source.stats["received"], source.queue.qsize()) == (0, 0)
        source.resume()
        got = await take(source, 3)
    assert [(m.topic, m.payload) for m in got] == sent


async def test_ack_many_acknowledges_each_message_once(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """``ack_many`` is ``ack()`` of each message in one go: a message acknowledged before, by either,
    is not acknowledged again, and the broker keeps none of them."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    sent = alarms(topic_prefix, 3)
    async with MqttSource(settings, direct=True) as source:
        await until(source.subscribed.is_set, "subscribed")
        await publish_raw(mosquitto, sent)
        await until(lambda: source.waiting >= 3, "three messages")
        got = source.drain(10)
        source.ack_many(got[:2])
        got[1].ack()
        source.ack_many(got)
        assert (source.stats["acked"], source.stats["stale_acks"]) == (3, 0)
    redelivered: list[Inbound] = []
    async with MqttSource(settings, direct=True) as again:
        async with asyncio.timeout(WAIT):  # the catch-up marker comes after whatever was kept
            while not again.caught_up.is_set():
                redelivered += again.drain(10)
                await asyncio.sleep(0.01)
    assert redelivered == []


# --- acknowledgement across connections -----------------------------------------------------------
async def test_ack_from_a_dropped_connection_is_a_harmless_noop(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A message received on a connection that later dropped: its ``ack()`` sends nothing and counts a
    stale ack; the broker redelivers it (DUP) and that copy's ack counts. Each ack acts once."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    async with MqttSource(settings) as source:
        await until(source.subscribed.is_set, "subscribed")
        await publish_raw(mosquitto, alarms(topic_prefix, 1))
        (first,) = await take(source, 1)
        mosquitto.restart()
        await until(lambda: source.stats["reconnects"] == 1 and source.subscribed.is_set(), "reconnected")
        first.ack()
        assert (source.stats["stale_acks"], source.stats["acked"]) == (1, 0)
        (again,) = await take(source, 1)
        again.ack()
        again.ack()
        assert (source.stats["stale_acks"], source.stats["acked"]) == (1, 1)
    assert (again.payload, again.duplicate) == (first.payload, True)


# --- reconnection ---------------------------------------------------------------------------------
async def test_broker_restart_mid_stream(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """When the broker restarts mid-stream, source and publisher reconnect with backoff, the source
    resubscribes, and every message arrives; one seen twice is flagged duplicate the second time."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    seen: dict[bytes, int] = {}
    redelivered_flags: list[bool] = []

    async def consume(source: MqttSource, count: int) -> None:
        while len(seen) < count:
            m = await asyncio.wait_for(source.queue.get(), WAIT)
            if m.payload in seen:
                redelivered_flags.append(m.duplicate)
            seen[m.payload] = seen.get(m.payload, 0) + 1
            m.ack()

    async with MqttSource(settings) as source, MqttPublisher(settings) as publisher:
        await until(lambda: source.subscribed.is_set() and publisher.connected.is_set(), "connected")
        for topic, payload in alarms(topic_prefix, 30):
            await publisher.publish(topic, payload)
        await consume(source, 30)
        mosquitto.stop()
        await until(
            lambda: not source.subscribed.is_set() and not publisher.connected.is_set(), "both disconnected"
        )
        mosquitto.start()
        for topic, payload in alarms(topic_prefix, 30, start=30):
            await publisher.publish(topic, payload, timeout=WAIT)  # waits for the reconnect
        await consume(source, 60)
        await until(source.subscribed.is_set, "resubscribed")
        assert source.stats["reconnects"] == 1
        assert publisher.stats["reconnects"] == 1
    assert set(seen) == {b"%d" % i for i in range(60)}
    assert all(redelivered_flags)


async def test_messages_published_while_away_survive_a_broker_restart(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Messages published while the source is offline are queued in its persistent session, survive a
    broker restart (Mosquitto persistence) and arrive in order when the source comes back."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    async with MqttSource(settings) as source:
        await until(source.subscribed.is_set, "subscribed")
    sent = alarms(topic_prefix, 10)
    await publish_raw(mosquitto, sent)
    mosquitto.restart()
    async with MqttSource(settings) as source:
        got = await take(source, 10)
    assert [(m.topic, m.payload, m.duplicate) for m in got] == [(t, p, False) for t, p in sent]


async def test_a_lost_session_is_reported_and_subscriptions_restored(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A broker that comes back without our session (killed, nothing saved) is counted in
    ``sessions_lost``; the source subscribes again, so new messages still arrive."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    async with MqttSource(settings) as source:
        await until(source.subscribed.is_set, "subscribed")
        mosquitto.kill()
        await until(lambda: not source.subscribed.is_set(), "disconnected")
        mosquitto.start()
        await until(lambda: source.subscribed.is_set() and source.stats["reconnects"] == 1, "resubscribed")
        assert source.stats["sessions_lost"] == 1
        await publish_raw(mosquitto, alarms(topic_prefix, 1))
        (got,) = await take(source, 1)
    assert got.payload == b"0"


async def test_a_broker_lost_before_answering_the_catch_up_marker_is_left_at_once(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """The broker dies after our SUBSCRIBE's answer and before the catch-up marker's PUBACK (frozen
    the moment the source is subscribed, then killed). aiomqtt would wait for that PUBACK until its
    own timeout (``OPERATION_TIMEOUT``, 10 s) before the source could reconnect; the source stops
    waiting when the connection is lost, reconnects as soon as the broker is back, and catches up."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    async with MqttSource(settings) as source:
        subscribed = source.subscribed
        set_subscribed = subscribed.set

        def freeze_then_set() -> None:  # called just before the marker is published
            mosquitto.freeze()
            set_subscribed()

        subscribed.set = freeze_then_set  # type: ignore[method-assign]
        await until(subscribed.is_set, "subscribed")
        subscribed.set = set_subscribed  # type: ignore[method-assign]
        assert not source.caught_up.is_set()  # the marker did not come back (nor its PUBACK)
        mosquitto.kill()
        await until(lambda: not subscribed.is_set(), "disconnected")
        mosquitto.start()
        await until(
            lambda: subscribed.is_set() and source.stats["reconnects"] == 1,
            "resubscribed well before the marker's own timeout",
            timeout=mqtt_module.OPERATION_TIMEOUT / 2,
        )
        await until(source.caught_up.is_set, "caught up on the new connection")


# --- flow control ---------------------------------------------------------------------------------
async def test_backpressure_burst_is_received_once_the_consumer_drains(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A burst larger than ``queue_size`` fills the queue and waits at the broker, unacknowledged; once
    the consumer drains and acknowledges, all of it arrives in order and nothing is dropped."""
    settings = mqtt_settings(mosquitto, topic_prefix, queue_size=5, receive_maximum=10)
    sent = alarms(topic_prefix, 100)
    async with MqttSource(settings) as source:
        await until(source.subscribed.is_set, "subscribed")
        await publish_raw(mosquitto, sent)
        await until(source.queue.full, "a full queue")
        assert (source.stats["received"], source.stats["acked"]) == (5, 0)
        got: list[Inbound] = []
        while len(got) < len(sent):
            (m,) = await take(source, 1)
            got.append(m)
            m.ack()
        stats = dict(source.stats)
    assert [(m.topic, m.payload) for m in got] == sent
    assert (stats["received"], stats["acked"], stats["dropped_by_client"]) == (100, 100, 0)


async def test_client_queue_overflow_is_redelivered_not_lost(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """When the broker sends more than aiomqtt's queue holds (v3.1.1 has no Receive Maximum and this
    broker has no inflight cap), the excess is dropped unacknowledged and counted; once everything
    kept is acknowledged the source recycles its connection and the broker delivers the rest."""
    settings = mqtt_settings(mosquitto, topic_prefix, protocol="3.1.1", queue_size=5)
    sent = alarms(topic_prefix, 200)
    seen: set[bytes] = set()
    async with MqttSource(settings, client_queue_size=10) as source:
        await until(source.subscribed.is_set, "subscribed")
        await publish_raw(mosquitto, sent, protocol="3.1.1")
        await until(lambda: source.stats["dropped_by_client"] > 0, "an overflow")
        while len(seen) < len(sent):
            (m,) = await take(source, 1)
            seen.add(m.payload)
            m.ack()
        stats = dict(source.stats)
    assert seen == {p for _, p in sent}
    assert stats["recycles"] >= 1
    assert stats["reconnects"] == stats["recycles"]
    assert stats["stale_acks"] == 0


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_recycle_sends_nothing_acknowledged_again(
    mosquitto: Mosquitto, topic_prefix: str, protocol: str
) -> None:
    """A recycle leaves only once the broker has handled its last PUBACKs (the PINGREQ barrier of a
    stop). Mosquitto reads one packet per connection per turn of its loop, so with a thousand
    PUBACKs still unread on the old connection, the reconnect that follows at once takes the
    session over and the broker sends those messages again. The broker is frozen while the batch
    is acknowledged and the recycle begins (a busy broker, deterministically), thawed well within
    the barrier's wait: each message is taken once."""
    settings = mqtt_settings(mosquitto, topic_prefix, protocol=protocol, receive_maximum=50)
    sent = alarms(topic_prefix, 3000)
    async with MqttSource(settings, direct=True) as source:  # the persistent session
        await until(source.subscribed.is_set, "subscribed")
    await publish_raw(mosquitto, sent, protocol=protocol)
    taken: list[bytes] = []
    async with MqttSource(settings, direct=True, client_queue_size=1000) as source:
        held: list[Inbound] = []  # taken since the inbox overflowed, not yet acknowledged
        while not source.stats["dropped_by_client"]:
            for m in held:
                m.ack()
            await until(lambda: source.waiting > 0, "messages")
            held = source.drain(len(sent))
            taken.extend(m.payload for m in held)
        mosquitto.freeze()
        try:
            await asyncio.sleep(0.05)  # what the socket still held reaches the inbox
            more = source.drain(len(sent))
            taken.extend(m.payload for m in more)
            held += more
            for m in held:  # the last ack recycles the connection: a thousand PUBACKs at once
                m.ack()
            assert source.stats["recycles"] == 1
            await asyncio.sleep(0.1)
        finally:
            mosquitto.thaw()
        while len(set(taken)) < len(sent):
            await until(lambda: source.waiting > 0, "messages")
            batch = source.drain(len(sent))
            taken.extend(m.payload for m in batch)
            for m in batch:
                m.ack()
        stats = dict(source.stats)
    again = sorted(p for p, n in Counter(taken).items() if n > 1)
    assert (len(again), stats["stale_acks"]) == (0, 0)


# --- publishing -----------------------------------------------------------------------------------
async def test_publish_returns_after_the_broker_acknowledged(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """``publish()`` waits for the PUBACK: against a frozen broker it raises ``PublishError`` at its
    timeout; the message was sent, so after the broker resumes it is delivered (at least once)."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    topic = f"{topic_prefix}/alarms/ne-1"
    async with MqttSource(settings) as source, MqttPublisher(settings) as publisher:
        await until(lambda: source.subscribed.is_set() and publisher.connected.is_set(), "connected")
        await publisher.publish(topic, b"one")
        mosquitto.freeze()
        try:
            with pytest.raises(PublishError, match="not acknowledged within"):
                await publisher.publish(topic, b"two", timeout=0.3)
        finally:
            mosquitto.thaw()
        await publisher.publish(topic, b"three")
        got = await take(source, 3)
        assert (publisher.stats["published"], publisher.stats["publish_failures"]) == (2, 1)
    assert [m.payload for m in got] == [b"one", b"two", b"three"]


async def test_publish_while_the_broker_is_down(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """With the broker down ``publish()`` raises ``PublishError`` once its timeout passes without a
    connection; given a longer timeout it waits for the reconnect and succeeds."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    topic = f"{topic_prefix}/alarms/ne-1"
    async with MqttSource(settings) as source, MqttPublisher(settings) as publisher:
        await until(lambda: source.subscribed.is_set() and publisher.connected.is_set(), "connected")
        mosquitto.stop()
        await until(lambda: not publisher.connected.is_set(), "disconnected")
        with pytest.raises(PublishError, match="not connected within"):
            await publisher.publish(topic, b"lost", timeout=0.2)
        mosquitto.start()
        await publisher.publish(topic, b"kept", timeout=WAIT)
        (got,) = await take(source, 1)
        assert publisher.stats["reconnects"] == 1
        assert publisher.stats["publish_failures"] == 1
    assert got.payload == b"kept"


async def test_publish_nowait_is_bounded_and_delivered_later(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """``publish_nowait`` accepts up to ``buffer_size`` messages while disconnected and refuses (and
    counts) the rest; once connected the buffer is published at QoS 1, in order."""
    settings = mqtt_settings(mosquitto, topic_prefix)
    sent = alarms(topic_prefix, 5)
    async with MqttSource(settings) as source:  # creates the persistent session
        await until(source.subscribed.is_set, "subscribed")
    mosquitto.stop()
    async with MqttPublisher(settings, buffer_size=3) as publisher:
        accepted = [publisher.publish_nowait(t, p) for t, p in sent]
        assert accepted == [True, True, True, False, False]
        assert (publisher.stats["buffered"], publisher.stats["dropped"], publisher.buffered) == (3, 2, 3)
        await until(lambda: publisher.stats["connect_failures"] >= 1, "a failed connect")
        mosquitto.start()
        assert await publisher.flush(WAIT)
        assert publisher.buffered == 0
    async with MqttSource(settings) as source:
        got = await take(source, 3)
    assert [(m.topic, m.payload) for m in got] == sent[:3]


# --- credentials and TLS --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("userinfo", "connects"),
    [("engine:s3cret@", True), ("engine:wrong@", False), ("", False)],
    ids=["right-password", "wrong-password", "anonymous"],
)
async def test_credentials(
    make_mosquitto: Callable[..., Mosquitto], topic_prefix: str, userinfo: str, connects: bool
) -> None:
    """User and password from the URL are sent; a refused CONNACK is a connect failure, retried with
    backoff, and the source never reports itself subscribed."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    broker = make_mosquitto(users={"engine": "s3cret"})
    settings = mqtt_settings(broker, topic_prefix, url=f"mqtt://{userinfo}127.0.0.1:{broker.port}")
    async with MqttSource(settings) as source:
        if connects:
            await until(source.subscribed.is_set, "subscribed")
        else:
            await until(lambda: source.stats["connect_failures"] >= 2, "two refused connects")
            assert not source.subscribed.is_set()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    return make_certificates(tmp_path_factory.mktemp("certs"))


def test_tls_context_options(certificates: Certificates, tmp_path: Path) -> None:
    """The SSL context: verified with system CAs by default, TLS 1.2 at least; ``ca_file`` is loaded;
    only its CAs are trusted; ``insecure`` turns verification off; a client certificate loads with its key
    or from one PEM."""
    default = tls_context(None)
    assert (default.verify_mode, default.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert default.minimum_version == ssl.TLSVersion.TLSv1_2

    with_ca = tls_context(TlsSettings(ca_file=certificates.ca))
    assert [c["subject"] for c in with_ca.get_ca_certs()] == [((("commonName", "test-ca"),),)]

    insecure = tls_context(TlsSettings(insecure=True))
    assert (insecure.verify_mode, insecure.check_hostname) == (ssl.CERT_NONE, False)

    tls_context(TlsSettings(cert_file=certificates.client_cert, key_file=certificates.client_key))
    combined = tmp_path / "client.pem"
    combined.write_text(certificates.client_cert.read_text() + certificates.client_key.read_text())
    tls_context(TlsSettings(cert_file=combined))


@pytest.mark.parametrize(
    ("field", "location", "reason"),
    [
        ({"key_file": "client.key"}, "key_file", "needs cert_file"),
        ({"ca_file": "missing.pem"}, "ca_file", "cannot load"),
        ({"cert_file": "client.crt"}, "cert_file", "cannot load"),  # no key, and not in the PEM
        ({"cert_file": "client.crt", "key_file": "server.key"}, "cert_file", "cannot load"),  # wrong key
    ],
    ids=["key-without-cert", "missing-ca", "cert-without-key", "mismatched-key"],
)
def test_tls_context_refuses_bad_files(
    certificates: Certificates, field: dict[str, str], location: str, reason: str
) -> None:
    """Unusable TLS files are a ``ConfigError`` naming the ``mqtt.tls`` setting."""
    folder = certificates.ca.parent
    tls = TlsSettings(**{k: folder / v for k, v in field.items()})
    with pytest.raises(ConfigError, match=reason) as info:
        tls_context(tls)
    assert (info.value.source, info.value.location) == ("mqtt.tls", location)


@pytest.mark.parametrize(
    ("require_certificate", "tls", "connects"),
    [
        (False, {"ca_file": "ca"}, True),
        (False, {}, False),  # system CAs do not know our test CA
        (False, {"insecure": True}, True),
        (True, {"ca_file": "ca", "cert_file": "client_cert", "key_file": "client_key"}, True),
        (True, {"ca_file": "ca"}, False),  # the broker wants a client certificate
    ],
    ids=["ca-file", "unknown-ca", "insecure", "client-certificate", "client-certificate-missing"],
)
async def test_tls_connections(
    make_mosquitto: Callable[..., Mosquitto],
    certificates: Certificates,
    topic_prefix: str,
    *,
    require_certificate: bool,
    tls: dict[str, Any],
    connects: bool,
) -> None:
    """Over TLS the source verifies the broker against ``ca_file`` (or not, when ``insecure``) and
    presents a client certificate when asked; a failed handshake is a connect failure, retried."""
    values = {k: (getattr(certificates, v) if isinstance(v, str) else v) for k, v in tls.items()}
    broker = make_mosquitto(tls=certificates, require_certificate=require_certificate)
    settings = mqtt_settings(broker, topic_prefix, tls=TlsSettings(**values))
    assert settings.uses_tls
    async with MqttSource(settings) as source, MqttPublisher(settings) as publisher:
        if not connects:
            await until(lambda: source.stats["connect_failures"] >= 2, "two failed connects")
            assert not source.subscribed.is_set()
            return
        await until(lambda: source.subscribed.is_set() and publisher.connected.is_set(), "connected")
        await publisher.publish(f"{topic_prefix}/alarms/ne-1", b"over tls")
        (got,) = await take(source, 1)
    assert got.payload == b"over tls"


# --- pure parts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rng", "expected"),
    [
        (0.5, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),  # no jitter: doubles up to max
        (0.0, [0.8, 1.6, 3.2, 6.4, 8.0, 8.0]),  # -20 %
        (1.0, [1.2, 2.4, 4.8, 9.6, 12.0, 12.0]),  # +20 %
    ],
    ids=["middle", "low", "high"],
)
def test_backoff_delays(rng: float, expected: list[float]) -> None:
    """Reconnect delays start at ``initial``, grow by ``factor`` up to ``max``, each within ±``jitter``."""
    delays = backoff_delays(Backoff(initial=1.0, max=10.0, factor=2.0, jitter=0.2), rng=lambda: rng)
    assert [round(next(delays), 6) for _ in expected] == expected


def test_constructor_arguments_are_checked() -> None:
    """Sizes below one are refused when the object is built, with the argument named."""
    settings = MqttSettings()
    with pytest.raises(ValueError, match="client_queue_size"):
        MqttSource(settings, client_queue_size=0)
    with pytest.raises(ValueError, match="buffer_size"):
        MqttPublisher(settings, buffer_size=0)


async def test_stopping_ends_a_connection_task_that_swallows_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11's `asyncio.wait_for` (which aiomqtt waits on CONNACK with) can return a result
    instead of raising when it is cancelled as the future completes: the reconnect loop then runs
    on and leaving the context manager hung for ever (seen once in CI, in the TLS test below). A
    task that swallows two cancellations stands in for it: `_stop` cancels again every STOP_RETRY
    seconds and returns once the task has ended."""
    monkeypatch.setattr(mqtt_module, "STOP_RETRY", 0.05)
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed < 2:
                    swallowed += 1
                    continue
                raise

    source = MqttSource(MqttSettings(reconnect=FAST))
    monkeypatch.setattr(source, "_run", stubborn)
    async with asyncio.timeout(WAIT):
        async with source:
            await asyncio.sleep(0.02)
    assert swallowed == 2
    assert source._task is None


async def test_a_broker_restart_leaves_no_unretrieved_future_exception(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """After the broker restarts under a source and a publisher, aiomqtt's futures of the lost
    connection hold an `MqttCodeError`; once the connections are gone and collected, asyncio must
    not report "Future exception was never retrieved" (it did on every shutdown after a restart)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        settings = mqtt_settings(mosquitto, topic_prefix)
        async with MqttSource(settings) as source, MqttPublisher(settings) as publisher:
            await until(lambda: source.subscribed.is_set() and publisher.connected.is_set(), "connected")
            mosquitto.restart()
            await until(lambda: source.stats["reconnects"] >= 1, "the source back")
            await until(lambda: publisher.stats["reconnects"] >= 1, "the publisher back")
            await until(source.subscribed.is_set, "resubscribed")
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    assert [c.get("message") for c in reported] == []


# --- framing --------------------------------------------------------------------------------------
def _publish_packet(topic: str, payload: bytes, mid: int, *, v5: bool, qos: int = 1) -> bytes:
    """An MQTT PUBLISH packet as a broker sends it (v5 with a 3-byte property block)."""
    body = len(topic).to_bytes(2, "big") + topic.encode()
    if qos:
        body += mid.to_bytes(2, "big")
    if v5:
        body += b"\x02\x01\x00"  # properties, 2 bytes: payload format indicator 0
    body += payload
    length, rest = b"", len(body)
    while True:
        byte, rest = rest & 0x7F, rest >> 7
        length += bytes([byte | (0x80 if rest else 0)])
        if not rest:
            break
    return bytes([0x30 | (qos << 1)]) + length + body


def _socket(chunks: list[bytes]) -> Callable[[int], bytes]:
    """A non-blocking socket's ``recv`` that returns ``chunks`` in turn, then has nothing yet."""

    def recv(n: int) -> bytes:
        if not chunks:
            raise BlockingIOError
        return chunks.pop(0)

    return recv


@pytest.mark.parametrize("v5", [True, False])
def test_the_read_buffer_frames_whole_publish_packets_only(v5: bool) -> None:
    """``take_publishes`` decodes the PUBLISH packets lying whole at the front of the buffer, reading
    the socket when the buffer is empty or ends inside one (a 70 KB packet across two reads), and
    leaves anything else where it is for paho: another packet type, QoS 2; with nothing more on the
    socket it says it is starved and keeps the start of a cut packet."""
    sizes = [0, 1, 120, 200, 16_500, 70_000]  # 1-, 2- and 3-byte remaining lengths
    packets = [_publish_packet(f"t/{i}", bytes([i]) * n, i + 1, v5=v5) for i, n in enumerate(sizes)]
    qos2 = _publish_packet("t/q2", b"x", 9, v5=v5, qos=2)
    stream = b"".join(packets) + b"\xd0\x00" + qos2
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    buffer = mqtt_module._BufferedRecv(_socket(chunks))
    expected = [(f"t/{i}", bytes([i]) * n, 1, i + 1, False, 5.0) for i, n in enumerate(sizes)]
    assert buffer.take_publishes(v5, 2, 5.0) == expected[:2]  # at most ``limit``
    assert buffer.take_publishes(v5, 100, 5.0) == expected[2:]
    assert not buffer.starved  # a PINGRESP is next: paho's
    assert buffer(1) == b"\xd0"
    assert buffer.take_publishes(v5, 100, 5.0) == []  # the rest of a packet paho is reading
    assert buffer(1) == b"\x00"
    assert (buffer.take_publishes(v5, 100, 5.0), buffer.starved) == ([], False)  # QoS 2: paho's
    assert buffer(buffer.buffered) == qos2
    assert (buffer.take_publishes(v5, 100, 5.0), buffer.starved) == ([], True)  # nothing more yet
    cut = _publish_packet("t/cut", b"y" * 300, 3, v5=v5)
    chunks += [cut[:1], cut[1:200]]
    assert (buffer.take_publishes(v5, 100, 6.0), buffer.starved) == ([], True)
    assert buffer.buffered == 200  # the packet's start, kept
    chunks.append(cut[200:])
    assert buffer.take_publishes(v5, 100, 7.0) == [("t/cut", b"y" * 300, 1, 3, False, 7.0)]


@pytest.mark.parametrize("v5", [True, False])
def test_a_large_publish_cut_by_a_read_is_left_to_paho(v5: bool) -> None:
    """A PUBLISH longer than ``LARGE_PUBLISH`` that a read cuts is not gathered by ``take_publishes``
    (joining each read to the packet's start copied it again per read: quadratic, 7 s of the event
    loop for 32 MiB): it stays for paho, whose reads through the buffer get every byte in order."""
    size = 4 * mqtt_module.LARGE_PUBLISH
    big = _publish_packet("t/big", b"z" * size, 5, v5=v5)
    after = _publish_packet("t/after", b"a", 6, v5=v5)
    stream = big + after
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    buffer = mqtt_module._BufferedRecv(_socket(chunks))
    assert (buffer.take_publishes(v5, 100, 1.0), buffer.starved) == ([], False)
    assert buffer.buffered <= 65536  # one read, not the packet gathered
    read = b""
    while len(read) < len(big):  # paho's _packet_read: through the buffer, as much as it is given
        read += buffer(len(big) - len(read))
    assert read == big
    assert buffer.take_publishes(v5, 100, 2.0) == [("t/after", b"a", 1, 6, False, 2.0)]


@pytest.mark.parametrize("v5", [True, False])
@pytest.mark.parametrize(
    "broken",
    [
        b"\x32\x01\x00",  # QoS 1, 1 byte left: the topic's length is cut
        b"\x32\x03\x00\x07a",  # a 7-byte topic in a 3-byte packet
        b"\x32\x04\x00\x01a\x00",  # QoS 1: the packet id is cut
        b"\x30\x04\x00\x01a\x09",  # v5: 9 bytes of properties in 0 (v3.1.1: payload b"\x09")
        b"\x32\xff\xff\xff\xff\x01",  # a remaining length of more than 4 bytes
    ],
)
def test_a_broken_publish_is_left_to_paho_and_never_read_into_the_next_packet(
    v5: bool, broken: bytes
) -> None:
    """A PUBLISH whose topic, packet id or properties would run past its own length is not taken
    (paho then reads it and reports it malformed): our decoder never takes bytes of the packet after
    it, such as a packet id that the engine would then acknowledge for another message."""
    after = _publish_packet("t/next", b"payload", 7, v5=v5)
    buffer = mqtt_module._BufferedRecv(_socket([b"\xd0\x00" + broken + after]))  # a PINGRESP first
    assert buffer(1) == b"\xd0"  # paho reads the PINGRESP: the stream comes in
    assert buffer(1) == b"\x00"
    got = buffer.take_publishes(v5, 100, 1.0)
    if not v5 and broken == b"\x30\x04\x00\x01a\x09":  # well formed in v3.1.1
        assert got == [("a", b"\x09", 0, 0, False, 1.0), ("t/next", b"payload", 1, 7, False, 1.0)]
    else:
        assert (got, buffer.starved) == ([], False)
        assert buffer.buffered == len(broken) + len(after)  # all left for paho, in order
        assert mqtt_module._decode_publish(broken[0], broken, 2, len(broken), v5) is None


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_queued_burst_of_mixed_sizes_arrives_intact_and_in_order(
    mosquitto: Mosquitto, topic_prefix: str, protocol: str
) -> None:
    """Messages of 1 byte to 60 KB queued while the consumer was away arrive in one burst, many per
    socket read, PUBLISH packets straddling the read buffer's end: every payload byte for byte, in
    order, once, each acknowledged."""
    settings = mqtt_settings(mosquitto, topic_prefix, protocol=protocol, receive_maximum=1000)
    sizes = [1, 150, 127, 128, 16_383, 16_384, 60_000, 3, 40_000, 65_000 - 300]
    sent = [
        (f"{topic_prefix}/probes/p-{i}", bytes([65 + i % 26]) * sizes[i % len(sizes)]) for i in range(300)
    ]
    async with MqttSource(settings, direct=True) as source:  # the persistent session
        await until(source.subscribed.is_set, "subscribed")
    await publish_raw(mosquitto, sent, protocol=protocol)
    got: list[Inbound] = []
    async with MqttSource(settings, direct=True) as source:
        while len(got) < len(sent):
            await until(lambda: source.waiting > 0 or len(got) >= len(sent), "messages")
            for m in source.drain(100):
                got.append(m)
                m.ack()
        await until(lambda: source.stats["acked"] == len(sent), "every acknowledgement")
        stats = dict(source.stats)
    assert [(m.topic, m.payload) for m in got] == sent
    assert (stats["received"], stats["dropped_by_client"], stats["stale_acks"]) == (len(sent), 0, 0)
