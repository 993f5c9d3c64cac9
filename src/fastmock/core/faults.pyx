# The fault engine: a spec of the fault language (parsed once, in fastmock/faults.py) becomes a FaultPlan
# of C structs; each request draws its outcome and delay from a seeded Random without touching Python.

from libc.math cimport exp, log as c_log, sqrt, cos

FAULT_KIND_NAMES = ("none", "ok", "status", "timeout", "reset", "close", "garbage", "truncate", "drip")
DELAY_KIND_NAMES = ("none", "fixed", "uniform", "normal", "lognormal")
cdef double TWO_PI = 6.283185307179586
cdef double Z_P99 = 2.3263478740408408  # the standard normal's 99th percentile


cdef class FaultPlan:
    """One compiled fault spec: outcomes with cumulative weights and a delay distribution.

    ``outcomes`` is a list of ``(kind, status, arg, weight)``: kind a name of FAULT_KIND_NAMES, ``arg`` the
    timeout in seconds (0: until --max-hang) or the drip rate in bytes/s. ``delay`` is ``(kind, a, b)``
    with a kind of DELAY_KIND_NAMES, in seconds: fixed(a), uniform(a, b), normal(mean a, stddev b),
    lognormal(median a, p99 b).
    """

    def __cinit__(self, str spec, list outcomes, tuple delay=("none", 0.0, 0.0)):
        cdef int i
        cdef double total = 0.0
        if not outcomes:
            raise ValueError("a fault plan needs at least one outcome")
        self.spec = spec
        self.outcomes = <FaultOutcome*>PyMem_Calloc(len(outcomes), sizeof(FaultOutcome))
        if self.outcomes == NULL:
            raise MemoryError()
        self.count = len(outcomes)
        for i, (kind, status, arg, weight) in enumerate(outcomes):
            if weight < 0:
                raise ValueError("weights must not be negative")
            total += weight
            self.outcomes[i].kind = FAULT_KIND_NAMES.index(kind)
            self.outcomes[i].status = status
            self.outcomes[i].arg = arg
            self.outcomes[i].cumulative = total
        if not total > 0:
            raise ValueError("the weights add up to zero")
        self.total = total
        self.delay_kind = DELAY_KIND_NAMES.index(delay[0])
        self.delay_a = delay[1]
        self.delay_b = delay[2]
        if self.delay_kind == D_LOGNORMAL:  # store mu and sigma of the underlying normal
            self.delay_a = c_log(delay[1])
            self.delay_b = (c_log(delay[2]) - self.delay_a) / Z_P99

    def __dealloc__(self):
        PyMem_Free(self.outcomes)

    cdef FaultOutcome* draw(self, Random rng, double* delay_s):
        cdef double point = rng.next_double() * self.total
        cdef int i = 0
        while i < self.count - 1 and point >= self.outcomes[i].cumulative:
            i += 1
        delay_s[0] = self._delay(rng)
        return &self.outcomes[i]

    cdef double _delay(self, Random rng):
        cdef double u1, u2, z
        if self.delay_kind == D_NONE:
            return 0.0
        if self.delay_kind == D_FIXED:
            return self.delay_a
        if self.delay_kind == D_UNIFORM:
            return self.delay_a + (self.delay_b - self.delay_a) * rng.next_double()
        u1 = 1.0 - rng.next_double()  # (0, 1]: log(u1) is finite
        u2 = rng.next_double()
        z = sqrt(-2.0 * c_log(u1)) * cos(TWO_PI * u2)  # Box-Muller
        if self.delay_kind == D_NORMAL:
            return max(0.0, self.delay_a + self.delay_b * z)
        return exp(self.delay_a + self.delay_b * z)

    # === Public API ===

    def sample(self, Random rng):
        """Draw once from Python: (kind, status, arg, delay_s)."""
        cdef double delay_s
        cdef FaultOutcome* outcome = self.draw(rng, &delay_s)
        return FAULT_KIND_NAMES[outcome.kind], outcome.status, outcome.arg, delay_s

    def __repr__(self):
        return f"FaultPlan({self.spec!r})"
