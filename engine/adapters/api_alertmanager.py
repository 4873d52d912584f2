"""The Alertmanager API v2, as the official spec has it, for Prometheus, amtool and other clients.

Spec: ``prometheus/alertmanager`` ``api/v2/openapi.yaml`` (``../shared/standards/alertmanager/``).
Served under ``/api/v2/`` on the engine's HTTP API (``engine.adapters.http``), behind the same
bearer token:

- ``POST /alerts``: Prometheus' alerts in. Each alert becomes a native alarm
  (``engine.model.alertmanager_in.alert_to_alarm``) queued on the alarm topic, journaled and correlated
  like an MQTT alarm. A body that does not follow the spec (not an array, an alert without
  ``labels``, a label value that is not a string, a time that is not RFC 3339) is refused whole;
  an alert that follows it but that Alertmanager refuses too (no label, a bad label name, ending
  before it starts) is left out and named, the others are taken: 400 either way, with a JSON string.
- ``GET /alerts``, ``GET /alerts/groups``: the engine's active alarms as alerts. An alarm
  explained by another (a symptom of an incident's root: our suppression) is ``inhibitedBy`` the
  root's fingerprint; one on an element under maintenance (a ruleset window or a silence) is
  ``silencedBy`` the window's rule or the silence's id. A group is an incident.
- ``GET/POST /silences``, ``GET/DELETE /silence/{id}``: silences are maintenance windows added at
  run time (``engine.core.forms.silences``), through the core's intake like every change of state.
- ``GET /status``, ``GET /receivers``.

Intended deviations from Alertmanager (docs/api.md lists them): silences match elements (labels
``ne_id``, ``instance``, ``site``, ``region``, ``service``), not alerts; no alert is
``unprocessed`` (each is applied when received); an alarm's ``endsAt`` is Go's zero time unless the
alert that raised it gave one (the engine's alarms end with a clear, not a timeout); labels of an
alert are those Prometheus posted while the engine runs, rebuilt from the alarm after a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson
import structlog
from aiohttp import web

from engine import __version__
from engine.adapters.http import Overloaded, retry_after
from engine.core.forms.silences import Matcher, MatcherError, Silence, matches_all, parse_matcher
from engine.model.alertmanager_in import alert_to_alarm
from engine.model.linear_regex import LinearRegex, RegexRefused, linear_regex
from engine.model.timeutil import BeforeEpoch, format_time, parse_time
from engine.model.wording import json_type_name

if TYPE_CHECKING:
    from engine.core.query import AlarmView, CoreQuery

__all__ = ["AlertmanagerApi", "AlertmanagerCore"]

log = structlog.get_logger("engine.api.alertmanager")

BASE: Final = "/api/v2"
GO_ZERO_TIME: Final = "0001-01-01T00:00:00.000Z"  # Alertmanager's "unset"
MAX_REMEMBERED: Final = 10_000  # alerts whose posted labels are kept for the read side
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


class AlertmanagerCore(Protocol):
    """What this API needs from the daemon."""

    @property
    def query(self) -> CoreQuery: ...  # the core's read-only query interface (engine.core.query)

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None: ...

    def alarm_topic(self) -> str: ...

    async def silence(self, command: dict[str, Any]) -> dict[str, Any] | None: ...

    def receiver_names(self) -> list[str]: ...


class _Refused(Exception):
    """An answer of the spec's kind: the status and a JSON string body."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = orjson.dumps(obj)
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


# ------------------------------------------------------------------------------- request reading


def _flag(query: Mapping[str, str], name: str, default: bool = True) -> bool:
    text = query.get(name)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _Refused(400, f"{name} in query must be of type boolean: {text!r}")


def _filters(request: web.Request) -> list[Matcher]:
    out = []
    for text in request.query.getall("filter", []):
        try:
            out.append(parse_matcher(text))
        except MatcherError as exc:
            raise _Refused(400, f"filter: {exc}") from None
    return out


def _receiver_re(query: Mapping[str, str]) -> LinearRegex | None:
    """Alertmanager's ``^(?:receiver)$``, in RE2 as there (linear time; what RE2 refuses is a 400)."""
    text = query.get("receiver")
    if text is None:
        return None
    try:
        return linear_regex(f"^(?:{text})$")
    except RegexRefused as exc:
        refused = RegexRefused(text, exc.reason, unsupported=exc.unsupported)
        raise _Refused(400, f"receiver: {refused.describe('regular expression')}") from None


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise _Refused(400, "body: expected JSON, got nothing")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Refused(400, f"body: malformed JSON: {exc}") from None


def _time_field(obj: Mapping[str, Any], name: str, where: str, errors: list[str]) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(f"{where}.{name}: expected an RFC 3339 date-time string, got {json_type_name(value)}")
        return None
    try:
        return parse_time(value)
    except BeforeEpoch:  # Go's zero time, which amtool posts for "unset": 0, as callers read it
        return 0.0
    except ValueError:
        errors.append(f"{where}.{name}: expected an RFC 3339 date-time, got {value!r}")
        return None


def _label_set(obj: Mapping[str, Any], name: str, where: str, errors: list[str]) -> None:
    value = obj.get(name)
    if not isinstance(value, dict):
        errors.append(f"{where}.{name}: expected an object of strings, got {json_type_name(value)}")
        return
    for k, v in value.items():
        if not isinstance(v, str):
            errors.append(f"{where}.{name}.{k}: expected a string, got {json_type_name(v)}")


def alert_schema_errors(alerts: Any) -> list[str]:
    """Where the body breaks the spec's ``postableAlerts`` (each reason names its place)."""
    if not isinstance(alerts, list):
        return [f"body: expected a JSON array of alerts, got {json_type_name(alerts)}"]
    errors: list[str] = []
    for i, alert in enumerate(alerts):
        where = f"[{i}]"
        if not isinstance(alert, dict):
            errors.append(f"{where}: expected an object, got {json_type_name(alert)}")
            continue
        if "labels" not in alert:
            errors.append(f"{where}.labels: required")
        else:
            _label_set(alert, "labels", where, errors)
        if "annotations" in alert:
            _label_set(alert, "annotations", where, errors)
        for name in ("startsAt", "endsAt"):
            _time_field(alert, name, where, errors)
        url = alert.get("generatorURL")
        if url is not None and not isinstance(url, str):
            errors.append(f"{where}.generatorURL: expected a URI string, got {json_type_name(url)}")
    return errors


def alert_error(alert: Mapping[str, Any]) -> str | None:
    """Why Alertmanager would refuse this (spec-valid) alert, or ``None``."""
    labels = alert["labels"]
    if not labels:
        return "at least one label pair required"
    for name in labels:
        if not _LABEL_NAME.match(name):
            return f"invalid label set: invalid name {name!r}"
    starts = _time_field(alert, "startsAt", "", [])
    ends = _time_field(alert, "endsAt", "", [])
    if starts is not None and ends is not None and starts > 0 and ends > 0 and ends < starts:
        return "start time must be before end time"
    return None


def _matcher_json(obj: Any, where: str) -> Matcher:
    if not isinstance(obj, dict):
        raise _Refused(400, f"{where}: expected an object, got {json_type_name(obj)}")
    for name, kind in (("name", str), ("value", str), ("isRegex", bool)):
        if name not in obj:
            raise _Refused(400, f"{where}.{name}: required")
        if not isinstance(obj[name], kind):
            expected = json_type_name(kind())
            raise _Refused(400, f"{where}.{name}: expected a {expected}, got {json_type_name(obj[name])}")
    is_equal = obj.get("isEqual", True)
    if not isinstance(is_equal, bool):
        raise _Refused(400, f"{where}.isEqual: expected a boolean, got {json_type_name(is_equal)}")
    try:
        return Matcher(obj["name"], obj["value"], obj["isRegex"], is_equal)
    except MatcherError as exc:
        raise _Refused(400, f"{where}: {exc}") from None


def postable_silence(obj: Any) -> tuple[str | None, dict[str, Any]]:
    """The spec's ``postableSilence`` → (id to update or None, the silence's fields). Raises ``_Refused``."""
    if not isinstance(obj, dict):
        raise _Refused(400, f"body: expected a silence object, got {json_type_name(obj)}")
    for name in ("matchers", "startsAt", "endsAt", "createdBy", "comment"):
        if name not in obj:
            raise _Refused(400, f"{name}: required")
    matchers = obj["matchers"]
    if not isinstance(matchers, list) or not matchers:
        raise _Refused(400, "matchers: expected a non-empty array of matchers")
    parsed = [_matcher_json(m, f"matchers[{i}]") for i, m in enumerate(matchers)]
    times: dict[str, float] = {}
    for name in ("startsAt", "endsAt"):
        errors: list[str] = []
        t = _time_field(obj, name, "body", errors)
        if errors or t is None:
            raise _Refused(400, errors[0] if errors else f"{name}: expected an RFC 3339 date-time")
        times[name] = t
    for name in ("createdBy", "comment"):
        if not isinstance(obj[name], str):
            raise _Refused(400, f"{name}: expected a string, got {json_type_name(obj[name])}")
        if len(obj[name]) > 4096:
            raise _Refused(400, f"{name}: is {len(obj[name])} characters, limit is 4096")
    sid = obj.get("id")
    if sid is not None and not isinstance(sid, str):
        raise _Refused(400, f"id: expected a string, got {json_type_name(sid)}")
    fields = {
        "matchers": [m.to_json() for m in parsed],
        "startsAt": times["startsAt"],
        "endsAt": times["endsAt"],
        "createdBy": obj["createdBy"],
        "comment": obj["comment"],
    }
    return (sid or None), fields


# ------------------------------------------------------------------------------------- the API


class AlertmanagerApi:
    """Registers the Alertmanager API v2 routes on the engine's aiohttp application."""

    def __init__(self, core: AlertmanagerCore, *, clock: Callable[[], float] = time.time) -> None:
        self._core = core
        self._clock = clock
        self._started = clock()
        # alarm key → what Prometheus posted (labels, annotations, endsAt, generatorURL), for the read side
        self._posted: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.forgotten = 0  # posted label sets dropped from the bounded memory (oldest first)

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post(f"{BASE}/alerts", self._wrap(self._post_alerts))
        r.add_get(f"{BASE}/alerts", self._wrap(self._get_alerts))
        r.add_get(f"{BASE}/alerts/groups", self._wrap(self._get_groups))
        r.add_get(f"{BASE}/status", self._wrap(self._status))
        r.add_get(f"{BASE}/receivers", self._wrap(self._receivers))
        r.add_get(f"{BASE}/silences", self._wrap(self._get_silences))
        r.add_post(f"{BASE}/silences", self._wrap(self._post_silence))
        r.add_get(BASE + "/silence/{id}", self._wrap(self._get_silence))
        r.add_delete(BASE + "/silence/{id}", self._wrap(self._delete_silence))

    @staticmethod
    def _wrap(
        handler: Callable[[web.Request], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Errors as the spec has them: a JSON string body (400, 404, 500, 503)."""

        async def handle(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except _Refused as exc:
                return _json(exc.message, exc.status, exc.headers)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("alertmanager api handler failed", method=request.method, path=request.path)
                return _json("internal error: see the engine's log", 500)

        return handle

    # -- alerts in ---------------------------------------------------------------------------

    async def _post_alerts(self, request: web.Request) -> web.Response:
        alerts = await _body(request)
        errors = alert_schema_errors(alerts)
        if errors:
            raise _Refused(400, "; ".join(errors))
        now = self._clock()
        refused: list[str] = []
        payloads: list[bytes] = []
        for i, alert in enumerate(alerts):
            reason = alert_error(alert)
            if reason is not None:
                refused.append(f"[{i}]: {reason}")
                continue
            alarm = alert_to_alarm(alert, now=now)
            self._remember(alarm["alarm_id"], alert)
            payloads.append(orjson.dumps(alarm))
        topic = self._core.alarm_topic()
        for n, payload in enumerate(payloads):
            try:
                await self._core.ingest(topic, payload, source="http")
            except Overloaded as exc:
                seconds = exc.retry_after if math.isfinite(exc.retry_after) else 1.0
                raise _Refused(
                    503,
                    f"overloaded: {exc}; {n} of {len(payloads)} alerts queued, retry the rest",
                    {"Retry-After": str(max(1, math.ceil(seconds)))},
                ) from None
        if refused:
            raise _Refused(400, "; ".join(refused))
        return web.Response(status=200, content_type="application/json")

    def _remember(self, key: str, alert: Mapping[str, Any]) -> None:
        self._posted[key] = {
            "labels": dict(alert["labels"]),
            "annotations": dict(alert.get("annotations") or {}),
            "endsAt": alert.get("endsAt"),
            "generatorURL": alert.get("generatorURL"),
        }
        self._posted.move_to_end(key)
        while len(self._posted) > MAX_REMEMBERED:
            self._posted.popitem(last=False)
            self.forgotten += 1

    # -- alerts out --------------------------------------------------------------------------

    def _receiver_list(self) -> list[str]:
        return self._core.receiver_names() or ["engine"]

    def _alerts(self, request: web.Request, *, for_groups: bool) -> list[tuple[AlarmView, dict[str, Any]]]:
        q = request.query
        active, silenced, inhibited = _flag(q, "active"), _flag(q, "silenced"), _flag(q, "inhibited")
        _flag(q, "unprocessed")  # checked; no alert is ever unprocessed, so it leaves none out
        if for_groups:
            _flag(q, "muted")  # checked here; the groups handler applies it
        matchers = _filters(request)
        receiver = _receiver_re(q)
        receivers = self._receiver_list()
        if receiver is not None and not any(receiver.search(n) for n in receivers):
            return []
        core = self._core.query
        now = max(self._clock(), core.clock)
        out = []
        for alarm in core.active_alarms():
            view = self._alert(core, alarm, receivers, now)
            if not matches_all(matchers, view["labels"]):
                continue
            status = view["status"]
            if not active and status["state"] == "active":
                continue
            if not silenced and status["silencedBy"]:
                continue
            if not inhibited and status["inhibitedBy"]:
                continue
            out.append((alarm, view))
        out.sort(key=lambda item: item[1]["fingerprint"])
        return out

    def _alert(self, q: CoreQuery, alarm: AlarmView, receivers: list[str], now: float) -> dict[str, Any]:
        posted = self._posted.get(alarm.key)
        labels = posted["labels"] if posted is not None else self._labels(q, alarm)
        annotations = posted["annotations"] if posted is not None else {}
        if not annotations and alarm.text:
            annotations = {"summary": alarm.text}
        sup = q.suppression(alarm.key)
        silenced_by = q.silenced_by(alarm.ne_id, now)
        inhibited_by = [_fingerprint(sup.root)] if sup is not None else []
        ends = GO_ZERO_TIME
        if posted is not None and isinstance(posted["endsAt"], str):
            with contextlib.suppress(ValueError):  # BeforeEpoch included: amtool posts Go's zero time
                t = parse_time(posted["endsAt"])
                ends = format_time(t) if t > 0 else GO_ZERO_TIME
        view: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "receivers": [{"name": n} for n in receivers],
            "fingerprint": _fingerprint(alarm.key),
            "startsAt": format_time(alarm.first_seen),
            "updatedAt": format_time(alarm.last_seen),
            "endsAt": ends,
            "status": {
                "state": "suppressed" if silenced_by or inhibited_by else "active",
                "silencedBy": silenced_by,
                "inhibitedBy": inhibited_by,
                "mutedBy": [],
            },
        }
        if posted is not None and isinstance(posted["generatorURL"], str):
            view["generatorURL"] = posted["generatorURL"]
        return view

    @staticmethod
    def _labels(q: CoreQuery, alarm: AlarmView) -> dict[str, str]:
        """An engine alarm's labels: its fields, and its element's site, region and type."""
        labels = {
            "alertname": alarm.probable_cause,
            "ne_id": alarm.ne_id,
            "severity": alarm.severity,
            "event_type": alarm.event_type,
            "alarm_id": alarm.key,
        }
        if alarm.specific_problem:
            labels["specific_problem"] = alarm.specific_problem
        if alarm.ne_id in q.topology:
            el = q.topology.element(alarm.ne_id)
            labels["element_type"] = el.type
            if el.site is not None:
                labels["site"] = el.site
            if el.region is not None:
                labels["region"] = el.region
        return labels

    async def _get_alerts(self, request: web.Request) -> web.Response:
        return _json([view for _, view in self._alerts(request, for_groups=False)])

    async def _get_groups(self, request: web.Request) -> web.Response:
        """One group per incident (labels ``incident_id``); alarms in none form the group ``{}``."""
        muted = _flag(request.query, "muted")
        q = self._core.query
        groups: dict[str, list[dict[str, Any]]] = {}
        for alarm, view in self._alerts(request, for_groups=True):
            inc = q.incident_of(alarm.key)
            groups.setdefault(inc.id if inc is not None else "", []).append(view)
        receiver = {"name": self._receiver_list()[0]}
        out = []
        for incident_id in sorted(groups):
            alerts = groups[incident_id]
            if not muted and all(a["status"]["state"] == "suppressed" for a in alerts):
                continue
            labels = {"incident_id": incident_id} if incident_id else {}
            out.append({"labels": labels, "routeLabels": {}, "receiver": receiver, "alerts": alerts})
        return _json(out)

    # -- status ------------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        names = self._receiver_list()
        original = "route:\n  receiver: " + orjson.dumps(names[0]).decode() + "\nreceivers:\n"
        original += "".join(f"  - name: {orjson.dumps(n).decode()}\n" for n in names)
        return _json(
            {
                "cluster": {"status": "disabled", "peers": []},
                "versionInfo": {
                    "version": __version__,
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "none (soc-correlation-engine, Python)",
                },
                "config": {"original": original},
                "uptime": format_time(self._started),
            }
        )

    async def _receivers(self, request: web.Request) -> web.Response:
        return _json([{"name": n} for n in self._receiver_list()])

    # -- silences ----------------------------------------------------------------------------

    def _silence_view(self, s: Silence, now: float) -> dict[str, Any]:
        return {
            "id": s.id,
            "status": {"state": s.state(now)},
            "updatedAt": format_time(s.updated_at),
            "matchers": [m.to_json() for m in s.matchers],
            "startsAt": format_time(s.starts_at),
            "endsAt": format_time(s.ends_at),
            "createdBy": s.created_by,
            "comment": s.comment,
            "annotations": {},
        }

    async def _get_silences(self, request: web.Request) -> web.Response:
        q = request.query
        wanted = {
            "active": _flag(q, "active"),
            "expired": _flag(q, "expired"),
            "pending": _flag(q, "pending"),
        }
        matchers = _filters(request)
        core = self._core.query
        now = max(self._clock(), core.clock)
        out = []
        for s in core.silences():
            if not wanted[s.state(now)]:
                continue
            # Alertmanager: a filter matches the labels a silence's equality matchers spell out
            spelled = {m.name: m.value for m in s.matchers if not m.is_regex and m.is_equal}
            if matches_all(matchers, spelled):
                out.append(self._silence_view(s, now))
        order = {"active": 0, "pending": 1, "expired": 2}
        out.sort(key=lambda v: (order[v["status"]["state"]], v["endsAt"], v["id"]))
        return _json(out)

    def _find(self, request: web.Request) -> Silence:
        sid = request.match_info["id"]
        found = self._core.query.silence(sid)
        if found is None:
            raise _Refused(404, f"silence {sid} not found")
        return found

    async def _get_silence(self, request: web.Request) -> web.Response:
        found = self._find(request)
        return _json(self._silence_view(found, max(self._clock(), self._core.query.clock)))

    async def _post_silence(self, request: web.Request) -> web.Response:
        replaces, fields = postable_silence(await _body(request))
        now = self._clock()
        fields["startsAt"] = max(fields["startsAt"], now)  # Alertmanager: a start in the past is now
        silence = {"id": str(uuid.uuid4()), "updatedAt": now, **fields}
        result = await self._command({"op": "set", "silence": silence, "replaces": replaces})
        log.info("silence set", silence_id=result["id"], replaces=replaces, by=fields["createdBy"])
        return _json({"silenceID": result["id"]})

    async def _delete_silence(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        await self._command({"op": "expire", "id": sid})
        log.info("silence expired", silence_id=sid)
        return web.Response(status=200, content_type="application/json")

    async def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await self._core.silence(command)
        except Overloaded as exc:
            raise _Refused(503, f"overloaded: {exc}", {"Retry-After": retry_after(exc)}) from None
        if result is None:
            raise _Refused(500, "internal error: see the engine's log")
        if "error" in result:
            raise _Refused(404 if result.get("not_found") else 400, str(result["error"]))
        return result


def _fingerprint(key: str) -> str:
    """An alert's fingerprint: an Alertmanager alert's own (``am:<fp>``), else 16 hex digits of the
    SHA-256 of the alarm key."""
    if key.startswith("am:") and len(key) == 19:
        return key[3:]
    return hashlib.sha256(key.encode()).hexdigest()[:16]
