/*
 * datafile.c - the data segments: files of compressed, checksummed chunk
 * records, appended to and never rewritten.
 *
 * Files. STORE/data/%08x.seg, the segment number in lowercase hex. Numbers
 * start at 1 and are never reused: a new segment takes the largest number
 * present plus one. New records go to the end of the newest segment while it
 * is below segment_bytes; then the next write makes a new segment. I/O is
 * buffered; durability comes from datafile_sync().
 *
 * Segment header, the first 64 bytes of a segment (little-endian):
 *
 *   0  8  magic "MINDBSEG"          identifies the file
 *   8  4  format version (1)        refuse what we cannot read
 *  12  4  segment number            a file copied or renamed to another
 *                                   number is recognised
 *  16 40  reserved, zeros           room for later versions
 *  56  8  XXH3-64 (seed 0) of bytes 0..55
 *
 * The magic is checked first, then the version, then the checksum: a newer
 * version may have moved its checksum, so it is reported as MINDB_EVERSION
 * without one. Any other failure is MINDB_ECORRUPT, except that a newest
 * segment shorter than its header (a crash while it was being made, before
 * any record could be written into it, let alone synced) is deleted.
 *
 * Chunk record, packed back to back after the header, no alignment:
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
 * Refs. A ref that no record could match (lengths out of range, an unknown
 * codec, a segment that does not exist) is -EIO like any other mismatch: to
 * the caller it is a chunk that cannot be read.
 *
 * Descriptors. A segment's file is opened (O_RDWR, O_RDONLY when read-only)
 * when first needed and kept open; at most MAX_OPEN_FDS are kept, the least
 * recently used one is closed when another is needed. A descriptor is
 * "pinned" while it is in use: by a read in flight, by the append target,
 * and by a segment with unsynced writes (closing it could lose an fdatasync
 * error). Pinned ones are never closed.
 *
 * Locks, taken in this order: sync_mu (one datafile_sync at a time),
 * append_mu (the append target, segment sizes, the unsynced list, counters),
 * seg_mu (the segment array, descriptors, pins).
 */
#include "datafile.h"
#include "cache.h"
#include "mindb.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define SEG_HEADER_BYTES 64
#define SEG_VERSION 1
#define SEG_NAME_MAX 16
#define REC_HEADER_BYTES 40
#define REC_MAGIC 0x4b43444du
#define MAX_STORED ZSTD_COMPRESSBOUND(DATAFILE_MAX_CHUNK)
#define REC_BUF_BYTES (REC_HEADER_BYTES + MAX_STORED)
#define MAX_OPEN_FDS 64
#define DEFAULT_SEGMENT_BYTES ((uint64_t)64 << 20)

static const char seg_magic[8] = {'M', 'I', 'N', 'D', 'B', 'S', 'E', 'G'};

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

struct datafile {
    const struct wal_io *io;
    int dirfd;
    int read_only;
    int level;
    uint64_t segment_bytes;
    struct cache *cache;

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

    uint64_t fdatasyncs; /* atomic */
};

/* ---- encoding ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof v);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof v);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return le32toh(v);
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

static void seg_header_encode(uint8_t h[SEG_HEADER_BYTES], uint32_t no)
{
    memset(h, 0, SEG_HEADER_BYTES);
    memcpy(h, seg_magic, sizeof seg_magic);
    put_u32(h + 8, SEG_VERSION);
    put_u32(h + 12, no);
    put_u64(h + 56, XXH3_64bits(h, 56));
}

static int seg_header_check(const uint8_t h[SEG_HEADER_BYTES], uint32_t no)
{
    if (memcmp(h, seg_magic, sizeof seg_magic) != 0)
        return MINDB_ECORRUPT;
    uint32_t version = get_u32(h + 8);
    if (version > SEG_VERSION)
        return MINDB_EVERSION;
    if (version == 0 || get_u64(h + 56) != XXH3_64bits(h, 56) || get_u32(h + 12) != no)
        return MINDB_ECORRUPT;
    return 0;
}

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
    if (get_u32(rec + 8) != REC_MAGIC || rec[12] != ref->codec || rec[13] != 0 || rec[14] != 0 ||
        rec[15] != 0 || get_u64(rec + 16) != id || get_u64(rec + 24) != index ||
        get_u32(rec + 32) != ref->raw_len || get_u32(rec + 36) != ref->stored_len)
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
    if (ref->codec == CHUNK_RAW)
        return ref->stored_len == ref->raw_len;
    return ref->codec == CHUNK_ZSTD;
}

uint64_t chunk_ref_disk_bytes(const struct chunk_ref *ref)
{
    return REC_HEADER_BYTES + (uint64_t)ref->stored_len;
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

/* ---- file helpers ---- */

static void seg_name(char name[SEG_NAME_MAX], uint32_t no)
{
    snprintf(name, SEG_NAME_MAX, "%08" PRIx32 ".seg", no);
}

/* Parses "<8 lowercase hex digits>.seg" with a number from 1. */
static int parse_seg_name(const char *name, uint32_t *no)
{
    if (strlen(name) != 12 || strcmp(name + 8, ".seg") != 0)
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char ch = name[i];
        if (ch >= '0' && ch <= '9')
            v = v << 4 | (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = v << 4 | (uint32_t)(ch - 'a' + 10);
        else
            return 0;
    }
    *no = v;
    return v != 0;
}

static int write_full(struct datafile *df, int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = df->io->pwrite(df->io->ctx, fd, p, len, (off_t)off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* A read that ends early (end of file) is -EIO: the ref points past what
 * the segment holds. */
static int read_full(struct datafile *df, int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = df->io->pread(df->io->ctx, fd, p, len, (off_t)off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int open_flags(const struct datafile *df)
{
    return df->read_only ? O_RDONLY : O_RDWR;
}

/* ---- segments and their descriptors (seg_mu held) ---- */

static struct segment *seg_find(struct datafile *df, uint32_t no)
{
    size_t lo = 0, hi = df->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (df->segs[mid]->no < no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < df->nsegs && df->segs[lo]->no == no ? df->segs[lo] : NULL;
}

static void lru_unlink(struct segment *s)
{
    s->lru_prev->lru_next = s->lru_next;
    s->lru_next->lru_prev = s->lru_prev;
}

static void lru_push(struct datafile *df, struct segment *s)
{
    s->lru_prev = &df->lru;
    s->lru_next = df->lru.lru_next;
    df->lru.lru_next->lru_prev = s;
    df->lru.lru_next = s;
}

static void fd_attach(struct datafile *df, struct segment *s, int fd)
{
    s->fd = fd;
    df->nopen++;
    lru_push(df, s);
}

static void fd_close(struct datafile *df, struct segment *s)
{
    lru_unlink(s);
    df->io->close(df->io->ctx, s->fd);
    s->fd = -1;
    df->nopen--;
}

/* Closes unpinned descriptors, least recently used first, down to the
 * limit; when all are pinned the limit is exceeded for a while. */
static void fd_trim(struct datafile *df)
{
    for (struct segment *s = df->lru.lru_prev; df->nopen > MAX_OPEN_FDS && s != &df->lru;) {
        struct segment *prev = s->lru_prev;
        if (s->pins == 0)
            fd_close(df, s);
        s = prev;
    }
}

static void unpin_locked(struct datafile *df, struct segment *s)
{
    if (--s->pins == 0 && s->removed) {
        if (s->fd >= 0)
            fd_close(df, s);
        free(s);
    } else {
        fd_trim(df);
    }
}

static void seg_unpin(struct datafile *df, struct segment *s)
{
    pthread_mutex_lock(&df->seg_mu);
    unpin_locked(df, s);
    pthread_mutex_unlock(&df->seg_mu);
}

/* Pins segment `no` with its descriptor open. A segment that does not exist
 * is -EIO: whatever refers to it is damaged. */
static int seg_pin(struct datafile *df, uint32_t no, struct segment **out)
{
    int rc = 0;
    pthread_mutex_lock(&df->seg_mu);
    struct segment *s = seg_find(df, no);
    if (!s) {
        rc = -EIO;
    } else if (s->fd < 0) {
        char name[SEG_NAME_MAX];
        seg_name(name, no);
        rc = df->io->openat(df->io->ctx, df->dirfd, name, open_flags(df), 0);
        if (rc >= 0) {
            fd_attach(df, s, rc);
            rc = 0;
        }
    } else {
        lru_unlink(s);
        lru_push(df, s);
    }
    if (rc == 0) {
        s->pins++;
        fd_trim(df);
        *out = s;
    }
    pthread_mutex_unlock(&df->seg_mu);
    return rc;
}

/* ---- appending (append_mu held) ---- */

static void mark_dirty(struct datafile *df, struct segment *s)
{
    if (s->dirty)
        return;
    s->dirty = 1;
    s->dirty_next = df->dirty;
    df->dirty = s;
    pthread_mutex_lock(&df->seg_mu);
    s->pins++;
    pthread_mutex_unlock(&df->seg_mu);
}

/* Makes the next segment, with its header written, as the append target.
 * Its directory entry becomes durable at the next sync. */
static int seg_create(struct datafile *df)
{
    if (df->next_no > UINT32_MAX)
        return -ENOSPC;
    uint32_t no = (uint32_t)df->next_no;
    struct segment *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    /* Room in the array first: after the file exists nothing may fail but
     * the header write, which is undone. */
    if (df->nsegs == df->segs_cap) {
        size_t cap = df->segs_cap ? df->segs_cap * 2 : 16;
        struct segment **segs = realloc(df->segs, cap * sizeof *segs);
        if (!segs) {
            free(s);
            return -ENOMEM;
        }
        pthread_mutex_lock(&df->seg_mu);
        df->segs = segs;
        df->segs_cap = cap;
        pthread_mutex_unlock(&df->seg_mu);
    }
    char name[SEG_NAME_MAX];
    seg_name(name, no);
    /* O_TRUNC, not O_EXCL: a file of this number can only be one whose
     * making failed earlier in this run and could not be deleted. */
    int fd = df->io->openat(df->io->ctx, df->dirfd, name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(s);
        return fd;
    }
    uint8_t h[SEG_HEADER_BYTES];
    seg_header_encode(h, no);
    int rc = write_full(df, fd, h, sizeof h, 0);
    if (rc < 0) {
        df->io->close(df->io->ctx, fd);
        df->io->unlinkat(df->io->ctx, df->dirfd, name);
        free(s);
        return rc;
    }
    s->no = no;
    s->size = SEG_HEADER_BYTES;
    df->next_no++;
    df->dir_dirty = 1;

    struct segment *old = df->active;
    pthread_mutex_lock(&df->seg_mu);
    df->segs[df->nsegs++] = s;
    fd_attach(df, s, fd);
    s->pins = 1; /* as the append target */
    if (old)
        unpin_locked(df, old);
    else
        fd_trim(df);
    pthread_mutex_unlock(&df->seg_mu);
    df->active = s;
    mark_dirty(df, s); /* its header */
    return 0;
}

/* Appends one record (`len` bytes at `rec`) and says where it went. */
static int append_record(struct datafile *df, const uint8_t *rec, size_t len, uint32_t *seg,
                         uint64_t *off)
{
    int rc = 0;
    pthread_mutex_lock(&df->append_mu);
    struct segment *s = df->active;
    if (!s || s->sealed || s->size >= df->segment_bytes) {
        rc = seg_create(df);
        s = df->active;
    }
    /* On failure the size stays: the next record overwrites what this one
     * may have left, and after a crash it is unreferenced tail space. */
    if (rc == 0)
        rc = write_full(df, s->fd, rec, len, s->size);
    if (rc == 0) {
        *seg = s->no;
        *off = s->size;
        s->size += len;
        mark_dirty(df, s);
        df->chunks_written++;
        df->bytes_written += len;
    }
    pthread_mutex_unlock(&df->append_mu);
    return rc;
}

/* ---- opening ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment numbers in the directory, ascending. */
static int list_segments(struct datafile *df, uint32_t **nos, size_t *count)
{
    int fd = dup(df->dirfd);
    if (fd < 0)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    rewinddir(dir);
    uint32_t *list = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *entry;
    errno = 0;
    while (rc == 0 && (entry = readdir(dir)) != NULL) {
        uint32_t no;
        if (!parse_seg_name(entry->d_name, &no))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint32_t *grown = realloc(list, cap * sizeof *grown);
            if (!grown) {
                rc = -ENOMEM;
                break;
            }
            list = grown;
        }
        list[n++] = no;
    }
    if (rc == 0 && errno != 0)
        rc = -errno;
    closedir(dir);
    if (rc < 0) {
        free(list);
        return rc;
    }
    if (n)
        qsort(list, n, sizeof *list, cmp_u32);
    *nos = list;
    *count = n;
    return 0;
}

/* Checks one segment and adds it. The newest one stays open as the append
 * target while it has room. */
static int load_segment(struct datafile *df, uint32_t no, int newest)
{
    char name[SEG_NAME_MAX];
    seg_name(name, no);
    int fd = df->io->openat(df->io->ctx, df->dirfd, name, open_flags(df), 0);
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (rc == 0 && (uint64_t)st.st_size < SEG_HEADER_BYTES) {
        df->io->close(df->io->ctx, fd);
        if (!newest)
            return MINDB_ECORRUPT;
        if (df->read_only)
            return 0; /* ignored, not deleted: nothing is changed */
        rc = df->io->unlinkat(df->io->ctx, df->dirfd, name);
        df->dir_dirty = 1;
        return rc;
    }
    uint8_t h[SEG_HEADER_BYTES];
    if (rc == 0)
        rc = read_full(df, fd, h, sizeof h, 0);
    if (rc == 0)
        rc = seg_header_check(h, no);
    struct segment *s = rc == 0 ? calloc(1, sizeof *s) : NULL;
    if (rc == 0 && !s)
        rc = -ENOMEM;
    if (rc < 0) {
        df->io->close(df->io->ctx, fd);
        return rc;
    }
    s->no = no;
    s->fd = -1;
    s->size = (uint64_t)st.st_size;
    df->segs[df->nsegs++] = s;
    if (newest && !df->read_only && s->size < df->segment_bytes) {
        fd_attach(df, s, fd);
        s->pins = 1;
        df->active = s;
    } else {
        df->io->close(df->io->ctx, fd);
    }
    return 0;
}

static int load_segments(struct datafile *df)
{
    uint32_t *nos = NULL;
    size_t n = 0;
    int rc = list_segments(df, &nos, &n);
    if (rc < 0)
        return rc;
    df->segs_cap = n + 16;
    df->segs = malloc(df->segs_cap * sizeof *df->segs);
    if (!df->segs)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = load_segment(df, nos[i], i == n - 1);
    df->next_no = n ? (uint64_t)nos[n - 1] + 1 : 1;
    free(nos);
    return rc;
}

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
    df->level = options->compression_level;
    df->segment_bytes = options->segment_bytes ? options->segment_bytes : DEFAULT_SEGMENT_BYTES;
    df->next_no = 1;
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
            rc = load_segments(df);
        }
    }
    if (rc < 0) {
        datafile_close(df);
        return rc;
    }
    *out = df;
    return 0;
}

/* Does not sync: the store calls datafile_sync() first when it wants to. */
void datafile_close(struct datafile *df)
{
    if (!df)
        return;
    for (size_t i = 0; i < df->nsegs; i++) {
        if (df->segs[i]->fd >= 0)
            df->io->close(df->io->ctx, df->segs[i]->fd);
        free(df->segs[i]);
    }
    free(df->segs);
    if (df->cache)
        cache_destroy(df->cache);
    if (df->dirfd >= 0)
        df->io->close(df->io->ctx, df->dirfd);
    pthread_mutex_destroy(&df->sync_mu);
    pthread_mutex_destroy(&df->append_mu);
    pthread_mutex_destroy(&df->seg_mu);
    free(df);
}

/* ---- chunks ---- */

/* What a cached chunk must match besides its place: all a read from disk
 * checks, so that a ref is answered the same, cached or not. */
static struct cache_who cache_who(uint64_t id, uint64_t index, const struct chunk_ref *ref)
{
    return (struct cache_who){id, index, (uint64_t)ref->stored_len << 8 | ref->codec};
}

int datafile_write(struct datafile *df, uint64_t id, uint64_t index, const void *raw,
                   size_t raw_len, struct chunk_ref *ref)
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
        ZSTD_compressCCtx(t->cctx, t->rec + REC_HEADER_BYTES, MAX_STORED, raw, raw_len, df->level);
    if (!ZSTD_isError(z) && z < raw_len - raw_len / 32) {
        codec = CHUNK_ZSTD;
        stored = (uint32_t)z;
    } else {
        memcpy(t->rec + REC_HEADER_BYTES, raw, raw_len);
    }
    rec_header_encode(t->rec, codec, id, index, (uint32_t)raw_len, stored);
    uint32_t seg;
    uint64_t off;
    int rc = append_record(df, t->rec, REC_HEADER_BYTES + (size_t)stored, &seg, &off);
    if (rc < 0)
        return rc;
    ref->seg = seg;
    ref->off = off;
    ref->stored_len = stored;
    ref->raw_len = (uint32_t)raw_len;
    ref->codec = codec;
    struct cache_who who = cache_who(id, index, ref);
    cache_put(df->cache, seg, off, &who, raw, (uint32_t)raw_len);
    return 0;
}

/* Reads and checks the record of `ref` into the thread's record buffer. */
static int read_record(struct datafile *df, struct df_thread *t, uint64_t id, uint64_t index,
                       const struct chunk_ref *ref)
{
    if (!ref_plausible(ref))
        return -EIO;
    struct segment *s;
    int rc = seg_pin(df, ref->seg, &s);
    if (rc < 0)
        return rc;
    rc = read_full(df, s->fd, t->rec, REC_HEADER_BYTES + (size_t)ref->stored_len, ref->off);
    seg_unpin(df, s);
    return rc < 0 ? rc : rec_check(t->rec, id, index, ref);
}

static int decode(struct df_thread *t, const struct chunk_ref *ref, void *out)
{
    const uint8_t *payload = t->rec + REC_HEADER_BYTES;
    if (ref->codec == CHUNK_RAW) {
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
        rc = append_record(df, t->rec, REC_HEADER_BYTES + (size_t)ref->stored_len, &seg, &off);
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
        for (struct segment *s = batch; s; s = s->sync_next)
            s->sealed = 1;
        df->dir_dirty |= dir;
        df->fail_err = rc;
        __atomic_add_fetch(&df->fail_gen, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&df->append_mu);
    }
    pthread_mutex_lock(&df->seg_mu);
    for (struct segment *s = batch, *next; s; s = next) {
        next = s->sync_next;
        unpin_locked(df, s);
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

uint32_t datafile_active_segment(struct datafile *df)
{
    pthread_mutex_lock(&df->append_mu);
    uint32_t no = df->active ? df->active->no : 0;
    pthread_mutex_unlock(&df->append_mu);
    return no;
}

/* The append target cannot go (-EBUSY): compaction leaves it. Reads still
 * running on the segment keep its descriptor until they finish. */
int datafile_remove(struct datafile *df, uint32_t seg)
{
    if (df->read_only)
        return -EROFS;
    pthread_mutex_lock(&df->append_mu);
    pthread_mutex_lock(&df->seg_mu);
    struct segment *s = seg_find(df, seg);
    pthread_mutex_unlock(&df->seg_mu);
    int rc = 0;
    if (!s)
        rc = -ENOENT;
    else if (s == df->active)
        rc = -EBUSY;
    if (rc == 0) {
        char name[SEG_NAME_MAX];
        seg_name(name, seg);
        rc = df->io->unlinkat(df->io->ctx, df->dirfd, name);
    }
    if (rc == 0) {
        int unpin = s->dirty;
        if (s->dirty) {
            struct segment **p = &df->dirty;
            while (*p != s)
                p = &(*p)->dirty_next;
            *p = s->dirty_next;
            s->dirty = 0;
        }
        df->dir_dirty = 1;
        pthread_mutex_lock(&df->seg_mu);
        size_t i = 0;
        while (df->segs[i] != s)
            i++;
        memmove(&df->segs[i], &df->segs[i + 1], (df->nsegs - i - 1) * sizeof *df->segs);
        df->nsegs--;
        s->removed = 1;
        /* unpin_locked() frees it once nobody holds it: drop the pin of the
         * unsynced list, or a hold of our own taken for the purpose. */
        if (!unpin)
            s->pins++;
        unpin_locked(df, s);
        pthread_mutex_unlock(&df->seg_mu);
    }
    pthread_mutex_unlock(&df->append_mu);
    /* A read in flight may put a chunk of the segment back; it is never
     * looked up (numbers are not reused) and ages out. */
    if (rc == 0)
        cache_drop_segment(df->cache, seg);
    return rc;
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
