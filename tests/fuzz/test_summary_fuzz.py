"""Summaries are input to ``fastmock report``: hostile histograms (the core copies bucket counts by index)
and documents are refused with a ValueError naming why, never accepted half-read or crashing."""

import random

from cases import seeds
from fastmock._core import HISTOGRAM_LAYOUT, LatencyHistogram
from fastmock.report import ReportError, merge_summaries
from fastmock.load import LoadConfig, summary_dict

HOSTILE = [-1, 0, 1, 2047, 2048, 32767, 32768, 1 << 31, 1 << 63, 1 << 64, -(1 << 63), 2.5, "1", None, True, [], {}]


def test_histograms_from_hostile_dicts_are_refused_or_exact():
    for seed in seeds("histograms", 0.05):
        rng = random.Random(seed)
        buckets = [[rng.choice([rng.randrange(32768), rng.choice(HOSTILE)]),
                    rng.choice([rng.randrange(1, 1000), rng.choice(HOSTILE)])] for _ in range(rng.randrange(6))]
        data = {"layout": rng.choice([HISTOGRAM_LAYOUT, HISTOGRAM_LAYOUT, "other", None]), "buckets": buckets,
                "count": rng.choice([sum(count for _, count in buckets if type(count) is int), rng.choice(HOSTILE)]),
                "min_us": rng.choice([0, 5, rng.choice(HOSTILE)]), "max_us": rng.choice([10 ** 9, rng.choice(HOSTILE)]),
                "sum_us": rng.choice([10 ** 9, rng.choice(HOSTILE)])}
        if rng.random() < 0.2:
            del data[rng.choice(list(data))]
        try:
            histogram = LatencyHistogram.from_dict(data)
        except ValueError:
            continue
        assert histogram.count == sum(count for _, count in buckets) == data["count"]
        assert sum(count for _, count in histogram.to_dict()["buckets"]) == histogram.count


def test_merging_hostile_summaries_is_refused_or_whole():
    template = summary_dict({"requests": 1, "elapsed_s": 1.0, "rps": 1.0, "statuses": {200: 1}, "errors": {},
                             "bytes": 1, "retries": 0, "histogram": LatencyHistogram()},
                            LoadConfig(url="http://127.0.0.1:9/", shard=0, shards=2), ())
    keys = list(template)
    for seed in seeds("summaries", 0.05):
        rng = random.Random(seed)
        summary = dict(template)
        for _ in range(rng.randrange(1, 4)):
            summary[rng.choice(keys)] = rng.choice(HOSTILE)
        try:
            merged = merge_summaries([("a", summary)])
        except ReportError:
            continue
        assert merged["requests"] >= 0


def test_merging_hostile_run_summaries_is_refused_or_whole():
    from fastmock.report import report_text
    from fastmock.scenario import StepTotals, run_summary

    template = run_summary({"t/a": StepTotals(2, 1, 0, 0)}, 1.0, (), None, (0, 2), ["t"])
    for seed in seeds("run summaries", 0.05):
        rng = random.Random(seed)
        step = dict(template["steps"]["t/a"])
        summary = {**template, "steps": {"t/a": step}}
        for _ in range(rng.randrange(1, 4)):
            target = summary if rng.random() < 0.5 else step
            target[rng.choice(list(target))] = rng.choice(HOSTILE)
        try:
            merged = merge_summaries([("a", summary)])
        except ReportError:
            continue
        assert merged["requests"] >= 0 and report_text(merged)
