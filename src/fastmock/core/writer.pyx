# The response writer: status lines built once, a Date header refreshed once a second, static
# responses kept as ready bytes per connection variant and rebuilt only when the Date changes.

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
                  PatternStream stream=None, int framing=FRAMING_AUTO):
    """The response's bytes; with a stream or a framing of its own, only the head: the protocol sends the body."""
    parts = [STATUS_LINES[status], SERVER_HEADER, g_date_header]
    if content_type:
        parts.append(b"Content-Type: " + content_type + b"\r\n")
    if headers:
        for name, value in headers:
            parts.append(name + b": " + value + b"\r\n")
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


def error_response(int status, str msg):
    """A protocol error answer: plain-text reason, then the connection closes."""
    return _render(status, msg.encode("utf-8") + b"\n", b"text/plain; charset=utf-8", None, CONN_CLOSE, False)


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


cdef class EventStream:
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


cdef class PatternStream:
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
