"""What every process shares (runtime.py): the process log, and the core's log records reaching it."""

import asyncio
import os
import time

import pytest
import uvloop

from fastmock import runtime
from fastmock.runtime import available_cpus
from fastmock._core import Route, Server, StaticResponse


def test_a_failing_handler_answers_500_and_its_traceback_reaches_the_process_log(capsys):
    def broken(request):
        raise RuntimeError("the handler broke")

    loop = uvloop.new_event_loop()
    server = Server(loop, [Route("broken", b"/broken", handler=broken)],
                    Route("default", static=StaticResponse(404, b"", b"")))

    async def request():
        listener = await loop.create_server(server.make_protocol, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        writer.write(b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        listener.close()
        return head

    try:
        head = loop.run_until_complete(request())
    finally:
        loop.close()
    assert head.startswith(b"HTTP/1.1 500 ")
    logged = [line for line in runtime.recent_log_lines if "route broken failed" in line]
    assert logged and "Traceback" in logged[-1] and "RuntimeError: the handler broke" in logged[-1]
    assert "RuntimeError: the handler broke" in capsys.readouterr().err


def test_a_server_started_after_a_long_quiet_spell_keeps_its_busy_connections():
    """The core's coarse clock only moves with a server's tick: a server started long after the last tick
    (the fleet's management API, after a million ports took 20 s to start) must not judge its first
    connections idle by the stale time (they were cut at its first tick: a reset mid-request)."""
    time.sleep(0.6)  # no server ticks here meanwhile: the coarse clock is at least this stale
    loop = uvloop.new_event_loop()
    server = Server(loop, [], Route("default", static=StaticResponse(200, b"ok", b"text/plain")), idle_timeout_s=0.3)

    async def busy_connection():
        listener = await loop.create_server(server.make_protocol, "127.0.0.1", 0)
        server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        answered = 0
        for _ in range(12):  # 0.6 s of requests 50 ms apart: never idle for the 0.3 s timeout
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
            answered += 1
            await asyncio.sleep(0.05)
        writer.close()
        listener.close()
        server.stop()
        return answered

    try:
        assert loop.run_until_complete(busy_connection()) == 12
    finally:
        loop.close()


def test_a_restarting_worker_backs_off_while_it_keeps_dying_quickly():
    backoff = runtime.RestartBackoff(quick_s=10.0, max_s=1.0)
    assert [backoff.after_death(0, lived_s=0.5) for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.after_death(0, lived_s=60.0) == 0.1  # it lived: the next death starts over
    assert backoff.after_death(1, lived_s=0.5) == 0.2  # each worker counts its own


def _cgroup_tree(tmp_path, proc_lines, files):
    proc = tmp_path / "cgroup"
    proc.write_text("".join(line + "\n" for line in proc_lines))
    for name, text in files.items():
        path = tmp_path / "fs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path / "fs"), str(proc)


@pytest.mark.parametrize(("proc_lines", "files", "expected"), [
    (["0::/kubepods/pod1"], {"kubepods/pod1/cpu.max": "50000 100000\n"}, 1),         # v2: half a CPU → 1
    (["0::/"], {"cpu.max": "max 100000\n"}, None),                                     # v2: no quota
    (["4:cpu,cpuacct:/docker/abc"], {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
                                     "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 1),  # v1
    (["4:cpu,cpuacct:/"], {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     None),                                                                            # v1: no quota
    (["0::/gone"], {}, None),                                                          # nothing readable
])
def test_available_cpus_honours_the_cgroup_quota(tmp_path, proc_lines, files, expected):
    root, proc = _cgroup_tree(tmp_path, proc_lines, files)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(root, proc) == (min(affinity, expected) if expected else affinity)
