"""fastmock report: load summaries from shards merged exactly (counts and histogram buckets add)."""

import json
import random
import subprocess
import sys

import pytest

from fastmock._core import HISTOGRAM_LAYOUT, LatencyHistogram
from fastmock.load import LoadConfig, summary_dict
from fastmock.thresholds import parse_threshold
from helpers import start_server


def fastmock(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastmock", *map(str, args)], capture_output=True, text=True,
                          input=stdin, cwd=cwd, timeout=120)


def recorded_summary(latencies, statuses, shard, thresholds=()):
    """The summary `load --shard` writes, for a run whose requests took ``latencies`` (seconds)."""
    histogram = LatencyHistogram()
    for latency in latencies:
        histogram.record(latency)
    result = {"requests": len(latencies), "elapsed_s": 2.0, "rps": len(latencies) / 2.0, "statuses": statuses,
              "errors": {}, "bytes": 15 * len(latencies), "retries": 0, "histogram": histogram}
    config = LoadConfig(url="http://127.0.0.1:9/health", concurrency=8, shard=shard[0], shards=shard[1])
    return summary_dict(result, config, tuple(map(parse_threshold, thresholds)))


def test_merged_shards_give_the_percentiles_of_one_run_over_the_same_records(tmp_path):
    rng = random.Random(5)
    latencies = [rng.lognormvariate(-7, 1.5) for _ in range(20_000)]  # 1 us to seconds: every bucket kind
    shards = 4
    for index in range(shards):
        part = latencies[index::shards]
        summary = recorded_summary(part, {200: len(part)}, (index, shards), ["p99<1s"])
        (tmp_path / f"shard{index}.json").write_text(json.dumps(summary, indent=2))
    one_run = recorded_summary(latencies, {200: len(latencies)}, (0, 1), ["p99<1s"])

    result = fastmock("report", *sorted(tmp_path.glob("shard*.json")), "--summary-json", tmp_path / "merged.json")
    assert result.returncode == 0, result.stderr
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["latency_ms"] == one_run["latency_ms"]
    assert merged["histogram"] == one_run["histogram"]
    assert merged["requests"] == 20_000 and merged["statuses"] == {"200": 20_000}
    assert merged["bytes"] == 15 * 20_000 and merged["rps"] == 10_000.0  # the longest shard's 2 s
    assert merged["shards"] == {"of": 4, "merged": [0, 1, 2, 3], "missing": []}
    assert merged["thresholds"] == [{**one_run["thresholds"][0]}]
    assert "  shards     4 of 4 merged\n" in result.stdout
    assert f"p99 {one_run['latency_ms']['p99']:.3f}ms" in result.stdout


@pytest.fixture(scope="module")
def hp():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        yield server
        server.stop()


def test_load_shards_split_the_run_and_report_merges_their_logs(hp, tmp_path):
    logs, indices = [], []
    for index in range(3):
        records = tmp_path / f"records{index}.jsonl"
        result = fastmock("load", f"{hp.url}/status/503", "-n", 300, "-c", 6, "--shard", f"{index}/3",
                          "--summary-json", "-", "--output", records, "--threshold", "requests>=300")
        assert result.returncode == 1, result.stderr  # a shard alone has 100 requests
        assert f"  shard      {index}/3\n" in result.stdout
        summary = json.loads(result.stdout.splitlines()[-1])  # --summary-json -: stdout's last line
        assert summary["shard"] == [index, 3] and summary["requests"] == 100
        logs.append(result.stdout)
        indices += [json.loads(line)["index"] for line in records.read_text().splitlines()]
    assert sorted(indices) == list(range(300))  # the shards took disjoint parts of one run

    merged = fastmock("report", "-", stdin="".join(logs))  # like kubectl logs of the shards: text and JSON
    assert merged.returncode == 0, merged.stderr  # together they made their 300
    assert "  requests   300 in " in merged.stdout and "  statuses   503: 300\n" in merged.stdout
    assert "closed loop, 6 connections, 3 worker(s)" in merged.stdout
    assert "  threshold  requests>=300    pass" in merged.stdout

    failing = fastmock("report", "-", "--threshold", "failed<1%", stdin="".join(logs))
    assert failing.returncode == 1 and "  threshold  failed<1%        FAIL  (100.00%)" in failing.stdout
    partial = fastmock("report", "-", stdin=logs[0] + logs[2])
    assert "  shards     2 of 3 merged (missing: 1)\n" in partial.stdout


SCENARIO = """\
base_url: {url}
tasks:
  mix:
    requests:
      - {{name: a, path: /health, weight: 3}}
      - {{name: b, path: /status/500, weight: 1}}
    load: {{every: 5ms, for: 500ms}}
"""


def test_run_shards_merge_per_step(hp, tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.format(url=hp.url))
    logs, steps = "", {}
    for index in range(2):
        result = fastmock("run", scenario, "--shard", f"{index}/2", "--summary-json", "-", "--threshold",
                          "requests>=100")
        assert result.returncode == 1  # 50 requests each
        summary = json.loads(result.stdout.splitlines()[-1])  # after the request lines
        assert summary["kind"] == "run" and summary["shard"] == [index, 2] and summary["requests"] == 50
        for name, step in summary["steps"].items():
            steps[name] = steps.get(name, 0) + step["requests"]
        logs += result.stdout + result.stderr

    merged = fastmock("report", "-", "--summary-json", tmp_path / "merged.json", stdin=logs)
    assert merged.returncode == 0, merged.stderr
    summary = json.loads((tmp_path / "merged.json").read_text())
    assert summary["requests"] == 100 and {name: step["requests"] for name, step in summary["steps"].items()} == steps
    assert summary["failed"] == steps["mix/b"]  # every 500 fails its check
    assert summary["histogram"]["count"] == 100 and summary["shards"]["missing"] == []
    assert merged.stdout.startswith("run of mix\n  shards     2 of 2 merged\n")
    assert f"mix/b: {steps['mix/b']} requests, {steps['mix/b']} failed, 0 retries" in merged.stdout
    assert "threshold requests>=100: pass (100)" in merged.stdout


def test_report_refuses_what_it_cannot_merge_exactly(tmp_path):
    def written(name, summary):
        (tmp_path / name).write_text((summary if isinstance(summary, str) else json.dumps(summary)) + "\n")
        return name

    shard0 = written("a.jsonl", recorded_summary([0.001], {200: 1}, (0, 2)))
    other_layout = recorded_summary([0.001], {200: 1}, (1, 2))
    other_layout["histogram"]["layout"] = "hdr:3-digits"
    cases = [
        ([shard0, written("b.jsonl", other_layout)], "b.jsonl:1: histogram layout 'hdr:3-digits'"),
        ([shard0, shard0], "a.jsonl:1: shard 0/2 again (also in a.jsonl:1)"),
        ([shard0, written("c.jsonl", recorded_summary([0.001], {200: 1}, (1, 3)))],
         "c.jsonl:1: shard 1/3, but a.jsonl:1 is of 2 shards"),
        ([written("d.jsonl", '{"kind": "load", "url": }')], "d.jsonl:1:25: Expecting value"),
        ([written("e.jsonl", {"index": 0, "status": 200})], "e.jsonl: no summary in it"),
        ([shard0, written("g.jsonl", {**recorded_summary([0.001], {200: 1}, (1, 2)), "kind": "run"})],
         "g.jsonl:1: a run summary, but a.jsonl:1 is a load summary"),
        ([written("f.jsonl", {**recorded_summary([0.001], {200: 1}, (0, 1)), "histogram": {
            "layout": HISTOGRAM_LAYOUT, "count": 1,
            "min_us": 1, "max_us": 1, "sum_us": 1, "buckets": [[10 ** 9, 1]]}})], "bucket 1000000000"),
        ([written("h.jsonl", {**recorded_summary([0.001], {200: 1}, (0, 1)), "histogram": {  # counts that wrap in C
            "layout": HISTOGRAM_LAYOUT, "count": 1, "min_us": 1, "max_us": 1, "sum_us": 1,
            "buckets": [[1, 1 << 63], [2, 1 << 63], [3, 1]]}})], "the bucket counts add up past 2**64"),
    ]
    for paths, message in cases:
        result = fastmock("report", *paths, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (message, result.stderr)
        assert "Invalid value for 'SUMMARY'" in result.stderr
