"""Server RSS per connection: open N connections to ``fastmock hp``, send one request on each, read only
the first bytes of each answer, then hold them.

    python benchmarks/e2e/conn_memory.py [N] [TARGET]

With TARGET /health (the default) the connections are idle keep-alive ones; with /bin/10G each is a
stream whose reader has stopped (flow control must hold it). N defaults to 10000; client and server are
separate processes, so each stays under the 20,000 open-files cap.
"""

import os
import re
import socket
import subprocess
import sys
import time

REQUEST = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(count: int, target: str) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "fastmock", "hp", "--port", "0", "--mem-interval", "0", "--idle-timeout", "10m"],
        stderr=subprocess.PIPE)
    try:
        port = int(re.search(rb"listening on http://[^:]+:(\d+)", server.stderr.readline()).group(1))
        warm = socket.create_connection(("127.0.0.1", port))
        warm.sendall(REQUEST % b"/health")
        warm.recv(4096)
        before = rss_bytes(server.pid)
        conns = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(REQUEST % target.encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
            conns.append(sock)
        time.sleep(1)  # let the server settle before sampling; this is a measurement, not a test
        after = rss_bytes(server.pid)
        per_conn = (after - before) / count
        print(f"{count} connections held after GET {target}: server RSS {before / 2**20:.1f} MiB -> "
              f"{after / 2**20:.1f} MiB, {per_conn:.0f} bytes ({per_conn / 1024:.2f} KiB) per connection")
        for sock in conns:
            sock.close()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000, sys.argv[2] if len(sys.argv) > 2 else "/health")
