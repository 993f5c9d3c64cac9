"""``fastmock report SUMMARY…``: the summaries of runs on several machines (``load --shard I/N
--summary-json``, or ``run --shard I/N --summary-json``) merged into one, exactly: counts add, and so do
the latency histograms' buckets, so the merged percentiles are those one run over all the requests would
give (not an average of percentiles). The merged run lasted as long as its longest shard; its rate is all
the requests over that time. Every summary's thresholds (each once) are judged again on the whole.

A SUMMARY is a file that --summary-json wrote, or ``-``: JSON lines on stdin, such as ``kubectl logs`` of
the shards run with ``--summary-json -`` (the summary is stdout's last line). In a stream of lines, those
that are not JSON objects are log text and are skipped, and so are JSON objects that are not summaries
(request records); an object that does not parse is an error at its line and column.
"""

import json

from fastmock._core import LatencyHistogram
from fastmock.load import LoadConfig, passed, shard_lines, summary_dict, summary_text
from fastmock.scenario import StepTotals, run_passed, run_summary, run_summary_lines, tls_summary
from fastmock.thresholds import parse_threshold

__all__ = ["ReportError", "read_summaries", "merge_summaries", "report_text", "report_passed"]

KINDS = ("load", "run")


class ReportError(ValueError):
    """A summary that cannot be read or merged; the message names where it is and what is wrong."""


def read_summaries(name: str, text: str) -> list[tuple[str, dict]]:
    """The summaries in ``text`` (from ``name``): [(where, summary)], where = NAME or NAME:LINE;
    ReportError if there is none, or a JSON object does not parse."""
    if text.lstrip().split("\n", 1)[0].strip() == "{":  # one indented document (--summary-json FILE)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{name}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
        if isinstance(document, dict) and _is_summary(document.get("summary")):
            document = document["summary"]  # load --output FILE.json: {"summary", "requests"}
        if not _is_summary(document):
            raise ReportError(f"{name}: not a summary (no \"kind\": \"load\" or \"run\")")
        return [(name, document)]
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("{"):
            continue  # log text around the summaries
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{name}:{number}:{exc.colno}: {exc.msg}") from None
        if _is_summary(document):
            found.append((f"{name}:{number}", document))
    if not found:
        raise ReportError(f"{name}: no summary in it (write them with --summary-json FILE, or - for stdout's "
                          f"last line)")
    return found


def _is_summary(document) -> bool:
    return isinstance(document, dict) and document.get("kind") in KINDS and "shard" in document


def merge_summaries(found: list[tuple[str, dict]], thresholds=()) -> dict:
    """One summary of all of ``found`` (read_summaries' pairs, all of one kind), with their thresholds and
    ``thresholds`` judged on the merged counts; ReportError naming the summary that does not fit."""
    if not found:
        raise ReportError("no summary to merge")
    first, kind = found[0][0], found[0][1]["kind"]
    merge = _LoadMerge() if kind == "load" else _RunMerge()
    shard_of, shards, elapsed_s, checks = {}, None, 0.0, {}
    for where, summary in found:
        try:
            if summary["kind"] != kind:
                raise ReportError(f"{where}: a {summary['kind']} summary, but {first} is a {kind} summary")
            index, count = summary["shard"]
            if not (type(index) is int and type(count) is int and 0 <= index < count):
                raise ReportError(f"{where}: shard {summary['shard']!r} is not [I, N] with 0 <= I < N")
            if shards is not None and count != shards:
                raise ReportError(f"{where}: shard {index}/{count}, but {first} is of {shards} shards")
            if index in shard_of and count > 1:
                raise ReportError(f"{where}: shard {index}/{count} again (also in {shard_of[index]})")
            shards, shard_of[index] = count, where
            elapsed_s = max(elapsed_s, float(summary["elapsed_s"]))
            for check in summary["thresholds"]:
                checks.setdefault(check["threshold"], parse_threshold(check["threshold"]))
            merge.add(summary)
        except ReportError:
            raise
        except ValueError as exc:  # a histogram or a threshold that does not parse
            raise ReportError(f"{where}: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReportError(f"{where}: not a whole {kind} summary ({type(exc).__name__}: {exc})") from None
    for threshold in thresholds:
        checks.setdefault(threshold.text, threshold)
    merged = merge.summary(elapsed_s, tuple(checks.values()))
    del merged["shard"]
    merged["shards"] = {"of": shards, "merged": sorted(shard_of), "missing": sorted(set(range(shards)) - set(shard_of))}
    return merged


def report_text(merged: dict) -> str:
    if merged["kind"] == "load":
        return summary_text(merged)
    return "\n".join([f"run of {', '.join(merged['tasks'])}", *shard_lines(merged), *run_summary_lines(merged)])


def report_passed(merged: dict) -> bool:
    return passed(merged) if merged["kind"] == "load" else run_passed(merged)


class _LoadMerge:
    """load summaries: counts, statuses, errors and histograms add; -c and --rate are the whole run's."""

    def __init__(self) -> None:
        self.histogram, self.handshake_histogram = LatencyHistogram(), LatencyHistogram()
        self.statuses, self.errors, self.handshake_failures = {}, {}, {}
        self.totals = dict.fromkeys(("requests", "bytes", "retries", "workers"), 0)
        self.handshakes = self.resumed = 0
        self.urls, self.whole_run, self.tls = [], (0.0, 1), False

    def add(self, summary: dict) -> None:
        self.histogram.merge(LatencyHistogram.from_dict(summary["histogram"]))
        for key in self.totals:
            self.totals[key] += _count(summary[key], key)
        rate = summary["rate"]
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0):
            raise ValueError(f"rate {rate!r} is not a rate")
        if not isinstance(summary["url"], str):
            raise ValueError(f"url {summary['url']!r} is not a URL")
        self.whole_run = (rate or 0.0, _count(summary["concurrency"], "concurrency"))
        _add(self.statuses, {int(status): _count(count, "a status count")
                             for status, count in summary["statuses"].items()})
        _add(self.errors, _counts(summary["errors"]))
        if "tls" in summary:
            self.tls = True
            self.handshake_histogram.merge(LatencyHistogram.from_dict(summary["tls"]["handshake_histogram"]))
            self.handshakes += _count(summary["tls"]["handshakes"], "handshakes")
            self.resumed += _count(summary["tls"]["resumed"], "resumed")
            _add(self.handshake_failures, _counts(summary["tls"]["failures"]))
        if summary["url"] not in self.urls:
            self.urls.append(summary["url"])

    def summary(self, elapsed_s: float, thresholds: tuple) -> dict:
        requests = self.totals["requests"]
        result = {"requests": requests, "elapsed_s": elapsed_s, "rps": requests / elapsed_s if elapsed_s else 0.0,
                  "statuses": dict(sorted(self.statuses.items())), "errors": self.errors,
                  "bytes": self.totals["bytes"], "retries": self.totals["retries"], "histogram": self.histogram,
                  "handshakes": self.handshakes, "resumed": self.resumed,
                  "handshake_histogram": self.handshake_histogram, "handshake_failures": self.handshake_failures}
        https = next((url for url in self.urls if url.startswith("https:")), None)
        config = LoadConfig(url=https if self.tls else self.urls[0], rate=self.whole_run[0],
                            concurrency=self.whole_run[1], workers=self.totals["workers"])
        return {**summary_dict(result, config, thresholds), "url": " ".join(self.urls)}


class _RunMerge:
    """run summaries: each task/step's counts and histogram add, and so do the TLS handshakes."""

    def __init__(self) -> None:
        self.steps: dict[str, StepTotals] = {}
        self.tasks: list[str] = []
        self.handshakes, self.handshake_failures = LatencyHistogram(), {}

    def add(self, summary: dict) -> None:
        for name, step in summary["steps"].items():
            self.steps.setdefault(name, StepTotals()).add(StepTotals.from_dict(step))
        if not all(isinstance(task, str) for task in summary["tasks"]):
            raise ValueError(f"tasks {summary['tasks']!r} are not names")
        self.tasks += [task for task in summary["tasks"] if task not in self.tasks]
        if "tls" in summary:
            self.handshakes.merge(LatencyHistogram.from_dict(summary["tls"]["handshake_histogram"]))
            _add(self.handshake_failures, _counts(summary["tls"]["failures"]))

    def summary(self, elapsed_s: float, thresholds: tuple) -> dict:
        return run_summary(dict(sorted(self.steps.items())), elapsed_s, thresholds,
                           tls_summary(self.handshakes, self.handshake_failures), (0, 1), self.tasks)


def _count(value, name: str) -> int:
    """A summary's count: a whole number, not negative (ValueError naming it otherwise)."""
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} {value!r} is not a count")
    return value


def _counts(counts: dict) -> dict[str, int]:
    return {str(name): _count(count, f"{name!r}'s count") for name, count in counts.items()}


def _add(totals: dict, counts: dict) -> None:
    for key, count in counts.items():
        totals[key] = totals.get(key, 0) + count
