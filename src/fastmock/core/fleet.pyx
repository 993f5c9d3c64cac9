# Fleet ports: thousands of listeners in one worker process, all served by one Server. A port's /health
# and /kill answers carry the port number, so they are rendered here per request (no Python call), and
# every request bumps the port's counter in the fleet's shared memory.

cdef bytes FLEET_NOT_FOUND = (b'{"error":"no such endpoint: a fleet port answers /health and /kill",'
                              b'"example":"/health","endpoints":["/health","/kill"]}')


cdef class PortGroup:
    """The ports of one fleet worker and their shared Server.

    ``counters`` is a writable buffer of unsigned 64-bit request counters (the shared memory), indexed by
    a port's slot; ``on_kill(port, protocol)`` runs once a /kill answer is queued on ``protocol``.
    The other keyword arguments are the Server's.
    """

    def __cinit__(self, loop, counters, on_kill, **server_options):
        cdef unsigned long long[::1] view = counters
        self.health_route = Route("health", b"/health")
        self.kill_route = Route("kill", b"/kill")
        not_found = Route("not_found", static=StaticResponse(404, FLEET_NOT_FOUND, b"application/json"))
        self.server = Server(loop, [self.health_route, self.kill_route], not_found, **server_options)
        self.counters = counters
        self.requests = &view[0]
        self.slots = view.shape[0]
        self.on_kill = on_kill

    def port(self, int port, Py_ssize_t slot):
        """The protocol factory (and handle) of one port; ``slot`` indexes its counter."""
        if not 0 <= slot < self.slots:
            raise IndexError(f"slot {slot} out of range")
        cdef FleetPort fleet_port = FleetPort.__new__(FleetPort)
        fleet_port.group = self
        fleet_port.port = port
        fleet_port.slot = slot
        return fleet_port

    def close_connections(self, FleetPort port, keep=None):
        """Abort the open connections of ``port``, except ``keep``."""
        cdef ServerProtocol conn
        for conn in list(self.server.connections):
            if (<PortProtocol>conn).port is port and conn is not keep:
                conn.transport.abort()


cdef class FleetPort:
    """One port of a PortGroup; calling it makes the protocol of a new connection (the listener's factory)."""

    def __call__(self):
        cdef PortProtocol proto = PortProtocol.__new__(PortProtocol)
        proto.port = self
        return self.group.server._init_protocol(proto)

    @property
    def requests(self):
        return self.group.requests[self.slot]


cdef class PortProtocol(ServerProtocol):
    """A connection to a fleet port: /health and /kill are answered with the port in the body.

    A port with a fault plan draws from it for every request but /kill (which stays the way to stop it).
    """

    cdef int _answer(self) except -1:
        cdef FleetPort port = self.port
        cdef PortGroup group = port.group
        cdef Route route = self.route
        group.requests[port.slot] += 1
        if route is group.kill_route:
            self.must_close = True
            self._answer_port(200)
            group.on_kill(port, self)
            return 1
        if port.plan is not None:
            self.started = _now()
            if self._draw_fault(port.plan):
                return self._answer_fault()
        if route is not group.health_route:
            return ServerProtocol._answer(self)
        return self._answer_port(200)

    cdef int _apply_fault(self) except -1:
        cdef int kind = self.fault.kind
        if self.route is not self.port.group.health_route or kind not in (F_OK, F_STATUS, F_TRUNCATE, F_DRIP):
            return ServerProtocol._apply_fault(self)
        return self._answer_port(self.fault.status if kind == F_STATUS else 200)

    cdef int _answer_port(self, int status) except -1:
        """/health or /kill of this port with ``status``; a drawn truncate or drip applies to it."""
        cdef int port = self.port.port
        if self.route is self.port.group.kill_route:
            body = b'{"status":"killed","port":%d}' % port
        elif status < 400:
            body = b'{"status":"ok","port":%d}' % port
        else:
            body = b'{"status":"error","code":%d,"port":%d}' % (status, port)
        if self.fault != NULL:  # truncate and drip are applied by _respond
            self._respond(Response(status, body, b"application/json"))
        else:
            conn = self._conn_mode()
            if conn == CONN_CLOSE:
                self.must_close = True
            data = _render(status, body, b"application/json", None, conn, self.head_only)
            self.writer.out.append(data)
            self._done(status, len(data), 0.0)
        return 1 if self.must_close or self.state != CS_READING else 0
