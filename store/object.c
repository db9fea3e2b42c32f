/*
 * object.c - objects, their chunk maps and xattrs, and the id table.
 */
#include "object.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct object *object_new(uint64_t id, uint32_t mode, uint32_t uid, uint32_t gid, int64_t now)
{
    struct object *obj = calloc(1, sizeof(*obj));
    if (!obj)
        return NULL;
    obj->id = id;
    obj->mode = mode;
    obj->uid = uid;
    obj->gid = gid;
    obj->atime = obj->mtime = obj->ctime = now;
    return obj;
}

void object_free(struct object *obj)
{
    if (!obj)
        return;
    for (uint32_t i = 0; i < obj->n_slots; i++)
        free(obj->slots[i].dirty);
    free(obj->slots);
    for (uint32_t i = 0; i < obj->n_xattrs; i++) {
        free(obj->xattrs[i].name);
        free(obj->xattrs[i].value);
    }
    free(obj->xattrs);
    free(obj);
}

/* Index of the first slot with index >= `index`. */
static uint32_t slot_lower_bound(const struct object *obj, uint64_t index)
{
    uint32_t lo = 0, hi = obj->n_slots;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (obj->slots[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct chunk_slot *object_slot(const struct object *obj, uint64_t index)
{
    uint32_t i = slot_lower_bound(obj, index);
    if (i < obj->n_slots && obj->slots[i].index == index)
        return &obj->slots[i];
    return NULL;
}

struct chunk_slot *object_slot_add(struct object *obj, uint64_t index)
{
    uint32_t i = slot_lower_bound(obj, index);
    if (i < obj->n_slots && obj->slots[i].index == index)
        return &obj->slots[i];
    if (obj->n_slots == obj->slots_cap) {
        uint32_t cap = obj->slots_cap ? obj->slots_cap * 2 : 1;
        struct chunk_slot *s = realloc(obj->slots, cap * sizeof(*s));
        if (!s)
            return NULL;
        obj->slots = s;
        obj->slots_cap = cap;
    }
    memmove(&obj->slots[i + 1], &obj->slots[i], (obj->n_slots - i) * sizeof(obj->slots[0]));
    obj->n_slots++;
    memset(&obj->slots[i], 0, sizeof(obj->slots[i]));
    obj->slots[i].index = index;
    return &obj->slots[i];
}

void object_slots_cut(struct object *obj, uint64_t index,
                      void (*drop)(void *ctx, struct object *obj, struct chunk_slot *slot),
                      void *ctx)
{
    uint32_t i = slot_lower_bound(obj, index);
    for (uint32_t j = i; j < obj->n_slots; j++) {
        if (drop)
            drop(ctx, obj, &obj->slots[j]);
        free(obj->slots[j].dirty);
    }
    obj->n_slots = i;
}

struct xattr *object_xattr(const struct object *obj, const char *name)
{
    for (uint32_t i = 0; i < obj->n_xattrs; i++)
        if (strcmp(obj->xattrs[i].name, name) == 0)
            return &obj->xattrs[i];
    return NULL;
}

int object_xattr_set(struct object *obj, const char *name, const void *value, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    if (len)
        memcpy(copy, value, len);
    struct xattr *x = object_xattr(obj, name);
    if (x) {
        free(x->value);
        x->value = copy;
        x->len = (uint32_t)len;
        return 0;
    }
    char *n = strdup(name);
    struct xattr *a = realloc(obj->xattrs, (obj->n_xattrs + 1) * sizeof(*a));
    if (!n || !a) {
        free(n);
        free(copy);
        if (a)
            obj->xattrs = a;
        return -ENOMEM;
    }
    obj->xattrs = a;
    a[obj->n_xattrs++] = (struct xattr){.name = n, .value = copy, .len = (uint32_t)len};
    return 0;
}

int object_xattr_remove(struct object *obj, const char *name)
{
    struct xattr *x = object_xattr(obj, name);
    if (!x)
        return -ENODATA;
    free(x->name);
    free(x->value);
    *x = obj->xattrs[--obj->n_xattrs];
    return 0;
}

/* Ids are the store's own, handed out in sequence, so the id itself is
 * the hash: live ids fill the buckets evenly, and objects made one after
 * another (a fill, a manifest loaded in order) land in neighbouring buckets
 * instead of a cache miss each. */
static size_t id_hash(uint64_t id)
{
    return (size_t)id;
}

int objtable_init(struct objtable *t)
{
    t->mask = 1023;
    t->count = 0;
    t->buckets = calloc(t->mask + 1, sizeof(*t->buckets));
    return t->buckets ? 0 : -ENOMEM;
}

void objtable_destroy(struct objtable *t)
{
    if (!t->buckets)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        struct object *o = t->buckets[i];
        while (o) {
            struct object *next = o->hash_next;
            object_free(o);
            o = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
}

struct object *objtable_get(const struct objtable *t, uint64_t id)
{
    for (struct object *o = t->buckets[id_hash(id) & t->mask]; o; o = o->hash_next)
        if (o->id == id)
            return o;
    return NULL;
}

static int grow(struct objtable *t)
{
    size_t mask = t->mask * 2 + 1;
    struct object **b = calloc(mask + 1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i <= t->mask; i++) {
        struct object *o = t->buckets[i];
        while (o) {
            struct object *next = o->hash_next;
            size_t h = id_hash(o->id) & mask;
            o->hash_next = b[h];
            b[h] = o;
            o = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->mask = mask;
    return 0;
}

/* How far ahead objtable_put_many() fetches buckets: enough misses in
 * flight to hide the memory's latency. */
#define PUT_AHEAD 16

void objtable_put_many(struct objtable *t, struct object *const *objs, size_t n)
{
    /* A failed grow only makes chains longer. */
    while (t->count + n > t->mask && grow(t) == 0)
        ;
    for (size_t i = 0; i < n; i++) {
        if (i + PUT_AHEAD < n)
            __builtin_prefetch(&t->buckets[id_hash(objs[i + PUT_AHEAD]->id) & t->mask], 1);
        objtable_put(t, objs[i]);
    }
}

int objtable_put(struct objtable *t, struct object *obj)
{
    /* A failed grow only makes chains longer. */
    if (t->count >= t->mask)
        (void)grow(t);
    size_t h = id_hash(obj->id) & t->mask;
    obj->hash_next = t->buckets[h];
    t->buckets[h] = obj;
    t->count++;
    return 0;
}

void objtable_remove(struct objtable *t, struct object *obj)
{
    struct object **p = &t->buckets[id_hash(obj->id) & t->mask];
    while (*p && *p != obj)
        p = &(*p)->hash_next;
    if (*p) {
        *p = obj->hash_next;
        t->count--;
    }
}

void objtable_each(const struct objtable *t, void (*fn)(void *ctx, struct object *obj), void *ctx)
{
    for (size_t i = 0; i <= t->mask; i++)
        for (struct object *o = t->buckets[i]; o;) {
            struct object *next = o->hash_next;
            fn(ctx, o);
            o = next;
        }
}
