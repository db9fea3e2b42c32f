/*
 * storeutil.c - see storeutil.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "storeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

const char *su_strerror(long long rc)
{
    if (rc == 0)
        return "success";
    if (rc < INT32_MIN || rc > INT32_MAX)
        return "?";
    return mindb_strerror((int)rc);
}

/* ---- opening stores ---- */

static void print_log(void *ctx, const char *message)
{
    (void)ctx;
    fprintf(stderr, "    mindb: %s\n", message);
}

void su_options(struct mindb_options *o, int small)
{
    mindb_options_init(o);
    o->create = 1;
    if (small) {
        o->dirty_bytes = 1 * MiB;
        o->cache_bytes = 256 * KiB;
        o->checkpoint_wal_bytes = 4 * MiB;
        o->data_segment_bytes = 1 * MiB; /* so that compaction has work */
    }
    const char *direct = getenv("MINDB_WAL_DIRECT");
    if (direct && *direct && atoi(direct) == 0)
        o->direct_io = 0;
    const char *log = getenv("MINDB_TEST_LOG");
    if (log && *log && strcmp(log, "0") != 0)
        o->log = print_log;
}

void su_store_path(char out[TU_PATH_MAX], const char *name)
{
    tu_path(out, "%s", name);
}

mindb *su_open_at(const char *file, int line, const char *dir, const struct mindb_options *o)
{
    mindb *db = NULL;
    int rc = mindb_open(dir, o, &db);
    if (rc != 0)
        tu_failf(file, line, "mindb_open", "mindb_open(%s) returned %d (%s)", dir, rc,
                 su_strerror(rc));
    if (!db)
        tu_failf(file, line, "mindb_open", "mindb_open(%s) returned 0 and no handle", dir);
    return db;
}

mindb *su_reopen_at(const char *file, int line, mindb *db, const char *dir,
                    const struct mindb_options *o)
{
    int rc = mindb_close(db);
    if (rc != 0)
        tu_failf(file, line, "mindb_close", "mindb_close(%s) returned %d (%s)", dir, rc,
                 su_strerror(rc));
    return su_open_at(file, line, dir, o);
}

/* ---- keys and values ---- */

const char *su_keystr(const void *key, size_t len)
{
    static __thread char bufs[8][4 * 200 + 16];
    static __thread unsigned next;
    char *out = bufs[next++ % 8];
    const uint8_t *k = key;
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && i < 200; i++) {
        if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '"' && k[i] != '\\')
            out[o++] = (char)k[i];
        else
            o += (size_t)sprintf(out + o, "\\x%02x", k[i]);
    }
    out[o++] = '"';
    if (len > 200)
        o += (size_t)sprintf(out + o, "...(%zu)", len);
    out[o] = 0;
    return out;
}

uint64_t su_key_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

/* Lines of 64 bytes: the seed and the line number in hex, then one of a few
 * phrases: zstd finds the phrases, every line still differs. */
void su_fill(void *buf, size_t len, uint64_t seed)
{
    static const char *const phrases[] = {
        "the quick brown fox jumps over the lazy dog ",
        "lorem ipsum dolor sit amet consectetur elit ",
        "pack my box with five dozen liquor jugs now ",
        "sphinx of black quartz judge my vow quickly ",
    };
    static const char hex[] = "0123456789abcdef";
    uint8_t *p = buf;
    uint8_t line[64];
    uint64_t rng = seed;
    for (size_t off = 0, n = 0; off < len; off += 64, n++) {
        for (int i = 0; i < 8; i++)
            line[i] = (uint8_t)hex[(seed >> (60 - 4 * i)) & 15];
        line[8] = ' ';
        for (int i = 0; i < 8; i++)
            line[9 + i] = (uint8_t)hex[(n >> (28 - 4 * i)) & 15];
        line[17] = ' ';
        uint64_t r = tu_rand(&rng);
        memcpy(line + 18, phrases[r & 3], 44);
        line[62] = (uint8_t)hex[(r >> 8) & 15];
        line[63] = '\n';
        size_t take = len - off < 64 ? len - off : 64;
        memcpy(p + off, line, take);
    }
}

#define VALUE_MAGIC 0x766e696du

void su_value(void *buf, size_t len, uint64_t tag1, uint64_t tag2)
{
    uint8_t *p = buf;
    if (len < SU_VALUE_MIN) {
        su_fill(p, len, tag1 * 0x9e3779b97f4a7c15ull ^ tag2);
        return;
    }
    su_fill(p + SU_VALUE_MIN, len - SU_VALUE_MIN, tag1 * 0x9e3779b97f4a7c15ull ^ tag2);
    uint32_t magic = VALUE_MAGIC, len32 = (uint32_t)len;
    uint64_t hash = XXH3_64bits(p + SU_VALUE_MIN, len - SU_VALUE_MIN);
    memcpy(p, &magic, 4);
    memcpy(p + 4, &len32, 4);
    memcpy(p + 8, &tag1, 8);
    memcpy(p + 16, &tag2, 8);
    memcpy(p + 24, &hash, 8);
}

int su_value_parse(const void *buf, size_t len, uint64_t *tag1, uint64_t *tag2)
{
    const uint8_t *p = buf;
    if (len < SU_VALUE_MIN)
        return 0;
    uint32_t magic, len32;
    uint64_t hash;
    memcpy(&magic, p, 4);
    memcpy(&len32, p + 4, 4);
    memcpy(&hash, p + 24, 8);
    if (magic != VALUE_MAGIC || len32 != (uint32_t)len ||
        hash != XXH3_64bits(p + SU_VALUE_MIN, len - SU_VALUE_MIN))
        return 0;
    if (tag1)
        memcpy(tag1, p + 8, 8);
    if (tag2)
        memcpy(tag2, p + 16, 8);
    return 1;
}

void su_put_at(const char *file, int line, mindb *db, const void *key, size_t key_len,
               const void *value, size_t len)
{
    int rc = mindb_put(db, key, key_len, value, len);
    if (rc != 0)
        tu_failf(file, line, "mindb_put", "put %s (%zu bytes) returned %d (%s)",
                 su_keystr(key, key_len), len, rc, su_strerror(rc));
}

void su_expect_value_at(const char *file, int line, mindb *db, const void *key, size_t key_len,
                        const void *value, size_t len)
{
    void *got = NULL;
    size_t got_len = 0;
    int rc = mindb_get(db, key, key_len, &got, &got_len);
    if (rc != 0)
        tu_failf(file, line, "mindb_get", "get %s returned %d (%s)", su_keystr(key, key_len), rc,
                 su_strerror(rc));
    if (got_len != len || (len && memcmp(got, value, len) != 0)) {
        size_t at = 0;
        while (at < len && at < got_len && ((uint8_t *)got)[at] == ((const uint8_t *)value)[at])
            at++;
        free(got);
        tu_failf(file, line, "mindb_get",
                 "get %s: %zu bytes, expected %zu, first difference at %zu",
                 su_keystr(key, key_len), got_len, len, at);
    }
    free(got);
}

static struct su_key *list_keys(mindb *db, const void *start, size_t start_len, unsigned flags,
                                size_t *count)
{
    mindb_iter *it = NULL;
    int rc = mindb_iter_open(db, start, start_len, NULL, 0, flags, &it);
    CHECKF(rc == 0, "mindb_iter_open(%s) returned %d (%s)", su_keystr(start, start_len), rc,
           su_strerror(rc));
    struct su_key *keys = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        const void *k;
        size_t klen;
        rc = mindb_iter_next(it, &k, &klen, NULL);
        CHECKF(rc >= 0, "mindb_iter_next returned %d (%s)", rc, su_strerror(rc));
        if (rc == 0)
            break;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            keys = realloc(keys, cap * sizeof *keys);
            CHECK(keys != NULL);
        }
        keys[n].key = malloc(klen ? klen : 1);
        CHECK(keys[n].key != NULL);
        memcpy(keys[n].key, k, klen);
        keys[n].len = klen;
        n++;
    }
    mindb_iter_close(it);
    *count = n;
    return keys;
}

struct su_key *su_list_keys(mindb *db, size_t *count)
{
    return list_keys(db, "", 0, 0, count);
}

struct su_key *su_list_children(mindb *db, const char *dir, size_t *count)
{
    return list_keys(db, dir, strlen(dir), MINDB_ITER_CHILDREN, count);
}

void su_free_keys(struct su_key *keys, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(keys[i].key);
    free(keys);
}

int su_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

void *su_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    return p;
}

uint8_t *su_memdup(const void *p, size_t n)
{
    uint8_t *d = su_xmalloc(n);
    if (n)
        memcpy(d, p, n);
    else
        d[0] = 0;
    return d;
}

/* ---- one store per sub-test, and checks of single calls ---- */

char su_store_dir[TU_PATH_MAX];
struct mindb_options su_store_opts;

mindb *su_open_store(int small)
{
    su_store_path(su_store_dir, "store");
    su_options(&su_store_opts, small);
    return SU_OPEN(su_store_dir, &su_store_opts);
}

mindb *su_reopen_store(mindb *db)
{
    return SU_REOPEN(db, su_store_dir, &su_store_opts);
}

void su_run_unclosed_at(const char *file, int line, void (*fn)(mindb *db, void *ctx), void *ctx)
{
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child < 0)
        tu_failf(file, line, "fork", "fork failed");
    if (child == 0) {
        struct mindb_options o = su_store_opts;
        o.background = 0;
        mindb *db = su_open_at(file, line, su_store_dir, &o);
        fn(db, ctx);
        int rc = mindb_sync(db);
        if (rc != 0)
            tu_failf(file, line, "mindb_sync", "returned %d (%s)", rc, su_strerror(rc));
        fflush(stdout);
        _exit(0);
    }
    int ws = 0;
    if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        tu_failf(file, line, "child", "the child ended with status 0x%x", ws);
}

struct mindb_stat su_stat_at(const char *file, int line, mindb *db, const void *key, size_t len)
{
    struct mindb_stat st;
    int rc = mindb_stat(db, key, len, &st);
    if (rc != 0)
        tu_failf(file, line, "mindb_stat", "stat %s returned %d (%s)", su_keystr(key, len), rc,
                 su_strerror(rc));
    return st;
}

void su_expect_stat_at(const char *file, int line, mindb *db, const char *key, uint32_t mode,
                       uint64_t size, uint32_t nlink)
{
    struct mindb_stat st = su_stat_at(file, line, db, KEY(key));
    if (st.mode != mode || st.size != size || st.nlink != nlink)
        tu_failf(file, line, "stat", "%s: mode 0%o size %llu nlink %u, expected 0%o %llu %u", key,
                 st.mode, (unsigned long long)st.size, st.nlink, mode, (unsigned long long)size,
                 nlink);
}

mindb_file *su_open_file_at(const char *file, int line, mindb *db, const char *key, unsigned flags,
                            uint32_t mode)
{
    mindb_file *f = NULL;
    int rc = mindb_file_open(db, KEY(key), flags, mode, &f);
    if (rc != 0 || !f)
        tu_failf(file, line, "mindb_file_open", "open %s returned %d (%s)", key, rc,
                 su_strerror(rc));
    return f;
}

void su_pwrite_at(const char *file, int line, mindb_file *f, const void *buf, size_t len,
                  uint64_t off)
{
    ssize_t n = mindb_pwrite(f, buf, len, off);
    if (n != (ssize_t)len)
        tu_failf(file, line, "mindb_pwrite", "pwrite of %zu at %llu returned %zd (%s)", len,
                 (unsigned long long)off, n, su_strerror(n < 0 ? n : 0));
}

void su_expect_pread_at(const char *file, int line, mindb_file *f, uint64_t off, size_t len,
                        const void *want, size_t want_len)
{
    uint8_t *buf = malloc(len + 1);
    CHECK(buf != NULL);
    ssize_t n = mindb_pread(f, buf, len, off);
    if (n != (ssize_t)want_len)
        tu_failf(file, line, "mindb_pread", "pread of %zu at %llu returned %zd, expected %zu", len,
                 (unsigned long long)off, n, want_len);
    if (want_len && memcmp(buf, want, want_len) != 0) {
        size_t at = 0;
        while (buf[at] == ((const uint8_t *)want)[at])
            at++;
        tu_failf(file, line, "mindb_pread", "pread of %zu at %llu differs at byte %zu", len,
                 (unsigned long long)off, at);
    }
    free(buf);
}

void su_expect_xattr_at(const char *file, int line, mindb *db, const char *key, const char *name,
                        const void *want, size_t want_len)
{
    ssize_t n = mindb_getxattr(db, KEY(key), name, NULL, 0);
    if (n != (ssize_t)want_len)
        tu_failf(file, line, "mindb_getxattr", "%s %.20s: size %zd, expected %zu", key, name, n,
                 want_len);
    uint8_t *buf = malloc(want_len + 1);
    CHECK(buf != NULL);
    n = mindb_getxattr(db, KEY(key), name, buf, want_len + 1);
    if (n != (ssize_t)want_len || memcmp(buf, want, want_len) != 0)
        tu_failf(file, line, "mindb_getxattr", "%s %.20s: returned %zd, or other bytes", key, name,
                 n);
    free(buf);
}
