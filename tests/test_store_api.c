/*
 * test_store_api.c - the store's API at its edges, with the exact errors
 * mindb.h promises: opening and locking, keys (empty, longest, binary,
 * ordering), namespace operations (create, delete, rename with its flags,
 * links), children listings, handles on deleted objects, extended
 * attributes, attributes and times, truncation, sparse and chunk-crossing
 * writes, read-only stores, sizes on disk and stats. Each sub-test checks
 * its state again after a close and a reopen.
 */
#include "storeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define GiB (1024ull * 1024 * 1024)

static char g_store[TU_PATH_MAX];
static struct mindb_options g_opts;

/* What a change may add above the dirty bound: one chunk's buffer. */
#define CHUNK_SLACK (64 << 10)

static mindb *open_store(int small)
{
    su_store_path(g_store, "store");
    su_options(&g_opts, small);
    return SU_OPEN(g_store, &g_opts);
}

static mindb *reopen(mindb *db)
{
    return SU_REOPEN(db, g_store, &g_opts);
}

static struct mindb_stat stat_ok_at(int line, mindb *db, const void *key, size_t len)
{
    struct mindb_stat st;
    int rc = mindb_stat(db, key, len, &st);
    if (rc != 0)
        tu_failf(__FILE__, line, "mindb_stat", "stat %s returned %d (%s)", su_keystr(key, len), rc,
                 su_strerror(rc));
    return st;
}
#define STAT(db, k) stat_ok_at(__LINE__, db, KEY(k))

static void expect_stat_at(int line, mindb *db, const char *key, uint32_t mode, uint64_t size,
                           uint32_t nlink)
{
    struct mindb_stat st = stat_ok_at(line, db, KEY(key));
    if (st.mode != mode || st.size != size || st.nlink != nlink)
        tu_failf(__FILE__, line, "stat", "%s: mode 0%o size %llu nlink %u, expected 0%o %llu %u",
                 key, st.mode, (unsigned long long)st.size, st.nlink, mode,
                 (unsigned long long)size, nlink);
}
#define EXPECT_STAT(db, k, mode, size, nlink) expect_stat_at(__LINE__, db, k, mode, size, nlink)

static mindb_file *open_file_at(int line, mindb *db, const char *key, unsigned flags, uint32_t mode)
{
    mindb_file *f = NULL;
    int rc = mindb_file_open(db, KEY(key), flags, mode, &f);
    if (rc != 0 || !f)
        tu_failf(__FILE__, line, "mindb_file_open", "open %s returned %d (%s)", key, rc,
                 su_strerror(rc));
    return f;
}
#define OPEN_FILE(db, k, flags, mode) open_file_at(__LINE__, db, k, flags, mode)

static void pwrite_ok_at(int line, mindb_file *f, const void *buf, size_t len, uint64_t off)
{
    ssize_t n = mindb_pwrite(f, buf, len, off);
    if (n != (ssize_t)len)
        tu_failf(__FILE__, line, "mindb_pwrite", "pwrite of %zu at %llu returned %zd (%s)", len,
                 (unsigned long long)off, n, su_strerror(n < 0 ? n : 0));
}
#define PWRITE(f, buf, len, off) pwrite_ok_at(__LINE__, f, buf, len, off)

/* Reads [off, off + len) through `f` and compares it with `want` (which
 * holds `want_len` bytes: a read at the end returns fewer). */
static void expect_pread_at(int line, mindb_file *f, uint64_t off, size_t len, const void *want,
                            size_t want_len)
{
    uint8_t *buf = malloc(len + 1);
    CHECK(buf != NULL);
    ssize_t n = mindb_pread(f, buf, len, off);
    if (n != (ssize_t)want_len)
        tu_failf(__FILE__, line, "mindb_pread", "pread of %zu at %llu returned %zd, expected %zu",
                 len, (unsigned long long)off, n, want_len);
    if (want_len && memcmp(buf, want, want_len) != 0) {
        size_t at = 0;
        while (buf[at] == ((const uint8_t *)want)[at])
            at++;
        tu_failf(__FILE__, line, "mindb_pread", "pread of %zu at %llu differs at byte %zu", len,
                 (unsigned long long)off, at);
    }
    free(buf);
}
#define EXPECT_PREAD(f, off, len, want, want_len)                                                  \
    expect_pread_at(__LINE__, f, off, len, want, want_len)

static void expect_zeros_at(int line, mindb_file *f, uint64_t off, size_t len)
{
    uint8_t *zeros = calloc(1, len);
    CHECK(zeros != NULL);
    expect_pread_at(line, f, off, len, zeros, len);
    free(zeros);
}
#define EXPECT_ZEROS(f, off, len) expect_zeros_at(__LINE__, f, off, len)

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
            struct mindb_stat st2 = stat_ok_at(line, db, k, klen);
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

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- opening ---- */

static void test_open_errors(void)
{
    struct mindb_options o;
    su_options(&o, 1);
    mindb *db = NULL;
    char dir[TU_PATH_MAX];

    /* A missing directory without `create`. */
    o.create = 0;
    tu_path(dir, "missing");
    int rc = mindb_open(dir, &o, &db);
    CHECKF(rc == -ENOENT || rc == MINDB_ENOTSTORE, "open of a missing directory returned %d (%s)",
           rc, su_strerror(rc));
    CHECK(!tu_exists(dir));

    /* An empty directory without `create` is not a store. */
    tu_path(dir, "empty");
    CHECK(mkdir(dir, 0755) == 0);
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_ENOTSTORE);

    /* A directory holding something else is never made a store. */
    tu_path(dir, "other");
    CHECK(mkdir(dir, 0755) == 0);
    char file[TU_PATH_MAX];
    tu_path(file, "other/hello");
    int fd = open(file, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "hello", 5) == 5);
    close(fd);
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_ENOTSTORE);
    o.create = 1;
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_ENOTSTORE);
    CHECK_EQ(tu_count_files(dir, "", ""), 3); /* ".", ".." and hello */

    /* A regular file as the store directory. */
    CHECK(mindb_open(file, &o, &db) < 0);

    /* `create` makes a missing directory and an empty one stores. */
    tu_path(dir, "new/store");
    tu_path(file, "new");
    CHECK(mkdir(file, 0755) == 0);
    db = SU_OPEN(dir, &o);
    SU_PUT_STR(db, "k", "v");
    CHECK_OK(mindb_close(db));
    o.create = 0;
    db = SU_OPEN(dir, &o);
    EXPECT_STR(db, "k", "v");
    CHECK_OK(mindb_close(db));

    tu_path(dir, "empty");
    o.create = 1;
    db = SU_OPEN(dir, &o);
    CHECK_OK(mindb_close(db));
    o.create = 0;
    db = SU_OPEN(dir, &o);
    CHECK_OK(mindb_close(db));

    /* Error texts and the version. */
    const int codes[] = {MINDB_ENOTSTORE, MINDB_EVERSION, MINDB_ECORRUPT, -ENOENT, -EBUSY};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = mindb_strerror(codes[i]);
        CHECKF(s && *s, "mindb_strerror(%d)", codes[i]);
        for (size_t j = 0; j < i; j++)
            CHECKF(strcmp(s, mindb_strerror(codes[j])) != 0, "%d and %d have one text: %s",
                   codes[i], codes[j], s);
    }
    unsigned major, minor, patch;
    CHECK(mindb_version() && sscanf(mindb_version(), "%u.%u.%u", &major, &minor, &patch) == 3);
}

static void test_lock(void)
{
    mindb *db = open_store(1);
    SU_PUT_STR(db, "k", "v");
    CHECK_EQ(mindb_lock_holder(g_store), getpid());
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        struct mindb_options o;
        su_options(&o, 1);
        o.create = 0;
        mindb *other = NULL;
        CHECK_ERR(mindb_open(g_store, &o, &other), -EBUSY);
        CHECK_EQ(mindb_lock_holder(g_store), getppid());
        o.read_only = 1;
        CHECK_ERR(mindb_open(g_store, &o, &other), -EBUSY);
        o.create = 1;
        o.read_only = 0;
        CHECK_ERR(mindb_open(g_store, &o, &other), -EBUSY);
        _exit(0);
    }
    int ws;
    CHECK(waitpid(child, &ws, 0) == child);
    CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the child ended with status 0x%x", ws);
    /* The refused opens changed nothing. */
    EXPECT_STR(db, "k", "v");
    CHECK_OK(mindb_close(db));
    CHECK_EQ(mindb_lock_holder(g_store), 0);

    /* Once closed, another process opens it. */
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        struct mindb_options o;
        su_options(&o, 1);
        mindb *other = SU_OPEN(g_store, &o);
        EXPECT_STR(other, "k", "v");
        CHECK_EQ(mindb_lock_holder(g_store), getpid());
        CHECK_OK(mindb_close(other));
        _exit(0);
    }
    CHECK(waitpid(child, &ws, 0) == child);
    CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the child ended with status 0x%x", ws);
}

/* ---- keys ---- */

static void make_long_key(char *k, size_t len)
{
    for (size_t i = 0; i < len; i++)
        k[i] = (char)('a' + i % 26);
    memcpy(k, "long/", 5);
}

static const char *const g_order[] = {"ord/a", "ord/a!x", "ord/a/b",  "ord/a0",
                                      "ord/b", "ord/~",   "ord/\x80", "ord/\xff"};

static void keys_check(mindb *db)
{
    EXPECT_VALUE(db, KEY("empty"), "", 0);
    EXPECT_STAT(db, "empty", S_IFREG | 0644, 0, 1);

    char k[MINDB_MAX_KEY + 1];
    make_long_key(k, sizeof k);
    EXPECT_VALUE(db, k, MINDB_MAX_KEY, "long", 4);
    struct mindb_stat st;
    CHECK_ERR(mindb_stat(db, k, MINDB_MAX_KEY + 1, &st), -ENAMETOOLONG);

    /* Every byte value, NUL included, in a key; ordered unsigned. */
    for (unsigned b = 0; b < 256; b++) {
        uint8_t key[5] = {'b', 'i', 'n', (uint8_t)b, 'x'}, v = (uint8_t)b;
        EXPECT_VALUE(db, key, sizeof key, &v, 1);
    }
    mindb_iter *it;
    CHECK_OK(mindb_iter_open(db, "bin", 3, NULL, 0, 0, &it));
    for (unsigned b = 0; b < 256; b++) {
        const void *key;
        size_t len;
        CHECK_EQ(mindb_iter_next(it, &key, &len, NULL), 1);
        uint8_t want[5] = {'b', 'i', 'n', (uint8_t)b, 'x'};
        CHECKF(len == 5 && memcmp(key, want, 5) == 0, "key #%u of the binary keys is %s", b,
               su_keystr(key, len));
    }
    mindb_iter_close(it);
    uint8_t all[256];
    for (unsigned b = 0; b < 256; b++)
        all[b] = (uint8_t)b;
    EXPECT_VALUE(db, all, sizeof all, "all", 3);
    EXPECT_VALUE(db, "\0", 1, "nul", 3);
    EXPECT_VALUE(db, "\0\0", 2, "nulnul", 6);

    /* Bytewise order, '/' no different from other bytes. */
    CHECK_OK(mindb_iter_open(db, "ord/", 4, NULL, 0, 0, &it));
    for (size_t i = 0; i < sizeof g_order / sizeof g_order[0]; i++) {
        const void *key;
        size_t len;
        CHECK_EQ(mindb_iter_next(it, &key, &len, NULL), 1);
        CHECKF(len == strlen(g_order[i]) && memcmp(key, g_order[i], len) == 0,
               "key #%zu is %s, expected %s", i, su_keystr(key, len), su_keystr(KEY(g_order[i])));
    }
    const void *key;
    size_t len;
    int rc = mindb_iter_next(it, &key, &len, NULL);
    CHECK(rc == 0 || (rc == 1 && (len < 4 || memcmp(key, "ord/", 4) != 0)));
    mindb_iter_close(it);

    EXPECT_STR(db, "over", "second");
    void *v;
    CHECK_ERR(mindb_get(db, KEY("missing"), &v, &len), -ENOENT);
    CHECK_ERR(mindb_get(db, KEY("gone"), &v, &len), -ENOENT);
    CHECK_ERR(mindb_stat(db, KEY("gone"), &st), -ENOENT);
    CHECK_ERR(mindb_delete(db, KEY("missing")), -ENOENT);

    uint8_t *big = malloc(MiB + 7);
    CHECK(big != NULL);
    su_fill(big, MiB + 7, 99);
    EXPECT_VALUE(db, KEY("big"), big, MiB + 7);
    free(big);
}

static void test_keys(void)
{
    mindb *db = open_store(1);
    SU_PUT(db, KEY("empty"), "", 0);
    SU_PUT(db, KEY("empty"), "", 0);

    char k[MINDB_MAX_KEY + 1];
    make_long_key(k, sizeof k);
    SU_PUT(db, k, MINDB_MAX_KEY, "long", 4);
    CHECK_ERR(mindb_put(db, k, MINDB_MAX_KEY + 1, "x", 1), -ENAMETOOLONG);
    void *v = NULL;
    size_t len;
    CHECK_ERR(mindb_get(db, k, MINDB_MAX_KEY + 1, &v, &len), -ENAMETOOLONG);
    CHECK_ERR(mindb_delete(db, k, MINDB_MAX_KEY + 1), -ENAMETOOLONG);
    CHECK_ERR(mindb_create(db, k, MINDB_MAX_KEY + 1, S_IFDIR | 0755, 0, 0, NULL, 0), -ENAMETOOLONG);

    /* The empty key. */
    CHECK_ERR(mindb_put(db, "", 0, "x", 1), -EINVAL);
    CHECK_ERR(mindb_get(db, "", 0, &v, &len), -EINVAL);
    CHECK_ERR(mindb_delete(db, "", 0), -EINVAL);
    struct mindb_stat st;
    CHECK_ERR(mindb_stat(db, "", 0, &st), -EINVAL);
    CHECK_ERR(mindb_create(db, "", 0, S_IFDIR | 0755, 0, 0, NULL, 0), -EINVAL);

    for (unsigned b = 256; b-- > 0;) {
        uint8_t key[5] = {'b', 'i', 'n', (uint8_t)b, 'x'}, val = (uint8_t)b;
        SU_PUT(db, key, sizeof key, &val, 1);
    }
    uint8_t all[256];
    for (unsigned b = 0; b < 256; b++)
        all[b] = (uint8_t)b;
    SU_PUT(db, all, sizeof all, "all", 3);
    SU_PUT(db, "\0", 1, "nul", 3);
    SU_PUT(db, "\0\0", 2, "nulnul", 6);
    for (size_t i = sizeof g_order / sizeof g_order[0]; i-- > 0;)
        SU_PUT_STR(db, g_order[i], "o");

    SU_PUT_STR(db, "over", "first");
    SU_PUT_STR(db, "over", "second");
    SU_PUT_STR(db, "gone", "soon");
    CHECK_OK(mindb_delete(db, KEY("gone")));
    CHECK_ERR(mindb_delete(db, KEY("gone")), -ENOENT);

    uint8_t *big = malloc(MiB + 7);
    CHECK(big != NULL);
    su_fill(big, MiB + 7, 98);
    SU_PUT(db, KEY("big"), big, MiB + 7);
    su_fill(big, MiB + 7, 99);
    SU_PUT(db, KEY("big"), big, MiB + 7);
    free(big);

    keys_check(db);
    db = reopen(db);
    keys_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
    keys_check(db);
    CHECK_OK(mindb_close(db));
}

/* ---- namespace ---- */

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
    mindb *db = open_store(1);
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
    db = reopen(db);
    create_check(db);
    CHECK_OK(mindb_delete(db, KEY("c/dir")));
    EXPECT_STAT(db, "c", S_IFDIR | 0755, 0, 2);
    db = reopen(db);
    EXPECT_STAT(db, "c", S_IFDIR | 0755, 0, 2);
    CHECK_OK(mindb_close(db));
}

/* A directory made after keys under it (the key-value side allows keys
 * without a directory above them): its nlink counts the subdirectories
 * already there, and deleting them brings it back to 2, never below. */
static void test_mkdir_over_children(void)
{
    mindb *db = open_store(1);
    CHECK_OK(mindb_create(db, KEY("m/s1"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("m/s2"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "m/file", "f");
    CHECK_OK(mindb_create(db, KEY("m"), S_IFDIR | 0755, 0, 0, NULL, 0));
    EXPECT_STAT(db, "m", S_IFDIR | 0755, 0, 4);
    CHECK_ERR(mindb_delete(db, KEY("m")), -ENOTEMPTY);
    CHECK_OK(mindb_delete(db, KEY("m/s1")));
    CHECK_OK(mindb_rename(db, KEY("m/s2"), KEY("top"), 0));
    EXPECT_STAT(db, "m", S_IFDIR | 0755, 0, 2);
    db = reopen(db);
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
    mindb *db = open_store(1);
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

    db = reopen(db);
    children_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
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
    mindb *db = open_store(0);
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
    db = reopen(db);
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
    mindb *db = open_store(1);
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
    CHECK_ERR(mindb_rename(db, KEY("r/g"), "", 0, 0), -EINVAL);
    /* A file renamed under a new name and back. */
    CHECK_OK(mindb_rename(db, KEY("r/f"), KEY("r/j"), 0));
    SU_PUT_STR(db, "r/j", "J");
    SU_PUT_STR(db, "r/f", "F");

    rename_files_check(db, id_a, id_h, id_i);
    db = reopen(db);
    rename_files_check(db, id_a, id_h, id_i);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
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
    mindb *db = open_store(1);
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
    db = reopen(db);
    rename_dirs_check(db, id_x, id_y);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
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
    mindb *db = open_store(1);
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
    CHECK_ERR(mindb_link(db, KEY("l/g"), "", 0), -EINVAL);
    CHECK_OK(mindb_delete(db, KEY("l/d")));

    /* A put replaces the object of its key only. */
    CHECK_OK(mindb_link(db, KEY("l/g"), KEY("l/h")));
    CHECK_OK(mindb_link(db, KEY("l/g"), KEY("l/new")));
    SU_PUT_STR(db, "l/new", "new");
    links_check(db);
    db = reopen(db);
    links_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
    links_check(db);
    CHECK_OK(mindb_close(db));
}

#define ORPHAN_LEN (100 * 1000)

static void handles_check(mindb *db, uint64_t orphan_id)
{
    EXPECT_STR(db, "h/r2", "rename-survivor");
    EXPECT_STAT(db, "h/new", S_IFREG | 0640, 0, 1);
    EXPECT_STAT(db, "h/trunc", S_IFREG | 0644, 0, 1);
    EXPECT_STR(db, "h/excl", "e");
    mindb_file *f = NULL;
    CHECK_ERR(mindb_file_open_id(db, orphan_id, &f), -ENOENT);
    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 4);
    CHECK_EQ_U(stats.objects, 4);
}

static void test_handles(void)
{
    mindb *db = open_store(1);
    uint8_t *value = malloc(ORPHAN_LEN);
    CHECK(value != NULL);
    su_value(value, ORPHAN_LEN, 1, 2);
    SU_PUT(db, KEY("h/f"), value, ORPHAN_LEN);
    uint64_t id = STAT(db, "h/f").id;

    mindb_file *f = OPEN_FILE(db, "h/f", 0, 0);
    CHECK_OK(mindb_delete(db, KEY("h/f")));
    void *v;
    size_t len;
    CHECK_ERR(mindb_get(db, KEY("h/f"), &v, &len), -ENOENT);
    EXPECT_PREAD(f, 0, ORPHAN_LEN + 10, value, ORPHAN_LEN);
    PWRITE(f, "orphan", 6, 50);
    memcpy(value + 50, "orphan", 6);
    EXPECT_PREAD(f, 0, ORPHAN_LEN, value, ORPHAN_LEN);
    struct mindb_stat st;
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ(st.nlink, 0);
    CHECK_EQ_U(st.size, ORPHAN_LEN);
    CHECK_EQ_U(st.id, id);
    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 0);
    CHECK_EQ_U(stats.objects, 1);

    /* Reachable by id while a handle holds it, through a checkpoint. */
    CHECK_OK(mindb_checkpoint(db));
    mindb_file *g = NULL;
    CHECK_OK(mindb_file_open_id(db, id, &g));
    EXPECT_PREAD(g, 0, ORPHAN_LEN, value, ORPHAN_LEN);
    mindb_file_close(f);
    EXPECT_PREAD(g, 40, 20, value + 40, 20);
    CHECK_OK(mindb_fsync(g));
    mindb_file_close(g);
    CHECK_ERR(mindb_file_open_id(db, id, &g), -ENOENT);
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.objects, 0);
    free(value);

    /* Open flags. */
    CHECK_ERR(mindb_file_open(db, KEY("h/new"), 0, 0, &f), -ENOENT);
    f = OPEN_FILE(db, "h/new", MINDB_OPEN_CREATE | MINDB_OPEN_EXCL, 0640);
    mindb_file_close(f);
    CHECK_ERR(mindb_file_open(db, KEY("h/new"), MINDB_OPEN_CREATE | MINDB_OPEN_EXCL, 0640, &f),
              -EEXIST);
    f = OPEN_FILE(db, "h/new", MINDB_OPEN_CREATE, 0600); /* exists: mode unchanged */
    mindb_file_close(f);
    SU_PUT_STR(db, "h/trunc", "to be emptied");
    f = OPEN_FILE(db, "h/trunc", MINDB_OPEN_TRUNC, 0);
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ_U(st.size, 0);
    mindb_file_close(f);
    f = OPEN_FILE(db, "h/excl", MINDB_OPEN_CREATE | MINDB_OPEN_EXCL, 0644);
    CHECK_EQ(mindb_append(f, "e", 1), 1);
    mindb_file_close(f);
    CHECK_OK(mindb_create(db, KEY("h/dir"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_ERR(mindb_file_open(db, KEY("h/dir"), MINDB_OPEN_CREATE | MINDB_OPEN_EXCL, 0644, &f),
              -EEXIST);
    CHECK_OK(mindb_delete(db, KEY("h/dir")));

    /* A handle follows its object through a rename. */
    SU_PUT_STR(db, "h/r", "rename-xxxxxxxx");
    f = OPEN_FILE(db, "h/r", 0, 0);
    CHECK_OK(mindb_rename(db, KEY("h/r"), KEY("h/r2"), 0));
    PWRITE(f, "survivor", 8, 7);
    struct mindb_attr a = {.mode = 0644};
    CHECK_OK(mindb_fsetattr(f, &a, MINDB_SET_MODE));
    mindb_file_close(f);

    handles_check(db, id);
    db = reopen(db);
    handles_check(db, id);

    /* mindb_close() closes handles still open; the orphan they held goes. */
    SU_PUT_STR(db, "h/left", "open at close");
    f = OPEN_FILE(db, "h/left", 0, 0);
    uint64_t left_id = STAT(db, "h/left").id;
    CHECK_OK(mindb_delete(db, KEY("h/left")));
    db = reopen(db);
    handles_check(db, left_id);
    CHECK_OK(mindb_close(db));
}

/* An attribute name of MINDB_MAX_XATTR_NAME (255) bytes. */
static char g_long_name[MINDB_MAX_XATTR_NAME + 1];

static void make_long_name(void)
{
    memset(g_long_name, 'n', MINDB_MAX_XATTR_NAME);
    memcpy(g_long_name, "user.", 5);
    g_long_name[MINDB_MAX_XATTR_NAME] = 0;
}

static void expect_xattr_at(int line, mindb *db, const char *key, const char *name,
                            const void *want, size_t want_len)
{
    ssize_t n = mindb_getxattr(db, KEY(key), name, NULL, 0);
    if (n != (ssize_t)want_len)
        tu_failf(__FILE__, line, "mindb_getxattr", "%s %.20s: size %zd, expected %zu", key, name, n,
                 want_len);
    uint8_t *buf = malloc(want_len + 1);
    CHECK(buf != NULL);
    n = mindb_getxattr(db, KEY(key), name, buf, want_len + 1);
    if (n != (ssize_t)want_len || memcmp(buf, want, want_len) != 0)
        tu_failf(__FILE__, line, "mindb_getxattr", "%s %.20s: returned %zd, or other bytes", key,
                 name, n);
    free(buf);
}
#define EXPECT_XATTR(db, key, name, want, len) expect_xattr_at(__LINE__, db, key, name, want, len)

static void xattrs_check(mindb *db)
{
    EXPECT_XATTR(db, "x/f", "user.a", "22", 2);
    EXPECT_XATTR(db, "x/f", "user.c", "", 0);
    CHECK_EQ(strlen(g_long_name), 255);
    EXPECT_XATTR(db, "x/f", g_long_name, "long", 4);
    uint8_t *big = malloc(MINDB_MAX_XATTR_VALUE);
    CHECK(big != NULL);
    su_fill(big, MINDB_MAX_XATTR_VALUE, 5);
    EXPECT_XATTR(db, "x/f", "user.big", big, MINDB_MAX_XATTR_VALUE);
    free(big);
    CHECK_ERR(mindb_getxattr(db, KEY("x/f"), "user.b", NULL, 0), -ENODATA);
    EXPECT_XATTR(db, "x/d", "user.dir", "d", 1);

    /* The names, each with its NUL, in any order. */
    ssize_t size = mindb_listxattr(db, KEY("x/f"), NULL, 0);
    size_t want = 7 + 7 + 256 + 9;
    CHECK_EQ(size, want);
    char buf[512];
    CHECK_EQ(mindb_listxattr(db, KEY("x/f"), buf, sizeof buf), want);
    int seen[4] = {0};
    for (size_t off = 0; off < want; off += strlen(buf + off) + 1) {
        const char *name = buf + off;
        if (strcmp(name, "user.a") == 0)
            seen[0]++;
        else if (strcmp(name, "user.c") == 0)
            seen[1]++;
        else if (strcmp(name, g_long_name) == 0)
            seen[2]++;
        else if (strcmp(name, "user.big") == 0)
            seen[3]++;
        else
            CHECKF(0, "unexpected name %.40s", name);
    }
    CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
    CHECK_ERR(mindb_listxattr(db, KEY("x/f"), buf, 5), -ERANGE);
    CHECK_EQ(mindb_listxattr(db, KEY("x/none"), NULL, 0), 0);
}

static void test_xattrs(void)
{
    make_long_name();
    mindb *db = open_store(1);
    SU_PUT_STR(db, "x/f", "v");
    SU_PUT_STR(db, "x/none", "v");
    CHECK_OK(mindb_setxattr(db, KEY("x/f"), "user.a", "1", 1, 0));
    CHECK_EQ(mindb_getxattr(db, KEY("x/f"), "user.a", NULL, 0), 1);
    EXPECT_XATTR(db, "x/f", "user.a", "1", 1);
    CHECK_ERR(mindb_setxattr(db, KEY("x/f"), "user.a", "2", 1, MINDB_XATTR_CREATE), -EEXIST);
    CHECK_ERR(mindb_setxattr(db, KEY("x/f"), "user.b", "2", 1, MINDB_XATTR_REPLACE), -ENODATA);
    CHECK_ERR(mindb_getxattr(db, KEY("x/f"), "user.b", NULL, 0), -ENODATA);
    CHECK_OK(mindb_setxattr(db, KEY("x/f"), "user.a", "22", 2, MINDB_XATTR_REPLACE));
    char small[1];
    CHECK_ERR(mindb_getxattr(db, KEY("x/f"), "user.a", small, sizeof small), -ERANGE);
    CHECK_OK(mindb_setxattr(db, KEY("x/f"), "user.b", "b", 1, MINDB_XATTR_CREATE));
    CHECK_OK(mindb_setxattr(db, KEY("x/f"), "user.c", "", 0, 0));
    CHECK_EQ(mindb_getxattr(db, KEY("x/f"), "user.c", small, sizeof small), 0);

    CHECK_OK(mindb_setxattr(db, KEY("x/f"), g_long_name, "long", 4, 0));
    char too_long[MINDB_MAX_XATTR_NAME + 2];
    memset(too_long, 'n', sizeof too_long - 1);
    memcpy(too_long, "user.", 5);
    too_long[sizeof too_long - 1] = 0;
    CHECK_EQ(strlen(too_long), 256);
    CHECK_ERR(mindb_setxattr(db, KEY("x/f"), too_long, "x", 1, 0), -ERANGE);
    CHECK_ERR(mindb_getxattr(db, KEY("x/f"), too_long, NULL, 0), -ERANGE);

    uint8_t *big = malloc(MINDB_MAX_XATTR_VALUE + 1);
    CHECK(big != NULL);
    su_fill(big, MINDB_MAX_XATTR_VALUE + 1, 5);
    CHECK_ERR(mindb_setxattr(db, KEY("x/f"), "user.big", big, MINDB_MAX_XATTR_VALUE + 1, 0),
              -E2BIG);
    CHECK_ERR(mindb_getxattr(db, KEY("x/f"), "user.big", NULL, 0), -ENODATA);
    CHECK_OK(mindb_setxattr(db, KEY("x/f"), "user.big", big, MINDB_MAX_XATTR_VALUE, 0));
    free(big);

    CHECK_OK(mindb_removexattr(db, KEY("x/f"), "user.b"));
    CHECK_ERR(mindb_removexattr(db, KEY("x/f"), "user.b"), -ENODATA);
    CHECK_ERR(mindb_setxattr(db, KEY("x/missing"), "user.a", "1", 1, 0), -ENOENT);
    CHECK_ERR(mindb_getxattr(db, KEY("x/missing"), "user.a", NULL, 0), -ENOENT);
    CHECK_ERR(mindb_listxattr(db, KEY("x/missing"), NULL, 0), -ENOENT);
    CHECK_ERR(mindb_removexattr(db, KEY("x/missing"), "user.a"), -ENOENT);
    CHECK_OK(mindb_create(db, KEY("x/d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_setxattr(db, KEY("x/d"), "user.dir", "d", 1, 0));

    /* Attributes belong to the object: a link shows them, a rename keeps
     * them, a put makes a new object without them. */
    CHECK_OK(mindb_link(db, KEY("x/f"), KEY("x/link")));
    EXPECT_XATTR(db, "x/link", "user.a", "22", 2);
    CHECK_OK(mindb_delete(db, KEY("x/link")));
    SU_PUT_STR(db, "x/p", "p");
    CHECK_OK(mindb_setxattr(db, KEY("x/p"), "user.p", "p", 1, 0));
    SU_PUT_STR(db, "x/p", "p2");
    CHECK_ERR(mindb_getxattr(db, KEY("x/p"), "user.p", NULL, 0), -ENODATA);
    CHECK_OK(mindb_delete(db, KEY("x/p")));

    xattrs_check(db);
    db = reopen(db);
    xattrs_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
    xattrs_check(db);
    CHECK_OK(mindb_close(db));
}

#define T_ATIME 1234567890123456789ll
#define T_MTIME 1111111111222222222ll
#define T_CTIME 1000000000000000001ll

static void setattr_check(mindb *db)
{
    struct mindb_stat st = STAT(db, "s/t1");
    CHECK_EQ(st.mode, S_IFREG | 0700);
    CHECK_EQ(st.uid, 1234);
    CHECK_EQ(st.gid, 5678);
    CHECK_EQ(st.atime_ns, T_ATIME);
    CHECK_EQ(st.mtime_ns, T_MTIME);
    CHECK_EQ(st.ctime_ns, T_CTIME);
    st = STAT(db, "s/d");
    CHECK_EQ(st.mode, S_IFDIR | 0711);
    CHECK_EQ(st.mtime_ns, 5);
}

static void test_setattr(void)
{
    mindb *db = open_store(1);
    int64_t before = now_ns();
    SU_PUT_STR(db, "s/t1", "abc");
    int64_t after = now_ns();
    const int64_t slack = 2000000000; /* the store's clock may be coarse */
    struct mindb_stat st = STAT(db, "s/t1");
    CHECKF(st.mtime_ns >= before - slack && st.mtime_ns <= after + slack,
           "mtime %lld after a put between %lld and %lld", (long long)st.mtime_ns,
           (long long)before, (long long)after);
    CHECK(st.ctime_ns >= before - slack && st.ctime_ns <= after + slack);

    struct mindb_attr a = {.mode = 0600};
    CHECK_OK(mindb_setattr(db, KEY("s/t1"), &a, MINDB_SET_MODE));
    CHECK_EQ(STAT(db, "s/t1").mode, S_IFREG | 0600);
    a.mode = S_IFDIR | 0700; /* the type stays */
    CHECK_OK(mindb_setattr(db, KEY("s/t1"), &a, MINDB_SET_MODE));
    CHECK_EQ(STAT(db, "s/t1").mode, S_IFREG | 0700);
    a.uid = 1234;
    a.gid = 5678;
    CHECK_OK(mindb_setattr(db, KEY("s/t1"), &a, MINDB_SET_UID | MINDB_SET_GID));
    a.atime_ns = T_ATIME;
    a.mtime_ns = T_MTIME;
    CHECK_OK(mindb_setattr(db, KEY("s/t1"), &a, MINDB_SET_ATIME | MINDB_SET_MTIME));
    st = STAT(db, "s/t1");
    CHECK_EQ(st.atime_ns, T_ATIME);
    CHECK_EQ(st.mtime_ns, T_MTIME);
    /* Any change sets ctime to now, unless given. */
    CHECK(st.ctime_ns >= before - slack && st.ctime_ns <= now_ns() + slack);
    a.ctime_ns = T_CTIME;
    CHECK_OK(mindb_setattr(db, KEY("s/t1"), &a, MINDB_SET_CTIME));
    CHECK_EQ(STAT(db, "s/t1").ctime_ns, T_CTIME);

    /* MINDB_TIME_NOW. */
    SU_PUT_STR(db, "s/t2", "x");
    a.atime_ns = 7;
    a.mtime_ns = 7;
    CHECK_OK(mindb_setattr(db, KEY("s/t2"), &a, MINDB_SET_ATIME | MINDB_SET_MTIME));
    before = now_ns();
    a.mtime_ns = MINDB_TIME_NOW;
    CHECK_OK(mindb_setattr(db, KEY("s/t2"), &a, MINDB_SET_MTIME));
    after = now_ns();
    st = STAT(db, "s/t2");
    CHECKF(st.mtime_ns >= before - slack && st.mtime_ns <= after + slack,
           "mtime %lld, now was %lld..%lld", (long long)st.mtime_ns, (long long)before,
           (long long)after);
    CHECK_EQ(st.atime_ns, 7);

    /* On a directory, and through a handle. */
    CHECK_OK(mindb_create(db, KEY("s/d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    a.mode = 0711;
    a.mtime_ns = 5;
    CHECK_OK(mindb_setattr(db, KEY("s/d"), &a, MINDB_SET_MODE | MINDB_SET_MTIME));
    mindb_file *f = OPEN_FILE(db, "s/t2", 0, 0);
    a.mode = 0604;
    CHECK_OK(mindb_fsetattr(f, &a, MINDB_SET_MODE));
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ(st.mode, S_IFREG | 0604);
    mindb_file_close(f);
    CHECK_ERR(mindb_setattr(db, KEY("s/missing"), &a, MINDB_SET_MODE), -ENOENT);

    setattr_check(db);
    db = reopen(db);
    setattr_check(db);
    CHECK_OK(mindb_close(db));
}

#define TG_LEN (200 * 1024)
#define TG_CUT 70000

static void truncate_check(mindb *db)
{
    uint8_t want[150];
    memset(want, 0, sizeof want);
    for (int i = 0; i < 50; i++)
        want[i] = (uint8_t)(i + 1);
    EXPECT_VALUE(db, KEY("t/f"), want, sizeof want);

    uint8_t *g = malloc(TG_LEN);
    CHECK(g != NULL);
    su_fill(g, TG_LEN, 77);
    memset(g + TG_CUT, 0, TG_LEN - TG_CUT);
    EXPECT_VALUE(db, KEY("t/g"), g, TG_LEN);
    free(g);
    EXPECT_VALUE(db, KEY("t/z"), "\0\0\0", 3);
}

static void test_truncate(void)
{
    mindb *db = open_store(1);
    uint8_t v[100];
    for (int i = 0; i < 100; i++)
        v[i] = (uint8_t)(i + 1);
    SU_PUT(db, KEY("t/f"), v, sizeof v);
    struct mindb_attr a = {.size = 200};
    CHECK_OK(mindb_setattr(db, KEY("t/f"), &a, MINDB_SET_SIZE));
    uint8_t want[200];
    memcpy(want, v, 100);
    memset(want + 100, 0, 100);
    EXPECT_VALUE(db, KEY("t/f"), want, 200);
    mindb_file *f = OPEN_FILE(db, "t/f", 0, 0);
    CHECK_OK(mindb_truncate(f, 50));
    struct mindb_stat st;
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ_U(st.size, 50);
    CHECK_OK(mindb_truncate(f, 150)); /* the cut bytes stay gone */
    mindb_file_close(f);

    /* The same across chunks, once they are in data segments. */
    uint8_t *g = malloc(TG_LEN);
    CHECK(g != NULL);
    su_fill(g, TG_LEN, 77);
    SU_PUT(db, KEY("t/g"), g, TG_LEN);
    free(g);
    CHECK_OK(mindb_checkpoint(db));
    a.size = TG_CUT;
    CHECK_OK(mindb_setattr(db, KEY("t/g"), &a, MINDB_SET_SIZE));
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
    a.size = TG_LEN;
    CHECK_OK(mindb_setattr(db, KEY("t/g"), &a, MINDB_SET_SIZE));

    SU_PUT_STR(db, "t/z", "xyz");
    a.size = 0;
    CHECK_OK(mindb_setattr(db, KEY("t/z"), &a, MINDB_SET_SIZE));
    a.size = 3;
    CHECK_OK(mindb_setattr(db, KEY("t/z"), &a, MINDB_SET_SIZE));
    CHECK_OK(mindb_create(db, KEY("t/d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_ERR(mindb_setattr(db, KEY("t/d"), &a, MINDB_SET_SIZE), -EISDIR);
    CHECK_ERR(mindb_setattr(db, KEY("t/missing"), &a, MINDB_SET_SIZE), -ENOENT);

    truncate_check(db);
    db = reopen(db);
    truncate_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
    truncate_check(db);
    CHECK_OK(mindb_close(db));
}

#define SPARSE_OFF (GiB + 5)

static void sparse_check(mindb *db)
{
    EXPECT_STAT(db, "sp/f", S_IFREG | 0644, SPARSE_OFF + 4, 1);
    struct mindb_stat st = STAT(db, "sp/f");
    CHECKF(st.disk_bytes < MiB, "a sparse file of 1 GiB holds %llu bytes on disk",
           (unsigned long long)st.disk_bytes);
    mindb_file *f = OPEN_FILE(db, "sp/f", 0, 0);
    EXPECT_ZEROS(f, 0, 64 * KiB);
    EXPECT_ZEROS(f, 512 * MiB - 3, 100 * KiB);
    EXPECT_ZEROS(f, GiB - CHUNK, CHUNK + 5);
    uint8_t want[104];
    memset(want, 0, 100);
    memcpy(want + 100, "tail", 4);
    EXPECT_PREAD(f, SPARSE_OFF - 100, 200, want, 104);
    EXPECT_PREAD(f, SPARSE_OFF + 4, 10, "", 0);
    EXPECT_PREAD(f, SPARSE_OFF + 1000000, 10, "", 0);
    mindb_file_close(f);

    uint8_t *g = calloc(1, 300001);
    CHECK(g != NULL);
    memcpy(g, "head", 4);
    g[300000] = 'x';
    EXPECT_VALUE(db, KEY("sp/g"), g, 300001);
    free(g);

    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.logical_bytes, SPARSE_OFF + 4 + 300001);
}

static void test_sparse(void)
{
    mindb *db = open_store(1);
    mindb_file *f = OPEN_FILE(db, "sp/f", MINDB_OPEN_CREATE, 0644);
    PWRITE(f, "tail", 4, SPARSE_OFF);
    struct mindb_stat st;
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ_U(st.size, SPARSE_OFF + 4);
    mindb_file_close(f);
    SU_PUT_STR(db, "sp/g", "head");
    f = OPEN_FILE(db, "sp/g", 0, 0);
    PWRITE(f, "x", 1, 300000);
    mindb_file_close(f);

    sparse_check(db);
    CHECK_OK(mindb_checkpoint(db));
    sparse_check(db);
    db = reopen(db);
    sparse_check(db);
    CHECK_OK(mindb_close(db));
}

#define CH_LEN (4 * CHUNK + 100)

struct write_op {
    uint64_t off;
    size_t len;
};

static const struct write_op g_writes[] = {
    {CHUNK - 10, 20},   {0, CHUNK},         {2 * CHUNK - 1, 2}, {3 * CHUNK, 100},
    {100, 200000},      {4 * CHUNK, 100},   {CHUNK, CHUNK},     {2 * CHUNK + 1, CHUNK - 2},
    {3 * CHUNK - 1, 1}, {CHUNK * 4 - 3, 3},
};

static void chunks_expected(uint8_t *model)
{
    memset(model, 0, CH_LEN);
    for (size_t i = 0; i < sizeof g_writes / sizeof g_writes[0]; i++) {
        su_fill(model + g_writes[i].off, g_writes[i].len, 1000 + i);
    }
}

static void chunks_check(mindb *db)
{
    uint8_t *model = malloc(CH_LEN);
    CHECK(model != NULL);
    chunks_expected(model);
    EXPECT_VALUE(db, KEY("ch/f"), model, CH_LEN);
    mindb_file *f = OPEN_FILE(db, "ch/f", 0, 0);
    static const struct write_op reads[] = {
        {CHUNK - 5, 10}, {2 * CHUNK - 2, 4}, {0, CHUNK}, {CHUNK, CHUNK},
        {1, 3 * CHUNK},  {CHUNK - 1, 1},     {CHUNK, 1}, {4 * CHUNK - 1, 200},
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        size_t want = reads[i].off + reads[i].len > CH_LEN ? CH_LEN - reads[i].off : reads[i].len;
        EXPECT_PREAD(f, reads[i].off, reads[i].len, model + reads[i].off, want);
    }
    mindb_file_close(f);
    free(model);

    uint8_t *a = malloc(70006);
    CHECK(a != NULL);
    memcpy(a, "onetwo", 6);
    su_fill(a + 6, 70000, 3);
    EXPECT_VALUE(db, KEY("ch/a"), a, 70006);
    free(a);
}

static void test_chunks(void)
{
    mindb *db = open_store(1);
    mindb_file *f = OPEN_FILE(db, "ch/f", MINDB_OPEN_CREATE, 0644);
    uint8_t *buf = malloc(200000);
    CHECK(buf != NULL);
    for (size_t i = 0; i < sizeof g_writes / sizeof g_writes[0]; i++) {
        su_fill(buf, g_writes[i].len, 1000 + i);
        PWRITE(f, buf, g_writes[i].len, g_writes[i].off);
        if (i == 4)
            CHECK_OK(mindb_checkpoint(db)); /* later writes change chunks on disk */
    }
    CHECK_ERR(mindb_pwrite(f, "x", 1, MINDB_MAX_SIZE), -EFBIG);
    CHECK_ERR(mindb_pwrite(f, "xy", 2, MINDB_MAX_SIZE - 1), -EFBIG);
    CHECK_EQ(mindb_pwrite(f, "", 0, 5), 0);
    mindb_file_close(f);

    f = OPEN_FILE(db, "ch/a", MINDB_OPEN_CREATE, 0644);
    CHECK_EQ(mindb_append(f, "one", 3), 3);
    CHECK_EQ(mindb_append(f, "two", 3), 3);
    su_fill(buf, 70000, 3);
    CHECK_EQ(mindb_append(f, buf, 70000), 70000);
    mindb_file_close(f);
    free(buf);

    chunks_check(db);
    db = reopen(db);
    chunks_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = reopen(db);
    chunks_check(db);
    CHECK_OK(mindb_close(db));
}

static void test_read_only(void)
{
    mindb *db = open_store(1);
    SU_PUT_STR(db, "k", "v");
    CHECK_OK(mindb_create(db, KEY("d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_setxattr(db, KEY("k"), "user.x", "x", 1, 0));
    CHECK_OK(mindb_close(db));

    struct mindb_options o = g_opts;
    o.create = 0;
    o.read_only = 1;
    db = SU_OPEN(g_store, &o);
    EXPECT_STR(db, "k", "v");
    struct mindb_attr a = {.mode = 0600, .size = 0};
    CHECK_ERR(mindb_put(db, KEY("k"), "w", 1), -EROFS);
    CHECK_ERR(mindb_put(db, KEY("new"), "w", 1), -EROFS);
    CHECK_ERR(mindb_delete(db, KEY("k")), -EROFS);
    CHECK_ERR(mindb_create(db, KEY("d2"), S_IFDIR | 0755, 0, 0, NULL, 0), -EROFS);
    CHECK_ERR(mindb_rename(db, KEY("k"), KEY("k2"), 0), -EROFS);
    CHECK_ERR(mindb_link(db, KEY("k"), KEY("k2")), -EROFS);
    CHECK_ERR(mindb_setattr(db, KEY("k"), &a, MINDB_SET_MODE), -EROFS);
    CHECK_ERR(mindb_setxattr(db, KEY("k"), "user.y", "y", 1, 0), -EROFS);
    CHECK_ERR(mindb_removexattr(db, KEY("k"), "user.x"), -EROFS);
    mindb_file *f = NULL;
    CHECK_ERR(mindb_file_open(db, KEY("new"), MINDB_OPEN_CREATE, 0644, &f), -EROFS);
    f = OPEN_FILE(db, "k", 0, 0);
    CHECK_ERR(mindb_pwrite(f, "w", 1, 0), -EROFS);
    CHECK_ERR(mindb_append(f, "w", 1), -EROFS);
    CHECK_ERR(mindb_truncate(f, 0), -EROFS);
    CHECK_ERR(mindb_fsetattr(f, &a, MINDB_SET_MODE), -EROFS);
    EXPECT_PREAD(f, 0, 10, "v", 1);
    mindb_file_close(f);
    EXPECT_XATTR(db, "k", "user.x", "x", 1);
    EXPECT_STAT(db, "d", S_IFDIR | 0755, 0, 2);
    CHECK_EQ(mindb_lock_holder(g_store), getpid());
    CHECK_OK(mindb_close(db));

    db = SU_OPEN(g_store, &g_opts);
    EXPECT_STR(db, "k", "v");
    EXPECT_STAT(db, "k", S_IFREG | 0644, 1, 1);
    CHECK_OK(mindb_close(db));
}

#define COMP_LEN (1024 * 1024)

static void count_line(void *ctx, uint64_t pos, const char *text)
{
    (void)pos;
    CHECK(text != NULL && *text);
    (*(long *)ctx)++;
}

static void stats_check(mindb *db)
{
    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 12);
    CHECK_EQ_U(stats.objects, 12);
    CHECK_EQ_U(stats.logical_bytes, 1000 * 55 + COMP_LEN);
    struct mindb_stat st = STAT(db, "comp");
    CHECKF(st.disk_bytes > 0 && st.disk_bytes < st.size / 2,
           "a compressible value of %llu bytes takes %llu on disk", (unsigned long long)st.size,
           (unsigned long long)st.disk_bytes);
    CHECK_EQ(mindb_check(db, NULL, NULL, NULL), 0);
}

static void test_stats(void)
{
    mindb *db = open_store(1);
    uint8_t *buf = malloc(COMP_LEN);
    CHECK(buf != NULL);
    char key[32];
    for (unsigned i = 1; i <= 10; i++) {
        snprintf(key, sizeof key, "st/k%02u", i);
        su_value(buf, 1000 * i, i, 0);
        SU_PUT(db, KEY(key), buf, 1000 * i);
        CHECK(STAT(db, key).disk_bytes > 0);
    }
    CHECK_OK(mindb_create(db, KEY("st"), S_IFDIR | 0755, 0, 0, NULL, 0));
    su_fill(buf, COMP_LEN, 42);
    SU_PUT(db, KEY("comp"), buf, COMP_LEN);
    free(buf);
    struct mindb_stat st = STAT(db, "comp");
    CHECK(st.disk_bytes > 0);

    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 12);
    CHECK_EQ_U(stats.logical_bytes, 1000 * 55 + COMP_LEN);
    uint64_t checkpoints = stats.checkpoints;
    CHECK_OK(mindb_checkpoint(db));
    CHECK_OK(mindb_stats(db, &stats));
    CHECK(stats.checkpoints > checkpoints);
    CHECK(stats.stored_bytes > 0 && stats.stored_bytes < stats.logical_bytes);
    CHECKF(stats.compression_ratio > 1.5, "compression ratio %.2f", stats.compression_ratio);
    CHECK(stats.segment_bytes >= stats.stored_bytes);
    stats_check(db);
    long lines = 0;
    int records = mindb_describe_log(db, count_line, &lines);
    CHECKF(records >= 0 && records == lines, "mindb_describe_log returned %d, %ld lines", records,
           lines);
    db = reopen(db);
    stats_check(db);
    CHECK_OK(mindb_close(db));
}

/* A store many times larger than the memory it is given: dirty data stays
 * within its bound (plus the one change in flight) while 24 MiB go in,
 * through puts, sequential and random pwrites, and all of it reads back. */
static void test_larger_than_memory(void)
{
    su_store_path(g_store, "store");
    su_options(&g_opts, 1);
    g_opts.dirty_bytes = 1 << 20;
    g_opts.cache_bytes = 1 << 20;
    mindb *db = SU_OPEN(g_store, &g_opts);
    const size_t piece = 256 << 10, file_bytes = 8 << 20;
    uint8_t *buf = malloc(piece), *back = malloc(piece);
    CHECK(buf && back);
    uint64_t max_dirty = 0;
    struct mindb_stats stats;
    char key[32];
    /* 32 puts of 256 KiB. */
    for (unsigned i = 0; i < 32; i++) {
        snprintf(key, sizeof key, "mem/put%02u", i);
        su_value(buf, piece, i, 1);
        SU_PUT(db, KEY(key), buf, piece);
        CHECK_OK(mindb_stats(db, &stats));
        if (stats.dirty_bytes > max_dirty)
            max_dirty = stats.dirty_bytes;
    }
    /* Two files of 8 MiB: one written in order, one in random 4 KiB writes
     * over a first pass. */
    mindb_file *f;
    CHECK_OK(mindb_file_open(db, KEY("mem/seq"), MINDB_OPEN_CREATE, 0644, &f));
    for (size_t off = 0; off < file_bytes; off += piece) {
        su_fill(buf, piece, off);
        CHECK_EQ(mindb_pwrite(f, buf, piece, off), (long long)piece);
        CHECK_OK(mindb_stats(db, &stats));
        if (stats.dirty_bytes > max_dirty)
            max_dirty = stats.dirty_bytes;
    }
    mindb_file_close(f);
    CHECK_OK(mindb_file_open(db, KEY("mem/rand"), MINDB_OPEN_CREATE, 0644, &f));
    CHECK_OK(mindb_truncate(f, file_bytes));
    uint64_t rng = 7;
    for (unsigned i = 0; i < 2048; i++) {
        uint64_t block = tu_rand_range(&rng, 0, file_bytes / 4096 - 1);
        su_fill(buf, 4096, block);
        CHECK_EQ(mindb_pwrite(f, buf, 4096, block * 4096), 4096);
        CHECK_OK(mindb_stats(db, &stats));
        if (stats.dirty_bytes > max_dirty)
            max_dirty = stats.dirty_bytes;
    }
    tu_note("most dirty bytes seen: %llu (bound %llu)", (unsigned long long)max_dirty,
            (unsigned long long)g_opts.dirty_bytes);
    CHECK_LE_U(max_dirty, g_opts.dirty_bytes + piece + CHUNK_SLACK);
    mindb_file_close(f);
    db = reopen(db);
    for (unsigned i = 0; i < 32; i++) {
        snprintf(key, sizeof key, "mem/put%02u", i);
        su_value(buf, piece, i, 1);
        EXPECT_VALUE(db, KEY(key), buf, piece);
    }
    CHECK_OK(mindb_file_open(db, KEY("mem/seq"), 0, 0, &f));
    for (size_t off = 0; off < file_bytes; off += piece) {
        su_fill(buf, piece, off);
        CHECK_EQ(mindb_pread(f, back, piece, off), (long long)piece);
        CHECK(memcmp(buf, back, piece) == 0);
    }
    mindb_file_close(f);
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.logical_bytes, 32 * piece + 2 * file_bytes);
    CHECK_EQ(mindb_check(db, NULL, NULL, NULL), 0);
    CHECK_OK(mindb_close(db));
    free(buf);
    free(back);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("open_errors", test_open_errors);
    tu_run("lock", test_lock);
    tu_run("keys", test_keys);
    tu_run("create", test_create);
    tu_run("mkdir_over_children", test_mkdir_over_children);
    tu_run("children", test_children);
    tu_run("big_listing", test_big_listing);
    tu_run("rename_files", test_rename_files);
    tu_run("rename_dirs", test_rename_dirs);
    tu_run("links", test_links);
    tu_run("handles", test_handles);
    tu_run("xattrs", test_xattrs);
    tu_run("setattr", test_setattr);
    tu_run("truncate", test_truncate);
    tu_run("sparse", test_sparse);
    tu_run("chunks", test_chunks);
    tu_run("read_only", test_read_only);
    tu_run("stats", test_stats);
    tu_run("larger_than_memory", test_larger_than_memory);
    return tu_finish();
}
