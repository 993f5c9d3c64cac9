"""The fleet's shared memory: per port a state byte, a fault byte, a TLS state byte and a request counter, per
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
    """Slot ``i`` is port ``base_port + i``; ``slots`` covers --base-port..--max-port."""

    def __init__(self, base_port: int, slots: int, max_workers: int) -> None:
        self.base_port = base_port
        self.slots = slots
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
