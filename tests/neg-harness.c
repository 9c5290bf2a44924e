/*
 * neg-harness: the negentropy conformance harness, in the line format of the
 * reference test suite, so that any implementation can be run against ours.
 *
 *   item,TIMESTAMP,IDHEX   add an item          seal      seal the storage
 *   initiate               print msg,HEX        msg,HEX   reconcile
 *
 * As initiator, a msg prints have,IDHEX / need,IDHEX lines for what the round
 * discovered, then msg,HEX or done. As responder it prints msg,HEX. The
 * environment variable FRAMESIZELIMIT sets the frame size limit. Every answer
 * is flushed; an error goes to stderr and ends the program with status 1.
 * NEG_ADAPTIVE=1 makes an initiator split adaptively (neg_set_adaptive).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neg.h"
#include "util.h"

static struct neg_storage *storage;
static struct neg *session;
static uint64_t frame_size_limit;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "neg-harness: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void print_hex(const char *prefix, const uint8_t *data, size_t len)
{
    char *hex = xmalloc(2 * len + 1);
    hex_encode(data, len, hex);
    printf("%s,%s\n", prefix, hex);
    free(hex);
}

static uint64_t parse_u64(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-')
        die("bad %s", what);
    return v;
}

static void ensure_session(void)
{
    char err[NEG_ERRLEN];
    if (session != NULL)
        return;
    session = neg_new(storage, frame_size_limit, err, sizeof(err));
    if (session == NULL)
        die("%s", err);
    const char *adaptive = getenv("NEG_ADAPTIVE");
    neg_set_adaptive(session, adaptive != NULL && strcmp(adaptive, "1") == 0);
}

static void check_frame(const struct buf *msg)
{
    if (frame_size_limit != 0 && msg->len > frame_size_limit)
        die("%s", "frame size limit exceeded");
}

static void handle_msg(const char *hex)
{
    char err[NEG_ERRLEN];
    size_t hexlen = strlen(hex);
    if (hexlen % 2 != 0)
        die("%s", "odd-length hex message");
    uint8_t *msg = xmalloc(hexlen / 2 + 1);
    if (hex_decode(hex, hexlen, msg, hexlen / 2, 0) < 0)
        die("%s", "bad hex in message");

    ensure_session();
    struct buf out = {0};
    struct neg_ids have = {0}, need = {0};
    if (neg_reconcile(session, msg, hexlen / 2, &out, &have, &need, err, sizeof(err)) < 0)
        die("reconcile: %s", err);
    free(msg);

    if (neg_is_initiator(session)) {
        char idhex[2 * NEG_ID_SIZE + 1];
        for (size_t i = 0; i < have.n; i++) {
            hex_encode(have.ids[i], NEG_ID_SIZE, idhex);
            printf("have,%s\n", idhex);
        }
        for (size_t i = 0; i < need.n; i++) {
            hex_encode(need.ids[i], NEG_ID_SIZE, idhex);
            printf("need,%s\n", idhex);
        }
        if (out.len == 0)
            printf("done\n");
    }
    if (out.len != 0 || !neg_is_initiator(session)) {
        check_frame(&out);
        print_hex("msg", out.data, out.len);
    }
    neg_ids_free(&have);
    neg_ids_free(&need);
    buf_free(&out);
}

int main(void)
{
    char err[NEG_ERRLEN];
    const char *fsl = getenv("FRAMESIZELIMIT");
    if (fsl != NULL && *fsl != '\0')
        frame_size_limit = parse_u64(fsl, "FRAMESIZELIMIT");

    storage = neg_storage_new();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) != -1) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;

        if (strncmp(line, "item,", 5) == 0) {
            char *comma = strchr(line + 5, ',');
            if (comma == NULL)
                die("bad item line: %s", line);
            *comma = '\0';
            uint64_t ts = parse_u64(line + 5, "timestamp");
            uint8_t id[NEG_ID_SIZE];
            if (hex_decode(comma + 1, strlen(comma + 1), id, NEG_ID_SIZE, 0) < 0)
                die("bad id: %s", comma + 1);
            if (neg_storage_insert(storage, ts, id, err, sizeof(err)) < 0)
                die("%s", err);
        } else if (strcmp(line, "seal") == 0) {
            if (neg_storage_seal(storage, err, sizeof(err)) < 0)
                die("%s", err);
        } else if (strcmp(line, "initiate") == 0) {
            ensure_session();
            struct buf out = {0};
            if (neg_initiate(session, &out, err, sizeof(err)) < 0)
                die("%s", err);
            check_frame(&out);
            print_hex("msg", out.data, out.len);
            buf_free(&out);
        } else if (strncmp(line, "msg,", 4) == 0) {
            handle_msg(line + 4);
        } else {
            die("unknown command: %s", line);
        }
        fflush(stdout);
    }
    free(line);
    neg_free(session);
    neg_storage_free(storage);
    return 0;
}
