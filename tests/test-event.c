/*
 * test-event: the event module against real events, every rejection reason,
 * tampering, the canonical escaping of every control character, signing, and
 * concurrent verification.
 *
 * It also serves tests/event-vectors.sh, which cross-checks negsync against
 * nostr-tools:
 *   test-event --vectors FILE   every line must parse, verify, and re-serialize
 *                               byte for byte (same escaping as JSON.stringify)
 *   test-event --reject FILE    every line must be refused
 *   test-event --sign-vectors   prints events negsync signed, for nostr-tools
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "testutil.h"
#include "util.h"

/* ------------------------------------------------------------------ helpers */

struct lines {
    char **v;
    size_t *len;
    size_t n;
};

static int lines_read(const char *path, struct lines *out)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    memset(out, 0, sizeof *out);
    if (f == NULL)
        return -1;
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
        out->len = xreallocarray(out->len, out->n + 1, sizeof *out->len);
        out->v[out->n] = xmalloc((size_t)n + 1);
        memcpy(out->v[out->n], line, (size_t)n + 1);
        out->len[out->n++] = (size_t)n;
    }
    free(line);
    fclose(f);
    return 0;
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->len);
}

/* The project's copy of real events (tests/data/README.md); make check sets top_srcdir. */
static const char *real_events_path(void)
{
    static char path[4096];
    const char *srcdir = getenv("top_srcdir");

    snprintf(path, sizeof path, "%s/tests/data/real-events-nostream-seeds.jsonl",
             srcdir != NULL && srcdir[0] != '\0' ? srcdir : ".");
    return path;
}

static void seckey_from(uint8_t sk[32], unsigned n)
{
    memset(sk, 0, 32);
    sk[28] = (uint8_t)(n >> 24);
    sk[29] = (uint8_t)(n >> 16);
    sk[30] = (uint8_t)(n >> 8);
    sk[31] = (uint8_t)n;
}

/* A fresh hand-built event with the given content bytes (may hold NUL); caller frees. */
static struct event *event_build(const char *content, size_t len)
{
    struct event *ev = xcalloc(1, sizeof *ev);

    ev->content = xmalloc(len + 1);
    memcpy(ev->content, content, len);
    ev->content[len] = '\0';
    ev->content_len = len;
    ev->created_at = 1700000000;
    ev->kind = 1;
    return ev;
}

static void event_add_tag(struct event *ev, size_t n, const char *const *fields, const size_t *lens)
{
    ev->tags = xreallocarray(ev->tags, ev->ntags + 1, sizeof *ev->tags);
    struct event_tag *t = &ev->tags[ev->ntags++];
    t->nfields = n;
    t->fields = xcalloc(n, sizeof *t->fields);
    t->lens = xcalloc(n, sizeof *t->lens);
    for (size_t i = 0; i < n; i++) {
        t->lens[i] = lens ? lens[i] : strlen(fields[i]);
        t->fields[i] = xmalloc(t->lens[i] + 1);
        memcpy(t->fields[i], fields[i], t->lens[i]);
        t->fields[i][t->lens[i]] = '\0';
    }
}

/* --------------------------------------------------------------- real events */

/* Serializes ev, re-parses it and returns the verify result and reason. */
static int reparse_verify(const struct event *ev, char *err, size_t errlen)
{
    size_t len;
    char *json = event_to_json(ev, &len);
    struct event *back = event_parse(json, len, err, errlen);
    int rc = -1;

    free(json);
    if (back != NULL) {
        rc = event_verify(back, err, errlen);
        event_free(back);
    }
    return rc;
}

/* Index of the first ASCII letter in s, or len. */
static size_t first_ascii_letter(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'))
            break;
    return i;
}

static void tamper_expect(const char *what, size_t line, struct event *ev, const char *reason)
{
    char err[EVENT_ERRLEN] = "";

    CHECK_MSG(event_verify(ev, err, sizeof err) != 0 && strcmp(err, reason) == 0,
              "line %zu: tampered %s: got \"%s\", want \"%s\"", line, what, err, reason);
    /* And the same through JSON, as it would arrive from a relay. */
    err[0] = '\0';
    CHECK_MSG(reparse_verify(ev, err, sizeof err) != 0 && strcmp(err, reason) == 0,
              "line %zu: tampered %s via JSON: got \"%s\", want \"%s\"", line, what, err, reason);
}

static void test_real_events(void)
{
    struct lines l;
    size_t ok = 0, kinds_seen[3] = {0}, identical = 0;

    if (lines_read(real_events_path(), &l) != 0) {
        CHECK_MSG(0, "cannot read %s (is top_srcdir set?)", real_events_path());
        return;
    }
    CHECK_MSG(l.n == 463, "expected 463 real events, read %zu", l.n);
    for (size_t i = 0; i < l.n; i++) {
        char err[EVENT_ERRLEN] = "";
        struct event *ev = event_parse(l.v[i], l.len[i], err, sizeof err);
        CHECK_MSG(ev != NULL, "line %zu: parse: %s", i + 1, err);
        if (ev == NULL)
            continue;
        int rc = event_verify(ev, err, sizeof err);
        CHECK_MSG(rc == 0, "line %zu: verify: %s", i + 1, err);
        if (rc != 0) {
            event_free(ev);
            continue;
        }
        ok++;
        if (ev->kind <= 1)
            kinds_seen[ev->kind]++;
        else
            kinds_seen[2]++;

        /* Round trip: our JSON re-parses to an event that serializes identically. */
        size_t len, len2;
        char *json = event_to_json(ev, &len);
        CHECK_MSG(event_json_size(ev) == len, "line %zu: event_json_size %zu, JSON is %zu bytes",
                  i + 1, event_json_size(ev), len);
        struct event *back = event_parse(json, len, err, sizeof err);
        CHECK_MSG(back != NULL, "line %zu: re-parse of our JSON: %s", i + 1, err);
        if (back != NULL) {
            char *json2 = event_to_json(back, &len2);
            CHECK_MSG(len == len2 && memcmp(json, json2, len) == 0, "line %zu: round trip differs",
                      i + 1);
            CHECK_MSG(event_verify(back, err, sizeof err) == 0, "line %zu: re-verify: %s", i + 1,
                      err);
            free(json2);
            event_free(back);
        }
        if (len == l.len[i] && memcmp(json, l.v[i], len) == 0)
            identical++;
        free(json);

        /* One bit flipped anywhere must be caught, with the right reason. */
        ev->id[i % 32] ^= 1;
        tamper_expect("id", i + 1, ev, "id mismatch");
        ev->id[i % 32] ^= 1;

        ev->sig[i % 64] ^= 0x10;
        tamper_expect("sig", i + 1, ev, "bad signature");
        ev->sig[i % 64] ^= 0x10;

        size_t k = first_ascii_letter(ev->content, ev->content_len);
        if (k < ev->content_len) {
            ev->content[k] ^= 0x20; /* swaps case, stays ASCII */
            tamper_expect("content", i + 1, ev, "id mismatch");
            ev->content[k] ^= 0x20;
        }
        if (ev->ntags > 0 && ev->tags[0].nfields >= 2) {
            struct event_tag *t = &ev->tags[ev->ntags - 1];
            k = first_ascii_letter(t->fields[t->nfields - 1], t->lens[t->nfields - 1]);
            if (k < t->lens[t->nfields - 1]) {
                t->fields[t->nfields - 1][k] ^= 0x20;
                tamper_expect("tag", i + 1, ev, "id mismatch");
                t->fields[t->nfields - 1][k] ^= 0x20;
            }
        }
        ev->created_at ^= 1;
        tamper_expect("created_at", i + 1, ev, "id mismatch");
        ev->created_at ^= 1;

        ev->kind ^= 1;
        tamper_expect("kind", i + 1, ev, "id mismatch");
        ev->kind ^= 1;

        ev->pubkey[5] ^= 4;
        tamper_expect("pubkey", i + 1, ev, "id mismatch");
        ev->pubkey[5] ^= 4;

        CHECK_MSG(event_verify(ev, err, sizeof err) == 0, "line %zu: untampered again: %s", i + 1,
                  err);
        event_free(ev);
    }
    printf("real events: %zu of %zu parse and verify (kind 0: %zu, 1: %zu, other: %zu); "
           "%zu already in our byte form\n",
           ok, l.n, kinds_seen[0], kinds_seen[1], kinds_seen[2], identical);
    CHECK_MSG(ok == 463, "only %zu real events verified", ok);
    lines_free(&l);
}

/* --------------------------------------------------------------- rejections */

/* A valid signed event as a jansson object, to break one field at a time. */
static json_t *base_event_json(void)
{
    uint8_t sk[32];
    const char *t0[] = {"e", "5c83da77af1dec6d7289834998ad7aafbd9e2191396d75ec3cc27f5a77226f36"};
    const char *t1[] = {"p", "f7234bd4c1394dda46d09f35bd384dd30cc552ad5541990f98844fb06676e9ca"};
    const char *t2[] = {"t", "nostr"};
    const char *t3[] = {"alt", "reply", "x"};
    const char *const *tags[] = {t0, t1, t2, t3};
    const size_t lens[] = {2, 2, 2, 3};
    json_error_t jerr;

    seckey_from(sk, 7);
    struct event *ev = event_sign(sk, 1700000000, 1, tags, lens, 4, "hello");
    if (ev == NULL)
        abort();
    size_t len;
    char *s = event_to_json(ev, &len);
    json_t *o = json_loadb(s, len, 0, &jerr);
    free(s);
    event_free(ev);
    return o;
}

static void expect_obj_reject(json_t *o, const char *reason, const char *what)
{
    char err[EVENT_ERRLEN] = "";
    struct event *ev = event_from_json(o, err, sizeof err);

    CHECK_MSG(ev == NULL && strcmp(err, reason) == 0, "%s: got %s \"%s\", want \"%s\"", what,
              ev ? "accepted" : "rejected", err, reason);
    event_free(ev);
    json_decref(o);
}

/* Replaces field name of the base event with v (NULL removes it) and expects reason. */
static void expect_field_reject(const char *name, json_t *v, const char *reason)
{
    json_t *o = base_event_json();
    char what[96];

    if (v == NULL)
        json_object_del(o, name);
    else
        json_object_set_new(o, name, v);
    snprintf(what, sizeof what, "field %s", name);
    expect_obj_reject(o, reason, what);
}

static void expect_text_reject(const char *text, const char *reason_prefix)
{
    char err[EVENT_ERRLEN] = "";
    struct event *ev = event_parse(text, strlen(text), err, sizeof err);

    CHECK_MSG(ev == NULL && strncmp(err, reason_prefix, strlen(reason_prefix)) == 0,
              "text %.60s: got %s \"%s\", want \"%s...\"", text, ev ? "accepted" : "rejected", err,
              reason_prefix);
    event_free(ev);
}

/* The base event's JSON text with its content replaced by raw JSON text c. */
static char *base_with_content(const char *c)
{
    json_t *o = base_event_json();
    json_object_set_new(o, "content", json_string("@@@"));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *at = strstr(s, "\"@@@\"");
    size_t n = strlen(s) + strlen(c) + 1;
    char *out = xmalloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, c, at + 5);
    free(s);
    return out;
}

static void test_rejections(void)
{
    const char *fields[] = {"id", "pubkey", "created_at", "kind", "tags", "content", "sig"};
    char want[64];
    char hex63[64], hex127[128], upper[65];

    /* The base event itself is fine. */
    {
        char err[EVENT_ERRLEN] = "";
        json_t *o = base_event_json();
        json_object_set_new(o, "extra", json_string("ignored"));
        json_object_set_new(o, "seenOn", json_array());
        struct event *ev = event_from_json(o, err, sizeof err);
        CHECK_MSG(ev != NULL, "base event with unknown fields: %s", err);
        CHECK_MSG(ev && event_verify(ev, err, sizeof err) == 0, "base event verify: %s", err);
        event_free(ev);
        json_decref(o);
    }

    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        snprintf(want, sizeof want, "missing field: %s", fields[i]);
        expect_field_reject(fields[i], NULL, want);
    }
    expect_field_reject("id", json_null(), "id: not a string");
    expect_field_reject("pubkey", json_integer(5), "pubkey: not a string");
    expect_field_reject("sig", json_array(), "sig: not a string");
    expect_field_reject("content", json_integer(5), "content: not a string");
    expect_field_reject("content", json_null(), "content: not a string");

    memset(hex63, 'a', 63);
    hex63[63] = '\0';
    memset(hex127, 'b', 127);
    hex127[127] = '\0';
    expect_field_reject("id", json_string(hex63), "id: not 64 hex chars");
    expect_field_reject("pubkey", json_string(""), "pubkey: not 64 hex chars");
    expect_field_reject("sig", json_string(hex127), "sig: not 128 hex chars");
    {
        json_t *o = base_event_json();
        snprintf(upper, sizeof upper, "%s", json_string_value(json_object_get(o, "id")));
        json_decref(o);
        for (char *p = upper; *p; p++)
            if (*p >= 'a' && *p <= 'f')
                *p = (char)(*p - 'a' + 'A');
        expect_field_reject("id", json_string(upper), "id: not 64 hex chars");
        upper[10] = 'g';
        expect_field_reject("pubkey", json_string(upper), "pubkey: not 64 hex chars");
    }

    expect_field_reject("created_at", json_string("1700000000"), "created_at: not an integer");
    expect_field_reject("created_at", json_real(1700000000.0), "created_at: not an integer");
    expect_field_reject("created_at", json_integer(-1),
                        "created_at: -1 out of range 0..9223372036854775807");
    expect_field_reject("kind", json_integer(65536), "kind: 65536 out of range 0..65535");
    expect_field_reject("kind", json_integer(-1), "kind: -1 out of range 0..65535");
    expect_field_reject("kind", json_true(), "kind: not an integer");
    expect_field_reject("kind", json_real(1.0), "kind: not an integer");

    expect_field_reject("tags", json_object(), "tags: not an array");
    expect_field_reject("tags", json_pack("[s]", "e"), "tags[0]: not an array");
    expect_field_reject("tags", json_pack("[[s],[]]", "e"), "tags[1]: empty tag");
    expect_field_reject("tags", json_pack("[[s],[s],[s],[s,i]]", "a", "b", "c", "d", 1),
                        "tags[3][1]: not a string");
    expect_field_reject("tags", json_pack("[[n]]"), "tags[0][0]: not a string");
    expect_field_reject("tags", json_pack("[[s,s,[]]]", "a", "b"), "tags[0][2]: not a string");

    /* Objects built by hand can smuggle invalid UTF-8 past jansson's loader. */
    expect_field_reject("content", json_stringn_nocheck("\xff", 1), "content: invalid UTF-8");
    expect_field_reject("content", json_stringn_nocheck("\xed\xa0\x80", 3),
                        "content: invalid UTF-8"); /* U+D800 encoded directly */
    expect_field_reject("content", json_stringn_nocheck("\xc0\xaf", 2),
                        "content: invalid UTF-8"); /* overlong '/' */
    {
        json_t *tags = json_array(), *tag = json_array();
        json_array_append_new(tag, json_string("t"));
        json_array_append_new(tag, json_stringn_nocheck("a\xf4\x90\x80\x80", 5));
        json_array_append_new(tags, tag);
        expect_field_reject("tags", tags, "tags[0][1]: invalid UTF-8");
    }

    /* Text-level rejections come from the JSON loader. */
    expect_text_reject("[1,2]", "event: not a JSON object");
    expect_text_reject("", "invalid JSON");
    expect_text_reject("{\"id\":", "invalid JSON");
    char *s = base_with_content("\"\\ud800\"");
    expect_text_reject(s, "invalid JSON"); /* lone high surrogate */
    free(s);
    s = base_with_content("\"\\udc00x\"");
    expect_text_reject(s, "invalid JSON"); /* lone low surrogate */
    free(s);
    s = base_with_content("\"\\ud83dA\"");
    expect_text_reject(s, "invalid JSON"); /* high surrogate, no low */
    free(s);
    s = base_with_content("\"\xff\"");
    expect_text_reject(s, "invalid JSON"); /* raw invalid UTF-8 */
    free(s);
    s = base_with_content("\"\xed\xa0\x80\"");
    expect_text_reject(s, "invalid JSON"); /* raw CESU surrogate */
    free(s);
    s = base_with_content("\"a\",\"content\":\"b\"");
    expect_text_reject(s, "invalid JSON"); /* duplicate key */
    free(s);
    s = base_with_content("\"a\"} x");
    expect_text_reject(s, "invalid JSON"); /* trailing garbage */
    free(s);
    /* The kind as a number too big for 64 bits. */
    {
        json_t *o = base_event_json();
        json_object_set_new(o, "kind", json_integer(12345));
        char *t = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        char *p = strstr(t, "12345");
        size_t n = strlen(t) + 32;
        char *u = xmalloc(n);
        snprintf(u, n, "%.*s99999999999999999999999%s", (int)(p - t), t, p + 5);
        expect_text_reject(u, "invalid JSON");
        free(u);
        free(t);
    }

    /* Escapes that are fine: a surrogate pair, \u0000, \/ decode and verify. */
    {
        uint8_t sk[32];
        char err[EVENT_ERRLEN] = "";
        seckey_from(sk, 9);
        struct event *ev = event_build("\xf0\x9f\x98\x80"
                                       "a\0b/",
                                       8);
        CHECK_MSG(event_finalize(ev, sk) == 0, "finalize");
        char idhex[65], pkhex[65], sighex[129];
        hex_encode(ev->id, 32, idhex);
        hex_encode(ev->pubkey, 32, pkhex);
        hex_encode(ev->sig, 64, sighex);
        char text[1024];
        snprintf(text, sizeof text,
                 "{\"id\":\"%s\",\"pubkey\":\"%s\",\"created_at\":1700000000,\"kind\":1,"
                 "\"tags\":[],\"content\":\"\\ud83d\\ude00a\\u0000b\\/\",\"sig\":\"%s\"}",
                 idhex, pkhex, sighex);
        struct event *back = event_parse(text, strlen(text), err, sizeof err);
        CHECK_MSG(back != NULL, "escaped content: %s", err);
        if (back != NULL) {
            CHECK_MSG(back->content_len == 8 && memcmp(back->content, ev->content, 8) == 0,
                      "escapes decoded wrongly");
            CHECK_MSG(event_verify(back, err, sizeof err) == 0, "escaped content verify: %s", err);
            size_t len;
            char *json = event_to_json(back, &len);
            CHECK_MSG(strstr(json, "\"content\":\"\xf0\x9f\x98\x80"
                                   "a\\u0000b/\"") != NULL,
                      "re-serialized: %s", json);
            free(json);
        }
        event_free(back);
        event_free(ev);
    }
}

/* ------------------------------------------------------------------ escaping */

static void test_escaping(void)
{
    static const char *const short_esc[32] = {
        [0x08] = "\\b", [0x09] = "\\t", [0x0a] = "\\n", [0x0c] = "\\f", [0x0d] = "\\r",
    };

    for (int c = 0; c < 0x20; c++) {
        char content[3] = {'x', (char)c, 'y'};
        char want[16];
        struct event *ev = event_build(content, 3);
        size_t len;
        char *s = event_serialize_canonical(ev, &len);

        if (short_esc[c])
            snprintf(want, sizeof want, ",\"x%sy\"]", short_esc[c]);
        else
            snprintf(want, sizeof want, ",\"x\\u%04xy\"]", c);
        CHECK_MSG(len >= strlen(want) && strcmp(s + len - strlen(want), want) == 0,
                  "control 0x%02x: serialized as %s, want %s", c, s, want);
        CHECK_MSG(strlen(s) == len, "control 0x%02x: raw NUL in output", c);
        free(s);
        s = event_to_json(ev, &len);
        CHECK_MSG(event_json_size(ev) == len, "control 0x%02x: event_json_size %zu, JSON %zu", c,
                  event_json_size(ev), len);
        free(s);
        event_free(ev);
    }

    /* Everything else is verbatim, including what other encoders like to escape. */
    const char verbatim[] = "/\x7f\xc2\x80\xe2\x80\xa8\xe2\x80\xa9\xef\xbb\xbf\xf0\x9f\x8e\x89"
                            "\xf4\x8f\xbf\xbf<>&'";
    struct event *ev = event_build(verbatim, sizeof verbatim - 1);
    const char *t0[] = {"q\"\\", "\t"};
    event_add_tag(ev, 2, t0, NULL);
    memset(ev->pubkey, 0xab, 32);
    size_t len;
    char *s = event_serialize_canonical(ev, &len);
    char want[256];
    snprintf(want, sizeof want, "[0,\"%s\",1700000000,1,[[\"q\\\"\\\\\",\"\\t\"]],\"%s\"]",
             "abababababababababababababababababababababababababababababababab", verbatim);
    CHECK_MSG(strcmp(s, want) == 0, "canonical form:\n got %s\nwant %s", s, want);
    free(s);
    /* Sizes of the same escapes in the stored form, and of a tag without fields. */
    const char *t1[] = {NULL};
    event_add_tag(ev, 0, t1, NULL);
    ev->created_at = 0;
    ev->kind = 65535;
    s = event_to_json(ev, &len);
    CHECK_MSG(event_json_size(ev) == len, "event_json_size %zu, JSON %zu: %s", event_json_size(ev),
              len, s);
    free(s);

    event_free(ev);

    /* Empty tags and empty content: the minimal canonical form. */
    ev = event_build("", 0);
    s = event_serialize_canonical(ev, &len);
    CHECK_MSG(strcmp(s, "[0,\"0000000000000000000000000000000000000000000000000000000000000000\","
                        "1700000000,1,[],\"\"]") == 0,
              "minimal canonical form: %s", s);
    free(s);
    event_free(ev);
}

/* ------------------------------------------------------------------ signing */

static void test_signing(void)
{
    uint8_t sk[32];
    char err[EVENT_ERRLEN] = "";
    char pkhex[65];

    /* BIP-340 test vector 0: secret key 3. */
    seckey_from(sk, 3);
    struct event *ev = event_sign(sk, 0, 0, NULL, NULL, 0, "");
    CHECK_MSG(ev != NULL, "sign with key 3");
    if (ev != NULL) {
        hex_encode(ev->pubkey, 32, pkhex);
        CHECK_MSG(
            strcmp(pkhex, "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9") == 0,
            "pubkey of key 3 is %s", pkhex);
        CHECK_MSG(event_verify(ev, err, sizeof err) == 0, "verify: %s", err);
    }

    /* Fresh aux randomness: two signatures of one event differ and both hold. */
    struct event *ev2 = event_sign(sk, 0, 0, NULL, NULL, 0, "");
    CHECK_MSG(ev2 != NULL && memcmp(ev->id, ev2->id, 32) == 0, "same event, same id");
    CHECK_MSG(ev2 != NULL && memcmp(ev->sig, ev2->sig, 64) != 0, "aux randomness not used");
    CHECK_MSG(ev2 != NULL && event_verify(ev2, err, sizeof err) == 0, "verify 2: %s", err);
    event_free(ev2);

    /* Swap in another valid pubkey with a recomputed id: the signature no longer holds. */
    seckey_from(sk, 4);
    ev2 = event_sign(sk, 0, 0, NULL, NULL, 0, "");
    memcpy(ev->pubkey, ev2->pubkey, 32);
    event_compute_id(ev, ev->id);
    CHECK_MSG(event_verify(ev, err, sizeof err) != 0 && strcmp(err, "bad signature") == 0,
              "foreign pubkey: \"%s\"", err);
    /* And a pubkey that is no curve point (x >= p). */
    memset(ev->pubkey, 0xff, 32);
    event_compute_id(ev, ev->id);
    CHECK_MSG(event_verify(ev, err, sizeof err) != 0 && strcmp(err, "invalid pubkey") == 0,
              "off-curve pubkey: \"%s\"", err);
    event_free(ev2);
    event_free(ev);

    /* Bad keys and bad input. */
    uint8_t zero[32] = {0}, order[32];
    hex_decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 64, order, 32,
               1);
    CHECK_MSG(event_sign(zero, 0, 1, NULL, NULL, 0, "x") == NULL, "zero key accepted");
    CHECK_MSG(event_sign(order, 0, 1, NULL, NULL, 0, "x") == NULL, "key = n accepted");
    seckey_from(sk, 5);
    CHECK_MSG(event_sign(sk, 0, 65536, NULL, NULL, 0, "x") == NULL, "kind 65536 accepted");
    CHECK_MSG(event_sign(sk, (uint64_t)INT64_MAX + 1, 1, NULL, NULL, 0, "x") == NULL,
              "created_at 2^63 accepted");
    CHECK_MSG(event_sign(sk, 0, 1, NULL, NULL, 0, "\xc3") == NULL, "invalid UTF-8 accepted");
    const char *empty_tag[1] = {NULL};
    const char *const *tags[] = {empty_tag};
    size_t zero_len = 0;
    CHECK_MSG(event_sign(sk, 0, 1, tags, &zero_len, 1, "x") == NULL, "empty tag accepted");

    /* Extremes that are fine. */
    ev = event_sign(sk, INT64_MAX, 65535, NULL, NULL, 0, NULL);
    CHECK_MSG(ev != NULL && event_verify(ev, err, sizeof err) == 0, "INT64_MAX/65535: %s", err);
    if (ev != NULL) {
        size_t len;
        char *json = event_to_json(ev, &len);
        struct event *back = event_parse(json, len, err, sizeof err);
        CHECK_MSG(back != NULL && back->created_at == INT64_MAX && back->kind == 65535,
                  "extremes round trip: %s", err);
        CHECK_MSG(back != NULL && event_verify(back, err, sizeof err) == 0, "extremes verify: %s",
                  err);
        event_free(back);
        free(json);
    }
    event_free(ev);

    /* NUL bytes in content and tags sign, serialize and verify. */
    ev = event_build("a\0b", 3);
    const char *t0[] = {"x", "1\0002"};
    const size_t l0[] = {1, 3};
    event_add_tag(ev, 2, t0, l0);
    CHECK_MSG(event_finalize(ev, sk) == 0, "finalize with NULs");
    size_t len;
    char *json = event_to_json(ev, &len);
    CHECK_MSG(strlen(json) == len && strstr(json, "[[\"x\",\"1\\u00002\"]]") != NULL &&
                  strstr(json, "\"content\":\"a\\u0000b\"") != NULL,
              "NUL escaping: %s", json);
    struct event *back = event_parse(json, len, err, sizeof err);
    CHECK_MSG(back != NULL && back->content_len == 3 && back->tags[0].lens[1] == 3,
              "NUL round trip: %s", err);
    CHECK_MSG(back != NULL && event_verify(back, err, sizeof err) == 0, "NUL verify: %s", err);
    event_free(back);
    free(json);
    event_free(ev);
}

/* ----------------------------------------------------------- kinds and tags */

static void test_kinds_and_tags(void)
{
    static const struct {
        uint32_t kind;
        int repl, eph, addr;
    } k[] = {
        {0, 1, 0, 0},     {1, 0, 0, 0},     {2, 0, 0, 0},     {3, 1, 0, 0},     {4, 0, 0, 0},
        {9999, 0, 0, 0},  {10000, 1, 0, 0}, {19999, 1, 0, 0}, {20000, 0, 1, 0}, {29999, 0, 1, 0},
        {30000, 0, 0, 1}, {39999, 0, 0, 1}, {40000, 0, 0, 0}, {65535, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        CHECK_MSG(!!event_kind_is_replaceable(k[i].kind) == k[i].repl, "replaceable(%u)",
                  k[i].kind);
        CHECK_MSG(!!event_kind_is_ephemeral(k[i].kind) == k[i].eph, "ephemeral(%u)", k[i].kind);
        CHECK_MSG(!!event_kind_is_addressable(k[i].kind) == k[i].addr, "addressable(%u)",
                  k[i].kind);
    }

    struct event *ev = event_build("", 0);
    const char *t0[] = {"d"}, *t1[] = {"dd", "no"}, *t2[] = {"d", "first"}, *t3[] = {"d", "second"},
               *t4[] = {"e", ""};
    event_add_tag(ev, 1, t0, NULL);
    event_add_tag(ev, 2, t1, NULL);
    event_add_tag(ev, 2, t2, NULL);
    event_add_tag(ev, 2, t3, NULL);
    event_add_tag(ev, 2, t4, NULL);
    const char *v = event_tag_value(ev, "d");
    CHECK_MSG(v && strcmp(v, "first") == 0, "d tag: %s", v ? v : "(null)");
    v = event_tag_value(ev, "e");
    CHECK_MSG(v && strcmp(v, "") == 0, "empty e tag value");
    CHECK_MSG(event_tag_value(ev, "p") == NULL, "no p tag");
    CHECK_MSG(event_tag_value(ev, "") == NULL, "empty name");
    event_free(ev);
}

/* ------------------------------------------------------------------ threads */

struct verify_job {
    struct lines *l;
    size_t start;
    int bad;
};

static void *verify_thread(void *arg)
{
    struct verify_job *j = arg;

    for (size_t i = j->start; i < j->l->n; i += 4) {
        char err[EVENT_ERRLEN];
        struct event *ev = event_parse(j->l->v[i], j->l->len[i], err, sizeof err);
        if (ev == NULL || event_verify(ev, err, sizeof err) != 0)
            j->bad++;
        event_free(ev);
    }
    return NULL;
}

/* The shared context is created once, whichever thread gets there first. */
static void test_threads(void)
{
    struct lines l;
    pthread_t th[4];
    struct verify_job jobs[4];

    if (lines_read(real_events_path(), &l) != 0)
        return;
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct verify_job){&l, (size_t)i, 0};
        if (pthread_create(&th[i], NULL, verify_thread, &jobs[i]) != 0)
            abort();
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(jobs[i].bad == 0, "thread %d: %d events failed", i, jobs[i].bad);
    }
    lines_free(&l);
}

/* ------------------------------------------------------- vector modes */

static int mode_vectors(const char *path)
{
    struct lines l;
    size_t ok = 0;

    if (lines_read(path, &l) != 0 || l.n == 0) {
        fprintf(stderr, "FAIL: no vectors in %s\n", path);
        return 1;
    }
    for (size_t i = 0; i < l.n; i++) {
        char err[EVENT_ERRLEN] = "";
        struct event *ev = event_parse(l.v[i], l.len[i], err, sizeof err);
        if (ev == NULL) {
            fprintf(stderr, "FAIL %s:%zu: parse: %s\n", path, i + 1, err);
            continue;
        }
        if (event_verify(ev, err, sizeof err) != 0) {
            fprintf(stderr, "FAIL %s:%zu: verify: %s\n", path, i + 1, err);
            event_free(ev);
            continue;
        }
        size_t len;
        char *json = event_to_json(ev, &len);
        if (len != l.len[i] || memcmp(json, l.v[i], len) != 0) {
            size_t k = 0;
            while (k < len && k < l.len[i] && json[k] == l.v[i][k])
                k++;
            fprintf(stderr, "FAIL %s:%zu: our JSON differs from JSON.stringify at byte %zu\n", path,
                    i + 1, k);
        } else {
            ok++;
        }
        free(json);
        event_free(ev);
    }
    printf("vectors: %zu of %zu match nostr-tools (id, signature, JSON bytes)\n", ok, l.n);
    lines_free(&l);
    return ok == l.n ? 0 : 1;
}

static int mode_reject(const char *path)
{
    struct lines l;
    size_t refused = 0;

    if (lines_read(path, &l) != 0 || l.n == 0) {
        fprintf(stderr, "FAIL: no vectors in %s\n", path);
        return 1;
    }
    for (size_t i = 0; i < l.n; i++) {
        char err[EVENT_ERRLEN] = "";
        struct event *ev = event_parse(l.v[i], l.len[i], err, sizeof err);
        if (ev == NULL || event_verify(ev, err, sizeof err) != 0) {
            printf("refused as expected: line %zu: %s\n", i + 1, err);
            refused++;
        } else {
            fprintf(stderr, "FAIL %s:%zu: accepted an event that must be refused\n", path, i + 1);
        }
        event_free(ev);
    }
    lines_free(&l);
    return refused == l.n ? 0 : 1;
}

static void print_signed(struct event *ev, const uint8_t sk[32])
{
    if (event_finalize(ev, sk) != 0) {
        fprintf(stderr, "FAIL: cannot sign a vector\n");
        exit(1);
    }
    size_t len;
    char *json = event_to_json(ev, &len);
    fwrite(json, 1, len, stdout);
    putchar('\n');
    free(json);
    event_free(ev);
}

/* Events negsync signs with content that is hard to serialize, for nostr-tools to check. */
static int mode_sign_vectors(void)
{
    uint8_t sk[32];
    char all_controls[32];
    static const char *const hard[] = {
        "",
        "hello",
        "h\xc3\xa9llo w\xc3\xb6rld \xe4\xb8\xad\xe6\x96\x87 \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
        ("\xf0\x9f\x8e\x89\xf0\x9f\x94\xa5\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd "
         "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7"),
        "\xf0\x9d\x95\xb3\xf0\x9d\x96\x8a \xf0\xa0\x9c\x8e \xf4\x8f\xbf\xbf",
        "line\xe2\x80\xa8sep\xe2\x80\xa9par",
        "\"quoted\" \\back\\slash\\ \\u0041 \\\" / </script> '",
        "\x7f\xc2\x80\xc2\x9f\xef\xbb\xbf\xef\xbf\xbf",
        "{\"name\":\"bob\",\"about\":\"a\\nb\"}",
    };

    seckey_from(sk, 0x5eed);
    for (int c = 0; c < 32; c++)
        all_controls[c] = (char)c;
    for (size_t i = 0; i < sizeof hard / sizeof *hard; i++) {
        struct event *ev = event_build(hard[i], strlen(hard[i]));
        ev->kind = (uint32_t)i;
        if (i > 0) {
            const char *t[] = {"t", hard[i], hard[(i + 1) % (sizeof hard / sizeof *hard)]};
            event_add_tag(ev, 3, t, NULL);
        }
        print_signed(ev, sk);
    }
    /* Every control character, NUL included, in content and in a tag. */
    struct event *ev = event_build(all_controls, 32);
    const char *t0[] = {"c", all_controls};
    const size_t l0[] = {1, 32};
    event_add_tag(ev, 2, t0, l0);
    print_signed(ev, sk);

    /* 100 KB of mixed content. */
    static const char chunk[] = "ab\"\\\n\xc3\xa9\xf0\x9f\x8e\x89\x01 ";
    struct buf b = {0};
    while (b.len < 100 * 1024)
        buf_append(&b, chunk, sizeof chunk - 1);
    ev = event_build((const char *)b.data, b.len);
    ev->kind = 30023;
    print_signed(ev, sk);
    buf_free(&b);

    /* 2000 tags. */
    ev = event_build("many tags", 9);
    for (int i = 0; i < 2000; i++) {
        char v[32];
        snprintf(v, sizeof v, "value-%d\t\xc3\xbc", i);
        const char *t[] = {i % 2 ? "p" : "t", v};
        event_add_tag(ev, 2, t, NULL);
    }
    print_signed(ev, sk);

    /* Extremes of created_at and kind. */
    ev = event_build("x", 1);
    ev->created_at = 0;
    ev->kind = 65535;
    print_signed(ev, sk);
    ev = event_build("y", 1);
    ev->created_at = 9007199254740991ULL; /* the largest integer JS represents exactly */
    print_signed(ev, sk);
    return 0;
}

/*
 * The key cache changes speed, never verdicts: same results and reasons as
 * event_verify, keys compared in full (a key differing in one byte from a
 * cached one is not taken for it), bad keys never cached, and more keys
 * than it holds still verify.
 */
static void test_keycache(void)
{
    enum { NKEYS = 3000 };
    struct event_keycache *kc = event_keycache_new();
    struct event **evs = xcalloc(NKEYS, sizeof *evs);
    char err[EVENT_ERRLEN] = "", err2[EVENT_ERRLEN] = "";
    uint64_t hits, misses, hits2, misses2;
    uint8_t sk[32];
    size_t bad = 0;

    for (size_t i = 0; i < NKEYS; i++) {
        seckey_from(sk, 1000 + (uint32_t)i);
        evs[i] = event_sign(sk, 1700000000 + i, 1, NULL, NULL, 0, "cached");
        if (evs[i] == NULL)
            abort();
    }
    /* Twice over more keys than the cache holds: evictions, then hits and misses mixed. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < NKEYS; i++)
            bad += event_verify_cached(evs[i], kc, err, sizeof err) != 0;
    }
    CHECK_MSG(bad == 0, "%zu events failed with the cache: %s", bad, err);
    event_keycache_stats(kc, &hits, &misses);
    CHECK_MSG(hits + misses == 2 * NKEYS && misses >= NKEYS && hits > 0, "hits %llu misses %llu",
              (unsigned long long)hits, (unsigned long long)misses);
    /* The same key right away is a hit. */
    CHECK_MSG(event_verify_cached(evs[7], kc, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(event_verify_cached(evs[7], kc, err, sizeof err) == 0, "%s", err);
    event_keycache_stats(kc, &hits2, &misses2);
    CHECK_MSG(hits2 >= hits + 1, "repeat was not a hit");

    /* Tampering: the same reasons with and without the cache. */
    {
        struct event *ev = evs[7];
        ev->sig[5] ^= 1;
        CHECK_MSG(event_verify_cached(ev, kc, err, sizeof err) != 0 &&
                      event_verify(ev, err2, sizeof err2) != 0 && strcmp(err, err2) == 0 &&
                      strcmp(err, "bad signature") == 0,
                  "sig: \"%s\" vs \"%s\"", err, err2);
        ev->sig[5] ^= 1;
        ev->id[0] ^= 1;
        CHECK_MSG(event_verify_cached(ev, kc, err, sizeof err) != 0 &&
                      strcmp(err, "id mismatch") == 0,
                  "id: \"%s\"", err);
        ev->id[0] ^= 1;
        /*
         * A key that differs from the cached one in its last byte only (same
         * cache set), id recomputed: must be parsed on its own, and the
         * signature by the other key must fail.
         */
        ev->pubkey[31] ^= 1;
        event_compute_id(ev, ev->id);
        CHECK_MSG(event_verify_cached(ev, kc, err, sizeof err) != 0 &&
                      event_verify(ev, err2, sizeof err2) != 0 && strcmp(err, err2) == 0,
                  "near key: \"%s\" vs \"%s\"", err, err2);
        /* An off-curve key is refused every time, never remembered. */
        memset(ev->pubkey, 0xff, 32);
        event_compute_id(ev, ev->id);
        event_keycache_stats(kc, &hits, &misses);
        for (int i = 0; i < 3; i++)
            CHECK_MSG(event_verify_cached(ev, kc, err, sizeof err) != 0 &&
                          strcmp(err, "invalid pubkey") == 0,
                      "off-curve: \"%s\"", err);
        event_keycache_stats(kc, &hits2, &misses2);
        CHECK_MSG(hits2 == hits && misses2 == misses + 3, "an invalid key was cached");
    }
    /* No cache at all is allowed too. */
    CHECK_MSG(event_verify_cached(evs[8], NULL, err, sizeof err) == 0, "%s", err);
    event_keycache_stats(NULL, &hits, &misses);
    CHECK_MSG(hits == 0 && misses == 0, "NULL cache stats");

    for (size_t i = 0; i < NKEYS; i++)
        event_free(evs[i]);
    free(evs);
    event_keycache_free(kc);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--vectors") == 0)
        return mode_vectors(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--reject") == 0)
        return mode_reject(argv[2]);
    if (argc == 2 && strcmp(argv[1], "--sign-vectors") == 0)
        return mode_sign_vectors();
    if (argc != 1) {
        fprintf(stderr, "usage: test-event [--vectors FILE | --reject FILE | --sign-vectors]\n");
        return 2;
    }

    test_real_events();
    test_rejections();
    test_escaping();
    test_signing();
    test_kinds_and_tags();
    test_keycache();
    test_threads();

    return test_summary("test-event");
}
