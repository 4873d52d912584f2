"""What the TM Forum Open APIs served here (TMF642, TMF656) share: the ``Error`` body, refusals,
JSON responses, ``offset``/``limit`` paging, ``fields`` selection and attribute filters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
import structlog
from aiohttp import web

from engine.adapters.http import Overloaded, retry_after

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Refused",
    "attribute",
    "error_response",
    "guarded",
    "json_response",
    "paging",
    "select_fields",
]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000


class Refused(Exception):
    """A request refused with a TMF ``Error`` (status, reason, message)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.message = message


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def error_response(status: int, reason: str, message: str = "") -> web.Response:
    """A TMF ``Error`` object (``code``, ``reason``, ``status``, ``message`` when there is one)."""
    body = {"code": str(status), "reason": reason, "status": str(status)}
    if message:
        body["message"] = message
    return json_response(body, status)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def guarded(handler: Handler, api: str) -> Handler:
    """``handler`` answering as the TMF APIs do: a refusal as its ``Error``, an overloaded core as
    503 with ``Retry-After``, anything unexpected logged (with ``api``) and answered 500."""

    async def handle(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except Refused as exc:
            return error_response(exc.status, exc.reason, exc.message)
        except Overloaded as exc:
            response = error_response(503, "overloaded", str(exc))
            response.headers["Retry-After"] = retry_after(exc)
            return response
        except web.HTTPException:
            raise
        except Exception:
            structlog.get_logger(f"engine.api.{api}").exception(
                f"{api} handler failed", method=request.method, path=request.path
            )
            return error_response(500, "internal error", "see the engine's log")

    return handle


def paging(request: web.Request) -> tuple[int, int]:
    """``offset`` and ``limit`` of a list, each given at most once; ``limit`` capped at MAX_LIMIT."""
    q = request.query
    out = {"offset": 0, "limit": DEFAULT_LIMIT}
    for name in out:
        values = q.getall(name, [])
        if len(values) > 1:
            raise Refused(400, f"invalid query parameter {name!r}", "given more than once")
        if values:
            text = values[0]
            low = 0 if name == "offset" else 1
            if not text.isdigit() or not text.isascii() or not low <= int(text) <= 10**9:
                raise Refused(400, f"invalid query parameter {name!r}", f"expected an integer ≥ {low}")
            out[name] = min(int(text), MAX_LIMIT) if name == "limit" else int(text)
    return out["offset"], out["limit"]


def select_fields(request: web.Request, resource: dict[str, Any]) -> dict[str, Any]:
    """The attributes ``fields`` names (with ``id`` and ``href`` always), or all of them."""
    text = request.query.get("fields")
    if not text:
        return resource
    wanted = {f.strip() for f in text.split(",") if f.strip()} | {"id", "href"}
    return {k: v for k, v in resource.items() if k in wanted}


def attribute(resource: Mapping[str, Any], path: str, *, numbers: bool) -> str | None:
    """The value at a dotted ``path`` as a filter compares it: a string, a boolean as
    ``true``/``false``, a number as its text when ``numbers``; else None."""
    value: Any = resource
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if numbers and isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else None
