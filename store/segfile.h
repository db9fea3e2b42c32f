/*
 * segfile.h - the files under the data segments: their names and headers,
 * the segment array with its descriptors, making a segment, finding them
 * all at open and deleting one. Shared by datafile.c (the chunks inside the
 * segments) and segfile.c only.
 *
 * The format of a segment's header is described atop segfile.c, that of
 * the chunk records after it atop datafile.c.
 */
#ifndef MINDB_SEGFILE_H
#define MINDB_SEGFILE_H

#include "datafile.h"

#include <endian.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Bytes of a segment's header; its first record starts here. */
#define SEG_HEADER_BYTES 64

struct segment {
    uint32_t no;
    /* Under seg_mu. */
    int fd; /* -1 while closed */
    unsigned pins;
    int removed;                         /* freed by whoever unpins it last */
    struct segment *lru_prev, *lru_next; /* open descriptors */
    /* Under append_mu. */
    uint64_t size;
    int sealed; /* closed to appends after a failed sync */
    int dirty;  /* written since the last sync: on the unsynced list */
    struct segment *dirty_next;
    /* Owned by the running datafile_sync. */
    struct segment *sync_next;
};

/*
 * Locks, taken in this order: sync_mu (one datafile_sync at a time),
 * append_mu (the append target, segment sizes, the unsynced list, counters),
 * seg_mu (the segment array, descriptors, pins).
 */
struct datafile {
    const struct wal_io *io;
    int dirfd;
    int read_only;
    int level;
    uint64_t segment_bytes;
    struct cache *cache;
    struct dedup *dedup; /* NULL without share_chunks */

    pthread_mutex_t sync_mu;
    unsigned fail_gen; /* failed syncs so far (atomic) */
    int fail_err;      /* the error of the last one */

    pthread_mutex_t append_mu;
    struct segment *active; /* append target, pinned; NULL: make one */
    struct segment *dirty;  /* unsynced list, each pinned */
    int dir_dirty;          /* a segment was made or deleted since the last sync */
    uint64_t next_no;
    uint64_t chunks_written, bytes_written;

    pthread_mutex_t seg_mu;
    struct segment **segs; /* ascending numbers */
    size_t nsegs, segs_cap;
    struct segment lru; /* sentinel of the open descriptors, most recent first */
    unsigned nopen;

    uint64_t fdatasyncs;                  /* atomic */
    uint64_t shared_chunks, shared_bytes; /* atomic */
    uint32_t segments_discarded;          /* set at open only */
    void (*log)(void *ctx, const char *message);
    void *log_ctx;
};

/* Little-endian fields, for the segment header and the chunk records. */

static inline void put_u32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof v);
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof v);
}

static inline uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return le32toh(v);
}

static inline uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

/* Writes or reads exactly `len` bytes at `off` through df->io. A read that
 * ends early (end of file) is -EIO: the ref points past what the segment
 * holds. */
int segfile_write_full(struct datafile *df, int fd, const void *buf, size_t len, uint64_t off);
int segfile_read_full(struct datafile *df, int fd, void *buf, size_t len, uint64_t off);

/* Pins segment `no` with its descriptor open; a segment that does not exist
 * is -EIO. Takes seg_mu. */
int segfile_pin(struct datafile *df, uint32_t no, struct segment **out);
/* Drops a pin; the _locked one with seg_mu held, the other takes it. */
void segfile_unpin(struct datafile *df, struct segment *s);
void segfile_unpin_locked(struct datafile *df, struct segment *s);

/* The two below with append_mu held. */

/* Puts `s` on the unsynced list (once), pinned until the sync. */
void segfile_mark_dirty(struct datafile *df, struct segment *s);
/* Makes the next segment, with its header written, as the append target. */
int segfile_create(struct datafile *df);

/* Takes append_mu and seg_mu. Deletes segment `seg`'s file and forgets it:
 * -ENOENT when there is none, -EBUSY for the append target. */
int segfile_remove(struct datafile *df, uint32_t seg);

/* At open, before any other thread sees df: reads the header of every
 * segment in df->dirfd and makes the segment array. At close: closes the
 * descriptors and frees the array. */
int segfile_load(struct datafile *df);
void segfile_unload(struct datafile *df);

#endif /* MINDB_SEGFILE_H */
