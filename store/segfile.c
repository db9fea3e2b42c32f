/*
 * segfile.c - the files of the data segments: their names, their header,
 * the descriptors kept open, making a segment, finding them all at open and
 * deleting one. What follows the header, the chunk records, is datafile.c's.
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
 * without one. Any other failure is MINDB_ECORRUPT, except on the newest
 * segment when it is shorter than its header or its header is all zeros: a
 * crash while it was being made, before the header reached the disk (some
 * filesystems keep a file's size but not its data). Such a segment holds
 * nothing anything durable refers to, since a chunk is named durably only
 * after datafile_sync() fdatasynced its segment, header included; it is
 * deleted (a read-only open ignores it) and counted in segments_discarded.
 *
 * Descriptors. A segment's file is opened (O_RDWR, O_RDONLY when read-only)
 * when first needed and kept open; at most MAX_OPEN_FDS are kept, the least
 * recently used one is closed when another is needed. A descriptor is
 * "pinned" while it is in use: by a read in flight, by the append target,
 * and by a segment with unsynced writes (closing it could lose an fdatasync
 * error). Pinned ones are never closed.
 */
#include "segfile.h"
#include "mindb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define SEG_VERSION 1
#define SEG_NAME_MAX 16
#define MAX_OPEN_FDS 64

static const char seg_magic[8] = {'M', 'I', 'N', 'D', 'B', 'S', 'E', 'G'};

/* ---- the header ---- */

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

int segfile_write_full(struct datafile *df, int fd, const void *buf, size_t len, uint64_t off)
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

int segfile_read_full(struct datafile *df, int fd, void *buf, size_t len, uint64_t off)
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

void segfile_unpin_locked(struct datafile *df, struct segment *s)
{
    if (--s->pins == 0 && s->removed) {
        if (s->fd >= 0)
            fd_close(df, s);
        free(s);
    } else {
        fd_trim(df);
    }
}

void segfile_unpin(struct datafile *df, struct segment *s)
{
    pthread_mutex_lock(&df->seg_mu);
    segfile_unpin_locked(df, s);
    pthread_mutex_unlock(&df->seg_mu);
}

/* Pins segment `no` with its descriptor open. A segment that does not exist
 * is -EIO: whatever refers to it is damaged. */
int segfile_pin(struct datafile *df, uint32_t no, struct segment **out)
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

void segfile_mark_dirty(struct datafile *df, struct segment *s)
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
int segfile_create(struct datafile *df)
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
        /* Not realloc: readers look the array up under seg_mu only, and
         * realloc would free the old one before it is swapped under it. */
        size_t cap = df->segs_cap ? df->segs_cap * 2 : 16;
        struct segment **segs = malloc(cap * sizeof *segs);
        if (!segs) {
            free(s);
            return -ENOMEM;
        }
        pthread_mutex_lock(&df->seg_mu);
        struct segment **old = df->segs;
        if (df->nsegs)
            memcpy(segs, old, df->nsegs * sizeof *segs);
        df->segs = segs;
        df->segs_cap = cap;
        pthread_mutex_unlock(&df->seg_mu);
        free(old);
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
    int rc = segfile_write_full(df, fd, h, sizeof h, 0);
    /* The header and the file's name are made durable now, before any chunk
     * goes in: a later failed sync may lose chunks (nothing durable names
     * them yet), but never leaves a segment without its header, which would
     * keep the store from opening. One sync per segment (64 MiB). */
    if (rc == 0)
        rc = df->io->fdatasync(df->io->ctx, fd);
    if (rc == 0)
        rc = df->io->fsync(df->io->ctx, df->dirfd);
    if (rc == 0)
        __atomic_add_fetch(&df->fdatasyncs, 2, __ATOMIC_RELAXED);
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
        segfile_unpin_locked(df, old);
    else
        fd_trim(df);
    pthread_mutex_unlock(&df->seg_mu);
    df->active = s;
    segfile_mark_dirty(df, s); /* its header */
    return 0;
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

static int all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
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
    uint8_t h[SEG_HEADER_BYTES];
    int unmade = 0; /* its making never reached the disk: see the top */
    if (rc == 0 && (uint64_t)st.st_size < SEG_HEADER_BYTES) {
        unmade = 1;
    } else if (rc == 0) {
        rc = segfile_read_full(df, fd, h, sizeof h, 0);
        unmade = rc == 0 && all_zero(h, sizeof h);
    }
    if (unmade) {
        df->io->close(df->io->ctx, fd);
        if (!newest)
            return MINDB_ECORRUPT;
        if (df->read_only) {
            df->segments_discarded++;
            return 0; /* ignored, not deleted: nothing is changed */
        }
        rc = df->io->unlinkat(df->io->ctx, df->dirfd, name);
        df->dir_dirty = 1;
        if (rc == 0)
            df->segments_discarded++;
        return rc;
    }
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

/* A segment the store cannot open with, named for the person who must look. */
static void log_refused(struct datafile *df, uint32_t no, int rc)
{
    if (!df->log)
        return;
    char name[SEG_NAME_MAX], line[128];
    seg_name(name, no);
    snprintf(line, sizeof(line), "data segment %s: %s", name,
             rc == MINDB_ECORRUPT   ? "damaged header, or too short for one"
             : rc == MINDB_EVERSION ? "written by a newer format version"
                                    : strerror(-rc));
    df->log(df->log_ctx, line);
}

int segfile_load(struct datafile *df)
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
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = load_segment(df, nos[i], i == n - 1);
        if (rc < 0)
            log_refused(df, nos[i], rc);
    }
    df->next_no = n ? (uint64_t)nos[n - 1] + 1 : 1;
    free(nos);
    return rc;
}

void segfile_unload(struct datafile *df)
{
    for (size_t i = 0; i < df->nsegs; i++) {
        if (df->segs[i]->fd >= 0)
            df->io->close(df->io->ctx, df->segs[i]->fd);
        free(df->segs[i]);
    }
    free(df->segs);
}

/* ---- deleting ---- */

/* Reads still running on the segment keep its descriptor until they
 * finish. */
int segfile_remove(struct datafile *df, uint32_t seg)
{
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
        /* segfile_unpin_locked() frees it once nobody holds it: drop the pin
         * of the unsynced list, or a hold of our own taken for the purpose. */
        if (!unpin)
            s->pins++;
        segfile_unpin_locked(df, s);
        pthread_mutex_unlock(&df->seg_mu);
    }
    pthread_mutex_unlock(&df->append_mu);
    return rc;
}
