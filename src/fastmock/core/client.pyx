# The load generator's engine: client connections on uvloop that send pre-encoded requests and read the
# responses with the core's parser in response mode. Latencies go into a LatencyHistogram: no Python object
# per request unless per-request records are asked for. Closed loop: each connection sends its next request
# when the last is answered. Open loop: a scheduler queues requests at their scheduled times and latency is
# measured from then, so a stalled server shows up in the percentiles (no coordinated omission).
# Over TLS (``tls``: a client TlsContext, the core's own TLS layer) every connection's handshake is timed,
# and a handshake that fails is a "tls" error counted by reason.

LOAD_ERROR_NAMES = ("refused", "reset", "timeout", "bad_response", "tls")


def handshake_failure(exc) -> str:
    """Why a TLS connection attempt through Python's ssl failed (``fastmock run``'s httpx): a verification
    reason (VERIFY_REASONS, else "verify"),
    "protocol" (no common version or cipher, an alert, garbage), "timeout", "reset" (a TCP RST), "closed"
    (the server hung up mid-handshake: what a server on asyncio's or uvloop's TLS does instead of sending
    its alert) or "refused"."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return VERIFY_REASONS.get(exc.verify_code, "verify")
    if isinstance(exc, ssl.SSLError):
        return "protocol"
    if isinstance(exc, asyncio.TimeoutError) or "taking longer" in str(exc):
        return "timeout"  # uvloop reports its own handshake timeout as ConnectionAbortedError
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    return "reset" if getattr(exc, "errno", None) == errno.ECONNRESET else "closed"
cdef double SCHEDULE_TICK_S = 0.001
cdef double TIMEOUT_TICK_S = 0.01


cdef class LoadConnection(ParserHandler):
    """One client connection of a LoadEngine."""

    def __cinit__(self):
        self.parser = RequestParser(response=True)
        self.parser.handler = self
        self.busy = False
        self.connected = False

    cdef int _on_head(self, RequestParser parser) except -1:
        if parser.status >= 200:
            self.status = parser.status
            if self.engine is not None and self.engine.records is not None and not self.engine.trace:
                # the trace id a proxy on the way gave this request, for the record
                trace_id = _header_value(parser, b"x-trace-id")
                self.trace_id = trace_id.encode("latin-1") if trace_id is not None else None
        return 0

    cdef int _on_body(self, const char* data, size_t length) except -1:
        self.body_bytes += length
        return 0

    cdef int _on_message_complete(self) except -1:
        if self.status and self.busy and self.engine is not None:
            self.engine._completed(self)
        return 0

    def connection_made(self, transport):
        self.transport = transport
        self.connected = True
        self.ssl_object = transport.get_extra_info("ssl_object")

    def data_received(self, bytes data):
        try:
            self.parser.feed_ptr(data, len(data))
        except RemoteProtocolError as exc:
            if self.engine is not None:
                self.engine._failed(self, LE_BAD_RESPONSE, exc.msg)

    def eof_received(self):
        try:
            self.parser.feed_eof()  # completes a response whose body runs to the close
        except RemoteProtocolError:
            pass  # connection_lost reports it
        return False

    def connection_lost(self, exc):
        if self.engine is not None:  # None once the engine let it go
            self.engine._failed(self, LE_RESET, "the server closed the connection")


cdef class LoadEngine:
    """Sends requests to one host:port; see the module comment. ``start()`` returns a future of None."""

    def __cinit__(self, loop, str host, int port, bytes head, bytes body=b"", *, long long total=-1,
                  double duration_s=0.0, int concurrency=1, double rate=0.0, double timeout_s=30.0,
                  double connect_timeout_s=10.0, int retries=0, double backoff_s=0.1, bint keepalive=True,
                  bint trace=False, bint record=False, bint head_request=False, unsigned long long seed=0,
                  long long index_offset=0, long long index_step=1, TlsContext tls=None, str server_hostname=None):
        if total < 0 and duration_s <= 0:
            raise ValueError("a run needs a number of requests or a duration")
        self.loop = loop
        self.host = host
        self.port = port
        self.head = head              # request line and headers, without the empty line
        self.body = body
        self.request = head + b"\r\n" + body
        self.total = total
        self.duration_s = duration_s
        self.concurrency = concurrency
        self.rate = rate
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.keepalive = keepalive
        self.trace = trace
        self.head_request = head_request
        self.rng = Random(seed)
        self.index_offset = index_offset
        self.index_step = index_step
        self.histogram = LatencyHistogram()
        self.tls = tls
        self.server_hostname = server_hostname
        self.handshake_histogram = LatencyHistogram()
        self.handshake_failures = {}
        self.handshakes = self.resumed = 0
        self.records = [] if record else None
        self.pending = collections.deque()
        self.idle = []
        self.connections = set()
        self.connecting = 0
        self.issued = self.completed = self.in_flight = self.retries_waiting = 0
        self.bytes_in = self.retries_total = 0
        memset(self.errors, 0, sizeof(self.errors))
        memset(self.statuses, 0, sizeof(self.statuses))
        self.done = None

    # --- issuing --------------------------------------------------------------------------------------

    cdef bint _more(self):
        """Whether new requests may still be issued."""
        if self.total >= 0 and self.issued >= self.total:
            return False
        return self.duration_s <= 0 or _now() < self.started_at + self.duration_s

    cdef void _dispatch(self, LoadConnection conn):
        """Give ``conn`` its next request, or let it rest."""
        if self.pending:
            index, scheduled, attempt = self.pending.popleft()
            self._send(conn, index, scheduled, attempt)
        elif self.rate <= 0 and self._more():
            self.issued += 1
            self._send(conn, self.issued - 1, _now(), 0)
        elif self.rate > 0 and conn.transport is not None:
            self.idle.append(conn)
        else:
            conn.transport.close()
        self._check_done()

    cdef void _send(self, LoadConnection conn, long long index, double scheduled, int attempt):
        conn.busy = True
        conn.index = index
        conn.scheduled = scheduled
        conn.attempt = attempt
        conn.status = 0
        conn.body_bytes = 0
        conn.started = _now()
        conn.parser.no_body = self.head_request
        self.in_flight += 1
        if self.trace:
            conn.trace_id = _hex_id(self.rng, 32)
            conn.transport.write(self.head + b"X-Trace-Id: " + conn.trace_id + b"\r\n\r\n" + self.body)
        else:
            conn.trace_id = None  # until the response brings one
            conn.transport.write(self.request)

    cdef void _open(self):
        self.connecting += 1
        opened = _now()
        if self.tls is None:
            connect = self.loop.create_connection(LoadConnection, self.host, self.port)
            handshake = None
        else:  # the connection is ready once its handshake is: ``handshake`` says how that went
            handshake = self.loop.create_future()
            conn = LoadConnection()
            connect = self.loop.create_connection(
                lambda: TlsConnection(conn, self.tls, lambda failure: handshake.set_result((conn, failure)),
                                      self.connect_timeout_s, self.server_hostname), self.host, self.port)
        future = asyncio.ensure_future(asyncio.wait_for(connect, self.connect_timeout_s), loop=self.loop)
        future.add_done_callback(lambda done: self._connected(done, opened, handshake))

    def _connected(self, future, double opened, handshake):
        if not future.cancelled() and future.exception() is None and handshake is not None:
            handshake.add_done_callback(lambda done: self._handshaken(done.result(), opened))
            return  # still connecting until the handshake is over
        self.connecting -= 1
        if future.cancelled():  # the run is over
            return
        exc = future.exception()
        if exc is not None:
            # the connection was for a request: it fails as refused (or timeout), like any other error
            self._not_opened(LE_TIMEOUT if isinstance(exc, asyncio.TimeoutError) else LE_REFUSED,
                             getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        else:
            self._opened(future.result()[1], opened)

    def _handshaken(self, outcome, double opened):
        conn, failure = outcome
        self.connecting -= 1
        if failure is None:
            self._opened(conn, opened)
            return
        self.handshake_failures[failure] = self.handshake_failures.get(failure, 0) + 1
        self._not_opened(LE_TLS, f"TLS handshake: {failure}")

    cdef void _opened(self, LoadConnection conn, double opened):
        if conn.ssl_object is not None:
            self.handshakes += 1
            self.resumed += conn.ssl_object.session_reused
            self.handshake_histogram.record_us(<unsigned long long>((_now() - opened) * 1e6))
        conn.engine = self
        self.connections.add(conn)
        self._dispatch(conn)

    cdef void _not_opened(self, int kind, str message):
        """A connection for a request did not open: the request fails (or is retried) with ``kind``."""
        if self.pending:
            index, scheduled, attempt = self.pending.popleft()
        elif self.rate <= 0 and self._more():
            self.issued += 1
            index, scheduled, attempt = self.issued - 1, _now(), 0
        else:
            self._check_done()
            return
        if attempt < self.retries:
            self._retry(index, scheduled, attempt)
        else:
            self._finish(index, scheduled, scheduled, attempt, 0, 0, kind, b"", message)
        if self.rate <= 0 and (self.pending or self._more()):
            self._open()

    # --- results ----------------------------------------------------------------------------------------

    cdef void _completed(self, LoadConnection conn):
        cdef int status = conn.status
        conn.busy = False
        if conn.ssl_object is not None:
            conn.ssl_object.keep_session()  # a TLS 1.3 ticket arrives after the handshake: by now it is here
        self.in_flight -= 1
        reusable = self.keepalive and conn.parser.keep_alive
        if status >= 500 and conn.attempt < self.retries:
            self._retry(conn.index, conn.scheduled, conn.attempt)
        else:
            self._finish(conn.index, conn.scheduled, conn.started, conn.attempt, status, conn.body_bytes, -1,
                         conn.trace_id, None)
        if reusable:
            self._dispatch(conn)
        else:
            self.connections.discard(conn)
            conn.engine = None  # its connection_lost is not ours any more
            conn.transport.close()
            self._replace()

    cdef void _failed(self, LoadConnection conn, int kind, str message):
        """A request on ``conn`` went wrong: the connection is dropped; the request is retried or counted."""
        if conn.engine is None:
            return
        self.connections.discard(conn)
        conn.engine = None
        if conn.transport is not None:
            conn.transport.abort()
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            conn.busy = False
            self.in_flight -= 1
            if conn.attempt < self.retries:
                self._retry(conn.index, conn.scheduled, conn.attempt)
            else:
                self._finish(conn.index, conn.scheduled, conn.started, conn.attempt, 0, conn.body_bytes, kind,
                             conn.trace_id, message)
        self._replace()

    cdef void _replace(self):
        """A connection is gone: open another if there is work for it."""
        if self.rate <= 0:
            if (self.pending or self._more()) and len(self.connections) + self.connecting < self.concurrency:
                self._open()
        elif self.pending:
            self._feed()
        self._check_done()

    cdef void _retry(self, long long index, double scheduled, int attempt):
        self.retries_total += 1
        self.retries_waiting += 1
        self.loop.call_later(self.backoff_s * (1 << attempt), self._requeue, index, scheduled, attempt + 1)

    def _requeue(self, long long index, double scheduled, int attempt):
        self.retries_waiting -= 1
        self.pending.append((index, scheduled, attempt))
        if self.idle:
            self._dispatch(self.idle.pop())
        elif len(self.connections) + self.connecting < self.concurrency:
            self._open()

    cdef void _finish(self, long long index, double scheduled, double started, int attempt, int status,
                      long long nbytes, int error, bytes trace_id, str message):
        cdef double now = _now()
        self.completed += 1
        if error >= 0:
            self.errors[error] += 1
        else:
            self.statuses[status] += 1
            self.bytes_in += nbytes
            self.histogram.record_us(<unsigned long long>((now - scheduled) * 1e6))
        if self.records is not None:
            self.records.append((index * self.index_step + self.index_offset, scheduled - self.started_at,
                                 started - self.started_at, status or None, now - scheduled, nbytes, attempt,
                                 trace_id.decode() if trace_id else None,
                                 LOAD_ERROR_NAMES[error] + (f": {message}" if message else "") if error >= 0 else None))

    cdef void _check_done(self):
        cdef LoadConnection conn
        if self.done is None or self.done.done():
            return
        if self.in_flight or self.pending or self.retries_waiting or self.connecting:
            return
        if self.rate > 0 and self._more():
            return
        if self.rate <= 0 and self._more() and self.connections:
            return
        for conn in list(self.connections):
            conn.engine = None
            conn.transport.close()
        self.connections.clear()
        self.idle.clear()
        self.done.set_result(None)

    # --- ticks ------------------------------------------------------------------------------------------

    cdef void _feed(self):
        """Open loop: queue what is due by now, hand it to idle connections, open more if allowed."""
        cdef double now = _now()
        cdef long long due = <long long>((now - self.started_at) * self.rate) + 1
        if self.total >= 0:
            due = min(due, self.total)
        while self.issued < due and (self.duration_s <= 0 or
                                     self.started_at + self.issued / self.rate < self.started_at + self.duration_s):
            self.pending.append((self.issued, self.started_at + self.issued / self.rate, 0))
            self.issued += 1
        while self.pending and self.idle:
            self._dispatch(self.idle.pop())
        while self.pending and len(self.connections) + self.connecting < self.concurrency \
                and self.connecting < len(self.pending):
            self._open()

    def _schedule_tick(self):
        self._feed()
        self._check_done()
        if not self.done.done():
            self.schedule_handle = self.loop.call_later(SCHEDULE_TICK_S, self._schedule_tick)

    def _timeout_tick(self):
        cdef LoadConnection conn
        cdef double now = _now()
        for conn in list(self.connections):
            if conn.busy and now - conn.started > self.timeout_s:
                self._failed(conn, LE_TIMEOUT, f"no response in {self.timeout_s:g}s")
        if self.rate <= 0:
            self._check_done()  # a --duration run ends here once the time is up and all are answered
        if not self.done.done():
            self.timeout_handle = self.loop.call_later(TIMEOUT_TICK_S, self._timeout_tick)

    # === Public API ===

    def start(self):
        self.done = self.loop.create_future()
        self.started_at = _now()
        if self.rate > 0:
            self.schedule_handle = self.loop.call_soon(self._schedule_tick)
        else:
            for _ in range(self.concurrency if self.total < 0 else min(self.concurrency, self.total)):
                self._open()
        self.timeout_handle = self.loop.call_later(TIMEOUT_TICK_S, self._timeout_tick)
        return self.done

    def stats(self):
        """Counters so far (the progress line and the summary); ``histogram`` is live."""
        return {
            "requests": self.completed,
            "issued": self.issued,
            "elapsed_s": _now() - self.started_at,
            "statuses": {status: self.statuses[status] for status in range(100, 600) if self.statuses[status]},
            "errors": {LOAD_ERROR_NAMES[kind]: self.errors[kind] for kind in range(5) if self.errors[kind]},
            "bytes": self.bytes_in,
            "retries": self.retries_total,
            "handshakes": self.handshakes,
            "resumed": self.resumed,
            "handshake_failures": dict(self.handshake_failures),
        }

    @property
    def handshake_histogram(self):
        """Connect-to-handshake-done times of the TLS connections."""
        return self.handshake_histogram

    @property
    def histogram(self):
        return self.histogram

    @property
    def records(self):
        return self.records
