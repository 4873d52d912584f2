"""The ``engine`` command line. Each subcommand parses its arguments, loads what it needs, and returns
an exit status: 0 success, 1 a check failed, 2 bad usage or bad input (with the reason on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

import orjson

from engine import __version__, compiled
from engine.errors import ConfigError, EngineError
from engine.service.cliargs import (
    Parser,
    http_url,
    input_file,
    input_path,
    int_range,
    output_dir,
    output_file,
    port,
    rate,
    time_arg,
)
from engine.service.config import load_core_settings
from engine.service.terminal import printable


def _cmd_replay(args: argparse.Namespace) -> int:
    from engine.core.pipeline import Pipeline
    from engine.model.topology import load_topology
    from engine.rules.schema import load_rulesets
    from engine.tools.replay import Replayer, dumps

    _refuse_overwriting(args.events, [("--out", args.out), ("--dead-letters", args.dead_letters)])
    topology = load_topology(args.topology)
    rulesets = load_rulesets(args.rulesets)
    settings = load_core_settings(args.config)
    pipeline = Pipeline(topology, rulesets, settings)
    try:
        fh = open(args.events, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(str(args.events), "", f"cannot read events: {exc.strerror or exc}") from None
    dead_cm = nullcontext() if args.dead_letters is None else _output(args.dead_letters, "--dead-letters")
    with fh, _output(args.out, "--out") as out, dead_cm as dead:
        examples: list[str] = []  # the first dead letters, in the summary (every one in --dead-letters)

        def dead_letter(rec: dict[str, Any]) -> None:
            if len(examples) < 5:
                first = rec["errors"][0] if rec["errors"] else {"field": "", "reason": ""}
                examples.append(f"{rec['topic']}: {first['field'] or 'message'}: {first['reason']}")
            if dead is not None:
                dead.write(dumps(rec))

        replayer = Replayer(pipeline, emit_line=out.write, dead_letter=dead_letter)
        stats = replayer.run(fh)
    summary = {
        "events": stats.events,
        "bad_lines": stats.bad_lines,
        "late": stats.late,
        **pipeline.summary(),
        "records": stats.records,
        "virtual_seconds": round((stats.last_time or 0) - (stats.first_time or 0), 3),
        "wall_seconds": round(stats.wall_seconds, 3),
        "events_per_second": round(stats.events / stats.wall_seconds) if stats.wall_seconds else None,
    }
    if stats.bad_line_examples:
        summary["bad_line_examples"] = stats.bad_line_examples
    summary["dead_letters"] = stats.dead_letters
    if examples:
        summary["dead_letter_examples"] = examples
    sys.stderr.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _refuse_overwriting(source: Path, outputs: list[tuple[str, Path | None]]) -> None:
    """An output that is the input file (or another output) would be truncated before it is read."""
    seen: list[tuple[str, Path]] = [("EVENTS.jsonl", source)]
    for option, path in outputs:
        if path is None:
            continue
        for other, earlier in seen:
            both = path.exists() and earlier.exists()
            if path.samefile(earlier) if both else path.resolve() == earlier.resolve():
                raise EngineError(f"argument {option}: {path} is also {other}: it would be overwritten")
        seen.append((option, path))


class _Output:
    """An output file named by an option (``--out``); a write that fails is an ``EngineError`` naming
    the option and the file (a full disk, a file system gone read-only), never a traceback."""

    def __init__(self, fh: IO[bytes], option: str, name: str) -> None:
        self._fh = fh
        self._option = option
        self._name = name

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self.error(exc) from None

    def error(self, exc: OSError) -> EngineError:
        return EngineError(f"argument {self._option}: cannot write {self._name}: {exc.strerror or exc}")


@contextmanager
def _output(path: Path | None, option: str) -> Iterator[_Output]:
    """Open ``path`` for ``option`` (None: stdout); close or flush it at the end, turning a failed
    write into an ``EngineError`` that names the option."""
    if path is None:
        fh: IO[bytes] = sys.stdout.buffer
        name = "stdout"
    else:
        try:
            fh = open(path, "wb")  # noqa: SIM115
        except OSError as exc:
            raise EngineError(f"argument {option}: cannot write {path}: {exc.strerror or exc}") from None
        name = str(path)
    out = _Output(fh, option, name)
    try:
        yield out
    finally:
        try:
            if path is None:
                fh.flush()
            else:
                fh.close()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise out.error(exc) from None


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from engine.service import daemon
    from engine.service.config import load_settings
    from engine.service.logs import configure_logging

    overrides: dict[str, object] = {}
    if args.topology is not None:
        overrides["topology"] = str(args.topology)
    if args.rulesets:
        overrides["rulesets"] = [str(p) for p in args.rulesets]
    if args.cluster:
        overrides["cluster.servers"] = _nats_urls(args.cluster)
    settings = load_settings(args.config, overrides=overrides)
    configure_logging(settings.logging)
    if settings.cluster.servers:  # a member of a JetStream cluster (docs/scale-out.md)
        from engine.service import cluster

        return asyncio.run(cluster.run(settings))
    return asyncio.run(daemon.run(settings))


def _nats_urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def _cmd_cluster_table(args: argparse.Namespace) -> int:
    from engine.core.partitions import correlation_domains, partition_table
    from engine.model.topology import load_topology

    topology = load_topology(args.topology)
    domains = correlation_domains(
        topology, global_share=args.global_share, global_elements=args.global_element
    )
    table = partition_table(domains, args.partitions)
    if args.json:
        print(orjson.dumps(table.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return 0
    print(
        f"partition table {table.digest}: {len(domains.domains)} domains, {table.count} partitions + global"
    )
    for part, row in table.load().items():
        d, e, c = row["domains"], row["elements"], row["customers"]
        print(f"  {part:<8} domains {d:>5}  elements {e:>6}  customers {c:>8}")
    print(f"  global elements: {', '.join(domains.global_elements) or '(none)'}")
    return 0


def _cmd_cluster_status(args: argparse.Namespace) -> int:
    import asyncio

    from engine.adapters.jetstream import ClusterError, JetStream
    from engine.service.cluster import cluster_status

    async def status() -> dict[str, Any]:
        async with JetStream(_nats_urls(args.cluster), name="engine-cluster-status") as js:
            await js.attach()
            return await cluster_status(js, await js.partitions())

    try:
        result = asyncio.run(status())
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    table = result["table"]
    print(f"partition table {table['digest']}: global elements {table['global_elements']}")
    print(f"members: {', '.join(result['members']) or '(none)'}")
    head = ("partition", "domains", "owner", "epoch", "lease age", "stream", "snapshot", "applied", "lag")
    keys = ("domains", "owner", "epoch", "lease_age", "stream_last", "snapshot_seq", "applied", "lag")
    line = "{:<10} {:>7} {:<24} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7}"
    print(line.format(*head))
    for part, row in result["partitions"].items():
        print(line.format(part, *("-" if row[k] is None else str(row[k]) for k in keys)))
    unowned = [p for p, row in result["partitions"].items() if row["owner"] is None]
    return 1 if unowned else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from engine.tools import demo

    return demo.main(args.rate, args.scenario, args.http_port, args.verbose)


def _cmd_rules_check(args: argparse.Namespace) -> int:
    from engine.errors import RulesetError
    from engine.rules.compiler import compile_rulesets
    from engine.rules.schema import Ruleset, load_ruleset_file

    topology = None
    if args.topology is not None:
        from engine.model.topology import load_topology

        topology = load_topology(args.topology)  # a broken topology is bad input: exit 2
    errors: list[str] = []
    loaded: list[Ruleset] = []
    files: list[Path] = []
    for p in args.paths:  # each exists (cliargs.input_path)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:  # nothing to check is a usage error, like a path that does not exist
                print(f"error: argument DIR|FILE: no *.yaml or *.yml ruleset in {p}", file=sys.stderr)
                return 2
            files.extend(found)
        else:
            files.append(p)

    def report(exc: ConfigError) -> None:
        errors.append(str(exc))
        if isinstance(exc, RulesetError):
            errors.extend(str(more) for more in exc.more)

    for f in files:  # every file is checked, and every error in it listed
        try:
            loaded.append(load_ruleset_file(f))
        except ConfigError as exc:
            report(exc)
    # What spans rulesets (a ruleset name used twice, the limits) is checked on every file that
    # loaded, so it is reported along with the errors of the files that did not.
    program = None
    try:
        program = compile_rulesets(loaded)
    except ConfigError as exc:
        report(exc)
    if topology is not None:
        from engine.rules.references import unknown_references

        errors.extend(str(e) for e in unknown_references(loaded, topology))
    if not errors and program is not None:
        for rs in loaded:
            print(f"ok   {rs.source}: ruleset {rs.name!r}, {len(rs.rules)} rule(s)")
        matches = sum(len(d) for d in program.definitions.values())
        print(
            f"compiled {len(program.rules)} rule(s) into {matches} alarm match(es) "
            f"in {len(program.definitions)} durable ruleset(s)"
        )
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


def _cmd_rules_test(args: argparse.Namespace) -> int:
    from engine.tools.ruletests import run_files

    return run_files(args.files, out=sys.stdout, err=sys.stderr)


def _cmd_rules_explain(args: argparse.Namespace) -> int:
    """Exit 0 explained, 1 no such alarm or incident (what was searched on stderr), 2 bad input."""
    if args.api is not None:
        for flag, value in (("--topology", args.topology), ("--rulesets", args.rulesets),
                            ("--config", args.config), ("--at", args.at)):  # fmt: skip
            if value is not None:
                print(f"error: {flag} goes with --replay, not --api", file=sys.stderr)
                return 2
        found = _explain_via_api(args.api, args.id, args.token)
    else:
        if args.token is not None:
            print("error: --token goes with --api, not --replay", file=sys.stderr)
            return 2
        if args.topology is None:
            print("error: --replay needs --topology FILE", file=sys.stderr)
            return 2
        found = _explain_replay(args)
    if found is None:
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(found, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        from engine.core.explain import render

        sys.stdout.write(printable(render(found), keep="\n"))
    return 0


def _explain_replay(args: argparse.Namespace) -> dict[str, Any] | None:
    from engine.core.explain import NotFound, explain
    from engine.model.timeutil import format_time

    pipeline = _replayed(args)
    until: float | None = args.at  # epoch seconds (cliargs.time_arg)
    try:
        return explain(pipeline.query, args.id)
    except NotFound as exc:
        moment = f"up to {format_time(until)}" if until is not None else "to its end, not drained"
        print(f"error: after replaying {args.replay} ({moment}): {exc}", file=sys.stderr)
        return None
    finally:
        pipeline.close()


def _cmd_rules_mine(args: argparse.Namespace) -> int:
    from engine.model.messages import DEFAULT_ROUTES, Routes
    from engine.tools.mining import Journal, mine_file

    if (args.events is None) == (args.store is None):
        print("error: give EVENTS.jsonl or --store DB|- (the daemon's store), not both", file=sys.stderr)
        return 2
    routes = DEFAULT_ROUTES
    topology = args.topology
    keep_journal: float | None = None
    daemon_store: Path | None = None
    if args.config is not None:  # the daemon's config: its topology, store and alarm topics
        from engine.service.config import load_settings

        # (``--topology`` overrides the file's, and mining reads no ruleset: neither key of the
        # file is checked for a file that exists then)
        overrides: dict[str, object] = {"rulesets": []}
        if topology is not None:
            overrides["topology"] = str(topology)
        es = load_settings(args.config, overrides=overrides)
        routes = Routes(alarms=es.mqtt.alarm_topics, samples=es.mqtt.probe_topics)
        topology = topology or es.topology
        keep_journal = es.store.keep_journal
        daemon_store = es.store.path
    if args.store == "-" and daemon_store is None:
        print("error: --store - needs the daemon's --config (it names the store)", file=sys.stderr)
        return 2
    if topology is None:
        print("error: give --topology FILE (or the daemon's --config, which names one)", file=sys.stderr)
        return 2
    source: Path | Journal = args.events
    if args.store is not None:
        source = Journal(daemon_store if args.store == "-" and daemon_store else Path(args.store))
    report = mine_file(
        source,
        topology,
        out=args.out,
        routes=routes,
        effects_out=args.effects_out,
        name=args.name,
        until=args.until,
        max_lag=args.max_lag,
        hops=args.hops,
        min_support=args.min_support,
        min_confidence=args.min_confidence,
        min_lift=args.min_lift,
        min_z=args.min_z,
        orient=args.orient,
        explain_away=args.explain_away,
    )
    sys.stderr.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    if isinstance(source, Journal) and source.snapshot_seq is not None and not source.before_snapshot:
        kept = "" if keep_journal is None else f" (store.keep_journal: {keep_journal:g}s)"
        print(
            f"warning: {source.path} keeps no journal before its latest snapshot{kept}: only the "
            "messages since then were mined; set store.keep_journal (e.g. 30d) to keep history",
            file=sys.stderr,
        )
    return 0


def _cmd_rules_diff(args: argparse.Namespace) -> int:
    from engine.model.timeutil import parse_time
    from engine.model.topology import load_topology
    from engine.rules.schema import load_rulesets
    from engine.tools.mining.diff import diff, render, replay_side, select_lines

    since = None
    if args.since is not None:
        try:
            since = parse_time(args.since)
        except ValueError as exc:
            raise ConfigError("--since", "", str(exc)) from None
    if args.examples < 0:
        raise ConfigError("--examples", "", f"must be >= 0, got {args.examples}")
    topology = load_topology(args.topology)
    old_rulesets = load_rulesets(args.old)
    new_rulesets = load_rulesets(args.new)
    settings = load_core_settings(args.config)
    new_settings = load_core_settings(args.new_config) if args.new_config else settings
    try:
        raw = args.events.read_bytes()
    except OSError as exc:
        raise ConfigError(str(args.events), "", f"cannot read events: {exc.strerror or exc}") from None
    lines = select_lines(raw.splitlines(), since)
    old = replay_side(topology, old_rulesets, settings, lines)
    new = replay_side(topology, new_rulesets, new_settings, lines)
    report = diff(old, new, examples=args.examples)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(report))
    return 0


def _cmd_impact_what_if(args: argparse.Namespace) -> int:
    """Exit 0 reported, 2 bad input (or an engine that refuses or cannot be reached)."""
    from engine.core.whatif import render, what_if

    down = [ne.strip() for ne in args.down.split(",") if ne.strip()]
    if args.api is not None:
        for flag, value in (("--topology", args.topology), ("--config", args.config), ("--store", args.store),
                            ("--at", args.at)):  # fmt: skip
            if value is not None:
                why = "a running engine answers as of now" if flag == "--at" else "the engine uses its own"
                print(f"error: {flag} does not go with --api ({why})", file=sys.stderr)
                return 2
        report = _what_if_via_api(args.api, down, args.hours, args.token)
    elif args.store is not None:
        if args.topology is not None:
            print("error: --topology does not go with --store (the daemon's, from --config)", file=sys.stderr)
            return 2
        if args.config is None:
            print(
                "error: --store needs the daemon's --config (topology, rulesets, core settings)",
                file=sys.stderr,
            )
            return 2
        pipeline = _pipeline_from_store(args.config, args.store, until=args.at)
        try:
            report = what_if(
                pipeline.topology,
                down,
                hours=args.hours,
                sla=pipeline.settings.quality.sla,
                current=pipeline.query.own_health(),
                as_of=pipeline.clock or None,
            )
        finally:
            pipeline.close()
    else:
        from engine.model.topology import load_topology

        for flag, value, with_ in (("--at", args.at, "--store"), ("--token", args.token, "--api")):
            if value is not None:
                print(f"error: {flag} goes with {with_}", file=sys.stderr)
                return 2
        if args.topology is None:
            print(
                "error: give --topology FILE (on paper), --store (with --config) or --api URL",
                file=sys.stderr,
            )
            return 2
        topology = load_topology(args.topology)
        settings = load_core_settings(args.config)
        report = what_if(topology, down, hours=args.hours, sla=settings.quality.sla)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(report))
    return 0


def _pipeline_from_store(config: Path, store: str, *, until: float | None = None) -> Any:
    """A pipeline built from the daemon's config and restored from its store (read-only; as of
    ``until`` when given). The caller closes it."""
    from engine.core.pipeline import Pipeline
    from engine.model.messages import Routes
    from engine.model.topology import load_topology
    from engine.rules.schema import load_rulesets
    from engine.service.config import load_settings
    from engine.tools.offline import from_store

    es = load_settings(config)
    if es.topology is None:
        raise ConfigError(str(config), "topology", "required to read the store")
    routes = Routes(alarms=es.mqtt.alarm_topics, samples=es.mqtt.probe_topics)  # as the daemon's
    pipeline = Pipeline(
        load_topology(es.topology),
        load_rulesets(list(es.rulesets)),
        es.core,
        routes=routes,
        max_bytes=es.mqtt.max_payload,
    )
    try:
        from_store(pipeline, es.store.path if store == "-" else Path(store), until=until)
    except BaseException:
        pipeline.close()
        raise
    return pipeline


def _what_if_via_api(base: str, down: list[str], hours: float, token: str | None) -> dict[str, Any]:
    import urllib.parse

    query = urllib.parse.urlencode({"down": ",".join(down), "hours": repr(hours)})
    status, url, body = _api_get(f"{base.rstrip('/')}/impact/what-if?{query}", token)
    if status != 200:
        raise EngineError(_api_refusal(url, status, body))
    if not isinstance(body, dict):
        raise EngineError(f"{url}: not a what-if report")
    return body


def _cmd_report(args: argparse.Namespace) -> int:
    """Exit 0 reported, 1 unknown customer, 2 bad input."""
    from engine.core import reports

    if (args.replay is None) == (args.store is None):
        print(
            "error: give --replay FILE (with --topology) or --store (with the daemon's --config)",
            file=sys.stderr,
        )
        return 2
    if args.kind == "customer" and not args.customer:
        print("error: `report customer` needs --customer ID", file=sys.stderr)
        return 2
    if args.store is not None:
        if args.config is None:
            print(
                "error: --store needs the daemon's --config (topology, rulesets, core settings)",
                file=sys.stderr,
            )
            return 2
        pipeline = _pipeline_from_store(args.config, args.store)
    else:
        if args.topology is None:
            print("error: --replay needs --topology FILE", file=sys.stderr)
            return 2
        pipeline = _replayed(args)
    try:
        query = pipeline.query
        now = query.clock
        if args.kind == "services":
            out = reports.services(query, now)
        elif args.kind == "customers":
            out = reports.customers(query, now, limit=args.limit, all_customers=args.all)
        elif args.kind == "sla":
            out = reports.sla(query, now)
        else:
            found = reports.customer(query, args.customer, now)
            if found is None:
                print(f"error: no customer {args.customer!r} in the topology", file=sys.stderr)
                return 1
            out = found
    finally:
        pipeline.close()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(printable(reports.render(args.kind, out), keep="\n"))
    return 0


def _replayed(args: argparse.Namespace) -> Any:
    from engine.model.topology import load_topology
    from engine.rules.schema import load_rulesets
    from engine.tools.offline import replay_pipeline

    until: float | None = args.at  # epoch seconds (cliargs.time_arg)
    topology = load_topology(args.topology)
    rulesets = load_rulesets(args.rulesets)
    settings = load_core_settings(args.config)
    try:
        fh = open(args.replay, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(str(args.replay), "", f"cannot read events: {exc.strerror or exc}") from None
    with fh:
        pipeline = replay_pipeline(topology, rulesets, settings, fh, until=until)
    stats = pipeline.replay_stats
    if stats is not None and stats.bad_lines:
        first = stats.bad_line_examples[0] if stats.bad_line_examples else ""
        if not stats.events:
            pipeline.close()
            raise ConfigError(
                str(args.replay), "", f"no event could be read: {_lines(stats.bad_lines)}, all bad ({first})"
            )
        print(
            printable(f"warning: {args.replay}: {_lines(stats.bad_lines)} skipped as bad ({first})"),
            file=sys.stderr,
        )
    return pipeline


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def _api_get(url: str, token: str | None) -> tuple[int, str, Any]:
    """GET a JSON document from a running engine: (status, url, body); an HTTP error's status and
    body are returned, an engine that cannot be reached is an ``EngineError``."""
    import os
    import urllib.error
    import urllib.request

    token = token if token is not None else os.environ.get("ENGINE_HTTP__TOKEN") or None
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, url, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = orjson.loads(exc.read())
        except orjson.JSONDecodeError:
            body = {}
        if isinstance(body, dict) and not body.get("error"):
            body = {**body, "error": exc.reason}
        return exc.code, url, body
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise EngineError(f"cannot ask {url}: {why}") from None


def _api_reason(body: Any) -> str | None:
    detail = body.get("detail") if isinstance(body, dict) else None
    reason = detail.get("reason") if isinstance(detail, dict) else detail
    return None if reason is None else str(reason)


def _api_refusal(url: str, status: int, body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return f"{url}: HTTP {status} {error or ''}: {_api_reason(body) or ''}".rstrip(": ")


def _explain_via_api(base: str, ident: str, token: str | None) -> dict[str, Any] | None:
    import urllib.parse

    kind = "incidents" if ident.startswith("inc-") else "alarms"
    status, url, body = _api_get(
        f"{base.rstrip('/')}/explain/{kind}/{urllib.parse.quote(ident, safe='')}", token
    )
    if status == 404:
        what = "alarm" if kind == "alarms" else "incident"
        print(f"error: {url}: {_api_reason(body) or f'no {what} {ident!r}'}", file=sys.stderr)
        return None
    if status != 200:
        raise EngineError(_api_refusal(url, status, body))
    found: dict[str, Any] = body
    return found


def _cmd_topology_compact(args: argparse.Namespace) -> int:
    from engine.tools.topology import compact_file

    src, dst = args.input, args.output
    if (dst.exists() and src.samefile(dst)) or dst.resolve() == src.resolve():
        raise EngineError(f"argument OUT: {dst} is also IN: it would be overwritten")
    done = compact_file(src, dst, args.form)
    print(
        f"{dst}: {done.customers:,} customers in {done.groups:,} groups, "
        f"{_size(done.size_out)} ({src}: {_size(done.size_in)})"
    )
    return 0


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _cmd_dataset_pcic(args: argparse.Namespace) -> int:
    from engine.tools.datasets import pcic

    argv = [str(args.dataset_dir), "--out", str(args.out)]
    if args.limit is not None:
        argv += ["--limit", str(args.limit)]
    return pcic.main(argv)


class _Version(argparse.Action):
    """``engine --version``: the version, then which core runs (compiled or the source, and why), as
    written (argparse's own version action would rewrap the second line)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"engine {__version__}\ncore: {compiled.CORE}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="engine", description=__doc__)
    parser.add_argument("--version", action=_Version, help="show the version and which core runs, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="replay a JSON-lines event file on virtual time")
    p.add_argument("events", type=input_file, metavar="EVENTS.jsonl")
    p.add_argument("--topology", required=True, type=input_file, metavar="FILE")
    p.add_argument(
        "--rulesets",
        action="append",
        type=input_path,
        metavar="DIR|FILE",
        help="repeatable; default: built-in",
    )
    p.add_argument("--config", type=input_file, metavar="FILE", help="core settings (YAML)")
    p.add_argument("--out", type=output_file, metavar="FILE", help="incident records (default: stdout)")
    p.add_argument("--dead-letters", type=output_file, metavar="FILE", help="rejected messages with reasons")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("run", help="run the daemon: MQTT in, webhooks out, durable state, HTTP API")
    p.add_argument(
        "--config", type=input_file, metavar="FILE", help="engine settings (YAML); ENGINE_* overrides"
    )
    p.add_argument("--topology", type=input_file, metavar="FILE", help="overrides `topology` in the config")
    p.add_argument(
        "--rulesets",
        action="append",
        type=input_path,
        metavar="DIR|FILE",
        help="overrides `rulesets`; repeatable",
    )
    p.add_argument(
        "--cluster",
        metavar="URLS",
        help="nats://host:port[,…]: run as a member of a JetStream cluster (overrides `cluster.servers`)",
    )
    p.set_defaults(func=_cmd_run)

    cluster = sub.add_parser(
        "cluster", help="scale-out on NATS JetStream: partition table, status"
    ).add_subparsers(dest="cluster_command", required=True)
    p = cluster.add_parser(
        "table",
        help="the correlation domains and partition table a topology gives (no cluster needed)",
    )
    p.add_argument("--topology", required=True, type=Path, metavar="FILE")
    p.add_argument("--partitions", type=int, default=4, metavar="N", help="domain partitions (default 4)")
    p.add_argument("--global-share", type=float, default=0.05, metavar="F", help="default 0.05")
    p.add_argument("--global-element", action="append", default=[], metavar="ID", help="repeatable")
    p.add_argument("--json", action="store_true", help="the table as stored in the cluster")
    p.set_defaults(func=_cmd_cluster_table)
    p = cluster.add_parser(
        "status",
        help="per partition: owner, epoch, lease age, stream end, applied, lag",
        description="Exit 0 when every partition has an owner, 1 when one has none, 2 when the cluster "
        "cannot be reached.",
    )
    p.add_argument("--cluster", required=True, metavar="URLS", help="nats://host:port[,…]")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=_cmd_cluster_status)

    p = sub.add_parser(
        "demo", help="zero-setup demo: embedded broker, the daemon, a simulated network, a receiver"
    )
    p.add_argument(
        "--rate", type=rate, default=1.0, metavar="N", help="scenario speed: 1 real time, 10 faster, 0 max"
    )
    p.add_argument("--scenario", default="demo", help="built-in scenario name or file (default: demo)")
    p.add_argument(
        "--http-port", type=port, default=8080, metavar="PORT", help="HTTP API port (0: any free port)"
    )
    p.add_argument("--verbose", action="store_true", help="engine logs at info and every simulated message")
    p.set_defaults(func=_cmd_demo)

    from engine.tools import simulator

    p = sub.add_parser("simulate", help="publish a scenario to any MQTT broker, for trials and load")
    simulator.add_arguments(p)
    p.set_defaults(func=simulator.run)

    from engine.tools import qoe as qoe_cli

    qoe = sub.add_parser(
        "qoe",
        help="quality of experience: VoIP (ITU-T G.107 E-model) or video (ITU-T P.1203 mode 0)",
        description="engine qoe voip --help | engine qoe video --help",
    ).add_subparsers(dest="model", required=True, metavar="MODEL")
    p = qoe.add_parser("voip", help="ITU-T G.107 E-model: R and MOS", description=qoe_cli.VOIP_DESCRIPTION)
    qoe_cli.add_voip_arguments(p)
    p.set_defaults(func=qoe_cli.run_voip)
    p = qoe.add_parser(
        "video", help="ITU-T P.1203 mode 0: MOS of a video session", description=qoe_cli.VIDEO_DESCRIPTION
    )
    qoe_cli.add_video_arguments(p)
    p.set_defaults(func=qoe_cli.run_video)

    rules = sub.add_parser("rules", help="ruleset tooling").add_subparsers(
        dest="rules_command", required=True
    )
    p = rules.add_parser(
        "check",
        help="validate and compile rulesets",
        description="Validate and compile rulesets. Exit 0 they compile, 1 with every error found in "
        "them listed, 2 on bad usage (a path that does not exist or holds no ruleset, a --topology that "
        "does not load).",
    )
    p.add_argument("paths", nargs="+", type=input_path, metavar="DIR|FILE")
    p.add_argument(
        "--topology",
        type=input_file,
        metavar="FILE",
        help="also refuse names the topology lacks (maintenance scopes, priority customers, tiers and "
        "services, KPI targets and service types)",
    )
    p.set_defaults(func=_cmd_rules_check)
    p = rules.add_parser(
        "mine",
        help="learn correlation rules from an alarm history (the replay format): a ruleset to review",
        description="Learn, from history alone, which alarm types cause which (relation, lag window) and "
        "which behave as element-down roots; write a ruleset ordered by confidence, every rule "
        "annotated with its support, confidence and lift against a time-shifted baseline. "
        "Method: docs/mining.md.",
    )
    p.add_argument("events", nargs="?", type=Path, metavar="EVENTS.jsonl", help="or --store")
    p.add_argument(
        "--store",
        metavar="DB|-",
        help="mine the daemon's SQLite store's journal instead (read-only; '-': the one in --config)",
    )
    p.add_argument(
        "--config",
        type=input_file,
        metavar="FILE",
        help="the daemon's config: its store, alarm topics and topology (when --topology is not given)",
    )
    p.add_argument("--topology", type=Path, metavar="FILE", help="required unless --config names one")
    p.add_argument("--out", required=True, type=output_file, metavar="RULES.yaml", help="the mined ruleset")
    p.add_argument(
        "--effects-out",
        type=output_file,
        metavar="CONFIG.yaml",
        help="also write the core config section alarms.effects: learned down roots → outage",
    )
    p.add_argument("--name", default="mined", help="the ruleset's name (default: mined)")
    p.add_argument("--until", metavar="TIME", help="use only raises before this time (RFC 3339 or epoch s)")
    p.add_argument("--max-lag", default="10m", metavar="DURATION", help="longest lag looked at (default 10m)")
    p.add_argument("--hops", type=int, default=2, metavar="N", help="neighbour distance in links (default 2)")
    p.add_argument("--min-support", type=int, default=5, metavar="N", help="default 5")
    p.add_argument("--min-confidence", type=float, default=0.005, metavar="X", help="default 0.005")
    p.add_argument("--min-lift", type=float, default=1.5, metavar="X", help="default 1.5")
    p.add_argument(
        "--min-z",
        type=float,
        default=3.0,
        metavar="X",
        help="the support's excess over the time-shifted baseline, about a z-score (default 3)",
    )
    p.add_argument(
        "--orient",
        default="topology",
        metavar="topology|time",
        help="a pair of types' direction: the type raised nearer the top of the network (default; by "
        "time when equal), or the one of higher lift in time",
    )
    p.add_argument(
        "--explain-away",
        action="store_true",
        help="fit each symptom type's candidate causes together (a Hawkes-style EM) and drop those "
        "the others explain: fewer, more precise rules (docs/mining.md)",
    )
    p.set_defaults(func=_cmd_rules_mine)
    p = rules.add_parser(
        "diff",
        help="replay a history under two sets of rulesets: what changes for an operator",
        description="Replay EVENTS under the old rulesets (default: the built-in ones) and the new ones and "
        "report incidents, compression and pages (P1/P2) before and after, incidents merged, split and "
        "with another root, with examples. --since replays only the test period (after the one the "
        "new rules were mined on).",
    )
    p.add_argument("events", type=input_file, metavar="EVENTS.jsonl")
    p.add_argument("--topology", required=True, type=input_file, metavar="FILE")
    p.add_argument(
        "--old",
        action="append",
        type=input_path,
        metavar="DIR|FILE",
        help="repeatable; default: the built-in rules",
    )
    p.add_argument(
        "--new", action="append", required=True, type=input_path, metavar="DIR|FILE", help="repeatable"
    )
    p.add_argument("--config", type=input_file, metavar="FILE", help="core config for both sides")
    p.add_argument(
        "--new-config", type=input_file, metavar="FILE", help="core config of the new side (mined effects)"
    )
    p.add_argument("--since", metavar="TIME", help="replay only events at or after TIME (the test period)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--examples", type=int, default=5, metavar="N", help="examples of each change (default 5)")
    p.set_defaults(func=_cmd_rules_diff)
    p = rules.add_parser(
        "test",
        help="run rule tests (YAML timelines and expectations) on the virtual clock",
        description="Run rule tests on the virtual clock. Exit 0 every test passed, 1 a test failed, "
        "2 on bad usage (a path that does not exist, no test file, a test file that does not load: "
        "nothing is run then).",
    )
    p.add_argument("files", nargs="+", type=input_path, metavar="DIR|FILE")
    p.set_defaults(func=_cmd_rules_test)
    p = rules.add_parser(
        "explain",
        help="why did the engine do this? an alarm's or an incident's rules and decisions",
        description="Explain an alarm (its key) or an incident (inc-…): which rules matched it and how, "
        "what the engine decided and why not otherwise. From a replay on the virtual clock (state as "
        "of the end of the input, not drained, or --at TIME) or from a running daemon (--api URL). "
        "Exit 0 explained, 1 not found, 2 bad input.",
    )
    p.add_argument(
        "id", metavar="ALARM_KEY|INCIDENT_ID", help="inc-… is an incident; anything else an alarm key"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--replay", type=input_file, metavar="EVENTS.jsonl", help="replay this file, then explain"
    )
    source.add_argument(
        "--api", type=http_url, metavar="URL", help="ask a running engine (http://127.0.0.1:8080)"
    )
    p.add_argument("--topology", type=input_file, metavar="FILE", help="with --replay (required)")
    p.add_argument(
        "--rulesets",
        action="append",
        type=input_path,
        metavar="DIR|FILE",
        help="with --replay; default: built-in",
    )
    p.add_argument("--config", type=input_file, metavar="FILE", help="with --replay: core settings (YAML)")
    p.add_argument(
        "--at",
        type=time_arg,
        metavar="TIME",
        help="with --replay: the state as of this time (RFC 3339 or epoch)",
    )
    p.add_argument("--token", metavar="T", help="with --api: bearer token (default: $ENGINE_HTTP__TOKEN)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=_cmd_rules_explain)

    p = sub.add_parser(
        "report",
        help="service quality, customer experience and SLA reports (replay or the daemon's store)",
        description="Reports as of the end of a replay (not drained; or --at TIME) or of the daemon's "
        "store (its latest snapshot and journal, read-only: safe while it runs). Exit 0 reported, "
        "1 unknown customer, 2 bad input.",
    )
    p.add_argument("kind", choices=["services", "customers", "customer", "sla"])
    p.add_argument("--replay", type=input_file, metavar="FILE", help="JSON lines, as for `engine replay`")
    p.add_argument("--store", metavar="DB|-", help="the daemon's SQLite store ('-': the one in --config)")
    p.add_argument("--topology", type=input_file, metavar="FILE", help="with --replay")
    p.add_argument(
        "--rulesets", action="append", type=input_path, metavar="DIR|FILE", help="with --replay; repeatable"
    )
    p.add_argument(
        "--config", type=input_file, metavar="FILE", help="core settings (--replay) or the daemon's config"
    )
    p.add_argument(
        "--at", type=time_arg, metavar="TIME", help="with --replay: state as of this time (RFC 3339 or epoch)"
    )
    p.add_argument("--customer", metavar="ID", help="for `report customer`")
    p.add_argument(
        "--limit",
        type=int_range(1),
        default=50,
        metavar="N",
        help="customers: at most this many, worst first",
    )
    p.add_argument("--all", action="store_true", help="customers: every customer, not only affected ones")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=_cmd_report)

    impact = sub.add_parser("impact", help="impact tooling").add_subparsers(
        dest="impact_command", required=True
    )
    p = impact.add_parser(
        "what-if",
        help="planned work: who loses service, who loses redundancy, which SLAs breach",
        description="Take elements down on paper (--topology), on the network as the daemon's store holds "
        "it (--store, now or --at TIME) or on a running engine (--api): the elements down and at risk "
        "(redundancy lost), the customers losing service and at risk by tier and service, and the SLA "
        "tiers breached if the work lasts --hours, with what is already down taken into account.",
    )
    p.add_argument("--down", required=True, metavar="ELEMENT[,ELEMENT…]")
    p.add_argument("--topology", type=Path, metavar="FILE", help="on paper: the network (no alarms known)")
    p.add_argument("--hours", type=float, default=1.0, metavar="N", help="planned length (default 1)")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="core config (SLA tiers), or with --store the daemon's config",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--store",
        metavar="DB|-",
        help="with the alarms the daemon's store holds (read-only; '-': the one in --config)",
    )
    source.add_argument(
        "--api", type=http_url, metavar="URL", help="ask a running engine (its live alarms, its topology)"
    )
    p.add_argument(
        "--at",
        type=time_arg,
        metavar="TIME",
        help="with --store: the network as of this time (RFC 3339 or epoch)",
    )
    p.add_argument("--token", metavar="T", help="with --api: bearer token (default: $ENGINE_HTTP__TOKEN)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_impact_what_if)
    topo = sub.add_parser("topology", help="topology file tooling").add_subparsers(
        dest="topology_command", required=True
    )
    p = topo.add_parser(
        "compact",
        help="rewrite a topology with its customers in the compact form (customers_by_access): same "
        "topology, faster to load",
        description="Validate IN like any topology, then write OUT (.json, .yaml or .yml) with the same "
        "tiers, service types and elements and the customers as customers_by_access, one entry per access "
        "element with its groups of customers (tier, services, ids), or as customer_groups (--form), one "
        "entry per access element, tier and service list. OUT loads to the same topology. "
        "Exit 2 on a bad IN.",
    )
    p.add_argument("input", type=input_file, metavar="IN")
    p.add_argument("output", type=output_file, metavar="OUT")
    p.add_argument(
        "--form",
        choices=("customers_by_access", "customer_groups"),
        default="customers_by_access",
        help="the compact form to write (default customers_by_access; customer_groups is the earlier one, "
        "read by earlier versions of the engine)",
    )
    p.set_defaults(func=_cmd_topology_compact)
    data = sub.add_parser("dataset", help="convert public datasets").add_subparsers(
        dest="dataset", required=True
    )
    p = data.add_parser("pcic", help="Huawei PCIC 2021 / CSL 2023 folder → topology, events, config")
    p.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR")
    p.add_argument("--out", required=True, type=output_dir, metavar="DIR")
    p.add_argument("--limit", type=int_range(0), metavar="N", help="keep the first N alarm rows")
    p.set_defaults(func=_cmd_dataset_pcic)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except EngineError as exc:  # one line: a YAML parser's message spans several
        print(printable(f"error: {' '.join(str(exc).split())}"), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `engine replay … | head`
        return 0
    return status


if __name__ == "__main__":
    raise SystemExit(main())
