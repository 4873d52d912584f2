"""The dashboard's aiohttp sub-application: pages, the live stream, login and the ack form.

Mounted under ``/ui`` on the HTTP API's application (``Dashboard.mount``); the API's bearer-token
middleware leaves ``/ui`` to this one, which accepts a session cookie (set by the login form) or
the same ``Authorization: Bearer`` header (see ``security``). Pages are Jinja2 templates with
autoescape on, so every value from a record (alarm text is attacker-controlled) is escaped; the
pages load no inline script or style, which the Content-Security-Policy enforces.

Data comes through the API's read paths: ``incidents``/``incident`` of ``CoreView``, its ``query``
(the core's read-only query interface) for alarms, elements and service quality, ``acknowledge``
for the form, and the store file for the index's full reads (in a worker thread).
``IncidentIndex`` (``index``) keeps the open incidents as rows; it is refreshed before each list
is rendered and, while an event stream is open, twice a second by one watcher task, which wakes
the ``/ui/events`` streams (server-sent events) when something changed: ``incidents`` for the list,
and one event named after each changed incident for its detail page. htmx then fetches the
fragment again, under the URL's own filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable
from urllib.parse import quote

import jinja2
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from engine import __version__
from engine.adapters.dashboard import network, trends, views
from engine.adapters.dashboard.index import IncidentIndex
from engine.adapters.dashboard.security import (
    COOKIE,
    LoginLimiter,
    Sessions,
    minutes,
    same_origin,
    security_headers,
)
from engine.adapters.store import known_history
from engine.core import reports
from engine.errors import EngineError
from engine.service.metrics import Metrics

if TYPE_CHECKING:
    from engine.core.query import CoreQuery

__all__ = ["PREFIX", "Dashboard", "DashboardCore"]

log = structlog.get_logger("engine.dashboard")

PREFIX: Final = "/ui"
HERE: Final = Path(__file__).resolve().parent
POLL: Final = 0.5  # seconds between two reads of what changed, while a browser is connected
KEEPALIVE: Final = 15.0  # seconds between two comments on an idle event stream
MAX_EVENT_IDS: Final = 200  # per-incident events in one wake-up; beyond, the list event is enough
LOGIN_DELAY: Final = 0.5  # seconds before answering a refused sign-in
OPEN_ROUTES: Final = frozenset({"login", "static"})
PRIORITY_NAMES: Final = {1: "critical", 2: "high", 3: "medium", 4: "low", 5: "informational"}
STATE_NAMES: Final = {"outage": "Outage", "degraded": "Degraded", "at_risk": "At risk"}


NONCE: Final = web.RequestKey("nonce", str)  # the session's nonce ("" for a bearer-header request)
BEARER: Final = web.RequestKey("bearer", bool)  # authenticated by the Authorization header
NEW_COOKIE: Final = web.RequestKey("new_cookie", str)  # a session issued by this request


class DashboardCore(Protocol):
    """What the dashboard reads and does: the API's ``CoreView`` methods it uses."""

    def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    @property
    def query(self) -> CoreQuery | None: ...  # the core's state (None: not exposed; pages answer 501)

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]: ...

    async def acknowledge(self, incident_id: str, *, by: str, note: str | None) -> dict[str, Any] | None: ...


@runtime_checkable
class HistorySource(Protocol):
    """A core that keeps a summary of every incident version (the daemon does, in its store)."""

    def incident_history(self, incident_id: str) -> list[dict[str, Any]]: ...


@runtime_checkable
class OperationsSource(Protocol):
    """A core that reports on itself (the daemon's ``operations``) and can reload its files."""

    def operations(self) -> dict[str, Any]: ...

    async def reload(self) -> tuple[bool, str]: ...


class Page(Exception):
    """An error page: raised by handlers, rendered by the middleware."""

    def __init__(
        self, status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})


# ------------------------------------------------------------------------------ template helpers


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``3d 4h``, ``2h 05m``, ``12m 03s``, ``45s``: two units at most, as a shift reads it."""
    s = int(max(0.0, seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = _iso
    env.filters["utc"] = _utc
    env.filters["duration"] = duration
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.globals.update(
        prefix=PREFIX,
        version=__version__,
        priority_names=PRIORITY_NAMES,
        state_names=STATE_NAMES,
        states=views.STATES,
    )
    return env


# ------------------------------------------------------------------------------------ dashboard


class Dashboard:
    """The dashboard's state (the incident index, the sessions, the watcher) and its handlers."""

    def __init__(
        self,
        core: DashboardCore,
        *,
        token: str | None,
        ack_limits: tuple[int, int] = (256, 4096),
        clock: Callable[[], float] = time.time,
        poll: float = POLL,
        metrics: Metrics | None = None,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self._core = core
        self.sessions = Sessions(token)
        self.limiter = limiter or LoginLimiter()
        self._metrics = metrics
        self._ack_by_max, self._ack_note_max = ack_limits
        self._clock = clock
        self._poll = poll
        self.index = IncidentIndex(core)
        self.history = trends.QualityHistory()
        self._collector: asyncio.Task[None] | None = None
        self._env = environment()
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._streams = 0  # open event streams
        self._clearing_seen: set[str] = set()  # incidents the core said were clearing at the last poll
        self._has_streams = asyncio.Event()
        self._closing = False
        self._last_refresh = 0.0

    def mount(self, app: web.Application) -> None:
        """Add the dashboard under ``/ui`` to ``app``, and ``/`` → ``/ui/``."""
        sub = web.Application(middlewares=[self._middleware()])
        r = sub.router
        r.add_get("/", self._incidents, name="incidents")
        r.add_get("/incidents/live", self._incidents_live, name="incidents-live")
        r.add_get("/incidents/{id}", self._incident, name="incident")
        r.add_get("/incidents/{id}/live", self._incident_live, name="incident-live")
        r.add_post("/incidents/{id}/ack", self._ack, name="ack")
        r.add_get("/alarms", self._alarms, name="alarms")
        r.add_get("/elements/{id}", self._element, name="element")
        r.add_get("/elements/{id}/graph.json", self._element_graph, name="element-graph")
        r.add_get("/quality", self._quality, name="quality")
        r.add_get("/quality/series.json", self._quality_series, name="quality-series")
        r.add_get("/operations", self._operations, name="operations")
        r.add_post("/operations/reload", self._reload, name="reload")
        r.add_get("/events", self._events, name="events")
        r.add_get("/login", self._login_form, name="login")
        r.add_post("/login", self._login, name="login-post")
        r.add_post("/logout", self._logout, name="logout")
        r.add_static("/static/", HERE / "static", name="static", append_version=False)
        sub.on_shutdown.append(self._on_shutdown)
        sub.cleanup_ctx.append(self._watching)
        app.add_subapp(PREFIX, sub)
        app.router.add_get("/", _to_dashboard)
        app.router.add_get(PREFIX, _to_dashboard)

    # -- lifecycle -----------------------------------------------------------------------------

    async def _watching(self, app: web.Application) -> AsyncIterator[None]:
        if self._core.query is not None:
            self._collector = asyncio.create_task(self._collect(), name="dashboard-history")
        yield
        self._closing = True
        for task in (self._watcher, self._collector):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _collect(self) -> None:
        """The KQI charts' history, whether a browser is open or not (the trend of the night is
        there in the morning): every ``COLLECT_EVERY`` seconds, or less often when a collection
        is long (see ``trends.interval``)."""
        every = trends.COLLECT_EVERY
        while not self._closing:
            await asyncio.sleep(every)
            started = time.perf_counter()
            try:
                self.collect_history()
            except Exception:
                log.exception("dashboard history collection failed")
                continue
            horizons = self._query().settings.quality.kqis.horizons().values()
            every = trends.interval(time.perf_counter() - started, min(horizons, default=trends.KEEP))

    def collect_history(self) -> None:
        """One collection (see ``trends``), from the core's KQI windows as they are now."""
        q = self._query()
        dropped = self.history.collect(q.held_series(), q.clock)
        if dropped:
            if self._metrics is not None:
                self._metrics.dashboard_history_dropped(dropped)
            if self.history.dropped == dropped:  # the first time only: the count says the rest
                log.warning(
                    "dashboard chart history full: samples of new series left out",
                    max_series=self.history.max_series,
                    dropped=dropped,
                )

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing = True  # the event streams end, so the server's shutdown does not wait on them
        self._wake.set()
        self._has_streams.set()

    def _start_watching(self) -> None:
        if self._watcher is None and not self._closing:
            self._watcher = asyncio.create_task(self._watch(), name="dashboard-watch")

    async def _watch(self) -> None:
        """Read what changed every ``poll`` seconds while an event stream is open (a page view
        refreshes the index itself)."""
        while not self._closing:
            if self._streams == 0:
                await self._has_streams.wait()
                continue
            try:
                self._last_refresh = time.monotonic()
                if await self.index.poll():
                    self._announce()
                # a root's clear (and the end of its hold-down) sends no record: the core says it
                query = self._core.query
                if query is not None:
                    clearing = set(query.clearing())
                    moved = sorted(clearing ^ self._clearing_seen)
                    self._clearing_seen = clearing
                    if moved and self.index.touch(moved):
                        self._announce()
            except Exception:
                log.exception("dashboard refresh failed")
            await asyncio.sleep(self._poll)

    async def _load(self) -> None:
        """The index's first full read (in a thread with a store: the loop serves meanwhile)."""
        if not self.index.loaded and await self.index.full_read():
            self._announce()

    def _refresh(self, *, force: bool = False) -> None:
        """An incremental read of the index (once loaded), unless one ran a moment ago."""
        now = time.monotonic()
        if not force and now - self._last_refresh < self._poll / 2:
            return
        self._last_refresh = now
        if self.index.refresh():
            self._announce()

    def _announce(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    # -- middleware ----------------------------------------------------------------------------

    def _middleware(self) -> Any:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            route = request.match_info.route.name or ""
            is_static = route == "static"
            try:
                if route not in OPEN_ROUTES and route != "login-post":
                    self._authenticate(request)
                if request.method == "POST" and not same_origin(request):
                    raise Page(403, "Forbidden", "This form was sent from another site.")
                response = await handler(request)
            except Page as exc:
                response = self._render(request, "error.html", exc.status, title=exc.title, detail=exc.detail)
                response.headers.update(exc.headers)
            except web.HTTPException as exc:
                if exc.status < 400:  # a redirect, answered as a plain response
                    response = web.Response(status=exc.status, headers=exc.headers)
                    for morsel in exc.cookies.values():
                        response.cookies[morsel.key] = morsel
                    security_headers(response, html=False)
                    self._keep_session(request, response)
                    return response
                response = self._render(request, "error.html", exc.status, title=exc.reason, detail="")
                if "Allow" in exc.headers:  # a 405 says what is allowed
                    response.headers["Allow"] = exc.headers["Allow"]
            except Exception:
                log.exception("dashboard handler failed", path=request.path)
                response = self._render(
                    request, "error.html", 500, title="Internal error", detail="See the engine's log."
                )
            if not is_static:
                self._keep_session(request, response)
            security_headers(response, html=not is_static)
            if is_static:
                response.headers["Cache-Control"] = "public, max-age=3600"
            return response

        return guard

    def _authenticate(self, request: web.Request) -> None:
        """Sets ``request[NONCE]`` (the session) or raises: a redirect to the login form for a
        page, 401 for the stream and the forms."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            client = _client(request)
            self._refuse_if_locked(client)
            if not self.sessions.check_token(given):
                self._failed_login(client)
                raise Page(401, "Unauthorized", "The bearer token is not valid.")
            request[NONCE] = ""
            request[BEARER] = True
            return
        nonce = self.sessions.check(request.cookies.get(COOKIE))
        if nonce is not None:
            request[NONCE] = nonce
            return
        if not self.sessions.login_required:
            cookie, nonce = self.sessions.issue()
            request[NONCE] = nonce
            request[NEW_COOKIE] = cookie
            return
        if request.method == "GET" and request.headers.get("HX-Request") == "true":
            # htmx fetching a fragment for a page whose session ended: the whole page goes to the
            # form (and back to that page after), rather than the form inside the incident table
            current = URL(request.headers.get("HX-Current-URL", ""))
            target = current.path_qs if current.path.startswith(PREFIX + "/") else f"{PREFIX}/"
            raise Page(
                401,
                "Unauthorized",
                "Sign in again: the session has ended.",
                headers={"HX-Redirect": f"{PREFIX}/login?next={quote(target, safe='')}"},
            )
        if request.method == "GET" and request.match_info.route.name not in ("events",):
            target = request.path_qs
            raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(target, safe='')}")
        raise Page(401, "Unauthorized", "Sign in again: the session has ended.")

    def _keep_session(self, request: web.Request, response: web.StreamResponse) -> None:
        cookie = request.get(NEW_COOKIE)
        if cookie is not None and not response.prepared:
            self.sessions.set_cookie(response, cookie, secure=request.secure)

    def _require_csrf(self, request: web.Request, form: Mapping[str, Any]) -> None:
        if request.get(BEARER):
            return
        given = form.get("csrf")
        if not self.sessions.check_csrf(request.get(NONCE), given if isinstance(given, str) else None):
            raise Page(
                403,
                "Forbidden",
                "The form's security token is missing or stale: reload the page and send it again.",
            )

    # -- rendering -----------------------------------------------------------------------------

    def _render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        nonce = request.get(NONCE)
        context.setdefault("csrf", self.sessions.csrf(nonce) if nonce else "")
        context.setdefault("signed_in", self.sessions.login_required and bool(nonce))
        context.setdefault("now", self._clock())
        context.setdefault("page_name", "")
        text = self._env.get_template(template).render(**context)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    # -- incidents -----------------------------------------------------------------------------

    async def _list_context(self, request: web.Request) -> dict[str, Any]:
        self._start_watching()
        await self._load()
        self._refresh()
        try:
            filters = views.Filters.parse(request.query)
        except views.FilterError as exc:
            raise Page(400, "Bad filter", str(exc)) from None
        rows = self.index.rows.values()
        regions, services = views.facets(rows)
        for chosen, menu in ((filters.region, regions), (filters.service, services)):
            if chosen is not None and chosen not in menu:
                menu.append(chosen)
        query = self._core.query
        return {
            "clearing": query.clearing() if query is not None else {},
            "filters": filters,
            "page": views.select(rows, filters),
            "counts": views.priority_counts(rows, filters),
            "open_total": len(self.index.rows),
            "regions": regions,
            "services": services,
            "revision": self.index.revision,
            "page_name": "incidents",
        }

    async def _incidents(self, request: web.Request) -> web.Response:
        return self._render(request, "incidents.html", **await self._list_context(request))

    async def _incidents_live(self, request: web.Request) -> web.Response:
        return self._render(request, "incidents_live.html", **await self._list_context(request))

    def _incident_context(self, request: web.Request) -> dict[str, Any]:
        self._start_watching()
        incident_id = request.match_info["id"]
        record = self._core.incident(incident_id)
        if record is None:
            raise Page(404, "No such incident", f"The engine holds no incident {incident_id!r}.")
        tree, others, left_out = views.suppression_tree(record)
        core = self._core
        steps = (
            views.timeline(known_history(core.incident_history(incident_id), record))
            if isinstance(core, HistorySource)
            else None
        )
        # the root cleared and the hold-down runs: the published records (made before) say nothing
        # of it, the core does
        query = core.query
        resolves_at = None
        root_cleared = None
        if query is not None and record.get("event") != "resolved":
            resolves_at = query.clearing().get(incident_id)
            if resolves_at is not None:
                root = query.alarm(str((record.get("root_cause") or {}).get("alarm_id") or ""))
                root_cleared = root.cleared_time if root is not None else None
        return {
            "resolves_at": resolves_at,
            "root_cleared": root_cleared,
            "steps": steps,
            "rec": record,
            "row": views.row_of(record),
            "tree": tree,
            "others": others,
            "left_out": left_out,
            "breakdown": _breakdown(record),
            "page_name": "incident",
            "ack_error": None,
            "ack_form": {"by": "", "note": ""},
        }

    async def _incident(self, request: web.Request) -> web.Response:
        return self._render(request, "incident.html", **self._incident_context(request))

    async def _incident_live(self, request: web.Request) -> web.Response:
        return self._render(request, "incident_live.html", **self._incident_context(request))

    async def _ack(self, request: web.Request) -> web.StreamResponse:
        incident_id = request.match_info["id"]
        form = await request.post()
        self._require_csrf(request, form)
        by = str(form.get("by") or "").strip()
        note = str(form.get("note") or "").strip() or None
        error = None
        if not by:
            error = "Who: say who acknowledges (a name or a shift handle)."
        elif len(by) > self._ack_by_max:
            error = f"Who: {len(by)} characters, the limit is {self._ack_by_max}."
        elif note is not None and len(note) > self._ack_note_max:
            error = f"Note: {len(note)} characters, the limit is {self._ack_note_max}."
        if error is not None:
            ctx = self._incident_context(request)
            ctx.update(ack_error=error, ack_form={"by": by, "note": note or ""})
            return self._render(request, "incident.html", 400, **ctx)
        try:
            record = await self._core.acknowledge(incident_id, by=by, note=note)
        except EngineError as exc:
            raise Page(503, "Not acknowledged", f"The engine refused it for now: {exc}. Try again.") from None
        if record is None:
            raise Page(404, "Not acknowledged", f"No open incident {incident_id!r}: it may have resolved.")
        log.info("incident acknowledged", incident_id=incident_id, by=by, via="dashboard")
        self._refresh(force=True)
        raise web.HTTPSeeOther(f"{PREFIX}/incidents/{quote(incident_id, safe='')}")

    # -- alarms and elements -------------------------------------------------------------------

    def _query(self) -> CoreQuery:
        found = self._core.query
        if found is None:
            raise Page(501, "Not available", "This core does not expose its alarms and topology.")
        return found

    async def _alarms(self, request: web.Request) -> web.Response:
        try:
            filters = network.AlarmFilters.parse(request.query)
        except network.AlarmFilterError as exc:
            raise Page(400, "Bad filter", str(exc)) from None
        page = network.alarm_page(self._query(), filters)
        return self._render(
            request,
            "alarms.html",
            filters=filters,
            page=page,
            severities=network.SEVERITIES,
            page_name="alarms",
        )

    async def _element(self, request: web.Request) -> web.Response:
        ne_id = request.match_info["id"]
        q = self._query()
        view = q.element(ne_id)
        if view is None:
            raise Page(404, "No such element", f"The topology has no element {ne_id!r}.")
        graph = network.neighbourhood(q, ne_id)
        nodes = [n["data"] for n in graph["elements"]["nodes"]] if graph else []
        neighbours = [n for n in nodes if not n.get("group") and not n.get("more") and n["id"] != ne_id]
        return self._render(
            request,
            "element.html",
            view=view,
            neighbours=neighbours,
            more=graph["left_out"] if graph else 0,
            page_name="element",
        )

    async def _element_graph(self, request: web.Request) -> web.Response:
        ne_id = request.match_info["id"]
        q = self._query()
        if ne_id not in q.topology:
            raise Page(404, "No such element", f"The topology has no element {ne_id!r}.")
        graph = network.neighbourhood(q, ne_id)
        return web.json_response(graph, headers={"Cache-Control": "no-store"})

    # -- service quality -----------------------------------------------------------------------

    def _hours(self, request: web.Request) -> int:
        text = request.query.get("hours", "").strip() or "24"
        if text not in {str(h) for h in network.CHART_HOURS}:
            choices = ", ".join(str(h) for h in network.CHART_HOURS)
            raise Page(400, "Bad range", f"hours: expected one of {choices}, got {text[:40]!r}")
        return int(text)

    async def _quality(self, request: web.Request) -> web.Response:
        q = self._query()
        now = q.clock
        scopes = sorted(set(q.sample_scopes()) | set(self.history.scopes()))
        hours = self._hours(request)
        chosen = request.query.get("scope", "").strip()
        if chosen and chosen not in scopes:
            raise Page(404, "No samples", f"The engine holds no KPI samples nor history for {chosen!r}.")
        element_scopes = [sc for sc in scopes if sc.startswith("ne:")][: network.MAX_SCOPES]
        if not chosen and element_scopes:
            chosen = element_scopes[0]
        return self._render(
            request,
            "quality.html",
            services=reports.services(q, now)["services"],
            sla=reports.sla(q, now),
            customers=reports.customers(q, now, limit=20),
            scopes=element_scopes,
            path_scopes=sum(1 for sc in scopes if sc.startswith("path:")),
            scope=chosen,
            hours=hours,
            chart_hours=network.CHART_HOURS,
            history=self.history,
            page_name="quality",
        )

    async def _quality_series(self, request: web.Request) -> web.Response:
        scope = request.query.get("scope", "")
        series = network.kqi_series(self._query(), scope, self.history, self._hours(request))
        return web.json_response(series, headers={"Cache-Control": "no-store"})

    # -- operations ----------------------------------------------------------------------------

    def _ops_core(self) -> OperationsSource:
        core = self._core
        if not isinstance(core, OperationsSource):
            raise Page(501, "Not available", "This core does not report on itself.")
        return core

    async def _operations(self, request: web.Request) -> web.Response:
        ops = self._ops_core().operations()
        flash = request.query.get("reload")
        return self._render(
            request,
            "operations.html",
            ops=ops,
            flash=flash if flash in ("ok", "refused") else None,
            page_name="operations",
        )

    async def _reload(self, request: web.Request) -> web.StreamResponse:
        core = self._ops_core()
        form = await request.post()
        self._require_csrf(request, form)
        try:
            ok, message = await core.reload()
        except EngineError as exc:
            raise Page(503, "Not reloaded", f"The engine refused it for now: {exc}. Try again.") from None
        log.info("reload from the dashboard", ok=ok, message=message)
        raise web.HTTPSeeOther(f"{PREFIX}/operations?reload={'ok' if ok else 'refused'}")

    # -- the live stream -----------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self._start_watching()
        text = request.query.get("rev", "")
        seen = int(text) if text.isdigit() else self.index.revision
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        self._keep_session(request, response)
        security_headers(response, html=False)
        await response.prepare(request)
        self._streams += 1
        self._has_streams.set()
        await response.write(b"retry: 2000\n\n")
        touched: dict[str, int] = {}
        try:
            while not self._closing:
                if self.index.revision > seen:
                    rev = self.index.revision
                    for iid in self.index.changed[:MAX_EVENT_IDS]:
                        touched[iid] = rev
                    lines = [f"event: incidents\ndata: {rev}\n\n"]
                    lines += [f"event: {iid}\ndata: {rev}\n\n" for iid, r in touched.items() if r > seen]
                    seen = rev
                    touched.clear()
                    await response.write("".join(lines).encode())
                    continue
                wake = self._wake
                try:
                    await asyncio.wait_for(wake.wait(), timeout=KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self._streams -= 1
            if self._streams == 0:
                self._has_streams.clear()
        return response

    # -- login ---------------------------------------------------------------------------------

    def _next(self, value: object) -> str:
        target = str(value or "")
        if not target.startswith(PREFIX + "/") or target.startswith("//") or "\\" in target:
            return PREFIX + "/"
        return target

    def _login_page(self, request: web.Request, status: int, target: str, error: str | None) -> web.Response:
        return self._render(
            request,
            "login.html",
            status,
            next=target,
            error=error,
            page_name="login",
            max_failures=self.limiter.max_failures,
            window=minutes(self.limiter.window),
            lockout=minutes(self.limiter.lockout),
        )

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        target = self._next(request.query.get("next"))
        if not self.sessions.login_required:
            raise web.HTTPSeeOther(target)
        lockout = self._lockout(_client(request))
        error = lockout[0] if lockout else None
        return self._login_page(request, 200, target, error)

    def _lockout(self, client: str) -> tuple[str, float] | None:
        """Why ``client`` may not sign in now and for how many seconds; None when it may."""
        left = self.limiter.locked(client)
        if left <= 0:
            return None
        return (
            f"Too many failed sign-ins from this address ({self.limiter.max_failures} within"
            f" {minutes(self.limiter.window)}): sign-in from it is locked for {minutes(left)} more."
            " Until then no token is checked, not even the right one.",
            left,
        )

    def _refuse_if_locked(self, client: str) -> None:
        """429 for an address locked out after too many failed sign-ins; the token is not checked."""
        lockout = self._lockout(client)
        if lockout is None:
            return
        if self._metrics is not None:
            self._metrics.dashboard_login("locked_out")
        message, left = lockout
        raise Page(429, "Sign-in locked", message, headers={"Retry-After": str(math.ceil(left))})

    def _failed_login(self, client: str) -> str:
        """Count a wrong token from ``client``; the sentence the sign-in form shows about it."""
        locked = self.limiter.failed(client)
        if self._metrics is not None:
            self._metrics.dashboard_login("refused")
            if locked:
                self._metrics.dashboard_lockout()
        if locked:
            log.warning("dashboard sign-in locked out", remote=client, seconds=self.limiter.lockout)
            return (
                f"That token is not valid. That was {self.limiter.max_failures} failures from this"
                f" address within {minutes(self.limiter.window)}: sign-in from it is locked for"
                f" {minutes(self.limiter.lockout)}."
            )
        log.warning("dashboard login refused", remote=client)
        left = self.limiter.max_failures - self.limiter.failures(client)
        return (
            f"That token is not valid. {left} more failure{'s' if left != 1 else ''} from this address"
            f" within {minutes(self.limiter.window)} lock{'s' if left == 1 else ''} its sign-in for"
            f" {minutes(self.limiter.lockout)}."
        )

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = self._next(form.get("next"))
        given = str(form.get("token") or "")
        client = _client(request)
        lockout = self._lockout(client)
        if lockout is not None:
            if self._metrics is not None:
                self._metrics.dashboard_login("locked_out")
            response = self._login_page(request, 429, target, lockout[0])
            response.headers["Retry-After"] = str(math.ceil(lockout[1]))
            return response
        if not given:
            error = "Enter the API token."
            return self._login_page(request, 401, target, error)
        if not self.sessions.check_token(given):
            error = self._failed_login(client)
            await asyncio.sleep(LOGIN_DELAY)  # slows down guessing
            status = 429 if self.limiter.locked(client) > 0 else 401
            return self._login_page(request, status, target, error)
        self.limiter.succeeded(client)
        if self._metrics is not None:
            self._metrics.dashboard_login("ok")
        cookie, _ = self.sessions.issue()
        response = web.HTTPSeeOther(target)
        self.sessions.set_cookie(response, cookie, secure=request.secure)
        log.info("dashboard login", remote=request.remote)
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self._require_csrf(request, form)
        response = web.HTTPSeeOther(f"{PREFIX}/login" if self.sessions.login_required else f"{PREFIX}/")
        response.del_cookie(COOKIE, path=PREFIX)
        raise response


def _client(request: web.Request) -> str:
    """The address sign-in failures are counted against: the peer's (a reverse proxy's own, when
    there is one: every client behind it shares its count)."""
    return request.remote or "unknown"


async def _to_dashboard(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/")


def _breakdown(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The priority breakdown as table rows: factor, what it saw, points."""
    b = record.get("priority_breakdown") or {}
    rows: list[dict[str, Any]] = []
    labels = {
        "state": "State",
        "customers": "Customers (tier-weighted)",
        "criticality": "Service criticality",
        "severity": "Severity",
        "sla": "SLA urgency",
    }
    for key, label in labels.items():
        part = b.get(key)
        if not isinstance(part, Mapping):
            continue
        if key == "customers":
            seen = part.get("weighted")
        elif key == "sla":
            seen = f"urgency {part.get('urgency')}"
        else:
            seen = part.get("value")
        rows.append(
            {"label": label, "seen": seen, "factor": part.get("factor"), "points": part.get("points")}
        )
    for key, part in b.items():  # a factor added later still shows
        if key not in labels and isinstance(part, Mapping) and "points" in part:
            rows.append(
                {
                    "label": key,
                    "seen": part.get("value"),
                    "factor": part.get("factor"),
                    "points": part["points"],
                }
            )
    return rows
