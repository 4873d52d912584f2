"""`engine demo`: the whole product on one machine, with nothing installed beyond the package.

An embedded MQTT broker (amqtt), the daemon (the real one: journal, outbox, signed webhooks, HTTP
API), a simulated network publishing a scripted scenario over MQTT (a fiber cut with its alarm
storm, a site power failure, a VoIP quality degradation, the recoveries), and a local webhook
receiver that prints each incident record as it arrives. It ends with a summary. The first line
printed is the dashboard's URL: the incidents appear there live while the story runs.

The demo shortens the incident timers (settle 5 s, hold-down 10 s) so the whole story, recoveries
included, fits in about a minute and a half; everything else runs on the shipped defaults.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import orjson

from engine.core.settings import core_settings_from_data
from engine.service.config import (
    Backoff,
    EngineSettings,
    HttpSettings,
    LoggingSettings,
    MqttSettings,
    ReceiverSettings,
    StoreSettings,
)
from engine.service.daemon import Daemon
from engine.service.logs import configure_logging
from engine.tools.broker import EmbeddedBroker
from engine.tools.receiver import WebhookReceiver
from engine.tools.scenarios import example_topology, load_scenario
from engine.tools.simulator import describe, simulate

DEMO_CORE = {"incidents": {"settle": "5s", "hold_down": "10s", "update_interval": "2s"}}


async def run_demo(
    *,
    rate: float = 1.0,
    scenario: str = "demo",
    http_port: int = 8080,
    verbose: bool = False,
    out: TextIO | None = None,
    log_stream: TextIO | None = None,
) -> int:
    """Run the demo, printing its story to ``out`` (stdout) and the engine's logs to ``log_stream``
    (stderr); 0 when it ran to the end."""
    out = out or sys.stdout
    secret = secrets.token_hex(16)
    if http_port and not _port_free(http_port):
        print(f"port {http_port} is in use: the HTTP API takes a free port instead", file=out)
        http_port = 0

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="engine-demo-") as tmp:
        topology = Path(tmp) / "topology.json"
        topology.write_bytes(orjson.dumps(example_topology()))
        async with (
            EmbeddedBroker() as broker,
            WebhookReceiver(secret=secret, statuses=[500], color=out.isatty(), on_record=None) as receiver,
        ):
            receiver.on_record = lambda rec: say(receiver.render_line(rec))
            settings = EngineSettings(
                core=core_settings_from_data(DEMO_CORE),
                topology=topology,
                mqtt=MqttSettings(url=broker.url, protocol="3.1.1", client_id="soc-engine-demo"),
                store=StoreSettings(path=Path(tmp) / "engine.sqlite"),
                http=HttpSettings(port=http_port),
                receivers=(
                    ReceiverSettings(
                        name="demo-receiver",
                        url=receiver.url,
                        secret=secret,
                        retry=Backoff(initial=0.5, max=2.0),
                    ),
                ),
                logging=demo_logging(verbose),
            )
            configure_logging(settings.logging, stream=log_stream)
            plan = load_scenario(scenario)
            async with Daemon(settings) as daemon:
                await _until(lambda: daemon.ready, timeout=10.0)
                api = f"http://127.0.0.1:{daemon.http.port}" if daemon.http is not None else "(off)"
                if daemon.http is not None:
                    say(f"dashboard: {api}/ui/  (open it: the demo's incidents appear there live)")
                say(f"engine demo: broker {broker.url}, webhook receiver {receiver.url}, HTTP API {api}")
                pace = (
                    f"~{plan.duration / rate:.0f} s at rate {rate:g}" if rate > 0 else "as fast as possible"
                )
                say(f"scenario {plan.name!r}: {plan.description} ({pace})")
                say(f"try: curl -s {api}/incidents | python -m json.tool")
                say("")
                started = time.monotonic()
                stats = await simulate(
                    broker.url,
                    plan,
                    rate=rate,
                    on_step=(lambda s: say("  sim  " + describe(s))) if verbose else None,
                )
                # Wait until every incident the receiver saw has been resolved (hold-down included).
                await _until(lambda: _all_resolved(receiver), timeout=60.0)
                elapsed = time.monotonic() - started
            say("")
            say(f"simulated network: {stats.published} messages in {stats.duration:.1f} s")
            say(f"demo took {elapsed:.0f} s")
            say(receiver.summary())
    return 0


def demo_logging(verbose: bool) -> LoggingSettings:
    """The demo's logs: readable lines (never JSON, even when stdout is a pipe: the demo is read by
    a person, and a JSON object amid its incident lines reads as noise), coloured on a terminal
    only; warnings (the delivery refused on purpose, and its retry) or, verbose, everything."""
    return LoggingSettings(level="info" if verbose else "warning", format="console")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _all_resolved(receiver: WebhookReceiver) -> bool:
    opened = {r.get("incident_id") for r in receiver.records if r.get("event") == "opened"}
    done = {r.get("incident_id") for r in receiver.records if r.get("event") == "resolved"}
    return bool(opened) and opened <= done


async def _until(predicate: object, *, timeout: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


def main(rate: float, scenario: str, http_port: int, verbose: bool) -> int:
    try:
        return asyncio.run(run_demo(rate=rate, scenario=scenario, http_port=http_port, verbose=verbose))
    except KeyboardInterrupt:
        return 130
