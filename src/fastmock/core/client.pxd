# The load generator (core/client.pyx): the engine and its connections.

cdef enum LoadError:
    LE_REFUSED
    LE_RESET
    LE_TIMEOUT
    LE_BAD_RESPONSE
    LE_TLS


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
        object ssl_object       # its TlsConnection; None on a plain connection


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
        TlsContext tls
        str server_hostname
        LatencyHistogram handshake_histogram
        dict handshake_failures
        unsigned long long handshakes, resumed
        list records
        object pending          # deque of (index, scheduled, attempt) waiting for a connection
        list idle
        set connections
        int connecting
        long long issued, completed, in_flight, retries_waiting
        unsigned long long bytes_in, retries_total
        unsigned long long errors[5]
        unsigned long long statuses[600]
        double started_at
        object done, schedule_handle, timeout_handle
    cdef bint _more(self)
    cdef void _dispatch(self, LoadConnection conn)
    cdef void _send(self, LoadConnection conn, long long index, double scheduled, int attempt)
    cdef void _open(self)
    cdef void _opened(self, LoadConnection conn, double opened)
    cdef void _not_opened(self, int kind, str message)
    cdef void _completed(self, LoadConnection conn)
    cdef void _failed(self, LoadConnection conn, int kind, str message)
    cdef void _replace(self)
    cdef void _retry(self, long long index, double scheduled, int attempt)
    cdef void _finish(self, long long index, double scheduled, double started, int attempt, int status,
                      long long nbytes, int error, bytes trace_id, str message)
    cdef void _check_done(self)
    cdef void _feed(self)
