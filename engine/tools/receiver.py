"""A local webhook receiver that prints incidents as they arrive: the other end of ``engine demo``.

``async with WebhookReceiver(secret=...) as rx:`` serves HTTP on 127.0.0.1 and a free port (or the
one given); ``rx.url`` is where the engine should POST. Each request is handled in this order:

1. a scripted status (``statuses``, e.g. ``[500, 500]``: fail the first two requests) is answered
   without looking further, to show the sender's retries;
2. with a ``secret``, the signature is verified: ``X-SOC-Timestamp`` (epoch seconds) and
   ``X-SOC-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>``, compared
   in constant time, the timestamp within ``tolerance`` (300 s) of now; failures answer 401;
3. the body must be JSON (any JSON is kept; the generic incident record is rendered best), else 400;
4. a repeated ``Idempotency-Key`` (``<incident_id>:<version>``; derived from the record when the
   header is absent) is counted as a duplicate and answered 200 without being kept again;
5. the record is appended to ``records``, ``on_record(record)`` is called, and 200 is answered.

``render_line(record)`` formats one terminal line per record; ``summary()`` sums up what arrived.
``GET`` on any path returns the counters as JSON. ``python -m engine.tools.receiver`` runs one in
the foreground, printing a line per record and the summary on Ctrl-C (see ``main``).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from engine.adapters import formats
from engine.model.timeutil import parse_time
from engine.service.cliargs import Parser, int_range, port
from engine.service.terminal import printable

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookReceiver",
    "main",
    "render_line",
    "serve",
    "sign",
    "verify_signature",
]

TIMESTAMP_HEADER = "X-SOC-Timestamp"
SIGNATURE_HEADER = "X-SOC-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300.0
TIER_ORDER = ("platinum", "gold", "silver", "bronze")

# ----------------------------------------------------------------------------------- signatures


def sign(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The signature headers for ``body`` sent at ``timestamp`` (what the engine's sender adds)."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: formats.sign(secret, timestamp, body)}


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str | None:
    """``None`` when the headers sign ``body`` with ``secret``; otherwise why not, in a few words."""
    if not timestamp or not signature:
        missing = TIMESTAMP_HEADER if not timestamp else SIGNATURE_HEADER
        return f"missing {missing} header"
    try:
        sent = float(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} is not epoch seconds: {timestamp[:40]!r}"
    if not math.isfinite(sent):
        return f"{TIMESTAMP_HEADER} is not epoch seconds: {timestamp[:40]!r}"
    if abs(now - sent) > tolerance:
        when = f"{now - sent:.0f} s old" if sent < now else f"{sent - now:.0f} s in the future"
        return f"{TIMESTAMP_HEADER} is {when} (tolerance {tolerance:g} s)"
    scheme, _, given = signature.partition("=")
    if scheme != "sha256" or not given:
        return f"{SIGNATURE_HEADER} must be sha256=<hex>"
    expected = formats.sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), f"sha256={given.strip().lower()}".encode()):
        return "signature does not match"
    return None


# ------------------------------------------------------------------------------------ rendering

_COLORS = {1: "\033[1;31m", 2: "\033[31m", 3: "\033[33m", "resolved": "\033[32m"}
_RESET = "\033[0m"


def _clock_time(value: object) -> str:
    try:
        t = parse_time(value)
    except ValueError:
        return "--:--:--"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M:%S")


def _short_id(incident_id: object) -> str:
    text = str(incident_id)
    return text[:8] + "…" if len(text) > 8 else text


def _customers(record: Mapping[str, Any]) -> int:
    impact = record.get("impact") or {}
    customers = impact.get("customers") or {}
    total = customers.get("total", 0)
    return total if isinstance(total, int) else 0


def _customer_text(record: Mapping[str, Any]) -> str:
    customers = (record.get("impact") or {}).get("customers") or {}
    total = customers.get("total", 0)
    if not total:
        return "no customers"
    by_tier: Mapping[str, Any] = customers.get("by_tier") or {}
    order = [t for t in TIER_ORDER if t in by_tier] + sorted(set(by_tier) - set(TIER_ORDER))
    tiers = ", ".join(f"{t} {by_tier[t]}" for t in order)
    noun = "customer" if total == 1 else "customers"
    return f"{total} {noun} ({tiers})" if tiers else f"{total} {noun}"


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _changes(record: Mapping[str, Any], previous: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    if record.get("priority") != previous.get("priority"):
        out.append(f"priority P{previous.get('priority')}→P{record.get('priority')}")
    if record.get("state") != previous.get("state"):
        out.append(f"state {previous.get('state')}→{record.get('state')}")
    before = (previous.get("root_cause") or {}).get("severity")
    after = (record.get("root_cause") or {}).get("severity")
    if before != after:
        out.append(f"severity {before}→{after}")
    if _customers(record) != _customers(previous):
        out.append(f"customers {_customers(previous)}→{_customers(record)}")
    return out


def render_line(record: Any, previous: Mapping[str, Any] | None = None, *, color: bool = False) -> str:
    """One readable line for a terminal. ``previous``: the incident's last record, to show changes.

    ``00:00:31  OPENED   P1 91.3  inc-8d44…  outage    agg-3 lossOfSignal  1000 customers
    (platinum 20, gold 80, silver 300, bronze 600)  50 suppressed`` (times in UTC, one line).
    Anything that is not an incident record is shown as compact JSON.
    """
    if not isinstance(record, Mapping) or "incident_id" not in record or "event" not in record:
        text = printable(orjson.dumps(record).decode())
        return f"--:--:--  RECEIVED {text[:160]}{'…' if len(text) > 160 else ''}"
    event = str(record["event"])
    priority = record.get("priority")
    score = record.get("score")
    score_text = f"{score:.1f}" if isinstance(score, int | float) else "-"
    root = record.get("root_cause") or {}
    head = printable(f"{event.upper():<8} P{priority} {score_text:>4}")
    if color:
        key = "resolved" if event == "resolved" else priority
        if key in _COLORS:
            head = f"{_COLORS[key]}{head}{_RESET}"
    parts = [
        _clock_time(record.get("time")),
        head,
        _short_id(record["incident_id"]),
        f"{record.get('state', '-')!s:<8}  {root.get('ne_id', '?')} {root.get('probable_cause', '?')}",
        _customer_text(record),
        f"{len(record.get('suppressed') or ())} suppressed",
    ]
    if event == "updated" and previous is not None:
        before = len(previous.get("suppressed") or ())
        if before != len(record.get("suppressed") or ()):
            parts[-1] += f" (was {before})"
    if event == "resolved":
        if record.get("resolution") == "merged":
            parts.append(f"merged into {_short_id(record.get('merged_into'))}")
        else:
            try:
                lasted = parse_time(record["resolved_at"]) - parse_time(record["opened_at"])
            except (KeyError, ValueError):
                parts.append(str(record.get("resolution", "resolved")))
            else:
                parts.append(f"{record.get('resolution', 'resolved')}, open {_duration(lasted)}")
    elif event == "updated" and previous is not None:
        parts += _changes(record, previous)
    acked = record.get("acknowledged")
    if isinstance(acked, Mapping) and (previous is None or previous.get("acknowledged") != acked):
        note = acked.get("note")
        parts.append(f"acknowledged by {acked.get('by')}" + (f" ({note})" if note else ""))
    # Everything but the (already escaped, maybe coloured) head comes from the record: escape it.
    return "  ".join([parts[0], parts[1], *(printable(p) for p in parts[2:])])


# ------------------------------------------------------------------------------------- receiver


@dataclass
class Counts:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    bad_signatures: int = 0
    malformed: int = 0
    failed_on_purpose: int = 0


def _idempotency_key(request: web.Request, record: Any) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key:
        return key
    if isinstance(record, Mapping) and "incident_id" in record and "version" in record:
        return f"{record['incident_id']}:{record['version']}"
    return None


class WebhookReceiver:
    """An aiohttp server that keeps, counts and prints what is POSTed to it (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        secret: str | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        statuses: Iterable[int] = (),
        on_record: Callable[[Any], None] | None = None,
        color: bool = False,
        max_body: int = 1 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        scripted = list(statuses)
        bad = [s for s in scripted if not 100 <= s <= 599]
        if bad:
            raise ValueError(f"statuses must be HTTP status codes, got {bad[0]}")
        self.host = host
        self._requested_port = port
        self.secret = secret
        self.tolerance = tolerance
        self.on_record = on_record
        self.color = color
        self.max_body = max_body
        self._clock = clock
        self._statuses = deque(scripted)
        self.records: list[Any] = []
        self.counts = Counts()
        self.bad_signature_reasons: list[str] = []
        self._seen: set[str] = set()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the webhook receiver is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/incidents"

    async def __aenter__(self) -> WebhookReceiver:
        if self._runner is not None:
            raise RuntimeError("the webhook receiver is already running")
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("POST", "/{tail:.*}", self._post)
        app.router.add_route("GET", "/{tail:.*}", self._get)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner, self._port = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def wait_until(self, predicate: Callable[[WebhookReceiver], bool]) -> None:
        """Return once ``predicate(self)`` holds; it is checked after every request."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def wait_records(self, count: int) -> None:
        """Return once ``count`` records have been kept."""
        await self.wait_until(lambda rx: len(rx.records) >= count)

    # -- requests

    async def _post(self, request: web.Request) -> web.Response:
        try:
            return await self._handle(request)
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        self.counts.requests += 1
        body = await request.read()
        success = 200
        if self._statuses:
            scripted = self._statuses.popleft()
            if not 200 <= scripted < 300:
                self.counts.failed_on_purpose += 1
                return _json(scripted, {"status": "failed on purpose", "code": scripted})
            success = scripted
        if self.secret is not None:
            reason = verify_signature(
                self.secret,
                body,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                now=self._clock(),
                tolerance=self.tolerance,
            )
            if reason is not None:
                self.counts.bad_signatures += 1
                self.bad_signature_reasons.append(reason)
                return _json(401, {"status": "bad signature", "reason": reason})
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            self.counts.malformed += 1
            return _json(400, {"status": "malformed JSON", "reason": str(exc)})
        key = _idempotency_key(request, record)
        if key is not None:
            if key in self._seen:
                self.counts.duplicates += 1
                return _json(success, {"status": "duplicate", "key": key})
            self._seen.add(key)
        self.counts.accepted += 1
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)
        return _json(success, {"status": "accepted", "key": key})

    async def _get(self, request: web.Request) -> web.Response:
        return _json(200, {**vars(self.counts), "incidents": len(self._latest())})

    # -- presentation

    def _latest(self) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for r in self.records:
            if isinstance(r, Mapping) and "incident_id" in r:
                out[str(r["incident_id"])] = r
        return out

    def previous(self, record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The kept record of the same incident just before ``record`` (by version), if any."""
        version = record.get("version")
        best: Mapping[str, Any] | None = None
        for r in self.records:
            if r is record or not isinstance(r, Mapping) or r.get("incident_id") != record.get("incident_id"):
                continue
            v = r.get("version")
            if not isinstance(v, int) or (isinstance(version, int) and v >= version):
                continue
            if best is None or v > best.get("version", -1):
                best = r
        return best

    def render_line(self, record: Any) -> str:
        """``render_line`` for one record, showing what changed since the incident's previous record."""
        previous = self.previous(record) if isinstance(record, Mapping) else None
        return render_line(record, previous, color=self.color)

    def summary(self) -> str:
        """A few lines: incidents by event and by priority, duplicates, bad signatures."""
        events: Counter[str] = Counter()
        best: dict[str, int] = {}
        for r in self.records:
            if not isinstance(r, Mapping) or "incident_id" not in r:
                continue
            events[str(r.get("event"))] += 1
            p = r.get("priority")
            if isinstance(p, int):
                inc = str(r["incident_id"])
                best[inc] = min(p, best.get(inc, p))
        incidents = len(
            {str(r["incident_id"]) for r in self.records if isinstance(r, Mapping) and "incident_id" in r}
        )
        by_priority = Counter(best.values())
        c = self.counts
        lines = [
            f"incidents: {incidents} (opened {events['opened']}, updated {events['updated']}, "
            f"resolved {events['resolved']})",
            "by priority: " + (", ".join(f"P{p} {n}" for p, n in sorted(by_priority.items())) or "none"),
            f"requests: {c.requests}, kept {c.accepted}, duplicates {c.duplicates}, "
            f"bad signatures {c.bad_signatures}, malformed {c.malformed}, "
            f"failed on purpose {c.failed_on_purpose}",
        ]
        other = sum(1 for r in self.records if not isinstance(r, Mapping) or "incident_id" not in r)
        if other:
            lines.insert(1, f"other records: {other}")
        return "\n".join(lines)


def _json(status: int, body: Mapping[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


# ---------------------------------------------------------------------------------- command line


async def serve(receiver: WebhookReceiver, *, ready: Callable[[str], None] | None = None) -> None:
    """Run ``receiver`` until cancelled; ``ready(url)`` is called once it listens."""
    async with receiver:
        if ready is not None:
            ready(receiver.url)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """``[--host H] [--port P] [--secret S] [--fail-first N]``: print incidents until Ctrl-C."""
    parser = Parser(
        prog="python -m engine.tools.receiver",
        description="A webhook receiver that prints incident records.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port, default=8099, help="0: any free port (default 8099)")
    parser.add_argument("--secret", help="verify X-SOC-Signature with this HMAC key")
    parser.add_argument(
        "--fail-first", type=int_range(0, 1_000_000), default=0, metavar="N", help="answer 500 to N requests"
    )
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(
        host=args.host,
        port=args.port,
        secret=args.secret,
        statuses=[500] * args.fail_first,
        color=sys.stdout.isatty(),
    )
    receiver.on_record = lambda record: print(receiver.render_line(record), flush=True)
    try:
        asyncio.run(serve(receiver, ready=lambda url: print(f"listening on {url}", flush=True)))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(receiver.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
