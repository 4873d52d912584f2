"""The HTTP API: queries, acknowledgement, ingestion, health, metrics, and the route sets of other APIs.

A thin adapter, like the MQTT one: it parses requests, calls the daemon through the ``CoreView``
protocol and turns the answers into JSON. The core's state (elements, customers, reports,
explanations, what-if) is read through ``CoreView.query``, the core's read-only query interface
(``engine.core.query``), synchronously on the event loop: between two items of the daemon's core
task, so no lock is needed. It holds no state of its own and never validates an
alarm or a sample (the core does, and dead-letters what it refuses); it only checks what is HTTP's
business: the query string, the size and syntax of the body, the token.

``HttpApi`` is an async context manager: entering starts an aiohttp ``AppRunner`` and ``TCPSite``
on ``settings.host:settings.port`` (port 0: any free port, read back from ``.port``); leaving stops
it. aiohttp's own access log and signal handling are off: requests are logged through structlog at
debug, and signals belong to the daemon.

Every error is ``{"error": "...", "detail": ...}`` with its status; an unexpected exception is
logged with its traceback and answered with a plain 500, never with the traceback.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, runtime_checkable

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from engine.adapters.dashboard import PREFIX as DASHBOARD_PREFIX
from engine.adapters.dashboard import Dashboard
from engine.adapters.dashboard.app import HistorySource
from engine.adapters.dashboard.security import LoginLimiter, minutes
from engine.adapters.store import known_history
from engine.core import reports
from engine.core.explain import NotFound
from engine.core.whatif import what_if
from engine.errors import ConfigError, EngineError
from engine.model.messages import payload_bytes
from engine.model.timeutil import parse_time
from engine.model.wording import json_type_name
from engine.service.config import HttpSettings
from engine.service.metrics import Metrics

if TYPE_CHECKING:
    from engine.core.query import CoreQuery

__all__ = ["CoreView", "DeadLetterHolder", "HttpApi", "Overloaded", "RouteSet"]

log = structlog.get_logger("engine.http")

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})  # answered without the bearer token
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})
STATES: Final = ("outage", "degraded", "at_risk")
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_ACK_BY: Final = 256
MAX_ACK_NOTE: Final = 4096
SHUTDOWN_TIMEOUT: Final = 5.0  # seconds for open requests to finish when the API stops

_EPOCH = re.compile(r"^\d+(\.\d+)?$")


class Overloaded(EngineError):
    """The intake queue is full: nothing was queued; the sender should retry after ``retry_after`` s."""

    def __init__(self, message: str = "intake queue is full", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CoreView(Protocol):
    """What the HTTP API needs from the daemon. Implemented by the daemon; faked in tests."""

    @property
    def ready(self) -> bool: ...

    def readiness(self) -> dict[str, bool]: ...

    def degraded(self) -> list[dict[str, Any]]: ...

    def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]: ...

    @property
    def query(self) -> CoreQuery | None:
        """The core's read-only query interface (``Pipeline.query``; a reload replaces it: ask
        for it per request). None: a core that does not expose its state (a test double); the
        routes that read it answer 501."""
        ...

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None: ...

    async def acknowledge(self, incident_id: str, *, by: str, note: str | None) -> dict[str, Any] | None: ...

    async def reload(self) -> tuple[bool, str]: ...

    def alarm_topic(self) -> str: ...

    def probe_topic(self) -> str: ...


@runtime_checkable
class DeadLetterHolder(Protocol):
    """A core that keeps its dead letters (the daemon, in its store): ``GET /dead-letters`` reads
    them with ``Store.dead_letters``' filters. A core without one answers 501 there."""

    def dead_letters(
        self,
        *,
        reason: str | None,
        source: str | None,
        topic: str | None,
        since: float | None,
        before: int | None,
        limit: int,
    ) -> list[dict[str, Any]]: ...


@runtime_checkable
class PostMortemHolder(Protocol):
    """A core that keeps the explanations of resolved incidents (the daemon): ``GET
    /explain/incidents/{id}`` falls back to them once the live state has forgotten the incident."""

    def resolved_explanation(self, incident_id: str) -> dict[str, Any] | None: ...


class RouteSet(Protocol):
    """An API of its own (Alertmanager v2, TMF642 …) in its own module: it adds its routes to the
    application. Routes behind the same middleware: access log, errors, bearer token, body size."""

    def register(self, app: web.Application) -> None: ...


class ApiError(Exception):
    """An error answer: raised by handlers and middleware, rendered by the error middleware."""

    def __init__(
        self, status: int, error: str, detail: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


# ------------------------------------------------------------------------------------------ helpers


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _error_response(exc: ApiError) -> web.Response:
    return _json({"error": exc.error, "detail": exc.detail}, exc.status, exc.headers)


def _loads(data: bytes, where: str = "") -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid JSON", f"{where}malformed JSON: {exc}") from None


def retry_after(exc: Overloaded) -> str:
    """``Retry-After`` for an overloaded core: its own delay in whole seconds, at least 1."""
    seconds = exc.retry_after if math.isfinite(exc.retry_after) else 1.0
    return str(max(1, math.ceil(seconds)))


def _param(query: Mapping[str, str], name: str, reason: str) -> ApiError:
    return ApiError(400, f"invalid query parameter {name!r}", f"{reason}, got {query[name]!r}")


def _parse_since(text: str) -> float:
    if _EPOCH.match(text):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    return parse_time(text)


def incident_query(query: Mapping[str, str], keys: list[str]) -> dict[str, Any]:
    """``/incidents`` query → keyword arguments of ``CoreView.incidents``. Raises ``ApiError`` (400).

    ``keys`` lists every parameter name as given (repeats included), so repeats can be refused.
    """
    allowed = ("state", "priority", "since", "open", "limit")
    for name in keys:
        if name not in allowed:
            raise ApiError(400, f"unknown query parameter {name!r}", f"expected one of {', '.join(allowed)}")
        if keys.count(name) > 1:
            raise ApiError(400, f"invalid query parameter {name!r}", "given more than once")
    out: dict[str, Any] = {"state": None, "priority": None, "since": None, "open_only": True}
    out["limit"] = DEFAULT_LIMIT
    if "state" in query:
        if query["state"] not in STATES:
            raise _param(query, "state", f"expected one of {', '.join(STATES)}")
        out["state"] = query["state"]
    if "priority" in query:
        text = query["priority"]
        if text not in ("1", "2", "3", "4", "5"):
            raise _param(query, "priority", "expected an integer 1..5")
        out["priority"] = int(text)
    if "since" in query:
        try:
            out["since"] = _parse_since(query["since"].strip())
        except ValueError:
            raise _param(
                query, "since", "expected an RFC 3339 time with an offset or epoch seconds"
            ) from None
    if "open" in query:
        flag = query["open"].lower()
        if flag not in ("true", "false", "1", "0"):
            raise _param(query, "open", "expected true or false")
        out["open_only"] = flag in ("true", "1")
    if "limit" in query:
        text = query["limit"]
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise _param(query, "limit", f"expected an integer 1..{MAX_LIMIT}")
        out["limit"] = int(text)
    return out


DEAD_LETTER_SOURCES: Final = ("mqtt", "http", "core")


def dead_letter_query(query: Mapping[str, str], keys: list[str]) -> dict[str, Any]:
    """``/dead-letters`` query → keyword arguments of ``DeadLetterHolder.dead_letters``. Raises
    ``ApiError`` (400) naming the parameter."""
    allowed = ("reason", "source", "topic", "since", "before", "limit")
    for name in keys:
        if name not in allowed:
            raise ApiError(400, f"unknown query parameter {name!r}", f"expected one of {', '.join(allowed)}")
        if keys.count(name) > 1:
            raise ApiError(400, f"invalid query parameter {name!r}", "given more than once")
    out: dict[str, Any] = dict.fromkeys(("reason", "source", "topic", "since", "before"))
    out["limit"] = DEFAULT_LIMIT
    for name in ("reason", "topic"):
        if name in query:
            if not query[name] or len(query[name]) > 1024:
                raise _param(query, name, "expected 1..1024 characters")
            out[name] = query[name]
    if "source" in query:
        if query["source"] not in DEAD_LETTER_SOURCES:
            raise _param(query, "source", f"expected one of {', '.join(DEAD_LETTER_SOURCES)}")
        out["source"] = query["source"]
    if "since" in query:
        try:
            out["since"] = _parse_since(query["since"].strip())
        except ValueError:
            raise _param(
                query, "since", "expected an RFC 3339 time with an offset or epoch seconds"
            ) from None
    if "before" in query:
        text = query["before"]
        if not text.isdigit() or len(text) > 18 or int(text) < 1:
            raise _param(query, "before", "expected a dead-letter id (a positive integer)")
        out["before"] = int(text)
    if "limit" in query:
        text = query["limit"]
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise _param(query, "limit", f"expected an integer 1..{MAX_LIMIT}")
        out["limit"] = int(text)
    return out


def _ack_body(obj: Any) -> tuple[str, str | None]:
    if not isinstance(obj, dict):
        raise ApiError(400, "invalid acknowledgement", f"expected a JSON object, got {json_type_name(obj)}")
    unknown = sorted(set(obj) - {"by", "note"})
    if unknown:
        raise ApiError(400, "invalid acknowledgement", f"unknown field(s): {', '.join(unknown)}")
    by, note = obj.get("by"), obj.get("note")
    if not isinstance(by, str) or not by.strip():
        reason = "field required" if by is None else "must be a non-empty string"
        raise ApiError(400, "invalid acknowledgement", f"by: {reason}")
    if len(by) > MAX_ACK_BY:
        raise ApiError(400, "invalid acknowledgement", f"by: is {len(by)} characters, limit is {MAX_ACK_BY}")
    if note is not None and not isinstance(note, str):
        raise ApiError(400, "invalid acknowledgement", f"note: expected a string, got {json_type_name(note)}")
    if note is not None and len(note) > MAX_ACK_NOTE:
        raise ApiError(
            400, "invalid acknowledgement", f"note: is {len(note)} characters, limit is {MAX_ACK_NOTE}"
        )
    return by, note


def is_samples(obj: object) -> bool:
    """A probe payload (one sample or a ``samples`` batch) by its shape; anything else is an alarm."""
    return isinstance(obj, dict) and ("samples" in obj or "metrics" in obj)


def split_events(body: bytes, content_type: str) -> list[tuple[bytes, bool]]:
    """The body of ``POST /events`` → ``(payload, is_samples)`` per message. Raises ``ApiError``.

    JSON lines (``application/x-ndjson``): one payload per non-blank line, passed on as sent. Else
    one JSON value: a list gives one payload per item (re-encoded), anything else is the payload.
    Every line must parse before anything is queued, so a syntax error queues nothing.
    """
    if not body.strip():
        raise ApiError(400, "invalid JSON", "empty body")
    if content_type in NDJSON_TYPES:
        out: list[tuple[bytes, bool]] = []
        for number, raw in enumerate(body.split(b"\n"), start=1):
            line = raw.strip()
            if line:
                out.append((line, is_samples(_loads(line, f"line {number}: "))))
        return out
    try:
        obj = _loads(body)
    except ApiError as exc:  # JSON lines sent without their content type: say which one it needs
        if b"\n" in body.strip() and "unexpected content after document" in str(exc.detail):
            hint = "; JSON lines (one object per line) need Content-Type: application/x-ndjson"
            raise ApiError(400, exc.error, f"{exc.detail}{hint}") from None
        raise
    if isinstance(obj, list):
        out = []
        for number, item in enumerate(obj):
            try:
                out.append((payload_bytes(item), is_samples(item)))
            except ValueError as exc:
                raise ApiError(400, "invalid JSON", f"item {number}: {exc}") from None
        return out
    return [(body, is_samples(obj))]


# ---------------------------------------------------------------------------------------------- API


class HttpApi:
    """The HTTP server. ``async with HttpApi(settings, core, metrics) as api:`` serves on ``api.port``."""

    def __init__(
        self,
        settings: HttpSettings,
        core: CoreView,
        metrics: Metrics,
        *,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        route_sets: Sequence[RouteSet] = (),
    ) -> None:
        self._settings = settings
        self._route_sets = tuple(route_sets)
        self._core = core
        self._metrics = metrics
        self._shutdown_timeout = shutdown_timeout
        self._token = settings.token.encode() if settings.token else None
        # wrong tokens per client address, the API's and the dashboard's sign-in's together
        self._limiter = LoginLimiter()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port actually listened on (the chosen one when ``settings.port`` is 0)."""
        if self._port is None:
            raise RuntimeError("the HTTP API is not running")
        return self._port

    async def __aenter__(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("the HTTP API is already running")
        runner = web.AppRunner(
            self.application(), access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._settings.host, self._settings.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("http listening", host=self._settings.host, port=self._port, auth=self._token is not None)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        runner, self._runner, self._port = self._runner, None, None
        if runner is not None:
            await runner.cleanup()
            log.info("http stopped")

    def application(self) -> web.Application:
        """The aiohttp application: routes and middleware (access log, errors, auth, body size)."""
        app = web.Application(
            client_max_size=self._settings.max_body,
            middlewares=[self._access_log_mw(), self._errors_mw(), self._auth_mw(), self._size_mw()],
        )
        app.router.add_get("/healthz", self._healthz, allow_head=True)
        app.router.add_get("/readyz", self._readyz, allow_head=True)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/incidents", self._incidents)
        app.router.add_get("/incidents/{id}", self._incident)
        app.router.add_post("/incidents/{id}/ack", self._ack)
        app.router.add_get("/incidents/{id}/history", self._incident_history)
        app.router.add_get("/elements/{id}", self._element)
        app.router.add_get("/customers/{id}", self._customer)
        app.router.add_get("/services", self._services)
        app.router.add_get("/services/{type}", self._service)
        app.router.add_get("/sla", self._sla)
        app.router.add_get("/dead-letters", self._dead_letters)
        app.router.add_get("/impact/what-if", self._what_if)
        app.router.add_get("/explain/alarms/{key:.+}", self._explain_alarm)  # a key may hold a "/"
        app.router.add_get("/explain/incidents/{id}", self._explain_incident)
        app.router.add_post("/events", self._events)
        app.router.add_post("/-/reload", self._reload)
        for route_set in self._route_sets:
            route_set.register(app)
        if self._settings.dashboard:
            Dashboard(
                self._core,
                token=self._settings.token,
                ack_limits=(MAX_ACK_BY, MAX_ACK_NOTE),
                metrics=self._metrics,
                limiter=self._limiter,
            ).mount(app)
        return app

    # -- middleware ---------------------------------------------------------------------------

    def _access_log_mw(self) -> Any:
        @web.middleware
        async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            finally:
                log.debug(
                    "http request",
                    method=request.method,
                    path=request.path,
                    query=request.query_string or None,
                    status=status,
                    ms=round((time.perf_counter() - start) * 1000, 3),
                    remote=request.remote,
                )

        return access_log

    def _errors_mw(self) -> Any:
        @web.middleware
        async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                return await handler(request)
            except ApiError as exc:
                return _error_response(exc)
            except web.HTTPRequestEntityTooLarge:
                return _error_response(self._too_large())
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise  # a redirect is not an error
                headers = {
                    k: v
                    for k, v in exc.headers.items()
                    if k.lower() not in ("content-type", "content-length")
                }
                default = f"{exc.status}: {exc.reason}"
                detail = exc.text if exc.text and exc.text != default else None
                return _json({"error": exc.reason.lower(), "detail": detail}, exc.status, headers)
            except Exception:
                log.exception("http handler failed", method=request.method, path=request.path)
                return _json({"error": "internal error", "detail": "see the engine's log"}, 500)

        return errors

    def _auth_mw(self) -> Any:
        token = self._token

        @web.middleware
        async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if token is not None and request.path not in OPEN_PATHS and not self._dashboard(request.path):
                client = request.remote or "unknown"
                limiter = self._limiter
                left = limiter.locked(client)
                if left > 0:  # the token is not even checked
                    self._metrics.api_auth_refused("locked_out")
                    raise ApiError(
                        429,
                        "too many requests",
                        f"too many invalid bearer tokens from this address ({limiter.max_failures} "
                        f"within {minutes(limiter.window)}): locked for {minutes(left)} more",
                        headers={"Retry-After": str(math.ceil(left))},
                    )
                scheme, _, given = request.headers.get("Authorization", "").partition(" ")
                challenge = {"WWW-Authenticate": 'Bearer realm="engine"'}
                if scheme.lower() != "bearer" or not given.strip():
                    raise ApiError(401, "unauthorized", "missing bearer token", headers=challenge)
                if not hmac.compare_digest(given.strip().encode(), token):
                    self._metrics.api_auth_refused("refused")
                    if limiter.failed(client):
                        self._metrics.api_lockout()
                        log.warning("http client locked out", remote=client, seconds=limiter.lockout)
                    else:
                        log.warning("http invalid bearer token", remote=client, path=request.path)
                    raise ApiError(401, "unauthorized", "invalid bearer token", headers=challenge)
            return await handler(request)

        return auth

    def _dashboard(self, path: str) -> bool:
        """The dashboard's pages (and ``/``, a redirect to them) check the token or session themselves."""
        if not self._settings.dashboard:
            return False
        return path in ("/", DASHBOARD_PREFIX) or path.startswith(DASHBOARD_PREFIX + "/")

    def _size_mw(self) -> Any:
        @web.middleware
        async def size(request: web.Request, handler: Handler) -> web.StreamResponse:
            length = request.content_length
            if length is not None and length > self._settings.max_body:
                raise self._too_large()
            return await handler(request)  # a chunked body is cut off by client_max_size

        return size

    def _too_large(self) -> ApiError:
        return ApiError(413, "body too large", f"the limit is {self._settings.max_body} bytes")

    # -- health and metrics -------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Readiness of rules, store and MQTT; a core with quarantined parts still serves (200) and
        lists them under ``degraded`` (the parts not doing their work: see ``engine.core.containment``)."""
        body: dict[str, Any] = dict(self._core.readiness())
        degraded = self._core.degraded()
        if degraded:
            body["degraded"] = degraded
        return _json(body, 200 if self._core.ready else 503)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": self._metrics.content_type})

    # -- queries ------------------------------------------------------------------------------

    async def _incidents(self, request: web.Request) -> web.Response:
        args = incident_query(request.query, [k for k, _ in request.query.items()])
        found = self._core.incidents(**args)
        return _json({"incidents": found, "count": len(found)})

    async def _incident(self, request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        record = self._core.incident(incident_id)
        if record is None:
            raise ApiError(404, "not found", f"no incident {incident_id!r}")
        return _json(record)

    async def _incident_history(self, request: web.Request) -> web.Response:
        """The summary of every version of an incident, oldest first (the dashboard's timeline)."""
        incident_id = request.match_info["id"]
        core = self._core
        if not isinstance(core, HistorySource):
            raise ApiError(404, "not found", "this engine keeps no incident history")
        record = core.incident(incident_id)
        versions = known_history(core.incident_history(incident_id), record)
        if not versions and record is None:
            raise ApiError(404, "not found", f"no incident {incident_id!r}")
        return _json({"incident_id": incident_id, "versions": versions, "count": len(versions)})

    async def _element(self, request: web.Request) -> web.Response:
        ne_id = request.match_info["id"]
        found = self._query().element(ne_id)
        if found is None:
            raise ApiError(404, "not found", f"no element {ne_id!r}")
        return _json(found)

    async def _customer(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["id"]
        q = self._query()
        found = reports.customer(q, customer_id, q.clock)
        if found is None:
            raise ApiError(404, "not found", f"no customer {customer_id!r}")
        return _json(found)

    async def _dead_letters(self, request: web.Request) -> web.Response:
        args = dead_letter_query(request.query, [k for k, _ in request.query.items()])
        core = self._core
        if not isinstance(core, DeadLetterHolder):
            raise ApiError(501, "not implemented", "this core does not keep dead letters")
        found = core.dead_letters(**args)
        next_page = None
        if len(found) == args["limit"]:  # maybe more: the same query, ids below the last one
            query = {k: v for k, v in request.query.items() if k != "before"}
            next_page = str(request.rel_url.with_query({**query, "before": str(found[-1]["id"])}))
        return _json({"dead_letters": found, "count": len(found), "next": next_page})

    # -- service quality ----------------------------------------------------------------------

    async def _services(self, request: web.Request) -> web.Response:
        q = self._query()
        return _json(reports.services(q, q.clock))

    async def _service(self, request: web.Request) -> web.Response:
        q = self._query()
        name = request.match_info["type"]
        report = reports.services(q, q.clock)
        found = report["services"].get(name)
        if found is None:
            known = ", ".join(sorted(report["services"])) or "none"
            raise ApiError(404, "not found", f"no service type {name!r} (known: {known})")
        return _json({"time": report["time"], "service": name, **found})

    async def _sla(self, request: web.Request) -> web.Response:
        q = self._query()
        return _json(reports.sla(q, q.clock))

    async def _what_if(self, request: web.Request) -> web.Response:
        core = self._query()
        q = request.query
        if "down" not in q:
            raise ApiError(400, "missing query parameter 'down'", "give ?down=ELEMENT[,ELEMENT…]")
        hours = 1.0
        if "hours" in q:
            try:
                hours = float(q["hours"])
            except ValueError:
                raise _param(q, "hours", "expected a number of hours") from None
        down = [ne.strip() for ne in q["down"].split(",") if ne.strip()]
        try:
            report = what_if(
                core.topology,
                down,
                hours=hours,
                sla=core.settings.quality.sla,
                current=core.own_health(),
                as_of=core.clock or None,
            )
        except ConfigError as exc:
            raise ApiError(400, f"invalid query parameter {exc.source.lstrip('-')!r}", exc.reason) from None
        return _json(report)

    # -- explanations -------------------------------------------------------------------------

    def _query(self) -> CoreQuery:
        found = self._core.query
        if found is None:
            raise ApiError(
                501, "not implemented", "this core does not expose its state (explanations, reports)"
            )
        return found

    async def _explain_alarm(self, request: web.Request) -> web.Response:
        try:
            return _json(self._query().explain_alarm(request.match_info["key"]))
        except NotFound as exc:
            raise ApiError(404, "not found", exc.to_dict()) from None

    async def _explain_incident(self, request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        try:
            return _json(self._query().explain_incident(incident_id))
        except NotFound as exc:
            core = self._core
            kept = core.resolved_explanation(incident_id) if isinstance(core, PostMortemHolder) else None
            if kept is not None:
                return _json(kept)
            raise ApiError(404, "not found", exc.to_dict()) from None

    # -- commands -----------------------------------------------------------------------------

    async def _ack(self, request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        by, note = _ack_body(_loads(await request.read()))
        record = await self._core.acknowledge(incident_id, by=by, note=note)
        if record is None:
            raise ApiError(404, "not found", f"no open incident {incident_id!r}")
        log.info("incident acknowledged", incident_id=incident_id, by=by)
        return _json(record)

    async def _reload(self, request: web.Request) -> web.Response:
        try:
            ok, message = await self._core.reload()
        except Exception as exc:
            log.exception("reload failed")
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ApiError(500, "reload failed", detail) from None
        if not ok:
            raise ApiError(409, "reload refused", message)
        return _json({"status": "reloaded", "message": message})

    # -- ingestion ----------------------------------------------------------------------------

    async def _ingest(self, payloads: list[tuple[bytes, bool]]) -> tuple[int, int]:
        """Queue each payload on its topic, in order. On ``Overloaded``, 503 saying how many got in."""
        alarm_topic, probe_topic = self._core.alarm_topic(), self._core.probe_topic()
        alarms = samples = 0
        for payload, sample in payloads:
            try:
                await self._core.ingest(probe_topic if sample else alarm_topic, payload, source="http")
            except Overloaded as exc:
                queued = alarms + samples
                raise ApiError(
                    503,
                    "overloaded",
                    {"reason": str(exc), "queued": queued, "refused": len(payloads) - queued},
                    headers={"Retry-After": retry_after(exc)},
                ) from None
            if sample:
                samples += 1
            else:
                alarms += 1
        return alarms, samples

    async def _events(self, request: web.Request) -> web.Response:
        payloads = split_events(await request.read(), request.content_type)
        alarms, samples = await self._ingest(payloads)
        return _json({"queued": alarms + samples, "alarms": alarms, "samples": samples}, 202)
