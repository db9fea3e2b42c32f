/*
 * test_store_model.c - a seeded random sequence of operations applied to a
 * store and to the reference model of storeutil.h, comparing every return
 * code, the touched keys after every step, and everything (listing,
 * children listings, values, metadata, links, extended attributes, stats,
 * open handles) every 500 steps, after each checkpoint and compaction and
 * after each close and reopen. Small store limits make checkpoints happen
 * during the run.
 *
 * A failure names the seed and the step: rerun with MINDB_TEST_SEED=seed
 * (and MINDB_MODEL_STEPS=n to stop early).
 */
#include "storemodel.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <xxhash.h>

#define DEFAULT_STEPS 20000
#define FULL_EVERY 500
#define REOPEN_EVERY 2000
#define HANDLES 3
#define MAX_FILE (1536 * 1024)
#define MAX_KEY 64

struct handle {
    mindb_file *f;
    struct sm_obj *obj;
};

struct run {
    mindb *db;
    struct sm_model m;
    struct mindb_options o;
    char dir[TU_PATH_MAX];
    uint64_t seed, rng;
    long step;
    char op[256];
    struct handle h[HANDLES];
    uint8_t *buf;
    long counts[32];
    long skipped, errors;
    uint64_t checkpoints, compactions; /* by the handles closed so far */
};

static struct run R;
static int g_stats_every_step; /* MINDB_MODEL_STATS=1 */

__attribute__((noreturn, format(printf, 2, 3))) static void fail_at(int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tu_failf(__FILE__, line, "the store matches the model", "seed %llu step %ld (%s): %s",
             (unsigned long long)R.seed, R.step, R.op, msg);
}

#define MCHECK(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_at(__LINE__, __VA_ARGS__);                                                        \
    } while (0)

/* The store must return what the model says. */
#define SAME_RC(got, want)                                                                         \
    do {                                                                                           \
        long long got_ = (long long)(got), want_ = (long long)(want);                              \
        if (got_ != want_)                                                                         \
            fail_at(__LINE__, "returned %lld (%s), the model says %lld (%s)", got_,                \
                    su_strerror(got_), want_, su_strerror(want_));                                 \
        if (want_ < 0)                                                                             \
            R.errors++;                                                                            \
    } while (0)

static uint64_t rnd(uint64_t n)
{
    return n ? tu_rand(&R.rng) % n : 0;
}

/* ---- keys ---- */

struct key {
    uint8_t b[MAX_KEY];
    size_t len;
};

static void key_append(struct key *k, const void *p, size_t n)
{
    CHECK(k->len + n <= MAX_KEY);
    memcpy(k->b + k->len, p, n);
    k->len += n;
}

static void dir_name(struct key *k)
{
    char name[3] = {'d', (char)('0' + rnd(3)), 0};
    key_append(k, name, 2);
}

/* File names: a NUL and a 0xff among them, keys being byte strings. */
static void file_name(struct key *k)
{
    static const struct {
        const char *s;
        size_t len;
    } names[] = {{"f0", 2}, {"f1", 2},    {"f2", 2},   {"f3", 2},
                 {"f4", 2}, {"f\xff", 2}, {"f\0z", 3}, {"f5.tmp", 6}};
    unsigned i = (unsigned)rnd(8);
    key_append(k, names[i].s, names[i].len);
}

static void rand_file_path(struct key *k)
{
    k->len = 0;
    for (uint64_t d = rnd(3); d > 0; d--) {
        dir_name(k);
        key_append(k, "/", 1);
    }
    file_name(k);
}

static void rand_dir_path(struct key *k)
{
    k->len = 0;
    uint64_t depth = 1 + rnd(10) / 5 + (rnd(10) == 0);
    for (uint64_t d = 0; d < depth; d++) {
        if (d)
            key_append(k, "/", 1);
        dir_name(k);
    }
}

/* A random key of the model of `type` (0: any); 0 when there is none. */
static int pick_existing(struct key *k, int type)
{
    size_t count = 0;
    for (size_t i = 0; i < R.m.n; i++)
        count += type == 0 || R.m.e[i].obj->type == type;
    if (count == 0)
        return 0;
    size_t want = rnd(count);
    for (size_t i = 0; i < R.m.n; i++) {
        if (type != 0 && R.m.e[i].obj->type != type)
            continue;
        if (want-- == 0) {
            if (R.m.e[i].len > MAX_KEY)
                return 0;
            memcpy(k->b, R.m.e[i].key, R.m.e[i].len);
            k->len = R.m.e[i].len;
            return 1;
        }
    }
    return 0;
}

static void file_key(struct key *k, unsigned existing_percent)
{
    if (rnd(100) >= existing_percent || !pick_existing(k, MINDB_REG))
        rand_file_path(k);
}

static void dir_key(struct key *k, unsigned existing_percent)
{
    if (rnd(100) >= existing_percent || !pick_existing(k, MINDB_DIR))
        rand_dir_path(k);
}

static const char *ks(const struct key *k)
{
    return su_keystr(k->b, k->len);
}

/* ---- checks ---- */

/* Compares one key of the store with the model, and the object's id with the
 * one the store reported for it before. */
static void check_key(const struct key *k)
{
    struct su_snap_entry s, m;
    int rs = su_snap_store_key(R.db, k->b, k->len, &s);
    int rm = su_snap_model_key(&R.m, k->b, k->len, &m);
    MCHECK(rs == rm, "key %s: the store says %d (%s), the model %d (%s)", ks(k), rs,
           su_strerror(rs), rm, su_strerror(rm));
    if (rs != 0)
        return;
    char why[512];
    MCHECK(!su_snap_entry_diff(&s, &m, why, sizeof why), "key %s: %s", ks(k), why);
    struct sm_obj *o = R.m.e[sm_find(&R.m, k->b, k->len)].obj;
    if (o->store_id == 0)
        o->store_id = s.id;
    MCHECK(o->store_id == s.id, "key %s: id %llu, the object had id %llu", ks(k),
           (unsigned long long)s.id, (unsigned long long)o->store_id);
}

/* The children of `dir` (a prefix ending in '/', or "") as the model has
 * them, compared with the store's listing. */
static void check_children(const uint8_t *dir, size_t dlen)
{
    mindb_iter *it = NULL;
    int rc = mindb_iter_open(R.db, dir, dlen, NULL, 0, MINDB_ITER_CHILDREN, &it);
    MCHECK(rc == 0, "children of %s: mindb_iter_open returned %d", su_keystr(dir, dlen), rc);
    size_t i = sm_lower_bound(&R.m, dir, dlen);
    for (;;) {
        /* The model's next child: a key right under `dir`, or the first
         * component of a deeper key when that component is no key. */
        const uint8_t *want = NULL;
        size_t wlen = 0;
        int prefix = 0;
        struct sm_obj *obj = NULL;
        while (i < R.m.n && R.m.e[i].len > dlen && memcmp(R.m.e[i].key, dir, dlen) == 0) {
            const struct sm_entry *e = &R.m.e[i];
            const uint8_t *slash = memchr(e->key + dlen, '/', e->len - dlen);
            if (!slash) {
                want = e->key;
                wlen = e->len;
                obj = e->obj;
                i++;
                break;
            }
            size_t clen = (size_t)(slash - e->key);
            int has_key = sm_find(&R.m, e->key, clen) >= 0;
            /* Skip the component's subtree. */
            uint8_t *bound = malloc(clen + 1);
            CHECK(bound != NULL);
            memcpy(bound, e->key, clen);
            bound[clen] = '0';
            size_t next = sm_lower_bound(&R.m, bound, clen + 1);
            free(bound);
            if (!has_key) {
                want = e->key;
                wlen = clen + 1;
                prefix = 1;
                i = next;
                break;
            }
            i = next;
        }
        const void *k;
        size_t klen;
        struct mindb_stat st;
        rc = mindb_iter_next(it, &k, &klen, &st);
        MCHECK(rc >= 0, "children of %s: mindb_iter_next returned %d", su_keystr(dir, dlen), rc);
        if (!want) {
            MCHECK(rc == 0, "children of %s: the store lists %s, the model nothing more",
                   su_keystr(dir, dlen), su_keystr(k, klen));
            break;
        }
        MCHECK(rc == 1, "children of %s: the store ends, the model has %s", su_keystr(dir, dlen),
               su_keystr(want, wlen));
        MCHECK(klen == wlen && memcmp(k, want, wlen) == 0,
               "children of %s: the store lists %s, the model %s", su_keystr(dir, dlen),
               su_keystr(k, klen), su_keystr(want, wlen));
        if (prefix) {
            MCHECK((st.mode & S_IFMT) == S_IFDIR && st.id == 0,
                   "child %s without a key: mode 0%o id %llu", su_keystr(k, klen), st.mode,
                   (unsigned long long)st.id);
        } else {
            MCHECK(st.id == obj->store_id || obj->store_id == 0,
                   "child %s: id %llu, the object's is %llu", su_keystr(k, klen),
                   (unsigned long long)st.id, (unsigned long long)obj->store_id);
            MCHECK((st.mode & 07777) == obj->perm, "child %s: mode 0%o", su_keystr(k, klen),
                   st.mode);
        }
    }
    mindb_iter_close(it);
}

static void check_handle(struct handle *h)
{
    struct mindb_stat st;
    int rc = mindb_fstat(h->f, &st);
    MCHECK(rc == 0, "mindb_fstat returned %d", rc);
    MCHECK(st.size == h->obj->size && st.nlink == h->obj->keys,
           "handle: size %llu nlink %u, the model %zu %u", (unsigned long long)st.size, st.nlink,
           h->obj->size, h->obj->keys);
    MCHECK(h->obj->store_id == 0 || st.id == h->obj->store_id, "handle: id %llu, expected %llu",
           (unsigned long long)st.id, (unsigned long long)h->obj->store_id);
    uint8_t *buf = malloc(h->obj->size + 1);
    CHECK(buf != NULL);
    ssize_t n = mindb_pread(h->f, buf, h->obj->size + 1, 0);
    MCHECK(n == (ssize_t)h->obj->size, "handle: read %zd bytes, expected %zu", n, h->obj->size);
    MCHECK(XXH3_64bits(buf, (size_t)n) == sm_obj_hash(h->obj), "handle: other contents");
    free(buf);
}

static void check_stats(const char *why_now)
{
    /* Stats count objects once, open-but-deleted ones included. */
    uint64_t objects = 0, bytes = 0, orphan_bytes = 0;
    struct sm_obj **seen = malloc((R.m.n + HANDLES + 1) * sizeof *seen);
    CHECK(seen != NULL);
    size_t nseen = 0;
    for (size_t i = 0; i < R.m.n + HANDLES; i++) {
        struct sm_obj *o = i < R.m.n ? R.m.e[i].obj : R.h[i - R.m.n].obj;
        if (!o)
            continue;
        int dup = 0;
        for (size_t j = 0; j < nseen && !dup; j++)
            dup = seen[j] == o;
        if (dup)
            continue;
        seen[nseen++] = o;
        objects++;
        bytes += o->type == MINDB_DIR ? 0 : o->size;
        if (o->keys == 0)
            orphan_bytes += o->size;
    }
    free(seen);
    struct mindb_stats st;
    int rc = mindb_stats(R.db, &st);
    MCHECK(rc == 0, "mindb_stats returned %d", rc);
    /* Whether the bytes of deleted-but-open objects count is not pinned
     * down: either sum is accepted. */
    MCHECK(st.keys == R.m.n && st.objects == objects &&
               (st.logical_bytes == bytes || st.logical_bytes == bytes - orphan_bytes),
           "stats (%s): %llu keys, %llu objects, %llu bytes; the model %zu, %llu, %llu", why_now,
           (unsigned long long)st.keys, (unsigned long long)st.objects,
           (unsigned long long)st.logical_bytes, R.m.n, (unsigned long long)objects,
           (unsigned long long)bytes);
}

static void check_all(const char *why_now)
{
    char why[1024];
    struct su_snap s, m;
    int rc = su_snap_store(R.db, &s, why, sizeof why);
    MCHECK(rc == 0, "full check (%s): %s", why_now, why);
    su_snap_model(&R.m, &m);
    MCHECK(!su_snap_diff(&s, &m, why, sizeof why), "full check (%s): %s", why_now, why);
    for (size_t i = 0; i < R.m.n; i++) {
        struct sm_obj *o = R.m.e[i].obj;
        if (o->store_id == 0)
            o->store_id = s.e[i].id;
        MCHECK(o->store_id == s.e[i].id, "full check (%s): key %s has id %llu, expected %llu",
               why_now, su_keystr(s.e[i].key, s.e[i].len), (unsigned long long)s.e[i].id,
               (unsigned long long)o->store_id);
    }
    su_snap_free(&s);
    su_snap_free(&m);

    /* Children listings of the top, of every directory key, and of every
     * prefix that is no key. */
    check_children((const uint8_t *)"", 0);
    for (size_t i = 0; i < R.m.n; i++) {
        const struct sm_entry *e = &R.m.e[i];
        for (size_t j = 0; j < e->len; j++) {
            if (e->key[j] == '/')
                check_children(e->key, j + 1);
        }
        if (e->obj->type == MINDB_DIR) {
            uint8_t k[MAX_KEY + 8];
            if (e->len < MAX_KEY) {
                memcpy(k, e->key, e->len);
                k[e->len] = '/';
                check_children(k, e->len + 1);
            }
        }
    }

    check_stats(why_now);
    for (int i = 0; i < HANDLES; i++)
        if (R.h[i].f)
            check_handle(&R.h[i]);
}

/* ---- operations ---- */

enum op {
    OP_PUT,
    OP_DELETE,
    OP_PWRITE,
    OP_TRUNCATE,
    OP_MKDIR,
    OP_RENAME,
    OP_LINK,
    OP_SETXATTR,
    OP_REMOVEXATTR,
    OP_CHMOD,
    OP_HANDLE,
    OP_CHECKPOINT,
    OP_COMPACT,
    OP_COUNT
};

static const char *const g_op_names[OP_COUNT] = {
    "put",      "delete",      "pwrite", "truncate", "mkdir",      "rename", "link",
    "setxattr", "removexattr", "chmod",  "handle",   "checkpoint", "compact"};

/* Weights out of 1000. */
static const unsigned g_weights[OP_COUNT] = {230, 90, 140, 60, 60, 110, 50, 60, 30, 30, 135, 3, 2};

static size_t value_len(void)
{
    uint64_t r = rnd(100);
    if (r < 85)
        return (size_t)rnd(4097);
    if (r < 98)
        return (size_t)rnd(70 * KiB);
    return (size_t)rnd(300 * KiB);
}

static void op_put(void)
{
    struct key k;
    if (rnd(30) == 0 && pick_existing(&k, MINDB_DIR)) {
        /* onto a directory: -EISDIR */
    } else {
        file_key(&k, 15);
    }
    size_t len = value_len();
    su_fill(R.buf, len, tu_rand(&R.rng));
    snprintf(R.op, sizeof R.op, "put %s %zu bytes", ks(&k), len);
    int want = sm_put(&R.m, k.b, k.len, R.buf, len);
    if (want == SM_SKIP) {
        R.skipped++;
        return;
    }
    SAME_RC(mindb_put(R.db, k.b, k.len, R.buf, len), want);
    check_key(&k);
}

static void op_delete(void)
{
    struct key k;
    if (rnd(5) == 0 || !pick_existing(&k, 0)) {
        if (rnd(2))
            rand_file_path(&k);
        else
            rand_dir_path(&k);
    }
    snprintf(R.op, sizeof R.op, "delete %s", ks(&k));
    int want = sm_delete(&R.m, k.b, k.len);
    if (want == SM_SKIP) {
        R.skipped++;
        return;
    }
    SAME_RC(mindb_delete(R.db, k.b, k.len), want);
    check_key(&k);
}

/* An offset and a length for a write into an object of `size` bytes. */
static void write_range(size_t size, uint64_t *off, size_t *len)
{
    uint64_t r = rnd(100);
    if (r < 60)
        *off = rnd(size + 1);
    else if (r < 85)
        *off = size + rnd(200 * KiB);
    else
        *off = (1 + rnd(8)) * 64 * KiB - rnd(12);
    *len = rnd(10) < 7 ? 1 + rnd(4096) : 1 + rnd(70 * KiB);
    if (*off + *len > MAX_FILE)
        *off = rnd(MAX_FILE - *len);
}

static void op_pwrite(void)
{
    struct key k;
    file_key(&k, 75);
    unsigned flags = rnd(2) ? MINDB_OPEN_CREATE : 0;
    long i = sm_find(&R.m, k.b, k.len);
    snprintf(R.op, sizeof R.op, "pwrite open %s flags %u", ks(&k), flags);
    int want = 0;
    struct sm_obj *o = NULL;
    if (i >= 0) {
        o = R.m.e[i].obj;
        if (o->type != MINDB_REG) {
            R.skipped++;
            return;
        }
    } else if (flags & MINDB_OPEN_CREATE) {
        want = sm_create(&R.m, k.b, k.len, S_IFREG | 0644, R.m.uid, R.m.gid, NULL, 0);
        if (want == SM_SKIP) {
            R.skipped++;
            return;
        }
        CHECK(want == 0);
        o = R.m.e[sm_find(&R.m, k.b, k.len)].obj;
    } else {
        want = -ENOENT;
    }
    mindb_file *f = NULL;
    SAME_RC(mindb_file_open(R.db, k.b, k.len, flags, 0644, &f), want);
    if (want != 0)
        return;
    uint64_t off;
    size_t len;
    write_range(o->size, &off, &len);
    su_fill(R.buf, len, tu_rand(&R.rng));
    snprintf(R.op, sizeof R.op, "pwrite %s %zu bytes at %llu (size %zu)", ks(&k), len,
             (unsigned long long)off, o->size);
    sm_pwrite(o, R.buf, len, off);
    SAME_RC(mindb_pwrite(f, R.buf, len, off), len);
    mindb_file_close(f);
    check_key(&k);
}

static void op_truncate(void)
{
    struct key k;
    if (rnd(20) == 0 && pick_existing(&k, MINDB_DIR)) {
    } else {
        file_key(&k, 90);
    }
    long i = sm_find(&R.m, k.b, k.len);
    uint64_t size = 0;
    if (i >= 0) {
        size_t cur = R.m.e[i].obj->size;
        uint64_t r = rnd(4);
        size = r == 0 ? 0 : r == 1 ? rnd(cur + 1) : cur + rnd(150 * KiB);
        if (size > MAX_FILE)
            size = rnd(MAX_FILE);
    }
    int through_handle = i >= 0 && R.m.e[i].obj->type == MINDB_REG && rnd(2);
    snprintf(R.op, sizeof R.op, "truncate %s to %llu%s", ks(&k), (unsigned long long)size,
             through_handle ? " through a handle" : "");
    int want;
    if (i < 0)
        want = -ENOENT;
    else if (R.m.e[i].obj->type == MINDB_DIR)
        want = -EISDIR;
    else {
        want = 0;
        sm_truncate(R.m.e[i].obj, size);
    }
    if (through_handle) {
        mindb_file *f = NULL;
        SAME_RC(mindb_file_open(R.db, k.b, k.len, 0, 0, &f), 0);
        SAME_RC(mindb_truncate(f, size), want);
        mindb_file_close(f);
    } else {
        struct mindb_attr a = {.size = size};
        SAME_RC(mindb_setattr(R.db, k.b, k.len, &a, MINDB_SET_SIZE), want);
    }
    check_key(&k);
}

static void op_mkdir(void)
{
    struct key k;
    dir_key(&k, 10);
    uint32_t mode = S_IFDIR | (rnd(2) ? 0755 : 0700);
    snprintf(R.op, sizeof R.op, "mkdir %s 0%o", ks(&k), mode);
    int want = sm_create(&R.m, k.b, k.len, mode, R.m.uid, R.m.gid, NULL, 0);
    if (want == SM_SKIP) {
        R.skipped++;
        return;
    }
    SAME_RC(mindb_create(R.db, k.b, k.len, mode, R.m.uid, R.m.gid, NULL, 0), want);
    check_key(&k);
}

static void op_rename(void)
{
    struct key from, to;
    int dirs = rnd(3) == 0;
    unsigned flags = 0;
    uint64_t r = rnd(100);
    if (r < 15)
        flags = MINDB_RENAME_NOREPLACE;
    else if (r < 30)
        flags = MINDB_RENAME_EXCHANGE;
    if (dirs) {
        dir_key(&from, 85);
        dir_key(&to, flags == MINDB_RENAME_EXCHANGE ? 90 : 30);
    } else {
        file_key(&from, 85);
        file_key(&to, flags == MINDB_RENAME_EXCHANGE ? 90 : 40);
    }
    snprintf(R.op, sizeof R.op, "rename %s to %s flags %u", ks(&from), ks(&to), flags);
    int want = sm_rename(&R.m, from.b, from.len, to.b, to.len, flags);
    if (want == SM_SKIP) {
        R.skipped++;
        return;
    }
    SAME_RC(mindb_rename(R.db, from.b, from.len, to.b, to.len, flags), want);
    check_key(&from);
    check_key(&to);
}

static void op_link(void)
{
    struct key k, n;
    if (rnd(10) == 0 && pick_existing(&k, MINDB_DIR)) {
    } else {
        file_key(&k, 90);
    }
    file_key(&n, 10);
    snprintf(R.op, sizeof R.op, "link %s to %s", ks(&k), ks(&n));
    int want = sm_link(&R.m, k.b, k.len, n.b, n.len);
    if (want == SM_SKIP) {
        R.skipped++;
        return;
    }
    SAME_RC(mindb_link(R.db, k.b, k.len, n.b, n.len), want);
    check_key(&k);
    check_key(&n);
}

static const char *xattr_name(void)
{
    static const char *const names[] = {"user.a", "user.b", "user.mindb.long-name-c"};
    return names[rnd(3)];
}

static void any_key(struct key *k)
{
    if (rnd(10) == 0 || !pick_existing(k, 0))
        rand_file_path(k);
}

static void op_setxattr(void)
{
    struct key k;
    any_key(&k);
    const char *name = xattr_name();
    size_t len = rnd(10) == 0 ? 0 : rnd(301);
    su_fill(R.buf, len, tu_rand(&R.rng));
    static const unsigned flag_choice[] = {0, 0, MINDB_XATTR_CREATE, MINDB_XATTR_REPLACE};
    unsigned flags = flag_choice[rnd(4)];
    snprintf(R.op, sizeof R.op, "setxattr %s %s %zu bytes flags %u", ks(&k), name, len, flags);
    int want = sm_setxattr(&R.m, k.b, k.len, name, R.buf, len, flags);
    SAME_RC(mindb_setxattr(R.db, k.b, k.len, name, R.buf, len, flags), want);
    check_key(&k);
}

static void op_removexattr(void)
{
    struct key k;
    any_key(&k);
    const char *name = xattr_name();
    snprintf(R.op, sizeof R.op, "removexattr %s %s", ks(&k), name);
    int want = sm_removexattr(&R.m, k.b, k.len, name);
    SAME_RC(mindb_removexattr(R.db, k.b, k.len, name), want);
    check_key(&k);
}

static void op_chmod(void)
{
    struct key k;
    any_key(&k);
    uint32_t perm = (uint32_t)rnd(01000);
    snprintf(R.op, sizeof R.op, "chmod %s 0%o", ks(&k), perm);
    int want = sm_set_perm(&R.m, k.b, k.len, perm);
    struct mindb_attr a = {.mode = perm};
    SAME_RC(mindb_setattr(R.db, k.b, k.len, &a, MINDB_SET_MODE), want);
    check_key(&k);
}

/* Handles: open one on a file (and maybe delete the file at once), write
 * through one, close one. */
static void op_handle(void)
{
    int free_slot = -1, used[HANDLES], nused = 0;
    for (int i = 0; i < HANDLES; i++) {
        if (R.h[i].f)
            used[nused++] = i;
        else if (free_slot < 0)
            free_slot = i;
    }
    uint64_t r = rnd(100);
    if (free_slot >= 0 && (nused == 0 || r < 35)) {
        struct key k;
        if (!pick_existing(&k, MINDB_REG))
            return;
        struct handle *h = &R.h[free_slot];
        h->obj = R.m.e[sm_find(&R.m, k.b, k.len)].obj;
        int del = rnd(2);
        snprintf(R.op, sizeof R.op, "handle %d: open %s%s", free_slot, ks(&k),
                 del ? " and delete it" : "");
        SAME_RC(mindb_file_open(R.db, k.b, k.len, 0, 0, &h->f), 0);
        sm_obj_hold(h->obj);
        if (del) {
            int want = sm_delete(&R.m, k.b, k.len);
            if (want != SM_SKIP)
                SAME_RC(mindb_delete(R.db, k.b, k.len), want);
        }
        check_key(&k);
        check_handle(h);
        return;
    }
    if (nused == 0)
        return;
    struct handle *h = &R.h[used[rnd((uint64_t)nused)]];
    if (r < 80) {
        uint64_t off;
        size_t len;
        write_range(h->obj->size, &off, &len);
        su_fill(R.buf, len, tu_rand(&R.rng));
        snprintf(R.op, sizeof R.op, "handle %d: pwrite %zu bytes at %llu (size %zu, %u keys)",
                 (int)(h - R.h), len, (unsigned long long)off, h->obj->size, h->obj->keys);
        sm_pwrite(h->obj, R.buf, len, off);
        SAME_RC(mindb_pwrite(h->f, R.buf, len, off), len);
        uint8_t *back = malloc(len);
        CHECK(back != NULL);
        SAME_RC(mindb_pread(h->f, back, len, off), len);
        MCHECK(memcmp(back, R.buf, len) == 0, "read back other bytes");
        free(back);
        check_handle(h);
    } else {
        snprintf(R.op, sizeof R.op, "handle %d: close (%u keys)", (int)(h - R.h), h->obj->keys);
        mindb_file_close(h->f);
        sm_obj_drop(h->obj);
        h->f = NULL;
        h->obj = NULL;
    }
}

static void close_handles(void)
{
    for (int i = 0; i < HANDLES; i++)
        if (R.h[i].f) {
            mindb_file_close(R.h[i].f);
            sm_obj_drop(R.h[i].obj);
            R.h[i].f = NULL;
            R.h[i].obj = NULL;
        }
}

static void step(void)
{
    uint64_t r = rnd(1000);
    enum op op = 0;
    while (op < OP_COUNT - 1 && r >= g_weights[op]) {
        r -= g_weights[op];
        op++;
    }
    R.counts[op]++;
    switch (op) {
    case OP_PUT:
        op_put();
        break;
    case OP_DELETE:
        op_delete();
        break;
    case OP_PWRITE:
        op_pwrite();
        break;
    case OP_TRUNCATE:
        op_truncate();
        break;
    case OP_MKDIR:
        op_mkdir();
        break;
    case OP_RENAME:
        op_rename();
        break;
    case OP_LINK:
        op_link();
        break;
    case OP_SETXATTR:
        op_setxattr();
        break;
    case OP_REMOVEXATTR:
        op_removexattr();
        break;
    case OP_CHMOD:
        op_chmod();
        break;
    case OP_HANDLE:
        op_handle();
        break;
    case OP_CHECKPOINT:
        snprintf(R.op, sizeof R.op, "checkpoint");
        SAME_RC(mindb_checkpoint(R.db), 0);
        check_all("after a checkpoint");
        break;
    case OP_COMPACT:
        snprintf(R.op, sizeof R.op, "compact 100");
        SAME_RC(mindb_compact(R.db, 100, NULL, NULL), 0);
        check_all("after a compaction");
        break;
    case OP_COUNT:
        break;
    }
}

static void add_handle_stats(void)
{
    struct mindb_stats st;
    CHECK_OK(mindb_stats(R.db, &st));
    R.checkpoints += st.checkpoints;
    R.compactions += st.compactions;
}

static void run_model(uint64_t seed, long steps, int background)
{
    memset(&R, 0, sizeof R);
    R.seed = seed;
    R.rng = seed;
    sm_init(&R.m);
    R.buf = malloc(MAX_FILE);
    CHECK(R.buf != NULL);
    su_store_path(R.dir, "store");
    su_options(&R.o, 1);
    R.o.background = background;
    R.db = SU_OPEN(R.dir, &R.o);
    const char *env = getenv("MINDB_MODEL_STATS");
    g_stats_every_step = env && atoi(env) > 0;
    env = getenv("MINDB_MODEL_STEPS");
    if (env && *env)
        steps = atol(env);
    tu_note("seed %llu, %ld steps, background %d", (unsigned long long)seed, steps, background);

    for (R.step = 0; R.step < steps; R.step++) {
        snprintf(R.op, sizeof R.op, "?");
        step();
        if (g_stats_every_step)
            check_stats("after the step");
        if ((R.step + 1) % REOPEN_EVERY == 0) {
            snprintf(R.op, sizeof R.op, "close and reopen");
            close_handles();
            add_handle_stats();
            int rc = mindb_close(R.db);
            MCHECK(rc == 0, "mindb_close returned %d (%s)", rc, su_strerror(rc));
            R.o.create = 0;
            R.db = SU_OPEN(R.dir, &R.o);
            check_all("after a reopen");
            if ((R.step + 1) % (2 * REOPEN_EVERY) == 0) {
                rc = mindb_check(R.db, NULL, NULL, NULL);
                MCHECK(rc == 0, "mindb_check returned %d", rc);
            }
        } else if ((R.step + 1) % FULL_EVERY == 0) {
            snprintf(R.op, sizeof R.op, "full check");
            check_all("periodic");
        }
    }
    close_handles();
    check_all("at the end");
    add_handle_stats();
    CHECK_OK(mindb_close(R.db));
    R.o.create = 0;
    R.db = SU_OPEN(R.dir, &R.o);
    snprintf(R.op, sizeof R.op, "final reopen");
    check_all("after the final reopen");
    CHECK_EQ(mindb_check(R.db, NULL, NULL, NULL), 0);
    CHECK_OK(mindb_close(R.db));

    char line[512];
    size_t o = 0;
    for (int i = 0; i < OP_COUNT; i++)
        o += (size_t)snprintf(line + o, sizeof line - o, "%s%s %ld", i ? ", " : "", g_op_names[i],
                              R.counts[i]);
    tu_note("%s", line);
    tu_note("%ld expected errors, %ld skipped (not pinned down by mindb.h), %zu keys at the end; "
            "%llu checkpoints (explicit ones included), %llu segments compacted",
            R.errors, R.skipped, R.m.n, (unsigned long long)R.checkpoints,
            (unsigned long long)R.compactions);
    sm_free(&R.m);
    free(R.buf);
}

static void test_model(void)
{
    run_model(tu_seed(0x5eed0001), DEFAULT_STEPS, 1);
}

/* The same with checkpoints on the writers' threads only. */
static void test_model_foreground(void)
{
    run_model(tu_seed(0x5eed0001) + 1, DEFAULT_STEPS / 2, 0);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("model", test_model);
    tu_run("model_foreground", test_model_foreground);
    return tu_finish();
}
