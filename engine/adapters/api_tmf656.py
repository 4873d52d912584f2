"""TMF656 Service Problem Management v4, read side: the engine's incidents as ServiceProblems.

Spec: TM Forum TMF656 v4.0.0 swagger (``../shared/standards/tmf656/``). Served under
``/tmf-api/serviceProblemManagement/v4`` on the engine's HTTP API, behind the same bearer token:

- ``GET /serviceProblem``: the latest record of each incident (open and resolved, newest first) as
  a ``ServiceProblem`` (``engine.adapters.formats.tmf656``, the body the ``tmf656`` receivers get, with
  ``href``); ``fields``, ``offset``, ``limit`` and attribute filters (``status=pending``,
  ``priority=1``, ``category=customerImpact``, dotted for nested ones).
- ``GET /serviceProblem/{id}``: one.

Problems are created by correlation, not by clients: ``POST``/``PATCH`` are not offered (405; an
operator acknowledges with ``POST /incidents/{id}/ack``, which changes ``status`` to
``acknowledged``). Errors are TMF ``Error`` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from aiohttp import web

from engine.adapters.formats import tmf656
from engine.adapters.tmf import (
    MAX_LIMIT,
    Refused,
    attribute,
    guarded,
    json_response,
    paging,
    select_fields,
)
from engine.service.config import ReceiverSettings

__all__ = ["Tmf656Api", "Tmf656Core"]


BASE: Final = "/tmf-api/serviceProblemManagement/v4"
_VIEW: Final = ReceiverSettings(name="tmf656-api", url="http://127.0.0.1/", format="tmf656")


class Tmf656Core(Protocol):
    """What this API needs from the daemon (the incident queries of ``CoreView``)."""

    def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]: ...


def service_problem(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """An incident record as the API's ServiceProblem: the receivers' body, with its ``href`` (an
    absolute URI, as the swagger's format says: ``origin`` is the request's scheme and host)."""
    sp = tmf656(record, _VIEW)
    return {"id": sp["id"], "href": f"{origin}{BASE}/serviceProblem/{sp['id']}", **sp}


class Tmf656Api:
    """Registers the TMF656 read routes on the engine's aiohttp application."""

    def __init__(self, core: Tmf656Core) -> None:
        self._core = core

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{BASE}/serviceProblem", guarded(self._list, "tmf656"))
        r.add_get(BASE + "/serviceProblem/{id}", guarded(self._get, "tmf656"))
        r.add_route("*", BASE + "/{tail:.*}", guarded(self._unknown, "tmf656"))

    async def _unknown(self, request: web.Request) -> web.Response:
        if request.path.startswith(f"{BASE}/serviceProblem"):
            raise Refused(405, "method not allowed", "service problems are made by correlation: read-only")
        raise Refused(404, "not found", f"no resource {request.method} {request.path}")

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        offset, limit = paging(request)
        filters = [(k, v) for k, v in q.items() if k not in ("fields", "offset", "limit")]
        records = self._core.incidents(
            state=None, priority=None, since=None, open_only=False, limit=MAX_LIMIT
        )
        origin = str(request.url.origin())
        found = []
        for record in records:
            sp = service_problem(record, origin)
            if all(attribute(sp, k, numbers=True) == v for k, v in filters):
                found.append(sp)
        page = [select_fields(request, sp) for sp in found[offset : offset + limit]]
        headers = {"X-Total-Count": str(len(found)), "X-Result-Count": str(len(page))}
        return json_response(page, 200, headers)

    async def _get(self, request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        record = self._core.incident(incident_id)
        if record is None:
            raise Refused(404, "not found", f"no service problem {incident_id!r}")
        return json_response(select_fields(request, service_problem(record, str(request.url.origin()))))
