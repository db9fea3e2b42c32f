/*
 * datafile.h - the data segments of a store: compressed, checksummed chunks
 * appended to files in STORE/data/, read back through a bounded cache of
 * decompressed chunks. Private to store/.
 *
 * A chunk is a piece of one object's value (at most DATAFILE_MAX_CHUNK
 * bytes). Once written it is never changed: a new version of the chunk goes
 * to a new place, and the old one becomes dead space that compaction
 * reclaims. The caller (the store) keeps the chunk_ref of every live chunk
 * and decides what is live; this layer knows nothing of keys.
 *
 * The format of the files is described atop segfile.c (the segment
 * header) and datafile.c (the chunk records), and in docs/FORMAT.md.
 */
#ifndef MINDB_DATAFILE_H
#define MINDB_DATAFILE_H

#include "wal.h"

#include <stddef.h>
#include <stdint.h>

#define DATAFILE_MAX_CHUNK (64 * 1024)

enum chunk_codec {
    CHUNK_RAW = 0,  /* stored as is: compression did not pay */
    CHUNK_ZSTD = 1, /* one zstd frame */
};

/* Or'ed into a ref's codec: the record was written for another chunk (maybe
 * of another object) whose bytes were the same, and is shared with it (see
 * datafile_write_shared). A read of such a ref checks everything but the
 * record's object id and chunk index, which name the chunk it was written
 * for. The record's own codec field never has this bit. */
#define CHUNK_SHARED 0x80

/* Where a chunk lives. seg == 0 means no chunk (a hole, reads as zeros). */
struct chunk_ref {
    uint64_t off;        /* offset of the chunk's record in the segment */
    uint32_t seg;        /* segment number, from 1 */
    uint32_t stored_len; /* payload bytes on disk */
    uint32_t raw_len;    /* bytes once decompressed */
    uint8_t codec;       /* enum chunk_codec, maybe | CHUNK_SHARED */
};

/* Bytes the chunk's record occupies in its segment, header included. */
uint64_t chunk_ref_record_bytes(const struct chunk_ref *ref);
/* The same, but 0 for a shared ref: the bytes this ref alone adds to the
 * store (the record is counted once, by the ref it was written for). */
uint64_t chunk_ref_disk_bytes(const struct chunk_ref *ref);

struct datafile_options {
    /* zstd level; outside 1..ZSTD_maxCLevel() datafile_open returns -EINVAL */
    int compression_level;
    uint64_t cache_bytes; /* bound of the decompressed-chunk cache */
    /* a segment is closed once it reaches this; 0 means 64 MiB */
    uint64_t segment_bytes;
    int read_only; /* never create or write anything */
    /* datafile_write_shared may name an existing record (stores of format
     * 2 on): older builds cannot read a shared ref. */
    int share_chunks;
    const struct wal_io *io; /* NULL: wal_posix_io */
    /* Told which segment stops the open, and why (NULL: nobody). */
    void (*log)(void *ctx, const char *message);
    void *log_ctx;
};

struct datafile_stats {
    uint64_t cache_hits, cache_misses;
    uint64_t cache_bytes; /* decompressed bytes held now */
    uint64_t chunks_written;
    uint64_t bytes_written; /* record bytes appended */
    uint64_t fdatasyncs;    /* fdatasync + fsync calls */
    uint64_t segments;      /* segment files */
    uint64_t segment_bytes; /* their total size */
    uint64_t shared_chunks; /* datafile_write_shared calls that named a record */
    uint64_t shared_bytes;  /* the record bytes they did not write */
    /* Newest segments found at open with a short or all-zero header (a crash
     * while one was made): deleted, or ignored by a read-only open. */
    uint32_t segments_discarded;
};

struct datafile;

/* Opens (with create: makes) the directory `name` under `store_dirfd`, and
 * reads the header of every segment in it. A segment with a damaged header
 * is an error (MINDB_ECORRUPT from mindb.h), so is a segment of another
 * format version (MINDB_EVERSION); only the newest segment, when short or
 * with a header of zeros, is discarded instead (see segments_discarded).
 * New chunks are appended to the newest segment while it is below
 * segment_bytes, at its end. */
int datafile_open(int store_dirfd, const char *name, int create,
                  const struct datafile_options *options, struct datafile **out);
/* Does not sync: call datafile_sync() first for what must be durable. */
void datafile_close(struct datafile *df);

/* Compresses `raw` (raw_len bytes, 1..DATAFILE_MAX_CHUNK) as chunk `index`
 * of object `id`, appends it and fills *ref. Safe from many threads:
 * compression runs in parallel, only the append is serialised. The bytes are
 * in the page cache, not durable, until datafile_sync(). The raw bytes also
 * enter the cache. */
int datafile_write(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                   size_t raw_len, struct chunk_ref *ref);
/* The same at zstd level `level` instead of the store's (negative levels
 * included): a zstd frame decodes whatever level made it, so a read needs
 * nothing of it. */
int datafile_write_level(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                         size_t raw_len, int level, struct chunk_ref *ref);

/* Like datafile_write, but when a record written since the datafile was
 * opened (and not since dropped, see datafile_retire) holds the same bytes,
 * fills *ref with a shared ref to it instead of appending one (it reads the
 * record back and compares the bytes first). Without share_chunks, it is
 * datafile_write. The caller must make sure that nothing can delete the
 * named record's segment before the ref is in the state compaction walks:
 * compaction's moves and deletes are made in the caller's maintenance
 * lock, which checkpoints hold. */
int datafile_write_shared(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                          size_t raw_len, struct chunk_ref *ref);

/* Copies the record of `ref` (belonging to chunk `index` of object `id`)
 * verbatim to the end of the newest segment and fills *out: compaction's
 * move, without recompressing. The record is verified first (-EIO). */
int datafile_copy(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *ref,
                  struct chunk_ref *out);

/* Reads chunk `index` of object `id` at `ref` into `buf` (ref->raw_len
 * bytes), from the cache or from disk. On disk the record's checksum, magic,
 * id, index and lengths must all match, and it must decompress to exactly
 * raw_len bytes; otherwise -EIO. */
int datafile_read(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *ref,
                  void *buf);

/* Like datafile_read() but always from disk and without filling the cache:
 * what a check does. */
int datafile_verify(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *ref);

/* Makes every chunk written so far durable: fdatasync of each segment
 * written since the last sync, and fsync of the directory when a segment was
 * created. After a failure the segments written since the last sync are
 * closed to appends (the next write starts a new segment) and the error is
 * returned: their pages may be lost, so what was written there must be
 * written again. */
int datafile_sync(struct datafile *df);
/* Syncs that failed since the open: bytes appended before one may be lost
 * even though a later datafile_sync() returns 0. */
unsigned datafile_failed_syncs(struct datafile *df);

/* Segment numbers in ascending order, with their file sizes: fills at most
 * `max`, returns how many there are. */
size_t datafile_segments(struct datafile *df, uint32_t *segs, uint64_t *sizes, size_t max);

/* Starts a new segment for new chunks now, unless the current one holds no
 * chunk yet, so that compaction can take the current one too. */
int datafile_seal_active(struct datafile *df);

/* The segment new chunks go to now (0 when none yet): compaction leaves it. */
uint32_t datafile_active_segment(struct datafile *df);

/* Compaction is about to move the live records of `seg` away: no new
 * shared ref may name one of its records. */
void datafile_retire(struct datafile *df, uint32_t seg);

/* Deletes a segment whose chunks are all dead, and drops its cached chunks.
 * The directory is fsynced by the next datafile_sync().
 * Returns -EBUSY for the active segment, -ENOENT for one that does not exist. */
int datafile_remove(struct datafile *df, uint32_t seg);

/* Drops every cached chunk (for tests and benchmarks of cold reads). */
void datafile_cache_drop(struct datafile *df);

void datafile_stats(struct datafile *df, struct datafile_stats *stats);

#endif /* MINDB_DATAFILE_H */
