/*
 * storemodel.c - the reference model of a store (see storemodel.h): keys
 * in order, the objects they name, links, handles, extended attributes and
 * the namespace operations with the errors mindb.h promises.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "storemodel.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

void sm_init(struct sm_model *m)
{
    memset(m, 0, sizeof *m);
    m->uid = (uint32_t)getuid();
    m->gid = (uint32_t)getgid();
}

static void obj_free(struct sm_obj *o)
{
    free(o->data);
    for (size_t i = 0; i < o->nxattrs; i++) {
        free(o->xattrs[i].name);
        free(o->xattrs[i].value);
    }
    free(o->xattrs);
    free(o);
}

static void obj_maybe_free(struct sm_obj *o)
{
    if (o->keys == 0 && o->handles == 0)
        obj_free(o);
}

void sm_obj_hold(struct sm_obj *o)
{
    o->handles++;
}

void sm_obj_drop(struct sm_obj *o)
{
    CHECK(o->handles > 0);
    o->handles--;
    obj_maybe_free(o);
}

void sm_free(struct sm_model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        struct sm_obj *o = m->e[i].obj;
        free(m->e[i].key);
        o->keys--;
        obj_maybe_free(o);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

static int ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

void sm_clone(struct sm_model *dst, const struct sm_model *src)
{
    *dst = *src;
    dst->e = su_xmalloc((src->n ? src->n : 1) * sizeof *dst->e);
    dst->cap = src->n ? src->n : 1;
    /* Sorted pointers to the source objects and their copies, so that keys
     * sharing an object share its copy. */
    struct sm_obj **from = su_xmalloc((src->n ? src->n : 1) * sizeof *from);
    for (size_t i = 0; i < src->n; i++)
        from[i] = src->e[i].obj;
    qsort(from, src->n, sizeof *from, ptr_cmp);
    size_t uniq = 0;
    for (size_t i = 0; i < src->n; i++)
        if (uniq == 0 || from[uniq - 1] != from[i])
            from[uniq++] = from[i];
    struct sm_obj **to = su_xmalloc((uniq ? uniq : 1) * sizeof *to);
    for (size_t i = 0; i < uniq; i++) {
        const struct sm_obj *s = from[i];
        struct sm_obj *d = su_xmalloc(sizeof *d);
        *d = *s;
        d->keys = 0;
        d->handles = 0;
        d->data = su_memdup(s->data, s->size);
        d->cap = s->size;
        d->xattrs = su_xmalloc((s->nxattrs ? s->nxattrs : 1) * sizeof *d->xattrs);
        for (size_t x = 0; x < s->nxattrs; x++) {
            d->xattrs[x].name = strdup(s->xattrs[x].name);
            CHECK(d->xattrs[x].name != NULL);
            d->xattrs[x].value = su_memdup(s->xattrs[x].value, s->xattrs[x].len);
            d->xattrs[x].len = s->xattrs[x].len;
        }
        to[i] = d;
    }
    for (size_t i = 0; i < src->n; i++) {
        struct sm_obj *o = src->e[i].obj;
        struct sm_obj **hit = bsearch(&o, from, uniq, sizeof *from, ptr_cmp);
        CHECK(hit != NULL);
        dst->e[i].key = su_memdup(src->e[i].key, src->e[i].len);
        dst->e[i].len = src->e[i].len;
        dst->e[i].obj = to[hit - from];
        dst->e[i].obj->keys++;
    }
    free(from);
    free(to);
}

size_t sm_lower_bound(const struct sm_model *m, const void *key, size_t len)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (su_key_cmp(m->e[mid].key, m->e[mid].len, key, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long sm_find(const struct sm_model *m, const void *key, size_t len)
{
    size_t i = sm_lower_bound(m, key, len);
    if (i < m->n && su_key_cmp(m->e[i].key, m->e[i].len, key, len) == 0)
        return (long)i;
    return -1;
}

/* The range [*lo, *hi) of keys that start with key + "/": they sort from
 * key + "/" up to key + "0" ('/' + 1). */
static void subtree_range(const struct sm_model *m, const void *key, size_t len, size_t *lo,
                          size_t *hi)
{
    uint8_t *k = su_xmalloc(len + 1);
    if (len)
        memcpy(k, key, len);
    k[len] = '/';
    *lo = sm_lower_bound(m, k, len + 1);
    k[len] = '0';
    *hi = sm_lower_bound(m, k, len + 1);
    free(k);
}

int sm_has_children(const struct sm_model *m, const void *key, size_t len)
{
    size_t lo, hi;
    subtree_range(m, key, len, &lo, &hi);
    return hi > lo;
}

uint32_t sm_nlink(const struct sm_model *m, size_t i)
{
    const struct sm_entry *e = &m->e[i];
    if (e->obj->type != MINDB_DIR)
        return e->obj->keys;
    size_t lo, hi;
    subtree_range(m, e->key, e->len, &lo, &hi);
    uint32_t n = 2;
    for (size_t j = lo; j < hi; j++)
        if (m->e[j].obj->type == MINDB_DIR &&
            !memchr(m->e[j].key + e->len + 1, '/', m->e[j].len - e->len - 1))
            n++;
    return n;
}

uint64_t sm_obj_hash(struct sm_obj *o)
{
    if (!o->hash_ok) {
        o->hash = XXH3_64bits(o->data, o->size);
        o->hash_ok = 1;
    }
    return o->hash;
}

static struct sm_obj *obj_new(struct sm_model *m, int type, uint32_t perm, uint32_t uid,
                              uint32_t gid)
{
    struct sm_obj *o = calloc(1, sizeof *o);
    CHECK(o != NULL);
    o->serial = ++m->next_serial;
    o->type = type;
    o->perm = perm & 07777;
    o->uid = uid;
    o->gid = gid;
    return o;
}

static void insert_at(struct sm_model *m, size_t i, const void *key, size_t len, struct sm_obj *o)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
        CHECK(m->e != NULL);
    }
    memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof *m->e);
    m->e[i].key = su_memdup(key, len);
    m->e[i].len = len;
    m->e[i].obj = o;
    o->keys++;
    m->n++;
}

static void insert_key(struct sm_model *m, const void *key, size_t len, struct sm_obj *o)
{
    insert_at(m, sm_lower_bound(m, key, len), key, len, o);
}

static void remove_at(struct sm_model *m, size_t i)
{
    struct sm_obj *o = m->e[i].obj;
    free(m->e[i].key);
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof *m->e);
    m->n--;
    o->keys--;
    obj_maybe_free(o);
}

static void set_data(struct sm_obj *o, const void *value, size_t len)
{
    free(o->data);
    o->data = su_memdup(value, len);
    o->size = o->cap = len;
    o->hash_ok = 0;
}

int sm_put(struct sm_model *m, const void *key, size_t len, const void *value, size_t vlen)
{
    long i = sm_find(m, key, len);
    if (i >= 0 && m->e[i].obj->type == MINDB_DIR)
        return -EISDIR;
    if (sm_has_children(m, key, len))
        return SM_SKIP; /* a file with keys under it: not the filesystem's case */
    struct sm_obj *o = obj_new(m, MINDB_REG, 0644, m->uid, m->gid);
    set_data(o, value, vlen);
    if (i >= 0) {
        struct sm_obj *old = m->e[i].obj;
        m->e[i].obj = o;
        o->keys++;
        old->keys--;
        obj_maybe_free(old);
    } else {
        insert_key(m, key, len, o);
    }
    return 0;
}

int sm_delete(struct sm_model *m, const void *key, size_t len)
{
    long i = sm_find(m, key, len);
    if (i < 0)
        return -ENOENT;
    if (sm_has_children(m, key, len))
        return m->e[i].obj->type == MINDB_DIR ? -ENOTEMPTY : SM_SKIP;
    remove_at(m, (size_t)i);
    return 0;
}

int sm_create(struct sm_model *m, const void *key, size_t len, uint32_t mode, uint32_t uid,
              uint32_t gid, const void *target, size_t tlen)
{
    int type;
    switch (mode & S_IFMT) {
    case S_IFREG:
        type = MINDB_REG;
        break;
    case S_IFDIR:
        type = MINDB_DIR;
        break;
    case S_IFLNK:
        type = MINDB_LNK;
        break;
    default:
        return SM_SKIP;
    }
    if (sm_find(m, key, len) >= 0)
        return -EEXIST;
    /* Over a prefix that has keys: the filesystem never does it, and what
     * a directory made over its subdirectories counts as nlink is left
     * open (test_store_api's mkdir_over_children looks at it). */
    if (sm_has_children(m, key, len))
        return SM_SKIP;
    struct sm_obj *o = obj_new(m, type, mode, uid, gid);
    if (type == MINDB_LNK)
        set_data(o, target, tlen);
    insert_key(m, key, len, o);
    return 0;
}

/* An entry taken out of the model by a rename, with the part of its key
 * after the renamed prefix. */
struct moved {
    uint8_t *suffix;
    size_t len;
    struct sm_obj *obj;
    int side; /* 0: under `from`, 1: under `to` */
};

static int under(const uint8_t *key, size_t len, const void *prefix, size_t plen)
{
    return len >= plen && memcmp(key, prefix, plen) == 0 && (len == plen || key[plen] == '/');
}

/* Takes out the entries of `a` (side 0) and, when b != NULL, of `b` (side
 * 1), each key and everything under it. */
static struct moved *take_trees(struct sm_model *m, const void *a, size_t alen, const void *b,
                                size_t blen, size_t *count)
{
    struct moved *mv = su_xmalloc((m->n ? m->n : 1) * sizeof *mv);
    size_t k = 0, out = 0;
    for (size_t i = 0; i < m->n; i++) {
        struct sm_entry *e = &m->e[i];
        int side = -1;
        size_t plen = 0;
        if (under(e->key, e->len, a, alen))
            side = 0, plen = alen;
        else if (b && under(e->key, e->len, b, blen))
            side = 1, plen = blen;
        if (side < 0) {
            m->e[out++] = *e;
            continue;
        }
        mv[k].suffix = su_memdup(e->key + plen, e->len - plen);
        mv[k].len = e->len - plen;
        mv[k].obj = e->obj;
        mv[k].side = side;
        free(e->key);
        k++;
    }
    m->n = out;
    *count = k;
    return mv;
}

static void put_back(struct sm_model *m, struct moved *mv, size_t count, const void *a, size_t alen,
                     const void *b, size_t blen)
{
    for (size_t i = 0; i < count; i++) {
        const void *prefix = mv[i].side == 0 ? a : b;
        size_t plen = mv[i].side == 0 ? alen : blen;
        uint8_t *key = su_xmalloc(plen + mv[i].len);
        memcpy(key, prefix, plen);
        if (mv[i].len)
            memcpy(key + plen, mv[i].suffix, mv[i].len);
        /* insert_key counts a key; the object already counted this one. */
        mv[i].obj->keys--;
        insert_key(m, key, plen + mv[i].len, mv[i].obj);
        free(key);
        free(mv[i].suffix);
    }
    free(mv);
}

static int rename_copied(struct sm_model *m, const void *from, size_t flen, const void *to,
                         size_t tlen, unsigned flags);

int sm_rename(struct sm_model *m, const void *from, size_t flen, const void *to, size_t tlen,
              unsigned flags)
{
    /* The keys may point into the model, which the rename rewrites. */
    uint8_t *f = su_memdup(from, flen), *t = su_memdup(to, tlen);
    int rc = rename_copied(m, f, flen, t, tlen, flags);
    free(f);
    free(t);
    return rc;
}

static int rename_copied(struct sm_model *m, const void *from, size_t flen, const void *to,
                         size_t tlen, unsigned flags)
{
    long fi = sm_find(m, from, flen), ti = sm_find(m, to, tlen);
    if (fi < 0)
        return -ENOENT;
    if (su_key_cmp(from, flen, to, tlen) == 0)
        return SM_SKIP;
    if (ti >= 0 && m->e[ti].obj == m->e[fi].obj)
        return SM_SKIP; /* POSIX: nothing happens; not pinned down here */
    int from_dir = m->e[fi].obj->type == MINDB_DIR;
    if (flags & MINDB_RENAME_EXCHANGE) {
        if (flags & MINDB_RENAME_NOREPLACE)
            return SM_SKIP;
        if (ti < 0)
            return -ENOENT;
        if (under(to, tlen, from, flen) || under(from, flen, to, tlen))
            return -EINVAL;
        size_t count;
        struct moved *mv = take_trees(m, from, flen, to, tlen, &count);
        put_back(m, mv, count, to, tlen, from, flen);
        return 0;
    }
    if (from_dir && under(to, tlen, from, flen))
        return ti >= 0 ? SM_SKIP : -EINVAL;
    if (ti >= 0) {
        int to_dir = m->e[ti].obj->type == MINDB_DIR;
        if (flags & MINDB_RENAME_NOREPLACE)
            return -EEXIST;
        if (from_dir && !to_dir)
            return -ENOTDIR;
        if (!from_dir && to_dir)
            return -EISDIR;
        if (sm_has_children(m, to, tlen))
            return to_dir ? -ENOTEMPTY : SM_SKIP;
        remove_at(m, (size_t)ti);
    } else if (sm_has_children(m, to, tlen)) {
        return SM_SKIP; /* onto a prefix with keys but no key of its own */
    }
    if (!from_dir && sm_has_children(m, from, flen))
        return SM_SKIP;
    size_t count;
    struct moved *mv = take_trees(m, from, flen, NULL, 0, &count);
    put_back(m, mv, count, to, tlen, NULL, 0);
    return 0;
}

int sm_link(struct sm_model *m, const void *key, size_t len, const void *new_key, size_t nlen)
{
    long i = sm_find(m, key, len);
    if (i < 0)
        return -ENOENT;
    int exists = sm_find(m, new_key, nlen) >= 0;
    if (m->e[i].obj->type == MINDB_DIR)
        return exists ? SM_SKIP : -EPERM;
    if (exists)
        return -EEXIST;
    if (sm_has_children(m, new_key, nlen))
        return SM_SKIP;
    insert_key(m, new_key, nlen, m->e[i].obj);
    return 0;
}

static long xattr_find(const struct sm_obj *o, const char *name, size_t *pos)
{
    size_t lo = 0, hi = o->nxattrs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(o->xattrs[mid].name, name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return -1;
}

int sm_setxattr(struct sm_model *m, const void *key, size_t len, const char *name,
                const void *value, size_t vlen, unsigned flags)
{
    long i = sm_find(m, key, len);
    if (i < 0)
        return -ENOENT;
    struct sm_obj *o = m->e[i].obj;
    size_t pos = 0;
    long x = xattr_find(o, name, &pos);
    if (x >= 0 && (flags & MINDB_XATTR_CREATE))
        return -EEXIST;
    if (x < 0 && (flags & MINDB_XATTR_REPLACE))
        return -ENODATA;
    if (x >= 0) {
        free(o->xattrs[x].value);
        o->xattrs[x].value = su_memdup(value, vlen);
        o->xattrs[x].len = vlen;
        return 0;
    }
    o->xattrs = realloc(o->xattrs, (o->nxattrs + 1) * sizeof *o->xattrs);
    CHECK(o->xattrs != NULL);
    memmove(&o->xattrs[pos + 1], &o->xattrs[pos], (o->nxattrs - pos) * sizeof *o->xattrs);
    o->xattrs[pos].name = strdup(name);
    CHECK(o->xattrs[pos].name != NULL);
    o->xattrs[pos].value = su_memdup(value, vlen);
    o->xattrs[pos].len = vlen;
    o->nxattrs++;
    return 0;
}

int sm_removexattr(struct sm_model *m, const void *key, size_t len, const char *name)
{
    long i = sm_find(m, key, len);
    if (i < 0)
        return -ENOENT;
    struct sm_obj *o = m->e[i].obj;
    size_t pos;
    long x = xattr_find(o, name, &pos);
    if (x < 0)
        return -ENODATA;
    free(o->xattrs[x].name);
    free(o->xattrs[x].value);
    memmove(&o->xattrs[x], &o->xattrs[x + 1], (o->nxattrs - (size_t)x - 1) * sizeof *o->xattrs);
    o->nxattrs--;
    return 0;
}

int sm_set_perm(struct sm_model *m, const void *key, size_t len, uint32_t perm)
{
    long i = sm_find(m, key, len);
    if (i < 0)
        return -ENOENT;
    m->e[i].obj->perm = perm & 07777;
    return 0;
}

static void obj_resize(struct sm_obj *o, size_t size)
{
    if (size > o->cap) {
        size_t cap = o->cap ? o->cap : 64;
        while (cap < size)
            cap *= 2;
        o->data = realloc(o->data, cap);
        CHECK(o->data != NULL);
        o->cap = cap;
    }
    if (size > o->size)
        memset(o->data + o->size, 0, size - o->size);
    o->size = size;
    o->hash_ok = 0;
}

void sm_pwrite(struct sm_obj *o, const void *buf, size_t len, uint64_t off)
{
    if (len == 0)
        return;
    if (off + len > o->size)
        obj_resize(o, (size_t)(off + len));
    memcpy(o->data + off, buf, len);
    o->hash_ok = 0;
}

void sm_truncate(struct sm_obj *o, uint64_t size)
{
    obj_resize(o, (size_t)size);
}
