/*
 * kv_leveldb.c - kv_bench's backend for LevelDB through its C API
 * (leveldb/c.h), with LevelDB's default options (Snappy compression when the
 * library has it, a 4 MiB write buffer, an 8 MiB block cache) plus
 * create_if_missing. One handle is shared by every thread.
 *
 * A durable put is a write with sync = true, which LevelDB groups across
 * concurrent writers. LevelDB has no call that only syncs its log, so sync()
 * writes an empty batch with sync = true: the log is synced up to it and
 * nothing else changes.
 */
#include "kv_bench.h"

#include <errno.h>
#include <leveldb/c.h>
#include <stdlib.h>

#define NAME "leveldb"

struct kv_db {
    leveldb_t *db;
    leveldb_options_t *options;
    leveldb_writeoptions_t *write;
    leveldb_writeoptions_t *write_sync;
    leveldb_readoptions_t *read;
    leveldb_writebatch_t *empty;
};

struct kv_session {
    struct kv_db *db;
    char *value; /* from the last get */
};

static int fail(const char *call, char *err)
{
    kv_report(NAME, call, err);
    leveldb_free(err);
    return -EIO;
}

static void destroy_options(struct kv_db *db)
{
    leveldb_writebatch_destroy(db->empty);
    leveldb_readoptions_destroy(db->read);
    leveldb_writeoptions_destroy(db->write_sync);
    leveldb_writeoptions_destroy(db->write);
    leveldb_options_destroy(db->options);
}

static int leveldb_backend_open(const char *dir, const struct kv_open_options *options,
                                struct kv_db **out)
{
    struct kv_db *db = calloc(1, sizeof *db);
    if (!db)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    db->options = leveldb_options_create();
    leveldb_options_set_create_if_missing(db->options, 1);
    db->write = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(db->write, options->sync_puts);
    db->write_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(db->write_sync, 1);
    db->read = leveldb_readoptions_create();
    db->empty = leveldb_writebatch_create();
    char *err = NULL;
    db->db = leveldb_open(db->options, dir, &err);
    if (err) {
        int rc = fail("leveldb_open", err);
        destroy_options(db);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int leveldb_backend_close(struct kv_db *db)
{
    leveldb_close(db->db);
    destroy_options(db);
    free(db);
    return 0;
}

static int leveldb_session_open(struct kv_db *db, unsigned index, struct kv_session **out)
{
    (void)index;
    struct kv_session *s = calloc(1, sizeof *s);
    if (!s)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    s->db = db;
    *out = s;
    return 0;
}

static void leveldb_session_close(struct kv_session *s)
{
    leveldb_free(s->value);
    free(s);
}

static int leveldb_backend_put(struct kv_session *s, const void *key, size_t key_len,
                               const void *value, size_t value_len)
{
    char *err = NULL;
    leveldb_put(s->db->db, s->db->write, key, key_len, value, value_len, &err);
    return err ? fail("leveldb_put", err) : 0;
}

static int leveldb_backend_sync(struct kv_session *s)
{
    char *err = NULL;
    leveldb_write(s->db->db, s->db->write_sync, s->db->empty, &err);
    return err ? fail("leveldb_write (sync)", err) : 0;
}

static int leveldb_backend_get(struct kv_session *s, const void *key, size_t key_len,
                               const void **value, size_t *value_len)
{
    leveldb_free(s->value);
    s->value = NULL;
    char *err = NULL;
    size_t len;
    s->value = leveldb_get(s->db->db, s->db->read, key, key_len, &len, &err);
    if (err)
        return fail("leveldb_get", err);
    if (!s->value)
        return -ENOENT;
    *value = s->value;
    *value_len = len;
    return 0;
}

static int leveldb_backend_scan(struct kv_session *s, const void *start, size_t start_len,
                                uint64_t count, kv_scan_fn fn, void *ctx)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db->db, s->db->read);
    int rc = 0;
    leveldb_iter_seek(it, start, start_len);
    for (uint64_t n = 0; n < count && leveldb_iter_valid(it); n++) {
        size_t key_len, value_len;
        const char *key = leveldb_iter_key(it, &key_len);
        const char *value = leveldb_iter_value(it, &value_len);
        rc = fn(ctx, key, key_len, value, value_len);
        if (rc < 0)
            break;
        leveldb_iter_next(it);
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err)
        rc = fail("leveldb_iter", err);
    leveldb_iter_destroy(it);
    return rc;
}

const struct kv_backend kv_leveldb_backend = {
    .name = NAME,
    .put_durability = "leveldb_put(); with durable puts, sync = true (group commit)",
    .sync_durability = "an empty batch written with sync = true: the log is synced",
    .open = leveldb_backend_open,
    .close = leveldb_backend_close,
    .session_open = leveldb_session_open,
    .session_close = leveldb_session_close,
    .put = leveldb_backend_put,
    .sync = leveldb_backend_sync,
    .get = leveldb_backend_get,
    .scan = leveldb_backend_scan,
    .bytes_on_disk = kv_dir_usage,
};
