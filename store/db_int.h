/*
 * db_int.h - the store's handle and what its files share. Private to store/.
 *
 * Locking: `state` (a rwlock) protects the key index, the objects and their
 * chunk maps, next_id, dirty_bytes and the checkpoint positions. A change
 * takes it for writing, checks, appends its record to the log and applies it,
 * so the order of records in the log is the order of changes in memory.
 * Commits (fdatasync) and chunk compression never run under it.
 * `maint` serialises checkpoints and compaction.
 */
#ifndef MINDB_DB_INT_H
#define MINDB_DB_INT_H

#include "datafile.h"
#include "keyindex.h"
#include "mindb.h"
#include "object.h"
#include "record.h"
#include "wal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Values at least this large are written to data segments before their
 * record, instead of through the log and memory (see ops.c). */
#define LARGE_PUT_BYTES ((uint64_t)1 << 20)

struct pending_segment {
    uint32_t seg;
    uint64_t after_seq; /* deletable once manifest seq >= after_seq + 2 */
};

struct mindb {
    char *dir;
    int dirfd, lockfd;
    struct mindb_options opt;
    const struct wal_io *io;
    wal *log;
    struct datafile *data;

    pthread_rwlock_t state;
    struct keyindex *index;
    struct objtable objects;
    uint64_t next_id;
    /* Written under the lock, read without it by the checks that decide
     * on back-pressure and checkpoints, hence atomic. */
    _Atomic int broken;              /* sticky: a change failed half-applied */
    _Atomic uint64_t dirty_bytes;    /* capacity of the dirty chunk buffers */
    _Atomic uint64_t last_end;       /* log position after the newest record */
    _Atomic uint64_t checkpoint_pos; /* replay starts here (newest manifest) */
    uint64_t checkpointed_end;       /* last_end the newest manifest covers */
    uint64_t manifest_seq;           /* newest manifest file */
    uint64_t loaded_seq;             /* the newest sound one, kept as fallback */
    int write_refs;                  /* whole chunks of writes skip the log
                                      * (REC_WRITE_REFS, store format 3) */
    _Atomic unsigned chunk_writers; /* writes compressing whole chunks now */
    unsigned cores;                 /* online when the store was opened */
    unsigned large_puts; /* in flight, and writes of whole chunks: their
                          * segments are pinned */
    uint32_t pin_seg;
    uint64_t change_seq; /* changes applied: iterators that saw no change
                          * since their last step continue from their node */
    mindb_file *files;   /* open handles, closed by mindb_close() */
    uint8_t *enc;        /* records are encoded here, under the lock: no malloc */
    size_t enc_cap;
    int logged;          /* the change being applied passed its gate */
    uint64_t logged_end; /* ...and its record ends here */

    pthread_mutex_t maint;
    struct pending_segment *pending;
    size_t n_pending, pending_cap;

    /* the background thread and writers waiting for memory */
    pthread_t bg;
    int bg_started;
    pthread_mutex_t bg_mutex;
    pthread_cond_t bg_wake, bg_done;
    int bg_stop, bg_requested;
    /* Checkpoints are numbered when they take their snapshot; a writer
     * waiting for memory waits for one numbered after it began to wait,
     * whose snapshot therefore holds its dirty data. */
    _Atomic uint64_t cp_started;
    uint64_t cp_finished; /* the highest number finished (under bg_mutex) */
    _Atomic int64_t last_checkpoint_ns;
    int last_bg_error;

    _Atomic uint64_t checkpoints, compactions, commits, manifest_syncs;
};

/* Now, in nanoseconds since the epoch. */
int64_t now_ns(void);

/* Logs a line through the options' callback. */
__attribute__((format(printf, 2, 3))) void db_log(mindb *db, const char *fmt, ...);

/* Takes the store's lock (lock.c); -EBUSY, with the holder logged, when
 * another process has it. */
int store_lock(mindb *db);
/* Whether another process holds the lock of db->dir (made no LOCK file). */
int lock_held_elsewhere(mindb *db);

/* ---- apply.c: the changes, shared by the live path and replay ---- */

enum apply_mode {
    APPLY_CHECK,  /* only check: the errno the change would get */
    APPLY_LIVE,   /* check, log the record (log_append), change the state */
    APPLY_REPLAY, /* change the state; a record that does not apply is skipped */
};

/* Checks `r` against the state and, as `mode` says, logs and applies it.
 * Once a live change is logged, applying it fails only when memory runs
 * out. */
int apply_rec(mindb *db, const struct rec *r, enum apply_mode mode);

/* Drops one key's or one handle's hold on `obj`; frees it when none is
 * left. */
void object_unref(mindb *db, struct object *obj);

/* The object named by `key`, or NULL. */
struct object *lookup(mindb *db, const void *key, size_t len);

/* The directory that holds `key`: the key up to its last '/', or the root
 * (the empty key) for a key without one; NULL when that is no directory,
 * for the root itself, and for a key whose only '/' is its first byte. */
struct object *parent_dir(mindb *db, const uint8_t *key, size_t len);

/* ---- chunk.c: values in chunks ---- */

/* Makes chunk `index` of `obj` writable in memory, with room for `need`
 * bytes, loading its bytes from the frozen copy or disk. */
int chunk_make_dirty(mindb *db, struct object *obj, uint64_t index, uint32_t need,
                     struct chunk_slot **out);
/* Copies `len` bytes at `off` (all within the value) into the object. The
 * chunks must have been made dirty (ops prepare them before logging). */
int chunk_write(mindb *db, struct object *obj, const uint8_t *buf, size_t len, uint64_t off);
/* Makes chunks first..first + n - 1 of `obj` the n whole chunks that
 * `refs` (packed, REC_REF_BYTES each) name in data segments, dropping their
 * bytes in memory; the value grows to cover them. */
int chunk_bind(mindb *db, struct object *obj, uint64_t first, const uint8_t *refs, uint32_t n);
/* Prepares every chunk chunk_write(len, off) or a truncate to `off` touches. */
int chunk_prepare_write(mindb *db, struct object *obj, size_t len, uint64_t off);
int chunk_prepare_truncate(mindb *db, struct object *obj, uint64_t size);
/* Sets the size, cutting chunks beyond it and zeroing the tail of the last. */
int chunk_truncate(mindb *db, struct object *obj, uint64_t size);
/* Reads from the value (state lock held for reading or writing). */
ssize_t chunk_read(mindb *db, struct object *obj, void *buf, size_t len, uint64_t off);
/* Frees the slot's memory and forgets its buffers' bytes. */
void chunk_slot_forget(void *db, struct object *obj, struct chunk_slot *slot);
/* Bytes the object occupies: on disk, and in memory while dirty. */
uint64_t object_disk_bytes(const struct object *obj);

/* ---- ops.c ---- */

/* Checks, logs and applies `r` under the state lock (held for writing by
 * the caller), filling in the time. */
int log_change(mindb *db, struct rec *r);
/* Appends `r` to the log (apply.c's gate, for log_change). */
int log_append(mindb *db, const struct rec *r);
/* What every change does before it takes the lock: back-pressure when dirty
 * memory is over its bound, and refusal on a read-only or broken store. */
int change_begin(mindb *db);
/* After unlocking: commits when sync_writes asks, wakes the checkpointer. */
int change_end(mindb *db, int err, uint64_t end);
/* Checks a key's length: 0 (the root) to MINDB_MAX_KEY. The root may come
 * as NULL, which becomes "", so that a key is never NULL past the check. */
int check_key(const void **key, size_t len);
/* Logs a change to one object, found by key or (key NULL) by id; fills in
 * the record's id and time, and prepares the chunks a write or truncate
 * touches. */
int change_object(mindb *db, const void *key, size_t key_len, uint64_t id, struct rec *r);
/* Runs one change from start to end: back-pressure, the lock, the record
 * (a put or create gets the next id, a change by key its object's id),
 * the commit sync_writes asks for. */
int run_change(mindb *db, struct rec *r);
void stat_fill(const struct object *obj, struct mindb_stat *st);

/* ---- file.c ---- */

struct mindb_file {
    mindb *db;
    struct object *obj;
    struct mindb_file *prev, *next; /* the store's open handles */
};

void files_close_all(mindb *db);

/* ---- checkpoint.c ---- */

int checkpoint_run(mindb *db); /* with `maint` held */
/* Whether memory holds anything the newest manifest lacks (`maint` held,
 * background stopped). */
int checkpoint_needed(mindb *db);
int background_start(mindb *db);
void background_stop(mindb *db);
void background_poke(mindb *db); /* a change happened */
void background_wait_memory(mindb *db);

/* ---- manifest.c ---- */

struct frozen_chunk {
    uint64_t id, index;
    const uint8_t *buf;
    uint32_t len;
    uint32_t cap;     /* the buffer's size, to give it back on failure */
    size_t patch_off; /* where its ref goes in the manifest, or SIZE_MAX */
    struct chunk_ref ref;
};

struct manifest_buf {
    uint8_t *p;
    size_t len, cap;
};

/* Serialises the state (state lock held) for checkpoint `seq` at log
 * position `pos`, freezing every dirty chunk into `frozen`. */
int manifest_snapshot(mindb *db, uint64_t seq, uint64_t pos, struct manifest_buf *out,
                      struct frozen_chunk **frozen, size_t *n_frozen);
/* Puts the refs of written chunks into the serialised manifest. */
void manifest_seal(struct manifest_buf *m, const struct frozen_chunk *frozen, size_t n);
/* Writes it as manifest.SEQ, its body compressed: temporary file, fsync,
 * rename, directory fsync. */
int manifest_write(mindb *db, uint64_t seq, const struct manifest_buf *m);
/* Loads the newest sound manifest into the (empty) state; with a damaged
 * newest one falls back to the one before, and says so. */
int manifest_load(mindb *db);
/* Removes every manifest but these two. */
void manifest_prune(mindb *db, uint64_t keep_a, uint64_t keep_b);
/* Makes an empty store's first manifest. */
int manifest_create(mindb *db, uint64_t pos);

/* ---- compact.c ---- */

/* Whether a data segment other than the newest is below the background
 * compaction threshold. */
int compact_due(mindb *db);
int compact_run(mindb *db, unsigned live_percent,
                void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx);
/* Deletes pending segments that no manifest kept can reference. */
void compact_delete_pending(mindb *db);

#endif /* MINDB_DB_INT_H */
