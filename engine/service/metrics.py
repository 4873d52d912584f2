"""The daemon's Prometheus metrics, on a private registry.

``Metrics`` owns one ``prometheus_client.CollectorRegistry`` (never the process-global one, so two
engines in one process, or two tests, never collide) and offers one small verb per thing the daemon
observes: ``message("mqtt", "alarm", "accepted")``, ``delivery("noc", "ok", 0.12)``,
``incidents_gauge({("outage", 1): 2})``… ``render()`` gives the text exposition format for
``GET /metrics``. The metric names and labels are part of the API (docs/api.md lists them).

Label values that come from a fixed vocabulary are checked: a typo in the daemon raises
``ValueError`` at once instead of creating a new time series nobody queries. ``invalid(field)``
folds the open-ended field paths of rejected messages (``samples[3].time``, ``metrics.mos``) into a
bounded set, so a sender cannot grow the registry without limit.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from math import isnan
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = [
    "API_AUTH_RESULTS",
    "CORE_PARTS",
    "INCIDENT_STATES",
    "KINDS",
    "LOGIN_RESULTS",
    "NOTICES",
    "OUTCOMES",
    "PRIORITIES",
    "RELOAD_RESULTS",
    "SOURCES",
    "TRANSITIONS",
    "Metrics",
]

SOURCES: Final = ("mqtt", "http", "replay")
KINDS: Final = ("alarm", "samples", "unknown")
OUTCOMES: Final = ("accepted", "invalid")
TRANSITIONS: Final = ("opened", "updated", "resolved")
RELOAD_RESULTS: Final = ("ok", "error")
INCIDENT_STATES: Final = ("outage", "degraded", "at_risk")
LOGIN_RESULTS: Final = ("ok", "refused", "locked_out")  # the dashboard's sign-ins
API_AUTH_RESULTS: Final = ("refused", "locked_out")  # the API's bearer tokens turned down
PRIORITIES: Final = (1, 2, 3, 4, 5)
# Decisions.notices kinds (engine.core.pipeline) and the parts of the core the quarantine names
# (engine.core.containment): each series exists from the start.
NOTICES: Final = ("clear_unknown", "stale_raise", "stale_clear", "late", "clock_ahead", "clock_behind")
CORE_PARTS: Final = ("alarms", "correlator", "groups", "storms", "pairs", "quality", "sla", "incidents")

# Distinct `field` label values kept by soc_invalid_total; later new ones are counted as "other".
MAX_INVALID_FIELDS: Final = 200
MESSAGE_FIELD: Final = "message"  # the field label of errors about the message as a whole ("")
OTHER_FIELD: Final = "other"

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELIVERY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_INDEX = re.compile(r"\[\d+\]")


def _check(name: str, value: str, allowed: Iterable[str]) -> str:
    choices = tuple(allowed)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _count(n: int | float) -> float:
    if n < 0:
        raise ValueError(f"a counter only goes up, got an increment of {n}")
    return float(n)


def field_label(field: str) -> str:
    """The ``field`` label of an error path: indices folded, metric names folded, ``""`` named.

    ``samples[3].time`` → ``samples[].time``, ``metrics.mos`` → ``metrics.*``,
    ``samples[0].metrics.x`` → ``samples[].metrics.*``, ``""`` → ``message``.
    """
    if not field:
        return MESSAGE_FIELD
    folded = _INDEX.sub("[]", field)
    head, sep, _ = folded.partition("metrics.")
    if sep and (not head or head.endswith(".")):
        folded = head + "metrics.*"
    return folded[:64]


class Metrics:
    """Every metric of the daemon on one private registry. Thread-compatible, cheap to call."""

    content_type: str = CONTENT_TYPE_LATEST

    def __init__(self, *, version: str = "0.0.0", receivers: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._messages = Counter(
            "soc_messages_total",
            "Inbound messages by source, kind and validation outcome.",
            ["source", "kind", "outcome"],
            registry=r,
        )
        self._samples = Counter(
            "soc_samples_total", "KPI samples accepted (each sample of a batch).", registry=r
        )
        self._invalid = Counter(
            "soc_invalid_total",
            "Validation errors of rejected messages and samples, by field path (indices folded).",
            ["field"],
            registry=r,
        )
        self._queue = Gauge("soc_intake_queue_depth", "Messages received but not yet processed.", registry=r)
        self._drops = Counter(
            "soc_intake_drops_total",
            "Messages refused or dropped because the intake queue was full.",
            ["source"],
            registry=r,
        )
        self._firings = Counter("soc_rule_firings_total", "Correlation rule firings.", registry=r)
        self._rule_firings = Counter(
            "soc_rule_firings_by_rule_total",
            "Correlation rule firings per rule (its join and its condition parts in classification).",
            ["ruleset", "rule"],
            registry=r,
        )
        self._alarms = Gauge("soc_alarms_active", "Active (raised, not cleared) alarms.", registry=r)
        self._incidents = Gauge(
            "soc_incidents", "Open incidents by state and priority.", ["state", "priority"], registry=r
        )
        self._transitions = Counter(
            "soc_incident_transitions_total",
            "Incident records emitted, by event.",
            ["event"],
            registry=r,
        )
        self._outbox = Gauge(
            "soc_outbox_depth", "Records waiting for delivery, by receiver.", ["receiver"], registry=r
        )
        self._deliveries = Counter(
            "soc_deliveries_total",
            "Delivery attempts by receiver and result.",
            ["receiver", "result"],
            registry=r,
        )
        self._delivery_seconds = Histogram(
            "soc_delivery_seconds",
            "Duration of one delivery attempt, by receiver.",
            ["receiver"],
            buckets=_DELIVERY,
            registry=r,
        )
        self._processing = Histogram(
            "soc_processing_seconds",
            "From receiving a message to the core's decision about it.",
            buckets=_FAST,
            registry=r,
        )
        self._processing_bounds = tuple(self._processing._upper_bounds)
        self._commit = Histogram(
            "soc_journal_commit_seconds", "Duration of one journal commit.", buckets=_FAST, registry=r
        )
        self._reconnects = Counter(
            "soc_mqtt_reconnects_total", "Reconnections to the MQTT broker.", registry=r
        )
        self._dead_letters = Counter("soc_dead_letters_total", "Dead-letter records written.", registry=r)
        self._dead_kept = Gauge(
            "soc_dead_letters_kept", "Dead letters kept in the store (GET /dead-letters).", registry=r
        )
        self._dead_unpublished = Gauge(
            "soc_dead_letters_unpublished",
            "Kept dead letters not yet published on the dead-letter topic.",
            registry=r,
        )
        self._dead_dropped = Counter(
            "soc_dead_letters_dropped_total",
            "Dead letters purged (retention or max_dead_letters) before they were published.",
            registry=r,
        )
        self._reloads = Counter(
            "soc_reloads_total", "Configuration reloads by result.", ["result"], registry=r
        )
        self._notices = Counter(
            "soc_input_notices_total",
            "Inputs applied but worth a look, by kind: clears that match no alarm, stale raises and "
            "clears, events out of order (late), event times clamped to the receive time.",
            ["kind"],
            registry=r,
        )
        self._part_failures = Counter(
            "soc_core_part_failures_total",
            "Failures of a part of the core (contained: the part is quarantined), by part.",
            ["part"],
            registry=r,
        )
        self._quarantined = Gauge(
            "soc_core_quarantined",
            "Parts (or items of a part: a KQI window, an incident) of the core quarantined now, by part.",
            ["part"],
            registry=r,
        )
        self._logins = Counter(
            "soc_dashboard_logins_total",
            "Dashboard sign-ins by result: ok (the form), refused (a wrong token, in the form or a "
            "bearer header), locked_out (not checked: too many failures from the address).",
            ["result"],
            registry=r,
        )
        self._lockouts = Counter(
            "soc_dashboard_lockouts_total",
            "Client addresses locked out of the dashboard's sign-in after too many failures.",
            registry=r,
        )
        self._api_auth = Counter(
            "soc_http_auth_refused_total",
            "API requests turned down for their bearer token, by result: refused (a wrong token, 401), "
            "locked_out (not checked: too many wrong tokens from the address, 429).",
            ["result"],
            registry=r,
        )
        self._api_lockouts = Counter(
            "soc_http_lockouts_total",
            "Client addresses locked out of the API after too many wrong bearer tokens.",
            registry=r,
        )
        self._history_dropped = Counter(
            "soc_dashboard_history_dropped_total",
            "KPI samples left out of the dashboard's chart history (beyond its series limit).",
            registry=r,
        )
        self._build = Gauge("soc_build_info", "Always 1; the version is a label.", ["version"], registry=r)
        self._build.labels(version).set(1)

        # Every series of a fixed vocabulary exists from the start (at 0), so rate() and absent() work.
        for source in SOURCES:
            self._drops.labels(source)
            for kind in KINDS:
                for outcome in OUTCOMES:
                    self._messages.labels(source, kind, outcome)
        for event in TRANSITIONS:
            self._transitions.labels(event)
        for result in RELOAD_RESULTS:
            self._reloads.labels(result)
        for result in LOGIN_RESULTS:
            self._logins.labels(result)
        for result in API_AUTH_RESULTS:
            self._api_auth.labels(result)
        for kind in NOTICES:
            self._notices.labels(kind)
        for part in CORE_PARTS:
            self._part_failures.labels(part)
            self._quarantined.labels(part).set(0)
        self._quarantined_parts: set[str] = set(CORE_PARTS)
        self._incident_series: set[tuple[str, str]] = set()
        self.incidents_gauge({})
        self._fields: set[str] = set()
        self._outbox_series: set[str] = set()
        for name in receivers:
            self.receiver(name)

    # -- exposition -----------------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition (``content_type``) of every metric."""
        return generate_latest(self.registry)

    # -- intake ---------------------------------------------------------------------------------

    def message(self, source: str, kind: str, outcome: str, n: int = 1) -> None:
        """``n`` inbound messages from ``source`` (mqtt|http|replay) of ``kind`` (alarm|samples|unknown)
        were ``accepted`` or found ``invalid``."""
        self._messages.labels(
            _check("source", source, SOURCES),
            _check("kind", kind, KINDS),
            _check("outcome", outcome, OUTCOMES),
        ).inc(_count(n))

    def samples(self, n: int) -> None:
        """``n`` KPI samples were accepted (a batch message counts each of its good samples)."""
        self._samples.inc(_count(n))

    def invalid(self, fields: Iterable[str]) -> None:
        """One validation error per field path (``InvalidMessage.errors``' first elements)."""
        for field in fields:
            label = field_label(field)
            if label not in self._fields:
                if len(self._fields) >= MAX_INVALID_FIELDS:
                    label = OTHER_FIELD
                else:
                    self._fields.add(label)
            self._invalid.labels(label).inc()

    def intake_depth(self, depth: int) -> None:
        """The intake queue now holds ``depth`` messages."""
        self._queue.set(depth)

    def intake_drop(self, source: str, n: int = 1) -> None:
        """``n`` messages from ``source`` were refused or dropped: the intake queue was full."""
        self._drops.labels(_check("source", source, SOURCES)).inc(_count(n))

    def dead_letter(self, n: int = 1) -> None:
        self._dead_letters.inc(_count(n))

    def dead_letters_kept(self, kept: int, unpublished: int) -> None:
        """The store holds ``kept`` dead letters, ``unpublished`` of them not yet published."""
        self._dead_kept.set(kept)
        self._dead_unpublished.set(unpublished)

    def dead_letters_dropped(self, n: int) -> None:
        """``n`` dead letters were purged before they were ever published."""
        self._dead_dropped.inc(_count(n))

    def processing(self, seconds: float) -> None:
        """One message went from receipt to the core's decision in ``seconds``."""
        self._processing.observe(seconds)

    def processing_many(self, seconds: Iterable[float]) -> None:
        """A batch of messages, each from receipt to the core's decision (``processing``).

        The histogram ends as ``processing`` per value leaves it (each value in the first bucket
        whose bound is not below it, none for a NaN; the sum added to value by value, in order), with
        one update per bucket touched instead of a locked update per value and bucket.
        ``tests/test_metrics.py`` compares the exposition of both."""
        histogram = self._processing
        bounds = self._processing_bounds
        counts = [0] * len(bounds)
        total = histogram._sum.get()
        for value in seconds:
            total += value
            if not isnan(value):  # a NaN is in no bucket (``observe``: no bound is >= it)
                counts[bisect_left(bounds, value)] += 1
        histogram._sum.set(total)
        buckets = histogram._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)

    def journal_commit(self, seconds: float) -> None:
        self._commit.observe(seconds)

    def mqtt_reconnect(self) -> None:
        self._reconnects.inc()

    # -- dashboard ------------------------------------------------------------------------------

    def dashboard_login(self, result: str) -> None:
        """One sign-in to the dashboard: ``ok``, ``refused`` or ``locked_out``."""
        self._logins.labels(_check("result", result, LOGIN_RESULTS)).inc()

    def dashboard_lockout(self) -> None:
        """A client address was locked out of the dashboard's sign-in."""
        self._lockouts.inc()

    def api_auth_refused(self, result: str) -> None:
        """An API request turned down for its bearer token: ``refused`` or ``locked_out``."""
        self._api_auth.labels(_check("result", result, API_AUTH_RESULTS)).inc()

    def api_lockout(self) -> None:
        """A client address was locked out of the API (too many wrong bearer tokens)."""
        self._api_lockouts.inc()

    def dashboard_history_dropped(self, n: int) -> None:
        """``n`` KPI samples were left out of the dashboard's chart history."""
        self._history_dropped.inc(_count(n))

    # -- core -----------------------------------------------------------------------------------

    def rule_firings(self, n: int = 1) -> None:
        self._firings.inc(_count(n))

    def rule_firings_by_rule(self, ruleset: str, rule: str, n: int = 1) -> None:
        """``n`` more firings of one rule (rules are few and named in rulesets: bounded labels)."""
        self._rule_firings.labels(ruleset, rule).inc(_count(n))

    def alarms_active(self, n: int) -> None:
        self._alarms.set(n)

    def transition(self, event: str) -> None:
        """One incident record (``opened``, ``updated`` or ``resolved``) was emitted."""
        self._transitions.labels(_check("event", event, TRANSITIONS)).inc()

    def incidents_gauge(self, counts: Mapping[tuple[str, int], int]) -> None:
        """Set the open-incident gauge to ``counts`` ((state, priority) → number); the rest go to 0.

        The 15 series of the standard states and priorities always exist; another state the core
        reports gets its own series, which returns to 0 when the state is gone.
        """
        wanted = {(state, str(priority)): n for (state, priority), n in counts.items()}
        for key, n in wanted.items():
            if key[1] not in ("1", "2", "3", "4", "5"):
                raise ValueError(f"priority must be 1..5, got {key[1]}")
            if n < 0:
                raise ValueError(f"an incident count cannot be negative, got {n} for {key}")
        keys = (
            {(s, str(p)) for s in INCIDENT_STATES for p in PRIORITIES} | self._incident_series | set(wanted)
        )
        for key in keys:
            self._incidents.labels(*key).set(wanted.get(key, 0))
        self._incident_series = keys

    def notice(self, kind: str, n: int = 1) -> None:
        """An input was applied with a notice (``Decisions.notices``): a clear matching nothing…"""
        self._notices.labels(_check("kind", kind, NOTICES)).inc(_count(n))

    def part_failure(self, part: str) -> None:
        """A part of the core raised and was quarantined (or failed its retry)."""
        self._part_failures.labels(part).inc()

    def quarantined(self, counts: Mapping[str, int]) -> None:
        """Set the quarantine gauge: part → items quarantined now; other parts go to 0."""
        self._quarantined_parts |= set(counts)
        for part in self._quarantined_parts:
            self._quarantined.labels(part).set(counts.get(part, 0))

    def reload(self, result: str) -> None:
        """A configuration reload finished with ``result`` ``ok`` or ``error``."""
        self._reloads.labels(_check("result", result, RELOAD_RESULTS)).inc()

    # -- delivery -------------------------------------------------------------------------------

    def receiver(self, name: str) -> None:
        """Declare a receiver so its outbox gauge exists (at 0) before the first record."""
        self.outbox_depth(name, 0)

    def outbox_depth(self, receiver: str, depth: int) -> None:
        self._outbox.labels(receiver).set(depth)
        self._outbox_series.add(receiver)

    def outbox_depths(self, depths: Mapping[str, int]) -> None:
        """Set the outbox gauge of every receiver seen so far: those absent from ``depths`` (nothing
        pending) go to 0 rather than keeping their last value."""
        for receiver in self._outbox_series | set(depths):
            self.outbox_depth(receiver, depths.get(receiver, 0))

    def delivery(self, receiver: str, result: str, seconds: float) -> None:
        """One delivery attempt to ``receiver`` ended with ``result`` after ``seconds``.

        ``result`` is the delivery worker's word for the outcome (docs/api.md suggests ``ok``,
        ``retry``, ``failed``, ``dead``); it is not checked here.
        """
        if not result:
            raise ValueError("result must not be empty")
        self._deliveries.labels(receiver, result).inc()
        self._delivery_seconds.labels(receiver).observe(seconds)
