"""``fastmock fleet N --detach``: the fleet in the background, in a session of its own."""

import errno
import os
import sys
import time
import urllib.request
from pathlib import Path

from fastmock.client import FleetClient, FleetError
from fastmock.fleet.supervisor import FleetConfig
from fastmock.runtime import make_listener, url

__all__ = ["DetachError", "default_paths", "start_detached", "state_dir"]

LOG_TAIL_LINES = 20


class DetachError(Exception):
    """The fleet did not come up; ``str()`` says why (with the log's tail)."""


def state_dir() -> Path:
    """Where fastmock keeps PID files, logs and shell history ($XDG_STATE_HOME/fastmock)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "fastmock"


def default_paths(mgmt_port: int) -> tuple[Path, Path]:
    """(PID file, log file) of the fleet managed on ``mgmt_port``."""
    return state_dir() / f"fleet-{mgmt_port}.pid", state_dir() / f"fleet-{mgmt_port}.log"


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(f"  | {line}" for line in lines)


def start_detached(config: FleetConfig, pid_file: Path, log_file: Path, run_fleet, timeout_s: float = 120.0) -> dict:
    """Fork ``run_fleet(config, pid_file)`` into its own session with its output in ``log_file``; return
    once every port accepts (or failed) and one /health answered: pid, url, ports, alive, failed, log, pid_file.
    """
    try:  # a clear message now rather than the child's log tail
        make_listener(config.host, config.mgmt_port, listen=False, reuse_port=False).close()
    except OSError as exc:
        hint = (f": is a fleet already running there? Try: fastmock ctl --url {url(config.host, config.mgmt_port)} "
                f"status" if exc.errno == errno.EADDRINUSE else "")
        raise DetachError(f"cannot use management port {config.mgmt_port} on {config.host} "
                          f"({exc.strerror}){hint}") from None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the fleet: a new session, no terminal, output to the log
        status = 1
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(null)
            os.close(log_fd)
            status = run_fleet(config, pid_file)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            sys.stderr.write(f"fastmock: fleet failed: {exc!r}\n")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(log_fd)
    deadline = time.monotonic() + timeout_s
    while b"fleet ready" not in log_file.read_bytes():
        exited, status = os.waitpid(pid, os.WNOHANG)
        if exited:
            raise DetachError(f"the fleet exited with {os.waitstatus_to_exitcode(status)} before it was ready; "
                              f"the end of {log_file}:\n{_tail(log_file)}")
        if time.monotonic() > deadline:
            raise DetachError(f"the fleet (pid {pid}) was not ready after {timeout_s:g}s; the end of "
                              f"{log_file}:\n{_tail(log_file)}")
        time.sleep(0.05)
    mgmt_url = url(config.host, config.mgmt_port)
    client = FleetClient(mgmt_url, config.token)
    try:
        stats = client.stats()
        first = client.endpoint_urls(limit=1)
        if not first:
            raise FleetError("no port is alive")
        with urllib.request.urlopen(first[0], timeout=10) as response:
            response.read()
    except (FleetError, OSError) as exc:
        raise DetachError(f"the fleet (pid {pid}) started but does not answer: {exc}; the end of "
                          f"{log_file}:\n{_tail(log_file)}") from None
    return {"pid": pid, "url": mgmt_url, "ports": f"{config.base_port}-{config.base_port + config.count - 1}",
            "alive": stats["current_alive"], "failed": stats["bind_failures"], "log": str(log_file),
            "pid_file": str(pid_file)}
