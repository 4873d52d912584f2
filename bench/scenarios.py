"""Scenario builders shared by the tests, the examples and the benchmarks.

``python -m bench.scenarios --write examples`` regenerates the bundled example files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
import yaml

from engine.timeutil import format_time, parse_time

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

TIERS = ("platinum", "gold", "silver", "bronze")


def example_topology(olts: int = 50, customers_per_olt: int = 20) -> dict[str, Any]:
    """A small metro network: a core, two aggregation layers, one redundant pair, sites, platforms.

    core-1 ─┬─ agg-1 ─┐                      (site-b)
            ├─ agg-2 ─┴─ olt-7 (needs agg-1 OR agg-2, AND pwr-c)   (site-c)
            ├─ agg-3 ─── olt-001 … olt-050                        (site-d)
            └─ sbc-1  (voip platform), dns-1 (internet platform)  (site-a)
    """
    elements: list[dict[str, Any]] = [
        {"id": "core-1", "type": "router", "site": "site-a", "region": "north", "depends_on": []},
        {"id": "sbc-1", "type": "sbc", "site": "site-a", "region": "north", "depends_on": ["core-1"]},
        {"id": "agg-1", "type": "switch", "site": "site-b", "region": "north", "depends_on": ["core-1"]},
        {"id": "agg-2", "type": "switch", "site": "site-b", "region": "north", "depends_on": ["core-1"]},
        {"id": "pwr-c", "type": "power", "site": "site-c", "region": "north", "depends_on": []},
        {
            "id": "olt-7",
            "type": "olt",
            "site": "site-c",
            "region": "north",
            "depends_on": [["agg-1", "agg-2"], "pwr-c"],
        },
        {"id": "cell-c1", "type": "enodeb", "site": "site-c", "region": "north", "depends_on": ["olt-7"]},
        {"id": "agg-3", "type": "switch", "site": "site-d", "region": "south", "depends_on": ["core-1"]},
    ]
    for i in range(1, olts + 1):
        elements.append(
            {
                "id": f"olt-{i:03d}",
                "type": "olt",
                "site": f"site-d{i % 5}",
                "region": "south",
                "depends_on": ["agg-3"],
            }
        )
    customers: list[dict[str, Any]] = []
    n = 0
    access = ["olt-7"] + [f"olt-{i:03d}" for i in range(1, olts + 1)]
    for a in access:
        for _ in range(customers_per_olt):
            n += 1
            tier = (
                TIERS[0] if n % 50 == 0 else TIERS[1] if n % 10 == 0 else TIERS[2] if n % 3 == 0 else TIERS[3]
            )
            services = ["internet"] if n % 4 else ["voip", "internet"]
            customers.append({"id": f"c-{n:05d}", "tier": tier, "access": a, "services": services})
    return {
        "service_types": {
            "voip": {"criticality": 5, "platform": ["sbc-1"]},
            "internet": {"criticality": 3, "platform": []},
        },
        "elements": elements,
        "customers": customers,
    }


def alarm(
    ne: str,
    cause: str,
    t: float,
    severity: str = "major",
    *,
    sp: str | None = None,
    event_type: str = "communicationsAlarm",
) -> dict[str, Any]:
    """One replay line carrying a native alarm at T0 + t seconds."""
    payload: dict[str, Any] = {
        "ne_id": ne,
        "severity": severity,
        "probable_cause": cause,
        "event_type": event_type,
        "event_time": format_time(T0 + t),
    }
    if sp is not None:
        payload["specific_problem"] = sp
    return {"topic": f"soc/alarms/{ne}", "payload": payload}


def clear(ne: str, cause: str, t: float, *, sp: str | None = None) -> dict[str, Any]:
    return alarm(ne, cause, t, "cleared", sp=sp)


def fiber_cut(olts: int = 50) -> list[dict[str, Any]]:
    """A fiber cut at agg-3: its loss of signal, then a storm of link-down alarms on the OLTs below
    it (some before the root arrives, as storms do), then the repair and the clears."""
    lines = [alarm(f"olt-{i:03d}", "linkDown", 1.0 + i * 0.05, "critical") for i in range(1, 11)]
    lines.append(alarm("agg-3", "lossOfSignal", 1.2, "critical", sp="port 1/1/1"))
    lines += [alarm(f"olt-{i:03d}", "linkDown", 1.5 + i * 0.05, "critical") for i in range(11, olts + 1)]
    lines.append(clear("agg-3", "lossOfSignal", 1800.0, sp="port 1/1/1"))
    lines += [clear(f"olt-{i:03d}", "linkDown", 1801.0 + i * 0.01) for i in range(1, olts + 1)]
    return lines


def site_power_failure() -> list[dict[str, Any]]:
    """Mains fails at site-c: the power element alarms, then the OLT and the cell at that site."""
    return [
        alarm("pwr-c", "mainsFailure", 0.0, "critical"),
        alarm("olt-7", "equipmentMalfunction", 20.0, "major"),
        alarm("cell-c1", "lossOfSignal", 25.0, "critical"),
        clear("pwr-c", "mainsFailure", 900.0),
        clear("olt-7", "equipmentMalfunction", 905.0),
        clear("cell-c1", "lossOfSignal", 910.0),
    ]


def write_examples(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "topology.yaml").write_text(
        "# Example topology for `make run` and the README (generated by `python -m bench.scenarios`).\n"
        + yaml.safe_dump(example_topology(), sort_keys=False, default_flow_style=None, width=120)
    )
    lines = sorted(fiber_cut() + [_shift(x, 3600.0) for x in site_power_failure()], key=_time_of)
    (out / "fiber-cut.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))


def _shift(line: dict[str, Any], dt: float) -> dict[str, Any]:
    payload = dict(line["payload"])
    payload["event_time"] = format_time(parse_time(payload["event_time"]) + dt)
    return {**line, "payload": payload}


def _time_of(line: dict[str, Any]) -> str:
    return str(line["payload"]["event_time"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)
    write_examples(args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
