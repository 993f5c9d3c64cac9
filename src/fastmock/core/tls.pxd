# TLS in the core: OpenSSL over memory BIOs, between a socket's transport and the protocol it carries.

cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX
    ctypedef struct SSL
    ctypedef struct SSL_METHOD
    ctypedef struct SSL_CIPHER
    ctypedef struct BIO
    ctypedef struct BIO_METHOD
    ctypedef struct X509
    ctypedef struct EVP_PKEY
    ctypedef struct SSL_SESSION
    ctypedef struct X509_VERIFY_PARAM

    enum:
        SSL_ERROR_WANT_READ
        SSL_ERROR_ZERO_RETURN
        TLS1_VERSION
        TLS1_2_VERSION
        SSL_SESS_CACHE_OFF
        SSL_TLSEXT_ERR_OK
        SSL_TLSEXT_ERR_NOACK
        OPENSSL_NPN_NEGOTIATED
        TLSEXT_NAMETYPE_host_name
        SSL_VERIFY_NONE
        SSL_VERIFY_PEER
        X509_V_OK
    unsigned long long SSL_OP_NO_TICKET
    unsigned long long SSL_OP_NO_RENEGOTIATION
    unsigned long long SSL_OP_CIPHER_SERVER_PREFERENCE
    unsigned long long SSL_OP_NO_COMPRESSION

    ctypedef int (*alpn_select_cb)(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                   const unsigned char *client, unsigned int client_len, void *arg) noexcept

    const SSL_METHOD *TLS_server_method()
    const SSL_METHOD *TLS_client_method()
    void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, void *callback)
    int SSL_CTX_load_verify_locations(SSL_CTX *ctx, const char *cafile, const char *capath)
    int SSL_CTX_set_default_verify_paths(SSL_CTX *ctx)
    int SSL_CTX_set_alpn_protos(SSL_CTX *ctx, const unsigned char *protos, unsigned int length)
    void SSL_set_connect_state(SSL *ssl)
    long SSL_set_tlsext_host_name(SSL *ssl, const char *name)
    int SSL_set1_host(SSL *ssl, const char *hostname)
    X509_VERIFY_PARAM *SSL_get0_param(SSL *ssl)
    long SSL_get_verify_result(const SSL *ssl)
    SSL_SESSION *SSL_get1_session(SSL *ssl)
    int SSL_set_session(SSL *ssl, SSL_SESSION *session)
    void SSL_SESSION_free(SSL_SESSION *session)
    int SSL_SESSION_is_resumable(const SSL_SESSION *session)
    SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
    void SSL_CTX_free(SSL_CTX *ctx)
    int SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version)
    int SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version)
    int SSL_CTX_set_cipher_list(SSL_CTX *ctx, const char *text)
    unsigned long long SSL_CTX_set_options(SSL_CTX *ctx, unsigned long long options)
    int SSL_CTX_set_num_tickets(SSL_CTX *ctx, size_t count)
    long SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode)
    int SSL_CTX_use_certificate(SSL_CTX *ctx, X509 *cert)
    long SSL_CTX_add_extra_chain_cert(SSL_CTX *ctx, X509 *cert)
    int SSL_CTX_use_PrivateKey(SSL_CTX *ctx, EVP_PKEY *key)
    int SSL_CTX_check_private_key(const SSL_CTX *ctx)
    void SSL_CTX_set_alpn_select_cb(SSL_CTX *ctx, alpn_select_cb cb, void *arg)
    int SSL_select_next_proto(unsigned char **out, unsigned char *outlen, const unsigned char *server,
                              unsigned int server_len, const unsigned char *client, unsigned int client_len)

    SSL *SSL_new(SSL_CTX *ctx)
    void SSL_free(SSL *ssl)
    void SSL_set_bio(SSL *ssl, BIO *rbio, BIO *wbio)
    void SSL_set_accept_state(SSL *ssl)
    int SSL_do_handshake(SSL *ssl)
    int SSL_is_init_finished(const SSL *ssl)
    int SSL_read(SSL *ssl, void *buf, int num)
    int SSL_write(SSL *ssl, const void *buf, int num)
    int SSL_shutdown(SSL *ssl)
    int SSL_get_error(const SSL *ssl, int ret)
    const char *SSL_get_version(const SSL *ssl)
    const SSL_CIPHER *SSL_get_current_cipher(const SSL *ssl)
    const char *SSL_CIPHER_get_name(const SSL_CIPHER *cipher)
    const char *SSL_CIPHER_get_version(const SSL_CIPHER *cipher)
    int SSL_CIPHER_get_bits(const SSL_CIPHER *cipher, int *alg_bits)
    const char *SSL_get_servername(const SSL *ssl, int kind)
    void SSL_get0_alpn_selected(const SSL *ssl, const unsigned char **data, unsigned int *length)
    int SSL_session_reused(const SSL *ssl)

cdef extern from "openssl/bio.h" nogil:
    const BIO_METHOD *BIO_s_mem()
    BIO *BIO_new(const BIO_METHOD *method)
    BIO *BIO_new_mem_buf(const void *data, int length)
    int BIO_free(BIO *bio)
    int BIO_write(BIO *bio, const void *data, int length)
    int BIO_read(BIO *bio, void *data, int length)
    long BIO_get_mem_data(BIO *bio, char **data)
    long BIO_set_mem_eof_return(BIO *bio, int value)

cdef extern from "openssl/pem.h" nogil:
    X509 *PEM_read_bio_X509(BIO *bio, X509 **out, void *password_cb, void *arg)
    EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bio, EVP_PKEY **out, void *password_cb, void *arg)
    void X509_free(X509 *cert)
    void EVP_PKEY_free(EVP_PKEY *key)

cdef extern from "openssl/x509_vfy.h" nogil:
    int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *param, const char *ip)

cdef extern from "openssl/err.h" nogil:
    unsigned long ERR_get_error()
    void ERR_clear_error()
    void ERR_error_string_n(unsigned long error, char *buf, size_t length)


cdef class TlsContext:
    """A server's OpenSSL context (certificate chain, key, protocol versions, tickets): shared by every
    connection in one certificate state. Or a client's (``TlsContext.client``): what it trusts, and the
    session its next handshakes offer."""
    cdef SSL_CTX *ctx
    cdef bint is_client
    cdef bint verify            # a client checks the server's certificate and name
    cdef bint resume            # a client offers the last session it kept
    cdef SSL_SESSION *session   # that session (NULL: none yet)
    cdef bytearray ciphertext   # what a socket read, until OpenSSL copies it (get_buffer)
    cdef object ciphertext_view


cdef class TlsConnection:
    """One TLS connection (see tls.pyx)."""
    cdef SSL *ssl
    cdef TlsContext context
    cdef BIO *incoming          # ciphertext from the socket, for OpenSSL to read
    cdef BIO *outgoing          # ciphertext OpenSSL wrote, for the socket
    cdef object transport       # the socket's
    cdef object app             # the protocol carried (an HTTP protocol), connected once the handshake is done
    cdef bint app_buffered      # the app is a BufferedProtocol: records are decrypted into its buffer
    cdef object app_get_buffer  # and its two methods, looked up once
    cdef object app_buffer_updated
    cdef bint app_connected
    cdef bint app_reading_paused
    cdef bint read_scheduled    # a read of what OpenSSL holds is due (resume_reading)
    cdef bint closing
    cdef object counted         # told the handshake's outcome, once: None (done) or why it failed
    cdef bint session_kept      # a client kept its session for the next handshakes
    cdef object timeout_handle  # cuts a handshake that takes too long

    cdef int _connect_to(self, str server_hostname) except -1
    cdef str _refusal(self)
    cdef int _process(self) except -1
    cdef int _read_app(self) except -1
    cdef int _flush(self) except -1
    cdef int _fail(self, str reason) except -1
    cdef int _handshake_over(self, str failure) except -1
