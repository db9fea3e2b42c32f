/*
 * wal.c - opening (with recovery), closing and releasing a log.
 *
 * Opening finds the last segment whose header is valid, scans it to the
 * last valid frame, and sets the writer at the next block boundary, so that
 * no block that may hold a committed frame is written again. The new run
 * draws a fresh salt; its BEGIN frame is appended with its first record, so
 * a run that appends nothing writes nothing.
 */
#include "wal_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_RING_BYTES ((size_t)4 << 20)
#define DEFAULT_SEGMENT_BYTES ((uint64_t)64 << 20)
#define MIN_RING_BYTES ((size_t)64 << 10)
#define MIN_SEGMENT_BYTES ((uint64_t)16 * WAL_BLOCK_BYTES)

void wal_options_init(struct wal_options *o)
{
    memset(o, 0, sizeof *o);
    o->ring_bytes = DEFAULT_RING_BYTES;
    o->segment_bytes = DEFAULT_SEGMENT_BYTES;
    o->direct_io = 1;
    o->spare_segments = 2;
}

void wal_log(struct wal *w, const char *fmt, ...)
{
    if (!w->log_fn)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    w->log_fn(w->log_ctx, line);
}

void wal_direct_refused(struct wal *w)
{
    if (w->warned_direct)
        return;
    w->warned_direct = 1;
    wal_log(w, "wal: O_DIRECT refused by the filesystem; using buffered writes with fdatasync");
}

static uint32_t new_salt(uint32_t differs_from)
{
    uint32_t salt = differs_from;
    while (salt == differs_from) {
        if (getrandom(&salt, sizeof salt, 0) != sizeof salt) {
            /* No entropy source: the time and pid still differ between runs. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            salt =
                (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 2654435761u ^ (uint32_t)getpid() << 16;
        }
    }
    return salt;
}

static int check_options(const struct wal_options *o)
{
    if (o->ring_bytes < MIN_RING_BYTES || o->ring_bytes % WAL_BLOCK_BYTES != 0)
        return -EINVAL;
    if (o->segment_bytes < MIN_SEGMENT_BYTES || o->segment_bytes % WAL_BLOCK_BYTES != 0)
        return -EINVAL;
    return 0;
}

static void wal_free(struct wal *w)
{
    writer_close_segment(w);
    if (w->dirfd >= 0)
        close(w->dirfd); /* also drops the lock */
    pthread_mutex_destroy(&w->append_mu);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->seg_mu);
    pthread_cond_destroy(&w->io_done);
    free(w->spares);
    free(w->ring);
    free(w);
}

static int open_dir(struct wal *w, const char *dir, const struct wal_options *o)
{
    if (o->create && !o->read_only && mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0)
        return -errno;
    /* One writer per log; readers share. */
    if (flock(w->dirfd, (o->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
        return errno == EWOULDBLOCK ? -EBUSY : -errno;
    return 0;
}

/* Segments above the last valid one had their header never written: the
 * writer renamed a spare or made a file and crashed before using it. */
static int demote_unused(struct wal *w, const uint64_t *segnos, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char name[WAL_SEGMENT_NAME_MAX];
        segment_name(name, segnos[i]);
        int rc = segment_make_spare(w, name);
        if (rc < 0)
            return rc;
    }
    return count ? segment_sync_dir(w) : 0;
}

/* Whether the first frame of segment `segno` is intact: only the writer of
 * that segment can have put it there, since its checksum is seeded with its
 * position. Read errors and memory shortage count as no. */
static int holds_first_frame(struct wal *w, int fd, uint64_t segno)
{
    uint8_t header[WAL_FRAME_HEADER_BYTES];
    uint64_t pos = segno * w->segment_bytes + WAL_BLOCK_BYTES;
    size_t room = (size_t)(w->segment_bytes - WAL_BLOCK_BYTES - WAL_FRAME_HEADER_BYTES);
    struct frame_header h;
    if (w->io->pread(w->io->ctx, fd, header, sizeof header, WAL_BLOCK_BYTES) !=
            (ssize_t)sizeof header ||
        frame_decode(header, room, &h) != FRAME_DECODE_OK)
        return 0;
    uint8_t *payload = malloc(h.length ? h.length : 1);
    int intact = payload &&
                 w->io->pread(w->io->ctx, fd, payload, h.length,
                              WAL_BLOCK_BYTES + WAL_FRAME_HEADER_BYTES) == (ssize_t)h.length &&
                 frame_verify(&h, pos, header, payload);
    free(payload);
    return intact;
}

/* Checks one segment's header; returns 1 if it is a valid header for it,
 * 0 if the file was never used as this segment (no header yet, or the header
 * of its use before it became a spare). A damaged header is an error: the
 * segment may hold committed records, and they are not to be written over.
 * The first valid header fixes the log's segment size: a log keeps the size
 * it was created with, whatever the options say now. */
static int header_valid(struct wal *w, uint64_t segno, int *size_known, int *error)
{
    int fd;
    int rc = segment_open_read(w, segno, &fd);
    if (rc < 0) {
        *error = rc;
        return 0;
    }
    struct segment_header h;
    rc = segment_read_header(w, fd, &h);
    if (rc == -ENODATA && holds_first_frame(w, fd, segno))
        rc = -EBADMSG; /* records, but the header that goes with them is gone */
    w->io->close(w->io->ctx, fd);
    if (rc == -ENODATA || (rc == 0 && h.segno != segno))
        return 0;
    if (rc == -EBADMSG) {
        char name[WAL_SEGMENT_NAME_MAX];
        segment_name(name, segno);
        wal_log(w, "wal: segment %s has a damaged header", name);
        rc = -EUCLEAN;
    }
    if (rc < 0) {
        *error = rc;
        return 0;
    }
    if (!*size_known) {
        w->segment_bytes = h.segment_bytes;
        *size_known = 1;
    } else if (w->segment_bytes != h.segment_bytes) {
        *error = -EUCLEAN;
        return 0;
    }
    return 1;
}

static int sync_segment_file(struct wal *w, uint64_t segno)
{
    int fd;
    char name[WAL_SEGMENT_NAME_MAX];
    segment_name(name, segno);
    int rc = w->io->openat(w->io->ctx, w->dirfd, name, O_RDWR, 0);
    if (rc < 0)
        return rc;
    fd = rc;
    rc = w->io->fdatasync(w->io->ctx, fd);
    w->io->close(w->io->ctx, fd);
    return rc;
}

static int recover(struct wal *w, const struct wal_options *o)
{
    uint64_t *segnos = NULL;
    size_t count = 0;
    int rc = segment_scan_dir(w, &segnos, &count);
    if (rc < 0)
        return rc;

    /* The last segment with a valid header holds the end of the log. */
    size_t last = count;
    int size_known = 0;
    for (size_t i = count; i-- > 0;) {
        int error = 0;
        if (header_valid(w, segnos[i], &size_known, &error)) {
            last = i;
            break;
        }
        if (error) {
            rc = error;
            goto out;
        }
    }
    if (last == count) {
        /* A new log (an empty directory: segments are made on first use),
         * or one whose first segment never got its header. */
        if (!o->read_only && (rc = demote_unused(w, segnos, count)) < 0)
            goto out;
        w->first_segno = 0;
        w->salt = new_salt(0);
        w->prev_salt = w->salt;
        w->begun = 1; /* nothing before it to chain from */
        w->recovery.reason = WAL_STOP_END;
        goto out;
    }
    for (size_t i = 0; i < last; i++) {
        int error = 0;
        if (segnos[i] != segnos[0] + i || !header_valid(w, segnos[i], &size_known, &error)) {
            rc = error ? error : -EUCLEAN;
            goto out;
        }
    }
    if (segnos[last] != segnos[0] + last) {
        rc = -EUCLEAN;
        goto out;
    }
    if (!o->read_only && (rc = demote_unused(w, segnos + last + 1, count - last - 1)) < 0)
        goto out;

    struct recovery_result result;
    rc = reader_recover_segment(w, segnos[last], &result);
    if (rc < 0)
        goto out;
    w->recovery = result.stop;
    w->first_segno = segnos[0];
    w->append_pos = w->written_pos = w->durable_pos = result.resume_pos;
    w->prev_salt = result.salt;
    w->salt = new_salt(result.salt);
    if (result.stop.reason != WAL_STOP_END)
        wal_log(w, "wal: log ends at position %llu: %s", (unsigned long long)result.stop.pos,
                wal_stop_reason_name(result.stop.reason));
    /* What the scan read may sit in a device cache after a crash of the
     * process: make it durable before anything is built on it. */
    if (!o->read_only)
        rc = sync_segment_file(w, segnos[last]);
out:
    w->first_pos = w->first_segno * w->segment_bytes;
    if (w->append_pos < w->first_pos)
        w->append_pos = w->written_pos = w->durable_pos = w->first_pos;
    free(segnos);
    return rc;
}

int wal_open(const char *dir, const struct wal_options *options, wal **out)
{
    struct wal_options defaults;
    if (!options) {
        wal_options_init(&defaults);
        options = &defaults;
    }
    int rc = check_options(options);
    if (rc < 0)
        return rc;

    struct wal *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->dirfd = -1;
    w->seg_fd = -1;
    w->io = options->io ? options->io : &wal_posix_io;
    w->read_only = options->read_only;
    w->segment_bytes = options->segment_bytes;
    w->ring_bytes = options->ring_bytes;
    w->spare_limit = options->spare_segments;
    w->log_fn = options->log;
    w->log_ctx = options->log_ctx;
    w->before_write = options->before_write;
    w->before_write_ctx = options->before_write_ctx;
    w->direct = w->direct_wanted = options->direct_io;
    pthread_mutex_init(&w->append_mu, NULL);
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->seg_mu, NULL);
    pthread_cond_init(&w->io_done, NULL);

    w->max_frame_payload = w->ring_bytes / 4 - WAL_FRAME_HEADER_BYTES;
    if (w->max_frame_payload > WAL_FRAME_MAX_PAYLOAD)
        w->max_frame_payload = WAL_FRAME_MAX_PAYLOAD;

    if (posix_memalign((void **)&w->ring, WAL_BLOCK_BYTES, w->ring_bytes) != 0) {
        w->ring = NULL;
        rc = -ENOMEM;
    }
    if (rc == 0)
        rc = open_dir(w, dir, options);
    if (rc == 0)
        rc = recover(w, options);
    if (rc < 0) {
        wal_free(w);
        return rc;
    }
    w->stats.segment_bytes = w->segment_bytes;
    w->stats.direct_io = w->direct;
    *out = w;
    return 0;
}

/* Zeroes the block where the next frame would go, so the next open reads a
 * clean end there. Without it, a reused segment shows the frames of its
 * earlier use after the last valid one, which a reader cannot tell from a
 * crash: every clean close of a log that had wrapped would be reported as a
 * torn tail. Nothing valid lies at or after written_pos, and the next writer
 * starts there. */
static int mark_clean_end(struct wal *w)
{
    uint64_t off = w->written_pos % w->segment_bytes;
    if (off == 0)
        return 0; /* the next segment is new or carries an older number */
    char name[WAL_SEGMENT_NAME_MAX];
    segment_name(name, w->written_pos / w->segment_bytes);
    int fd = w->io->openat(w->io->ctx, w->dirfd, name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return fd == -ENOENT ? 0 : fd;
    static const uint8_t zeros[WAL_BLOCK_BYTES];
    ssize_t n = w->io->pwrite(w->io->ctx, fd, zeros, sizeof zeros, (off_t)off);
    int rc = n == (ssize_t)sizeof zeros ? 0 : n < 0 ? (int)n : -EIO;
    if (rc == 0)
        rc = w->io->fdatasync(w->io->ctx, fd);
    w->io->close(w->io->ctx, fd);
    return rc;
}

int wal_close(wal *w)
{
    if (!w)
        return 0;
    int rc = w->read_only ? 0 : wal_commit(w);
    /* A run that appended nothing leaves the end as recovery found it, for
     * the next open to find the same: a store that refuses to open after
     * its log's recovery writes nothing into the log. */
    if (rc == 0 && !w->read_only && w->begun)
        rc = mark_clean_end(w);
    wal_free(w);
    return rc;
}

uint64_t wal_durable_pos(wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t pos = w->durable_pos;
    pthread_mutex_unlock(&w->mu);
    return pos;
}

uint64_t wal_append_pos(wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t pos = w->append_pos;
    pthread_mutex_unlock(&w->mu);
    return pos;
}

uint64_t wal_first_pos(wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t pos = w->first_pos;
    pthread_mutex_unlock(&w->mu);
    return pos;
}

void wal_recovery(wal *w, struct wal_stop *stop)
{
    *stop = w->recovery;
}

void wal_stats(wal *w, struct wal_stats *stats)
{
    pthread_mutex_lock(&w->mu);
    *stats = w->stats;
    pthread_mutex_unlock(&w->mu);
}

int wal_release(wal *w, uint64_t pos)
{
    if (w->read_only)
        return -EROFS;
    pthread_mutex_lock(&w->mu);
    uint64_t durable = w->durable_pos;
    /* The segment of the last durable byte stays, even when all of it is
     * released: its header is what tells recovery where the log is. When
     * the log ends on a segment boundary, the segment the append position
     * names does not exist yet, and the one before it must stay. */
    uint64_t keep = durable > 0 ? (durable - 1) / w->segment_bytes : 0;
    pthread_mutex_unlock(&w->mu);
    if (pos > durable)
        return -EINVAL;

    pthread_mutex_lock(&w->seg_mu);
    int rc = 0, retired = 0;
    while (w->first_segno < keep && (w->first_segno + 1) * w->segment_bytes <= pos) {
        char name[WAL_SEGMENT_NAME_MAX];
        segment_name(name, w->first_segno);
        rc = segment_make_spare(w, name);
        if (rc < 0)
            break;
        w->first_segno++;
        retired = 1;
    }
    if (retired) {
        /* The new first segment must be in place before the old one is gone
         * for good: a crash now leaves the log starting at first_segno. */
        int sync_rc = segment_sync_dir(w);
        if (rc == 0)
            rc = sync_rc;
    }
    uint64_t first = w->first_segno * w->segment_bytes;
    pthread_mutex_unlock(&w->seg_mu);

    pthread_mutex_lock(&w->mu);
    w->first_pos = first;
    pthread_mutex_unlock(&w->mu);
    if (rc < 0)
        return rc;

    /* Spares made now are segments the commit path will not have to make.
     * Failing to make one is no failure of the release: the writer makes
     * its segment itself when it needs it, and reports what goes wrong. */
    int spare_rc = segment_make_spares(w);
    if (spare_rc < 0)
        wal_log(w, "wal: could not prepare a spare segment: %s", strerror(-spare_rc));
    return 0;
}
