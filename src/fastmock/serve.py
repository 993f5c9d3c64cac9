"""Running a server: listening sockets, one uvloop loop per process, workers, graceful shutdown.

Every mode that serves HTTP on one port goes through ``serve()``: ``make_app(worker_index)`` returns an
object whose ``build(loop, **server_options)`` makes the core's Server (with the mode's routes and
options added) and returns it with the protocol factory for the listener. With ``workers > 1`` the parent
forks that many workers, each with its own SO_REUSEPORT listener on the same port, and supervises them; a
port that anything else holds is refused first (EADDRINUSE), so only our own workers ever share it.
"""

import asyncio
import functools
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

import orjson
import uvloop

from fastmock.runtime import (BACKLOG, RestartBackoff, exit_with_parent, fork_child, log, make_listener,
                              raise_open_files_limit, ready_announcer, url)
from fastmock.tls_accept import handshakes, tls_protocol

__all__ = ["ServeConfig", "StartError", "serve"]



class StartError(Exception):
    """Something the user asked for explicitly (e.g. a gRPC port) cannot start; the message says why."""


@dataclass(frozen=True)
class ServeConfig:
    name: str = "hp"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    buffer_size: int = 1024 * 1024  # 1 MiB pieces: /bin/1G ran ~1.3x faster than with 256 KiB
    idle_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_min_rate: float = 1024.0
    max_connections: int = 262144
    shutdown_timeout_s: float = 30.0
    max_target_size: int = 8192
    max_header_size: int = 65536
    max_headers: int = 100
    access_log: bool = False
    mem_interval_s: float = 10.0
    ready_file: str | None = None  # JSON {name, pid, url, host, port, workers} here once every worker listens
    tls: object = None             # a tls.ContextSet: the port speaks TLS, the SNI name choosing the state
    tls_port: int | None = None    # with tls: the port stays plain and this one, beside it, speaks TLS
    tls_stall_s: float = 300.0     # how long a handshake-stall.fastmock.test connection is held (--max-hang)
    tls_ca: str | None = None      # the CA that clients should trust, for the ready line and file

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None and self.tls_port is None else "http"


def _tls_urls(config: ServeConfig, host: str, port: int, tls_port: int | None) -> dict:
    """What the ready file adds about TLS: the TLS port's URL (--tls-port) and the CA to trust."""
    extra = {}
    if tls_port is not None:
        extra.update(tls_url=url(host, tls_port, "https"), tls_port=tls_port)
    if config.tls_ca is not None:
        extra["tls_ca"] = config.tls_ca
    return extra


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _write_access_log(req, status: int, nbytes: int, duration_s: float) -> None:
    # the keys of /getlogs, --request-log and `fastmock run` for the same facts; the url is absolute
    target = req.target
    sys.stdout.buffer.write(orjson.dumps({
        "time": round(time.time(), 6), "client": req.client_addr, "method": req.method,
        "url": f"http://{req.server_addr}{target}" if target.startswith("/") else target,
        "status": status, "bytes": nbytes, "latency_ms": round(duration_s * 1000, 3),
    }) + b"\n")
    sys.stdout.buffer.flush()


class _MemoryReporter:
    """The --mem-interval line: RSS, open connections, requests and bytes (total and since last line)."""

    def __init__(self, server, worker: int) -> None:
        self.server = server
        self.worker = worker
        self.last = server.stats()

    def report(self) -> None:
        stats = self.server.stats()
        rss_mib = _rss_bytes() / 1048576
        delta = {key: stats[key] - self.last[key] for key in ("requests_total", "bytes_in", "bytes_out")}
        self.last = stats
        log(f"worker {self.worker}: rss={rss_mib:.1f}MiB connections={stats['connections_open']} "
             f"requests={stats['requests_total']} (+{delta['requests_total']}) "
             f"bytes_in={stats['bytes_in']} (+{delta['bytes_in']}) "
             f"bytes_out={stats['bytes_out']} (+{delta['bytes_out']})")


def _ready_info(config: ServeConfig, host: str, port: int, tls_port: int | None) -> dict:
    return {"name": config.name, "pid": os.getpid(), "url": url(host, port, config.scheme), "host": host, "port": port,
            "workers": config.workers, **_tls_urls(config, host, port, tls_port)}


async def _run_worker(config: ServeConfig, make_app, worker: int, sock: socket.socket, tls_sock, listening) -> int:
    """Serve on ``sock`` (and TLS on ``tls_sock``, if not None) until a signal; ``listening(host, port)`` is
    called once it accepts."""
    loop = asyncio.get_running_loop()
    app = make_app(worker)
    server, protocol_factory = app.build(
        loop, max_target_size=config.max_target_size, max_header_size=config.max_header_size,
        max_headers=config.max_headers, idle_timeout_s=config.idle_timeout_s,
        header_timeout_s=config.header_timeout_s, body_timeout_s=config.body_timeout_s,
        body_min_rate=config.body_min_rate, max_connections=config.max_connections, buffer_size=config.buffer_size,
        log=lambda line: log(f"worker {worker}: {line}"), access_log=_write_access_log if config.access_log else None,
    )
    plain_factory = protocol_factory
    if config.tls is not None:
        protocol_factory = functools.partial(tls_protocol, config.tls.choose, plain_factory,
                                             handshake_timeout_s=config.header_timeout_s, counted=handshakes,
                                             stall_s=config.tls_stall_s)
    if tls_sock is None:
        listeners = [await loop.create_server(protocol_factory, sock=sock, backlog=BACKLOG)]
    else:  # --tls-port: the main port stays plain
        listeners = [await loop.create_server(plain_factory, sock=sock, backlog=BACKLOG),
                     await loop.create_server(protocol_factory, sock=tls_sock, backlog=BACKLOG)]
    server.start()

    stopping = loop.create_future()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log(f"worker {worker}: second signal, exiting now")
            os._exit(1)
        if not stopping.done():
            stopping.set_result(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    host, port = sock.getsockname()[:2]
    tls_url = f" and {url(host, tls_sock.getsockname()[1], 'https')}" if tls_sock is not None else ""
    trust = f"; trust {config.tls_ca}" if config.tls_ca else ""
    # the ready line comes after the handlers: a SIGTERM sent on seeing it is a graceful stop
    log(f"{config.name} worker {worker} (pid {os.getpid()}) listening on {url(host, port, config.scheme)}{tls_url} "
        f"(workers: {config.workers}{trust})")
    listening(host, port)

    reporter = _MemoryReporter(server, worker) if config.mem_interval_s > 0 else None
    while not stopping.done():
        await asyncio.wait([stopping], timeout=config.mem_interval_s if reporter else None)
        if reporter and not stopping.done():
            reporter.report()

    # graceful shutdown: stop accepting, close idle connections, let in-flight responses finish
    for listener in listeners:
        listener.close()
    server.drain()
    # an app may run more beside the HTTP server (hp's gRPC service): its drain returns an Event or None
    side_stopped = app.drain(config.shutdown_timeout_s) if hasattr(app, "drain") else None
    await asyncio.sleep(0)  # let the idle connections just closed go
    log(f"worker {worker}: draining {server.open_connections} connection(s), "
         f"up to {config.shutdown_timeout_s:g}s")
    deadline = loop.time() + config.shutdown_timeout_s
    while (server.open_connections or (side_stopped and not side_stopped.is_set())) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if server.open_connections:
        log(f"worker {worker}: shutdown timeout, aborting {server.open_connections} connection(s)")
        server.abort_all()
        await asyncio.sleep(0)
    server.stop()
    return 0


def _worker_main(config: ServeConfig, make_app, worker: int, sock: socket.socket, tls_sock, listening) -> int:
    return uvloop.run(_run_worker(config, make_app, worker, sock, tls_sock, listening))


def serve(config: ServeConfig, make_app) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status."""
    raise_open_files_limit()
    with ready_announcer(config.ready_file) as announce:
        if config.workers == 1:
            # without SO_REUSEPORT: no other program can share the port and take some of its connections
            sock = make_listener(config.host, config.port, reuse_port=False)
            tls_sock = None if config.tls_port is None else make_listener(config.host, config.tls_port,
                                                                          reuse_port=False)
            tls_port = None if tls_sock is None else tls_sock.getsockname()[1]
            return _worker_main(config, make_app, 0, sock, tls_sock,
                                lambda host, port: announce(_ready_info(config, host, port, tls_port)))
        return _Supervisor(config, make_app, announce).run()


class _Supervisor:
    """The parent of several workers: restarts one that dies (with backoff) and forwards signals.

    Each worker writes its index to a pipe once it listens; when all have, the supervisor ``announce``s.
    """

    def __init__(self, config: ServeConfig, make_app, announce) -> None:
        self.config = config
        self.make_app = make_app
        self.announce = announce
        self.ready_read, self.ready_write = os.pipe()
        os.set_blocking(self.ready_read, False)
        self.listening: set[int] | None = set()  # the workers that listen so far; None once all have
        # a probe bind without SO_REUSEPORT fails if anything holds the port, even a SO_REUSEPORT listener that
        # ours would join; then the placeholder, bound but never listening, fixes the port (port 0 included)
        # for the workers' own listeners
        make_listener(config.host, config.port, listen=False, reuse_port=False).close()
        self.placeholder = make_listener(config.host, config.port, listen=False)
        self.port = self.placeholder.getsockname()[1]
        self.tls_placeholder = self.tls_port = None
        if config.tls_port is not None:
            make_listener(config.host, config.tls_port, listen=False, reuse_port=False).close()
            self.tls_placeholder = make_listener(config.host, config.tls_port, listen=False)
            self.tls_port = self.tls_placeholder.getsockname()[1]
        self.pids: dict[int, int] = {}          # pid -> worker index
        self.backoff = RestartBackoff()
        self.started_at: dict[int, float] = {}  # worker index -> start time
        self.pending: dict[int, float] = {}     # worker index -> when to restart it

    def _spawn(self, worker: int) -> None:
        supervisor = os.getpid()

        def child() -> int:
            exit_with_parent(supervisor)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            self.placeholder.close()
            tls_sock = None
            if self.tls_placeholder is not None:
                self.tls_placeholder.close()
                tls_sock = make_listener(self.config.host, self.tls_port)
            os.close(self.ready_read)
            return _worker_main(self.config, self.make_app, worker, make_listener(self.config.host, self.port),
                                tls_sock, lambda host, port: os.write(self.ready_write, b"%d\n" % worker))

        pid = fork_child(f"worker {worker}", child)
        self.pids[pid] = worker
        self.started_at[worker] = time.monotonic()

    def _reap(self, stopping: bool) -> None:
        while self.pids:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            worker = self.pids.pop(pid, None)
            if worker is None or stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            backoff = self.backoff.after_death(worker, time.monotonic() - self.started_at[worker])
            log(f"worker {worker} (pid {pid}) exited with {code}; restarting in {backoff:.1f}s")
            self.pending[worker] = time.monotonic() + backoff

    def _read_ready(self) -> None:
        try:
            data = os.read(self.ready_read, 65536)
        except BlockingIOError:
            return
        if self.listening is None:
            return  # a restarted worker: the process was announced already
        self.listening.update(int(index) for index in data.split())
        if len(self.listening) == self.config.workers:
            self.listening = None
            log(f"{self.config.name} supervisor: all {self.config.workers} workers listening")
            self.announce(_ready_info(self.config, self.config.host, self.port, self.tls_port))

    def _signal_all(self, signum: int) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        watched = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        log(f"{self.config.name} supervisor (pid {os.getpid()}) starting {self.config.workers} workers "
             f"on {url(self.config.host, self.port, self.config.scheme)}")
        for worker in range(self.config.workers):
            self._spawn(worker)
        stopping = False
        while self.pids or (self.pending and not stopping):
            now = time.monotonic()
            for worker, when in list(self.pending.items()):
                if when <= now and not stopping:
                    del self.pending[worker]
                    self._spawn(worker)
            # until every worker listens, the ready pipe is looked at often
            timeout = min([when - now for when in self.pending.values()] + [1.0 if self.listening is None else 0.01])
            info = signal.sigtimedwait(watched, max(timeout, 0.01))
            self._read_ready()
            if info is None:
                continue
            if info.si_signo == signal.SIGCHLD:
                self._reap(stopping)
            elif not stopping:
                stopping = True
                self.pending.clear()
                log("supervisor: shutting down workers")
                self._signal_all(info.si_signo)
            else:
                log("supervisor: second signal, stopping workers now")
                self._signal_all(info.si_signo)
                return 1
        self.placeholder.close()
        if self.tls_placeholder is not None:
            self.tls_placeholder.close()
        os.close(self.ready_read)
        os.close(self.ready_write)
        return 0
