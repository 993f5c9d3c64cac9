"""``fastmock tls``: the local CA and a certificate per state, served by a real TLS server and judged by real
clients (Python's ssl and curl) with the CA as their only trust anchor."""

import asyncio
import datetime
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from fastmock._core import TlsConnection
from fastmock.tls import CertificateAuthority, TlsError, file_server_context, parse_state
from helpers import https_status_line, recv_until_closed, start_server


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        self.transport.close()


class TlsServer:
    """Answers every TLS connection with one HTTP/1.1 200: the core's TlsConnection in ``context`` (what the
    servers use, without their ClientHello reader), on a loop of its own in a thread."""

    def __init__(self, context) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = []  # each handshake's outcome: None, or why it failed
        threading.Thread(target=uvloop.run, args=(self._serve(context),), daemon=True).start()

    async def _serve(self, context):
        await asyncio.get_running_loop().create_server(
            lambda: TlsConnection(Answer(), context, self.handshakes.append, 10.0), sock=self.sock)
        await asyncio.Event().wait()  # until the test process ends (a daemon thread)


def handshake(authority, server, extra_ca=b"", host="localhost"):
    """Connect as a verifying client; the verify message on failure, else "ok"."""
    client = ssl.create_default_context(cadata=(authority.pem + extra_ca).decode())
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message


@pytest.mark.parametrize(("state", "expected"), [
    ("valid", "ok"),
    ("expiring(3)", "ok"),
    ("expired", "certificate has expired"),
    ("not-yet-valid", "certificate is not yet valid"),
    ("wrong-host", "Hostname mismatch, certificate is not valid for 'localhost'."),
    ("self-signed", "self-signed certificate"),
    ("untrusted-root", "unable to get local issuer certificate"),
    ("incomplete-chain", "unable to get local issuer certificate"),
])
def test_each_state_fails_verification_as_a_monitor_expects(authority, state, expected):
    server = TlsServer(authority.issue(state).server_context())
    assert handshake(authority, server) == expected


def test_expiring_ends_in_its_days_and_incomplete_chain_verifies_with_its_intermediate(authority):
    days_left = authority.issue("expiring(3)").not_after - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=2, hours=23) < days_left <= datetime.timedelta(days=3)
    incomplete = authority.issue("incomplete-chain")
    server = TlsServer(incomplete.server_context())
    assert handshake(authority, server, extra_ca=incomplete.missing_pem) == "ok"  # only the link was missing
    assert handshake(authority, TlsServer(authority.issue("valid").server_context()), host="127.0.0.1") == "ok"


def test_the_ca_is_kept_and_its_key_is_private(tmp_path):
    first = CertificateAuthority(tmp_path)
    assert CertificateAuthority(tmp_path).pem == first.pem  # reused: clients trust it once
    assert os.stat(tmp_path / "ca-key.pem").st_mode & 0o777 == 0o600
    (tmp_path / "ca-key.pem").write_text("not a key")
    with pytest.raises(TlsError, match="cannot use the CA in"):
        CertificateAuthority(tmp_path)


@pytest.mark.parametrize("text", ["nope", "expiring(0)", "expiring(x)", "expiring()"])
def test_bad_states_are_refused(text):
    with pytest.raises(TlsError):
        parse_state(text)


def fastmock(*args):
    return subprocess.run([sys.executable, "-m", "fastmock", "tls", *args], capture_output=True, text=True,
                          timeout=60)


def test_the_cli_issues_files_curl_judges(tmp_path):
    ca_dir, out = tmp_path / "ca", tmp_path / "out"
    out.mkdir()
    ca = fastmock("ca", "--ca-dir", str(ca_dir))
    assert ca.returncode == 0 and ca.stdout.startswith("-----BEGIN CERTIFICATE-----")
    assert str(ca_dir / "ca.pem") in fastmock("trust-help", "--ca-dir", str(ca_dir)).stdout
    for state, curl_code in (("valid", 0), ("expired", 60)):
        issued = fastmock("issue", state, "--out-dir", str(out), "--ca-dir", str(ca_dir))
        assert issued.returncode == 0, issued.stderr
        assert os.stat(out / "key.pem").st_mode & 0o777 == 0o600
        server = TlsServer(file_server_context(str(out / "cert.pem"), str(out / "key.pem")))
        curl = subprocess.run(["curl", "-sS", "--cacert", str(ca_dir / "ca.pem"), f"https://localhost:{server.port}/"],
                              capture_output=True, text=True, timeout=30)
        assert curl.returncode == curl_code, curl.stderr
    bad = fastmock("issue", "expiring(soon)", "--out-dir", str(out), "--ca-dir", str(ca_dir))
    assert bad.returncode == 2 and "Invalid value for 'STATE'" in bad.stderr


# --- hp --tls ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_hp(tmp_path_factory):
    ca_dir = tmp_path_factory.mktemp("hp-ca")
    with start_server("hp", "--tls", "--tls-ca-dir", str(ca_dir), "--port", "0", "--mem-interval", "0",
                      "--grpc-port", "0") as server:
        server.ca = ssl.create_default_context(cafile=ca_dir / "ca.pem")
        server.ca_file = str(ca_dir / "ca.pem")
        yield server
        server.stop()


def test_hp_over_tls_serves_every_kind_of_answer(tls_hp):
    assert tls_hp.url.startswith("https://127.0.0.1:")
    with httpx.Client(base_url=tls_hp.url.replace("127.0.0.1", "localhost"), verify=tls_hp.ca) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert len(client.get("/bin/10M").content) == 10 << 20  # a stream under flow control
        assert client.get("/status/503").status_code == 503
        assert client.get("/health", headers={"X-Fastmock-Fault": "418"}).status_code == 418
        echo = client.post("/echo", content=b"over tls").json()
        assert echo["body"] == "over tls"
        assert echo["tls"]["version"] in ("TLSv1.2", "TLSv1.3") and echo["tls"]["alpn"] == "http/1.1"
        assert echo["tls"]["sni"] == "localhost" and echo["tls"]["cipher"] and echo["tls"]["resumed"] is False
    with pytest.raises(httpx.HTTPError):  # a reset fault still ends the connection without an answer
        httpx.get(f"{tls_hp.url}/health", headers={"X-Fastmock-Fault": "reset"}, verify=tls_hp.ca)


def test_the_core_tls_layer_holds_what_it_decrypted_while_reading_is_paused(tls_hp):
    """Three requests in one TLS write: the first (/delay, and /delay/0/50 reads its body slowly) pauses
    reading with the others already decrypted or still in OpenSSL; all three are answered, in order."""
    client = ssl.create_default_context(cafile=tls_hp.ca_file)
    body = b"x" * 200_000  # several records, read 64 KiB at a time with pauses between
    requests = (b"GET /delay/100 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /delay/0/50 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (len(body), body))
    with socket.create_connection(("127.0.0.1", tls_hp.port), timeout=10) as raw, \
            client.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(requests)
        answers = recv_until_closed(tls)
    assert answers.count(b"HTTP/1.1 200 OK") == 3 and answers.rstrip().endswith(b'{"status":"ok"}')
    assert b'"body_size":200000' in answers


def test_a_tls_client_that_sends_garbage_after_its_handshake_is_cut_and_the_server_goes_on(tls_hp):
    client = ssl.create_default_context(cafile=tls_hp.ca_file)
    with socket.create_connection(("127.0.0.1", tls_hp.port), timeout=10) as raw, \
            client.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(4096).startswith(b"HTTP/1.1 200 OK")
        garbage = b"\x17\x03\x03\x00\x20" + random.Random(1).randbytes(32)  # a record that does not decrypt
        socket.socket.sendall(tls, garbage)  # under the TLS layer
        with pytest.raises((ssl.SSLError, ConnectionError)):
            while tls.recv(4096):  # the server's alert, then its close
                pass
    assert https_status_line(tls_hp.port, tls_hp.ca_file) == "HTTP/1.1 200 OK"


def _sni_handshake(server, name):
    return https_status_line(server.port, server.ca_file, name)


@pytest.mark.parametrize(("name", "expected"), [
    ("valid.fastmock.test", "HTTP/1.1 200 OK"),
    ("expiring-3.fastmock.test", "HTTP/1.1 200 OK"),
    ("expired.fastmock.test", "certificate has expired"),
    ("not-yet-valid.fastmock.test", "certificate is not yet valid"),
    ("wrong-host.fastmock.test", "Hostname mismatch, certificate is not valid for 'wrong-host.fastmock.test'."),
    ("self-signed.fastmock.test", "self-signed certificate"),
    ("untrusted-root.fastmock.test", "unable to get local issuer certificate"),
    ("incomplete-chain.fastmock.test", "unable to get local issuer certificate"),
    ("weak.fastmock.test", "EE certificate key too weak"),
    ("handshake-reset.fastmock.test", "reset"),
    ("nonsense.fastmock.test", "HTTP/1.1 200 OK"),  # an unknown state: the valid certificate (*.fastmock.test)
])
def test_the_sni_name_chooses_the_certificate_state(tls_hp, name, expected):
    assert _sni_handshake(tls_hp, name) == expected


def test_the_sni_name_chooses_the_protocol_versions_and_stalls_too(tls_hp):
    # a modern client and a TLS 1.0 server: the client is told why (a protocol_version alert)
    assert _sni_handshake(tls_hp, "tls1.0-only.fastmock.test") == "TLSV1_ALERT_PROTOCOL_VERSION"
    client = ssl.create_default_context(cafile=tls_hp.ca_file)
    with socket.create_connection(("127.0.0.1", tls_hp.port), timeout=0.5) as raw, pytest.raises(TimeoutError):
        client.wrap_socket(raw, server_hostname="handshake-stall.fastmock.test")  # no answer (until --max-hang)


def test_the_client_hello_reader_takes_hostile_records():
    from fastmock.tls_accept import client_hello_sni

    hello = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                                  server_hostname="expired.fastmock.test")
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    record = outgoing.read()
    assert client_hello_sni(record) == "expired.fastmock.test"
    for cut in range(len(record)):  # every truncation: an answer or None, never an exception
        assert client_hello_sni(record[:cut]) in (None, "expired.fastmock.test")
    rng = random.Random(7)
    for _ in range(2000):  # random bytes in random places
        mutated = bytearray(record)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        result = client_hello_sni(bytes(mutated))
        assert result is None or isinstance(result, str)


def test_sni_names_cannot_make_endless_certificates(tls_hp):
    for days in range(1, 80):  # more than MAX_SNI_STATES: the ones past it get the valid certificate
        assert _sni_handshake(tls_hp, f"expiring-{days}.fastmock.test") == "HTTP/1.1 200 OK"
    assert httpx.get(f"{tls_hp.url}/health", verify=tls_hp.ca).status_code == 200


@pytest.mark.parametrize(("sent", "answer"), [
    (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n"),  # told, as nginx does
    (b"\x00\x01garbage", b"\x15\x03\x03\x00\x02\x02\x0a"),  # a fatal unexpected_message alert
])
def test_what_is_not_tls_on_a_tls_port_is_answered_and_closed(tls_hp, sent, answer):
    with socket.create_connection(("127.0.0.1", tls_hp.port), timeout=10) as sock:
        sock.sendall(sent)
        data = recv_until_closed(sock)
    assert data.startswith(answer)
    if answer.startswith(b"HTTP/"):
        response = h11_response(data)
        assert response.status_code == 400 and b"use https://" in data
    assert httpx.get(f"{tls_hp.url}/health", verify=tls_hp.ca).status_code == 200  # and the server lives on


def test_two_workers_and_the_users_own_certificate(tmp_path):
    issued = CertificateAuthority(tmp_path / "ca").issue("valid")
    (tmp_path / "cert.pem").write_bytes(issued.chain_pem)
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    with start_server("hp", "--tls", "--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"),
                      "--workers", "2", "--port", "0", "--mem-interval", "0", "--grpc-port", "0") as server:
        url = server.url.replace("127.0.0.1", "localhost")
        assert httpx.get(f"{url}/health", verify=ssl.create_default_context(cafile=tmp_path / "ca" / "ca.pem")).status_code == 200


def test_the_users_chain_is_sent_from_ca_file(tmp_path):
    issued = fastmock("issue", "incomplete-chain", "--out-dir", str(tmp_path), "--ca-dir", str(tmp_path / "ca"))
    assert issued.returncode == 0, issued.stderr
    common = ("--tls", "--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"),
              "--port", "0", "--mem-interval", "0", "--grpc-port", "0")
    ca_file = str(tmp_path / "ca" / "ca.pem")
    with start_server("hp", *common) as server:  # the leaf alone: its issuer is unknown
        assert https_status_line(server.port, ca_file) == "unable to get local issuer certificate"
    with start_server("hp", *common, "--ca-file", str(tmp_path / "intermediate.pem")) as server:
        assert https_status_line(server.port, ca_file) == "HTTP/1.1 200 OK"


@pytest.mark.parametrize(("args", "message"), [
    (["--tls", "--certfile", "{tmp}/key.pem"], "Invalid value for '--certfile'"),
    (["--tls", "--ca-file", "{tmp}/key.pem"], "'--ca-file': needs --certfile"),
    (["--certfile", "{tmp}/key.pem"], "'--certfile': only with --tls"),
    (["--tls", "--keyfile", "{tmp}/key.pem"], "'--keyfile': needs --certfile"),
])
def test_bad_tls_files_are_usage_errors(tmp_path, args, message):
    (tmp_path / "key.pem").write_text("not a certificate\n")
    result = subprocess.run([sys.executable, "-m", "fastmock", "hp", "--port", "0",
                             *(arg.format(tmp=tmp_path) for arg in args)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_tls_client_hello_on_a_plain_port_gets_400_and_a_close():
    client = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                                   server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", "0") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(hello)
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in reply


def test_hp_counts_its_handshakes_on_metrics(tls_hp):
    def handshake_metrics():
        families = text_string_to_metric_families(httpx.get(f"{tls_hp.url}/metrics", verify=tls_hp.ca).text)
        return {(sample.name, sample.labels.get("reason")): sample.value for family in families
                for sample in family.samples if sample.name.startswith("fastmock_tls_handshake")}

    before = handshake_metrics()
    with socket.create_connection(("127.0.0.1", tls_hp.port), timeout=10) as sock:  # plain HTTP: not a handshake
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        while sock.recv(4096):
            pass
    after = handshake_metrics()
    assert after[("fastmock_tls_handshakes_total", None)] == before[("fastmock_tls_handshakes_total", None)] + 1
    assert after[("fastmock_tls_handshake_failures_total", "plain_http")] == \
        before.get(("fastmock_tls_handshake_failures_total", "plain_http"), 0) + 1


# --- proxy: TLS termination and https upstreams -----------------------------------------------------------


def test_the_proxy_terminates_tls_and_says_so_upstream(tmp_path):
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", "0") as upstream, \
            start_server("proxy", "--upstream", upstream.url, "--port", "0", "--tls",
                         "--tls-ca-dir", str(tmp_path)) as proxy:
        assert proxy.url.startswith("https://")
        verify = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        echo = httpx.post(f"{proxy.url}/echo", content=b"hi", verify=verify).json()
        assert echo["headers"]["X-Forwarded-Proto"] == "https" and echo["body"] == "hi"
        assert echo["headers"]["X-Trace-Id"]


def test_the_proxy_verifies_an_https_upstream(tmp_path):
    ca_dir = tmp_path / "ca"
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", "0", "--tls",
                      "--tls-ca-dir", str(ca_dir)) as upstream:
        https_upstream = upstream.url.replace("127.0.0.1", "localhost")
        with start_server("proxy", "--upstream", https_upstream, "--upstream-ca", str(ca_dir / "ca.pem"),
                          "--port", "0") as proxy:
            echo = httpx.get(f"{proxy.url}/echo").json()
            assert echo["tls"]["sni"] == "localhost" and echo["headers"]["X-Forwarded-Proto"] == "http"
        with start_server("proxy", "--upstream", https_upstream, "--port", "0") as untrusting:  # system CAs
            failed = httpx.get(f"{untrusting.url}/health")
            assert failed.status_code == 502 and "unknown_ca" in failed.json()["error"]
            metrics = httpx.get(f"{untrusting.url}/metrics").text
            assert 'proxy_upstream_tls_failures_total{reason="unknown_ca"} 1.0' in metrics
            assert 'proxy_upstream_errors_total{kind="tls"} 1.0' in metrics
        with start_server("proxy", "--upstream", https_upstream, "--upstream-insecure", "--port", "0") as blind:
            assert httpx.get(f"{blind.url}/health").status_code == 200


@pytest.mark.parametrize(("args", "message"), [
    (["--upstream", "http://127.0.0.1:1", "--upstream-insecure"], "'--upstream-insecure': only for an https://"),
    (["--upstream", "http://127.0.0.1:1", "--upstream-ca", "/etc/hostname"], "'--upstream-ca': only for an https://"),
    (["--upstream", "https://127.0.0.1:1", "--upstream-ca", "/etc/hostname"], "no CA certificate"),
    (["--upstream", "https://127.0.0.1:1", "--upstream-ca", "/etc/hostname", "--upstream-insecure"],
     "verifies nothing"),
    (["--upstream", "ftp://127.0.0.1:1"], "is not an http(s)://HOST[:PORT] URL"),
])
def test_bad_proxy_tls_flags_are_usage_errors(args, message):
    result = subprocess.run([sys.executable, "-m", "fastmock", "proxy", "--port", "0", *args], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_tls_port_beside_the_plain_one_and_the_ca_where_asked(tmp_path):
    ca_out = tmp_path / "trust-me.pem"
    with start_server("hp", "--port", "0", "--tls-port", "0", "--tls-ca-dir", str(tmp_path / "ca"),
                      "--tls-ca-out", str(ca_out), "--advertise-host", "mock.example", "--workers", "2",
                      "--mem-interval", "0", "--grpc-port", "0") as server:
        ready = json.loads(open(server.ready_path).read())
        assert ready["url"] == server.url and server.url.startswith("http://")
        assert ready["tls_url"].startswith("https://127.0.0.1:") and ready["tls_ca"] == str(ca_out)
        assert ca_out.read_bytes() == (tmp_path / "ca" / "ca.pem").read_bytes()
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        verify = ssl.create_default_context(cafile=ca_out)
        tls_url = ready["tls_url"].replace("127.0.0.1", "localhost")
        assert httpx.get(f"{tls_url}/echo", verify=verify).json()["tls"]["alpn"] == "http/1.1"
        with socket.create_connection(("127.0.0.1", ready["tls_port"]), timeout=10) as raw, \
                verify.wrap_socket(raw, server_hostname="mock.example") as tls:  # --advertise-host is a name
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert f"and {ready['tls_url']}" in server.log() and f"trust {ca_out}" in server.log()


def test_no_tls_resume_sends_no_tickets(tmp_path):
    def resumed(server):
        client = ssl.create_default_context(cafile=tmp_path / "ca" / "ca.pem")
        session = None
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                    client.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                tls.recv(4096)  # the TLS 1.3 ticket comes with (or before) the answer
                session, reused = tls.session, tls.session_reused
        return reused

    common = ("--port", "0", "--tls", "--tls-ca-dir", str(tmp_path / "ca"), "--mem-interval", "0", "--grpc-port", "0")
    with start_server("hp", *common) as server:
        assert resumed(server) is True
    with start_server("hp", *common, "--no-tls-resume") as server:
        assert resumed(server) is False


def test_websocket_and_sse_over_tls(tls_hp):
    import asyncio

    import websockets

    async def talk():
        url = f"wss://localhost:{tls_hp.port}/ws"
        async with websockets.connect(url, ssl=tls_hp.ca, max_size=None) as ws:
            await ws.send("over wss")
            assert await ws.recv() == "over wss"
            await ws.send(b"\x00" * 200000)  # larger than a TLS record
            assert await ws.recv() == b"\x00" * 200000

    asyncio.run(talk())
    with httpx.stream("GET", f"https://localhost:{tls_hp.port}/sse?count=3&interval=10", verify=tls_hp.ca) as events:
        assert sum(line.startswith("data:") for line in events.iter_lines()) == 3


def test_a_client_that_stalls_its_handshake_is_cut_at_header_timeout(tmp_path):
    with start_server("hp", "--port", "0", "--tls", "--tls-ca-dir", str(tmp_path), "--header-timeout", "300ms",
                      "--mem-interval", "0", "--grpc-port", "0") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            started = time.monotonic()
            assert sock.recv(4096) == b""  # no ClientHello from us: the server hangs up
            assert 0.25 <= time.monotonic() - started < 5
        metrics = httpx.get(f"{server.url}/metrics", verify=ssl.create_default_context(cafile=tmp_path / "ca.pem"))
        assert 'fastmock_tls_handshake_failures_total{reason="timeout"} 1.0' in metrics.text


def h11_response(data: bytes):
    """The response in ``data``, read by h11 as a strict client."""
    import h11

    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.receive_data(data)
    return conn.next_event()


def test_openssl_s_client_shows_the_chain(tls_hp):
    shown = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_hp.port}", "-servername", "localhost",
                            "-CAfile", tls_hp.ca_file, "-showcerts", "-verify_return_error"],
                           input="", capture_output=True, text=True, timeout=30)
    assert "Verify return code: 0 (ok)" in shown.stdout
    assert "s:O = fastmock, CN = localhost" in shown.stdout and "i:O = fastmock, CN = fastmock local CA" in shown.stdout
    assert shown.stdout.count("-----BEGIN CERTIFICATE-----") == 1  # the leaf; the root is the client's own
    incomplete = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_hp.port}",
                                 "-servername", "incomplete-chain.fastmock.test", "-CAfile", tls_hp.ca_file],
                                input="", capture_output=True, text=True, timeout=30)
    assert "i:O = fastmock, CN = fastmock intermediate (not sent)" in incomplete.stdout
    assert "Verify return code: 21 (unable to verify the first certificate)" in incomplete.stdout
