"""The fleet's event log: every change the API or a chaos schedule applied, in order (GET /events, the
dashboard's feed, and the truth an uptime monitor is scored against)."""

import time
from collections import deque

from fastmock.runtime import log

__all__ = ["EventLog", "EVENT_LOG_SIZE"]

EVENT_LOG_SIZE = 100000


class EventLog:
    """The last ``size`` events, each numbered (``seq``, from 1) and timed; ports are reported, not slots
    (``name``: FleetState.name, a port or HOST:PORT)."""

    def __init__(self, name, size: int = EVENT_LOG_SIZE) -> None:
        self.name = name
        self.events: deque[dict] = deque(maxlen=size)
        self.seq = 0

    def record(self, source: str, action: str, slots, **details) -> dict:
        """Append an applied change (also to the log lines of GET /logs)."""
        self.seq += 1
        ports = [self.name(slot) for slot in slots]
        event = {"seq": self.seq, "time": round(time.time(), 6), "source": source, "action": action,
                 **details, "ports": ports}
        self.events.append(event)
        shown = ", ".join(map(str, ports[:5])) + (f" and {len(ports) - 5} more" if len(ports) > 5 else "")
        extra = "".join(f" {key}={value}" for key, value in details.items())
        log(f"event {self.seq}: {source} {action}{extra}: {len(ports)} port(s) {shown}")
        return event

    def after(self, seq: int) -> list[dict]:
        """The events numbered above ``seq``, oldest first."""
        return [event for event in self.events if event["seq"] > seq]
