# The sans-IO HTTP/1.1 parser (core/parser.pyx): a request or response parser and the events it makes.

cdef struct HeaderSpan:
    unsigned int name_start
    unsigned int name_len
    unsigned int value_start
    unsigned int value_len


cdef class ParserHandler:
    # Each returns 1 to pause the parser after this event (the consumer is busy), else 0.
    cdef int _on_head(self, RequestParser parser) except -1
    cdef int _on_body(self, const char* data, size_t length) except -1
    cdef int _on_message_complete(self) except -1


cdef class EventCollector(ParserHandler):
    cdef list events


cdef class Request:
    cdef:
        bytes _head
        bytes _spans
        unsigned int _target_start, _target_len, _path_start, _path_len, _query_start, _query_len
        readonly str method
        readonly int http_minor
        readonly bint keep_alive
        readonly bint chunked
        readonly bint expect_continue
        readonly long long content_length
        public bytes body
        public unsigned long long body_size
        public bint body_truncated
        public str client_addr
        public str server_addr
        public object tls            # the connection's ssl.SSLObject over TLS, else None
        public double read_pause_s
        public object fault_plan     # set by a route's on_head: the FaultPlan for this request
        public double started_s


cdef class ResponseHead:
    cdef:
        readonly int status
        readonly str reason
        readonly int http_minor
        readonly bint keep_alive
        readonly bint chunked
        readonly long long content_length
        readonly list headers


cdef class Data:
    cdef readonly bytes data


cdef class EndOfMessage:
    pass


cdef class RequestParser:
    cdef:
        ParserHandler handler
        size_t max_target_size
        size_t max_header_size
        unsigned int max_headers
        int state
        bint paused
        # bytes kept between feeds: a partial head or line, or everything while paused
        char* buf
        size_t buf_len
        size_t buf_cap
        # head scanning, resumable across feeds
        size_t scan_pos
        size_t line_start
        size_t first_line_len
        unsigned int line_count
        size_t trailer_size
        long long body_remaining
        # the head just parsed; pointers valid only during _on_head
        const char* head
        size_t head_len
        unsigned int method_len
        int method_id
        unsigned int target_start, target_len, path_start, path_len, query_start, query_len
        unsigned int header_count
        readonly int http_minor
        readonly bint keep_alive
        readonly bint chunked
        readonly bint expect_continue
        readonly long long content_length
        # response mode (the proxy's upstream side): status line instead of request line
        readonly bint response_mode
        public bint no_body          # set before a response to HEAD: it has no body whatever it says
        readonly int status
        size_t first_line_end
        object error                 # feed() from Python: the RemoteProtocolError it failed with

    cdef int feed_ptr(self, const char* data, size_t length) except -1
    cdef int resume(self) except -1
    cdef bytes take_buffered(self)
    cdef void release(self)
    cdef Request make_request(self)
    cdef ResponseHead make_response_head(self)
    cdef bint feed_eof(self) except -1
    cdef int _parse_status_line(self, const char* p, size_t n) except -1
    cdef int _response_framing(self, bint te_present, bint te_chunked_last, bint te_unknown,
                               long long content_length, bint conn_close, bint conn_keep_alive) except -1
    cdef inline bint has_partial_head(self)
    cdef inline bint in_body(self)
    cdef int _append(self, const char* data, size_t length) except -1
    cdef int _run_buffer(self) except -1
    cdef Py_ssize_t _parse(self, const char* p, size_t n) except -1
    cdef size_t _find_head_end(self, const char* p, size_t n) except? 0
    cdef int _parse_head(self, const char* p, size_t n) except -1
    cdef int _parse_request_line(self, const char* p, size_t n) except -1
    cdef int _message_complete(self) except -1
