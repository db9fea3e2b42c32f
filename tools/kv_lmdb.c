/*
 * kv_lmdb.c - kv_bench's backend for LMDB (lmdb.h): one environment with its
 * unnamed database, a map sized from the data the run writes, MDB_NOTLS so
 * that each session's read transaction is its own rather than its thread's.
 *
 * Every put is a write transaction of its own, as every put is its own
 * atomic change in the other stores. For durable puts the environment has
 * LMDB's default sync: each commit syncs the data and meta pages. Otherwise
 * it is opened with MDB_NOSYNC, commits write without syncing, and sync() is
 * mdb_env_sync(force = 1). Writers take LMDB's single writer lock in turn;
 * there is no group commit. Reads return a pointer into the map, no copy.
 */
#include "kv_bench.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>

#define NAME "lmdb"

struct kv_db {
    MDB_env *env;
    MDB_dbi dbi;
};

struct kv_session {
    struct kv_db *db;
    MDB_txn *read;  /* reused by reset and renew */
    bool read_live; /* holds a snapshot, which the last get's value is in */
};

static int fail(const char *call, int rc)
{
    kv_report(NAME, call, mdb_strerror(rc));
    return rc > 0 ? -rc : -EIO; /* LMDB's own codes are negative, errno's positive */
}

static int lmdb_backend_open(const char *dir, const struct kv_open_options *options,
                             struct kv_db **out)
{
    struct kv_db *db = calloc(1, sizeof *db);
    if (!db)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    int rc = mdb_env_create(&db->env);
    if (rc != 0) {
        free(db);
        return fail("mdb_env_create", rc);
    }
    /* Room for the data four times over: copy-on-write pages and the free
     * pages of overwrites. The map is address space only; the file grows
     * with what is written. */
    uint64_t map = options->data_bytes * 4 + ((uint64_t)256 << 20);
    if (map < ((uint64_t)1 << 30))
        map = (uint64_t)1 << 30;
    map = (map + ((1u << 20) - 1)) & ~(uint64_t)((1u << 20) - 1);
    const char *call = "mdb_env_set_mapsize";
    rc = mdb_env_set_mapsize(db->env, (size_t)map);
    if (rc == 0) {
        call = "mdb_env_set_maxreaders";
        rc = mdb_env_set_maxreaders(db->env, KV_MAX_THREADS + 2);
    }
    if (rc == 0) {
        call = "mdb_env_open";
        unsigned flags = MDB_NOTLS | (options->sync_puts ? 0 : MDB_NOSYNC);
        rc = mdb_env_open(db->env, dir, flags, 0644);
    }
    MDB_txn *txn = NULL;
    if (rc == 0) {
        call = "mdb_txn_begin";
        rc = mdb_txn_begin(db->env, NULL, 0, &txn);
    }
    if (rc == 0) {
        call = "mdb_dbi_open";
        rc = mdb_dbi_open(txn, NULL, 0, &db->dbi);
        if (rc == 0) {
            call = "mdb_txn_commit";
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
    }
    if (rc != 0) {
        int err = fail(call, rc);
        mdb_env_close(db->env);
        free(db);
        return err;
    }
    *out = db;
    return 0;
}

static int lmdb_backend_close(struct kv_db *db)
{
    mdb_env_close(db->env);
    free(db);
    return 0;
}

static int lmdb_session_open(struct kv_db *db, unsigned index, struct kv_session **out)
{
    (void)index;
    struct kv_session *s = calloc(1, sizeof *s);
    if (!s)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    s->db = db;
    *out = s;
    return 0;
}

static void lmdb_session_close(struct kv_session *s)
{
    if (s->read)
        mdb_txn_abort(s->read);
    free(s);
}

/* Lets go of the session's snapshot, so that a writer can reuse the pages
 * it pins. */
static void release_read(struct kv_session *s)
{
    if (s->read_live) {
        mdb_txn_reset(s->read);
        s->read_live = false;
    }
}

/* A fresh snapshot for a read. */
static int begin_read(struct kv_session *s)
{
    release_read(s);
    int rc =
        s->read ? mdb_txn_renew(s->read) : mdb_txn_begin(s->db->env, NULL, MDB_RDONLY, &s->read);
    if (rc != 0)
        return fail("mdb_txn_begin (read)", rc);
    s->read_live = true;
    return 0;
}

static int lmdb_backend_put(struct kv_session *s, const void *key, size_t key_len,
                            const void *value, size_t value_len)
{
    release_read(s);
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->db->env, NULL, 0, &txn);
    if (rc != 0)
        return fail("mdb_txn_begin", rc);
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val v = {.mv_size = value_len, .mv_data = (void *)value};
    rc = mdb_put(txn, s->db->dbi, &k, &v, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return fail("mdb_put", rc);
    }
    rc = mdb_txn_commit(txn);
    return rc != 0 ? fail("mdb_txn_commit", rc) : 0;
}

static int lmdb_backend_sync(struct kv_session *s)
{
    int rc = mdb_env_sync(s->db->env, 1);
    return rc != 0 ? fail("mdb_env_sync", rc) : 0;
}

static int lmdb_backend_get(struct kv_session *s, const void *key, size_t key_len,
                            const void **value, size_t *value_len)
{
    int rc = begin_read(s);
    if (rc < 0)
        return rc;
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key}, v;
    rc = mdb_get(s->read, s->db->dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc != 0)
        return fail("mdb_get", rc);
    *value = v.mv_data;
    *value_len = v.mv_size;
    return 0;
}

static int lmdb_backend_scan(struct kv_session *s, const void *start, size_t start_len,
                             uint64_t count, kv_scan_fn fn, void *ctx)
{
    int rc = begin_read(s);
    if (rc < 0)
        return rc;
    MDB_cursor *cursor;
    rc = mdb_cursor_open(s->read, s->db->dbi, &cursor);
    if (rc != 0)
        return fail("mdb_cursor_open", rc);
    MDB_val k = {.mv_size = start_len, .mv_data = (void *)start}, v;
    MDB_cursor_op op = MDB_SET_RANGE;
    for (uint64_t n = 0; n < count; n++, op = MDB_NEXT) {
        rc = mdb_cursor_get(cursor, &k, &v, op);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc != 0) {
            rc = fail("mdb_cursor_get", rc);
            break;
        }
        rc = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (rc < 0)
            break;
    }
    mdb_cursor_close(cursor);
    release_read(s);
    return rc;
}

const struct kv_backend kv_lmdb_backend = {
    .name = NAME,
    .put_durability = "a write transaction per put; durable puts: default sync at each commit",
    .sync_durability = "opened with MDB_NOSYNC; mdb_env_sync(force = 1)",
    .open = lmdb_backend_open,
    .close = lmdb_backend_close,
    .session_open = lmdb_session_open,
    .session_close = lmdb_session_close,
    .put = lmdb_backend_put,
    .sync = lmdb_backend_sync,
    .get = lmdb_backend_get,
    .scan = lmdb_backend_scan,
    .bytes_on_disk = kv_dir_usage,
};
