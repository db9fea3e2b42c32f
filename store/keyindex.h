/*
 * keyindex.h - the ordered map from keys to objects, in memory. Private to
 * store/.
 *
 * A skip list ordered bytewise (memcmp, then length). Not thread-safe: the
 * store's state lock protects it. Seeking is O(log n), so listing a
 * directory's children seeks past each deeper subtree instead of walking it.
 */
#ifndef MINDB_KEYINDEX_H
#define MINDB_KEYINDEX_H

#include <stddef.h>
#include <stdint.h>

struct object;
struct keyindex;

#define KI_MAX_HEIGHT 20

struct kinode {
    struct object *obj;
    uint16_t len;
    uint8_t height;
    struct kinode *next[]; /* `height` pointers, then the key's bytes */
};

static inline const uint8_t *kinode_key(const struct kinode *n)
{
    return (const uint8_t *)&n->next[n->height];
}

int keyindex_new(struct keyindex **out);
void keyindex_free(struct keyindex *ki);

/* Orders keys bytewise; a key sorts before every longer key it prefixes. */
int key_cmp(const void *a, size_t alen, const void *b, size_t blen);

struct kinode *keyindex_find(const struct keyindex *ki, const void *key, size_t len);
/* The first node with a key >= `key` (> with `after`), or NULL. */
struct kinode *keyindex_seek(const struct keyindex *ki, const void *key, size_t len, int after);
static inline struct kinode *keyindex_next(const struct kinode *n)
{
    return n->next[0];
}
struct kinode *keyindex_first(const struct keyindex *ki);

/* Where a key is or would go: a find that an insert of the same key can
 * reuse, sparing a second descent, as long as the index does not change in
 * between. */
struct ki_where {
    struct kinode *prev[KI_MAX_HEIGHT];
};
struct kinode *keyindex_locate(const struct keyindex *ki, const void *key, size_t len,
                               struct ki_where *where);
int keyindex_insert_at(struct keyindex *ki, struct ki_where *where, const void *key, size_t len,
                       struct object *obj);

/* Inserts a new key (which must not exist). Returns 0 or -ENOMEM. */
int keyindex_insert(struct keyindex *ki, const void *key, size_t len, struct object *obj);
/* Removes `key`; returns the object it named, or NULL when absent. */
struct object *keyindex_remove(struct keyindex *ki, const void *key, size_t len);

size_t keyindex_count(const struct keyindex *ki);

#endif /* MINDB_KEYINDEX_H */
