/*
 * writer.c - appending to the ring, writing it out, and group commit.
 *
 * Appenders copy frames into the ring under `mu` and return. One thread at a
 * time (the one that set io_busy) writes ring blocks to the segment files and
 * fdatasync()s them, with `mu` released so that others keep appending behind
 * it; a committer that finds its position already durable when that thread
 * finishes returns without a sync of its own. That is the whole of group
 * commit: the next leader takes everything appended while the previous sync
 * ran.
 *
 * Blocks below written_pos are never written again. A flush therefore ends
 * the block it stops in with a PAD frame, and the next frame starts in a
 * fresh block: a torn write can only hurt bytes that were never committed.
 * When the ring is full, an appender writes out only the blocks that are
 * already full, so that records stay packed back to back.
 *
 * Each run of the writer appends frames with a salt of its own and starts
 * with a BEGIN frame naming the salt before it. After a crash, blocks beyond
 * the recovered end may still hold intact frames of the crashed run; the
 * reader rejects them because their salt is not the one in effect. A BEGIN
 * also ends a record whose frames were cut short by a failed append.
 */
#include "wal_int.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

struct io_counts {
    uint64_t writes;
    uint64_t bytes;
    uint64_t syncs;
    int sync_error; /* a failed fdatasync: see write_out() */
};

static size_t ring_free(const struct wal *w)
{
    return w->ring_bytes - (size_t)(w->append_pos - w->written_pos);
}

static uint8_t *ring_at(const struct wal *w, uint64_t pos)
{
    return w->ring + pos % w->ring_bytes;
}

/* Copies into the ring at append_pos, wrapping around its end. */
static void ring_put(struct wal *w, const void *src, size_t len)
{
    size_t off = (size_t)(w->append_pos % w->ring_bytes);
    size_t first = w->ring_bytes - off < len ? w->ring_bytes - off : len;
    if (first)
        memcpy(w->ring + off, src, first);
    if (len > first)
        memcpy(w->ring, (const uint8_t *)src + first, len - first);
    w->append_pos += len;
}

/* Zero bytes up to the end of the current block, where no frame fits.
 * Never crosses a block, so never wraps. */
static void ring_skip(struct wal *w, size_t len)
{
    memset(ring_at(w, w->append_pos), 0, len);
    w->append_pos += len;
}

static uint32_t chain_salt(const struct wal *w)
{
    return w->begun ? w->salt : w->prev_salt;
}

static int write_all(struct wal *w, const uint8_t *buf, size_t len, uint64_t off,
                     struct io_counts *counts)
{
    while (len > 0) {
        ssize_t n = w->io->pwrite(w->io->ctx, w->seg_fd, buf, len, (off_t)off);
        counts->writes++;
        if (n == -EINVAL && w->direct) {
            int rc = w->io->clear_direct(w->io->ctx, w->seg_fd);
            if (rc < 0)
                return rc;
            w->direct = 0;
            wal_direct_refused(w);
            continue;
        }
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
        counts->bytes += (uint64_t)n;
    }
    return 0;
}

static int sync_segment(struct wal *w, struct io_counts *counts)
{
    if (w->seg_fd < 0 || !w->seg_unsynced)
        return 0;
    counts->syncs++;
    int rc = w->io->fdatasync(w->io->ctx, w->seg_fd);
    if (rc == 0)
        w->seg_unsynced = 0;
    else
        counts->sync_error = rc;
    return rc;
}

/* A segment's first block (its header) reaches the disk only after the
 * segment before it is durable, so that a valid header on segment n + 1
 * tells recovery that segment n is complete. */
static int switch_segment(struct wal *w, uint64_t segno, struct io_counts *counts)
{
    if (w->seg_fd >= 0) {
        int rc = sync_segment(w, counts);
        if (rc < 0)
            return rc;
        w->io->close(w->io->ctx, w->seg_fd);
        w->seg_fd = -1;
    }
    int fd;
    int rc = segment_open_write(w, segno, &fd);
    if (rc < 0)
        return rc;
    w->seg_fd = fd;
    w->seg_no = segno;
    return 0;
}

/* Writes the ring's bytes [from, to), both on block boundaries. */
static int write_range(struct wal *w, uint64_t from, uint64_t to, struct io_counts *counts)
{
    while (from < to) {
        uint64_t segno = from / w->segment_bytes;
        if (w->seg_fd < 0 || w->seg_no != segno) {
            int rc = switch_segment(w, segno, counts);
            if (rc < 0)
                return rc;
        }
        uint64_t end = (segno + 1) * w->segment_bytes;
        if (end > to)
            end = to;
        size_t ring_off = (size_t)(from % w->ring_bytes);
        size_t len = (size_t)(end - from);
        if (len > w->ring_bytes - ring_off)
            len = w->ring_bytes - ring_off;
        /* A segment's header is written alone and made durable before any
         * frame behind it: the device may keep the blocks of one write in
         * any order, and a crash that kept a frame but not the header would
         * leave what recovery must take for damage. One more fdatasync per
         * segment. */
        uint64_t seg_off = from - segno * w->segment_bytes;
        if (seg_off == 0)
            len = WAL_BLOCK_BYTES;
        w->seg_unsynced = 1;
        int rc = write_all(w, w->ring + ring_off, len, seg_off, counts);
        if (rc == 0 && seg_off == 0)
            rc = sync_segment(w, counts);
        if (rc < 0)
            return rc;
        from += len;
    }
    return 0;
}

/*
 * Writes the ring out up to `to` (a block boundary) and, with `sync`,
 * fdatasync()s it. Called with mu held and io_busy clear; releases mu while
 * it does I/O. On failure nothing moves: the bytes stay in the ring and the
 * next call writes them again, which is safe because none of them was
 * committed.
 */
static int write_out(struct wal *w, uint64_t to, int sync)
{
    struct io_counts counts = {0};
    uint64_t from = w->written_pos;
    /* Every record appended after a sync before this moment had its
     * other bytes written before its append, so one before_write() now
     * covers them all. */
    uint64_t cover = w->sync_before_end;
    int before = cover > w->sync_covered_end && cover > from;
    w->io_busy = 1;
    pthread_mutex_unlock(&w->mu);

    int rc = before ? w->before_write(w->before_write_ctx) : 0;
    if (rc == 0)
        rc = write_range(w, from, to, &counts);
    if (rc == 0 && sync)
        rc = sync_segment(w, &counts);

    pthread_mutex_lock(&w->mu);
    if (rc == 0) {
        w->written_pos = to;
        if (sync)
            w->durable_pos = to;
        if (before && cover > w->sync_covered_end)
            w->sync_covered_end = cover;
    }
    /* A failed fdatasync, the commit's own or the one that closes a full
     * segment, is final: the kernel may have dropped the dirty pages it
     * could not write, and a later sync would succeed without them. */
    if (counts.sync_error < 0 && !w->failed)
        w->failed = counts.sync_error;
    w->stats.writes += counts.writes;
    w->stats.bytes_written += counts.bytes;
    w->stats.syncs += counts.syncs;
    w->stats.direct_io = w->direct;
    w->io_busy = 0;
    pthread_cond_broadcast(&w->io_done);
    return rc;
}

/* Makes progress towards `need` free bytes in the ring: waits for the thread
 * doing I/O, or writes out the full blocks itself. The caller re-checks. */
static int make_room(struct wal *w, size_t need)
{
    if (ring_free(w) >= need)
        return 0;
    if (w->failed)
        return w->failed;
    if (w->io_busy) {
        pthread_cond_wait(&w->io_done, &w->mu);
        return 0;
    }
    return write_out(w, align_down(w->append_pos, WAL_BLOCK_BYTES), 0);
}

static void put_frame(struct wal *w, enum frame_type type, uint32_t salt, const void *payload,
                      size_t len)
{
    uint8_t header[WAL_FRAME_HEADER_BYTES];
    frame_encode(header, w->append_pos, type, salt, payload, len, NULL, 0);
    ring_put(w, header, sizeof header);
    ring_put(w, payload, len);
    w->stats.frames++;
}

/*
 * Moves append_pos to where a frame can start: past a block's last bytes,
 * where a header does not fit, past a segment's last 16 bytes, where no
 * payload would, and past a segment's header, which it puts in the ring.
 * Returns with at least `need` free ring bytes. May release mu; everything is
 * re-checked after that.
 */
static int place_frame(struct wal *w, size_t need)
{
    for (;;) {
        if (w->append_pos % w->segment_bytes == 0) {
            if (ring_free(w) < WAL_BLOCK_BYTES) {
                int rc = make_room(w, WAL_BLOCK_BYTES);
                if (rc < 0)
                    return rc;
                continue;
            }
            uint8_t header[WAL_SEGMENT_HEADER_BYTES];
            struct segment_header h = {
                .segment_bytes = w->segment_bytes,
                .segno = w->append_pos / w->segment_bytes,
                .salt = chain_salt(w),
            };
            segment_header_encode(header, &h);
            uint8_t *block = ring_at(w, w->append_pos);
            memset(block, 0, WAL_BLOCK_BYTES);
            memcpy(block, header, sizeof header);
            w->append_pos += WAL_BLOCK_BYTES;
            continue;
        }
        size_t block_left = WAL_BLOCK_BYTES - (size_t)(w->append_pos % WAL_BLOCK_BYTES);
        size_t segment_left = (size_t)(w->segment_bytes - w->append_pos % w->segment_bytes);
        if (block_left < WAL_FRAME_HEADER_BYTES || segment_left <= WAL_FRAME_HEADER_BYTES) {
            if (ring_free(w) < block_left) {
                int rc = make_room(w, block_left);
                if (rc < 0)
                    return rc;
                continue;
            }
            ring_skip(w, block_left);
            w->stats.bytes_padded += block_left;
            continue;
        }
        if (ring_free(w) < need) {
            int rc = make_room(w, need);
            if (rc < 0)
                return rc;
            continue;
        }
        return 0;
    }
}

/* A BEGIN frame: the first of a run, naming the salt before it, and the end
 * of a record that a failed append cut short. */
static int append_begin(struct wal *w)
{
    uint8_t payload[WAL_BEGIN_PAYLOAD_BYTES] = {0};
    uint32_t prev = chain_salt(w);
    for (int i = 0; i < 4; i++)
        payload[i] = (uint8_t)(prev >> (8 * i));
    int rc = place_frame(w, WAL_FRAME_HEADER_BYTES + sizeof payload);
    if (rc < 0)
        return rc;
    put_frame(w, FRAME_BEGIN, w->salt, payload, sizeof payload);
    w->begun = 1;
    w->record_cut = 0;
    return 0;
}

static enum frame_type fragment_type(int first, int last)
{
    if (first)
        return last ? FRAME_FULL : FRAME_FIRST;
    return last ? FRAME_LAST : FRAME_MIDDLE;
}

static int append(wal *w, const void *data, size_t len, struct wal_ticket *ticket,
                  int after_sync);

int wal_append(wal *w, const void *data, size_t len, struct wal_ticket *ticket)
{
    return append(w, data, len, ticket, 0);
}

int wal_append_after_sync(wal *w, const void *data, size_t len, struct wal_ticket *ticket)
{
    if (!w->before_write)
        return -EINVAL;
    return append(w, data, len, ticket, 1);
}

static int append(wal *w, const void *data, size_t len, struct wal_ticket *ticket,
                  int after_sync)
{
    if (w->read_only)
        return -EROFS;
    if (len > WAL_MAX_RECORD_BYTES)
        return -EMSGSIZE;

    pthread_mutex_lock(&w->append_mu);
    pthread_mutex_lock(&w->mu);
    int rc = w->failed;
    if (rc == 0 && (!w->begun || w->record_cut))
        rc = append_begin(w);

    /* An empty record may come as NULL, which takes no offset, not even 0. */
    const uint8_t *p = len ? data : (const uint8_t *)"";
    size_t done = 0;
    uint64_t start = 0;
    while (rc == 0) {
        size_t want = len - done < w->max_frame_payload ? len - done : w->max_frame_payload;
        rc = place_frame(w, WAL_FRAME_HEADER_BYTES + want);
        if (rc < 0)
            break;
        /* place_frame left room for the header and at least one byte. */
        size_t room = (size_t)(w->segment_bytes - w->append_pos % w->segment_bytes) -
                      WAL_FRAME_HEADER_BYTES;
        size_t frag = want < room ? want : room;
        if (done == 0)
            start = w->append_pos;
        put_frame(w, fragment_type(done == 0, done + frag == len), w->salt, p + done, frag);
        done += frag;
        if (done == len)
            break;
    }
    /* Even a record cut short: its first frames may be in the ring. */
    if (after_sync && done > 0)
        w->sync_before_end = w->append_pos;
    if (rc < 0 && done > 0)
        w->record_cut = 1;
    if (rc == 0) {
        w->stats.appends++;
        w->stats.bytes_appended += len;
        if (ticket) {
            ticket->pos = start;
            ticket->end = w->append_pos;
        }
    }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_unlock(&w->append_mu);
    return rc;
}

/* Ends the current block with a PAD frame (or zeros, where no header fits)
 * so that a flush leaves no block half written. Room for it is always there:
 * written_pos and the ring size are on block boundaries. */
static void pad_block(struct wal *w)
{
    size_t used = (size_t)(w->append_pos % WAL_BLOCK_BYTES);
    if (used == 0)
        return;
    size_t left = WAL_BLOCK_BYTES - used;
    w->stats.bytes_padded += left;
    if (left < WAL_FRAME_HEADER_BYTES) {
        ring_skip(w, left);
        return;
    }
    uint8_t *frame = ring_at(w, w->append_pos);
    size_t payload = left - WAL_FRAME_HEADER_BYTES;
    memset(frame + WAL_FRAME_HEADER_BYTES, 0, payload);
    frame_encode(frame, w->append_pos, FRAME_PAD, chain_salt(w), frame + WAL_FRAME_HEADER_BYTES,
                 payload, NULL, 0);
    w->append_pos += left;
    w->stats.frames++;
}

/* Writes out (and with `sync`, makes durable) everything up to `target`,
 * sharing the work of a thread already doing it. Called with mu held. */
static int flush_to(struct wal *w, uint64_t target, int sync, int *did_io)
{
    int yields = 0;
    for (;;) {
        if (w->failed)
            return w->failed;
        uint64_t done = sync ? w->durable_pos : w->written_pos;
        if (done >= target)
            return 0;
        if (w->io_busy) {
            pthread_cond_wait(&w->io_done, &w->mu);
            continue;
        }
        /* Committers covered by the last sync return, append their next
         * record and commit again, all within microseconds; a leader that
         * syncs before they are back covers only itself. So while fewer are
         * committing than the last sync covered, give them the CPU first. */
        if (sync && yields < 8 && w->committing < w->last_batch) {
            yields++;
            pthread_mutex_unlock(&w->mu);
            sched_yield();
            pthread_mutex_lock(&w->mu);
            continue;
        }
        if (sync)
            w->last_batch = w->committing;
        uint64_t to = w->written_pos;
        if (to < target) {
            pad_block(w);
            to = w->append_pos;
        }
        *did_io = 1;
        int rc = write_out(w, to, sync);
        if (rc < 0)
            return rc;
    }
}

int wal_commit_to(wal *w, uint64_t pos)
{
    if (w->read_only)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->stats.commits++;
    w->committing++;
    if (pos > w->append_pos)
        pos = w->append_pos;
    int did_io = 0;
    int rc = flush_to(w, pos, 1, &did_io);
    if (rc == 0 && !did_io)
        w->stats.commits_shared++;
    w->committing--;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int wal_commit(wal *w)
{
    return wal_commit_to(w, UINT64_MAX);
}

int wal_flush(wal *w)
{
    if (w->read_only)
        return 0;
    pthread_mutex_lock(&w->mu);
    int did_io = 0;
    int rc = flush_to(w, w->append_pos, 0, &did_io);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int wal_sync(wal *w)
{
    if (w->read_only)
        return 0;
    pthread_mutex_lock(&w->mu);
    int did_io = 0;
    int rc = flush_to(w, w->written_pos, 1, &did_io);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Closes the segment the writer had open; called once no thread does I/O. */
void writer_close_segment(struct wal *w)
{
    if (w->seg_fd >= 0) {
        w->io->close(w->io->ctx, w->seg_fd);
        w->seg_fd = -1;
    }
}
