# The request log ring (core/requestlog.pyx): fixed-size C records behind /getlogs.

cdef struct LogRecord:
    double time_s           # wall clock when the request head was parsed
    double latency_s
    int status              # 0: the connection ended without a response (a fault)
    int outcome             # FaultKind; F_NONE: no fault
    unsigned char method_len, path_len, client_len, server_len
    char method[16]
    char path[160]          # the request-target, as sent
    char client[48]
    char server[48]         # the address the client connected to (the url's authority)


cdef class RequestLog:
    cdef:
        LogRecord* records
        Py_ssize_t capacity
        unsigned long long written
        object sink
    cdef void add(self, double started_s, double latency_s, int status, int outcome, const char* method,
                  size_t method_len, const char* path, size_t path_len, bytes client, bytes server)
    cdef dict _as_dict(self, LogRecord* record)
