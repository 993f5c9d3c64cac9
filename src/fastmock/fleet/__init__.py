"""``fastmock fleet N``: N tiny servers, one per port, over port-worker processes, with a management API.

supervisor.py forks the workers and drives them; worker.py serves a slice of the ports; state.py is the
shared memory they all see; ports.py the ephemeral-range checks. The management package (API, dashboard,
chaos, event log, --detach) sits above them; ``run_fleet`` puts the two together.
"""

import asyncio
import contextlib
import dataclasses
import os
import signal
import time

import uvloop

from fastmock import __version__
from fastmock._core import Response, Route, Server
from fastmock.documents import MAX_DOCUMENT_BYTES
from fastmock.fleet.management.api import ManagementApi
from fastmock.fleet.management.peers import Peers, parse_peers
from fastmock.fleet.ports import PortReservation, ephemeral_overlap, fix_command
from fastmock.fleet.supervisor import FleetConfig, Supervisor, ports_per_worker
from fastmock.runtime import log, make_listener, raise_open_files_limit, url

__all__ = ["FleetConfig", "ports_per_worker", "run_fleet"]

SHOWN_FAILURES = 10


def _ranges(pieces: list[tuple[int, int]]) -> str:
    return ", ".join(f"{low}-{high}" if high != low else str(low) for low, high in pieces)


def run_fleet(config: FleetConfig, pid_file=None, ready=None) -> int:
    """Serve the fleet until SIGTERM/SIGINT or POST /shutdown; return the exit status.

    ``pid_file`` holds this process's PID while it runs; ``ready(info)``, if given, is called once every
    port accepts or failed and the management API answers, with {"name", "pid", "url", "ports", "started",
    "failed"} (what --detach and --ready-file wait for). Raises OSError when
    the management port cannot be bound or --reserve-ports cannot write the sysctl.
    """
    started = time.monotonic()
    open_files = raise_open_files_limit()
    supervisor = Supervisor(config, open_files)
    mgmt_sock = make_listener(config.host, config.mgmt_port, reuse_port=False)
    config = dataclasses.replace(config, mgmt_port=mgmt_sock.getsockname()[1])  # --mgmt-port 0 picked one
    reservation = contextlib.nullcontext()
    at_risk = ephemeral_overlap(config.base_port, config.max_port if config.reserve_ports
                                else config.base_port + config.count - 1)
    if at_risk and config.reserve_ports:
        reservation = PortReservation(at_risk)
    elif at_risk:
        log(f"warning: fleet ports {_ranges(at_risk)} are in the kernel's ephemeral range: client sockets can "
            f"take them (failed binds) or self-connect to killed ones. Fix: {fix_command(at_risk)} "
            f"(or run with --reserve-ports as root)")
    with mgmt_sock, reservation, _pid_file(pid_file):
        if at_risk and config.reserve_ports:
            log(f"reserved ports {_ranges(at_risk)} (net.ipv4.ip_local_reserved_ports) until the fleet exits")
        return uvloop.run(_serve(config, supervisor, mgmt_sock, started, ready))


async def _listen_for_alerts(loop, api: ManagementApi, host: str, port: int, target_label: str) -> None:
    """--score-listen: Alertmanager's webhook on HOST:PORT feeds the fleet's running score (GET /score)."""
    from fastmock.score import RunningScore

    api.scorer = RunningScore(api.event_log, api.state, target_label)

    def receive(req):
        if req.method != "POST":
            return Response(405, b'{"error": "POST the webhook here"}', headers=[(b"Allow", b"POST")])
        ok = api.scorer.receive(req.body)
        return Response(200 if ok else 400, b"{}" if ok else b'{"error": "not an Alertmanager webhook body"}')

    receiver = Server(loop, [], Route("alerts", handler=receive, body_limit=MAX_DOCUMENT_BYTES,
                                      max_body_size=MAX_DOCUMENT_BYTES))
    await loop.create_server(receiver.make_protocol, sock=make_listener(host, port, reuse_port=False))
    receiver.start()
    log(f"scoring the monitor whose Alertmanager posts to {url(host, port)}/ (GET /score, the dashboard)")


@contextlib.contextmanager
def _pid_file(path):
    if path is None:
        yield
        return
    with open(path, "w") as file:
        file.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _serve(config: FleetConfig, supervisor: Supervisor, mgmt_sock, started: float, ready) -> int:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    result = await supervisor.start(config.count)
    advertise = config.advertise_host or ("localhost" if config.host in ("0.0.0.0", "::") else config.host)
    peers = None
    if config.peers is not None:
        name, pairs = parse_peers(config.peers, config.mgmt_port)
        peers = Peers(name, pairs, {(config.host, config.mgmt_port), (advertise, config.mgmt_port)}, __version__)
    api = ManagementApi(supervisor, config.token, config.seed, advertise, token_reads=config.token_reads,
                        ordinal=config.ordinal, peers=peers)
    server = Server(loop, api.routes, api.default_route, buffer_size=65536)
    listener = await loop.create_server(server.make_protocol, sock=mgmt_sock)
    server.start()
    if config.score_listen is not None:
        await _listen_for_alerts(loop, api, *config.score_listen, config.score_target_label)
    if config.chaos is not None:
        async with supervisor.lock:
            await api.start_schedule(config.chaos)

    base = config.base_port
    ports = f"{base}-{base + min(config.count, config.per_host) - 1}"
    failed = sorted(result["failed"].items())
    shown = ", ".join(f"{supervisor.state.name(slot)} ({reason})" for slot, reason in failed[:SHOWN_FAILURES])
    more = f" and {len(failed) - SHOWN_FAILURES} more" if len(failed) > SHOWN_FAILURES else ""
    log(f"fleet ready: {len(result['started'])} of {config.count} ports accepting in "
        f"{time.monotonic() - started:.2f}s on {config.where()}"
        f"{f' (TLS; trust {config.tls.trust})' if config.tls else ''}; "
        f"{len(failed)} failed to bind{': ' + shown + more if failed else ''}; "
        f"management API {url(config.host, config.mgmt_port)} (workers: {len(supervisor.workers)})")
    if ready is not None:
        ready({"name": "fleet", "pid": os.getpid(), "url": url(config.host, config.mgmt_port), "ports": ports,
               **({"hosts": list(config.hosts)} if config.hosts else {}),
               "started": len(result["started"]), "failed": len(failed),
               **({"tls_ca": config.tls.trust} if config.tls is not None else {})})

    reason = await asyncio.wait([stop, api.stopped], return_when=asyncio.FIRST_COMPLETED)
    reason = (stop if stop.done() else api.stopped).result()
    log(f"fleet stopping ({reason})")
    if api.chaos is not None:
        api.chaos.task.cancel()  # no reverts: every port goes away now
    listener.close()
    await asyncio.sleep(0.05)  # lets the answer to POST /shutdown go out
    server.drain()
    await supervisor.stop_all()
    server.abort_all()
    server.stop()
    log("fleet stopped")
    return 0
