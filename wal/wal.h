/*
 * wal.h - the write-ahead log of mindb.
 *
 * The log is a stream of records addressed by 64-bit byte positions that only
 * grow. Appending copies a record into an aligned in-memory ring and returns
 * at once; a commit writes the ring out with O_DIRECT and fdatasync()s it,
 * and concurrent committers share one fdatasync (group commit). A reader
 * replays the records after a crash and stops at the first frame that is
 * torn, corrupt or left over from an earlier use of the same file space.
 *
 * On disk the log is a directory of fixed-size segment files that are reused
 * once released; docs/FORMAT.md describes every byte.
 *
 * Errors are returned as negative errno values; nothing here prints, exits or
 * aborts. Two values have a meaning of their own:
 *   -EUCLEAN   the log is damaged beyond what recovery repairs (a segment
 *              missing in the middle, a bad header on a segment that is not
 *              the last one);
 *   -ENOTSUP   the log was written by an incompatible format version.
 * After an fdatasync failure the log refuses further writes with the same
 * error, because the kernel may have dropped the unsynced pages: close it and
 * open it again to recover.
 *
 * All functions taking a `struct wal *` are safe to call from many threads,
 * except wal_close(), which must be the last call.
 */
#ifndef MINDB_WAL_H
#define MINDB_WAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wal wal;
typedef struct wal_reader wal_reader;

/* The file operations the log performs, so tests can inject failures and
 * torn writes. Each returns what the POSIX call returns, with failures as
 * -errno instead of -1 and errno. NULL in wal_options means wal_posix_io. */
struct wal_io {
    int (*openat)(void *ctx, int dirfd, const char *name, int flags, mode_t mode);
    int (*close)(void *ctx, int fd);
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t off);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync)(void *ctx, int fd);
    int (*renameat)(void *ctx, int dirfd, const char *from, const char *to);
    int (*unlinkat)(void *ctx, int dirfd, const char *name);
    /* Turns O_DIRECT off on an open descriptor (the buffered fallback). */
    int (*clear_direct)(void *ctx, int fd);
    void *ctx;
};

extern const struct wal_io wal_posix_io;

struct wal_options {
    /* Bytes of the in-memory ring: a multiple of 4096, at least 64 KiB.
     * Default 4 MiB. */
    size_t ring_bytes;
    /* Bytes of one segment file: a multiple of 4096 and of at least 16
     * blocks. Default 64 MiB. Fixed when the log is created; an existing log
     * keeps the size it was created with. */
    uint64_t segment_bytes;
    /* Write with O_DIRECT (default 1). Where the filesystem refuses it, the
     * log falls back to buffered writes with the same fdatasync guarantees
     * and says so once through `log`. */
    int direct_io;
    /* Create the directory and an empty log when missing (default 0). */
    int create;
    /* Open for reading only: no lock held exclusively, nothing written
     * (default 0). */
    int read_only;
    /* Spare segments kept ready for reuse (default 2): released segments,
     * and new ones wal_release() makes. Writing into a file's existing
     * blocks spares every commit the cost of a growing file, and a ready
     * spare spares the commit path the making of a segment. */
    unsigned spare_segments;
    /* File operations; NULL means wal_posix_io. */
    const struct wal_io *io;
    /* Receives one line for events a person should know about (the
     * buffered fallback, a recovered torn tail). May be NULL. */
    void (*log)(void *log_ctx, const char *message);
    void *log_ctx;
    /* Called, with nothing of the log locked, before any write that would
     * put a record appended with wal_append_after_sync() on disk; the write
     * waits for it and fails with its error. A record may name other files'
     * bytes that must be durable first (the store's data segments): this is
     * where they are synced, once for every such record the write carries
     * instead of once per record. May be NULL when no record needs it. */
    int (*before_write)(void *before_write_ctx);
    void *before_write_ctx;
};

/* Fills `options` with the defaults documented above. */
void wal_options_init(struct wal_options *options);

/* Opens the log in directory `dir`, recovering it: the writer continues after
 * the last valid frame, never inside a block that holds one. */
int wal_open(const char *dir, const struct wal_options *options, wal **out);

/* Commits what was appended, then releases everything. Returns the commit's
 * error, if any; the handle is freed in every case. */
int wal_close(wal *log);

/* Where a record landed: `pos` is the position of its first frame, `end` the
 * position just after its last one; commit up to `end` to make it durable. */
struct wal_ticket {
    uint64_t pos;
    uint64_t end;
};

/* Largest record wal_append() accepts. Records larger than one frame (a
 * quarter of the ring) are split into frames and reassembled by the reader;
 * a record is seen whole or not at all. */
#define WAL_MAX_RECORD_BYTES ((size_t)1 << 32)

/* Appends one record. Returns without waiting for the disk, unless the ring
 * is full, in which case completed blocks are written out first. */
int wal_append(wal *log, const void *data, size_t len, struct wal_ticket *ticket);

/* wal_append(), for a record that may reach the disk only after the
 * options' before_write() has returned 0: one called after this append
 * began. -EINVAL when the log has no before_write. */
int wal_append_after_sync(wal *log, const void *data, size_t len, struct wal_ticket *ticket);

/* Writes out everything appended so far, padding the last block, without
 * fdatasync. */
int wal_flush(wal *log);

/* fdatasync()s what has been written out; the durable position moves up to
 * it. */
int wal_sync(wal *log);

/* wal_flush() then wal_sync(): everything appended before the call is
 * durable when it returns 0. */
int wal_commit(wal *log);

/* Makes the log durable at least up to `pos` (a ticket's end). A caller whose
 * position is covered by a sync that finished or is running meanwhile
 * returns without issuing one of its own. */
int wal_commit_to(wal *log, uint64_t pos);

/* Position just after the last byte made durable by fdatasync. */
uint64_t wal_durable_pos(wal *log);

/* Position the next record will be appended at (or near: a frame header
 * never starts in the last bytes of a block or segment). */
uint64_t wal_append_pos(wal *log);

/* Position of the oldest record still kept. */
uint64_t wal_first_pos(wal *log);

/* Where the scan at wal_open() found the end of the log, and why it ended
 * there: WAL_STOP_END after a clean shutdown, WAL_STOP_TORN or
 * WAL_STOP_INCOMPLETE after a crash in the middle of a write. */
struct wal_stop;
void wal_recovery(wal *log, struct wal_stop *stop);

/* Tells the log that records before `pos` are no longer needed (they were
 * checkpointed). Segments that end at or before `pos` become spares or are
 * deleted; `pos` may not be beyond the durable position. Then, on the
 * caller's thread, it makes new spares up to spare_segments, so that the
 * commit path finds the next segments ready (call it from a background
 * thread: making a spare writes a whole segment of zeros). */
int wal_release(wal *log, uint64_t pos);

struct wal_stats {
    uint64_t appends;          /* records appended */
    uint64_t frames;           /* frames appended, padding included */
    uint64_t bytes_appended;   /* record bytes appended */
    uint64_t bytes_written;    /* bytes written to segment files */
    uint64_t bytes_padded;     /* bytes spent padding flushes to a block */
    uint64_t commits;          /* wal_commit / wal_commit_to calls */
    uint64_t commits_shared;   /* ...of which another thread's sync covered */
    uint64_t syncs;            /* fdatasync calls */
    uint64_t writes;           /* pwrite calls */
    uint64_t segments_created; /* segment files made from nothing */
    uint64_t segments_reused;  /* released segment files used again */
    uint64_t segment_bytes;    /* size of one segment file */
    int direct_io;             /* O_DIRECT in use (0 after a fallback) */
};

void wal_stats(wal *log, struct wal_stats *stats);

/* Why a reader stopped. */
enum wal_stop_reason {
    WAL_STOP_NONE = 0,   /* not stopped yet */
    WAL_STOP_END,        /* clean end: nothing was ever written here */
    WAL_STOP_TORN,       /* a frame whose checksum fails: torn by a crash,
                          * corrupt, or left from an earlier use of the file */
    WAL_STOP_BAD_HEADER, /* a frame header with an impossible type or length */
    WAL_STOP_STALE,      /* an intact frame from an earlier run of the writer */
    WAL_STOP_INCOMPLETE, /* the log ends inside a record split into frames */
    WAL_STOP_IO,         /* a read failed; see `error` */
};

struct wal_stop {
    enum wal_stop_reason reason;
    uint64_t pos;  /* where: the frame, or the start of the record cut short */
    int error;     /* with WAL_STOP_IO: the negative errno */
};

const char *wal_stop_reason_name(enum wal_stop_reason reason);

/* Opens a reader on the records at or after position `from` (a ticket's
 * `pos`, or wal_first_pos()). The reader sees what has been written out to the
 * segment files. */
int wal_reader_open(wal *log, uint64_t from, wal_reader **out);

/* Reads the next record. Returns 1 and sets *data, *len and *pos (the
 * record's position) on a record; the bytes stay valid until the next call.
 * Returns 0 at the end of the valid log (see wal_reader_stop()), or a
 * negative errno when memory runs out. */
int wal_reader_next(wal_reader *reader, const void **data, size_t *len, uint64_t *pos);

/* Where and why the reader stopped (reason WAL_STOP_NONE while it has not). */
void wal_reader_stop(const wal_reader *reader, struct wal_stop *stop);

void wal_reader_close(wal_reader *reader);

#ifdef __cplusplus
}
#endif

#endif /* MINDB_WAL_H */
