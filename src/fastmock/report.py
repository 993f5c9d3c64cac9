"""``fastmock report SUMMARY…``: the summaries of load runs on several machines (``load --shard I/N
--summary-json``) merged into one, exactly: counts add, and so do the latency histograms' buckets, so the
merged percentiles are those one run over all the requests would give (not an average of percentiles).
The merged run lasted as long as its longest shard; its rate is all the requests over that time.

A SUMMARY is a file that --summary-json wrote, or ``-``: JSON lines on stdin, such as ``kubectl logs`` of
the shards run with ``--summary-json -`` (the summary is stdout's last line). In a stream of lines, those
that are not JSON objects are log text and are skipped, and so are JSON objects that are not summaries
(request records); an object that does not parse is an error at its line and column.
"""

import json

from fastmock._core import LatencyHistogram
from fastmock.load import LoadConfig, summary_dict
from fastmock.thresholds import parse_threshold

__all__ = ["ReportError", "read_summaries", "merge_summaries"]


class ReportError(ValueError):
    """A summary that cannot be read or merged; the message names where it is and what is wrong."""


def read_summaries(name: str, text: str) -> list[tuple[str, dict]]:
    """The load summaries in ``text`` (from ``name``): [(where, summary)], where = NAME or NAME:LINE;
    ReportError if there is none, or a JSON object does not parse."""
    if text.lstrip().split("\n", 1)[0].strip() == "{":  # one indented document (--summary-json FILE)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{name}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
        if isinstance(document, dict) and _is_summary(document.get("summary")):
            document = document["summary"]  # --output FILE.json: {"summary", "requests"}
        if not _is_summary(document):
            raise ReportError(f"{name}: not a load summary (no \"kind\": \"load\")")
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
        raise ReportError(f"{name}: no load summary in it (write them with: fastmock load … --summary-json "
                          f"FILE, or - for stdout's last line)")
    return found


def _is_summary(document) -> bool:
    return isinstance(document, dict) and document.get("kind") == "load"


def merge_summaries(found: list[tuple[str, dict]], thresholds=()) -> dict:
    """One summary of all of ``found`` (read_summaries' pairs), with their thresholds (each once) and
    ``thresholds`` evaluated on the merged counts; ReportError naming the summary that does not fit."""
    if not found:
        raise ReportError("no summary to merge")
    histogram, handshake_histogram = LatencyHistogram(), LatencyHistogram()
    statuses, errors, handshake_failures = {}, {}, {}
    totals = dict.fromkeys(("requests", "bytes", "retries", "workers"), 0)
    handshakes = resumed = 0
    urls, checks, shard_of = [], {}, {}
    elapsed_s, shards, tls = 0.0, None, False
    for where, summary in found:
        try:
            index, count = summary["shard"]
            if not (type(index) is int and type(count) is int and 0 <= index < count):
                raise ReportError(f"{where}: shard {summary['shard']!r} is not [I, N] with 0 <= I < N")
            if shards is not None and count != shards:
                raise ReportError(f"{where}: shard {index}/{count}, but {found[0][0]} is of {shards} shards")
            if index in shard_of and count > 1:
                raise ReportError(f"{where}: shard {index}/{count} again (also in {shard_of[index]})")
            shards, shard_of[index] = count, where
            histogram.merge(LatencyHistogram.from_dict(summary["histogram"]))
            for key in totals:
                totals[key] += summary[key] or 0
            elapsed_s = max(elapsed_s, float(summary["elapsed_s"]))
            whole_run = (summary["rate"], summary["concurrency"])  # -c and --rate are the whole run's
            _add(statuses, {int(status): n for status, n in summary["statuses"].items()})
            _add(errors, summary["errors"])
            if "tls" in summary:
                tls = True
                handshake_histogram.merge(LatencyHistogram.from_dict(summary["tls"]["handshake_histogram"]))
                handshakes += summary["tls"]["handshakes"]
                resumed += summary["tls"]["resumed"]
                _add(handshake_failures, summary["tls"]["failures"])
            for check in summary["thresholds"]:
                checks.setdefault(check["threshold"], parse_threshold(check["threshold"]))
            if summary["url"] not in urls:
                urls.append(summary["url"])
        except ReportError:
            raise
        except ValueError as exc:  # a histogram or a threshold that does not parse
            raise ReportError(f"{where}: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReportError(f"{where}: not a whole load summary ({type(exc).__name__}: {exc})") from None
    for threshold in thresholds:
        checks.setdefault(threshold.text, threshold)
    result = {"requests": totals["requests"], "elapsed_s": elapsed_s,
              "rps": totals["requests"] / elapsed_s if elapsed_s else 0.0,
              "statuses": dict(sorted(statuses.items())), "errors": errors, "bytes": totals["bytes"],
              "retries": totals["retries"], "histogram": histogram, "handshakes": handshakes,
              "resumed": resumed, "handshake_histogram": handshake_histogram,
              "handshake_failures": handshake_failures}
    https = next((url for url in urls if url.startswith("https:")), urls[0])  # summary_dict's tls or not
    config = LoadConfig(url=https if tls else urls[0], rate=whole_run[0] or 0.0, concurrency=whole_run[1],
                        workers=totals["workers"])
    merged = summary_dict(result, config, tuple(checks.values()))
    del merged["shard"]
    merged["shards"] = {"of": shards, "merged": sorted(shard_of), "missing": sorted(set(range(shards)) - set(shard_of))}
    merged["url"] = " ".join(urls)
    return merged


def _add(totals: dict, counts: dict) -> None:
    for key, count in counts.items():
        totals[key] = totals.get(key, 0) + count
