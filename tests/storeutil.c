/*
 * storeutil.c - see storeutil.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "storeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

const char *su_strerror(long long rc)
{
    if (rc == 0)
        return "success";
    if (rc < INT32_MIN || rc > INT32_MAX)
        return "?";
    return mindb_strerror((int)rc);
}

/* ---- opening stores ---- */

static void print_log(void *ctx, const char *message)
{
    (void)ctx;
    fprintf(stderr, "    mindb: %s\n", message);
}

void su_options(struct mindb_options *o, int small)
{
    mindb_options_init(o);
    o->create = 1;
    if (small) {
        o->dirty_bytes = 1 * MiB;
        o->cache_bytes = 256 * KiB;
        o->checkpoint_wal_bytes = 4 * MiB;
        o->data_segment_bytes = 1 * MiB; /* so that compaction has work */
    }
    const char *direct = getenv("MINDB_WAL_DIRECT");
    if (direct && *direct && atoi(direct) == 0)
        o->direct_io = 0;
    const char *log = getenv("MINDB_TEST_LOG");
    if (log && *log && strcmp(log, "0") != 0)
        o->log = print_log;
}

void su_store_path(char out[TU_PATH_MAX], const char *name)
{
    tu_path(out, "%s", name);
}

mindb *su_open_at(const char *file, int line, const char *dir, const struct mindb_options *o)
{
    mindb *db = NULL;
    int rc = mindb_open(dir, o, &db);
    if (rc != 0)
        tu_failf(file, line, "mindb_open", "mindb_open(%s) returned %d (%s)", dir, rc,
                 su_strerror(rc));
    if (!db)
        tu_failf(file, line, "mindb_open", "mindb_open(%s) returned 0 and no handle", dir);
    return db;
}

mindb *su_reopen_at(const char *file, int line, mindb *db, const char *dir,
                    const struct mindb_options *o)
{
    int rc = mindb_close(db);
    if (rc != 0)
        tu_failf(file, line, "mindb_close", "mindb_close(%s) returned %d (%s)", dir, rc,
                 su_strerror(rc));
    return su_open_at(file, line, dir, o);
}

/* ---- keys and values ---- */

const char *su_keystr(const void *key, size_t len)
{
    static __thread char bufs[8][4 * 200 + 16];
    static __thread unsigned next;
    char *out = bufs[next++ % 8];
    const uint8_t *k = key;
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && i < 200; i++) {
        if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '"' && k[i] != '\\')
            out[o++] = (char)k[i];
        else
            o += (size_t)sprintf(out + o, "\\x%02x", k[i]);
    }
    out[o++] = '"';
    if (len > 200)
        o += (size_t)sprintf(out + o, "...(%zu)", len);
    out[o] = 0;
    return out;
}

uint64_t su_key_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

/* Lines of 64 bytes: the seed and the line number in hex, then one of a few
 * phrases: zstd finds the phrases, every line still differs. */
void su_fill(void *buf, size_t len, uint64_t seed)
{
    static const char *const phrases[] = {
        "the quick brown fox jumps over the lazy dog ",
        "lorem ipsum dolor sit amet consectetur elit ",
        "pack my box with five dozen liquor jugs now ",
        "sphinx of black quartz judge my vow quickly ",
    };
    static const char hex[] = "0123456789abcdef";
    uint8_t *p = buf;
    uint8_t line[64];
    uint64_t rng = seed;
    for (size_t off = 0, n = 0; off < len; off += 64, n++) {
        for (int i = 0; i < 8; i++)
            line[i] = (uint8_t)hex[(seed >> (60 - 4 * i)) & 15];
        line[8] = ' ';
        for (int i = 0; i < 8; i++)
            line[9 + i] = (uint8_t)hex[(n >> (28 - 4 * i)) & 15];
        line[17] = ' ';
        uint64_t r = tu_rand(&rng);
        memcpy(line + 18, phrases[r & 3], 44);
        line[62] = (uint8_t)hex[(r >> 8) & 15];
        line[63] = '\n';
        size_t take = len - off < 64 ? len - off : 64;
        memcpy(p + off, line, take);
    }
}

#define VALUE_MAGIC 0x766e696du

void su_value(void *buf, size_t len, uint64_t tag1, uint64_t tag2)
{
    uint8_t *p = buf;
    if (len < SU_VALUE_MIN) {
        su_fill(p, len, tag1 * 0x9e3779b97f4a7c15ull ^ tag2);
        return;
    }
    su_fill(p + SU_VALUE_MIN, len - SU_VALUE_MIN, tag1 * 0x9e3779b97f4a7c15ull ^ tag2);
    uint32_t magic = VALUE_MAGIC, len32 = (uint32_t)len;
    uint64_t hash = XXH3_64bits(p + SU_VALUE_MIN, len - SU_VALUE_MIN);
    memcpy(p, &magic, 4);
    memcpy(p + 4, &len32, 4);
    memcpy(p + 8, &tag1, 8);
    memcpy(p + 16, &tag2, 8);
    memcpy(p + 24, &hash, 8);
}

int su_value_parse(const void *buf, size_t len, uint64_t *tag1, uint64_t *tag2)
{
    const uint8_t *p = buf;
    if (len < SU_VALUE_MIN)
        return 0;
    uint32_t magic, len32;
    uint64_t hash;
    memcpy(&magic, p, 4);
    memcpy(&len32, p + 4, 4);
    memcpy(&hash, p + 24, 8);
    if (magic != VALUE_MAGIC || len32 != (uint32_t)len ||
        hash != XXH3_64bits(p + SU_VALUE_MIN, len - SU_VALUE_MIN))
        return 0;
    if (tag1)
        memcpy(tag1, p + 8, 8);
    if (tag2)
        memcpy(tag2, p + 16, 8);
    return 1;
}

void su_put_at(const char *file, int line, mindb *db, const void *key, size_t key_len,
               const void *value, size_t len)
{
    int rc = mindb_put(db, key, key_len, value, len);
    if (rc != 0)
        tu_failf(file, line, "mindb_put", "put %s (%zu bytes) returned %d (%s)",
                 su_keystr(key, key_len), len, rc, su_strerror(rc));
}

void su_expect_value_at(const char *file, int line, mindb *db, const void *key, size_t key_len,
                        const void *value, size_t len)
{
    void *got = NULL;
    size_t got_len = 0;
    int rc = mindb_get(db, key, key_len, &got, &got_len);
    if (rc != 0)
        tu_failf(file, line, "mindb_get", "get %s returned %d (%s)", su_keystr(key, key_len), rc,
                 su_strerror(rc));
    if (got_len != len || (len && memcmp(got, value, len) != 0)) {
        size_t at = 0;
        while (at < len && at < got_len && ((uint8_t *)got)[at] == ((const uint8_t *)value)[at])
            at++;
        free(got);
        tu_failf(file, line, "mindb_get",
                 "get %s: %zu bytes, expected %zu, first difference at %zu",
                 su_keystr(key, key_len), got_len, len, at);
    }
    free(got);
}

static struct su_key *list_keys(mindb *db, const void *start, size_t start_len, unsigned flags,
                                size_t *count)
{
    mindb_iter *it = NULL;
    int rc = mindb_iter_open(db, start, start_len, NULL, 0, flags, &it);
    CHECKF(rc == 0, "mindb_iter_open(%s) returned %d (%s)", su_keystr(start, start_len), rc,
           su_strerror(rc));
    struct su_key *keys = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        const void *k;
        size_t klen;
        rc = mindb_iter_next(it, &k, &klen, NULL);
        CHECKF(rc >= 0, "mindb_iter_next returned %d (%s)", rc, su_strerror(rc));
        if (rc == 0)
            break;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            keys = realloc(keys, cap * sizeof *keys);
            CHECK(keys != NULL);
        }
        keys[n].key = malloc(klen ? klen : 1);
        CHECK(keys[n].key != NULL);
        memcpy(keys[n].key, k, klen);
        keys[n].len = klen;
        n++;
    }
    mindb_iter_close(it);
    *count = n;
    return keys;
}

struct su_key *su_list_keys(mindb *db, size_t *count)
{
    return list_keys(db, "", 0, 0, count);
}

struct su_key *su_list_children(mindb *db, const char *dir, size_t *count)
{
    return list_keys(db, dir, strlen(dir), MINDB_ITER_CHILDREN, count);
}

void su_free_keys(struct su_key *keys, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(keys[i].key);
    free(keys);
}

/* ---- the reference model ---- */

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    return p;
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = xmalloc(n);
    if (n)
        memcpy(d, p, n);
    else
        d[0] = 0;
    return d;
}

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
    dst->e = xmalloc((src->n ? src->n : 1) * sizeof *dst->e);
    dst->cap = src->n ? src->n : 1;
    /* Sorted pointers to the source objects and their copies, so that keys
     * sharing an object share its copy. */
    struct sm_obj **from = xmalloc((src->n ? src->n : 1) * sizeof *from);
    for (size_t i = 0; i < src->n; i++)
        from[i] = src->e[i].obj;
    qsort(from, src->n, sizeof *from, ptr_cmp);
    size_t uniq = 0;
    for (size_t i = 0; i < src->n; i++)
        if (uniq == 0 || from[uniq - 1] != from[i])
            from[uniq++] = from[i];
    struct sm_obj **to = xmalloc((uniq ? uniq : 1) * sizeof *to);
    for (size_t i = 0; i < uniq; i++) {
        const struct sm_obj *s = from[i];
        struct sm_obj *d = xmalloc(sizeof *d);
        *d = *s;
        d->keys = 0;
        d->handles = 0;
        d->data = dup_bytes(s->data, s->size);
        d->cap = s->size;
        d->xattrs = xmalloc((s->nxattrs ? s->nxattrs : 1) * sizeof *d->xattrs);
        for (size_t x = 0; x < s->nxattrs; x++) {
            d->xattrs[x].name = strdup(s->xattrs[x].name);
            CHECK(d->xattrs[x].name != NULL);
            d->xattrs[x].value = dup_bytes(s->xattrs[x].value, s->xattrs[x].len);
            d->xattrs[x].len = s->xattrs[x].len;
        }
        to[i] = d;
    }
    for (size_t i = 0; i < src->n; i++) {
        struct sm_obj *o = src->e[i].obj;
        struct sm_obj **hit = bsearch(&o, from, uniq, sizeof *from, ptr_cmp);
        CHECK(hit != NULL);
        dst->e[i].key = dup_bytes(src->e[i].key, src->e[i].len);
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
        if (key_cmp(m->e[mid].key, m->e[mid].len, key, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long sm_find(const struct sm_model *m, const void *key, size_t len)
{
    size_t i = sm_lower_bound(m, key, len);
    if (i < m->n && key_cmp(m->e[i].key, m->e[i].len, key, len) == 0)
        return (long)i;
    return -1;
}

/* The range [*lo, *hi) of keys that start with key + "/": they sort from
 * key + "/" up to key + "0" ('/' + 1). */
static void subtree_range(const struct sm_model *m, const void *key, size_t len, size_t *lo,
                          size_t *hi)
{
    uint8_t *k = xmalloc(len + 1);
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
    m->e[i].key = dup_bytes(key, len);
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
    o->data = dup_bytes(value, len);
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
    struct moved *mv = xmalloc((m->n ? m->n : 1) * sizeof *mv);
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
        mv[k].suffix = dup_bytes(e->key + plen, e->len - plen);
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
        uint8_t *key = xmalloc(plen + mv[i].len);
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
    uint8_t *f = dup_bytes(from, flen), *t = dup_bytes(to, tlen);
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
    if (key_cmp(from, flen, to, tlen) == 0)
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
        o->xattrs[x].value = dup_bytes(value, vlen);
        o->xattrs[x].len = vlen;
        return 0;
    }
    o->xattrs = realloc(o->xattrs, (o->nxattrs + 1) * sizeof *o->xattrs);
    CHECK(o->xattrs != NULL);
    memmove(&o->xattrs[pos + 1], &o->xattrs[pos], (o->nxattrs - pos) * sizeof *o->xattrs);
    o->xattrs[pos].name = strdup(name);
    CHECK(o->xattrs[pos].name != NULL);
    o->xattrs[pos].value = dup_bytes(value, vlen);
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

/* ---- snapshots ---- */

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
    char *names = xmalloc((size_t)size);
    ssize_t got = mindb_listxattr(db, key, len, names, (size_t)size);
    if (got < 0) {
        free(names);
        return (int)got;
    }
    size_t count = 0;
    for (ssize_t i = 0; i < got; i++)
        count += names[i] == 0;
    char **list = xmalloc((count ? count : 1) * sizeof *list);
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
        uint8_t *v = xmalloc((size_t)vlen);
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
        e->key = dup_bytes(k, klen);
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
        e->key = dup_bytes(m->e[i].key, m->e[i].len);
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
        if (key_cmp(a->key, a->len, b->key, b->len) != 0) {
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
    struct id_pair *p = xmalloc((n ? n : 1) * sizeof *p);
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
