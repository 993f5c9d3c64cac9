"""The threshold language of ``load --threshold`` (thresholds.py)."""

import math

import pytest

from fastmock.thresholds import evaluate, parse_threshold


@pytest.mark.parametrize(("text", "metric", "op", "limit"), [
    ("p99<250ms", "p99", "<", 0.25),
    ("p99.9 <= 2s", "p99.9", "<=", 2.0),
    ("mean<5", "mean", "<", 0.005),  # a bare latency is in milliseconds
    ("errors<1%", "errors", "<", 0.01),
    ("failed<=0.05", "failed", "<=", 0.05),
    ("rps>1000", "rps", ">", 1000.0),
    ("requests==10", "requests", "==", 10.0),
])
def test_thresholds_parse(text, metric, op, limit):
    threshold = parse_threshold(text)
    assert (threshold.metric, threshold.op) == (metric, op)
    assert threshold.limit == pytest.approx(limit)


@pytest.mark.parametrize(("text", "message"), [
    ("p99", "is not METRIC OP VALUE"),
    ("speed>1", "unknown metric 'speed'"),
    ("p0<1s", "a percentile is above p0"),
    ("p101<1s", "at most p100"),
    ("p99<soon", "'soon' is not a duration"),
    ("errors<150%", "not a share from 0 to 1"),
    ("rps>abc", "'abc' is not a number"),
    ("rps>nan", "'nan' is not a number"),
])
def test_bad_thresholds_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_threshold(text)


def test_evaluate_compares_and_fails_on_nothing_measured():
    thresholds = [parse_threshold(text) for text in ("p99<250ms", "rps>=100", "errors<1%")]
    values = {"p99": 0.3, "rps": 100.0, "errors": math.nan}
    results = evaluate(thresholds, values.__getitem__)
    assert [(result["threshold"], result["ok"]) for result in results] == [
        ("p99<250ms", False), ("rps>=100", True), ("errors<1%", False)]
