"""The fleet's shared memory: per port (on each address) a state byte, a fault byte, a TLS state byte and a request counter, per
worker its event counters.

The supervisor maps it (anonymous, shared) before it forks the workers, so they inherit it: no attach,
no resource tracker. One writer per field: a port's state, fault and counter, and a worker's counters, are
written only by the worker that owns them; the supervisor only reads. A port's fault byte indexes the
supervisor's table of fault specs (0: none), so 50,000 ports with faults cost 50 KB; its TLS byte indexes
the table of certificate states (0: valid), read by the worker at each accept.
"""

import mmap

__all__ = ["ABSENT", "ALIVE", "KILLED", "FAILED", "STATE_NAMES", "STATES_BY_NAME", "DISPLAY_CODES", "FleetState"]

ABSENT, ALIVE, KILLED, FAILED = 0, 1, 2, 3  # ABSENT: not in the fleet (never started, or scaled down)
# what /stats, /endpoints and the dashboard show: the state, or for an alive port its fault's category
STATE_NAMES = {ALIVE: "alive", KILLED: "killed", FAILED: "failed", 4: "degraded", 5: "slow", 6: "flaky"}
STATES_BY_NAME = {name: state for state, name in STATE_NAMES.items()}
DISPLAY_CODES = {**STATES_BY_NAME, "absent": ABSENT}

HANDSHAKE_FAILURES = ("timeout", "reset", "plain_http", "protocol", "other")  # what tls_accept counts
WORKER_FIELDS = ("started", "killed", "revived", "handshakes",
                 *(f"handshake_failed_{reason}" for reason in HANDSHAKE_FAILURES))


class FleetState:
    """Slot ``i`` is port ``base_port + i % per_host`` on address ``hosts[i // per_host]``: --base-port..
    --max-port on each address in turn (``per_host`` ports each)."""

    def __init__(self, hosts: tuple[str, ...], base_port: int, per_host: int, max_workers: int) -> None:
        self.hosts = hosts
        self.base_port = base_port
        self.per_host = per_host
        self.slots = slots = len(hosts) * per_host
        bytes_size = (slots + 7) // 8 * 8  # keeps the counters 8-byte aligned
        counters_size = 8 * slots
        self._map = mmap.mmap(-1, 3 * bytes_size + counters_size + 8 * len(WORKER_FIELDS) * max_workers)
        view = memoryview(self._map)
        self.states = view[:slots]
        self.faults = view[bytes_size:bytes_size + slots]
        self.tls = view[2 * bytes_size:2 * bytes_size + slots]
        counters_at = 3 * bytes_size
        self.requests = view[counters_at:counters_at + counters_size].cast("Q")
        self._worker_counters = view[counters_at + counters_size:].cast("Q")

    def port(self, slot: int) -> int:
        return self.base_port + slot % self.per_host

    def host(self, slot: int) -> str:
        return self.hosts[slot // self.per_host]

    def name(self, slot: int) -> int | str:
        """How the API, the event log and the logs name the endpoint of ``slot``: its port on a fleet of one
        address, else HOST:PORT ([HOST]:PORT for IPv6)."""
        if len(self.hosts) == 1:
            return self.base_port + slot
        host = self.hosts[slot // self.per_host]
        return f"[{host}]:{self.port(slot)}" if ":" in host else f"{host}:{self.port(slot)}"

    def slot_of(self, port: int, host: str | None = None) -> int | None:
        """The slot of ``port`` on ``host`` (None: the first address), None if the fleet has no such place."""
        offset = port - self.base_port
        index = 0 if host is None else self.hosts.index(host) if host in self.hosts else -1
        return index * self.per_host + offset if index >= 0 and 0 <= offset < self.per_host else None

    def count(self, state: int, stop: int) -> int:
        """How many of the slots below ``stop`` are in ``state``."""
        return self.states[:stop].tobytes().count(state)

    def slots_in(self, state: int, start: int, stop: int) -> list[int]:
        states = self.states[start:stop].tobytes()
        return [start + i for i, value in enumerate(states) if value == state]

    def bump(self, worker: int, field: str, n: int = 1) -> None:
        self._worker_counters[worker * len(WORKER_FIELDS) + WORKER_FIELDS.index(field)] += n

    def worker_total(self, field: str) -> int:
        return sum(self._worker_counters[WORKER_FIELDS.index(field)::len(WORKER_FIELDS)])
