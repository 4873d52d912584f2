"""Bad configurations and inputs refused by the ``engine`` command line in words, run for real
(``python -m engine`` in a subprocess, as tests/test_cli.py does): exit status 2 and one line on
stderr naming the file, the line and the key (or the option, or the input line), never a traceback,
never silence."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.scenarios import alarm
from tests.test_cli import EXAMPLE_EVENTS, EXAMPLE_TOPOLOGY, Result, engine, write_lines


def _refused(r: Result, expected: str) -> None:
    """Exit 2 and exactly ``expected`` on stderr (one line), no traceback."""
    assert r.status == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr == expected + "\n"


def _run(config: Path, *, env: dict[str, str] | None = None) -> Result:
    """``engine run`` on ``config``: it loads the settings before it starts anything."""
    return engine("run", "--config", config, "--topology", EXAMPLE_TOPOLOGY, env=env)


# --- 1. topic filters subscribed to -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "topic", "reason"),
    [
        ("alarm_topics", "soc/#/x", "'#' must be the last level of an MQTT topic filter: 'soc/#/x'"),
        ("alarm_topics", "a/b+", "wildcard must occupy a whole level of an MQTT topic filter: 'a/b+'"),
        ("alarm_topics", "", "empty MQTT topic filter"),
        ("probe_topics", "soc/#/x", "'#' must be the last level of an MQTT topic filter: 'soc/#/x'"),
    ],
)
def test_a_malformed_topic_filter_is_refused_naming_line_key_and_index(
    tmp_path: Path, key: str, topic: str, reason: str
) -> None:
    """``mqtt.alarm_topics``/``probe_topics`` entries the broker would refuse are refused at load
    (exit 2, the line and the list index), as ``mqtt.incident_topic`` is: not a traceback from the
    decoder's routes."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"mqtt:\n  url: 'mqtt://127.0.0.1:1'\n  {key}: ['soc/ok/#', '{topic}']\n", encoding="utf-8"
    )
    _refused(_run(config), f"error: {config}: line 3: mqtt.{key}[1]: {reason}")


def test_a_malformed_topic_filter_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  url: 'mqtt://127.0.0.1:1'\n", encoding="utf-8")
    r = _run(config, env={"ENGINE_MQTT__ALARM_TOPICS": '["x/#/y"]'})
    _refused(
        r,
        f"error: {config}: ENGINE_MQTT__ALARM_TOPICS (environment): mqtt.alarm_topics[0]: "
        "'#' must be the last level of an MQTT topic filter: 'x/#/y'",
    )


def test_no_topic_filter_at_all_is_refused(tmp_path: Path) -> None:
    """The HTTP API routes what it is sent as if from the first filter: an empty list is refused."""
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  probe_topics: []\n", encoding="utf-8")
    _refused(
        _run(config),
        f"error: {config}: line 2: mqtt.probe_topics: "
        "needs at least one MQTT topic filter (soc/alarms/#, soc/probes/#)",
    )


# --- 2. topics published on -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "topic", "what"),
    [
        ("dead_letter_topic", "soc/#", "dead letters are published on it"),
        ("dead_letter_topic", "soc/+/dl", "dead letters are published on it"),
        ("dead_letter_topic", "", "dead letters are published on it"),
        ("dead_letter_topic", "$SYS/dl", "dead letters are published on it"),
        (
            "sync_topic",
            "a/#",
            "the start-up marker is published on <sync_topic>/<client_id>; null sends none",
        ),
        ("incident_topic", "soc/+/x", "null publishes no incident records on MQTT"),
    ],
)
def test_a_topic_to_publish_on_with_a_wildcard_is_refused_at_start(
    tmp_path: Path, key: str, topic: str, what: str
) -> None:
    """Every topic the config names for publishing is a valid topic name, without wildcards: a
    dead-letter topic ``soc/#`` was accepted and its dead letters were then never published."""
    config = tmp_path / "c.yaml"
    config.write_text(f"# broker\nmqtt:\n  url: 'mqtt://127.0.0.1:1'\n  {key}: '{topic}'\n", encoding="utf-8")
    _refused(
        _run(config),
        f"error: {config}: line 4: mqtt.{key}: {topic!r} is not a topic to publish on (not empty, no + or #"
        f" wildcards, no NUL, not starting with $, at most 65535 bytes); {what}",
    )


def test_a_client_id_with_a_wildcard_is_refused(tmp_path: Path) -> None:
    """The client id ends the start-up marker's topic: a wildcard in it could not be published on."""
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  client_id: 'eng#1'\n", encoding="utf-8")
    _refused(
        _run(config),
        f"error: {config}: line 2: mqtt.client_id: 'eng#1' is not a client id the engine can use (not"
        " empty, no + or # wildcards, no NUL): the start-up marker is published on"
        " <sync_topic>/<client_id>",
    )


# --- 3. durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "where", "reason"),
    [
        (
            "core:\n  incidents:\n    hold_down: 99999999999999999999999999d\n",
            "line 3: core.incidents.hold_down",
            "must be at most 7d, got 99999999999999999999999999d",
        ),
        (
            "core:\n  incidents:\n    hold_down: 1.0e+300\n",
            "line 3: core.incidents.hold_down",
            "must be at most 7d, got 1e+300s",
        ),
        (
            "core:\n  incidents:\n    settle: 999999999999d\n",
            "line 3: core.incidents.settle",
            "must be at most 1d, got 999999999999d",
        ),
        ("core:\n  reorder_tolerance: 1.0e+300\n", "line 2: core.reorder_tolerance", "must be at most 1d"),
        ("core:\n  alarms:\n    retain: 1.0e+300\n", "line 3: core.alarms.retain", "must be at most 30d"),
        (
            "core:\n  clock:\n    max_ahead: 1.0e+300\n",
            "line 3: core.clock.max_ahead",
            "must be at most 366d",
        ),
        (
            "core:\n  quality:\n    evaluate_every: 1.0e+300\n",
            "line 3: core.quality.evaluate_every",
            "must be at most 1d",
        ),
    ],
)
def test_an_absurdly_long_duration_is_refused_naming_key_line_and_bound(
    tmp_path: Path, yaml_text: str, where: str, reason: str
) -> None:
    """A timer set centuries ahead never fires: the replay exited 0 with incidents never opened or
    never resolved. Each duration key has an upper bound, named in the error."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    r = engine("replay", EXAMPLE_EVENTS, "--topology", EXAMPLE_TOPOLOGY, "--config", config)
    assert r.status == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: {config}: {where}: {reason}"), r.stderr


def test_a_duration_at_its_bound_is_accepted(tmp_path: Path) -> None:
    """The bounds refuse nonsense, not long settings: a hold-down of exactly 7d replays."""
    config = tmp_path / "c.yaml"
    config.write_text("core:\n  incidents:\n    hold_down: 7d\n    settle: 1d\n", encoding="utf-8")
    r = engine("replay", EXAMPLE_EVENTS, "--topology", EXAMPLE_TOPOLOGY, "--config", config)
    assert r.status == 0, r.stderr


def test_a_daemon_duration_past_its_bound_is_refused_at_start(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("store:\n  keep_dead_letters: 1.0e+300\n", encoding="utf-8")
    _refused(
        _run(config),
        f"error: {config}: line 2: store.keep_dead_letters: must be at most 366d, got 1e+300s",
    )


# --- 4. receivers and files named by the config -----------------------------------------------------


def test_a_receiver_named_mqtt_is_refused_at_its_own_line(tmp_path: Path) -> None:
    config = tmp_path / "recvmqtt.yaml"
    config.write_text(
        "mqtt:\n  url: 'mqtt://127.0.0.1:1'\nhttp:\n  port: 0\n\nreceivers:\n"
        "  - name: mqtt\n    url: http://127.0.0.1:9/x\n",
        encoding="utf-8",
    )
    _refused(
        _run(config),
        f"error: {config}: line 7: receivers[0].name: receiver name 'mqtt' is reserved for the MQTT"
        " incident topic (mqtt.incident_topic); give this receiver another name",
    )


def test_two_receivers_of_one_name_are_refused_naming_both(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "receivers:\n  - {name: noc, url: 'http://127.0.0.1:9/a'}\n  - {name: noc, url: 'http://127.0.0.1:9/b'}\n",
        encoding="utf-8",
    )
    _refused(
        _run(config),
        f"error: {config}: line 2: receivers: receiver names must be unique: 'noc' is the name of"
        " receivers[0] and receivers[1]",
    )


def test_a_missing_ruleset_is_refused_naming_the_config_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  url: 'mqtt://127.0.0.1:1'\nrulesets: [/nonexistent/rs]\n", encoding="utf-8")
    _refused(
        _run(config), f"error: {config}: line 3: rulesets[0]: /nonexistent/rs: no such file or directory"
    )


def test_a_missing_topology_is_refused_naming_the_config_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("topology: topo.yaml\n", encoding="utf-8")
    r = engine("run", "--config", config)
    _refused(r, f"error: {config}: line 1: topology: {tmp_path / 'topo.yaml'}: no such file")


# --- 5. rules mine ----------------------------------------------------------------------------------


def _mine(events: Path | str, out: Path | str, *extra: str) -> Result:
    return engine("rules", "mine", events, "--topology", EXAMPLE_TOPOLOGY, "--out", out, *extra)


def test_mining_an_empty_events_file_says_so_and_writes_nothing(tmp_path: Path) -> None:
    events, out = tmp_path / "events.jsonl", tmp_path / "m.yaml"
    events.write_bytes(b"")
    r = _mine(events, out)
    assert r.status == 2
    assert r.stderr.strip().endswith(
        f"error: {events}: no alarm raised in the events (not one line): nothing written to {out}"
    ), r.stderr
    assert "a ruleset needs at least one rule" not in r.stderr
    assert not out.exists()


def test_mining_garbage_names_the_invalid_lines(tmp_path: Path) -> None:
    events, out = write_lines(tmp_path / "events.jsonl", [b"garbage", b'{"a": 1}']), tmp_path / "m.yaml"
    r = _mine(events, out)
    assert r.status == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {events}: no alarm raised in the events (2 lines: 2 invalid, 0 clears,")
    assert "line 1: " in last
    assert not out.exists()


def test_mining_with_thresholds_nothing_passes_names_them(tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    r = _mine(EXAMPLE_EVENTS, out, "--min-support", "100")
    assert r.status == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {EXAMPLE_EVENTS}: no rule passed the thresholds (54 raises; --min-support 100,"
        " --min-confidence 0.005, --min-lift 1.5, --min-z 3): nothing written to"
        f" {out}; lower them, or mine a longer history"
    )
    assert not out.exists()


def test_mining_refuses_an_output_folder_that_does_not_exist(tmp_path: Path) -> None:
    """As ``engine dataset pcic --out`` and ``engine replay --out`` do: no folder made in silence."""
    out = tmp_path / "missing" / "x" / "m.yaml"
    r = _mine(EXAMPLE_EVENTS, out)
    _refused(
        r,
        f"engine rules mine: error: argument --out: no such directory: {out.parent}"
        " (see `engine rules mine --help`)",
    )
    assert not (tmp_path / "missing").exists()


def test_mining_with_a_config_checks_only_the_keys_it_reads(tmp_path: Path) -> None:
    """``--topology`` overrides the daemon config's, and mining reads no ruleset: a config that
    names a topology or a ruleset that is not there (the daemon's, from another machine) does not
    stop ``engine rules mine --config``; without ``--topology`` its missing topology does."""
    config = tmp_path / "engine.yaml"
    config.write_text("topology: /nonexistent/topo.yaml\nrulesets: [/nonexistent/rs]\n")
    out = tmp_path / "m.yaml"
    r = _mine(EXAMPLE_EVENTS, out, "--config", str(config))
    assert r.status == 0, r.stderr
    assert out.exists()
    r = engine("rules", "mine", EXAMPLE_EVENTS, "--config", config, "--out", tmp_path / "n.yaml")
    _refused(r, f"error: {config}: line 1: topology: /nonexistent/topo.yaml: no such file")


# --- 6. replay: a line's own time -------------------------------------------------------------------


def test_a_line_whose_own_time_does_not_parse_is_a_bad_line_naming_time(tmp_path: Path) -> None:
    """README: a line's optional ``time`` overrides the payload's. One that is there but invalid
    is a bad line (counted, dead-lettered with the field and the reason), not replaced in silence
    by the payload's time; the replay goes on."""
    good = alarm("olt-001", "linkDown", 0.0, "critical")
    lines = [
        orjson.dumps(good),
        orjson.dumps({**alarm("olt-002", "linkDown", 1.0, "critical"), "time": "garbage"}),
        orjson.dumps({**alarm("olt-003", "linkDown", 2.0, "critical"), "time": -5}),
        orjson.dumps({**alarm("olt-004", "linkDown", 3.0, "critical"), "time": 1e300}),
    ]
    events = write_lines(tmp_path / "events.jsonl", lines)
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    r = engine("replay", events, "--topology", EXAMPLE_TOPOLOGY, "--out", out, "--dead-letters", dead)
    assert r.status == 0, r.stderr
    summary = r.summary()
    assert summary["bad_lines"] == 3
    assert summary["bad_line_examples"] == [
        "line 2: time: not an RFC 3339 time: 'garbage'",
        "line 3: time: epoch seconds must not be negative",
        "line 4: time: time 1e+300 is after year 9999 (epoch milliseconds sent as seconds?)",
    ]
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(d["topic"], d["errors"][0]["field"]) for d in letters] == [
        (f"<replay line {n}>", "time") for n in (2, 3, 4)
    ]
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {rec["root_cause"]["ne_id"] for rec in records} == {"olt-001"}  # the good line goes on


def test_mining_refuses_a_line_whose_own_time_does_not_parse(tmp_path: Path) -> None:
    """``rules mine`` reads the replay format: the same line is invalid there, not timed by its payload."""
    lines = [orjson.dumps({**alarm("olt-002", "linkDown", 1.0, "critical"), "time": "garbage"})]
    events, out = write_lines(tmp_path / "events.jsonl", lines), tmp_path / "m.yaml"
    r = _mine(events, out)
    assert r.status == 2
    assert "line 1: invalid message on '': time: not an RFC 3339 time: 'garbage'" in r.stderr, r.stderr
