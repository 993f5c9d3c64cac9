# The server (core/server.pyx): routes, limits, counters and the tick shared by one listener's connections.

cdef struct ServerCounters:
    unsigned long long requests_total
    unsigned long long bytes_in
    unsigned long long bytes_out
    unsigned long long connections_total
    unsigned long long connections_rejected
    unsigned long long fault_counts[F_KINDS]
    unsigned long long* status_counts       # by route index and status (100..599)
    unsigned long long* route_bytes_out     # by route index: everything sent
    unsigned long long* route_bytes_in      # by route index: request bodies
    unsigned long long* duration_counts     # by DURATION_BOUNDS bucket
    double duration_sum_s


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
        # limits
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
        # buffers shared by every connection: one read buffer, one pattern buffer for streamed bodies
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
        readonly RequestLog request_log
        ServerCounters counters      # read by /metrics and --mem-interval (stats())

    cdef ServerProtocol _init_protocol(self, ServerProtocol proto)
    cdef Route match(self, const char* path, size_t length)
    cdef FaultPlan match_fault(self, const char* path, size_t length)
    cdef bint at_capacity(self, transport) except -1
    cdef void _log_rejected(self)
    cdef void count(self, Route route, int status, Py_ssize_t nbytes, double duration_s)
