# Time: the loop-wide coarse clock and timer helpers shared by the writer, the connections and the server.

cdef inline double _now():
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

def _call_later_at_least(loop, double delay_s, callback, *args):
    """``loop.call_later`` that never fires before ``delay_s`` has passed on the real clock.

    uvloop's clock is whole milliseconds, read at the start of the loop's iteration, so a plain
    call_later(0.05) may fire after 49 ms; a promised delay (/delay, a fault's delay, the proxy's
    --delay-ms) adds that lag and rounds up to the millisecond.
    """
    return loop.call_later(ceil((delay_s + _now() - loop.time()) * 1000) / 1000, callback, *args)


# The loop-wide coarse clock, advanced by each Server tick: per-read activity stamps use it because
# clock_gettime costs ~7% of a pipelined /health run on this VM (no vDSO-fast TSC).
cdef double g_now = _now()


cdef inline object _cancel(object handle):
    """Cancel a pending timer or task, if any; returns None to store in its place."""
    if handle is not None:
        handle.cancel()
    return None
