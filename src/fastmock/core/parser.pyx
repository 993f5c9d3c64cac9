# A sans-IO, incremental HTTP/1.1 request parser (RFC 9112), strict about framing.
#
# Bytes go in through feed(); events come out through a ParserHandler's cdef callbacks (the server
# protocol), or, from Python, as a list of Request / Data / EndOfMessage objects. Requests may arrive
# split at any byte: whatever cannot be parsed yet is kept in one malloc'd buffer, and head scanning
# resumes where it stopped, so a head trickling in byte by byte is still scanned in linear time.

cdef enum:
    SP = 32
    HT = 9
    CR = 13
    LF = 10
    COLON = 58
    # RFC 9112 §7.1: a chunk-size line is short; cap it (with its extensions) so a peer can't make us buffer
    MAX_CHUNK_LINE = 4096
    MAX_HEADERS_CAP = 4096

cdef enum ParserState:
    S_HEAD
    S_BODY_LENGTH
    S_CHUNK_SIZE
    S_CHUNK_DATA
    S_CHUNK_DATA_END
    S_TRAILERS
    S_BODY_EOF      # a response without length: its body runs to the end of the connection

cdef enum MethodId:
    M_OTHER
    M_GET
    M_HEAD
    M_POST
    M_PUT
    M_DELETE
    M_OPTIONS
    M_PATCH

cdef long long MAX_INT63 = 0x7FFFFFFFFFFFFFFF

# Scratch for the head being parsed: the parser runs synchronously and one at a time per process.
cdef HeaderSpan g_headers[MAX_HEADERS_CAP]

# RFC 9110 §5.6.2: token = 1*tchar; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#                  "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
cdef char TOKEN[256]
# RFC 9110 §5.5: field-value = *field-content; field-vchar = VCHAR / obs-text, with SP / HTAB inside.
cdef char FIELD_VALUE[256]
# RFC 9112 §3.2 / RFC 3986: request-target is visible ASCII; "#" (a fragment) is never sent.
cdef char TARGET[256]


cdef void _init_tables():
    cdef int c
    for c in range(256):
        TOKEN[c] = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c in b"!#$%&'*+-.^_`|~"
        FIELD_VALUE[c] = c == HT or (32 <= c <= 126) or c >= 128
        TARGET[c] = 33 <= c <= 126 and c != 35

_init_tables()

# indexed by MethodId: known methods cost no string allocation
cdef tuple METHOD_NAMES = (None, "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


cdef inline bint _ieq(const char* p, const char* lower, size_t n):
    # ASCII case-insensitive compare of token characters against a lower-case literal
    cdef size_t i
    for i in range(n):
        if (<unsigned char>p[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


cdef inline int _method_id(const char* p, size_t n):
    if n == 3 and memcmp(p, b"GET", 3) == 0:
        return M_GET
    if n == 4 and memcmp(p, b"HEAD", 4) == 0:
        return M_HEAD
    if n == 4 and memcmp(p, b"POST", 4) == 0:
        return M_POST
    if n == 3 and memcmp(p, b"PUT", 3) == 0:
        return M_PUT
    if n == 6 and memcmp(p, b"DELETE", 6) == 0:
        return M_DELETE
    if n == 7 and memcmp(p, b"OPTIONS", 7) == 0:
        return M_OPTIONS
    if n == 5 and memcmp(p, b"PATCH", 5) == 0:
        return M_PATCH
    return M_OTHER


cdef inline bint _is_ows(char c):
    return c == SP or c == HT


cdef class ParserHandler:
    """Receives parser events in C; the server protocol is one."""

    cdef int _on_head(self, RequestParser parser) except -1:
        return 0

    cdef int _on_body(self, const char* data, size_t length) except -1:
        return 0

    cdef int _on_message_complete(self) except -1:
        return 0


cdef class EventCollector(ParserHandler):
    """Turns parser events into Python objects, for RequestParser.feed() called from Python."""

    def __cinit__(self):
        self.events = []

    cdef int _on_head(self, RequestParser parser) except -1:
        self.events.append(parser.make_response_head() if parser.response_mode else parser.make_request())
        return 0

    cdef int _on_body(self, const char* data, size_t length) except -1:
        cdef Data event = Data.__new__(Data)
        event.data = data[:length]
        self.events.append(event)
        return 0

    cdef int _on_message_complete(self) except -1:
        self.events.append(END_OF_MESSAGE)
        return 0


cdef class ResponseHead:
    """A parsed response head (a parser in response mode gives these instead of Requests)."""

    def __repr__(self):
        return f"<ResponseHead {self.status} {self.reason!r}>"


cdef class Data:
    """A piece of a message body, as it arrived (chunk framing removed)."""

    def __repr__(self):
        return f"Data({self.data!r})"

    def __eq__(self, other):
        return isinstance(other, Data) and (<Data>other).data == self.data


cdef class EndOfMessage:
    """The request, body included, is complete."""

    def __repr__(self):
        return "EndOfMessage()"

    def __eq__(self, other):
        return isinstance(other, EndOfMessage)


# it carries nothing, so one instance serves every message
cdef EndOfMessage END_OF_MESSAGE = EndOfMessage.__new__(EndOfMessage)


@cython.freelist(64)
cdef class Request:
    """One request head. The head's bytes are kept whole; strings are decoded when first asked for."""

    def __init__(self):
        raise TypeError("Request is not supposed to be instantiated from Python")

    @property
    def target(self):
        return self._head[self._target_start:self._target_start + self._target_len].decode("latin-1")

    @property
    def path(self):
        if self._path_len == 0:
            return "/"
        return self._head[self._path_start:self._path_start + self._path_len].decode("latin-1")

    @property
    def query_string(self):
        return self._head[self._query_start:self._query_start + self._query_len].decode("latin-1")

    @property
    def http_version(self):
        return "HTTP/1.1" if self.http_minor == 1 else "HTTP/1.0"

    @property
    def headers(self):
        """[(name, value), ...] as received, decoded as latin-1."""
        cdef const HeaderSpan* spans = <const HeaderSpan*><const char*>self._spans
        cdef Py_ssize_t i, n = len(self._spans) // sizeof(HeaderSpan)
        cdef const char* head = self._head
        return [
            (head[spans[i].name_start:spans[i].name_start + spans[i].name_len].decode("latin-1"),
             head[spans[i].value_start:spans[i].value_start + spans[i].value_len].decode("latin-1"))
            for i in range(n)
        ]

    def __repr__(self):
        return f"<Request {self.method} {self.target} {self.http_version}>"


cdef inline bytes _value_of(RequestParser parser, unsigned int i):
    """The value of header ``i`` of the head being parsed (valid during _on_head only)."""
    return parser.head[g_headers[i].value_start:g_headers[i].value_start + g_headers[i].value_len]


cdef class RequestParser:
    """Incremental HTTP/1.1 request parser; see the module comment.

    From Python: ``events = parser.feed(data)``; errors raise RemoteProtocolError with ``.status``.
    """

    def __cinit__(self):
        self.buf = NULL
        self.buf_len = self.buf_cap = 0
        self.state = S_HEAD
        self.paused = False
        self.scan_pos = self.line_start = self.first_line_len = 0
        self.line_count = 0
        self.trailer_size = 0
        self.body_remaining = 0
        self.head = NULL
        self.head_len = 0

    def __init__(self, *, size_t max_target_size=8192, size_t max_header_size=65536,
                 unsigned int max_headers=100, bint response=False):
        if max_headers > MAX_HEADERS_CAP:
            raise ValueError(f"max_headers must be at most {MAX_HEADERS_CAP}")
        self.max_target_size = max_target_size
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.response_mode = response
        self.handler = EventCollector()

    def __dealloc__(self):
        self.release()

    cdef void release(self):
        if self.buf != NULL:
            PyMem_Free(self.buf)
            self.buf = NULL
        self.buf_len = self.buf_cap = 0

    cdef inline bint has_partial_head(self):
        return self.state == S_HEAD and self.buf_len > 0

    cdef inline bint in_body(self):
        return self.state != S_HEAD

    cdef ResponseHead make_response_head(self):
        cdef ResponseHead head = ResponseHead.__new__(ResponseHead)
        head.status = self.status
        head.reason = self.head[13:self.first_line_end].decode("latin-1")
        head.http_minor = self.http_minor
        head.keep_alive = self.keep_alive
        head.chunked = self.chunked
        head.content_length = self.content_length
        head.headers = [
            (self.head[g_headers[i].name_start:g_headers[i].name_start + g_headers[i].name_len].decode("latin-1"),
             _value_of(self, i).decode("latin-1"))
            for i in range(self.header_count)
        ]
        return head

    cdef Request make_request(self):
        cdef Request req = Request.__new__(Request)
        req._head = self.head[:self.head_len]
        req._spans = (<char*>g_headers)[:self.header_count * sizeof(HeaderSpan)]
        req._target_start = self.target_start
        req._target_len = self.target_len
        req._path_start = self.path_start
        req._path_len = self.path_len
        req._query_start = self.query_start
        req._query_len = self.query_len
        if self.method_id == M_OTHER:
            req.method = self.head[:self.method_len].decode("ascii")
        else:
            req.method = METHOD_NAMES[self.method_id]
        req.http_minor = self.http_minor
        req.keep_alive = self.keep_alive
        req.chunked = self.chunked
        req.expect_continue = self.expect_continue
        req.content_length = self.content_length
        req.body = b""
        req.body_size = 0
        req.body_truncated = False
        req.read_pause_s = 0.0
        return req

    # --- feeding ---------------------------------------------------------------------------------

    cdef int feed_ptr(self, const char* data, size_t length) except -1:
        cdef Py_ssize_t consumed
        if self.paused or self.buf_len:
            self._append(data, length)
            if not self.paused:
                self._run_buffer()
            return 0
        consumed = self._parse(data, length)
        if <size_t>consumed < length:
            self._append(data + consumed, length - consumed)
        return 0

    cdef int resume(self) except -1:
        """Continue after a handler paused us, with the bytes that arrived meanwhile."""
        self.paused = False
        if self.buf_len:
            self._run_buffer()
        return 0

    cdef bytes take_buffered(self):
        """The bytes waiting after the message the parser paused on, handed to another protocol (an upgrade).

        Only a paused parser gives them up: inside a callback it is still walking this buffer.
        """
        if not self.paused:
            raise RuntimeError("the parser hands over its buffer only once it has paused and returned")
        data = self.buf[:self.buf_len]
        self.release()
        return data

    cdef int _append(self, const char* data, size_t length) except -1:
        cdef size_t need = self.buf_len + length
        cdef size_t cap
        cdef char* grown
        if need > self.buf_cap:
            cap = max(need, self.buf_cap * 2, 1024)
            grown = <char*>PyMem_Realloc(self.buf, cap)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.buf_cap = cap
        memcpy(self.buf + self.buf_len, data, length)
        self.buf_len = need
        return 0

    cdef int _run_buffer(self) except -1:
        cdef Py_ssize_t consumed = self._parse(self.buf, self.buf_len)
        if consumed:
            self.buf_len -= consumed
            memmove(self.buf, self.buf + consumed, self.buf_len)
            if self.buf_len == 0 and self.buf_cap > 65536:
                # a pipelined burst is over: don't keep its buffer for the connection's lifetime
                self.release()
        return 0

    cdef Py_ssize_t _parse(self, const char* p, size_t n) except -1:
        """Parse as much of p[0:n] as possible; return how many bytes were consumed."""
        cdef size_t pos = 0, take, head_len
        cdef const char* lf
        cdef int rc
        while not self.paused:
            if self.state == S_HEAD:
                # RFC 9112 §2.2: ignore at least one empty line (CRLF) before the request-line
                if self.line_count == 0 and self.scan_pos <= 1:
                    while n - pos >= 2 and p[pos] == CR and p[pos + 1] == LF:
                        pos += 2
                        self.scan_pos = 0
                if pos == n:
                    break
                head_len = self._find_head_end(p + pos, n - pos)
                if head_len == 0:
                    break
                self._parse_head(p + pos, head_len)
                pos += head_len
                rc = self.handler._on_head(self)
                self.head = NULL
                if self.state == S_HEAD:
                    self._message_complete()
                if rc:
                    self.paused = True
            elif self.state == S_BODY_LENGTH or self.state == S_CHUNK_DATA:
                if pos == n:
                    break
                take = min(<size_t>self.body_remaining, n - pos)
                self.body_remaining -= take
                rc = self.handler._on_body(p + pos, take)
                pos += take
                if self.body_remaining == 0:
                    if self.state == S_CHUNK_DATA:
                        self.state = S_CHUNK_DATA_END
                    else:
                        self.state = S_HEAD
                        self._message_complete()
                if rc:
                    self.paused = True
            elif self.state == S_BODY_EOF:
                if pos == n:
                    break
                rc = self.handler._on_body(p + pos, n - pos)
                pos = n
                if rc:
                    self.paused = True
            elif self.state == S_CHUNK_DATA_END:
                # RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
                if n - pos < 2:
                    if n - pos == 1 and p[pos] != CR:
                        raise RemoteProtocolError("missing CRLF after chunk data", 400)
                    break
                if p[pos] != CR or p[pos + 1] != LF:
                    raise RemoteProtocolError("missing CRLF after chunk data", 400)
                pos += 2
                self.state = S_CHUNK_SIZE
            elif self.state == S_CHUNK_SIZE:
                lf = <const char*>memchr(p + pos, LF, n - pos)
                if lf == NULL:
                    if n - pos > MAX_CHUNK_LINE:
                        raise RemoteProtocolError("chunk size line too long", 400)
                    break
                take = lf - (p + pos) + 1
                if take > MAX_CHUNK_LINE:
                    raise RemoteProtocolError("chunk size line too long", 400)
                self.body_remaining = _parse_chunk_size(p + pos, take)
                pos += take
                if self.body_remaining == 0:
                    self.state = S_TRAILERS
                    self.trailer_size = 0
                else:
                    self.state = S_CHUNK_DATA
            else:  # S_TRAILERS
                # RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then the final CRLF
                lf = <const char*>memchr(p + pos, LF, n - pos)
                if lf == NULL:
                    if self.trailer_size + (n - pos) > self.max_header_size:
                        raise RemoteProtocolError("trailer section too large", 431)
                    break
                take = lf - (p + pos) + 1
                self.trailer_size += take
                if self.trailer_size > self.max_header_size:
                    raise RemoteProtocolError("trailer section too large", 431)
                if take < 2 or p[pos + take - 2] != CR:
                    raise RemoteProtocolError("bare LF in trailer section", 400)
                if take > 2:
                    _check_field_line(p + pos, take - 2)
                pos += take
                if take == 2:
                    self.state = S_HEAD
                    self._message_complete()
        return pos

    cdef bint feed_eof(self) except -1:
        """The peer closed: completes a body that runs to the end; an error in the middle of anything else."""
        if self.state == S_BODY_EOF:
            self.state = S_HEAD
            self._message_complete()
            return True
        if self.state != S_HEAD or self.buf_len:
            raise RemoteProtocolError("connection closed in the middle of a message", 400)
        return False

    cdef int _parse_status_line(self, const char* p, size_t n) except -1:
        # RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
        if n < 14 or memcmp(p, b"HTTP/1.", 7) != 0 or not (48 <= p[7] <= 49) or p[8] != SP:
            raise RemoteProtocolError("invalid status line", 502)
        if not (48 <= p[9] <= 57 and 48 <= p[10] <= 57 and 48 <= p[11] <= 57) or (p[12] != SP and p[12] != CR):
            raise RemoteProtocolError("invalid status code", 502)
        self.http_minor = p[7] - 48
        self.status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
        if self.status < 100:
            raise RemoteProtocolError("invalid status code", 502)
        self.first_line_end = max(13, n - 2)
        return 0

    cdef int _message_complete(self) except -1:
        if self.handler._on_message_complete():
            self.paused = True
        return 0

    cdef size_t _find_head_end(self, const char* p, size_t n) except? 0:
        """Length of the head (through its empty line) if p holds all of it, else 0.

        The same bytes give the same answer however they are split: each limit is a predicate on the
        stream (the first line ends within max_first_line bytes; the header section, through its final
        CRLF, is at most max_header_size), checked at a line's end before anything else about that line,
        and on a partial line as soon as the bytes so far already break it.
        """
        cdef size_t i = self.scan_pos, end
        cdef size_t max_first_line = self.max_target_size + 1024  # the target plus a method and a version
        cdef const char* lf
        while True:
            lf = <const char*>memchr(p + i, LF, n - i)
            if lf == NULL:
                self.scan_pos = n
                # the line's LF is still to come, so the line is at least one byte longer than what is here
                if self.line_count == 0:
                    if n >= max_first_line:
                        raise RemoteProtocolError("request-target too long", 414)
                elif n - self.first_line_len >= self.max_header_size:
                    raise RemoteProtocolError("header section too large", 431)
                return 0
            end = lf - p
            i = end + 1
            if self.line_count == 0:
                if i > max_first_line:
                    raise RemoteProtocolError("request-target too long", 414)
            elif i - self.first_line_len > self.max_header_size:
                raise RemoteProtocolError("header section too large", 431)
            # RFC 9112 §2.2 lets a recipient accept a bare LF; we don't: it is how smuggling starts
            if end == self.line_start or p[end - 1] != CR:
                raise RemoteProtocolError("bare LF in request head", 400)
            if end - 1 == self.line_start:
                self.scan_pos = self.line_start = self.first_line_len = 0
                self.line_count = 0
                return i
            self.line_count += 1
            if self.line_count == 1:
                self.first_line_len = i
            elif self.line_count - 1 > self.max_headers:
                raise RemoteProtocolError(f"too many header fields (limit {self.max_headers})", 431)
            self.line_start = i

    cdef int _parse_request_line(self, const char* p, size_t n) except -1:
        # RFC 9112 §3: request-line = method SP request-target SP HTTP-version
        #              HTTP-version = "HTTP/" DIGIT "." DIGIT
        cdef size_t i = 0, t, k, end
        while i < n and TOKEN[<unsigned char>p[i]]:
            i += 1
        if i == 0 or p[i] != SP:
            raise RemoteProtocolError("invalid method", 400)
        self.method_len = i
        self.method_id = _method_id(p, i)
        t = i = i + 1
        while i < n and TARGET[<unsigned char>p[i]]:
            i += 1
        if i - t > self.max_target_size:
            raise RemoteProtocolError("request-target too long", 414)
        if i == t or p[i] != SP:
            raise RemoteProtocolError("invalid request-target", 400)
        self.target_start = t
        self.target_len = i - t
        i += 1
        if n - i != 10 or memcmp(p + i, b"HTTP/", 5) != 0 or p[i + 6] != 46 or p[i + 8] != CR:
            raise RemoteProtocolError("invalid HTTP version", 400)
        if not (48 <= p[i + 5] <= 57 and 48 <= p[i + 7] <= 57):
            raise RemoteProtocolError("invalid HTTP version", 400)
        if p[i + 5] != 49 or p[i + 7] > 49:
            raise RemoteProtocolError("HTTP version not supported", 505)
        self.http_minor = p[i + 7] - 48
        # RFC 9112 §3.2: origin-form, absolute-form (proxies), authority-form (CONNECT), asterisk-form
        end = t + self.target_len
        k = t
        if p[t] != 47:  # not "/": the path of an absolute-form target follows "scheme://authority"
            while k + 2 < end and not (p[k] == COLON and p[k + 1] == 47 and p[k + 2] == 47):
                k += 1
            if k + 2 < end:
                k += 3
                while k < end and p[k] != 47 and p[k] != 63:
                    k += 1
            else:
                k = t
        self.path_start = k
        while k < end and p[k] != 63:  # "?"
            k += 1
        self.path_len = k - self.path_start
        self.query_start = min(k + 1, end)
        self.query_len = end - self.query_start
        return 0

    cdef int _parse_head(self, const char* p, size_t n) except -1:
        cdef size_t pos, name_end, v, e, line_end
        cdef unsigned int count = 0, host_count = 0
        cdef bint te_present = False, te_chunked_last = False, te_unknown = False
        cdef bint conn_close = False, conn_keep_alive = False
        cdef long long content_length = -1, value
        self.head = p
        self.head_len = n
        self.expect_continue = False
        if self.response_mode:
            pos = (<const char*>memchr(p, LF, n) - p) + 1
            self._parse_status_line(p, pos)
        else:
            self._parse_request_line(p, (<const char*>memchr(p, LF, n) - p) + 1)
            pos = self.target_start + self.target_len + 11  # past " HTTP/x.y\r\n"
        while pos < n - 2:
            # RFC 9112 §5.2: obs-fold is rejected with 400 (it is obsolete and ambiguous)
            if _is_ows(p[pos]):
                raise RemoteProtocolError("obsolete line folding in header", 400)
            # RFC 9112 §5.1: field-line = field-name ":" OWS field-value OWS
            name_end = pos
            while TOKEN[<unsigned char>p[name_end]]:
                name_end += 1
            if p[name_end] != COLON:
                if _is_ows(p[name_end]) and name_end > pos:
                    # §5.1: "No whitespace is allowed between the field name and colon"
                    raise RemoteProtocolError("whitespace before colon in header", 400)
                raise RemoteProtocolError("invalid header name", 400)
            if name_end == pos:
                raise RemoteProtocolError("empty header name", 400)
            v = name_end + 1
            while _is_ows(p[v]):
                v += 1
            # one pass validates the value and finds its end: the CR of the line's CRLF
            line_end = v
            while FIELD_VALUE[<unsigned char>p[line_end]]:
                line_end += 1
            if p[line_end] != CR or p[line_end + 1] != LF:
                raise RemoteProtocolError("invalid character in header value", 400)
            e = line_end
            while e > v and _is_ows(p[e - 1]):
                e -= 1
            g_headers[count].name_start = pos
            g_headers[count].name_len = name_end - pos
            g_headers[count].value_start = v
            g_headers[count].value_len = e - v
            count += 1
            if name_end - pos == 4 and _ieq(p + pos, b"host", 4):
                host_count += 1
            elif name_end - pos == 14 and _ieq(p + pos, b"content-length", 14):
                value = _parse_content_length(p + v, e - v)
                if content_length != -1 and value != content_length:
                    raise RemoteProtocolError("conflicting Content-Length", 400)
                content_length = value
            elif name_end - pos == 17 and _ieq(p + pos, b"transfer-encoding", 17):
                te_present = True
                _parse_transfer_encoding(p + v, e - v, &te_chunked_last, &te_unknown)
            elif name_end - pos == 10 and _ieq(p + pos, b"connection", 10):
                _parse_connection(p + v, e - v, &conn_close, &conn_keep_alive)
            elif name_end - pos == 6 and _ieq(p + pos, b"expect", 6):
                self.expect_continue = e - v == 12 and _ieq(p + v, b"100-continue", 12)
            pos = line_end + 2
        self.header_count = count
        if self.response_mode:
            return self._response_framing(te_present, te_chunked_last, te_unknown, content_length, conn_close,
                                          conn_keep_alive)
        # RFC 9112 §3.2: a 1.1 request without exactly one Host is answered 400
        if host_count > 1 or (host_count == 0 and self.http_minor == 1):
            raise RemoteProtocolError("missing or duplicate Host header", 400)
        self.chunked = False
        if te_present:
            # RFC 9112 §6.1: TE in 1.0 means the framing is faulty; §6.3: TE with CL is an attack
            if self.http_minor == 0:
                raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request", 400)
            if content_length != -1:
                raise RemoteProtocolError("both Content-Length and Transfer-Encoding", 400)
            if te_unknown:
                raise RemoteProtocolError("unsupported transfer coding", 501)
            if not te_chunked_last:
                raise RemoteProtocolError("chunked is not the final transfer coding", 400)
            self.chunked = True
            self.state = S_CHUNK_SIZE
        elif content_length > 0:
            self.body_remaining = content_length
            self.state = S_BODY_LENGTH
        self.content_length = content_length
        # RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive"
        if self.http_minor == 1:
            self.keep_alive = not conn_close
        else:
            self.keep_alive = conn_keep_alive and not conn_close
        return 0

    cdef int _response_framing(self, bint te_present, bint te_chunked_last, bint te_unknown,
                               long long content_length, bint conn_close, bint conn_keep_alive) except -1:
        # RFC 9112 §6.3, in order: no body for HEAD, 1xx, 204, 304; chunked last; Content-Length; until close
        self.chunked = False
        self.content_length = content_length
        self.keep_alive = not conn_close if self.http_minor == 1 else conn_keep_alive and not conn_close
        if self.no_body or self.status < 200 or self.status == 204 or self.status == 304:
            return 0
        if te_present:
            if content_length != -1:
                raise RemoteProtocolError("both Content-Length and Transfer-Encoding", 502)
            if te_chunked_last and not te_unknown:
                self.chunked = True
                self.state = S_CHUNK_SIZE
                return 0
        elif content_length >= 0:
            if content_length > 0:
                self.body_remaining = content_length
                self.state = S_BODY_LENGTH
            return 0
        self.keep_alive = False
        self.state = S_BODY_EOF
        return 0

    # === Public API ===

    def feed(self, data):
        """Parse ``data`` and return the events it completes: Request, Data and EndOfMessage.

        On malformed input it raises RemoteProtocolError, whose ``events`` are those completed before the
        error; the parser stays failed (every later feed raises the same error).
        """
        cdef Py_buffer view
        cdef EventCollector collector = <EventCollector?>self.handler
        if self.error is not None:
            raise RemoteProtocolError(self.error.msg, self.error.status)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self.feed_ptr(<const char*>view.buf, view.len)
        except RemoteProtocolError as exc:
            exc.events = collector.events
            collector.events = []
            self.error = exc
            raise
        finally:
            PyBuffer_Release(&view)
        events = collector.events
        collector.events = []
        return events

    @property
    def buffered(self):
        """How many received bytes wait for more data (or for the consumer to resume)."""
        return self.buf_len


cdef inline int _check_value(const char* p, size_t n) except -1:
    cdef size_t i
    for i in range(n):
        if not FIELD_VALUE[<unsigned char>p[i]]:
            raise RemoteProtocolError("invalid character in header value", 400)
    return 0


cdef int _check_field_line(const char* p, size_t n) except -1:
    """Validate one trailer field line (without its CRLF)."""
    cdef size_t i = 0
    while i < n and TOKEN[<unsigned char>p[i]]:
        i += 1
    if i == 0 or i == n or p[i] != COLON:
        raise RemoteProtocolError("invalid trailer field", 400)
    _check_value(p + i + 1, n - i - 1)
    return 0


cdef long long _parse_content_length(const char* p, size_t n) except -2:
    # RFC 9110 §8.6: Content-Length = 1*DIGIT; a list of identical values may be accepted as one
    cdef long long value = -1, element
    cdef size_t i = 0, digits
    while True:
        while i < n and _is_ows(p[i]):
            i += 1
        element = 0
        digits = 0
        while i < n and 48 <= p[i] <= 57:
            if element > (MAX_INT63 - 9) // 10:
                raise RemoteProtocolError("Content-Length too large", 400)
            element = element * 10 + (p[i] - 48)
            i += 1
            digits += 1
        if digits == 0 or (value != -1 and element != value):
            raise RemoteProtocolError("invalid Content-Length", 400)
        value = element
        while i < n and _is_ows(p[i]):
            i += 1
        if i == n:
            return value
        if p[i] != 44:  # ","
            raise RemoteProtocolError("invalid Content-Length", 400)
        i += 1


cdef int _parse_transfer_encoding(const char* p, size_t n, bint* chunked_last, bint* unknown) except -1:
    # RFC 9112 §6.1: Transfer-Encoding = #transfer-coding; chunked at most once, and last
    cdef size_t i = 0, start, end
    while i < n:
        while i < n and (_is_ows(p[i]) or p[i] == 44):
            i += 1
        start = i
        while i < n and p[i] != 44:
            i += 1
        end = i
        while end > start and _is_ows(p[end - 1]):
            end -= 1
        if end == start:
            continue
        if end - start == 7 and _ieq(p + start, b"chunked", 7):
            if chunked_last[0]:
                raise RemoteProtocolError("chunked applied more than once", 400)
            chunked_last[0] = True
        else:
            chunked_last[0] = False
            unknown[0] = True
    return 0


cdef int _parse_connection(const char* p, size_t n, bint* close, bint* keep_alive) except -1:
    cdef size_t i = 0, start, end
    while i < n:
        while i < n and (_is_ows(p[i]) or p[i] == 44):
            i += 1
        start = i
        while i < n and p[i] != 44:
            i += 1
        end = i
        while end > start and _is_ows(p[end - 1]):
            end -= 1
        if end - start == 5 and _ieq(p + start, b"close", 5):
            close[0] = True
        elif end - start == 10 and _ieq(p + start, b"keep-alive", 10):
            keep_alive[0] = True
    return 0


cdef inline int _hex_value(char c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= (c | 0x20) <= 102:
        return (c | 0x20) - 87
    return -1


cdef long long _parse_chunk_size(const char* p, size_t n) except -1:
    # RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF; chunk-size = 1*HEXDIG;
    #                chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    # n includes the CRLF. Extensions are accepted and ignored, but must be printable.
    cdef long long size = 0
    cdef size_t i = 0
    cdef int digit
    if n < 2 or p[n - 2] != CR:
        raise RemoteProtocolError("bad chunk size line", 400)
    n -= 2
    while i < n:
        digit = _hex_value(p[i])
        if digit < 0:
            break
        if size > (MAX_INT63 >> 4):
            raise RemoteProtocolError("chunk size too large", 400)
        size = (size << 4) | digit
        i += 1
    if i == 0:
        raise RemoteProtocolError("invalid chunk size", 400)
    while i < n and _is_ows(p[i]):
        i += 1
    if i < n:
        if p[i] != 59:  # ";"
            raise RemoteProtocolError("invalid chunk size", 400)
        _check_value(p + i, n - i)
    return size
