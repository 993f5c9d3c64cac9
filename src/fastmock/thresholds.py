"""Pass/fail thresholds on a run's results, in the style of k6: ``p99<250ms``, ``errors<1%``, ``rps>1000``.

    threshold := METRIC OP VALUE        OP: < <= > >= ==
    METRIC    := pN (a latency percentile, e.g. p99, p99.9) | min | max | mean     VALUE: a duration (bare: ms)
               | errors (share of requests without a response) | failed (errors and 5xx)  VALUE: 1% or 0.01
               | rps | requests                                                        VALUE: a number

``load`` and ``run`` exit 1 when one fails, so a CI job can gate on them.
"""

import math
import operator
import re
from dataclasses import dataclass

from fastmock.units import parse_duration

__all__ = ["Threshold", "parse_threshold", "evaluate", "measure_counts", "THRESHOLD_EXAMPLE"]

THRESHOLD_EXAMPLE = "p99<250ms, errors<1%, rps>1000"
_FORM = re.compile(r"\s*([a-z][a-z0-9.]*)\s*(<=|>=|==|<|>)\s*(\S.*?)\s*")
_PERCENTILE = re.compile(r"p([0-9]+(?:\.[0-9]+)?)")
_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
LATENCIES = ("min", "max", "mean")
SHARES = ("errors", "failed")
NUMBERS = ("rps", "requests")


@dataclass(frozen=True)
class Threshold:
    text: str
    metric: str     # pN, min, max, mean (seconds); errors, failed (a fraction); rps, requests
    op: str
    limit: float

    def passes(self, value: float) -> bool:
        return not math.isnan(value) and _OPERATORS[self.op](value, self.limit)


def parse_threshold(text: str) -> Threshold:
    """One threshold; ValueError saying what is wrong with it."""
    form = _FORM.fullmatch(text)
    if not form:
        raise ValueError(f"{text!r} is not METRIC OP VALUE (examples: {THRESHOLD_EXAMPLE})")
    metric, op, value = form.groups()
    percentile = _PERCENTILE.fullmatch(metric)
    if percentile and not 0 < float(percentile.group(1)) <= 100:
        raise ValueError(f"{text!r}: a percentile is above p0 and at most p100")
    if percentile or metric in LATENCIES:
        try:
            limit = parse_duration(value, bare_unit="ms")
        except ValueError:
            raise ValueError(f"{text!r}: {value!r} is not a duration (e.g. 250ms, 1.5s)") from None
    elif metric in SHARES:
        limit = _number(text, value[:-1]) / 100 if value.endswith("%") else _number(text, value)
        if not 0 <= limit <= 1:
            raise ValueError(f"{text!r}: {value!r} is not a share from 0 to 1 (or 0% to 100%)")
    elif metric in NUMBERS:
        limit = _number(text, value)
    else:
        raise ValueError(f"{text!r}: unknown metric {metric!r} (pN, min, max, mean, errors, failed, rps, requests)")
    return Threshold(text.strip(), metric, op, limit)


def _number(text: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{text!r}: {value!r} is not a number")
    return number


def evaluate(thresholds, measure) -> list[dict]:
    """Each threshold against ``measure(metric)`` (seconds, fractions or numbers, as parsed):
    [{"threshold", "metric", "value", "ok"}] in the order given."""
    results = []
    for threshold in thresholds:
        value = measure(threshold.metric)
        results.append({"threshold": threshold.text, "metric": threshold.metric, "value": value,
                        "ok": threshold.passes(value)})
    return results


def measure_counts(requests: int, errors: int, failed: int, elapsed_s: float, histogram):
    """``evaluate``'s ``measure`` from a run's counts and latency histogram (a LatencyHistogram of the
    answered requests): latencies in seconds, shares of all requests, rates; NaN where there is nothing to
    measure (which fails the threshold)."""
    def measure(metric: str) -> float:
        if metric == "requests":
            return requests
        if metric == "rps":
            return requests / elapsed_s if elapsed_s else math.nan
        if metric in SHARES:
            return (errors if metric == "errors" else failed) / requests if requests else math.nan
        if not histogram.count:
            return math.nan
        if metric in LATENCIES:
            return getattr(histogram, metric)
        return histogram.percentile(float(metric[1:]))

    return measure
