"""What every process of fastmock shares: its log, listening sockets, and forking and restarting workers.

Plain Python below every mode (hp, proxy, fleet, load) and the process runner (``serve.py``), so that none
of them imports another to log a line or open a socket.
"""

import collections
import contextlib
import json
import logging
import math
import os
import resource
import signal
import socket
import stat
import sys
import tempfile

__all__ = ["log", "recent_log_lines", "url", "make_listener", "raise_open_files_limit", "fork_child",
           "RestartBackoff", "write_whole", "ready_announcer", "available_cpus", "exit_with_parent", "BACKLOG"]

BACKLOG = 4096
TCP_FASTOPEN_QUEUE = 16384


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def available_cpus(cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int:
    """The CPUs this process may use: its affinity, lowered by a cgroup CPU quota (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us``) rounded up, as Go's automaxprocs does for a container."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open(proc_cgroup) as file:
            lines = [line.rstrip("\n").split(":", 2) for line in file if line.count(":") >= 2]
    except OSError:
        return cpus
    for hierarchy, controllers, path in lines:
        if hierarchy == "0":  # v2: one unified tree
            candidates = [(os.path.join(cgroup_root, path.lstrip("/"), "cpu.max"), None)]
        elif "cpu" in controllers.split(","):
            for mount in (controllers, "cpu", "cpu,cpuacct"):
                directory = os.path.join(cgroup_root, mount, path.lstrip("/"))
                candidates = [(os.path.join(directory, "cpu.cfs_quota_us"),
                               os.path.join(directory, "cpu.cfs_period_us"))]
                if os.path.exists(candidates[0][0]):
                    break
        else:
            continue
        for quota_path, period_path in candidates:
            try:
                with open(quota_path) as file:
                    fields = file.read().split()
                if period_path is not None:
                    with open(period_path) as file:
                        fields.append(file.read().strip())
                quota, period = fields[0], fields[1]
            except (OSError, IndexError):
                continue
            if quota not in ("max", "-1") and int(period) > 0:
                cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    return cpus


def make_listener(host: str, port: int, *, listen: bool = True, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT (so workers can share the port), TCP_FASTOPEN and a big backlog.

    ``reuse_port=False`` for a port that one process must own (a second bind then fails).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, TCP_FASTOPEN_QUEUE)
        except OSError:
            pass  # the kernel may refuse TFO (sysctl net.ipv4.tcp_fastopen); it is an optimisation only
        sock.bind((host, port))
        if listen:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


# the last lines this process logged (the fleet serves them at GET /logs)
recent_log_lines: collections.deque[str] = collections.deque(maxlen=10000)


def log(message: str) -> None:
    line = f"fastmock: {message}"
    recent_log_lines.append(line)
    # one write per line, so the lines of several workers never interleave
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class _ProcessLogHandler(logging.Handler):
    """Sends the records of the "fastmock" logger (the core's: a handler that raised, with its traceback)
    to ``log``, so they reach stderr and GET /logs like every other line of the process."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log(self.format(record))
        except Exception:
            self.handleError(record)


def _set_up_logging() -> None:
    logger = logging.getLogger("fastmock")
    if not any(isinstance(handler, _ProcessLogHandler) for handler in logger.handlers):
        logger.addHandler(_ProcessLogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


_set_up_logging()


def fork_child(name: str, body) -> int:
    """Fork; the child runs ``body()`` and exits with the status it returns (1 if it raised), never returning
    into the parent's code. The parent gets the child's pid."""
    sys.stdout.flush()  # what the parent buffered must not be written twice
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = body()
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            log(f"{name} failed: {exc!r}")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    return pid


PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int) -> None:
    """In a forked worker: SIGTERM this process when its parent dies (Linux's PR_SET_PDEATHSIG), so a
    supervisor killed with SIGKILL leaves no worker behind; exits now if the parent is already gone."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the supervisor's own shutdown still stops its workers
    if os.getppid() != parent_pid:
        os._exit(1)


class RestartBackoff:
    """How long before a worker that died is started again: 0.1 s after a worker that lived ``quick_s`` or
    more; 0.2 s, doubling with each consecutive death within ``quick_s`` of its start (a crash loop), at
    most ``max_s``."""

    def __init__(self, quick_s: float = 10.0, max_s: float = 30.0) -> None:
        self.quick_s = quick_s
        self.max_s = max_s
        self.quick_deaths: dict[int, int] = {}  # worker index -> consecutive quick deaths

    def after_death(self, worker: int, lived_s: float) -> float:
        deaths = self.quick_deaths.get(worker, 0) + 1 if lived_s < self.quick_s else 0
        self.quick_deaths[worker] = deaths
        return min(self.max_s, 0.1 * 2 ** deaths)


def write_whole(path: str, write) -> None:
    """Write ``path`` whole or not at all: ``write(file)`` fills a temporary file beside it, which replaces
    ``path`` once complete (keeping an existing file's permission bits) or is removed on any failure."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".fastmock-")
    try:
        with os.fdopen(descriptor, "w", newline="") as file:
            write(file)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def ready_announcer(path):
    """Yield ``announce(info)``, which writes ``info`` as one JSON document to ``path`` (None: nowhere) when
    the process is ready. The file appears whole (written beside, then renamed) and is removed when the
    block ends, so its presence means "ready now": the channel for scripts and tests, not the log text."""
    if path is None:
        yield lambda info: None
        return
    path = os.fspath(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a file left by an earlier run must not read as this one's

    def announce(info: dict) -> None:
        write_whole(path, lambda file: file.write(json.dumps(info) + "\n"))

    try:
        yield announce
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
