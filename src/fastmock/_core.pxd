# The contract of the compiled core: every cdef class's fields and C methods.
# The implementations live in core/*.pyx, included by _core.pyx (one module, so cdef calls inline).

cdef struct HeaderSpan:
    unsigned int name_start
    unsigned int name_len
    unsigned int value_start
    unsigned int value_len


# --- core/parser.pyx -------------------------------------------------------------------------------

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


# --- core/writer.pyx -------------------------------------------------------------------------------

cdef class StaticResponse:
    cdef:
        readonly int status
        bytes content_type
        bytes body
        list extra_headers
        list variants
        unsigned int generation

    cdef bytes get(self, int conn, bint head_only)


cdef class PatternStream:
    cdef:
        readonly long long remaining     # body bytes still to send
        long long phase                  # pattern index of the next byte (0..35)
        readonly long long frame_size    # > 0: chunked, a frame per frame_size bytes
        long long frame_left             # bytes left in the current frame
        bint restart_frames
        double frame_delay_s


cdef class EventStream:
    cdef:
        readonly long long count
        readonly double interval_s
        readonly Py_ssize_t size
        readonly double heartbeat_s
        readonly long long sent
        double next_at
    cpdef bytes next_event(self)


cdef class Response:
    cdef:
        public int status
        public bytes body
        public bytes content_type
        public list headers
        public double delay_s
        public PatternStream stream
        public EventStream events
        public object websocket     # a WebSocket to switch to after this (101) response


# --- core/random.pyx -------------------------------------------------------------------------------

cdef class Random:
    cdef unsigned long long s[4]
    cdef unsigned long long next_u64(self)
    cdef double next_double(self)


# --- core/faults.pyx -------------------------------------------------------------------------------

cdef enum FaultKind:
    F_NONE
    F_OK
    F_STATUS
    F_TIMEOUT
    F_RESET
    F_CLOSE
    F_GARBAGE
    F_TRUNCATE
    F_DRIP
    F_KINDS

cdef enum DelayKind:
    D_NONE
    D_FIXED
    D_UNIFORM
    D_NORMAL
    D_LOGNORMAL

cdef struct FaultOutcome:
    int kind
    int status
    double arg          # timeout seconds (0: until --max-hang), or drip bytes per second
    double cumulative   # weight of this outcome and all before it


cdef class FaultPlan:
    cdef:
        readonly str spec
        FaultOutcome* outcomes
        int count
        double total
        int delay_kind
        double delay_a, delay_b
    cdef FaultOutcome* draw(self, Random rng, double* delay_s)
    cdef double _delay(self, Random rng)


# --- core/requestlog.pyx ---------------------------------------------------------------------------

cdef struct LogRecord:
    double time_s           # wall clock when the request head was parsed
    double latency_s
    int status              # 0: the connection ended without a response (a fault)
    int outcome             # FaultKind; F_NONE: no fault
    unsigned char method_len, path_len, client_len
    char method[16]
    char path[160]
    char client[48]


cdef class RequestLog:
    cdef:
        LogRecord* records
        Py_ssize_t capacity
        unsigned long long written
        object sink
    cdef void add(self, double started_s, double latency_s, int status, int outcome, const char* method,
                  size_t method_len, const char* path, size_t path_len, bytes client)
    cdef dict _as_dict(self, LogRecord* record)


# --- core/protocol.pyx -----------------------------------------------------------------------------

cdef class Route:
    cdef:
        readonly str name
        readonly bytes path
        readonly bint prefix
        StaticResponse static
        StaticResponse static_draining
        object handler
        object on_head
        size_t body_limit
        long long max_body_size
        int index


cdef class Server:
    cdef:
        object loop
        list routes
        Route default_route
        Route error_route
        size_t max_target_size
        size_t max_header_size
        unsigned int max_headers
        double idle_timeout_s
        double header_timeout_s
        double body_timeout_s        # a request body gets this long (0: forever) ...
        double body_min_rate         # ... plus a second per this many bytes received
        double tick_s
        long long max_connections
        long long open_files_limit   # RLIMIT_NOFILE when the server was made
        object log                   # log(line): a refused connection is reported (at most once a second)
        unsigned long long rejected_logged
        double rejected_logged_at
        Py_ssize_t write_buffer_size
        bytearray read_buffer
        object pattern
        readonly Py_ssize_t piece_size    # bytes per streamed write
        object read_view
        object slow_read_view
        set connections
        bint draining
        object access_log
        object tick_handle
        # faults: (prefix, FaultPlan) rules, the X-Fastmock-Fault hook, the generator they draw from
        list fault_rules
        object header_faults
        Random fault_rng
        double max_hang_s
        unsigned long long fault_counts[F_KINDS]
        readonly RequestLog request_log
        # statistics, read by /metrics and --mem-interval
        unsigned long long requests_total
        unsigned long long bytes_in
        unsigned long long bytes_out
        unsigned long long connections_total
        unsigned long long connections_rejected
        unsigned long long* status_counts
        unsigned long long* route_bytes_out     # by route index: everything sent
        unsigned long long* route_bytes_in      # by route index: request bodies
        unsigned long long* duration_counts
        double duration_sum_s

    cdef ServerProtocol _init_protocol(self, ServerProtocol proto)
    cdef Route match(self, const char* path, size_t length)
    cdef FaultPlan match_fault(self, const char* path, size_t length)
    cdef bint at_capacity(self, transport) except -1
    cdef void _log_rejected(self)
    cdef void count(self, Route route, int status, Py_ssize_t nbytes, double duration_s)


cdef class ServerProtocol(ParserHandler):
    cdef:
        Server server
        object transport
        RequestParser parser
        list out
        Route route
        Request request
        bytearray body
        unsigned long long body_size
        bint keep_alive
        bint head_only
        bint closing
        bint writing_paused
        bint backlog_paused
        int phase               # 0: reading or idle, 1: a delayed response is pending
        double last_active
        double head_started
        double body_started
        double started
        object delay_handle     # a delayed or awaited response: its timer or task
        object resume_handle
        PatternStream stream
        Route stream_route
        object frame_handle
        EventStream events      # Server-Sent Events being sent (the parser waits)
        WebSocket ws            # after a 101: the connection speaks WebSocket
        bint events_chunked
        object event_handle
        double read_pause_s
        size_t read_since_pause
        # the fault drawn for the current request (NULL: none); fault_plan keeps it alive
        FaultPlan fault_plan
        FaultOutcome* fault
        double fault_delay_s
        bint resetting          # close with RST (SO_LINGER 0) instead of FIN
        bint truncating         # a stream cut short: no chunked terminator
        double drip_rate        # bytes per second while a response drips (0: full speed)
        bytes drip_data
        Py_ssize_t drip_pos
        # for the request log: the current request's method and path, the peer's address
        bytes client_text
        double logged_start
        unsigned char log_method_len, log_path_len
        char log_method[16]
        char log_path[160]

    cdef int _conn_mode(self)
    cdef int _answer(self) except -1
    cdef StaticResponse _static(self, Route route)
    cdef int _respond_later(self, Response response) except -1
    cdef int _hand_over_leftovers(self) except -1
    cdef object _call_handler(self)
    cdef bint _draw_fault(self, FaultPlan plan) except -1
    cdef int _answer_early(self, Response response) except -1
    cdef int _answer_fault(self) except -1
    cdef int _apply_fault(self) except -1
    cdef bytes _garbage(self)
    cdef Py_ssize_t _drip_piece(self)
    cdef int _respond(self, Response response) except -1
    cdef void _done(self, int status, Py_ssize_t nbytes, double duration_s)
    cdef void _log_request(self, int status, int outcome)
    cdef void _set_addresses(self, Request req)
    cdef int _feed(self, const char* data, size_t length) except -1
    cdef int _flush(self) except -1
    cdef int _pump(self) except -1
    cdef int _continue(self) except -1
    cdef int _after_late_response(self) except -1
    cdef int _protocol_error(self, int status, str msg) except -1
    cdef int _check_timeout(self, double now) except -1
    cdef int _drain(self) except -1


# --- core/fleet.pyx --------------------------------------------------------------------------------

cdef class PortGroup:
    cdef:
        readonly Server server
        Route health_route
        Route kill_route
        object counters               # the shared buffer; keeps `requests` valid
        unsigned long long* requests  # by slot
        Py_ssize_t slots
        object on_kill


cdef class FleetPort:
    cdef:
        PortGroup group
        readonly int port
        readonly Py_ssize_t slot
        public object listener
        public FaultPlan plan         # the port's fault spec (None: it answers normally)


cdef class PortProtocol(ServerProtocol):
    cdef FleetPort port
    cdef int _answer_port(self, int status) except -1


# --- core/proxy.pyx --------------------------------------------------------------------------------

cdef class Proxy:
    cdef:
        object loop
        readonly Server server
        str upstream_host
        int upstream_port
        bytes host_header
        bytes extra_headers
        double drop_rate
        double delay_s
        double upstream_timeout_s
        Py_ssize_t max_idle
        list idle                   # UpstreamConnections ready for a request
        Random rng
        Route forward_route
        Route drop_route
        unsigned long long requests, forwarded, dropped, delayed
        unsigned long long errors[4]
        unsigned long long upstream_durations[14]
        double upstream_duration_sum_s
    cdef UpstreamConnection acquire(self)
    cdef void release(self, UpstreamConnection conn)


cdef class UpstreamConnection(ParserHandler):
    cdef:
        object transport
        RequestParser parser
        ProxyProtocol downstream
        bint reusable
        bint request_sent
    cdef int _finish(self) except -1


cdef class ProxyProtocol(ServerProtocol):
    cdef:
        Proxy proxy
        UpstreamConnection upstream
        bint forwarding
        bint request_done
        bint head_sent
        bint request_chunked
        bint response_chunked
        bytes request_head
        bytes trace_id
        bytes request_id
        int response_status
        Py_ssize_t response_bytes
        double upstream_started
        double wait_s
        double deadline         # --upstream-timeout: when the response head is overdue (0: no clock)
        bytes client_ip
        object connecting
        # a truncate or drip fault acts on the forwarded response
        int shaping
        double shaping_rate
        long long truncate_left
        Py_ssize_t pending_bytes
        object pace_handle
    cdef bytes _upstream_request_head(self, RequestParser parser, set dropped)
    cdef int _forward(self, UpstreamConnection conn) except -1
    cdef void _arm_timeout(self)
    cdef int _upstream_head(self, RequestParser parser) except -1
    cdef int _upstream_body(self, const char* data, size_t length) except -1
    cdef int _upstream_done(self) except -1
    cdef void _drop_upstream(self)
    cdef int _cut(self) except -1
    cdef int _protocol_error(self, int status, str msg) except -1
    cdef void _start_pacing(self)
    cdef int _upstream_failed(self, int kind, str message) except -1


# --- core/histogram.pyx ----------------------------------------------------------------------------

cdef extern from *:
    int __builtin_clzll(unsigned long long)

cdef class LatencyHistogram:
    cdef:
        unsigned long long* counts
        unsigned long long total, min_us, max_us, sum_us
    cdef void record_us(self, unsigned long long value)


# --- core/client.pyx -------------------------------------------------------------------------------

cdef enum LoadError:
    LE_REFUSED
    LE_RESET
    LE_TIMEOUT
    LE_BAD_RESPONSE


cdef class LoadConnection(ParserHandler):
    cdef:
        LoadEngine engine
        object transport
        RequestParser parser
        bint busy
        bint connected
        long long index
        double scheduled
        double started
        int attempt
        int status
        long long body_bytes
        bytes trace_id


cdef class LoadEngine:
    cdef:
        object loop
        str host
        int port
        bytes head, body, request
        long long total
        double duration_s
        int concurrency
        double rate
        double timeout_s, connect_timeout_s
        int retries
        double backoff_s
        bint keepalive, trace, head_request
        Random rng
        long long index_offset, index_step
        LatencyHistogram histogram
        list records
        object pending          # deque of (index, scheduled, attempt) waiting for a connection
        list idle
        set connections
        int connecting
        long long issued, completed, in_flight, retries_waiting
        unsigned long long bytes_in, retries_total
        unsigned long long errors[4]
        unsigned long long statuses[600]
        double started_at
        object done, schedule_handle, timeout_handle
    cdef bint _more(self)
    cdef void _dispatch(self, LoadConnection conn)
    cdef void _send(self, LoadConnection conn, long long index, double scheduled, int attempt)
    cdef void _open(self)
    cdef void _completed(self, LoadConnection conn)
    cdef void _failed(self, LoadConnection conn, int kind, str message)
    cdef void _replace(self)
    cdef void _retry(self, long long index, double scheduled, int attempt)
    cdef void _finish(self, long long index, double scheduled, double started, int attempt, int status,
                      long long nbytes, int error, bytes trace_id, str message)
    cdef void _check_done(self)
    cdef void _feed(self)


# --- core/websocket.pyx ----------------------------------------------------------------------------

cdef class WebSocket:
    cdef:
        int mode
        long long max_message
        bytearray buf           # bytes of an incomplete frame
        bytearray message       # a fragmented message so far
        int message_opcode      # -1: no message in progress
        bint closing
        bint sent_shutdown
        double idle_timeout_s
        double ping_interval_s
        double last_ping
    cdef int feed(self, ServerProtocol proto, const char* data, size_t length) except -1
    cdef int frame(self, ServerProtocol proto, int opcode, bint fin, bytes payload) except -1
    cdef int deliver(self, ServerProtocol proto) except -1
    cdef int fail(self, ServerProtocol proto, int code, str reason) except -1
    cdef int close(self, ServerProtocol proto, bytes payload) except -1
    cdef int check_idle(self, ServerProtocol proto, double now) except -1
    cdef int shutdown(self, ServerProtocol proto) except -1
