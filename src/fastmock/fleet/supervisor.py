"""The fleet supervisor: forks the port workers, talks to them over socketpairs, restarts one that dies.

Worker k owns slots ``k * ports_per_worker`` up to the next worker's first slot. The supervisor is the only
process that changes the fleet's size; the workers are the only writers of their ports' shared state.
"""

import asyncio
import gc
import os
import re
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass

import orjson

from fastmock.faults import fault_category, parse_fault_spec
from fastmock.fleet.state import ALIVE, DISPLAY_CODES, FleetState
from fastmock.fleet.worker import CHANNEL_LIMIT, WorkerConfig, run_worker
from fastmock.runtime import RestartBackoff, fork_child, log

__all__ = ["FleetConfig", "WorkerGone", "Supervisor", "FaultTableFull"]

MAX_PORTS_PER_WORKER = 12500
MAX_FAULT_SPECS = 255  # distinct specs: a port's fault is one byte (its TLS state too)


@dataclass(frozen=True)
class FleetConfig:
    count: int
    base_port: int = 10000
    max_port: int = 60000
    host: str = "127.0.0.1"
    hosts: tuple = ()  # the fleet's addresses (--hosts), each with --base-port..--max-port; () is (host,)
    advertise_host: str | None = None
    mgmt_port: int = 9999
    workers: int | None = None  # None: as many as the open-files limit needs
    token: str | None = None
    token_reads: bool = False   # the token guards reads too
    seed: int = 0
    reserve_ports: bool = False
    idle_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_connections: int = 262144
    chaos: object = None  # a chaos.Schedule to run from the start (--chaos FILE)
    tls: object = None    # a tls.ContextSet: every port speaks TLS, in a certificate state of its own
    max_hang_s: float = 300.0  # how long a handshake-stall port holds a connection
    peers: str | None = None   # --peers: the other pods (a DNS name or HOST:PORT,…), for fleet-wide answers
    ordinal: int = 0           # this pod's place among them (chaos draws from seed + ordinal)
    score_listen: tuple | None = None  # (host, port): receive Alertmanager's webhook and score the monitor
    score_target_label: str = "instance"  # the alert label that names the endpoint

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.hosts or (self.host,)

    @property
    def per_host(self) -> int:
        return self.max_port - self.base_port + 1

    @property
    def slots(self) -> int:
        return len(self.addresses) * self.per_host

    def where(self) -> str:
        """Where the first ``count`` ports are: "127.0.0.1 ports 10000-10999", or on several addresses
        "127.0.0.1-127.0.0.20 (20 addresses) ports 10000-59999"."""
        used = self.addresses[:-(-self.count // self.per_host)] or self.addresses[:1]
        ports = f"ports {self.base_port}-{self.base_port + min(self.count, self.per_host) - 1}"
        return f"{used[0]} {ports}" if len(used) == 1 else f"{used[0]}-{used[-1]} ({len(used)} addresses) {ports}"


def ports_per_worker(count: int, workers: int | None, open_files: int) -> int:
    """Ports per worker: a quarter of the open-files limit stays free for connections."""
    cap = max(1, min(MAX_PORTS_PER_WORKER, open_files - open_files // 4))
    if workers is None:
        return cap
    wanted = -(-count // workers)
    if wanted > cap:
        raise ValueError(f"{workers} workers would need {wanted} ports each; the open-files limit "
                         f"{open_files} allows {cap} (use at least {-(-count // cap)} workers, or 'auto')")
    return max(wanted, 1)


class WorkerGone(Exception):
    """The worker died before it answered; it is being restarted."""


class FaultTableFull(Exception):
    """Every fault index is taken by a distinct spec (or every TLS index by a distinct state)."""


class _Worker:
    """The supervisor's side of one worker: its process, its channel and the replies it owes."""

    def __init__(self, index: int, pid: int, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.pid = pid
        self.writer = writer  # None once the worker has exited
        self.replies: deque[asyncio.Future] = deque()
        self.started_at = time.monotonic()

    async def call(self, op: str, **args) -> dict:
        if self.writer is None:
            raise WorkerGone(f"worker {self.index} is restarting")
        reply = asyncio.get_running_loop().create_future()
        self.replies.append(reply)
        self.writer.write(orjson.dumps({"op": op, **args}) + b"\n")
        return await reply


class Supervisor:
    """Owns the workers; ``start`` returns once the initial ports are up."""

    def __init__(self, config: FleetConfig, open_files: int) -> None:
        self.config = config
        self.per_worker = ports_per_worker(config.count, config.workers, open_files)
        self.max_workers = -(-config.slots // self.per_worker)
        self.state = FleetState(config.addresses, config.base_port, config.per_host, self.max_workers)
        self.fault_specs: dict[int, str] = {}  # fault index (the ports' fault byte) -> spec
        self.fault_indexes: dict[str, int] = {}
        self.fault_codes = bytearray(256)  # fault index -> display code of its category (DISPLAY_CODES)
        self.tls_states: dict[int, str] = {0: "valid"}  # TLS index (the ports' TLS byte) -> certificate state
        self.tls_indexes: dict[str, int] = {"valid": 0}
        self.lock = asyncio.Lock()  # one change at a time (API and chaos): sizes and states stay consistent
        self.worker_config = WorkerConfig(config.idle_timeout_s, config.header_timeout_s,
                                          config.max_connections, config.seed, self.fault_specs, config.tls,
                                          self.tls_states, config.max_hang_s)
        self.count = 0  # slots [0, count) are in the fleet
        self.workers: dict[int, _Worker] = {}
        self.backoff = RestartBackoff()
        self.stopping = False
        self.started_at = time.time()

    # --- slots and workers --------------------------------------------------------------------------

    def worker_slots(self, index: int) -> range:
        """The slots worker ``index`` owns that are in the fleet."""
        return range(index * self.per_worker, min((index + 1) * self.per_worker, self.count))

    def by_worker(self, slots) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for slot in slots:
            groups.setdefault(slot // self.per_worker, []).append(slot)
        return groups

    def worker(self, index: int) -> _Worker:
        worker = self.workers.get(index)
        if worker is None or worker.writer is None:
            raise WorkerGone(f"worker {index} is restarting")
        return worker

    async def _spawn(self, index: int, slots: list[int], revive: bool) -> dict:
        """Fork worker ``index`` serving ``slots``; returns its first reply (what it started)."""
        parent_end, child_end = socket.socketpair()

        def child() -> int:
            _become_worker(child_end.fileno())
            return run_worker(self.worker_config, self.state, index, child_end, slots, revive)

        pid = fork_child(f"fleet worker {index}", child)
        child_end.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent_end, limit=CHANNEL_LIMIT)
        worker = _Worker(index, pid, writer)
        self.workers[index] = worker
        first = asyncio.get_running_loop().create_future()
        worker.replies.append(first)
        asyncio.ensure_future(self._read_replies(worker, reader))
        return await first

    async def _read_replies(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            reply = worker.replies.popleft()
            if not reply.done():
                reply.set_result(orjson.loads(line))
        # EOF: the worker has exited
        worker.writer.close()
        worker.writer = None
        while worker.replies:
            reply = worker.replies.popleft()
            if not reply.done():
                reply.set_exception(WorkerGone(f"worker {worker.index} exited"))
        _, status = os.waitpid(worker.pid, 0)
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
            if not self.stopping:
                await self._restart(worker, os.waitstatus_to_exitcode(status))

    async def _restart(self, worker: _Worker, code: int) -> None:
        index = worker.index
        backoff = self.backoff.after_death(index, time.monotonic() - worker.started_at)
        log(f"fleet worker {index} (pid {worker.pid}) exited with {code}; restarting in {backoff:.1f}s")
        await asyncio.sleep(backoff)
        slots = self.worker_slots(index)
        if self.stopping or index in self.workers or not slots:
            return
        alive = self.state.slots_in(ALIVE, slots.start, slots.stop)
        try:
            result = await self._spawn(index, alive, revive=False)
        except WorkerGone:
            return  # it died again; its own reader restarts it
        failed = ", ".join(f"{self.state.name(int(slot))} ({reason})"
                           for slot, reason in list(result["failed"].items())[:10])
        log(f"fleet worker {index} restarted (pid {self.workers[index].pid}): "
            f"{len(result['started'])} ports re-bound, {len(result['failed'])} failed{': ' + failed if failed else ''}")

    # --- what the API and the CLI call --------------------------------------------------------------

    def display_states(self) -> bytes:
        """Per slot in the fleet its display code: absent, alive, killed, failed or its fault's category."""
        count = self.count
        states = bytearray(self.state.states[:count])
        faults = self.state.faults[:count].tobytes()
        if faults.count(0) != count:
            codes = self.fault_codes
            for match in _NONZERO.finditer(faults):
                slot = match.start()
                if states[slot] == ALIVE:
                    states[slot] = codes[faults[slot]]
        return bytes(states)

    def fault_index(self, spec: str) -> int:
        """The index of ``spec`` in the fault table (added if new); raises FaultSpecError, FaultTableFull."""
        index = self.fault_indexes.get(spec)
        if index is None:
            parse_fault_spec(spec)
            if len(self.fault_specs) >= MAX_FAULT_SPECS:
                raise FaultTableFull(f"{MAX_FAULT_SPECS} distinct fault specs are in use")
            index = len(self.fault_specs) + 1
            self.fault_specs[index] = spec
            self.fault_indexes[spec] = index
            self.fault_codes[index] = DISPLAY_CODES[fault_category(spec)]
        return index

    async def _each_worker(self, op: str, slots, key: str, **args) -> list[int]:
        """Send ``op`` for ``slots`` to their workers at once; the slots their replies list under ``key``."""
        calls = [self.worker(index).call(op, slots=group, **args) for index, group in self.by_worker(slots).items()]
        return [slot for reply in await asyncio.gather(*calls) for slot in reply[key]]

    async def kill(self, slots) -> list[int]:
        """Kill those of ``slots`` that are alive; returns the ones killed."""
        return await self._each_worker("kill", [slot for slot in slots if self.state.states[slot] == ALIVE],
                                       "killed")

    async def revive(self, slots) -> tuple[list[int], dict[int, str]]:
        """Revive those of ``slots`` that are not alive: (revived, {slot: why it failed to bind})."""
        wanted = [slot for slot in slots if self.state.states[slot] != ALIVE]
        calls = [self.worker(index).call("start", slots=group, revive=True)
                 for index, group in self.by_worker(wanted).items()]
        return _merge_starts(await asyncio.gather(*calls))

    async def set_fault(self, slots, spec: str | None) -> list[int]:
        """Give ``slots`` the fault ``spec`` (None clears it)."""
        index = self.fault_index(spec) if spec is not None else 0
        return await self._each_worker("fault", slots, "faulted", index=index, spec=spec)

    def tls_index(self, state: str) -> int:
        """The index of certificate ``state`` (added if new); raises TlsError, FaultTableFull."""
        from fastmock.tls import parse_state  # here: cryptography loads only in a TLS fleet

        name, days = parse_state(state)
        label = f"{name}({days})" if days else name
        index = self.tls_indexes.get(label)
        if index is None:
            if len(self.tls_states) > MAX_FAULT_SPECS:
                raise FaultTableFull(f"{MAX_FAULT_SPECS} distinct TLS states are in use")
            index = len(self.tls_states)
            self.tls_states[index] = label
            self.tls_indexes[label] = index
        return index

    async def set_tls(self, slots, state: str) -> tuple[list[int], str]:
        """Put ``slots`` in the certificate ``state`` ("valid" undoes the others): (the slots, its name)."""
        index = self.tls_index(state)
        name = self.tls_states[index]
        return await self._each_worker("tls", slots, "changed", index=index, state=name), name

    async def start(self, count: int) -> dict:
        """Add ``count`` ports after the last one; returns the started and failed slots."""
        first = self.count
        self.count += count
        results = []
        for index, slots in self.by_worker(range(first, first + count)).items():
            if index in self.workers:
                results.append(self.worker(index).call("start", slots=slots))
            else:
                results.append(self._spawn(index, slots, revive=False))
        started, failed = _merge_starts(await asyncio.gather(*results))
        return {"started": started, "failed": failed}

    async def shrink(self, count: int) -> None:
        """Stop the highest ``count`` ports; workers left with none exit."""
        new_count = self.count - count
        calls = []
        for index, slots in self.by_worker(range(new_count, self.count)).items():
            worker = self.worker(index)
            if index * self.per_worker >= new_count:
                calls.append(self._stop_worker(worker, slots))
            else:
                calls.append(worker.call("stop", slots=slots))
        await asyncio.gather(*calls)
        self.count = new_count

    async def _stop_worker(self, worker: _Worker, slots: list[int]) -> None:
        await worker.call("stop", slots=slots)
        del self.workers[worker.index]  # its exit is expected: no restart
        worker.writer.write(b'{"op":"exit"}\n')

    async def stop_all(self, timeout_s: float = 5.0) -> None:
        """SIGTERM every worker and wait for them to exit (SIGKILL after ``timeout_s``)."""
        self.stopping = True
        workers = list(self.workers.values())
        for worker in workers:
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(worker.writer is not None for worker in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for worker in workers:
            if worker.writer is not None:
                _signal(worker.pid, signal.SIGKILL)


_NONZERO = re.compile(rb"[^\x00]")


def _merge_starts(replies) -> tuple[list[int], dict[int, str]]:
    """The workers' replies to "start" as one (started slots, {slot: why it failed to bind})."""
    started, failed = [], {}
    for reply in replies:
        started += reply["started"]
        failed.update({int(slot): reason for slot, reason in reply["failed"].items()})
    return started, failed


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _become_worker(keep_fd: int) -> None:
    """Turn a child forked from the supervisor's running loop into a clean process for a worker.

    Nothing inherited may be collected here (a finalizer could close an fd number reused by now), the
    supervisor's descriptors (management sockets, other workers' channels, the loop's own) are closed,
    and asyncio forgets the supervisor's running loop (Python 3.12 does that itself after fork).
    """
    gc.freeze()
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, os.sysconf("SC_OPEN_MAX"))
    asyncio.events._set_running_loop(None)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
