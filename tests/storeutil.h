/*
 * storeutil.h - what the C tests of the store (libmindb) share on top of
 * testutil.h: opening a store with small limits, values that can be
 * recognised and checked, a reference model of a store's namespace and
 * objects, and snapshots that compare a store with the model.
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

/* ---- the reference model ---- */

/* A result of the model meaning the behaviour is not pinned down by mindb.h
 * (for example a rename onto a hard link of the same object): a randomised
 * test does not issue such an operation. */
#define SM_SKIP 1

struct sm_xattr {
    char *name;
    uint8_t *value;
    size_t len;
};

struct sm_obj {
    uint64_t serial; /* unique within the model, for comparisons */
    int type;        /* MINDB_REG, MINDB_DIR or MINDB_LNK */
    uint32_t perm;   /* permission bits */
    uint32_t uid, gid;
    uint8_t *data; /* the value */
    size_t size, cap;
    struct sm_xattr *xattrs; /* sorted by name */
    size_t nxattrs;
    unsigned keys;    /* keys naming it */
    unsigned handles; /* handles holding it */
    uint64_t hash;    /* XXH3 of the value, when hash_ok */
    int hash_ok;
    uint64_t store_id; /* the id the store reported for it (0: not seen yet) */
};

struct sm_entry {
    uint8_t *key;
    size_t len;
    struct sm_obj *obj;
};

struct sm_model {
    struct sm_entry *e; /* sorted bytewise */
    size_t n, cap;
    uint64_t next_serial;
    uint32_t uid, gid; /* of the caller: what mindb_put() gives */
};

void sm_init(struct sm_model *m);
void sm_free(struct sm_model *m);
/* Makes `dst` (initialised or freed) a deep copy of `src`, links kept. */
void sm_clone(struct sm_model *dst, const struct sm_model *src);

/* Index of `key`, or -1. */
long sm_find(const struct sm_model *m, const void *key, size_t len);
/* Index of the first key >= `key`. */
size_t sm_lower_bound(const struct sm_model *m, const void *key, size_t len);
/* Whether some key starts with key + "/". */
int sm_has_children(const struct sm_model *m, const void *key, size_t len);
/* What mindb_stat() reports as nlink for entry `i`. */
uint32_t sm_nlink(const struct sm_model *m, size_t i);
uint64_t sm_obj_hash(struct sm_obj *o);
/* Handles: an object stays alive while a handle holds it. */
void sm_obj_hold(struct sm_obj *o);
void sm_obj_drop(struct sm_obj *o);

/* The operations: each returns what the store must return (0 or a negative
 * errno) after changing the model, or SM_SKIP without changing it. */
int sm_put(struct sm_model *m, const void *key, size_t len, const void *value, size_t vlen);
int sm_delete(struct sm_model *m, const void *key, size_t len);
int sm_create(struct sm_model *m, const void *key, size_t len, uint32_t mode, uint32_t uid,
              uint32_t gid, const void *target, size_t tlen);
int sm_rename(struct sm_model *m, const void *from, size_t flen, const void *to, size_t tlen,
              unsigned flags);
int sm_link(struct sm_model *m, const void *key, size_t len, const void *new_key, size_t nlen);
int sm_setxattr(struct sm_model *m, const void *key, size_t len, const char *name,
                const void *value, size_t vlen, unsigned flags);
int sm_removexattr(struct sm_model *m, const void *key, size_t len, const char *name);
int sm_set_perm(struct sm_model *m, const void *key, size_t len, uint32_t perm);
/* On an object (through a handle or an entry's obj): always succeed. */
void sm_pwrite(struct sm_obj *o, const void *buf, size_t len, uint64_t off);
void sm_truncate(struct sm_obj *o, uint64_t size);

/* ---- snapshots: a store's or a model's whole content, comparable ---- */

struct su_snap_entry {
    uint8_t *key;
    size_t len;
    uint32_t mode, uid, gid, nlink;
    uint64_t size;
    uint64_t hash;  /* XXH3 of the value (0 for a directory) */
    uint64_t xhash; /* of the sorted extended attributes (0: none) */
    uint64_t id;    /* the store's id, or the model object's serial */
};

struct su_snap {
    struct su_snap_entry *e;
    size_t n, cap;
};

void su_snap_free(struct su_snap *s);
/* Reads every key of the store with its metadata, value and extended
 * attributes. Returns 0, or the first error of a call (the snapshot then
 * holds what was read so far, `why` says where). */
int su_snap_store(mindb *db, struct su_snap *s, char *why, size_t why_len);
/* One key of the store (-ENOENT when missing) or of the model. */
int su_snap_store_key(mindb *db, const void *key, size_t len, struct su_snap_entry *out);
int su_snap_model_key(const struct sm_model *m, const void *key, size_t len,
                      struct su_snap_entry *out);
void su_snap_model(const struct sm_model *m, struct su_snap *s);
/* Returns 0 when `store` and `model` hold the same keys with the same
 * metadata and contents, and the same keys share an object (ids correspond
 * one to one); otherwise 1 with the first difference in `why`. */
int su_snap_diff(const struct su_snap *store, const struct su_snap *model, char *why,
                 size_t why_len);
/* Compares two entries of one key (ids not compared); 0 when equal. */
int su_snap_entry_diff(const struct su_snap_entry *store, const struct su_snap_entry *model,
                       char *why, size_t why_len);

#endif /* MINDB_STOREUTIL_H */
