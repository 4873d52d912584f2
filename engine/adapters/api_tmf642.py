"""TMF642 Alarm Management API v4 as a server, so OSS/EMS systems can push and manage alarms.

Spec: TM Forum TMF642 v4.0.0 swagger (``../shared/standards/tmf642/``). Served under
``/tmf-api/alarmManagement/v4`` on the engine's HTTP API, behind the same bearer token:

- ``POST /alarm``: an ``Alarm_Create`` is checked against the swagger's rules (required fields,
  types, date-times: ``alarm_create_errors``) and against the engine's own validation (the same
  decoder the core uses: X.733 vocabulary, a known element), every reason naming the TMF field;
  then queued on the alarm topic, journaled and correlated like an MQTT alarm. 201 with the alarm.
- ``GET /alarm`` (``fields``, ``offset``, ``limit``, attribute filters such as
  ``perceivedSeverity=critical`` or ``alarmedObject.id=olt-7``), ``GET /alarm/{id}``: the alarms of
  the engine's table, whatever their source, as TMF642 alarms.
- ``PATCH /alarm/{id}``: acknowledge (``ackState``, ``ackUserId``, ``ackSystemId``), clear
  (``state: cleared`` / ``alarmClearedTime``, through the core like any clear), comment.
- ``POST /ackAlarms``, ``POST /clearAlarms``: the task resources, by ``alarmPattern``.
- ``POST /hub``, ``DELETE /hub/{id}``: subscriptions; ``AlarmCreateEvent``,
  ``AlarmAttributeValueChangeEvent`` (severity, acknowledgement) and ``AlarmStateChangeEvent``
  (cleared) are POSTed to ``{callback}/listener/{event}`` for every alarm of the engine.

The acknowledgement state and comments of an alarm, the task resources and the subscriptions are
this adapter's (bounded): the engine acknowledges incidents, not alarms, so they do not change
correlation. With a store (the daemon's) every change is written and committed before the answer,
and all of it is loaded when the application starts: an acknowledgement, a task and a subscription
survive a restart and a ``kill -9``. The state of an alarm no longer active goes ``KEEP_INACTIVE``
after its last change (docs/api.md). Group/ungroup are not offered: the
engine groups alarms itself (incidents).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote

import aiohttp
import orjson
import structlog
from aiohttp import web

from engine.adapters.tmf import (
    Refused,
    attribute,
    guarded,
    json_response,
    paging,
    select_fields,
)
from engine.core.alarms import alarm_key
from engine.errors import InvalidMessage
from engine.model.timeutil import BeforeEpoch, format_time, parse_time
from engine.model.wording import json_type_name

if TYPE_CHECKING:
    from engine.adapters.store import Store
    from engine.core.query import AlarmView, CoreQuery

__all__ = ["Tmf642Api", "Tmf642Core", "alarm_create_errors"]

log = structlog.get_logger("engine.api.tmf642")

BASE: Final = "/tmf-api/alarmManagement/v4"
MAX_OVERLAYS: Final = 10_000  # alarms with an acknowledgement or comments kept
MAX_SUBSCRIPTIONS: Final = 100
MAX_TASKS: Final = 1000
EVENT_QUEUE: Final = 1000  # events waiting per subscription; more are dropped and counted
WATCH_INTERVAL: Final = 0.5  # seconds between two looks at the alarm table for events
KEEP_INACTIVE: Final = 7 * 86400.0  # the state of an alarm no longer active, after its last change
PURGE_INTERVAL: Final = 60.0  # seconds between two purges of that state

_STR: Final = "string"
_BOOL: Final = "boolean"
_TIME: Final = "date-time"
# Alarm_Create of the v4.0.0 swagger: property → type; nested objects → their string properties.
ALARM_CREATE_REQUIRED: Final = (
    "alarmType",
    "perceivedSeverity",
    "probableCause",
    "alarmedObject",
    "sourceSystemId",
    "state",
    "alarmRaisedTime",
)
_SCALARS: Final = {
    **dict.fromkeys(
        (
            "ackState",
            "ackSystemId",
            "ackUserId",
            "alarmDetails",
            "alarmType",
            "alarmedObjectType",
            "clearSystemId",
            "clearUserId",
            "externalAlarmId",
            "perceivedSeverity",
            "plannedOutageIndicator",
            "probableCause",
            "proposedRepairedActions",
            "reportingSystemId",
            "sourceSystemId",
            "specificProblem",
            "state",
            "@baseType",
            "@schemaLocation",
            "@type",
        ),
        _STR,
    ),
    **dict.fromkeys(("alarmEscalation", "isRootCause", "serviceAffecting"), _BOOL),
    **dict.fromkeys(("alarmChangedTime", "alarmClearedTime", "alarmRaisedTime", "alarmReportingTime"), _TIME),
}
_REF: Final = ("id", "href", "name", "@baseType", "@schemaLocation", "@type", "@referredType")
_OBJECTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # property: (string properties, required ones)
    "alarmedObject": (("id", "href", "@baseType", "@schemaLocation", "@type"), ()),
    "crossedThresholdInformation": (
        (
            "direction",
            "granularity",
            "indicatorName",
            "indicatorUnit",
            "observedValue",
            "thresholdCrossingDescription",
        ),
        (),
    ),
}
_ARRAYS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "affectedService": (("id", "href", "@baseType", "@schemaLocation", "@type"), ()),
    "comment": (("comment", "systemId", "time", "userId", "@baseType", "@schemaLocation", "@type"), ()),
    "correlatedAlarm": (_REF, ("id",)),
    "parentAlarm": (_REF, ("id",)),
    "place": (
        ("id", "href", "name", "role", "@baseType", "@schemaLocation", "@type", "@referredType"),
        ("role",),
    ),
}
_PATCHABLE: Final = frozenset(
    {
        "ackState",
        "ackSystemId",
        "ackUserId",
        "state",
        "clearSystemId",
        "clearUserId",
        "alarmClearedTime",
        "comment",
    }
)
_ACK_STATES: Final = ("acknowledged", "unacknowledged")


class Tmf642Core(Protocol):
    """What this API needs from the daemon."""

    @property
    def query(self) -> CoreQuery: ...  # the core's read-only query interface (engine.core.query)

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None: ...

    def alarm_topic(self) -> str: ...


def _check_scalar(value: Any, kind: str, field: str, errors: list[tuple[str, str]]) -> None:
    if kind == _BOOL:
        if not isinstance(value, bool):
            errors.append((field, f"expected a boolean, got {json_type_name(value)}"))
    elif not isinstance(value, str):
        errors.append((field, f"expected a string, got {json_type_name(value)}"))
    elif kind == _TIME:
        try:
            parse_time(value)
        except BeforeEpoch as exc:
            errors.append((field, str(exc)))
        except ValueError:
            errors.append((field, f"expected an RFC 3339 date-time, got {value!r}"))


def _check_object(
    value: Any, spec: tuple[tuple[str, ...], tuple[str, ...]], field: str, errors: list[tuple[str, str]]
) -> None:
    if not isinstance(value, dict):
        errors.append((field, f"expected an object, got {json_type_name(value)}"))
        return
    strings, required = spec
    for name in required:
        if name not in value:
            errors.append((f"{field}.{name}", "required"))
    for name in strings:
        if name in value:
            kind = _TIME if name == "time" else _STR
            _check_scalar(value[name], kind, f"{field}.{name}", errors)


def alarm_create_errors(obj: Any) -> list[tuple[str, str]]:
    """Where ``obj`` breaks the swagger's ``Alarm_Create``: ``(TMF field, reason)`` for each."""
    if not isinstance(obj, dict):
        return [("", f"expected an Alarm object, got {json_type_name(obj)}")]
    errors: list[tuple[str, str]] = []
    for name in ALARM_CREATE_REQUIRED:
        if name not in obj:
            errors.append((name, "required"))
    return errors + alarm_type_errors(obj)


def alarm_type_errors(obj: Mapping[str, Any], where: str = "") -> list[tuple[str, str]]:
    """Properties of an ``Alarm`` (or an alarm pattern) whose value is not of the swagger's type."""
    errors: list[tuple[str, str]] = []
    for key, value in obj.items():
        name = where + key
        if key in _SCALARS:
            _check_scalar(value, _SCALARS[key], name, errors)
        elif key in _OBJECTS:
            _check_object(value, _OBJECTS[key], name, errors)
        elif key in _ARRAYS:
            if not isinstance(value, list):
                errors.append((name, f"expected an array, got {json_type_name(value)}"))
                continue
            for i, item in enumerate(value):
                _check_object(item, _ARRAYS[key], f"{name}[{i}]", errors)
    threshold = obj.get("crossedThresholdInformation")
    if isinstance(threshold, dict) and "threshold" in threshold:
        _check_object(
            threshold["threshold"], (_REF, ("id",)), "crossedThresholdInformation.threshold", errors
        )
    return errors


def _reasons(errors: list[tuple[str, str]]) -> str:
    return "; ".join(f"{f}: {r}" if f else r for f, r in errors)


# --------------------------------------------------------------------------------------- the API


class Tmf642Api:
    """Registers the TMF642 routes and runs the event hub while the application runs."""

    def __init__(
        self,
        core: Tmf642Core,
        *,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
        keep_inactive: float = KEEP_INACTIVE,
    ) -> None:
        self._core = core
        self._clock = clock
        self._store = store  # None: in memory only (lost when the process ends)
        self._keep_inactive = keep_inactive
        self._overlay: OrderedDict[str, dict[str, Any]] = OrderedDict()  # key → TMF-only attributes
        self._noted_at: dict[str, float] = {}  # key → when its attributes last changed
        self._tasks: dict[str, OrderedDict[str, dict[str, Any]]] = {
            "ackAlarms": OrderedDict(),
            "clearAlarms": OrderedDict(),
        }
        self._subs: dict[str, dict[str, Any]] = {}
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._seen: dict[str, tuple[int, bool, str, str]] = {}  # key → (occurrence, active, severity, ack)
        self.events_dropped = 0
        self.events_failed = 0

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post(f"{BASE}/alarm", guarded(self._create, "tmf642"))
        r.add_get(f"{BASE}/alarm", guarded(self._list, "tmf642"))
        r.add_get(BASE + "/alarm/{id:.+}", guarded(self._get, "tmf642"))
        r.add_patch(BASE + "/alarm/{id:.+}", guarded(self._patch, "tmf642"))
        for task in ("ackAlarms", "clearAlarms"):
            r.add_post(f"{BASE}/{task}", guarded(self._task_handler(task), "tmf642"))
            r.add_get(f"{BASE}/{task}", guarded(self._task_list(task), "tmf642"))
            r.add_get(BASE + f"/{task}/{{id}}", guarded(self._task_get(task), "tmf642"))
        r.add_post(f"{BASE}/hub", guarded(self._subscribe, "tmf642"))
        r.add_delete(BASE + "/hub/{id}", guarded(self._unsubscribe, "tmf642"))
        r.add_delete(BASE + "/alarm/{id:.+}", guarded(self._no_delete, "tmf642"))
        r.add_route("*", BASE + "/{tail:.*}", guarded(self._unknown, "tmf642"))  # TMF errors under BASE
        app.cleanup_ctx.append(self._hub)

    async def _no_delete(self, request: web.Request) -> web.Response:
        raise Refused(405, "method not allowed", "alarms end with a clear (PATCH state: cleared)")

    async def _unknown(self, request: web.Request) -> web.Response:
        raise Refused(404, "not found", f"no resource {request.method} {request.path}")

    # -- helpers -----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise Refused(400, "invalid body", "expected a JSON object, got nothing")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Refused(400, "invalid JSON", str(exc)) from None

    def _href(self, request: web.Request | None, key: str) -> str:
        return f"{BASE}/alarm/{quote(key, safe='')}"

    def _resource(self, alarm: AlarmView) -> dict[str, Any]:
        """An engine alarm as a TMF642 ``Alarm``."""
        extra = self._overlay.get(alarm.key, {})
        out: dict[str, Any] = {
            "id": alarm.key,
            "href": self._href(None, alarm.key),
            "alarmType": alarm.event_type[0].upper() + alarm.event_type[1:],
            "perceivedSeverity": alarm.severity if alarm.active else "cleared",
            "probableCause": alarm.probable_cause,
            "alarmedObject": {"id": alarm.ne_id},
            "state": "raised" if alarm.active else "cleared",
            "ackState": "unacknowledged",
            "alarmRaisedTime": format_time(alarm.first_seen),
            "alarmChangedTime": format_time(
                alarm.cleared_time if not alarm.active and alarm.cleared_time else alarm.last_seen
            ),
            "sourceSystemId": extra.get("sourceSystemId", "engine"),
            "@type": "Alarm",
        }
        if alarm.specific_problem:
            out["specificProblem"] = alarm.specific_problem
        if alarm.text:
            out["alarmDetails"] = alarm.text
        if not alarm.active and alarm.cleared_time is not None:
            out["alarmClearedTime"] = format_time(alarm.cleared_time)
        q = self._core.query
        inc = q.incident_of(alarm.key)
        if inc is not None:
            out["isRootCause"] = inc.root == alarm.key
            sup = q.suppression(alarm.key)
            if sup is not None:
                out["parentAlarm"] = [{"id": sup.root, "href": self._href(None, sup.root)}]
        if alarm.threshold_info:
            ti = alarm.threshold_info
            cti = {
                "indicatorName": ti.get("indicator"),
                "direction": ti.get("direction"),
                "observedValue": None if ti.get("observed_value") is None else str(ti["observed_value"]),
                "granularity": ti.get("granularity"),
            }
            out["crossedThresholdInformation"] = {k: v for k, v in cti.items() if v is not None}
        for name in (
            "ackState",
            "ackUserId",
            "ackSystemId",
            "clearUserId",
            "clearSystemId",
            "comment",
            "alarmedObjectType",
            "externalAlarmId",
            "reportingSystemId",
        ):
            if name in extra:
                out[name] = extra[name]
        return out

    def _alarm(self, key: str) -> AlarmView:
        found = self._core.query.alarm(key)
        if found is None:
            raise Refused(404, "not found", f"no alarm {key!r}")
        return found

    def _note(self, key: str, **attrs: Any) -> None:
        extra = self._overlay.setdefault(key, {})
        extra.update({k: v for k, v in attrs.items() if v is not None})
        self._overlay.move_to_end(key)
        now = self._clock()
        self._noted_at[key] = now
        evicted = []
        while len(self._overlay) > MAX_OVERLAYS:
            old, _ = self._overlay.popitem(last=False)
            self._noted_at.pop(old, None)
            evicted.append(old)
        if self._store is not None:
            self._store.tmf642_note(key, extra, now)
            self._store.tmf642_forget(evicted)  # committed by the handler, before it answers

    def _durable(self) -> None:
        """Commit what this request wrote: the answer means it survives a crash."""
        if self._store is not None:
            self._store.commit()

    def _load(self) -> None:
        """What the store kept: alarm states, task resources, subscriptions (with their queues)."""
        if self._store is None:
            return
        for key, state, when in self._store.tmf642_alarm_states()[-MAX_OVERLAYS:]:
            self._overlay[key] = state
            self._noted_at[key] = when
        for task, resource in self._store.tmf642_tasks():
            if task in self._tasks:
                self._tasks[task][resource["id"]] = resource
        for sub in self._store.tmf642_subscriptions()[:MAX_SUBSCRIPTIONS]:
            self._subs[sub["id"]] = sub
            self._queues[sub["id"]] = asyncio.Queue(EVENT_QUEUE)
        log.info(
            "tmf642 state loaded",
            alarms=len(self._overlay),
            tasks=sum(len(t) for t in self._tasks.values()),
            subscriptions=len(self._subs),
        )

    def purge(self, now: float) -> int:
        """Forget the state of alarms not active (cleared, or gone from the table) whose last
        change is older than ``keep_inactive``; return how many."""
        q = self._core.query
        stale = []
        for key, when in self._noted_at.items():
            if when >= now - self._keep_inactive:
                continue
            alarm = q.alarm(key)
            if alarm is None or not alarm.active:
                stale.append(key)
        for key in stale:
            self._overlay.pop(key, None)
            self._noted_at.pop(key, None)
        if stale and self._store is not None:
            self._store.tmf642_forget(stale)
            self._store.commit()
        return len(stale)

    # -- alarms ------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        obj = await self._body(request)
        errors = alarm_create_errors(obj)
        if errors:
            raise Refused(400, "invalid Alarm", _reasons(errors))
        payload = dict(obj)
        if isinstance(obj.get("externalAlarmId"), str) and obj["externalAlarmId"]:
            payload["id"] = obj["externalAlarmId"]  # the sender's identity of the alarm
        topic = self._core.alarm_topic()
        try:
            decoded = self._core.query.validate(topic, payload)
        except InvalidMessage as exc:
            raise Refused(400, "invalid Alarm", _reasons(exc.errors)) from None
        alarm = decoded.alarm
        assert alarm is not None
        await self._core.ingest(topic, orjson.dumps(payload), source="tmf642")
        key = alarm_key(alarm)
        self._note(
            key,
            sourceSystemId=obj["sourceSystemId"],
            alarmedObjectType=obj.get("alarmedObjectType"),
            externalAlarmId=obj.get("externalAlarmId"),
            reportingSystemId=obj.get("reportingSystemId"),
        )
        self._durable()
        found = self._core.query.alarm(key)
        if found is None:  # a clear of an alarm the engine does not hold
            raise Refused(409, "not raised", f"no raised alarm {key!r} to clear")
        body = self._resource(found)
        return json_response(body, 201, {"Location": body["href"]})

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        offset, limit = paging(request)
        filters = [(k, v) for k, v in q.items() if k not in ("fields", "offset", "limit")]
        found = []
        for alarm in sorted(self._core.query.active_alarms(), key=lambda a: (a.first_seen, a.key)):
            resource = self._resource(alarm)
            if all(attribute(resource, k, numbers=False) == v for k, v in filters):
                found.append(resource)
        page = [select_fields(request, r) for r in found[offset : offset + limit]]
        headers = {"X-Total-Count": str(len(found)), "X-Result-Count": str(len(page))}
        return json_response(page, 200, headers)  # the v4 swagger documents no 206

    async def _get(self, request: web.Request) -> web.Response:
        return json_response(select_fields(request, self._resource(self._alarm(request.match_info["id"]))))

    async def _patch(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        alarm = self._alarm(key)
        obj = await self._body(request)
        if not isinstance(obj, dict):
            raise Refused(400, "invalid Alarm_Update", f"expected an object, got {json_type_name(obj)}")
        await self._update(alarm, obj)
        self._durable()
        return json_response(self._resource(self._alarm(key)))

    async def _update(self, alarm: AlarmView, obj: Mapping[str, Any]) -> None:
        """Apply an ``Alarm_Update``: acknowledgement, comments, clear. Refused whole on any error."""
        errors: list[tuple[str, str]] = []
        for name, value in obj.items():
            if name not in _PATCHABLE:
                errors.append((name, f"not modifiable here (only {', '.join(sorted(_PATCHABLE))})"))
            elif name == "comment":
                if not isinstance(value, list):
                    errors.append((name, f"expected an array, got {json_type_name(value)}"))
                else:
                    for i, item in enumerate(value):
                        _check_object(item, _ARRAYS["comment"], f"comment[{i}]", errors)
            else:
                _check_scalar(value, _SCALARS[name], name, errors)
        if "ackState" in obj and obj["ackState"] not in _ACK_STATES:
            errors.append(("ackState", f"expected one of {', '.join(_ACK_STATES)}, got {obj['ackState']!r}"))
        if "state" in obj and obj["state"] != "cleared":
            errors.append(("state", f"only 'cleared' can be set, got {obj['state']!r}"))
        if errors:
            raise Refused(400, "invalid Alarm_Update", _reasons(errors))
        if "ackState" in obj:
            self._note(
                alarm.key,
                ackState=obj["ackState"],
                ackUserId=obj.get("ackUserId"),
                ackSystemId=obj.get("ackSystemId"),
            )
        if "comment" in obj:
            extra = self._overlay.get(alarm.key, {})
            self._note(alarm.key, comment=[*extra.get("comment", []), *obj["comment"]])
        if obj.get("state") == "cleared" or "alarmClearedTime" in obj:
            self._note(alarm.key, clearUserId=obj.get("clearUserId"), clearSystemId=obj.get("clearSystemId"))
            if alarm.active:
                when = parse_time(obj["alarmClearedTime"]) if "alarmClearedTime" in obj else self._clock()
                await self._clear(alarm, when)

    async def _clear(self, alarm: AlarmView, when: float) -> None:
        clear = {
            "ne_id": alarm.ne_id,
            "probable_cause": alarm.probable_cause,
            "event_type": alarm.event_type,
            "severity": "cleared",
            "alarm_id": alarm.key,  # the table's key: the same identity whatever the raise carried
            "event_time": when,
        }
        if alarm.specific_problem:
            clear["specific_problem"] = alarm.specific_problem
        await self._core.ingest(self._core.alarm_topic(), orjson.dumps(clear), source="tmf642")

    # -- task resources ----------------------------------------------------------------------

    def _task_handler(self, task: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            obj = await self._body(request)
            return await self._run_task(task, obj)

        return handle

    async def _run_task(self, task: str, obj: Any) -> web.Response:
        if not isinstance(obj, dict):
            raise Refused(400, f"invalid {task}", f"expected an object, got {json_type_name(obj)}")
        user, system = (
            ("ackUserId", "ackSystemId") if task == "ackAlarms" else ("clearUserId", "clearSystemId")
        )
        required = [user, system, "alarmPattern"] + (["alarmClearedTime"] if task == "clearAlarms" else [])
        errors = [(name, "required") for name in required if name not in obj]
        for name in (user, system):
            if name in obj:
                _check_scalar(obj[name], _STR, name, errors)
        when_field = "ackTime" if task == "ackAlarms" else "alarmClearedTime"
        if when_field in obj:
            _check_scalar(obj[when_field], _TIME, when_field, errors)
        patterns = obj.get("alarmPattern")
        if "alarmPattern" in obj and (not isinstance(patterns, list) or not patterns):
            errors.append(("alarmPattern", "expected a non-empty array of alarm patterns"))
        elif isinstance(patterns, list):
            for i, pattern in enumerate(patterns):
                if isinstance(pattern, dict):
                    errors.extend(alarm_type_errors(pattern, f"alarmPattern[{i}]."))
                else:
                    errors.append(
                        (f"alarmPattern[{i}]", f"expected an object, got {json_type_name(pattern)}")
                    )
        for name in ("id", "href", "ackedAlarm", "clearedAlarm"):
            if name in obj:
                errors.append((name, "set by the server, not by the request"))
        if "state" in obj:
            _check_scalar(obj["state"], _STR, "state", errors)
        if errors:
            raise Refused(400, f"invalid {task}", _reasons(errors))
        assert isinstance(patterns, list)
        targets = [
            a
            for a in self._core.query.active_alarms()
            if any(_matches(self._resource(a), p) for p in patterns)
        ]
        done = []
        for alarm in targets:
            if task == "ackAlarms":
                self._note(alarm.key, ackState="acknowledged", ackUserId=obj[user], ackSystemId=obj[system])
            else:
                await self._update(
                    alarm,
                    {
                        "state": "cleared",
                        "alarmClearedTime": obj["alarmClearedTime"],
                        user: obj[user],
                        system: obj[system],
                    },
                )
            done.append({"id": alarm.key, "href": self._href(None, alarm.key)})
        tid = str(uuid.uuid4())
        resource = {
            **obj,
            "id": tid,
            "href": f"{BASE}/{task}/{tid}",
            "state": "done",
            ("ackedAlarm" if task == "ackAlarms" else "clearedAlarm"): done,
        }
        kept = self._tasks[task]
        kept[tid] = resource
        while len(kept) > MAX_TASKS:
            kept.popitem(last=False)
        if self._store is not None:
            self._store.tmf642_task(task, resource, self._clock(), keep=MAX_TASKS)
        self._durable()
        log.info(f"tmf642 {task}", task_id=tid, alarms=len(done))
        return json_response(resource, 201, {"Location": resource["href"]})

    def _task_list(self, task: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            offset, limit = paging(request)
            found = list(self._tasks[task].values())
            page = [select_fields(request, r) for r in found[offset : offset + limit]]
            headers = {"X-Total-Count": str(len(found)), "X-Result-Count": str(len(page))}
            return json_response(page, 200, headers)  # the v4 swagger documents no 206

        return handle

    def _task_get(self, task: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            found = self._tasks[task].get(request.match_info["id"])
            if found is None:
                raise Refused(404, "not found", f"no {task} task {request.match_info['id']!r}")
            return json_response(found)

        return handle

    # -- hub ---------------------------------------------------------------------------------

    async def _subscribe(self, request: web.Request) -> web.Response:
        obj = await self._body(request)
        if not isinstance(obj, dict):
            raise Refused(
                400, "invalid EventSubscriptionInput", f"expected an object, got {json_type_name(obj)}"
            )
        callback = obj.get("callback")
        if not isinstance(callback, str) or not callback.startswith(("http://", "https://")):
            raise Refused(400, "invalid EventSubscriptionInput", "callback: required, an http(s) URL")
        query = obj.get("query")
        if query is not None and not isinstance(query, str):
            raise Refused(
                400,
                "invalid EventSubscriptionInput",
                f"query: expected a string, got {json_type_name(query)}",
            )
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise Refused(409, "too many subscriptions", f"at most {MAX_SUBSCRIPTIONS}")
        sid = str(uuid.uuid4())
        sub = {"id": sid, "callback": callback, **({"query": query} if query is not None else {})}
        if self._store is not None:
            self._store.tmf642_subscribe(sub, self._clock())
            self._store.commit()
        self._subs[sid] = sub
        self._queues[sid] = asyncio.Queue(EVENT_QUEUE)
        log.info("tmf642 subscription", subscription_id=sid, callback=callback)
        return json_response(sub, 201, {"Location": f"{BASE}/hub/{sid}"})

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if self._subs.pop(sid, None) is None:
            raise Refused(404, "not found", f"no subscription {sid!r}")
        self._queues.pop(sid, None)
        if self._store is not None:
            self._store.tmf642_unsubscribe(sid)
            self._store.commit()
        return web.Response(status=204)

    async def _hub(self, app: web.Application) -> AsyncIterator[None]:
        """While the application runs: watch the alarm table, deliver events to subscribers."""
        self._load()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            tasks = [
                asyncio.create_task(self._watch(), name="tmf642-watch"),
                asyncio.create_task(self._deliver(session), name="tmf642-deliver"),
            ]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def changes(self) -> list[tuple[str, dict[str, Any]]]:
        """Events since the last look: (event type, alarm resource), in table order."""
        out: list[tuple[str, dict[str, Any]]] = []
        current: dict[str, tuple[int, bool, str, str]] = {}
        q = self._core.query
        for key in list(self._seen) + [a.key for a in q.active_alarms() if a.key not in self._seen]:
            alarm = q.alarm(key)
            if alarm is None or key in current:
                continue
            ack = self._overlay.get(key, {}).get("ackState", "unacknowledged")
            now = (alarm.occurrence, alarm.active, alarm.severity, ack)
            current[key] = now
            before = self._seen.get(key)
            if before is None or before[0] != now[0]:
                if alarm.active or before is None:
                    out.append(("AlarmCreateEvent", self._resource(alarm)))
                if not alarm.active:
                    out.append(("AlarmStateChangeEvent", self._resource(alarm)))
            elif before[1] and not now[1]:
                out.append(("AlarmStateChangeEvent", self._resource(alarm)))
            elif before[2:] != now[2:]:
                out.append(("AlarmAttributeValueChangeEvent", self._resource(alarm)))
        self._seen = current
        return out

    async def _watch(self) -> None:
        self._seen = {}
        self.changes()  # what exists at start is not news
        purged_at = self._clock()
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = self._clock()
            if now - purged_at >= PURGE_INTERVAL:
                self.purge(now)
                purged_at = now
            if not self._subs:
                self.changes()
                continue
            for event_type, alarm in self.changes():
                event = {
                    "eventId": str(uuid.uuid4()),
                    "eventTime": format_time(self._clock()),
                    "eventType": event_type,
                    "event": {"alarm": alarm},
                }
                for sid, sub in self._subs.items():
                    if not _wanted(sub.get("query"), event_type):
                        continue
                    try:
                        self._queues[sid].put_nowait(event)
                    except asyncio.QueueFull:
                        self.events_dropped += 1
                        log.warning("tmf642 event dropped: subscriber queue full", subscription_id=sid)

    async def _deliver(self, session: aiohttp.ClientSession) -> None:
        while True:
            idle = True
            for sid, queue in list(self._queues.items()):
                sub = self._subs.get(sid)
                if sub is None or queue.empty():
                    continue
                idle = False
                event = queue.get_nowait()
                name = event["eventType"][0].lower() + event["eventType"][1:]
                url = sub["callback"].rstrip("/") + f"/listener/{name}"
                for attempt in range(3):
                    try:
                        async with session.post(url, json=event) as r:
                            if r.status < 300:
                                break
                            reason = f"HTTP {r.status}"
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        reason = f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(0.2 * 2**attempt)
                else:
                    self.events_failed += 1
                    log.warning("tmf642 event not delivered", subscription_id=sid, url=url, reason=reason)
            if idle:
                await asyncio.sleep(0.05)


def _matches(resource: Mapping[str, Any], pattern: Mapping[str, Any]) -> bool:
    """TMF642 alarmPattern: every attribute given compares equal (objects: their given attributes)."""
    for name, want in pattern.items():
        have = resource.get(name)
        if isinstance(want, dict):
            if not isinstance(have, dict) or not _matches(have, want):
                return False
        elif have != want:
            return False
    return True


def _wanted(query: str | None, event_type: str) -> bool:
    """A subscription's ``query``: ``eventType=A,B`` selects events; without one, all events."""
    if not query:
        return True
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name.strip() == "eventType":
            return event_type in {v.strip() for v in value.split(",")}
    return True
