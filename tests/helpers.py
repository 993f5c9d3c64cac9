"""Test helpers: the real CLI in a subprocess, raw sockets, and h11 as a strict client-side validator."""

import contextlib
import json
import os
import random
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

import h11
import httpx

class RunningServer:
    def __init__(self, proc, log_path, ready_path, host, port, scheme="http"):
        self.scheme = scheme
        self.proc = proc
        self.log_path = log_path
        self.ready_path = ready_path
        self.host = host
        self.port = port

    def ready(self):
        """The ready file's JSON document."""
        with open(self.ready_path) as ready:
            return json.load(ready)

    @property
    def url(self):
        return f"{self.scheme}://{self.host}:{self.port}"

    def log(self):
        with open(self.log_path, "rb") as log:
            return log.read().decode("utf-8", "replace")

    def connect(self, timeout=10):
        sock = socket.create_connection((self.host.strip("[]"), self.port), timeout=timeout)
        return sock

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def start_server(*args, stdout=subprocess.DEVNULL, timeout=15, open_files=None, prefix=()):
    """Run ``fastmock ARGS --ready-file F``; wait for F (every worker listens); always stop it.

    The ready file's URL is where to talk to (the management API for a fleet).
    ``open_files`` caps the server's RLIMIT_NOFILE (soft and hard), to reach the limit cheaply; ``prefix``
    is a command that execs the rest (e.g. unshare).
    """
    def limit_open_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with tempfile.NamedTemporaryFile(prefix="fastmock-", suffix=".log", delete=False) as log:
        log_path = log.name
    ready_path = log_path.removesuffix(".log") + ".ready"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "fastmock", *args, "--ready-file", ready_path],
                                stdout=stdout, stderr=log, preexec_fn=limit_open_files if open_files else None)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path, "rb") as log:
                    raise RuntimeError(f"server did not start: {log.read().decode()}")
            time.sleep(0.02)
        with open(ready_path) as ready:
            scheme, _, address = json.load(ready)["url"].partition("://")
        host, _, port = address.rpartition(":")
        yield RunningServer(proc, log_path, ready_path, host, int(port), scheme)  # an IPv6 host keeps its brackets
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(log_path)
        with contextlib.suppress(FileNotFoundError):  # a killed server leaves it
            os.unlink(ready_path)


def ws_client_frame(opcode, payload, *, fin=True, masked=True, rsv=0, length=None, form=None, mask=None):
    """A WebSocket client frame (RFC 6455 §5.2). ``length`` overrides the declared payload length; ``form``
    (126 or 127) forces a longer length encoding than needed; ``mask`` defaults to 4 random bytes."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    masked_bit = 0x80 if masked else 0
    if n < 126 and form is None:
        head = struct.pack("!BB", first, masked_bit | n)
    elif n < 65536 and form != 127:
        head = struct.pack("!BBH", first, masked_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, masked_bit | 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4) if mask is None else mask
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def recv_until_closed(sock, timeout=10):
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def recv_responses(sock, count, method="GET", timeout=10):
    """Read ``count`` responses with h11 as a strict client; return [(Response, body bytes), ...]."""
    sock.settimeout(timeout)
    conn = h11.Connection(h11.CLIENT)
    results = []
    while len(results) < count:
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        response, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
                if not data:
                    raise AssertionError(f"connection closed after {len(results)} responses")
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        results.append((response, body))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            break
        conn.start_next_cycle()
    return results


def read_response(data, method="GET", http10=False):
    """The one response h11, as a strict client, reads from ``data``: (response, body, whether the message
    was complete). Anything else in ``data`` fails."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")], http_version="1.0" if http10 else "1.1"))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    response = conn.next_event()
    assert isinstance(response, h11.Response), response
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert conn.next_event() in (h11.NEED_DATA, h11.PAUSED)
            return response, body, True
        elif event is h11.NEED_DATA:
            return response, body, False
        else:
            raise AssertionError(f"unexpected {event!r}")


def header(response, name):
    """A header of an h11 Response as str (h11 lower-cases names)."""
    for key, value in response.headers:
        if key == name.lower().encode():
            return value.decode()
    return None


def json_error_example(url):
    """GET ``url``, expect a 400 JSON error, and return its ``example``."""
    response = httpx.get(url)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    return response.json()["example"]


def exited(pid):
    """Whether process ``pid`` has exited (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def free_port():
    """A port nothing listens on now (the kernel's pick); a test hands it to a server that needs a fixed one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused(port, host="127.0.0.1"):
    """Whether a connection to ``host:port`` is refused (nothing listens there)."""
    try:
        socket.create_connection((host.strip("[]"), port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        pass  # the listener closed with our SYN in its backlog: going away, not yet gone (the caller asks again)
    return False


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


OK_EMPTY_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class RecordingServer:
    """A minimal real HTTP server (threads) that keeps the head and body of every request and answers it.

    ``answer(n)`` gives the raw bytes sent for the n-th request (from 0); by default 200 {}. An upstream that
    misbehaves on purpose scripts its bytes here.
    """

    def __init__(self, answer=lambda n: OK_EMPTY_JSON):
        self.answer = answer
        self.requests = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn):
        data = b""
        with conn:
            while chunk := conn.recv(65536):
                data += chunk
                while b"\r\n\r\n" in data:
                    head, rest = data.split(b"\r\n\r\n", 1)
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    if len(rest) < length:
                        break
                    self.requests.append((head.decode(), rest[:length]))
                    data = rest[length:]
                    conn.sendall(self.answer(len(self.requests) - 1))


# --- fleets -------------------------------------------------------------------------------------------

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


_next_base = random.randrange(12000, 16000, 10)


def free_base(count):
    """The first port of a block of ``count`` ports that no other fleet of this test run uses."""
    global _next_base
    if _next_base + count + 200 >= 32768:  # below the ephemeral range; the first fleets have stopped by now
        _next_base = 10000
    base = _next_base
    _next_base += count + 200  # room for scaling
    return base


def start_fleet(count, *args, base=None, **kwargs):
    """``fastmock fleet COUNT`` below the ephemeral range, management API on a free port."""
    base = base if base is not None else free_base(count)
    return start_server("fleet", str(count), "--base-port", str(base), "--mgmt-port", "0", *args, **kwargs)


@contextlib.contextmanager
def start_pods(addresses, peers, base, mgmt_port, *extra, tokens=None, prefix=()):
    """A fleet of several "pods" (--peers): 5 ports on each loopback address, ordinals in order, seed 7."""
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(start_fleet(
            5, "--host", address, "--mgmt-port", str(mgmt_port), "--peers", peers, "--ordinal", str(ordinal),
            "--token", (tokens or {}).get(address, TOKEN), "--seed", "7", *extra, base=base, prefix=prefix))
            for ordinal, address in enumerate(addresses)]
        yield servers
        for server in servers:
            server.stop()


class Fleet:
    def __init__(self, server, base, count):
        self.server = server
        self.base = base
        self.count = count
        self.api = httpx.Client(base_url=server.url, timeout=10)

    def stats(self):
        return self.api.get("/stats").json()

    def health(self, port):
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def https_status_line(port, ca_file, name="localhost", timeout=10):
    """GET /health over TLS as a client trusting only ``ca_file``, sending ``name`` as SNI and Host: the
    status line, or why the handshake failed (the verify message, OpenSSL's reason, or "reset")."""
    client = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
                client.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET /health HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            return tls.recv(100).split(b"\r\n")[0].decode()
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message
    except ssl.SSLError as exc:
        return exc.reason
    except ConnectionResetError:
        return "reset"
