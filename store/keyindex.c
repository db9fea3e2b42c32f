/*
 * keyindex.c - a B+tree over a linked list of keys (see keyindex.h).
 *
 * It replaced a skip list, whose descent visited some 30 nodes for a million
 * keys, most of them cache misses: a third of the time of random puts went
 * there (docs/BENCHMARKS.md). A tree node holds KI_FANOUT keys in a few
 * cache lines, and the tree is four or five levels deep for a million keys.
 *
 * Leaves hold pointers to the key nodes, in order; an inner node holds, for
 * each child, the first (smallest) key below it. That key is exact: it is
 * updated when it is removed, so a key is never below the first key of the
 * leaf a descent reaches, except in the leftmost leaf.
 *
 * Comparing through a pointer costs a cache miss per key compared, so each
 * tree node keeps, beside each pointer, 8 bytes of its key as a number (its
 * window), taken after the bytes all keys of that node share (`skip`): keys
 * of one node are close together and share a long prefix (kv_bench's keys
 * share their first ten digits), so bytes from the start would rarely tell
 * them apart. The pointer is followed only when two windows are equal.
 *
 * Nodes are not merged when they run low: a node emptied by removals is
 * freed, so the tree stays correct and at most as deep as the most keys it
 * ever held made it. A node split by an insert at its end keeps every key
 * and gives the new one a node of its own, so keys inserted in order (a
 * manifest loaded at open) fill their nodes instead of half-filling them.
 *
 * Inserting allocates before it changes anything: -ENOMEM leaves the index
 * as it was.
 */
#include "keyindex.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define KI_FANOUT 32
/* Shared prefixes up to this long are kept in the node itself, which spares
 * a descent a cache miss per level on key[0]. */
#define KI_PREFIX_BYTES 22

struct kitree {
    uint16_t n;    /* keys (in an inner node: children) */
    uint16_t skip; /* bytes every key of this node shares with key[0] */
    uint8_t leaf;
    uint8_t prefix[KI_PREFIX_BYTES]; /* those bytes, when skip <= KI_PREFIX_BYTES */
    struct kitree *prev, *next;      /* leaves, in order */
    uint64_t win[KI_FANOUT];         /* bytes [skip, skip + 8) of each key, big-endian */
    struct kinode *key[KI_FANOUT];   /* leaf: its keys; inner: each child's first key */
    struct kitree *child[];          /* inner nodes only */
};

struct keyindex {
    struct kitree *root;
    struct kinode *first;
    size_t count;
};

int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* ---- windows ---- */

static uint64_t key_window(const uint8_t *key, size_t len, size_t skip)
{
    if (len >= skip + 8) {
        uint64_t w;
        memcpy(&w, key + skip, 8);
        return __builtin_bswap64(w);
    }
    uint64_t w = 0;
    for (size_t i = skip; i < skip + 8; i++)
        w = w << 8 | (i < len ? key[i] : 0);
    return w;
}

static size_t common_prefix(const struct kinode *a, const struct kinode *b, size_t cap)
{
    size_t n = a->len < b->len ? a->len : b->len;
    if (n > cap)
        n = cap;
    size_t i = 0;
    while (i < n && a->key[i] == b->key[i])
        i++;
    return i;
}

/* Sorted keys share what their first and last share. */
static void node_reskip(struct kitree *t)
{
    t->skip = t->n ? (uint16_t)common_prefix(t->key[0], t->key[t->n - 1], SIZE_MAX) : 0;
    if (t->n && t->skip <= KI_PREFIX_BYTES)
        memcpy(t->prefix, t->key[0]->key, t->skip);
    for (unsigned i = 0; i < t->n; i++)
        t->win[i] = key_window(t->key[i]->key, t->key[i]->len, t->skip);
}

/* Key j was just set: shortens the shared prefix if it does not share it. */
static void node_refit(struct kitree *t, unsigned j)
{
    if (t->n == 1) {
        node_reskip(t);
        return;
    }
    const struct kinode *k = t->key[j], *other = t->key[j == 0 ? 1 : 0];
    if (common_prefix(k, other, t->skip) < t->skip) {
        node_reskip(t);
        return;
    }
    t->win[j] = key_window(k->key, k->len, t->skip);
}

/* ---- nodes ---- */

static struct kitree *node_alloc(int leaf)
{
    size_t size = sizeof(struct kitree) + (leaf ? 0 : KI_FANOUT * sizeof(struct kitree *));
    struct kitree *t = calloc(1, size);
    if (t)
        t->leaf = (uint8_t)leaf;
    return t;
}

static void node_free_all(struct kitree *t)
{
    if (!t->leaf)
        for (unsigned i = 0; i < t->n; i++)
            node_free_all(t->child[i]);
    free(t);
}

/* Puts key k (and, in an inner node, the child it starts) at slot j. */
static void node_put(struct kitree *t, unsigned j, struct kinode *k, struct kitree *child)
{
    size_t move = t->n - j;
    memmove(&t->key[j + 1], &t->key[j], move * sizeof(t->key[0]));
    memmove(&t->win[j + 1], &t->win[j], move * sizeof(t->win[0]));
    if (!t->leaf) {
        memmove(&t->child[j + 1], &t->child[j], move * sizeof(t->child[0]));
        t->child[j] = child;
    }
    t->key[j] = k;
    t->n++;
    node_refit(t, j);
}

static void node_del(struct kitree *t, unsigned j)
{
    size_t move = t->n - j - 1;
    memmove(&t->key[j], &t->key[j + 1], move * sizeof(t->key[0]));
    memmove(&t->win[j], &t->win[j + 1], move * sizeof(t->win[0]));
    if (!t->leaf)
        memmove(&t->child[j], &t->child[j + 1], move * sizeof(t->child[0]));
    t->n--;
}

static void node_set(struct kitree *t, unsigned j, struct kinode *k)
{
    t->key[j] = k;
    node_refit(t, j);
}

/* How many keys of t are < key (<= with `or_equal`). */
static unsigned node_rank(const struct kitree *t, const uint8_t *key, size_t len, int or_equal)
{
    if (t->n == 0)
        return 0;
    size_t skip = t->skip;
    if (skip) {
        /* Every key of t begins with these bytes: a key that does not is
         * below or above them all. */
        size_t m = len < skip ? len : skip;
        int c = memcmp(key, skip <= KI_PREFIX_BYTES ? t->prefix : t->key[0]->key, m);
        if (c < 0 || (c == 0 && len < skip))
            return 0;
        if (c > 0)
            return t->n;
    }
    uint64_t w = key_window(key, len, skip);
    unsigned lo = 0, hi = t->n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        int c;
        if (t->win[mid] != w) {
            c = t->win[mid] < w ? -1 : 1;
        } else {
            const struct kinode *k = t->key[mid];
            c = key_cmp(k->key + skip, k->len - skip, key + skip, len - skip);
        }
        if (c < 0 || (or_equal && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Descends to the leaf where `key` is or would go, recording the path in
 * `w` when given; returns the first node >= key (> with `after`). */
static struct kinode *descend(const struct keyindex *ki, const void *key, size_t len, int after,
                              struct ki_where *w)
{
    struct kitree *t = ki->root;
    int d = 0;
    while (!t->leaf) {
        unsigned r = node_rank(t, key, len, 1);
        unsigned j = r ? r - 1 : 0;
        if (w) {
            w->node[d] = t;
            w->pos[d] = (uint16_t)j;
        }
        d++;
        t = t->child[j];
    }
    unsigned i = node_rank(t, key, len, after);
    if (w) {
        w->node[d] = t;
        w->pos[d] = (uint16_t)i;
        w->depth = d + 1;
    }
    if (i < t->n)
        return t->key[i];
    return t->n ? t->key[t->n - 1]->next : NULL;
}

/* The key before slot i of leaf t, or NULL for the first key. */
static struct kinode *key_before(const struct kitree *t, unsigned i)
{
    if (i > 0)
        return t->key[i - 1];
    return t->prev ? t->prev->key[t->prev->n - 1] : NULL;
}

/* ---- the index ---- */

int keyindex_new(struct keyindex **out)
{
    struct keyindex *ki = calloc(1, sizeof(*ki));
    if (!ki)
        return -ENOMEM;
    ki->root = node_alloc(1);
    if (!ki->root) {
        free(ki);
        return -ENOMEM;
    }
    *out = ki;
    return 0;
}

void keyindex_free(struct keyindex *ki)
{
    if (!ki)
        return;
    struct kinode *n = ki->first;
    while (n) {
        struct kinode *next = n->next;
        free(n);
        n = next;
    }
    node_free_all(ki->root);
    free(ki);
}

struct kinode *keyindex_seek(const struct keyindex *ki, const void *key, size_t len, int after)
{
    return descend(ki, key, len, after, NULL);
}

struct kinode *keyindex_find(const struct keyindex *ki, const void *key, size_t len)
{
    struct kinode *n = descend(ki, key, len, 0, NULL);
    if (n && key_cmp(n->key, n->len, key, len) == 0)
        return n;
    return NULL;
}

struct kinode *keyindex_first(const struct keyindex *ki)
{
    return ki->first;
}

struct kinode *keyindex_locate(const struct keyindex *ki, const void *key, size_t len,
                               struct ki_where *where)
{
    struct kinode *n = descend(ki, key, len, 0, where);
    if (n && key_cmp(n->key, n->len, key, len) == 0)
        return n;
    return NULL;
}

int keyindex_insert_at(struct keyindex *ki, struct ki_where *where, const void *key, size_t len,
                       struct object *obj)
{
    int leaf_d = where->depth - 1;
    /* The nodes the insert will split, and a new root when the root is
     * one of them: allocated first, so that failing changes nothing. */
    struct kitree *spare[KI_MAX_DEPTH + 1];
    int need = 0;
    for (int d = leaf_d; d >= 0 && where->node[d]->n == KI_FANOUT; d--)
        need += d == 0 ? 2 : 1;
    if (need > KI_MAX_DEPTH)
        return -ENOMEM; /* cannot happen (see KI_MAX_DEPTH) */
    struct kinode *kn = malloc(sizeof(*kn) + len);
    int got = 0;
    for (int d = leaf_d; kn && got < need; d--) {
        spare[got] = node_alloc(d == leaf_d && got == 0);
        if (!spare[got])
            break;
        got++;
        if (d == 0 && got < need) {
            spare[got] = node_alloc(0); /* the new root */
            if (!spare[got])
                break;
            got++;
        }
    }
    if (!kn || got < need) {
        while (got > 0)
            free(spare[--got]);
        free(kn);
        return -ENOMEM;
    }
    kn->obj = obj;
    kn->len = (uint16_t)len;
    if (len)
        memcpy(kn->key, key, len);

    struct kitree *t = where->node[leaf_d];
    unsigned at = where->pos[leaf_d];
    struct kinode *before = key_before(t, at);
    if (before) {
        kn->next = before->next;
        before->next = kn;
    } else {
        kn->next = ki->first;
        ki->first = kn;
    }
    /* A new first key of the leaf (only the leftmost leaf gets one) is the
     * new first key of the subtrees above it. */
    for (int d = leaf_d - 1; at == 0 && d >= 0; d--) {
        node_set(where->node[d], where->pos[d], kn);
        if (where->pos[d] != 0)
            break;
    }

    struct kinode *k = kn;
    struct kitree *child = NULL;
    int used = 0;
    for (int d = leaf_d;; d--) {
        if (t->n < KI_FANOUT) {
            node_put(t, at, k, child);
            break;
        }
        struct kitree *r = spare[used++];
        unsigned keep = at == t->n ? t->n : t->n / 2;
        r->n = (uint16_t)(t->n - keep);
        memcpy(r->key, &t->key[keep], r->n * sizeof(r->key[0]));
        if (!t->leaf)
            memcpy(r->child, &t->child[keep], r->n * sizeof(r->child[0]));
        t->n = (uint16_t)keep;
        if (t->leaf) {
            r->prev = t;
            r->next = t->next;
            if (t->next)
                t->next->prev = r;
            t->next = r;
        }
        node_reskip(t);
        node_reskip(r);
        if (at <= keep && t->n < KI_FANOUT)
            node_put(t, at, k, child);
        else
            node_put(r, at - keep, k, child);
        k = r->key[0];
        child = r;
        if (d == 0) {
            struct kitree *root = spare[used++];
            root->n = 2;
            root->key[0] = t->key[0];
            root->child[0] = t;
            root->key[1] = k;
            root->child[1] = r;
            node_reskip(root);
            ki->root = root;
            break;
        }
        t = where->node[d - 1];
        at = where->pos[d - 1] + 1u;
    }
    ki->count++;
    return 0;
}

int keyindex_insert(struct keyindex *ki, const void *key, size_t len, struct object *obj)
{
    struct ki_where where;
    descend(ki, key, len, 0, &where);
    return keyindex_insert_at(ki, &where, key, len, obj);
}

struct object *keyindex_remove(struct keyindex *ki, const void *key, size_t len)
{
    struct ki_where w;
    struct kinode *kn = descend(ki, key, len, 0, &w);
    if (!kn || key_cmp(kn->key, kn->len, key, len) != 0)
        return NULL;
    int d = w.depth - 1;
    struct kitree *t = w.node[d];
    unsigned i = w.pos[d];
    struct kinode *before = key_before(t, i);
    if (before)
        before->next = kn->next;
    else
        ki->first = kn->next;
    node_del(t, i);

    /* Free what emptied (but the last leaf), going up. */
    int first_gone = i == 0;
    while (t->n == 0 && d > 0 && !(t->leaf && !t->prev && !t->next)) {
        if (t->leaf) {
            if (t->prev)
                t->prev->next = t->next;
            if (t->next)
                t->next->prev = t->prev;
        }
        free(t);
        d--;
        t = w.node[d];
        node_del(t, w.pos[d]);
        first_gone = w.pos[d] == 0;
    }
    /* The subtree's first key went: the one after it is the new first key
     * of the subtrees above. */
    if (first_gone && t->n > 0) {
        for (int e = d - 1; e >= 0; e--) {
            node_set(w.node[e], w.pos[e], t->key[0]);
            if (w.pos[e] != 0)
                break;
        }
    }
    while (!ki->root->leaf && ki->root->n <= 1) {
        struct kitree *old = ki->root;
        ki->root = old->child[0];
        free(old);
    }
    struct object *obj = kn->obj;
    free(kn);
    ki->count--;
    return obj;
}

size_t keyindex_count(const struct keyindex *ki)
{
    return ki->count;
}

/* ---- checking ---- */

struct verify {
    const char *err;
    const struct kitree *last_leaf;
    const struct kinode *last_key;
    size_t keys;
    int leaf_depth;
};

static void verify_node(const struct kitree *t, int depth, const struct kinode *lo,
                        const struct kinode *hi, struct verify *v)
{
    if (v->err)
        return;
    if (t->n == 0 && depth > 0) {
        v->err = "an empty node below the root";
        return;
    }
    for (unsigned i = 0; i < t->n && !v->err; i++) {
        const struct kinode *k = t->key[i];
        if (t->skip > k->len || memcmp(k->key, t->key[0]->key, t->skip) != 0)
            v->err = "a key does not share its node's prefix";
        else if (t->skip <= KI_PREFIX_BYTES && memcmp(k->key, t->prefix, t->skip) != 0)
            v->err = "a node's copy of its prefix is wrong";
        else if (t->win[i] != key_window(k->key, k->len, t->skip))
            v->err = "a window does not match its key";
        else if (i > 0 && key_cmp(t->key[i - 1]->key, t->key[i - 1]->len, k->key, k->len) >= 0)
            v->err = "a node's keys are out of order";
        else if (lo && key_cmp(lo->key, lo->len, k->key, k->len) > 0)
            v->err = "a key below its subtree's first key";
        else if (hi && key_cmp(k->key, k->len, hi->key, hi->len) >= 0)
            v->err = "a key at or above the next subtree's first key";
    }
    if (v->err)
        return;
    if (t->leaf) {
        if (v->leaf_depth < 0)
            v->leaf_depth = depth;
        else if (v->leaf_depth != depth)
            v->err = "leaves at different depths";
        if (t->prev != v->last_leaf)
            v->err = "a leaf's link to the one before is wrong";
        if (t->n && lo && t->key[0] != lo)
            v->err = "a subtree's first key is not the one above it";
        for (unsigned i = 0; i < t->n && !v->err; i++) {
            const struct kinode *want = v->last_key ? v->last_key->next : NULL;
            if (v->keys > 0 && want != t->key[i])
                v->err = "the list of keys skips or repeats a key";
            v->last_key = t->key[i];
            v->keys++;
        }
        if (v->last_leaf && v->last_leaf->next != t)
            v->err = "a leaf's link to the one after is wrong";
        v->last_leaf = t;
        return;
    }
    if (lo && t->key[0] != lo)
        v->err = "a subtree's first key is not the one above it";
    for (unsigned i = 0; i < t->n && !v->err; i++)
        verify_node(t->child[i], depth + 1, t->key[i], i + 1 < t->n ? t->key[i + 1] : hi, v);
}

const char *keyindex_verify(const struct keyindex *ki)
{
    struct verify v = {.leaf_depth = -1};
    verify_node(ki->root, 0, NULL, NULL, &v);
    if (v.err)
        return v.err;
    if (!ki->root->leaf && ki->root->n < 2)
        return "an inner root with fewer than two children";
    if (v.last_leaf && v.last_leaf->next)
        return "the last leaf links to another";
    if (v.keys != ki->count)
        return "the count of keys is wrong";
    if (v.keys && v.last_key->next)
        return "the last key links to another";
    if ((ki->first != NULL) != (v.keys > 0))
        return "the first key is wrong";
    return NULL;
}
