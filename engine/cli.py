"""The ``engine`` command line. Each subcommand parses its arguments, loads what it needs, and returns
an exit status: 0 success, 1 a check failed, 2 bad usage or bad input (with the reason on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from engine import __version__
from engine.errors import ConfigError, EngineError
from engine.rules.schema import load_rulesets


def _cmd_replay(args: argparse.Namespace) -> int:
    from engine.pipeline import Pipeline
    from engine.replay import Replayer, dumps
    from engine.settings import load_core_settings
    from engine.topology import load_topology

    topology = load_topology(args.topology)
    rulesets = load_rulesets(args.rulesets)
    settings = load_core_settings(args.config)
    pipeline = Pipeline(topology, rulesets, settings)
    out: IO[bytes] = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    dead: IO[bytes] | None = open(args.dead_letters, "wb") if args.dead_letters else None  # noqa: SIM115
    try:

        def emit(rec: dict[str, Any]) -> None:
            out.write(dumps(rec))

        def dead_letter(rec: dict[str, Any]) -> None:
            if dead is not None:
                dead.write(dumps(rec))

        replayer = Replayer(pipeline, emit=emit, dead_letter=dead_letter if dead else None)
        try:
            fh = open(args.events, "rb")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(str(args.events), "", f"cannot read events: {exc.strerror or exc}") from None
        with fh:
            stats = replayer.run(fh)
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
        if dead:
            dead.close()
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
    sys.stderr.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from engine import daemon
    from engine.config import load_settings
    from engine.logs import configure_logging

    overrides: dict[str, object] = {}
    if args.topology is not None:
        overrides["topology"] = str(args.topology)
    if args.rulesets:
        overrides["rulesets"] = [str(p) for p in args.rulesets]
    settings = load_settings(args.config, overrides=overrides)
    configure_logging(settings.logging)
    return asyncio.run(daemon.run(settings))


def _cmd_demo(args: argparse.Namespace) -> int:
    from engine import demo

    return demo.main(args.rate, args.scenario, args.http_port, args.verbose)


def _cmd_qoe(args: argparse.Namespace) -> int:
    if args.model == "voip":
        from engine.qoe import emodel

        return emodel.main(args.rest)
    from engine.qoe import video

    return video.main(args.rest)


def _cmd_rules_check(args: argparse.Namespace) -> int:
    from engine.rules.compiler import compile_rulesets

    errors: list[str] = []
    loaded = []
    for raw in args.paths:
        try:
            loaded.extend(load_rulesets([raw]))
        except ConfigError as exc:
            errors.append(str(exc))
    if not errors:
        try:
            program = compile_rulesets(loaded)
        except ConfigError as exc:
            errors.append(str(exc))
        else:
            for rs in loaded:
                print(f"ok   {rs.source}: ruleset {rs.name!r}, {len(rs.rules)} rule(s)")
            print(f"compiled {len(program.rules)} rule(s) into {len(program.definitions)} durable ruleset(s)")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


def _cmd_rules_test(args: argparse.Namespace) -> int:
    from engine.rules.testing import run_files

    return run_files(args.files, out=sys.stdout)


def _cmd_dataset_pcic(args: argparse.Namespace) -> int:
    from engine.datasets import pcic

    argv = [str(args.dataset_dir), "--out", str(args.out)]
    if args.limit is not None:
        argv += ["--limit", str(args.limit)]
    return pcic.main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engine", description=__doc__)
    parser.add_argument("--version", action="version", version=f"engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="replay a JSON-lines event file on virtual time")
    p.add_argument("events", type=Path, metavar="EVENTS.jsonl")
    p.add_argument("--topology", required=True, type=Path, metavar="FILE")
    p.add_argument("--rulesets", action="append", metavar="DIR|FILE", help="repeatable; default: built-in")
    p.add_argument("--config", type=Path, metavar="FILE", help="core settings (YAML)")
    p.add_argument("--out", type=Path, metavar="FILE", help="incident records (default: stdout)")
    p.add_argument("--dead-letters", type=Path, metavar="FILE", help="rejected messages with reasons")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("run", help="run the daemon: MQTT in, webhooks out, durable state, HTTP API")
    p.add_argument("--config", type=Path, metavar="FILE", help="engine settings (YAML); ENGINE_* overrides")
    p.add_argument("--topology", type=Path, metavar="FILE", help="overrides `topology` in the config")
    p.add_argument("--rulesets", action="append", metavar="DIR|FILE", help="overrides `rulesets`; repeatable")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "demo", help="zero-setup demo: embedded broker, the daemon, a simulated network, a receiver"
    )
    p.add_argument("--rate", type=float, default=1.0, help="scenario speed (1 = real time)")
    p.add_argument("--scenario", default="demo", help="built-in scenario name or file (default: demo)")
    p.add_argument("--http-port", type=int, default=8080, help="HTTP API port (0: any free port)")
    p.add_argument("--verbose", action="store_true", help="engine logs at info and every simulated message")
    p.set_defaults(func=_cmd_demo)

    from engine import simulator

    p = sub.add_parser("simulate", help="publish a scenario to any MQTT broker, for trials and load")
    simulator.add_arguments(p)
    p.set_defaults(func=simulator.run)

    p = sub.add_parser(
        "qoe",
        help="quality of experience: VoIP (ITU-T G.107 E-model) or video (ITU-T P.1203 mode 0)",
        description="engine qoe voip --help | engine qoe video --help",
    )
    p.add_argument("model", choices=["voip", "video"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the model's own options")
    p.set_defaults(func=_cmd_qoe)

    rules = sub.add_parser("rules", help="ruleset tooling").add_subparsers(
        dest="rules_command", required=True
    )
    p = rules.add_parser("check", help="validate and compile rulesets")
    p.add_argument("paths", nargs="+", metavar="DIR|FILE")
    p.set_defaults(func=_cmd_rules_check)
    p = rules.add_parser("test", help="run rule tests (YAML timelines and expectations) on the virtual clock")
    p.add_argument("files", nargs="+", type=Path, metavar="DIR|FILE")
    p.set_defaults(func=_cmd_rules_test)

    data = sub.add_parser("dataset", help="convert public datasets").add_subparsers(
        dest="dataset", required=True
    )
    p = data.add_parser("pcic", help="Huawei PCIC 2021 / CSL 2023 folder → topology, events, config")
    p.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--limit", type=int, metavar="N")
    p.set_defaults(func=_cmd_dataset_pcic)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `engine replay … | head`
        return 0
    return status


if __name__ == "__main__":
    raise SystemExit(main())
