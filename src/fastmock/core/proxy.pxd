# The reverse proxy (core/proxy.pyx): the upstream side, its pool, and the client-side connection.

cdef class Proxy:
    cdef:
        object loop
        readonly Server server
        str upstream_host
        int upstream_port
        object upstream_ssl
        bytes host_header
        bytes extra_headers     # header lines added to upstream requests
        bytes response_fields   # ... and to every answer (replacing an upstream field of the same name)
        set response_names      # their lower-case names (None: no such header)
        double drop_rate
        double delay_s
        double upstream_timeout_s
        Py_ssize_t max_idle
        list idle                   # UpstreamConnections ready for a request
        Random rng
        Route forward_route
        Route drop_route
        unsigned long long requests, forwarded, dropped, delayed
        unsigned long long errors[5]
        dict upstream_tls_failures  # reason (client.pyx's handshake_failure) -> count
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
        bytes request_head
        bytes trace_id
        bytes request_id
        bint client_trace, client_request_id   # the client sent them
        bint ids_taken          # the current request has its ids (False: no head read since the last answer)
        int response_status
        Py_ssize_t response_bytes
        double upstream_started
        double wait_s
        double deadline         # --upstream-timeout: when the response head is overdue (0: no clock)
        bytes client_ip
        bytes forwarded_proto   # http or https: how the client reached us
        object connecting
        # a truncate or drip fault acts on the forwarded response (the writer cuts or paces it)
        int shaping
        double shaping_rate
    cdef void _take_ids(self, RequestParser parser)
    cdef bytes _answer_fields(self)
    cdef void _done(self, int status, Py_ssize_t nbytes, double duration_s)
    cdef bytes _upstream_request_head(self, RequestParser parser, set dropped)
    cdef int _forward(self, UpstreamConnection conn) except -1
    cdef void _arm_timeout(self)
    cdef int _upstream_head(self, RequestParser parser) except -1
    cdef int _upstream_body(self, const char* data, size_t length) except -1
    cdef int _upstream_done(self) except -1
    cdef void _drop_upstream(self)
    cdef int _end_exchange(self) except -1
    cdef int _protocol_error(self, int status, str msg) except -1
    cdef int _upstream_failed(self, int kind, str message) except -1
