/*
 * storemodel.h - a reference model of a store's namespace and objects
 * (storemodel.c), and snapshots that compare a store with the model
 * (storesnap.c), for the randomised tests of the store.
 */
#ifndef MINDB_STOREMODEL_H
#define MINDB_STOREMODEL_H

#include "storeutil.h"

#include <stddef.h>
#include <stdint.h>

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

#endif /* MINDB_STOREMODEL_H */
