/*
 * reader.c - reading the log back, and the scan that recovers it at open.
 *
 * The reader walks frames from the start of a segment (the only places whose
 * salt it can know: the segment header names it) and stops at the first frame
 * that is not valid: all zeros (never written), an impossible header, a
 * checksum that fails (torn, corrupt, or from an earlier use of the space),
 * or an intact frame whose salt is not the one in effect (left by a run of
 * the writer that crashed, beyond where the next run took over).
 *
 * There is one way past an invalid frame: a writer that restarts after a
 * crash continues at the next block boundary after the last valid frame, and
 * its first frame there is a BEGIN naming the salt in effect. So at an
 * invalid frame the reader looks at the next block boundary, and goes on only
 * if it finds exactly that. Nothing else is skipped.
 *
 * A frame valid by itself that breaks the records (a continuation with no
 * record open, a record's start inside another record) is an invalid frame
 * like the others: the log ends before it, where recovery has the writer
 * continue, and the reader goes past it only to that writer's BEGIN.
 * Otherwise the writer would continue after it, where no reader looks.
 */
#include "wal_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_BYTES ((size_t)1 << 20)

struct frame_cursor {
    struct wal *w;
    uint64_t pos;
    uint32_t salt;
    int fd;
    uint64_t segno;
    uint8_t *window; /* bytes of the open segment at [window_pos, +window_len) */
    size_t window_cap;
    uint64_t window_pos;
    size_t window_len;
    uint8_t *big; /* a frame that does not fit the window */
    size_t big_cap;
    uint64_t valid_end; /* just after the last valid frame */
    struct wal_stop stop;
};

struct wal_reader {
    struct frame_cursor c;
    uint64_t from;
    uint8_t *record; /* a record being put back together from its frames */
    size_t record_len;
    size_t record_cap;
    uint64_t record_pos;
    int in_record;
    int seen_record_start; /* continuation frames before it belong to a
                            * record that started before `from` */
};

const char *wal_stop_reason_name(enum wal_stop_reason reason)
{
    switch (reason) {
    case WAL_STOP_NONE:
        return "not stopped";
    case WAL_STOP_END:
        return "end of log";
    case WAL_STOP_TORN:
        return "checksum mismatch (torn or corrupt frame)";
    case WAL_STOP_BAD_HEADER:
        return "invalid frame header";
    case WAL_STOP_STALE:
        return "frame from an earlier run of the writer";
    case WAL_STOP_INCOMPLETE:
        return "record cut short";
    case WAL_STOP_IO:
        return "read error";
    }
    return "unknown";
}

static void cursor_stop(struct frame_cursor *c, enum wal_stop_reason reason, uint64_t pos,
                        int error)
{
    c->stop.reason = reason;
    c->stop.pos = pos;
    c->stop.error = error;
}

static int cursor_init(struct frame_cursor *c, struct wal *w, uint64_t segno)
{
    memset(c, 0, sizeof *c);
    c->w = w;
    c->fd = -1;
    c->pos = segno * w->segment_bytes;
    c->valid_end = c->pos;
    /* A small log's reader needs no more than a segment. */
    c->window_cap = w->segment_bytes < WINDOW_BYTES ? (size_t)w->segment_bytes : WINDOW_BYTES;
    c->window = malloc(c->window_cap);
    return c->window ? 0 : -ENOMEM;
}

static void cursor_close_fd(struct frame_cursor *c)
{
    if (c->fd >= 0)
        c->w->io->close(c->w->io->ctx, c->fd);
    c->fd = -1;
    c->window_len = 0;
}

static void cursor_destroy(struct frame_cursor *c)
{
    cursor_close_fd(c);
    free(c->window);
    free(c->big);
}

/* Opens segment `segno` and checks its header; on success the cursor stands
 * at its first frame. The salt the header names must be the one in effect,
 * unless the cursor is just starting. */
static enum wal_stop_reason enter_segment(struct frame_cursor *c, uint64_t segno, int starting,
                                          int *error)
{
    struct wal *w = c->w;
    cursor_close_fd(c);
    int fd;
    int rc = segment_open_read(w, segno, &fd);
    if (rc == -ENOENT)
        return WAL_STOP_END;
    if (rc < 0) {
        *error = rc;
        return WAL_STOP_IO;
    }
    c->fd = fd;
    c->segno = segno;

    struct segment_header h;
    rc = segment_read_header(w, fd, &h);
    if (rc == -ENODATA)
        return WAL_STOP_END; /* a new file whose header was never written */
    if (rc == -EBADMSG)
        return WAL_STOP_BAD_HEADER;
    if (rc < 0) {
        *error = rc;
        return WAL_STOP_IO;
    }
    if (h.segno != segno)
        return WAL_STOP_END; /* a reused file: the header of its earlier use */
    if (h.segment_bytes != w->segment_bytes)
        return WAL_STOP_BAD_HEADER;
    if (!starting && h.salt != c->salt)
        return WAL_STOP_STALE;
    c->salt = h.salt;
    c->pos = segno * w->segment_bytes + WAL_BLOCK_BYTES;
    if (starting)
        c->valid_end = c->pos;
    return WAL_STOP_NONE;
}

/* Makes the segment's bytes [pos, pos + len) readable at *out. Bytes past
 * the end of a short file read as zeros. */
static int cursor_bytes(struct frame_cursor *c, uint64_t pos, size_t len, const uint8_t **out)
{
    struct wal *w = c->w;
    if (pos >= c->window_pos && pos + len <= c->window_pos + c->window_len) {
        *out = c->window + (pos - c->window_pos);
        return 0;
    }
    uint64_t seg_start = c->segno * w->segment_bytes;
    uint8_t *dst;
    uint64_t start;
    size_t want;
    if (len <= c->window_cap - WAL_BLOCK_BYTES) {
        start = align_down(pos, WAL_BLOCK_BYTES);
        want = c->window_cap;
        if (want > seg_start + w->segment_bytes - start)
            want = (size_t)(seg_start + w->segment_bytes - start);
        dst = c->window;
        c->window_len = 0;
    } else {
        if (c->big_cap < len) {
            uint8_t *n = realloc(c->big, len);
            if (!n)
                return -ENOMEM;
            c->big = n;
            c->big_cap = len;
        }
        start = pos;
        want = len;
        dst = c->big;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = w->io->pread(w->io->ctx, c->fd, dst + got, want - got,
                                 (off_t)(start - seg_start + got));
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    memset(dst + got, 0, want - got);
    if (dst == c->window) {
        c->window_pos = start;
        c->window_len = want;
    }
    *out = dst + (pos - start);
    return 0;
}

/* Checks the frame at `pos` without moving the cursor. */
static enum wal_stop_reason check_frame(struct frame_cursor *c, uint64_t pos,
                                        struct frame_header *h, const uint8_t **payload,
                                        int *error)
{
    struct wal *w = c->w;
    size_t room = (size_t)(w->segment_bytes - pos % w->segment_bytes) - WAL_FRAME_HEADER_BYTES;
    const uint8_t *bytes;
    int rc = cursor_bytes(c, pos, WAL_FRAME_HEADER_BYTES, &bytes);
    if (rc < 0) {
        *error = rc;
        return WAL_STOP_IO;
    }
    uint8_t header[WAL_FRAME_HEADER_BYTES];
    memcpy(header, bytes, sizeof header);
    switch (frame_decode(header, room, h)) {
    case FRAME_DECODE_ZERO:
        return WAL_STOP_END;
    case FRAME_DECODE_BAD:
        return WAL_STOP_BAD_HEADER;
    case FRAME_DECODE_OK:
        break;
    }
    /* Header and payload are read as one piece, so the window holds both. */
    rc = cursor_bytes(c, pos, WAL_FRAME_HEADER_BYTES + h->length, &bytes);
    if (rc < 0) {
        *error = rc;
        return WAL_STOP_IO;
    }
    if (!frame_verify(h, pos, bytes, bytes + WAL_FRAME_HEADER_BYTES))
        return WAL_STOP_TORN;
    *payload = bytes + WAL_FRAME_HEADER_BYTES;
    if (h->salt == c->salt)
        return WAL_STOP_NONE;
    if (h->type == FRAME_BEGIN) {
        const uint8_t *p = *payload;
        uint32_t prev = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                        (uint32_t)p[3] << 24;
        if (prev == c->salt)
            return WAL_STOP_NONE;
    }
    return WAL_STOP_STALE;
}

/* After an invalid frame at c->pos: is there a writer's restart at the next
 * block boundary? If so the cursor moves there. */
static int find_restart(struct frame_cursor *c)
{
    struct wal *w = c->w;
    uint64_t q = align_up(c->pos, WAL_BLOCK_BYTES);
    if (q == c->pos)
        return 0;
    if (q % w->segment_bytes == 0) {
        int error = 0;
        if (enter_segment(c, q / w->segment_bytes, 0, &error) != WAL_STOP_NONE)
            return 0;
        q = c->pos;
    }
    struct frame_header h;
    const uint8_t *payload;
    int error = 0;
    if (check_frame(c, q, &h, &payload, &error) != WAL_STOP_NONE || h.type != FRAME_BEGIN)
        return 0;
    c->pos = q;
    return 1;
}

/* Returns 1 with the next valid frame, 0 once stopped. */
static int next_frame(struct frame_cursor *c, struct frame_header *h, const uint8_t **payload,
                      uint64_t *frame_pos)
{
    struct wal *w = c->w;
    while (c->stop.reason == WAL_STOP_NONE) {
        int error = 0;
        enum wal_stop_reason reason;
        if (c->pos % w->segment_bytes == 0) {
            uint64_t at = c->pos;
            reason = enter_segment(c, c->pos / w->segment_bytes, c->fd < 0, &error);
            if (reason != WAL_STOP_NONE)
                cursor_stop(c, reason, at, error);
            continue;
        }
        size_t block_left = WAL_BLOCK_BYTES - (size_t)(c->pos % WAL_BLOCK_BYTES);
        size_t segment_left = (size_t)(w->segment_bytes - c->pos % w->segment_bytes);
        if (block_left < WAL_FRAME_HEADER_BYTES || segment_left <= WAL_FRAME_HEADER_BYTES) {
            c->pos += block_left;
            continue;
        }
        reason = check_frame(c, c->pos, h, payload, &error);
        if (reason == WAL_STOP_NONE) {
            c->salt = h->salt;
            *frame_pos = c->pos;
            c->pos += WAL_FRAME_HEADER_BYTES + h->length;
            c->valid_end = c->pos;
            return 1;
        }
        uint64_t at = c->pos;
        if (reason != WAL_STOP_IO && find_restart(c))
            continue;
        cursor_stop(c, reason, at, error);
    }
    return 0;
}

/* The frame at `frame_pos`, valid by itself, does not fit the records
 * around it: it is treated as an invalid frame (see the top). Returns 1
 * when a writer's restart follows and the reader goes on there, 0 once
 * stopped for `reason` at `stop_pos`. */
static int reject_frame(struct frame_cursor *c, uint64_t frame_pos, enum wal_stop_reason reason,
                        uint64_t stop_pos)
{
    c->pos = frame_pos;
    c->valid_end = frame_pos;
    if (find_restart(c))
        return 1;
    cursor_stop(c, reason, stop_pos, 0);
    return 0;
}

static int record_append(struct wal_reader *r, const uint8_t *data, size_t len)
{
    if (len > WAL_MAX_RECORD_BYTES - r->record_len)
        return -EMSGSIZE;
    if (r->record_len + len > r->record_cap) {
        size_t cap = r->record_cap ? r->record_cap : 4096;
        while (cap < r->record_len + len)
            cap *= 2;
        uint8_t *n = realloc(r->record, cap);
        if (!n)
            return -ENOMEM;
        r->record = n;
        r->record_cap = cap;
    }
    memcpy(r->record + r->record_len, data, len);
    r->record_len += len;
    return 0;
}

static int reader_create(struct wal *w, uint64_t segno, uint64_t from, struct wal_reader **out)
{
    struct wal_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int rc = cursor_init(&r->c, w, segno);
    if (rc < 0) {
        cursor_destroy(&r->c);
        free(r);
        return rc;
    }
    r->from = from;
    *out = r;
    return 0;
}

int wal_reader_open(wal *w, uint64_t from, wal_reader **out)
{
    uint64_t first = wal_first_pos(w);
    if (from < first)
        from = first;
    return reader_create(w, from / w->segment_bytes, from, out);
}

int wal_reader_next(wal_reader *r, const void **data, size_t *len, uint64_t *pos)
{
    struct frame_header h;
    const uint8_t *payload;
    uint64_t frame_pos;
    while (next_frame(&r->c, &h, &payload, &frame_pos)) {
        int first = h.type == FRAME_FULL || h.type == FRAME_FIRST;
        if (h.type == FRAME_PAD)
            continue;
        if (h.type == FRAME_BEGIN) {
            r->in_record = 0; /* a record cut short by a crash or failed append */
            continue;
        }
        if (first && r->in_record) {
            if (!reject_frame(&r->c, frame_pos, WAL_STOP_INCOMPLETE, r->record_pos))
                break;
            r->in_record = 0; /* the restart's BEGIN ends the record anyway */
            continue;
        }
        if (!first && !r->in_record) {
            if (!r->seen_record_start)
                continue;
            if (!reject_frame(&r->c, frame_pos, WAL_STOP_BAD_HEADER, frame_pos))
                break;
            continue;
        }
        r->seen_record_start = 1;
        int keep = (first ? frame_pos : r->record_pos) >= r->from;
        if (h.type == FRAME_FULL) {
            if (!keep)
                continue;
            *data = payload;
            *len = h.length;
            *pos = frame_pos;
            return 1;
        }
        if (first) {
            r->in_record = 1;
            r->record_pos = frame_pos;
            r->record_len = 0;
        }
        if (keep) {
            int rc = record_append(r, payload, h.length);
            if (rc == -EMSGSIZE) {
                r->in_record = 0;
                if (!reject_frame(&r->c, frame_pos, WAL_STOP_BAD_HEADER, r->record_pos))
                    break;
                continue;
            }
            if (rc < 0)
                return rc;
        }
        if (h.type == FRAME_LAST) {
            r->in_record = 0;
            if (!keep)
                continue;
            *data = r->record;
            *len = r->record_len;
            *pos = r->record_pos;
            return 1;
        }
    }
    if (r->in_record && r->c.stop.reason != WAL_STOP_INCOMPLETE &&
        r->c.stop.reason != WAL_STOP_IO) {
        r->c.stop.reason = WAL_STOP_INCOMPLETE;
        r->c.stop.pos = r->record_pos;
        r->in_record = 0;
    }
    return 0;
}

void wal_reader_stop(const wal_reader *r, struct wal_stop *stop)
{
    *stop = r->c.stop;
}

void wal_reader_close(wal_reader *r)
{
    if (!r)
        return;
    cursor_destroy(&r->c);
    free(r->record);
    free(r);
}

int reader_recover_segment(struct wal *w, uint64_t segno, struct recovery_result *result)
{
    struct wal_reader *r;
    int rc = reader_create(w, segno, UINT64_MAX, &r);
    if (rc < 0)
        return rc;
    const void *data;
    size_t len;
    uint64_t pos;
    while ((rc = wal_reader_next(r, &data, &len, &pos)) > 0)
        ;
    if (rc == 0) {
        result->stop = r->c.stop;
        result->salt = r->c.salt;
        result->resume_pos = align_up(r->c.valid_end, WAL_BLOCK_BYTES);
        if (result->stop.reason == WAL_STOP_IO)
            rc = result->stop.error;
    }
    wal_reader_close(r);
    return rc;
}
