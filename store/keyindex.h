/*
 * keyindex.h - the ordered map from keys to objects, in memory. Private to
 * store/.
 *
 * Each key is a node (struct kinode) that holds its bytes and its object,
 * linked to the next key in order; a B+tree of those nodes finds a key in
 * O(log n). Ordered bytewise (memcmp, then length). Not thread-safe: the
 * store's state lock protects it. Seeking is O(log n), so listing a
 * directory's children seeks past each deeper subtree instead of walking it.
 * A node stays where it is until its key is removed; the tree around it
 * moves as keys come and go.
 */
#ifndef MINDB_KEYINDEX_H
#define MINDB_KEYINDEX_H

#include <stddef.h>
#include <stdint.h>

struct object;
struct keyindex;
struct kitree;

/* Deep enough for any count of keys: a level is added only when the root
 * is full, and each level multiplies the leaf splits that takes by at least
 * 16, so 2^64 inserts stay below 17 levels. */
#define KI_MAX_DEPTH 20

struct kinode {
    struct object *obj;
    struct kinode *next; /* the next key in order */
    uint16_t len;
    uint8_t key[];
};

static inline const uint8_t *kinode_key(const struct kinode *n)
{
    return n->key;
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
    return n->next;
}
struct kinode *keyindex_first(const struct keyindex *ki);

/* Where a key is or would go: a find that an insert of the same key can
 * reuse, sparing a second descent, as long as the index does not change in
 * between. */
struct ki_where {
    struct kitree *node[KI_MAX_DEPTH]; /* from the root down to a leaf */
    uint16_t pos[KI_MAX_DEPTH];        /* the child taken; in the leaf, the slot */
    int depth;
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

/* Checks the tree's invariants (order, separators, links, counts): 0, or
 * a short description of the first one broken. For tests. */
const char *keyindex_verify(const struct keyindex *ki);

#endif /* MINDB_KEYINDEX_H */
