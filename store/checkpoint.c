/*
 * checkpoint.c - moving committed changes out of the log: dirty chunks into
 * data segments, the state into a new manifest, and the log before it
 * released. Also the background thread that runs checkpoints (and
 * compaction) and the back-pressure that makes writers wait for one when
 * dirty memory is over its bound.
 *
 * A checkpoint holds the state lock only to take its snapshot (serialising
 * metadata and freezing dirty chunks, no I/O) and to install the chunks'
 * new places afterwards. Compression, writes and fsyncs run unlocked; a
 * writer that changes a frozen chunk meanwhile copies it first.
 *
 * Order, each step durable before the next:
 *   1. snapshot at log position P (every record before P is in it);
 *   2. frozen chunks written to data segments, fdatasync'd;
 *   3. the log committed up to P: a log that lost records before P could
 *      otherwise hand their positions to new records that replay from P
 *      would skip;
 *   4. manifest written and switched atomically;
 *   5. the log before the previous manifest's position released (that
 *      manifest stays as the fallback, with the log it needs).
 */
#include "db_int.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Gives each frozen chunk back to its slot: its new place on success, or
 * back to dirty when the checkpoint failed. */
static void install(mindb *db, struct frozen_chunk *frozen, size_t n, int failed)
{
    for (size_t i = 0; i < n; i++) {
        struct frozen_chunk *f = &frozen[i];
        struct object *obj = objtable_get(&db->objects, f->id);
        struct chunk_slot *s = obj ? object_slot(obj, f->index) : NULL;
        if (s && s->frozen == f->buf) {
            s->frozen = NULL;
            if (!failed) {
                s->ref = f->ref;
            } else if (!s->dirty) {
                s->dirty = (uint8_t *)f->buf;
                s->dirty_len = f->len;
                s->dirty_cap = f->cap;
                db->dirty_bytes += f->cap;
                continue;
            }
        }
        free((void *)f->buf);
    }
}

/* The frozen chunks a checkpoint frees are up to dirty_bytes of the heap,
 * which glibc keeps for later use unless told otherwise: a daemon that once
 * wrote a large file would go on holding that much. Not after every
 * checkpoint: while writes stream in, the next dirty chunks reuse that
 * memory, and handing it back only to fault it in again cost a 1 GiB
 * write a tenth of its speed. */
static void give_back_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* Says checkpoint `pass` is over, to writers waiting for memory. */
static void pass_finished(mindb *db, uint64_t pass)
{
    pthread_mutex_lock(&db->bg_mutex);
    if (pass > db->cp_finished)
        db->cp_finished = pass;
    pthread_cond_broadcast(&db->bg_done);
    pthread_mutex_unlock(&db->bg_mutex);
}

/* Writing frozen chunks: compression is most of a checkpoint's time (64 %
 * of the daemon's cycles during a 1 GiB sequential write), and each chunk
 * compresses alone, so every core takes chunks from a shared counter.
 * datafile_write_shared() keeps a compression context per thread and
 * serialises only the append and the table of chunks already stored (two
 * equal chunks of one checkpoint may then both be written: no harm). */
struct chunk_writer {
    mindb *db;
    struct frozen_chunk *frozen;
    size_t n;
    atomic_size_t next;
    atomic_int err;
};

static void *write_chunks(void *arg)
{
    struct chunk_writer *w = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n || atomic_load(&w->err))
            return NULL;
        struct frozen_chunk *f = &w->frozen[i];
        int err =
            datafile_write_shared(w->db->data, f->id, f->index, f->buf, f->len, &f->ref);
        if (err) {
            int none = 0;
            atomic_compare_exchange_strong(&w->err, &none, err);
        }
    }
}

/* Threads beyond the checkpoint's own, for n chunks: none for a handful
 * (starting a thread costs more than compressing a few chunks), at most one
 * per other core. */
#define CHUNKS_PER_EXTRA_THREAD 16
#define MAX_EXTRA_WRITERS 7

static int write_frozen(mindb *db, struct frozen_chunk *frozen, size_t n)
{
    struct chunk_writer w = {.db = db, .frozen = frozen, .n = n};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t extra = cores > 1 ? (size_t)cores - 1 : 0;
    if (extra > MAX_EXTRA_WRITERS)
        extra = MAX_EXTRA_WRITERS;
    if (extra > n / CHUNKS_PER_EXTRA_THREAD)
        extra = n / CHUNKS_PER_EXTRA_THREAD;
    pthread_t threads[MAX_EXTRA_WRITERS];
    size_t started = 0;
    /* A thread that cannot start leaves its share to the others. */
    while (started < extra && pthread_create(&threads[started], NULL, write_chunks, &w) == 0)
        started++;
    write_chunks(&w);
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    return atomic_load(&w.err);
}

int checkpoint_run(mindb *db)
{
    if (db->opt.read_only)
        return 0;
    struct manifest_buf m = {0};
    struct frozen_chunk *frozen = NULL;
    size_t n_frozen = 0;

    pthread_rwlock_wrlock(&db->state);
    uint64_t pass = atomic_fetch_add(&db->cp_started, 1) + 1;
    if (db->broken) {
        pthread_rwlock_unlock(&db->state);
        pass_finished(db, pass);
        return -EIO;
    }
    uint64_t pos = wal_append_pos(db->log);
    uint64_t end = atomic_load(&db->last_end);
    uint64_t seq = db->manifest_seq + 1;
    int err = manifest_snapshot(db, seq, pos, &m, &frozen, &n_frozen);
    pthread_rwlock_unlock(&db->state);

    if (!err)
        err = write_frozen(db, frozen, n_frozen);
    if (!err)
        err = datafile_sync(db->data);
    if (!err && end)
        err = wal_commit_to(db->log, end);
    if (!err) {
        manifest_seal(&m, frozen, n_frozen);
        err = manifest_write(db, seq, &m);
    }
    free(m.p);

    pthread_rwlock_wrlock(&db->state);
    install(db, frozen, n_frozen, err != 0);
    uint64_t old_pos = db->checkpoint_pos, old_seq = db->loaded_seq;
    if (!err) {
        db->checkpoint_pos = pos;
        db->checkpointed_end = end;
        db->manifest_seq = db->loaded_seq = seq;
    }
    pthread_rwlock_unlock(&db->state);
    free(frozen);
    pass_finished(db, pass);
    if (err) {
        db_log(db, "checkpoint failed: %s", mindb_strerror(err));
        return err;
    }
    atomic_fetch_add(&db->checkpoints, 1);
    db->last_checkpoint_ns = now_ns();
    manifest_prune(db, seq, old_seq);
    uint64_t durable = wal_durable_pos(db->log);
    int rerr = wal_release(db->log, old_pos < durable ? old_pos : durable);
    if (rerr)
        db_log(db, "releasing the log: %s", mindb_strerror(rerr));
    compact_delete_pending(db);
    return 0;
}

int checkpoint_needed(mindb *db)
{
    /* Compaction moves refs in memory without a record; its old segments
     * wait for manifests naming the new places. */
    return atomic_load(&db->last_end) != db->checkpointed_end || db->dirty_bytes > 0 ||
           db->n_pending > 0;
}

int mindb_checkpoint(mindb *db)
{
    if (db->opt.read_only)
        return -EROFS;
    pthread_mutex_lock(&db->maint);
    int err = checkpoint_run(db);
    pthread_mutex_unlock(&db->maint);
    return err;
}

/* What calls for a checkpoint now. */
static int checkpoint_due(mindb *db, int64_t now)
{
    uint64_t end = atomic_load(&db->last_end);
    if (end > db->checkpoint_pos && end - db->checkpoint_pos > db->opt.checkpoint_wal_bytes)
        return 1;
    if (db->dirty_bytes > db->opt.dirty_bytes / 2)
        return 1;
    return db->opt.checkpoint_interval_ms && end > db->checkpoint_pos &&
           now - db->last_checkpoint_ns >= (int64_t)db->opt.checkpoint_interval_ms * 1000000;
}

static void *background_main(void *arg)
{
    mindb *db = arg;
    int trim = 0; /* a checkpoint freed memory since the last quiet second */
    pthread_mutex_lock(&db->bg_mutex);
    while (!db->bg_stop) {
        if (!db->bg_requested) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&db->bg_wake, &db->bg_mutex, &ts);
        }
        if (db->bg_stop)
            break;
        int requested = db->bg_requested;
        db->bg_requested = 0;
        pthread_mutex_unlock(&db->bg_mutex);

        int err = 0, ran = 0;
        pthread_mutex_lock(&db->maint);
        if (requested || checkpoint_due(db, now_ns())) {
            err = checkpoint_run(db);
            ran = 1;
            if (!err && compact_due(db))
                err = compact_run(db, db->opt.compact_live_percent, NULL, NULL);
            trim = 1;
        } else if (trim) {
            give_back_memory();
            trim = 0;
        }
        pthread_mutex_unlock(&db->maint);

        pthread_mutex_lock(&db->bg_mutex);
        if (ran)
            db->last_bg_error = err;
    }
    pthread_mutex_unlock(&db->bg_mutex);
    return NULL;
}

int background_start(mindb *db)
{
    if (!db->opt.background || db->opt.read_only)
        return 0;
    int err = pthread_create(&db->bg, NULL, background_main, db);
    if (err)
        return -err;
    db->bg_started = 1;
    return 0;
}

void background_stop(mindb *db)
{
    if (!db->bg_started)
        return;
    pthread_mutex_lock(&db->bg_mutex);
    db->bg_stop = 1;
    pthread_cond_broadcast(&db->bg_wake);
    pthread_cond_broadcast(&db->bg_done);
    pthread_mutex_unlock(&db->bg_mutex);
    pthread_join(db->bg, NULL);
    db->bg_started = 0;
}

void background_poke(mindb *db)
{
    if (!db->bg_started)
        return;
    uint64_t end = atomic_load(&db->last_end);
    int due =
        (end > db->checkpoint_pos && end - db->checkpoint_pos > db->opt.checkpoint_wal_bytes) ||
        db->dirty_bytes > db->opt.dirty_bytes / 2;
    if (!due)
        return;
    pthread_mutex_lock(&db->bg_mutex);
    if (!db->bg_requested) {
        db->bg_requested = 1;
        pthread_cond_signal(&db->bg_wake);
    }
    pthread_mutex_unlock(&db->bg_mutex);
}

void background_wait_memory(mindb *db)
{
    if (!db->bg_started) {
        pthread_mutex_lock(&db->maint);
        if (db->dirty_bytes > db->opt.dirty_bytes)
            (void)checkpoint_run(db);
        pthread_mutex_unlock(&db->maint);
        return;
    }
    /* Wait for one checkpoint that snapshots after now to finish, not for
     * memory to drop below the bound: data a checkpoint cannot move (a
     * failing disk) must not hang writers forever. */
    pthread_mutex_lock(&db->bg_mutex);
    uint64_t target = atomic_load(&db->cp_started) + 1;
    db->bg_requested = 1;
    pthread_cond_signal(&db->bg_wake);
    while (db->cp_finished < target && !db->bg_stop)
        pthread_cond_wait(&db->bg_done, &db->bg_mutex);
    pthread_mutex_unlock(&db->bg_mutex);
}
