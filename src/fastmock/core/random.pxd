# The seeded PRNG (core/random.pyx): xoshiro256**.

cdef class Random:
    cdef unsigned long long s[4]
    cdef unsigned long long next_u64(self)
    cdef double next_double(self)
