# The response writer: status lines built once, a Date header refreshed once a second, static
# responses kept as ready bytes per connection variant and rebuilt only when the Date changes; and the
# ResponseWriter, which owns a connection's output: the batch of answers written once per read, flow
# control, the body producers (pattern stream, chunked frames, Server-Sent Events), the drip and truncate
# faults, and the close (FIN or RST). Everything a connection, the proxy or a WebSocket sends goes
# through it; without a transport it is sans-IO (send, then take the bytes), like the parser.

cdef enum ConnMode:
    CONN_DEFAULT      # HTTP/1.1 keep-alive: no Connection header needed
    CONN_KEEP_ALIVE   # HTTP/1.0 client that asked for keep-alive
    CONN_CLOSE

cdef bytes SERVER_HEADER = b"Server: fastmock\r\n"
cdef tuple CONNECTION_HEADERS = (b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n")
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

cdef list STATUS_LINES = [None] * 600
for _status in range(100, 600):
    try:
        _reason = HTTPStatus(_status).phrase
    except ValueError:
        _reason = "Unknown"
    STATUS_LINES[_status] = f"HTTP/1.1 {_status} {_reason}\r\n".encode("ascii")

cdef bytes g_date_header = b""
cdef unsigned int g_date_generation = 0


def refresh_date():
    """Recompute the Date header; cheap when the second hasn't changed."""
    global g_date_header, g_date_generation
    cdef bytes header = b"Date: " + formatdate(usegmt=True).encode("ascii") + b"\r\n"
    if header != g_date_header:
        g_date_header = header
        g_date_generation += 1

refresh_date()


def status_phrase(int status):
    """The reason phrase we send for ``status``."""
    return STATUS_LINES[status][13:-2].decode("ascii")


cdef inline bint _has_body(int status):
    # RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content
    return status >= 200 and status != 204 and status != 304


cdef enum Framing:
    FRAMING_AUTO        # Content-Length of the body or stream, or chunked for a framed stream
    FRAMING_CHUNKED     # the protocol sends chunks of its own
    FRAMING_CLOSE       # no length: the body runs to the close (HTTP/1.0 clients of an open-ended body)


cdef bytes _render(int status, bytes body, bytes content_type, list headers, int conn, bint head_only,
                  PatternStream stream=None, int framing=FRAMING_AUTO, bytes fields=b""):
    """The response's bytes; with a stream or a framing of its own, only the head: the protocol sends the body.
    ``fields`` are header lines (each ending in CRLF) added by the connection, not by the response."""
    parts = [STATUS_LINES[status], SERVER_HEADER, g_date_header]
    if content_type:
        parts.append(b"Content-Type: " + content_type + b"\r\n")
    if headers:
        for name, value in headers:
            parts.append(name + b": " + value + b"\r\n")
    parts.append(fields)
    if framing == FRAMING_CHUNKED or framing == FRAMING_AUTO and stream is not None and stream.frame_size:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif _has_body(status) and framing == FRAMING_AUTO:
        parts.append(b"Content-Length: %d\r\n" % (len(body) if stream is None else stream.remaining))
    parts.append(CONNECTION_HEADERS[conn])
    parts.append(b"\r\n")
    if _has_body(status) and not head_only and stream is None:
        parts.append(body)
    return b"".join(parts)


def render(int status, bytes body=b"", bytes content_type=b"", list headers=None, *,
           bint keep_alive=True, bint http10=False, bint head_only=False):
    """One complete response as bytes (Python surface of the writer, for tests and modes)."""
    if not 100 <= status <= 599:
        raise LocalProtocolError(f"status {status} out of range", 500)
    conn = CONN_CLOSE if not keep_alive else (CONN_KEEP_ALIVE if http10 else CONN_DEFAULT)
    return _render(status, body, content_type, headers, conn, head_only)


def error_response(int status, str msg, bytes fields=b""):
    """A protocol error answer: plain-text reason, then the connection closes."""
    return _render(status, msg.encode("utf-8") + b"\n", b"text/plain; charset=utf-8", None, CONN_CLOSE, False,
                   None, FRAMING_AUTO, fields)


cdef class StaticResponse:
    """A response whose bytes are built once (per Date second) for each connection variant."""

    def __cinit__(self, int status, bytes body, bytes content_type, list extra_headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.extra_headers = extra_headers
        self.variants = [None] * 6
        self.generation = g_date_generation

    cdef bytes get(self, int conn, bint head_only):
        cdef int i = conn * 2 + head_only
        cdef bytes data
        if self.generation != g_date_generation:
            self.variants = [None] * 6
            self.generation = g_date_generation
        data = <bytes>self.variants[i] if self.variants[i] is not None else None
        if data is None:
            data = _render(self.status, self.body, self.content_type, self.extra_headers, conn, head_only)
            self.variants[i] = data
        return data

    # === Public API ===

    cdef Response response(self):
        """The same answer as a Response: for one that gets more (a fault's status, the connection's fields)."""
        return Response(self.status, self.body, self.content_type, self.extra_headers)

    def bytes_for(self, *, bint keep_alive=True, bint http10=False, bint head_only=False):
        conn = CONN_CLOSE if not keep_alive else (CONN_KEEP_ALIVE if http10 else CONN_DEFAULT)
        return self.get(conn, head_only)


cdef class Response:
    """What a Python route handler returns; the protocol renders it (after ``delay_s``, if set)."""

    def __cinit__(self, int status=200, bytes body=b"", bytes content_type=b"application/json",
                  list headers=None, double delay_s=0.0, PatternStream stream=None, EventStream events=None,
                  object websocket=None):
        if not 100 <= status <= 599:
            raise LocalProtocolError(f"status {status} out of range", 500)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.delay_s = delay_s
        self.stream = stream
        self.events = events
        self.websocket = websocket


cdef class EventStream(BodyProducer):
    """Server-Sent Events: ``count`` events (0: until the client leaves), ``interval_s`` apart, the first at
    once; each has an ``id:`` and a ``data:`` line of ``size`` pattern bytes (0: a small JSON object). While
    waiting longer than ``heartbeat_s`` for the next one, a comment line keeps proxies from timing out.

    A Python subclass may override ``next_event`` to send its own events (an empty result sends nothing
    that time); its own constructor arguments must be keywords, which ``__cinit__`` ignores.
    """

    def __cinit__(self, long long count=10, double interval_s=1.0, Py_ssize_t size=0, double heartbeat_s=15.0,
                  **subclass_options):
        if count < 0 or interval_s < 0 or size < 0 or heartbeat_s <= 0:
            raise ValueError("count, interval and size must not be negative; the heartbeat must be positive")
        self.count = count
        self.interval_s = interval_s
        self.size = size
        self.heartbeat_s = heartbeat_s
        self.sent = 0
        self.next_at = 0.0

    cpdef bytes next_event(self):
        self.sent += 1
        if self.size:
            data = (PATTERN * (self.size // PATTERN_LEN + 1))[:self.size]
        else:
            data = b'{"id":%d,"time":%.3f}' % (self.sent, time.time())
        return b"id: %d\ndata: %b\n\n" % (self.sent, data)

    cdef int produce(self, ResponseWriter writer) except -1:
        """The event that is due (or a heartbeat comment), then a wait for the next."""
        cdef double now = _now()
        if now >= self.next_at:
            event = self.next_event()
            if event:
                writer.emit(writer.framed(event))
            self.next_at = now + self.interval_s
            if self.count and self.sent >= self.count:
                return STEP_DONE
        else:
            writer.emit(writer.framed(b": heartbeat\n\n"))
        writer.wait_s = min(max(0.0, self.next_at - _now()), self.heartbeat_s)
        return STEP_WAIT


# The streamed body pattern: byte i of a body is PATTERN[i % 36].
PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
cdef Py_ssize_t PATTERN_LEN = 36


def pattern_buffer(Py_ssize_t size):
    """A read-only buffer of about ``size`` bytes from which any pattern slice of that size can be taken.

    Its piece size is ``size`` rounded down to a multiple of 36; it holds 36 bytes more, so a slice of a
    full piece can start at any phase of the pattern.
    """
    cdef Py_ssize_t piece = max(PATTERN_LEN, size // PATTERN_LEN * PATTERN_LEN)
    data = PATTERN * (piece // PATTERN_LEN + 1)
    # Page-aligned (an anonymous mapping), not inside a bytes object at page offset 48: from there about a
    # quarter of /bin transfers ran at 2.3 GB/s instead of 5-7 (docs/architecture.md, "Streamed bodies").
    aligned = mmap.mmap(-1, len(data))
    aligned.write(data)
    return memoryview(aligned).toreadonly()


cdef class PatternStream(BodyProducer):
    """A body of ``length`` pattern bytes starting at pattern index ``start``, written as slices of one
    shared buffer. ``frame_size`` > 0 sends it chunked, one frame per ``frame_size`` bytes; with
    ``restart_frames`` each frame starts the pattern again at "A"; ``frame_delay_s`` paces the frames.
    """

    def __cinit__(self, long long length, long long start=0, *, long long frame_size=0,
                  bint restart_frames=False, double frame_delay_s=0.0):
        if length < 0 or start < 0 or frame_size < 0:
            raise ValueError("length, start and frame_size must not be negative")
        self.remaining = length
        self.phase = start % PATTERN_LEN
        self.frame_size = frame_size
        self.frame_left = 0
        self.restart_frames = restart_frames
        self.frame_delay_s = frame_delay_s

    cdef int produce(self, ResponseWriter writer) except -1:
        """One slice of the shared pattern buffer (with its frame's head and tail when chunked)."""
        cdef long long n
        if self.frame_size and self.frame_left == 0:
            if self.remaining == 0:
                return STEP_DONE
            n = min(self.frame_size, self.remaining)
            self.frame_left = n
            if self.restart_frames:
                self.phase = 0
            if n > 4096 or writer.rate > 0:
                writer.emit(b"%x\r\n" % n)
                return STEP_MORE
            # a small frame goes out whole, in one write
            writer.emit(_chunk(writer.pattern[self.phase:self.phase + n]))
        else:
            n = min(self.frame_left if self.frame_size else self.remaining, writer.piece_size)
            if n == 0:
                return STEP_DONE
            writer.emit(writer.pattern[self.phase:self.phase + n])
            if self.frame_size and n == self.frame_left:
                writer.emit(b"\r\n")
        self.phase = (self.phase + n) % PATTERN_LEN
        self.remaining -= n
        if self.frame_size:
            self.frame_left -= n
            if self.frame_left == 0 and self.frame_delay_s > 0 and self.remaining > 0:
                writer.wait_s = self.frame_delay_s
                return STEP_WAIT
        return STEP_DONE if self.remaining == 0 and self.frame_left == 0 else STEP_MORE

    cdef void cut_half(self):
        self.remaining //= 2


cdef bytes LAST_CHUNK = b"0\r\n\r\n"


cdef inline bytes _chunk(object data):
    """``data`` (bytes or a buffer) as one chunk of a chunked body (RFC 9112 §7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


cdef double DRIP_INTERVAL_S = 0.05          # a dripping response writes rate/20 bytes this often
cdef Py_ssize_t PACE_HIGH = 256 * 1024      # dripping bytes queued above this: the feeder must wait ...
cdef Py_ssize_t PACE_LOW = 64 * 1024        # ... until they are below this
cdef bytes LINGER_RESET = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0


cdef class BodyProducer:
    """A body written a piece at a time, when the writer can take it: ``produce`` writes (``writer.emit``)
    at most one piece and says what follows (STEP_MORE, STEP_WAIT with ``writer.wait_s``, STEP_DONE)."""

    cdef int produce(self, ResponseWriter writer) except -1:
        return STEP_DONE

    cdef void cut_half(self):
        """The truncate fault: the body ends halfway (its head announced all of it)."""
        pass


cdef class ResponseWriter:
    """A connection's output; see the module comment.

    Made from Python it is sans-IO: ``send(response)`` renders and writes, ``take()`` returns the bytes,
    ``run_due()`` stands in for the timer a producer waits on, ``tick()`` for the drip's timer.
    """

    def __cinit__(self):
        self.out = []
        self.bytes_out = &self.own_bytes_out
        self.cut_left = -1

    def __init__(self, Py_ssize_t buffer_size=64 * 1024):
        self.sent = []
        self.pattern = pattern_buffer(buffer_size)
        self.piece_size = len(self.pattern) - PATTERN_LEN

    cdef void attach(self, object loop, object pattern, Py_ssize_t piece_size, unsigned long long* bytes_out,
                     ServerProtocol owner):
        self.loop = loop
        self.pattern = pattern
        self.piece_size = piece_size
        self.bytes_out = bytes_out
        self.owner = owner

    cdef Py_ssize_t send(self, Response response, int conn, bint head_only, int http_minor, int fault_kind,
                         double fault_arg, unsigned long long* body_bytes, bytes fields=b"") except -1:
        """Render ``response`` (plus the header lines ``fields``) into the batch; returns the bytes rendered.
        A stream or events body follows from its producer (``body_open`` until it is out); a truncate fault
        halves the body, a drip fault paces everything from this response on at ``fault_arg`` bytes a second."""
        cdef int status = response.status
        cdef bint has_body = _has_body(status) and not head_only
        cdef PatternStream stream = response.stream
        cdef BodyProducer producer = None
        cdef Py_ssize_t body_len
        cdef bint events = response.events is not None and has_body
        data = _render(status, response.body, response.content_type, response.headers, conn, head_only, stream,
                       FRAMING_AUTO if not events else FRAMING_CHUNKED if http_minor else FRAMING_CLOSE, fields)
        if stream is not None and has_body:
            producer = stream
            self.chunked = stream.frame_size > 0
        elif events:
            producer = response.events
            self.chunked = http_minor == 1
        if fault_kind == F_TRUNCATE:
            self.cut = True
            if producer is not None:
                producer.cut_half()
            elif has_body:
                body_len = len(response.body)
                data = data[:len(data) - body_len + body_len // 2]
        if fault_kind == F_DRIP:
            self.flush()  # the answers before this one go at full speed
            self.open_body(fault_arg)
            self.body_ending = producer is None  # a plain response: done once it has dripped out
        elif producer is not None:
            self.open_body(0.0)
        self.out.append(data)
        self.producer = producer
        self.body_bytes = body_bytes if producer is not None else NULL
        return len(data)

    cdef int open_body(self, double rate) except -1:
        """A body follows (from a producer, or fed with add_body until end_body); ``rate`` > 0 drips it."""
        self.body_open = True
        self.body_ending = False
        self.rate = rate
        return 0

    cdef int truncate_at(self, long long body_bytes) except -1:
        """The truncate fault on a fed body: ``body_bytes`` of it (-1: its first piece), then the close."""
        self.cut = True
        self.cut_left = body_bytes
        return 0

    cdef bytes framed(self, bytes data):
        return _chunk(data) if self.chunked else data

    cdef bint add_body(self, const char* data, size_t length) except -1:
        """A piece of a fed body into the batch; whether the truncate fault cuts the body here."""
        if self.cut:
            if self.cut_left >= 0:
                length = min(length, <size_t>self.cut_left)
                self.cut_left -= length
            else:
                self.cut_left = 0  # the first piece goes, then the cut
        if length:
            self.out.append(self.framed(data[:length]))
        return self.cut and self.cut_left == 0

    cdef int end_body(self) except -1:
        """The body's last byte is written or queued: its last chunk follows; the owner hears once it is out."""
        if self.chunked and not self.cut:
            self.out.append(LAST_CHUNK)
        self.chunked = False
        self.producer = None
        self.body_ending = True
        self.flush()
        return self._finish_if_done()

    cdef int _finish_if_done(self) except -1:
        if not self.body_ending or self.paced_len:
            return 0
        self.body_open = self.body_ending = self.cut = False
        self.rate = 0
        self.cut_left = -1
        self.body_bytes = NULL
        if self.owner is not None:
            self.owner._body_done()
        return 0

    cdef int emit(self, object data) except -1:
        """Write now (or queue for the drip's tick)."""
        cdef Py_ssize_t n = len(data)
        if n == 0:
            return 0
        if self.rate > 0:
            if self.paced is None:
                self.paced = []
            self.paced.append(data)
            self.paced_len += n
            if self.pace_handle is None and self.loop is not None:
                self.pace_handle = self.loop.call_soon(self._pace)
            return self._update_full()
        self.bytes_out[0] += n
        if self.body_bytes != NULL:
            self.body_bytes[0] += n
        if self.transport is not None:
            self.transport.write(data)
        elif self.sent is not None:
            self.sent.append(bytes(data))
        return 0

    cdef int flush(self) except -1:
        """Write the batch in one write, then let a producer go on."""
        cdef list out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.emit(data)
        if self.producer is not None:
            self._run()
        return 0

    cdef int _run(self) except -1:
        """Ask the producer for pieces while the transport takes them (resume() calls us again)."""
        cdef int step
        # a transport that is closing drops writes without ever pausing us: stop there, or a client that
        # left a /chunked/9223372036854775807?size=1 would keep this loop (and the process) busy for ever
        while self.producer is not None and not self.waiting and not self.transport_paused and self.paced_len == 0:
            if self.transport is not None and self.transport.is_closing():
                return 0
            step = self.producer.produce(self)
            if step == STEP_DONE:
                self.end_body()
            elif step == STEP_WAIT:
                self.waiting = True
                if self.loop is not None:
                    self.wait_handle = self.loop.call_later(self.wait_s, self._wake)
        return 0

    def _wake(self):
        self.wait_handle = None
        self.waiting = False
        if not self.closed:
            self._run()

    def _pace(self):
        """The drip: rate/20 bytes every 50 ms from the queue; the producer refills an empty queue."""
        cdef Py_ssize_t n = max(1, <Py_ssize_t>(self.rate * DRIP_INTERVAL_S)), size
        self.pace_handle = None
        if self.closed:
            return
        # held while writing, so what a producer queues now waits for the next tick
        self.pace_handle = self.loop.call_later(DRIP_INTERVAL_S, self._pace) if self.loop is not None else True
        pieces = []
        while n > 0 and self.paced:
            piece = self.paced[0]
            size = len(piece) - self.paced_offset
            if size <= n:
                pieces.append(piece[self.paced_offset:] if self.paced_offset else piece)
                del self.paced[0]
                self.paced_offset = 0
                n -= size
                self.paced_len -= size
            else:
                pieces.append(piece[self.paced_offset:self.paced_offset + n])
                self.paced_offset += n
                self.paced_len -= n
                n = 0
        rate, self.rate = self.rate, 0  # written now, not queued again
        for piece in pieces:
            self.emit(piece)
        self.rate = rate
        self._update_full()
        if self.paced_len == 0:
            self._run()
            self._finish_if_done()
        if self.paced_len == 0 and not self.body_open:
            self.pace_handle = _cancel(self.pace_handle) if self.loop is not None else None

    cdef int _update_full(self) except -1:
        """Tell the owner when the output backs up (the transport paused, or too much dripping) and drains."""
        if self.pace_full and self.paced_len < PACE_LOW:
            self.pace_full = False
        elif not self.pace_full and self.paced_len > PACE_HIGH:
            self.pace_full = True
        full = self.transport_paused or self.pace_full
        if full != self.reported_full and self.owner is not None:
            self.reported_full = full
            if full:
                self.owner._writer_full()
            else:
                self.owner._writer_ready()
        return 0

    cdef int pause(self) except -1:
        self.transport_paused = True
        return self._update_full()

    cdef int resume(self) except -1:
        self.transport_paused = False
        self._update_full()
        return self._run()

    cdef int close(self) except -1:
        """End the connection once the transport has written what it holds (FIN), or at once with RST."""
        if self.closed:
            return 0
        self.closed = True
        if self.transport is None:
            return 0
        if self.reset:  # SO_LINGER 0: close() sends RST, not FIN
            self.transport.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
            self.transport.abort()
        else:
            self.transport.close()
        return 0

    cdef void release(self):
        """The connection is gone: stop every timer, drop the body, break the cycle with the owner."""
        self.wait_handle = _cancel(self.wait_handle)
        if self.loop is not None:
            self.pace_handle = _cancel(self.pace_handle)
        self.producer = None
        self.paced = None
        self.paced_len = 0
        self.transport = None
        self.owner = None
        self.closed = True

    # === Public API (sans-IO, for tests) ===

    def send_response(self, Response response, *, bint keep_alive=True, bint http10=False,
                      bint head_only=False, bint truncate=False, double drip_rate=0.0):
        """Render and write ``response`` as a connection would (its body too, unless paused or waiting)."""
        conn = CONN_CLOSE if not keep_alive else (CONN_KEEP_ALIVE if http10 else CONN_DEFAULT)
        kind = F_TRUNCATE if truncate else F_DRIP if drip_rate > 0 else F_NONE
        self.send(response, conn, head_only, 0 if http10 else 1, kind, drip_rate, NULL)
        self.flush()

    def take(self):
        """Everything written since the last take."""
        data = b"".join(self.sent)
        self.sent.clear()
        return data

    def run_due(self):
        """The wait a producer asked for is over."""
        self.waiting = False
        self._run()

    def tick(self):
        """One drip tick."""
        self._pace()

    def pause_writing(self):
        self.pause()

    def resume_writing(self):
        self.resume()
