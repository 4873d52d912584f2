"""The PCIC 2021 / CSL 2023 dataset converter: topology rule, replay order, effects, errors, output."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from engine.errors import ConfigError
from engine.model.timeutil import parse_time
from engine.tools.datasets.pcic import (
    Converted,
    causal_pairs,
    convert,
    main,
    transitive_closure,
    write,
)

ALARM_HEADER = "alarm_id,device_id,start_timestamp,end_timestamp\n"
REAL_24V = Path(__file__).resolve().parents[1].parent / "shared/datasets/pcic2021/24V_439N_Microwave"


def dataset(
    root: Path,
    alarms: str,
    *,
    topology: str | None = None,
    dag: str | None = None,
    name: str = "net",
    alarm_file: str = "Alarm.csv",
) -> Path:
    """Write a dataset folder; ``alarms``, ``topology`` and ``dag`` are CSV bodies without header."""
    folder = root / name
    folder.mkdir()
    (folder / alarm_file).write_text(ALARM_HEADER + alarms)
    if topology is not None:
        (folder / "topology_edges.csv").write_text("device_a,device_b\n" + topology)
    if dag is not None:
        (folder / "true_dag_edges.csv").write_text("cause_alarm_id,effect_alarm_id\n" + dag)
    return folder


def depends(converted: Converted) -> dict[str, list[Any]]:
    return {e["id"]: e["depends_on"] for e in converted.topology["elements"]}


def messages(converted: Converted) -> list[tuple[str, str, str, str]]:
    """(ne_id, probable_cause, severity, event_time) of every message, in order."""
    return [
        (p["ne_id"], p["probable_cause"], p["severity"], p["event_time"])
        for p in (e["payload"] for e in converted.events)
    ]


# --- dependencies ----------------------------------------------------------------------------------


def test_hub_is_the_device_of_highest_degree_and_others_depend_one_step_closer(tmp_path: Path) -> None:
    """The highest-degree device is the hub with no dependencies; each other depends on its parent."""
    folder = dataset(tmp_path, "0,1,0,0\n", topology="1,2\n2,3\n3,4\n3,5\n")
    assert depends(convert(folder)) == {
        "dev-1": ["dev-2"],
        "dev-2": ["dev-3"],
        "dev-3": [],
        "dev-4": ["dev-3"],
        "dev-5": ["dev-3"],
    }


def test_hub_ties_go_to_the_lowest_device_number(tmp_path: Path) -> None:
    """In a 4-cycle every degree is 2: device 2 (lowest) is the hub, 9 (opposite) needs 3 or 10."""
    folder = dataset(tmp_path, "", topology="10,2\n2,3\n3,9\n9,10\n")
    assert depends(convert(folder)) == {
        "dev-2": [],
        "dev-3": ["dev-2"],
        "dev-9": [["dev-3", "dev-10"]],
        "dev-10": ["dev-2"],
    }


def test_several_closer_neighbours_form_one_redundancy_group_sorted_by_number(tmp_path: Path) -> None:
    """A device with two neighbours one step closer gets one any-of group, sorted numerically."""
    folder = dataset(tmp_path, "", topology="0,10\n0,9\n0,4\n10,3\n9,3\n")
    converted = convert(folder)
    assert depends(converted)["dev-3"] == [["dev-9", "dev-10"]]
    assert depends(converted)["dev-0"] == []
    assert converted.summary["redundancy_groups"] == 1
    assert converted.summary["dependencies"] == 4


def test_isolated_devices_and_separate_components(tmp_path: Path) -> None:
    """Each component has its own hub; a device seen only in alarms is an element with no dependencies."""
    folder = dataset(tmp_path, "0,42,5,5\n", topology="1,2\n2,3\n7,8\n")
    converted = convert(folder)
    assert depends(converted) == {
        "dev-1": ["dev-2"],
        "dev-2": [],
        "dev-3": ["dev-2"],
        "dev-7": [],
        "dev-8": ["dev-7"],
        "dev-42": [],
    }
    s = converted.summary
    assert (s["devices"], s["elements"], s["components"], s["isolated_devices"]) == (6, 6, 2, 1)
    assert (s["topology_edges"], s["dependencies"], s["redundancy_groups"]) == (3, 3, 0)
    assert [e["id"] for e in converted.topology["elements"]] == [
        "dev-1",
        "dev-2",
        "dev-3",
        "dev-7",
        "dev-8",
        "dev-42",
    ]


def test_elements_carry_type_from_folder_name_and_no_site(tmp_path: Path) -> None:
    """Microwave/Wireless folders give those element types, others ``device``; no site or region."""
    for name, kind in [("24V_9N_Microwave", "microwave"), ("18V_5N_Wireless", "wireless"), ("x", "device")]:
        converted = convert(dataset(tmp_path, "0,1,0,0\n", name=name))
        assert converted.topology == {
            "service_types": {},
            "elements": [{"id": "dev-1", "type": kind, "depends_on": []}],
            "customers": [],
        }
        assert converted.name == name


def test_random_graphs_give_an_acyclic_dependency_graph_reaching_every_hub(tmp_path: Path) -> None:
    """On random multigraphs with loops, following dependencies always ends at a hub, never cycles."""
    rng = random.Random(20210101)
    for trial in range(20):
        edges = [(rng.randrange(40), rng.randrange(40)) for _ in range(rng.randrange(10, 80))]
        body = "".join(f"{a},{b}\n" for a, b in edges)
        converted = convert(dataset(tmp_path, "", topology=body, name=f"g{trial}"))
        deps = depends(converted)
        hubs = {e for e, d in deps.items() if not d}
        for start in deps:
            node, steps = start, 0
            while deps[node]:
                first = deps[node][0]
                node = first[0] if isinstance(first, list) else first
                steps += 1
                assert steps <= len(deps)
            assert node in hubs


# --- events ----------------------------------------------------------------------------------------


def test_each_row_raises_at_start_and_clears_at_end(tmp_path: Path) -> None:
    """One row → a ``major`` raise at base+start and a ``cleared`` at base+end, on the device's topic."""
    converted = convert(dataset(tmp_path, "7,3,23,90\n"))
    assert converted.events == [
        {
            "topic": "soc/alarms/dev-3",
            "payload": {
                "ne_id": "dev-3",
                "severity": "major",
                "probable_cause": "pcicType7",
                "event_type": "communicationsAlarm",
                "event_time": "2021-01-01T00:00:23.000Z",
            },
        },
        {
            "topic": "soc/alarms/dev-3",
            "payload": {
                "ne_id": "dev-3",
                "severity": "cleared",
                "probable_cause": "pcicType7",
                "event_type": "communicationsAlarm",
                "event_time": "2021-01-01T00:01:30.000Z",
            },
        },
    ]


def test_messages_sorted_by_time_ties_in_file_order_raise_before_clear(tmp_path: Path) -> None:
    """Unsorted rows come out by time; at equal times file order holds, each raise before its clear."""
    rows = "1,1,50,60\n2,2,10,10\n3,3,10,50\n"
    got = messages(convert(dataset(tmp_path, rows, alarm_file="alarm.csv")))
    assert got == [
        ("dev-2", "pcicType2", "major", "2021-01-01T00:00:10.000Z"),
        ("dev-2", "pcicType2", "cleared", "2021-01-01T00:00:10.000Z"),
        ("dev-3", "pcicType3", "major", "2021-01-01T00:00:10.000Z"),
        ("dev-1", "pcicType1", "major", "2021-01-01T00:00:50.000Z"),
        ("dev-3", "pcicType3", "cleared", "2021-01-01T00:00:50.000Z"),
        ("dev-1", "pcicType1", "cleared", "2021-01-01T00:01:00.000Z"),
    ]


def test_overlapping_rows_of_one_identity_are_kept_and_counted(tmp_path: Path) -> None:
    """A raise while the same (device, type) is open is kept and counted; back-to-back rows are not."""
    rows = "0,1,0,100\n0,1,10,20\n0,1,50,60\n0,2,10,20\n0,1,100,100\n0,1,100,100\n"
    converted = convert(dataset(tmp_path, rows))
    assert converted.summary["alarms"] == 6
    assert converted.summary["messages"] == 12
    assert converted.summary["overlaps"] == 2  # rows 2 and 3; row 5 starts as row 1 clears, in file order


def test_end_before_start_is_cleared_at_start_and_counted(tmp_path: Path) -> None:
    """A row whose end precedes its start (CSL 2023 has five) is cleared at its start time."""
    converted = convert(dataset(tmp_path, "4,0,30,27\n"))
    assert [m[2:] for m in messages(converted)] == [
        ("major", "2021-01-01T00:00:30.000Z"),
        ("cleared", "2021-01-01T00:00:30.000Z"),
    ]
    assert converted.summary["end_before_start"] == 1
    assert converted.summary["span_seconds"] == 0


def test_base_epoch_limit_and_span(tmp_path: Path) -> None:
    """``base_epoch`` shifts every time; ``limit`` keeps the first rows of the file; span is end−start."""
    folder = dataset(tmp_path, "0,0,5,65\n1,1,7,7\n2,2,9,3600\n")
    converted = convert(folder, base_epoch=1_700_000_000.0, limit=2)
    times = [parse_time(e["payload"]["event_time"]) for e in converted.events]
    assert times == [1_700_000_005.0, 1_700_000_007.0, 1_700_000_007.0, 1_700_000_065.0]
    assert (converted.summary["alarms"], converted.summary["span_seconds"]) == (2, 60)
    assert converted.summary["devices"] == 2
    assert convert(folder, limit=0).events == []
    with pytest.raises(ValueError, match="limit"):
        convert(folder, limit=-1)


def test_conversion_is_deterministic(tmp_path: Path) -> None:
    """The same folder converts to equal values and writes byte-identical files."""
    folder = dataset(tmp_path, "1,3,0,4\n0,2,0,0\n", topology="2,3\n3,4\n", dag="0,1\n")
    first, second = convert(folder), convert(folder)
    assert first == second
    a, b = write(first, tmp_path / "a"), write(second, tmp_path / "b")
    assert {k: p.read_bytes() for k, p in a.items()} == {k: p.read_bytes() for k, p in b.items()}


# --- effects and ground truth ----------------------------------------------------------------------


def test_every_type_is_degraded_and_the_expert_graph_is_not_used(tmp_path: Path) -> None:
    """No semantics: one ``degraded`` effect for every type, whether or not the folder has an expert
    graph (ground truth is read by ``causal_pairs`` for scoring, never by the conversion)."""
    with_dag = convert(dataset(tmp_path, "0,0,0,0\n", dag="10,2\n2,3\n10,3\n", name="a"))
    without = convert(dataset(tmp_path, "0,0,0,0\n", name="b"))
    assert with_dag.config == without.config == {"alarms": {"effects": [{"effect": "degraded"}]}}
    assert "causal_pairs" not in with_dag.summary
    assert sorted(write(with_dag, tmp_path / "out")) == ["config", "events", "topology"]
    with pytest.raises(ConfigError, match=r"true_dag_edges\.csv: file not found"):
        causal_pairs(tmp_path / "b")


def test_causal_pairs_and_transitive_closure(tmp_path: Path) -> None:
    """``causal_pairs`` maps type numbers to probable causes; the closure adds every chain."""
    folder = dataset(tmp_path, "", dag="0,1\n1,2\n2,3\n0,1\n5,6\n")
    pairs = causal_pairs(folder)
    assert pairs == {
        ("pcicType0", "pcicType1"),
        ("pcicType1", "pcicType2"),
        ("pcicType2", "pcicType3"),
        ("pcicType5", "pcicType6"),
    }
    assert transitive_closure(pairs) == pairs | {
        ("pcicType0", "pcicType2"),
        ("pcicType0", "pcicType3"),
        ("pcicType1", "pcicType3"),
    }
    assert transitive_closure([]) == frozenset()


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "location", "reason"),
    [
        ("0,1,2,3\n0,1,x,3\n", "line 3", "start_timestamp: expected a non-negative integer, got 'x'"),
        ("0,1,2\n", "line 2", "expected 4 fields, got 3"),
        ("0,1,2,3,4\n", "line 2", "expected 4 fields, got 5"),
        ("0,-1,2,3\n", "line 2", "device_id: expected a non-negative integer, got '-1'"),
        ("0,1,2.5,3\n", "line 2", "start_timestamp: expected a non-negative integer"),
        ("0,1,2,\n", "line 2", "end_timestamp: expected a non-negative integer, got ''"),
    ],
)
def test_malformed_alarm_rows_name_file_and_line(
    tmp_path: Path, body: str, location: str, reason: str
) -> None:
    """A non-integer value or a wrong field count raises ConfigError with the file and the line."""
    folder = dataset(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        convert(folder)
    assert info.value.source == str(folder / "Alarm.csv")
    assert info.value.location == location
    assert info.value.reason.startswith(reason)


def test_malformed_topology_and_dag_files_are_reported(tmp_path: Path) -> None:
    """The optional topology is checked too, with its name and line; a malformed expert graph is an
    error of ``causal_pairs`` (scoring), not of the conversion, which never reads it."""
    folder = dataset(tmp_path, "0,0,0,0\n", topology="1,2\n\n3;4\n")
    with pytest.raises(ConfigError) as info:
        convert(folder)
    assert (info.value.source, info.value.location) == (str(folder / "topology_edges.csv"), "line 4")
    (folder / "topology_edges.csv").unlink()
    (folder / "true_dag_edges.csv").write_text("cause,effect\n0,1\n")
    assert convert(folder).summary["alarms"] == 1
    with pytest.raises(ConfigError, match=r"true_dag_edges\.csv: line 1: header 'cause,effect' lacks"):
        causal_pairs(folder)


def test_missing_folder_alarm_file_or_header(tmp_path: Path) -> None:
    """No folder, no alarm file, or an empty alarm file each raise a ConfigError that says so."""
    with pytest.raises(ConfigError, match="no such directory"):
        convert(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        convert(tmp_path / "empty")
    assert (info.value.source, info.value.reason) == (str(tmp_path / "empty" / "Alarm.csv"), "file not found")
    (tmp_path / "empty" / "Alarm.csv").write_text("")
    with pytest.raises(ConfigError, match="line 1: empty file"):
        convert(tmp_path / "empty")


def test_crlf_bom_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    """The CSL 2023 sample uses CRLF; a UTF-8 BOM and blank lines are tolerated too."""
    folder = tmp_path / "crlf"
    folder.mkdir()
    (folder / "alarm.csv").write_bytes(
        b"\xef\xbb\xbf" + ALARM_HEADER.encode() + b"3,1,0,5\r\n\r\n2,1,1,1\r\n"
    )
    assert convert(folder).summary["alarms"] == 2


# --- output and command line -----------------------------------------------------------------------


def test_write_produces_the_three_files(tmp_path: Path) -> None:
    """YAML topology and config load back equal; one compact JSON object per line; no ground truth."""
    folder = dataset(tmp_path, "1,2,0,3\n", topology="1,2\n", dag="10,1\n1,2\n")
    converted = convert(folder)
    paths = write(converted, tmp_path / "out" / "nested")
    assert sorted(paths) == ["config", "events", "topology"]
    assert yaml.safe_load(paths["topology"].read_text()) == converted.topology
    assert yaml.safe_load(paths["config"].read_text()) == converted.config
    lines = paths["events"].read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == converted.events
    assert all(b" " not in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "out" / "nested").iterdir()) == [
        "config.yaml",
        "events.jsonl",
        "topology.yaml",
    ]


def test_main_prints_summary_and_returns_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command converts, writes the files and prints the summary as JSON."""
    folder = dataset(tmp_path, "0,0,0,0\n1,0,1,2\n")
    assert main([str(folder), "--out", str(tmp_path / "out"), "--limit", "1"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert (summary["name"], summary["alarms"], summary["messages"]) == ("net", 1, 2)
    assert (tmp_path / "out" / "events.jsonl").is_file()


def test_main_on_a_bad_folder_prints_an_error_and_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder without an alarm file is a clear one-line error on stderr, exit status 2, no output."""
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {tmp_path / 'Alarm.csv'}: file not found\n"
    assert not (tmp_path / "out").exists()


# --- the real data ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not REAL_24V.is_dir(), reason=f"dataset not present at {REAL_24V}")
def test_real_24v_microwave_network_converts() -> None:
    """PCIC 2021 24V_439N: 64,598 alarms → 129,196 messages in time order over ≤ 439 devices, a DAG."""
    converted = convert(REAL_24V)
    s = converted.summary
    assert s["alarms"] == 64_598
    assert s["messages"] == len(converted.events) == 129_196
    assert s["devices"] == s["elements"] <= 439
    times = [parse_time(e["payload"]["event_time"]) for e in converted.events]
    assert times == sorted(times)
    assert times[0] == 1609459200.0
    assert s["span_seconds"] == times[-1] - times[0]
    assert len(causal_pairs(REAL_24V)) == 137
    ids = {e["id"] for e in converted.topology["elements"]}
    for element in converted.topology["elements"]:
        for dep in element["depends_on"]:
            assert set(dep if isinstance(dep, list) else [dep]) <= ids
