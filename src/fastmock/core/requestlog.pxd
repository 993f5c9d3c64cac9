# The request log ring (core/requestlog.pyx): fixed-size C records behind /getlogs.

cdef struct LogRecord:
    double time_s           # wall clock when the request head was parsed
    double latency_s
    int status              # 0: the connection ended without a response (a fault)
    int outcome             # FaultKind; F_NONE: no fault
    unsigned char method_len, path_len, client_len
    char method[16]
    char path[160]
    char client[48]


cdef class RequestLog:
    cdef:
        LogRecord* records
        Py_ssize_t capacity
        unsigned long long written
        object sink
    cdef void add(self, double started_s, double latency_s, int status, int outcome, const char* method,
                  size_t method_len, const char* path, size_t path_len, bytes client)
    cdef dict _as_dict(self, LogRecord* record)
