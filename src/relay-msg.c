/*
 * relay-msg: Nostr messages from a relay. relay_msg_parse checks one text
 * message (EVENT, EOSE, OK, NOTICE, CLOSED, NEG-MSG, NEG-ERR, NEG-CLOSE,
 * AUTH, COUNT) element by element and builds its struct relay_msg, or says
 * what is wrong with it; relay_msg_free frees one. No I/O: relay.c hands
 * over each complete message the connection receives.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "relay-int.h"
#include "relay.h"
#include "util.h"

#define SUBID_MAX 1024

char *relay_json_strdup(const json_t *s)
{
    size_t n = json_string_length(s);
    char *out = xmalloc(n + 1);
    memcpy(out, json_string_value(s), n);
    out[n] = '\0';
    return out;
}

/* A subscription id: a string without NUL bytes, at most SUBID_MAX bytes. */
static int take_subid(const char *type, const json_t *v, struct relay_msg *m, char *err,
                      size_t errlen)
{
    if (!json_is_string(v)) {
        set_error(err, errlen, "%s: subscription id is not a string", type);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n > SUBID_MAX || memchr(json_string_value(v), '\0', n) != NULL) {
        set_error(err, errlen, "%s: subscription id too long or with a NUL byte", type);
        return -1;
    }
    m->subid = relay_json_strdup(v);
    return 0;
}

/* A message whose only payload is a subscription id (EOSE, NEG-CLOSE). */
static int take_only_subid(const char *type, const json_t *a, size_t n, struct relay_msg *m,
                           char *err, size_t errlen)
{
    if (n < 2) {
        set_error(err, errlen, "%s: no subscription id", type);
        return -1;
    }
    return take_subid(type, json_array_get(a, 1), m, err, errlen);
}

/* An optional reason at index i: absent is "", anything but a string is an error. */
static int take_text(const char *type, const json_t *arr, size_t i, int required,
                     struct relay_msg *m, char *err, size_t errlen)
{
    const json_t *v = json_array_get(arr, i);
    if (v == NULL) {
        if (required) {
            set_error(err, errlen, "%s: element %zu missing", type, i);
            return -1;
        }
        m->text = xstrdup("");
        return 0;
    }
    if (!json_is_string(v)) {
        set_error(err, errlen, "%s: element %zu is not a string", type, i);
        return -1;
    }
    m->text = relay_json_strdup(v);
    return 0;
}

static int is_hex(const char *s, size_t n, int lower_only)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
              (!lower_only && c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

void relay_msg_free(struct relay_msg *m)
{
    if (m == NULL)
        return;
    free(m->subid);
    json_decref(m->event);
    free(m->text);
    free(m->neg_hex);
    free(m);
}

static int msg_fill(const char *type, const json_t *a, struct relay_msg *m, char *err,
                    size_t errlen)
{
    size_t n = json_array_size(a);
    if (strcmp(type, "EVENT") == 0) {
        m->type = RELAY_MSG_EVENT;
        if (n < 3) {
            set_error(err, errlen, "EVENT: expected 3 elements, got %zu", n);
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        json_t *ev = json_array_get(a, 2);
        if (!json_is_object(ev)) {
            set_error(err, errlen, "EVENT: element 2 is not an object");
            return -1;
        }
        m->event = json_incref(ev);
    } else if (strcmp(type, "EOSE") == 0) {
        m->type = RELAY_MSG_EOSE;
        return take_only_subid(type, a, n, m, err, errlen);
    } else if (strcmp(type, "OK") == 0) {
        m->type = RELAY_MSG_OK;
        if (n < 3) {
            set_error(err, errlen, "OK: expected 4 elements, got %zu", n);
            return -1;
        }
        const json_t *id = json_array_get(a, 1), *acc = json_array_get(a, 2);
        if (!json_is_string(id) || json_string_length(id) != 64 ||
            !is_hex(json_string_value(id), 64, 1)) {
            set_error(err, errlen, "OK: element 1 is not a 64-char lowercase hex id");
            return -1;
        }
        if (!json_is_boolean(acc)) {
            set_error(err, errlen, "OK: element 2 is not a boolean");
            return -1;
        }
        memcpy(m->ok_id, json_string_value(id), 64);
        m->ok_id[64] = '\0';
        m->ok_accepted = json_is_true(acc);
        return take_text(type, a, 3, 0, m, err, errlen);
    } else if (strcmp(type, "NOTICE") == 0) {
        m->type = RELAY_MSG_NOTICE;
        return take_text(type, a, 1, 1, m, err, errlen);
    } else if (strcmp(type, "CLOSED") == 0) {
        m->type = RELAY_MSG_CLOSED;
        if (n < 2) {
            set_error(err, errlen, "CLOSED: no subscription id");
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        return take_text(type, a, 2, 0, m, err, errlen);
    } else if (strcmp(type, "NEG-MSG") == 0) {
        m->type = RELAY_MSG_NEG_MSG;
        if (n < 3) {
            set_error(err, errlen, "NEG-MSG: expected 3 elements, got %zu", n);
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        const json_t *h = json_array_get(a, 2);
        if (!json_is_string(h)) {
            set_error(err, errlen, "NEG-MSG: element 2 is not a string");
            return -1;
        }
        size_t hl = json_string_length(h);
        if (hl % 2 != 0 || !is_hex(json_string_value(h), hl, 0)) {
            set_error(err, errlen, "NEG-MSG: element 2 is not hex of even length");
            return -1;
        }
        m->neg_hex = relay_json_strdup(h);
        m->neg_hex_len = hl;
    } else if (strcmp(type, "NEG-ERR") == 0) {
        m->type = RELAY_MSG_NEG_ERR;
        if (n < 2) {
            set_error(err, errlen, "NEG-ERR: no subscription id");
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        if (take_text(type, a, 2, 0, m, err, errlen) < 0)
            return -1;
        /*
         * strfry appends the record limit it enforces. It is advisory, so a
         * 4th element of another type is ignored rather than costing us
         * the NEG-ERR itself (the session would then wait for its timeout).
         */
        const json_t *lim = json_array_get(a, 3);
        if (json_is_integer(lim)) {
            m->has_neg_limit = 1;
            m->neg_limit = (int64_t)json_integer_value(lim);
        }
    } else if (strcmp(type, "NEG-CLOSE") == 0) {
        m->type = RELAY_MSG_NEG_CLOSE;
        return take_only_subid(type, a, n, m, err, errlen);
    } else if (strcmp(type, "AUTH") == 0) {
        m->type = RELAY_MSG_AUTH;
        return take_text(type, a, 1, 1, m, err, errlen);
    } else if (strcmp(type, "COUNT") == 0) {
        m->type = RELAY_MSG_COUNT;
        if (n < 3) {
            set_error(err, errlen, "COUNT: expected 3 elements, got %zu", n);
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        const json_t *c = json_object_get(json_array_get(a, 2), "count");
        if (!json_is_integer(c) || json_integer_value(c) < 0) {
            set_error(err, errlen, "COUNT: element 2 has no non-negative integer \"count\"");
            return -1;
        }
        m->count = (uint64_t)json_integer_value(c);
    } else {
        char t[48];
        log_excerpt(type, strlen(type), t, sizeof t);
        set_error(err, errlen, "unknown message type \"%s\"", t);
        return -1;
    }
    return 0;
}

int relay_msg_parse(const char *text, size_t len, struct relay_msg **out, char *err, size_t errlen)
{
    *out = NULL;
    json_error_t jerr;
    /*
     * \u0000 is allowed because event content may hold it (the event module
     * keeps exact lengths); duplicate keys are refused because an event
     * with two "content" keys has no single canonical form.
     */
    json_t *root =
        json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        set_error(err, errlen, "invalid JSON: %s", jerr.text);
        return -1;
    }
    if (!json_is_array(root)) {
        json_decref(root);
        set_error(err, errlen, "not a JSON array");
        return -1;
    }
    const json_t *t = json_array_get(root, 0);
    if (!json_is_string(t)) {
        set_error(err, errlen, json_array_size(root) ? "element 0 is not a string" : "empty array");
        json_decref(root);
        return -1;
    }
    if (memchr(json_string_value(t), '\0', json_string_length(t)) != NULL) {
        json_decref(root);
        set_error(err, errlen, "message type contains a NUL byte");
        return -1;
    }
    struct relay_msg *m = xcalloc(1, sizeof *m);
    m->raw_len = len;
    if (msg_fill(json_string_value(t), root, m, err, errlen) < 0) {
        relay_msg_free(m);
        json_decref(root);
        return -1;
    }
    json_decref(root);
    *out = m;
    return 0;
}
