# A seeded PRNG in C (xoshiro256**, seeded through splitmix64), fast enough to draw per request without
# touching Python, and reproducible: the same seed gives the same sequence.

cdef inline unsigned long long _rotl(unsigned long long x, int k):
    return (x << k) | (x >> (64 - k))


cdef class Random:
    """xoshiro256** seeded from one integer."""

    def __cinit__(self, unsigned long long seed):
        cdef unsigned long long z
        cdef int i
        for i in range(4):
            # splitmix64: spreads a small seed over the whole state, never all zero
            seed += 0x9E3779B97F4A7C15ULL
            z = seed
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
            self.s[i] = z ^ (z >> 31)

    cdef unsigned long long next_u64(self):
        cdef unsigned long long result = _rotl(self.s[1] * 5, 7) * 9
        cdef unsigned long long t = self.s[1] << 17
        self.s[2] ^= self.s[0]
        self.s[3] ^= self.s[1]
        self.s[1] ^= self.s[2]
        self.s[0] ^= self.s[3]
        self.s[2] ^= t
        self.s[3] = _rotl(self.s[3], 45)
        return result

    cdef double next_double(self):
        # the top 53 bits make a double in [0, 1)
        return (self.next_u64() >> 11) * (1.0 / 9007199254740992.0)

    # === Public API ===

    def random(self):
        """A float in [0, 1)."""
        return self.next_double()


cdef bytes _hex_id(Random rng, int digits):
    """A random id of ``digits`` hex digits (at most 32), for trace and request ids."""
    return (b"%016x%016x" % (rng.next_u64(), rng.next_u64()))[:digits]
