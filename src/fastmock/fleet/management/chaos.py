"""Chaos schedules: seeded rules that kill, revive, fault or clear fleet ports, or change their certificates,
on a timeline.

    seed: 7                      # optional; else the fleet's --seed
    rules:
      - name: outages            # optional
        every: 30s               # optional: repeat (else once); `times: N` caps the repeats
        after: 10s               # optional: the first occurrence (default 0)
        jitter: 2s               # optional: each occurrence up to this much later (uniform, seeded)
        target: {percent: 1}     # or {count: 10}; {ports: 10000-10099} and/or {hosts: 127.0.0.2-127.0.0.5}
                                 # (on a fleet of several addresses) alone or with either
        action: kill             # kill | revive | clear | {fault: SPEC} | {tls: STATE} (a --tls fleet)
        for: 60s                 # optional: then undo it (revive what it killed, restore the faults or
                                 # certificate states it set)

Occurrence k of a rule is due at ``after + k * every + jitter_k`` seconds after the schedule starts; events
due at the same time apply in rule order, reverts first. Targets are drawn with one seeded generator in
that order, so the same schedule, seed and fleet give the same event log (its ``t`` field) every run.

Limits: a duration is 0 or from 1 ms to 10 years; at most 1,000 rules; at most 1,000 events a second are
applied (a schedule that asks for more runs late, never starving the API); the document is bounded as
fastmock.documents says (1 MiB, 64 levels, no alias expanding past a million values).
"""

import asyncio
import heapq
import math
import random
import time
from dataclasses import dataclass, field

from fastmock.documents import DocumentError, load_yaml
from fastmock.faults import FaultSpecError, parse_fault_spec
from fastmock.fleet.ports import parse_hosts, parse_port_range
from fastmock.fleet.state import ALIVE, KILLED
from fastmock.fleet.supervisor import WorkerGone
from fastmock.runtime import log
from fastmock.units import MAX_DURATION_S, MIN_DURATION_S, parse_duration

__all__ = ["ChaosError", "Rule", "Schedule", "parse_schedule", "ChaosRun"]

ACTIONS = ("kill", "revive", "clear", "fault", "tls")
RULE_KEYS = {"name", "target", "action", "after", "every", "for", "jitter", "times"}
TARGET_KEYS = {"percent", "count", "ports", "hosts"}
EXAMPLE = "rules: [{every: 30s, target: {percent: 1}, action: kill, for: 60s}]"
MAX_RULES = 1000
MAX_EVENTS_PER_S = 1000     # however the rules add up, the management loop keeps time for the API


class ChaosError(ValueError):
    """A schedule that cannot run: ``rule`` is its index (None: the top level), ``line`` 1-based or None."""

    def __init__(self, message: str, rule: int | None = None, line: int | None = None, column: int | None = None):
        where = f"rule {rule}" if rule is not None else "schedule"
        at = f" (line {line})" if line else ""
        super().__init__(f"{where}{at}: {message}")
        self.rule = rule
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    spec: str | None            # the fault spec of a `fault` action, the certificate state of a `tls` one
    percent: float | None
    count: int | None
    ports: tuple[int, int] | None  # inclusive range
    hosts: tuple[str, ...] | None  # the addresses it targets (None: all)
    after_s: float
    every_s: float | None
    for_s: float | None
    jitter_s: float
    times: int | None

    def describe(self) -> dict:
        return {"name": self.name, "action": self.action, "spec": self.spec, "percent": self.percent,
                "count": self.count, "ports": f"{self.ports[0]}-{self.ports[1]}" if self.ports else None,
                "hosts": list(self.hosts) if self.hosts else None,
                "after_s": self.after_s, "every_s": self.every_s, "for_s": self.for_s, "jitter_s": self.jitter_s,
                "times": self.times}


@dataclass(frozen=True)
class Schedule:
    rules: tuple[Rule, ...]
    seed: int | None = None
    source: str = field(default="", compare=False)


def parse_schedule(text: str, base_port: int | None = None, max_port: int | None = None,
                   hosts: tuple[str, ...] | None = None) -> Schedule:
    """Parse YAML (or JSON) text; raises ChaosError naming the rule, the line and the reason. With the
    fleet's ports and ``hosts``, a target outside them is an error too."""
    try:
        data = load_yaml(text)
    except DocumentError as exc:
        raise ChaosError(f"not valid YAML: {exc.reason}", line=exc.line, column=exc.column) from None
    if not isinstance(data, dict) or "rules" not in data:
        raise ChaosError(f"expected a mapping with 'rules', e.g. {EXAMPLE}", line=1)
    unknown = set(data) - {"rules", "seed"}
    if unknown:
        key = sorted(unknown, key=str)[0]  # keys may be of any type: null, a number
        raise ChaosError(f"unknown key {key!r} (keys: rules, seed)", line=_line(data, key))
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 64):
        raise ChaosError(f"seed must be a whole number from 0 to 2^64-1, not {seed!r}", line=_line(data, "seed"))
    rules = data["rules"]
    if not isinstance(rules, list) or not rules:
        raise ChaosError(f"'rules' must be a non-empty list, e.g. {EXAMPLE}", line=_line(data, "rules"))
    if len(rules) > MAX_RULES:
        raise ChaosError(f"at most {MAX_RULES} rules", line=_line(data, "rules"))
    parsed = tuple(_rule(rule, index, base_port, max_port, hosts) for index, rule in enumerate(rules))
    return Schedule(parsed, None if seed is None else int(seed), text)


def _line(node, key=None) -> int | None:
    try:
        return (node.lc.key(key)[0] if key is not None else node.lc.line) + 1
    except (AttributeError, KeyError, TypeError):
        return None


def _rule(node, index: int, base_port: int | None, max_port: int | None, fleet_hosts) -> Rule:
    def fail(message, key=None):
        return ChaosError(message, index, _line(node, key) if key is not None else _line(node))

    if not isinstance(node, dict):
        raise fail("a rule is a mapping, e.g. {every: 30s, target: {percent: 1}, action: kill}")
    unknown = set(node) - RULE_KEYS
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise fail(f"unknown key {key!r} (keys: {', '.join(sorted(RULE_KEYS))})", key)

    def duration(key, default=None, positive=False):
        value = node.get(key)
        if value is None:
            return default
        try:
            seconds = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
                else parse_duration(str(value))
        except (ValueError, OverflowError):
            raise fail(f"{key}: invalid duration {str(value)[:40]!r} (examples: 500ms, 30s, 2m)", key) from None
        if not 0 <= seconds <= MAX_DURATION_S or (positive and seconds == 0) or 0 < seconds < MIN_DURATION_S:
            bounds = "from 1ms to 10 years" if positive else "0, or from 1ms to 10 years"
            raise fail(f"{key} must be {bounds}, not {str(value)[:40]!r}", key)
        return seconds

    action = node.get("action")
    spec = None
    if isinstance(action, dict) and set(action) == {"fault"}:
        spec = str(action["fault"])
        try:
            parse_fault_spec(spec)
        except FaultSpecError as exc:
            raise fail(f"action: {exc}", "action") from None
        action = "fault"
    elif isinstance(action, dict) and set(action) == {"tls"}:
        from fastmock.tls import TlsError, parse_state  # here: cryptography loads only for a tls action

        spec = str(action["tls"])
        try:
            parse_state(spec)
        except TlsError as exc:
            raise fail(f"action: {exc}", "action") from None
        action = "tls"
    elif action not in ("kill", "revive", "clear"):
        raise fail(f"action must be kill, revive, clear, {{fault: SPEC}} or {{tls: STATE}}, not {action!r}",
                   "action")

    target = node.get("target", {})
    if not isinstance(target, dict) or set(target) - TARGET_KEYS:
        raise fail("target takes percent, count, ports and hosts, e.g. {percent: 1} or "
                   "{ports: 10000-10099, count: 5}", "target")
    if "percent" in target and "count" in target:
        raise fail("target: give percent or count, not both", "target")
    percent = target.get("percent")
    if percent is not None and (isinstance(percent, bool) or not isinstance(percent, (int, float))
                                or not 0 < percent <= 100):
        raise fail(f"target.percent must be a number in (0, 100], not {percent!r}", "target")
    count = target.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1 << 32):
        raise fail(f"target.count must be a whole number from 1 to 2^32, not {str(count)[:40]!r}", "target")
    ports = None
    if "ports" in target:
        try:
            ports = parse_port_range(target["ports"])
        except ValueError as exc:
            raise fail(f"target.ports: {exc}", "target") from None
        if base_port is not None and (ports[0] < base_port or ports[1] > max_port):
            raise fail(f"target.ports {ports[0]}-{ports[1]} is not a range within the fleet's "
                       f"{base_port}-{max_port}", "target")

    hosts = None
    if "hosts" in target:
        value = target["hosts"]
        try:
            hosts = parse_hosts(" ".join(map(str, value)) if isinstance(value, list) else str(value))
        except ValueError as exc:
            raise fail(f"target.hosts: {exc}", "target") from None
        unknown = [host for host in hosts if fleet_hosts is not None and host not in fleet_hosts]
        if unknown:
            raise fail(f"target.hosts: {unknown[0]} is not one of the fleet's addresses", "target")

    every_s = duration("every", positive=True)
    times = node.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 1 << 32):
        raise fail(f"times must be a whole number from 1 to 2^32, not {str(times)[:40]!r}", "times")
    if times is not None and every_s is None:
        raise fail("times needs every", "times")
    for_s = duration("for", positive=True)
    # plain numbers: ruamel's round-trip scalars are subclasses that orjson does not serialise
    return Rule(name=str(node.get("name", f"rule {index}")), action=action, spec=spec,
                percent=None if percent is None else float(percent), count=None if count is None else int(count),
                ports=ports, hosts=hosts, after_s=duration("after", 0.0), every_s=every_s, for_s=for_s,
                jitter_s=duration("jitter", 0.0), times=None if times is None else int(times))


REVERT, OCCURRENCE = 0, 1  # at the same time, reverts come first


@dataclass(order=True)
class _Due:
    t: float
    kind: int        # REVERT or OCCURRENCE
    rule: int
    seq: int
    occurrence: int = field(compare=False, default=0)
    undo: object = field(compare=False, default=None)  # for a revert: what to restore


class ChaosRun:
    """A schedule running on a fleet: ``start()``, ``stop()`` (which applies the pending reverts at once)."""

    def __init__(self, supervisor, event_log, schedule: Schedule, seed: int, ordinal: int = 0) -> None:
        self.supervisor = supervisor
        self.event_log = event_log
        self.schedule = schedule
        # pod k of a fleet of several draws from seed + k: the whole fleet's log is reproducible
        self.seed = (schedule.seed if schedule.seed is not None else seed) + ordinal
        self.rng = random.Random(self.seed)
        self.queue: list[_Due] = []
        self.seq = 0
        self.task = None
        self.started_at = 0.0
        self.started_wall = 0.0
        for index, rule in enumerate(schedule.rules):
            self._push(rule.after_s + self._jitter(rule), OCCURRENCE, index, 0)

    def _jitter(self, rule: Rule) -> float:
        return self.rng.uniform(0, rule.jitter_s) if rule.jitter_s else 0.0

    def _push(self, t: float, kind: int, rule: int, occurrence: int, undo=None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, _Due(round(t, 6), kind, rule, self.seq, occurrence, undo))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self.started_wall = time.time()
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop: nothing more is applied, except the reverts still pending (now, in order).

        The caller holds the supervisor's lock.
        """
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        reverts = sorted(due for due in self.queue if due.kind == REVERT)
        self.queue.clear()
        for due in reverts:
            await self._undo(due, stopped=True)

    def describe(self) -> dict:
        loop = asyncio.get_running_loop()
        elapsed = loop.time() - self.started_at
        upcoming = sorted(self.queue)[:10]
        rules = self.schedule.rules
        return {
            "active": self.task is not None and not self.task.done(), "seed": self.seed,
            "started_at": round(self.started_wall, 3), "elapsed_s": round(elapsed, 3),
            "rules": [rule.describe() for rule in rules],
            "next": [{"t": due.t, "in_s": round(max(0.0, due.t - elapsed), 3), "rule": due.rule,
                      "name": rules[due.rule].name, "revert": due.kind == REVERT,
                      "action": _REVERSE[rules[due.rule].action] if due.kind == REVERT else rules[due.rule].action}
                     for due in upcoming],
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_allowed = 0.0
        while self.queue:
            now = loop.time()
            wait = max(self.started_at + self.queue[0].t - now, next_allowed - now)
            if wait > 0:
                await asyncio.sleep(wait)
                continue  # timers have millisecond resolution and may fire a little early: look again
            next_allowed = now + 1 / MAX_EVENTS_PER_S  # events that fall behind apply late, in order
            async with self.supervisor.lock:
                if not self.queue:
                    return
                due = heapq.heappop(self.queue)  # popped under the lock: stop() sees every pending undo
                try:
                    if due.kind == OCCURRENCE:
                        await self._apply(due)
                    else:
                        await self._undo(due)
                except WorkerGone as exc:  # a crashed worker is being restarted: this event is lost
                    log(f"chaos: {self.schedule.rules[due.rule].name} at t={due.t} skipped: {exc}")

    def _candidates(self, rule: Rule) -> tuple[list[int], int]:
        """(slots the action can change, how many slots the target covers): the target's ports (all of
        them by default) on each of its addresses (all by default) that are in the fleet."""
        supervisor, state = self.supervisor, self.supervisor.state
        low, high = (0, state.per_host - 1) if rule.ports is None else \
            (rule.ports[0] - state.base_port, rule.ports[1] - state.base_port)
        indexes = range(len(state.hosts)) if rule.hosts is None else [state.hosts.index(host) for host in rule.hosts]
        candidates, covered = [], 0
        for index in indexes:
            first = index * state.per_host + low
            last = min(index * state.per_host + high, supervisor.count - 1)
            if last < first:
                continue
            states = state.states[first:last + 1].tobytes()
            if rule.action == "kill":
                wanted = [i for i, value in enumerate(states) if value == ALIVE]
            elif rule.action == "revive":
                wanted = [i for i, value in enumerate(states) if value == KILLED]
            elif rule.action == "clear":
                wanted = [i for i, value in enumerate(state.faults[first:last + 1].tobytes()) if value]
            else:
                wanted = range(len(states))
            candidates += [first + i for i in wanted]
            covered += last - first + 1
        return candidates, covered

    async def _apply(self, due: _Due) -> None:
        rule = self.schedule.rules[due.rule]
        supervisor = self.supervisor
        candidates, covered = self._candidates(rule)
        if rule.count is not None:
            n = rule.count
        elif rule.percent is not None:
            n = math.ceil(covered * rule.percent / 100)
        else:
            n = len(candidates)
        chosen = sorted(self.rng.sample(candidates, min(n, len(candidates))))
        undo = None
        if rule.action == "kill":
            changed = await supervisor.kill(chosen)
        elif rule.action == "revive":
            changed, _ = await supervisor.revive(chosen)
        elif rule.action == "tls":
            undo = {slot: supervisor.state.tls[slot] for slot in chosen}
            changed, _ = await supervisor.set_tls(chosen, rule.spec)
        else:
            faults = supervisor.state.faults
            undo = {slot: faults[slot] for slot in chosen}
            changed = await supervisor.set_fault(chosen, rule.spec if rule.action == "fault" else None)
        details = {"rule": due.rule, "name": rule.name, "t": due.t}
        if rule.spec is not None:
            details["state" if rule.action == "tls" else "spec"] = rule.spec
        self.event_log.record("chaos", rule.action, changed, **details)
        if rule.for_s is not None and changed:
            indexes = _indexes(supervisor, rule)
            self._push(due.t + rule.for_s, REVERT, due.rule, due.occurrence,
                       undo=(changed, undo, indexes[changed[0]] if undo is not None else None))
        next_occurrence = due.occurrence + 1
        if rule.every_s is not None and (rule.times is None or next_occurrence < rule.times):
            self._push(rule.after_s + next_occurrence * rule.every_s + self._jitter(rule), OCCURRENCE, due.rule,
                       next_occurrence)

    async def _undo(self, due: _Due, stopped: bool = False) -> None:
        rule = self.schedule.rules[due.rule]
        supervisor = self.supervisor
        slots, previous, index_set = due.undo
        slots = [slot for slot in slots if slot < supervisor.count]  # the fleet may have shrunk since
        details = {"rule": due.rule, "name": rule.name, "t": due.t, "revert": True}
        if stopped:
            details["stopped"] = True
        if rule.action in ("kill", "revive"):
            if rule.action == "kill":
                changed, _ = await supervisor.revive([s for s in slots if supervisor.state.states[s] == KILLED])
            else:
                changed = await supervisor.kill(slots)
            self.event_log.record("chaos", _REVERSE[rule.action], changed, **details)
            return
        indexes = _indexes(supervisor, rule)
        untouched = [slot for slot in slots if indexes[slot] == index_set]  # later changes win
        restored = sorted({previous[slot] for slot in untouched})
        if not restored:
            self.event_log.record("chaos", _REVERSE[rule.action], [], **details)
        for index in restored:  # an event for each spec or state restored, naming it (fastmock score's truth)
            group = [slot for slot in untouched if previous[slot] == index]
            if rule.action == "tls":
                state = supervisor.tls_states[index]
                changed, _ = await supervisor.set_tls(group, state)
                self.event_log.record("chaos", "restore-tls", changed, **details, state=state)
            else:
                spec = supervisor.fault_specs.get(index)
                changed = await supervisor.set_fault(group, spec)
                self.event_log.record("chaos", "restore", changed, **details, spec=spec)


_REVERSE = {"kill": "revive", "revive": "kill", "fault": "restore", "clear": "restore", "tls": "restore-tls"}


def _indexes(supervisor, rule: Rule):
    """The per-port table a fault, clear or tls rule changes (and its undo restores)."""
    return supervisor.state.tls if rule.action == "tls" else supervisor.state.faults
