"""Rule mining (``engine rules mine``): statistics, selection, the ruleset it writes, the command."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from bench.mining import pairs_by_ruleset, seen_edges
from engine.adapters.store import Store
from engine.cli import main
from engine.core.pipeline import Pipeline
from engine.core.settings import core_settings_from_data
from engine.model.timeutil import format_time
from engine.model.topology import Topology, topology_from_dict
from engine.rules.schema import load_ruleset_file, ruleset_from_data
from engine.service.daemon import Daemon
from engine.tools.mining import mine_lines
from engine.tools.mining import stats as mining_stats
from engine.tools.mining.fit import Candidate, fit_symptom
from engine.tools.mining.rules import Thresholds, effects_document, poisson_z, ruleset_document, select
from engine.tools.mining.stats import LAG_BOUNDS, CoOccurrence, Counts
from engine.tools.replay import Replayer
from tests.daemon_harness import settings, until, write_config
from tests.test_cli import engine

T0 = 1_700_000_000.0
TOPOLOGY: dict[str, Any] = {
    "elements": [
        {"id": "hub", "type": "router", "depends_on": []},
        {"id": "agg", "type": "switch", "depends_on": ["hub"]},
        *({"id": f"acc-{i}", "type": "olt", "depends_on": ["agg"]} for i in range(4)),
        *({"id": f"far-{i}", "type": "olt", "depends_on": []} for i in range(4)),
    ],
    "customers": [],
}


def alarm(t: float, ne: str, cause: str, *, clear: bool = False) -> bytes:
    payload = {
        "ne_id": ne,
        "severity": "cleared" if clear else "major",
        "probable_cause": cause,
        "event_time": format_time(t),
    }
    return orjson.dumps({"topic": f"soc/alarms/{ne}", "payload": payload})


def history(seed: int = 7, bursts: int = 40, t0: float = T0) -> list[bytes]:
    """``bursts`` link failures: ``linkFail`` on agg, then ``svcLoss`` on two access elements below it
    2-20 s later, and ``cardHot`` on the same element as a repeat of itself; plus ``noise`` raised at
    random on unrelated elements (Poisson-like, as often as the symptoms)."""
    rng = random.Random(seed)
    events: list[tuple[float, bytes]] = []
    for k in range(bursts):
        t = t0 + k * 3 * 3600 + rng.randint(0, 600)
        events.append((t, alarm(t, "agg", "linkFail")))
        for i in rng.sample(range(4), 2):
            d = t + rng.randint(2, 20)
            events.append((d, alarm(d, f"acc-{i}", "svcLoss")))
        events.append((t + 60, alarm(t + 60, "agg", "linkFail", clear=True)))
    for _ in range(bursts * 2):
        t = t0 + rng.uniform(0, bursts * 3 * 3600)
        ne = f"far-{rng.randrange(4)}"
        events.append((t, alarm(t, ne, "noise")))
        events.append((t + 5, alarm(t + 5, ne, "noise", clear=True)))
    events.sort(key=lambda e: e[0])
    return [line for _, line in events]


def topology() -> Topology:
    return topology_from_dict(TOPOLOGY, source="test")


def test_a_cause_below_its_effect_is_found_with_relation_window_and_figures() -> None:
    """linkFail on agg precedes svcLoss below it: one downstream_of rule, with support (every svcLoss),
    confidence 1, a lift far above the shifted baseline, a window covering the 2-20 s lags; the random
    noise gives no rule; linkFail is an element-down root."""
    mined, stats = mine_lines(history(), topology())
    assert (stats.raises, stats.clears, stats.invalid) == (40 * 3 + 80, 40 + 80, 0)
    cross = [r for r in mined.rules if r.root != r.symptom]
    assert [(r.root, r.symptom, r.relation) for r in cross] == [("linkFail", "svcLoss", "downstream_of")]
    rule = cross[0]
    assert rule.support == 80
    assert rule.confidence == 1.0
    assert rule.lift > 10
    assert rule.strict == 80
    assert rule.reverse_strict == 0
    assert 15 <= rule.window <= 30
    assert all("noise" not in (r.root, r.symptom) for r in mined.rules)
    assert [r.probable_cause for r in mined.roots] == ["linkFail"]
    assert mined.type_graph() == {("linkFail", "svcLoss")}


def test_the_written_ruleset_is_valid_ordered_by_confidence_and_deterministic(tmp_path: Path) -> None:
    """The document loads as a ruleset; each rule carries its statistics; effects make the learned
    roots outages; the same input gives byte-identical output."""
    mined, _ = mine_lines(history(), topology(), thresholds=Thresholds(min_support=5))
    doc = ruleset_document(mined, name="mined", source="h.jsonl", params={})
    rs = ruleset_from_data(doc, "mined.yaml")
    assert rs.name == "mined"
    assert len(rs.rules) == len(mined.rules) >= 1
    confidences = [r.confidence for r in mined.rules]
    assert confidences == sorted(confidences, reverse=True)
    first = doc["rules"][0]
    assert "support" in first["description"]
    assert "lift" in first["description"]
    assert effects_document(mined) == {
        "alarms": {"effects": [{"probable_cause": ["linkFail"], "effect": "outage"}, {"effect": "degraded"}]}
    }
    again, _ = mine_lines(history(), topology(), thresholds=Thresholds(min_support=5))
    assert yaml.safe_dump(
        ruleset_document(again, name="mined", source="h.jsonl", params={})
    ) == yaml.safe_dump(doc)


def test_replaying_with_the_mined_rules_makes_one_incident_per_failure() -> None:
    """Mined on history, replayed on later failures of the same kind: one incident per burst, rooted
    at linkFail on agg (an outage, as learned), its svcLoss symptoms suppressed by the mined rule."""
    mined, _ = mine_lines(history(), topology())
    rs = ruleset_from_data(ruleset_document(mined, name="mined", source="h", params={}), "mined")
    later = history(seed=99, bursts=3)
    pipeline = Pipeline(topology(), [rs], core_settings_from_data(effects_document(mined), source="x"))
    records: list[dict[str, Any]] = []
    try:
        Replayer(pipeline, emit=records.append).run(later)
    finally:
        pipeline.correlator.close()
    opened = [r for r in records if r["event"] == "opened" and r["root_cause"]["ne_id"] == "agg"]
    assert len(opened) == 3
    for rec in opened:
        assert rec["state"] == "outage"
        assert {s["probable_cause"] for s in rec["suppressed"]} == {"svcLoss"}
        assert all(s["rule"] == "mined/linkfail-explains-svcloss-downstream-of" for s in rec["suppressed"])


def test_history_is_bounded_by_the_shifted_window() -> None:
    """Streaming: each element keeps only the last shift + max_lag seconds of raises."""
    co = CoOccurrence(topology(), max_lag=60.0, shift=600.0)
    for i in range(5000):
        co.add(T0 + i * 10.0, "agg", "x")
    kept = co._history["agg"]
    assert len(kept.times) - kept.start <= 67
    assert len(kept.times) <= 2 * 67 + 65
    assert len(co._base_marked) <= 2 * 67
    assert len(co._followed) <= 7
    assert co.close().raises["x"] == 5000


def test_the_command_writes_the_ruleset_and_effects_and_reports(tmp_path: Path) -> None:
    """``engine rules mine`` writes a ruleset that ``rules check`` accepts, the effects, and a JSON
    report on stderr; bad options are one-line errors with exit status 2."""
    events = tmp_path / "h.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in history()))
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY))
    out, effects = tmp_path / "rules" / "mined.yaml", tmp_path / "effects.yaml"
    out.parent.mkdir()  # (a folder that does not exist is refused, as every --out's: test_cli_config_checks)
    r = engine("rules", "mine", events, "--topology", topo, "--out", out, "--effects-out", effects)
    assert r.status == 0, r.stderr
    report = orjson.loads(r.stderr)
    assert (report["raises"], report["cross_type_rules"], report["down_roots"]) == (200, 1, ["linkFail"])
    assert load_ruleset_file(out).name == "mined"
    assert out.read_text().startswith("# Mined by `engine rules mine h.jsonl")
    assert yaml.safe_load(effects.read_text())["alarms"]["effects"][0]["probable_cause"] == ["linkFail"]
    check = engine("rules", "check", "--topology", topo, out)
    assert check.status == 0, check.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-lift", "0.5"], "error: --min-lift: must be at least 1, got 0.5"),
        (["--min-z", "-1"], "error: --min-z: must be within 0..100, got -1.0"),
        (["--orient", "sideways"], "error: --orient: must be one of topology, time, got sideways"),
        (["--max-lag", "soon"], "error: --max-lag: "),
        (["--hops", "0"], "error: --hops: must be within 1..5, got 0"),
        (["--until", "yesterday"], "error: --until: "),
        (["--name", "Bad Name"], "error: --name: a ruleset name is"),
        (["--topology", "absent.yaml"], "error: absent.yaml: "),
        (["--events", "absent.jsonl"], "error: absent.jsonl: cannot read events"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_write_nothing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "h.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in history(bursts=3)))
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY))
    given = dict(zip(args[::2], args[1::2], strict=True))
    source = str(tmp_path / given.pop("--events")) if "--events" in given else str(events)
    if "--topology" in given:
        given["--topology"] = str(tmp_path / given["--topology"])
    opts = {"--topology": str(topo), **given}
    argv = ["rules", "mine", source, "--out", str(tmp_path / "x.yaml")]
    for k, v in opts.items():
        argv += [k, v]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        message.replace("absent", str(tmp_path / "absent"), 1) if "absent" in message else message
    ), err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.yaml").exists()


def test_until_mines_only_the_first_part_and_bad_lines_are_counted() -> None:
    """``until`` stops at a time; a malformed line or an unknown element is counted, not fatal."""
    lines = history()
    mined, stats = mine_lines([*lines, b"{not json", alarm(T0, "nowhere", "x")], topology(), until=T0 + 3600)
    assert stats.invalid == 2
    assert len(stats.invalid_examples) == 2
    assert stats.raises < 10
    assert mined.rules == ()


@pytest.mark.parametrize("window", [0.0])
def test_coocurrence_rejects_bad_parameters(window: float) -> None:
    with pytest.raises(ValueError, match="max_lag"):
        CoOccurrence(topology(), max_lag=window)


def test_every_kept_rule_is_written_and_replays_past_the_old_cap_of_400_per_relation() -> None:
    """The miner once wrote at most 400 rules per relation (durable-rules held 512): the rule engine
    has no such limit any more (the compiler splits the match rules into rulesets of 255), so every
    kept triple is written, here 450 ``same_element`` rules, ordered by confidence, and the ruleset
    loads and correlates with the last of them."""
    counts = Counts()
    symptoms = [f"s{n:03d}" for n in range(450)]
    for n, symptom in enumerate(symptoms):
        counts.raises[symptom] = 1000
        key = ("a", symptom, "same_element")
        counts.evidence[key] = 20 + n  # the later, the more confident
        counts.lags[key] = [20 + n] + [0] * 10
    counts.raises["a"] = 1000
    mined = select(counts)
    assert [r.symptom for r in mined.rules] == symptoms[::-1]
    rs = ruleset_from_data(ruleset_document(mined, name="mined", source="h", params={}), "mined")
    pipeline = Pipeline(topology(), [rs], core_settings_from_data({}, source="x"))
    records: list[dict[str, Any]] = []
    try:
        Replayer(pipeline, emit=records.append).run([alarm(T0, "agg", "a"), alarm(T0 + 1, "agg", "s000")])
    finally:
        pipeline.correlator.close()
    [suppressed] = [s for r in records for s in r.get("suppressed") or []]
    assert suppressed["rule"] == "mined/a-explains-s000-same-element"


def _rules_of(path: Path) -> list[Any]:
    return list(yaml.safe_load(path.read_text())["rules"])


async def test_mining_a_store_journal_gives_what_mining_the_same_events_from_a_file_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--store DB``: the messages the daemon journaled (raises and clears; timer ticks and other
    entries skipped), before the latest snapshot too when ``keep`` held them, give the same rules as
    the same events mined from a replay file; the report says how many came from before the
    snapshot. With the default (no journal kept), only what follows the snapshot is mined and a
    warning says so."""
    lines = history()
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY))
    events = tmp_path / "h.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    for keep, db in ((1e9, tmp_path / "kept.sqlite"), (0.0, tmp_path / "default.sqlite")):
        async with Store(db) as store:
            for i, raw in enumerate(lines):
                line = orjson.loads(raw)
                store.append("msg", line["topic"], orjson.dumps(line["payload"]), T0 + i)
                store.append("tick", "", b"", T0 + i)
                if i == len(lines) // 2:
                    store.save_snapshot(b"state", store.last_seq(), T0 + i, keep=keep)
            store.commit()
    from_file, from_store = tmp_path / "file.yaml", tmp_path / "store.yaml"
    assert main(["rules", "mine", str(events), "--topology", str(topo), "--out", str(from_file)]) == 0
    capsys.readouterr()
    argv = ["rules", "mine", "--store", str(tmp_path / "kept.sqlite"), "--topology", str(topo)]
    assert main([*argv, "--out", str(from_store)]) == 0
    err = capsys.readouterr().err
    report = orjson.loads(err)
    assert report["journal"]["messages"] == len(lines)
    assert report["journal"]["messages_before_the_snapshot"] == len(lines) // 2 + 1
    assert report["raises"] == 200
    assert _rules_of(from_store) == _rules_of(from_file)
    assert from_store.read_text().startswith("# Mined by `engine rules mine --store kept.sqlite")
    argv[3] = str(tmp_path / "default.sqlite")
    assert main([*argv, "--out", str(from_store)]) == 0
    err = capsys.readouterr().err
    report = orjson.loads(err[: err.rindex("}") + 1])
    assert report["journal"] == {
        "store": str(tmp_path / "default.sqlite"),
        "messages": len(lines) - len(lines) // 2 - 1,
        "messages_before_the_snapshot": 0,
    }
    assert "warning: " in err
    assert "keeps no journal before its latest snapshot" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--store", "absent.sqlite"],
            "error: {tmp}/absent.sqlite: no such store (the daemon's `store.path`)",
        ),
        (["--store", "notdb.sqlite"], "error: {tmp}/notdb.sqlite: not an engine store: "),
        (["--store", "-"], "error: --store - needs the daemon's --config (it names the store)"),
        (
            ["h.jsonl", "--store", "x"],
            "error: give EVENTS.jsonl or --store DB|- (the daemon's store), not both",
        ),
        ([], "error: give EVENTS.jsonl or --store DB|- (the daemon's store), not both"),
    ],
)
def test_bad_store_arguments_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notdb.sqlite").write_text("not a database")
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY))
    argv = [str(tmp_path / a) if a.endswith((".sqlite", ".jsonl")) else a for a in args]
    assert main(["rules", "mine", *argv, "--topology", str(topo), "--out", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)), err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.yaml").exists()


async def test_mining_the_store_of_a_running_daemon(tmp_path: Path, topic_prefix: str) -> None:
    """A daemon with ``store.keep_journal`` takes alarms over HTTP and snapshots (truncating what it
    does not keep); ``engine rules mine --store - --config`` reads its store while it runs (read-only,
    its topology and alarm topics from the config) and again after it stopped (the final snapshot
    covers everything): the same rule both times, from every message posted."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY))
    config = yaml.safe_load(cfg.read_text())
    config["store"].update(keep_journal="30d", snapshot_interval="100ms")
    cfg.write_text(yaml.safe_dump(config))
    lines = history(bursts=6, t0=time.time() - 6 * 3 * 3600 - 3600)
    body = b"\n".join(orjson.dumps(orjson.loads(line)["payload"]) for line in lines)
    out = tmp_path / "mined.yaml"
    mine: list[str | Path] = [
        "rules",
        "mine",
        "--store",
        "-",
        "--config",
        cfg,
        "--out",
        out,
        "--min-support",
        "3",
    ]
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        async with http.post(
            f"http://127.0.0.1:{daemon.http.port}/events",
            data=body,
            headers={"Content-Type": "application/x-ndjson"},
        ) as r:
            assert r.status == 202
        await until(lambda: daemon.store.last_seq() >= len(lines), timeout=10, what="the journal")
        await until(lambda: daemon.store.load_snapshot() is not None, timeout=10, what="a snapshot")
        running = engine(*mine)
    assert running.status == 0, running.stderr
    stopped = engine(*mine)
    assert stopped.status == 0, stopped.stderr
    for res in (running, stopped):
        report = orjson.loads(res.stderr)
        assert report["journal"]["messages"] == len(lines)
        assert report["raises"] == 6 * 3 + 12
        assert report["down_roots"] == ["linkFail"]
    cross = [r for r in _rules_of(out) if r["correlate"]["root"] != r["correlate"]["symptom"]]
    assert [(r["correlate"]["root"]["probable_cause"], r["correlate"]["relation"]) for r in cross] == [
        ("linkFail", "downstream_of")
    ]


def test_orientation_by_time_or_by_topology() -> None:
    """svcLoss below agg is raised in the same second as linkFail on agg (evidence both ways) or 2-20 s
    *before* it: by time svcLoss is the cause (``upstream_of``: the root is below); with
    ``orient="topology"`` (the default) the type raised nearer the top is the cause (linkFail on
    agg, depth 1, over svcLoss at depth 2: ``downstream_of``). Either way one direction only."""
    rng = random.Random(3)
    lines: list[tuple[float, bytes]] = []
    for k in range(30):
        t = T0 + k * 3 * 3600 + rng.randint(0, 600)
        lines.append((t, alarm(t, "agg", "linkFail")))
        for i in rng.sample(range(4), 2):
            d = t - (0 if k % 2 else rng.randint(2, 20))
            lines.append((d, alarm(d, f"acc-{i}", "svcLoss")))
    ordered = [line for _, line in sorted(lines, key=lambda e: e[0])]
    found = {}
    for orient in ("time", "topology"):
        mined, _ = mine_lines(ordered, topology(), thresholds=Thresholds(orient=orient))
        found[orient] = [(r.root, r.symptom, r.relation) for r in mined.rules if r.root != r.symptom]
    assert found == {
        "time": [("svcLoss", "linkFail", "upstream_of")],
        "topology": [("linkFail", "svcLoss", "downstream_of")],
    }


def _counts(evidence: dict[tuple[str, str, str], tuple[list[int], list[int]]], raises: int = 1000) -> Counts:
    """Counts with the given (evidence, baseline) lag histograms per key (LAG_BOUNDS buckets)."""
    c = Counts()
    for key, (lags, base) in evidence.items():
        c.raises[key[0]] = c.raises[key[1]] = raises
        c.evidence[key] = sum(lags)
        c.strict[key] = sum(lags[1:])
        c.lags[key] = [*lags, *([0] * (len(LAG_BOUNDS) - len(lags)))]
        c.baseline[key] = sum(base)
        c.base_lags[key] = [*base, *([0] * (len(LAG_BOUNDS) - len(base)))]
    return c


@pytest.mark.parametrize(
    ("lags", "base", "window", "support", "baseline"),
    [
        # buckets: <=0, <=1, <=5, <=15, <=30, <=60, <=120, <=300, <=600 s
        ([0, 0, 40, 0, 0, 0, 0, 0, 10], [0, 0, 0, 0, 0, 0, 0, 0, 30], 5.0, 40, 0),  # a short cause
        ([0, 0, 0, 0, 0, 0, 0, 40, 10], [0, 1, 1, 1, 1, 1, 1, 1, 30], 300.0, 40, 7),  # a slow one
        ([20, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0], 5.0, 20, 0),  # same second: 5 s floor
    ],
)
def test_each_rule_gets_the_lag_window_of_highest_lift(
    lags: list[int], base: list[int], window: float, support: int, baseline: int
) -> None:
    """The figures' window is the lag bound where (support + 1) / (baseline + 1) is highest (the
    shortest on a tie, at least 5 s), so a rule's support, confidence and lift are those within its
    own window, not within ``max_lag``; here the window written (see the next test) is the same."""
    mined = select(_counts({("cause", "effect", "downstream_of"): (lags, base)}))
    [rule] = mined.rules
    assert (rule.window, rule.support, rule.baseline) == (window, support, baseline)
    assert rule.lift == round((support + 1) / (baseline + 1), 2)
    assert rule.confidence == support / 1000


def test_the_window_written_reaches_as_far_as_the_symptoms_are_more_often_caused_than_not() -> None:
    """The lift peaks within 5 s (40 symptoms, none an hour earlier), but the cause keeps acting for
    a minute (20, 20 and 10 more symptoms against 2 each an hour earlier), then only chance. The
    rule's figures are those of the window of highest lift (5 s); the window it is written with is
    the one where the support most exceeds twice its baseline (1 min: 90 - 2 x 6), so the symptoms
    of the next minute are grouped too, and those of the next ten minutes (as many as by chance)
    are not. The description gives both."""
    lags = [0, 0, 40, 20, 20, 10, 0, 0, 5]
    base = [0, 0, 0, 2, 2, 2, 4, 8, 30]
    mined = select(_counts({("cause", "effect", "downstream_of"): (lags, base)}))
    [rule] = mined.rules
    assert (rule.lift_window, rule.support, rule.baseline, rule.lift) == (5.0, 40, 0, 41.0)
    assert (rule.window, rule.reach_support, rule.reach_baseline) == (60.0, 90, 6)
    doc = ruleset_document(mined, name="mined", source="h", params={})
    [written] = doc["rules"]
    assert written["correlate"]["window"] == "1m"
    assert "lift 41.0 within 5s" in written["description"]
    assert "grouped within 1m, where 90 followed against 6 one hour earlier" in written["description"]


def test_a_lift_from_a_handful_of_coincidences_is_not_a_rule() -> None:
    """6 against a baseline of 2 is a lift of 2.3 but no clear excess (z 2.3 < 3): no rule; the same
    lift on 60 against 20 is one. ``min_z=0`` keeps the small one too."""
    small = ("a", "b", "same_element")
    large = ("c", "d", "same_element")
    counts = _counts({small: ([6], [2]), large: ([60], [20])})
    assert poisson_z(6, 2) < 3 < poisson_z(60, 20)
    assert [(r.root, r.symptom) for r in select(counts).rules] == [("c", "d")]
    loose = select(counts, Thresholds(min_z=0))
    assert {(r.root, r.symptom) for r in loose.rules} == {("a", "b"), ("c", "d")}


def test_a_pair_is_kept_in_the_direction_of_higher_lift() -> None:
    """Both directions pass; the cause is the one whose preceding the other is furthest above chance,
    even when the other direction has more support (the effect is the more frequent type)."""
    ab = ("cause", "effect", "same_element")
    ba = ("effect", "cause", "same_element")
    counts = _counts({ab: ([0, 0, 30], [0, 0, 2]), ba: ([0, 0, 50], [0, 0, 20])})
    assert [(r.root, r.symptom) for r in select(counts).rules] == [("cause", "effect")]


def test_a_message_is_one_alarm_as_in_replay_and_an_array_is_a_counted_error() -> None:
    """The event format is `engine replay`'s: one alarm per message (POST /events splits an array
    before the daemon journals it, so its store holds one per message too). A line whose payload is
    an array is counted invalid with the reason, as replay dead-letters it, never half-read."""
    raw = orjson.loads(alarm(T0, "agg", "linkFail"))
    line = orjson.dumps({"topic": raw["topic"], "payload": [raw["payload"], raw["payload"]]})
    _, stats = mine_lines([line, alarm(T0 + 1, "agg", "linkFail")], topology())
    assert (stats.raises, stats.invalid) == (1, 1)
    assert stats.invalid_examples == [
        "line 1: invalid message on 'soc/alarms/agg': expected a mapping, got list"
    ]


def test_a_payload_nested_deeper_than_orjson_writes_is_mined_and_deeper_still_is_counted_invalid() -> None:
    """As the replay: a payload nested 300 levels deep (more than orjson writes back) is one alarm
    like any other; one nested 1,000 deep is counted invalid with the reason (both stopped
    `engine rules mine` with a traceback: ``TypeError: Recursion limit reached``)."""
    raw = orjson.loads(alarm(T0, "agg", "linkFail"))

    def nested(depth: int) -> bytes:
        return orjson.dumps({"topic": raw["topic"], "payload": {**raw["payload"], "x": 0}}).replace(
            b'"x":0', b'"x":' + b"[" * depth + b"]" * depth
        )

    _, stats = mine_lines([nested(300), nested(1000)], topology())
    assert (stats.raises, stats.invalid) == (1, 1)
    assert stats.invalid_examples == [
        "line 2: payload nested too deeply to be written back as JSON (about 990 levels at most)"
    ]


def _late_root_history(seed: int, bursts: int) -> list[bytes]:
    """linkFail on agg raised 2-12 s *after* svcLoss on two elements below it, every time; all
    cleared a minute later."""
    rng = random.Random(seed)
    lines: list[tuple[float, bytes]] = []
    for k in range(bursts):
        t = T0 + k * 3 * 3600 + rng.randint(0, 600)
        lines += [(t, alarm(t, "agg", "linkFail")), (t + 60, alarm(t + 60, "agg", "linkFail", clear=True))]
        for i in rng.sample(range(4), 2):
            d = t - rng.randint(2, 12)
            lines.append((d, alarm(d, f"acc-{i}", "svcLoss")))
            lines.append((t + 60, alarm(t + 60, f"acc-{i}", "svcLoss", clear=True)))
    return [line for _, line in sorted(lines, key=lambda e: e[0])]


def test_by_topology_a_root_that_comes_late_is_turned_round_and_still_groups() -> None:
    """Only svcLoss → linkFail is seen in time (svcLoss always first). By topology linkFail, raised
    nearer the top (agg, depth 1; svcLoss at depth 2), is the cause: the rule is turned round
    (linkFail explains svcLoss downstream, svcLoss up to the window before it: the lead), says so,
    and replayed on later bursts it makes one incident each, rooted at linkFail."""
    history_ = _late_root_history(5, 30)
    by_time, _ = mine_lines(history_, topology(), thresholds=Thresholds(orient="time"))
    assert [(r.root, r.symptom, r.relation) for r in by_time.rules if r.root != r.symptom] == [
        ("svcLoss", "linkFail", "upstream_of")
    ]
    mined, _ = mine_lines(history_, topology())  # by topology: the default
    [rule] = [r for r in mined.rules if r.root != r.symptom]
    assert (rule.root, rule.symptom, rule.relation, rule.follows) == (
        "linkFail",
        "svcLoss",
        "downstream_of",
        True,
    )
    assert rule.lead == 15.0
    assert rule.window == 5.0
    doc = ruleset_document(mined, name="mined", source="h", params={"orient": "topology"})
    [written] = [r for r in doc["rules"] if r["correlate"]["root"] == {"probable_cause": "linkFail"}]
    assert written["correlate"]["lead"] == "15s"
    assert "though svcLoss comes first" in written["description"]
    rs = ruleset_from_data(doc, "mined")
    pipeline = Pipeline(topology(), [rs], core_settings_from_data({}, source="x"))
    records: list[dict[str, Any]] = []
    try:
        Replayer(pipeline, emit=records.append).run(_late_root_history(99, 3))
    finally:
        pipeline.correlator.close()
    final = {r["incident_id"]: r for r in records}
    roots = sorted(
        r["root_cause"]["probable_cause"] for r in final.values() if r.get("resolution") != "merged"
    )
    assert roots == ["linkFail"] * 3


def _companion_history(seed: int = 11, bursts: int = 60) -> list[bytes]:
    """``bursts`` times, on one of the unlinked elements: ``fanOn`` (a harmless companion), then
    ``powerLow`` a second later (the true cause), then ``cardDown`` (its effect) 1-4 s after it.
    ``fanOn`` is also raised alone, often, at random, and is then never followed by ``cardDown``."""
    rng = random.Random(seed)
    span = bursts * 3 * 3600
    events: list[tuple[float, bytes]] = []
    for k in range(bursts):
        t = T0 + k * 3 * 3600 + rng.randint(0, 600)
        ne = f"far-{rng.randrange(4)}"
        events.append((t, alarm(t, ne, "fanOn")))
        events.append((t + 1, alarm(t + 1, ne, "powerLow")))
        d = t + 1 + rng.randint(1, 4)
        events.append((d, alarm(d, ne, "cardDown")))
    for _ in range(bursts * 10):
        t = T0 + rng.uniform(0, span)
        events.append((t, alarm(t, f"far-{rng.randrange(4)}", "fanOn")))
    events.sort(key=lambda e: e[0])
    return [line for _, line in events]


def test_explain_away_drops_a_companion_the_true_cause_explains() -> None:
    """fanOn precedes every cardDown (it comes with powerLow), so counting keeps fanOn → cardDown
    beside powerLow → cardDown; fitted together, cardDown's raises go to powerLow (active far less
    often by chance), fanOn is explained away and its rule dropped; the true cause keeps its
    support, and the rule says what the fit gave it."""
    lines = _companion_history()
    marginal, _ = mine_lines(lines, topology())
    assert {("fanOn", "cardDown"), ("powerLow", "cardDown")} <= marginal.type_graph()
    assert marginal.explained_away == 0
    with pytest.raises(ValueError, match="patterns"):  # not kept unless asked for
        select(marginal.counts, Thresholds(explain_away=True))
    fitted, _ = mine_lines(lines, topology(), thresholds=Thresholds(explain_away=True))
    graph = fitted.type_graph()
    assert ("powerLow", "cardDown") in graph
    assert ("fanOn", "cardDown") not in graph
    assert fitted.explained_away >= 1
    rule = next(r for r in fitted.rules if (r.root, r.symptom) == ("powerLow", "cardDown"))
    assert rule.attributed is not None
    assert rule.attributed > 50
    assert rule.rate is not None
    assert rule.rate > 10
    doc = ruleset_document(fitted, name="m", source="test", params={"explain_away": True})
    text = next(r["description"] for r in doc["rules"] if r["name"] == rule.name)
    assert "joint fit with cardDown's other candidate causes" in text
    assert "explained away" in doc["description"]
    again, _ = mine_lines(lines, topology(), thresholds=Thresholds(explain_away=True))
    assert ruleset_document(again, name="m", source="test", params={}) == ruleset_document(
        fitted, name="m", source="test", params={}
    )


def test_the_joint_fit_gives_each_raise_to_the_cause_that_explains_it() -> None:
    """Patterns built by hand: B is raised 100 times with only A active before it and 100 times
    with A and C both active; C alone is active as often as A by chance, but never followed by B.
    The fit gives C (nearly) nothing and A (nearly) all: what the counting alone cannot tell."""
    a, c = Candidate("A", "same_element", 2, 200, 10, 0.05), Candidate("C", "same_element", 2, 100, 10, 0.05)
    patterns = [
        (100, (("A", "same_element", 1),)),
        (100, (("A", "same_element", 1), ("C", "same_element", 1))),
    ]
    fa, fc = fit_symptom(400, [a, c], [*patterns, (200, ())])
    assert fa.attributed > 180  # the rest: the background while A is active
    assert fc.attributed < 5
    assert fa.rate > 10 * max(fc.rate, 0.01)
    # a candidate active only past its window explains nothing
    (late,) = fit_symptom(
        100, [Candidate("A", "same_element", 0, 50, 10, 0.05)], [(50, (("A", "same_element", 3),))]
    )
    assert late.attributed == 0


def test_the_command_explains_away_and_reports_it(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(_companion_history()) + b"\n")
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY), encoding="utf-8")
    out = tmp_path / "mined.yaml"
    r = engine("rules", "mine", events, "--topology", topo, "--out", out, "--explain-away")
    assert r.status == 0, r.stderr
    report = orjson.loads(r.stderr)
    assert report["explained_away"] >= 1
    assert report["patterns"] > 0
    assert report["patterns_past_the_limit"] == 0
    names = [r["name"] for r in _rules_of(out)]
    assert "powerlow-explains-carddown-same-element" in names
    assert "fanon-explains-carddown-same-element" not in names


def test_patterns_past_the_limit_are_counted_and_fitted_as_raises_with_no_candidate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Memory stays bounded on any log: past ``MAX_PATTERNS`` distinct patterns, a raise with a new
    pattern is counted, not kept; the fit still runs and counts it with the background."""
    lines = _companion_history()
    full, _ = mine_lines(lines, topology(), thresholds=Thresholds(explain_away=True))
    monkeypatch.setattr(mining_stats, "MAX_PATTERNS", 3)
    capped, _ = mine_lines(lines, topology(), thresholds=Thresholds(explain_away=True))
    assert len(capped.counts.patterns) == 3
    assert capped.counts.patterns_dropped == sum(full.counts.patterns.values()) - sum(
        capped.counts.patterns.values()
    )
    assert capped.counts.patterns_dropped > 0
    assert all(r.attributed is None or r.attributed <= 60 for r in capped.rules)


def test_the_benchmark_counts_pairs_by_ruleset_and_the_expert_edges_the_data_can_show() -> None:
    """``bench.mining``: the incidents' cross-type pairs per ruleset of the rule that made them (a
    merged incident's entries and same-type pairs not counted, as ``bench.replay.quality`` does), and
    the expert edges whose types were raised together at least twice, in either order."""
    truth = frozenset({("a", "b"), ("b", "c"), ("c", "d")})

    def entry(root: str, symptom: str, rule: str) -> dict[str, Any]:
        return {"alarm_id": f"y:{symptom}", "probable_cause": symptom, "root": f"x:{root}", "rule": rule}

    records = [
        {
            "incident_id": "i1",
            "event": "resolved",
            "suppressed": [
                entry("a", "b", "mined/a-explains-b"),  # direct
                entry("c", "b", "mined/c-explains-b"),  # reversed
                entry("a", "a", "mined/a-explains-a"),  # same type: not a pair
                entry("a", "d", "topology-cluster/cluster"),  # neither
            ],
        },
        {
            "incident_id": "i2",
            "event": "resolved",
            "resolution": "merged",
            "suppressed": [entry("a", "b", "x/y")],
        },
    ]
    by = pairs_by_ruleset(records, truth)
    assert {k: dict(v) for k, v in by.items()} == {
        "mined": {"pairs": 2, "direct": 1, "reversed": 1},
        "topology-cluster": {"pairs": 1, "direct": 0, "reversed": 0},
    }
    counts = Counts()
    counts.evidence.update({("b", "a", "same_element"): 1, ("a", "b", "downstream_of"): 1})
    counts.evidence.update({("c", "b", "same_element"): 1, ("d", "d", "same_element"): 9})
    assert seen_edges(counts, truth) == 1  # a-b twice (once each way); b-c once; c-d never


def _same_second_history(strict_first: int, seed: int = 5) -> list[bytes]:
    """40 bursts on agg, 3 h apart: ``lead`` and ``late`` raised together (the same second) and
    re-raised in turn for a minute; in ``strict_first`` of them ``lead`` begins the burst 2 s before
    ``late``. ``late`` is also raised alone on hub (the top) 40 times, so by depth it is the cause."""
    rng = random.Random(seed)
    events: list[tuple[float, bytes]] = []
    for k in range(40):
        t = T0 + k * 3 * 3600
        begin = t + 2 if k < strict_first else t
        events += [(t, alarm(t, "agg", "lead")), (begin, alarm(begin, "agg", "late"))]
        for d in (20, 40):
            events += [(t + d, alarm(t + d, "agg", "late")), (t + d + 1, alarm(t + d + 1, "agg", "lead"))]
    for _ in range(40):
        t = T0 + 3600 + rng.randrange(0, 39 * 3 * 3600 // 7200) * 3 * 3600 + rng.randint(0, 3600)
        events.append((t, alarm(t, "hub", "late")))
    events.sort(key=lambda e: e[0])
    return [line for _, line in events]


def test_a_pair_raised_together_on_one_element_is_oriented_by_how_its_bursts_begin() -> None:
    """Two types raised together on one element, both directions above chance: where they meet the
    depth is the same, so the depth of their other raises (``late`` also on hub, the top) does not
    decide. Bursts that ``lead`` begins strictly first in 15 of 40 (the rest in the same second) make
    ``lead`` the cause (15 against 0, decisive), said in the rule; with every burst begun in the same
    second the order says nothing and the depth decides as before."""
    mined, _ = mine_lines(_same_second_history(strict_first=15), topology())
    pairs = {(r.root, r.symptom) for r in mined.rules if r.root != r.symptom}
    assert pairs == {("lead", "late")}
    [rule] = [r for r in mined.rules if (r.root, r.symptom) == ("lead", "late")]
    assert rule.episodes == (15, 0, 25)
    [written] = [
        w
        for w in ruleset_document(mined, name="mined", source="h", params={})["rules"]
        if w["name"] == rule.name
    ]
    said = "bursts on one element begin: lead raised first in 15, late in 0, both in the same second in 25"
    assert said in written["description"]
    tied, _ = mine_lines(_same_second_history(strict_first=0), topology())
    assert {(r.root, r.symptom) for r in tied.rules if r.root != r.symptom} == {("late", "lead")}
    assert all(r.episodes is None for r in tied.rules)


def test_the_order_of_beginnings_replaces_the_depth_not_the_lift() -> None:
    """A pair met on one element, both directions kept, ``x → y`` of higher lift, ``y`` beginning
    20 of 20 bursts (decisive). Where the two types' mean depths differ, the order of beginnings
    replaces the depth: ``y → x``, even though the depth put ``x`` higher. At equal depth (a network
    without links) the lift decides, as before the cue: ``x → y``."""
    xy, yx = ("x", "y", "same_element"), ("y", "x", "same_element")
    counts = _counts({xy: ([0, 0, 30], [0, 0, 1]), yx: ([0, 0, 30], [0, 0, 10])})
    counts.first[("y", "x")] = 20
    assert [(r.root, r.symptom) for r in select(counts).rules] == [("x", "y")]
    counts.depth["y"] = 1000  # y raised one hop lower on average: by depth, x → y
    [rule] = select(counts).rules
    assert ((rule.root, rule.symptom), rule.episodes) == (("y", "x"), (20, 0, 0))


def test_a_tie_in_the_order_of_beginnings_decides_nothing_even_with_no_floor() -> None:
    """Bursts begun first by each type as often as by the other: with ``--min-z 0`` the sign test
    passes a tie (0 ≥ 0), and each direction's rule yielded to the other, so the pair was lost; a
    tie leaves the choice to the depth, as with the default floor."""
    xy, yx = ("x", "y", "same_element"), ("y", "x", "same_element")
    counts = _counts({xy: ([0, 0, 30], [0, 0, 1]), yx: ([0, 0, 30], [0, 0, 10])})
    counts.first[("x", "y")] = counts.first[("y", "x")] = 10
    counts.depth["y"] = 1000  # by depth, x → y
    for floor in (0.0, 3.0):
        rules = select(counts, Thresholds(min_z=floor)).rules
        assert [(r.root, r.symptom, r.episodes) for r in rules] == [("x", "y", None)], floor
