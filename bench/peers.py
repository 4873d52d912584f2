"""The engine beside its peers on the same events: the PCIC 24V log ×N through ``engine replay`` and SEC.

The stream: ``24V_439N_Microwave`` converted by ``engine.tools.datasets.pcic.convert`` (optionally its
first ``--limit`` alarm rows), repeated ``--scale`` times. Copy ``k`` (from 0) renames every element
``dev-N`` → ``cK-dev-N`` (copy 0 keeps its names) and is shifted ``k × --shift`` seconds later; the
copies are merged in time order, so ×8 is one network of 8 × 439 devices alarming together.

Three conversions of that stream (issue 11):

``readme``
    the README's: the log converted with no semantics (every type ``degraded``), its topology, the
    built-in default rulesets (the topology-cluster fallback groups alarms along dependencies).
``unknown``
    the unknown network: the same events and config, a topology with the same elements and no
    links, so no alarm explains an alarm of another element.
``storm``
    issue 11's storm, every alarm an outage: probable cause ``lossOfSignal`` (the original type moves
    to ``specific_problem``, so identities stay distinct) and an effects table that makes every alarm
    an ``outage`` whatever its severity (``STORM_CONFIG``, pinned here rather than left to the default
    effects): the topology rules correlate everything.

For each, ``--repeat`` runs of each side, one at a time (medians):

engine
    a subprocess (``python -m bench.peers --engine-worker``) that does what ``engine replay`` does:
    loads the topology and config files, the built-in rulesets, a ``Pipeline`` driven by a
    ``Replayer`` over the JSON-lines file, every record serialised to /dev/null. It measures its own
    replay from the first line read to the drain (wall, CPU, and the CPU at growing prefixes), so
    its start-up (imports, topology, rule compilation) is left out; peak RSS from ``/usr/bin/time``.
    At 10k, 100k and 1M events (and after the drain) it also notes its resident memory, the active
    alarms, the open incidents and the entries of the core's containers (``Pipeline.state_sizes``).
SEC
    ``/usr/bin/sec --notail`` with ``bench/sec/contexts.sec`` (dedup window, pair with window,
    threshold) on the same events as text lines, read from a file to its end; wall, CPU (user +
    system, ``wait4``) and peak RSS (``/usr/bin/time``) of the process, less the wall and CPU of
    its start-up (SEC on an empty input, median of 3; about 0.1 s).

Alertmanager (when ``/usr/bin/prometheus-alertmanager`` is installed): the same events posted through
its API v2 in batches of 500 to a private instance (group by element, an inhibit rule, no receiver),
measured as alerts per CPU-second of the Alertmanager process (``run_alertmanager``).

Printed: events/s (wall), µs of CPU per event, peak RSS, engine/SEC ratios, Alertmanager's alerts
per CPU-second beside the engine's events per CPU-second, and the engine's µs of CPU per event at
growing prefixes of the stream (per interval: how the cost per event grows).

By default the stream is issue 11's: the whole log ×8 (1,033,568 events, 3,512 elements), and the
report carries every figure of goals 1, 2 and 5 with its peer or its goal beside it (engine/SEC and
engine/Alertmanager; resident memory at 100k and 1M events; µs per event at 10k, 100k and 1M). It
takes about half an hour of CPU; ``--quick`` runs the first 2,000 alarm rows ×2 in a minute or two.

Run ``python -m bench peers [--quick] [--scale N] [--limit ROWS] [--repeat N] [--conversion NAME ...]``.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from bench.replay import DEFAULT_SHARED, dataset_dir
from engine.core.incident_records import IncidentRecord
from engine.core.pipeline import Pipeline
from engine.errors import ConfigError
from engine.model.timeutil import format_time, parse_time
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.service.config import load_core_settings
from engine.tools.datasets.pcic import Converted, convert, write
from engine.tools.replay import Replayer

DATASET = "24V_439N_Microwave"
CONVERSIONS = ("readme", "unknown", "storm")
SEC_RULES = Path(__file__).resolve().parent / "sec" / "contexts.sec"
SEC = "/usr/bin/sec"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
# Alertmanager's side of the work: group by element, inhibit an element's other alerts while a
# lossOfSignal is firing on it, notify nobody (a receiver without integrations).
AM_CONFIG = """\
route:
  receiver: nobody
  group_by: [ne_id]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: nobody
inhibit_rules:
  - source_matchers: [alertname="lossOfSignal"]
    target_matchers: [alertname!="lossOfSignal"]
    equal: [ne_id]
"""
# issue 11's storm: every alarm an outage, whatever its severity
STORM_CONFIG: dict[str, Any] = {"alarms": {"effects": [{"effect": "outage"}]}}
TIME = "/usr/bin/time"
ROOT = Path(__file__).resolve().parents[1]  # where ``python -m bench.peers`` imports from
CHECKPOINTS = (10_000, 100_000, 1_000_000)
LINES_READ = 4096  # the engine worker reads its events file in blocks of this many lines


# --- the stream ------------------------------------------------------------------------------------


def _rename(ne: str, copy: int) -> str:
    return ne if copy == 0 else f"c{copy}-{ne}"


def scaled(base: Converted, scale: int, shift: float) -> Converted:
    """``scale`` copies of ``base`` as distinct devices, copy ``k`` shifted ``k × shift`` seconds."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    times = {e["payload"]["event_time"] for e in base.events}
    epoch = {t: parse_time(t) for t in times}

    def copy_events(k: int) -> Iterator[tuple[float, int, int, dict[str, Any]]]:
        for i, event in enumerate(base.events):
            p = event["payload"]
            t = epoch[p["event_time"]] + k * shift
            ne = _rename(p["ne_id"], k)
            payload = {**p, "ne_id": ne, "event_time": p["event_time"] if k == 0 else format_time(t)}
            yield t, k, i, {"topic": "soc/alarms/" + ne, "payload": payload}

    events = [e for _, _, _, e in heapq.merge(*(copy_events(k) for k in range(scale)))]
    elements = [
        {
            **el,
            "id": _rename(el["id"], k),
            "depends_on": [
                [_rename(x, k) for x in d] if isinstance(d, list) else _rename(d, k) for d in el["depends_on"]
            ],
        }
        for k in range(scale)
        for el in base.topology["elements"]
    ]
    topology = {**base.topology, "elements": elements}
    summary = {"copies": scale, "elements": len(elements), "messages": len(events)}
    return Converted(
        name=f"{base.name}x{scale}", topology=topology, events=events, config=base.config, summary=summary
    )


def conversion(stream: Converted, name: str) -> Converted:
    """One of the three conversions of the module docstring."""
    if name == "readme":
        return stream
    if name == "unknown":
        elements = [{**el, "depends_on": []} for el in stream.topology["elements"]]
        return Converted(
            f"{stream.name}-unknown",
            {**stream.topology, "elements": elements},
            stream.events,
            stream.config,
            {},
        )
    if name == "storm":
        events = []
        for e in stream.events:
            p = e["payload"]
            payload = {**p, "probable_cause": "lossOfSignal", "specific_problem": p["probable_cause"]}
            events.append({"topic": e["topic"], "payload": payload})
        return Converted(f"{stream.name}-storm", stream.topology, events, STORM_CONFIG, {})
    raise ValueError(f"unknown conversion {name!r}")


def sec_line(event: dict[str, Any]) -> bytes:
    """One event as SEC reads it: ``<epoch> <element> <cause> <specific problem or -> <severity>``."""
    p = event["payload"]
    t = int(parse_time(p["event_time"]))
    specific = p.get("specific_problem") or "-"
    return f"{t} {p['ne_id']} {p['probable_cause']} {specific} {p['severity']}\n".encode()


# --- measuring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run of one side: what it reports and what the kernel counted."""

    events: int
    wall: float  # seconds of the replay (engine) or of the whole process (SEC)
    cpu: float  # user + system seconds, same scope
    rss_mib: float  # peak resident set of the process
    outputs: int  # engine: incident records; SEC: lines written
    checkpoints: tuple[tuple[int, float], ...] = ()  # engine: (events read, CPU seconds so far)
    incidents: int = 0
    # engine: at each checkpoint, what it held: (events read, RSS MiB, active alarms, open
    # incidents, entries in the core's containers: ``Pipeline.state_sizes()`` summed)
    held: tuple[tuple[int, float, int, int, int], ...] = ()


def _measure(cmd: Sequence[str], stdout: Any, folder: Path) -> tuple[float, float, float]:
    """Run ``cmd`` under ``/usr/bin/time``: its wall seconds, CPU seconds (user + system, from
    ``wait4``) and peak RSS in MiB. Raises on a failure, with the end of its stderr.

    The peak RSS is the one ``/usr/bin/time`` reports for its child: a child forked from this
    process would count this process's own pages before its ``exec`` in its ``ru_maxrss``.
    """
    rss_file = folder / "rss.txt"
    timed = [TIME, "-f", "%M", "-o", str(rss_file), *cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(timed, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    rss_kib = int(rss_file.read_text().split()[-1])
    return wall, usage.ru_utime + usage.ru_stime, rss_kib / 1024


def run_engine(folder: Path) -> Run:
    cmd = [sys.executable, "-m", "bench.peers", "--engine-worker", str(folder)]
    _, _, rss = _measure(cmd, subprocess.DEVNULL, folder)
    report = orjson.loads((folder / "engine-report.json").read_bytes())
    return Run(
        events=report["events"],
        wall=report["wall"],
        cpu=report["cpu"],
        rss_mib=rss,
        outputs=report["records"],
        checkpoints=tuple((n, c) for n, c in report["checkpoints"]),
        incidents=report["incidents"],
        held=tuple((n, r, a, i, e) for n, r, a, i, e in report["held"]),
    )


def run_sec(folder: Path, events: int, *, input_name: str = "events.txt", startup: Run | None = None) -> Run:
    """SEC on ``folder/input_name``; ``startup`` (a run on an empty input) is subtracted from the
    wall and CPU times, so both sides are measured from their first event to their last."""
    out = folder / "sec-out.txt"
    cmd = [
        SEC,
        f"--conf={SEC_RULES}",
        f"--input={folder / input_name}",
        "--notail",
        "--fromstart",
        "--nointevents",
        "--nointcontexts",
        "--log=/dev/null",
    ]
    with out.open("wb") as fh:
        wall, cpu, rss = _measure(cmd, fh, folder)
    with out.open("rb") as fh:
        outputs = sum(1 for _ in fh)
    if startup is not None:
        wall, cpu = wall - startup.wall, cpu - startup.cpu
    return Run(events, wall, cpu, rss, outputs)


def engine_worker(folder: Path) -> int:
    """What ``engine replay`` does, on ``folder``'s files, measured from inside (see the docstring)."""

    pipeline = Pipeline(
        load_topology(folder / "topology.yaml"),
        load_rulesets(None),
        load_core_settings(folder / "config.yaml"),
    )
    checkpoints: list[tuple[int, float]] = []
    cpu0 = 0.0
    held: list[tuple[int, float, int, int, int]] = []
    opened = 0

    def hold(n: int) -> float:
        """Note what the core holds after ``n`` events; the CPU seconds that took (not counted)."""
        paused = time.process_time()
        sizes = sum(pipeline.state_sizes().values())
        opened_now = len(pipeline.query.incidents(open_only=True))
        held.append((n, rss_mib(), pipeline.query.active_alarm_count(), opened_now, sizes))
        return time.process_time() - paused

    def count(rec: IncidentRecord) -> None:
        nonlocal opened
        opened += rec.event == "opened"

    def lines(fh: Any) -> Iterator[bytes]:
        """The file's lines, with a checkpoint before line ``n`` (from 0) for each ``n`` in
        ``CHECKPOINTS`` that the file has; read in blocks (``islice``), not tested line by line."""
        nonlocal cpu0
        n = 0  # lines yielded so far
        for mark in (*CHECKPOINTS, None):
            while mark is None or n < mark:
                block = list(islice(fh, LINES_READ if mark is None else min(LINES_READ, mark - n)))
                if not block:
                    return
                n += len(block)
                yield from block
            block = list(islice(fh, 1))  # line ``mark``: the checkpoint is taken if there is one
            if not block:
                return
            checkpoints.append((n, time.process_time() - cpu0))
            cpu0 += hold(n)
            n += 1
            yield from block

    with open(os.devnull, "wb") as out, (folder / "events.jsonl").open("rb") as fh:
        cpu0 = time.process_time()
        stats = Replayer(pipeline, on_record=count, emit_line=out.write).run(
            lines(fh)
        )  # as ``engine replay``
        cpu = time.process_time() - cpu0
    checkpoints.append((stats.events, cpu))
    hold(stats.events)  # after the drain
    pipeline.close()
    report = {
        "events": stats.events,
        "wall": stats.wall_seconds,
        "cpu": cpu,
        "records": stats.records,
        "incidents": opened,
        "checkpoints": checkpoints,
        "held": held,
    }
    (folder / "engine-report.json").write_bytes(orjson.dumps(report))
    return 0


def rss_mib() -> float:
    """This process's resident set now (``VmRSS``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _am_alert(event: dict[str, Any]) -> dict[str, Any]:
    p = event["payload"]
    labels = {"alertname": p["probable_cause"], "ne_id": p["ne_id"], "severity": p["severity"]}
    if p.get("specific_problem"):
        labels["specific_problem"] = p["specific_problem"]
    if p["severity"] == "cleared":  # the same alert, ended: the labels of its raise
        labels["severity"] = "major"
        return {"labels": labels, "startsAt": p["event_time"], "endsAt": p["event_time"]}
    return {"labels": labels, "startsAt": p["event_time"]}


def run_alertmanager(folder: Path, events: Sequence[dict[str, Any]], batch: int = 500) -> Run:
    """Alertmanager (Debian ``prometheus-alertmanager``) on the same events, posted through its API v2
    in batches of ``batch`` (a raise is an alert, a clear the same alert with ``endsAt``). Its CPU
    from ``/proc`` from the first post until it has been idle for a second (its dispatcher works
    after the posts return), its peak RSS (VmHWM) then; wall from the first post to the last."""
    port = _free_port()
    store = folder / "alertmanager"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    config = store / "alertmanager.yml"
    config.write_text(AM_CONFIG)
    cmd = [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={store}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                conn.request("GET", "/-/ready")
                ready = conn.getresponse()
                ready.read()
                if ready.status == 200:
                    break
            except OSError:
                conn.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise RuntimeError(f"Alertmanager did not start: {err}")
            time.sleep(0.1)
        bodies = [
            orjson.dumps([_am_alert(e) for e in events[i : i + batch]]) for i in range(0, len(events), batch)
        ]
        cpu0 = _proc_cpu(proc.pid)
        start = time.perf_counter()
        for body in bodies:
            conn.request("POST", "/api/v2/alerts", body, {"Content-Type": "application/json"})
            answer = conn.getresponse()
            text = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"Alertmanager refused a batch: {answer.status} {text[:500]!r}")
        wall = time.perf_counter() - start
        cpu = _proc_cpu(proc.pid)
        while True:  # until it has been idle for a second
            time.sleep(1.0)
            now = _proc_cpu(proc.pid)
            if now - cpu < 0.02:
                break
            cpu = now
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Run(len(events), wall, cpu - cpu0, hwm / 1024, len(bodies))


# --- report ----------------------------------------------------------------------------------------


def _median(runs: Sequence[Run], field: str) -> float:
    return statistics.median(float(getattr(r, field)) for r in runs)


def _prefix_rows(runs: Sequence[Run]) -> list[str]:
    """µs of CPU per event in each interval between checkpoints (medians over the runs)."""
    rows: list[str] = []
    points = list(runs[0].checkpoints)
    before_n, before_c = 0, [0.0] * len(runs)
    for i, (n, _) in enumerate(points):
        now = [r.checkpoints[i][1] for r in runs]
        if n > before_n:
            per = statistics.median(
                (c - b) / (n - before_n) * 1e6 for c, b in zip(now, before_c, strict=True)
            )
            total = statistics.median(c / n * 1e6 for c in now)
            rows.append(f"events {before_n + 1:,}–{n:,}: {per:,.0f} µs/event (first {n:,}: {total:,.0f})")
        before_n, before_c = n, now
    return rows


def _held_at(run: Run, n: int) -> tuple[int, float, int, int, int] | None:
    return next((h for h in run.held if h[0] == n), None)


def _memory_rows(runs: Sequence[Run]) -> list[str]:
    """Issue 11's goal 2: resident memory at 100k and 1M events (medians), with what the core held."""
    rows: list[str] = []
    for n in (*CHECKPOINTS, runs[0].events):
        at = [h for h in (_held_at(r, n) for r in runs) if h is not None]
        if not at or (n == runs[0].events and n in CHECKPOINTS):
            continue
        label = f"{n:,} events" + (" (the end, drained)" if n == runs[0].events else "")
        rows.append(
            f"{label}: RSS {statistics.median(h[1] for h in at):,.0f} MiB, "
            f"{at[0][2]:,} active alarms, {at[0][3]:,} open incidents, "
            f"{at[0][4]:,} entries in the core's containers"
        )
    small, large = CHECKPOINTS[1], CHECKPOINTS[2]
    a = [h for h in (_held_at(r, small) for r in runs) if h is not None]
    b = [h for h in (_held_at(r, large) for r in runs) if h is not None]
    if a and b:
        ratio = statistics.median(h[1] for h in b) / statistics.median(h[1] for h in a)
        rows.append(
            f"RSS at {large:,} / at {small:,} events: {ratio:.2f}× (goal ≤ 1.5×; active alarms "
            f"{b[0][2]:,} against {a[0][2]:,})"
        )
    return rows


def _flatness(runs: Sequence[Run]) -> str | None:
    """Issue 11's goal 5: the cost per event between the last two checkpoints against the interval
    before (for the ×8 stream: events 100k–1M against 10k–100k); None with fewer than two."""
    points = [i for i, (n, _) in enumerate(runs[0].checkpoints) if n in CHECKPOINTS]
    if len(points) < 3:
        return None

    def per_event(lo: int, hi: int) -> float:
        (n0, _), (n1, _) = runs[0].checkpoints[lo], runs[0].checkpoints[hi]
        return statistics.median(
            (r.checkpoints[hi][1] - r.checkpoints[lo][1]) / (n1 - n0) * 1e6 for r in runs
        )

    a, b, c = points[-3:]
    ns = [runs[0].checkpoints[i][0] for i in (a, b, c)]
    ratio = per_event(b, c) / per_event(a, b)
    return (
        f"µs per event, events {ns[1] + 1:,}–{ns[2]:,} against {ns[0] + 1:,}–{ns[1]:,}: "
        f"{ratio:.2f}× (goal: flat)"
    )


def report(name: str, engine: Sequence[Run], sec: Sequence[Run], am: Sequence[Run]) -> list[str]:
    n = engine[0].events
    e_rate = statistics.median(r.events / r.wall for r in engine)
    s_rate = statistics.median(r.events / r.wall for r in sec)
    e_us = _median(engine, "cpu") / n * 1e6
    s_us = _median(sec, "cpu") / n * 1e6
    lines = [
        f"{name}: {n:,} events, engine: {engine[0].incidents:,} incidents ({engine[0].outputs:,} records), "
        f"SEC: {sec[0].outputs:,} lines written",
        f"  {'':<8} {'events/s':>10} {'µs CPU/event':>13} {'peak RSS':>10}",
        f"  {'engine':<8} {e_rate:>10,.0f} {e_us:>13,.1f} {_median(engine, 'rss_mib'):>7,.0f} MiB",
        f"  {'SEC':<8} {s_rate:>10,.0f} {s_us:>13,.1f} {_median(sec, 'rss_mib'):>7,.0f} MiB",
        f"  engine/SEC: events/s {e_rate / s_rate:.3f} (goal ≥ 2), CPU per event {e_us / s_us:.2f}×",
    ]
    if am:
        a_per_cpu = statistics.median(r.events / r.cpu for r in am)
        e_per_cpu = 1e6 / e_us
        lines += [
            f"  Alertmanager: {a_per_cpu:,.0f} alerts per CPU-second (posted at "
            f"{statistics.median(r.events / r.wall for r in am):,.0f}/s in batches, peak RSS "
            f"{_median(am, 'rss_mib'):,.0f} MiB); engine {e_per_cpu:,.0f} events per CPU-second: "
            f"engine/Alertmanager {e_per_cpu / a_per_cpu:.3f} (goal ≥ 1)"
        ]
    lines.append("  engine µs of CPU per event as the stream goes on:")
    lines += [f"    {row}" for row in _prefix_rows(engine)]
    flat = _flatness(engine)
    if flat is not None:
        lines.append(f"    {flat}")
    lines.append("  engine resident memory as the stream goes on:")
    lines += [f"    {row}" for row in _memory_rows(engine)]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--scale", type=int, help="copies of the log (default 8: issue 11's stream, 1,033,568 events)"
    )
    p.add_argument(
        "--limit",
        type=int,
        metavar="ROWS",
        help="alarm rows of the log per copy (default 0: all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a quick run: the first 2,000 alarm rows ×2 (8,000 events) unless --scale/--limit say",
    )
    p.add_argument(
        "--shift", type=float, default=60.0, metavar="S", help="seconds between copies (default 60)"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs of each side (default 1); medians")
    p.add_argument(
        "--conversion", action="append", choices=CONVERSIONS, help="repeatable (default: all three)"
    )
    p.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, metavar="DIR", help=f"default: {DEFAULT_SHARED}"
    )
    p.add_argument("--engine-worker", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.engine_worker is not None:
        return engine_worker(args.engine_worker)
    if args.scale is None:
        args.scale = 2 if args.quick else 8
    if args.limit is None:
        args.limit = 2000 if args.quick else 0
    if args.scale < 1 or args.repeat < 1 or args.limit < 0 or args.shift < 0:
        p.error("need --scale >= 1, --repeat >= 1, --limit >= 0 and --shift >= 0")
    for tool, package in ((SEC, "sec"), (TIME, "time")):
        if not Path(tool).is_file():
            print(
                f"error: {tool} not found (Debian package {package}: apt-get install {package})",
                file=sys.stderr,
            )
            return 2
    folder = dataset_dir(args.shared, DATASET)
    try:
        base = convert(folder, limit=args.limit or None)
    except ConfigError as exc:
        print(
            f"error: {exc} (the PCIC 2021 data lives in <shared>/datasets/pcic2021/; see --shared)",
            file=sys.stderr,
        )
        return 2
    stream = scaled(base, args.scale, args.shift)
    rows = f"first {args.limit:,} alarm rows" if args.limit else "all alarm rows"
    print(
        f"{DATASET} ({rows}) ×{args.scale}, copies {args.shift:g} s apart: {len(stream.events):,} events, "
        f"{len(stream.topology['elements']):,} elements; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs; medians of {args.repeat}",
        flush=True,
    )
    with_am = Path(ALERTMANAGER).is_file()
    if not with_am:
        print(f"{ALERTMANAGER} not found (Debian package prometheus-alertmanager): Alertmanager left out")
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        (work / "empty.txt").write_bytes(b"")
        startups = [run_sec(work, 0, input_name="empty.txt") for _ in range(3)]
        startup = Run(0, _median(startups, "wall"), _median(startups, "cpu"), 0.0, 0)
        print(
            f"SEC start-up (an empty input, median of 3): {startup.wall:.3f} s wall, "
            f"{startup.cpu:.3f} s CPU; subtracted from SEC's runs below",
            flush=True,
        )
        for name in dict.fromkeys(args.conversion or CONVERSIONS):
            converted = conversion(stream, name)
            write(converted, work)
            (work / "events.txt").write_bytes(b"".join(sec_line(e) for e in converted.events))
            engine_runs: list[Run] = []
            sec_runs: list[Run] = []
            am_runs: list[Run] = []
            for _ in range(args.repeat):
                engine_runs.append(run_engine(work))
                sec_runs.append(run_sec(work, len(converted.events), startup=startup))
                if with_am:
                    am_runs.append(run_alertmanager(work, converted.events))
            print("\n".join(report(name, engine_runs, sec_runs, am_runs)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
