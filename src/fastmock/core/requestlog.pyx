# The request log behind /getlogs: a ring of fixed-size C records, so logging every request costs a few
# copies, not Python objects. Records become dicts only when someone reads them (or with a sink).

cdef double g_wall_offset = time.time() - _now()  # monotonic -> wall clock


def _absolute_url(str server, str target):
    """A request-target as an absolute URL: origin-form gets http://SERVER; absolute-form stays."""
    return f"http://{server}{target}" if target.startswith("/") else target


cdef class RequestLog:
    """The last ``capacity`` requests; ``sink(record_dict)``, if given, also receives each one as it is added."""

    def __cinit__(self, Py_ssize_t capacity, object sink=None):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.records = <LogRecord*>PyMem_Calloc(capacity, sizeof(LogRecord))
        if self.records == NULL:
            raise MemoryError()
        self.capacity = capacity
        self.written = 0
        self.sink = sink

    def __dealloc__(self):
        PyMem_Free(self.records)

    cdef void add(self, double started_s, double latency_s, int status, int outcome, const char* method,
                  size_t method_len, const char* path, size_t path_len, bytes client, bytes server):
        cdef LogRecord* record = &self.records[self.written % self.capacity]
        record.time_s = started_s + g_wall_offset
        record.latency_s = latency_s
        record.status = status
        record.outcome = outcome
        record.method_len = min(method_len, sizeof(record.method))
        memcpy(record.method, method, record.method_len)
        record.path_len = min(path_len, sizeof(record.path))
        memcpy(record.path, path, record.path_len)
        record.client_len = min(<size_t>len(client), sizeof(record.client))
        memcpy(record.client, <const char*>client, record.client_len)
        record.server_len = min(<size_t>len(server), sizeof(record.server))
        memcpy(record.server, <const char*>server, record.server_len)
        self.written += 1
        if self.sink is not None:
            try:
                self.sink(self._as_dict(record))
            except Exception:
                log.exception("the request log sink failed")

    cdef dict _as_dict(self, LogRecord* record):
        # the keys of every request line fastmock writes (--access-log, /getlogs, --request-log, run)
        target = record.path[:record.path_len].decode("latin-1")
        return {
            "time": round(record.time_s, 6),
            "client": record.client[:record.client_len].decode("latin-1"),
            "method": record.method[:record.method_len].decode("latin-1"),
            "url": _absolute_url(record.server[:record.server_len].decode("latin-1"), target),
            "outcome": FAULT_KIND_NAMES[record.outcome] if record.outcome != F_NONE else "ok",
            "status": record.status or None,
            "latency_ms": round(record.latency_s * 1000, 3),
        }

    # === Public API ===

    def last(self, Py_ssize_t limit):
        """The last ``limit`` records, oldest first."""
        cdef unsigned long long first
        count = min(limit, self.written, self.capacity)
        first = self.written - count
        return [self._as_dict(&self.records[(first + i) % self.capacity]) for i in range(count)]

    def __len__(self):
        return min(self.written, self.capacity)

    def append(self, str method, str path, str client, int status, *, double latency_s=0.0,
               str server="127.0.0.1:8080"):
        """One record, as a connection adds it at the end of a request (for tests and tools)."""
        m, p = method.encode("latin-1"), path.encode("latin-1")
        self.add(_now() - latency_s, latency_s, status, F_NONE, m, len(m), p, len(p), client.encode("latin-1"),
                 server.encode("latin-1"))
