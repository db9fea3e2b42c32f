/*
 * kv_rocksdb.c - kv_bench's backend for RocksDB through its C API
 * (rocksdb/c.h), with RocksDB's default options (its default compression, a
 * 64 MiB memtable, the default block cache) plus create_if_missing. One
 * handle is shared by every thread, as RocksDB means it to be used.
 *
 * A durable put is a write with sync = true, which RocksDB groups across
 * concurrent writers. sync() is rocksdb_flush_wal(sync = 1): the write-ahead
 * log is made durable, the memtable stays in memory, as mindb_sync() leaves
 * its dirty data in memory. Reads use rocksdb_get_pinned(), which avoids a
 * copy of the value.
 */
#include "kv_bench.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdlib.h>

#define NAME "rocksdb"

struct kv_db {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_writeoptions_t *write;
    rocksdb_readoptions_t *read;
};

struct kv_session {
    struct kv_db *db;
    rocksdb_pinnableslice_t *value; /* from the last get */
};

/* Reports and frees the error RocksDB returned in `err`. */
static int fail(const char *call, char *err)
{
    kv_report(NAME, call, err);
    rocksdb_free(err);
    return -EIO;
}

static int rocksdb_backend_open(const char *dir, const struct kv_open_options *options,
                                struct kv_db **out)
{
    struct kv_db *db = calloc(1, sizeof *db);
    if (!db)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    db->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(db->options, 1);
    db->write = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(db->write, options->sync_puts);
    db->read = rocksdb_readoptions_create();
    char *err = NULL;
    db->db = rocksdb_open(db->options, dir, &err);
    if (err) {
        int rc = fail("rocksdb_open", err);
        rocksdb_readoptions_destroy(db->read);
        rocksdb_writeoptions_destroy(db->write);
        rocksdb_options_destroy(db->options);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int rocksdb_backend_close(struct kv_db *db)
{
    rocksdb_close(db->db);
    rocksdb_readoptions_destroy(db->read);
    rocksdb_writeoptions_destroy(db->write);
    rocksdb_options_destroy(db->options);
    free(db);
    return 0;
}

static int rocksdb_session_open(struct kv_db *db, unsigned index, struct kv_session **out)
{
    (void)index;
    struct kv_session *s = calloc(1, sizeof *s);
    if (!s)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    s->db = db;
    *out = s;
    return 0;
}

static void rocksdb_session_close(struct kv_session *s)
{
    if (s->value)
        rocksdb_pinnableslice_destroy(s->value);
    free(s);
}

static int rocksdb_backend_put(struct kv_session *s, const void *key, size_t key_len,
                               const void *value, size_t value_len)
{
    char *err = NULL;
    rocksdb_put(s->db->db, s->db->write, key, key_len, value, value_len, &err);
    return err ? fail("rocksdb_put", err) : 0;
}

static int rocksdb_backend_sync(struct kv_session *s)
{
    char *err = NULL;
    rocksdb_flush_wal(s->db->db, 1, &err);
    return err ? fail("rocksdb_flush_wal", err) : 0;
}

static int rocksdb_backend_get(struct kv_session *s, const void *key, size_t key_len,
                               const void **value, size_t *value_len)
{
    if (s->value) {
        rocksdb_pinnableslice_destroy(s->value);
        s->value = NULL;
    }
    char *err = NULL;
    s->value = rocksdb_get_pinned(s->db->db, s->db->read, key, key_len, &err);
    if (err)
        return fail("rocksdb_get_pinned", err);
    if (!s->value)
        return -ENOENT;
    *value = rocksdb_pinnableslice_value(s->value, value_len);
    return 0;
}

static int rocksdb_backend_scan(struct kv_session *s, const void *start, size_t start_len,
                                uint64_t count, kv_scan_fn fn, void *ctx)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db->db, s->db->read);
    int rc = 0;
    rocksdb_iter_seek(it, start, start_len);
    for (uint64_t n = 0; n < count && rocksdb_iter_valid(it); n++) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        const char *value = rocksdb_iter_value(it, &value_len);
        rc = fn(ctx, key, key_len, value, value_len);
        if (rc < 0)
            break;
        rocksdb_iter_next(it);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = fail("rocksdb_iter", err);
    rocksdb_iter_destroy(it);
    return rc;
}

const struct kv_backend kv_rocksdb_backend = {
    .name = NAME,
    .put_durability = "rocksdb_put(); with durable puts, sync = true (group commit)",
    .sync_durability = "rocksdb_flush_wal(sync = 1): the WAL is durable, memtable in memory",
    .open = rocksdb_backend_open,
    .close = rocksdb_backend_close,
    .session_open = rocksdb_session_open,
    .session_close = rocksdb_session_close,
    .put = rocksdb_backend_put,
    .sync = rocksdb_backend_sync,
    .get = rocksdb_backend_get,
    .scan = rocksdb_backend_scan,
    .bytes_on_disk = kv_dir_usage,
};
