"""``fastmock shell``: an interactive client of a local fleet (the old client.py's commands).

Each command parses its arguments with argparse (a bad one prints that command's usage and the shell goes
on) and runs through the same Console as ``fastmock ctl``.
"""

import argparse
import cmd
import shlex
import urllib.parse

from fastmock.client import FleetClient, FleetError
from fastmock.ctl import Console
from fastmock.fleet.detach import DetachError, default_paths, start_detached, state_dir
from fastmock.fleet.state import STATES_BY_NAME

__all__ = ["FleetShell", "run_shell"]

HISTORY_LENGTH = 1000


class _BadArguments(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argparse parser that reports errors instead of exiting the shell."""

    def error(self, message):
        raise _BadArguments(f"{message}\n{self.format_usage().rstrip()}")

    def exit(self, status=0, message=None):  # -h/--help: the help is printed already
        raise _BadArguments(message or "")


def _parser(name: str, description: str) -> _Parser:
    return _Parser(prog=name, description=description, add_help=True)


class FleetShell(cmd.Cmd):
    intro = "fastmock shell: manage a local fleet. Type help or ? to list commands, Ctrl-D to leave."
    prompt = "(fastmock) "

    def __init__(self, url: str, token: str | None, run_fleet, stdin=None, stdout=None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.client = FleetClient(url, token)
        self.console = Console(self.client, self._echo)
        self.run_fleet = run_fleet
        self.parsers = {
            "start": _parser("start", "Start a fleet of N ports in the background."),
            "endpoints": _parser("endpoints", "List endpoints."),
            "kill": _parser("kill", "Kill a port: it refuses connections until revived."),
            "revive": _parser("revive", "Bring a killed port back."),
            "scale": _parser("scale", "Start N more ports, or stop the highest -N."),
            "logs": _parser("logs", "The fleet's last log lines."),
            "fault": _parser("fault", "Give ports (a port or A-B) a fault spec."),
            "clear": _parser("clear", "Clear the faults of ports (a port or A-B), or of every port."),
            "events": _parser("events", "The fleet's event log."),
        }
        start = self.parsers["start"]
        start.add_argument("n", type=int, help="how many ports")
        start.add_argument("--base-port", type=int, default=10000)
        start.add_argument("--max-port", type=int, default=60000)
        endpoints = self.parsers["endpoints"]
        endpoints.add_argument("limit", type=int, nargs="?", default=20)
        endpoints.add_argument("--state", choices=[*STATES_BY_NAME, "all"], default="alive")
        self.parsers["kill"].add_argument("port", type=int)
        self.parsers["revive"].add_argument("port", type=int)
        self.parsers["scale"].add_argument("n", type=int, help="ports to add (negative: to stop)")
        self.parsers["logs"].add_argument("--tail", type=int, default=50)
        self.parsers["fault"].add_argument("ports")
        self.parsers["fault"].add_argument("spec")
        self.parsers["clear"].add_argument("ports", nargs="?")
        self.parsers["events"].add_argument("--since", type=int, default=0)

    def _echo(self, text: str) -> None:
        self.stdout.write(text + "\n")

    def _run(self, name: str, line: str, action) -> None:
        """Parse ``line`` with the command's parser (if it has one) and run ``action``; report failures."""
        try:
            words = shlex.split(line)
            parser = self.parsers.get(name)
            if parser is not None:
                action(parser.parse_args(words))
            elif words:
                raise _BadArguments(f"{name} takes no arguments")
            else:
                action(None)
        except _BadArguments as exc:
            if str(exc):
                self._echo(str(exc).rstrip())
        except ValueError as exc:  # shlex: unbalanced quotes
            self._echo(f"{name}: {exc}")
        except (FleetError, DetachError) as exc:
            self._echo(f"error: {exc}")

    # --- the commands ---------------------------------------------------------------------------------

    def do_start(self, line):
        """start <n> [--base-port P] [--max-port P]: start a fleet in the background"""
        def start(args):
            from fastmock.fleet import FleetConfig

            address = urllib.parse.urlsplit(self.client.url)
            config = FleetConfig(count=args.n, base_port=args.base_port, max_port=args.max_port,
                                 host=address.hostname or "127.0.0.1", mgmt_port=address.port or 9999,
                                 token=self.client.token)
            pid_file, log_file = default_paths(config.mgmt_port)
            info = start_detached(config, pid_file, log_file, self.run_fleet)
            self._echo(f"fleet started: pid {info['pid']}, ports {info['ports']} ({info['alive']} alive, "
                       f"{info['failed']} failed), log {info['log']}")
        self._run("start", line, start)

    def do_stop_all(self, line):
        """stop_all: stop the fleet and wait for it to exit"""
        self._run("stop_all", line, lambda args: self.console.stop())

    def do_stats(self, line):
        """stats: the fleet's counters"""
        self._run("stats", line, lambda args: self.console.stats())

    def do_endpoints(self, line):
        """endpoints [limit] [--state alive|killed|failed|degraded|slow|flaky|all]: list endpoints"""
        self._run("endpoints", line, lambda args: self.console.endpoints(args.limit, args.state))

    def do_kill(self, line):
        """kill <port>: close a port (connections are refused until it is revived)"""
        self._run("kill", line, lambda args: self.console.kill(args.port))

    def do_revive(self, line):
        """revive <port>: bring a killed port back"""
        self._run("revive", line, lambda args: self.console.revive(args.port))

    def do_scale(self, line):
        """scale <n>: start n more ports (negative: stop the highest)"""
        self._run("scale", line, lambda args: self.console.scale(args.n))

    def do_status(self, line):
        """status: is a fleet answering, and its counts"""
        self._run("status", line, lambda args: self.console.status())

    def do_logs(self, line):
        """logs [--tail N]: the fleet's last log lines"""
        self._run("logs", line, lambda args: self.console.logs(args.tail))

    def do_fault(self, line):
        """fault <port|A-B> <spec>: give ports a fault spec, e.g. fault 10000-10009 503"""
        self._run("fault", line, lambda args: self.console.fault(args.ports, args.spec))

    def do_clear(self, line):
        """clear [port|A-B]: clear the faults of those ports (of every port without one)"""
        self._run("clear", line, lambda args: self.console.clear(args.ports))

    def do_events(self, line):
        """events [--since SEQ]: what the API and chaos schedules changed"""
        self._run("events", line, lambda args: self.console.events(args.since))

    def do_quit(self, line):
        """quit: leave the shell (the fleet keeps running)"""
        return True

    do_exit = do_quit

    def do_EOF(self, line):
        self._echo("")
        return True

    def emptyline(self):
        pass  # not cmd's default of repeating the last command: that could kill twice

    def default(self, line):
        self._echo(f"unknown command: {line.split()[0]} (type help for the list)")

    def get_names(self):
        # do_EOF is how cmd sees Ctrl-D: not a command to list in help or complete
        return [name for name in super().get_names() if name != "do_EOF"]


def run_shell(url: str, token: str | None, run_fleet) -> int:
    shell = FleetShell(url, token, run_fleet)
    history = state_dir() / "shell_history"
    try:
        import readline
    except ImportError:  # no line editing; the shell still works
        readline = None
    if readline is not None:
        history.parent.mkdir(parents=True, exist_ok=True)
        if history.exists():
            readline.read_history_file(history)
        readline.set_history_length(HISTORY_LENGTH)
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        shell._echo("")
    finally:
        if readline is not None:
            readline.write_history_file(history)
    return 0
