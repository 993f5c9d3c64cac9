"""``fastmock score``: grade an uptime monitor against the truth a fleet recorded.

Truth: the fleet's event log (``/events``, or a saved JSON-lines file) becomes per-endpoint incidents: an
endpoint is bad from a kill to its revive, from a fault whose category counts (``--bad``: killed, degraded,
flaky, slow, tls) to its clear (or a chaos revert that restores a spec that does not count), and from a
certificate state other than valid to valid (``expiring(DAYS)`` only with ``--alert-on-expiring``).
Overlapping bad spells of one endpoint are one incident, of the kind that began it.

Observations: the monitor's alerts as spells per endpoint, from firing to resolved: a file (CSV or JSON
lines of time, target, firing|resolved), Alertmanager's webhook (``--listen``), whose alerts carry their
own startsAt/endsAt, or a Prometheus query sampled over the run (``--prometheus``). Overlapping spells of
one endpoint (two rules at once) are one. ``--skew`` is how far the monitor's clock is ahead of the fleet's.

Each incident is detected by the first alert spell that overlaps it (with ``--grace`` on either side):
detection latency = that spell's start - the incident's start (0 if it was firing already), recovery
latency = the end of the last overlapping spell - the incident's end; more than one spell is flapping.
An incident no spell overlaps is missed; a spell that overlaps no incident (with the grace on both sides)
is a false alert; an alert naming an endpoint the fleet never had is listed as unknown.
"""

import csv
import functools
import json
import math
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fastmock.faults import FaultSpecError, fault_category, fault_shape

__all__ = ["Spell", "Incident", "Badness", "ScoreError", "events_from_text", "event_problem", "log_starts_late",
           "incidents_from_events", "Truth", "alerts_from_text",
           "WebhookAlerts", "alerts_from_prometheus", "endpoint_key", "score", "score_text", "RunningScore",
           "SCORE_METRICS", "score_metric", "BAD_KINDS"]

BAD_KINDS = ("killed", "degraded", "flaky", "slow", "tls")
DEFAULT_BAD = ("killed", "degraded", "tls")
LATENCIES = ("detect", "notify", "recover")
KIND_METRICS = {"recall": "share", "incidents": "number", "detected": "number", "missed": "number",
                "flapping": "number", **{f"{latency}_{name}": "duration" for latency in LATENCIES
                                         for name in ("p50", "p95", "max")}}
SCORE_METRICS = {**KIND_METRICS, "precision": "share", "false_alerts": "number", "unknown": "number",
                 "unlabeled": "number",
                 **{f"{kind}.{name}": form for kind in BAD_KINDS for name, form in KIND_METRICS.items()}}


def score_metric(report: dict, metric: str) -> float:
    """A --threshold metric's value: the report's (``recall``) or one kind of outage's (``killed.recall``);
    NaN (no threshold holds) where it has none, e.g. no outage of that kind happened."""
    kind, _, name = metric.rpartition(".")
    value = (report["by_kind"].get(kind, {}) if kind else report).get(name)
    return math.nan if value is None else value


class ScoreError(ValueError):
    """Input that cannot be scored; the message names where (file:line:column) and why."""


@dataclass
class Spell:
    """A stretch of time one endpoint was bad (truth) or alerted on (observation); ``end`` None: still.
    ``noticed``: when the first notice of an alert reached this scorer (a webhook's; None from elsewhere)."""

    endpoint: str
    start: float
    end: float | None = None
    kind: str = ""
    noticed: float | None = None


@dataclass
class Incident(Spell):
    alerts: list = field(default_factory=list)  # the alert spells that overlap it, in time order


def endpoint_key(target, by_port: bool) -> str:
    """An endpoint as truth and alerts both name it: the port (``by_port``: a fleet of one address) or
    HOST:PORT, from a URL, HOST:PORT or a port (anything else as it is)."""
    text = str(target).strip()
    if "://" in text:
        try:
            parts = urllib.parse.urlsplit(text)
            host, port = parts.hostname or "", parts.port
        except ValueError:  # an unclosed [ or a port past 65535: no endpoint of any fleet's
            return text
    elif text.isdigit():
        host, port = "", int(text)
    else:
        host, _, port_text = text.rpartition(":")
        host, port = host.strip("[]"), int(port_text) if port_text.isdigit() else None
    if port is None:
        return text
    return str(port) if by_port or not host else (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


@dataclass(frozen=True)
class Badness:
    """What counts as an outage: the kinds (``--bad``), and how flaky or slow a fault must be to count."""

    kinds: tuple = DEFAULT_BAD
    flaky_above: float = 0.0       # the share of failed answers above which a flaky port is down
    slow_above_s: float = 0.0      # the typical delay above which a slow port is down (a drip always is)
    alert_on_expiring: bool = False


def events_from_text(name: str, text: str) -> list[dict]:
    """A saved event log (JSON lines, as GET /events gives it); ScoreError names the line and column of a
    line that is not an event."""
    events = []
    for number, _, event in _json_lines(name, text):
        problem = event_problem(event)
        if problem:
            raise ScoreError(f"{name}:{number}:1: {problem}")
        events.append(event)
    return events


def _json_lines(name: str, text: str):
    """(line number, line, its JSON value) of each line that is not blank; ScoreError naming the line and
    column of one that is not JSON."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield number, line, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScoreError(f"{name}:{number}:{exc.colno}: {exc.msg}") from None


def event_problem(event) -> str | None:
    """Why ``event`` is not one of the fleet's events (None: it is)."""
    if not isinstance(event, dict):
        return "not an event (a JSON object with time, action and ports)"
    if isinstance(event.get("time"), bool) or not isinstance(event.get("time"), (int, float)) \
            or not math.isfinite(event["time"]):
        return "an event's time is epoch seconds"
    if not isinstance(event.get("action"), str) or not isinstance(event.get("ports"), list) \
            or not all(isinstance(port, (int, str)) for port in event["ports"]):
        return "an event has an action and a list of ports"
    wrong = [key for key, kind in (("seq", int), ("pod", str), ("spec", (str, type(None))), ("state", str))
             if key in event and not isinstance(event[key], kind)]
    return f"an event's {wrong[0]} is a {dict(seq='number', pod='name').get(wrong[0], 'text')}" if wrong else None


def log_starts_late(events: list[dict]) -> float | None:
    """The time the truth begins if a log no longer holds its first events (a fleet keeps the last 100,000
    a pod): the latest first-kept event of the logs (one a pod) that do not start at seq 1; else None."""
    first: dict = {}
    for event in events:
        pod, seq = event.get("pod"), event.get("seq", 1)
        if pod not in first or seq < first[pod][0]:
            first[pod] = (seq, event["time"])
    late = [when for seq, when in first.values() if seq > 1]
    return max(late) if late else None


def incidents_from_events(events: list[dict], bad: Badness = Badness()) -> list[Incident]:
    """The fleet's events (any order; each as event_problem accepts) as incidents."""
    truth = Truth(bad, by_port=not any(isinstance(port, str) for event in events for port in event.get("ports", [])))
    for event in sorted(events, key=lambda event: (event["time"], event.get("seq", 0))):
        truth.add(event)
    return sorted(truth.incidents, key=lambda incident: (incident.start, incident.endpoint))


DIMENSIONS = {"kill": "alive", "revive": "alive", "fault": "fault", "clear": "fault", "restore": "fault",
              "tls": "tls", "restore-tls": "tls"}  # the actions that change an endpoint's health, and which part


class Truth:
    """Incidents from the fleet's events, fed in time order (as a live fleet's log grows): an endpoint is
    in an incident while any part of it (alive, fault, tls) is bad; bad spells that overlap or touch are one
    incident, of the kind that began it."""

    def __init__(self, bad: Badness = Badness(), by_port: bool = True) -> None:
        self.bad = bad
        self.by_port = by_port
        self.incidents: list[Incident] = []  # in the order they began
        self._last: dict[str, tuple[Incident, set]] = {}  # endpoint -> its latest incident, the parts bad now

    def add(self, event: dict) -> None:
        dimension = DIMENSIONS.get(event["action"])
        if dimension is None:
            return  # scale and others: no change of health
        kind, when = _bad_kind(event, self.bad), event["time"]
        for port in event["ports"]:
            endpoint = endpoint_key(port, self.by_port)
            incident, bad_now = self._last.get(endpoint, (None, None))
            if kind is None:
                if bad_now and dimension in bad_now:
                    bad_now.discard(dimension)
                    if not bad_now:
                        incident.end = when
            elif incident is not None and (incident.end is None or incident.end >= when):
                incident.end = None  # bad already, or again at the instant it recovered: the same incident
                bad_now.add(dimension)
            else:
                incident = Incident(endpoint, when, None, kind)
                self.incidents.append(incident)
                self._last[endpoint] = (incident, {dimension})


@functools.lru_cache(maxsize=4096)
def _fault_shape(spec: str) -> tuple[str, float, float, bool] | None:
    """(category, failing share, typical delay, drips) of a fault spec, None if it does not parse; a
    schedule repeats a few specs over and over."""
    try:
        return fault_category(spec), *fault_shape(spec)
    except FaultSpecError:
        return None


def _bad_kind(event: dict, bad: Badness) -> str | None:
    """The kind of bad spell ``event`` begins, None if it ends one (or begins nothing that counts)."""
    action = event["action"]
    if action == "kill":
        kind = "killed"
    elif action in ("fault", "restore"):  # a chaos revert restores a spec, or none
        spec = event.get("spec")
        if spec is None and action == "restore":
            return None
        shape = _fault_shape(spec or "")
        if shape is None:
            return "degraded" if "degraded" in bad.kinds else None
        kind, failing, typical_s, drips = shape
        if kind == "flaky" and failing <= bad.flaky_above or kind == "slow" and typical_s <= bad.slow_above_s \
                and not drips:
            return None
    elif action in ("tls", "restore-tls"):
        state = event.get("state", "valid")
        counts = state != "valid" and (not state.startswith("expiring") or bad.alert_on_expiring)
        return f"tls:{state}" if counts and "tls" in bad.kinds else None
    else:
        return None
    return kind if kind in bad.kinds else None


ALERT_FIELDS = ("time", "target", "state")


def alerts_from_text(name: str, text: str, by_port: bool) -> list[Spell]:
    """Alert spells from CSV (time,target,state with a header) or JSON lines ({"time", "target", "state"});
    a time is epoch seconds or RFC 3339. ScoreError names the line and column of a row that does not read."""
    observations = []
    for number, row, column_of in _alert_rows(name, text):
        at = next((key for key in ALERT_FIELDS if row.get(key) is None), None)
        try:
            if at is not None:
                raise ValueError(f"no {at}")
            at = "state"
            state = str(row["state"]).strip().lower()
            if state not in ("firing", "resolved"):
                raise ValueError(f"state {row['state']!r} is not firing or resolved")
            at = "time"
            observations.append((_time(row["time"]), endpoint_key(row["target"], by_port), state))
        except ValueError as exc:
            raise ScoreError(f"{name}:{number}:{column_of(at)}: {exc} (a row is time, target, firing|resolved)") \
                from None
    return _spells(observations)


def _alert_rows(name: str, text: str):
    """(line number, {field: value}, column of a field) for each row of an alerts file, JSON lines or CSV."""
    if text.lstrip().startswith("{"):
        for number, line, row in _json_lines(name, text):
            if not isinstance(row, dict):
                raise ScoreError(f"{name}:{number}:1: not a JSON object")
            yield number, row, lambda key, line=line: _json_value_column(line, key)
        return
    reader = csv.reader(text.splitlines())
    header = next((values for values in reader if any(value.strip() for value in values)), None)
    if header is None:
        return
    header = [column.strip().lower() for column in header]
    for column in ALERT_FIELDS:
        if column not in header:
            raise ScoreError(f"{name}:{reader.line_num}:1: no {column!r} column (the header is time,target,state)")
    for values in reader:
        if not any(value.strip() for value in values):
            continue
        starts = [1]
        for value in values:  # where each field begins (quotes, which CSV alerts rarely have, aside)
            starts.append(starts[-1] + len(value) + 1)
        row = dict(zip(header, values))
        yield reader.line_num, row, lambda column, starts=starts: starts[min(header.index(column), len(starts) - 1)]


def _json_value_column(line: str, key: str) -> int:
    """Where the value of ``key`` begins on a JSON line (the line's end if it has no such key)."""
    at = line.find(f'"{key}"')
    if at < 0:
        return len(line) + 1
    colon = line.find(":", at) + 1
    return colon + len(line[colon:]) - len(line[colon:].lstrip()) + 1


class WebhookAlerts:
    """The alerts of Alertmanager's webhook notifications, gathered as they come (``score --listen``,
    ``fleet --score-listen``): one spell per alert (its labels and ``startsAt``), from ``startsAt`` to its
    ``endsAt`` once a notice says resolved. An alert that fired and resolved within one group_interval comes
    only as resolved, and still counts. Bounded by the number of distinct alerts, not of notices."""

    def __init__(self, target_label: str = "instance") -> None:
        self.target_label = target_label
        self.spans: dict[tuple, list] = {}  # (target, labels, startsAt as sent) -> [start, end, first notice]
        self.without_target: set = set()    # (labels, startsAt) of alerts without the target label
        self.taken = 0                      # notices taken

    def receive(self, body: bytes, received: float | None = None) -> bool:
        """Take one notification (``received``: when it came); False, taking nothing, if it is not one."""
        try:
            payload = json.loads(body)
        except ValueError:
            return False
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        if not isinstance(alerts, list) or not all(
                isinstance(alert, dict) and isinstance(alert.get("labels", {}), dict) for alert in alerts):
            return False
        received = time.time() if received is None else received
        self.taken += 1
        for alert in alerts:
            labels, status = alert.get("labels", {}), alert.get("status")
            if status not in ("firing", "resolved"):
                continue
            sent_start = alert.get("startsAt")
            alert_id = (json.dumps(labels, sort_keys=True, default=str), str(sent_start))
            if self.target_label not in labels:  # no endpoint to score it on
                self.without_target.add(alert_id)
                continue
            span = self.spans.setdefault((str(labels[self.target_label]), *alert_id),
                                         [_stamp(sent_start, received), None, received])
            if status == "resolved":
                span[1] = _stamp(alert.get("endsAt"), received)
        return True

    @property
    def unlabeled(self) -> int:
        """How many alerts had no target label."""
        return len(self.without_target)

    def spells(self, by_port: bool) -> list[Spell]:
        return [Spell(endpoint_key(target, by_port), start, end, noticed=noticed)
                for (target, *_), (start, end, noticed) in self.spans.items()]

    def forget_before(self, horizon: float) -> None:
        """Drop the alerts that were resolved before ``horizon``."""
        self.spans = {key: span for key, span in self.spans.items() if span[1] is None or span[1] >= horizon}


def _stamp(value, received: float) -> float:
    """An alert's RFC 3339 time; ``received`` when it has none (Go's zero time, 0001-01-01) or a bad one."""
    if not isinstance(value, str) or value.startswith("0001"):
        return received
    try:
        return _time(value)
    except ValueError:
        return received


PROMETHEUS_POINTS = 10000  # a range query's steps at most (Prometheus refuses past 11,000 a series)


def alerts_from_prometheus(url: str, query: str, start: float, end: float, step_s: float, target_label: str,
                           by_port: bool) -> list[Spell]:
    """Alert spells from a Prometheus server: ``query`` (e.g. ``probe_success == 0`` or
    ``ALERTS{alertstate="firing"}``) sampled every ``step_s`` from ``start`` to ``end`` (in ranges of
    PROMETHEUS_POINTS steps); a series that has a sample is firing, until the first step without one.
    ScoreError if the server does not answer, refuses the query, or the query has no series."""
    import httpx

    samples: dict[str, list[float]] = {}  # the target of each series -> its sample times
    with httpx.Client(base_url=url, timeout=30) as client:
        for first in _ranges(start, end, step_s * PROMETHEUS_POINTS):
            last = min(end, first + step_s * (PROMETHEUS_POINTS - 1))
            for metric, stamps in _query_range(client, url, query, first, last, step_s):
                if target_label in metric and stamps:
                    samples.setdefault(str(metric[target_label]), []).extend(stamps)
    if not samples:
        raise ScoreError(f"{query!r} has no series with a {target_label!r} label in Prometheus at {url} "
                         f"between {start:.0f} and {end:.0f}")
    spells = []
    for target, stamps in samples.items():  # several series of one target (alert rules): their union
        spell = None
        for stamp in sorted(set(stamps)):  # a spell ends at the first step without a sample
            if spell is not None and stamp <= spell.end + step_s * 0.5:
                spell.end = stamp + step_s
                continue
            spell = Spell(endpoint_key(target, by_port), stamp, stamp + step_s)
            spells.append(spell)
        if spell.end > end:
            spell.end = None  # still firing at the end of the range
    return spells


def _ranges(start: float, end: float, width: float):
    while start <= end:
        yield start
        start += width


def _query_range(client, url: str, query: str, start: float, end: float, step_s: float) -> list[tuple[dict, list]]:
    """(labels, sample times) of each series of one range query; ScoreError if it fails."""
    import httpx

    try:
        response = client.get("/api/v1/query_range", params={"query": query, "start": start, "end": end,
                                                              "step": step_s})
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ScoreError(f"Prometheus at {url} does not answer: {exc}") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else None
        raise ScoreError(f"Prometheus at {url} refused {query!r}: {error or f'HTTP {response.status_code}'}")
    try:
        return [(dict(each["metric"]), [float(stamp) for stamp, _ in each["values"]])
                for each in answer["data"]["result"]]
    except (KeyError, TypeError, ValueError):
        raise ScoreError(f"{url} answered {query!r} with something other than a Prometheus range") from None


def _time(value) -> float:
    """Epoch seconds from a number or RFC 3339 text (without an offset: UTC); ValueError if neither."""
    text = str(value).strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")  # Go writes nanoseconds: Python reads at most microseconds
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        if isinstance(value, (int, float)) or text.replace(".", "", 1).isdigit():
            seconds = float(value)
        else:
            stamp = datetime.fromisoformat(text)
            seconds = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    except (ValueError, OverflowError):
        seconds = math.nan
    if not math.isfinite(seconds) or isinstance(value, bool):
        raise ValueError(f"{repr(value)[:40]} is not a time (epoch seconds or RFC 3339)")
    return seconds


def _spells(observations) -> list[Spell]:
    """(time, endpoint, firing|resolved) → spells: a firing opens one (if none is open), resolved ends it."""
    open_spells, spells = {}, []
    for when, endpoint, state in sorted(observations, key=lambda item: item[0]):
        if state == "firing" and endpoint not in open_spells:
            open_spells[endpoint] = Spell(endpoint, when)
            spells.append(open_spells[endpoint])
        elif state == "resolved" and endpoint in open_spells:
            open_spells.pop(endpoint).end = when
    return spells


def score(incidents: list[Incident], alerts: list[Spell], until: float, grace_s: float = 0.0, skew_s: float = 0.0,
          endpoints: set | None = None, unlabeled: int = 0) -> dict:
    """The monitor's report card (see the module comment); ``endpoints``: every endpoint the fleet had;
    ``unlabeled``: how many alerts named no endpoint at all."""
    by_endpoint: dict[str, list[Spell]] = {}
    for alert in sorted(alerts, key=lambda alert: alert.start):
        spells = by_endpoint.setdefault(alert.endpoint, [])
        start, end = alert.start - skew_s, None if alert.end is None else alert.end - skew_s  # the fleet's clock
        if spells and (spells[-1].end is None or start <= spells[-1].end):  # two rules alerting at once: one spell
            spells[-1].end = None if spells[-1].end is None or end is None else max(spells[-1].end, end)
            if alert.noticed is not None:
                spells[-1].noticed = min(alert.noticed, spells[-1].noticed or alert.noticed)
        else:  # (a notice's arrival is on this scorer's clock: no skew)
            spells.append(Spell(alert.endpoint, start, end, noticed=alert.noticed))
    alerts = [alert for spells in by_endpoint.values() for alert in spells]
    matched = set()
    for incident in incidents:
        end = until if incident.end is None else incident.end
        incident.alerts = [alert for alert in by_endpoint.get(incident.endpoint, []) if alert.start <= end + grace_s
                           and (alert.end is None or alert.end >= incident.start - grace_s)]
        matched.update(map(id, incident.alerts))
    had = {incident.endpoint for incident in incidents}  # (also a port a scale-down removed since)
    unknown = {alert.endpoint for alert in alerts
               if endpoints is not None and alert.endpoint not in endpoints and alert.endpoint not in had}
    false_alerts = [alert for alert in alerts if id(alert) not in matched and alert.endpoint not in unknown]
    rows = [_row(incident) for incident in incidents]
    kinds = {}
    for row in rows:
        kinds.setdefault(row["kind"].partition(":")[0], []).append(row)
    judged = len(alerts) - sum(1 for alert in alerts if alert.endpoint in unknown)
    return {**_summary(rows), "alerts": len(alerts), "false_alerts": len(false_alerts),
            "precision": round(len(matched) / judged, 6) if judged else None,
            "unknown": len(unknown), "unknown_targets": sorted(unknown)[:100], "unlabeled": unlabeled,
            "by_kind": {kind: _summary(kind_rows) for kind, kind_rows in sorted(kinds.items())},
            "incidents_list": rows,
            "false_alert_list": [{"endpoint": alert.endpoint, "start": alert.start, "end": alert.end}
                                 for alert in false_alerts[:1000]]}


def _row(incident: Incident) -> dict:
    row = {"endpoint": incident.endpoint, "kind": incident.kind, "start": incident.start, "end": incident.end,
           "detected": bool(incident.alerts), "detect_s": None, "notify_s": None, "recover_s": None, "flaps": 0}
    if incident.alerts:
        first, last = incident.alerts[0], incident.alerts[-1]
        row["detect_s"] = round(max(0.0, first.start - incident.start), 6)
        if first.noticed is not None:
            row["notify_s"] = round(max(0.0, first.noticed - incident.start), 6)
        if incident.end is not None and last.end is not None:
            row["recover_s"] = round(last.end - incident.end, 6)
        row["flaps"] = len(incident.alerts) - 1
    return row


PERCENTILES = (("p50", .5), ("p95", .95), ("max", 1))


def _summary(rows: list[dict]) -> dict:
    detected = sum(row["detected"] for row in rows)
    summary = {"incidents": len(rows), "detected": detected, "missed": len(rows) - detected,
               "recall": round(detected / len(rows), 6) if rows else None,
               "flapping": sum(1 for row in rows if row["flaps"])}
    for latency in LATENCIES:
        values = sorted(row[f"{latency}_s"] for row in rows if row[f"{latency}_s"] is not None)
        summary.update({f"{latency}_{name}": _pick(values, fraction) for name, fraction in PERCENTILES})
    return summary


def _pick(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _rfc3339(seconds: float) -> str:
    """A time as RFC 3339 in UTC, to the millisecond (as alert files may give it)."""
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):  # before year 1 or past 9999: the seconds
        return f"{seconds:.15g}"


def score_text(report: dict) -> str:
    def seconds(value):
        return "-" if value is None else f"{value:.2f}s"

    def share(value):
        return "-" if value is None else f"{value * 100:.1f}%"

    lines = [f"{'kind':<10} {'incidents':>9} {'detected':>8} {'missed':>6} {'recall':>7} "
             f"{'detect p50':>10} {'p95':>8} {'recover p50':>11} {'p95':>8}"]
    for kind, row in [*report["by_kind"].items(), ("all", report)]:
        lines.append(f"{kind:<10} {row['incidents']:>9} {row['detected']:>8} {row['missed']:>6} "
                     f"{share(row['recall']):>7} {seconds(row['detect_p50']):>10} {seconds(row['detect_p95']):>8} "
                     f"{seconds(row['recover_p50']):>11} {seconds(row['recover_p95']):>8}")
    lines.append(f"alerts {report['alerts']}: {report['false_alerts']} false, precision {share(report['precision'])}; "
                 f"{report['flapping']} incident(s) flapped; {report['unknown']} alert target(s) not in the fleet"
                 + (f": {', '.join(report['unknown_targets'][:10])}" if report["unknown"] else "")
                 + (f"; {report['unlabeled']} alert(s) without the target label" if report["unlabeled"] else ""))
    if report["notify_p50"] is not None:
        lines.append(f"notified (the first notice's arrival): p50 {seconds(report['notify_p50'])}, "
                     f"p95 {seconds(report['notify_p95'])}, max {seconds(report['notify_max'])}")
    for row in report["incidents_list"]:
        if not row["detected"]:
            lines.append(f"  missed  {row['endpoint']} {row['kind']} at {_rfc3339(row['start'])} "
                         f"for {seconds(None if row['end'] is None else row['end'] - row['start'])}")
    for check in report.get("thresholds", []):
        lines.append(f"threshold {check['threshold']}: {'pass' if check['ok'] else 'FAIL'}")
    return "\n".join(lines)


SLOW_REPORT_S = 0.01


class RunningScore:
    """A fleet's own scorer (``fleet --score-listen``): Alertmanager's webhook notices as they come, and the
    report of the monitor so far against the fleet's live event log (GET /score, the dashboard).

    The truth grows with each new event only; a report is computed when something changed, and one that
    takes over SLOW_REPORT_S (a long run's) for at most a 20th of the time, as the fleet's management loop
    has other work; in between, the last one is given again, with its ``as_of`` time. What the event log
    no longer holds (it keeps its last events) is forgotten here too."""

    def __init__(self, event_log, state, target_label: str = "instance") -> None:
        self.event_log = event_log
        self.state = state  # the fleet's FleetState: which endpoints it has
        self.alerts = WebhookAlerts(target_label)
        self.truth = Truth(by_port=len(state.hosts) == 1)
        self.seq = 0                # the last event the truth has
        self.last = None            # (what it was computed from, the report)
        self.next_at = 0.0          # no new report before (monotonic)

    def receive(self, body: bytes) -> bool:
        """Take one webhook notification; False if it is not one."""
        return self.alerts.receive(body)

    def report(self, count: int) -> dict:
        """The score, over the first ``count`` slots of the fleet (the others are unknown targets)."""
        basis = (self.event_log.seq, self.alerts.taken, count)
        if self.last is not None and (self.last[0] == basis or time.monotonic() < self.next_at):
            return self.last[1]
        started = time.monotonic()
        for event in self.event_log.after(self.seq):
            self.truth.add(event)
        self.seq = self.event_log.seq
        self._forget_what_the_log_lost()
        report = score(self.truth.incidents, self.alerts.spells(by_port=self.truth.by_port), time.time(),
                       endpoints=_InFleet(self.state, count), unlabeled=self.alerts.unlabeled)
        report["as_of"] = round(time.time(), 3)
        cost = time.monotonic() - started
        self.last, self.next_at = (basis, report), started + (20 * cost if cost > SLOW_REPORT_S else 0)
        return report

    def _forget_what_the_log_lost(self) -> None:
        log = self.event_log.events
        if not log or log[0]["seq"] == 1:
            return
        horizon = log[0]["time"]
        self.truth.incidents = [incident for incident in self.truth.incidents
                                if incident.end is None or incident.end >= horizon]
        self.alerts.forget_before(horizon)


class _InFleet:
    """``endpoint in fleet``: whether an endpoint key (a port, or HOST:PORT) is one of the first slots."""

    def __init__(self, state, count: int) -> None:
        self.state, self.count = state, count

    def __contains__(self, key: str) -> bool:
        host, _, port = key.rpartition(":")
        slot = self.state.slot_of(int(port), host.strip("[]") or None) if port.isdigit() else None
        return slot is not None and slot < self.count
