"""HTTP of one cluster engine: health, Prometheus ``/metrics`` and the read API.

Every engine serves what a load balancer, a supervisor and Prometheus need about it, and the read
endpoints of the single process's API from its view of the cluster's outputs
(``engine.service.cluster_view``): ``GET /incidents`` (same filters), ``/incidents/<id>``,
``/incidents/<id>/history`` and ``/dead-letters``, with the same answers and errors.

* ``GET /healthz``: 200 while the engine is connected to NATS and its lease round ran within the
  lease TTL, else 503; the body is the engine's view (``ClusterNode.status``: each partition it
  owns with its epoch, lease age, applied sequence, pending messages, counters).
* ``GET /healthz/<partition>``: 200 when this engine owns the partition with a valid lease and has
  caught up with its stream, 503 while it replays or its lease is in doubt, 404 when another
  engine owns it (or nobody), 400 for a name the partition table lacks.
* ``GET /metrics``: the text exposition format, gauges and counters per partition owned here, read
  at scrape time (a private registry: two engines in one process never collide). With
  ``http.token`` set, ``/metrics`` wants ``Authorization: Bearer <token>``; health never does.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

import orjson
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from engine.adapters.http import ApiError, dead_letter_query, incident_query
from engine.adapters.store import Store, known_history
from engine.service.config import HttpSettings

if TYPE_CHECKING:
    from engine.service.cluster import ClusterNode

log = structlog.get_logger("engine.service.cluster_http")


class _NodeCollector(Collector):
    """Reads the node's state at each scrape."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        status = node.status()
        parts = status["partitions"]
        connected = GaugeMetricFamily("soc_cluster_connected", "1 while connected to NATS")
        connected.add_metric([], 1.0 if status["connected"] else 0.0)
        yield connected
        owned = GaugeMetricFamily(
            "soc_cluster_partition_owned", "1 for a partition this engine owns", labels=["partition"]
        )
        for p in node.table.partitions:
            owned.add_metric([p], 1.0 if p in parts else 0.0)
        yield owned
        gauges = {
            "lease_age": ("soc_cluster_lease_age_seconds", "seconds since the lease's last renewal"),
            "epoch": ("soc_cluster_epoch", "the lease's fencing token"),
            "applied": ("soc_cluster_applied_sequence", "last stream sequence applied"),
            "pending": ("soc_cluster_lag_messages", "stream messages waiting to be applied"),
            "caught_up": ("soc_cluster_caught_up", "1 once the replay at takeover is over"),
        }
        for key, (name, doc) in gauges.items():
            g = GaugeMetricFamily(name, doc, labels=["partition"])
            for p, row in parts.items():
                if row[key] is not None:
                    g.add_metric([p], float(row[key]))
            yield g
        counters = {
            "published": ("soc_cluster_records_published", "incident records published"),
            "contributed": ("soc_cluster_contributions", "records sent to the global partition"),
            "replayed": ("soc_cluster_replayed", "stream messages replayed at takeover"),
            "ticks": ("soc_cluster_ticks", "timer ticks applied"),
            "snapshots": ("soc_cluster_snapshots", "snapshots saved"),
            "dead_letters": ("soc_cluster_dead_letters", "dead-letter records decided"),
            "dead_stored": (
                "soc_cluster_dead_letters_stored",
                "dead-letter records stored in DEADLETTERS (and sent on the dead-letter subject)",
            ),
        }
        for key, (name, doc) in counters.items():
            c = CounterMetricFamily(
                name, doc + " (since this engine took the partition)", labels=["partition"]
            )
            for p, row in parts.items():
                c.add_metric([p], float(row[key]))
            yield c
        faults = CounterMetricFamily(
            "soc_cluster_core_faults", "core parts quarantined", labels=["partition", "part"]
        )
        notices = CounterMetricFamily(
            "soc_cluster_notices", "inputs applied with a notice", labels=["partition", "kind"]
        )
        for p, row in parts.items():
            for part, n in sorted(row["faults"].items()):
                faults.add_metric([p, part], float(n))
            for kind, n in sorted(row["notices"].items()):
                notices.add_metric([p, kind], float(n))
        yield faults
        yield notices
        routed = CounterMetricFamily("soc_cluster_routed", "ingest messages routed by this engine")
        routed.add_metric([], float(status["routed"]))
        yield routed
        takeovers = CounterMetricFamily("soc_cluster_takeovers", "partition leases this engine acquired")
        takeovers.add_metric([], float(status["takeovers"]))
        yield takeovers
        outbox = CounterMetricFamily(
            "soc_cluster_outbox_versions",
            "incident versions this engine's outbox logged done, or found done by a predecessor",
            labels=["outcome"],
        )
        outbox.add_metric(["delivered"], float(status["outbox"]["delivered"]))
        outbox.add_metric(["skipped"], float(status["outbox"]["skipped"]))
        yield outbox


class ClusterHttp:
    """``async with ClusterHttp(node, settings) as http:`` serves on ``http.port``."""

    def __init__(self, node: ClusterNode, settings: HttpSettings) -> None:
        self.node = node
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_NodeCollector(node))
        self._token = settings.token.encode() if settings.token else None
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/healthz/{partition}", self._partition)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/incidents", self._incidents)
        app.router.add_get("/incidents/{id}", self._incident)
        app.router.add_get("/incidents/{id}/history", self._incident_history)
        app.router.add_get("/dead-letters", self._dead_letters)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.host, self.settings.port).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self.settings.host}:{self.settings.port}"
            raise OSError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("http listening", host=self.settings.host, port=self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        node = self.node
        status = node.status()
        fresh = time.monotonic() - node.last_round < node.settings.cluster.lease_ttl
        ok = status["connected"] and fresh
        status["status"] = "ok" if ok else "unavailable"
        return _json(200 if ok else 503, status)

    # -- read API (from the view of INCIDENTS and DEADLETTERS) ---------------------------------
    def _view(self, request: web.Request) -> Store:
        self._authorize(request)
        return self.node.view.store

    async def _incidents(self, request: web.Request) -> web.Response:
        try:
            args = incident_query(request.query, [k for k, _ in request.query.items()])
            found = self._view(request).incidents(**args)
        except ApiError as exc:
            return _json(exc.status, {"error": exc.error, "detail": exc.detail})
        return _json(200, {"incidents": found, "count": len(found)})

    async def _incident(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        try:
            record = self._view(request).incident(iid)
        except ApiError as exc:
            return _json(exc.status, {"error": exc.error, "detail": exc.detail})
        if record is None:
            return _json(404, {"error": "not found", "detail": f"no incident {iid!r}"})
        return _json(200, record)

    async def _incident_history(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        try:
            store = self._view(request)
        except ApiError as exc:
            return _json(exc.status, {"error": exc.error, "detail": exc.detail})
        record = store.incident(iid)
        versions = known_history(store.incident_history(iid), record)
        if not versions and record is None:
            return _json(404, {"error": "not found", "detail": f"no incident {iid!r}"})
        return _json(200, {"incident_id": iid, "versions": versions, "count": len(versions)})

    async def _dead_letters(self, request: web.Request) -> web.Response:
        try:
            args = dead_letter_query(request.query, [k for k, _ in request.query.items()])
            found = self._view(request).dead_letters(**args)
        except ApiError as exc:
            return _json(exc.status, {"error": exc.error, "detail": exc.detail})
        next_page = None
        if len(found) == args["limit"]:
            query = {k: v for k, v in request.query.items() if k != "before"}
            next_page = str(request.rel_url.with_query({**query, "before": str(found[-1]["id"])}))
        return _json(200, {"dead_letters": found, "count": len(found), "next": next_page})

    async def _partition(self, request: web.Request) -> web.Response:
        node = self.node
        p = request.match_info["partition"]
        if p not in node.table.partitions:
            known = ", ".join(node.table.partitions)
            return _json(400, {"error": f"no partition {p!r} in the table ({known})"})
        row = node.status()["partitions"].get(p)
        if row is None:
            return _json(404, {"partition": p, "status": "not owned by this engine"})
        if not node.holds(p, row["epoch"]):
            return _json(503, {"partition": p, "status": "lease not confirmed", **row})
        if not row["caught_up"]:
            return _json(503, {"partition": p, "status": "catching up", **row})
        return _json(200, {"partition": p, "status": "ok", **row})

    def _authorize(self, request: web.Request) -> None:
        if self._token is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
            if not hmac.compare_digest(given, self._token):
                raise ApiError(401, "a bearer token is required (Authorization: Bearer …)")

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
        except ApiError as exc:
            return _json(exc.status, {"error": exc.error})
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
