"""Service, customer and SLA reports over the core's state (``engine report``, the HTTP API).

Read through the core's query interface (``Pipeline.query``, ``engine.core.query``) at time ``now``:
nothing here changes state. Every report is JSON-ready and deterministic (sorted keys and lists).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from engine.core.impact import Health, HealthView
from engine.core.quality import group_id
from engine.core.query import CoreQuery
from engine.model.timeutil import format_time

_LEVEL = {Health.OK: "ok", Health.AT_RISK: "at_risk", Health.DEGRADED: "degraded", Health.DOWN: "down"}


def services(q: CoreQuery, now: float) -> dict[str, Any]:
    """Per service type: customers, how many are affected now, KQI statuses, open incidents."""
    out: dict[str, Any] = {}
    open_incidents = q.incidents(open_only=True)
    paths = q.path_states(now)
    owners = q.measured_paths()  # scope -> (customer, service type)
    for name, st in sorted(q.topology.service_types.items()):
        view = q.health(name)
        levels: Counter[str] = Counter()
        total = 0
        for g in q.topology.all_groups():
            if name not in g.services:
                continue
            total += g.count
            level = view.service(q.topology, g.access, name)
            levels[_LEVEL[level]] += g.count
        kqi_status: Counter[str] = Counter()
        degraded_paths = measured = 0
        for scope, states in paths.items():
            if owners[scope][1] != name:
                continue
            measured += 1
            kqi_status.update(s.status for s in states)
            degraded_paths += any(s.status in ("at_risk", "violated") for s in states)
        incidents = sorted(i.id for i in open_incidents if i.impact and i.impact.services.get(name))
        out[name] = {
            "criticality": st.criticality,
            "platform": list(st.platform),
            "platform_health": {x: _LEVEL[view.health(x)] for x in st.platform},
            "customers": total,
            "customers_by_state": {k: levels[k] for k in ("down", "degraded", "at_risk", "ok") if levels[k]},
            "kqis": {
                "paths": measured,
                "degraded_paths": degraded_paths,
                "statuses": dict(sorted(kqi_status.items())),
            },
            "targets": [
                {
                    "name": k.name,
                    "category": k.category,
                    "metric": k.metric,
                    "objective": k.objective,
                    "target": k.target,
                    "limit": k.limit,
                    "window_s": k.window,
                    "source": k.source,
                }
                for k in q.settings.quality.kqis.for_service(name)
            ],
            "open_incidents": incidents,
        }
    return {"time": format_time(now), "services": out}


def _views(q: CoreQuery) -> Callable[[str], HealthView]:
    """Health views per service type, built once per report (``CoreQuery.health``)."""
    cache: dict[str, HealthView] = {}

    def view_for(service: str) -> HealthView:
        if service not in cache:
            cache[service] = q.health(service)
        return cache[service]

    return view_for


def customer(q: CoreQuery, customer_id: str, now: float) -> dict[str, Any] | None:
    """One customer: its services' state, incidents (``CoreQuery.customer``), experience and SLA."""
    view = q.customer(customer_id)
    if view is None:
        return None
    return {**view, **q.customer_quality(customer_id, _views(q), now)}


def customers(q: CoreQuery, now: float, *, limit: int = 50, all_customers: bool = False) -> dict[str, Any]:
    """Customers worst experience first: those with path KQIs or whose service is affected now
    (every customer with ``all_customers``), at most ``limit``."""
    view_for = _views(q)
    topology = q.topology
    ids = {c for c, _ in q.measured_paths().values() if topology.has_customer(c)}
    for cid in topology.customer_ids():
        c = topology.customer(cid)
        if all_customers or any(view_for(s).service(topology, c.access, s) > Health.OK for s in c.services):
            ids.add(cid)
    rows = []
    for cid in sorted(ids):
        c = topology.customer(cid)
        quality = q.customer_quality(cid, view_for, now)
        rows.append(
            {
                "customer": cid,
                "tier": c.tier,
                "experience": quality["experience"]["index"],
                "band": quality["experience"]["band"],
                "worst_service": quality["experience"]["worst_service"],
                "sla": quality.get("sla"),
            }
        )
    rows.sort(key=lambda r: (r["experience"], r["customer"]))
    return {"time": format_time(now), "customers": rows[:limit], "total": len(rows)}


def sla(q: CoreQuery, now: float) -> dict[str, Any]:
    """Per tier: customers under SLA, down now, breached in the period, the soonest breach ahead."""
    tiers: dict[str, dict[str, Any]] = {}
    settings = q.settings.quality.sla
    for name, tier in sorted(settings.tiers.items()):
        tiers[name] = {
            "availability_target": tier.availability,
            "period_s": tier.period,
            "time_to_restore_s": tier.time_to_restore,
            "mos_floor": tier.mos_floor,
            "customers": 0,
            "customers_down": 0,
            "seconds_to_first_breach": None,
        }
    for g in q.topology.all_groups():
        row = tiers.get(g.tier)
        if row is None:
            continue
        row["customers"] += g.count
        left = q.time_to_breach(group_id(g), g.tier, now)
        if left is not None:
            row["customers_down"] += g.count
            first = row["seconds_to_first_breach"]
            row["seconds_to_first_breach"] = round(left if first is None else min(first, left), 1)
    return {"time": format_time(now), "tiers": tiers, "breaches": q.sla_breaches()}


def _breach_line(b: dict[str, Any]) -> str:
    """``<at> <tier> <kind>: <who>; <detail>``: the group (access, services, customers) or, for a MOS
    breach, the customer."""
    if "customer" in b:
        who = f"customer {b['customer']}"
    else:
        g = b["group"]
        count = "?" if g["customers"] is None else g["customers"]
        who = f"group {g['access']} {'+'.join(g['services'])} ({count} customer(s))"
    detail = ", ".join(f"{k} {v}" for k, v in b["detail"].items())
    return f"  {b['at']} {b['tier']} {b['kind']}: {who}; {detail}"


def render(kind: str, report: dict[str, Any]) -> str:
    """A report as terminal text (``--json`` gives the full data)."""
    lines = [f"as of {report.get('time', '?')}"] if kind != "customer" else []
    if kind == "services":
        lines.append(
            f"{'service':<12} {'customers':>9}  {'down':>6} {'degr.':>6} {'risk':>6}  "
            "paths (degraded)  incidents"
        )
        for name, s in report["services"].items():
            st = s["customers_by_state"]
            k = s["kqis"]
            lines.append(
                f"{name:<12} {s['customers']:>9}  {st.get('down', 0):>6} {st.get('degraded', 0):>6} "
                f"{st.get('at_risk', 0):>6}  {k['paths']:>5} ({k['degraded_paths']})       "
                f"{', '.join(s['open_incidents']) or '-'}"
            )
    elif kind == "customers":
        lines.append(f"{'customer':<14} {'tier':<9} {'CEI':>6}  {'band':<5} {'worst':<10} SLA")
        for c in report["customers"]:
            sla = c["sla"] or {}
            left = sla.get("seconds_to_breach")
            note = "breached" if left == 0 else (f"breach in {left:.0f} s" if left is not None else "up")
            lines.append(
                f"{c['customer']:<14} {c['tier']:<9} {c['experience']:>6.1f}  {c['band']:<5} "
                f"{c['worst_service'] or '-':<10} {note}"
            )
        lines.append(f"{len(report['customers'])} of {report['total']} shown, worst experience first")
    elif kind == "sla":
        lines.append(f"{'tier':<10} {'target':>8} {'customers':>9} {'down':>6}  first breach in")
        for name, t in report["tiers"].items():
            first = t["seconds_to_first_breach"]
            lines.append(
                f"{name:<10} {t['availability_target']:>8.4%} {t['customers']:>9} {t['customers_down']:>6}  "
                + ("-" if first is None else f"{first:.0f} s")
            )
        lines.append(f"breaches recorded: {len(report['breaches'])}")
        lines.extend(_breach_line(b) for b in report["breaches"])
    else:
        c = report["customer"]
        e = report["experience"]
        lines.append(f"customer {c['id']} ({c['tier']}), access {c['access']}")
        lines.append(
            f"experience index {e['index']} ({e['band']}); worst service {e['worst_service'] or '-'}"
        )
        for s, state in report["services"].items():
            lines.append(f"  {s}: {state}")
            for k in report["kqis"].get(s, []):
                lines.append(f"    {k['name']:<28} {k['status']:<9} value {k['value']} target {k['target']}")
        sla = report.get("sla")
        if sla:
            lines.append(f"SLA: {orjson.dumps(sla).decode()}")
        lines.extend(
            f"incident {i['incident_id']} P{i['priority']} {i['state']}" for i in report["incidents"]
        )
    return "\n".join(lines) + "\n"
