/*
 * kv_mindb.c - kv_bench's backend for mindb itself: the options of
 * mindb_options_init() with direct_io on (its default), one handle shared by
 * every thread, as mindb means it to be used.
 *
 * A durable put is mindb_put() then mindb_sync(): concurrent syncs share one
 * log commit. A scan walks keys with an iterator, taking each key's size
 * from the metadata the iterator returns and its value with
 * mindb_iter_read() into one reused buffer.
 */
#include "kv_bench.h"

#include "mindb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NAME "mindb"

struct kv_db {
    mindb *db;
    bool sync_puts;
};

struct kv_session {
    struct kv_db *db;
    void *value; /* from the last get, freed by the next */
};

static int fail(const char *call, int rc)
{
    kv_report(NAME, call, mindb_strerror(rc));
    return rc;
}

static void log_line(void *ctx, const char *message)
{
    (void)ctx;
    fprintf(stderr, "%s: mindb: %s\n", PROGRAM, message);
}

static int mindb_backend_open(const char *dir, const struct kv_open_options *options,
                              struct kv_db **out)
{
    struct kv_db *db = calloc(1, sizeof *db);
    if (!db)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    struct mindb_options o;
    mindb_options_init(&o);
    o.create = 1;
    o.direct_io = 1;
    o.log = log_line;
    int rc = mindb_open(dir, &o, &db->db);
    if (rc < 0) {
        free(db);
        return fail("mindb_open", rc);
    }
    db->sync_puts = options->sync_puts;
    *out = db;
    return 0;
}

static int mindb_backend_close(struct kv_db *db)
{
    int rc = mindb_close(db->db);
    free(db);
    return rc < 0 ? fail("mindb_close", rc) : 0;
}

static int mindb_session_open(struct kv_db *db, unsigned index, struct kv_session **out)
{
    (void)index;
    struct kv_session *s = calloc(1, sizeof *s);
    if (!s)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    s->db = db;
    *out = s;
    return 0;
}

static void mindb_session_close(struct kv_session *s)
{
    free(s->value);
    free(s);
}

static int mindb_backend_put(struct kv_session *s, const void *key, size_t key_len,
                             const void *value, size_t value_len)
{
    int rc = mindb_put(s->db->db, key, key_len, value, value_len);
    if (rc < 0)
        return fail("mindb_put", rc);
    if (s->db->sync_puts) {
        rc = mindb_sync(s->db->db);
        if (rc < 0)
            return fail("mindb_sync", rc);
    }
    return 0;
}

static int mindb_backend_sync(struct kv_session *s)
{
    int rc = mindb_sync(s->db->db);
    return rc < 0 ? fail("mindb_sync", rc) : 0;
}

static int mindb_backend_get(struct kv_session *s, const void *key, size_t key_len,
                             const void **value, size_t *value_len)
{
    free(s->value);
    s->value = NULL;
    void *v;
    size_t len;
    int rc = mindb_get(s->db->db, key, key_len, &v, &len);
    if (rc == -ENOENT)
        return rc;
    if (rc < 0)
        return fail("mindb_get", rc);
    s->value = v;
    *value = v;
    *value_len = len;
    return 0;
}

static int mindb_backend_scan(struct kv_session *s, const void *start, size_t start_len,
                              uint64_t count, kv_scan_fn fn, void *ctx)
{
    mindb_iter *it;
    int rc = mindb_iter_open(s->db->db, start, start_len, NULL, 0, 0, &it);
    if (rc < 0)
        return fail("mindb_iter_open", rc);
    void *buf = NULL;
    size_t cap = 0;
    for (uint64_t n = 0; n < count; n++) {
        const void *k;
        size_t key_len;
        struct mindb_stat st;
        rc = mindb_iter_next(it, &k, &key_len, &st);
        if (rc <= 0) {
            if (rc < 0)
                fail("mindb_iter_next", rc);
            break;
        }
        if (st.size > cap) {
            void *p = realloc(buf, (size_t)st.size);
            if (!p) {
                rc = fail("realloc (scan)", -ENOMEM);
                break;
            }
            buf = p;
            cap = (size_t)st.size;
        }
        ssize_t len = mindb_iter_read(it, buf, (size_t)st.size, 0);
        if (len < 0) {
            rc = fail("mindb_iter_read (scan)", (int)len);
            break;
        }
        rc = fn(ctx, k, key_len, buf, (size_t)len);
        if (rc != 0)
            break;
    }
    free(buf);
    mindb_iter_close(it);
    return rc < 0 ? rc : 0;
}

const struct kv_backend kv_mindb_backend = {
    .name = NAME,
    .put_durability = "mindb_put(); with durable puts, then mindb_sync() (group commit)",
    .sync_durability = "mindb_sync(): the log is durable up to now",
    .open = mindb_backend_open,
    .close = mindb_backend_close,
    .session_open = mindb_session_open,
    .session_close = mindb_session_close,
    .put = mindb_backend_put,
    .sync = mindb_backend_sync,
    .get = mindb_backend_get,
    .scan = mindb_backend_scan,
    .bytes_on_disk = kv_dir_usage,
};
