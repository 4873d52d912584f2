"""The one interface between the engine and durable-rules.

Theory of operation
-------------------
durable-rules (a Rete engine in C with a Python shim) is used for what it is good at: matching facts
against rule conditions and joining facts of the same *sid* (our correlation scope). Everything else
is ours, because the notes in ``../shared/NOTES-dependencies.md`` measured its traps:

* One ``RuleHost`` per engine instance, never ``durable.lang``'s global host.
* durable's ``Host.__init__`` starts two endless timer threads that dispatch actions and timers in
  the background. We never use durable timers (our clock decides windows), and background dispatch
  would run actions on another thread, breaking determinism. ``_QuietHost`` therefore starts no
  threads at all; every action runs inline, inside the call that caused it.
* "No rule matched" (``MessageNotHandledException``) is a normal outcome, not an error.
* Asserting an identical fact twice raises ``MessageObservedException``; we treat it as "already
  there". Fact identity in durable is a 32-bit hash, so callers must give every fact a unique ``id``.
* Exceptions raised inside actions are caught here and re-raised as ``RuleEngineError``; actions
  themselves only *record* what matched (``Match``) and the caller decides what to do with it.
* ``set_rulesets`` mutates the dict it is given: we hand it a deep copy.
* One message per call (``post_batch`` across sids runs actions in the background).
* durable's C engine copies a stored fact's JSON but leaves the ``sid`` and ``id`` properties
  pointing into the caller's buffer (``copyMessage`` in ``src/rules/state.c`` skips them). Through
  durable's Python shim that buffer is a temporary ``json.dumps`` string, so every stored fact
  dangles: a use-after-free that crashed the process once garbage collection reused the memory.
  We serialise facts ourselves and keep each JSON string alive exactly as long as its fact is
  asserted. Events (``post``) are stored the same way until consumed, so this host offers facts only.
* Expressions between the aliases of a join (``s.t >= r.t - 30``) crash durable's beta-join
  evaluation depending on memory layout; the compiler emits none (see ``compiler``).
* durable keeps the state of every sid it has seen, forever, and a ruleset holds at most 1,024 of
  them: the 1,025th distinct sid fails every assert (measured; retracting facts frees nothing). A
  network with more than 1,024 elements would have stopped correlating after a while.
  ``delete_state`` is no way out: it frees the sid string, which (the ``copyMessage`` bug above)
  points into our JSON buffer, and aborts the process (``free(): invalid pointer``, measured). So
  each logical ruleset is *sharded*: a sid is placed, for good, in one durable copy of the ruleset
  holding fewer than ``MAX_SIDS_PER_SHARD`` sids, and new copies are created on demand. Sids are
  correlation scopes (elements, sites, regions, service types), so their number, and the memory
  of their states, is bounded by the topology. Joins never cross sids, so where a sid lives changes
  nothing but capacity.
* At most 255 rules may fire on one fact: with more rules matching one fact, durable fires wrong
  actions (a rule whose condition does not hold, or one rule twice), and with 256 identical rules it
  segfaults (measured on 2.0.28). The compiler splits the match rules into rulesets of at most
  ``MAX_FIRINGS_PER_FACT``.
* Retracting a *second* fact of a fired join reads past durable's
  memory. When a join's action completes, durable frees its action frame (``deleteCurrentAction`` in
  ``src/rules/events.c``) but leaves it flagged ``isDispatching`` and leaves it among the locations of
  every fact it bound. Retracting one of those facts zeroes its slot in the stale frame
  (``deleteMessageFromFrame``, ``src/rules/state.c``) without lowering the frame's ``messageCount``;
  retracting another then scans for ``messageCount`` used slots, finds one fewer, and reads on past
  the frame, through the rest of the action pool and beyond its allocation, zeroing whatever there
  holds the fact's message offset. valgrind flags it on the smallest case (one two-alias rule fires
  on ``r`` and ``s``, retract both: ``tests/test_durable_fired_frames.py``); it killed
  ``python -m bench mining --dataset 24V_439N_Microwave --orient topology`` (mined+default replay:
  the fact scanned sat in the last frame of a 12-frame pool, read 8 bytes past its end, then
  ``handleDeleteMessage`` segfaulted on a corrupted location). Retracting one fact per fired frame is
  safe, so the engine no longer joins in durable: every rule it loads is single-alias (one fact per
  frame) and the correlator joins in Python (``engine.core.forms.correlator``). ``load`` refuses
  a rule that binds more than one fact.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import durable_rules_engine as _engine
from durable import engine as _durable

from engine.errors import RuleEngineError

MAX_RULES_PER_RULESET = 512  # create_ruleset hangs for ever past this (measured)
MAX_FACT_PROPERTIES = 255  # error 302 past this
MAX_SIDS_PER_SHARD = 1000  # durable refuses a ruleset's 1,025th state (sid): measured
MAX_FIRINGS_PER_FACT = 255  # 256 rules firing on one fact segfault; fewer misfire past 255: measured


@dataclass(frozen=True, slots=True)
class Match:
    """One firing of a durable rule: the rule's action name and the facts bound to its aliases."""

    action: str
    facts: Mapping[str, Mapping[str, Any]]


class _QuietHost(_durable.Host):  # type: ignore[misc]
    """A durable Host that starts no background threads and resolves actions through a callback."""

    def __init__(self, resolve: Callable[[str], Callable[[Any], None]]) -> None:
        self._resolve = resolve
        super().__init__()

    def _run(self) -> None:  # durable starts its dispatch/timer threads here; we want none
        return

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        return self._resolve(action_name)


class RuleHost:
    """A private durable-rules host: load compiled rulesets, assert/retract facts, collect matches.

    Not thread-safe by design: one task owns it (single writer).
    """

    def __init__(self) -> None:
        self._matches: list[Match] = []
        self._errors: list[BaseException] = []
        self._rulesets: dict[str, dict[str, Any]] = {}
        self._shards: dict[str, list[str]] = {}  # logical ruleset -> durable ruleset names
        self._placed: dict[str, list[int]] = {}  # logical ruleset -> sids placed in each shard
        self._sid: dict[tuple[str, str], int] = {}  # (ruleset, sid) -> its shard, for good
        self._host = _QuietHost(self._make_action)
        self._texts: dict[
            tuple[str, str, str], str
        ] = {}  # (ruleset, sid, id) -> the JSON durable points into
        self.asserts = 0
        self.retracts = 0
        self.firings = 0
        self.rule_firings: Counter[str] = Counter()  # action name ("ruleset/rule[#part]") -> firings
        self.collisions = 0

    # -- loading ------------------------------------------------------------------------------
    def load(self, name: str, definition: Mapping[str, Any]) -> None:
        """Register one compiled durable ruleset (``{rule_name: {"all": [...], "run": action}}``)."""
        if name in self._rulesets:
            raise RuleEngineError(f"ruleset {name!r} is already loaded in this host")
        if len(definition) > MAX_RULES_PER_RULESET:
            raise RuleEngineError(
                f"ruleset {name!r} has {len(definition)} rules; durable-rules allows {MAX_RULES_PER_RULESET}"
            )
        _check_single_alias(name, definition)
        self._rulesets[name] = copy.deepcopy(dict(definition))
        self._shards[name] = []
        self._placed[name] = []
        try:
            self._add_shard(name)
        except RuleEngineError:
            del self._rulesets[name], self._shards[name], self._placed[name]
            raise

    def _add_shard(self, name: str) -> int:
        definition = self._rulesets[name]
        shard = f"{name}#{len(self._shards[name])}"
        try:
            self._host.set_rulesets({shard: copy.deepcopy(definition)})
        except Exception as exc:  # durable reports only "error code: N"
            raise RuleEngineError(
                f"durable-rules refused ruleset {name!r}: {exc}. "
                "The compiler should have caught this; the compiled form was: "
                f"{json.dumps(definition, sort_keys=True)[:2000]}"
            ) from exc
        self._shards[name].append(shard)
        self._placed[name].append(0)
        return len(self._shards[name]) - 1

    def shard_count(self, name: str) -> int:
        return len(self._shards.get(name, ()))

    def close(self) -> None:
        """Free the engine's rulesets (and so its facts) before the JSON they point into goes away."""
        for name in list(self._rulesets):
            for shard in self._shards[name]:
                handle = self._host.get_ruleset(shard)._handle
                try:
                    _engine.delete_ruleset(handle)
                except Exception as exc:  # pragma: no cover - durable refuses an unknown handle only
                    raise RuleEngineError(f"durable-rules could not delete ruleset {name!r}: {exc}") from exc
        self._rulesets.clear()
        self._shards.clear()
        self._placed.clear()
        self._sid.clear()
        self._host._ruleset_directory.clear()
        self._host._ruleset_list.clear()
        self._texts.clear()

    def __del__(self) -> None:
        # The C engine outlives this object; its stored facts point into self._texts.
        if getattr(self, "_rulesets", None):
            self.close()

    @property
    def rulesets(self) -> Mapping[str, Mapping[str, Any]]:
        return self._rulesets

    # -- facts --------------------------------------------------------------------------------
    def assert_fact(self, ruleset: str, fact: Mapping[str, Any]) -> list[Match]:
        """Assert a fact (must carry ``sid`` and a unique ``id``); return the rules it made fire."""
        _check_fact(fact)
        sid = str(fact["sid"])
        key = (ruleset, sid, str(fact["id"]))
        if key in self._texts:
            return []  # already asserted: durable would say "observed"
        rules = self._ruleset(ruleset, sid)
        text = json.dumps(dict(fact), ensure_ascii=False)
        self.asserts += 1
        try:
            state = rules._handle_result(_engine.assert_fact(rules._handle, text), fact)
        except _durable.MessageObservedException:
            self.collisions += 1  # durable's 32-bit fact hash matched another fact: not stored
            return []
        except _durable.MessageNotHandledException:
            self._texts[key] = text  # stored for later joins, nothing fired
            return []
        except Exception as exc:
            raise RuleEngineError(f"durable-rules failed on {ruleset!r} with {dict(fact)!r}: {exc}") from exc
        self._texts[key] = text
        return self._run_actions(rules, ruleset, state)

    def retract_fact(self, ruleset: str, fact: Mapping[str, Any]) -> None:
        """Retract a fact asserted before (same content). Retracting an absent fact is harmless."""
        sid = str(fact["sid"])
        key = (ruleset, sid, str(fact["id"]))
        text = self._texts.get(key)
        if text is None:
            return
        rules = self._ruleset(ruleset, sid)
        self.retracts += 1
        try:
            state = rules._handle_result(_engine.retract_fact(rules._handle, text), fact)
        except (_durable.MessageNotHandledException, _durable.MessageObservedException):
            state = None
        except Exception as exc:
            raise RuleEngineError(f"durable-rules failed to retract {dict(fact)!r}: {exc}") from exc
        if state is not None:
            self._run_actions(rules, ruleset, state)
        del self._texts[key]  # only now: durable no longer holds the fact

    def facts(self, ruleset: str, sid: str) -> list[dict[str, Any]]:
        if (ruleset, sid) not in self._sid:
            self._ruleset(ruleset)
            return []
        result: list[dict[str, Any]] = self._ruleset(ruleset, sid).get_facts(sid)
        return result

    def fact_count(self) -> int:
        return len(self._texts)

    def firings_by_rule(self) -> Counter[str]:
        """Firings per qualified rule (``ruleset/rule``), its parts (``ruleset/rule#part``) folded
        in. They sum to ``firings``."""
        return by_rule(self.rule_firings)

    def match(self, rulesets: Iterable[str], fact: Mapping[str, Any]) -> frozenset[str]:
        """The actions ``fact`` fires in each of ``rulesets``, asserted and retracted at once: one
        fact per fired frame, the only use durable's memory handling survives (module header)."""
        out: set[str] = set()
        for name in rulesets:
            out.update(m.action for m in self.assert_fact(name, fact))
            self.retract_fact(name, fact)
        return frozenset(out)

    # -- internals ----------------------------------------------------------------------------
    def _ruleset(self, name: str, sid: str | None = None) -> Any:
        """The durable ruleset (shard) holding ``sid``, placing a new sid in a shard with room."""
        if name not in self._rulesets:
            raise RuleEngineError(f"unknown ruleset {name!r}")
        if sid is None:
            return self._host.get_ruleset(self._shards[name][0])
        shard = self._sid.get((name, sid))
        if shard is None:
            placed = self._placed[name]
            if placed[-1] >= MAX_SIDS_PER_SHARD:
                self._add_shard(name)
            shard = len(placed) - 1
            placed[shard] += 1
            self._sid[(name, sid)] = shard
        return self._host.get_ruleset(self._shards[name][shard])

    def sid_count(self, name: str) -> int:
        """Distinct sids this logical ruleset has seen (durable keeps a state for each)."""
        return sum(self._placed.get(name, ()))

    def _run_actions(self, rules: Any, name: str, state: Any) -> list[Match]:
        """Run the actions a call left pending, inline, and return what they recorded."""
        self._matches = []
        self._errors = []
        failure: list[BaseException] = []

        def done(error: BaseException | None, _state: Any) -> None:
            if error:
                failure.append(error)

        rules.do_actions(state, done)
        if failure or self._errors:
            err = (self._errors or failure)[0]
            raise RuleEngineError(f"a rule action failed in {name!r}: {err!r}") from err
        matches = self._matches
        self._matches = []
        self.firings += len(matches)
        for m in matches:
            self.rule_firings[m.action] += 1
        return matches

    def _make_action(self, action_name: str) -> Callable[[Any], None]:
        def action(c: Any) -> None:
            try:
                facts: dict[str, Mapping[str, Any]] = {}
                for alias, content in _bound_facts(c).items():
                    facts[alias] = content
                self._matches.append(Match(action_name, facts))
            except Exception as exc:  # durable would swallow it into the state; we surface it
                self._errors.append(exc)

        return action


def _bound_facts(c: Any) -> dict[str, dict[str, Any]]:
    """The facts a durable closure binds, by alias (``m`` for single-condition rules)."""
    bound = c.__dict__.get("_m")  # durable's Closure keeps {alias: fact} here for a dict message
    if isinstance(bound, dict):
        return {str(alias): dict(fact) for alias, fact in bound.items()}
    raise RuleEngineError(f"unexpected durable closure content: {bound!r}")


def by_rule(firings: Mapping[str, int]) -> Counter[str]:
    """Firings by action (``ruleset/rule`` or ``ruleset/rule#part``) folded per qualified rule."""
    out: Counter[str] = Counter()
    for action, n in firings.items():
        out[action.partition("#")[0]] += n
    return out


def _check_single_alias(name: str, definition: Mapping[str, Any]) -> None:
    """Refuse joins: durable 2.0.28 reads freed memory when a second fact of a fired join is
    retracted (the module's header), so every rule this host runs binds one fact."""
    for rule, body in definition.items():
        terms = body.get("all") if isinstance(body, Mapping) else None
        if not isinstance(terms, list) or len(terms) != 1:
            n = len(terms) if isinstance(terms, list) else 0
            raise RuleEngineError(
                f"rule {rule!r} of ruleset {name!r} binds {n} facts; this host runs single-fact rules "
                "only (durable-rules reads freed memory when joined facts are retracted: the "
                "correlator joins in Python)"
            )


def _check_fact(fact: Mapping[str, Any]) -> None:
    if "id" not in fact or "sid" not in fact:
        raise RuleEngineError(f"a fact needs 'id' and 'sid': {dict(fact)!r}")
    if len(fact) > MAX_FACT_PROPERTIES:
        raise RuleEngineError(
            f"a fact has {len(fact)} properties; durable-rules allows {MAX_FACT_PROPERTIES}"
        )
