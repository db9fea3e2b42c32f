/*
 * wal_int.h - the log's private state, shared by the files of wal/.
 */
#ifndef MINDB_WAL_INT_H
#define MINDB_WAL_INT_H

#include "frame.h"
#include "wal.h"

#include <pthread.h>
#include <stdint.h>

/*
 * Positions. The log is one stream of bytes; segment n holds positions
 * [n * segment_bytes, (n + 1) * segment_bytes), the first block of which is
 * the segment header. The ring holds the bytes of positions
 * [written_pos, append_pos) at ring offset pos % ring_bytes; written_pos is
 * always on a block boundary, and bytes below it are never written again.
 *
 *   first_pos <= durable_pos <= written_pos <= append_pos
 */
struct wal {
    /* Fixed from open to close. */
    const struct wal_io *io;
    int dirfd;
    int read_only;
    uint64_t segment_bytes;
    size_t ring_bytes;
    size_t max_frame_payload;
    unsigned spare_limit;
    int direct_wanted; /* the direct_io option */
    void (*log_fn)(void *ctx, const char *message);
    void *log_ctx;
    int (*before_write)(void *ctx);
    void *before_write_ctx;
    uint8_t *ring;

    /* Held by an appender for all the frames of one record, so that no other
     * record lands between them. Taken before `mu`. */
    pthread_mutex_t append_mu;

    /* Guards the positions, the salts, the flags and the stats. */
    pthread_mutex_t mu;
    pthread_cond_t io_done; /* io_busy went back to 0 */
    uint64_t first_pos;
    uint64_t append_pos;
    uint64_t written_pos;
    uint64_t durable_pos;
    uint32_t salt;      /* salt of the frames this run appends */
    uint32_t prev_salt; /* salt in effect before this run, for its BEGIN */
    int begun;          /* this run's BEGIN frame is in the ring */
    int record_cut;     /* a failed append left a record unfinished */
    int io_busy;        /* one thread at a time writes or syncs */
    int failed;         /* sticky error after a failed fdatasync */
    /* Records appended with wal_append_after_sync: the end of the newest,
     * and the highest such end a before_write() call has covered. */
    uint64_t sync_before_end, sync_covered_end;
    unsigned committing; /* threads inside wal_commit_to */
    unsigned last_batch; /* ...when the last sync started */
    struct wal_stats stats;
    struct wal_stop recovery;

    /* Owned by the thread that set io_busy. */
    int seg_fd;        /* segment being written, or -1 */
    uint64_t seg_no;   /* its number */
    int seg_unsynced;  /* written since its last fdatasync */
    int direct;        /* O_DIRECT on seg_fd */
    int warned_direct; /* the fallback was logged */

    /* Guards the segment files: renames, removals and the spare list. */
    pthread_mutex_t seg_mu;
    uint64_t first_segno;
    uint64_t *spares; /* ids of spare-<id>.wal files ready for reuse */
    size_t spare_count;
    size_t spare_cap;
    unsigned spares_in_making; /* by segment_make_spares, not yet listed */
    uint64_t next_spare_id;
};

#define WAL_SEGMENT_NAME_MAX 40

void wal_log(struct wal *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs, once, that the filesystem refused O_DIRECT. */
void wal_direct_refused(struct wal *w);

static inline uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static inline uint64_t align_down(uint64_t x, uint64_t a)
{
    return x / a * a;
}

/* segment.c */
void segment_name(char name[WAL_SEGMENT_NAME_MAX], uint64_t segno);
int segment_scan_dir(struct wal *w, uint64_t **segnos, size_t *count);
int segment_open_read(struct wal *w, uint64_t segno, int *fd);
int segment_read_header(struct wal *w, int fd, struct segment_header *header);
int segment_open_write(struct wal *w, uint64_t segno, int *fd);
int segment_make_spare(struct wal *w, const char *name);
int segment_make_spares(struct wal *w);
int segment_sync_dir(struct wal *w);

/* writer.c */
void writer_close_segment(struct wal *w);

/* reader.c: the scan at open, which finds where the writer continues. */
struct recovery_result {
    uint64_t resume_pos; /* first block boundary after the last valid frame */
    uint32_t salt;       /* salt in effect there */
    struct wal_stop stop;
};
int reader_recover_segment(struct wal *w, uint64_t segno, struct recovery_result *result);

#endif /* MINDB_WAL_INT_H */
