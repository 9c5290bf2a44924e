/*
 * net: one client TCP connection, optionally TLS (OpenSSL), with deadlines
 * and an interrupt descriptor. relay.c speaks websocket and HTTP over it.
 *
 * Every call that waits takes an absolute deadline (CLOCK_MONOTONIC ms, see
 * net_now_ms) and an interrupt: a descriptor that becomes readable, plus a
 * flag, when another thread wants the call to return. Reads and writes never
 * wait: they return NET_AGAIN and say which readiness they need, so the
 * caller runs one poll() over the socket and its interrupt.
 */
#ifndef NEGSYNC_NET_H
#define NEGSYNC_NET_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Connect results; the same numbers as relay.h's enum relay_error. */
enum net_error {
    NET_ERR_UNREACHABLE = -2,
    NET_ERR_TLS_CERT = -3,
    NET_ERR_TLS = -4,
    NET_ERR_TIMEOUT = -8,
    NET_ERR_INTERRUPTED = -9,
    NET_ERR_INTERNAL = -11,
};

/* Results of net_read / net_write besides a byte count. */
enum {
    NET_AGAIN = -1, /* would block: poll for net_wants() */
    NET_FAIL = -2,  /* the connection failed; net_error_text says why */
};

struct net_target {
    const char *host; /* a name, or an IP literal (IPv6 without brackets) */
    int port;
    int tls;
    int tls_verify; /* check the chain and the host name */
};

struct net_interrupt {
    int fd;           /* readable when interrupted; -1: none */
    atomic_int *flag; /* set when interrupted; may be NULL */
    /*
     * A flag someone else owns (an engine that is stopping), with no
     * descriptor: waits look at it at least every NET_CANCEL_POLL_MS. May be NULL.
     */
    const atomic_int *cancel;
};

#define NET_CANCEL_POLL_MS 100

struct net_conn;

int64_t net_now_ms(void);

/*
 * Resolves, connects (each address in turn) and, for TLS, shakes hands, by
 * the deadline. 0 with *out set, or a negative enum net_error with a reason
 * in err ("cannot connect to HOST port N: Connection refused", "TLS
 * certificate verification failed: ...").
 */
int net_connect(const struct net_target *t, int64_t deadline, const struct net_interrupt *intr,
                struct net_conn **out, char *err, size_t errlen);

/* >0 bytes, 0 at the end of the stream, NET_AGAIN or NET_FAIL. */
ssize_t net_read(struct net_conn *c, void *p, size_t n);
/* >0 bytes taken, NET_AGAIN or NET_FAIL. */
ssize_t net_write(struct net_conn *c, const void *p, size_t n);
/* POLLIN and/or POLLOUT: what the last NET_AGAIN waits for (TLS may read to write). */
short net_wants(const struct net_conn *c, int writing);
/* 1 when TLS holds decrypted bytes a read returns without the socket. */
int net_pending(const struct net_conn *c);
int net_fd(const struct net_conn *c);
const char *net_error_text(const struct net_conn *c);

/*
 * Waits until fd is ready for events, the deadline passes (0) or the
 * interrupt fires (NET_ERR_INTERRUPTED). Returns the poll revents (> 0).
 */
int net_wait(int fd, short events, int64_t deadline, const struct net_interrupt *intr);

/*
 * Blocking forms for handshakes: writes all n bytes, or reads some (>0; 0 at
 * the end of the stream), by the deadline. Errors are a negative enum
 * net_error (NET_ERR_TIMEOUT, NET_ERR_INTERRUPTED) or NET_ERR_UNREACHABLE for
 * a failed socket, with a reason in err.
 */
int net_write_all(struct net_conn *c, const void *p, size_t n, int64_t deadline,
                  const struct net_interrupt *intr, char *err, size_t errlen);
ssize_t net_read_wait(struct net_conn *c, void *p, size_t n, int64_t deadline,
                      const struct net_interrupt *intr, char *err, size_t errlen);

/*
 * Bytes the TCP connection carried, from the kernel (TCP_INFO and the send
 * queue): everything the socket wrote and read, TLS and framing included.
 * -1 where the system cannot tell (then the counters stay as they were).
 */
int net_wire(const struct net_conn *c, uint64_t *sent, uint64_t *recvd);

/* Closes the socket (a TLS close_notify is sent if it fits now) and frees c. NULL is fine. */
void net_close(struct net_conn *c);

#endif
