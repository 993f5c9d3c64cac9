# A log-linear latency histogram (HDR-style): microsecond values below 2048 are exact, above that each power
# of two is split into 1024 buckets (0.1 % resolution), up to 2^40 us. Merging is adding counts, exactly.

cdef enum:
    HIST_EXACT = 2048
    HIST_SUB = 1024
    HIST_BUCKETS = 2048 + 30 * 1024   # magnitudes 2^11 .. 2^40


HISTOGRAM_LAYOUT = "log-linear-us:2048+30x1024"  # in summaries: only histograms of one layout add up


cdef inline int _bucket_of(unsigned long long value):
    cdef int magnitude
    if value < HIST_EXACT:
        return <int>value
    if value >= (1ULL << 41):
        value = (1ULL << 41) - 1
    magnitude = 63 - __builtin_clzll(value)  # 11..40
    return HIST_EXACT + (magnitude - 11) * HIST_SUB + <int>((value >> (magnitude - 10)) - HIST_SUB)


cdef inline unsigned long long _highest_in(int bucket):
    cdef int magnitude
    cdef unsigned long long sub
    if bucket < HIST_EXACT:
        return bucket
    magnitude = (bucket - HIST_EXACT) // HIST_SUB + 11
    sub = (bucket - HIST_EXACT) % HIST_SUB + HIST_SUB
    return ((sub + 1) << (magnitude - 10)) - 1


cdef class LatencyHistogram:
    """Latencies in microseconds; ``percentile`` answers with the highest value of the bucket (as HDR does)."""

    def __cinit__(self):
        self.counts = <unsigned long long*>PyMem_Calloc(HIST_BUCKETS, sizeof(unsigned long long))
        if self.counts == NULL:
            raise MemoryError()
        self.total = 0
        self.min_us = 0
        self.max_us = 0
        self.sum_us = 0

    def __dealloc__(self):
        PyMem_Free(self.counts)

    cdef void record_us(self, unsigned long long value):
        self.counts[_bucket_of(value)] += 1
        if self.total == 0 or value < self.min_us:
            self.min_us = value
        if value > self.max_us:
            self.max_us = value
        self.total += 1
        self.sum_us += value

    # === Public API ===

    def record(self, double seconds):
        self.record_us(<unsigned long long>(max(seconds, 0.0) * 1e6))

    @property
    def count(self):
        return self.total

    @property
    def min(self):
        return self.min_us / 1e6

    @property
    def max(self):
        return self.max_us / 1e6

    @property
    def mean(self):
        return self.sum_us / self.total / 1e6 if self.total else 0.0

    def percentile(self, double percent):
        """The latency (seconds) at or below which ``percent`` % of the values lie."""
        cdef unsigned long long wanted, seen = 0
        cdef int bucket
        if self.total == 0:
            return 0.0
        wanted = max(1, <unsigned long long>ceil(percent / 100.0 * self.total))
        for bucket in range(HIST_BUCKETS):
            seen += self.counts[bucket]
            if seen >= wanted:
                return min(_highest_in(bucket), self.max_us) / 1e6
        return self.max_us / 1e6

    def count_at_most(self, double seconds):
        """How many values lie in buckets wholly at or below ``seconds`` (a Prometheus bucket's count)."""
        cdef unsigned long long bound = <unsigned long long>(max(seconds, 0.0) * 1e6), seen = 0
        cdef int bucket
        for bucket in range(HIST_BUCKETS):
            if _highest_in(bucket) > bound:
                break
            seen += self.counts[bucket]
        return seen

    def merge(self, LatencyHistogram other):
        cdef int bucket
        for bucket in range(HIST_BUCKETS):
            self.counts[bucket] += other.counts[bucket]
        if other.total:
            self.min_us = other.min_us if self.total == 0 else min(self.min_us, other.min_us)
            self.max_us = max(self.max_us, other.max_us)
        self.total += other.total
        self.sum_us += other.sum_us

    def to_dict(self):
        """The histogram as JSON-ready data (a summary's): its layout, totals and non-empty buckets."""
        cdef int bucket
        return {"layout": HISTOGRAM_LAYOUT, "count": self.total, "min_us": self.min_us, "max_us": self.max_us,
                "sum_us": self.sum_us,
                "buckets": [[bucket, self.counts[bucket]] for bucket in range(HIST_BUCKETS) if self.counts[bucket]]}

    @staticmethod
    def from_dict(data):
        """The histogram ``to_dict`` gave; ValueError saying what is wrong with anything else (a summary
        file is input: every bucket index is checked before it is used)."""
        cdef LatencyHistogram histogram = LatencyHistogram()
        cdef object bucket, count
        if not isinstance(data, dict):
            raise ValueError("a histogram is an object")
        if data.get("layout") != HISTOGRAM_LAYOUT:
            raise ValueError(f"histogram layout {data.get('layout')!r}, not {HISTOGRAM_LAYOUT!r} "
                             f"(a different fastmock version): its buckets cannot be added exactly")
        try:
            for bucket, count in data["buckets"]:
                if not (type(bucket) is int and 0 <= bucket < HIST_BUCKETS and type(count) is int and count > 0):
                    raise ValueError(f"bucket {bucket!r} with count {count!r} is not in the layout")
                if histogram.total + count >= 1 << 64:  # a Python sum: the C one would wrap and look right
                    raise ValueError("the bucket counts add up past 2**64")
                histogram.counts[<int>bucket] += <unsigned long long>count
                histogram.total += <unsigned long long>count
            histogram.min_us, histogram.max_us, histogram.sum_us = data["min_us"], data["max_us"], data["sum_us"]
        except (KeyError, TypeError, OverflowError) as exc:
            raise ValueError(f"not a histogram ({type(exc).__name__}: {exc})") from None
        if histogram.total != data.get("count") or histogram.total and histogram.min_us > histogram.max_us:
            raise ValueError("the histogram's count, min or max does not match its buckets")
        return histogram

    def __reduce__(self):  # workers send theirs to the parent
        return (_histogram_from, ((<char*>self.counts)[:HIST_BUCKETS * sizeof(unsigned long long)], self.total,
                                  self.min_us, self.max_us, self.sum_us))


def _histogram_from(bytes counts, unsigned long long total, unsigned long long min_us, unsigned long long max_us,
                    unsigned long long sum_us):
    cdef LatencyHistogram histogram = LatencyHistogram()
    memcpy(histogram.counts, <const char*>counts, len(counts))
    histogram.total = total
    histogram.min_us = min_us
    histogram.max_us = max_us
    histogram.sum_us = sum_us
    return histogram
