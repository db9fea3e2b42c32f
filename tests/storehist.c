/*
 * storehist.c - see storehist.h.
 */
#include "storehist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the history of changes ---- */

static void key_name(char *out, unsigned key)
{
    sprintf(out, "f/k%03u", key);
}

void hist_init(struct history *h)
{
    memset(h, 0, sizeof *h);
}

void hist_free(struct history *h)
{
    free(h->c);
    memset(h, 0, sizeof *h);
}

static void hist_push(struct history *h, unsigned key, uint64_t ver, size_t len)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 256;
        h->c = realloc(h->c, h->cap * sizeof *h->c);
        CHECK(h->c != NULL);
    }
    h->c[h->n++] = (struct change){.key = key, .ver = ver, .len = len};
    h->ver[key] = ver;
    h->len[key] = ver ? len : 0;
}

/* `dst` becomes the first `n` changes of `src`. */
void hist_copy_prefix(struct history *dst, const struct history *src, size_t n)
{
    hist_free(dst);
    for (size_t i = 0; i < n; i++)
        hist_push(dst, src->c[i].key, src->c[i].ver, src->c[i].len);
    dst->synced = src->synced < n ? src->synced : n;
}

/* ---- the workload ---- */

void wl_init(struct workload *w, uint64_t seed, uint64_t first_ver, size_t max_len,
             unsigned delete_percent)
{
    w->rng = seed;
    w->next_ver = first_ver;
    w->max_len = max_len;
    w->delete_percent = delete_percent;
    w->buf = malloc(max_len);
    CHECK(w->buf != NULL);
}

void wl_free(struct workload *w)
{
    free(w->buf);
}

/* Mostly small values, some of several 64 KiB chunks. */
static size_t wl_len(struct workload *w)
{
    uint64_t r = tu_rand_range(&w->rng, 0, 99);
    size_t len;
    if (r < 45)
        len = (size_t)tu_rand_range(&w->rng, SU_VALUE_MIN, 4 * KiB);
    else if (r < 85)
        len = (size_t)tu_rand_range(&w->rng, 4 * KiB, 48 * KiB);
    else
        len = (size_t)tu_rand_range(&w->rng, 64 * KiB, w->max_len);
    return len < w->max_len ? len : w->max_len;
}

/*
 * `count` changes: puts of new versions, and deletes of keys that exist.
 * The choices depend only on the workload's seed and the history, so with
 * db == NULL this records what the same call with a store did. With a
 * store, a change that fails is not recorded and its error is returned
 * (*done gets the number made).
 */
int wl_run(struct workload *w, mindb *db, struct history *h, int count, int *done)
{
    if (done)
        *done = 0;
    for (int i = 0; i < count; i++) {
        unsigned key = (unsigned)tu_rand_range(&w->rng, 0, HIST_NKEYS - 1);
        char name[32];
        key_name(name, key);
        int del = h->ver[key] && tu_rand_range(&w->rng, 0, 99) < w->delete_percent;
        size_t len = del ? 0 : wl_len(w);
        uint64_t ver = del ? 0 : w->next_ver++;
        int rc = 0;
        if (db) {
            if (del) {
                rc = mindb_delete(db, KEY(name));
            } else {
                su_value(w->buf, len, su_key_hash(KEY(name)), ver);
                rc = mindb_put(db, KEY(name), w->buf, len);
            }
        }
        if (rc)
            return rc;
        hist_push(h, key, ver, len);
        if (done)
            (*done)++;
    }
    return 0;
}

/* The bytes of version `ver` of key `name`, `len` of them (freed by the
 * caller). */
static uint8_t *version_bytes(const char *name, uint64_t ver, size_t len)
{
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    su_value(buf, len, su_key_hash(KEY(name)), ver);
    return buf;
}

/* One put of exactly `len` bytes; see storehist.h. */
int wl_put(struct workload *w, mindb *db, struct history *h, size_t len)
{
    unsigned key = (unsigned)tu_rand_range(&w->rng, 0, HIST_NKEYS - 1);
    char name[32];
    key_name(name, key);
    uint64_t ver = w->next_ver++;
    int rc = 0;
    if (db) {
        uint8_t *buf = version_bytes(name, ver, len);
        rc = mindb_put(db, KEY(name), buf, len);
        free(buf);
    }
    if (rc == 0)
        hist_push(h, key, ver, len);
    return rc;
}

/* One new version of exactly `len` bytes written through a handle; see
 * storehist.h. */
int wl_write(struct workload *w, mindb *db, struct history *h, size_t len)
{
    unsigned key = (unsigned)tu_rand_range(&w->rng, 0, HIST_NKEYS - 1);
    if (!h->ver[key] || h->len[key] > len) {
        /* Nothing to write over, or bytes the write would leave behind. */
        return wl_put(w, db, h, len);
    }
    char name[32];
    key_name(name, key);
    uint64_t ver = w->next_ver++;
    int rc = 0;
    if (db) {
        uint8_t *buf = version_bytes(name, ver, len);
        mindb_file *f = NULL;
        rc = mindb_file_open(db, KEY(name), 0, 0, &f);
        if (rc == 0) {
            ssize_t n = mindb_pwrite(f, buf, len, 0);
            rc = n < 0 ? (int)n : n == (ssize_t)len ? 0 : -EIO;
            mindb_file_close(f);
        }
        free(buf);
    }
    if (rc == 0)
        hist_push(h, key, ver, len);
    return rc;
}

/* mindb_sync; on success every change so far is durable. */
int hist_sync(mindb *db, struct history *h)
{
    int rc = mindb_sync(db);
    if (rc == 0)
        h->synced = h->n;
    return rc;
}

/* ---- checking a store against the history ---- */

/* Whether the history gave `key` version `ver` of `len` bytes. */
static int hist_wrote(const struct history *h, unsigned key, uint64_t ver, size_t len)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->c[i].key == key && h->c[i].ver == ver)
            return h->c[i].len == len;
    return 0;
}

/* Reads every key of the store into ver/len (0: missing), checking that
 * each value is one the history wrote to that key. */
static void read_state(const char *what, mindb *db, const struct history *h,
                       uint64_t ver[HIST_NKEYS], size_t len[HIST_NKEYS])
{
    memset(ver, 0, HIST_NKEYS * sizeof *ver);
    memset(len, 0, HIST_NKEYS * sizeof *len);
    size_t count;
    struct su_key *keys = su_list_keys(db, &count);
    for (size_t i = 0; i < count; i++) {
        char name[32];
        unsigned key = HIST_NKEYS;
        if (keys[i].len < sizeof name) {
            memcpy(name, keys[i].key, keys[i].len);
            name[keys[i].len] = 0;
            char extra;
            if (sscanf(name, "f/k%u%c", &key, &extra) != 1)
                key = HIST_NKEYS;
        }
        CHECKF(key < HIST_NKEYS, "%s: a key never written: %s", what,
               su_keystr(keys[i].key, keys[i].len));
        key_name(name, key);
        void *v = NULL;
        size_t n = 0;
        int rc = mindb_get(db, KEY(name), &v, &n);
        CHECKF(rc == 0, "%s: get %s returned %d (%s)", what, name, rc, su_strerror(rc));
        uint64_t t1 = 0, t2 = 0;
        int whole = su_value_parse(v, n, &t1, &t2);
        free(v);
        CHECKF(whole, "%s: %s holds %zu bytes that are not a whole value", what, name, n);
        CHECKF(t1 == su_key_hash(KEY(name)), "%s: %s holds a value written to another key", what,
               name);
        CHECKF(hist_wrote(h, key, t2, n),
               "%s: %s holds version %" PRIu64 " of %zu bytes, never "
               "written to it",
               what, name, t2, n);
        ver[key] = t2;
        len[key] = n;
    }
    su_free_keys(keys, count);
}

/* The number S of changes such that the state is the history's after its
 * first S, with S >= h->synced; fails otherwise. */
static size_t match_prefix(const char *what, const struct history *h,
                           const uint64_t ver[HIST_NKEYS])
{
    uint64_t m[HIST_NKEYS] = {0};
    for (size_t i = 0; i < h->synced; i++)
        m[h->c[i].key] = h->c[i].ver;
    unsigned differ = 0;
    for (unsigned k = 0; k < HIST_NKEYS; k++)
        differ += m[k] != ver[k];
    for (size_t s = h->synced;; s++) {
        if (differ == 0)
            return s;
        if (s == h->n)
            break;
        unsigned k = h->c[s].key;
        differ -= m[k] != ver[k];
        m[k] = h->c[s].ver;
        differ += m[k] != ver[k];
    }
    /* Say where it differs from the history after the synced changes. */
    for (size_t i = 0; i < HIST_NKEYS; i++)
        m[i] = 0;
    for (size_t i = 0; i < h->synced; i++)
        m[h->c[i].key] = h->c[i].ver;
    for (unsigned k = 0; k < HIST_NKEYS; k++)
        if (m[k] != ver[k]) {
            char name[32];
            key_name(name, k);
            tu_failf(__FILE__, __LINE__, "a prefix of the history",
                     "%s: the store is no state between the %zu synced changes and all %zu: "
                     "%s holds version %" PRIu64 "; after the synced changes it held %" PRIu64
                     ", after all of them %" PRIu64 " (0: missing)",
                     what, h->synced, h->n, name, ver[k], m[k], h->ver[k]);
        }
    tu_failf(__FILE__, __LINE__, "a prefix of the history", "%s: no prefix matches", what);
}

/* The open handle shows every change of the history (all were applied in
 * memory, synced or not). */
void hist_expect_handle(const char *what0, mindb *db, const struct history *h)
{
    char what[256];
    snprintf(what, sizeof what, "%s, in the same handle", what0);
    uint64_t ver[HIST_NKEYS];
    size_t len[HIST_NKEYS];
    read_state(what, db, h, ver, len);
    for (unsigned k = 0; k < HIST_NKEYS; k++)
        if (ver[k] != h->ver[k]) {
            char name[32];
            key_name(name, k);
            tu_failf(__FILE__, __LINE__, "the handle shows every change",
                     "%s: in the same handle %s holds version %" PRIu64 ", not %" PRIu64
                     " (0: missing)",
                     what, name, ver[k], h->ver[k]);
        }
}

/* Opens `dir` without injection, with `opts` but not `create`: it must
 * open, pass mindb_check, and show a prefix of the history holding every
 * synced change. Returns the length of that prefix. */
size_t hist_verify_reopen(const char *what0, const char *dir, const struct mindb_options *opts,
                          const struct history *h)
{
    char what[256];
    snprintf(what, sizeof what, "%s, reopened", what0);
    struct mindb_options o = *opts;
    o.create = 0;
    mindb *db = NULL;
    int rc = mindb_open(dir, &o, &db);
    CHECKF(rc == 0, "%s: the store does not open again: %d (%s)", what, rc, su_strerror(rc));
    rc = mindb_check(db, NULL, NULL, NULL);
    CHECKF(rc == 0, "%s: mindb_check after reopening returned %d (%s)", what, rc,
           rc < 0 ? su_strerror(rc) : "damaged keys");
    uint64_t ver[HIST_NKEYS];
    size_t len[HIST_NKEYS];
    read_state(what, db, h, ver, len);
    size_t s = match_prefix(what, h, ver);
    rc = mindb_close(db);
    CHECKF(rc == 0, "%s: closing the reopened store returned %d (%s)", what, rc, su_strerror(rc));
    return s;
}

/* The handle just opened on a store made from `base`: its state must be a
 * prefix of `base` holding the synced changes; `h` becomes that prefix. */
void hist_adopt_open_state(const char *what, mindb *db, const struct history *base,
                           struct history *h)
{
    uint64_t ver[HIST_NKEYS];
    size_t len[HIST_NKEYS];
    read_state(what, db, base, ver, len);
    size_t s = match_prefix(what, base, ver);
    hist_copy_prefix(h, base, s);
}
