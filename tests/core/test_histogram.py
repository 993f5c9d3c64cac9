"""The load generator's latency histogram: log-linear buckets, percentiles as HDR answers them, merging."""

import pickle

import pytest

from fastmock._core import LatencyHistogram


def filled(values_us):
    histogram = LatencyHistogram()
    for value in values_us:
        histogram.record(value / 1e6)
    return histogram


def test_empty():
    histogram = LatencyHistogram()
    assert histogram.count == 0 and histogram.mean == 0.0 and histogram.percentile(99) == 0.0


def test_count_min_max_mean_are_exact():
    histogram = filled([100, 200, 300, 1000])
    assert histogram.count == 4
    assert histogram.min == pytest.approx(100e-6) and histogram.max == pytest.approx(1000e-6)
    assert histogram.mean == pytest.approx(400e-6)


@pytest.mark.parametrize("value_us", [1, 5, 1023, 1024, 1025, 77_777, 1_234_567, 60_000_000])
def test_a_percentile_is_within_a_thousandth_of_the_value(value_us):
    # 1024 buckets per power of two: the bucket's highest value is at most 1/1024 above any value in it
    histogram = filled([value_us] * 3)
    got = histogram.percentile(50) * 1e6
    assert value_us <= round(got) <= value_us * (1 + 1 / 1024) + 1


def test_percentiles_follow_the_ranks():
    histogram = filled(range(1, 1001))  # 1..1000 µs: exact below 1024
    assert round(histogram.percentile(50) * 1e6) == 500
    assert round(histogram.percentile(99) * 1e6) == 990
    assert round(histogram.percentile(100) * 1e6) == 1000
    assert round(histogram.percentile(0.01) * 1e6) == 1


def test_negative_durations_count_as_zero():
    histogram = filled([])
    histogram.record(-1.0)
    assert histogram.count == 1 and histogram.max == 0.0


def test_merging_is_adding_counts():
    a, b = filled(range(1, 501)), filled(range(501, 1001))
    a.merge(b)
    whole = filled(range(1, 1001))
    assert (a.count, a.min, a.max, a.mean) == (whole.count, whole.min, whole.max, whole.mean)
    assert [a.percentile(p) for p in (1, 50, 90, 99.9)] == [whole.percentile(p) for p in (1, 50, 90, 99.9)]


def test_merging_into_an_empty_histogram_takes_the_others_minimum():
    empty = LatencyHistogram()
    empty.merge(filled([700, 900]))
    assert empty.min == pytest.approx(700e-6) and empty.count == 2


def test_a_pickled_histogram_comes_back_equal():  # workers send theirs to the parent this way
    histogram = filled([3, 30, 300, 3000, 30000])
    copy = pickle.loads(pickle.dumps(histogram))
    assert (copy.count, copy.min, copy.max, copy.mean) == (histogram.count, histogram.min, histogram.max,
                                                            histogram.mean)
    assert copy.percentile(80) == histogram.percentile(80)
