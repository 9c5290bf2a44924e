/*
 * net: a client TCP connection with optional TLS, nothing but non-blocking
 * sockets, poll() and OpenSSL. See net.h.
 *
 * TLS. One SSL_CTX for the process, made once: the system CA store loaded,
 * TLS 1.2 at least, partial writes allowed. Each connection sets its own
 * verification (the chain and the host name or IP, or nothing with
 * tls_verify = 0) and SNI. The first verification error is kept so a
 * failure can say what was wrong with the certificate.
 *
 * Name lookup is getaddrinfo, which blocks: a deadline cannot cut it short
 * (the system resolver's own timeouts apply), but nothing after it waits past
 * the deadline.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#if defined(__linux__)
#include <linux/sockios.h>
#include <linux/tcp.h> /* tcp_info with the byte counters netinet/tcp.h lacks */
#include <sys/ioctl.h>
#else
#include <netinet/tcp.h>
#endif

#include "net.h"
#include "util.h"

struct net_conn {
    int fd;
    SSL *ssl;
    /*
     * What the last NET_AGAIN needs; 0 after a read or write went through.
     * A stale POLLOUT would make every later wait return at once (a socket
     * is nearly always writable): a busy loop while waiting for a reply.
     */
    short wants;
    char verify_err[160];
    char err[200];
};

int64_t net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- TLS, once per process ---------------------------------------------------- */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static SSL_CTX *tls_ctx;
static int ssl_index = -1;

static void tls_init(void)
{
    /*
     * A peer that goes away while we write would kill the process with
     * SIGPIPE: plain sockets use MSG_NOSIGNAL, but OpenSSL writes with
     * write(). A program that chose its own SIGPIPE handling keeps it.
     */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (tls_ctx == NULL)
        return;
    SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_default_verify_paths(tls_ctx) != 1) {
        SSL_CTX_free(tls_ctx);
        tls_ctx = NULL;
        return;
    }
    ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    if (ok)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct net_conn *c = ssl ? SSL_get_ex_data(ssl, ssl_index) : NULL;
    if (c != NULL && !c->verify_err[0])
        snprintf(c->verify_err, sizeof c->verify_err, "%s (depth %d)",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)),
                 X509_STORE_CTX_get_error_depth(xs));
    return 0;
}

/* The last OpenSSL error as text, or what errno says. */
static void ssl_error_text(char *out, size_t outlen, const char *what)
{
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char buf[160];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(out, outlen, "%s: %s", what, buf);
        ERR_clear_error();
    } else if (errno != 0) {
        snprintf(out, outlen, "%s: %s", what, strerror(errno));
    } else {
        snprintf(out, outlen, "%s: connection closed during the handshake", what);
    }
}

/* ---- waiting ---------------------------------------------------------------------- */

static int interrupted(const struct net_interrupt *intr)
{
    return intr != NULL && ((intr->flag != NULL && atomic_load(intr->flag)) ||
                            (intr->cancel != NULL && atomic_load(intr->cancel)));
}

int net_wait(int fd, short events, int64_t deadline, const struct net_interrupt *intr)
{
    for (;;) {
        if (interrupted(intr))
            return NET_ERR_INTERRUPTED;
        int64_t left = deadline - net_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p[2] = {{fd, events, 0}, {intr ? intr->fd : -1, POLLIN, 0}};
        int np = intr != NULL && intr->fd >= 0 ? 2 : 1;
        int64_t slice = intr != NULL && intr->cancel != NULL ? NET_CANCEL_POLL_MS : 60000;
        int n = poll(p, (nfds_t)np, (int)(left > slice ? slice : left));
        if (n < 0 && errno != EINTR)
            return NET_ERR_INTERNAL;
        if (interrupted(intr))
            return NET_ERR_INTERRUPTED;
        if (n > 0 && p[0].revents)
            return p[0].revents;
        if (n > 0 && np == 2 && p[1].revents) {
            /*
             * A byte without the flag: left over from an interrupt already
             * taken (the flag is set before the byte is written). Drop it,
             * or every later poll would return at once.
             */
            char b[64];
            while (read(intr->fd, b, sizeof b) > 0)
                ;
        }
        if (left == 0)
            return 0;
    }
}

/* ---- connecting -------------------------------------------------------------------- */

static int connect_one(const struct addrinfo *ai, int64_t deadline,
                       const struct net_interrupt *intr, char *why, size_t whylen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        snprintf(why, whylen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    int w = net_wait(fd, POLLOUT, deadline, intr);
    if (w <= 0) {
        close(fd);
        return w == 0 ? NET_ERR_TIMEOUT : w;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
        snprintf(why, whylen, "%s", strerror(soerr ? soerr : errno));
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int tls_handshake(struct net_conn *c, const struct net_target *t, int64_t deadline,
                         const struct net_interrupt *intr, char *err, size_t errlen)
{
    pthread_once(&tls_once, tls_init);
    if (tls_ctx == NULL) {
        set_error(err, errlen, "cannot set up TLS (OpenSSL or the system CA store)");
        return NET_ERR_INTERNAL;
    }
    c->ssl = SSL_new(tls_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        set_error(err, errlen, "cannot set up TLS for the connection");
        return NET_ERR_INTERNAL;
    }
    SSL_set_ex_data(c->ssl, ssl_index, c);
    unsigned char in6[16];
    int is_ip = inet_pton(AF_INET, t->host, in6) == 1 || inet_pton(AF_INET6, t->host, in6) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, t->host);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_set_alpn_protos(c->ssl, alpn, sizeof alpn - 1);
    if (t->tls_verify) {
        SSL_set_verify(c->ssl, SSL_VERIFY_PEER, verify_cb);
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, t->host)
                   : X509_VERIFY_PARAM_set1_host(vp, t->host, 0)) != 1) {
            set_error(err, errlen, "cannot set up TLS host verification");
            return NET_ERR_INTERNAL;
        }
    } else {
        SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(c->ssl, r);
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (ev == 0) {
            if (c->verify_err[0]) {
                set_error(err, errlen, "TLS certificate verification failed: %s", c->verify_err);
                return NET_ERR_TLS_CERT;
            }
            char why[200];
            ssl_error_text(why, sizeof why, "TLS failed");
            set_error(err, errlen, "%s", why);
            return NET_ERR_TLS;
        }
        int w = net_wait(c->fd, ev, deadline, intr);
        if (w == 0) {
            set_error(err, errlen, "no TLS handshake with %s within the deadline", t->host);
            return NET_ERR_TIMEOUT;
        }
        if (w < 0) {
            set_error(err, errlen, "%s", w == NET_ERR_INTERRUPTED ? "interrupted" : "poll failed");
            return w;
        }
    }
}

int net_connect(const struct net_target *t, int64_t deadline, const struct net_interrupt *intr,
                struct net_conn **out, char *err, size_t errlen)
{
    *out = NULL;
    if (t->tls)
        pthread_once(&tls_once, tls_init);
    else {
        struct sigaction sa;
        if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
            pthread_once(&tls_once, tls_init); /* only for its SIGPIPE setting */
    }
    char port[16];
    snprintf(port, sizeof port, "%d", t->port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int gr = getaddrinfo(t->host, port, &hints, &res);
    if (gr != 0) {
        set_error(err, errlen, "cannot connect to %s port %d: %s", t->host, t->port,
                  gr == EAI_SYSTEM ? strerror(errno) : gai_strerror(gr));
        return NET_ERR_UNREACHABLE;
    }
    char why[160] = "no address";
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = connect_one(ai, deadline, intr, why, sizeof why);
        if (fd >= 0 || fd == NET_ERR_INTERRUPTED || fd == NET_ERR_TIMEOUT)
            break;
    }
    freeaddrinfo(res);
    if (fd == NET_ERR_INTERRUPTED) {
        set_error(err, errlen, "interrupted");
        return NET_ERR_INTERRUPTED;
    }
    if (fd == NET_ERR_TIMEOUT) {
        set_error(err, errlen, "cannot connect to %s port %d: no answer within the deadline",
                  t->host, t->port);
        return NET_ERR_TIMEOUT;
    }
    if (fd < 0) {
        set_error(err, errlen, "cannot connect to %s port %d: %s", t->host, t->port, why);
        return NET_ERR_UNREACHABLE;
    }
    struct net_conn *c = xcalloc(1, sizeof *c);
    c->fd = fd;
    if (t->tls) {
        int rc = tls_handshake(c, t, deadline, intr, err, errlen);
        if (rc < 0) {
            net_close(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

/* ---- reading and writing ------------------------------------------------------------- */

static ssize_t ssl_result(struct net_conn *c, int r, const char *what)
{
    int e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ: c->wants = POLLIN; return NET_AGAIN;
    case SSL_ERROR_WANT_WRITE: c->wants = POLLOUT; return NET_AGAIN;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET || errno == EPIPE)) {
            /* The peer went away without close_notify: the end of the stream. */
            return 0;
        }
        /* fall through */
    default: ssl_error_text(c->err, sizeof c->err, what); return NET_FAIL;
    }
}

ssize_t net_read(struct net_conn *c, void *p, size_t n)
{
    if (c->ssl != NULL) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (r > 0) {
            c->wants = 0;
            return r;
        }
        return ssl_result(c, r, "TLS read failed");
    }
    for (;;) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r >= 0) {
            c->wants = 0;
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->wants = POLLIN;
            return NET_AGAIN;
        }
        if (errno == ECONNRESET)
            return 0;
        snprintf(c->err, sizeof c->err, "read failed: %s", strerror(errno));
        return NET_FAIL;
    }
}

ssize_t net_write(struct net_conn *c, const void *p, size_t n)
{
    if (c->ssl != NULL) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (r > 0) {
            c->wants = 0;
            return r;
        }
        ssize_t s = ssl_result(c, r, "TLS write failed");
        if (s == 0) {
            snprintf(c->err, sizeof c->err, "the relay closed the connection");
            return NET_FAIL;
        }
        return s;
    }
    for (;;) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        if (r >= 0) {
            c->wants = 0;
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->wants = POLLOUT;
            return NET_AGAIN;
        }
        snprintf(c->err, sizeof c->err, "write failed: %s", strerror(errno));
        return NET_FAIL;
    }
}

short net_wants(const struct net_conn *c, int writing)
{
    (void)writing;
    return c->wants ? c->wants : POLLIN;
}

int net_pending(const struct net_conn *c)
{
    return c->ssl != NULL && SSL_pending(c->ssl) > 0;
}

int net_fd(const struct net_conn *c)
{
    return c->fd;
}

const char *net_error_text(const struct net_conn *c)
{
    return c->err[0] ? c->err : "connection failed";
}

/* The wait behind a NET_AGAIN, as a result for the blocking forms. */
static int wait_again(struct net_conn *c, int64_t deadline, const struct net_interrupt *intr,
                      char *err, size_t errlen)
{
    int w = net_wait(c->fd, c->wants ? c->wants : POLLIN, deadline, intr);
    if (w > 0)
        return 0;
    if (w == 0) {
        set_error(err, errlen, "timed out");
        return NET_ERR_TIMEOUT;
    }
    set_error(err, errlen, "%s", w == NET_ERR_INTERRUPTED ? "interrupted" : "poll failed");
    return w;
}

int net_write_all(struct net_conn *c, const void *p, size_t n, int64_t deadline,
                  const struct net_interrupt *intr, char *err, size_t errlen)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = net_write(c, b, n);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w == NET_FAIL) {
            set_error(err, errlen, "%s", net_error_text(c));
            return NET_ERR_UNREACHABLE;
        }
        int rc = wait_again(c, deadline, intr, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

ssize_t net_read_wait(struct net_conn *c, void *p, size_t n, int64_t deadline,
                      const struct net_interrupt *intr, char *err, size_t errlen)
{
    for (;;) {
        ssize_t r = net_read(c, p, n);
        if (r >= 0)
            return r;
        if (r == NET_FAIL) {
            set_error(err, errlen, "%s", net_error_text(c));
            return NET_ERR_UNREACHABLE;
        }
        int rc = wait_again(c, deadline, intr, err, errlen);
        if (rc < 0)
            return rc;
    }
}

/*
 * Linux counts our SYN in bytes_acked and a FIN in either direction as one
 * sequence byte; SIOCOUTQ covers written but unacknowledged data.
 */
int net_wire(const struct net_conn *c, uint64_t *sent, uint64_t *recvd)
{
#if defined(__linux__)
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0 ||
        tl < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return -1;
    int outq = 0;
    if (ioctl(c->fd, SIOCOUTQ, &outq) < 0 || outq < 0)
        outq = 0;
    /* Linux TCP states (include/net/tcp_states.h). */
    enum {
        ST_SYN_SENT = 2,
        ST_FIN_WAIT1 = 4,
        ST_FIN_WAIT2 = 5,
        ST_TIME_WAIT = 6,
        ST_CLOSE_WAIT = 8,
        ST_LAST_ACK = 9,
        ST_CLOSING = 11
    };
    unsigned st = ti.tcpi_state;
    int fin_out = st == ST_FIN_WAIT1 || st == ST_FIN_WAIT2 || st == ST_CLOSING ||
                  st == ST_LAST_ACK || st == ST_TIME_WAIT;
    int fin_in = st == ST_CLOSE_WAIT || st == ST_LAST_ACK || st == ST_CLOSING || st == ST_TIME_WAIT;
    uint64_t s = ti.tcpi_bytes_acked + (uint64_t)outq;
    if (st != ST_SYN_SENT && s > 0)
        s--; /* our SYN */
    if (fin_out && s > 0)
        s--;
    uint64_t rv = ti.tcpi_bytes_received;
    if (fin_in && rv > 0)
        rv--;
    *sent = s;
    *recvd = rv;
    return 0;
#else
    (void)c;
    (void)sent;
    (void)recvd;
    return -1;
#endif
}

void net_close(struct net_conn *c)
{
    if (c == NULL)
        return;
    if (c->ssl != NULL) {
        /* One try at close_notify, never a wait: the socket is non-blocking. */
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}
