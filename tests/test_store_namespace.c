/*
 * test_store_namespace.c - the store's namespace, with the exact errors
 * mindb.h promises: creating files, directories and symbolic links,
 * directories over existing children, children listings (small, resumed
 * and very large), renames of files and of directory trees with their
 * flags, and hard links. Each sub-test checks its state again after a
 * close and a reopen.
 */
#include "storeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* One entry of an expected listing: its key, and whether it must be a
 * prefix without a key (S_IFDIR, id 0) or a directory key. */
struct want_entry {
    const char *key;
    int kind; /* 'f' file, 'd' directory key, 'p' prefix without a key */
};

static void expect_listing_at(int line, mindb *db, const char *start, const char *resume,
                              unsigned flags, const struct want_entry *want, size_t count)
{
    mindb_iter *it = NULL;
    int rc = mindb_iter_open(db, KEY(start), resume, resume ? strlen(resume) : 0, flags, &it);
    if (rc != 0)
        tu_failf(__FILE__, line, "mindb_iter_open", "returned %d (%s)", rc, su_strerror(rc));
    for (size_t i = 0;; i++) {
        const void *k;
        size_t klen;
        struct mindb_stat st;
        rc = mindb_iter_next(it, &k, &klen, &st);
        if (rc < 0)
            tu_failf(__FILE__, line, "mindb_iter_next", "returned %d (%s)", rc, su_strerror(rc));
        if (i == count) {
            if (rc != 0)
                tu_failf(__FILE__, line, "listing", "listing %s resume %s: extra key %s after %zu",
                         start, resume ? resume : "-", su_keystr(k, klen), count);
            break;
        }
        if (rc == 0)
            tu_failf(__FILE__, line, "listing",
                     "listing %s resume %s ended after %zu keys, "
                     "expected %zu (next %s)",
                     start, resume ? resume : "-", i, count, want[i].key);
        if (klen != strlen(want[i].key) || memcmp(k, want[i].key, klen) != 0)
            tu_failf(__FILE__, line, "listing", "listing %s resume %s: key #%zu is %s, expected %s",
                     start, resume ? resume : "-", i, su_keystr(k, klen), want[i].key);
        int is_dir = (st.mode & S_IFMT) == S_IFDIR;
        if ((want[i].kind == 'f' && (st.mode & S_IFMT) != S_IFREG) ||
            (want[i].kind != 'f' && !is_dir) || (want[i].kind == 'p' && st.id != 0) ||
            (want[i].kind != 'p' && st.id == 0))
            tu_failf(__FILE__, line, "listing", "%s: mode 0%o id %llu, expected kind %c",
                     want[i].key, st.mode, (unsigned long long)st.id, want[i].kind);
        if (want[i].kind != 'p') {
            struct mindb_stat st2 = su_stat_at(__FILE__, line, db, k, klen);
            if (st2.id != st.id || st2.mode != st.mode || st2.size != st.size)
                tu_failf(__FILE__, line, "listing",
                         "%s: the listing's metadata (id %llu mode 0%o"
                         " size %llu) differs from mindb_stat's (%llu 0%o %llu)",
                         want[i].key, (unsigned long long)st.id, st.mode,
                         (unsigned long long)st.size, (unsigned long long)st2.id, st2.mode,
                         (unsigned long long)st2.size);
        }
    }
    mindb_iter_close(it);
}
#define EXPECT_LISTING(db, start, resume, flags, ...)                                              \
    do {                                                                                           \
        static const struct want_entry want_[] = {__VA_ARGS__};                                    \
        expect_listing_at(__LINE__, db, start, resume, flags, want_,                               \
                          sizeof want_ / sizeof want_[0]);                                         \
    } while (0)
#define EXPECT_EMPTY_LISTING(db, start, resume, flags)                                             \
    expect_listing_at(__LINE__, db, start, resume, flags, NULL, 0)

static void create_check(mindb *db)
{
    struct mindb_stat st = STAT(db, "c/file");
    CHECK_EQ(st.mode, S_IFREG | 0600);
    CHECK_EQ(st.uid, 11);
    CHECK_EQ(st.gid, 22);
    CHECK_EQ(st.size, 0);
    CHECK_EQ(st.nlink, 1);
    EXPECT_VALUE(db, KEY("c/file"), "", 0);
    EXPECT_STAT(db, "c", S_IFDIR | 0755, 0, 3); /* 2 + the subdirectory c/dir */
    EXPECT_STAT(db, "c/dir", S_IFDIR | 0700, 0, 2);
    EXPECT_STAT(db, "c/link", S_IFLNK | 0777, 6, 1);
    EXPECT_STR(db, "c/link", "c/file");
    void *v;
    size_t len;
    CHECK_ERR(mindb_get(db, KEY("c/dir"), &v, &len), -EISDIR);
    CHECK_ERR(mindb_get(db, KEY("c"), &v, &len), -EISDIR);
    CHECK_ERR(mindb_stat(db, KEY("c/gone"), &st), -ENOENT);
}

static void test_create(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_create(db, KEY("c"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("c/file"), S_IFREG | 0600, 11, 22, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("c/dir"), S_IFDIR | 0700, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("c/link"), S_IFLNK | 0777, 0, 0, KEY("c/file")));
    CHECK_OK(mindb_create(db, KEY("c/gone"), S_IFDIR | 0700, 0, 0, NULL, 0));
    EXPECT_STAT(db, "c", S_IFDIR | 0755, 0, 4);
    CHECK_OK(mindb_delete(db, KEY("c/gone"))); /* an empty directory */

    const char *existing[] = {"c", "c/file", "c/dir", "c/link"};
    for (size_t i = 0; i < 4; i++) {
        CHECK_ERR(mindb_create(db, KEY(existing[i]), S_IFREG | 0644, 0, 0, NULL, 0), -EEXIST);
        CHECK_ERR(mindb_create(db, KEY(existing[i]), S_IFDIR | 0755, 0, 0, NULL, 0), -EEXIST);
        CHECK_ERR(mindb_create(db, KEY(existing[i]), S_IFLNK | 0777, 0, 0, KEY("t")), -EEXIST);
    }
    CHECK_ERR(mindb_put(db, KEY("c/dir"), "x", 1), -EISDIR);
    CHECK_ERR(mindb_put(db, KEY("c"), "x", 1), -EISDIR);
    CHECK_ERR(mindb_delete(db, KEY("c")), -ENOTEMPTY);
    SU_PUT_STR(db, "c/dir/inner", "i");
    CHECK_ERR(mindb_delete(db, KEY("c/dir")), -ENOTEMPTY);
    CHECK_OK(mindb_delete(db, KEY("c/dir/inner")));
    CHECK(mindb_create(db, KEY("c/fifo"), S_IFIFO | 0644, 0, 0, NULL, 0) < 0);

    create_check(db);
    db = su_reopen_store(db);
    create_check(db);
    CHECK_OK(mindb_delete(db, KEY("c/dir")));
    EXPECT_STAT(db, "c", S_IFDIR | 0755, 0, 2);
    db = su_reopen_store(db);
    EXPECT_STAT(db, "c", S_IFDIR | 0755, 0, 2);
    CHECK_OK(mindb_close(db));
}

/* A directory made after keys under it (the key-value side allows keys
 * without a directory above them): its nlink counts the subdirectories
 * already there, and deleting them brings it back to 2, never below. */
static void test_mkdir_over_children(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_create(db, KEY("m/s1"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("m/s2"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "m/file", "f");
    CHECK_OK(mindb_create(db, KEY("m"), S_IFDIR | 0755, 0, 0, NULL, 0));
    EXPECT_STAT(db, "m", S_IFDIR | 0755, 0, 4);
    CHECK_ERR(mindb_delete(db, KEY("m")), -ENOTEMPTY);
    CHECK_OK(mindb_delete(db, KEY("m/s1")));
    CHECK_OK(mindb_rename(db, KEY("m/s2"), KEY("top"), 0));
    EXPECT_STAT(db, "m", S_IFDIR | 0755, 0, 2);
    db = su_reopen_store(db);
    EXPECT_STAT(db, "m", S_IFDIR | 0755, 0, 2);
    CHECK_OK(mindb_close(db));
}

static void children_check(mindb *db)
{
    EXPECT_LISTING(db, "a/b/", NULL, MINDB_ITER_CHILDREN, {"a/b/sub", 'd'}, {"a/b/sub!x", 'f'},
                   {"a/b/t/", 'p'}, {"a/b/x", 'f'});
    EXPECT_LISTING(db, "a/", NULL, MINDB_ITER_CHILDREN, {"a/b", 'd'});
    EXPECT_LISTING(db, "a/b/sub/", NULL, MINDB_ITER_CHILDREN, {"a/b/sub/y", 'f'},
                   {"a/b/sub/z/", 'p'});
    EXPECT_LISTING(db, "a/b/t/", NULL, MINDB_ITER_CHILDREN, {"a/b/t/u", 'f'});
    EXPECT_LISTING(db, "", NULL, MINDB_ITER_CHILDREN, {"a", 'd'}, {"p/", 'p'}, {"top1", 'f'});
    EXPECT_EMPTY_LISTING(db, "nothing/", NULL, MINDB_ITER_CHILDREN);
    EXPECT_EMPTY_LISTING(db, "a/b/x/", NULL, MINDB_ITER_CHILDREN);

    /* Resuming after a child, as readdir does with an offset. */
    EXPECT_LISTING(db, "a/b/", "a/b/sub", MINDB_ITER_CHILDREN, {"a/b/sub!x", 'f'}, {"a/b/t/", 'p'},
                   {"a/b/x", 'f'});
    EXPECT_LISTING(db, "a/b/", "a/b/sub!x", MINDB_ITER_CHILDREN, {"a/b/t/", 'p'}, {"a/b/x", 'f'});
    EXPECT_LISTING(db, "a/b/", "a/b/t/", MINDB_ITER_CHILDREN, {"a/b/x", 'f'});
    EXPECT_EMPTY_LISTING(db, "a/b/", "a/b/x", MINDB_ITER_CHILDREN);
    EXPECT_LISTING(db, "", "a", MINDB_ITER_CHILDREN, {"p/", 'p'}, {"top1", 'f'});

    /* Plain iteration visits every key, from `start` on. */
    EXPECT_LISTING(db, "a/b/sub", NULL, 0, {"a/b/sub", 'd'}, {"a/b/sub!x", 'f'}, {"a/b/sub/y", 'f'},
                   {"a/b/sub/z/w", 'f'}, {"a/b/t/u", 'f'}, {"a/b/x", 'f'}, {"p/q", 'f'},
                   {"top1", 'f'});
    EXPECT_LISTING(db, "a/b/sub", NULL, MINDB_ITER_AFTER, {"a/b/sub!x", 'f'}, {"a/b/sub/y", 'f'},
                   {"a/b/sub/z/w", 'f'}, {"a/b/t/u", 'f'}, {"a/b/x", 'f'}, {"p/q", 'f'},
                   {"top1", 'f'});
    EXPECT_LISTING(db, "a/b/t/u", NULL, MINDB_ITER_AFTER, {"a/b/x", 'f'}, {"p/q", 'f'},
                   {"top1", 'f'});
    EXPECT_LISTING(db, "a/b/t", NULL, 0, {"a/b/t/u", 'f'}, {"a/b/x", 'f'}, {"p/q", 'f'},
                   {"top1", 'f'});
    EXPECT_LISTING(db, "", NULL, 0, {"a", 'd'}, {"a/b", 'd'}, {"a/b/sub", 'd'}, {"a/b/sub!x", 'f'},
                   {"a/b/sub/y", 'f'}, {"a/b/sub/z/w", 'f'}, {"a/b/t/u", 'f'}, {"a/b/x", 'f'},
                   {"p/q", 'f'}, {"top1", 'f'});
    EXPECT_EMPTY_LISTING(db, "top1", NULL, MINDB_ITER_AFTER);
    EXPECT_EMPTY_LISTING(db, "z", NULL, 0);
}

static void test_children(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_create(db, KEY("a"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("a/b"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "a/b/x", "x");
    CHECK_OK(mindb_create(db, KEY("a/b/sub"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "a/b/sub/y", "y");
    SU_PUT_STR(db, "a/b/sub/z/w", "w");
    SU_PUT_STR(db, "a/b/t/u", "u");
    SU_PUT_STR(db, "a/b/sub!x", "!");
    SU_PUT_STR(db, "p/q", "q");
    SU_PUT_STR(db, "top1", "1");
    children_check(db);

    /* An iterator sees changes after its position. */
    mindb_iter *it;
    CHECK_OK(mindb_iter_open(db, KEY("a/b/"), NULL, 0, MINDB_ITER_CHILDREN, &it));
    const void *k;
    size_t klen;
    CHECK_EQ(mindb_iter_next(it, &k, &klen, NULL), 1);
    CHECK(klen == 7 && memcmp(k, "a/b/sub", 7) == 0);
    SU_PUT_STR(db, "a/b/w", "w");
    CHECK_OK(mindb_delete(db, KEY("a/b/x")));
    const char *rest[] = {"a/b/sub!x", "a/b/t/", "a/b/w"};
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(mindb_iter_next(it, &k, &klen, NULL), 1);
        CHECKF(klen == strlen(rest[i]) && memcmp(k, rest[i], klen) == 0, "got %s, expected %s",
               su_keystr(k, klen), rest[i]);
    }
    CHECK_EQ(mindb_iter_next(it, &k, &klen, NULL), 0);
    mindb_iter_close(it);
    SU_PUT_STR(db, "a/b/x", "x");
    CHECK_OK(mindb_delete(db, KEY("a/b/w")));

    db = su_reopen_store(db);
    children_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    children_check(db);
    CHECK_OK(mindb_close(db));
}

#define BIG_CHILDREN 20000
#define BIG_DEEP_DIRS 200
#define BIG_DEEP_PER 1000
#define BIG_DEEP_CHILD 10000

static void big_listing_check(mindb *db)
{
    mindb_iter *it;
    CHECK_OK(mindb_iter_open(db, KEY("big/"), NULL, 0, MINDB_ITER_CHILDREN, &it));
    char want[64];
    for (unsigned i = 0; i < BIG_CHILDREN; i++) {
        const void *k;
        size_t klen;
        struct mindb_stat st;
        CHECK_EQ(mindb_iter_next(it, &k, &klen, &st), 1);
        snprintf(want, sizeof want, "big/c%05u", i);
        CHECKF(klen == strlen(want) && memcmp(k, want, klen) == 0, "child #%u is %s", i,
               su_keystr(k, klen));
        CHECK_EQ(st.mode & S_IFMT, i == BIG_DEEP_CHILD ? S_IFDIR : S_IFREG);
    }
    const void *k;
    size_t klen;
    CHECK_EQ(mindb_iter_next(it, &k, &klen, NULL), 0);
    mindb_iter_close(it);

    size_t n;
    struct su_key *keys = su_list_children(db, "big/c10000/", &n);
    CHECK_EQ(n, BIG_DEEP_DIRS);
    for (unsigned i = 0; i < n; i++) {
        snprintf(want, sizeof want, "big/c10000/d%03u/", i);
        CHECKF(keys[i].len == strlen(want) && memcmp(keys[i].key, want, keys[i].len) == 0,
               "child #%u is %s", i, su_keystr(keys[i].key, keys[i].len));
    }
    su_free_keys(keys, n);
    keys = su_list_children(db, "big/c10000/d123/", &n);
    CHECK_EQ(n, BIG_DEEP_PER);
    su_free_keys(keys, n);

    /* Resuming after the child with the deep subtree skips the subtree. */
    mindb_iter *r;
    CHECK_OK(mindb_iter_open(db, KEY("big/"), KEY("big/c10000"), MINDB_ITER_CHILDREN, &r));
    unsigned count = 0;
    while (mindb_iter_next(r, &k, &klen, NULL) == 1) {
        snprintf(want, sizeof want, "big/c%05u", BIG_DEEP_CHILD + 1 + count);
        CHECKF(klen == strlen(want) && memcmp(k, want, klen) == 0, "after resume #%u: %s", count,
               su_keystr(k, klen));
        count++;
    }
    mindb_iter_close(r);
    CHECK_EQ(count, BIG_CHILDREN - BIG_DEEP_CHILD - 1);

    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 2 + BIG_CHILDREN + BIG_DEEP_DIRS * BIG_DEEP_PER);
}

static void test_big_listing(void)
{
    mindb *db = su_open_store(0);
    CHECK_OK(mindb_create(db, KEY("big"), S_IFDIR | 0755, 0, 0, NULL, 0));
    /* Put "aaa" under the top too, so the listing does not start at a
     * boundary. */
    SU_PUT_STR(db, "aaa", "first");
    char key[64];
    for (unsigned i = 0; i < BIG_CHILDREN; i++) {
        snprintf(key, sizeof key, "big/c%05u", i);
        if (i == BIG_DEEP_CHILD)
            CHECK_OK(mindb_create(db, KEY(key), S_IFDIR | 0755, 0, 0, NULL, 0));
        else
            SU_PUT(db, KEY(key), key, strlen(key));
    }
    for (unsigned d = 0; d < BIG_DEEP_DIRS; d++)
        for (unsigned i = 0; i < BIG_DEEP_PER; i++) {
            snprintf(key, sizeof key, "big/c10000/d%03u/k%04u", d, i);
            SU_PUT(db, KEY(key), "", 0);
        }
    big_listing_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    big_listing_check(db);
    CHECK_OK(mindb_close(db));
}

static void rename_files_check(mindb *db, uint64_t id_a, uint64_t id_h, uint64_t id_i)
{
    void *v;
    size_t len;
    EXPECT_STR(db, "r/b", "A");
    CHECK_ERR(mindb_get(db, KEY("r/a"), &v, &len), -ENOENT);
    EXPECT_STR(db, "r/b2", "B");
    EXPECT_STAT(db, "r/b2", S_IFREG | 0644, 1, 1);
    EXPECT_STAT(db, "r/b", S_IFREG | 0644, 1, 1);
    CHECK_EQ_U(STAT(db, "r/b").id, id_a);
    EXPECT_STR(db, "r/d", "C");
    EXPECT_STR(db, "r/e", "E");
    EXPECT_STR(db, "r/f", "F");
    EXPECT_STR(db, "r/j", "J");
    EXPECT_STR(db, "r/g", "E");
    EXPECT_STR(db, "r/h", "I");
    EXPECT_STR(db, "r/i", "H");
    CHECK_EQ_U(STAT(db, "r/h").id, id_i);
    CHECK_EQ_U(STAT(db, "r/i").id, id_h);
    size_t n;
    struct su_key *keys = su_list_children(db, "r/", &n);
    CHECK_EQ(n, 10); /* b b2 d dir e f g h i j */
    su_free_keys(keys, n);
}

static void test_rename_files(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_create(db, KEY("r"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "r/a", "A");
    SU_PUT_STR(db, "r/b", "B");
    CHECK_OK(mindb_link(db, KEY("r/b"), KEY("r/b2")));
    EXPECT_STAT(db, "r/b2", S_IFREG | 0644, 1, 2);
    uint64_t id_a = STAT(db, "r/a").id;

    /* Over a file with a second link: that link keeps the old value. */
    CHECK_OK(mindb_rename(db, KEY("r/a"), KEY("r/b"), 0));
    EXPECT_STAT(db, "r/b2", S_IFREG | 0644, 1, 1);

    /* Over a file without other links: its object is gone. */
    SU_PUT_STR(db, "r/c", "C");
    SU_PUT_STR(db, "r/d", "D");
    uint64_t id_d = STAT(db, "r/d").id;
    CHECK_OK(mindb_rename(db, KEY("r/c"), KEY("r/d"), 0));
    mindb_file *f = NULL;
    CHECK_ERR(mindb_file_open_id(db, id_d, &f), -ENOENT);
    void *v;
    size_t len;
    CHECK_ERR(mindb_get(db, KEY("r/c"), &v, &len), -ENOENT);

    SU_PUT_STR(db, "r/e", "E");
    SU_PUT_STR(db, "r/f", "F");
    CHECK_ERR(mindb_rename(db, KEY("r/e"), KEY("r/f"), MINDB_RENAME_NOREPLACE), -EEXIST);
    EXPECT_STR(db, "r/e", "E");
    EXPECT_STR(db, "r/f", "F");
    CHECK_OK(mindb_rename(db, KEY("r/e"), KEY("r/g"), MINDB_RENAME_NOREPLACE));
    CHECK_ERR(mindb_get(db, KEY("r/e"), &v, &len), -ENOENT);
    SU_PUT_STR(db, "r/e", "E");

    SU_PUT_STR(db, "r/h", "H");
    SU_PUT_STR(db, "r/i", "I");
    uint64_t id_h = STAT(db, "r/h").id, id_i = STAT(db, "r/i").id;
    CHECK_OK(mindb_rename(db, KEY("r/h"), KEY("r/i"), MINDB_RENAME_EXCHANGE));
    CHECK_ERR(mindb_rename(db, KEY("r/h"), KEY("r/nothing"), MINDB_RENAME_EXCHANGE), -ENOENT);
    CHECK_ERR(mindb_rename(db, KEY("r/nothing"), KEY("r/h"), MINDB_RENAME_EXCHANGE), -ENOENT);

    CHECK_ERR(mindb_rename(db, KEY("r/nothing"), KEY("r/other"), 0), -ENOENT);
    CHECK_ERR(mindb_rename(db, KEY("r/nothing"), KEY("r/h"), 0), -ENOENT);
    CHECK_OK(mindb_create(db, KEY("r/dir"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "r/dir/in", "in");
    CHECK_ERR(mindb_rename(db, KEY("r/g"), KEY("r/dir"), 0), -EISDIR);
    CHECK_OK(mindb_delete(db, KEY("r/dir/in")));
    CHECK_ERR(mindb_rename(db, KEY("r/g"), KEY("r/dir"), 0), -EISDIR);
    CHECK_ERR(mindb_rename(db, KEY("r/g"), "", 0, 0), -EBUSY); /* the root */
    /* A file renamed under a new name and back. */
    CHECK_OK(mindb_rename(db, KEY("r/f"), KEY("r/j"), 0));
    SU_PUT_STR(db, "r/j", "J");
    SU_PUT_STR(db, "r/f", "F");

    rename_files_check(db, id_a, id_h, id_i);
    db = su_reopen_store(db);
    rename_files_check(db, id_a, id_h, id_i);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    rename_files_check(db, id_a, id_h, id_i);
    CHECK_OK(mindb_close(db));
}

#define TREE_KEYS 10000

static void tree_key(char *out, size_t size, const char *top, unsigned i)
{
    if (i % 3 == 0)
        snprintf(out, size, "%s/k%05u", top, i);
    else
        snprintf(out, size, "%s/s%02u/k%05u", top, i % 37, i);
}

static void rename_dirs_check(mindb *db, uint64_t id_x, uint64_t id_y)
{
    /* x and y swapped, then y went over the empty e2. */
    EXPECT_STR(db, "x/9", "nine");
    EXPECT_STR(db, "e2/1", "one");
    EXPECT_STR(db, "e2/2/3", "three");
    CHECK_EQ_U(STAT(db, "x").id, id_y);
    CHECK_EQ_U(STAT(db, "e2").id, id_x);
    EXPECT_STAT(db, "e2", S_IFDIR | 0700, 0, 3);
    EXPECT_STAT(db, "x", S_IFDIR | 0750, 0, 2);
    struct mindb_stat st;
    CHECK_ERR(mindb_stat(db, KEY("y"), &st), -ENOENT);
    CHECK_ERR(mindb_stat(db, KEY("e1"), &st), -ENOENT);
    CHECK_ERR(mindb_stat(db, KEY("x/1"), &st), -ENOENT);

    /* The big tree moved whole. */
    CHECK_ERR(mindb_stat(db, KEY("src"), &st), -ENOENT);
    mindb_iter *it;
    CHECK_OK(mindb_iter_open(db, KEY("src"), NULL, 0, 0, &it));
    const void *k;
    size_t klen;
    int rc = mindb_iter_next(it, &k, &klen, NULL);
    CHECKF(rc == 0 || klen < 4 || memcmp(k, "src/", 4) != 0, "key %s left behind",
           su_keystr(k, klen));
    mindb_iter_close(it);
    char key[64], rel[64];
    uint8_t value[300];
    for (unsigned i = 0; i < TREE_KEYS; i++) {
        tree_key(key, sizeof key, "dst", i);
        tree_key(rel, sizeof rel, "", i);
        size_t len = 40 + i % 200;
        su_value(value, len, su_key_hash(KEY(rel)), i);
        EXPECT_VALUE(db, KEY(key), value, len);
    }
    size_t n;
    struct su_key *keys = su_list_keys(db, &n);
    size_t under_dst = 0;
    for (size_t i = 0; i < n; i++)
        under_dst += keys[i].len > 4 && memcmp(keys[i].key, "dst/", 4) == 0;
    su_free_keys(keys, n);
    CHECK_EQ(under_dst, TREE_KEYS + 37);
    EXPECT_STAT(db, "dst", S_IFDIR | 0755, 0, 2 + 37);
}

static void test_rename_dirs(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_create(db, KEY("x"), S_IFDIR | 0700, 0, 0, NULL, 0));
    SU_PUT_STR(db, "x/1", "one");
    CHECK_OK(mindb_create(db, KEY("x/2"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "x/2/3", "three");
    CHECK_OK(mindb_create(db, KEY("y"), S_IFDIR | 0750, 0, 0, NULL, 0));
    SU_PUT_STR(db, "y/9", "nine");
    uint64_t id_x = STAT(db, "x").id, id_y = STAT(db, "y").id;
    EXPECT_STAT(db, "x", S_IFDIR | 0700, 0, 3);

    CHECK_OK(mindb_rename(db, KEY("x"), KEY("y"), MINDB_RENAME_EXCHANGE));
    EXPECT_STR(db, "y/1", "one");
    EXPECT_STR(db, "y/2/3", "three");
    EXPECT_STR(db, "x/9", "nine");
    void *v;
    size_t len;
    CHECK_ERR(mindb_get(db, KEY("x/1"), &v, &len), -ENOENT);
    CHECK_ERR(mindb_get(db, KEY("y/9"), &v, &len), -ENOENT);
    CHECK_EQ_U(STAT(db, "y").id, id_x);

    CHECK_ERR(mindb_rename(db, KEY("x"), KEY("y"), 0), -ENOTEMPTY);
    CHECK_ERR(mindb_rename(db, KEY("y"), KEY("x"), 0), -ENOTEMPTY);
    CHECK_ERR(mindb_rename(db, KEY("y"), KEY("y/2/new"), 0), -EINVAL);
    CHECK_ERR(mindb_rename(db, KEY("y"), KEY("y/new"), 0), -EINVAL);
    SU_PUT_STR(db, "file1", "f");
    CHECK_ERR(mindb_rename(db, KEY("y"), KEY("file1"), 0), -ENOTDIR);
    CHECK_ERR(mindb_rename(db, KEY("file1"), KEY("y"), 0), -EISDIR);
    CHECK_ERR(mindb_rename(db, KEY("nodir"), KEY("z"), 0), -ENOENT);
    CHECK_OK(mindb_create(db, KEY("e1"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("e2"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_ERR(mindb_rename(db, KEY("y"), KEY("e1"), MINDB_RENAME_NOREPLACE), -EEXIST);
    /* Over an empty directory. */
    CHECK_OK(mindb_rename(db, KEY("y"), KEY("e2"), 0));
    CHECK_OK(mindb_delete(db, KEY("e1")));
    CHECK_OK(mindb_delete(db, KEY("file1")));

    /* 10,000 keys under a directory move in one rename. */
    CHECK_OK(mindb_create(db, KEY("src"), S_IFDIR | 0755, 0, 0, NULL, 0));
    char key[64], rel[64];
    for (unsigned s = 0; s < 37; s++) {
        snprintf(key, sizeof key, "src/s%02u", s);
        CHECK_OK(mindb_create(db, KEY(key), S_IFDIR | 0755, 0, 0, NULL, 0));
    }
    uint8_t value[300];
    for (unsigned i = 0; i < TREE_KEYS; i++) {
        tree_key(key, sizeof key, "src", i);
        tree_key(rel, sizeof rel, "", i);
        size_t vlen = 40 + i % 200;
        su_value(value, vlen, su_key_hash(KEY(rel)), i);
        SU_PUT(db, KEY(key), value, vlen);
    }
    CHECK_OK(mindb_rename(db, KEY("src"), KEY("dst"), 0));
    CHECK_ERR(mindb_rename(db, KEY("dst"), KEY("dst/s01/x"), 0), -EINVAL);

    rename_dirs_check(db, id_x, id_y);
    db = su_reopen_store(db);
    rename_dirs_check(db, id_x, id_y);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    rename_dirs_check(db, id_x, id_y);
    CHECK_OK(mindb_close(db));
}

static void links_check(mindb *db)
{
    EXPECT_STR(db, "l/g", "DAta");
    EXPECT_STR(db, "l/h", "DAta");
    EXPECT_STR(db, "l/new", "new");
    EXPECT_STAT(db, "l/g", S_IFREG | 0644, 4, 2);
    EXPECT_STAT(db, "l/h", S_IFREG | 0644, 4, 2);
    EXPECT_STAT(db, "l/new", S_IFREG | 0644, 3, 1);
    CHECK_EQ_U(STAT(db, "l/g").id, STAT(db, "l/h").id);
    CHECK(STAT(db, "l/new").id != STAT(db, "l/g").id);
    struct mindb_stat st;
    CHECK_ERR(mindb_stat(db, KEY("l/f"), &st), -ENOENT);
}

static void test_links(void)
{
    mindb *db = su_open_store(1);
    SU_PUT_STR(db, "l/f", "data");
    CHECK_OK(mindb_link(db, KEY("l/f"), KEY("l/g")));
    EXPECT_STAT(db, "l/f", S_IFREG | 0644, 4, 2);
    EXPECT_STAT(db, "l/g", S_IFREG | 0644, 4, 2);
    CHECK_EQ_U(STAT(db, "l/f").id, STAT(db, "l/g").id);
    EXPECT_STR(db, "l/g", "data");

    /* A write through one name shows through the other. */
    mindb_file *f = OPEN_FILE(db, "l/g", 0, 0);
    PWRITE(f, "DA", 2, 0);
    mindb_file_close(f);
    EXPECT_STR(db, "l/f", "DAta");
    struct mindb_attr a = {.mode = 0600};
    CHECK_OK(mindb_setattr(db, KEY("l/f"), &a, MINDB_SET_MODE));
    EXPECT_STAT(db, "l/g", S_IFREG | 0600, 4, 2);
    a.mode = 0644;
    CHECK_OK(mindb_setattr(db, KEY("l/g"), &a, MINDB_SET_MODE));

    CHECK_OK(mindb_delete(db, KEY("l/f")));
    EXPECT_STAT(db, "l/g", S_IFREG | 0644, 4, 1);
    EXPECT_STR(db, "l/g", "DAta");

    CHECK_OK(mindb_create(db, KEY("l/d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_ERR(mindb_link(db, KEY("l/d"), KEY("l/d2")), -EPERM);
    CHECK_ERR(mindb_link(db, KEY("l/g"), KEY("l/d")), -EEXIST);
    CHECK_ERR(mindb_link(db, KEY("l/g"), KEY("l/g")), -EEXIST);
    CHECK_ERR(mindb_link(db, KEY("l/missing"), KEY("l/m2")), -ENOENT);
    CHECK_ERR(mindb_link(db, KEY("l/g"), "", 0), -EEXIST); /* the root */
    CHECK_OK(mindb_delete(db, KEY("l/d")));

    /* A put replaces the object of its key only. */
    CHECK_OK(mindb_link(db, KEY("l/g"), KEY("l/h")));
    CHECK_OK(mindb_link(db, KEY("l/g"), KEY("l/new")));
    SU_PUT_STR(db, "l/new", "new");
    links_check(db);
    db = su_reopen_store(db);
    links_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    links_check(db);
    CHECK_OK(mindb_close(db));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("create", test_create);
    tu_run("mkdir_over_children", test_mkdir_over_children);
    tu_run("children", test_children);
    tu_run("big_listing", test_big_listing);
    tu_run("rename_files", test_rename_files);
    tu_run("rename_dirs", test_rename_dirs);
    tu_run("links", test_links);
    return tu_finish();
}
