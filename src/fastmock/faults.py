"""The fault language (DESIGN.md) → a FaultPlan for the core.

    spec     := mix [";" "delay=" dist]
    mix      := term ("," term)*
    term     := outcome [":" weight]
    outcome  := STATUS | "ok" | "timeout" ["(" DURATION ")"] | "reset" | "close" | "garbage" | "truncate"
              | "drip" "(" RATE ")"
    dist     := DURATION | "uniform(" D "," D ")" | "normal(" MEAN "," STDDEV ")" | "lognormal(" MEDIAN "," P99 ")"

A bare duration number is milliseconds. Errors say what was expected and where (1-based position).
"""

import math
import re

from fastmock._core import FaultPlan
from fastmock.units import parse_duration, parse_size

__all__ = ["FaultSpecError", "parse_fault_spec", "fault_category", "fault_shape", "FAULT_EXAMPLE", "PlanCache"]

FAULT_EXAMPLE = "timeout:20,403:20,500:10,ok:50;delay=lognormal(20ms,300ms)"
_SIMPLE = ("ok", "reset", "close", "garbage", "truncate")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_WORD = re.compile(r"[A-Za-z]+")
_QUANTITY = re.compile(r"[0-9.]+[A-Za-z]*")


class FaultSpecError(ValueError):
    example = FAULT_EXAMPLE

    def __init__(self, spec: str, position: int, message: str) -> None:
        super().__init__(f"{message} at position {position + 1} of fault spec {spec!r}")
        self.spec = spec
        self.position = position + 1
        self.reason = message


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, position: int | None = None):
        return FaultSpecError(self.text, self.pos if position is None else position, message)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def accept(self, char: str) -> bool:
        self.skip()
        if self.text.startswith(char, self.pos):
            self.pos += len(char)
            return True
        return False

    def expect(self, char: str, what: str) -> None:
        if not self.accept(char):
            raise self.error(f"expected {what}, found {self.found()}")

    def match(self, pattern: re.Pattern) -> tuple[str, int] | None:
        self.skip()
        found = pattern.match(self.text, self.pos)
        if not found:
            return None
        self.pos = found.end()
        return found.group(), found.start()

    def found(self) -> str:
        return repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"

    def duration(self, what: str) -> float:
        token = self.match(_QUANTITY)
        if token is None:
            raise self.error(f"expected {what} (like 250ms, 2s or 1m), found {self.found()}")
        try:
            return parse_duration(token[0], bare_unit="ms")
        except ValueError:
            raise self.error(f"{token[0]!r} is not a duration (like 250ms, 2s or 1m)", token[1]) from None


def _outcome(scanner: _Scanner) -> tuple[str, int, float]:
    if (token := scanner.match(_NUMBER)) is not None:
        text, start = token
        if not text.isdigit() or not 200 <= int(text) <= 599:
            raise scanner.error(f"status {text} out of range 200-599", start)
        return "status", int(text), 0.0
    token = scanner.match(_WORD)
    if token is None:
        raise scanner.error(f"expected a status code or an outcome (ok, timeout, reset, close, garbage, truncate, "
                            f"drip), found {scanner.found()}")
    word, start = token[0].lower(), token[1]
    if word in _SIMPLE:
        return word, 0, 0.0
    if word == "timeout":
        hold_s = 0.0
        if scanner.accept("("):
            hold_s = scanner.duration("a duration")
            scanner.expect(")", "')'")
        return "timeout", 0, hold_s
    if word == "drip":
        scanner.expect("(", "'(' and a rate in bytes per second, like drip(1K)")
        token = scanner.match(_QUANTITY)
        if token is None:
            raise scanner.error(f"expected a rate in bytes per second (like 1K), found {scanner.found()}")
        try:
            rate = parse_size(token[0])
        except ValueError:
            raise scanner.error(f"invalid rate {token[0]!r} (like 512, 1K or 1M bytes per second)", token[1]) from None
        if rate <= 0:
            raise scanner.error("the rate must be positive", token[1])
        scanner.expect(")", "')'")
        return "drip", 0, float(rate)
    raise scanner.error(f"unknown outcome {token[0]!r}", start)


def _distribution(scanner: _Scanner) -> tuple[str, float, float]:
    start = scanner.pos
    token = scanner.match(_WORD)
    if token is None:
        return "fixed", scanner.duration("a delay"), 0.0
    name = token[0].lower()
    names = {"uniform": ("low", "high"), "normal": ("mean", "stddev"), "lognormal": ("median", "p99")}
    if name not in names:
        raise scanner.error(f"unknown distribution {token[0]!r} (uniform, normal, lognormal or a duration)",
                            token[1])
    first_name, second_name = names[name]
    scanner.expect("(", "'('")
    first = scanner.duration(f"the {first_name}")
    scanner.expect(",", "','")
    second = scanner.duration(f"the {second_name}")
    scanner.expect(")", "')'")
    if name == "uniform" and second < first:
        raise scanner.error("uniform(low, high) needs low <= high", start)
    if name == "lognormal" and not 0 < first <= second:
        raise scanner.error("lognormal(median, p99) needs 0 < median <= p99", start)
    return name, first, second


def parse_fault_spec(spec: str) -> FaultPlan:
    """Compile ``spec``; raises FaultSpecError with the position of the first problem."""
    return FaultPlan(spec, *_parse(spec))


def fault_category(spec: str) -> str:
    """How a port with this spec looks to a monitor: 'degraded' (it never answers well), 'flaky' (it
    sometimes does), 'slow' (it always does, late or dripping) or 'alive' (no visible effect)."""
    outcomes, delay = _parse(spec)
    good = [kind in ("ok", "drip") or (kind == "status" and status < 400)
            for kind, status, _, weight in outcomes if weight > 0]
    if not any(good):
        return "degraded"
    if not all(good):
        return "flaky"
    slow = delay[0] != "none" or any(kind == "drip" for kind, *_ in outcomes)
    return "slow" if slow else "alive"


def fault_shape(spec: str) -> tuple[float, float, bool]:
    """(the share of answers that fail, the typical delay in seconds, whether it drips) of a spec: how bad
    a flaky or a slow port is (``fastmock score --flaky-above/--slow-above``)."""
    outcomes, (name, first, second) = _parse(spec)
    total = sum(weight for *_, weight in outcomes)
    failing = sum(weight for kind, status, _, weight in outcomes
                  if not (kind in ("ok", "drip") or (kind == "status" and status < 400)))
    typical = {"none": 0.0, "fixed": first, "uniform": (first + second) / 2, "normal": first,
               "lognormal": first}[name]
    return failing / total, typical, any(kind == "drip" for kind, *_ in outcomes)


def _parse(spec: str) -> tuple[list, tuple]:
    scanner = _Scanner(spec)
    outcomes = []
    while True:
        kind, status, arg = _outcome(scanner)
        weight = 1.0
        if scanner.accept(":"):
            token = scanner.match(_NUMBER)
            if token is None:
                raise scanner.error(f"expected a weight (like 20 or 0.2), found {scanner.found()}")
            weight = float(token[0])
        outcomes.append((kind, status, arg, weight))
        if not scanner.accept(","):
            break
    delay = ("none", 0.0, 0.0)
    if scanner.accept(";"):
        scanner.skip()
        if not scanner.accept("delay"):
            raise scanner.error(f"expected 'delay=', found {scanner.found()}")
        scanner.expect("=", "'='")
        delay = _distribution(scanner)
    scanner.skip()
    if scanner.pos != len(spec):
        raise scanner.error(f"expected ',' or ';delay=', found {scanner.found()}")
    if not sum(weight for *_, weight in outcomes) > 0 or any(math.isinf(weight) for *_, weight in outcomes):
        raise FaultSpecError(spec, 0, "the weights must add up to a positive, finite number")
    return outcomes, delay


class PlanCache:
    """Specs met at run time (X-Fastmock-Fault, /unreliable queries), compiled once each (a bounded cache)."""

    SIZE = 1024

    def __init__(self) -> None:
        self.plans: dict[str, FaultPlan | FaultSpecError] = {}

    def get(self, spec: str) -> FaultPlan:
        """The plan of ``spec``; FaultSpecError for a spec that does not parse (remembered too)."""
        plan = self.plans.get(spec)
        if plan is None:
            if len(self.plans) >= self.SIZE:
                self.plans.clear()
            try:
                plan = parse_fault_spec(spec)
            except FaultSpecError as exc:
                plan = exc
            self.plans[spec] = plan
        if isinstance(plan, FaultSpecError):
            raise plan.with_traceback(None)  # one instance raised again: its traceback must not grow
        return plan

    def from_header(self, value: str) -> FaultPlan:
        """The ``header_faults`` hook of the core's Server."""
        return self.get(value.strip())
