# WebSocket framing (core/websocket.pyx): what a connection becomes after a 101.

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
    cdef int feed(self, ResponseWriter writer, const char* data, size_t length) except -1
    cdef int frame(self, ResponseWriter writer, int opcode, bint fin, bytes payload) except -1
    cdef int deliver(self, ResponseWriter writer) except -1
    cdef int fail(self, ResponseWriter writer, int code, str reason) except -1
    cdef int close(self, ResponseWriter writer, bytes payload) except -1
    cdef int check_idle(self, ResponseWriter writer, double now, double last_active) except -1
    cdef int shutdown(self, ResponseWriter writer) except -1
