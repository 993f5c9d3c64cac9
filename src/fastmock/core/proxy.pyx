# The reverse proxy. A ProxyProtocol is a ServerProtocol whose requests (other than local routes such as
# /metrics) go to the upstream over a pool of keep-alive UpstreamConnections: the head is rewritten
# (hop-by-hop fields out; X-Forwarded-*, Via and trace ids in), bodies stream both ways as they arrive,
# and each side pauses the other's reading when its writes back up, so memory stays flat at any size.
# One exchange at a time per client connection: the parser waits, so pipelined requests keep their order.

cdef int UPSTREAM_ERROR_KINDS = 5
UPSTREAM_ERROR_NAMES = ("refused", "reset", "timeout", "bad_response", "tls")
cdef enum UpstreamError:
    E_REFUSED
    E_RESET
    E_TIMEOUT
    E_BAD_RESPONSE
    E_TLS           # an https upstream's handshake failed (upstream_tls_failures says why)


cdef bint _is_hop_by_hop(const char* name, size_t n):
    """RFC 9110 §7.6.1 and RFC 9112: the fields that belong to one connection, not to the message."""
    if n == 2:
        return _ieq(name, b"te", 2)
    if n == 7:
        return _ieq(name, b"trailer", 7) or _ieq(name, b"upgrade", 7)
    if n == 10:
        return _ieq(name, b"connection", 10) or _ieq(name, b"keep-alive", 10)
    if n == 16:
        return _ieq(name, b"proxy-connection", 16)
    if n == 17:
        return _ieq(name, b"transfer-encoding", 17)
    if n == 18:
        return _ieq(name, b"proxy-authenticate", 18)
    if n == 19:
        return _ieq(name, b"proxy-authorization", 19)
    return False


cdef set _connection_tokens(RequestParser parser):
    """The field names listed in Connection headers (hop-by-hop too, RFC 9110 §7.6.1), lower-cased;
    None when there are none beyond the usual keep-alive/close."""
    cdef unsigned int i
    cdef set names = None
    for i in range(parser.header_count):
        if g_headers[i].name_len == 10 and _ieq(parser.head + g_headers[i].name_start, b"connection", 10):
            value = _value_of(parser, i).lower()
            for token in value.split(b","):
                token = token.strip()
                if token and token != b"keep-alive" and token != b"close":
                    if names is None:
                        names = set()
                    names.add(token)
    return names


cdef inline bint _listed(set names, const char* name, size_t n):
    return names is not None and name[:n].lower() in names


cdef inline bint _not_copied(const char* name, size_t n, set dropped):
    """A field the proxy never copies into the other side's head: hop-by-hop ones, those the Connection
    header names, and Content-Length (one value is written again, whatever list of equal ones came)."""
    return _is_hop_by_hop(name, n) or _listed(dropped, name, n) or (n == 14 and _ieq(name, b"content-length", 14))


# fields that frame or route a message: one named in Connection would be dropped while its effect stays
# (a body without its Content-Length is a second request upstream), so such a message is refused
cdef frozenset FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding", b"host"))


cdef int _check_connection_tokens(set names, int status) except -1:
    if names is not None and not names.isdisjoint(FRAMING_FIELDS):
        listed = b", ".join(sorted(names & FRAMING_FIELDS)).decode()
        raise RemoteProtocolError(f"Connection names a framing field ({listed})", status)
    return 0


cdef bytes _forwarded_target(RequestParser parser):
    """The request-target for the upstream: origin-form (RFC 9112 §3.2.2: an absolute-form target is
    rewritten, since this proxy's upstream is fixed) or "*"; an authority-form target (CONNECT) is refused."""
    cdef const char* head = parser.head
    cdef size_t end = parser.target_start + parser.target_len
    if parser.path_start != parser.target_start:  # absolute-form: what follows scheme://authority
        target = head[parser.path_start:end]
        return target if parser.path_len else b"/" + target
    if head[parser.target_start] == 47 or (parser.target_len == 1 and head[parser.target_start] == 42):
        return head[parser.target_start:end]  # origin-form, or "*"
    raise RemoteProtocolError("a reverse proxy takes origin-form or absolute-form targets", 400)


cdef class Proxy:
    """One proxy listener's forwarding state: the upstream, its idle connections, options and counters.

    ``routes`` are answered locally (e.g. /metrics); everything else is forwarded. ``headers`` are extra
    (name, value) fields for upstream requests, ``response_headers`` for every answer; ``drop_rate`` of
    requests get 503 without forwarding; ``delay_s`` waits before forwarding. Other keyword arguments are the
    Server's.
    """

    def __cinit__(self, loop, str upstream_host, int upstream_port, list routes, *, list headers=None,
                  list response_headers=None, double drop_rate=0.0, double delay_s=0.0, double upstream_timeout_s=30.0,
                  Py_ssize_t max_idle=256, unsigned long long proxy_seed=0, upstream_ssl=None, **server_options):
        self.loop = loop
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.upstream_ssl = upstream_ssl  # a client SSLContext: the upstream speaks https (SNI: its host)
        self.host_header = (f"[{upstream_host}]:{upstream_port}" if ":" in upstream_host
                            else f"{upstream_host}:{upstream_port}").encode()
        self.extra_headers = b"".join(name + b": " + value + b"\r\n" for name, value in headers or [])
        self.response_fields = b"".join(name + b": " + value + b"\r\n" for name, value in response_headers or [])
        self.response_names = {name.lower() for name, _ in response_headers or []} or None
        self.drop_rate = drop_rate
        self.delay_s = delay_s
        self.upstream_timeout_s = upstream_timeout_s
        self.max_idle = max_idle
        self.idle = []
        self.rng = Random(proxy_seed)
        # a forwarded request that drew a fault gets this body with the fault's status
        self.forward_route = Route("proxy", static=StaticResponse(
            200, b'{"error":"fault injected by fastmock proxy"}', b"application/json"))
        self.drop_route = Route("dropped", static=StaticResponse(
            503, b'{"error":"dropped by fastmock proxy (--drop-rate)"}', b"application/json"))
        self.server = Server(loop, routes + [self.drop_route], self.forward_route, **server_options)
        # --upstream-timeout is checked by the server's tick: make it fine enough
        self.server.bound_tick(upstream_timeout_s / 2)
        self.requests = self.forwarded = self.dropped = self.delayed = 0
        memset(self.errors, 0, sizeof(self.errors))
        self.upstream_tls_failures = {}
        memset(self.upstream_durations, 0, sizeof(self.upstream_durations))
        self.upstream_duration_sum_s = 0.0

    def make_protocol(self):
        """The protocol factory for loop.create_server()."""
        cdef ProxyProtocol proto = ProxyProtocol.__new__(ProxyProtocol)
        proto.proxy = self
        return self.server._init_protocol(proto)

    cdef UpstreamConnection acquire(self):
        cdef UpstreamConnection conn
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    cdef void release(self, UpstreamConnection conn):
        conn.downstream = None
        if conn.reusable and len(self.idle) < self.max_idle and conn.transport is not None:
            self.idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def stats(self):
        """The proxy's counters, for /metrics."""
        return {
            "requests": self.requests, "forwarded": self.forwarded, "dropped": self.dropped,
            "delayed": self.delayed,
            "upstream_errors": [(UPSTREAM_ERROR_NAMES[i], self.errors[i]) for i in range(UPSTREAM_ERROR_KINDS)],
            "upstream_tls_failures": dict(self.upstream_tls_failures),
            "upstream_duration_counts": [self.upstream_durations[i] for i in range(N_BOUNDS + 1)],
            "upstream_duration_sum_s": self.upstream_duration_sum_s,
            "idle_upstream_connections": len(self.idle),
        }


cdef class UpstreamConnection(ParserHandler):
    """One connection to the upstream; while lent to a ProxyProtocol, its response goes there."""

    def __cinit__(self):
        self.parser = RequestParser(response=True)
        self.parser.handler = self
        self.reusable = False

    cdef int _on_head(self, RequestParser parser) except -1:
        if parser.status < 200:  # 100 Continue and friends: the client had ours already
            return 0
        if self.downstream is not None:
            self.downstream._upstream_head(parser)
        return 0

    cdef int _on_body(self, const char* data, size_t length) except -1:
        if self.downstream is not None:
            self.downstream._upstream_body(data, length)
        return 0

    cdef int _on_message_complete(self) except -1:
        if self.parser.status < 200:
            return 0
        self.reusable = self.parser.keep_alive and self.request_sent
        return 1  # the parser stops here: _finish decides, once it has returned, what follows

    cdef int _finish(self) except -1:
        """The response is complete. Bytes after it belong to no request: such a connection is never reused."""
        if self.parser.buf_len:
            self.reusable = False
            self.parser.release()
        elif self.reusable:
            self.parser.resume()  # nothing buffered: ready for the next response
        if self.downstream is not None:
            self.downstream._upstream_done()
        elif self.transport is not None:
            self.transport.close()
        return 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, bytes data):
        cdef ProxyProtocol downstream = self.downstream
        if downstream is None:  # idle in the pool: nothing may come now
            self.reusable = False
            self.transport.abort()
            return
        try:
            self.parser.feed_ptr(data, len(data))
        except RemoteProtocolError as exc:
            self.reusable = False
            self.transport.abort()
            if self.downstream is not None:
                self.downstream._upstream_failed(E_BAD_RESPONSE, exc.msg)
            return
        if self.parser.paused:
            self._finish()
            return
        if downstream.transport is not None and downstream.upstream is self:
            downstream._flush()  # what this read brought, in one write (a drip fault queues it in the writer)

    def eof_received(self):
        try:
            if self.parser.feed_eof():  # a body that ran to the close is complete
                self._finish()
        except RemoteProtocolError:
            pass  # connection_lost reports it
        return False

    def connection_lost(self, exc):
        self.transport = None
        self.reusable = False
        self.parser.release()
        if self.downstream is not None:
            self.downstream._upstream_failed(E_RESET, "the upstream closed the connection")
        self.downstream = None

    def pause_writing(self):
        if self.downstream is not None and self.downstream.transport is not None:
            self.downstream.transport.pause_reading()  # the upstream takes the body slower than the client sends

    def resume_writing(self):
        if self.downstream is not None and self.downstream.transport is not None and not self.downstream.must_close:
            self.downstream.transport.resume_reading()


cdef class ProxyProtocol(ServerProtocol):
    """A client connection of the proxy; see the module comment."""

    cdef int _on_head(self, RequestParser parser) except -1:
        cdef Proxy proxy = self.proxy
        cdef int rc
        cdef FaultOutcome* fault
        cdef set dropped = _connection_tokens(parser)
        self.forwarding = False
        # every answer to this request carries its ids, the client's own when it sent them
        self._take_ids(parser)
        _check_connection_tokens(dropped, 400)
        rc = ServerProtocol._on_head(self, parser)
        if self.route is not proxy.forward_route or self.must_close:
            return rc  # a local route, or answered early
        proxy.requests += 1
        if proxy.drop_rate > 0 and proxy.rng.next_double() < proxy.drop_rate:
            proxy.dropped += 1
            self.route = proxy.drop_route
            self._take_fault()  # a dropped request is answered 503, whatever it drew
            return rc
        if self.fault != NULL and self.fault.kind not in (F_OK, F_TRUNCATE, F_DRIP):
            return rc  # answered here, as the fault says, when the request is in
        # forwarded: the fault's delay is waited before connecting, a truncate or drip cuts or paces the
        # upstream's response on its way back
        fault = self._take_fault()
        self.shaping = fault.kind if fault != NULL and fault.kind != F_OK else F_NONE
        self.shaping_rate = fault.arg if fault != NULL else 0.0
        self.wait_s = proxy.delay_s + (self.fault_delay_s if fault != NULL else 0.0)
        self.forwarding = True
        self.request_done = False
        self.head_sent = False
        self.upstream_started = 0.0
        self.request_head = self._upstream_request_head(parser, dropped)
        self.request_chunked = parser.chunked
        self.state = CS_WAITING
        self.transport.pause_reading()  # the body waits until the upstream connection is there
        # never from inside the parser's callback: _forward resumes the parser, which must be paused first
        if self.wait_s > 0:
            proxy.delayed += 1
            self.delay_handle = _call_later_at_least(proxy.loop, self.wait_s, self._connect)
        else:
            self.delay_handle = proxy.loop.call_soon(self._connect)
        return 1

    cdef void _take_ids(self, RequestParser parser):
        """This request's trace and request ids: the client's (one pass over the head), else new ones."""
        cdef unsigned int i
        cdef size_t n
        self.trace_id = self.request_id = None
        for i in range(parser.header_count):
            n = g_headers[i].name_len
            if n == 10 and self.trace_id is None and _ieq(parser.head + g_headers[i].name_start, b"x-trace-id", 10):
                self.trace_id = _value_of(parser, i)
            elif n == 12 and self.request_id is None and \
                    _ieq(parser.head + g_headers[i].name_start, b"x-request-id", 12):
                self.request_id = _value_of(parser, i)
        self.client_trace = self.trace_id is not None
        self.client_request_id = self.request_id is not None
        if self.trace_id is None:
            self.trace_id = _hex_id(self.proxy.rng, 32)
        if self.request_id is None:
            self.request_id = _hex_id(self.proxy.rng, 16)
        self.ids_taken = True

    cdef bytes _answer_fields(self):
        if not self.ids_taken:  # an answer before any head was read (a malformed one): fresh ids
            self.trace_id, self.request_id = _hex_id(self.proxy.rng, 32), _hex_id(self.proxy.rng, 16)
            self.ids_taken = True
        return b"X-Trace-Id: %s\r\nX-Request-Id: %s\r\n%s" % (self.trace_id, self.request_id,
                                                                self.proxy.response_fields)

    cdef void _done(self, int status, Py_ssize_t nbytes, double duration_s):
        ServerProtocol._done(self, status, nbytes, duration_s)
        self.ids_taken = False  # the next request's ids come with its head

    cdef bytes _upstream_request_head(self, RequestParser parser, set dropped):
        cdef Proxy proxy = self.proxy
        cdef unsigned int i
        cdef list parts = [parser.head[:parser.method_len], b" ", _forwarded_target(parser),
                           b" HTTP/1.1\r\nHost: ", proxy.host_header, b"\r\n"]
        forwarded_for = via = None
        cdef const char* name
        cdef size_t n
        for i in range(parser.header_count):
            name = parser.head + g_headers[i].name_start
            n = g_headers[i].name_len
            if _not_copied(name, n, dropped) or (n == 4 and _ieq(name, b"host", 4)):
                continue
            if n == 16 and _ieq(name, FAULT_HEADER, 16) and self.server.header_faults is not None:
                continue  # a fault header is for us (it would strike twice if an upstream fastmock saw it too)
            if n == 15 and _ieq(name, b"x-forwarded-for", 15):
                value = _value_of(parser, i)
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
                continue
            if n == 3 and _ieq(name, b"via", 3):
                value = _value_of(parser, i)
                via = value if via is None else via + b", " + value
                continue
            parts += [parser.head[g_headers[i].name_start:g_headers[i].value_start + g_headers[i].value_len],
                      b"\r\n"]
        if self.client_ip is None:  # once per connection
            self.client_ip = self.transport.get_extra_info("peername")[0].encode()
            self.forwarded_proto = b"http" if self.transport.get_extra_info("ssl_object") is None else b"https"
        client = self.client_ip
        if not self.client_trace:  # the client's own ids went up with its other fields
            parts += [b"X-Trace-Id: ", self.trace_id, b"\r\n"]
        if not self.client_request_id:
            parts += [b"X-Request-Id: ", self.request_id, b"\r\n"]
        parts += [b"X-Forwarded-For: ", client if forwarded_for is None else forwarded_for + b", " + client,
                  b"\r\nX-Forwarded-Proto: ", self.forwarded_proto, b"\r\nVia: ", b"1.1 fastmock" if via is None else via + b", 1.1 fastmock",
                  b"\r\n", proxy.extra_headers]
        if parser.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif parser.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % parser.content_length)
        parts.append(b"\r\n")
        return b"".join(parts)

    def _connect(self):
        cdef Proxy proxy = self.proxy
        cdef UpstreamConnection conn
        self.delay_handle = None
        if self.transport is None:
            return
        self.upstream_started = _now()
        self._arm_timeout()
        conn = proxy.acquire()
        if conn is not None:
            self._forward(conn)
            return
        if proxy.upstream_ssl is None:
            connecting = proxy.loop.create_connection(UpstreamConnection, proxy.upstream_host, proxy.upstream_port)
        else:
            connecting = proxy.loop.create_connection(
                UpstreamConnection, proxy.upstream_host, proxy.upstream_port, ssl=proxy.upstream_ssl,
                server_hostname=proxy.upstream_host, ssl_handshake_timeout=proxy.upstream_timeout_s)
        self.connecting = asyncio.ensure_future(connecting, loop=proxy.loop)
        self.connecting.add_done_callback(self._connected)

    def _connected(self, future):
        self.connecting = None
        if future.cancelled():
            return
        if future.exception() is not None:
            exc = future.exception()
            reason = "refused" if self.proxy.upstream_ssl is None else handshake_failure(exc)
            if reason == "refused":
                self._upstream_failed(E_REFUSED, f"cannot connect to the upstream: {getattr(exc, 'strerror', None) or exc}")
            else:
                failures = self.proxy.upstream_tls_failures
                failures[reason] = failures.get(reason, 0) + 1
                self._upstream_failed(E_TLS, f"the upstream's TLS handshake failed ({reason}): "
                                             f"{getattr(exc, 'verify_message', None) or exc}")
            return
        _, conn = future.result()
        if self.transport is None:
            (<UpstreamConnection>conn).transport.close()
            return
        self._forward(<UpstreamConnection>conn)

    cdef int _forward(self, UpstreamConnection conn) except -1:
        """The upstream connection is ours: send the head, then let the body flow."""
        self.upstream = conn
        conn.downstream = self
        conn.reusable = False
        conn.request_sent = False
        conn.parser.no_body = self.head_only
        conn.transport.write(self.request_head)
        self.request_head = None
        self.proxy.forwarded += 1
        self.deadline = 0  # connected: the clock starts again once the request is sent
        # what piled up in the parser while we connected is this request's body, which flows from here: not a
        # backlog of pipelined requests (waiting for one to end before reading on would never end)
        self.backlog_paused = False
        self.transport.resume_reading()
        if self.request_done:  # no body: the request is all there; the next one waits for the response
            conn.request_sent = True
            self._arm_timeout()
        else:
            try:
                self.parser.resume()  # the body: the bytes that came with the head, then the rest as it arrives
            except RemoteProtocolError as exc:
                self._protocol_error(exc.status, exc.msg)
        return 0

    cdef int _protocol_error(self, int status, str msg) except -1:
        """A malformed request body while forwarding: the upstream exchange ends, the client gets the error."""
        if self.forwarding:
            self._drop_upstream()
            self.forwarding = False
            self.state = CS_READING
            if self.head_sent:  # the client is reading the upstream's response: cut it off
                self.must_close = True
                self.transport.abort()
                return 0
        return ServerProtocol._protocol_error(self, status, msg)

    cdef int _on_body(self, const char* data, size_t length) except -1:
        if not self.forwarding:
            return ServerProtocol._on_body(self, data, length)
        if self.upstream is not None and self.upstream.transport is not None:
            if self.request_chunked:
                self.upstream.transport.write(_chunk(data[:length]))
            else:
                self.upstream.transport.write(data[:length])
        return 0

    cdef int _on_message_complete(self) except -1:
        if not self.forwarding:
            return ServerProtocol._on_message_complete(self)
        self.request_done = True
        if self.upstream is not None:
            if self.request_chunked and self.upstream.transport is not None:
                self.upstream.transport.write(LAST_CHUNK)
            self.upstream.request_sent = True
            self._arm_timeout()  # --upstream-timeout counts from the whole request to the response head
        return 1  # the next pipelined request waits for this response

    cdef void _arm_timeout(self):
        self.deadline = _now() + self.proxy.upstream_timeout_s

    cdef int _check_timeout(self, double now) except -1:
        if self.deadline and now > self.deadline:
            self.deadline = 0
            self._upstream_failed(E_TIMEOUT, f"the upstream took longer than {self.proxy.upstream_timeout_s:g}s")
            return 0
        return ServerProtocol._check_timeout(self, now)

    cdef int _upstream_head(self, RequestParser parser) except -1:
        """Rewrite the upstream's response head for the client and send it."""
        cdef Proxy proxy = self.proxy
        cdef unsigned int i
        cdef set dropped = _connection_tokens(parser)
        cdef double waited = _now() - self.upstream_started
        if parser.status > 599:  # RFC 9110 §15: a status code is 100-599
            raise RemoteProtocolError(f"invalid status code {parser.status}", 502)
        _check_connection_tokens(dropped, 502)
        self.deadline = 0
        proxy.upstream_durations[_duration_bucket(waited)] += 1
        proxy.upstream_duration_sum_s += waited
        self.response_status = parser.status
        self.writer.open_body(self.shaping_rate if self.shaping == F_DRIP else 0.0)
        cdef list parts = [b"HTTP/1.1 %d " % parser.status, parser.head[13:parser.first_line_end], b"\r\n"]
        cdef const char* name
        cdef size_t n
        has_trace = has_request = False
        for i in range(parser.header_count):
            name = parser.head + g_headers[i].name_start
            n = g_headers[i].name_len
            if _not_copied(name, n, dropped) or _listed(proxy.response_names, name, n):
                continue
            has_trace |= n == 10 and _ieq(name, b"x-trace-id", 10)
            has_request |= n == 12 and _ieq(name, b"x-request-id", 12)
            parts += [parser.head[g_headers[i].name_start:g_headers[i].value_start + g_headers[i].value_len],
                      b"\r\n"]
        if not has_trace:
            parts += [b"X-Trace-Id: ", self.trace_id, b"\r\n"]
        if not has_request:
            parts += [b"X-Request-Id: ", self.request_id, b"\r\n"]
        parts += [proxy.response_fields, b"Via: 1.1 fastmock\r\n"]
        if parser.content_length >= 0 and not parser.chunked:
            parts.append(b"Content-Length: %d\r\n" % parser.content_length)
        body_follows = not self.head_only and parser.status != 204 and parser.status != 304
        if body_follows and (parser.chunked or parser.content_length < 0):
            if self.parser.http_minor == 1:  # re-framed for the client, chunk by chunk
                self.writer.chunked = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # an HTTP/1.0 client reads to the close
        if not self.keep_alive or self.server.draining:
            self.must_close = True
        if self.shaping == F_TRUNCATE:
            # half of an announced body; without a length, the first piece of it
            self.writer.truncate_at(parser.content_length // 2 if parser.content_length >= 0 and not parser.chunked
                                    else -1)
            self.must_close = True
        parts.append(CONNECTION_HEADERS[self._conn_mode()])
        parts.append(b"\r\n")
        data = b"".join(parts)
        self.response_bytes = len(data)
        self.writer.out.append(data)  # written with the body that came in this read (UpstreamConnection.data_received)
        self.head_sent = True
        return 0

    cdef int _upstream_body(self, const char* data, size_t length) except -1:
        if self.transport is None:
            return 0
        self.response_bytes += length
        if self.writer.add_body(data, length):  # the truncate fault: the rest stays unread, both ends close
            self._drop_upstream()
            self._end_exchange()
        return 0

    cdef void _drop_upstream(self):
        """Let go of the upstream connection mid-exchange: it is aborted, never reused."""
        cdef UpstreamConnection conn = self.upstream
        self.upstream = None
        self.deadline = 0
        if conn is not None:
            conn.downstream = None
            if conn.transport is not None:
                conn.transport.abort()

    cdef int _upstream_done(self) except -1:
        cdef UpstreamConnection conn = self.upstream
        if self.transport is None:
            return 0
        self.upstream = None
        self.deadline = 0
        self.proxy.release(conn)
        return self._end_exchange()

    cdef int _end_exchange(self) except -1:
        """The forwarded response is complete (or cut): once the writer has it all out, the next request."""
        self.forwarding = False
        self._done(self.response_status, self.response_bytes, _now() - self.upstream_started)
        return self.writer.end_body()  # -> _body_done -> _continue

    cdef int _upstream_failed(self, int kind, str message) except -1:
        """No usable answer from the upstream: 502 or 504 if the client has no head yet, else cut it off."""
        self.proxy.errors[kind] += 1
        self._drop_upstream()
        if self.transport is None or not self.forwarding:
            return 0
        self.forwarding = False
        if self.head_sent:
            self.transport.abort()
            return 0
        self.keep_alive = False  # the request body may be half-sent: this connection ends after the answer
        status = 504 if kind == E_TIMEOUT else 502
        self._respond(Response(status, b'{"error":"%s","trace_id":"%s"}' % (
            message.replace('"', "'").encode(), self.trace_id)))
        self.state = CS_READING
        self._flush()
        return 0

    cdef int _writer_full(self) except -1:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()  # the client reads slower than the upstream sends
        return 0

    cdef int _writer_ready(self) except -1:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()
        return 0

    # === Public API (asyncio protocol) ===

    def connection_lost(self, exc):
        self.connecting = _cancel(self.connecting)
        self._drop_upstream()  # the client left in the middle: the upstream connection is not reusable
        ServerProtocol.connection_lost(self, exc)
