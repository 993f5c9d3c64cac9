# The server protocol: connects the parser and the writer to uvloop.
#
# uvloop reads into one loop-wide buffer (BufferedProtocol: no bytes object per read), the parser calls
# back for each request, responses are appended to a per-connection list, and the whole batch goes out
# in one transport.write at the end of buffer_updated. Built-in static routes make no Python call per
# request. Timeouts use one loop-wide tick that also refreshes the Date header.

cdef enum:
    SLOW_READ_SIZE = 65536      # /delay/{ms}/{read_ms} reads the body this much at a time
    STATUS_SLOTS = 500          # statuses 100..599

cdef double DRIP_INTERVAL_S = 0.05  # a dripping response writes rate/20 bytes this often
cdef bytes FAULT_HEADER = b"x-fastmock-fault"
cdef bytes LINGER_RESET = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0

# Prometheus histogram bounds for fastmock_request_duration_seconds
DURATION_BOUNDS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
cdef int N_BOUNDS = len(DURATION_BOUNDS)
cdef double C_BOUNDS[13]
for _i, _bound in enumerate(DURATION_BOUNDS):
    C_BOUNDS[_i] = _bound

cdef object log = logging.getLogger("fastmock")
cdef bytes INTERNAL_ERROR = b'{"error":"internal server error"}'


cdef inline double _now():
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

def _call_later_at_least(loop, double delay_s, callback, *args):
    """``loop.call_later`` that never fires before ``delay_s`` has passed on the real clock.

    uvloop's clock is whole milliseconds, read at the start of the loop's iteration, so a plain
    call_later(0.05) may fire after 49 ms; a promised delay (/delay, a fault's delay, the proxy's
    --delay-ms) adds that lag and rounds up to the millisecond.
    """
    return loop.call_later(ceil((delay_s + _now() - loop.time()) * 1000) / 1000, callback, *args)


# The loop-wide coarse clock, advanced by each Server tick: per-read activity stamps use it because
# clock_gettime costs ~7% of a pipelined /health run on this VM (no vDSO-fast TSC).
cdef double g_now = _now()


cdef inline int _duration_bucket(double seconds):
    """The DURATION_BOUNDS bucket of a duration (the last one: above every bound)."""
    cdef int i = 0
    while i < N_BOUNDS and seconds > C_BOUNDS[i]:
        i += 1
    return i


cdef inline object _cancel(object handle):
    """Cancel a pending timer or task, if any; returns None to store in its place."""
    if handle is not None:
        handle.cancel()
    return None


cdef str _header_value(RequestParser parser, bytes lower_name):
    """The value of the first header named ``lower_name`` in the head being parsed, or None."""
    cdef unsigned int i
    cdef size_t n = len(lower_name)
    for i in range(parser.header_count):
        if g_headers[i].name_len == n and strncasecmp(parser.head + g_headers[i].name_start, lower_name, n) == 0:
            return _value_of(parser, i).decode("latin-1")
    return None


cdef str _format_addr(object addr):
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(addr)


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
        # faults: --fault PREFIX=SPEC rules, X-Fastmock-Fault (header_faults(value) -> FaultPlan or an error
        # Response), and the generator every draw comes from (seeded: the same seed, the same sequence)
        self.fault_rules = fault_rules or None
        self.header_faults = header_faults
        self.fault_rng = Random(seed)
        self.max_hang_s = max_hang_s
        self.request_log = request_log
        memset(self.fault_counts, 0, sizeof(self.fault_counts))
        self.requests_total = self.bytes_in = self.bytes_out = 0
        self.connections_total = self.connections_rejected = 0
        self.status_counts = <unsigned long long*>PyMem_Calloc((len(routes) + 2) * STATUS_SLOTS,
                                                               sizeof(unsigned long long))
        self.route_bytes_out = <unsigned long long*>PyMem_Calloc(len(routes) + 2, sizeof(unsigned long long))
        self.route_bytes_in = <unsigned long long*>PyMem_Calloc(len(routes) + 2, sizeof(unsigned long long))
        self.duration_counts = <unsigned long long*>PyMem_Calloc(N_BOUNDS + 1, sizeof(unsigned long long))
        if (self.status_counts == NULL or self.duration_counts == NULL or self.route_bytes_out == NULL
                or self.route_bytes_in == NULL):
            raise MemoryError()
        self.duration_sum_s = 0.0

    def __dealloc__(self):
        PyMem_Free(self.status_counts)
        PyMem_Free(self.duration_counts)
        PyMem_Free(self.route_bytes_out)
        PyMem_Free(self.route_bytes_in)

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
        self.requests_total += 1
        self.status_counts[route.index * STATUS_SLOTS + status - 100] += 1
        self.route_bytes_out[route.index] += nbytes
        self.duration_counts[_duration_bucket(duration_s)] += 1
        self.duration_sum_s += duration_s

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
        cdef unsigned long long fresh = self.connections_rejected - self.rejected_logged
        if fresh and self.log is not None and g_now - self.rejected_logged_at >= 1.0:
            self.rejected_logged = self.connections_rejected
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
        proto.out = []
        return proto

    # === Public API ===

    def make_protocol(self):
        """The protocol factory for loop.create_server()."""
        return self._init_protocol(ServerProtocol.__new__(ServerProtocol))

    def start(self):
        """Start the loop-wide tick (Date header and timeouts)."""
        if self.tick_handle is None:
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
        cdef Route route
        cdef int status
        cdef unsigned long long n
        requests = []
        route_bytes = []
        for route in self.routes + [self.default_route, self.error_route]:
            route_bytes.append((route.name, self.route_bytes_in[route.index], self.route_bytes_out[route.index]))
            for status in range(100, 600):
                n = self.status_counts[route.index * STATUS_SLOTS + status - 100]
                if n:
                    requests.append((route.name, status, n))
        return {
            "requests_total": self.requests_total,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "connections_open": len(self.connections),
            "connections_total": self.connections_total,
            "connections_rejected": self.connections_rejected,
            "requests": requests,
            "route_bytes": route_bytes,
            "duration_counts": [self.duration_counts[i] for i in range(N_BOUNDS + 1)],
            "duration_sum_s": self.duration_sum_s,
            "faults": [(FAULT_KIND_NAMES[kind], self.fault_counts[kind]) for kind in range(<int>F_OK, <int>F_KINDS)],
        }


cdef class ServerProtocol(ParserHandler):
    """One connection; see the module comment."""

    def __init__(self):
        raise TypeError("ServerProtocol is not supposed to be instantiated from Python")

    cdef int _conn_mode(self):
        if not self.keep_alive or self.closing or self.server.draining:
            return CONN_CLOSE
        return CONN_KEEP_ALIVE if self.parser.http_minor == 0 else CONN_DEFAULT

    cdef int _on_head(self, RequestParser parser) except -1:
        cdef Server server = self.server
        cdef Request req
        cdef const char* path = parser.head + parser.path_start
        cdef size_t path_len = parser.path_len
        if path_len == 0:
            path, path_len = b"/", 1
        self.route = server.match(path, path_len)
        self.keep_alive = parser.keep_alive
        self.head_only = parser.method_id == M_HEAD
        self.body_size = 0
        self.request = None
        self.body = None
        self.fault = NULL
        if server.request_log is not None:
            self.logged_start = g_now
            self.log_method_len = min(parser.method_len, sizeof(self.log_method))
            memcpy(self.log_method, parser.head, self.log_method_len)
            self.log_path_len = min(parser.target_len, sizeof(self.log_path))
            memcpy(self.log_path, parser.head + parser.target_start, self.log_path_len)
        plan = None
        if server.header_faults is not None:
            value = _header_value(parser, FAULT_HEADER)
            if value is not None:
                plan = server.header_faults(value)
                if isinstance(plan, Response):  # a spec that does not parse
                    return self._answer_early(<Response>plan)
        if plan is None and server.fault_rules is not None:
            plan = server.match_fault(path, path_len)
        if self.route.handler is not None or server.access_log is not None:
            self.started = _now()
            req = parser.make_request()
            req.started_s = self.started
            self.request = req
            if self.route.handler is not None:
                self.body = bytearray()
            if self.route.on_head is not None:
                self._set_addresses(req)
                try:
                    early = self.route.on_head(req)
                except Exception:
                    log.exception("route %s failed on the request head", self.route.name)
                    early = Response(500, INTERNAL_ERROR)
                if early is not None:
                    return self._answer_early(<Response?>early)
                self.read_pause_s = req.read_pause_s
                if plan is None:
                    plan = req.fault_plan
        if plan is not None:
            self._draw_fault(<FaultPlan?>plan)
        self.body_started = g_now
        # RFC 9110 §10.1.1: send 100 (Continue) before reading the body the client is holding back
        if parser.expect_continue and parser.in_body() and parser.http_minor == 1:
            self.out.append(CONTINUE_100)
        return 0

    cdef bint _draw_fault(self, FaultPlan plan) except -1:
        """Draw this request's outcome from ``plan`` and count it; whether there is a fault to apply."""
        self.fault_plan = plan  # keeps the drawn outcome alive
        self.fault = plan.draw(self.server.fault_rng, &self.fault_delay_s)
        self.server.fault_counts[self.fault.kind] += 1
        if self.fault.kind == F_OK and self.fault_delay_s <= 0:
            self.fault = NULL  # the route's own answer, at once: nothing to do
        return self.fault != NULL

    cdef int _answer_early(self, Response response) except -1:
        """Answer from the head, before the body (if any) is read."""
        if self.parser.in_body():
            self.keep_alive = False  # the body stays unread: close after answering
        self.fault = NULL
        self._respond(response)
        return 1 if self.closing else 0

    cdef int _on_body(self, const char* data, size_t length) except -1:
        cdef Py_ssize_t kept, take
        self.body_size += length
        if self.route is not None:  # None once answered early: the rest of the body is unread noise
            self.server.route_bytes_in[self.route.index] += length
            if self.route.max_body_size and self.body_size > self.route.max_body_size:
                raise RemoteProtocolError(f"request body larger than {self.route.max_body_size} bytes", 413)
        if self.body is not None:
            kept = len(self.body)
            take = min(<Py_ssize_t>length, <Py_ssize_t>self.route.body_limit - kept)
            if take > 0:
                PyByteArray_Resize(self.body, kept + take)
                memcpy(PyByteArray_AS_STRING(self.body) + kept, data, take)
        if self.read_pause_s > 0:
            self.read_since_pause += length
            if self.read_since_pause >= SLOW_READ_SIZE and self.resume_handle is None:
                self.read_since_pause = 0
                self.transport.pause_reading()
                self.resume_handle = self.server.loop.call_later(self.read_pause_s, self._resume_reading)
        return 0

    cdef int _on_message_complete(self) except -1:
        if self.route is None:  # answered early, from the head
            return 1 if self.closing else 0
        self.read_pause_s = 0
        return self._answer()

    cdef int _answer(self) except -1:
        cdef Route route = self.route
        cdef StaticResponse static
        cdef int conn
        if self.fault != NULL:
            return self._answer_fault()
        if route.static is not None:
            static = self._static(route)
            conn = self._conn_mode()
            data = static.get(conn, self.head_only)
            self.out.append(data)
            self._done(static.status, len(data), 0.0)
            if conn == CONN_CLOSE:
                self.closing = True
                return 1
            return 0
        response = self._call_handler()
        if not isinstance(response, Response):
            # an awaitable (a handler that waits for something else): answer when it is done
            self.phase = 1
            self.delay_handle = asyncio.ensure_future(response, loop=self.server.loop)
            self.delay_handle.add_done_callback(self._finish_awaited)
            return 1
        if (<Response>response).delay_s > 0:
            return self._respond_later(response)
        self._respond(response)
        return 1 if self.closing or self.phase else 0

    cdef StaticResponse _static(self, Route route):
        """The route's static response as it stands (its draining variant during a graceful shutdown)."""
        return route.static_draining if self.server.draining and route.static_draining else route.static

    cdef int _respond_later(self, Response response) except -1:
        """The response asks for a delay: the parser waits until _finish_delayed sends it."""
        self.phase = 1
        self.delay_handle = _call_later_at_least(self.server.loop, response.delay_s, self._finish_delayed, response)
        return 1

    cdef object _call_handler(self):
        """The route handler's answer to the request whose body is in: a Response, or an awaitable."""
        cdef Request req = self.request
        req.body = bytes(self.body)
        req.body_size = self.body_size
        req.body_truncated = self.body_size > <unsigned long long>len(req.body)
        self.body = None
        self._set_addresses(req)
        try:
            return self.route.handler(req)
        except Exception:
            log.exception("route %s failed", self.route.name)
            return Response(500, INTERNAL_ERROR)

    cdef int _answer_fault(self) except -1:
        """The request drew a fault: wait its delay, then apply it."""
        if self.fault_delay_s > 0:
            self.phase = 1
            self.delay_handle = _call_later_at_least(self.server.loop, min(self.fault_delay_s, self.server.max_hang_s),
                                                     self._fault_after_delay)
            return 1
        self._apply_fault()
        return 1 if self.closing or self.phase else 0

    cdef int _apply_fault(self) except -1:
        cdef int kind = self.fault.kind
        cdef Route route = self.route
        cdef StaticResponse static
        cdef double hold_s
        if kind == F_TIMEOUT or kind == F_RESET or kind == F_CLOSE or kind == F_GARBAGE:
            # no response: the connection ends (after what was already answered on it)
            if self.server.request_log is not None:
                self._log_request(0, kind)
            self.closing = True
            self.route = None
            self.request = None
            if kind == F_GARBAGE:
                self.out.append(self._garbage())
            elif kind == F_RESET:
                self.resetting = True
            elif kind == F_TIMEOUT:
                # hold: nothing is sent until the client leaves, the timeout's own duration or --max-hang
                hold_s = self.fault.arg if 0 < self.fault.arg < self.server.max_hang_s else self.server.max_hang_s
                self.phase = 1
                self.delay_handle = _call_later_at_least(self.server.loop, hold_s, self._end_hold)
            self.fault = NULL
            return 0
        if route.static is not None:
            static = self._static(route)
            response = Response(static.status, static.body, static.content_type, static.extra_headers)
        else:
            response = self._call_handler()
            if not isinstance(response, Response):
                log.error("route %s: faults apply to plain handlers only", route.name)
                response.close()  # the coroutine that will never run
                response = Response(500, INTERNAL_ERROR)
        if kind == F_STATUS:
            (<Response>response).status = self.fault.status
        if (<Response>response).delay_s > 0:  # the route's own delay comes after the fault's
            self._respond_later(response)
            return 0
        return self._respond(response)

    cdef bytes _garbage(self):
        """64 to 1024 random bytes that cannot be taken for a status line."""
        cdef Random rng = self.server.fault_rng
        cdef Py_ssize_t n = 64 + <Py_ssize_t>(rng.next_u64() % 961), i
        cdef bytearray data = bytearray(n)
        for i in range(n):
            data[i] = rng.next_u64() & 0xFF
        if data[0] == 72:  # "H", as in "HTTP/1.1"
            data[0] = 0
        return bytes(data)

    cdef int _hand_over_leftovers(self) except -1:
        """Bytes the HTTP parser holds after the upgrade request are the first WebSocket frames.

        Only once the parser has returned: inside its callbacks it is still walking its buffer.
        """
        data = self.parser.take_buffered()
        if self.backlog_paused:
            self.backlog_paused = False
            self.transport.resume_reading()
        if data:
            self.ws.feed(self, data, len(data))
        return 0

    cdef Py_ssize_t _drip_piece(self):
        return max(1, <Py_ssize_t>(self.drip_rate * DRIP_INTERVAL_S))

    cdef int _respond(self, Response response) except -1:
        cdef int conn = self._conn_mode()
        cdef PatternStream stream = response.stream
        cdef int kind = self.fault.kind if self.fault != NULL else F_NONE
        cdef Py_ssize_t body_len
        events = response.events is not None and not self.head_only and _has_body(response.status)
        if events and self.parser.http_minor == 0:
            self.closing = True  # an HTTP/1.0 client reads the events to the close
            conn = CONN_CLOSE
        data = _render(response.status, response.body, response.content_type, response.headers, conn,
                       self.head_only, stream,
                       FRAMING_AUTO if not events else FRAMING_CHUNKED if self.parser.http_minor else FRAMING_CLOSE)
        streaming = stream is not None and not self.head_only and _has_body(response.status)
        if events:
            self.events = response.events
            self.events_chunked = self.parser.http_minor == 1
            self.phase = 1
            self.event_handle = self.server.loop.call_soon(self._next_event)
        if kind == F_TRUNCATE:  # the head announces the whole body; half of it comes, then the close
            self.closing = True
            if streaming:
                stream.remaining //= 2
                self.truncating = True
            elif _has_body(response.status) and not self.head_only:
                body_len = len(response.body)
                data = data[:len(data) - body_len + body_len // 2]
        if streaming:
            # the body follows from _pump, under flow control; the parser waits until it is sent
            self.stream = stream
            self.stream_route = self.route
            self.phase = 1
        if response.websocket is not None and response.status == 101:
            # the connection speaks WebSocket from here on; bytes that came after the handshake are frames
            self.out.append(data)
            self._done(101, len(data), _now() - self.started)
            self.ws = <WebSocket?>response.websocket
            self.phase = 2  # no HTTP timeouts, no more requests; the parser stops here
            return self._flush()
        if kind == F_DRIP:
            self.drip_rate = self.fault.arg
            self.drip_data = data
            self.drip_pos = 0
            self.phase = 1
            self.delay_handle = self.server.loop.call_soon(self._drip)
        else:
            self.out.append(data)
        self._done(response.status, len(data), _now() - self.started)
        if conn == CONN_CLOSE:
            self.closing = True
        return 0

    cdef void _done(self, int status, Py_ssize_t nbytes, double duration_s):
        if self.server.request_log is not None:
            self._log_request(status, self.fault.kind if self.fault != NULL else F_NONE)
        self.fault = NULL
        self.server.count(self.route, status, nbytes, duration_s)
        if self.server.access_log is not None and self.request is not None:
            self._set_addresses(self.request)
            self.server.access_log(self.request, status, nbytes, duration_s)
        self.route = None
        self.request = None

    cdef void _log_request(self, int status, int outcome):
        cdef double started = self.started if self.request is not None else self.logged_start
        if self.client_text is None:
            self.client_text = _format_addr(self.transport.get_extra_info("peername")).encode()
        self.server.request_log.add(started, _now() - started if self.request is not None else 0.0, status,
                                    outcome, self.log_method, self.log_method_len, self.log_path,
                                    self.log_path_len, self.client_text)
        self.log_method_len = self.log_path_len = 0  # a protocol error next logs no stale method or path

    cdef void _set_addresses(self, Request req):
        if req.client_addr is None:
            req.client_addr = _format_addr(self.transport.get_extra_info("peername"))
            req.server_addr = _format_addr(self.transport.get_extra_info("sockname"))

    cdef int _flush(self) except -1:
        cdef list out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.server.bytes_out += len(data)
            self.transport.write(data)
        if self.stream is not None and self.drip_data is None:  # a dripping head goes first
            self._pump()
        if self.closing and self.phase == 0 and self.transport is not None:
            if self.resetting:  # SO_LINGER 0: close() sends RST, not FIN
                self.transport.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
                self.transport.abort()
            else:
                self.transport.close()
        return 0

    cdef int _pump(self) except -1:
        """Write the stream's body while the transport takes it; resume_writing calls us again."""
        cdef PatternStream stream = self.stream
        cdef Server server = self.server
        cdef long long n
        transport = self.transport
        # a transport that is closing drops writes without ever pausing us: stop there, or a client that
        # left a /chunked/9223372036854775807?size=1 would keep this loop (and the process) busy for ever
        while not self.writing_paused and self.frame_handle is None and self.stream is not None \
                and not transport.is_closing():
            if stream.frame_size and stream.frame_left == 0:
                if stream.remaining == 0:
                    break
                n = min(stream.frame_size, stream.remaining)
                stream.frame_left = n
                if stream.restart_frames:
                    stream.phase = 0
                if n <= 4096 and self.drip_rate == 0:  # a small frame goes out whole, in one write
                    transport.write(b"%x\r\n%b\r\n" % (n, server.pattern[stream.phase:stream.phase + n]))
                else:
                    transport.write(b"%x\r\n" % n)
                    continue
            else:
                n = min(stream.frame_left if stream.frame_size else stream.remaining, server.piece_size)
                if self.drip_rate > 0:
                    n = min(n, self._drip_piece())
                if n == 0:
                    break
                transport.write(server.pattern[stream.phase:stream.phase + n])
                if stream.frame_size and n == stream.frame_left:
                    transport.write(b"\r\n")
            stream.phase = (stream.phase + n) % PATTERN_LEN
            stream.remaining -= n
            server.bytes_out += n
            server.route_bytes_out[self.stream_route.index] += n
            if stream.frame_size:
                stream.frame_left -= n
                if stream.frame_left == 0 and stream.frame_delay_s > 0 and stream.remaining > 0:
                    self.frame_handle = server.loop.call_later(stream.frame_delay_s, self._next_frame)
            if self.drip_rate > 0 and self.frame_handle is None:
                self.frame_handle = server.loop.call_later(DRIP_INTERVAL_S, self._next_frame)
        if self.stream is not None and stream.remaining == 0 and stream.frame_left == 0:
            if stream.frame_size and not self.truncating:
                transport.write(b"0\r\n\r\n")
            self.stream = None
            self.stream_route = None
            self._continue()
        return 0

    cdef int _continue(self) except -1:
        """The pending response (delayed or streamed) is complete: go on with pipelined requests."""
        self.phase = 0
        self.drip_rate = 0
        self.truncating = False
        if not self.closing:
            try:
                self.parser.resume()
            except RemoteProtocolError as exc:
                self._protocol_error(exc.status, exc.msg)
                return 0
            if self.ws is not None:  # a pipelined upgrade was answered
                return self._hand_over_leftovers()
            if self.parser.has_partial_head():
                self.head_started = g_now
        self._flush()
        if self.backlog_paused and self.phase == 0 and not self.closing:
            self.backlog_paused = False
            self.transport.resume_reading()
        return 0

    cdef int _after_late_response(self) except -1:
        """A response made outside the parser (after a delay) is out: go on from where it leaves us."""
        if self.ws is not None:
            return self._hand_over_leftovers()
        if self.phase:
            return self._flush()  # a stream, a drip, a hold: they go on from their own callbacks
        return self._continue()

    cdef int _protocol_error(self, int status, str msg) except -1:
        self.route = self.server.error_route
        self.request = None
        data = error_response(status, msg)
        self.out.append(data)
        self._done(status, len(data), 0.0)
        self.closing = True
        self._flush()
        return 0

    cdef int _check_timeout(self, double now) except -1:
        cdef Server server = self.server
        if self.ws is not None:
            return self.ws.check_idle(self, now)
        if self.phase != 0 or self.closing:
            return 0
        if self.parser.has_partial_head():
            if now - self.head_started > server.header_timeout_s:
                self._protocol_error(408, "timed out reading the request head")
        elif self.parser.in_body() and server.body_timeout_s and self.read_pause_s == 0 \
                and now - self.body_started > server.body_timeout_s + self.body_size / server.body_min_rate:
            # like Apache's mod_reqtimeout: a body trickling in forever (1 byte a second) is cut off
            self._protocol_error(408, f"timed out reading the request body (--body-timeout "
                                      f"{server.body_timeout_s:g}s, --body-min-rate {server.body_min_rate:g})")
        elif now - self.last_active > server.idle_timeout_s:
            self.transport.close()
        return 0

    cdef int _drain(self) except -1:
        if self.ws is not None:
            return self.ws.shutdown(self)
        if self.phase == 0 and not self.parser.in_body() and not self.parser.has_partial_head() \
                and not self.out:
            self.closing = True
            self.transport.close()
        return 0

    cdef int _feed(self, const char* data, size_t length) except -1:
        cdef bint was_partial = self.parser.has_partial_head()
        if self.ws is not None:
            return self.ws.feed(self, data, length)
        try:
            self.parser.feed_ptr(data, length)
        except RemoteProtocolError as exc:
            self._protocol_error(exc.status, exc.msg)
            return 0
        if self.ws is not None:  # the upgrade was answered in this read
            return self._hand_over_leftovers()
        if not was_partial and self.parser.has_partial_head():
            self.head_started = self.last_active
        self._flush()
        # while a response is delayed, pipelined bytes pile up in the parser: stop reading past a limit
        if self.phase != 0 and self.parser.buf_len > self.server.max_header_size and not self.backlog_paused:
            self.backlog_paused = True
            self.transport.pause_reading()
        return 0

    # === Public API (asyncio protocol) ===

    def connection_made(self, transport):
        cdef Server server = self.server
        if server.at_capacity(transport):
            server.connections_rejected += 1
            transport.abort()
            return
        self.transport = transport
        # uvloop already sets TCP_NODELAY on every TCP transport
        transport.set_write_buffer_limits(server.write_buffer_size)
        server.connections.add(self)
        server.connections_total += 1
        self.last_active = g_now
        if server.draining:
            self._drain()

    def connection_lost(self, exc):
        if self.transport is None:  # refused in connection_made
            return
        self.server.connections.discard(self)
        self.delay_handle = _cancel(self.delay_handle)
        self.resume_handle = _cancel(self.resume_handle)
        self.frame_handle = _cancel(self.frame_handle)
        self.event_handle = _cancel(self.event_handle)
        self.events = None
        self.stream = None  # a client that leaves stops its stream at once
        self.transport = None
        self.parser.release()
        self.parser.handler = None  # break the cycle parser -> protocol
        self.request = None
        self.body = None

    def get_buffer(self, Py_ssize_t sizehint):
        return self.server.slow_read_view if self.read_pause_s > 0 else self.server.read_view

    def buffer_updated(self, Py_ssize_t nbytes):
        self.server.bytes_in += nbytes
        self.last_active = g_now
        if self.closing:
            return
        self._feed(PyByteArray_AS_STRING(self.server.read_buffer), nbytes)

    def eof_received(self):
        # A client that half-closes is treated as gone (as nginx does): a pending delay is cancelled.
        return False

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False
        if self.stream is not None:
            self._flush()

    def _next_frame(self):
        self.frame_handle = None
        if self.transport is not None:
            self._flush()

    def _resume_reading(self):
        self.resume_handle = None
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def _next_event(self):
        """Send the event that is due (or a heartbeat comment), then wait for the next."""
        cdef EventStream events = self.events
        cdef double now = _now()
        cdef double wait_s
        self.event_handle = None
        if self.transport is None or events is None:
            return
        if not self.writing_paused:  # a client that does not read gets its events late, not piled up
            if now >= events.next_at:
                event = events.next_event()
                if event:
                    self._write_event(event)
                events.next_at = now + events.interval_s
                if events.count and events.sent >= events.count:
                    if self.events_chunked:
                        self.transport.write(b"0\r\n\r\n")
                    self.events = None
                    self._continue()
                    return
            else:
                self._write_event(b": heartbeat\n\n")
        wait_s = max(0.0, events.next_at - _now())
        self.event_handle = self.server.loop.call_later(min(wait_s, events.heartbeat_s), self._next_event)

    def _write_event(self, bytes event):
        if self.events_chunked:
            event = b"%x\r\n%b\r\n" % (len(event), event)
        self.server.bytes_out += len(event)
        self.transport.write(event)

    def _fault_after_delay(self):
        self.delay_handle = None
        self.phase = 0
        if self.transport is None:
            return
        self._apply_fault()
        self._after_late_response()

    def _end_hold(self):
        self.delay_handle = None
        self.phase = 0
        if self.transport is not None:
            self.transport.close()

    def _drip(self):
        """Write the next piece of a dripping response; the stream (if any) then drips from _pump."""
        cdef Py_ssize_t n = self._drip_piece()
        self.delay_handle = None
        if self.transport is None:
            return
        piece = self.drip_data[self.drip_pos:self.drip_pos + n]
        self.drip_pos += n
        self.server.bytes_out += len(piece)
        self.transport.write(piece)
        if self.drip_pos < len(self.drip_data):
            self.delay_handle = self.server.loop.call_later(DRIP_INTERVAL_S, self._drip)
            return
        self.drip_data = None
        if self.stream is not None:
            self._flush()
        else:
            self._continue()

    def _finish_awaited(self, task):
        if task.cancelled():  # the connection was lost
            return
        exc = task.exception()
        if exc is not None:
            log.error("route %s failed", self.route.name, exc_info=exc)
            response = Response(500, INTERNAL_ERROR)
        else:
            response = task.result()
            if not isinstance(response, Response):
                log.error("route %s returned %r, not a Response", self.route.name, response)
                response = Response(500, INTERNAL_ERROR)
        self._finish_delayed(response)

    def _finish_delayed(self, Response response):
        self.delay_handle = None
        self.phase = 0
        if self.transport is None:
            return
        self._respond(response)
        self._after_late_response()
