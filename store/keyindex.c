/*
 * keyindex.c - a skip list of keys (see keyindex.h).
 *
 * Each node holds its key inline after its forward pointers, so a key costs
 * one allocation. Heights follow a geometric distribution with p = 1/4 (as
 * in LevelDB's memtable), drawn from a xorshift generator: the index needs
 * no cryptographic randomness, only independence from the keys.
 */
#include "keyindex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct keyindex {
    struct kinode *head;
    uint64_t rng;
    size_t count;
    int height;
};

int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static struct kinode *node_new(const void *key, size_t len, int height)
{
    struct kinode *n = malloc(sizeof(*n) + (size_t)height * sizeof(n->next[0]) + len);
    if (!n)
        return NULL;
    n->obj = NULL;
    n->len = (uint16_t)len;
    n->height = (uint8_t)height;
    memset(n->next, 0, (size_t)height * sizeof(n->next[0]));
    if (len)
        memcpy((uint8_t *)&n->next[height], key, len);
    return n;
}

int keyindex_new(struct keyindex **out)
{
    struct keyindex *ki = calloc(1, sizeof(*ki));
    if (!ki)
        return -ENOMEM;
    ki->head = node_new(NULL, 0, KI_MAX_HEIGHT);
    if (!ki->head) {
        free(ki);
        return -ENOMEM;
    }
    ki->rng = 0x9e3779b97f4a7c15ull;
    ki->height = 1;
    *out = ki;
    return 0;
}

void keyindex_free(struct keyindex *ki)
{
    if (!ki)
        return;
    struct kinode *n = ki->head;
    while (n) {
        struct kinode *next = n->next[0];
        free(n);
        n = next;
    }
    free(ki);
}

static int random_height(struct keyindex *ki)
{
    ki->rng ^= ki->rng << 13;
    ki->rng ^= ki->rng >> 7;
    ki->rng ^= ki->rng << 17;
    uint64_t r = ki->rng;
    int h = 1;
    while (h < KI_MAX_HEIGHT && (r & 3) == 0) {
        h++;
        r >>= 2;
    }
    return h;
}

/* Fills prev[] with, at each level, the last node whose key is < key (<= with
 * `after`). */
static struct kinode *find_prev(const struct keyindex *ki, const void *key, size_t len, int after,
                                struct kinode **prev)
{
    struct kinode *x = ki->head;
    for (int level = ki->height - 1; level >= 0; level--) {
        for (;;) {
            struct kinode *n = x->next[level];
            if (!n)
                break;
            int c = key_cmp(kinode_key(n), n->len, key, len);
            if (c < 0 || (after && c == 0))
                x = n;
            else
                break;
        }
        if (prev)
            prev[level] = x;
    }
    return x->next[0];
}

struct kinode *keyindex_seek(const struct keyindex *ki, const void *key, size_t len, int after)
{
    return find_prev(ki, key, len, after, NULL);
}

struct kinode *keyindex_find(const struct keyindex *ki, const void *key, size_t len)
{
    struct kinode *n = find_prev(ki, key, len, 0, NULL);
    if (n && key_cmp(kinode_key(n), n->len, key, len) == 0)
        return n;
    return NULL;
}

struct kinode *keyindex_first(const struct keyindex *ki)
{
    return ki->head->next[0];
}

struct kinode *keyindex_locate(const struct keyindex *ki, const void *key, size_t len,
                               struct ki_where *where)
{
    struct kinode *n = find_prev(ki, key, len, 0, where->prev);
    if (n && key_cmp(kinode_key(n), n->len, key, len) == 0)
        return n;
    return NULL;
}

int keyindex_insert_at(struct keyindex *ki, struct ki_where *where, const void *key, size_t len,
                       struct object *obj)
{
    struct kinode **prev = where->prev;
    int h = random_height(ki);
    struct kinode *n = node_new(key, len, h);
    if (!n)
        return -ENOMEM;
    n->obj = obj;
    for (int level = ki->height; level < h; level++)
        prev[level] = ki->head;
    if (h > ki->height)
        ki->height = h;
    for (int level = 0; level < h; level++) {
        n->next[level] = prev[level]->next[level];
        prev[level]->next[level] = n;
    }
    ki->count++;
    return 0;
}

int keyindex_insert(struct keyindex *ki, const void *key, size_t len, struct object *obj)
{
    struct ki_where where;
    find_prev(ki, key, len, 0, where.prev);
    return keyindex_insert_at(ki, &where, key, len, obj);
}

struct object *keyindex_remove(struct keyindex *ki, const void *key, size_t len)
{
    struct kinode *prev[KI_MAX_HEIGHT];
    struct kinode *n = find_prev(ki, key, len, 0, prev);
    if (!n || key_cmp(kinode_key(n), n->len, key, len) != 0)
        return NULL;
    for (int level = 0; level < n->height; level++)
        prev[level]->next[level] = n->next[level];
    while (ki->height > 1 && !ki->head->next[ki->height - 1])
        ki->height--;
    struct object *obj = n->obj;
    free(n);
    ki->count--;
    return obj;
}

size_t keyindex_count(const struct keyindex *ki)
{
    return ki->count;
}
