# The load generator's latency histogram (core/histogram.pyx).

cdef extern from *:
    int __builtin_clzll(unsigned long long)

cdef class LatencyHistogram:
    cdef:
        unsigned long long* counts
        unsigned long long total, min_us, max_us, sum_us
    cdef void record_us(self, unsigned long long value)
