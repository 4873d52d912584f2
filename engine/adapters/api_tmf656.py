"""TMF656 Service Problem Management v4, read side: the engine's incidents as ServiceProblems.

Spec: TM Forum TMF656 v4.0.0 swagger (``../shared/standards/tmf656/``). Served under
``/tmf-api/serviceProblemManagement/v4`` on the engine's HTTP API, behind the same bearer token:

- ``GET /serviceProblem``: the latest record of each incident (open and resolved, newest first) as
  a ``ServiceProblem`` (``engine.formats.tmf656``, the body the ``tmf656`` receivers get, with
  ``href``); ``fields``, ``offset``, ``limit`` and attribute filters (``status=pending``,
  ``priority=1``, ``category=customerImpact``, dotted for nested ones).
- ``GET /serviceProblem/{id}``: one.

Problems are created by correlation, not by clients: ``POST``/``PATCH`` are not offered (405; an
operator acknowledges with ``POST /incidents/{id}/ack``, which changes ``status`` to
``acknowledged``). Errors are TMF ``Error`` objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

import orjson
import structlog
from aiohttp import web

from engine.config import ReceiverSettings
from engine.formats import tmf656

__all__ = ["Tmf656Api", "Tmf656Core"]

log = structlog.get_logger("engine.api.tmf656")

BASE: Final = "/tmf-api/serviceProblemManagement/v4"
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_VIEW: Final = ReceiverSettings(name="tmf656-api", url="http://127.0.0.1/", format="tmf656")


class Tmf656Core(Protocol):
    """What this API needs from the daemon (the incident queries of ``CoreView``)."""

    def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]: ...


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.message = message


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = orjson.dumps(obj)
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def service_problem(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """An incident record as the API's ServiceProblem: the receivers' body, with its ``href`` (an
    absolute URI, as the swagger's format says: ``origin`` is the request's scheme and host)."""
    sp = tmf656(record, _VIEW)
    return {"id": sp["id"], "href": f"{origin}{BASE}/serviceProblem/{sp['id']}", **sp}


def _attribute(resource: Mapping[str, Any], path: str) -> str | None:
    value: Any = resource
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else None


class Tmf656Api:
    """Registers the TMF656 read routes on the engine's aiohttp application."""

    def __init__(self, core: Tmf656Core) -> None:
        self._core = core

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{BASE}/serviceProblem", self._wrap(self._list))
        r.add_get(BASE + "/serviceProblem/{id}", self._wrap(self._get))
        r.add_route("*", BASE + "/{tail:.*}", self._wrap(self._unknown))

    @staticmethod
    def _wrap(
        handler: Callable[[web.Request], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except _Refused as exc:
                body = {"code": str(exc.status), "reason": exc.reason, "status": str(exc.status)}
                if exc.message:
                    body["message"] = exc.message
                return _json(body, exc.status)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("tmf656 handler failed", method=request.method, path=request.path)
                return _json({"code": "500", "reason": "internal error", "status": "500"}, 500)

        return handle

    async def _unknown(self, request: web.Request) -> web.Response:
        if request.path.startswith(f"{BASE}/serviceProblem"):
            raise _Refused(405, "method not allowed", "service problems are made by correlation: read-only")
        raise _Refused(404, "not found", f"no resource {request.method} {request.path}")

    @staticmethod
    def _fields(request: web.Request, resource: dict[str, Any]) -> dict[str, Any]:
        text = request.query.get("fields")
        if not text:
            return resource
        wanted = {f.strip() for f in text.split(",") if f.strip()} | {"id", "href"}
        return {k: v for k, v in resource.items() if k in wanted}

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        paging = {"offset": 0, "limit": DEFAULT_LIMIT}
        for name in paging:
            values = q.getall(name, [])
            if len(values) > 1:
                raise _Refused(400, f"invalid query parameter {name!r}", "given more than once")
            if values:
                text, low = values[0], 0 if name == "offset" else 1
                if not (text.isascii() and text.isdigit()) or not low <= int(text) <= 10**9:
                    raise _Refused(400, f"invalid query parameter {name!r}", f"expected an integer ≥ {low}")
                paging[name] = min(int(text), MAX_LIMIT) if name == "limit" else int(text)
        filters = [(k, v) for k, v in q.items() if k not in ("fields", "offset", "limit")]
        records = self._core.incidents(
            state=None, priority=None, since=None, open_only=False, limit=MAX_LIMIT
        )
        origin = str(request.url.origin())
        found = []
        for record in records:
            sp = service_problem(record, origin)
            if all(_attribute(sp, k) == v for k, v in filters):
                found.append(sp)
        offset, limit = paging["offset"], paging["limit"]
        page = [self._fields(request, sp) for sp in found[offset : offset + limit]]
        headers = {"X-Total-Count": str(len(found)), "X-Result-Count": str(len(page))}
        return _json(page, 200, headers)

    async def _get(self, request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        record = self._core.incident(incident_id)
        if record is None:
            raise _Refused(404, "not found", f"no service problem {incident_id!r}")
        return _json(self._fields(request, service_problem(record, str(request.url.origin()))))
