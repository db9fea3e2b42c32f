/*
 * fuzz_wal.c - the log's recovery and reader (wal/wal.c, wal/reader.c,
 * wal/frame.c, wal/segment.c) on arbitrary segment files, held in memory
 * (memio.h).
 *
 * Input:
 *   u8  flags: FIX_CHECKSUMS recomputes the checksum of every segment header
 *       and of every frame whose header decodes, so that the input reaches
 *       the checks behind them (salts, types, record assembly); WRITE_BACK
 *       adds the round trip below
 *   u8  where a second reader starts: the log's first position plus this
 *       many 512-byte steps
 *   u8  number of the first segment file
 *   then the segment files in order, each a 24-bit little-endian length and
 *   that many bytes (a shorter file reads as zeros up to the segment's
 *   size, as a reader sees a file cut short); length 0 leaves that segment
 *   number without a file
 *
 * Promises checked, besides no crash, leak or undefined behaviour:
 *  - opening read-only succeeds, or fails with -EUCLEAN or -ENOTSUP;
 *  - the reader returns records at growing positions from the first one
 *    on, then stops for a reason other than a read error;
 *  - a reader started later returns the same records from there on (more
 *    may follow, where the first one stopped at a segment header the second
 *    starts from);
 *  - WRITE_BACK: the log opens for writing too, takes a record, commits and
 *    closes; opened again, it shows that record last, right after the
 *    records it held, when the first reader had stopped where recovery
 *    did (where it stopped earlier, the new record lies beyond a damage the
 *    reader does not cross).
 *
 * Seeds: corpus/wal/, made by fuzz_seeds (see README).
 *
 * CI runs it for 30 s (tools/fuzz); the long form, an hour:
 *   tools/fuzz --seconds 3600 wal
 */
#include "frame.h"
#include "fuzzutil.h"
#include "memio.h"
#include "wal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define SEGMENT_BYTES ((uint64_t)64 << 10)
#define MAX_SEGMENTS 8
#define FROM_STEP 512
#define FIX_CHECKSUMS 0x1
#define WRITE_BACK 0x2

/* Records a reader returned: where, how long, and a digest of the bytes,
 * for the first MAX_SEEN of them (a log of tiny records holds more). */
#define MAX_SEEN 4096
struct seen {
    uint64_t pos[MAX_SEEN];
    uint64_t len[MAX_SEEN];
    uint64_t sum[MAX_SEEN];
    size_t n;     /* records kept above */
    size_t total; /* records returned */
    struct wal_stop stop;
};

/* Gives the segment header and every frame that decodes a right checksum,
 * walking the frames as the reader does (a frame header never starts in a
 * block's last 15 bytes) and moving to the next block at one that does
 * not decode, where a restarted writer would continue. */
static void fix_checksums(uint8_t *seg, size_t len, uint64_t segno)
{
    if (len >= WAL_SEGMENT_HEADER_BYTES)
        fz_put64(seg + 40, XXH3_64bits(seg, 40));
    uint64_t pos = WAL_BLOCK_BYTES;
    while (pos + WAL_FRAME_HEADER_BYTES <= len && pos + WAL_FRAME_HEADER_BYTES < SEGMENT_BYTES) {
        uint64_t block_left = WAL_BLOCK_BYTES - pos % WAL_BLOCK_BYTES;
        if (block_left < WAL_FRAME_HEADER_BYTES) {
            pos += block_left;
            continue;
        }
        struct frame_header h;
        size_t room = (size_t)(SEGMENT_BYTES - pos - WAL_FRAME_HEADER_BYTES);
        if (frame_decode(seg + pos, room, &h) != FRAME_DECODE_OK ||
            pos + WAL_FRAME_HEADER_BYTES + h.length > len) {
            pos += block_left;
            continue;
        }
        uint8_t *payload = seg + pos + WAL_FRAME_HEADER_BYTES;
        fz_put64(seg + pos, frame_checksum(segno * SEGMENT_BYTES + pos, seg + pos, payload,
                                           h.length, NULL, 0));
        pos += WAL_FRAME_HEADER_BYTES + h.length;
    }
}

static void options(struct wal_options *o, struct memio *m, int read_only)
{
    wal_options_init(o);
    o->ring_bytes = 64 << 10;
    o->segment_bytes = SEGMENT_BYTES;
    o->read_only = read_only;
    o->io = &m->io;
}

/* Reads every record from `from` on into `out`. */
static void read_all(wal *log, uint64_t from, struct seen *out)
{
    wal_reader *r;
    int rc = wal_reader_open(log, from, &r);
    FZ_CHECK(rc == 0, "wal_reader_open(%" PRIu64 ") == 0, got %d", from, rc);
    out->n = out->total = 0;
    uint64_t first = wal_first_pos(log), last = 0;
    const void *data;
    size_t len;
    uint64_t pos;
    while ((rc = wal_reader_next(r, &data, &len, &pos)) == 1) {
        FZ_CHECK(pos >= first && pos >= from,
                 "a record at or after the first position %" PRIu64 " and the start %" PRIu64
                 ", got one at %" PRIu64,
                 first, from, pos);
        FZ_CHECK(out->total == 0 || pos > last,
                 "records at growing positions, got %" PRIu64 " after %" PRIu64, pos, last);
        last = pos;
        out->total++;
        FZ_CHECK(len <= WAL_MAX_RECORD_BYTES, "a record of at most %zu bytes, got %zu",
                 WAL_MAX_RECORD_BYTES, len);
        if (out->n < MAX_SEEN) {
            out->pos[out->n] = pos;
            out->len[out->n] = len;
            out->sum[out->n] = XXH3_64bits(data, len);
            out->n++;
        }
    }
    FZ_CHECK(rc == 0, "the reader ends with 0, got %d", rc);
    wal_reader_stop(r, &out->stop);
    FZ_CHECK(out->stop.reason != WAL_STOP_NONE && out->stop.reason != WAL_STOP_IO,
             "a reader stopped for a reason, and not a read error (memory does not fail), "
             "got %s (error %d) at %" PRIu64,
             wal_stop_reason_name(out->stop.reason), out->stop.error, out->stop.pos);
    wal_reader_close(r);
}

/* The records of `all` at or after `from` begin `later`. */
static void check_suffix(const struct seen *all, const struct seen *later, uint64_t from)
{
    size_t i = 0;
    while (i < all->n && all->pos[i] < from)
        i++;
    for (size_t j = 0; i < all->n; i++, j++) {
        FZ_CHECK(j < later->n && later->pos[j] == all->pos[i] && later->len[j] == all->len[i] &&
                     later->sum[j] == all->sum[i],
                 "a reader from %" PRIu64 " returns record %zu (at %" PRIu64 ", %" PRIu64
                 " bytes) of the whole log as its record %zu, got %s",
                 from, i, all->pos[i], all->len[i], j,
                 j < later->n ? "another record" : "no more records");
    }
}

static const char new_record[] = "a record appended after recovery";

static void write_back(const char *dir, struct memio *m, const struct seen *before,
                       const struct wal_stop *recovered)
{
    struct wal_options o;
    options(&o, m, 0);
    wal *log;
    int rc = wal_open(dir, &o, &log);
    FZ_CHECK(rc == 0, "a log that opens read-only opens for writing, got %d (%s)", rc,
             strerror(-rc));
    struct wal_ticket t;
    rc = wal_append(log, new_record, sizeof new_record, &t);
    FZ_CHECK(rc == 0, "wal_append == 0, got %d", rc);
    rc = wal_commit(log);
    FZ_CHECK(rc == 0, "wal_commit == 0, got %d", rc);
    rc = wal_close(log);
    FZ_CHECK(rc == 0, "wal_close == 0, got %d", rc);

    options(&o, m, 1);
    rc = wal_open(dir, &o, &log);
    FZ_CHECK(rc == 0, "the log reopens after the write, got %d (%s)", rc, strerror(-rc));
    static struct seen after;
    read_all(log, wal_first_pos(log), &after);
    wal_close(log);
    if (before->stop.reason != recovered->reason || before->stop.pos != recovered->pos)
        return;
    FZ_CHECK(after.total == before->total + 1,
             "the %zu records read before and the new one, got %zu records (the reader "
             "had stopped at %" PRIu64 ": %s; now at %" PRIu64 ": %s)",
             before->total, after.total, before->stop.pos,
             wal_stop_reason_name(before->stop.reason), after.stop.pos,
             wal_stop_reason_name(after.stop.reason));
    check_suffix(before, &after, 0);
    if (after.total > MAX_SEEN)
        return;
    size_t last = after.n - 1;
    FZ_CHECK(after.len[last] == sizeof new_record &&
                 after.sum[last] == XXH3_64bits(new_record, sizeof new_record) &&
                 (before->n == 0 || after.pos[last] > before->pos[before->n - 1]),
             "the new record last, got %" PRIu64 " bytes at %" PRIu64, after.len[last],
             after.pos[last]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in = {data, size};
    unsigned flags = fz_u8(&in);
    unsigned from_steps = fz_u8(&in);
    uint64_t segno = fz_u8(&in);

    char dir[4096];
    fz_fresh_dir("wal", dir);
    int dirfd = fz_open_dir(dir);
    static struct memio m;
    memio_init(&m, dirfd);
    for (int i = 0; i < MAX_SEGMENTS && in.left > 0; i++, segno++) {
        size_t len;
        const uint8_t *bytes = fz_piece(&in, 3, &len);
        if (len == 0)
            continue;
        uint8_t *copy = malloc(len);
        FZ_CHECK(copy != NULL, "%zu bytes", len);
        memcpy(copy, bytes, len);
        if (flags & FIX_CHECKSUMS)
            fix_checksums(copy, len, segno);
        char name[64];
        snprintf(name, sizeof name, "%016" PRIx64 ".wal", segno);
        memio_add(&m, name, copy, len);
        free(copy);
    }

    struct wal_options o;
    options(&o, &m, 1);
    wal *log;
    int rc = wal_open(dir, &o, &log);
    FZ_CHECK(rc == 0 || rc == -EUCLEAN || rc == -ENOTSUP,
             "a read-only open succeeds or fails with -EUCLEAN or -ENOTSUP, got %d (%s)", rc,
             strerror(-rc));
    if (rc == 0) {
        static struct seen all, later;
        uint64_t first = wal_first_pos(log);
        read_all(log, first, &all);
        uint64_t from = first + (uint64_t)from_steps * FROM_STEP;
        read_all(log, from, &later);
        check_suffix(&all, &later, from);
        struct wal_stop recovered;
        wal_recovery(log, &recovered);
        FZ_CHECK(wal_close(log) == 0, "closing a read-only log succeeds");
        if (flags & WRITE_BACK)
            write_back(dir, &m, &all, &recovered);
    }
    memio_destroy(&m);
    close(dirfd);
    return 0;
}
