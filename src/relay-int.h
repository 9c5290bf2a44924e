/*
 * relay-int: what relay.c (connections, URLs), relay-msg.c (Nostr messages)
 * and relay-nip11.c (the NIP-11 document) share; not part of the relay API.
 */
#ifndef NEGSYNC_RELAY_INT_H
#define NEGSYNC_RELAY_INT_H

#include <stddef.h>

#include <jansson.h>

#define MIB          (1024 * 1024)
#define LOG_TRUNCATE 200

struct relay_url {
    int tls;
    char host[256]; /* lowercase; an IPv6 literal without brackets */
    int ipv6;
    int port; /* always set: the default when the URL has none */
    int port_given;
    char *path; /* starts with '/'; may carry a query */
};

/* Splits a ws:// or wss:// URL; 0, or -1 with a reason. Free the path with url_clear. */
int url_parse(const char *url, struct relay_url *u, char *err, size_t errlen);
void url_clear(struct relay_url *u);
/* The Host header value: brackets for IPv6, the port when not the default. */
void url_host_header(const struct relay_url *u, char *out, size_t outlen);

/*
 * A printable, truncated copy of untrusted text for a log line: control
 * bytes become '?', and at most LOG_TRUNCATE bytes are shown.
 */
void log_excerpt(const char *text, size_t len, char *out, size_t outlen);

/* A NUL-terminated copy of a JSON string (which may hold NULs; they cut it). Caller frees. */
char *relay_json_strdup(const json_t *s);

/* "negsync/0.1.0", for User-Agent. */
#define RELAY_USER_AGENT PACKAGE_NAME "/" PACKAGE_VERSION

#endif
