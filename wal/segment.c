/*
 * segment.c - the segment files of a log directory.
 *
 * A segment is named after its number, "%016x.wal", and is filled with zeros
 * to its full size when it is made, because overwriting blocks a file
 * already owns costs one device flush per fdatasync, while writing past the
 * end (or into unwritten extents from fallocate) also commits the
 * filesystem's journal: about half the commit latency on ext4 here.
 *
 * Released segments become "spare-%016x.wal" files, up to a limit, and are
 * renamed into the next segment's name when the writer gets there: reuse is
 * free, and the old frames in them fail their position-seeded checksums.
 */
#include "wal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZERO_FILL_BYTES ((size_t)1 << 20)

void segment_name(char name[WAL_SEGMENT_NAME_MAX], uint64_t segno)
{
    snprintf(name, WAL_SEGMENT_NAME_MAX, "%016" PRIx64 ".wal", segno);
}

static void spare_name(char name[WAL_SEGMENT_NAME_MAX], uint64_t id)
{
    snprintf(name, WAL_SEGMENT_NAME_MAX, "spare-%016" PRIx64 ".wal", id);
}

/* Parses "<16 hex digits><suffix>"; returns 1 and the number on a match. */
static int parse_name(const char *name, const char *prefix, uint64_t *value)
{
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) != 0 || strlen(name) != plen + 16 + 4 ||
        strcmp(name + plen + 16, ".wal") != 0)
        return 0;
    uint64_t v = 0;
    for (const char *p = name + plen; p < name + plen + 16; p++) {
        int digit;
        if (*p >= '0' && *p <= '9')
            digit = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            digit = *p - 'a' + 10;
        else
            return 0;
        v = v << 4 | (uint64_t)digit;
    }
    *value = v;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int push(uint64_t **array, size_t *count, size_t *cap, uint64_t value)
{
    if (*count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        uint64_t *n = realloc(*array, ncap * sizeof *n);
        if (!n)
            return -ENOMEM;
        *array = n;
        *cap = ncap;
    }
    (*array)[(*count)++] = value;
    return 0;
}

/* Lists the segment numbers in ascending order and records the spares. */
int segment_scan_dir(struct wal *w, uint64_t **segnos, size_t *count)
{
    int fd = dup(w->dirfd);
    if (fd < 0)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    rewinddir(dir);

    uint64_t *list = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *entry;
    errno = 0;
    while (rc == 0 && (entry = readdir(dir)) != NULL) {
        uint64_t value;
        if (parse_name(entry->d_name, "", &value))
            rc = push(&list, &n, &cap, value);
        else if (parse_name(entry->d_name, "spare-", &value)) {
            rc = push(&w->spares, &w->spare_count, &w->spare_cap, value);
            if (value >= w->next_spare_id)
                w->next_spare_id = value + 1;
        }
    }
    if (rc == 0 && errno != 0)
        rc = -errno;
    closedir(dir);
    if (rc < 0) {
        free(list);
        return rc;
    }
    if (n)
        qsort(list, n, sizeof *list, cmp_u64);
    *segnos = list;
    *count = n;
    return 0;
}

int segment_sync_dir(struct wal *w)
{
    return w->io->fsync(w->io->ctx, w->dirfd);
}

int segment_open_read(struct wal *w, uint64_t segno, int *fd)
{
    char name[WAL_SEGMENT_NAME_MAX];
    segment_name(name, segno);
    int rc = w->io->openat(w->io->ctx, w->dirfd, name, O_RDONLY, 0);
    if (rc < 0)
        return rc;
    *fd = rc;
    return 0;
}

/* Returns 0 with a valid header, -ENODATA where none was ever written (a
 * short file, or zeros: a new segment or spare), -EBADMSG for a damaged
 * one, -ENOTSUP for another format version. */
int segment_read_header(struct wal *w, int fd, struct segment_header *header)
{
    uint8_t buf[WAL_SEGMENT_HEADER_BYTES];
    ssize_t n = w->io->pread(w->io->ctx, fd, buf, sizeof buf, 0);
    if (n < 0)
        return (int)n;
    if ((size_t)n < sizeof buf)
        return -ENODATA;
    static const uint8_t zeros[WAL_SEGMENT_HEADER_BYTES];
    if (memcmp(buf, zeros, sizeof buf) == 0)
        return -ENODATA;
    return segment_header_decode(buf, header);
}

/* Opens for writing, with O_DIRECT when `*direct` says so; where the
 * filesystem refuses it, clears `*direct` and opens for buffered I/O. */
static int open_for_write(struct wal *w, const char *name, int flags, int *direct)
{
    if (*direct) {
        int rc = w->io->openat(w->io->ctx, w->dirfd, name, flags | O_RDWR | O_DIRECT, 0644);
        if (rc != -EINVAL)
            return rc;
        *direct = 0;
    }
    return w->io->openat(w->io->ctx, w->dirfd, name, flags | O_RDWR, 0644);
}

/* Writes zeros over a whole segment file and syncs it. Some filesystems
 * accept O_DIRECT at open and refuse it at the first write: then `*direct`
 * is cleared and the descriptor turned to buffered I/O. */
static int zero_fill(struct wal *w, int fd, int *direct)
{
    void *zeros;
    if (posix_memalign(&zeros, WAL_BLOCK_BYTES, ZERO_FILL_BYTES) != 0)
        return -ENOMEM;
    memset(zeros, 0, ZERO_FILL_BYTES);
    int rc = 0;
    for (uint64_t off = 0; rc == 0 && off < w->segment_bytes;) {
        size_t len = w->segment_bytes - off < ZERO_FILL_BYTES ? (size_t)(w->segment_bytes - off)
                                                               : ZERO_FILL_BYTES;
        ssize_t n = w->io->pwrite(w->io->ctx, fd, zeros, len, (off_t)off);
        if (n == -EINVAL && *direct) {
            *direct = 0;
            rc = w->io->clear_direct(w->io->ctx, fd);
            continue;
        }
        if (n < 0)
            rc = (int)n;
        else if (n == 0)
            rc = -EIO;
        else
            off += (uint64_t)n;
    }
    free(zeros);
    if (rc == 0)
        rc = w->io->fdatasync(w->io->ctx, fd);
    return rc;
}

/* The writer's own O_DIRECT flag, with the fallback logged once. */
static int writer_open(struct wal *w, const char *name, int flags)
{
    int was_direct = w->direct;
    int fd = open_for_write(w, name, flags, &w->direct);
    if (was_direct && !w->direct)
        wal_direct_refused(w);
    return fd;
}

/*
 * Opens segment `segno` for the writer: the file itself if it exists (the
 * writer continues in it after a restart), else a spare renamed to its name,
 * else a new zero-filled file. The directory is synced before the writer
 * puts anything in the file, so a committed frame is never in a file whose
 * name a crash can lose.
 */
int segment_open_write(struct wal *w, uint64_t segno, int *fd_out)
{
    char name[WAL_SEGMENT_NAME_MAX];
    segment_name(name, segno);

    pthread_mutex_lock(&w->seg_mu);
    int fd = writer_open(w, name, 0);
    if (fd >= 0) {
        /* It exists: the writer continues in it after a restart, or retries
         * after a failure that may have come between a rename into this
         * name and the directory sync that makes the name durable. */
        int rc = segment_sync_dir(w);
        if (rc < 0) {
            w->io->close(w->io->ctx, fd);
            fd = rc;
        }
        goto out;
    }
    if (fd != -ENOENT)
        goto out;

    if (w->spare_count > 0) {
        char spare[WAL_SEGMENT_NAME_MAX];
        spare_name(spare, w->spares[w->spare_count - 1]);
        int rc = w->io->renameat(w->io->ctx, w->dirfd, spare, name);
        if (rc == 0) {
            w->spare_count--;
            fd = writer_open(w, name, 0);
            if (fd >= 0) {
                rc = segment_sync_dir(w);
                if (rc < 0) {
                    w->io->close(w->io->ctx, fd);
                    fd = rc;
                } else {
                    pthread_mutex_lock(&w->mu);
                    w->stats.segments_reused++;
                    pthread_mutex_unlock(&w->mu);
                }
            }
            goto out;
        }
        if (rc != -ENOENT) {
            fd = rc;
            goto out;
        }
        w->spare_count--; /* someone removed it: make a new one instead */
    }

    fd = writer_open(w, name, O_CREAT | O_EXCL);
    if (fd < 0)
        goto out;
    int was_direct = w->direct;
    int rc = zero_fill(w, fd, &w->direct);
    if (was_direct && !w->direct)
        wal_direct_refused(w);
    if (rc == 0)
        rc = segment_sync_dir(w);
    if (rc < 0) {
        /* A half-made segment would only be a spare with garbage in it; but
         * a full disk is the likely cause, and its space is better freed. */
        w->io->close(w->io->ctx, fd);
        w->io->unlinkat(w->io->ctx, w->dirfd, name);
        fd = rc;
        goto out;
    }
    pthread_mutex_lock(&w->mu);
    w->stats.segments_created++;
    pthread_mutex_unlock(&w->mu);
out:
    pthread_mutex_unlock(&w->seg_mu);
    if (fd < 0)
        return fd;
    *fd_out = fd;
    return 0;
}

/* Makes a file of the directory a spare, or removes it when there are enough
 * spares. Called with seg_mu held. */
int segment_make_spare(struct wal *w, const char *name)
{
    if (w->spare_count >= w->spare_limit)
        return w->io->unlinkat(w->io->ctx, w->dirfd, name);

    char spare[WAL_SEGMENT_NAME_MAX];
    spare_name(spare, w->next_spare_id);
    int rc = push(&w->spares, &w->spare_count, &w->spare_cap, w->next_spare_id);
    if (rc < 0)
        return w->io->unlinkat(w->io->ctx, w->dirfd, name);
    rc = w->io->renameat(w->io->ctx, w->dirfd, name, spare);
    if (rc < 0) {
        w->spare_count--;
        return rc;
    }
    w->next_spare_id++;
    return 0;
}

/*
 * Makes spare files until the log has `spare_limit` of them, so that the
 * writer finds one ready when it moves to a new segment. wal_release() calls
 * this on the thread that releases space (a store's checkpoint), which keeps
 * the zero-filling of new segments out of the commit path. Spares are not
 * listed until they are complete; one left half made by a crash is still a
 * usable spare (a short file that the writer's writes extend).
 */
int segment_make_spares(struct wal *w)
{
    for (;;) {
        pthread_mutex_lock(&w->seg_mu);
        if (w->spare_count + w->spares_in_making >= w->spare_limit) {
            pthread_mutex_unlock(&w->seg_mu);
            return 0;
        }
        uint64_t id = w->next_spare_id++;
        w->spares_in_making++;
        pthread_mutex_unlock(&w->seg_mu);

        char name[WAL_SEGMENT_NAME_MAX];
        spare_name(name, id);
        int direct = w->direct_wanted;
        int fd = open_for_write(w, name, O_CREAT | O_EXCL, &direct);
        int rc = fd;
        if (fd >= 0) {
            rc = zero_fill(w, fd, &direct);
            w->io->close(w->io->ctx, fd);
            if (rc < 0)
                w->io->unlinkat(w->io->ctx, w->dirfd, name);
        }

        pthread_mutex_lock(&w->seg_mu);
        w->spares_in_making--;
        if (rc >= 0) {
            rc = push(&w->spares, &w->spare_count, &w->spare_cap, id);
            if (rc == 0) {
                pthread_mutex_lock(&w->mu);
                w->stats.segments_created++;
                pthread_mutex_unlock(&w->mu);
            }
        }
        pthread_mutex_unlock(&w->seg_mu);
        if (rc < 0)
            return rc;
    }
}
