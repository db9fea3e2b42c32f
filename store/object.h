/*
 * object.h - objects (inodes): metadata, extended attributes and the map of
 * a value's chunks, and the table that finds them by id. Private to store/.
 *
 * Not thread-safe: the store's state lock protects every object.
 */
#ifndef MINDB_OBJECT_H
#define MINDB_OBJECT_H

#include "datafile.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes of value per chunk (see docs/STORE.md for the measurement). */
#define CHUNK_BYTES ((uint64_t)DATAFILE_MAX_CHUNK)

/* One chunk of a value. The newest bytes are in `dirty` when it is set, else
 * in `frozen` (handed to a running checkpoint, which owns that buffer), else
 * at `ref` on disk. Bytes past the valid length up to the chunk's end read
 * as zeros. */
struct chunk_slot {
    uint64_t index;
    struct chunk_ref ref;
    uint8_t *dirty;
    const uint8_t *frozen;
    uint32_t dirty_len, dirty_cap;
    uint32_t frozen_len;
};

struct xattr {
    char *name;
    uint8_t *value;
    uint32_t len;
};

struct object {
    uint64_t id;
    uint32_t mode, uid, gid;
    uint32_t nlink;   /* keys naming it */
    uint32_t subdirs; /* for a directory: child directories */
    uint32_t open_count;
    uint64_t size;
    int64_t atime, mtime, ctime;
    uint64_t last_end; /* log position just after its last record */
    struct xattr *xattrs;
    uint32_t n_xattrs;
    uint32_t n_slots, slots_cap;
    struct chunk_slot *slots; /* sorted by index */
    struct object *hash_next;
};

struct object *object_new(uint64_t id, uint32_t mode, uint32_t uid, uint32_t gid, int64_t now);
/* Frees the object and its dirty buffers (not frozen ones). */
void object_free(struct object *obj);

/* The slot of chunk `index`, or NULL. */
struct chunk_slot *object_slot(const struct object *obj, uint64_t index);
/* The slot of chunk `index`, added empty when missing (NULL when out of
 * memory). */
struct chunk_slot *object_slot_add(struct object *obj, uint64_t index);
/* Removes the slots at or after `index`, calling `drop` on each first. */
void object_slots_cut(struct object *obj, uint64_t index,
                      void (*drop)(void *ctx, struct object *obj, struct chunk_slot *slot),
                      void *ctx);

struct xattr *object_xattr(const struct object *obj, const char *name);
int object_xattr_set(struct object *obj, const char *name, const void *value, size_t len);
int object_xattr_remove(struct object *obj, const char *name);

/* Objects by id: a chained hash table that doubles as it fills. */
struct objtable {
    struct object **buckets;
    size_t mask;
    size_t count;
};

int objtable_init(struct objtable *t);
/* Frees the table and every object in it. */
void objtable_destroy(struct objtable *t);
struct object *objtable_get(const struct objtable *t, uint64_t id);
/* Puts many objects (whose ids are not in the table) at once: the table
 * grows once, and each bucket is fetched from memory while earlier ones
 * are filled. Loading a million objects one by one waits on a miss each. */
void objtable_put_many(struct objtable *t, struct object *const *objs, size_t n);
int objtable_put(struct objtable *t, struct object *obj);
void objtable_remove(struct objtable *t, struct object *obj);
/* Calls fn on every object; fn may not add or remove objects. */
void objtable_each(const struct objtable *t, void (*fn)(void *ctx, struct object *obj), void *ctx);

#endif /* MINDB_OBJECT_H */
