"""Core settings (``engine.core.settings``): defaults, durations, and bad configurations refused with the
file, the setting's dotted path, the line when loaded from a file, and the reason."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from engine.core.settings import DEFAULT_EFFECTS, CoreSettings, core_settings_from_data
from engine.errors import ConfigError
from engine.service.config import load_core_settings, load_settings

# --- bad configurations: (YAML text, location when loaded from a file, reason fragment) -----------
# The location is "line N: dotted.path"; core_settings_from_data without a locator gives the path alone.

BAD_CONFIGS = [
    pytest.param(
        "incidents:\n  settle: 10s\n  settel: 30s\n",
        "line 3: incidents.settel",
        "unknown field (expected one of settle, hold_down, update_interval)",
        id="unknown-key-in-section",
    ),
    pytest.param("reorder: 3s\n", "line 1: reorder", "unknown field", id="unknown-top-level-key"),
    pytest.param(
        "alarms:\n  flapping:\n    transitons: 4\n",
        "line 3: alarms.flapping.transitons",
        "unknown field",
        id="unknown-nested-key",
    ),
    pytest.param(
        "# timers\nincidents:\n  hold_down: soon\n",
        "line 3: incidents.hold_down",
        "not a duration: 'soon' (use e.g. 30s, 5m, 1h, 250ms)",
        id="bad-duration",
    ),
    pytest.param(
        "incidents:\n  settle: -5\n",
        "line 2: incidents.settle",
        "duration must be a finite, non-negative number",
        id="negative-duration",
    ),
    pytest.param(
        "incidents:\n  update_interval: true\n",
        "line 2: incidents.update_interval",
        "expected a duration, got boolean",
        id="boolean-duration",
    ),
    pytest.param(
        "alarms:\n  flapping:\n    transitions: many\n",
        "line 3: alarms.flapping.transitions",
        "expected an integer, got 'many'",
        id="wrong-type-scalar",
    ),
    pytest.param(
        "incidents: [1, 2]\n",
        "line 1: incidents",
        "expected a mapping, got list",
        id="wrong-type-section",
    ),
    pytest.param(
        "alarms:\n  flapping:\n    transitions: 1\n",
        "line 3: alarms.flapping.transitions",
        "must be at least 2, got 1",
        id="flapping-transitions-below-2",
    ),
    pytest.param(
        "alarms:\n  effects: []\n",
        "line 2: alarms",
        "effects needs at least one rule",
        id="empty-effects",
    ),
    pytest.param(
        "alarms:\n  effects:\n    - probable_cause: linkDown\n      effect: explode\n",
        "line 4: alarms.effects[0].effect",
        "'explode' is not one of 'outage', 'degraded' or 'none'",
        id="unknown-effect-name",
    ),
    pytest.param(
        "alarms:\n  effects:\n    - severity: [critical, awful]\n      effect: outage\n",
        "line 3: alarms.effects[0].severity[1]",
        "'awful' is not one of 'critical', 'major', 'minor', 'warning' or 'indeterminate'",
        id="unknown-severity-in-effect",
    ),
    pytest.param(
        "alarms:\n  effects:\n    - effect: outage\n      when: always\n",
        "line 4: alarms.effects[0].when",
        "unknown field",
        id="unknown-key-in-effect",
    ),
    pytest.param(
        "broker:\n  host: mqtt.local\ncore:\n  incidents:\n    settel: 3\n",
        "line 5: core.incidents.settel",
        "unknown field",
        id="unknown-key-in-core-section-of-engine-config",
    ),
]


@pytest.mark.parametrize(("text", "location", "reason"), BAD_CONFIGS)
def test_bad_config_file_names_the_line_the_setting_and_the_reason(
    tmp_path: Path, text: str, location: str, reason: str
) -> None:
    """``load_core_settings`` refuses a bad file with ConfigError(file, "line N: dotted.path", reason)."""
    path = tmp_path / "engine.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_core_settings(path)
    err = info.value
    assert err.source == str(path)
    assert err.location == location
    assert reason in err.reason
    assert str(err) == f"{path}: {location}: {err.reason}"


@pytest.mark.parametrize(
    ("data", "location", "reason"),
    [
        pytest.param({"incidents": {"settel": "30s"}}, "incidents.settel", "unknown field", id="unknown-key"),
        pytest.param(
            {"incidents": {"hold_down": "soon"}}, "incidents.hold_down", "not a duration", id="bad-duration"
        ),
        pytest.param(
            {"alarms": {"flapping": {"transitions": 1}}},
            "alarms.flapping.transitions",
            "must be at least 2, got 1",
            id="transitions-below-2",
        ),
        pytest.param(
            {"alarms": {"effects": []}}, "alarms", "effects needs at least one rule", id="no-effects"
        ),
        pytest.param(
            {"alarms": {"effects": [{"effect": "explode"}]}},
            "alarms.effects[0].effect",
            "'explode' is not one of 'outage', 'degraded' or 'none'",
            id="unknown-effect",
        ),
        pytest.param(
            {"incidents": {"settle": math.inf}},
            "incidents.settle",
            "duration must be a finite, non-negative number",
            id="infinite-duration",
        ),
        pytest.param(["settle"], "", "expected a mapping of settings, got list", id="not-a-mapping"),
        pytest.param({"core": [1]}, "core", "expected a mapping, got list", id="core-not-a-mapping"),
    ],
)
def test_bad_inline_config_names_the_setting_and_the_reason(data: Any, location: str, reason: str) -> None:
    """``core_settings_from_data`` (no file, no lines) names the source and the dotted path."""
    with pytest.raises(ConfigError) as info:
        core_settings_from_data(data, "cfg.yaml")
    assert (info.value.source, info.value.location) == ("cfg.yaml", location)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("text", "location"),
    [
        pytest.param("incidents:\n  settle: 10s\n   hold_down: 5m\n", "line 3, column 13", id="bad-indent"),
        pytest.param("incidents:\n  settle: [10s\n", "line 3, column 1", id="unclosed-bracket"),
        pytest.param("incidents: {settle: 1s\n", "line 2, column 1", id="unclosed-brace"),
        pytest.param("incidents:\n  settle: 1s\n  settle: 2s\n", "line 3", id="duplicate-key"),
    ],
)
def test_yaml_syntax_errors_name_the_line(tmp_path: Path, text: str, location: str) -> None:
    """Malformed YAML (and a duplicated key) is a ConfigError naming the file and the line."""
    path = tmp_path / "engine.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_core_settings(path)
    assert (info.value.source, info.value.location) == (str(path), location)
    assert "malformed YAML" in info.value.reason or "duplicate key 'settle'" in info.value.reason


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported as such, not as a traceback."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_core_settings(path)
    assert (info.value.source, info.value.reason) == (str(path), "file not found")


def test_full_engine_config_takes_the_core_section_and_ignores_the_others(tmp_path: Path) -> None:
    """A daemon config with ``broker``, ``http``… and a ``core`` section is accepted; only ``core`` counts."""
    path = tmp_path / "engine.yaml"
    path.write_text(
        "broker:\n  host: mqtt.local\n  port: 1883\n"
        "http:\n  listen: 0.0.0.0:8080\n"
        "core:\n"
        "  incidents:\n    settle: 10s\n    hold_down: 2m\n"
        "  alarms:\n    flapping: {transitions: 4, window: 5m}\n"
        "  reorder_tolerance: 2s\n",
        encoding="utf-8",
    )
    core = load_core_settings(path)
    assert (core.incidents.settle, core.incidents.hold_down, core.incidents.update_interval) == (
        10.0,
        120.0,
        5.0,
    )
    assert (core.alarms.flapping.transitions, core.alarms.flapping.window) == (4, 300.0)
    assert core.reorder_tolerance == 2.0


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty-file"),
        pytest.param("# nothing configured yet\n", id="only-a-comment"),
        pytest.param("core:\n", id="empty-core-section"),
        pytest.param("{}\n", id="empty-mapping"),
    ],
)
def test_empty_config_gives_the_documented_defaults(tmp_path: Path, text: str) -> None:
    """An empty document is a valid configuration: every setting has its documented default."""
    path = tmp_path / "engine.yaml"
    path.write_text(text, encoding="utf-8")
    core = load_core_settings(path)
    assert core == CoreSettings()
    assert core == load_core_settings(None)
    assert (core.incidents.settle, core.incidents.hold_down, core.incidents.update_interval) == (
        30.0,
        300.0,
        5.0,
    )
    assert (core.alarms.flapping.transitions, core.alarms.flapping.window) == (6, 600.0)
    assert core.alarms.flapping.quiet_period == 600.0  # quiet defaults to the window
    assert (core.alarms.retain, core.reorder_tolerance) == (3600.0, 5.0)
    assert core.alarms.effects == DEFAULT_EFFECTS
    assert core.alarms.effects[-1].effect == "none"  # the catch-all comes last


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param("1.5h", 5400.0, id="fractional-hours"),
        pytest.param("2d", 172800.0, id="days"),
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param(" 10 s ", 10.0, id="spaces"),
        pytest.param("45", 45.0, id="digits-as-string"),
        pytest.param(45, 45.0, id="plain-integer"),
        pytest.param(2.5, 2.5, id="plain-float"),
        pytest.param(0, 0.0, id="zero"),
    ],
)
def test_durations_accept_units_and_plain_numbers(tmp_path: Path, value: Any, seconds: float) -> None:
    """Durations take ``ms``, ``s``, ``m``, ``h``, ``d`` suffixes or plain seconds, inline and from YAML."""
    inline = core_settings_from_data({"incidents": {"hold_down": value}})
    assert inline.incidents.hold_down == seconds
    path = tmp_path / "engine.yaml"
    rendered = f'"{value}"' if isinstance(value, str) else str(value)
    path.write_text(f"incidents:\n  hold_down: {rendered}\nalarms:\n  retain: {rendered}\n", encoding="utf-8")
    loaded = load_core_settings(path)
    assert (loaded.incidents.hold_down, loaded.alarms.retain) == (seconds, seconds)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("5M", id="upper-case-unit"),
        pytest.param("5 minutes", id="word-unit"),
        pytest.param("-5s", id="negative"),
        pytest.param("1e3", id="exponent"),
        pytest.param("", id="empty"),
        pytest.param("5m30s", id="compound"),
    ],
)
def test_durations_refuse_anything_else(value: str) -> None:
    """Anything that is not a number with one known unit is refused, naming the value."""
    with pytest.raises(ConfigError) as info:
        core_settings_from_data({"incidents": {"settle": value}}, "cfg.yaml")
    assert info.value.location == "incidents.settle"
    assert info.value.reason == f"not a duration: {value!r} (use e.g. 30s, 5m, 1h, 250ms)"


def test_flapping_quiet_period_can_differ_from_the_window() -> None:
    """``quiet`` ends flapping after its own period when set; the window is kept."""
    core = core_settings_from_data({"alarms": {"flapping": {"window": "10m", "quiet": "2m"}}})
    assert (core.alarms.flapping.window, core.alarms.flapping.quiet_period) == (600.0, 120.0)


def test_effect_rules_accept_a_single_value_for_a_list() -> None:
    """An effect rule's ``probable_cause``, ``event_type`` and ``severity`` take one value or a list."""
    core = core_settings_from_data(
        {
            "alarms": {
                "effects": [
                    {"probable_cause": "linkDown", "severity": "critical", "effect": "outage"},
                    {"event_type": ["qualityOfServiceAlarm"], "effect": "degraded"},
                    {"effect": "none"},
                ]
            }
        }
    )
    first, second, last = core.alarms.effects
    assert (first.probable_cause, first.severity, first.effect) == (("linkDown",), ("critical",), "outage")
    assert (second.event_type, second.effect) == (("qualityOfServiceAlarm",), "degraded")
    assert (last.probable_cause, last.event_type, last.severity, last.effect) == (None, None, None, "none")


@pytest.mark.parametrize("topic", ["soc/incidents/#", "soc/+/incidents", ""])
def test_an_incident_topic_no_one_can_publish_on_is_refused_with_the_way_to_turn_it_off(
    tmp_path: Path, topic: str
) -> None:
    """``mqtt.incident_topic`` is published on: a wildcard (the broker would drop the connection) or
    an empty topic is refused at load, naming the line and saying that null turns it off."""
    path = tmp_path / "engine.yaml"
    path.write_text(f"mqtt:\n  incident_topic: '{topic}'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.location == "line 2: mqtt.incident_topic"
    assert "no + or # wildcards" in info.value.reason
    assert "null publishes no incident records" in info.value.reason
    path.write_text("mqtt:\n  incident_topic: null\n", encoding="utf-8")
    assert load_settings(path, environ={}).mqtt.incident_topic is None
    # and from the environment: "null" is YAML's null there too, not a topic named "null"
    env = {"ENGINE_MQTT__INCIDENT_TOPIC": "null"}
    assert load_settings(None, environ=env).mqtt.incident_topic is None
