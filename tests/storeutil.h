/*
 * storeutil.h - what the C tests of the store (libmindb) share on top of
 * testutil.h: opening a store with small limits, keys and values that can
 * be recognised and checked, listings, and checks of single calls. The
 * reference model of a store and the snapshots that compare a store with
 * it are in storemodel.h.
 *
 * Environment (besides testutil.h's):
 *   MINDB_WAL_DIRECT  0 sets mindb_options.direct_io = 0
 *   MINDB_TEST_LOG    1 prints the store's log lines to stderr
 */
#ifndef MINDB_STOREUTIL_H
#define MINDB_STOREUTIL_H

#include "mindb.h"
#include "testutil.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* A string literal or C string as a key: KEY("a/b") is `"a/b", 3`. */
#define KEY(s) (s), strlen(s)

/* Checks a call that returns a negative errno (or MINDB_E*) for the expected
 * error, printing both as text when they differ. */
#define CHECK_ERR(call, want)                                                                      \
    do {                                                                                           \
        long long su_rc_ = (long long)(call), su_want_ = (long long)(want);                        \
        if (su_rc_ != su_want_)                                                                    \
            tu_failf(__FILE__, __LINE__, #call " == " #want, "returned %lld (%s), expected %s",    \
                     su_rc_, su_strerror(su_rc_), su_strerror(su_want_));                          \
    } while (0)

/* mindb_strerror for any return value (0 included). */
const char *su_strerror(long long rc);

/* ---- opening stores ---- */

/* mindb_options_init(), create = 1, MINDB_WAL_DIRECT and MINDB_TEST_LOG
 * applied; with `small`, limits small enough that checkpoints and eviction
 * happen in a test: 1 MiB dirty data, a 256 KiB cache, a checkpoint every
 * 4 MiB of log, data segments of 1 MiB. */
void su_options(struct mindb_options *o, int small);
/* The store directory of the running sub-test: tu_dir()/name. */
void su_store_path(char out[TU_PATH_MAX], const char *name);
/* mindb_open() that must succeed. */
mindb *su_open_at(const char *file, int line, const char *dir, const struct mindb_options *o);
#define SU_OPEN(dir, o) su_open_at(__FILE__, __LINE__, dir, o)
/* mindb_close() that must succeed, then SU_OPEN. */
mindb *su_reopen_at(const char *file, int line, mindb *db, const char *dir,
                    const struct mindb_options *o);
#define SU_REOPEN(db, dir, o) su_reopen_at(__FILE__, __LINE__, db, dir, o)

/* ---- keys and values ---- */

/* A printable form of a key (escaped, cut at 200 bytes), valid until the
 * eighth call after this one in the same thread. */
const char *su_keystr(const void *key, size_t len);

/* Deterministic bytes from `seed` that zstd compresses well (runs, repeated
 * words, some noise) but that differ for every seed and every offset. */
void su_fill(void *buf, size_t len, uint64_t seed);

/* A value that says what it is: a 32-byte header (a magic, the length, two
 * tags, and XXH3 of everything after the header) then su_fill bytes seeded
 * by the tags. Values shorter than SU_VALUE_MIN are su_fill bytes only. */
#define SU_VALUE_MIN 32
void su_value(void *buf, size_t len, uint64_t tag1, uint64_t tag2);
/* Returns 1 and the tags when `buf` is a whole, undamaged su_value (any
 * length >= SU_VALUE_MIN), 0 otherwise. */
int su_value_parse(const void *buf, size_t len, uint64_t *tag1, uint64_t *tag2);
/* A 64-bit hash of a key, for tags. */
uint64_t su_key_hash(const void *key, size_t len);

/* mindb_put() that must succeed, and checks of what mindb_get() returns. */
void su_put_at(const char *file, int line, mindb *db, const void *key, size_t key_len,
               const void *value, size_t len);
/* Variadic so that KEY() may stand for the key and its length. */
#define SU_PUT(db, ...) su_put_at(__FILE__, __LINE__, db, __VA_ARGS__)
void su_expect_value_at(const char *file, int line, mindb *db, const void *key, size_t key_len,
                        const void *value, size_t len);
#define EXPECT_VALUE(db, ...) su_expect_value_at(__FILE__, __LINE__, db, __VA_ARGS__)
/* The same for C strings as keys and values. */
#define SU_PUT_STR(db, k, v) SU_PUT(db, KEY(k), v, strlen(v))
#define EXPECT_STR(db, k, v) EXPECT_VALUE(db, KEY(k), v, strlen(v))

/* Every key of the store in order (plain iteration from ""), as an array of
 * malloc'd copies; *count gets their number. su_free_keys frees them. */
struct su_key {
    uint8_t *key;
    size_t len;
};
struct su_key *su_list_keys(mindb *db, size_t *count);
/* The children listing of `dir` (a prefix ending in '/', or ""). */
struct su_key *su_list_children(mindb *db, const char *dir, size_t *count);
void su_free_keys(struct su_key *keys, size_t count);

/* A bytewise comparison of two keys, shorter first on a tie: the store's
 * order. */
int su_key_cmp(const void *a, size_t alen, const void *b, size_t blen);
/* malloc (never NULL, also for 0 bytes) and a copy of `n` bytes (followed
 * by a 0 when n == 0) that must succeed. */
void *su_xmalloc(size_t n);
uint8_t *su_memdup(const void *p, size_t n);

/* ---- one store per sub-test, and checks of single calls ---- */

/* The store of a sub-test that uses one: su_open_store() sets su_store_dir
 * (tu_dir()/store) and su_store_opts (su_options(small)) and opens it; the
 * sub-test may change su_store_opts before su_reopen_store(), which closes
 * `db` and opens the store again with them. */
extern char su_store_dir[TU_PATH_MAX];
extern struct mindb_options su_store_opts;
mindb *su_open_store(int small);
mindb *su_reopen_store(mindb *db);
/* Runs fn(db, ctx) in a child process on su_store_dir, opened with
 * su_store_opts (creating it when they say so) without the background
 * thread, then mindb_sync() and _exit() without a close: no checkpoint, so
 * the next open replays the log, as after a crash. The caller must not hold
 * the store open. A failed CHECK in fn fails the sub-test. */
void su_run_unclosed_at(const char *file, int line, void (*fn)(mindb *db, void *ctx), void *ctx);
#define SU_RUN_UNCLOSED(fn, ctx) su_run_unclosed_at(__FILE__, __LINE__, fn, ctx)

/* mindb_stat() that must succeed, and a check of its type and permission
 * bits, size and link count. */
struct mindb_stat su_stat_at(const char *file, int line, mindb *db, const void *key, size_t len);
#define STAT(db, k) su_stat_at(__FILE__, __LINE__, db, KEY(k))
void su_expect_stat_at(const char *file, int line, mindb *db, const char *key, uint32_t mode,
                       uint64_t size, uint32_t nlink);
#define EXPECT_STAT(db, k, mode, size, nlink)                                                      \
    su_expect_stat_at(__FILE__, __LINE__, db, k, mode, size, nlink)

/* mindb_file_open() and a whole mindb_pwrite() that must succeed. */
mindb_file *su_open_file_at(const char *file, int line, mindb *db, const char *key, unsigned flags,
                            uint32_t mode);
#define OPEN_FILE(db, k, flags, mode) su_open_file_at(__FILE__, __LINE__, db, k, flags, mode)
void su_pwrite_at(const char *file, int line, mindb_file *f, const void *buf, size_t len,
                  uint64_t off);
#define PWRITE(f, buf, len, off) su_pwrite_at(__FILE__, __LINE__, f, buf, len, off)
/* Reads [off, off + len) through `f` and compares it with `want` (which
 * holds `want_len` bytes: a read at the end returns fewer). */
void su_expect_pread_at(const char *file, int line, mindb_file *f, uint64_t off, size_t len,
                        const void *want, size_t want_len);
#define EXPECT_PREAD(f, off, len, want, want_len)                                                  \
    su_expect_pread_at(__FILE__, __LINE__, f, off, len, want, want_len)
/* Checks that extended attribute `name` of `key` holds exactly `want`. */
void su_expect_xattr_at(const char *file, int line, mindb *db, const char *key, const char *name,
                        const void *want, size_t want_len);
#define EXPECT_XATTR(db, key, name, want, len)                                                     \
    su_expect_xattr_at(__FILE__, __LINE__, db, key, name, want, len)

#endif /* MINDB_STOREUTIL_H */
