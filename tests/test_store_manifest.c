/*
 * test_store_manifest.c - how a store loads its manifest: a checkpoint
 * writes the objects that one key names in the order of their keys (what
 * makes a large store open fast), and a load takes any order (older builds
 * wrote them in their table's order; hard links and ids above the header's
 * next id take the slower way) but refuses an id given twice; and a close
 * writes one only when something changed.
 */
#include "manifestfile.h"
#include "storeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#define T0 ((int64_t)1600000000 * 1000000000)

static uint64_t id_of(mindb *db, const char *key)
{
    return STAT(db, key).id;
}

static void any_order_check(mindb *db)
{
    CHECK_EQ_U(id_of(db, "a"), 20);
    CHECK_EQ_U(id_of(db, "d/b"), 20);
    EXPECT_STAT(db, "a", S_IFREG | 0644, 0, 2);
    EXPECT_STAT(db, "d", S_IFDIR | 0755, 0, 2);
    CHECK_EQ_U(id_of(db, "d/high"), 50);
    CHECK_EQ_U(id_of(db, "e"), 21);
    struct mindb_stats stats;
    CHECK_OK(mindb_stats(db, &stats));
    CHECK_EQ_U(stats.keys, 5);    /* the root is no key of the user's */
    CHECK_EQ_U(stats.objects, 4); /* nor an object */
}

/* Objects in the reverse of their keys' order, one named twice, one with
 * an id above the header's next id. */
static void test_any_order(void)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_close(db));
    struct mf_body b = {.len = 0};
    mf_object(&b, 50, S_IFREG | 0644, T0);
    mf_object(&b, 21, S_IFREG | 0644, T0);
    mf_object(&b, 20, S_IFREG | 0644, T0);
    mf_object(&b, 10, S_IFDIR | 0755, T0);
    mf_object(&b, 1, S_IFDIR | 0755, T0);
    mf_key(&b, "", 1);
    mf_key(&b, "a", 20);
    mf_key(&b, "d", 10);
    mf_key(&b, "d/b", 20);
    mf_key(&b, "d/high", 50);
    mf_key(&b, "e", 21);
    mf_replace(su_store_dir, &b, 30);

    db = SU_OPEN(su_store_dir, &su_store_opts);
    any_order_check(db);
    /* Ids in use are never handed out again, whatever the header says. */
    CHECK_OK(mindb_create(db, KEY("new"), S_IFREG | 0644, 0, 0, NULL, 0));
    uint64_t id = id_of(db, "new");
    CHECKF(id > 50, "new object's id: expected above 50, got %llu", (unsigned long long)id);
    CHECK_OK(mindb_delete(db, KEY("new")));
    CHECK_OK(mindb_checkpoint(db));
    db = su_reopen_store(db);
    any_order_check(db);
    CHECK_OK(mindb_close(db));
}

/* The same id twice is damage, below the header's next id (checked in a
 * bitmap) and above it (checked in the table). */
static void duplicate_id(uint64_t twice)
{
    mindb *db = su_open_store(1);
    CHECK_OK(mindb_close(db));
    struct mf_body b = {.len = 0};
    mf_object(&b, 1, S_IFDIR | 0755, T0);
    mf_object(&b, twice, S_IFREG | 0644, T0);
    mf_object(&b, 8, S_IFREG | 0644, T0);
    mf_object(&b, twice, S_IFREG | 0644, T0);
    mf_key(&b, "", 1);
    mf_key(&b, "x", twice);
    mf_key(&b, "y", 8);
    mf_replace(su_store_dir, &b, 30);
    db = NULL;
    int err = mindb_open(su_store_dir, &su_store_opts, &db);
    CHECKF(err == MINDB_ECORRUPT, "id %llu twice: expected MINDB_ECORRUPT, got %d (%s)",
           (unsigned long long)twice, err, mindb_strerror(err));
    CHECK(db == NULL);
}

static void test_duplicate_id_below_next(void)
{
    duplicate_id(7);
}

static void test_duplicate_id_above_next(void)
{
    duplicate_id(40);
}

/* The ids of a checkpoint's objects and keys, in the order written; every
 * object must be empty (no xattrs, no chunks). */
static void written_order(uint64_t *objs, uint64_t *n_objs, uint64_t *keys, uint64_t *n_keys)
{
    char name[64], path[TU_PATH_MAX + 64];
    mf_newest(su_store_dir, name);
    snprintf(path, sizeof path, "%s/%s", su_store_dir, name);
    uint64_t size = tu_file_size(path);
    uint8_t *file = su_xmalloc(size);
    tu_pread_file(path, file, size, 0);
    uint64_t body_len;
    memcpy(n_objs, file + 40, 8);
    memcpy(n_keys, file + 48, 8);
    memcpy(&body_len, file + 56, 8);
    uint8_t *body = su_xmalloc(body_len);
    size_t got = ZSTD_decompress(body, body_len, file + 64, size - 64 - 8);
    CHECKF(got == body_len, "body: expected %llu bytes, got %zu", (unsigned long long)body_len,
           got);
    const uint8_t *p = body;
    for (uint64_t i = 0; i < *n_objs; i++) {
        uint32_t n_x, n_c;
        memcpy(&objs[i], p, 8);
        memcpy(&n_x, p + 20, 4);
        memcpy(&n_c, p + 56, 4);
        CHECK(n_x == 0 && n_c == 0);
        p += 60;
    }
    for (uint64_t i = 0; i < *n_keys; i++) {
        uint16_t len;
        memcpy(&len, p, 2);
        memcpy(&keys[i], p + 2 + len, 8);
        p += 2 + len + 8;
    }
    CHECK(p == body + body_len);
    free(body);
    free(file);
}

/* Created in an order unlike the keys', renamed, hard-linked: the objects
 * named once come first, in the order of their keys; the linked one after
 * them. */
static void test_written_in_key_order(void)
{
    mindb *db = su_open_store(1);
    const char *made[] = {"m", "c", "x", "a", "q"};
    for (size_t i = 0; i < sizeof made / sizeof made[0]; i++)
        CHECK_OK(mindb_create(db, KEY(made[i]), S_IFREG | 0644, 0, 0, NULL, 0));
    CHECK_OK(mindb_rename(db, KEY("x"), KEY("b"), 0));
    CHECK_OK(mindb_link(db, KEY("q"), KEY("l")));
    CHECK_OK(mindb_checkpoint(db));

    uint64_t objs[16], keys[16], n_objs, n_keys;
    written_order(objs, &n_objs, keys, &n_keys);
    CHECK_EQ_U(n_objs, 6); /* the root and five files */
    CHECK_EQ_U(n_keys, 7); /* "", a, b, c, l, m, q */
    /* Keys "", a, b, c, m name one object each; l and q the same one. */
    const size_t once[] = {0, 1, 2, 3, 5};
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
        CHECKF(objs[i] == keys[once[i]], "object %zu: expected id %llu (key %zu's), got %llu", i,
               (unsigned long long)keys[once[i]], once[i], (unsigned long long)objs[i]);
    CHECK_EQ_U(objs[5], id_of(db, "q"));
    CHECK_EQ_U(keys[4], keys[6]);
    db = su_reopen_store(db);
    EXPECT_STAT(db, "l", S_IFREG | 0644, 0, 2);
    CHECK_EQ_U(id_of(db, "b"), keys[2]);
    CHECK_OK(mindb_close(db));
}

static void put_c(mindb *db, void *ctx)
{
    (void)ctx;
    SU_PUT_STR(db, "c", "three");
}

/* A close writes a manifest only when the store holds something the newest
 * one lacks: opening a large store to read from it must not rewrite its
 * manifest at every close. */
static void test_close_writes_manifest_only_after_changes(void)
{
    mindb *db = su_open_store(1);
    SU_PUT_STR(db, "a", "one");
    CHECK_OK(mindb_close(db));
    char first[64], now[64];
    mf_newest(su_store_dir, first);

    /* Reads only. */
    db = SU_OPEN(su_store_dir, &su_store_opts);
    EXPECT_STR(db, "a", "one");
    CHECK_OK(mindb_close(db));
    mf_newest(su_store_dir, now);
    CHECKF(strcmp(now, first) == 0, "a close after reads wrote %s (newest was %s)", now, first);

    /* A change. */
    db = SU_OPEN(su_store_dir, &su_store_opts);
    SU_PUT_STR(db, "b", "two");
    CHECK_OK(mindb_close(db));
    mf_newest(su_store_dir, now);
    CHECKF(strcmp(now, first) > 0, "a close after a put wrote no manifest (newest %s)", now);

    /* A change found in the log by the open (a crash before the close). */
    snprintf(first, sizeof first, "%s", now);
    SU_RUN_UNCLOSED(put_c, NULL);
    db = SU_OPEN(su_store_dir, &su_store_opts);
    CHECK_OK(mindb_close(db));
    mf_newest(su_store_dir, now);
    CHECKF(strcmp(now, first) > 0, "a close after a replay wrote no manifest (newest %s)", now);
    db = SU_OPEN(su_store_dir, &su_store_opts);
    EXPECT_STR(db, "a", "one");
    EXPECT_STR(db, "b", "two");
    EXPECT_STR(db, "c", "three");
    CHECK_OK(mindb_close(db));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("any_order", test_any_order);
    tu_run("duplicate_id_below_next", test_duplicate_id_below_next);
    tu_run("duplicate_id_above_next", test_duplicate_id_above_next);
    tu_run("written_in_key_order", test_written_in_key_order);
    tu_run("close_writes_manifest_only_after_changes",
           test_close_writes_manifest_only_after_changes);
    return tu_finish();
}
