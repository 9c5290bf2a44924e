/*
 * util: small helpers every module uses — allocation that never returns NULL
 * (running out of memory is not a condition negsync tries to survive), hex
 * conversion, and a growable byte buffer.
 */
#ifndef NEGSYNC_UTIL_H
#define NEGSYNC_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* Grows an array of nmemb items of size bytes; aborts on overflow. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);

/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/*
 * Decodes exactly 2n hex chars of in (len bytes) into out (n bytes).
 * Returns 0, or -1 if len != 2n or a char is not hex. Lowercase only when
 * strict_lower is set (Nostr ids, keys and signatures are lowercase).
 */
int hex_decode(const char *in, size_t len, uint8_t *out, size_t n, int strict_lower);

/* A growable byte buffer; the struct's owner frees data with buf_free. */
/*
 * Writes a printf-style reason into err[errlen] (the project's convention
 * for "NULL or -1 with a reason"); does nothing when err is NULL or errlen 0.
 */
void set_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct buf {
    uint8_t *data;
    size_t len, cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_push(struct buf *b, uint8_t c);
void buf_free(struct buf *b);

/* Names the calling thread (at most 15 characters) where the system can; else nothing. */
void thread_name(const char *name);

#endif
