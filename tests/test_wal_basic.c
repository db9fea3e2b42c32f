/*
 * test_wal_basic.c - the log's everyday life: append, commit, close, reopen
 * and read back; records of awkward sizes and larger than the ring or a
 * segment; ring wrap-around; flush without sync; positions and stats;
 * records that need the before_write hook first; readers from a ticket; releasing segments and reusing spares; bad
 * arguments.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KiB 1024u
#define SEG (64 * KiB)
#define RING (64 * KiB)

/* Commits and checks the positions that follow from it. */
static void commit_ok(wal *log, const struct tu_model *m)
{
    CHECK_OK(wal_commit(log));
    uint64_t durable = wal_durable_pos(log), append = wal_append_pos(log);
    CHECK_LE_U(durable, append);
    if (m->n > 0)
        CHECK_LE_U(m->r[m->n - 1].t.end, durable);
}

static void commit_to_ok(wal *log, const struct wal_ticket *t)
{
    CHECK_OK(wal_commit_to(log, t->end));
    CHECK_LE_U(t->end, wal_durable_pos(log));
    CHECK_LE_U(wal_durable_pos(log), wal_append_pos(log));
}

static uint64_t sum_lengths(const struct tu_model *m)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < m->n; i++)
        sum += m->r[i].len;
    return sum;
}

/* Index of the first record at or after `pos`. */
static size_t first_at_or_after(const struct tu_model *m, uint64_t pos)
{
    size_t i = 0;
    while (i < m->n && m->r[i].t.pos < pos)
        i++;
    return i;
}

static void test_sizes(void)
{
    size_t sizes[64];
    size_t count = 0;
    static const size_t small[] = {0, 1, 15, 16, 17};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        sizes[count++] = small[i];
    for (size_t s = 4079; s <= 4097; s++)
        sizes[count++] = s;
    sizes[count++] = 65536;       /* the whole ring, a whole segment */
    sizes[count++] = 200000;      /* more than the ring and three segments */
    sizes[count++] = 3 * SEG + 5; /* more than three segments */
    sizes[count++] = 0;
    sizes[count++] = 1;

    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t commits = 0;
    for (size_t i = 0; i < count; i++) {
        CHECK_OK(tu_append(log, &m, i + 1, sizes[i]));
        CHECK_LE_U(wal_durable_pos(log), wal_append_pos(log));
        CHECK_LE_U(m.r[i].t.end, wal_append_pos(log));
        if (i % 3 == 2) {
            commit_ok(log, &m);
            commits++;
        } else if (i % 5 == 4) {
            commit_to_ok(log, &m.r[i].t);
            commits++;
        }
    }
    commit_ok(log, &m);
    commits++;

    struct wal_stats st;
    wal_stats(log, &st);
    CHECK_EQ_U(st.appends, m.n);
    CHECK_EQ_U(st.bytes_appended, sum_lengths(&m));
    CHECK(st.frames > st.appends); /* the big records are split, a BEGIN, pads */
    CHECK_EQ_U(st.commits, commits);
    CHECK(st.syncs > 0);
    CHECK(st.writes > 0);
    CHECK(st.bytes_written >= st.bytes_appended);
    CHECK_EQ_U(st.segment_bytes, SEG);
    uint64_t segments = (wal_durable_pos(log) - 1) / SEG + 1;
    CHECK_EQ_U(st.segments_created, segments);
    CHECK_EQ_U(st.segments_reused, 0);
    if (!o.direct_io)
        CHECK_EQ(st.direct_io, 0);

    /* The open log reads what it wrote out. */
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    CHECK_OK(wal_close(log));

    /* Reopen with other sizes: the log keeps the segment size it was
     * created with. */
    struct wal_options o2;
    tu_options(&o2, 0, 4 * SEG);
    o2.create = 0;
    log = TU_OPEN(dir, &o2);
    wal_stats(log, &st);
    CHECK_EQ_U(st.segment_bytes, SEG);
    CHECK_EQ_U(st.appends, 0);
    struct wal_stop stop;
    wal_recovery(log, &stop);
    CHECKF(stop.reason == WAL_STOP_END, "recovery stopped: %s at %llu",
           wal_stop_reason_name(stop.reason), (unsigned long long)stop.pos);
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, &stop);
    CHECKF(stop.reason == WAL_STOP_END, "reader stopped: %s", wal_stop_reason_name(stop.reason));
    CHECK_LE_U(m.r[m.n - 1].t.end, wal_append_pos(log));
    CHECK_LE_U(m.r[m.n - 1].t.end, wal_durable_pos(log));

    /* And goes on. */
    CHECK_OK(tu_append(log, &m, 1000, 300000));
    CHECK_OK(tu_append(log, &m, 1001, 5));
    commit_ok(log, &m);
    CHECK_OK(wal_close(log));
    REOPEN_CHECK(dir, &o2, &m);
    tu_model_free(&m);
}

/* Thousands of records through a 72 KiB ring: the ring wraps, records
 * straddle the ring's end and segment boundaries (at other places, since
 * 72 KiB is no divisor of the 64 KiB segments). */
static void test_ring_wrap(void)
{
    const size_t ring = 72 * KiB;
    uint64_t seed = tu_seed(0x5eed0001), rng = seed;
    tu_note("seed %llu", (unsigned long long)seed);
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, ring, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t commits = 0, flushes = 0;
    for (uint64_t i = 0; i < 3000; i++) {
        uint64_t kind = tu_rand(&rng) % 100;
        size_t len = kind < 70   ? tu_rand_range(&rng, 0, 300)
                     : kind < 95 ? tu_rand_range(&rng, 300, 5000)
                                 : tu_rand_range(&rng, 5000, 40000);
        CHECK_OK(tu_append(log, &m, i + 1, len));
        uint64_t action = tu_rand(&rng) % 64;
        if (action < 4) {
            commit_ok(log, &m);
            commits++;
        } else if (action < 8) {
            commit_to_ok(log, &m.r[m.n - 1].t);
            commits++;
        } else if (action == 8) {
            CHECK_OK(wal_flush(log));
            flushes++;
        }
        if (i % 500 == 499) {
            commit_ok(log, &m);
            commits++;
            READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
        }
    }
    commit_ok(log, &m);
    commits++;

    size_t across_segments = 0, across_ring = 0;
    for (size_t i = 0; i < m.n; i++) {
        if (m.r[i].t.pos / SEG != (m.r[i].t.end - 1) / SEG)
            across_segments++;
        if (m.r[i].t.pos / ring != (m.r[i].t.end - 1) / ring)
            across_ring++;
    }
    tu_note("%zu records, %llu commits, %llu flushes, %zu across a segment boundary, %zu across "
            "the ring's end, log end %llu",
            m.n, (unsigned long long)commits, (unsigned long long)flushes, across_segments,
            across_ring, (unsigned long long)wal_durable_pos(log));
    CHECK(across_segments > 10);
    CHECK(across_ring > 10);

    struct wal_stats st;
    wal_stats(log, &st);
    CHECK_EQ_U(st.appends, m.n);
    CHECK_EQ_U(st.bytes_appended, sum_lengths(&m));
    CHECK(st.frames >= st.appends);
    CHECK_EQ_U(st.commits, commits);
    CHECK(st.syncs > 0);
    /* Per segment begun, one sync of its header and one that closes the one before. */
    CHECK(st.syncs <= st.commits + 2 * (st.segments_created + st.segments_reused) + 1);
    CHECK(st.bytes_written >= st.bytes_appended);
    CHECK(st.bytes_padded > 0);
    CHECK_EQ_U(st.segments_created, (wal_durable_pos(log) - 1) / SEG + 1);
    CHECK_OK(wal_close(log));

    o.create = 0;
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
}

/* wal_flush writes without fdatasync: nothing becomes durable, the bytes are
 * in the files, and close commits them. */
static void test_flush_without_sync(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    for (int i = 0; i < 5; i++)
        CHECK_OK(tu_append(log, &m, (uint64_t)i + 1, 100 + 700 * (size_t)i));
    commit_ok(log, &m);
    for (int i = 5; i < 10; i++)
        CHECK_OK(tu_append(log, &m, (uint64_t)i + 1, 100 + 700 * (size_t)i));

    struct wal_stats before, after;
    wal_stats(log, &before);
    uint64_t durable = wal_durable_pos(log);
    CHECK(durable < m.r[9].t.end);
    CHECK_OK(wal_flush(log));
    wal_stats(log, &after);
    CHECK_EQ_U(after.syncs, before.syncs);
    CHECK_EQ_U(wal_durable_pos(log), durable);
    CHECK(after.writes > before.writes);
    CHECK(m.r[9].t.end <= wal_append_pos(log));
    /* Written out: a reader sees it. */
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    /* Flushing twice is harmless. */
    CHECK_OK(wal_flush(log));
    CHECK_OK(wal_close(log));

    o.create = 0;
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
}

/* The log's before_write hook, counting its calls and the log's writes
 * at the first of them, and failing while `fail` says so. */
struct before_write_probe {
    wal *log;
    int calls, fail;
    uint64_t writes_at_call;
};

static int probe_before_write(void *ctx)
{
    struct before_write_probe *p = ctx;
    struct wal_stats st;
    wal_stats(p->log, &st);
    p->calls++;
    p->writes_at_call = st.writes;
    return p->fail ? -EIO : 0;
}

static void test_append_after_sync(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);

    /* Without a hook there is nothing to sync first. */
    wal *log = TU_OPEN(dir, &o);
    struct wal_ticket t;
    CHECK_EQ(wal_append_after_sync(log, "x", 1, &t), -EINVAL);
    CHECK_OK(wal_close(log));

    struct before_write_probe probe = {0};
    o.create = 0;
    o.before_write = probe_before_write;
    o.before_write_ctx = &probe;
    log = TU_OPEN(dir, &o);
    probe.log = log;
    struct tu_model m;
    tu_model_init(&m);

    /* Plain records never call it. */
    CHECK_OK(tu_append(log, &m, 1, 300));
    commit_ok(log, &m);
    CHECKF(probe.calls == 0, "before_write called %d times for plain records, expected 0",
           probe.calls);

    /* A record that needs it: called once, before the commit's first write. */
    struct wal_stats st;
    wal_stats(log, &st);
    uint8_t rec[500];
    memset(rec, 7, sizeof rec);
    CHECK_OK(wal_append_after_sync(log, rec, sizeof rec, &t));
    CHECK_OK(tu_append(log, &m, 2, 200));
    CHECKF(probe.calls == 0, "before_write called %d times at the append, expected 0",
           probe.calls);
    CHECK_OK(wal_commit(log));
    CHECKF(probe.calls == 1, "before_write called %d times for one commit, expected 1",
           probe.calls);
    CHECKF(probe.writes_at_call == st.writes,
           "the log had made %llu writes when before_write ran, expected %llu (none yet)",
           (unsigned long long)probe.writes_at_call, (unsigned long long)st.writes);
    CHECK_LE_U(t.end, wal_durable_pos(log));

    /* Covered already: the next commit of plain records does not call it. */
    CHECK_OK(tu_append(log, &m, 3, 100));
    CHECK_OK(wal_commit(log));
    CHECKF(probe.calls == 1, "before_write called %d times in all, expected 1", probe.calls);

    /* A failing hook fails the commit, and nothing of the record is written. */
    probe.fail = 1;
    CHECK_OK(wal_append_after_sync(log, rec, sizeof rec, &t));
    wal_stats(log, &st);
    uint64_t durable = wal_durable_pos(log);
    CHECK_EQ(wal_commit(log), -EIO);
    struct wal_stats after;
    wal_stats(log, &after);
    CHECKF(after.writes == st.writes, "%llu log writes after a failed before_write, expected 0",
           (unsigned long long)(after.writes - st.writes));
    CHECK_EQ_U(wal_durable_pos(log), durable);
    /* It is asked again, and once it succeeds the record goes out. */
    probe.fail = 0;
    int calls = probe.calls;
    CHECK_OK(wal_commit(log));
    CHECKF(probe.calls == calls + 1, "before_write called %d more times on the retry, expected 1",
           probe.calls - calls);
    CHECK_LE_U(t.end, wal_durable_pos(log));
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

static void check_readers_from_tickets(wal *log, const struct tu_model *m)
{
    for (size_t i = 0; i < m->n; i += (i < 10 ? 1 : 23))
        READ_CHECK(log, m->r[i].t.pos, m, i, m->n - i, m->n - i, NULL);
    size_t last = m->n - 1;
    READ_CHECK(log, m->r[last].t.pos, m, last, 1, 1, NULL);
    /* From the end of the last record: nothing. */
    READ_CHECK(log, m->r[last].t.end, m, m->n, 0, 0, NULL);
}

static void test_reader_from_ticket(void)
{
    uint64_t rng = 42;
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    for (uint64_t i = 0; i < 300; i++) {
        CHECK_OK(tu_append(log, &m, i + 1, tu_rand_range(&rng, 0, 9000)));
        if (i % 10 == 9)
            commit_ok(log, &m);
    }
    commit_ok(log, &m);
    check_readers_from_tickets(log, &m);
    CHECK_OK(wal_close(log));
    o.create = 0;
    log = TU_OPEN(dir, &o);
    check_readers_from_tickets(log, &m);
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

static void check_segment_files(const char *dir, uint64_t gone_below, uint64_t present_to)
{
    char path[TU_PATH_MAX];
    for (uint64_t s = 0; s < gone_below; s++) {
        tu_segment_path(path, dir, s);
        CHECKF(!tu_exists(path), "released segment %llu still has its name", (unsigned long long)s);
    }
    for (uint64_t s = gone_below; s <= present_to; s++) {
        tu_segment_path(path, dir, s);
        CHECKF(tu_exists(path), "segment %llu is missing", (unsigned long long)s);
    }
}

/* A release makes spares up to the limit, so that the segments the writer
 * moves into next are ready and the commit path makes none. */
static void test_release_prepares_spares(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    o.spare_segments = 3;
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    while (wal_durable_pos(log) < SEG + SEG / 2) {
        CHECK_OK(tu_append(log, &m, id++, 1000));
        commit_ok(log, &m);
    }
    CHECK_EQ_U(tu_count_files(dir, "spare-", ".wal"), 0);
    CHECK_OK(wal_release(log, wal_durable_pos(log)));
    CHECK_EQ_U(tu_count_files(dir, "spare-", ".wal"), 3);

    struct wal_stats st0, st1;
    wal_stats(log, &st0);
    while (wal_durable_pos(log) < 4 * SEG + SEG / 2) {
        CHECK_OK(tu_append(log, &m, id++, 1000));
        commit_ok(log, &m);
    }
    wal_stats(log, &st1);
    CHECK_EQ_U(st1.segments_created, st0.segments_created);
    CHECK_EQ_U(st1.segments_reused - st0.segments_reused, 3);
    CHECK_EQ_U(tu_count_files(dir, "spare-", ".wal"), 0);
    size_t k = first_at_or_after(&m, wal_first_pos(log));
    READ_CHECK(log, wal_first_pos(log), &m, k, m.n - k, m.n - k, NULL);
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

/* A clean close of a log writing into reused segments: the bytes after the
 * last frame are the frames of the segment's earlier use, and reopening must
 * still see a clean end there, not a torn tail (which would be reported as a
 * crash). Also after a reopen that writes nothing. */
static void test_clean_end_in_reused_segment(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    o.spare_segments = 2;
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    while (wal_durable_pos(log) < 3 * SEG) {
        CHECK_OK(tu_append(log, &m, id++, 3000));
        commit_ok(log, &m);
    }
    CHECK_OK(wal_release(log, wal_durable_pos(log)));
    struct wal_stats st;
    while (wal_stats(log, &st), st.segments_reused == 0 || wal_durable_pos(log) % SEG < SEG / 4) {
        CHECK_OK(tu_append(log, &m, id++, 3000));
        commit_ok(log, &m);
    }
    CHECK_OK(wal_close(log));
    for (int round = 0; round < 2; round++) {
        log = TU_OPEN(dir, &o);
        struct wal_stop stop;
        wal_recovery(log, &stop);
        CHECKF(stop.reason == WAL_STOP_END, "round %d: the log ended with %s at %llu", round,
               wal_stop_reason_name(stop.reason), (unsigned long long)stop.pos);
        CHECK_OK(wal_close(log));
    }
    tu_model_free(&m);
}

static void test_release(void)
{
    uint64_t rng = 4242;
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    o.spare_segments = 2;
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    while (wal_durable_pos(log) < 10 * SEG) {
        CHECK_OK(tu_append(log, &m, id++, tu_rand_range(&rng, 500, 3000)));
        if (id % 5 == 0)
            commit_ok(log, &m);
    }
    commit_ok(log, &m);
    uint64_t first0 = wal_first_pos(log);
    CHECK_LE_U(first0, m.r[0].t.pos);

    /* Release up to the first record of segment 5: segments 0..4 go. */
    size_t j = first_at_or_after(&m, 5 * SEG);
    CHECK(j < m.n);
    uint64_t rel = m.r[j].t.pos;
    CHECK_OK(wal_release(log, rel));
    uint64_t first1 = wal_first_pos(log);
    tu_note("released up to %llu; first_pos %llu -> %llu", (unsigned long long)rel,
            (unsigned long long)first0, (unsigned long long)first1);
    CHECK(first1 > first0);
    CHECK_LE_U(first1, rel);
    CHECK_LE_U(5 * SEG, first1);
    uint64_t last_seg = (wal_durable_pos(log) - 1) / SEG;
    check_segment_files(dir, 5, last_seg);
    size_t spares = tu_count_files(dir, "spare-", ".wal");
    tu_note("%zu spare files", spares);
    /* Five retired, two kept; and a release tops the spares up anyway. */
    CHECK_EQ_U(spares, 2);
    size_t k = first_at_or_after(&m, first1);
    READ_CHECK(log, first1, &m, k, m.n - k, m.n - k, NULL);
    READ_CHECK(log, rel, &m, j, m.n - j, m.n - j, NULL);

    /* Releasing the same again, or less, changes nothing. */
    CHECK_OK(wal_release(log, rel));
    CHECK_OK(wal_release(log, first0));
    CHECK_EQ_U(wal_first_pos(log), first1);
    /* Releasing beyond the durable position is refused. */
    CHECK(tu_append(log, &m, id++, 100) == 0);
    uint64_t durable = wal_durable_pos(log);
    int rc = wal_release(log, durable + 4 * SEG);
    CHECKF(rc < 0, "wal_release beyond the durable position returned %d", rc);
    CHECK_EQ_U(wal_first_pos(log), first1);

    /* Three more segments: the spares are reused. */
    struct wal_stats st0, st1;
    wal_stats(log, &st0);
    while (wal_durable_pos(log) <= 13 * SEG + 4096) {
        CHECK_OK(tu_append(log, &m, id++, tu_rand_range(&rng, 500, 3000)));
        if (id % 5 == 0)
            commit_ok(log, &m);
    }
    commit_ok(log, &m);
    wal_stats(log, &st1);
    tu_note("segments created %llu -> %llu, reused %llu -> %llu",
            (unsigned long long)st0.segments_created, (unsigned long long)st1.segments_created,
            (unsigned long long)st0.segments_reused, (unsigned long long)st1.segments_reused);
    /* At least three new segments: every spare was used, then new ones. */
    CHECK_EQ_U(st1.segments_reused - st0.segments_reused, spares);
    CHECK(st1.segments_created > st0.segments_created);
    CHECK_EQ_U(tu_count_files(dir, "spare-", ".wal"), 0);
    check_segment_files(dir, 5, (wal_durable_pos(log) - 1) / SEG);
    READ_CHECK(log, first1, &m, k, m.n - k, m.n - k, NULL);
    CHECK_OK(wal_close(log));

    o.create = 0;
    log = TU_OPEN(dir, &o);
    uint64_t first2 = wal_first_pos(log);
    CHECK_LE_U(5 * SEG, first2);
    CHECK_LE_U(first2, rel);
    k = first_at_or_after(&m, first2);
    READ_CHECK(log, first2, &m, k, m.n - k, m.n - k, NULL);
    READ_CHECK(log, rel, &m, j, m.n - j, m.n - j, NULL);
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

/*
 * Everything released while the log ends exactly at a segment boundary: a
 * commit that pads the segment's last block, or a recovery whose last frame
 * ends in it, leaves the append position at the start of a segment not made
 * yet. The segment before it holds the only header that says where the log
 * is; released, it left a directory of spares, which the next open took for
 * a new log starting at 0, below the positions already handed out (a store
 * then refused to open: its manifest's position was past the log's end).
 */
static void test_release_all_at_segment_boundary(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    o.spare_segments = 2;
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    /* A small record per block, each committed (the commit pads its block),
     * until the padding of the segment's last block reaches its end. */
    while (wal_append_pos(log) < 2 * SEG) {
        CHECK_OK(tu_append(log, &m, id++, 100));
        commit_ok(log, &m);
    }
    CHECK_EQ_U(wal_append_pos(log), 2 * SEG);
    CHECK_EQ_U(wal_durable_pos(log), 2 * SEG);
    /* All of it checkpointed, say, as a store does at open and at close. */
    CHECK_OK(wal_release(log, 2 * SEG));
    CHECK_LE_U(wal_first_pos(log), SEG);
    CHECK_OK(wal_close(log));

    o.create = 0;
    log = TU_OPEN(dir, &o);
    CHECKF(wal_append_pos(log) == 2 * SEG,
           "after the release and a reopen the log ends at %llu, not at %llu",
           (unsigned long long)wal_append_pos(log), (unsigned long long)(2 * SEG));
    /* And again from a recovery that ends at the boundary. */
    CHECK_OK(wal_release(log, 2 * SEG));
    CHECK_OK(wal_close(log));
    log = TU_OPEN(dir, &o);
    CHECK_EQ_U(wal_append_pos(log), 2 * SEG);
    /* The next record goes into the new segment, and the old one can go. */
    CHECK_OK(tu_append(log, &m, id, 100));
    CHECK_OK(wal_commit(log));
    CHECK_LE_U(2 * SEG, m.r[m.n - 1].t.pos);
    CHECK_OK(wal_release(log, m.r[m.n - 1].t.pos));
    CHECK_EQ_U(wal_first_pos(log), 2 * SEG);
    CHECK_OK(wal_close(log));
    log = TU_OPEN(dir, &o);
    READ_CHECK(log, 2 * SEG, &m, m.n - 1, 1, 1, NULL);
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

/*
 * A record that ends exactly 16 bytes before the end of a segment: a header
 * would fit there, but a frame with payload would not, so the writer skips
 * those bytes unless the next record is empty. The reader and recovery must
 * follow into the next segment in both cases.
 */
static void segment_tail(size_t next_len)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    CHECK_OK(tu_append(log, &m, id++, 100));
    const uint64_t target = SEG - 16;
    while (target - m.r[m.n - 1].t.end > 12000 + 16)
        CHECK_OK(tu_append(log, &m, id++, 12000));
    CHECK_OK(tu_append(log, &m, id++, (size_t)(target - m.r[m.n - 1].t.end - 16)));
    CHECKF(m.r[m.n - 1].t.end == target, "the filler record ends at %llu, not %llu",
           (unsigned long long)m.r[m.n - 1].t.end, (unsigned long long)target);
    CHECK_OK(tu_append(log, &m, id++, next_len));
    tu_note("a record of %zu bytes after the one ending at %llu lands at [%llu, %llu)", next_len,
            (unsigned long long)target, (unsigned long long)m.r[m.n - 1].t.pos,
            (unsigned long long)m.r[m.n - 1].t.end);
    CHECK_OK(tu_append(log, &m, id++, 300));
    CHECK_OK(wal_commit(log));
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    CHECK_OK(wal_close(log));

    o.create = 0;
    log = TU_OPEN(dir, &o);
    struct wal_stop stop;
    wal_recovery(log, &stop);
    tu_note("recovery stopped: %s at %llu", wal_stop_reason_name(stop.reason),
            (unsigned long long)stop.pos);
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    CHECK_OK(tu_append(log, &m, id++, 50));
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
}

static void test_segment_tail_empty_record(void)
{
    segment_tail(0);
}

static void test_segment_tail_skipped(void)
{
    segment_tail(10);
}

static void test_missing_dir(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "not-there");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    o.create = 0;
    wal *log = NULL;
    CHECK_EQ(wal_open(dir, &o, &log), -ENOENT);
    CHECK(!tu_exists(dir));
    o.create = 1;
    log = TU_OPEN(dir, &o);
    CHECK_OK(wal_close(log));
    CHECK(tu_exists(dir));
    o.create = 0;
    log = TU_OPEN(dir, &o);
    CHECK_OK(wal_close(log));
}

static void test_bad_options(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct {
        size_t ring;
        uint64_t segment;
        const char *what;
    } cases[] = {
        {RING + 1, SEG, "ring not a multiple of 4096"},
        {RING + 2048, SEG, "ring not a multiple of 4096"},
        {RING - 4096, SEG, "ring under 64 KiB"},
        {RING, SEG + 512, "segment not a multiple of 4096"},
        {RING, 15 * 4096, "segment of 15 blocks"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wal_options o;
        tu_options(&o, cases[i].ring, cases[i].segment);
        wal *log = NULL;
        int rc = wal_open(dir, &o, &log);
        if (rc == 0)
            wal_close(log);
        CHECKF(rc == -EINVAL, "%s: wal_open returned %d (%s)", cases[i].what, rc, tu_strerror(rc));
    }
}

/* A read-only open reads everything and changes no byte. */
static void test_read_only(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    for (uint64_t i = 0; i < 40; i++)
        CHECK_OK(tu_append(log, &m, i + 1, 1000 + 97 * i));
    commit_ok(log, &m);
    CHECK_OK(wal_close(log));

    struct tu_dir_image before, after;
    tu_dir_image_load(&before, dir);
    o.create = 0;
    o.read_only = 1;
    log = TU_OPEN(dir, &o);
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    struct wal_ticket t;
    int rc = wal_append(log, "x", 1, &t);
    CHECKF(rc < 0, "wal_append on a read-only log returned %d", rc);
    CHECK_OK(wal_close(log));
    tu_dir_image_load(&after, dir);
    CHECK_EQ_U(after.count, before.count);
    for (size_t i = 0; i < before.count; i++) {
        size_t k = 0;
        while (k < after.count && strcmp(after.names[k], before.names[i]) != 0)
            k++;
        CHECKF(k < after.count, "%s disappeared", before.names[i]);
        CHECKF(after.sizes[k] == before.sizes[i] &&
                   memcmp(after.data[k], before.data[i], before.sizes[i]) == 0,
               "%s changed", before.names[i]);
    }
    tu_dir_image_free(&before);
    tu_dir_image_free(&after);
    tu_model_free(&m);
}

static void test_empty_log(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_flush(log));
    CHECK_LE_U(wal_durable_pos(log), wal_append_pos(log));
    READ_CHECK(log, wal_first_pos(log), &m, 0, 0, 0, NULL);
    CHECK_OK(wal_close(log));

    o.create = 0;
    log = TU_OPEN(dir, &o);
    struct wal_stop stop;
    wal_recovery(log, &stop);
    CHECKF(stop.reason == WAL_STOP_END, "recovery of an empty log stopped: %s",
           wal_stop_reason_name(stop.reason));
    READ_CHECK(log, wal_first_pos(log), &m, 0, 0, 0, NULL);
    CHECK_OK(wal_close(log));

    /* Reopened several times without appending, then used. */
    for (int i = 0; i < 3; i++) {
        log = TU_OPEN(dir, &o);
        CHECK_OK(wal_close(log));
    }
    log = TU_OPEN(dir, &o);
    CHECK_OK(tu_append(log, &m, 1, 10));
    CHECK_OK(tu_append(log, &m, 2, 0));
    commit_ok(log, &m);
    CHECK_OK(wal_close(log));
    log = TU_OPEN(dir, &o);
    READ_CHECK(log, wal_first_pos(log), &m, 0, 2, 2, NULL);
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("sizes", test_sizes);
    tu_run("ring_wrap", test_ring_wrap);
    tu_run("flush_without_sync", test_flush_without_sync);
    tu_run("append_after_sync", test_append_after_sync);
    tu_run("reader_from_ticket", test_reader_from_ticket);
    tu_run("segment_tail_empty_record", test_segment_tail_empty_record);
    tu_run("segment_tail_skipped", test_segment_tail_skipped);
    tu_run("release_and_reuse", test_release);
    tu_run("release_prepares_spares", test_release_prepares_spares);
    tu_run("release_all_at_segment_boundary", test_release_all_at_segment_boundary);
    tu_run("clean_end_in_reused_segment", test_clean_end_in_reused_segment);
    tu_run("missing_dir", test_missing_dir);
    tu_run("bad_options", test_bad_options);
    tu_run("read_only", test_read_only);
    tu_run("empty_log", test_empty_log);
    return tu_finish();
}
