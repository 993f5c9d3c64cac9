# WebSocket (RFC 6455) after a 101 from a route: frames parsed and unmasked here, messages echoed (or, in
# "close after one" mode, answered once and closed), control frames answered. Errors close the connection
# with the code the RFC names: 1002 protocol error, 1007 invalid UTF-8, 1009 message too big.

cdef enum:
    WS_CONTINUATION = 0
    WS_TEXT = 1
    WS_BINARY = 2
    WS_CLOSE = 8
    WS_PING = 9
    WS_PONG = 10

WS_ECHO = 0
WS_ANSWER_ONCE = 1


cdef bytes _ws_frame(int opcode, bytes payload):
    """A server frame: final, unmasked."""
    cdef Py_ssize_t n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


cdef inline bint _valid_close_code(int code):
    # RFC 6455 §7.4: 1000-1003, 1007-1011 and 3000-4999 may be sent; the rest are reserved or never sent
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


cdef class WebSocket:
    """The WebSocket side of one connection (``mode``: WS_ECHO, or WS_ANSWER_ONCE for /ws/close).

    A connection that sends nothing for ``idle_timeout_s`` (0: never) is closed with 1001; with
    ``ping_interval_s`` (0: none) an idle peer is pinged that often, and its pong counts as activity.
    """

    def __cinit__(self, int mode=WS_ECHO, long long max_message=16 << 20, double idle_timeout_s=0.0,
                  double ping_interval_s=0.0):
        self.mode = mode
        self.max_message = max_message
        self.idle_timeout_s = idle_timeout_s
        self.ping_interval_s = ping_interval_s
        self.last_ping = 0.0
        self.buf = bytearray()
        self.message = bytearray()
        self.message_opcode = -1
        self.closing = False

    cdef int feed(self, ResponseWriter writer, const char* data, size_t length) except -1:
        cdef const unsigned char* p
        cdef Py_ssize_t n, pos, i
        cdef unsigned long long payload_len
        cdef int opcode, b0, b1
        cdef bint fin
        cdef unsigned char mask[4]
        cdef unsigned char* out
        if self.closing:
            return 0
        self.buf += data[:length]
        while not self.closing:
            p = <const unsigned char*>PyByteArray_AS_STRING(self.buf)
            n = len(self.buf)
            if n < 2:
                return 0
            b0, b1 = p[0], p[1]
            fin, opcode = b0 & 0x80, b0 & 0x0F
            if b0 & 0x70:
                return self.fail(writer, 1002, "reserved bits set")
            if not b1 & 0x80:
                return self.fail(writer, 1002, "client frames must be masked")
            payload_len, pos = b1 & 0x7F, 2
            if payload_len == 126:
                if n < 4:
                    return 0
                payload_len, pos = (p[2] << 8) | p[3], 4
            elif payload_len == 127:
                if n < 10:
                    return 0
                payload_len = 0
                for i in range(2, 10):
                    payload_len = (payload_len << 8) | p[i]
                pos = 10
                if payload_len >> 63:
                    return self.fail(writer, 1002, "frame length out of range")
            if opcode >= 8:
                if payload_len > 125 or not fin:
                    return self.fail(writer, 1002, "control frames are final and at most 125 bytes")
                if opcode > WS_PONG:
                    return self.fail(writer, 1002, f"unknown opcode {opcode}")
            elif opcode > WS_BINARY:
                return self.fail(writer, 1002, f"unknown opcode {opcode}")
            elif <long long>(len(self.message) + payload_len) > self.max_message:
                return self.fail(writer, 1009, f"message over {self.max_message} bytes")
            if <unsigned long long>n < pos + 4 + payload_len:
                return 0  # the rest of the frame is on its way
            memcpy(mask, p + pos, 4)
            pos += 4
            # a new, uninitialised object: given the bytes, CPython returns its shared single-byte object for
            # a 1-byte payload, and unmasking in place would corrupt every b"x" of the process
            payload = PyBytes_FromStringAndSize(NULL, payload_len)
            out = <unsigned char*>PyBytes_AS_STRING(payload)
            for i in range(<Py_ssize_t>payload_len):  # a C loop: unmasking costs no Python per byte
                out[i] = p[pos + i] ^ mask[i & 3]
            del self.buf[:pos + payload_len]
            self.frame(writer, opcode, fin, payload)
        return 0

    cdef int frame(self, ResponseWriter writer, int opcode, bint fin, bytes payload) except -1:
        cdef int code
        if opcode == WS_PING:
            writer.emit(_ws_frame(WS_PONG, payload))
        elif opcode == WS_PONG:
            pass
        elif opcode == WS_CLOSE:
            if len(payload) == 1:
                return self.fail(writer, 1002, "a close payload has a 2-byte code")
            if payload:
                code = (payload[0] << 8) | payload[1]
                if not _valid_close_code(code):
                    return self.fail(writer, 1002, f"invalid close code {code}")
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    return self.fail(writer, 1007, "close reason is not UTF-8")
            self.close(writer, payload[:2])  # completes the client's close handshake with its code
        elif opcode == WS_CONTINUATION:
            if self.message_opcode < 0:
                return self.fail(writer, 1002, "continuation without a message")
            self.message += payload
            if fin:
                self.deliver(writer)
        else:
            if self.message_opcode >= 0:
                return self.fail(writer, 1002, "a new message inside a fragmented one")
            self.message_opcode = opcode
            self.message += payload
            if fin:
                self.deliver(writer)
        return 0

    cdef int deliver(self, ResponseWriter writer) except -1:
        cdef int opcode = self.message_opcode
        message = bytes(self.message)
        self.message = bytearray()
        self.message_opcode = -1
        if opcode == WS_TEXT:
            try:
                text = message.decode("utf-8")
            except UnicodeDecodeError:
                return self.fail(writer, 1007, "text message is not UTF-8")
        if self.mode == WS_ANSWER_ONCE:
            reply = b"Server received: " + (message if opcode == WS_TEXT else repr(message).encode())
            writer.emit(_ws_frame(WS_TEXT, reply))
            return self.close(writer, (1000).to_bytes(2, "big") + b"server done")
        writer.emit(_ws_frame(opcode, message))
        return 0

    cdef int fail(self, ResponseWriter writer, int code, str reason) except -1:
        return self.close(writer, code.to_bytes(2, "big") + reason.encode())

    cdef int close(self, ResponseWriter writer, bytes payload) except -1:
        """Send a close frame; the TCP connection ends once it is written."""
        if not self.closing:
            self.closing = True
            if not self.sent_shutdown:  # after our 1001, the client's close frame is the answer to it
                writer.emit(_ws_frame(WS_CLOSE, payload))
            writer.close()
        return 0

    cdef int check_idle(self, ResponseWriter writer, double now, double last_active) except -1:
        """From the server's tick: close an idle connection, or ping it."""
        cdef double idle_s = now - last_active
        if self.closing:
            return 0
        if self.idle_timeout_s and idle_s > self.idle_timeout_s:
            return self.fail(writer, 1001, f"idle for more than {self.idle_timeout_s:g}s")
        if self.ping_interval_s and idle_s > self.ping_interval_s and now - self.last_ping > self.ping_interval_s:
            self.last_ping = now
            writer.emit(_ws_frame(WS_PING, b"fastmock"))
        return 0

    cdef int shutdown(self, ResponseWriter writer) except -1:
        """Graceful shutdown: 1001, then wait for the client's close frame (the server's timeout bounds it)."""
        if not self.closing and not self.sent_shutdown:
            self.sent_shutdown = True
            writer.emit(_ws_frame(WS_CLOSE, (1001).to_bytes(2, "big") + b"server shutting down"))
        return 0

    # === Public API (sans-IO, for tests) ===

    def receive(self, ResponseWriter writer, bytes data):
        """Feed bytes from the client; the answers are written to ``writer``."""
        self.feed(writer, data, len(data))
