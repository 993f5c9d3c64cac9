"""A fleet port worker: one process serving a contiguous slice of the fleet's ports.

It binds raw listening sockets itself (socket/bind/listen: far quicker than create_server(host, port)
per port) and hands them to uvloop with one shared core Server; /health and /kill are answered in C
(core/fleet.pyx). The supervisor drives it over a socketpair with JSON lines, one reply per command:

    {"op": "start", "slots": [...], "revive": false}  -> {"started": [...], "failed": {"slot": "reason"}}
    {"op": "kill", "slots": [...]}                      -> {"killed": [...]}
    {"op": "stop", "slots": [...]}                      -> {"stopped": [...]}   (scaled down: ABSENT)
    {"op": "fault", "slots": [...], "index": k, "spec": "503"}  -> {"faulted": [...]}  (index 0: clear)
    {"op": "tls", "slots": [...], "index": k, "state": "expired"} -> {"changed": [...]}  (index 0: valid)
    {"op": "exit"}                                      -> the process exits

The first reply, sent unasked, is the result of starting the slots it was forked with.
"""

import asyncio
import functools
import signal
import socket

import orjson
import uvloop

from fastmock._core import PortGroup
from fastmock.faults import parse_fault_spec
from fastmock.fleet.state import ABSENT, ALIVE, FAILED, KILLED, FleetState
from fastmock.runtime import log
from fastmock.tls_accept import tls_protocol

__all__ = ["WorkerConfig", "run_worker"]

BACKLOG = 1024
BIND_ATTEMPTS = 5
BIND_RETRY_DELAY_S = 0.05  # doubling: 50, 100, 200, 400 ms between the attempts
CHANNEL_LIMIT = 16 << 20  # longest command line (a start of 12,500 slots is ~90 KB)


class WorkerConfig:
    """What a worker needs from the fleet's configuration (its copy of the fault table grows by commands)."""

    def __init__(self, idle_timeout_s: float, header_timeout_s: float, max_connections: int,
                 seed: int, fault_specs: dict[int, str], tls=None, tls_states: dict[int, str] | None = None,
                 max_hang_s: float = 300.0) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.header_timeout_s = header_timeout_s  # also the longest TLS handshake
        self.max_connections = max_connections
        self.seed = seed  # worker k draws faults from seed + k
        self.fault_specs = fault_specs  # the supervisor's table as it was at the fork
        self.tls = tls  # a tls.ContextSet: the ports speak TLS
        self.tls_states = tls_states  # the supervisor's table of TLS states, as it was at the fork
        self.max_hang_s = max_hang_s  # how long a handshake-stall port holds a connection


class PortWorker:
    def __init__(self, config: WorkerConfig, state: FleetState, index: int) -> None:
        self.config = config
        self.state = state
        self.index = index
        self.ports = {}  # slot -> FleetPort, for the slots alive here
        self.plans = {0: None}  # fault index -> FaultPlan, compiled on first use
        self.group = None
        self.stalled = set()  # the connections held by ports in the handshake-stall state

    def _plan(self, index: int):
        if index not in self.plans:
            self.plans[index] = parse_fault_spec(self.config.fault_specs[index])
        return self.plans[index]

    def _listen(self, slot: int) -> socket.socket:
        host = self.state.host(slot)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.state.port(slot)))
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self, slots: list[int], revive: bool = False) -> dict:
        """Bind and serve ``slots``; a bind that fails is retried a few times, then the slot is FAILED."""
        loop = asyncio.get_running_loop()
        states = self.state.states
        pending = [slot for slot in slots if slot not in self.ports]
        bound, errors = {}, {}
        for attempt in range(BIND_ATTEMPTS):
            retry = []
            for slot in pending:
                try:
                    bound[slot] = self._listen(slot)
                except OSError as exc:
                    errors[slot] = exc.strerror or str(exc)
                    retry.append(slot)
            pending = retry
            if not pending or attempt == BIND_ATTEMPTS - 1:
                break
            await asyncio.sleep(BIND_RETRY_DELAY_S * 2 ** attempt)
        for slot, sock in bound.items():
            port = self.group.port(self.state.port(slot), slot)
            port.plan = self._plan(self.state.faults[slot])
            factory = port if self.config.tls is None else self._tls_factory(port)
            port.listener = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
            self.ports[slot] = port
            states[slot] = ALIVE
        for slot in pending:
            states[slot] = FAILED
        self.state.bump(self.index, "revived" if revive else "started", len(bound))
        return {"started": list(bound), "failed": {str(slot): errors[slot] for slot in pending}}

    def _tls_factory(self, port):
        """The listener's factory for a TLS port: the handshake in the port's TLS state when its ClientHello
        arrives."""
        config, tls_bytes = self.config, self.state.tls

        def choose(sni):  # the port's state, whatever the name
            state = config.tls_states[tls_bytes[port.slot]]
            return state, config.tls.get(state)

        return functools.partial(tls_protocol, choose, port, handshake_timeout_s=config.header_timeout_s,
                                 stall_s=config.max_hang_s, counted=self._count_handshake, stalled=self.stalled)

    def _count_handshake(self, failure: str | None) -> None:
        self.state.bump(self.index, "handshakes" if failure is None else f"handshake_failed_{failure}")

    def _close(self, slot: int, new_state: int, keep=None) -> None:
        port = self.ports.pop(slot)
        port.listener.close()  # closes the socket now: connects are refused from here on
        self.group.close_connections(port, keep)
        for stall in [stall for stall in self.stalled if stall.port is port]:
            stall.transport.abort()
        self.state.states[slot] = new_state

    def kill(self, slots: list[int], keep=None) -> dict:
        killed = [slot for slot in slots if slot in self.ports]
        for slot in killed:
            self._close(slot, KILLED, keep)
        self.state.bump(self.index, "killed", len(killed))
        return {"killed": killed}

    def stop(self, slots: list[int]) -> dict:
        for slot in slots:
            if slot in self.ports:
                self._close(slot, ABSENT)
            else:
                self.state.states[slot] = ABSENT
            self.state.faults[slot] = 0  # a port added again later starts without a fault (and valid)
            self.state.tls[slot] = 0
        return {"stopped": slots}

    def fault(self, slots: list[int], index: int, spec: str | None) -> dict:
        """Give ``slots`` (alive or not) the fault spec ``index``; 0 clears it."""
        if index:
            self.config.fault_specs[index] = spec
        plan = self._plan(index)
        for slot in slots:
            self.state.faults[slot] = index
            if slot in self.ports:
                self.ports[slot].plan = plan
        return {"faulted": slots}

    def set_tls(self, slots: list[int], index: int, name: str) -> dict:
        """Put ``slots`` in the TLS state ``index`` (0: valid): their next handshakes use it."""
        self.config.tls.get(name)  # its certificate is made now, not in a handshake
        self.config.tls_states[index] = name
        for slot in slots:
            self.state.tls[slot] = index
        return {"changed": slots}

    def _on_kill(self, port, protocol) -> None:
        """GET /kill on a port: its answer is queued on ``protocol``, which closes once it is sent."""
        self.kill([port.slot], keep=protocol)

    async def run(self, channel: socket.socket, slots: list[int], revive: bool) -> int:
        loop = asyncio.get_running_loop()
        config = self.config
        self.group = PortGroup(loop, self.state.requests, self._on_kill, idle_timeout_s=config.idle_timeout_s,
                               header_timeout_s=config.header_timeout_s, max_connections=config.max_connections,
                               buffer_size=16384, seed=config.seed + self.index,
                               log=lambda line: log(f"worker {self.index}: {line}"))
        self.group.server.start()
        stopping = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, lambda: stopping.done() or stopping.set_result(None))
        reader, writer = await asyncio.open_unix_connection(sock=channel, limit=CHANNEL_LIMIT)
        writer.write(orjson.dumps(await self.start(slots, revive)) + b"\n")
        commands = asyncio.ensure_future(self._serve_commands(reader, writer))
        await asyncio.wait([stopping, commands], return_when=asyncio.FIRST_COMPLETED)
        for slot in list(self.ports):
            self._close(slot, self.state.states[slot])  # the state stays: a restarted worker re-binds
        self.group.server.stop()
        return 0

    async def _serve_commands(self, reader, writer) -> None:
        """Answer commands until "exit" or the supervisor goes away (EOF)."""
        while line := await reader.readline():
            command = orjson.loads(line)
            op = command["op"]
            if op == "exit":
                return
            if op == "start":
                reply = await self.start(command["slots"], command.get("revive", False))
            elif op == "kill":
                reply = self.kill(command["slots"])
            elif op == "stop":
                reply = self.stop(command["slots"])
            elif op == "fault":
                reply = self.fault(command["slots"], command["index"], command.get("spec"))
            elif op == "tls":
                reply = self.set_tls(command["slots"], command["index"], command["state"])
            else:
                reply = {"error": f"unknown op {op!r}"}
            writer.write(orjson.dumps(reply) + b"\n")


def run_worker(config: WorkerConfig, state: FleetState, index: int, channel: socket.socket,
               slots: list[int], revive: bool) -> int:
    # Ctrl-C reaches the whole process group: the supervisor alone decides, and stops us with SIGTERM
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return uvloop.run(PortWorker(config, state, index).run(channel, slots, revive))
