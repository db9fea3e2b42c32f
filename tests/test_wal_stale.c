/*
 * test_wal_stale.c - frames that are intact but old must not be replayed:
 * frames of an earlier run of the writer found beyond a crash point (told
 * apart by the salt), and frames of an earlier use of a reused segment file
 * (told apart by the position-seeded checksum).
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define KiB 1024u
#define BLOCK 4096u
#define RING (64 * KiB)

static void read_file(const char *path, uint8_t **data, size_t *len)
{
    *len = (size_t)tu_file_size(path);
    *data = malloc(*len ? *len : 1);
    CHECK(*data != NULL);
    tu_pread_file(path, *data, *len, 0);
}

/*
 * Run 1 writes A1..A20; a crash loses everything from A11 on; run 2 sees
 * A1..A10, writes B1 and B2. Then run 1's bytes are put back after run 2's
 * data, as a disk that never got run 2's later writes would show them:
 * intact frames, of the wrong run. The log must be A1..A10, B1, B2.
 * `packed` commits every third record, so that records share blocks and the
 * crash point is inside a block; otherwise every record is committed and
 * starts a block, and run 1's frame A12 starts exactly where run 2 ended.
 */
static void stale_run(int packed)
{
    const uint64_t seg_bytes = 128 * KiB; /* all of it in segment 0 */
    char dir[TU_PATH_MAX], seg0[TU_PATH_MAX];
    tu_path(dir, "log");
    tu_segment_path(seg0, dir, 0);
    struct wal_options o;
    tu_options(&o, RING, seg_bytes);
    uint64_t rng = 77;

    /* Run 1. */
    wal *log = TU_OPEN(dir, &o);
    struct tu_model a;
    tu_model_init(&a);
    for (uint64_t i = 1; i <= 20; i++) {
        size_t len = packed ? tu_rand_range(&rng, 50, 700) : 100 + 150 * i;
        CHECK_OK(tu_append(log, &a, i, len));
        if (!packed || i % 3 == 0)
            CHECK_OK(wal_commit(log));
    }
    CHECK_OK(wal_commit(log));
    uint64_t end1 = wal_durable_pos(log);
    CHECK_OK(wal_close(log));
    CHECK(end1 < seg_bytes);
    uint8_t *run1;
    size_t run1_len;
    read_file(seg0, &run1, &run1_len);

    /* The crash: A11 and after never reached the disk. */
    uint64_t crash = a.r[10].t.pos;
    if (packed)
        CHECK(crash % BLOCK != 0);
    tu_zero_range(seg0, crash, run1_len);

    /* Run 2. */
    o.create = 0;
    log = TU_OPEN(dir, &o);
    READ_CHECK(log, wal_first_pos(log), &a, 0, 10, 10, NULL);
    struct tu_model m;
    tu_model_init(&m);
    tu_model_copy_prefix(&m, &a, 10);
    CHECK_OK(tu_append(log, &m, 101, 200));
    CHECK_OK(tu_append(log, &m, 102, 300));
    CHECK_OK(wal_commit(log));
    uint64_t end2 = wal_durable_pos(log);
    CHECK_OK(wal_close(log));
    CHECK(end2 % BLOCK == 0);
    CHECKF(end2 < end1, "run 2 ended at %llu, run 1 at %llu: nothing stale to put back",
           (unsigned long long)end2, (unsigned long long)end1);

    /* Run 1's frames come back after run 2's end. */
    tu_pwrite_file(seg0, run1 + end2, (size_t)(end1 - end2), end2);
    int frame_at_end2 = 0;
    for (size_t i = 0; i < a.n; i++)
        if (a.r[i].t.pos == end2)
            frame_at_end2 = 1;
    tu_note("crash at %llu, run 2 ended at %llu, run 1 at %llu; a run-1 record starts at run "
            "2's end: %s",
            (unsigned long long)crash, (unsigned long long)end2, (unsigned long long)end1,
            frame_at_end2 ? "yes" : "no");
    if (!packed)
        CHECK(frame_at_end2);

    log = TU_OPEN(dir, &o);
    struct wal_stop rec, stop;
    wal_recovery(log, &rec);
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, &stop);
    tu_note("recovery stopped: %s at %llu; reader: %s at %llu", wal_stop_reason_name(rec.reason),
            (unsigned long long)rec.pos, wal_stop_reason_name(stop.reason),
            (unsigned long long)stop.pos);
    if (frame_at_end2) {
        CHECKF(rec.reason == WAL_STOP_STALE && rec.pos == end2,
               "recovery stopped: %s at %llu, expected STALE at %llu",
               wal_stop_reason_name(rec.reason), (unsigned long long)rec.pos,
               (unsigned long long)end2);
        CHECKF(stop.reason == WAL_STOP_STALE && stop.pos == end2,
               "reader stopped: %s at %llu, expected STALE at %llu",
               wal_stop_reason_name(stop.reason), (unsigned long long)stop.pos,
               (unsigned long long)end2);
    }

    /* Run 3 goes on after B2, and the stale frames stay out. */
    CHECK_OK(tu_append(log, &m, 103, 5000));
    CHECK_OK(tu_append(log, &m, 104, 10));
    CHECK(m.r[m.n - 2].t.pos >= end2);
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    REOPEN_CHECK(dir, &o, &m);

    free(run1);
    tu_model_free(&a);
    tu_model_free(&m);
}

static void test_stale_run_aligned(void)
{
    stale_run(0);
}

static void test_stale_run_packed(void)
{
    stale_run(1);
}

/* Several crashes in a row. Each loses one block in the middle of the
 * run's last records (writes reach the disk out of order), so behind the
 * next run's end lie intact frames of the run before, and of runs before
 * that. */
static void test_stale_many_runs(void)
{
    const uint64_t seg_bytes = 256 * KiB;
    char dir[TU_PATH_MAX], seg0[TU_PATH_MAX];
    tu_path(dir, "log");
    tu_segment_path(seg0, dir, 0);
    struct wal_options o;
    tu_options(&o, RING, seg_bytes);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t rng = 5, id = 1;
    for (int run = 0; run < 8; run++) {
        wal *log = TU_OPEN(dir, &o);
        o.create = 0;
        READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
        size_t keep = m.n;
        for (int i = 0; i < 8; i++) {
            CHECK_OK(tu_append(log, &m, id++, tu_rand_range(&rng, 10, 2500)));
            if (tu_rand(&rng) % 2)
                CHECK_OK(wal_commit(log));
        }
        CHECK_OK(wal_commit(log));
        uint64_t end = wal_durable_pos(log);
        CHECK_OK(wal_close(log));
        CHECK(end < seg_bytes);
        size_t lost = keep + 1 + (size_t)(tu_rand(&rng) % (m.n - keep - 1));
        uint64_t crash = m.r[lost].t.pos;
        tu_zero_range(seg0, crash, (crash / BLOCK + 1) * BLOCK);
        m.n = lost;
    }
    /* A last run without a crash: behind its end lie the older runs. */
    wal *log = TU_OPEN(dir, &o);
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    CHECK_OK(tu_append(log, &m, id++, 10));
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    log = TU_OPEN(dir, &o);
    struct wal_stop rec;
    wal_recovery(log, &rec);
    tu_note("%zu records survive; recovery stopped: %s at %llu", m.n,
            wal_stop_reason_name(rec.reason), (unsigned long long)rec.pos);
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

/*
 * Segments are filled, released and reused as spares: the old frames in the
 * reused files, intact and (when `reopen` is 0) of the same run, must not be
 * read. Every record is committed, so old and new frames start on the same
 * block boundaries.
 */
static void reused_segments(int reopen)
{
    const uint64_t seg_bytes = 64 * KiB;
    char dir[TU_PATH_MAX], copy[TU_PATH_MAX];
    tu_path(dir, "log");
    tu_path(copy, "crash-copy");
    struct wal_options o;
    tu_options(&o, RING, seg_bytes);
    o.spare_segments = 2;
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t rng = 11, id = 1;
    while (wal_durable_pos(log) < 6 * seg_bytes) {
        CHECK_OK(tu_append(log, &m, id++, tu_rand_range(&rng, 100, 3000)));
        CHECK_OK(wal_commit(log));
    }
    size_t j = 0;
    while (m.r[j].t.pos < 5 * seg_bytes)
        j++;
    CHECK_OK(wal_release(log, m.r[j].t.pos));
    CHECK(tu_count_files(dir, "spare-", ".wal") >= 1);
    if (reopen) {
        CHECK_OK(wal_close(log));
        o.create = 0;
        log = TU_OPEN(dir, &o);
    }

    struct wal_stats st;
    wal_stats(log, &st);
    uint64_t reused0 = st.segments_reused;
    size_t spares = tu_count_files(dir, "spare-", ".wal");
    /* Into the last spare, a few records deep. */
    int after = -1;
    while (after != 0) {
        CHECK_OK(tu_append(log, &m, id++, tu_rand_range(&rng, 100, 3000)));
        CHECK_OK(wal_commit(log));
        wal_stats(log, &st);
        if (after < 0 && st.segments_reused - reused0 == spares)
            after = 5;
        else if (after > 0)
            after--;
    }
    tu_note("%zu spares reused; log ends at %llu", spares,
            (unsigned long long)wal_durable_pos(log));
    /* A crash now: the copy has what was written. */
    tu_copy_dir(dir, copy);
    CHECK_OK(wal_close(log));

    o.create = 0;
    const char *dirs[] = {dir, copy};
    for (int d = 0; d < 2; d++) {
        log = TU_OPEN(dirs[d], &o);
        uint64_t first = wal_first_pos(log);
        CHECK_LE_U(5 * seg_bytes, first);
        CHECK_LE_U(first, m.r[j].t.pos);
        size_t k = 0;
        while (m.r[k].t.pos < first)
            k++;
        struct wal_stop rec, stop;
        wal_recovery(log, &rec);
        READ_CHECK(log, first, &m, k, m.n - k, m.n - k, &stop);
        tu_note("%s: recovery stopped: %s at %llu; reader: %s at %llu",
                d ? "crash copy" : "closed log", wal_stop_reason_name(rec.reason),
                (unsigned long long)rec.pos, wal_stop_reason_name(stop.reason),
                (unsigned long long)stop.pos);
        /* Old frames of a reused file fail their checksum: they are not
         * mistaken for a clean end either. */
        CHECK(rec.reason == WAL_STOP_TORN || rec.reason == WAL_STOP_END);
        CHECK_OK(wal_close(log));
    }

    /* And the log goes on from there. */
    log = TU_OPEN(dir, &o);
    for (int i = 0; i < 3; i++)
        CHECK_OK(tu_append(log, &m, id++, 2000));
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    log = TU_OPEN(dir, &o);
    uint64_t first = wal_first_pos(log);
    size_t k = 0;
    while (m.r[k].t.pos < first)
        k++;
    READ_CHECK(log, first, &m, k, m.n - k, m.n - k, NULL);
    CHECK_OK(wal_close(log));
    tu_model_free(&m);
}

static void test_reused_same_run(void)
{
    reused_segments(0);
}

static void test_reused_after_reopen(void)
{
    reused_segments(1);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("stale_run_aligned", test_stale_run_aligned);
    tu_run("stale_run_packed", test_stale_run_packed);
    tu_run("stale_many_runs", test_stale_many_runs);
    tu_run("reused_same_run", test_reused_same_run);
    tu_run("reused_after_reopen", test_reused_after_reopen);
    return tu_finish();
}
