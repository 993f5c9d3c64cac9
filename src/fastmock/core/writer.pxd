# The response writer (core/writer.pyx): rendered heads, static responses, body producers and the
# ResponseWriter that owns a connection's output.

cdef class StaticResponse:
    cdef:
        readonly int status
        bytes content_type
        bytes body
        list extra_headers
        list variants
        unsigned int generation

    cdef bytes get(self, int conn, bint head_only)
    cdef Response response(self)


cdef enum Step:
    STEP_MORE      # the producer wrote a piece and has more now
    STEP_WAIT      # nothing before writer.wait_s has passed
    STEP_DONE      # the body is complete


cdef class BodyProducer:
    cdef int produce(self, ResponseWriter writer) except -1
    cdef void cut_half(self)


cdef class ResponseWriter:
    cdef:
        object loop
        object transport                 # None: sans-IO, what is written collects in `sent`
        list sent
        object pattern                   # the server's pattern buffer, for PatternStream
        Py_ssize_t piece_size
        unsigned long long* bytes_out    # the server's counter (sans-IO: own_bytes_out)
        unsigned long long own_bytes_out
        unsigned long long* body_bytes   # the route's counter while a body runs (NULL: none)
        ServerProtocol owner             # told when a body is out and when the output backs up or drains
        list out                         # the batch: everything answered in one read, one transport.write
        readonly bint body_open          # a body (producer, fed, or dripping) is on its way: the owner waits
        bint body_ending                 # ... and its last byte is written or queued
        BodyProducer producer
        double wait_s                    # set by a producer that returns STEP_WAIT
        bint waiting
        object wait_handle
        bint chunked                     # the body is chunk-framed: its end is the last chunk
        bint cut                         # truncate: half the body, no last chunk, then the close
        long long cut_left               # body bytes still allowed (-1: the first piece, then the cut)
        double rate                      # drip: bytes per second (0: full speed)
        list paced                       # bytes waiting for the drip's tick ...
        Py_ssize_t paced_len, paced_offset
        object pace_handle
        bint transport_paused
        bint pace_full                   # ... over PACE_HIGH until back under PACE_LOW
        bint reported_full
        public bint reset                # close with RST (SO_LINGER 0), not FIN
        readonly bint closed

    cdef void attach(self, object loop, object pattern, Py_ssize_t piece_size, unsigned long long* bytes_out,
                     ServerProtocol owner)
    cdef Py_ssize_t send(self, Response response, int conn, bint head_only, int http_minor, int fault_kind,
                         double fault_arg, unsigned long long* body_bytes, bytes fields=*) except -1
    cdef int emit(self, object data) except -1
    cdef int flush(self) except -1
    cdef bytes framed(self, bytes data)
    cdef bint add_body(self, const char* data, size_t length) except -1
    cdef int open_body(self, double rate) except -1
    cdef int truncate_at(self, long long body_bytes) except -1
    cdef int end_body(self) except -1
    cdef int close(self) except -1
    cdef int pause(self) except -1
    cdef int resume(self) except -1
    cdef void release(self)
    cdef int _run(self) except -1
    cdef int _finish_if_done(self) except -1
    cdef int _update_full(self) except -1


cdef class PatternStream(BodyProducer):
    cdef:
        readonly long long remaining     # body bytes still to send
        long long phase                  # pattern index of the next byte (0..35)
        readonly long long frame_size    # > 0: chunked, a frame per frame_size bytes
        long long frame_left             # bytes left in the current frame
        bint restart_frames
        double frame_delay_s


cdef class EventStream(BodyProducer):
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
