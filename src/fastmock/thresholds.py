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

from fastmock.units import parse_duration, parse_share

__all__ = ["Threshold", "parse_threshold", "evaluate", "measure_counts", "THRESHOLD_EXAMPLE"]

THRESHOLD_EXAMPLE = "p99<250ms, errors<1%, rps>1000"
_FORM = re.compile(r"\s*([a-z][a-z0-9._]*)\s*(<=|>=|==|<|>)\s*(\S.*?)\s*")
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


def parse_threshold(text: str, metrics: dict[str, str] | None = None) -> Threshold:
    """One threshold; ValueError saying what is wrong with it. ``metrics`` (name → duration, share or
    number) replaces the load metrics above, for another command's (``fastmock score``'s)."""
    form = _FORM.fullmatch(text)
    example = THRESHOLD_EXAMPLE if metrics is None else ", ".join(f"{name}<1" for name in list(metrics)[:3])
    if not form:
        raise ValueError(f"{text!r} is not METRIC OP VALUE (examples: {example})")
    metric, op, value = form.groups()
    if metrics is not None:
        kind = metrics.get(metric)
        if kind is None:
            groups = list(dict.fromkeys(name.partition(".")[0] for name in metrics if "." in name))
            raise ValueError(f"{text!r}: unknown metric {metric!r} ({', '.join(m for m in metrics if '.' not in m)}"
                             + (f"; or GROUP.METRIC, GROUP one of {', '.join(groups)}" if groups else "") + ")")
    else:
        kind = _load_metric(text, metric)
    if kind == "duration":
        try:
            limit = parse_duration(value, bare_unit="ms")
        except ValueError:
            raise ValueError(f"{text!r}: {value!r} is not a duration (e.g. 250ms, 1.5s)") from None
    elif kind == "share":
        try:
            limit = parse_share(value)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
    else:
        limit = _number(text, value)
    return Threshold(text.strip(), metric, op, limit)


def _load_metric(text: str, metric: str) -> str:
    """The kind of a load or run metric: a latency (pN, min, max, mean), a share or a number."""
    percentile = _PERCENTILE.fullmatch(metric)
    if percentile and not 0 < float(percentile.group(1)) <= 100:
        raise ValueError(f"{text!r}: a percentile is above p0 and at most p100")
    if percentile or metric in LATENCIES:
        return "duration"
    if metric in SHARES:
        return "share"
    if metric in NUMBERS:
        return "number"
    raise ValueError(f"{text!r}: unknown metric {metric!r} (pN, min, max, mean, errors, failed, rps, requests)")


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
