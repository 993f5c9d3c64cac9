"""``fastmock fleet N --detach``: the fleet in the background, in a session of its own."""

import errno
import json
import os
import select
import signal
import ssl
import time
import urllib.request
from pathlib import Path

from fastmock.client import FleetClient, FleetError
from fastmock.fleet.supervisor import FleetConfig
from fastmock.runtime import fork_child, make_listener, url

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


def _stop(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM the fleet this call started and reap it; SIGKILL if it is still there after ``timeout_s``."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.02)


def _any_certificate() -> ssl.SSLContext:
    """For asking whether a port serves, not whom to trust: a --tls fleet's CA is its own (or the user's)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def start_detached(config: FleetConfig, pid_file: Path, log_file: Path, timeout_s: float = 120.0) -> dict:
    """Run the fleet in a child of its own session with its output in ``log_file``; return once it said it is
    ready (over a pipe, as JSON) and one /health answered: pid, url, ports, alive, failed, log, pid_file.
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
    ready_read, ready_write = os.pipe()

    def fleet() -> int:  # a new session, no terminal, output to the log
        from fastmock.fleet import run_fleet

        os.close(ready_read)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)

        def announce(info: dict) -> None:
            os.write(ready_write, json.dumps(info).encode() + b"\n")
            os.close(ready_write)

        return run_fleet(config, pid_file, ready=announce)

    pid = fork_child("fleet", fleet)
    os.close(log_fd)
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as channel:  # EOF without a line: the fleet exited before it was ready
        line = channel.readline() if select.select([channel], [], [], timeout_s)[0] else None
    if line is None:
        _stop(pid)
        raise DetachError(f"the fleet (pid {pid}) was not ready after {timeout_s:g}s and was stopped; the end "
                          f"of {log_file}:\n{_tail(log_file)}")
    if not line:
        _, status = os.waitpid(pid, 0)
        raise DetachError(f"the fleet exited with {os.waitstatus_to_exitcode(status)} before it was ready; "
                          f"the end of {log_file}:\n{_tail(log_file)}")
    mgmt_url = url(config.host, config.mgmt_port)
    client = FleetClient(mgmt_url, config.token)
    try:
        stats = client.stats()
        first = client.endpoint_urls(limit=1)
        if not first:
            raise FleetError("no port is alive")
        with urllib.request.urlopen(first[0], timeout=10, context=_any_certificate()) as response:
            response.read()
    except (FleetError, OSError) as exc:
        _stop(pid)  # a fleet that serves nothing is not left behind
        raise DetachError(f"the fleet (pid {pid}) started but does not answer: {exc}; it was stopped; the end of "
                          f"{log_file}:\n{_tail(log_file)}") from None
    ports = f"{config.base_port}-{config.base_port + min(config.count, config.per_host) - 1}"
    return {"pid": pid, "url": mgmt_url, "ports": ports if not config.hosts else config.where(),
            "alive": stats["current_alive"], "failed": stats["bind_failures"], "log": str(log_file),
            "pid_file": str(pid_file)}
