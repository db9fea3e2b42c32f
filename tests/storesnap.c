/*
 * storesnap.c - snapshots of a store and of the model, and their
 * comparison (see storemodel.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "storemodel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <xxhash.h>

void su_snap_free(struct su_snap *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->e[i].key);
    free(s->e);
    memset(s, 0, sizeof *s);
}

static struct su_snap_entry *snap_push(struct su_snap *s)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->e = realloc(s->e, s->cap * sizeof *s->e);
        CHECK(s->e != NULL);
    }
    struct su_snap_entry *e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void xhash_add(XXH3_state_t *st, const char *name, const void *value, size_t len)
{
    uint64_t len64 = len;
    XXH3_64bits_update(st, name, strlen(name) + 1);
    XXH3_64bits_update(st, &len64, sizeof len64);
    XXH3_64bits_update(st, value, len);
}

/* The digest of a store key's extended attributes, names sorted. */
static int store_xhash(mindb *db, const void *key, size_t len, uint64_t *out)
{
    *out = 0;
    ssize_t size = mindb_listxattr(db, key, len, NULL, 0);
    if (size <= 0)
        return (int)size;
    char *names = su_xmalloc((size_t)size);
    ssize_t got = mindb_listxattr(db, key, len, names, (size_t)size);
    if (got < 0) {
        free(names);
        return (int)got;
    }
    size_t count = 0;
    for (ssize_t i = 0; i < got; i++)
        count += names[i] == 0;
    char **list = su_xmalloc((count ? count : 1) * sizeof *list);
    size_t k = 0;
    for (ssize_t i = 0; i < got && k < count; i += (ssize_t)strlen(names + i) + 1)
        list[k++] = names + i;
    qsort(list, k, sizeof *list, name_cmp);
    XXH3_state_t *st = XXH3_createState();
    CHECK(st != NULL);
    XXH3_64bits_reset(st);
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        ssize_t vlen = mindb_getxattr(db, key, len, list[i], NULL, 0);
        if (vlen < 0) {
            rc = (int)vlen;
            break;
        }
        uint8_t *v = su_xmalloc((size_t)vlen);
        ssize_t vgot = mindb_getxattr(db, key, len, list[i], v, (size_t)vlen);
        if (vgot < 0)
            rc = (int)vgot;
        else
            xhash_add(st, list[i], v, (size_t)vgot);
        free(v);
    }
    *out = k ? XXH3_64bits_digest(st) : 0;
    XXH3_freeState(st);
    free(list);
    free(names);
    return rc;
}

/* Fills the value and attribute digests of entry `e` whose metadata is set. */
static int store_contents(mindb *db, struct su_snap_entry *e, const void *key, size_t len)
{
    if ((e->mode & S_IFMT) != S_IFDIR) {
        void *v = NULL;
        size_t vlen = 0;
        int rc = mindb_get(db, key, len, &v, &vlen);
        if (rc != 0)
            return rc;
        e->hash = XXH3_64bits(v, vlen);
        free(v);
    }
    return store_xhash(db, key, len, &e->xhash);
}

static void fill_from_stat(struct su_snap_entry *e, const struct mindb_stat *st)
{
    e->mode = st->mode;
    e->uid = st->uid;
    e->gid = st->gid;
    e->nlink = st->nlink;
    e->size = st->size;
    e->id = st->id;
}

int su_snap_store_key(mindb *db, const void *key, size_t len, struct su_snap_entry *out)
{
    memset(out, 0, sizeof *out);
    out->len = len;
    struct mindb_stat st;
    int rc = mindb_stat(db, key, len, &st);
    if (rc != 0)
        return rc;
    fill_from_stat(out, &st);
    return store_contents(db, out, key, len);
}

int su_snap_store(mindb *db, struct su_snap *s, char *why, size_t why_len)
{
    memset(s, 0, sizeof *s);
    mindb_iter *it = NULL;
    int rc = mindb_iter_open(db, "", 0, NULL, 0, 0, &it);
    if (rc != 0) {
        snprintf(why, why_len, "mindb_iter_open returned %d (%s)", rc, su_strerror(rc));
        return rc;
    }
    for (;;) {
        const void *k;
        size_t klen;
        struct mindb_stat st;
        rc = mindb_iter_next(it, &k, &klen, &st);
        if (rc < 0) {
            snprintf(why, why_len, "mindb_iter_next after %zu keys returned %d (%s)", s->n, rc,
                     su_strerror(rc));
            break;
        }
        if (rc == 0)
            break;
        struct su_snap_entry *e = snap_push(s);
        e->key = su_memdup(k, klen);
        e->len = klen;
        fill_from_stat(e, &st);
    }
    mindb_iter_close(it);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < s->n; i++) {
        rc = store_contents(db, &s->e[i], s->e[i].key, s->e[i].len);
        if (rc != 0) {
            snprintf(why, why_len, "reading key %s returned %d (%s)",
                     su_keystr(s->e[i].key, s->e[i].len), rc, su_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static uint32_t model_mode(const struct sm_obj *o)
{
    uint32_t type = o->type == MINDB_DIR ? S_IFDIR : o->type == MINDB_LNK ? S_IFLNK : S_IFREG;
    return type | o->perm;
}

static uint64_t model_xhash(const struct sm_obj *o)
{
    if (o->nxattrs == 0)
        return 0;
    XXH3_state_t *st = XXH3_createState();
    CHECK(st != NULL);
    XXH3_64bits_reset(st);
    for (size_t i = 0; i < o->nxattrs; i++)
        xhash_add(st, o->xattrs[i].name, o->xattrs[i].value, o->xattrs[i].len);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static void model_entry(const struct sm_model *m, size_t i, struct su_snap_entry *out)
{
    struct sm_obj *o = m->e[i].obj;
    out->len = m->e[i].len;
    out->mode = model_mode(o);
    out->uid = o->uid;
    out->gid = o->gid;
    out->nlink = sm_nlink(m, i);
    out->size = o->type == MINDB_DIR ? 0 : o->size;
    out->hash = o->type == MINDB_DIR ? 0 : sm_obj_hash(o);
    out->xhash = model_xhash(o);
    out->id = o->serial;
}

int su_snap_model_key(const struct sm_model *m, const void *key, size_t len,
                      struct su_snap_entry *out)
{
    memset(out, 0, sizeof *out);
    out->len = len;
    long i = sm_find(m, key, len);
    if (i < 0)
        return -ENOENT;
    model_entry(m, (size_t)i, out);
    return 0;
}

void su_snap_model(const struct sm_model *m, struct su_snap *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < m->n; i++) {
        struct su_snap_entry *e = snap_push(s);
        model_entry(m, i, e);
        e->key = su_memdup(m->e[i].key, m->e[i].len);
    }
}

int su_snap_entry_diff(const struct su_snap_entry *a, const struct su_snap_entry *b, char *why,
                       size_t why_len)
{
#define FIELD_DIFF(f, fmt)                                                                         \
    if (a->f != b->f) {                                                                            \
        snprintf(why, why_len, #f " " fmt " in the store, " fmt " in the model",                   \
                 (unsigned long long)a->f, (unsigned long long)b->f);                              \
        return 1;                                                                                  \
    }
    FIELD_DIFF(mode, "0%llo")
    FIELD_DIFF(size, "%llu")
    FIELD_DIFF(hash, "(value hash) %016llx")
    FIELD_DIFF(nlink, "%llu")
    FIELD_DIFF(uid, "%llu")
    FIELD_DIFF(gid, "%llu")
    FIELD_DIFF(xhash, "(xattr hash) %016llx")
#undef FIELD_DIFF
    return 0;
}

struct id_pair {
    uint64_t a, b;
    size_t i;
};

static int pair_cmp_a(const void *x, const void *y)
{
    const struct id_pair *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a;
}

static int pair_cmp_b(const void *x, const void *y)
{
    const struct id_pair *p = x, *q = y;
    return p->b < q->b ? -1 : p->b > q->b;
}

int su_snap_diff(const struct su_snap *s, const struct su_snap *m, char *why, size_t why_len)
{
    char detail[256];
    size_t n = s->n < m->n ? s->n : m->n;
    for (size_t i = 0; i < n; i++) {
        const struct su_snap_entry *a = &s->e[i], *b = &m->e[i];
        if (su_key_cmp(a->key, a->len, b->key, b->len) != 0) {
            snprintf(why, why_len, "key #%zu is %s in the store, %s in the model", i,
                     su_keystr(a->key, a->len), su_keystr(b->key, b->len));
            return 1;
        }
        if (su_snap_entry_diff(a, b, detail, sizeof detail)) {
            snprintf(why, why_len, "key %s: %s", su_keystr(a->key, a->len), detail);
            return 1;
        }
    }
    if (s->n != m->n) {
        const struct su_snap_entry *extra = s->n > m->n ? &s->e[n] : &m->e[n];
        snprintf(why, why_len, "%zu keys in the store, %zu in the model; first extra in the %s: %s",
                 s->n, m->n, s->n > m->n ? "store" : "model", su_keystr(extra->key, extra->len));
        return 1;
    }
    /* Links: keys share an object in the store exactly when they do in the
     * model. */
    struct id_pair *p = su_xmalloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = (struct id_pair){.a = m->e[i].id, .b = s->e[i].id, .i = i};
    int bad = 0;
    qsort(p, n, sizeof *p, pair_cmp_a);
    for (size_t i = 1; i < n && !bad; i++)
        if (p[i].a == p[i - 1].a && p[i].b != p[i - 1].b) {
            snprintf(why, why_len, "keys %s and %s are links of one object, ids %llu and %llu",
                     su_keystr(s->e[p[i - 1].i].key, s->e[p[i - 1].i].len),
                     su_keystr(s->e[p[i].i].key, s->e[p[i].i].len), (unsigned long long)p[i - 1].b,
                     (unsigned long long)p[i].b);
            bad = 1;
        }
    qsort(p, n, sizeof *p, pair_cmp_b);
    for (size_t i = 1; i < n && !bad; i++)
        if (p[i].b == p[i - 1].b && p[i].a != p[i - 1].a) {
            snprintf(why, why_len, "keys %s and %s are different objects with one id %llu",
                     su_keystr(s->e[p[i - 1].i].key, s->e[p[i - 1].i].len),
                     su_keystr(s->e[p[i].i].key, s->e[p[i].i].len), (unsigned long long)p[i].b);
            bad = 1;
        }
    free(p);
    return bad;
}
