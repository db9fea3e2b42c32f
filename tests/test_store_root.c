/*
 * test_store_root.c - the root directory, the empty key: made with every
 * store; the parent of the top-level keys (its nlink, mtime and ctime
 * follow them); its metadata and extended attributes kept across a close,
 * a crash (replay without a checkpoint) and a checkpoint; every call that
 * would remove, replace or rename it refused with the errno a filesystem
 * gives for "/", and nothing logged for it; never a key of a listing, of
 * mindb_stats() or of mindb_check(); and a store made before the root
 * existed (its manifest written here as such a build wrote it) getting
 * one: in memory only when opened read-only, logged at the first writable
 * open.
 */
#include "manifestfile.h"
#include "storeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ROOT "", 0

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Lets the clock move on, so that a change's time differs from the last. */
static void tick(void)
{
    usleep(2000);
}

static struct mindb_stat root_stat_at(int line, mindb *db)
{
    return su_stat_at(__FILE__, line, db, ROOT);
}
#define ROOT_STAT(db) root_stat_at(__LINE__, db)

/* The log since the last checkpoint, as one string of lines. */
struct log_text {
    char text[8192];
    size_t len;
};

static void add_line(void *ctx, uint64_t pos, const char *line)
{
    (void)pos;
    struct log_text *t = ctx;
    int n = snprintf(t->text + t->len, sizeof t->text - t->len, "%s\n", line);
    if (n > 0 && (size_t)n < sizeof t->text - t->len)
        t->len += (size_t)n;
}

static int describe(mindb *db, struct log_text *t)
{
    t->len = 0;
    t->text[0] = 0;
    int n = mindb_describe_log(db, add_line, t);
    CHECKF(n >= 0, "mindb_describe_log returned %d (%s)", n, su_strerror(n));
    return n;
}

static mindb *open_read_only(void)
{
    struct mindb_options o = su_store_opts;
    o.read_only = 1;
    o.create = 0;
    return SU_OPEN(su_store_dir, &o);
}

/* Sets su_store_dir and su_store_opts without opening (for a child that
 * makes the store). */
static void store_setup(void)
{
    su_store_path(su_store_dir, "store");
    su_options(&su_store_opts, 1);
}

/* ---- a new store ---- */

static void new_check(mindb *db, uint64_t id, int64_t made)
{
    struct mindb_stat st = ROOT_STAT(db);
    CHECK_EQ_U(st.id, id);
    CHECK_EQ(st.mode, S_IFDIR | 0755);
    CHECK_EQ(st.uid, geteuid());
    CHECK_EQ(st.gid, getegid());
    CHECK_EQ(st.nlink, 2);
    CHECK_EQ_U(st.size, 0);
    CHECK(st.mtime_ns == made && st.ctime_ns == made && st.atime_ns == made);
    struct mindb_stat by_null;
    CHECK_OK(mindb_stat(db, NULL, 0, &by_null)); /* NULL is the empty key too */
    CHECK_EQ_U(by_null.id, id);
    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 0);
    CHECK_EQ_U(stats.objects, 0);
    size_t n;
    struct su_key *listed = su_list_keys(db, &n);
    su_free_keys(listed, n);
    CHECK_EQ(n, 0);
    listed = su_list_children(db, "", &n);
    su_free_keys(listed, n);
    CHECK_EQ(n, 0);
    CHECK_EQ(mindb_check(db, NULL, NULL, NULL), 0);
}

static void test_new(void)
{
    int64_t before = now_ns();
    mindb *db = su_open_store(1);
    struct mindb_stat st = ROOT_STAT(db);
    CHECK(st.id != 0);
    CHECK(st.mtime_ns >= before && st.mtime_ns <= now_ns());
    new_check(db, st.id, st.mtime_ns);
    /* Made by a logged record, synced before the store became one. */
    struct log_text t;
    CHECK_EQ(describe(db, &t), 1);
    CHECKF(strstr(t.text, "create key=\"\" id=") != NULL, "the log: %s", t.text);

    db = su_reopen_store(db);
    new_check(db, st.id, st.mtime_ns);
    CHECK_OK(mindb_close(db));
    db = open_read_only();
    new_check(db, st.id, st.mtime_ns);
    CHECK_OK(mindb_close(db));
}

/* ---- the parent of the top-level keys ---- */

static void parent_check(mindb *db, uint32_t nlink, int64_t mtime)
{
    struct mindb_stat st = ROOT_STAT(db);
    CHECKF(st.nlink == nlink && st.mtime_ns == mtime && st.ctime_ns == mtime,
           "root: nlink %u mtime %lld ctime %lld, expected %u %lld", st.nlink,
           (long long)st.mtime_ns, (long long)st.ctime_ns, nlink, (long long)mtime);
}

/* The root's times after a change that must have set them, and its nlink. */
static int64_t changed_at(int line, mindb *db, int64_t before, uint32_t nlink)
{
    struct mindb_stat st = root_stat_at(line, db);
    if (st.mtime_ns <= before || st.ctime_ns != st.mtime_ns || st.nlink != nlink)
        tu_failf(__FILE__, line, "root changed",
                 "nlink %u mtime %lld ctime %lld; expected nlink %u and times after %lld", st.nlink,
                 (long long)st.mtime_ns, (long long)st.ctime_ns, nlink, (long long)before);
    return st.mtime_ns;
}
#define CHANGED(db, before, nlink) changed_at(__LINE__, db, before, nlink)

static void test_parent(void)
{
    mindb *db = su_open_store(1);
    int64_t t = ROOT_STAT(db).mtime_ns;
    tick();
    CHECK_OK(mindb_create(db, KEY("d1"), S_IFDIR | 0755, 0, 0, NULL, 0));
    t = CHANGED(db, t, 3);
    /* Deeper down, the root does not change. */
    tick();
    CHECK_OK(mindb_create(db, KEY("d1/sub"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "d1/file", "f");
    parent_check(db, 3, t);
    EXPECT_STAT(db, "d1", S_IFDIR | 0755, 0, 3);
    /* A top-level file: the times, not nlink. */
    tick();
    SU_PUT_STR(db, "f", "x");
    t = CHANGED(db, t, 3);
    tick();
    SU_PUT_STR(db, "f", "replaced");
    t = CHANGED(db, t, 3);
    tick();
    CHECK_OK(mindb_link(db, KEY("f"), KEY("g")));
    t = CHANGED(db, t, 3);
    mindb_file *h = OPEN_FILE(db, "f", 0, 0);
    tick();
    CHECK_OK(mindb_file_link(h, KEY("h")));
    mindb_file_close(h);
    t = CHANGED(db, t, 3);
    tick();
    CHECK_OK(mindb_delete(db, KEY("g")));
    t = CHANGED(db, t, 3);
    /* Directories moving in and out of the top. */
    tick();
    CHECK_OK(mindb_create(db, KEY("d2"), S_IFDIR | 0700, 0, 0, NULL, 0));
    t = CHANGED(db, t, 4);
    tick();
    CHECK_OK(mindb_rename(db, KEY("d2"), KEY("d1/d2"), 0));
    t = CHANGED(db, t, 3);
    EXPECT_STAT(db, "d1", S_IFDIR | 0755, 0, 4);
    tick();
    CHECK_OK(mindb_rename(db, KEY("d1/sub"), KEY("top"), 0));
    t = CHANGED(db, t, 4);
    tick();
    CHECK_OK(mindb_rename(db, KEY("top"), KEY("d1"), MINDB_RENAME_EXCHANGE));
    t = CHANGED(db, t, 4);
    EXPECT_STAT(db, "top", S_IFDIR | 0755, 0, 3); /* the old d1, with d1/d2 now top/d2 */
    tick();
    CHECK_OK(mindb_delete(db, KEY("d1")));
    t = CHANGED(db, t, 3);
    tick();
    CHECK_OK(mindb_create(db, KEY("ln"), S_IFLNK | 0777, 0, 0, KEY("f")));
    t = CHANGED(db, t, 3);
    /* A key starting with '/' has no parent. */
    tick();
    SU_PUT_STR(db, "/abs", "a");
    CHECK_OK(mindb_create(db, KEY("/absdir"), S_IFDIR | 0755, 0, 0, NULL, 0));
    parent_check(db, 3, t);

    db = su_reopen_store(db);
    parent_check(db, 3, t);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    parent_check(db, 3, t);
    EXPECT_STAT(db, "top", S_IFDIR | 0755, 0, 3);
    CHECK_OK(mindb_close(db));
}

/* ---- its metadata and attributes ---- */

static void attrs_check(mindb *db, uint64_t id)
{
    struct mindb_stat st = ROOT_STAT(db);
    CHECK_EQ_U(st.id, id);
    CHECK_EQ(st.mode, S_IFDIR | 0711);
    CHECK_EQ(st.uid, 1234);
    CHECK_EQ(st.gid, 5678);
    CHECK_EQ(st.atime_ns, 1000000000);
    CHECK_EQ(st.mtime_ns, 2000000000);
    EXPECT_XATTR(db, "", "user.a", "A", 1);
    EXPECT_XATTR(db, "", "user.h", "through a handle", 16);
    CHECK_ERR(mindb_getxattr(db, ROOT, "user.b", NULL, 0), -ENODATA);
    char names[64];
    CHECK_EQ(mindb_listxattr(db, NULL, 0, names, sizeof names), 14);
    CHECK((memcmp(names, "user.a\0user.h\0", 14) == 0) ||
          (memcmp(names, "user.h\0user.a\0", 14) == 0));
}

static void test_attrs(void)
{
    mindb *db = su_open_store(1);
    uint64_t id = ROOT_STAT(db).id;
    struct mindb_attr a = {.mode = 0711, .uid = 1234, .gid = 5678, .size = 1};
    a.atime_ns = 1000000000;
    a.mtime_ns = 2000000000;
    CHECK_ERR(mindb_setattr(db, ROOT, &a, MINDB_SET_SIZE), -EISDIR);
    CHECK_OK(mindb_setattr(db, ROOT, &a,
                           MINDB_SET_MODE | MINDB_SET_UID | MINDB_SET_GID | MINDB_SET_ATIME |
                               MINDB_SET_MTIME));
    CHECK_OK(mindb_setxattr(db, ROOT, "user.a", "A", 1, MINDB_XATTR_CREATE));
    CHECK_ERR(mindb_setxattr(db, ROOT, "user.a", "A", 1, MINDB_XATTR_CREATE), -EEXIST);
    CHECK_ERR(mindb_setxattr(db, ROOT, "user.b", "B", 1, MINDB_XATTR_REPLACE), -ENODATA);
    CHECK_OK(mindb_setxattr(db, NULL, 0, "user.b", "B", 1, 0));
    EXPECT_XATTR(db, "", "user.b", "B", 1);
    CHECK_OK(mindb_removexattr(db, ROOT, "user.b"));
    CHECK_ERR(mindb_removexattr(db, ROOT, "user.b"), -ENODATA);

    /* A handle on the root: flags 0 only. */
    mindb_file *f = NULL;
    CHECK_ERR(mindb_file_open(db, ROOT, MINDB_OPEN_CREATE, 0644, &f), -EISDIR);
    CHECK_ERR(mindb_file_open(db, ROOT, MINDB_OPEN_CREATE | MINDB_OPEN_EXCL, 0644, &f), -EEXIST);
    CHECK_ERR(mindb_file_open(db, ROOT, MINDB_OPEN_TRUNC, 0, &f), -EISDIR);
    CHECK_OK(mindb_file_open(db, ROOT, 0, 0, &f));
    struct mindb_stat st;
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ_U(st.id, id);
    char buf[4];
    CHECK_ERR(mindb_pread(f, buf, sizeof buf, 0), -EISDIR);
    CHECK_ERR(mindb_pwrite(f, "x", 1, 0), -EISDIR);
    CHECK_ERR(mindb_truncate(f, 0), -EISDIR);
    CHECK_OK(mindb_file_setxattr(f, "user.h", "through a handle", 16, 0));
    CHECK_OK(mindb_fsync(f));
    mindb_file_close(f);
    CHECK_OK(mindb_file_open(db, NULL, 0, 0, 0, &f));
    mindb_file_close(f);
    CHECK_OK(mindb_sync_key(db, ROOT));
    CHECK_OK(mindb_sync_key(db, NULL, 0));

    attrs_check(db, id);
    db = su_reopen_store(db);
    attrs_check(db, id);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    attrs_check(db, id);
    CHECK_OK(mindb_close(db));
}

/* ---- what is refused ---- */

static void refusals_check(mindb *db, int64_t t)
{
    void *v = NULL;
    size_t len;
    CHECK_ERR(mindb_delete(db, ROOT), -EBUSY);
    CHECK_ERR(mindb_delete(db, NULL, 0), -EBUSY);
    static const unsigned flags[] = {0, MINDB_RENAME_NOREPLACE, MINDB_RENAME_EXCHANGE};
    for (size_t i = 0; i < 3; i++) {
        CHECK_ERR(mindb_rename(db, ROOT, KEY("new"), flags[i]), -EBUSY);
        CHECK_ERR(mindb_rename(db, ROOT, KEY("f"), flags[i]), -EBUSY);
        CHECK_ERR(mindb_rename(db, ROOT, KEY("d"), flags[i]), -EBUSY);
        CHECK_ERR(mindb_rename(db, KEY("f"), ROOT, flags[i]), -EBUSY);
        CHECK_ERR(mindb_rename(db, KEY("d"), ROOT, flags[i]), -EBUSY);
        CHECK_ERR(mindb_rename(db, KEY("missing"), ROOT, flags[i]), -EBUSY);
        CHECK_ERR(mindb_rename(db, ROOT, ROOT, flags[i]), -EBUSY);
    }
    CHECK_ERR(mindb_link(db, KEY("f"), ROOT), -EEXIST);
    CHECK_ERR(mindb_link(db, ROOT, KEY("new")), -EPERM); /* a directory */
    CHECK_ERR(mindb_create(db, ROOT, S_IFDIR | 0755, 0, 0, NULL, 0), -EEXIST);
    CHECK_ERR(mindb_create(db, ROOT, S_IFREG | 0644, 0, 0, NULL, 0), -EEXIST);
    CHECK_ERR(mindb_create(db, ROOT, S_IFLNK | 0777, 0, 0, KEY("f")), -EEXIST);
    CHECK_ERR(mindb_put(db, ROOT, "x", 1), -EISDIR);
    CHECK_ERR(mindb_put(db, NULL, 0, "", 0), -EISDIR);
    size_t big_len = 2 * MiB; /* a large put, which takes another way */
    uint8_t *big = calloc(1, big_len);
    CHECK(big != NULL);
    CHECK_ERR(mindb_put(db, ROOT, big, big_len), -EISDIR);
    free(big);
    CHECK_ERR(mindb_get(db, ROOT, &v, &len), -EISDIR);
    mindb_file *f = OPEN_FILE(db, "f", 0, 0);
    CHECK_ERR(mindb_file_link(f, ROOT), -EEXIST);
    CHECK_ERR(mindb_file_link(f, NULL, 0), -EEXIST);
    mindb_file_close(f);
    /* Nothing happened to it. */
    struct mindb_stat st = ROOT_STAT(db);
    CHECK(st.mode == (S_IFDIR | 0755) && st.nlink == 3 && st.mtime_ns == t && st.ctime_ns == t);
    EXPECT_STR(db, "f", "file");
    EXPECT_STAT(db, "d", S_IFDIR | 0755, 0, 2);
    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 2);
}

static void test_refusals(void)
{
    mindb *db = su_open_store(1);
    SU_PUT_STR(db, "f", "file");
    CHECK_OK(mindb_create(db, KEY("d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    int64_t t = ROOT_STAT(db).mtime_ns;
    struct log_text before, after;
    int records = describe(db, &before);
    refusals_check(db, t);
    /* A refused change is never logged. */
    CHECK_EQ(describe(db, &after), records);
    CHECK(strcmp(before.text, after.text) == 0);
    db = su_reopen_store(db);
    refusals_check(db, t);

    /* On a read-only store, the changes are refused before anything. */
    CHECK_OK(mindb_close(db));
    db = open_read_only();
    CHECK_ERR(mindb_delete(db, ROOT), -EROFS);
    CHECK_ERR(mindb_rename(db, KEY("f"), ROOT, 0), -EROFS);
    struct mindb_attr a = {.mode = 0700};
    CHECK_ERR(mindb_setattr(db, ROOT, &a, MINDB_SET_MODE), -EROFS);
    CHECK_ERR(mindb_setxattr(db, ROOT, "user.a", "A", 1, 0), -EROFS);
    CHECK_OK(mindb_close(db));
}

/* ---- listings, statistics and the check ---- */

static void not_damaged(void *ctx, const void *key, size_t key_len, int err)
{
    (void)ctx;
    tu_failf(__FILE__, __LINE__, "mindb_check", "%s damaged: %s", su_keystr(key, key_len),
             su_strerror(err));
}

static void listing_check(mindb *db)
{
    static const char *const all[] = {"!a", "/abs", "/absdir", "a",   "a/b",
                                      "d",  "d/e",  "d/e/f",   "top", "z"};
    static const char *const top[] = {"!a", "/", "a", "d", "top", "z"};
    size_t n;
    struct su_key *keys = su_list_keys(db, &n);
    CHECK_EQ(n, 10);
    for (size_t i = 0; i < n; i++)
        CHECKF(keys[i].len == strlen(all[i]) && memcmp(keys[i].key, all[i], keys[i].len) == 0,
               "key #%zu is %s, expected %s", i, su_keystr(keys[i].key, keys[i].len), all[i]);
    su_free_keys(keys, n);
    keys = su_list_children(db, "", &n);
    CHECK_EQ(n, 6);
    for (size_t i = 0; i < n; i++)
        CHECKF(keys[i].len == strlen(top[i]) && memcmp(keys[i].key, top[i], keys[i].len) == 0,
               "child #%zu is %s, expected %s", i, su_keystr(keys[i].key, keys[i].len), top[i]);
    su_free_keys(keys, n);

    /* From "" with MINDB_ITER_AFTER, from NULL, and resuming after "". */
    mindb_iter *it;
    const void *k;
    size_t klen;
    struct mindb_stat st;
    CHECK_OK(mindb_iter_open(db, ROOT, NULL, 0, MINDB_ITER_AFTER, &it));
    CHECK_EQ(mindb_iter_next(it, &k, &klen, &st), 1);
    CHECK(klen == 2 && memcmp(k, "!a", 2) == 0);
    mindb_iter_close(it);
    CHECK_OK(mindb_iter_open(db, NULL, 0, "", 0, MINDB_ITER_CHILDREN, &it));
    CHECK_EQ(mindb_iter_next(it, &k, &klen, &st), 1);
    CHECK(klen == 2 && memcmp(k, "!a", 2) == 0);
    mindb_iter_close(it);
    /* mindb_iter_read() before any key: nothing was returned. */
    CHECK_OK(mindb_iter_open(db, ROOT, NULL, 0, 0, &it));
    char buf[8];
    CHECK_ERR(mindb_iter_read(it, buf, sizeof buf, 0), -ENOENT);
    mindb_iter_close(it);

    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 10);
    CHECK_EQ_U(stats.objects, 10);
    CHECK_EQ(mindb_check(db, not_damaged, NULL, NULL), 0);
    /* 2 + "d" and "top"; "/absdir" has no parent. */
    EXPECT_STAT(db, "", S_IFDIR | 0755, 0, 4);
}

static void test_listing(void)
{
    mindb *db = su_open_store(1);
    SU_PUT_STR(db, "z", "z");
    SU_PUT_STR(db, "!a", "!");
    SU_PUT_STR(db, "/abs", "/");
    CHECK_OK(mindb_create(db, KEY("/absdir"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "a", "a");
    SU_PUT_STR(db, "a/b", "b"); /* under a file: the store allows it */
    CHECK_OK(mindb_create(db, KEY("d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("d/e"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "d/e/f", "f");
    CHECK_OK(mindb_create(db, KEY("top"), S_IFDIR | 0755, 0, 0, NULL, 0));
    listing_check(db);
    db = su_reopen_store(db);
    listing_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    listing_check(db);
    CHECK_OK(mindb_close(db));
    db = open_read_only();
    listing_check(db);
    CHECK_OK(mindb_close(db));
}

/* ---- a crash: the root and its changes replayed from the log ---- */

static void crash_changes(mindb *db, void *ctx)
{
    (void)ctx;
    struct mindb_attr a = {.mode = 0750};
    CHECK_OK(mindb_setattr(db, ROOT, &a, MINDB_SET_MODE));
    CHECK_OK(mindb_setxattr(db, ROOT, "user.crash", "kept", 4, 0));
    CHECK_OK(mindb_create(db, KEY("t1"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("t2"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("t1/s"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "f", "file");
    EXPECT_STAT(db, "", S_IFDIR | 0750, 0, 4);
}

static void crash_check(mindb *db, uint64_t id, int64_t t)
{
    struct mindb_stat st = ROOT_STAT(db);
    if (id)
        CHECK_EQ_U(st.id, id);
    CHECK_EQ(st.mode, S_IFDIR | 0750);
    CHECK_EQ(st.nlink, 4);
    if (t)
        CHECK_EQ(st.mtime_ns, t);
    EXPECT_XATTR(db, "", "user.crash", "kept", 4);
    EXPECT_STR(db, "f", "file");
    EXPECT_STAT(db, "t1", S_IFDIR | 0755, 0, 3);
}

static void test_crash(void)
{
    /* The store is made by the child, which never closes it: its root is in
     * the log only, after the first (empty) manifest. */
    store_setup();
    SU_RUN_UNCLOSED(crash_changes, NULL);
    mindb *db = open_read_only();
    struct log_text t;
    describe(db, &t);
    CHECKF(strncmp(t.text, "create key=\"\" id=", 17) == 0, "the log: %s", t.text);
    struct mindb_stat st = ROOT_STAT(db);
    crash_check(db, 0, 0);
    CHECK_OK(mindb_close(db));
    db = SU_OPEN(su_store_dir, &su_store_opts);
    crash_check(db, st.id, st.mtime_ns);
    db = su_reopen_store(db);
    crash_check(db, st.id, st.mtime_ns);
    CHECK_OK(mindb_checkpoint(db));
    CHECK_EQ(describe(db, &t), 0);
    db = su_reopen_store(db);
    crash_check(db, st.id, st.mtime_ns);
    CHECK_OK(mindb_close(db));
}

/* ---- a store made before the root existed ---- */

#define OLD_TIME ((int64_t)1500000000 * 1000000000)

/* Replaces the manifests of the closed store `dir` with one as a build
 * without the root wrote it (docs/FORMAT.md): the same sequence number and
 * log position (the log after it is empty), and the keys "file", "other",
 * "top" and "top/sub" (objects 5 to 8; directories but "file"), without
 * the empty key. The next object id is 9. */
static void make_old_store(const char *dir)
{
    struct mf_body body = {.len = 0};
    mf_object(&body, 5, S_IFREG | 0644, OLD_TIME);
    mf_object(&body, 6, S_IFDIR | 0755, OLD_TIME);
    mf_object(&body, 7, S_IFDIR | 0755, OLD_TIME);
    mf_object(&body, 8, S_IFDIR | 0700, OLD_TIME);
    mf_key(&body, "file", 5);
    mf_key(&body, "other", 6);
    mf_key(&body, "top", 7);
    mf_key(&body, "top/sub", 8);
    mf_replace(dir, &body, 9);
}

static void old_check(mindb *db, uint32_t nlink, uint64_t keys)
{
    struct mindb_stat st = ROOT_STAT(db);
    CHECK_EQ_U(st.id, 9); /* the next id of the manifest */
    CHECK_EQ(st.mode, S_IFDIR | 0755);
    CHECK_EQ(st.uid, geteuid());
    CHECK_EQ(st.gid, getegid());
    CHECK_EQ(st.nlink, nlink);
    EXPECT_STAT(db, "top", S_IFDIR | 0755, 0, 3);
    EXPECT_STAT(db, "file", S_IFREG | 0644, 0, 1);
    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, keys);
    CHECK_EQ_U(stats.objects, keys);
    size_t n;
    struct su_key *listed = su_list_children(db, "", &n);
    su_free_keys(listed, n);
    CHECK_EQ(n, keys - 1);
}

static void old_store_rw(mindb *db, void *ctx)
{
    (void)ctx;
    old_check(db, 4, 4);
    CHECK_OK(mindb_create(db, KEY("third"), S_IFDIR | 0755, 0, 0, NULL, 0));
    EXPECT_STAT(db, "", S_IFDIR | 0755, 0, 5);
}

static void test_old_store(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_close(db));
    make_old_store(su_store_dir);

    /* Read-only: a root in memory, nothing written. */
    char name[64], path[TU_PATH_MAX];
    mf_newest(su_store_dir, name);
    tu_path(path, "store/%s", name);
    uint64_t size = tu_file_size(path);
    for (int i = 0; i < 2; i++) {
        db = open_read_only();
        old_check(db, 4, 4);
        struct log_text t;
        CHECK_EQ(describe(db, &t), 0);
        CHECK_OK(mindb_close(db));
    }
    CHECK_EQ(tu_count_files(su_store_dir, "manifest.", ""), 1);
    CHECK_EQ_U(tu_file_size(path), size);

    /* Writable, in a process that crashes: the root is logged at open. */
    SU_RUN_UNCLOSED(old_store_rw, NULL);
    db = open_read_only();
    struct log_text t;
    CHECK_EQ(describe(db, &t), 2);
    CHECKF(strncmp(t.text, "create key=\"\" id=9 mode=40755", 29) == 0, "the log: %s", t.text);
    old_check(db, 5, 5);
    CHECK_OK(mindb_close(db));
    db = SU_OPEN(su_store_dir, &su_store_opts);
    old_check(db, 5, 5);
    CHECK_EQ(describe(db, &t), 2); /* not made again */
    db = su_reopen_store(db);
    old_check(db, 5, 5);
    CHECK_EQ(describe(db, &t), 0);
    CHECK_OK(mindb_close(db));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("new", test_new);
    tu_run("parent", test_parent);
    tu_run("attrs", test_attrs);
    tu_run("refusals", test_refusals);
    tu_run("listing", test_listing);
    tu_run("crash", test_crash);
    tu_run("old_store", test_old_store);
    return tu_finish();
}
