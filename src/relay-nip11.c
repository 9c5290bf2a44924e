/*
 * relay-nip11: the NIP-11 relay information document — parsing, and the
 * HTTP GET that fetches it over net.c (Content-Length, chunked, or to the
 * end of the stream; at most 1 MiB; redirects are not followed).
 */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "net.h"
#include "relay-int.h"
#include "relay.h"
#include "util.h"
#include "ws.h"

#define NIP11_MAX MIB

void relay_nip11_free(struct relay_nip11 *n)
{
    if (n == NULL)
        return;
    free(n->raw);
    free(n->name);
    free(n->software);
    free(n->version);
    free(n->supported_nips);
    free(n->negentropy);
    free(n);
}

static struct relay_nip11 *nip11_empty(void)
{
    struct relay_nip11 *n = xcalloc(1, sizeof *n);
    n->limitation.max_message_length = -1;
    n->limitation.max_subscriptions = -1;
    n->limitation.max_limit = -1;
    n->limitation.max_filters = -1;
    n->limitation.auth_required = -1;
    n->limitation.payment_required = -1;
    return n;
}

static char *nip11_string(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? relay_json_strdup(v) : NULL;
}

static int64_t nip11_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

static int nip11_bool(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

struct relay_nip11 *relay_nip11_parse(const char *text, size_t len)
{
    struct relay_nip11 *n = nip11_empty();
    if (text == NULL) {
        snprintf(n->reason, sizeof n->reason, "no document");
        return n;
    }
    if (len > NIP11_MAX) {
        snprintf(n->reason, sizeof n->reason, "document larger than 1 MiB");
        return n;
    }
    n->raw = xmalloc(len + 1);
    memcpy(n->raw, text, len);
    n->raw[len] = '\0';
    n->raw_len = len;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        set_error(n->reason, sizeof n->reason, "not JSON: %s (line %d)", jerr.text, jerr.line);
        return n;
    }
    if (!json_is_object(root)) {
        snprintf(n->reason, sizeof n->reason, "not a JSON object");
        json_decref(root);
        return n;
    }
    n->name = nip11_string(root, "name");
    n->software = nip11_string(root, "software");
    n->version = nip11_string(root, "version");
    const json_t *nips = json_object_get(root, "supported_nips");
    if (json_is_array(nips)) {
        n->has_supported_nips = 1;
        size_t cnt = json_array_size(nips);
        n->supported_nips = xreallocarray(NULL, cnt ? cnt : 1, sizeof *n->supported_nips);
        for (size_t i = 0; i < cnt; i++) {
            const json_t *v = json_array_get(nips, i);
            if (json_is_integer(v))
                n->supported_nips[n->n_supported_nips++] = (int64_t)json_integer_value(v);
        }
    }
    const json_t *neg = json_object_get(root, "negentropy");
    if (json_is_integer(neg)) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(neg));
        n->negentropy = xstrdup(tmp);
    } else if (json_is_string(neg)) {
        n->negentropy = relay_json_strdup(neg);
    }
    const json_t *lim = json_object_get(root, "limitation");
    if (json_is_object(lim)) {
        n->limitation.max_message_length = nip11_int(lim, "max_message_length");
        n->limitation.max_subscriptions = nip11_int(lim, "max_subscriptions");
        n->limitation.max_limit = nip11_int(lim, "max_limit");
        n->limitation.max_filters = nip11_int(lim, "max_filters");
        n->limitation.auth_required = nip11_bool(lim, "auth_required");
        n->limitation.payment_required = nip11_bool(lim, "payment_required");
    }
    /*
     * What negsync uses a document for is who the relay is and what it
     * claims: name, software, version, supported_nips, negentropy. An object
     * with none of those correctly typed ({}, or {"name": 5, "software": 1,
     * "supported_nips": "1,77", "description": "..."}) tells us nothing and
     * counts as no NIP-11 rather than an empty row in the cache.
     */
    int usable = n->name || n->software || n->version || n->has_supported_nips || n->negentropy;
    json_decref(root);
    if (!usable) {
        snprintf(n->reason, sizeof n->reason, "no NIP-11 field of the right type");
        free(n->name);
        free(n->software);
        free(n->version);
        free(n->supported_nips);
        free(n->negentropy);
        n->name = n->software = n->version = n->negentropy = NULL;
        n->supported_nips = NULL;
        n->has_supported_nips = 0;
        n->n_supported_nips = 0;
        return n;
    }
    n->present = 1;
    return n;
}

int relay_nip11_lists(const struct relay_nip11 *n, int nip)
{
    if (n == NULL || !n->present)
        return 0;
    for (size_t i = 0; i < n->n_supported_nips; i++)
        if (n->supported_nips[i] == nip)
            return 1;
    return 0;
}

/*
 * The body of an HTTP answer as it arrives: Content-Length, chunked, or up
 * to the end of the stream. At most NIP11_MAX bytes of document.
 */
struct http_body {
    int chunked;
    int64_t length; /* -1: until the end of the stream */
    struct buf raw; /* chunked: undecoded bytes not yet taken */
    size_t raw_off;
    uint64_t chunk_left; /* chunked: bytes left of the current chunk */
    int chunk_crlf;      /* chunked: a CRLF after chunk data is due */
    int complete, too_big, bad;
    struct buf doc;
};

static void body_add(struct http_body *b, const uint8_t *p, size_t n)
{
    if (b->doc.len + n > NIP11_MAX) {
        b->too_big = 1;
        return;
    }
    buf_append(&b->doc, p, n);
}

/* Decodes what complete chunked units the raw bytes hold. */
static void body_dechunk(struct http_body *b)
{
    while (!b->complete && !b->too_big && !b->bad) {
        size_t n = b->raw.len - b->raw_off;
        if (n == 0)
            break;
        const uint8_t *p = b->raw.data + b->raw_off;
        if (b->chunk_left > 0) {
            size_t take = n < b->chunk_left ? n : (size_t)b->chunk_left;
            if (take == 0)
                break;
            body_add(b, p, take);
            b->raw_off += take;
            b->chunk_left -= take;
            if (b->chunk_left == 0)
                b->chunk_crlf = 1;
            continue;
        }
        if (b->chunk_crlf) {
            if (n < 2)
                break;
            if (p[0] != '\r' || p[1] != '\n') {
                b->bad = 1;
                break;
            }
            b->raw_off += 2;
            b->chunk_crlf = 0;
            continue;
        }
        const uint8_t *eol = memchr(p, '\n', n);
        if (eol == NULL) {
            if (n > 1024)
                b->bad = 1;
            break;
        }
        uint64_t size = 0;
        size_t digits = 0;
        for (const uint8_t *c = p; c < eol && isxdigit(*c); c++, digits++) {
            if (size >> 56) {
                b->bad = 1;
                return;
            }
            size = size * 16 + (uint64_t)(isdigit(*c) ? *c - '0' : (tolower(*c) - 'a' + 10));
        }
        if (digits == 0) {
            b->bad = 1;
            break;
        }
        b->raw_off += (size_t)(eol - p) + 1;
        if (size == 0) {
            b->complete = 1; /* trailers, if any, are of no interest */
            break;
        }
        if (size > NIP11_MAX) {
            b->too_big = 1;
            break;
        }
        b->chunk_left = size;
    }
    if (b->raw_off > 0 && b->raw_off == b->raw.len)
        b->raw.len = b->raw_off = 0;
}

static void body_take(struct http_body *b, const uint8_t *p, size_t n)
{
    if (b->chunked) {
        buf_append(&b->raw, p, n);
        body_dechunk(b);
        return;
    }
    if (b->length >= 0 && (int64_t)(b->doc.len + n) > b->length)
        n = (size_t)(b->length - (int64_t)b->doc.len);
    body_add(b, p, n);
    if (b->length >= 0 && (int64_t)b->doc.len == b->length)
        b->complete = 1;
}

/* Reads the answer's head and body by the deadline; fills status and the body. */
static int nip11_exchange(struct net_conn *nc, int64_t deadline, const struct net_interrupt *intr,
                          int *status, struct http_body *b, char *why, size_t whylen)
{
    struct buf in = {0};
    long end = 0;
    int rc = 0;
    while (end == 0) {
        buf_reserve(&in, 4096);
        ssize_t got = net_read_wait(nc, in.data + in.len, 4096, deadline, intr, why, whylen);
        if (got <= 0) {
            buf_free(&in);
            if (got == 0) {
                set_error(why, whylen, "connection closed without an HTTP answer");
                return 1;
            }
            return (int)got;
        }
        in.len += (size_t)got;
        end = http_head_end(in.data, in.len);
    }
    struct http_head h;
    if (end < 0 || http_head_parse((const char *)in.data, (size_t)end, &h, why, whylen) < 0) {
        if (end < 0)
            set_error(why, whylen, "HTTP answer head too long");
        buf_free(&in);
        return 1;
    }
    *status = h.status;
    const char *te = http_head_get(&h, "transfer-encoding");
    const char *cl = http_head_get(&h, "content-length");
    b->length = -1;
    if (te != NULL && http_token_in(te, "chunked")) {
        b->chunked = 1;
    } else if (cl != NULL) {
        char *e;
        long long v = strtoll(cl, &e, 10);
        b->length = (*e == '\0' && v >= 0) ? v : -1;
        if (b->length > NIP11_MAX)
            b->too_big = 1;
    }
    http_head_free(&h);
    if (b->length == 0)
        b->complete = 1;
    body_take(b, in.data + end, in.len - (size_t)end);
    buf_free(&in);
    uint8_t chunk[16384];
    while (!b->complete && !b->too_big && !b->bad) {
        ssize_t got = net_read_wait(nc, chunk, sizeof chunk, deadline, intr, why, whylen);
        if (got == 0) {
            /* The end of the stream ends a body that had no length. */
            if (!b->chunked && b->length < 0)
                b->complete = 1;
            break;
        }
        if (got < 0) {
            rc = (int)got;
            break;
        }
        body_take(b, chunk, (size_t)got);
    }
    return rc;
}

int relay_fetch_nip11(const char *url, const struct relay_opts *opts, int timeout_ms,
                      struct relay_nip11 **out, char *err, size_t errlen)
{
    *out = NULL;
    struct relay_opts o = opts ? *opts : relay_opts_default();
    struct relay_url u;
    if (url_parse(url, &u, err, errlen) < 0)
        return RELAY_ERR_INVALID;
    if (timeout_ms <= 0)
        timeout_ms = o.connect_timeout_ms > 0 ? o.connect_timeout_ms : 10000;
    char hosthdr[300];
    url_host_header(&u, hosthdr, sizeof hosthdr);
    int64_t deadline = net_now_ms() + timeout_ms;
    struct net_target t = {u.host, u.port, u.tls, o.tls_verify};
    struct net_conn *nc = NULL;
    char why[RELAY_ERRLEN] = "";
    struct net_interrupt intr = {-1, NULL, o.cancel};
    int rc = net_connect(&t, deadline, &intr, &nc, why, sizeof why);
    if (rc < 0) {
        if (rc == NET_ERR_TIMEOUT)
            set_error(err, errlen, "no NIP-11 answer from %s within %d ms", hosthdr, timeout_ms);
        else
            set_error(err, errlen, "%s", why);
        url_clear(&u);
        return rc;
    }
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/nostr+json\r\n"
                     "User-Agent: " RELAY_USER_AGENT "\r\nConnection: close\r\n\r\n",
                     u.path, hosthdr);
    int status = 0;
    struct http_body b;
    memset(&b, 0, sizeof b);
    if (n < 0 || (size_t)n >= sizeof req) {
        set_error(why, sizeof why, "URL path too long");
        rc = 1;
    } else {
        rc = net_write_all(nc, req, (size_t)n, deadline, &intr, why, sizeof why);
        if (rc == NET_ERR_UNREACHABLE)
            rc = 1; /* it took the connection, then failed: an answer of sorts */
        if (rc == 0)
            rc = nip11_exchange(nc, deadline, &intr, &status, &b, why, sizeof why);
    }
    net_close(nc);
    if (rc == NET_ERR_INTERRUPTED) {
        set_error(err, errlen, "interrupted");
    } else if (rc == NET_ERR_TIMEOUT && status == 0) {
        set_error(err, errlen, "no NIP-11 answer from %s within %d ms", hosthdr, timeout_ms);
    } else if (rc < 0 && rc != NET_ERR_TIMEOUT && status == 0) {
        set_error(err, errlen, "%s", why);
    } else {
        /* The server answered: whatever it said, the result is a document or "no NIP-11". */
        struct relay_nip11 *d;
        if (b.too_big) {
            d = nip11_empty();
            snprintf(d->reason, sizeof d->reason, "document larger than 1 MiB");
        } else if (status != 200) {
            d = nip11_empty();
            if (status)
                snprintf(d->reason, sizeof d->reason, "HTTP status %d", status);
            else
                set_error(d->reason, sizeof d->reason, "%s", why[0] ? why : "no HTTP answer");
            if (b.doc.len) {
                d->raw = xmalloc(b.doc.len + 1);
                memcpy(d->raw, b.doc.data, b.doc.len);
                d->raw[b.doc.len] = '\0';
                d->raw_len = b.doc.len;
            }
        } else if (!b.complete && rc == NET_ERR_TIMEOUT) {
            d = nip11_empty();
            snprintf(d->reason, sizeof d->reason, "document not complete within %d ms", timeout_ms);
        } else if (b.bad) {
            d = nip11_empty();
            snprintf(d->reason, sizeof d->reason, "bad chunked encoding");
        } else {
            d = relay_nip11_parse((const char *)b.doc.data, b.doc.len);
            if (b.doc.data == NULL)
                snprintf(d->reason, sizeof d->reason, "empty document");
        }
        d->http_status = status;
        *out = d;
        rc = 0;
    }
    buf_free(&b.raw);
    buf_free(&b.doc);
    url_clear(&u);
    return rc;
}
