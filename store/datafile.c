/*
 * datafile.c - the chunks in the data segments: compressed, checksummed
 * records appended to the segments and never rewritten, read back through
 * the cache, and made durable by datafile_sync(). The segment files
 * themselves (names, header, descriptors) are segfile.c's.
 *
 * Chunk record, packed back to back after the segment's header, no
 * alignment:
 *
 *   0  8  checksum: XXH3-64 (seed 0) of bytes 8..39 and the payload
 *   8  4  magic 0x4b43444d ("MDCK")  a ref into the middle of something is
 *                                    caught even before the checksum
 *  12  1  codec: 0 raw, 1 zstd (one frame)
 *  13  1  flags, 0
 *  14  2  reserved, 0
 *  16  8  object id                  a ref to the wrong record is caught
 *  24  8  chunk index                (its checksum is fine)
 *  32  4  raw_len: bytes once decompressed, 1..65536
 *  36  4  stored_len: payload bytes
 *  40     payload
 *
 * A record is written with one pwrite at the segment's current size, so
 * after a crash the tail may hold a torn record. Nothing can refer to it (a
 * ref exists only once the write returned, and is durable only after a
 * sync), and appends simply continue after it: dead space for compaction.
 * The checksum does not cover the position: datafile_copy() moves a record
 * byte for byte, and a ref names its record exactly, so a record found at
 * the wrong place is still caught by the id, index and lengths.
 *
 * Compression. zstd at the configured level, with per-thread contexts and
 * a per-thread record buffer, made at a thread's first call and freed when
 * it exits: reads and writes allocate nothing of their own (the cache
 * recycles evicted entries, see cache.c). A chunk is stored raw unless zstd
 * saves at least 1/32 of it: below that, decompression would cost more than
 * the bytes saved.
 *
 * Shared records. datafile_write_shared looks a chunk's bytes up in the
 * content-hash table (dedup.c) of the records written since the open, and
 * when one holds the same bytes (read back and compared: hashes collide,
 * disks fail) returns a ref to it with CHUNK_SHARED, writing nothing. A
 * record is only ever added to the table as it is appended, and dropped
 * from it when its segment's sync fails (its bytes may be lost), when
 * compaction takes the segment (datafile_retire) or when the segment is
 * deleted: so a shared ref never names a record that may vanish, as long
 * as compaction cannot run between the lookup and the ref reaching the
 * store's state (the caller's lock, see datafile.h). A record not yet
 * synced may be shared: the sharer's own sync, which must come before it
 * names the ref durably, syncs it or waits for the sync that does.
 * Liveness needs no count: compaction keeps a record while any ref names
 * it, and moves it once for all of them.
 *
 * Refs. A ref that no record could match (lengths out of range, an unknown
 * codec, a segment that does not exist) is -EIO like any other mismatch: to
 * the caller it is a chunk that cannot be read.
 *
 * Locks: see struct datafile in segfile.h.
 */
#include "datafile.h"
#include "cache.h"
#include "dedup.h"
#include "mindb.h"
#include "segfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#define REC_HEADER_BYTES 40
#define REC_MAGIC 0x4b43444du
#define MAX_STORED ZSTD_COMPRESSBOUND(DATAFILE_MAX_CHUNK)
#define REC_BUF_BYTES (REC_HEADER_BYTES + MAX_STORED)
#define DEFAULT_SEGMENT_BYTES ((uint64_t)64 << 20)
/* At most 40 bytes each, 5 MiB in all: a 64 KiB chunk of every 8 GiB
 * written since the open, or 2^17 small files, can be found again. */
#define DEDUP_ENTRIES ((size_t)1 << 17)

/* ---- encoding ---- */

/* Fills the header of the record whose payload is already at rec + 40. */
static void rec_header_encode(uint8_t *rec, uint8_t codec, uint64_t id, uint64_t index,
                              uint32_t raw_len, uint32_t stored_len)
{
    put_u32(rec + 8, REC_MAGIC);
    rec[12] = codec;
    rec[13] = 0;
    rec[14] = rec[15] = 0;
    put_u64(rec + 16, id);
    put_u64(rec + 24, index);
    put_u32(rec + 32, raw_len);
    put_u32(rec + 36, stored_len);
    put_u64(rec, XXH3_64bits(rec + 8, REC_HEADER_BYTES - 8 + (size_t)stored_len));
}

/* The cheap fields first; the checksum only for a record that looks right. */
static int rec_check(const uint8_t *rec, uint64_t id, uint64_t index, const struct chunk_ref *ref)
{
    int shared = (ref->codec & CHUNK_SHARED) != 0;
    if (get_u32(rec + 8) != REC_MAGIC || rec[12] != (ref->codec & ~CHUNK_SHARED) || rec[13] != 0 ||
        rec[14] != 0 || rec[15] != 0 || (!shared && get_u64(rec + 16) != id) ||
        (!shared && get_u64(rec + 24) != index) || get_u32(rec + 32) != ref->raw_len ||
        get_u32(rec + 36) != ref->stored_len)
        return -EIO;
    if (get_u64(rec) != XXH3_64bits(rec + 8, REC_HEADER_BYTES - 8 + (size_t)ref->stored_len))
        return -EIO;
    return 0;
}

/* A ref that no record this layer writes could match (seg 0 aside). */
static int ref_plausible(const struct chunk_ref *ref)
{
    if (ref->raw_len == 0 || ref->raw_len > DATAFILE_MAX_CHUNK || ref->stored_len == 0 ||
        ref->stored_len > MAX_STORED || ref->off < SEG_HEADER_BYTES || ref->off > INT64_MAX / 2)
        return 0;
    uint8_t codec = ref->codec & ~CHUNK_SHARED;
    if (codec == CHUNK_RAW)
        return ref->stored_len == ref->raw_len;
    return codec == CHUNK_ZSTD;
}

uint64_t chunk_ref_record_bytes(const struct chunk_ref *ref)
{
    return REC_HEADER_BYTES + (uint64_t)ref->stored_len;
}

uint64_t chunk_ref_disk_bytes(const struct chunk_ref *ref)
{
    return ref->codec & CHUNK_SHARED ? 0 : chunk_ref_record_bytes(ref);
}

/* ---- per-thread compression state ---- */

struct df_thread {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *rec; /* one record: header and the largest payload */
    uint8_t *raw; /* datafile_verify's output */
};

static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;
static int thread_key_err;

static void thread_free(void *p)
{
    struct df_thread *t = p;
    ZSTD_freeCCtx(t->cctx);
    ZSTD_freeDCtx(t->dctx);
    free(t->rec);
    free(t->raw);
    free(t);
}

static void thread_key_init(void)
{
    thread_key_err = pthread_key_create(&thread_key, thread_free);
}

/* The calling thread's state, made at its first call and freed when it
 * exits; shared by every datafile the thread uses. */
static struct df_thread *thread_state(void)
{
    pthread_once(&thread_once, thread_key_init);
    if (thread_key_err)
        return NULL;
    struct df_thread *t = pthread_getspecific(thread_key);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cctx = ZSTD_createCCtx();
    t->dctx = ZSTD_createDCtx();
    t->rec = malloc(REC_BUF_BYTES);
    t->raw = malloc(DATAFILE_MAX_CHUNK);
    if (!t->cctx || !t->dctx || !t->rec || !t->raw || pthread_setspecific(thread_key, t) != 0) {
        thread_free(t);
        return NULL;
    }
    return t;
}

/* ---- appending ---- */

/* Appends one record (`len` bytes at `rec`) and says where it went. With
 * `key`, also fills *ref and enters the record in the content-hash table:
 * under append_mu, so that a failed sync, which drops the entries of its
 * segments under it too, cannot miss it. */
static int append_record(struct datafile *df, const uint8_t *rec, size_t len, uint32_t *seg,
                         uint64_t *off, const struct dedup_key *key, struct chunk_ref *ref)
{
    int rc = 0;
    pthread_mutex_lock(&df->append_mu);
    struct segment *s = df->active;
    if (!s || s->sealed || s->size >= df->segment_bytes) {
        rc = segfile_create(df);
        s = df->active;
    }
    /* On failure the size stays: the next record overwrites what this one
     * may have left, and after a crash it is unreferenced tail space. */
    if (rc == 0)
        rc = segfile_write_full(df, s->fd, rec, len, s->size);
    if (rc == 0) {
        *seg = s->no;
        *off = s->size;
        s->size += len;
        segfile_mark_dirty(df, s);
        df->chunks_written++;
        df->bytes_written += len;
        if (ref) {
            ref->seg = s->no;
            ref->off = *off;
            ref->stored_len = get_u32(rec + 36);
            ref->raw_len = get_u32(rec + 32);
            ref->codec = rec[12];
        }
        if (key && df->dedup)
            dedup_add(df->dedup, key, ref);
    }
    pthread_mutex_unlock(&df->append_mu);
    return rc;
}

/* ---- opening ---- */

int datafile_open(int store_dirfd, const char *name, int create,
                  const struct datafile_options *options, struct datafile **out)
{
    if (options->compression_level < 1 || options->compression_level > ZSTD_maxCLevel())
        return -EINVAL;
    struct datafile *df = calloc(1, sizeof *df);
    if (!df)
        return -ENOMEM;
    df->io = options->io ? options->io : &wal_posix_io;
    df->dirfd = -1;
    df->read_only = options->read_only;
    if (options->share_chunks && !options->read_only && dedup_create(DEDUP_ENTRIES, &df->dedup)) {
        free(df);
        return -ENOMEM;
    }
    df->level = options->compression_level;
    df->segment_bytes = options->segment_bytes ? options->segment_bytes : DEFAULT_SEGMENT_BYTES;
    df->next_no = 1;
    df->log = options->log;
    df->log_ctx = options->log_ctx;
    df->lru.lru_prev = df->lru.lru_next = &df->lru;
    pthread_mutex_init(&df->sync_mu, NULL);
    pthread_mutex_init(&df->append_mu, NULL);
    pthread_mutex_init(&df->seg_mu, NULL);

    int rc = cache_create(options->cache_bytes, &df->cache);
    if (rc == 0 && create && !df->read_only) {
        /* The new directory's entry is made durable at once: the store
         * records segments in it from the first checkpoint on. */
        if (mkdirat(store_dirfd, name, 0755) == 0)
            rc = df->io->fsync(df->io->ctx, store_dirfd);
        else if (errno != EEXIST)
            rc = -errno;
    }
    if (rc == 0) {
        rc = df->io->openat(df->io->ctx, store_dirfd, name, O_RDONLY | O_DIRECTORY, 0);
        if (rc >= 0) {
            df->dirfd = rc;
            rc = segfile_load(df);
        }
    }
    if (rc < 0) {
        datafile_close(df);
        return rc;
    }
    *out = df;
    return 0;
}

void datafile_close(struct datafile *df)
{
    if (!df)
        return;
    segfile_unload(df);
    if (df->cache)
        cache_destroy(df->cache);
    dedup_destroy(df->dedup);
    if (df->dirfd >= 0)
        df->io->close(df->io->ctx, df->dirfd);
    pthread_mutex_destroy(&df->sync_mu);
    pthread_mutex_destroy(&df->append_mu);
    pthread_mutex_destroy(&df->seg_mu);
    free(df);
}

/* ---- chunks ---- */

/* What a cached chunk must match besides its place: all a read from disk
 * checks, so that a ref is answered the same, cached or not. A shared ref
 * checks no id or index, and is cached apart under none. */
static struct cache_who cache_who(uint64_t id, uint64_t index, const struct chunk_ref *ref)
{
    if (ref->codec & CHUNK_SHARED)
        id = index = 0;
    return (struct cache_who){id, index, (uint64_t)ref->stored_len << 8 | ref->codec};
}

static int write_chunk(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                       size_t raw_len, int level, const struct dedup_key *key,
                       struct chunk_ref *ref)
{
    if (df->read_only)
        return -EROFS;
    if (raw_len == 0 || raw_len > DATAFILE_MAX_CHUNK)
        return -EINVAL;
    struct df_thread *t = thread_state();
    if (!t)
        return -ENOMEM;
    uint8_t codec = CHUNK_RAW;
    uint32_t stored = (uint32_t)raw_len;
    size_t z =
        ZSTD_compressCCtx(t->cctx, t->rec + REC_HEADER_BYTES, MAX_STORED, raw, raw_len, level);
    if (!ZSTD_isError(z) && z < raw_len - raw_len / 32) {
        codec = CHUNK_ZSTD;
        stored = (uint32_t)z;
    } else {
        memcpy(t->rec + REC_HEADER_BYTES, raw, raw_len);
    }
    rec_header_encode(t->rec, codec, id, index, (uint32_t)raw_len, stored);
    uint32_t seg;
    uint64_t off;
    int rc = append_record(df, t->rec, REC_HEADER_BYTES + (size_t)stored, &seg, &off, key, ref);
    if (rc < 0)
        return rc;
    struct cache_who who = cache_who(id, index, ref);
    cache_put(df->cache, seg, off, &who, raw, (uint32_t)raw_len);
    return 0;
}

int datafile_write(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                   size_t raw_len, struct chunk_ref *ref)
{
    return write_chunk(df, id, index, raw, raw_len, df->level, NULL, ref);
}

int datafile_write_level(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                         size_t raw_len, int level, struct chunk_ref *ref)
{
    return write_chunk(df, id, index, raw, raw_len, level, NULL, ref);
}

/* Reads and checks the record of `ref` into the thread's record buffer. */
static int read_record(struct datafile *df, struct df_thread *t, uint64_t id, uint64_t index,
                       const struct chunk_ref *ref)
{
    if (!ref_plausible(ref))
        return -EIO;
    struct segment *s;
    int rc = segfile_pin(df, ref->seg, &s);
    if (rc < 0)
        return rc;
    rc = segfile_read_full(df, s->fd, t->rec, REC_HEADER_BYTES + (size_t)ref->stored_len, ref->off);
    segfile_unpin(df, s);
    return rc < 0 ? rc : rec_check(t->rec, id, index, ref);
}

static int decode(struct df_thread *t, const struct chunk_ref *ref, void *out)
{
    const uint8_t *payload = t->rec + REC_HEADER_BYTES;
    if ((ref->codec & ~CHUNK_SHARED) == CHUNK_RAW) {
        memcpy(out, payload, ref->raw_len);
        return 0;
    }
    size_t n = ZSTD_decompressDCtx(t->dctx, out, ref->raw_len, payload, ref->stored_len);
    return !ZSTD_isError(n) && n == ref->raw_len ? 0 : -EIO;
}

int datafile_read(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *ref,
                  void *buf)
{
    if (ref->seg == 0) {
        if (ref->raw_len > DATAFILE_MAX_CHUNK)
            return -EINVAL;
        memset(buf, 0, ref->raw_len);
        return 0;
    }
    struct cache_who who = cache_who(id, index, ref);
    if (cache_get(df->cache, ref->seg, ref->off, &who, buf, ref->raw_len))
        return 0;
    struct df_thread *t = thread_state();
    if (!t)
        return -ENOMEM;
    int rc = read_record(df, t, id, index, ref);
    if (rc == 0)
        rc = decode(t, ref, buf);
    if (rc == 0)
        cache_put(df->cache, ref->seg, ref->off, &who, buf, ref->raw_len);
    return rc;
}

int datafile_verify(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *ref)
{
    if (ref->seg == 0)
        return 0;
    struct df_thread *t = thread_state();
    if (!t)
        return -ENOMEM;
    int rc = read_record(df, t, id, index, ref);
    return rc < 0 ? rc : decode(t, ref, t->raw);
}

int datafile_write_shared(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                          size_t raw_len, struct chunk_ref *ref)
{
    if (!df->dedup || raw_len == 0 || raw_len > DATAFILE_MAX_CHUNK)
        return datafile_write(df, id, index, raw, raw_len, ref);
    struct df_thread *t = thread_state();
    if (!t)
        return -ENOMEM;
    struct dedup_key key;
    dedup_key_of(raw, raw_len, &key);
    struct chunk_ref found;
    unsigned gen = __atomic_load_n(&df->fail_gen, __ATOMIC_ACQUIRE);
    if (dedup_find(df->dedup, &key, &found) && found.raw_len == raw_len) {
        struct chunk_ref shared = found;
        shared.codec |= CHUNK_SHARED;
        int same =
            datafile_read(df, 0, 0, &shared, t->raw) == 0 && memcmp(t->raw, raw, raw_len) == 0;
        /* A sync that failed meanwhile may have lost the record, and dropped
         * it from the table after the lookup. */
        if (same && __atomic_load_n(&df->fail_gen, __ATOMIC_ACQUIRE) == gen) {
            *ref = shared;
            __atomic_add_fetch(&df->shared_chunks, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&df->shared_bytes, chunk_ref_record_bytes(&shared),
                               __ATOMIC_RELAXED);
            return 0;
        }
        if (!same)
            dedup_forget(df->dedup, &key, &found);
    }
    return write_chunk(df, id, index, raw, raw_len, df->level, &key, ref);
}

/* The record's checksum vouches for its payload, so the copy skips
 * decompressing it. */
int datafile_copy(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *ref,
                  struct chunk_ref *out)
{
    if (df->read_only)
        return -EROFS;
    if (ref->seg == 0)
        return -EINVAL;
    struct df_thread *t = thread_state();
    if (!t)
        return -ENOMEM;
    int rc = read_record(df, t, id, index, ref);
    uint32_t seg;
    uint64_t off;
    if (rc == 0)
        rc = append_record(df, t->rec, REC_HEADER_BYTES + (size_t)ref->stored_len, &seg, &off, NULL,
                           NULL);
    if (rc < 0)
        return rc;
    *out = *ref;
    out->seg = seg;
    out->off = off;
    return 0;
}

/* ---- durability ---- */

/*
 * One sync at a time (sync_mu): a caller arriving while another sync runs
 * waits for it, then syncs what is left. The unsynced list is taken whole
 * under append_mu, so writers go on appending (to new pins) while the
 * fdatasyncs run. A failed sync makes every segment of its batch closed to
 * appends: their pages may have been dropped, and records appended after
 * them could become durable behind a hole the caller believes is there.
 * A caller that waited through a failed sync gets its error too, since its
 * writes may have been in that batch.
 */
unsigned datafile_failed_syncs(struct datafile *df)
{
    return __atomic_load_n(&df->fail_gen, __ATOMIC_ACQUIRE);
}

int datafile_sync(struct datafile *df)
{
    if (df->read_only)
        return 0;
    unsigned gen = __atomic_load_n(&df->fail_gen, __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&df->sync_mu);

    pthread_mutex_lock(&df->append_mu);
    struct segment *batch = NULL;
    for (struct segment *s = df->dirty; s; s = s->dirty_next) {
        s->dirty = 0;
        s->sync_next = batch;
        batch = s;
    }
    df->dirty = NULL;
    int dir = df->dir_dirty;
    df->dir_dirty = 0;
    pthread_mutex_unlock(&df->append_mu);

    int rc = 0;
    uint64_t calls = 0;
    for (struct segment *s = batch; s; s = s->sync_next) {
        int r = df->io->fdatasync(df->io->ctx, s->fd);
        calls++;
        if (r < 0 && rc == 0)
            rc = r;
    }
    if (rc == 0 && dir) {
        rc = df->io->fsync(df->io->ctx, df->dirfd);
        calls++;
    }
    __atomic_add_fetch(&df->fdatasyncs, calls, __ATOMIC_RELAXED);

    if (rc < 0) {
        pthread_mutex_lock(&df->append_mu);
        for (struct segment *s = batch; s; s = s->sync_next) {
            s->sealed = 1;
            if (df->dedup)
                dedup_drop_segment(df->dedup, s->no);
        }
        df->dir_dirty |= dir;
        df->fail_err = rc;
        __atomic_add_fetch(&df->fail_gen, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&df->append_mu);
    }
    pthread_mutex_lock(&df->seg_mu);
    for (struct segment *s = batch, *next; s; s = next) {
        next = s->sync_next;
        segfile_unpin_locked(df, s);
    }
    pthread_mutex_unlock(&df->seg_mu);
    if (rc == 0 && __atomic_load_n(&df->fail_gen, __ATOMIC_ACQUIRE) != gen)
        rc = df->fail_err;
    pthread_mutex_unlock(&df->sync_mu);
    return rc;
}

/* ---- segments as a whole ---- */

size_t datafile_segments(struct datafile *df, uint32_t *segs, uint64_t *sizes, size_t max)
{
    pthread_mutex_lock(&df->append_mu);
    pthread_mutex_lock(&df->seg_mu);
    size_t n = df->nsegs;
    for (size_t i = 0; i < n && i < max; i++) {
        segs[i] = df->segs[i]->no;
        sizes[i] = df->segs[i]->size;
    }
    pthread_mutex_unlock(&df->seg_mu);
    pthread_mutex_unlock(&df->append_mu);
    return n;
}

int datafile_seal_active(struct datafile *df)
{
    if (df->read_only)
        return -EROFS;
    pthread_mutex_lock(&df->append_mu);
    int rc = 0;
    if (df->active && !df->active->sealed && df->active->size > SEG_HEADER_BYTES)
        rc = segfile_create(df);
    pthread_mutex_unlock(&df->append_mu);
    return rc;
}

uint32_t datafile_active_segment(struct datafile *df)
{
    pthread_mutex_lock(&df->append_mu);
    uint32_t no = df->active ? df->active->no : 0;
    pthread_mutex_unlock(&df->append_mu);
    return no;
}

int datafile_remove(struct datafile *df, uint32_t seg)
{
    if (df->read_only)
        return -EROFS;
    int rc = segfile_remove(df, seg);
    /* A read in flight may put a chunk of the segment back; it is never
     * looked up (numbers are not reused) and ages out. */
    if (rc == 0)
        cache_drop_segment(df->cache, seg);
    if (rc == 0 && df->dedup)
        dedup_drop_segment(df->dedup, seg);
    return rc;
}

void datafile_retire(struct datafile *df, uint32_t seg)
{
    if (df->dedup)
        dedup_drop_segment(df->dedup, seg);
}

void datafile_cache_drop(struct datafile *df)
{
    cache_drop_all(df->cache);
}

void datafile_stats(struct datafile *df, struct datafile_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    struct cache_stats cs;
    cache_stats(df->cache, &cs);
    stats->cache_hits = cs.hits;
    stats->cache_misses = cs.misses;
    stats->cache_bytes = cs.bytes;
    stats->fdatasyncs = __atomic_load_n(&df->fdatasyncs, __ATOMIC_RELAXED);
    stats->segments_discarded = df->segments_discarded;
    stats->shared_chunks = __atomic_load_n(&df->shared_chunks, __ATOMIC_RELAXED);
    stats->shared_bytes = __atomic_load_n(&df->shared_bytes, __ATOMIC_RELAXED);
    pthread_mutex_lock(&df->append_mu);
    stats->chunks_written = df->chunks_written;
    stats->bytes_written = df->bytes_written;
    pthread_mutex_lock(&df->seg_mu);
    stats->segments = df->nsegs;
    for (size_t i = 0; i < df->nsegs; i++)
        stats->segment_bytes += df->segs[i]->size;
    pthread_mutex_unlock(&df->seg_mu);
    pthread_mutex_unlock(&df->append_mu);
}
