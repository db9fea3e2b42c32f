/*
 * test_store_api.c - the store's API at its edges, with the exact errors
 * mindb.h promises: opening and locking, keys (empty, longest, binary,
 * ordering), read-only stores, sizes on disk and stats, shared chunks. The
 * namespace is tested in test_store_namespace.c, the contents of files in
 * test_store_files.c. Each sub-test checks its state again after a close
 * and a reopen.
 */
#include "storeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
    mindb *db = su_open_store(1);
    SU_PUT_STR(db, "k", "v");
    CHECK_EQ(mindb_lock_holder(su_store_dir), getpid());
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        struct mindb_options o;
        su_options(&o, 1);
        o.create = 0;
        mindb *other = NULL;
        CHECK_ERR(mindb_open(su_store_dir, &o, &other), -EBUSY);
        CHECK_EQ(mindb_lock_holder(su_store_dir), getppid());
        o.read_only = 1;
        CHECK_ERR(mindb_open(su_store_dir, &o, &other), -EBUSY);
        o.create = 1;
        o.read_only = 0;
        CHECK_ERR(mindb_open(su_store_dir, &o, &other), -EBUSY);
        _exit(0);
    }
    int ws;
    CHECK(waitpid(child, &ws, 0) == child);
    CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the child ended with status 0x%x", ws);
    /* The refused opens changed nothing. */
    EXPECT_STR(db, "k", "v");
    CHECK_OK(mindb_close(db));
    CHECK_EQ(mindb_lock_holder(su_store_dir), 0);

    /* Once closed, another process opens it. */
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        struct mindb_options o;
        su_options(&o, 1);
        mindb *other = SU_OPEN(su_store_dir, &o);
        EXPECT_STR(other, "k", "v");
        CHECK_EQ(mindb_lock_holder(su_store_dir), getpid());
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
    mindb *db = su_open_store(1);
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

    /* The empty key is the root directory (test_store_root.c has more). */
    CHECK_ERR(mindb_put(db, "", 0, "x", 1), -EISDIR);
    CHECK_ERR(mindb_get(db, "", 0, &v, &len), -EISDIR);
    CHECK_ERR(mindb_delete(db, "", 0), -EBUSY);
    struct mindb_stat st;
    CHECK_OK(mindb_stat(db, "", 0, &st));
    CHECK_EQ(st.mode & S_IFMT, S_IFDIR);
    CHECK_ERR(mindb_create(db, "", 0, S_IFDIR | 0755, 0, 0, NULL, 0), -EEXIST);
    CHECK_ERR(mindb_put(db, NULL, 1, "x", 1), -EINVAL);

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
    db = su_reopen_store(db);
    keys_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    keys_check(db);
    CHECK_OK(mindb_close(db));
}

static void test_read_only(void)
{
    mindb *db = su_open_store(1);
    SU_PUT_STR(db, "k", "v");
    CHECK_OK(mindb_create(db, KEY("d"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_setxattr(db, KEY("k"), "user.x", "x", 1, 0));
    CHECK_OK(mindb_close(db));

    struct mindb_options o = su_store_opts;
    o.create = 0;
    o.read_only = 1;
    db = SU_OPEN(su_store_dir, &o);
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
    CHECK_EQ(mindb_lock_holder(su_store_dir), getpid());
    CHECK_OK(mindb_close(db));

    db = SU_OPEN(su_store_dir, &su_store_opts);
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
    mindb *db = su_open_store(1);
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
    db = su_reopen_store(db);
    stats_check(db);
    CHECK_OK(mindb_close(db));
}

/* The same bytes under several keys are stored once (a format 2 store
 * shares the chunk records of values checkpointed since it was opened),
 * each key still shows its bytes on disk, and compaction, which moves a
 * shared record once for all its refs, keeps every copy whole. */
static void test_shared_chunks(void)
{
    mindb *db = su_open_store(1);
    size_t len = 300 * KiB, junk_len = 100 * KiB;
    uint8_t *buf = malloc(len), *junk = malloc(junk_len);
    CHECK(buf != NULL && junk != NULL);
    su_value(buf, len, 7, 7);
    uint64_t st = 99;
    for (size_t i = 0; i < junk_len; i += 8) {
        uint64_t r = tu_rand(&st);
        memcpy(junk + i, &r, 8);
    }
    /* Dead bytes beside the shared records, so that compaction takes
     * their segment. */
    SU_PUT(db, KEY("junk"), junk, junk_len);
    SU_PUT(db, KEY("a"), buf, len);
    CHECK_OK(mindb_checkpoint(db));
    struct mindb_stats one, three;
    CHECK_OK(mindb_stats(db, &one));
    CHECK_OK(mindb_delete(db, KEY("junk")));
    SU_PUT(db, KEY("b"), buf, len);
    SU_PUT(db, KEY("c"), buf, len);
    /* More refs than the segment has bytes: a shared record counts once in
     * its segment's live bytes, or compaction would never take it. */
    char key[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "more%02d", i);
        SU_PUT(db, KEY(key), buf, len);
    }
    CHECK_OK(mindb_checkpoint(db));
    CHECK_OK(mindb_stats(db, &three));
    uint64_t junk_disk = one.stored_bytes - STAT(db, "a").disk_bytes;
    CHECKF(three.stored_bytes + junk_disk == one.stored_bytes,
           "stored bytes: %llu with a and junk, %llu with a, b, c; junk took %llu",
           (unsigned long long)one.stored_bytes, (unsigned long long)three.stored_bytes,
           (unsigned long long)junk_disk);
    uint64_t a_disk = STAT(db, "a").disk_bytes;
    CHECK_EQ_U(STAT(db, "b").disk_bytes, a_disk);
    CHECK_EQ_U(STAT(db, "c").disk_bytes, STAT(db, "a").disk_bytes);
    CHECK_EQ_U(three.segment_bytes, one.segment_bytes);

    CHECK_OK(mindb_delete(db, KEY("a")));
    uint64_t compactions = three.compactions;
    CHECK_OK(mindb_compact(db, 100, NULL, NULL));
    CHECK_OK(mindb_stats(db, &three));
    CHECKF(three.compactions > compactions, "compactions %llu, before %llu",
           (unsigned long long)three.compactions, (unsigned long long)compactions);
    /* Moved once: the data is one copy of the value, not one per key. */
    CHECKF(three.segment_bytes < one.segment_bytes - junk_disk + a_disk / 2,
           "segment bytes %llu after compaction, %llu with a and junk (junk %llu, a %llu)",
           (unsigned long long)three.segment_bytes, (unsigned long long)one.segment_bytes,
           (unsigned long long)junk_disk, (unsigned long long)a_disk);
    for (int round = 0; round < 2; round++) {
        EXPECT_VALUE(db, KEY("b"), buf, len);
        EXPECT_VALUE(db, KEY("c"), buf, len);
        EXPECT_VALUE(db, KEY("more19"), buf, len);
        CHECK_EQ(mindb_check(db, NULL, NULL, NULL), 0);
        db = su_reopen_store(db);
    }
    /* A value written again after a reopen is stored again, then shared. */
    SU_PUT(db, KEY("d"), buf, len);
    SU_PUT(db, KEY("e"), buf, len);
    CHECK_OK(mindb_checkpoint(db));
    EXPECT_VALUE(db, KEY("d"), buf, len);
    EXPECT_VALUE(db, KEY("e"), buf, len);
    CHECK_EQ(mindb_check(db, NULL, NULL, NULL), 0);
    CHECK_OK(mindb_close(db));
    free(buf);
    free(junk);
}

/* Opening with `create` where an open failed before (it left only the LOCK
 * file), and several processes creating the same store at once: each gets
 * the store or -EBUSY, and there is one store with every key written. */
static void test_create_races(void)
{
    struct mindb_options o;
    su_options(&o, 1);
    o.create = 1;
    o.background = 0;
    char dir[TU_PATH_MAX], lock[TU_PATH_MAX];
    tu_path(dir, "leftover");
    CHECK(mkdir(dir, 0755) == 0);
    tu_path(lock, "leftover/LOCK");
    int fd = open(lock, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    close(fd);
    mindb *db;
    CHECK_OK(mindb_open(dir, &o, &db));
    CHECK_OK(mindb_close(db));

    tu_path(dir, "raced");
    CHECK(mkdir(dir, 0755) == 0);
    /* Each holder creates, writes and closes a store, which under a loaded
     * machine takes a good part of a second: the others wait up to a minute. */
    enum { CHILDREN = 4, TRIES = 30000 };
    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork();
        CHECK(pids[c] >= 0);
        if (pids[c] == 0) {
            /* Retry while another holds it: every child gets its turn. */
            int rc = -EBUSY;
            for (int t = 0; t < TRIES && rc == -EBUSY; t++) {
                rc = mindb_open(dir, &o, &db);
                if (rc == -EBUSY)
                    usleep(2000);
            }
            if (rc == 0) {
                char key[8];
                snprintf(key, sizeof key, "c%d", c);
                rc = mindb_put(db, key, strlen(key), "x", 1);
                rc = rc ? rc : mindb_close(db);
            }
            _exit(rc == 0 ? 0 : 1);
        }
    }
    for (int c = 0; c < CHILDREN; c++) {
        int status;
        CHECK(waitpid(pids[c], &status, 0) == pids[c]);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "creator %d failed (status %d)", c,
               status);
    }
    o.create = 0;
    CHECK_OK(mindb_open(dir, &o, &db));
    struct mindb_stats st;
    CHECK_OK(mindb_stats(db, &st));
    CHECK_EQ_U(st.keys, CHILDREN);
    CHECK_OK(mindb_close(db));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("open_errors", test_open_errors);
    tu_run("create_races", test_create_races);
    tu_run("lock", test_lock);
    tu_run("keys", test_keys);
    tu_run("read_only", test_read_only);
    tu_run("stats", test_stats);
    tu_run("shared_chunks", test_shared_chunks);
    return tu_finish();
}
