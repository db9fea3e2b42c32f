/*
 * db.c - opening, recovering and closing a store; options, errors and
 * statistics.
 *
 * A store directory holds:
 *   FORMAT           "mindb store format 3\n": what makes it a store
 *   LOCK             flock()ed while open, with the holder's pid
 *   wal/             the write-ahead log (wal/ layer)
 *   data/            data segments of compressed chunks (datafile.c)
 *   manifest.SEQ     the newest checkpoint, and the one before it
 * docs/FORMAT.md describes every file.
 */
#include "db_int.h"
#include "mindb_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_NAME "FORMAT"
#define FORMAT_TEXT "mindb store format %d\n"
#define FORMAT_VERSION 3

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void db_log(mindb *db, const char *fmt, ...)
{
    if (!db->opt.log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    db->opt.log(db->opt.log_ctx, line);
}

const char *mindb_version(void)
{
    return MINDB_VERSION;
}

const char *mindb_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case MINDB_ENOTSTORE:
        return "not a mindb store";
    case MINDB_EVERSION:
        return "store written by a newer format version";
    case MINDB_ECORRUPT:
        return "store damaged beyond repair (see the log)";
    case -EUCLEAN:
        return "write-ahead log damaged beyond repair";
    }
    const char *s = err < 0 ? strerrordesc_np(-err) : NULL;
    return s ? s : "unknown error";
}

void mindb_options_init(struct mindb_options *o)
{
    memset(o, 0, sizeof(*o));
    o->compression_level = 3;
    o->cache_bytes = 64ull << 20;
    o->dirty_bytes = 64ull << 20;
    o->checkpoint_wal_bytes = 256ull << 20;
    o->checkpoint_interval_ms = 30000;
    o->compact_live_percent = 50;
    o->data_segment_bytes = 64ull << 20;
    o->direct_io = 1;
    o->background = 1;
}

static void wal_log_adapter(void *ctx, const char *message)
{
    db_log(ctx, "%s", message);
}

/* A store's format version (1 or more); 0: an empty directory (but for a
 * LOCK file); MINDB_ENOTSTORE, MINDB_EVERSION or -errno otherwise. */
static int probe_store(int dirfd)
{
    int fd = openat(dirfd, FORMAT_NAME, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        int version;
        if (n <= 0 || sscanf(buf, FORMAT_TEXT, &version) != 1)
            return MINDB_ENOTSTORE;
        if (version > FORMAT_VERSION)
            return MINDB_EVERSION;
        return version > 1 ? version : 1;
    }
    if (errno != ENOENT)
        return -errno;
    int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -ENOMEM;
    }
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        /* A LOCK file alone is left by an open that failed or is running
         * now: the directory is still empty of a store. */
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "LOCK"))
            empty = 0;
    closedir(d);
    return empty ? 0 : MINDB_ENOTSTORE;
}

/* The FORMAT file goes last: a directory is a store only once all of it is
 * in place. */
static int write_format(mindb *db)
{
    int fd = openat(db->dirfd, "FORMAT.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    char buf[64];
    int n = snprintf(buf, sizeof(buf), FORMAT_TEXT, FORMAT_VERSION);
    int err = write(fd, buf, (size_t)n) == n ? 0 : -EIO;
    if (!err && fsync(fd) != 0)
        err = -errno;
    close(fd);
    if (!err && renameat(db->dirfd, "FORMAT.tmp", db->dirfd, FORMAT_NAME) != 0)
        err = -errno;
    if (!err && fsync(db->dirfd) != 0)
        err = -errno;
    return err;
}

static int open_dir(mindb *db, int *fresh)
{
    db->dirfd = open(db->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (db->dirfd < 0 && errno == ENOENT && db->opt.create && !db->opt.read_only) {
        if (mkdir(db->dir, 0755) != 0 && errno != EEXIST)
            return -errno;
        db->dirfd = open(db->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (db->dirfd < 0)
        return -errno;
    int kind = probe_store(db->dirfd);
    /* Not a store yet, but another process holds its lock: a store being
     * made. Refusing with -EBUSY (rather than "not a store") lets the caller
     * wait for it; no LOCK file is made in a directory that is no store. */
    if (kind == MINDB_ENOTSTORE && lock_held_elsewhere(db))
        return -EBUSY;
    if (kind < 0)
        return kind;
    if (kind == 0 && (!db->opt.create || db->opt.read_only))
        return MINDB_ENOTSTORE;
    *fresh = kind == 0;
    return 0;
}

/* Applies the log from the manifest's position; `*records` counts what it
 * found there. */
static int replay(mindb *db, uint64_t *records)
{
    wal_reader *rd;
    int err = wal_reader_open(db->log, db->checkpoint_pos, &rd);
    if (err)
        return err;
    const void *data;
    size_t len;
    uint64_t pos;
    uint64_t applied = 0, skipped = 0;
    while ((err = wal_reader_next(rd, &data, &len, &pos)) == 1) {
        struct rec r;
        if (rec_decode(data, len, &r) != 0) {
            db_log(db, "log record at %llu does not decode", (unsigned long long)pos);
            err = MINDB_ECORRUPT;
            break;
        }
        int e = apply_rec(db, &r, APPLY_REPLAY);
        if (e == -ENOMEM) {
            err = e;
            break;
        }
        if (e)
            skipped++;
        else
            applied++;
    }
    /* A reader ends with 0 also when a read fails: replaying less than the
     * log holds would lose synced changes for good at the next checkpoint. */
    struct wal_stop stop;
    wal_reader_stop(rd, &stop);
    wal_reader_close(rd);
    if (err < 0)
        return err;
    if (stop.reason == WAL_STOP_IO) {
        db_log(db, "replay: reading the log at %llu: %s", (unsigned long long)stop.pos,
               mindb_strerror(stop.error));
        return stop.error ? stop.error : -EIO;
    }
    if (skipped)
        db_log(db, "replay: %llu changes applied, %llu to objects gone before",
               (unsigned long long)applied, (unsigned long long)skipped);
    *records = applied + skipped;
    return 0;
}

struct orphans {
    struct object **list;
    size_t n, cap;
    int err;
};

static void find_orphan(void *ctx, struct object *obj)
{
    struct orphans *o = ctx;
    if (obj->nlink || obj->open_count || o->err)
        return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        struct object **p = realloc(o->list, cap * sizeof(*p));
        if (!p) {
            o->err = -ENOMEM;
            return;
        }
        o->list = p;
        o->cap = cap;
    }
    o->list[o->n++] = obj;
}

/* Objects whose last key went while a handle held them, before a crash. */
static int drop_orphans(mindb *db)
{
    struct orphans o = {0};
    objtable_each(&db->objects, find_orphan, &o);
    for (size_t i = 0; i < o.n; i++)
        object_unref(db, o.list[i]);
    free(o.list);
    return o.err;
}

/* Every store has a root directory, the empty key: a new store logs it
 * before it becomes a store, and one made by a build without it gets it at
 * its first writable open. A read-only open of such a store makes it in
 * memory only, since it may change nothing on disk. */
static int root_ensure(mindb *db)
{
    if (lookup(db, "", 0))
        return 0;
    struct rec r = {.type = REC_CREATE,
                    .id = db->next_id,
                    .time = now_ns(),
                    .key = (const uint8_t *)"",
                    .key_len = 0,
                    .mode = S_IFDIR | 0755,
                    .uid = geteuid(),
                    .gid = getegid()};
    if (db->opt.read_only)
        return apply_rec(db, &r, APPLY_REPLAY);
    int err = log_change(db, &r);
    /* Durable now: the root of a new store is part of what makes it one. */
    return err ? err : wal_commit_to(db->log, db->logged_end);
}

static void destroy(mindb *db)
{
    if (db->log)
        wal_close(db->log);
    if (db->data)
        datafile_close(db->data);
    keyindex_free(db->index);
    objtable_destroy(&db->objects);
    if (db->lockfd >= 0)
        close(db->lockfd);
    if (db->dirfd >= 0)
        close(db->dirfd);
    pthread_rwlock_destroy(&db->state);
    pthread_mutex_destroy(&db->maint);
    pthread_mutex_destroy(&db->bg_mutex);
    pthread_cond_destroy(&db->bg_wake);
    pthread_cond_destroy(&db->bg_done);
    free(db->pending);
    free(db->enc);
    free(db->dir);
    free(db);
}

/* The log's before_write: records of whole chunks written by writes
 * (REC_WRITE_REFS) name data segment bytes that must be durable before the
 * record can be. Once a sync of data segments has failed (here or in a
 * checkpoint), chunks written before it may be lost while a later sync
 * succeeds, and they are not in memory to be written again: no such
 * record may reach the disk any more, and the handle takes no changes
 * until a reopen, which finds the log as the last commit left it. */
static int sync_data_first(void *ctx)
{
    mindb *db = ctx;
    if (!db->data)
        return 0;
    int err = datafile_failed_syncs(db->data) ? -EIO : datafile_sync(db->data);
    if (err && !db->broken) {
        db->broken = err;
        db_log(db, "data segments did not sync (%s): writes since the last commit are not "
                   "committed; reopen the store",
               mindb_strerror(err));
    }
    return err;
}

static int check_options(const struct mindb_options *o)
{
    if (o->compression_level < 1 || o->compression_level > 19)
        return -EINVAL;
    if (o->dirty_bytes < CHUNK_BYTES || o->checkpoint_wal_bytes == 0 ||
        o->data_segment_bytes < 2 * CHUNK_BYTES || o->compact_live_percent > 100)
        return -EINVAL;
    return 0;
}

int mindb_open(const char *dir, const struct mindb_options *options, mindb **out)
{
    return mindb_open_io(dir, options, NULL, out);
}

int mindb_open_io(const char *dir, const struct mindb_options *options, const struct wal_io *io,
                  mindb **out)
{
    struct mindb_options defaults;
    if (!options) {
        mindb_options_init(&defaults);
        options = &defaults;
    }
    if (!dir || !*dir || !out)
        return -EINVAL;
    int err = check_options(options);
    if (err)
        return err;
    mindb *db = calloc(1, sizeof(*db));
    if (!db)
        return -ENOMEM;
    db->opt = *options;
    db->dirfd = db->lockfd = -1;
    db->io = io ? io : &wal_posix_io;
    db->dir = strdup(dir);
    pthread_rwlock_init(&db->state, NULL);
    pthread_mutex_init(&db->maint, NULL);
    pthread_mutex_init(&db->bg_mutex, NULL);
    pthread_cond_init(&db->bg_wake, NULL);
    pthread_cond_init(&db->bg_done, NULL);
    if (!db->dir) {
        destroy(db);
        return -ENOMEM;
    }
    int fresh = 0;
    uint64_t replayed = 0;
    if ((err = open_dir(db, &fresh)) || (err = store_lock(db)))
        goto fail;
    /* Another process may have made the store between the look and the
     * lock. */
    if (fresh && probe_store(db->dirfd) >= 1)
        fresh = 0;

    char wal_dir[4096];
    if (snprintf(wal_dir, sizeof(wal_dir), "%s/wal", dir) >= (int)sizeof(wal_dir)) {
        err = -ENAMETOOLONG;
        goto fail;
    }
    /* Formats 1 and 2 stay readable by the builds that wrote them. */
    int version = fresh ? FORMAT_VERSION : probe_store(db->dirfd);
    db->write_refs = !db->opt.read_only && version >= 3;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    db->cores = cores > 0 ? (unsigned)cores : 1;
    struct wal_options wo;
    wal_options_init(&wo);
    wo.create = fresh;
    wo.read_only = db->opt.read_only;
    wo.direct_io = db->opt.direct_io;
    wo.io = db->io;
    wo.log = wal_log_adapter;
    wo.log_ctx = db;
    wo.before_write = sync_data_first;
    wo.before_write_ctx = db;
    if ((err = wal_open(wal_dir, &wo, &db->log))) {
        db->log = NULL;
        goto fail;
    }
    struct datafile_options dopt = {.compression_level = db->opt.compression_level,
                                    .cache_bytes = db->opt.cache_bytes,
                                    .segment_bytes = db->opt.data_segment_bytes,
                                    .read_only = db->opt.read_only,
                                    /* format 1 stays readable by the builds
                                     * that wrote it */
                                    .share_chunks = fresh || version >= 2,
                                    .io = db->io,
                                    .log = wal_log_adapter,
                                    .log_ctx = db};
    if ((err = datafile_open(db->dirfd, "data", fresh, &dopt, &db->data))) {
        db->data = NULL;
        goto fail;
    }
    if (fresh) {
        if ((err = keyindex_new(&db->index)) || (err = objtable_init(&db->objects)))
            goto fail;
        db->next_id = 1;
        if ((err = manifest_create(db, wal_append_pos(db->log))) || (err = root_ensure(db)) ||
            (err = write_format(db)))
            goto fail;
    } else {
        if ((err = manifest_load(db)))
            goto fail;
        if (wal_first_pos(db->log) > db->checkpoint_pos) {
            db_log(db, "%s: the log before the manifest's position is gone", dir);
            err = MINDB_ECORRUPT;
            goto fail;
        }
        struct wal_stop stop;
        wal_recovery(db->log, &stop);
        if (stop.reason != WAL_STOP_END && stop.reason != WAL_STOP_NONE)
            db_log(db, "%s: recovered after a crash; the log ended at %llu (%s)", dir,
                   (unsigned long long)stop.pos, wal_stop_reason_name(stop.reason));
        /* A manifest is written only once the log is durable up to its
         * position, so a log ending before it has lost committed records (a
         * segment truncated or removed), and what came after them is gone
         * without a trace. Written on, it would also put new records below
         * that position, where the next replay never looks. */
        if (wal_append_pos(db->log) < db->checkpoint_pos) {
            db_log(db,
                   "%s: the log ends at %llu, before the manifest's position %llu: "
                   "log segments are missing or damaged",
                   dir, (unsigned long long)wal_append_pos(db->log),
                   (unsigned long long)db->checkpoint_pos);
            err = MINDB_ECORRUPT;
            goto fail;
        }
        if ((err = replay(db, &replayed)))
            goto fail;
        if ((err = drop_orphans(db)) || (err = root_ensure(db)))
            goto fail;
    }
    atomic_store(&db->last_end, wal_append_pos(db->log));
    /* A store opened with nothing to replay needs no checkpoint at close
     * unless it changes: an open and close that only read write nothing. */
    if (!fresh && !replayed)
        db->checkpointed_end = db->last_end;
    db->last_checkpoint_ns = now_ns();
    if ((err = background_start(db)))
        goto fail;
    *out = db;
    return 0;
fail:
    destroy(db);
    return err;
}

int mindb_close(mindb *db)
{
    if (!db)
        return 0;
    background_stop(db);
    files_close_all(db);
    int err = 0;
    if (!db->opt.read_only && !db->broken) {
        pthread_mutex_lock(&db->maint);
        if (checkpoint_needed(db))
            err = checkpoint_run(db);
        pthread_mutex_unlock(&db->maint);
    }
    if (db->log) {
        int e = wal_close(db->log);
        db->log = NULL;
        if (!err)
            err = e;
    }
    destroy(db);
    return err;
}

int mindb_sync(mindb *db)
{
    if (db->opt.read_only)
        return 0;
    atomic_fetch_add(&db->commits, 1);
    return wal_commit_to(db->log, atomic_load(&db->last_end));
}

int mindb_sync_key(mindb *db, const void *key, size_t key_len)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    pthread_rwlock_rdlock(&db->state);
    struct object *obj = lookup(db, key, key_len);
    uint64_t end = obj ? obj->last_end : 0;
    pthread_rwlock_unlock(&db->state);
    if (!obj)
        return -ENOENT;
    if (db->opt.read_only || end == 0)
        return 0;
    atomic_fetch_add(&db->commits, 1);
    return wal_commit_to(db->log, end);
}

struct stats_walk {
    struct mindb_stats *s;
    uint64_t raw_stored;
};

static void stats_object(void *ctx, struct object *obj)
{
    struct stats_walk *w = ctx;
    /* Sparse files reach MINDB_MAX_SIZE each: the sum stops at the top
     * rather than wrapping round to a small number. */
    if (obj->nlink)
        w->s->logical_bytes = obj->size > UINT64_MAX - w->s->logical_bytes
                                  ? UINT64_MAX
                                  : w->s->logical_bytes + obj->size;
    for (uint32_t i = 0; i < obj->n_slots; i++) {
        const struct chunk_ref *r = &obj->slots[i].ref;
        if (r->seg) {
            w->s->stored_bytes += chunk_ref_disk_bytes(r);
            w->raw_stored += r->raw_len;
        }
    }
}

int mindb_stats(mindb *db, struct mindb_stats *s)
{
    memset(s, 0, sizeof(*s));
    struct stats_walk w = {.s = s};
    pthread_rwlock_rdlock(&db->state);
    /* The root is no key of the user's, nor an object of theirs. */
    uint64_t root = lookup(db, "", 0) ? 1 : 0;
    s->keys = keyindex_count(db->index) - root;
    s->objects = db->objects.count - root;
    s->dirty_bytes = db->dirty_bytes;
    objtable_each(&db->objects, stats_object, &w);
    uint64_t cp = db->checkpoint_pos;
    pthread_rwlock_unlock(&db->state);
    uint64_t append = wal_append_pos(db->log);
    s->wal_bytes = append > cp ? append - cp : 0;
    struct datafile_stats ds;
    datafile_stats(db->data, &ds);
    struct wal_stats ws;
    wal_stats(db->log, &ws);
    s->segment_bytes = ds.segment_bytes;
    s->cache_hits = ds.cache_hits;
    s->cache_misses = ds.cache_misses;
    s->fdatasyncs = ws.syncs + ds.fdatasyncs + atomic_load(&db->manifest_syncs);
    s->checkpoints = atomic_load(&db->checkpoints);
    s->compactions = atomic_load(&db->compactions);
    s->commits = atomic_load(&db->commits);
    s->compression_ratio = s->stored_bytes ? (double)w.raw_stored / (double)s->stored_bytes : 0;
    return 0;
}
