/*
 * test_store_files.c - the contents of the store's files, with the exact
 * errors mindb.h promises: handles (also on deleted objects), extended
 * attributes, attributes and times, truncation, sparse and chunk-crossing
 * writes, writes of whole chunks straight to data segments, and a store many times larger than its memory. Each sub-test
 * checks its state again after a close and a reopen.
 */
#include "storeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CHUNK (64 * 1024)
#define GiB (1024ull * 1024 * 1024)

/* What a change may add above the dirty bound: one chunk's buffer. */
#define CHUNK_SLACK (64 << 10)

static void expect_zeros_at(int line, mindb_file *f, uint64_t off, size_t len)
{
    uint8_t *zeros = calloc(1, len);
    CHECK(zeros != NULL);
    su_expect_pread_at(__FILE__, line, f, off, len, zeros, len);
    free(zeros);
}
#define EXPECT_ZEROS(f, off, len) expect_zeros_at(__LINE__, f, off, len)

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
    mindb *db = su_open_store(1);
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
    db = su_reopen_store(db);
    handles_check(db, id);

    /* mindb_close() closes handles still open; the orphan they held goes. */
    SU_PUT_STR(db, "h/left", "open at close");
    f = OPEN_FILE(db, "h/left", 0, 0);
    uint64_t left_id = STAT(db, "h/left").id;
    CHECK_OK(mindb_delete(db, KEY("h/left")));
    db = su_reopen_store(db);
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
    mindb *db = su_open_store(1);
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
    db = su_reopen_store(db);
    xattrs_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
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
    mindb *db = su_open_store(1);
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
    db = su_reopen_store(db);
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
    mindb *db = su_open_store(1);
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
    db = su_reopen_store(db);
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
    db = su_reopen_store(db);
    truncate_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
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
    mindb *db = su_open_store(1);
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
    db = su_reopen_store(db);
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
    mindb *db = su_open_store(1);
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
    db = su_reopen_store(db);
    chunks_check(db);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    chunks_check(db);
    CHECK_OK(mindb_close(db));
}

/* Writes covering whole chunks: those go to data segments, bound by one
 * record with the bytes before and after them, over dirty, checkpointed
 * and missing chunks alike. */
#define WC_SIZE (64 * CHUNK + 7)

static const struct {
    uint64_t off;
    size_t len;
} wc_writes[] = {
    {5000, 10000},              /* dirty bytes in chunk 0 */
    {3000, 300000},             /* head in chunk 0, chunks 1-3, tail in chunk 4 */
    {5 * CHUNK, 2 * MiB + 100}, /* two pieces of 16 chunks, 100 bytes through the log */
    {60 * CHUNK, CHUNK},        /* beyond the end: a hole before it */
    {2 * CHUNK, CHUNK},         /* over a checkpointed chunk */
    {CHUNK - 1, CHUNK + 2},     /* one chunk with a byte either side */
    {63 * CHUNK, CHUNK + 7},    /* a chunk and a short tail at the end */
};

/* Makes the writes, each of its own bytes; `model` (zeros at first)
 * becomes what the file holds. Also runs in a child: see wc_model(). */
static void wc_write_all(mindb *db, void *ctx)
{
    uint8_t *model = ctx;
    mindb_file *f = OPEN_FILE(db, "wc", MINDB_OPEN_CREATE, 0644);
    for (size_t i = 0; i < sizeof wc_writes / sizeof wc_writes[0]; i++) {
        su_fill(model + wc_writes[i].off, wc_writes[i].len, 500 + i);
        struct mindb_stats before, after;
        CHECK_OK(mindb_stats(db, &before));
        PWRITE(f, model + wc_writes[i].off, wc_writes[i].len, wc_writes[i].off);
        CHECK_OK(mindb_stats(db, &after));
        /* The whole chunks did not go through the log. */
        /* (a background checkpoint meanwhile empties the log) */
        uint64_t logged =
            after.wal_bytes >= before.wal_bytes ? after.wal_bytes - before.wal_bytes : 0;
        CHECKF(i == 0 || logged < 2 * CHUNK,
               "write %zu of %zu bytes added %llu bytes of log, expected < %u", i,
               wc_writes[i].len, (unsigned long long)logged, 2 * CHUNK);
        if (i == 3)
            CHECK_OK(mindb_checkpoint(db));
    }
    mindb_file_close(f);
}

static void wc_model(uint8_t *model)
{
    memset(model, 0, WC_SIZE);
    for (size_t i = 0; i < sizeof wc_writes / sizeof wc_writes[0]; i++)
        su_fill(model + wc_writes[i].off, wc_writes[i].len, 500 + i);
}

static void wc_expect(mindb *db, const uint8_t *model)
{
    uint64_t size = 0;
    for (size_t i = 0; i < sizeof wc_writes / sizeof wc_writes[0]; i++)
        if (wc_writes[i].off + wc_writes[i].len > size)
            size = wc_writes[i].off + wc_writes[i].len;
    CHECK_EQ_U(size, WC_SIZE);
    EXPECT_VALUE(db, KEY("wc"), model, WC_SIZE);
    CHECK_EQ(mindb_check(db, NULL, NULL, NULL), 0);
}

static void test_whole_chunks(void)
{
    uint8_t *model = calloc(1, WC_SIZE);
    CHECK(model != NULL);
    mindb *db = su_open_store(1);
    wc_write_all(db, model);
    wc_expect(db, model);
    db = su_reopen_store(db);
    wc_expect(db, model);
    CHECK_OK(mindb_close(db));

    /* The same without a close: the records are replayed. */
    memset(model, 0, WC_SIZE);
    tu_path(su_store_dir, "store-unclosed");
    SU_RUN_UNCLOSED(wc_write_all, model);
    wc_model(model); /* the child's copy was filled, not this one */
    db = SU_OPEN(su_store_dir, &su_store_opts);
    wc_expect(db, model);
    CHECK_OK(mindb_close(db));
    free(model);
}

/* A store many times larger than the memory it is given: dirty data stays
 * within its bound (plus the one change in flight) while 24 MiB go in,
 * through puts, sequential and random pwrites, and all of it reads back. */
static void test_larger_than_memory(void)
{
    su_store_path(su_store_dir, "store");
    su_options(&su_store_opts, 1);
    su_store_opts.dirty_bytes = 1 << 20;
    su_store_opts.cache_bytes = 1 << 20;
    mindb *db = SU_OPEN(su_store_dir, &su_store_opts);
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
            (unsigned long long)su_store_opts.dirty_bytes);
    CHECK_LE_U(max_dirty, su_store_opts.dirty_bytes + piece + CHUNK_SLACK);
    mindb_file_close(f);
    db = su_reopen_store(db);
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

/* ---- extended attributes and links through a handle ---- */

/* What the handle's object holds at the end of test_file_xattrs. */
static void file_xattrs_check(mindb *db)
{
    EXPECT_XATTR(db, "fx/f", "user.a", "handle", 6);
    EXPECT_XATTR(db, "fx/f", "user.k", "key", 3);
    CHECK_ERR(mindb_getxattr(db, KEY("fx/f"), "user.gone", NULL, 0), -ENODATA);
    CHECK_EQ(mindb_listxattr(db, KEY("fx/f"), NULL, 0), 14);
}

static void test_file_xattrs(void)
{
    make_long_name();
    mindb *db = su_open_store(1);
    SU_PUT_STR(db, "fx/f", "v");
    mindb_file *f = OPEN_FILE(db, "fx/f", 0, 0);

    /* The key's calls and the handle's see one set of attributes, with the
     * same errors. */
    CHECK_OK(mindb_file_setxattr(f, "user.a", "1", 1, MINDB_XATTR_CREATE));
    EXPECT_XATTR(db, "fx/f", "user.a", "1", 1);
    CHECK_OK(mindb_setxattr(db, KEY("fx/f"), "user.k", "key", 3, 0));
    char buf[300];
    CHECK_EQ(mindb_file_getxattr(f, "user.k", NULL, 0), 3);
    CHECK_EQ(mindb_file_getxattr(f, "user.k", buf, sizeof buf), 3);
    CHECK(memcmp(buf, "key", 3) == 0);
    CHECK_ERR(mindb_file_getxattr(f, "user.k", buf, 2), -ERANGE);
    CHECK_ERR(mindb_file_getxattr(f, "user.none", buf, sizeof buf), -ENODATA);
    CHECK_ERR(mindb_file_setxattr(f, "user.a", "2", 1, MINDB_XATTR_CREATE), -EEXIST);
    CHECK_ERR(mindb_file_setxattr(f, "user.none", "2", 1, MINDB_XATTR_REPLACE), -ENODATA);
    CHECK_ERR(mindb_file_setxattr(f, "user.a", "2", 1, 0x4), -EINVAL);
    CHECK_ERR(mindb_file_setxattr(f, "user.a", NULL, 1, 0), -EINVAL);
    CHECK_ERR(mindb_file_setxattr(f, "", "2", 1, 0), -ERANGE);
    CHECK_ERR(mindb_file_setxattr(f, NULL, "2", 1, 0), -EINVAL);
    CHECK_ERR(mindb_file_getxattr(f, NULL, buf, sizeof buf), -EINVAL);
    char too_long[MINDB_MAX_XATTR_NAME + 2];
    memset(too_long, 'n', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = 0;
    CHECK_ERR(mindb_file_setxattr(f, too_long, "x", 1, 0), -ERANGE);
    CHECK_ERR(mindb_file_getxattr(f, too_long, NULL, 0), -ERANGE);
    CHECK_ERR(mindb_file_removexattr(f, too_long), -ERANGE);
    CHECK_OK(mindb_file_setxattr(f, g_long_name, "long", 4, 0));
    static uint8_t big[MINDB_MAX_XATTR_VALUE + 1];
    CHECK_ERR(mindb_file_setxattr(f, "user.big", big, sizeof big, 0), -E2BIG);
    CHECK_OK(mindb_file_setxattr(f, "user.big", big, MINDB_MAX_XATTR_VALUE, 0));
    CHECK_EQ(mindb_file_getxattr(f, "user.big", NULL, 0), MINDB_MAX_XATTR_VALUE);
    CHECK_EQ(mindb_file_listxattr(f, NULL, 0), 7 + 7 + 256 + 9);
    CHECK_ERR(mindb_file_listxattr(f, buf, 10), -ERANGE);
    CHECK_OK(mindb_file_removexattr(f, g_long_name));
    CHECK_OK(mindb_removexattr(db, KEY("fx/f"), "user.big"));
    CHECK_ERR(mindb_file_removexattr(f, "user.big"), -ENODATA);
    CHECK_EQ(mindb_file_listxattr(f, buf, sizeof buf), 14);
    CHECK(memcmp(buf, "user.a\0user.k\0", 14) == 0 || memcmp(buf, "user.k\0user.a\0", 14) == 0);
    struct mindb_stat st;
    CHECK_OK(mindb_fstat(f, &st));
    int64_t ctime = st.ctime_ns;
    CHECK_OK(mindb_file_setxattr(f, "user.a", "handle", 6, MINDB_XATTR_REPLACE));
    CHECK_OK(mindb_fstat(f, &st));
    CHECK(st.ctime_ns >= ctime);
    mindb_file_close(f);

    /* On an object whose last key is gone, as fsetxattr on an unlinked
     * file. */
    SU_PUT_STR(db, "fx/gone", "g");
    f = OPEN_FILE(db, "fx/gone", 0, 0);
    mindb_file *g = OPEN_FILE(db, "fx/gone", 0, 0);
    CHECK_OK(mindb_file_setxattr(f, "user.before", "b", 1, 0));
    CHECK_OK(mindb_delete(db, KEY("fx/gone")));
    CHECK_ERR(mindb_getxattr(db, KEY("fx/gone"), "user.before", NULL, 0), -ENOENT);
    CHECK_EQ(mindb_file_getxattr(f, "user.before", buf, sizeof buf), 1);
    CHECK_OK(mindb_file_setxattr(f, "user.after", "after", 5, MINDB_XATTR_CREATE));
    CHECK_EQ(mindb_file_getxattr(g, "user.after", buf, sizeof buf), 5);
    CHECK(memcmp(buf, "after", 5) == 0);
    CHECK_EQ(mindb_file_listxattr(g, buf, sizeof buf), 12 + 11);
    CHECK_OK(mindb_file_removexattr(g, "user.before"));
    CHECK_ERR(mindb_file_getxattr(f, "user.before", NULL, 0), -ENODATA);
    CHECK_OK(mindb_checkpoint(db)); /* the orphan is left out of the manifest */
    CHECK_EQ(mindb_file_getxattr(f, "user.after", NULL, 0), 5);
    mindb_file_close(g);
    mindb_file_close(f);

    file_xattrs_check(db);
    db = su_reopen_store(db);
    file_xattrs_check(db);

    /* Read-only: read through a handle, never change. */
    CHECK_OK(mindb_close(db));
    struct mindb_options o = su_store_opts;
    o.read_only = 1;
    db = SU_OPEN(su_store_dir, &o);
    f = OPEN_FILE(db, "fx/f", 0, 0);
    CHECK_EQ(mindb_file_getxattr(f, "user.a", NULL, 0), 6);
    CHECK_ERR(mindb_file_setxattr(f, "user.a", "x", 1, 0), -EROFS);
    CHECK_ERR(mindb_file_removexattr(f, "user.a"), -EROFS);
    mindb_file_close(f);
    file_xattrs_check(db);
    CHECK_OK(mindb_close(db));
}

/* The links test_file_link makes, and what a child process makes before
 * it crashes. */
static void file_link_check(mindb *db, int crashed)
{
    EXPECT_STAT(db, "fl/a", S_IFREG | 0644, 4, 3);
    EXPECT_STAT(db, "fl/b", S_IFREG | 0644, 4, 3);
    EXPECT_STAT(db, "fl/sub/c", S_IFREG | 0644, 4, 3);
    CHECK_EQ_U(STAT(db, "fl/b").id, STAT(db, "fl/a").id);
    CHECK_EQ_U(STAT(db, "fl/sub/c").id, STAT(db, "fl/a").id);
    EXPECT_STR(db, "fl/sub/c", "DAta");
    EXPECT_STAT(db, "fl/kept2", S_IFREG | 0644, 4, 1);
    EXPECT_STR(db, "fl/kept2", "kept");
    struct mindb_stat st;
    CHECK_ERR(mindb_stat(db, KEY("fl/orphan"), &st), -ENOENT);
    CHECK_ERR(mindb_stat(db, KEY("fl/back"), &st), -ENOENT);
    CHECK_ERR(mindb_stat(db, KEY("fl/d2"), &st), -ENOENT);
    if (crashed) {
        EXPECT_STAT(db, "fl/crash2", S_IFREG | 0644, 5, 2);
        EXPECT_STR(db, "fl/crash2", "crash");
        CHECK_EQ_U(STAT(db, "fl/crash2").id, STAT(db, "fl/crash").id);
    }
}

static void crash_link(mindb *db, void *ctx)
{
    (void)ctx;
    SU_PUT_STR(db, "fl/crash", "crash");
    mindb_file *f = OPEN_FILE(db, "fl/crash", 0, 0);
    CHECK_OK(mindb_file_link(f, KEY("fl/crash2")));
    mindb_file_close(f);
}

/* Counts the log's lines for the link crash_link() made. */
static void count_link_id(void *ctx, uint64_t pos, const char *text)
{
    (void)pos;
    int *n = ctx;
    if (strncmp(text, "link-id id=", 11) == 0 && strstr(text, " to=\"fl/crash2\""))
        (*n)++;
}

static void test_file_link(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_create(db, KEY("fl"), S_IFDIR | 0755, 0, 0, NULL, 0));
    CHECK_OK(mindb_create(db, KEY("fl/sub"), S_IFDIR | 0755, 0, 0, NULL, 0));
    SU_PUT_STR(db, "fl/a", "data");
    mindb_file *f = OPEN_FILE(db, "fl/a", 0, 0);
    int64_t dir_mtime = STAT(db, "fl/sub").mtime_ns;
    int64_t ctime = STAT(db, "fl/a").ctime_ns;
    CHECK_OK(mindb_file_link(f, KEY("fl/b")));
    CHECK_OK(mindb_file_link(f, KEY("fl/sub/c")));
    CHECK(STAT(db, "fl/sub").mtime_ns >= dir_mtime);
    CHECK(STAT(db, "fl/a").ctime_ns >= ctime);
    struct mindb_stat st;
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ(st.nlink, 3);
    PWRITE(f, "DA", 2, 0);
    EXPECT_STR(db, "fl/sub/c", "DAta");

    /* Errors: the new name first, then the object. */
    CHECK_ERR(mindb_file_link(f, KEY("fl/b")), -EEXIST);
    CHECK_ERR(mindb_file_link(f, KEY("fl/sub")), -EEXIST);
    CHECK_ERR(mindb_file_link(f, "", 0), -EEXIST); /* the root */
    CHECK_ERR(mindb_file_link(f, NULL, 1), -EINVAL);
    char long_key[MINDB_MAX_KEY + 1];
    memset(long_key, 'k', sizeof long_key);
    CHECK_ERR(mindb_file_link(f, long_key, sizeof long_key), -ENAMETOOLONG);
    mindb_file_close(f);
    mindb_file *d = OPEN_FILE(db, "fl/sub", 0, 0);
    CHECK_ERR(mindb_file_link(d, KEY("fl/d2")), -EPERM);
    CHECK_ERR(mindb_file_link(d, KEY("fl/a")), -EEXIST);
    mindb_file_close(d);

    /* After the last name is gone: ENOENT, as linkat() of an unlinked file
     * on ext4; while another name is left, the link works. */
    SU_PUT_STR(db, "fl/orphan", "orphan");
    f = OPEN_FILE(db, "fl/orphan", 0, 0);
    CHECK_OK(mindb_delete(db, KEY("fl/orphan")));
    CHECK_ERR(mindb_file_link(f, KEY("fl/back")), -ENOENT);
    CHECK_ERR(mindb_file_link(f, KEY("fl/a")), -EEXIST);
    CHECK_OK(mindb_fstat(f, &st));
    CHECK_EQ(st.nlink, 0);
    mindb_file_close(f);
    SU_PUT_STR(db, "fl/kept", "kept");
    f = OPEN_FILE(db, "fl/kept", 0, 0);
    CHECK_OK(mindb_link(db, KEY("fl/kept"), KEY("fl/kept1")));
    CHECK_OK(mindb_delete(db, KEY("fl/kept")));
    CHECK_OK(mindb_file_link(f, KEY("fl/kept2")));
    CHECK_OK(mindb_delete(db, KEY("fl/kept1")));
    mindb_file_close(f);

    /* The records replay: after a reopen from the log alone (a child that
     * crashes), after a close and after a checkpoint. */
    file_link_check(db, 0);
    CHECK_OK(mindb_close(db));
    SU_RUN_UNCLOSED(crash_link, NULL);
    db = SU_OPEN(su_store_dir, &su_store_opts);
    int link_records = 0;
    CHECK(mindb_describe_log(db, count_link_id, &link_records) > 0);
    CHECK_EQ(link_records, 1);
    file_link_check(db, 1);
    db = su_reopen_store(db);
    file_link_check(db, 1);
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    file_link_check(db, 1);

    /* Read-only: refused before anything. */
    CHECK_OK(mindb_close(db));
    struct mindb_options o = su_store_opts;
    o.read_only = 1;
    db = SU_OPEN(su_store_dir, &o);
    f = OPEN_FILE(db, "fl/a", 0, 0);
    CHECK_ERR(mindb_file_link(f, KEY("fl/ro")), -EROFS);
    mindb_file_close(f);
    CHECK_OK(mindb_close(db));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("handles", test_handles);
    tu_run("xattrs", test_xattrs);
    tu_run("file_xattrs", test_file_xattrs);
    tu_run("file_link", test_file_link);
    tu_run("setattr", test_setattr);
    tu_run("truncate", test_truncate);
    tu_run("sparse", test_sparse);
    tu_run("chunks", test_chunks);
    tu_run("whole_chunks", test_whole_chunks);
    tu_run("larger_than_memory", test_larger_than_memory);
    return tu_finish();
}
