"""``fastmock shell``: an interactive client of a local fleet (the old client.py's commands).

Every fleet command is ``fastmock ctl``'s click command, run for the line read (a bad argument prints
click's message and that command's usage, and the shell goes on); ``start`` and the old ``stop_all`` are
the shell's own.
"""

import cmd
import shlex
import urllib.parse

import click

from fastmock.client import FleetClient, FleetError
from fastmock.ctl import Console, ctl
from fastmock.fleet.management.detach import DetachError, default_paths, start_detached, state_dir

__all__ = ["FleetShell", "run_shell"]

HISTORY_LENGTH = 1000


class FleetShell(cmd.Cmd):
    intro = "fastmock shell: manage a local fleet. Type help or ? to list commands, Ctrl-D to leave."
    prompt = "(fastmock) "

    def __init__(self, url: str, token: str | None, stdin=None, stdout=None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.client = FleetClient(url, token)
        self.console = Console(self.client, self._echo)

    def _echo(self, text: str) -> None:
        self.stdout.write(text + "\n")

    def _run(self, command: click.Command, name: str, line: str, obj) -> None:
        """Run a click command with the words of ``line``; report failures and go on."""
        try:
            words = shlex.split(line)
        except ValueError as exc:  # unbalanced quotes
            self._echo(f"{name}: {exc}")
            return
        try:
            with command.make_context(name, words, parent=click.Context(ctl, info_name="", obj=obj)) as ctx:
                command.invoke(ctx)
        except click.exceptions.Exit:
            pass  # --help: printed already
        except click.UsageError as exc:
            self._echo(exc.format_message())
            if exc.ctx is not None:
                self._echo(exc.ctx.get_usage())
        except click.ClickException as exc:
            self._echo(f"error: {exc.format_message()}")
        except SystemExit:
            pass  # `status` says that no fleet answers with its exit status

    def start_fleet(self, count: int, base_port: int, max_port: int) -> None:
        from fastmock.fleet import FleetConfig

        address = urllib.parse.urlsplit(self.client.url)
        config = FleetConfig(count=count, base_port=base_port, max_port=max_port,
                             host=address.hostname or "127.0.0.1", mgmt_port=address.port or 9999,
                             token=self.client.token)
        pid_file, log_file = default_paths(config.mgmt_port)
        try:
            info = start_detached(config, pid_file, log_file)
        except (FleetError, DetachError) as exc:
            raise click.ClickException(str(exc)) from None
        self._echo(f"fleet started: pid {info['pid']}, ports {info['ports']} ({info['alive']} alive, "
                   f"{info['failed']} failed), log {info['log']}")

    # --- the shell's own commands (the ctl commands are added below) ---------------------------------

    def do_start(self, line):
        """start <n> [--base-port P] [--max-port P]: start a fleet in the background"""
        self._run(start_command, "start", line, self)

    def do_stop_all(self, line):
        """stop_all: stop the fleet and wait for it to exit (ctl's stop)"""
        self._run(ctl.commands["stop"], "stop_all", line, self.console)

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


def _add_ctl_commands() -> None:
    """A do_NAME and help_NAME for each ctl command, so cmd lists, completes and documents them."""
    for name, command in ctl.commands.items():
        def run(self, line, name=name, command=command):
            self._run(command, name, line, self.console)

        def show_help(self, name=name, command=command):
            self._echo(command.get_help(click.Context(command, info_name=name)))

        run.__doc__ = command.get_short_help_str(limit=80)
        setattr(FleetShell, f"do_{name}", run)
        setattr(FleetShell, f"help_{name}", show_help)


_add_ctl_commands()


@click.command("start")
@click.argument("n", type=click.IntRange(1))
@click.option("--base-port", type=click.IntRange(1, 65535), default=10000, show_default=True)
@click.option("--max-port", type=click.IntRange(1, 65535), default=60000, show_default=True)
@click.pass_obj
def start_command(shell, n, base_port, max_port):
    """Start a fleet of N ports in the background."""
    shell.start_fleet(n, base_port, max_port)


def run_shell(url: str, token: str | None) -> int:
    shell = FleetShell(url, token)
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
