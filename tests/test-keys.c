/*
 * test-keys: the secret key module. NIP-19 bech32 against the NIP's own
 * vectors, nsec and hex parsing and every way a key text is refused, the
 * file rules (mode, type, size), NIP-42 AUTH events that event_verify
 * accepts, and that no message ever quotes the key.
 *
 *   test-keys                       the unit tests
 *   test-keys --sign-auth FILE URL CHALLENGE
 *                                   loads FILE and prints its npub, its hex
 *                                   pubkey and a signed AUTH event, one per
 *                                   line, for tests/keys-vectors.sh to check
 *                                   with nostr-tools
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "keys.h"
#include "testutil.h"
#include "util.h"

/* NIP-19's examples. */
#define NIP19_NSEC     "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
#define NIP19_NSEC_HEX "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
#define NIP19_NPUB     "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
#define NIP19_NPUB_HEX "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"

static char tmpdir[64];

/* The reason must not hold the key in any of its spellings, or a 12-character piece of it. */
static void check_no_key(const char *what, const char *msg, const char *hex, const char *nsec)
{
    char piece[13];

    CHECK_MSG(strstr(msg, hex) == NULL, "%s: message quotes the hex key", what);
    CHECK_MSG(strstr(msg, nsec) == NULL, "%s: message quotes the nsec", what);
    for (size_t i = 0; i + 12 <= 64; i += 6) {
        memcpy(piece, hex + i, 12);
        piece[12] = '\0';
        CHECK_MSG(strstr(msg, piece) == NULL, "%s: message quotes part of the key: %s", what, msg);
    }
    for (size_t i = 5; i + 12 <= strlen(nsec); i += 6) {
        memcpy(piece, nsec + i, 12);
        piece[12] = '\0';
        CHECK_MSG(strstr(msg, piece) == NULL, "%s: message quotes part of the nsec: %s", what, msg);
    }
}

static void test_bech32(void)
{
    char hrp[16], out[128], err[KEYS_ERRLEN], hex[65];
    uint8_t data[64], pub[32];
    size_t n;

    CHECK(keys_bech32_decode(NIP19_NSEC, strlen(NIP19_NSEC), hrp, sizeof hrp, data, sizeof data, &n,
                             err, sizeof err) == 0);
    CHECK(strcmp(hrp, "nsec") == 0);
    CHECK(n == 32);
    hex_encode(data, 32, hex);
    CHECK(strcmp(hex, NIP19_NSEC_HEX) == 0);

    CHECK(hex_decode(NIP19_NPUB_HEX, 64, pub, 32, 1) == 0);
    keys_npub(pub, out);
    CHECK_MSG(strcmp(out, NIP19_NPUB) == 0, "npub %s", out);
    CHECK(keys_bech32_decode(out, strlen(out), hrp, sizeof hrp, data, sizeof data, &n, err,
                             sizeof err) == 0 &&
          n == 32 && memcmp(data, pub, 32) == 0 && strcmp(hrp, "npub") == 0);

    /* BIP-173's valid test strings (checksum only; they carry no whole bytes to speak of). */
    const char *valid[] = {"A12UEL5L", "a12uel5l",
                           "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedc"
                           "haractersbio1tt5tgs",
                           "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
                           "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        CHECK_MSG(keys_bech32_decode(valid[i], strlen(valid[i]), out, sizeof out, data, sizeof data,
                                     &n, err, sizeof err) == 0,
                  "%s: %s", valid[i], err);
    /* ... and invalid ones: no separator, empty hrp, bad char, mixed case, short checksum. */
    const char *invalid[] = {"pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "A1G7SGD8",
                             "10a06t8",      "1qzzfhee",      "A12UEl5L",  "a12uel5",  "a1zzz"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        CHECK_MSG(keys_bech32_decode(invalid[i], strlen(invalid[i]), out, sizeof out, data,
                                     sizeof data, &n, err, sizeof err) < 0,
                  "%s accepted", invalid[i]);
}

/* keys_parse_secret must refuse text, with a reason containing want and not the key. */
static void expect_refused(const char *what, const char *text, const char *want)
{
    uint8_t sk[32];
    char err[KEYS_ERRLEN] = "";

    memset(sk, 0xaa, sizeof sk);
    CHECK_MSG(keys_parse_secret(text, strlen(text), sk, err, sizeof err) < 0, "%s accepted", what);
    CHECK_MSG(strstr(err, want) != NULL, "%s: reason '%s' lacks '%s'", what, err, want);
    for (size_t i = 0; i < 32; i++)
        CHECK_MSG(sk[i] == 0, "%s: output not wiped", what);
    check_no_key(what, err, NIP19_NSEC_HEX, NIP19_NSEC);
}

static void test_parse(void)
{
    uint8_t sk[32], want[32], data[33];
    char err[KEYS_ERRLEN], text[256], upper[80];

    CHECK(hex_decode(NIP19_NSEC_HEX, 64, want, 32, 1) == 0);

    CHECK(keys_parse_secret(NIP19_NSEC, strlen(NIP19_NSEC), sk, err, sizeof err) == 0);
    CHECK(memcmp(sk, want, 32) == 0);
    snprintf(text, sizeof text, "  %s\r\n", NIP19_NSEC);
    CHECK(keys_parse_secret(text, strlen(text), sk, err, sizeof err) == 0 &&
          memcmp(sk, want, 32) == 0);
    for (size_t i = 0; i <= strlen(NIP19_NSEC); i++)
        upper[i] = (char)(NIP19_NSEC[i] >= 'a' && NIP19_NSEC[i] <= 'z' ? NIP19_NSEC[i] - 32
                                                                       : NIP19_NSEC[i]);
    CHECK(keys_parse_secret(upper, strlen(upper), sk, err, sizeof err) == 0 &&
          memcmp(sk, want, 32) == 0);

    CHECK(keys_parse_secret(NIP19_NSEC_HEX, 64, sk, err, sizeof err) == 0 &&
          memcmp(sk, want, 32) == 0);
    snprintf(text, sizeof text, "%s\n", NIP19_NSEC_HEX);
    for (char *p = text; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    CHECK(keys_parse_secret(text, strlen(text), sk, err, sizeof err) == 0 &&
          memcmp(sk, want, 32) == 0);

    /* A bad checksum: the last character changed, then one in the middle. */
    snprintf(text, sizeof text, "%s", NIP19_NSEC);
    text[strlen(text) - 1] = text[strlen(text) - 1] == 'q' ? 'p' : 'q';
    expect_refused("bad checksum (last char)", text, "bad checksum");
    snprintf(text, sizeof text, "%s", NIP19_NSEC);
    text[20] = text[20] == 'q' ? 'p' : 'q';
    expect_refused("bad checksum (middle)", text, "bad checksum");
    snprintf(text, sizeof text, "%s", NIP19_NSEC);
    text[20] = 'b'; /* not in the alphabet */
    expect_refused("bad character", text, "not in the bech32 alphabet");
    snprintf(text, sizeof text, "%s", NIP19_NSEC);
    text[10] = (char)(text[10] - 32);
    expect_refused("mixed case", text, "mixes upper and lower case");

    /* Wrong lengths: hex one byte short or long, an nsec of 31 or 33 bytes. */
    snprintf(text, sizeof text, "%.62s", NIP19_NSEC_HEX);
    expect_refused("62 hex digits", text, "62 hex digits; a key is 64");
    snprintf(text, sizeof text, "%s00", NIP19_NSEC_HEX);
    expect_refused("66 hex digits", text, "66 hex digits; a key is 64");
    memcpy(data, want, 32);
    data[32] = 0x42;
    CHECK(keys_bech32_encode("nsec", data, 31, text, sizeof text) == 0);
    expect_refused("nsec of 31 bytes", text, "holds 31 bytes, a key is 32");
    CHECK(keys_bech32_encode("nsec", data, 33, text, sizeof text) == 0);
    expect_refused("nsec of 33 bytes", text, "not a valid nsec");
    snprintf(text, sizeof text, "%.63s", NIP19_NSEC_HEX);
    text[63] = 'g';
    text[64] = '\0';
    expect_refused("64 chars, not hex", text, "not all hex digits");

    /* Other things people put in such a file. */
    expect_refused("npub", NIP19_NPUB, "holds an npub");
    expect_refused(
        "ncryptsec",
        "ncryptsec1qgg9947rlpvqu76pj5ecreduf9jxhselq2nae2kghhvd5g7dgjtcxfqtd67p9m0w57lspw8gsq6yphnm8623nsl8xn9j4jdzz84zm3frztj3z7s35vpzmqf6ksu8r89qk5z2zxfmu5gv8th8wclt0h4p",
        "ncryptsec");
    expect_refused("empty", " \n", "empty");
    snprintf(text, sizeof text, "%s\n%s\n", NIP19_NSEC_HEX, NIP19_NSEC_HEX);
    expect_refused("two keys", text, "more than one word");
    expect_refused("zero key", "0000000000000000000000000000000000000000000000000000000000000000",
                   "not a valid secret key");
    /* The curve order n itself. */
    expect_refused("curve order",
                   "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
                   "not a valid secret key");
    expect_refused("garbage", "hello world", "more than one word");
    expect_refused("short garbage", "secret", "not an nsec or 64 hex digits (6 characters)");
}

/* Writes text to tmpdir/name with the given mode; returns the path (static buffer). */
static const char *write_file(const char *name, const void *text, size_t len, mode_t mode)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    unlink(path);
    f = fopen(path, "w");
    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    if (chmod(path, mode) < 0) {
        perror(path);
        exit(1);
    }
    return path;
}

static void expect_file_refused(const char *what, const char *path, const char *want)
{
    char err[KEYS_ERRLEN] = "";
    struct keys_secret *k = keys_load_file(path, err, sizeof err);

    CHECK_MSG(k == NULL, "%s: loaded", what);
    keys_free(k);
    CHECK_MSG(strstr(err, want) != NULL, "%s: reason '%s' lacks '%s'", what, err, want);
    CHECK_MSG(strstr(err, path) != NULL, "%s: reason '%s' does not name the file", what, err);
    check_no_key(what, err, NIP19_NSEC_HEX, NIP19_NSEC);
}

static void test_files(void)
{
    char err[KEYS_ERRLEN], want_fix[256], link[160], big[600];
    uint8_t sk[32];
    struct keys_secret *k, *k2;
    const char *path;
    struct rlimit rl;

    CHECK(hex_decode(NIP19_NSEC_HEX, 64, sk, 32, 1) == 0);
    k2 = keys_from_bytes(sk, err, sizeof err);
    CHECK(k2 != NULL);

    path = write_file("key.nsec", NIP19_NSEC "\n", strlen(NIP19_NSEC) + 1, 0600);
    k = keys_load_file(path, err, sizeof err);
    CHECK_MSG(k != NULL, "0600 nsec file refused: %s", err);
    if (k != NULL && k2 != NULL)
        CHECK(memcmp(keys_pubkey(k), keys_pubkey(k2), 32) == 0);
    /* One page is all we lock; where the limit allows a few, it must have worked. */
    if (k != NULL && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur >= 1 << 20)
        CHECK(keys_locked(k));
    keys_free(k);

    path = write_file("key.hex", NIP19_NSEC_HEX, 64, 0400);
    k = keys_load_file(path, err, sizeof err);
    CHECK_MSG(k != NULL, "0400 hex file refused: %s", err);
    if (k != NULL && k2 != NULL)
        CHECK(memcmp(keys_pubkey(k), keys_pubkey(k2), 32) == 0);
    keys_free(k);

    /* Through a symlink: the file it names is the one checked and read. */
    snprintf(link, sizeof link, "%s/link", tmpdir);
    unlink(link);
    CHECK(symlink(path, link) == 0);
    k = keys_load_file(link, err, sizeof err);
    CHECK_MSG(k != NULL, "symlink to a 0400 file refused: %s", err);
    keys_free(k);

    path = write_file("key.0644", NIP19_NSEC "\n", strlen(NIP19_NSEC) + 1, 0644);
    snprintf(want_fix, sizeof want_fix, "run: chmod 600 %s", path);
    expect_file_refused("mode 0644", path, want_fix);
    expect_file_refused("mode 0644 (mode shown)", path, "mode 0644 lets every user");
    path = write_file("key.0640", NIP19_NSEC "\n", strlen(NIP19_NSEC) + 1, 0640);
    expect_file_refused("mode 0640", path, "mode 0640 lets your group");
    path = write_file("key.0604", NIP19_NSEC "\n", strlen(NIP19_NSEC) + 1, 0604);
    expect_file_refused("mode 0604", path, "chmod 600");
    path = write_file("key.0610", NIP19_NSEC "\n", strlen(NIP19_NSEC) + 1, 0610);
    expect_file_refused("mode 0610 (group execute only)", path, "chmod 600");

    expect_file_refused("a directory", tmpdir, "not a regular file");
    snprintf(link, sizeof link, "%s/fifo", tmpdir);
    unlink(link);
    CHECK(mkfifo(link, 0600) == 0);
    expect_file_refused("a FIFO", link, "not a regular file");
    snprintf(link, sizeof link, "%s/missing", tmpdir);
    expect_file_refused("missing", link, "cannot open");

    memset(big, ' ', sizeof big);
    memcpy(big + 300, NIP19_NSEC_HEX, 64);
    path = write_file("key.big", big, sizeof big, 0600);
    expect_file_refused("oversized", path, "longer than 256 bytes");
    path = write_file("key.nul", NIP19_NSEC_HEX "\0", 65, 0600);
    expect_file_refused("NUL byte", path, "NUL byte");
    path = write_file("key.bad", NIP19_NSEC_HEX "0\n", 66, 0600);
    expect_file_refused("65 hex digits", path, "65 hex digits; a key is 64");
    /* A file that is not ours: only root can make one. */
    if (geteuid() == 0) {
        path = write_file("key.other", NIP19_NSEC_HEX, 64, 0600);
        CHECK(chown(path, 12345, 12345) == 0);
        expect_file_refused("another user's", path, "not by you");
    }
    keys_free(k2);
}

static void test_auth(void)
{
    uint8_t sk[32];
    char err[KEYS_ERRLEN], evtext[64], big[KEYS_MAX_CHALLENGE + 2];
    struct keys_secret *k;
    struct event *ev, *back;
    char *json;
    size_t len;

    CHECK(hex_decode(NIP19_NSEC_HEX, 64, sk, 32, 1) == 0);
    k = keys_from_bytes(sk, err, sizeof err);
    CHECK(k != NULL);
    if (k == NULL)
        return;

    ev = keys_sign_auth(k, "wss://relay.example.com", "challenge-1", 11, 1700000000, err,
                        sizeof err);
    CHECK_MSG(ev != NULL, "sign: %s", err);
    if (ev != NULL) {
        CHECK_MSG(event_verify(ev, err, sizeof err) == 0, "verify: %s", err);
        CHECK(ev->kind == 22242);
        CHECK(ev->created_at == 1700000000);
        CHECK(memcmp(ev->pubkey, keys_pubkey(k), 32) == 0);
        CHECK(ev->content_len == 0);
        CHECK(ev->ntags == 2);
        CHECK(event_tag_value(ev, "relay") != NULL &&
              strcmp(event_tag_value(ev, "relay"), "wss://relay.example.com") == 0);
        CHECK(event_tag_value(ev, "challenge") != NULL &&
              strcmp(event_tag_value(ev, "challenge"), "challenge-1") == 0);
        /* Round trip through the JSON a relay gets: still valid, and no key in it. */
        json = event_to_json(ev, &len);
        back = event_parse(json, len, err, sizeof err);
        CHECK(back != NULL && event_verify(back, err, sizeof err) == 0);
        check_no_key("AUTH event JSON", json, NIP19_NSEC_HEX, NIP19_NSEC);
        event_free(back);
        free(json);
        /* A tampered challenge no longer verifies. */
        ev->tags[1].fields[1][0] = 'C';
        CHECK(event_verify(ev, err, sizeof err) < 0);
        event_free(ev);
    }

    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\0';
    ev = keys_sign_auth(k, "wss://r", big, strlen(big), 1, err, sizeof err);
    CHECK(ev == NULL && strstr(err, "at most 1024") != NULL);
    big[KEYS_MAX_CHALLENGE] = '\0';
    ev = keys_sign_auth(k, "wss://r", big, strlen(big), 1, err, sizeof err);
    CHECK(ev != NULL && event_verify(ev, err, sizeof err) == 0);
    event_free(ev);
    memcpy(evtext, "ab\0cd", 6);
    ev = keys_sign_auth(k, "wss://r", evtext, 5, 1, err, sizeof err);
    CHECK(ev == NULL && strstr(err, "NUL") != NULL);
    ev = keys_sign_auth(k, "wss://r", "\xff\xfe", 2, 1, err, sizeof err);
    CHECK(ev == NULL && strstr(err, "UTF-8") != NULL);
    keys_free(k);
}

static int sign_auth(const char *path, const char *url, const char *challenge)
{
    char err[KEYS_ERRLEN], npub[KEYS_NPUB_SIZE], hex[65];
    struct keys_secret *k = keys_load_file(path, err, sizeof err);
    struct event *ev;
    char *json;

    if (k == NULL) {
        fprintf(stderr, "test-keys: %s\n", err);
        return 1;
    }
    ev =
        keys_sign_auth(k, url, challenge, strlen(challenge), (uint64_t)time(NULL), err, sizeof err);
    if (ev == NULL) {
        fprintf(stderr, "test-keys: %s\n", err);
        keys_free(k);
        return 1;
    }
    keys_npub(keys_pubkey(k), npub);
    hex_encode(keys_pubkey(k), 32, hex);
    json = event_to_json(ev, NULL);
    printf("%s\n%s\n%s\n", npub, hex, json);
    free(json);
    event_free(ev);
    keys_free(k);
    return 0;
}

int main(int argc, char **argv)
{
    int rc;

    if (argc == 5 && strcmp(argv[1], "--sign-auth") == 0)
        return sign_auth(argv[2], argv[3], argv[4]);
    if (argc != 1) {
        fprintf(stderr, "usage: test-keys [--sign-auth FILE URL CHALLENGE]\n");
        return 2;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test-keys.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_bech32();
    test_parse();
    test_files();
    test_auth();
    rc = test_summary("test-keys");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "test-keys: could not remove %s\n", tmpdir);
    return rc;
}
