/*
 * test_wal_recovery.c - recovery after a crash: for every byte offset in the
 * last blocks of a log, cut the last segment there (truncated, or zeroed to
 * its end) and check that the log opens, shows exactly the records that lie
 * wholly before the cut, and goes on from there; random bit flips in the
 * tail; segment files of odd lengths.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define KiB 1024u
#define BLOCK 4096u
#define SEG (64 * KiB)
#define RING (64 * KiB)
#define TAIL_BLOCKS 3

/* A closed log to damage, in memory, and what it holds. */
struct master {
    struct tu_dir_image image;
    struct tu_model m;
    uint64_t end;      /* the durable position at close */
    uint64_t segno;    /* the last segment */
    uint64_t file_end; /* end - segno * SEG: where the data ends in its file */
    size_t first;      /* the first record kept: the log starts with segment 2 */
};

static void append_ok(wal *log, struct tu_model *m, uint64_t *id, size_t len)
{
    CHECK_OK(tu_append(log, m, (*id)++, len));
}

/*
 * Three segments, of which the first two are released when it is done, so
 * that each open has one file to look at (quicker; and the log does not
 * start at position 0). The last blocks hold: the end of a record split into two
 * frames (20000 bytes through a 64 KiB ring: 16 KiB frames) and its LAST
 * frame, small records packed back to back, a PAD frame, and a last block of
 * records of odd sizes, a zero-length one among them.
 */
static void build_master(struct master *ms)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "master");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    o.spare_segments = 0;
    wal *log = TU_OPEN(dir, &o);
    tu_model_init(&ms->m);
    uint64_t rng = 99, id = 1;
    while (wal_durable_pos(log) < 2 * SEG) {
        append_ok(log, &ms->m, &id, tu_rand_range(&rng, 0, 1000));
        if (id % 4 == 0)
            CHECK_OK(wal_commit(log));
    }
    CHECK_OK(wal_commit(log));
    append_ok(log, &ms->m, &id, 3000);
    append_ok(log, &ms->m, &id, 9000);
    CHECK_OK(wal_commit(log));
    append_ok(log, &ms->m, &id, 20000);
    for (int i = 0; i < 5; i++)
        append_ok(log, &ms->m, &id, 50);
    CHECK_OK(wal_commit(log));
    static const size_t last[] = {2000, 1500, 17, 16, 15, 0, 1};
    for (size_t i = 0; i < sizeof last / sizeof last[0]; i++)
        append_ok(log, &ms->m, &id, last[i]);
    CHECK_OK(wal_commit(log));
    ms->end = wal_durable_pos(log);
    CHECK_OK(wal_release(log, 2 * SEG));
    CHECK_EQ_U(wal_first_pos(log), 2 * SEG);
    CHECK_OK(wal_close(log));
    ms->first = 0;
    while (ms->m.r[ms->first].t.pos < 2 * SEG)
        ms->first++;

    ms->segno = (ms->end - 1) / SEG;
    ms->file_end = ms->end - ms->segno * SEG;
    CHECKF(ms->segno == 2 && ms->file_end % BLOCK == 0 &&
               ms->file_end >= (TAIL_BLOCKS + 1) * BLOCK && ms->file_end < SEG,
           "the test log ends at %llu, not where this test expects it",
           (unsigned long long)ms->end);
    tu_dir_image_load(&ms->image, dir);
    CHECK_EQ_U(tu_count_files(dir, "", ".wal"), 1);
    tu_note("master log: records %zu to %zu, ends at %llu (segment %llu, offset %llu)", ms->first,
            ms->m.n, (unsigned long long)ms->end, (unsigned long long)ms->segno,
            (unsigned long long)ms->file_end);
}

static void free_master(struct master *ms)
{
    tu_dir_image_free(&ms->image);
    tu_model_free(&ms->m);
}

static int good_recovery_stop(enum wal_stop_reason r)
{
    return r == WAL_STOP_END || r == WAL_STOP_TORN || r == WAL_STOP_BAD_HEADER ||
           r == WAL_STOP_INCOMPLETE;
}

/*
 * Opens the damaged log in `dir`, checks that it shows records ms->first to
 * some n with min <= n <= max of the master, appends two more, closes,
 * reopens and checks that the log is what it showed plus the two. `what`
 * names the damage for messages.
 */
static void check_damaged(const char *dir, const struct master *ms, size_t min, size_t max,
                          uint64_t new_id, struct tu_model *scratch, const char *what)
{
    struct wal_options o;
    tu_options(&o, RING, SEG);
    o.create = 0;
    wal *log = NULL;
    int rc = wal_open(dir, &o, &log);
    CHECKF(rc == 0, "%s: wal_open returned %d (%s)", what, rc, tu_strerror(rc));
    struct wal_stop stop;
    wal_recovery(log, &stop);
    CHECKF(good_recovery_stop(stop.reason), "%s: recovery stopped: %s at %llu (error %d)", what,
           wal_stop_reason_name(stop.reason), (unsigned long long)stop.pos, stop.error);
    CHECK_EQ_U(wal_first_pos(log), 2 * SEG);
    size_t f = ms->first;
    size_t n = f + READ_CHECK(log, 2 * SEG, &ms->m, f, min - f, max - f, NULL);
    uint64_t last_end = n > f ? ms->m.r[n - 1].t.end : 2 * SEG;

    tu_model_copy_prefix(scratch, &ms->m, n);
    CHECK_OK(tu_append(log, scratch, new_id, 30));
    CHECK_OK(tu_append(log, scratch, new_id + 1, 4500));
    /* Never inside a block that holds a valid frame. */
    CHECKF(scratch->r[n].t.pos >= (last_end + BLOCK - 1) / BLOCK * BLOCK,
           "%s: the writer continued at %llu, in the block of the record ending at %llu", what,
           (unsigned long long)scratch->r[n].t.pos, (unsigned long long)last_end);
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));

    log = TU_OPEN(dir, &o);
    READ_CHECK(log, wal_first_pos(log), scratch, f, n + 2 - f, n + 2 - f, NULL);
    CHECK_OK(wal_close(log));
}

static unsigned worker_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n *= 2; /* the workers wait for the disk half of the time */
    return n < 1 ? 1 : n > 4 ? 4 : (unsigned)n;
}

/* Runs fn(worker, workers) in `workers` child processes; CHECKs that all of
 * them succeeded. */
static void run_workers(unsigned workers, void (*fn)(unsigned, unsigned, void *), void *arg)
{
    pid_t pids[8];
    fflush(stdout);
    fflush(stderr);
    for (unsigned w = 0; w < workers; w++) {
        pids[w] = fork();
        CHECK(pids[w] >= 0);
        if (pids[w] == 0) {
            fn(w, workers, arg);
            fflush(stdout);
            exit(0);
        }
    }
    int failed = 0;
    for (unsigned w = 0; w < workers; w++) {
        int status;
        CHECK(waitpid(pids[w], &status, 0) == pids[w]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    CHECKF(failed == 0, "%d of %u workers failed", failed, workers);
}

struct cut_job {
    struct master ms;
    int zero; /* zero from the cut to the end of the file instead of truncating */
};

static void cut_worker(unsigned worker, unsigned workers, void *arg)
{
    struct cut_job *job = arg;
    const struct master *ms = &job->ms;
    char dir[TU_PATH_MAX], seg[TU_PATH_MAX], what[128];
    tu_path(dir, "work-%u", worker);
    tu_segment_path(seg, dir, ms->segno);
    struct tu_model scratch;
    tu_model_init(&scratch);
    uint64_t from = ms->file_end - TAIL_BLOCKS * BLOCK;
    for (uint64_t k = from + worker; k <= ms->file_end; k += workers) {
        tu_dir_image_reset(&ms->image, dir);
        if (job->zero)
            tu_zero_range(seg, k, tu_file_size(seg));
        else
            tu_truncate(seg, k);
        size_t expect = tu_model_count_ending_by(&ms->m, ms->segno * SEG + k);
        snprintf(what, sizeof what, "%s at file offset %llu", job->zero ? "zeroed" : "truncated",
                 (unsigned long long)k);
        check_damaged(dir, ms, expect, expect, 1000000 + 2 * k, &scratch, what);
    }
    tu_model_free(&scratch);
    tu_rm_rf(dir);
}

static void run_cuts(int zero)
{
    struct cut_job job = {.zero = zero};
    build_master(&job.ms);
    unsigned workers = worker_count();
    tu_note("%u cuts from file offset %llu to %llu, %u workers", TAIL_BLOCKS * BLOCK + 1,
            (unsigned long long)(job.ms.file_end - TAIL_BLOCKS * BLOCK),
            (unsigned long long)job.ms.file_end, workers);
    run_workers(workers, cut_worker, &job);
    free_master(&job.ms);
}

static void test_truncated_tail(void)
{
    run_cuts(0);
}

static void test_zeroed_tail(void)
{
    run_cuts(1);
}

/* Random single-bit flips in the last blocks and in the block after the
 * end: the log shows the records before the flip, not the one holding it,
 * and nothing else than the master's records. */
struct flip_job {
    struct master ms;
    uint64_t seed;
    unsigned trials;
};

static void flip_worker(unsigned worker, unsigned workers, void *arg)
{
    struct flip_job *job = arg;
    const struct master *ms = &job->ms;
    char dir[TU_PATH_MAX], seg[TU_PATH_MAX], what[160];
    tu_path(dir, "work-%u", worker);
    tu_segment_path(seg, dir, ms->segno);
    struct tu_model scratch;
    tu_model_init(&scratch);
    uint64_t rng = job->seed;
    uint64_t lo = ms->file_end - TAIL_BLOCKS * BLOCK, hi = ms->file_end + BLOCK - 1;
    for (unsigned trial = 0; trial < job->trials; trial++) {
        uint64_t off = tu_rand_range(&rng, lo, hi);
        unsigned bit = (unsigned)(tu_rand(&rng) % 8);
        if (trial % workers != worker)
            continue;
        tu_dir_image_reset(&ms->image, dir);
        tu_flip_bit(seg, off, bit);
        uint64_t pos = ms->segno * SEG + off;
        size_t min = tu_model_count_ending_by(&ms->m, pos);
        size_t max = ms->m.n;
        if (min < ms->m.n && ms->m.r[min].t.pos <= pos)
            max = min; /* the flip is inside record `min` */
        snprintf(what, sizeof what, "seed %llu trial %u: bit %u of file offset %llu flipped",
                 (unsigned long long)job->seed, trial, bit, (unsigned long long)off);
        check_damaged(dir, ms, min, max, 2000000 + 2 * trial, &scratch, what);
    }
    tu_model_free(&scratch);
    tu_rm_rf(dir);
}

static void test_bit_flips(void)
{
    struct flip_job job;
    job.seed = tu_seed(0xf11b5);
    job.trials = 200;
    tu_note("seed %llu, %u trials", (unsigned long long)job.seed, job.trials);
    build_master(&job.ms);
    run_workers(worker_count(), flip_worker, &job);
    free_master(&job.ms);
}

/* Segment files whose length is not a multiple of 4096. */
static void test_odd_lengths(void)
{
    struct master ms;
    build_master(&ms);
    struct tu_model scratch;
    tu_model_init(&scratch);
    char dir[TU_PATH_MAX], seg[TU_PATH_MAX];
    tu_path(dir, "work");
    tu_segment_path(seg, dir, ms.segno);

    /* Cut short after the end of the data: nothing is lost. */
    tu_dir_image_restore(&ms.image, dir);
    tu_truncate(seg, ms.file_end + 1000);
    check_damaged(dir, &ms, ms.m.n, ms.m.n, 500, &scratch, "cut at end + 1000");

    /* Cut short inside the last block. */
    tu_dir_image_restore(&ms.image, dir);
    tu_truncate(seg, ms.file_end - 1000);
    size_t n = tu_model_count_ending_by(&ms.m, ms.end - 1000);
    check_damaged(dir, &ms, n, n, 600, &scratch, "cut at end - 1000");

    /* Longer than a segment, by an odd amount of zeros. */
    tu_dir_image_restore(&ms.image, dir);
    tu_truncate(seg, SEG + 1234);
    check_damaged(dir, &ms, ms.m.n, ms.m.n, 700, &scratch, "extended to segment + 1234");

    /* A log whose only segment is shorter than its header plus a block, then
     * used for a while: the writer fills it and goes on to new segments. */
    char small[TU_PATH_MAX], seg0[TU_PATH_MAX];
    tu_path(small, "small");
    tu_segment_path(seg0, small, 0);
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(small, &o);
    struct tu_model m;
    tu_model_init(&m);
    CHECK_OK(tu_append(log, &m, 1, 100));
    CHECK_OK(wal_commit(log));
    uint64_t end = m.r[0].t.end;
    CHECK_OK(wal_close(log));
    tu_truncate(seg0, end + 333);
    o.create = 0;
    for (int round = 0; round < 3; round++) {
        log = TU_OPEN(small, &o);
        READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
        for (int i = 0; i < 20; i++)
            CHECK_OK(tu_append(log, &m, m.n + 1, 1000 + 777 * (size_t)i));
        CHECK_OK(wal_commit(log));
        uint64_t durable = wal_durable_pos(log);
        CHECK_OK(wal_close(log));
        /* Leave the last segment with an odd length again. */
        char last[TU_PATH_MAX];
        uint64_t off = durable - (durable - 1) / SEG * SEG;
        tu_segment_path(last, small, (durable - 1) / SEG);
        if (off + BLOCK + 77 < SEG)
            tu_truncate(last, off + BLOCK + 77);
    }
    REOPEN_CHECK(small, &o, &m);

    tu_model_free(&m);
    tu_model_free(&scratch);
    free_master(&ms);
}

/* A damaged segment header is corruption, not a segment never used: open
 * refuses the log (-EUCLEAN) and changes no file. A segment file with no
 * header and no frame (made, never written) is only a spare. */
static void test_segment_headers(void)
{
    char dir[TU_PATH_MAX], copy[TU_PATH_MAX], seg[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    while (wal_durable_pos(log) < 2 * SEG + SEG / 2) {
        CHECK_OK(tu_append(log, &m, id++, 3000));
        CHECK_OK(wal_commit(log));
    }
    CHECK_OK(wal_close(log));
    o.create = 0;
    const uint64_t last = 2;

    static const struct {
        const char *what;
        uint64_t segno;
        int zero; /* zero the header instead of flipping a bit */
    } cases[] = {
        {"bit flip in the last segment's header", 2, 0},
        {"bit flip in the first segment's header", 0, 0},
        {"zeroed header of the last segment", 2, 1},
        {"zeroed header of a middle segment", 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_path(copy, "copy%zu", i);
        tu_copy_dir(dir, copy);
        tu_segment_path(seg, copy, cases[i].segno);
        if (cases[i].zero)
            tu_zero_range(seg, 0, 48);
        else
            tu_flip_bit(seg, 20, 1);
        wal *bad = NULL;
        int rc = wal_open(copy, &o, &bad);
        CHECKF(rc == -EUCLEAN, "%s: wal_open returned %d (%s)", cases[i].what, rc,
               tu_strerror(rc));
        CHECK_EQ_U(tu_count_files(copy, "", ".wal"), last + 1);
        CHECK_EQ_U(tu_count_files(copy, "spare-", ".wal"), 0);
    }

    /* A made but never written segment 3: a spare, and the log goes on. */
    tu_segment_path(seg, dir, last + 1);
    static uint8_t zeros[SEG];
    FILE *made = fopen(seg, "w");
    CHECK(made != NULL);
    CHECK(fclose(made) == 0);
    tu_pwrite_file(seg, zeros, sizeof zeros, 0);
    log = TU_OPEN(dir, &o);
    CHECK(!tu_exists(seg));
    CHECK_EQ_U(tu_count_files(dir, "spare-", ".wal"), 1);
    READ_CHECK(log, wal_first_pos(log), &m, 0, m.n, m.n, NULL);
    CHECK_OK(tu_append(log, &m, id++, 3000));
    CHECK_OK(wal_close(log));
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("truncated_tail", test_truncated_tail);
    tu_run("zeroed_tail", test_zeroed_tail);
    tu_run("bit_flips", test_bit_flips);
    tu_run("odd_lengths", test_odd_lengths);
    tu_run("segment_headers", test_segment_headers);
    return tu_finish();
}
