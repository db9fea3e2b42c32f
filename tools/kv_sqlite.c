/*
 * kv_sqlite.c - kv_bench's backend for SQLite (sqlite3.h): one file kv.sqlite
 * in WAL mode holding
 *     CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID
 * so that the table is one B-tree ordered by key, as the other stores are.
 * Each session is a connection of its own (a connection serves one thread
 * at a time), with its statements prepared once.
 *
 * Every put is a transaction of its own (an INSERT OR REPLACE in autocommit
 * mode). For durable puts the connections use synchronous = FULL: each
 * commit syncs the WAL. Otherwise synchronous = NORMAL, WAL mode's usual
 * setting, where commits do not sync and checkpoints do; sync() is then
 * PRAGMA wal_checkpoint(PASSIVE), which syncs the WAL, copies it into the
 * database and syncs that. Concurrent writers wait for the write lock in
 * turn (busy_timeout); there is no group commit.
 */
#include "kv_bench.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define NAME "sqlite"
#define BUSY_TIMEOUT_MS 60000

struct kv_db {
    char path[PATH_MAX];
    bool sync_puts;
    sqlite3 *conn; /* keeps the database open between sessions */
};

struct kv_session {
    struct kv_db *db;
    sqlite3 *conn;
    sqlite3_stmt *put;
    sqlite3_stmt *get;
    sqlite3_stmt *scan;
    bool get_live; /* `get` holds the last value, and a read transaction */
};

static int fail(sqlite3 *conn, const char *call)
{
    kv_report(NAME, call, conn ? sqlite3_errmsg(conn) : "out of memory");
    return -EIO;
}

/* Opens a connection with the settings every connection of the store has. */
static int open_connection(struct kv_db *db, sqlite3 **out)
{
    sqlite3 *conn = NULL;
    int rc = sqlite3_open_v2(
        db->path, &conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int err = fail(conn, "sqlite3_open_v2");
        sqlite3_close(conn);
        return err;
    }
    const char *setup = db->sync_puts ? "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                                      : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;";
    if (sqlite3_busy_timeout(conn, BUSY_TIMEOUT_MS) != SQLITE_OK ||
        sqlite3_exec(conn, setup, NULL, NULL, NULL) != SQLITE_OK) {
        int err = fail(conn, "setting up a connection");
        sqlite3_close(conn);
        return err;
    }
    *out = conn;
    return 0;
}

static int sqlite_backend_open(const char *dir, const struct kv_open_options *options,
                               struct kv_db **out)
{
    struct kv_db *db = calloc(1, sizeof *db);
    if (!db)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    int len = snprintf(db->path, sizeof db->path, "%s/kv.sqlite", dir);
    if (len < 0 || (size_t)len >= sizeof db->path) {
        free(db);
        return kv_report_errno(NAME, "open", -ENAMETOOLONG);
    }
    db->sync_puts = options->sync_puts;
    int rc = open_connection(db, &db->conn);
    if (rc < 0) {
        free(db);
        return rc;
    }
    if (sqlite3_exec(db->conn,
                     "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
                     NULL, NULL, NULL) != SQLITE_OK) {
        rc = fail(db->conn, "CREATE TABLE");
        sqlite3_close(db->conn);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int sqlite_backend_close(struct kv_db *db)
{
    /* The last connection to close checkpoints the WAL and removes it. */
    int rc = sqlite3_close(db->conn) == SQLITE_OK ? 0 : fail(db->conn, "sqlite3_close");
    free(db);
    return rc;
}

static void sqlite_session_close(struct kv_session *s)
{
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->get);
    sqlite3_finalize(s->scan);
    sqlite3_close(s->conn);
    free(s);
}

static int sqlite_session_open(struct kv_db *db, unsigned index, struct kv_session **out)
{
    (void)index;
    struct kv_session *s = calloc(1, sizeof *s);
    if (!s)
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    s->db = db;
    int rc = open_connection(db, &s->conn);
    if (rc < 0) {
        free(s);
        return rc;
    }
    if (sqlite3_prepare_v2(s->conn, "INSERT OR REPLACE INTO kv(k, v) VALUES(?1, ?2)", -1, &s->put,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->conn, "SELECT v FROM kv WHERE k = ?1", -1, &s->get, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(s->conn, "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2", -1,
                           &s->scan, NULL) != SQLITE_OK) {
        rc = fail(s->conn, "sqlite3_prepare_v2");
        sqlite_session_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* Ends the read transaction the last get left open, so that it pins no
 * snapshot while the session writes. */
static void release_get(struct kv_session *s)
{
    if (s->get_live) {
        sqlite3_reset(s->get);
        s->get_live = false;
    }
}

static int sqlite_backend_put(struct kv_session *s, const void *key, size_t key_len,
                              const void *value, size_t value_len)
{
    release_get(s);
    sqlite3_bind_blob(s->put, 1, key, (int)key_len, SQLITE_STATIC);
    sqlite3_bind_blob(s->put, 2, value, (int)value_len, SQLITE_STATIC);
    int rc = sqlite3_step(s->put);
    sqlite3_reset(s->put);
    return rc == SQLITE_DONE ? 0 : fail(s->conn, "INSERT");
}

static int sqlite_backend_sync(struct kv_session *s)
{
    release_get(s);
    int rc = sqlite3_wal_checkpoint_v2(s->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail(s->conn, "sqlite3_wal_checkpoint_v2");
}

static int sqlite_backend_get(struct kv_session *s, const void *key, size_t key_len,
                              const void **value, size_t *value_len)
{
    release_get(s);
    sqlite3_bind_blob(s->get, 1, key, (int)key_len, SQLITE_STATIC);
    int rc = sqlite3_step(s->get);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s->get);
        return -ENOENT;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s->get);
        return fail(s->conn, "SELECT");
    }
    /* The blob stays valid until the statement is stepped or reset. */
    s->get_live = true;
    *value = sqlite3_column_blob(s->get, 0);
    *value_len = (size_t)sqlite3_column_bytes(s->get, 0);
    return 0;
}

static int sqlite_backend_scan(struct kv_session *s, const void *start, size_t start_len,
                               uint64_t count, kv_scan_fn fn, void *ctx)
{
    release_get(s);
    sqlite3_bind_blob(s->scan, 1, start, (int)start_len, SQLITE_STATIC);
    sqlite3_bind_int64(s->scan, 2, count > INT64_MAX ? INT64_MAX : (sqlite3_int64)count);
    int rc = 0, step;
    while ((step = sqlite3_step(s->scan)) == SQLITE_ROW) {
        const void *key = sqlite3_column_blob(s->scan, 0);
        size_t key_len = (size_t)sqlite3_column_bytes(s->scan, 0);
        const void *value = sqlite3_column_blob(s->scan, 1);
        size_t value_len = (size_t)sqlite3_column_bytes(s->scan, 1);
        rc = fn(ctx, key, key_len, value, value_len);
        if (rc < 0)
            break;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = fail(s->conn, "SELECT (scan)");
    sqlite3_reset(s->scan);
    return rc;
}

const struct kv_backend kv_sqlite_backend = {
    .name = NAME,
    .put_durability = "a transaction per put in WAL mode; durable puts: synchronous = FULL",
    .sync_durability = "synchronous = NORMAL; PRAGMA wal_checkpoint(PASSIVE) syncs all",
    .open = sqlite_backend_open,
    .close = sqlite_backend_close,
    .session_open = sqlite_session_open,
    .session_close = sqlite_session_close,
    .put = sqlite_backend_put,
    .sync = sqlite_backend_sync,
    .get = sqlite_backend_get,
    .scan = sqlite_backend_scan,
    .bytes_on_disk = kv_dir_usage,
};
