"""``fastmock tls``: the local CA and a certificate per state, served by a real TLS server and judged by real
clients (Python's ssl and curl) with the CA as their only trust anchor."""

import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from fastmock.tls import CertificateAuthority, TlsError, parse_state


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


class TlsServer:
    """Answers every TLS connection with one HTTP/1.1 200 (or just completes the handshake)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.sock.accept()
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate: that is what these tests look for


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
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(out / "cert.pem", out / "key.pem")
        server = TlsServer(context)
        curl = subprocess.run(["curl", "-sS", "--cacert", str(ca_dir / "ca.pem"), f"https://localhost:{server.port}/"],
                              capture_output=True, text=True, timeout=30)
        assert curl.returncode == curl_code, curl.stderr
    bad = fastmock("issue", "expiring(soon)", "--out-dir", str(out), "--ca-dir", str(ca_dir))
    assert bad.returncode == 2 and "Invalid value for 'STATE'" in bad.stderr
