# The connection: one client connection's protocol, from uvloop's reads to the writer.
#
# uvloop reads into the server's one buffer (BufferedProtocol: no bytes object per read) and the parser
# calls back for each request: _on_head matches the route (and draws a fault), _on_body keeps or counts the
# body, _on_message_complete answers: a static route's ready bytes, or a handler's Response rendered by the
# writer. Answers collect in the writer's batch, which goes out in one write once the read is parsed.
#
# What the connection is doing is its `state` (ConnState in connection.pxd):
#
#   state       event                                                     next state
#   READING     an answer that needs a timer, a task or the upstream      WAITING   (parser paused)
#   READING     an answer with a body to produce, or a drip               SENDING   (parser paused)
#   READING     101 with a WebSocket                                      UPGRADED  (parser done)
#   WAITING     the answer is made: as from READING, else                 READING   (parser resumed)
#   WAITING     a timeout hold ends                                       READING, and the close
#   SENDING     the writer's body is out (_body_done)                     READING   (parser resumed)
#   any         connection_lost                                           CLOSED
#
# `must_close` is set by what a request asks (Connection: close, HTTP/1.0 without keep-alive), by errors,
# faults and draining: no more requests are read, and the writer closes the transport once the state is
# READING again. Timeouts are checked by the server's tick (_check_timeout), never a timer per connection.

cdef bytes FAULT_HEADER = b"x-fastmock-fault"
cdef bytes INTERNAL_ERROR = b'{"error":"internal server error"}'


cdef Response _fault_header_error(ValueError exc):
    """The 400 answer to an X-Fastmock-Fault value that is not a fault spec: what and where (the hook's
    FaultSpecError carries the position and an example spec)."""
    example = getattr(exc, "example", None)
    answer = {"error": str(exc), "position": getattr(exc, "position", None),
              "example": f"X-Fastmock-Fault: {example}" if example else None}
    return Response(400, json.dumps(answer).encode())
cdef object log = logging.getLogger("fastmock")


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



cdef class ServerProtocol(ParserHandler):
    """One connection; see the module comment."""

    def __init__(self):
        raise TypeError("ServerProtocol is not supposed to be instantiated from Python")

    cdef int _conn_mode(self):
        if not self.keep_alive or self.must_close or self.server.draining:
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
                try:
                    plan = server.header_faults(value)
                except ValueError as exc:  # a spec that does not parse
                    return self._answer_early(_fault_header_error(exc))
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
            self.writer.out.append(CONTINUE_100)
        return 0

    cdef bint _draw_fault(self, FaultPlan plan) except -1:
        """Draw this request's outcome from ``plan`` and count it; whether there is a fault to apply."""
        self.fault_plan = plan  # keeps the drawn outcome alive
        self.fault = plan.draw(self.server.fault_rng, &self.fault_delay_s)
        self.server.counters.fault_counts[self.fault.kind] += 1
        if self.fault.kind == F_OK and self.fault_delay_s <= 0:
            self.fault = NULL  # the route's own answer, at once: nothing to do
        return self.fault != NULL

    cdef FaultOutcome* _take_fault(self):
        """Hand the drawn outcome (NULL: none) to a subclass that applies it its own way; this class then
        answers the request as if it had drawn nothing. The delay stays in ``fault_delay_s``."""
        cdef FaultOutcome* fault = self.fault
        self.fault = NULL
        return fault

    cdef int _answer_early(self, Response response) except -1:
        """Answer from the head, before the body (if any) is read."""
        if self.parser.in_body():
            self.keep_alive = False  # the body stays unread: close after answering
        self.fault = NULL
        self._respond(response)
        return 1 if self.must_close else 0

    cdef int _on_body(self, const char* data, size_t length) except -1:
        cdef Py_ssize_t kept, take
        self.body_size += length
        if self.route is not None:  # None once answered early: the rest of the body is unread noise
            self.server.counters.route_bytes_in[self.route.index] += length
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
            return 1 if self.must_close else 0
        self.read_pause_s = 0
        return self._answer()

    cdef int _answer(self) except -1:
        cdef Route route = self.route
        cdef StaticResponse static
        cdef int conn
        if self.fault != NULL:
            return self._answer_fault()
        if route.static is not None and not self._answer_fields():
            static = self._static(route)
            conn = self._conn_mode()
            data = static.get(conn, self.head_only)
            self.writer.out.append(data)
            self._done(static.status, len(data), 0.0)
            if conn == CONN_CLOSE:
                self.must_close = True
                return 1
            return 0
        response = self._call_handler() if route.static is None else self._static(route).response()
        if not isinstance(response, Response):
            # an awaitable (a handler that waits for something else): answer when it is done
            self._wait_for(asyncio.ensure_future(response, loop=self.server.loop))
            self.delay_handle.add_done_callback(self._finish_awaited)
            return 1
        if (<Response>response).delay_s > 0:
            return self._respond_later(response)
        self._respond(response)
        return 1 if self.must_close or self.state != CS_READING else 0

    cdef bytes _answer_fields(self):
        """Header lines added to every answer to the current request (the proxy's trace ids); none here."""
        return b""

    cdef StaticResponse _static(self, Route route):
        """The route's static response as it stands (its draining variant during a graceful shutdown)."""
        return route.static_draining if self.server.draining and route.static_draining else route.static

    cdef int _respond_later(self, Response response) except -1:
        """The response asks for a delay: the parser waits until _finish_delayed sends it."""
        return self._wait_for(_call_later_at_least(self.server.loop, response.delay_s, self._finish_delayed, response))

    cdef int _wait_for(self, object handle) except -1:
        """The answer comes from ``handle`` (a timer or a task): the parser waits; returns 1 (pause it)."""
        self.state = CS_WAITING
        self.delay_handle = handle
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
            delay_s = min(self.fault_delay_s, self.server.max_hang_s)
            return self._wait_for(_call_later_at_least(self.server.loop, delay_s, self._fault_after_delay))
        self._apply_fault()
        return 1 if self.must_close or self.state != CS_READING else 0

    cdef int _apply_fault(self) except -1:
        cdef int kind = self.fault.kind
        cdef Route route = self.route
        cdef StaticResponse static
        cdef double hold_s
        if kind == F_TIMEOUT or kind == F_RESET or kind == F_CLOSE or kind == F_GARBAGE:
            # no response: the connection ends (after what was already answered on it)
            if self.server.request_log is not None:
                self._log_request(0, kind)
            self.must_close = True
            self.route = None
            self.request = None
            if kind == F_GARBAGE:
                self.writer.out.append(self._garbage())
            elif kind == F_RESET:
                self.writer.reset = True
            elif kind == F_TIMEOUT:
                # hold: nothing is sent until the client leaves, the timeout's own duration or --max-hang
                hold_s = self.fault.arg if 0 < self.fault.arg < self.server.max_hang_s else self.server.max_hang_s
                self._wait_for(_call_later_at_least(self.server.loop, hold_s, self._end_hold))
            self.fault = NULL
            return 0
        if route.static is not None:
            response = self._static(route).response()
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
            self.ws.feed(self.writer, data, len(data))
        return 0

    cdef int _respond(self, Response response) except -1:
        cdef int conn = self._conn_mode()
        cdef int kind = self.fault.kind if self.fault != NULL else F_NONE
        cdef double arg = self.fault.arg if self.fault != NULL else 0.0
        cdef Py_ssize_t nbytes
        if response.events is not None and self.parser.http_minor == 0:
            self.must_close = True  # an HTTP/1.0 client reads the events to the close
            conn = CONN_CLOSE
        if kind == F_TRUNCATE:  # the head announces the whole body; half of it comes, then the close
            self.must_close = True
        nbytes = self.writer.send(response, conn, self.head_only, self.parser.http_minor, kind, arg,
                                  &self.server.counters.route_bytes_out[self.route.index] if self.route is not None
                                  else NULL, self._answer_fields())
        self._done(response.status, nbytes, _now() - self.started)
        if response.websocket is not None and response.status == 101:
            # the connection speaks WebSocket from here on; bytes that came after the handshake are frames
            self.ws = <WebSocket?>response.websocket
            self.state = CS_UPGRADED  # no HTTP timeouts, no more requests; the parser stops here
            return self._flush()
        if self.writer.body_open:
            self.state = CS_SENDING  # the body follows from the writer; the parser waits for _body_done
        if conn == CONN_CLOSE:
            self.must_close = True
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
            self.server_text = _format_addr(self.transport.get_extra_info("sockname")).encode()
        self.server.request_log.add(started, _now() - started if self.request is not None else 0.0, status,
                                    outcome, self.log_method, self.log_method_len, self.log_path,
                                    self.log_path_len, self.client_text, self.server_text)
        self.log_method_len = self.log_path_len = 0  # a protocol error next logs no stale method or path

    cdef void _set_addresses(self, Request req):
        if req.client_addr is None:
            req.client_addr = _format_addr(self.transport.get_extra_info("peername"))
            req.server_addr = _format_addr(self.transport.get_extra_info("sockname"))
            req.tls = self.transport.get_extra_info("ssl_object")

    cdef int _flush(self) except -1:
        self.writer.flush()
        if self.must_close and self.state == CS_READING and self.transport is not None:
            self.writer.close()
        return 0

    cdef int _body_done(self) except -1:
        return self._continue()

    cdef int _writer_full(self) except -1:
        return 0

    cdef int _writer_ready(self) except -1:
        return 0

    cdef int _continue(self) except -1:
        """The pending response (delayed or streamed) is complete: go on with pipelined requests."""
        self.state = CS_READING
        if not self.must_close:
            try:
                self.parser.resume()
            except RemoteProtocolError as exc:
                self._protocol_error(exc.status, exc.msg)
                return 0
            if self.state == CS_UPGRADED:  # a pipelined upgrade was answered
                return self._hand_over_leftovers()
            if self.parser.has_partial_head():
                self.head_started = g_now
        self._flush()
        if self.backlog_paused and self.state == CS_READING and not self.must_close:
            self.backlog_paused = False
            self.transport.resume_reading()
        return 0

    cdef int _after_late_response(self) except -1:
        """A response made outside the parser (after a delay) is out: go on from where it leaves us."""
        if self.state == CS_UPGRADED:
            return self._hand_over_leftovers()
        if self.state != CS_READING:
            return self._flush()  # a stream, a drip, a hold: they go on from their own callbacks
        return self._continue()

    cdef int _protocol_error(self, int status, str msg) except -1:
        self.route = self.server.error_route
        self.request = None
        data = error_response(status, msg, self._answer_fields())
        self.writer.out.append(data)
        self._done(status, len(data), 0.0)
        self.must_close = True
        self._flush()
        return 0

    cdef int _check_timeout(self, double now) except -1:
        cdef Server server = self.server
        if self.state == CS_UPGRADED:
            return self.ws.check_idle(self.writer, now, self.last_active)
        if self.state != CS_READING or self.must_close:
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
            self.writer.close()
        return 0

    cdef int _drain(self) except -1:
        if self.state == CS_UPGRADED:
            return self.ws.shutdown(self.writer)
        if self.state == CS_READING and not self.parser.in_body() and not self.parser.has_partial_head() \
                and not self.writer.out:
            self.must_close = True
            self.writer.close()
        return 0

    cdef int _feed(self, const char* data, size_t length) except -1:
        cdef bint was_partial = self.parser.has_partial_head()
        if self.state == CS_UPGRADED:
            return self.ws.feed(self.writer, data, length)
        try:
            self.parser.feed_ptr(data, length)
        except RemoteProtocolError as exc:
            self._protocol_error(exc.status, exc.msg)
            return 0
        if self.state == CS_UPGRADED:  # the upgrade was answered in this read
            return self._hand_over_leftovers()
        if not was_partial and self.parser.has_partial_head():
            self.head_started = self.last_active
        self._flush()
        # while a response is delayed, pipelined bytes pile up in the parser: stop reading past a limit
        if self.state != CS_READING and self.parser.buf_len > self.server.max_header_size and not self.backlog_paused:
            self.backlog_paused = True
            self.transport.pause_reading()
        return 0

    # === Public API (asyncio protocol) ===

    def connection_made(self, transport):
        cdef Server server = self.server
        if server.at_capacity(transport):
            server.counters.connections_rejected += 1
            transport.abort()
            return
        self.transport = transport
        self.writer.transport = transport
        # uvloop already sets TCP_NODELAY on every TCP transport
        transport.set_write_buffer_limits(server.write_buffer_size)
        server.connections.add(self)
        server.counters.connections_total += 1
        self.last_active = g_now
        if server.draining:
            self._drain()

    def connection_lost(self, exc):
        if self.transport is None:  # refused in connection_made
            return
        self.state = CS_CLOSED
        self.server.connections.discard(self)
        self.delay_handle = _cancel(self.delay_handle)
        self.resume_handle = _cancel(self.resume_handle)
        self.writer.release()  # a client that leaves stops its stream at once
        self.transport = None
        self.parser.release()
        self.parser.handler = None  # break the cycle parser -> protocol
        self.request = None
        self.body = None

    def get_buffer(self, Py_ssize_t sizehint):
        return self.server.slow_read_view if self.read_pause_s > 0 else self.server.read_view

    def buffer_updated(self, Py_ssize_t nbytes):
        self.server.counters.bytes_in += nbytes
        self.last_active = g_now
        if self.must_close:
            return
        self._feed(PyByteArray_AS_STRING(self.server.read_buffer), nbytes)

    def eof_received(self):
        # A client that half-closes is treated as gone (as nginx does): a pending delay is cancelled.
        return False

    def pause_writing(self):
        self.writer.pause()

    def resume_writing(self):
        self.writer.resume()

    def _resume_reading(self):
        self.resume_handle = None
        if self.transport is not None and not self.must_close:
            self.transport.resume_reading()

    def _fault_after_delay(self):
        self.delay_handle = None
        self.state = CS_READING
        if self.transport is None:
            return
        self._apply_fault()
        self._after_late_response()

    def _end_hold(self):
        self.delay_handle = None
        self.state = CS_READING
        if self.transport is not None:
            self.writer.close()

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
        self.state = CS_READING
        if self.transport is None:
            return
        self._respond(response)
        self._after_late_response()
