# Fault plans (core/faults.pyx): a parsed fault spec as C structs, drawn per request.

cdef enum FaultKind:
    F_NONE
    F_OK
    F_STATUS
    F_TIMEOUT
    F_RESET
    F_CLOSE
    F_GARBAGE
    F_TRUNCATE
    F_DRIP
    F_KINDS

cdef enum DelayKind:
    D_NONE
    D_FIXED
    D_UNIFORM
    D_NORMAL
    D_LOGNORMAL

cdef struct FaultOutcome:
    int kind
    int status
    double arg          # timeout seconds (0: until --max-hang), or drip bytes per second
    double cumulative   # weight of this outcome and all before it


cdef class FaultPlan:
    cdef:
        readonly str spec
        FaultOutcome* outcomes
        int count
        double total
        int delay_kind
        double delay_a, delay_b
    cdef FaultOutcome* draw(self, Random rng, double* delay_s)
    cdef double _delay(self, Random rng)
