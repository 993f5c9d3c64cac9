# Fleet ports (core/fleet.pyx): many listeners of one worker served by one Server.

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
