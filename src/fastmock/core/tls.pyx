# TLS in the core: OpenSSL driven directly over memory BIOs, with no Python object between the socket and
# the HTTP protocol but this one. Records are decrypted straight into the protocol's read buffer (the
# parser's), and each write of the protocol (a batch of responses, a piece of a stream) is one SSL_write:
# full 16 KB records for streams. uvloop's SSLProtocol does the same job through ssl.SSLObject (a Python
# call, and an exception, per step), which costs more than the cryptography on short connections.
# The same connection is the load generator's client side (a client TlsContext): there a handshake per
# request (load --new-connections) is most of the work.

cdef const unsigned char *HTTP11_ALPN = b"\x08http/1.1"
cdef Py_ssize_t SSL_CHUNK = 1 << 28  # SSL_read and SSL_write take an int: a larger buffer goes in pieces
cdef Py_ssize_t CIPHERTEXT_BUFFER = 256 * 1024


cdef int _select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *client,
                        unsigned int client_len, void *arg) noexcept nogil:
    """ALPN: http/1.1 when the client offers it; otherwise no protocol (as Python's ssl and nginx do)."""
    if client_len and SSL_select_next_proto(<unsigned char **>out, outlen, HTTP11_ALPN, 9, client,
                                            client_len) == OPENSSL_NPN_NEGOTIATED:
        return SSL_TLSEXT_ERR_OK
    return SSL_TLSEXT_ERR_NOACK


# OpenSSL's X509_V_ERR_* codes, as the reasons a verifying client gives
VERIFY_REASONS = {9: "not_yet_valid", 10: "expired", 18: "self_signed", 19: "unknown_ca", 20: "unknown_ca",
                  21: "unknown_ca", 62: "hostname", 64: "hostname", 66: "weak", 67: "weak", 68: "weak"}


cdef str _openssl_error():
    """OpenSSL's last error on this thread as text (and the queue emptied)."""
    cdef char text[256]
    cdef unsigned long error, last = 0
    error = ERR_get_error()
    while error:
        last = error
        error = ERR_get_error()
    if not last:
        return "unknown OpenSSL error"
    ERR_error_string_n(last, text, sizeof(text))
    return text.decode("ascii", "replace")


cdef class TlsContext:
    """``TlsContext(resume=True, weak=False, tls10_only=False)``, then ``load_pem``.

    TLS 1.2 and 1.3 (``tls10_only``: TLS 1.0 and nothing else), ALPN http/1.1, no renegotiation; resumption
    by ticket and session id unless ``resume`` is false. ``weak`` allows what OpenSSL's security level
    refuses by default (an RSA 1024 key, TLS 1.0's ciphers).

    The context's connections share its read buffer (the socket's bytes stay there only until OpenSSL has
    copied them): a context serves one event loop, as everything of the core does."""

    def __cinit__(self, bint resume=True, bint weak=False, bint tls10_only=False, bint client=False):
        self.ciphertext = bytearray(CIPHERTEXT_BUFFER)
        self.ciphertext_view = memoryview(self.ciphertext)
        self.is_client = client
        self.resume = resume
        self.ctx = SSL_CTX_new(TLS_client_method() if client else TLS_server_method())
        if self.ctx == NULL:
            raise MemoryError(_openssl_error())
        if client:
            SSL_CTX_set_options(self.ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION)
            SSL_CTX_set_min_proto_version(self.ctx, TLS1_2_VERSION)
            SSL_CTX_set_alpn_protos(self.ctx, HTTP11_ALPN, 9)
            return
        SSL_CTX_set_options(self.ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE
                            | SSL_OP_NO_COMPRESSION)
        SSL_CTX_set_alpn_select_cb(self.ctx, _select_http11, NULL)
        if tls10_only:
            SSL_CTX_set_min_proto_version(self.ctx, TLS1_VERSION)
            SSL_CTX_set_max_proto_version(self.ctx, TLS1_VERSION)
        else:
            SSL_CTX_set_min_proto_version(self.ctx, TLS1_2_VERSION)
        if (weak or tls10_only) and not SSL_CTX_set_cipher_list(self.ctx, b"DEFAULT:@SECLEVEL=0"):
            raise ValueError(_openssl_error())
        if not resume:
            SSL_CTX_set_options(self.ctx, SSL_OP_NO_TICKET)
            SSL_CTX_set_num_tickets(self.ctx, 0)
            SSL_CTX_set_session_cache_mode(self.ctx, SSL_SESS_CACHE_OFF)

    @staticmethod
    def client_context(str cafile=None, bint verify=True, bint resume=True):
        """A client's context: TLS 1.2 and 1.3, ALPN http/1.1; it verifies the server's certificate against
        ``cafile`` (PEM), else the system's CAs (``verify`` false: nothing), and offers the last session it
        kept (``resume``). ValueError if ``cafile`` does not load."""
        cdef TlsContext context = TlsContext(resume, client=True)
        context.verify = verify
        if not verify:
            SSL_CTX_set_verify(context.ctx, SSL_VERIFY_NONE, NULL)
            return context
        SSL_CTX_set_verify(context.ctx, SSL_VERIFY_PEER, NULL)
        ERR_clear_error()
        if cafile is not None and not SSL_CTX_load_verify_locations(context.ctx, cafile.encode(), NULL):
            raise ValueError(f"{cafile}: no CA certificate loads ({_openssl_error()})")
        if cafile is None:
            SSL_CTX_set_default_verify_paths(context.ctx)
            ERR_clear_error()  # a missing system store only means nothing verifies
        return context

    def __dealloc__(self):
        if self.session != NULL:
            SSL_SESSION_free(self.session)
        if self.ctx != NULL:
            SSL_CTX_free(self.ctx)

    def load_pem(self, bytes chain_pem, bytes key_pem):
        """Serve the certificates in ``chain_pem`` (the leaf first) with the key in ``key_pem`` (PEM text;
        other blocks are skipped, so one file may hold both); ValueError with OpenSSL's reason if they do
        not load or do not match."""
        cdef BIO *bio = BIO_new_mem_buf(PyBytes_AS_STRING(chain_pem), len(chain_pem))
        cdef X509 *cert
        cdef EVP_PKEY *key
        ERR_clear_error()
        try:
            cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)
            if cert == NULL or not SSL_CTX_use_certificate(self.ctx, cert):
                X509_free(cert)
                raise ValueError(f"the certificate does not load: {_openssl_error()}")
            X509_free(cert)  # the context holds its own reference
            cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)
            while cert != NULL:
                if not SSL_CTX_add_extra_chain_cert(self.ctx, cert):  # takes it on success
                    X509_free(cert)
                    raise ValueError(f"the chain does not load: {_openssl_error()}")
                cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)
            ERR_clear_error()  # the end of the PEM text
        finally:
            BIO_free(bio)
        bio = BIO_new_mem_buf(PyBytes_AS_STRING(key_pem), len(key_pem))
        try:
            key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
            if key == NULL or not SSL_CTX_use_PrivateKey(self.ctx, key):
                EVP_PKEY_free(key)
                raise ValueError(f"the key does not load: {_openssl_error()}")
            EVP_PKEY_free(key)
        finally:
            BIO_free(bio)
        if not SSL_CTX_check_private_key(self.ctx):
            raise ValueError(f"the key does not match the certificate: {_openssl_error()}")



cdef class TlsConnection:
    """``TlsConnection(app, context, counted, handshake_timeout_s, server_hostname=None)``: a TLS server
    connection, or a client one with a client context (to ``server_hostname``: its SNI and the name or
    address its certificate must carry).

    To the socket's transport it is a BufferedProtocol; to ``app`` (any asyncio protocol; the core's HTTP
    protocol is a buffered one) it is the transport, connected once the handshake is done. ``counted`` is
    told the handshake's outcome once: None, or "protocol" (OpenSSL refused it: its alert is sent), "reset"
    (the peer left), "timeout", and for a client a verification reason (VERIFY_REASONS, else "verify") or
    "closed" (the server hung up without a word). ``get_extra_info("ssl_object")`` is the connection
    itself: ``version()``, ``cipher()``, ``selected_alpn_protocol()``, ``session_reused`` and
    ``server_name``, like ssl.SSLObject's. A close sends close_notify and closes at once, without waiting
    for the peer's (as nginx does)."""

    def __cinit__(self, app, TlsContext context not None, counted, double handshake_timeout_s,
                  str server_hostname=None):
        self.ssl = SSL_new(context.ctx)
        self.incoming = BIO_new(BIO_s_mem())
        self.outgoing = BIO_new(BIO_s_mem())
        if self.ssl == NULL or self.incoming == NULL or self.outgoing == NULL:
            if self.incoming != NULL:
                BIO_free(self.incoming)
            if self.outgoing != NULL:
                BIO_free(self.outgoing)
            self.incoming = self.outgoing = NULL
            raise MemoryError(_openssl_error())
        BIO_set_mem_eof_return(self.incoming, -1)  # no ciphertext yet means "wait", not end of stream
        SSL_set_bio(self.ssl, self.incoming, self.outgoing)  # the SSL owns them from here
        self.context = context
        if context.is_client:
            self._connect_to(server_hostname)
        else:
            SSL_set_accept_state(self.ssl)
        self.app = app
        self.app_buffered = hasattr(app, "get_buffer")
        self.counted = counted
        self.timeout_handle = asyncio.get_running_loop().call_later(handshake_timeout_s, self._timed_out)

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)

    cdef int _connect_to(self, str server_hostname) except -1:
        """A client's SNI, the name or address to verify, and the session to offer."""
        SSL_set_connect_state(self.ssl)
        if server_hostname:
            try:
                ipaddress.ip_address(server_hostname)
                is_address = True
            except ValueError:
                is_address = False
            name = server_hostname.encode("ascii" if is_address else "idna")
            if not is_address:
                SSL_set_tlsext_host_name(self.ssl, name)
            if self.context.verify and not (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(self.ssl), name)
                                            if is_address else SSL_set1_host(self.ssl, name)):
                raise ValueError(f"cannot verify {server_hostname!r}: {_openssl_error()}")
        if self.context.resume and self.context.session != NULL:
            SSL_set_session(self.ssl, self.context.session)
        return 0

    def keep_session(self):
        """A client: keep this connection's session for the context's next handshakes (once; a TLS 1.3
        ticket comes after the handshake, so call it after the first answer)."""
        cdef SSL_SESSION *session
        if self.session_kept or self.ssl == NULL or not self.context.resume:
            return
        self.session_kept = True
        session = SSL_get1_session(self.ssl)
        if session == NULL:
            return
        if not SSL_SESSION_is_resumable(session):
            SSL_SESSION_free(session)
            return
        if self.context.session != NULL:
            SSL_SESSION_free(self.context.session)
        self.context.session = session

    # --- to the socket's transport, a protocol ---

    def connection_made(self, transport):
        self.transport = transport
        if self.context.is_client:
            self._process()  # the ClientHello

    def get_buffer(self, Py_ssize_t sizehint):
        return self.context.ciphertext_view

    def buffer_updated(self, Py_ssize_t nbytes):
        if self.ssl != NULL:
            BIO_write(self.incoming, PyByteArray_AS_STRING(self.context.ciphertext), <int>nbytes)
            self._process()

    def feed(self, bytes data):
        """Ciphertext read before this connection took over the socket (the ClientHello)."""
        if self.ssl != NULL and data:
            BIO_write(self.incoming, PyBytes_AS_STRING(data), <int>len(data))
            self._process()

    def eof_received(self):
        return self.app.eof_received() if self.app_connected else False

    def pause_writing(self):
        if self.app_connected:
            self.app.pause_writing()

    def resume_writing(self):
        if self.app_connected:
            self.app.resume_writing()

    def connection_lost(self, exc):
        self.closing = True
        if self.counted is not None:
            self._handshake_over("closed" if exc is None and self.context.is_client else "reset")
        self.timeout_handle = _cancel(self.timeout_handle)
        if self.ssl != NULL:
            SSL_free(self.ssl)
            self.ssl = NULL
        app, self.app = self.app, None
        self.app_get_buffer = self.app_buffer_updated = None
        self.transport = None
        if self.app_connected:
            self.app_connected = False
            app.connection_lost(exc)

    def _timed_out(self):
        self.timeout_handle = None
        if self.counted is not None:
            self._handshake_over("timeout")
            self.closing = True
            self.transport.abort()

    cdef int _handshake_over(self, str failure) except -1:
        counted, self.counted = self.counted, None
        self.timeout_handle = _cancel(self.timeout_handle)
        counted(failure)
        return 0

    cdef int _process(self) except -1:
        """Move the handshake on with what came in; once it is done, hand the app what it can read."""
        cdef int done, error
        if self.counted is not None:  # the handshake is not done
            ERR_clear_error()  # OpenSSL's rule: an empty error queue before a call (each failure below clears it)
            done = SSL_do_handshake(self.ssl)
            self._flush()  # its next flight, its tickets, or its alert
            if done != 1:
                error = SSL_get_error(self.ssl, done)
                if error != SSL_ERROR_WANT_READ:
                    ERR_clear_error()
                    self._fail(self._refusal())
                return 0
            self._handshake_over(None)
            self.app_connected = True
            if self.app_buffered:
                self.app_get_buffer, self.app_buffer_updated = self.app.get_buffer, self.app.buffer_updated
            self.app.connection_made(self)
        self._read_app()
        return 0

    cdef str _refusal(self):
        """Why OpenSSL refused the handshake: for a client whose check of the certificate failed, the
        reason; else "protocol"."""
        cdef long code
        if self.context.is_client and self.context.verify:
            code = SSL_get_verify_result(self.ssl)
            if code != X509_V_OK:
                return VERIFY_REASONS.get(code, "verify")
        return "protocol"

    cdef int _read_app(self) except -1:
        """Decrypt what OpenSSL can into the app (its buffer when it has one) until it wants more bytes."""
        cdef Py_buffer view
        cdef int n, error
        cdef char chunk[16384]
        self.read_scheduled = False
        while self.app_connected and not self.app_reading_paused and not self.closing:
            if self.app_buffered:
                PyObject_GetBuffer(self.app_get_buffer(-1), &view, PyBUF_WRITABLE)
                n = SSL_read(self.ssl, view.buf, <int>min(view.len, SSL_CHUNK))
                PyBuffer_Release(&view)
                if n > 0:
                    self.app_buffer_updated(n)
            else:
                n = SSL_read(self.ssl, chunk, sizeof(chunk))
                if n > 0:
                    self.app.data_received(PyBytes_FromStringAndSize(chunk, n))
            if n > 0:
                continue
            error = SSL_get_error(self.ssl, n)
            if error == SSL_ERROR_WANT_READ:
                break
            ERR_clear_error()
            if error == SSL_ERROR_ZERO_RETURN:  # the client's close_notify: its end of the stream
                if not self.app.eof_received():
                    self.close()
            else:
                self._fail("protocol")
            break
        if self.ssl != NULL and not self.closing:
            self._flush()  # what reading made OpenSSL say (a key update's answer)
        return 0

    cdef int _flush(self) except -1:
        """Send what OpenSSL wrote."""
        cdef char *data
        cdef long n
        if self.transport is None:
            return 0
        n = BIO_get_mem_data(self.outgoing, &data)
        if n > 0:
            # read, not BIO_reset: a reset clears the whole buffer, as large as the largest write so far
            out = PyBytes_FromStringAndSize(NULL, n)
            BIO_read(self.outgoing, PyBytes_AS_STRING(out), <int>n)
            self.transport.write(out)
        return 0

    cdef int _fail(self, str reason) except -1:
        """A fatal TLS error: OpenSSL's alert (already flushed) goes out, then the connection closes."""
        if self.counted is not None:
            self._handshake_over(reason)
        self.closing = True
        self._flush()
        self.transport.close()
        return 0

    # --- to the app, a transport ---

    def write(self, data):
        cdef Py_buffer view
        cdef Py_ssize_t at = 0
        cdef int n
        if self.closing or self.ssl == NULL:
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            while at < view.len:
                n = SSL_write(self.ssl, <char *>view.buf + at, <int>min(view.len - at, SSL_CHUNK))
                if n <= 0:
                    ERR_clear_error()
                    self.closing = True
                    self.transport.abort()
                    return
                at += n
                self._flush()  # each piece's ciphertext: an int's worth at most
        finally:
            PyBuffer_Release(&view)

    def close(self):
        if self.closing or self.transport is None:
            return
        self.closing = True
        if self.ssl != NULL and SSL_is_init_finished(self.ssl):
            SSL_shutdown(self.ssl)  # close_notify
            ERR_clear_error()
            self._flush()
        self.transport.close()

    def abort(self):
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def is_closing(self):
        return self.closing or self.transport is None or self.transport.is_closing()

    def pause_reading(self):
        self.app_reading_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self):
        self.app_reading_paused = False
        if self.transport is None:
            return
        self.transport.resume_reading()
        if not self.read_scheduled and self.app_connected:  # records OpenSSL already holds are read first
            self.read_scheduled = True
            asyncio.get_running_loop().call_soon(self._read_held)

    def _read_held(self):
        if self.ssl != NULL:
            self._read_app()

    def set_write_buffer_limits(self, high=None, low=None):
        self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self):
        return self.transport.get_write_buffer_size()

    def get_extra_info(self, str name, default=None):
        if name == "ssl_object":
            return self
        return self.transport.get_extra_info(name, default) if self.transport is not None else default

    # --- what ssl.SSLObject tells about the session (the echo's "tls") ---

    def version(self):
        return SSL_get_version(self.ssl).decode() if self.ssl != NULL else None

    def cipher(self):
        if self.ssl == NULL or SSL_get_current_cipher(self.ssl) == NULL:
            return None
        cipher = SSL_get_current_cipher(self.ssl)
        return (SSL_CIPHER_get_name(cipher).decode(), SSL_CIPHER_get_version(cipher).decode(),
                SSL_CIPHER_get_bits(cipher, NULL))

    def selected_alpn_protocol(self):
        cdef const unsigned char *name = NULL
        cdef unsigned int length = 0
        if self.ssl != NULL:
            SSL_get0_alpn_selected(self.ssl, &name, &length)
        return name[:length].decode("ascii", "replace") if length else None

    @property
    def session_reused(self):
        return self.ssl != NULL and SSL_session_reused(self.ssl) == 1

    @property
    def server_name(self):
        """The SNI name the client sent, or None."""
        cdef const char *name = SSL_get_servername(self.ssl, TLSEXT_NAMETYPE_host_name) if self.ssl != NULL else NULL
        return name.decode("ascii", "replace").lower() if name != NULL else None
