# The connection (core/connection.pyx): parser callbacks, the connection's state, timeouts and drain.

cdef enum ConnState:
    CS_READING      # requests are read and answered as they complete
    CS_WAITING      # a response is pending outside the parser (a timer, a task, the upstream): the parser waits
    CS_SENDING      # the writer sends a body (stream, events, drip): the parser waits for its end
    CS_UPGRADED     # the connection speaks WebSocket: every byte goes to the WebSocket
    CS_CLOSED       # the transport is gone


cdef class ServerProtocol(ParserHandler):
    cdef:
        Server server
        object transport
        RequestParser parser
        ResponseWriter writer
        ConnState state
        bint must_close         # no more requests: the transport closes once the answer in progress is out
        bint backlog_paused     # reading paused: pipelined bytes pile up behind a pending answer
        # the request being answered
        Route route
        Request request
        bytearray body
        unsigned long long body_size
        bint keep_alive
        bint head_only
        double last_active
        double head_started
        double body_started
        double started
        object delay_handle     # a pending response: its timer or task
        object resume_handle    # a slow body read: the timer that reads on
        double read_pause_s
        size_t read_since_pause
        WebSocket ws
        # the fault drawn for the current request (NULL: none); fault_plan keeps it alive
        FaultPlan fault_plan
        FaultOutcome* fault
        double fault_delay_s
        # for the request log: the current request's method and path, the peer's address
        bytes client_text
        bytes server_text
        double logged_start
        unsigned char log_method_len, log_path_len
        char log_method[16]
        char log_path[160]

    cdef int _conn_mode(self)
    cdef int _answer(self) except -1
    cdef StaticResponse _static(self, Route route)
    cdef int _wait_for(self, object handle) except -1
    cdef int _respond_later(self, Response response) except -1
    cdef int _hand_over_leftovers(self) except -1
    cdef object _call_handler(self)
    cdef bint _draw_fault(self, FaultPlan plan) except -1
    cdef FaultOutcome* _take_fault(self)
    cdef int _answer_early(self, Response response) except -1
    cdef int _answer_fault(self) except -1
    cdef int _apply_fault(self) except -1
    cdef bytes _garbage(self)
    cdef int _respond(self, Response response) except -1
    cdef bytes _answer_fields(self)
    cdef void _done(self, int status, Py_ssize_t nbytes, double duration_s)
    cdef void _log_request(self, int status, int outcome)
    cdef void _set_addresses(self, Request req)
    cdef int _feed(self, const char* data, size_t length) except -1
    cdef int _flush(self) except -1
    cdef int _continue(self) except -1
    cdef int _after_late_response(self) except -1
    cdef int _protocol_error(self, int status, str msg) except -1
    cdef int _check_timeout(self, double now) except -1
    cdef int _drain(self) except -1
    # from the writer
    cdef int _body_done(self) except -1
    cdef int _writer_full(self) except -1
    cdef int _writer_ready(self) except -1
