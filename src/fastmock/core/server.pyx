# The server: what every connection of one listener shares. Routes (matched by memcmp in C), limits,
# the counters behind /metrics (one ServerCounters struct), the read and pattern buffers, the fault rules
# and their seeded generator, and one loop-wide tick that refreshes the Date header, advances the coarse
# clock and walks the connections for their timeouts (no timer handle per connection).

cdef enum:
    SLOW_READ_SIZE = 65536      # /delay/{ms}/{read_ms} reads the body this much at a time
    STATUS_SLOTS = 500          # statuses 100..599

# Prometheus histogram bounds for fastmock_request_duration_seconds
DURATION_BOUNDS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
cdef int N_BOUNDS = len(DURATION_BOUNDS)
cdef double C_BOUNDS[13]
for _i, _bound in enumerate(DURATION_BOUNDS):
    C_BOUNDS[_i] = _bound

cdef inline int _duration_bucket(double seconds):
    """The DURATION_BOUNDS bucket of a duration (the last one: above every bound)."""
    cdef int i = 0
    while i < N_BOUNDS and seconds > C_BOUNDS[i]:
        i += 1
    return i


cdef class Route:
    """A path (exact, or a prefix) and what answers it: a static response or a Python handler.

    A route with neither is answered by the protocol itself (fleet ports, core/fleet.pyx).
    ``handler(request) -> Response`` runs once the body is in (its first ``body_limit`` bytes are kept);
    it may return an awaitable of a Response instead (a coroutine), answered when it completes.
    ``on_head(request)`` runs when the head is parsed and may return an early Response or set
    ``request.read_pause_s`` to read the body slowly. A body over ``max_body_size`` (0: no limit) is
    answered 413 and the connection closes.
    """

    def __cinit__(self, str name, bytes path=None, *, bint prefix=False, StaticResponse static=None,
                  StaticResponse static_draining=None, object handler=None, object on_head=None,
                  size_t body_limit=1 << 20, long long max_body_size=0):
        if static is not None and handler is not None:
            raise ValueError("a route has a static response or a handler, not both")
        self.name = name
        self.path = path
        self.prefix = prefix
        self.static = static
        self.static_draining = static_draining
        self.handler = handler
        self.on_head = on_head
        self.body_limit = body_limit
        self.max_body_size = max_body_size
        self.index = 0


# descriptors kept free for everything but client connections (files, the event loop, gRPC, a revived port)
cdef long long OPEN_FILES_RESERVE = 32


cdef class Server:
    """Configuration and state shared by every connection of one listener in one process."""

    def __cinit__(self, loop, list routes, Route default_route, *, size_t max_target_size=8192,
                  size_t max_header_size=65536, unsigned int max_headers=100,
                  double idle_timeout_s=10.0, double header_timeout_s=10.0, double body_timeout_s=30.0,
                  double body_min_rate=1024, long long max_connections=262144, Py_ssize_t buffer_size=256 * 1024,
                  object access_log=None, list fault_rules=None, object header_faults=None,
                  unsigned long long seed=0, double max_hang_s=300.0, RequestLog request_log=None,
                  object log=None):
        cdef Route route
        self.loop = loop
        self.routes = routes
        self.default_route = default_route
        # malformed requests are counted under a route of their own
        self.error_route = Route("protocol_error", static=StaticResponse(400, b"", b""))
        for i, route in enumerate(routes + [default_route, self.error_route]):
            route.index = i
        self.max_target_size = max_target_size
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.idle_timeout_s = idle_timeout_s
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.body_min_rate = body_min_rate
        self.tick_s = 1.0
        for timeout_s in (idle_timeout_s, header_timeout_s, body_timeout_s):
            self.bound_tick(timeout_s)
        self.max_connections = max_connections
        self.open_files_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.log = log
        self.rejected_logged = 0
        self.rejected_logged_at = 0.0
        self.write_buffer_size = buffer_size
        self.pattern = pattern_buffer(buffer_size)
        self.piece_size = len(self.pattern) - PATTERN_LEN
        self.read_buffer = bytearray(buffer_size)
        self.read_view = memoryview(self.read_buffer)
        self.slow_read_view = self.read_view[:SLOW_READ_SIZE]
        self.connections = set()
        self.draining = False
        self.access_log = access_log
        self.tick_handle = None
        # faults: --fault PREFIX=SPEC rules, X-Fastmock-Fault (header_faults(value) -> FaultPlan, ValueError
        # for a bad spec), and the generator every draw comes from (seeded: the same seed, the same sequence)
        self.fault_rules = fault_rules or None
        self.header_faults = header_faults
        self.fault_rng = Random(seed)
        self.max_hang_s = max_hang_s
        self.request_log = request_log
        cdef ServerCounters* c = &self.counters
        memset(c, 0, sizeof(ServerCounters))
        c.status_counts = <unsigned long long*>PyMem_Calloc((len(routes) + 2) * STATUS_SLOTS,
                                                            sizeof(unsigned long long))
        c.route_bytes_out = <unsigned long long*>PyMem_Calloc(len(routes) + 2, sizeof(unsigned long long))
        c.route_bytes_in = <unsigned long long*>PyMem_Calloc(len(routes) + 2, sizeof(unsigned long long))
        c.duration_counts = <unsigned long long*>PyMem_Calloc(N_BOUNDS + 1, sizeof(unsigned long long))
        if (c.status_counts == NULL or c.duration_counts == NULL or c.route_bytes_out == NULL
                or c.route_bytes_in == NULL):
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.counters.status_counts)
        PyMem_Free(self.counters.duration_counts)
        PyMem_Free(self.counters.route_bytes_out)
        PyMem_Free(self.counters.route_bytes_in)

    cdef Route match(self, const char* path, size_t length):
        cdef Route route
        cdef size_t n
        for route in self.routes:
            if route.path is None:  # chosen by a protocol, never by the path (the proxy's drop route)
                continue
            n = len(route.path)
            if route.prefix:
                if length >= n and memcmp(path, <const char*>route.path, n) == 0:
                    return route
            elif length == n and memcmp(path, <const char*>route.path, n) == 0:
                return route
        return self.default_route

    cdef FaultPlan match_fault(self, const char* path, size_t length):
        cdef bytes prefix
        for prefix, plan in self.fault_rules:
            if length >= <size_t>len(prefix) and memcmp(path, <const char*>prefix, len(prefix)) == 0:
                return plan
        return None

    cdef void count(self, Route route, int status, Py_ssize_t nbytes, double duration_s):
        self.counters.requests_total += 1
        self.counters.status_counts[route.index * STATUS_SLOTS + status - 100] += 1
        self.counters.route_bytes_out[route.index] += nbytes
        self.counters.duration_counts[_duration_bucket(duration_s)] += 1
        self.counters.duration_sum_s += duration_s

    cdef bint at_capacity(self, transport) except -1:
        """Whether a new connection must be refused: --max-connections, or nearly out of descriptors.

        Linux gives a new socket the lowest free descriptor, so one numbered near RLIMIT_NOFILE means the
        process is about to run out; refused here it is counted and logged, where at the limit itself libuv
        accepts and closes connections silently.
        """
        if <long long>len(self.connections) >= self.max_connections:
            return True
        sock = transport.get_extra_info("socket")
        return sock is not None and sock.fileno() >= self.open_files_limit - OPEN_FILES_RESERVE

    cdef void _log_rejected(self):
        """At most once a second: how many connections were refused since the last report."""
        cdef unsigned long long fresh = self.counters.connections_rejected - self.rejected_logged
        if fresh and self.log is not None and g_now - self.rejected_logged_at >= 1.0:
            self.rejected_logged = self.counters.connections_rejected
            self.rejected_logged_at = g_now
            self.log(f"refused {fresh} connection(s): {len(self.connections)} open, limits --max-connections "
                     f"{self.max_connections} and open files {self.open_files_limit}")

    def _tick(self):
        cdef ServerProtocol conn
        global g_now
        g_now = _now()
        refresh_date()
        for conn in list(self.connections):
            conn._check_timeout(g_now)
        self._log_rejected()
        self.tick_handle = self.loop.call_later(self.tick_s, self._tick)

    cdef ServerProtocol _init_protocol(self, ServerProtocol proto):
        proto.server = self
        proto.parser = RequestParser.__new__(RequestParser)
        proto.parser.max_target_size = self.max_target_size
        proto.parser.max_header_size = self.max_header_size
        proto.parser.max_headers = self.max_headers
        proto.parser.handler = proto
        proto.writer = ResponseWriter.__new__(ResponseWriter)
        proto.writer.attach(self.loop, self.pattern, self.piece_size, &self.counters.bytes_out, proto)
        return proto

    # === Public API ===

    def make_protocol(self):
        """The protocol factory for loop.create_server()."""
        return self._init_protocol(ServerProtocol.__new__(ServerProtocol))

    def start(self):
        """Start the loop-wide tick (Date header and timeouts)."""
        global g_now
        if self.tick_handle is None:
            # the coarse clock moves only with ticks, and none may have run for long (a fleet's management
            # API starts after its ports): stamped with a stale time, the first connections would look idle
            g_now = _now()
            self.tick_handle = self.loop.call_later(self.tick_s, self._tick)

    def bound_tick(self, double timeout_s):
        """The tick bounds how late a timeout fires: make it at most half of ``timeout_s`` (0: none)."""
        if timeout_s > 0:
            self.tick_s = max(0.01, min(self.tick_s, timeout_s / 2))

    def stop(self):
        if self.tick_handle is not None:
            self.tick_handle.cancel()
            self.tick_handle = None

    def drain(self):
        """Graceful shutdown: close idle connections now; the others close after their response."""
        cdef ServerProtocol conn
        self.draining = True
        for conn in list(self.connections):
            conn._drain()

    def abort_all(self):
        cdef ServerProtocol conn
        for conn in list(self.connections):
            conn.transport.abort()

    @property
    def open_connections(self):
        return len(self.connections)

    def stats(self):
        """A snapshot of the counters, for /metrics and the periodic memory line."""
        cdef ServerCounters* c = &self.counters
        cdef Route route
        cdef int status
        cdef unsigned long long n
        requests = []
        route_bytes = []
        for route in self.routes + [self.default_route, self.error_route]:
            route_bytes.append((route.name, c.route_bytes_in[route.index], c.route_bytes_out[route.index]))
            for status in range(100, 600):
                n = c.status_counts[route.index * STATUS_SLOTS + status - 100]
                if n:
                    requests.append((route.name, status, n))
        return {
            "requests_total": c.requests_total,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "connections_open": len(self.connections),
            "connections_total": c.connections_total,
            "connections_rejected": c.connections_rejected,
            "requests": requests,
            "route_bytes": route_bytes,
            "duration_counts": [c.duration_counts[i] for i in range(N_BOUNDS + 1)],
            "duration_sum_s": c.duration_sum_s,
            "faults": [(FAULT_KIND_NAMES[kind], c.fault_counts[kind]) for kind in range(<int>F_OK, <int>F_KINDS)],
        }
