"""``fastmock ctl``: the click commands that drive a fleet, and the Console that runs and prints them.

Each command is defined once, here: ``fastmock ctl`` runs them from the command line and ``fastmock shell``
runs the same click commands for each line it reads.
"""

import functools
import json
import os
import sys
import time

import click

from fastmock.client import DEFAULT_URL, FleetClient, FleetError, Unreachable
from fastmock.fleet.ports import parse_port_range
from fastmock.fleet.state import STATES_BY_NAME
from fastmock.params import Duration

__all__ = ["Console", "ctl", "table"]


def table(rows: list[list], header: list[str]) -> str:
    """Left-aligned columns (numbers right-aligned), two spaces apart."""
    cells = [header] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(isinstance(row[i], int) for row in rows) and rows for i in range(len(header))]
    lines = []
    for row in cells:
        lines.append("  ".join(cell.rjust(width) if numeric[i] else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def _process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


class Console:
    """Runs a command against the fleet and writes its output with ``echo``; FleetError means it failed."""

    def __init__(self, client: FleetClient, echo) -> None:
        self.client = client
        self.echo = echo

    def _show(self, data, as_json: bool, text: str) -> None:
        self.echo(json.dumps(data, indent=2) if as_json else text)

    def stats(self, as_json: bool = False) -> None:
        stats = self.client.stats()
        rows = []
        for key, value in stats.items():  # a mapping (the ports by state) gets a row per entry
            rows += [[f"{key}.{name}", count] for name, count in value.items()] if isinstance(value, dict) \
                else [[key, value]]
        self._show(stats, as_json, table(rows, ["STAT", "VALUE"]))

    def endpoints(self, limit: int = 20, state: str = "alive", as_json: bool = False) -> None:
        entries = self.client.endpoints(limit=limit, state=state)
        rows = [[entry["port"], entry["state"], entry["requests"], entry["url"]] for entry in entries]
        self._show(entries, as_json, table(rows, ["PORT", "STATE", "REQUESTS", "URL"]) if rows
                   else f"no {state} endpoints")

    def kill(self, port: int, as_json: bool = False) -> None:
        reply = self.client.kill(port)
        self._show(reply, as_json, f"port {reply['port']}: {reply['state']}")

    def revive(self, port: int, as_json: bool = False) -> None:
        reply = self.client.revive(port)
        self._show(reply, as_json, f"port {reply['port']}: {reply['state']}")

    def scale(self, count: int, as_json: bool = False) -> None:
        reply = self.client.scale(count)
        if count >= 0:
            failed = f", {len(reply['failed'])} failed to bind" if reply["failed"] else ""
            text = f"started {reply['started']} ports{failed}; the fleet has {reply['ports']} ({reply['range']})"
        else:
            text = f"stopped {reply['stopped']} ports; the fleet has {reply['ports']} ({reply['range']})"
        self._show(reply, as_json, text)

    def status(self, as_json: bool = False) -> bool:
        """Whether a fleet answers; not an error when none does."""
        try:
            stats = self.client.stats()
        except Unreachable as exc:
            self._show({"up": False, "url": self.client.url, "error": str(exc)}, as_json,
                       f"no fleet answering at {self.client.url} ({exc})")
            return False
        addresses, pods = stats.get("addresses"), stats.get("pods")  # a fleet on several of either
        per_address = max(address["ports"] for address in addresses.values()) if addresses else \
            max(pod.get("ports", 0) for pod in pods) if pods else stats["ports"]
        last = stats["base_port"] + per_address - 1
        where = f" on {len(addresses)} addresses" if addresses else f" in {len(pods)} pods" if pods else ""
        process = f"pid {stats['pid']}, uptime {stats['uptime_s']:.0f}s" if not pods else \
            "; ".join(f"{pod['pod']}: {pod['error']}" for pod in pods if "error" in pod) or "every pod answers"
        self._show({"up": True, "url": self.client.url, **stats}, as_json,
                   f"fleet at {self.client.url} is up ({process}, workers: {stats['workers']})\n"
                   f"{stats['ports']} ports {stats['base_port']}-{last}{where}: "
                   + ", ".join(f"{count} {state}" for state, count in stats["states"].items()
                               if count or state in ("alive", "killed", "failed"))
                   + f"; {stats['requests_total']} requests served"
                   + ("; a chaos schedule is running" if stats["chaos"] else "")
                   + ("\nTLS: " + ", ".join(f"{count} {state}" for state, count in stats["tls"].items())
                      + f"; {stats['handshakes']} handshakes, "
                      + f"{sum(stats['handshake_failures'].values())} failed" if "tls" in stats else ""))
        return True

    def fault(self, ports: str, spec: str, as_json: bool = False) -> None:
        reply = self.client.fault(ports, spec)
        self._show(reply, as_json, f"{len(reply['ports'])} port(s) {ports}: {spec} ({', '.join(reply['states'])})")

    def clear(self, ports: str | None, as_json: bool = False) -> None:
        reply = self.client.clear(ports)
        self._show(reply, as_json, f"cleared the faults of {len(reply['cleared'])} port(s)")

    def tls(self, ports: str, state: str, as_json: bool = False) -> None:
        reply = self.client.tls(ports, state)
        changed = reply["valid"] if state == "valid" else reply["ports"]
        self._show(reply, as_json, f"{len(changed)} port(s) of {ports} now {reply.get('tls', 'valid')}")

    def chaos(self, as_json: bool = False) -> None:
        status = self.client.chaos()
        if not status["active"]:
            self._show(status, as_json, "no chaos schedule is running")
            return
        rows = [[due["in_s"], due["name"], due["action"] + (" (undo)" if due["revert"] else "")]
                for due in status["next"]]
        self._show(status, as_json, f"chaos schedule running for {status['elapsed_s']:.0f}s "
                                    f"({len(status['rules'])} rule(s), seed {status['seed']}); next:\n"
                                    + table(rows, ["IN_S", "RULE", "ACTION"]))

    def start_chaos(self, schedule: str, as_json: bool = False) -> None:
        status = self.client.start_chaos(schedule)
        self._show(status, as_json, f"chaos schedule started: {len(status['rules'])} rule(s), seed {status['seed']}")

    def stop_chaos(self, as_json: bool = False) -> None:
        self._show(self.client.stop_chaos(), as_json, "chaos schedule stopped (pending undos applied)")

    def events(self, since: int = 0, as_json: bool = False) -> None:
        events = self.client.events(since)
        rows = [[event["seq"], time.strftime("%H:%M:%S", time.localtime(event["time"])),
                 event.get("name", event["source"]), event["action"] + (" (undo)" if event.get("revert") else ""),
                 len(event["ports"]), " ".join(map(str, event["ports"][:5])) + (" …" if len(event["ports"]) > 5 else "")]
                for event in events]
        self._show(events, as_json, table(rows, ["SEQ", "TIME", "BY", "ACTION", "PORTS", "FIRST"]) if rows
                   else "no events")

    def logs(self, tail: int = 100) -> None:
        self.echo(self.client.logs(tail).rstrip("\n"))

    def score(self, as_json: bool = False) -> None:
        from fastmock.score import score_text

        report = self.client.score()
        self._show(report, as_json, score_text(report))

    def stop(self, timeout_s: float = 30.0, as_json: bool = False) -> None:
        """POST /shutdown, then wait for the fleet's process to exit (when it runs on this machine)."""
        reply = self.client.shutdown()
        pid = reply["pid"]
        local = os.path.exists(f"/proc/{pid}")
        deadline = time.monotonic() + timeout_s
        while local and not _process_gone(pid):
            if time.monotonic() > deadline:
                raise FleetError(f"the fleet (pid {pid}) is still running after {timeout_s:g}s")
            time.sleep(0.05)
        self._show({"stopped": True, "pid": pid}, as_json, f"fleet stopped (pid {pid})")


# --- the commands ---------------------------------------------------------------------------------

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The fleet's management API.")
@click.option("--token", default=None, help="Bearer token, if the fleet was started with --token.")
@click.pass_context
def ctl(ctx, url, token):
    """Drive a running fleet through its management API.

    Options may also be set as FASTMOCK_CTL_URL and FASTMOCK_CTL_TOKEN.
    """
    ctx.obj = Console(FleetClient(url, token), click.echo)


def _fleet_command(function):
    """A ctl subcommand: a FleetError becomes one line on stderr and exit 1."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except FleetError as exc:
            raise click.ClickException(str(exc)) from None
    return ctl.command()(click.pass_obj(run))


@_fleet_command
@json_option
def stats(console, as_json):
    """The fleet's counters."""
    console.stats(as_json)


@_fleet_command
@click.argument("limit", type=click.IntRange(0), default=20)
@click.option("--state", type=click.Choice([*STATES_BY_NAME, "all"]), default="alive", show_default=True)
@json_option
def endpoints(console, limit, state, as_json):
    """The first LIMIT endpoints (default 20) in a state."""
    console.endpoints(limit, state, as_json)


@_fleet_command
@click.argument("port", type=click.IntRange(1, 65535))
@json_option
def kill(console, port, as_json):
    """Close PORT: connections are refused until it is revived."""
    console.kill(port, as_json)


@_fleet_command
@click.argument("port", type=click.IntRange(1, 65535))
@json_option
def revive(console, port, as_json):
    """Bring a killed PORT back."""
    console.revive(port, as_json)


@_fleet_command
@click.argument("count", type=int)
@json_option
def scale(console, count, as_json):
    """Start COUNT more ports (negative: stop the highest; 'scale -10' needs no '--')."""
    console.scale(count, as_json)


scale.context_settings["ignore_unknown_options"] = True  # -10 is a COUNT, not an option


class PortRange(click.ParamType):
    """A port or a range of ports: 10005 or 10000-10099 (kept as text for the API)."""

    name = "ports"

    def convert(self, value, param, ctx):
        try:
            parse_port_range(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


@_fleet_command
@click.argument("ports", type=PortRange())
@click.argument("spec")
@json_option
def fault(console, ports, spec, as_json):
    """Give PORTS (a port or A-B) the fault SPEC, e.g. 503 or 'timeout:30,ok:70'."""
    console.fault(ports, spec, as_json)


@_fleet_command
@click.argument("ports", type=PortRange(), required=False)
@json_option
def clear(console, ports, as_json):
    """Clear the faults of PORTS (a port or A-B), or of every port."""
    console.clear(ports, as_json)


@_fleet_command
@click.argument("ports", type=PortRange())
@click.argument("state")
@json_option
def tls(console, ports, state, as_json):
    """Put PORTS (a port or A-B) of a --tls fleet in a certificate STATE: expired, wrong-host, expiring(3),
    handshake-stall, ... ; valid undoes them."""
    console.tls(ports, state, as_json)


@_fleet_command
@click.argument("action", type=click.Choice(["status", "start", "stop"]), default="status")
@click.argument("schedule", type=click.File("r"), required=False)
@json_option
def chaos(console, action, schedule, as_json):
    """The chaos schedule: status (default), start SCHEDULE.yaml ('-': stdin), or stop."""
    if action == "start":
        if schedule is None:
            raise click.UsageError("start needs a schedule file (or - for stdin)")
        console.start_chaos(schedule.read(), as_json)
    elif schedule is not None:
        raise click.UsageError(f"{action} takes no schedule file")
    elif action == "stop":
        console.stop_chaos(as_json)
    else:
        console.chaos(as_json)


@_fleet_command
@click.option("--since", type=click.IntRange(0), default=0, show_default=True, help="Events after this seq.")
@json_option
def events(console, since, as_json):
    """The fleet's event log: what the API and chaos schedules changed."""
    console.events(since, as_json)


@_fleet_command
@json_option
def score(console, as_json):
    """The monitor's score so far, when the fleet was started with --score-listen."""
    console.score(as_json)


@_fleet_command
@json_option
def status(console, as_json):
    """Whether a fleet answers, with its counts (exit 1 when none does)."""
    if not console.status(as_json):
        sys.exit(1)


@_fleet_command
@click.option("--tail", type=click.IntRange(0), default=100, show_default=True, help="How many lines.")
def logs(console, tail):
    """The fleet's last log lines."""
    console.logs(tail)


@_fleet_command
@click.option("--timeout", type=Duration(), default="30s", show_default=True,
              help="How long to wait for the process to exit (bare number: seconds).")
@json_option
def stop(console, timeout, as_json):
    """Stop the fleet (POST /shutdown) and wait for its process to exit."""
    console.stop(timeout, as_json)
