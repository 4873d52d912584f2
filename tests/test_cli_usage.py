"""A user's mistake on the command line: every subcommand, run for real with silly arguments.

Each row runs one command line as a subprocess (from the repository root, ``python -m engine …`` or
a module's own ``python -m``) and checks what an operator sees: the documented exit status (2 for
bad usage and bad input, 1 for what a check found), exactly one line on stderr that names the
argument (or the file, or the variable) and says what is wrong, nothing on stdout, and never a
Python traceback. The rows run in a small thread pool (the commands are independent), so the
table costs what its slowest few commands cost, not their sum.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.service.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
EVENTS = "examples/fiber-cut.jsonl"
TOPOLOGY = "examples/topology.yaml"
ENGINE = (sys.executable, "-m", "engine")


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {tmp} is the folder of silly files below
    says: str  # must appear in the one line on stderr: the argument, file or variable, and why
    status: int = 2
    env: Mapping[str, str] = field(default_factory=dict)
    module: tuple[str, ...] = ENGINE


def case(id: str, *argv: str, says: str, status: int = 2, **kw: object) -> Case:
    return Case(id, argv, says, status, **kw)  # type: ignore[arg-type]


def silly_files(tmp: Path) -> None:
    """A folder, a binary file, a Latin-1 YAML file, an empty file, broken YAML, a config with a bad
    duration, a broken ruleset, a file where a folder is expected, a copy of the example events (that
    an --out must not overwrite), and a daemon config that can
    never reach a broker (so a row that wrongly starts the daemon fails by timeout, and never
    touches the machine's broker)."""
    (tmp / "adir").mkdir()
    (tmp / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp / "latin1.yaml").write_bytes(b"name: caf\xe9\nrules: []\n")
    (tmp / "empty.yaml").write_bytes(b"")
    (tmp / "broken.yaml").write_text("a: [\n")
    (tmp / "baddur.yaml").write_text("core:\n  incidents:\n    settle: banana\n")
    (tmp / "ruleset.yaml").write_text("name: r\nrules:\n  - name: x\n    correlate: {relation: up}\n")
    (tmp / "afile").write_text("not a folder\n")
    (tmp / "events.jsonl").write_bytes((ROOT / EVENTS).read_bytes())
    (tmp / "daemon.yaml").write_text(
        f"topology: {ROOT / TOPOLOGY}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n"
        f"http: {{port: 0}}\nstore: {{path: {tmp / 'engine.sqlite'}}}\n"
    )


CASES: list[Case] = [
    # --- engine (no command, unknown command) ---
    case("no-command", says="required: COMMAND"),
    case("unknown-command", "frobnicate", says="invalid choice: 'frobnicate'"),
    # --- replay ---
    case(
        "replay-out-missing-dir",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--out",
        "{tmp}/no/dir/x",
        says="argument --out: no such directory: {tmp}/no/dir",
    ),
    case(
        "replay-out-is-dir",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--out",
        "{tmp}/adir",
        says="argument --out: is a directory",
    ),
    case(
        "replay-out-disk-full",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--out",
        "/dev/full",
        says="argument --out: cannot write /dev/full: No space left on device",
    ),
    case(
        "replay-dead-letters-missing-dir",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--dead-letters",
        "{tmp}/no/x",
        says="argument --dead-letters: no such directory",
    ),
    case(
        "replay-out-is-the-events-file",
        "replay",
        "{tmp}/events.jsonl",
        "--topology",
        TOPOLOGY,
        "--out",
        "{tmp}/events.jsonl",
        says="argument --out: {tmp}/events.jsonl is also EVENTS.jsonl: it would be overwritten",
    ),
    case(
        "replay-dead-letters-is-out",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--out",
        "{tmp}/records.jsonl",
        "--dead-letters",
        "{tmp}/records.jsonl",
        says="argument --dead-letters: {tmp}/records.jsonl is also --out: it would be overwritten",
    ),
    case(
        "replay-events-missing",
        "replay",
        "{tmp}/none.jsonl",
        "--topology",
        TOPOLOGY,
        says="argument EVENTS.jsonl: no such file: {tmp}/none.jsonl",
    ),
    case(
        "replay-events-is-dir",
        "replay",
        "{tmp}/adir",
        "--topology",
        TOPOLOGY,
        says="argument EVENTS.jsonl: is a directory",
    ),
    case("replay-no-topology", "replay", EVENTS, says="required: --topology"),
    case(
        "replay-topology-missing",
        "replay",
        EVENTS,
        "--topology",
        "{tmp}/none.yaml",
        says="argument --topology: no such file",
    ),
    case(
        "replay-topology-is-dir",
        "replay",
        EVENTS,
        "--topology",
        "{tmp}/adir",
        says="argument --topology: is a directory",
    ),
    case(
        "replay-topology-binary",
        "replay",
        EVENTS,
        "--topology",
        "{tmp}/binary.yaml",
        says="{tmp}/binary.yaml: invalid YAML: unacceptable character #x0000",
    ),
    case(
        "replay-topology-empty", "replay", EVENTS, "--topology", "{tmp}/empty.yaml", says="{tmp}/empty.yaml"
    ),
    case(
        "replay-topology-broken-yaml",
        "replay",
        EVENTS,
        "--topology",
        "{tmp}/broken.yaml",
        says="{tmp}/broken.yaml: line 2",
    ),
    case(
        "replay-rulesets-missing",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--rulesets",
        "{tmp}/nope",
        says="argument --rulesets: no such file or directory",
    ),
    case(
        "replay-rulesets-empty-dir",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--rulesets",
        "{tmp}/adir",
        says="{tmp}/adir: no *.yaml ruleset",
    ),
    case(
        "replay-rulesets-latin1",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--rulesets",
        "{tmp}/latin1.yaml",
        says="{tmp}/latin1.yaml: line 1: not valid UTF-8",
    ),
    case(
        "replay-config-missing",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--config",
        "{tmp}/none.yaml",
        says="argument --config: no such file",
    ),
    case(
        "replay-config-bad-duration",
        "replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--config",
        "{tmp}/baddur.yaml",
        says="line 3: core.incidents.settle: not a duration: 'banana'",
    ),
    # --- run (the config is refused before any connection) ---
    case("run-config-missing", "run", "--config", "{tmp}/none.yaml", says="argument --config: no such file"),
    case("run-config-is-dir", "run", "--config", "{tmp}/adir", says="argument --config: is a directory"),
    case("run-config-binary", "run", "--config", "{tmp}/binary.yaml", says="not valid UTF-8"),
    case(
        "run-topology-missing",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        "--topology",
        "{tmp}/none.yaml",
        says="argument --topology: no such file",
    ),
    case(
        "run-rulesets-missing",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        "--rulesets",
        "{tmp}/none",
        says="argument --rulesets: no such file or directory",
    ),
    case(
        "env-port-out-of-range",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_HTTP__PORT": "99999"},
        says="ENGINE_HTTP__PORT (environment): http.port: must be at most 65535, got '99999'",
    ),
    case(
        "env-port-not-a-number",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_HTTP__PORT": "abc"},
        says="ENGINE_HTTP__PORT (environment): http.port: expected an integer, got 'abc'",
    ),
    case(
        "env-bad-mqtt-url",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_MQTT__URL": "not-a-url"},
        says="ENGINE_MQTT__URL (environment): mqtt.url: expected mqtt://host:port",
    ),
    case(
        "env-bad-json",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_MQTT__ALARM_TOPICS": "[oops"},
        says="ENGINE_MQTT__ALARM_TOPICS: not valid JSON",
    ),
    case(
        "env-single-underscore",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_HTTP_PORT": "9000"},
        says="); nested keys are joined by two underscores: ENGINE_HTTP__PORT",
    ),
    case(
        "env-unknown-section",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_HTTPS__PORT": "9000"},
        says="ENGINE_HTTPS__PORT (environment): unknown field (expected one of ENGINE_CORE__…, "
        "ENGINE_TOPOLOGY, ENGINE_RULESETS, ENGINE_MQTT__…, ENGINE_STORE__…, ENGINE_HTTP__…,",
    ),
    case(
        "env-unknown-key",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_HTTP__BOGUS": "1"},
        says="ENGINE_HTTP__BOGUS (environment): http.bogus: unknown field (expected one of enabled, host",
    ),
    case(
        "env-bad-level",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_LOGGING__LEVEL": "loud"},
        says="logging.level: 'loud' is not one of 'debug', 'info', 'warning' or 'error'",
    ),
    case(
        "env-negative-duration",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_CORE__INCIDENTS__SETTLE": "-5s"},
        says="core.incidents.settle: not a duration",
    ),
    case(
        "env-store-is-dir",
        "run",
        "--config",
        "{tmp}/daemon.yaml",
        env={"ENGINE_STORE__PATH": "{tmp}/adir"},
        says="ENGINE_STORE__PATH (environment): store.path: {tmp}/adir is a directory",
    ),
    # --- demo (refused before anything starts) ---
    case("demo-rate-negative", "demo", "--rate", "-1", says="argument --rate: must be a finite number ≥ 0"),
    case("demo-rate-nan", "demo", "--rate", "nan", says="argument --rate: must be a finite number ≥ 0"),
    case("demo-rate-word", "demo", "--rate", "fast", says="argument --rate: not a number: 'fast'"),
    case(
        "demo-port-too-big",
        "demo",
        "--http-port",
        "99999",
        says="argument --http-port: must be within 0..65535",
    ),
    case(
        "demo-port-negative",
        "demo",
        "--http-port",
        "-1",
        says="argument --http-port: must be within 0..65535",
    ),
    # --- simulate ---
    case("simulate-no-scenario", "simulate", says="--scenario NAME|FILE is required"),
    case(
        "simulate-broker-not-mqtt",
        "simulate",
        "--scenario",
        "demo",
        "--broker",
        "http://x",
        says="argument --broker: expected mqtt://host:port",
    ),
    case(
        "simulate-broker-bad-port",
        "simulate",
        "--scenario",
        "demo",
        "--broker",
        "mqtt://127.0.0.1:99999",
        says="argument --broker: bad port",
    ),
    case(
        "simulate-storm-too-big",
        "simulate",
        "--scenario",
        "storm",
        "--count",
        "99999999999999",
        says="argument --count: must be within 1..1000000",
    ),
    case("simulate-scenario-is-dir", "simulate", "--scenario", "{tmp}/adir", says="{tmp}/adir"),
    case("simulate-scenario-binary", "simulate", "--scenario", "{tmp}/binary.yaml", says="not valid UTF-8"),
    # --- qoe ---
    case("qoe-no-model", "qoe", says="engine qoe: error: the following arguments are required: MODEL"),
    case("qoe-unknown-model", "qoe", "audio", says="argument MODEL: invalid choice: 'audio'"),
    case("qoe-voip-no-delay", "qoe", "voip", says="required: --delay-ms"),
    case("qoe-voip-negative-delay", "qoe", "voip", "--delay-ms", "-5", says="delay_ms must be in [0, 10000]"),
    case("qoe-voip-infinite-delay", "qoe", "voip", "--delay-ms", "1e400", says="delay_ms must be in"),
    case(
        "qoe-video-bad-resolution",
        "qoe",
        "video",
        "--bitrate-kbps",
        "3000",
        "--resolution",
        "big",
        "--fps",
        "30",
        says="argument --resolution: expected WIDTHxHEIGHT",
    ),
    # --- rules check: 0 ok, 1 errors found in the rulesets, 2 usage ---
    case(
        "check-missing-path",
        "rules",
        "check",
        "{tmp}/nope",
        says="argument DIR|FILE: no such file or directory",
    ),
    case("check-empty-dir", "rules", "check", "{tmp}/adir", says="no *.yaml or *.yml ruleset in {tmp}/adir"),
    case(
        "check-topology-missing",
        "rules",
        "check",
        "--topology",
        "{tmp}/none.yaml",
        "rulesets/",
        says="argument --topology: no such file",
    ),
    case(
        "check-broken-ruleset",
        "rules",
        "check",
        "{tmp}/ruleset.yaml",
        status=1,
        says="{tmp}/ruleset.yaml: line 4",
    ),
    case("check-latin1-ruleset", "rules", "check", "{tmp}/latin1.yaml", status=1, says="not valid UTF-8"),
    # --- rules test: 0 passed, 1 a test failed, 2 usage (nothing run) ---
    case(
        "test-missing-path",
        "rules",
        "test",
        "{tmp}/nope",
        says="argument DIR|FILE: no such file or directory",
    ),
    case("test-empty-dir", "rules", "test", "{tmp}/adir", says="no test file (*.yaml, *.yml) in {tmp}/adir"),
    case(
        "test-binary-file",
        "rules",
        "test",
        "{tmp}/binary.yaml",
        says="{tmp}/binary.yaml: line 2: not valid UTF-8",
    ),
    case("test-empty-file", "rules", "test", "{tmp}/empty.yaml", says="{tmp}/empty.yaml: expected a mapping"),
    # --- rules explain: 0 explained, 1 not found, 2 usage ---
    case(
        "explain-api-not-a-url",
        "rules",
        "explain",
        "K",
        "--api",
        "not-a-url",
        says="argument --api: expected an http:// or https:// URL",
    ),
    case(
        "explain-api-bad-ipv6",
        "rules",
        "explain",
        "K",
        "--api",
        "http://[::1",
        says="argument --api: not a valid URL",
    ),
    case(
        "explain-api-ftp",
        "rules",
        "explain",
        "K",
        "--api",
        "ftp://x",
        says="argument --api: expected an http://",
    ),
    case("explain-api-no-host", "rules", "explain", "K", "--api", "http://", says="argument --api: no host"),
    case(
        "explain-api-refused",
        "rules",
        "explain",
        "K",
        "--api",
        "http://127.0.0.1:1",
        says="cannot ask http://127.0.0.1:1/explain/alarms/K",
    ),
    case(
        "explain-no-source", "rules", "explain", "K", says="one of the arguments --replay --api is required"
    ),
    case(
        "explain-replay-no-topology",
        "rules",
        "explain",
        "K",
        "--replay",
        EVENTS,
        says="--replay needs --topology FILE",
    ),
    case(
        "explain-token-with-replay",
        "rules",
        "explain",
        "K",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--token",
        "t",
        says="--token goes with --api",
    ),
    case(
        "explain-at-words",
        "rules",
        "explain",
        "K",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--at",
        "yesterday",
        says="argument --at: not an RFC 3339 time: 'yesterday'",
    ),
    case(
        "explain-at-infinite",
        "rules",
        "explain",
        "K",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--at",
        "1e400",
        says="argument --at: time must be a finite number",
    ),
    case(
        "explain-at-year-33658",
        "rules",
        "explain",
        "K",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--at",
        "1e12",
        says="argument --at: out of range (years 1970..9999)",
    ),
    case(
        "explain-at-no-offset",
        "rules",
        "explain",
        "K",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--at",
        "2026-01-01T00:10:00",
        says="argument --at: RFC 3339 time needs an offset or Z",
    ),
    # --- report: 0 reported, 1 unknown customer, 2 usage ---
    case(
        "report-limit-negative",
        "report",
        "customers",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--limit",
        "-1",
        says="argument --limit: must be at least 1, got '-1'",
    ),
    case(
        "report-limit-zero",
        "report",
        "customers",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--limit",
        "0",
        says="argument --limit: must be at least 1",
    ),
    case("report-no-source", "report", "services", says="give --replay FILE (with --topology) or --store"),
    case(
        "report-customer-without-id",
        "report",
        "customer",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        says="`report customer` needs --customer ID",
    ),
    case(
        "report-unknown-customer",
        "report",
        "customer",
        "--customer",
        "nope",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        status=1,
        says="no customer 'nope' in the topology",
    ),
    case(
        "report-store-without-config",
        "report",
        "sla",
        "--store",
        "-",
        says="--store needs the daemon's --config",
    ),
    case(
        "report-store-missing",
        "report",
        "sla",
        "--store",
        "{tmp}/none.sqlite",
        "--config",
        "{tmp}/daemon.yaml",
        says="{tmp}/none.sqlite: no such store",
    ),
    case(
        "report-store-binary",
        "report",
        "sla",
        "--store",
        "{tmp}/binary.yaml",
        "--config",
        "{tmp}/daemon.yaml",
        says="{tmp}/binary.yaml: not an engine store",
    ),
    case(
        "report-at-garbage",
        "report",
        "services",
        "--replay",
        EVENTS,
        "--topology",
        TOPOLOGY,
        "--at",
        "soon",
        says="argument --at: not an RFC 3339 time",
    ),
    # --- dataset pcic ---
    case(
        "pcic-missing-dir",
        "dataset",
        "pcic",
        "{tmp}/nope",
        "--out",
        "{tmp}/out",
        says="{tmp}/nope: no such directory",
    ),
    case(
        "pcic-out-is-file",
        "dataset",
        "pcic",
        "{tmp}/adir",
        "--out",
        "{tmp}/afile",
        says="argument --out: exists and is not a directory",
    ),
    case(
        "pcic-limit-negative",
        "dataset",
        "pcic",
        "{tmp}/adir",
        "--out",
        "{tmp}/out",
        "--limit",
        "-1",
        says="argument --limit: must be at least 0",
    ),
    # --- the modules' own command lines ---
    case(
        "receiver-port",
        "--port",
        "70000",
        module=(sys.executable, "-m", "engine.tools.receiver"),
        says="python -m engine.tools.receiver: error: argument --port: must be within 0..65535",
    ),
    case(
        "receiver-fail-first",
        "--fail-first",
        "-1",
        module=(sys.executable, "-m", "engine.tools.receiver"),
        says="argument --fail-first: must be within 0..1000000",
    ),
    case(
        "simulator-module-rate",
        "--scenario",
        "demo",
        "--rate",
        "-2",
        module=(sys.executable, "-m", "engine.tools.simulator"),
        says="argument --rate",
    ),
]


@dataclass(frozen=True)
class Ran:
    status: int | None  # None: still running after the timeout
    stdout: str
    stderr: str


def _run(c: Case, tmp: Path) -> Ran:
    argv = [*c.module, *(a.replace("{tmp}", str(tmp)) for a in c.argv)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update({k: v.replace("{tmp}", str(tmp)) for k, v in c.env.items()})
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=90, check=False)
    except subprocess.TimeoutExpired as exc:
        return Ran(None, str(exc.stdout or b""), str(exc.stderr or b""))
    return Ran(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


@pytest.fixture(scope="module")
def silly(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Ran]]:
    """Every row run once, four at a time."""
    tmp = tmp_path_factory.mktemp("silly")
    silly_files(tmp)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip([c.id for c in CASES], pool.map(lambda c: _run(c, tmp), CASES), strict=True))
    return tmp, results


def test_the_table_has_unique_ids() -> None:
    """Each row has its own id (the results are keyed by it)."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_a_silly_argument_gets_one_line_naming_it_and_the_documented_status(
    c: Case, silly: tuple[Path, dict[str, Ran]]
) -> None:
    """Exit 2 (or the documented status), one line on stderr naming the argument and the problem,
    nothing on stdout, no traceback."""
    tmp, results = silly
    r = results[c.id]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.status == c.status, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert c.says.replace("{tmp}", str(tmp)) in lines[0]
    assert r.stdout == ""


def test_the_receiver_module_names_itself_in_its_usage() -> None:
    """``python -m engine.tools.receiver --help`` shows how it is really run (there is no
    ``engine receive``)."""
    proc = subprocess.run(
        [sys.executable, "-m", "engine.tools.receiver", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m engine.tools.receiver ")
    assert "engine receive" not in proc.stdout


@pytest.mark.parametrize("model", ["voip", "video"])
def test_qoe_models_are_subcommands_with_their_own_help(model: str) -> None:
    """``engine qoe voip --help`` and ``engine qoe video --help`` print the model's options under its
    own name (the models are subcommands, not a ``model rest...`` pair)."""
    proc = subprocess.run(
        [*ENGINE, "qoe", model, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: engine qoe {model} ")
    assert ("--delay-ms" if model == "voip" else "--bitrate-kbps") in proc.stdout


def test_engine_pure_python_is_not_taken_for_a_setting() -> None:
    """``ENGINE_PURE_PYTHON=1`` (the core's source instead of its compiled build, README) shares the
    settings' prefix: the daemon refused to start with it as an unknown setting."""
    settings = load_settings(None, environ={"ENGINE_PURE_PYTHON": "1", "ENGINE_HTTP__PORT": "9001"})
    assert settings.http.port == 9001
    with pytest.raises(ConfigError, match="ENGINE_PURE_PYTHONS \\(environment\\): unknown field"):
        load_settings(None, environ={"ENGINE_PURE_PYTHONS": "1"})
