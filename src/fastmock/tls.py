"""Certificates for TLS, with trouble on demand: a local CA kept across restarts, and a leaf certificate for
each certificate state a monitor should catch (expired, wrong host, untrusted, expiring soon, ...).

Made with ``cryptography``. The CA lives in one directory (``$XDG_STATE_HOME/fastmock/tls`` unless told
otherwise) so that clients trust it once; its key is readable by its owner only. A state's certificate is
made once per process and shared by every port in that state.
"""

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fastmock._core import TlsContext

__all__ = ["KEY_TYPES", "STATE_EXAMPLES", "HANDSHAKE_STATES", "TlsError", "CertificateAuthority", "Issued",
           "parse_state", "default_ca_dir", "TRUST_HELP", "SNI_DOMAIN", "ContextSet",
           "file_server_context", "read_pem_files"]

KEY_TYPES = ("p256", "p384", "rsa2048", "rsa4096")
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
SNI_DOMAIN = "fastmock.test"  # like badssl.com: expired.fastmock.test is served the expired certificate
WRONG_HOST = "wrong.host.invalid"
LEAF_DAYS = 90
CA_YEARS = 10
HANDSHAKE_STATES = ("handshake-stall", "handshake-reset")  # no certificate: the handshake itself fails
STATE_EXAMPLES = ("valid", "expired", "not-yet-valid", "expiring(3)", "wrong-host", "self-signed", "untrusted-root",
                  "incomplete-chain", "weak", "tls1.0-only") + HANDSHAKE_STATES
_STATE_NAMES = frozenset(STATE_EXAMPLES) - {"expiring(3)"}
MAX_SNI_STATES = 64
_EXPIRING = re.compile(r"expiring\(([0-9]{1,4})\)")


class TlsError(ValueError):
    """A certificate state, key type or file that cannot be used; ``str()`` says which and why."""


def parse_state(text: str) -> tuple[str, int]:
    """``expiring(3)`` → ("expiring", 3); the other states → (name, 0). TlsError for anything else."""
    text = text.strip().lower()
    if expiring := _EXPIRING.fullmatch(text):
        days = int(expiring.group(1))
        if days < 1:
            raise TlsError("expiring(DAYS) needs at least 1 day (an expired certificate is 'expired')")
        return "expiring", days
    if text in _STATE_NAMES:
        return text, 0
    raise TlsError(f"unknown certificate state {text!r} (states: {', '.join(STATE_EXAMPLES)})")


def default_ca_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "fastmock" / "tls"


def _key(key_type: str):
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type in ("rsa1024", "rsa2048", "rsa4096"):  # rsa1024: the weak state only
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise TlsError(f"unknown key type {key_type!r} ({', '.join(KEY_TYPES)})")


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fastmock"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts) -> x509.SubjectAlternativeName:
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _certificate(subject: x509.Name, key, issuer: x509.Name, issuer_key, not_before, not_after, *,
                 ca: bool, hosts=()) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(_san(hosts), critical=False).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if issuer_key is not key:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Issued:
    """A leaf for one state: what a server sends and its key, as PEM (``missing_pem``: for incomplete-chain,
    the intermediate that is not sent)."""
    state: str
    chain_pem: bytes
    key_pem: bytes
    not_after: datetime.datetime
    missing_pem: bytes = b""

    def server_context(self, resume: bool = True) -> TlsContext:
        """The core's server context serving this chain (TLS 1.2 and 1.3, ALPN http/1.1; ``weak``: its RSA
        1024 key allowed; ``tls1.0-only``: TLS 1.0 and nothing else)."""
        context = TlsContext(resume=resume, weak=self.state == "weak", tls10_only=self.state == "tls1.0-only")
        context.load_pem(self.chain_pem, self.key_pem)
        return context


def read_pem_files(certfile: str, keyfile: str | None, ca_file: str | None = None) -> tuple[bytes, bytes]:
    """(chain, key) as PEM from the user's files: the key in ``certfile`` when ``keyfile`` is None, the
    intermediates in ``ca_file`` sent after the certificate. TlsError naming a file that cannot be read."""
    try:
        chain_pem = Path(certfile).read_bytes()
        key_pem = Path(keyfile).read_bytes() if keyfile else chain_pem
        return chain_pem + (Path(ca_file).read_bytes() if ca_file else b""), key_pem
    except OSError as exc:
        raise TlsError(f"{exc.filename}: {exc.strerror}") from None


def file_server_context(certfile: str, keyfile: str | None, resume: bool = True,
                        ca_file: str | None = None) -> TlsContext:
    """A server context from the user's own files (``read_pem_files``); TlsError naming what does not load."""
    chain_pem, key_pem = read_pem_files(certfile, keyfile, ca_file)
    context = TlsContext(resume=resume)
    try:
        context.load_pem(chain_pem, key_pem)
    except ValueError as exc:
        raise TlsError(f"{' / '.join(name for name in (certfile, keyfile, ca_file) if name)}: {exc}") from None
    return context


class ContextSet:
    """One server context per certificate state, made on first use and shared by every port in that state
    (a handshake state has none: ``get`` returns None). ``valid``: the user's own context for that state."""

    def __init__(self, authority: "CertificateAuthority", resume: bool = True,
                 valid: TlsContext | None = None) -> None:
        self.authority = authority
        self.resume = resume
        self.trust: str | None = None  # the CA file clients should trust, when the certificates are all ours
        self.contexts: dict[str, TlsContext | None] = {state: None for state in HANDSHAKE_STATES}
        if valid is not None:
            self.contexts["valid"] = valid

    def get(self, state: str) -> TlsContext | None:
        if state not in self.contexts:
            self.contexts[state] = self.authority.issue(state).server_context(self.resume)
        return self.contexts[state]

    def choose(self, sni: str | None) -> tuple[str, TlsContext | None]:
        """The state an SNI name asks for, like badssl.com (STATE.fastmock.test; ``expiring-3.fastmock.test``
        for expiring(3)), and its context; any other name (or none) gets the valid one. Names make at most
        MAX_SNI_STATES states: a client cannot have a certificate made for every number of days."""
        state = "valid"
        if sni and sni.endswith("." + SNI_DOMAIN):
            label = re.sub(r"^expiring-([0-9]{1,4})$", r"expiring(\1)", sni[:-len(SNI_DOMAIN) - 1])
            try:
                parse_state(label)
            except TlsError:
                pass
            else:
                if label in self.contexts or len(self.contexts) < MAX_SNI_STATES:
                    state = label
        return state, self.get(state)


class CertificateAuthority:
    """The local CA in ``directory`` (made there on first use, then reused), issuing leaves for ``hosts``."""

    def __init__(self, directory: Path | None = None, key_type: str = "p256", hosts=DEFAULT_HOSTS) -> None:
        self.directory = Path(directory or default_ca_dir())
        self.key_type = key_type
        self.hosts = tuple(dict.fromkeys(hosts))
        self.cert_path = self.directory / "ca.pem"
        self.key_path = self.directory / "ca-key.pem"
        self.cert, self.key = self._load_or_create()
        self._issued: dict[str, Issued] = {}

    def _load_or_create(self):
        if self.cert_path.exists() and self.key_path.exists():
            try:
                cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
                key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise TlsError(f"cannot use the CA in {self.directory}: {exc} (remove it to make a new one)") from None
            return cert, key
        now = _now()
        key = _key(self.key_type)
        cert = _certificate(_name("fastmock local CA"), key, _name("fastmock local CA"), key,
                            now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365 * CA_YEARS), ca=True)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(_pem(key))
            self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        except OSError as exc:
            raise TlsError(f"cannot write the CA to {self.directory}: {exc.strerror}") from None
        return cert, key

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, state: str) -> Issued:
        """The leaf for ``state`` (see STATE_EXAMPLES), made once and then reused."""
        if state not in self._issued:
            self._issued[state] = self._make(*parse_state(state))
        return self._issued[state]

    def _make(self, name: str, days: int) -> Issued:
        if name in HANDSHAKE_STATES:
            raise TlsError(f"{name} has no certificate: the handshake itself fails")
        now = _now()
        not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=LEAF_DAYS)
        if name == "expired":
            not_before, not_after = now - datetime.timedelta(days=LEAF_DAYS), now - datetime.timedelta(days=1)
        elif name == "not-yet-valid":
            not_before, not_after = now + datetime.timedelta(days=30), now + datetime.timedelta(days=30 + LEAF_DAYS)
        elif name == "expiring":
            not_after = now + datetime.timedelta(days=days)
        hosts = (WRONG_HOST,) if name == "wrong-host" else self.hosts
        key = _key("rsa1024" if name == "weak" else self.key_type)
        subject = _name(hosts[0])
        missing = b""
        if name == "self-signed":
            leaf = _certificate(subject, key, subject, key, not_before, not_after, ca=False, hosts=hosts)
        elif name == "untrusted-root":  # signed by a CA that is never published
            leaf = _certificate(subject, key, _name("fastmock untrusted root"), _key(self.key_type), not_before,
                                not_after, ca=False, hosts=hosts)
        elif name == "incomplete-chain":  # signed by an intermediate of the real CA that the server does not send
            issuer_key, issuer_name = _key(self.key_type), _name("fastmock intermediate (not sent)")
            intermediate = _certificate(issuer_name, issuer_key, self.cert.subject, self.key, not_before,
                                        not_after, ca=True)
            missing = intermediate.public_bytes(serialization.Encoding.PEM)
            leaf = _certificate(subject, key, issuer_name, issuer_key, not_before, not_after, ca=False, hosts=hosts)
        else:
            leaf = _certificate(subject, key, self.cert.subject, self.key, not_before, not_after, ca=False,
                                hosts=hosts)
        label = name if not days else f"{name}({days})"
        return Issued(label, leaf.public_bytes(serialization.Encoding.PEM), _pem(key), not_after, missing)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


TRUST_HELP = """\
Trust fastmock's local CA ({path}) once, then every certificate fastmock makes verifies:

  curl      curl --cacert {path} https://localhost:8443/health
  Python    httpx.get(url, verify="{path}")   or   ssl.create_default_context(cafile="{path}")
            requests: REQUESTS_CA_BUNDLE={path}
  Node      NODE_EXTRA_CA_CERTS={path} node app.js
  Go        SSL_CERT_FILE={path} ./app   (Linux; or add it to the system store)
  system    cp {path} /usr/local/share/ca-certificates/fastmock.crt && update-ca-certificates   (Debian)
"""
