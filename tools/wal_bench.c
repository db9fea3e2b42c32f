/*
 * wal_bench - the commit rate and latency of the write-ahead log, beside a raw
 * baseline measured by the same harness in the same run.
 *
 * A commit here is what a durable put costs the store: wal_append() of one
 * record then wal_commit_to() its end. The baseline is the least any log can
 * do for the same record: pwrite() it at the next offset of a preallocated
 * file and fdatasync(). Preallocated by writing zeros, not by fallocate(),
 * because fdatasync() after a write into an unwritten extent also commits the
 * filesystem's journal, which would flatter the log by slowing the baseline.
 *
 * This machine's runs vary by 20-30 %, so the two targets alternate within a
 * round and the figures reported are medians over several rounds.
 *
 * This file measures: workloads, threads, rounds. wal_bench.h and
 * wal_bench_options.c hold the command line; wal_bench_results.c sums the
 * rounds up and reports them (table, ratios, JSON); bench_report.c the
 * reporting that does not depend on what is measured (medians, percentiles,
 * ratios, JSON helpers); bench_fs.c the scratch directory and file chores.
 */
#ifndef _GNU_SOURCE /* the build defines it; this is for a compile by hand */
#define _GNU_SOURCE /* O_DIRECT */
#endif

#include "wal_bench.h"

#include "bench_fs.h"
#include "bench_report.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Enough for 2 s runs at any rate this disk allows; longer runs keep a
 * uniform sample (reservoir sampling) rather than allocate as they go. */
#define SAMPLES_PER_THREAD ((size_t)1 << 18)
#define ZERO_CHUNK_BYTES ((size_t)1 << 20)

const char *const target_names[TARGET_COUNT] = {"raw", "wal"};

enum gate { GATE_CLOSED, GATE_OPEN, GATE_ABORT };

/* What the threads of one run share. */
struct run {
    enum target target;
    uint64_t size;
    unsigned threads;
    wal *log;
    int raw_direct;
    uint64_t raw_bytes;
    uint64_t count;
    uint64_t duration_ns;
    uint64_t release_ns;
    atomic_bool stop;
    atomic_bool workers_done; /* tells the releaser to finish */
    int release_error;
    uint64_t releases;
    /* Holds the threads until all exist, so they start together, and lets
     * them go home if one could not be made. */
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    enum gate gate;
};

struct worker {
    pthread_t thread;
    struct run *run;
    unsigned char *record; /* aligned for O_DIRECT, reused by every run */
    int raw_fd;            /* this thread's own preallocated file */
    uint64_t raw_off;      /* where its next record goes; survives runs */
    uint64_t *samples;
    size_t sample_count;
    uint64_t rng;
    /* Filled by each run. */
    uint64_t commits;
    uint64_t raw_bytes_written;
    uint64_t start_ns;
    uint64_t end_ns;
    int error;
    const char *failed_call;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t round_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static void report_failure(const char *call, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", PROGRAM, call, strerror(-rc));
}

/* ---- Raw files and logs ---- */

/* Makes raw file `index` and preallocates it by writing zeros, so that the
 * baseline's writes overwrite blocks the file owns, as writes into reused log
 * segments do. */
static int make_raw_file(struct bench *b, unsigned index, const void *zeros, int *fd_out)
{
    char name[32];
    snprintf(name, sizeof name, "raw-%u", index);
    int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC;
    int fd = openat(b->scratch_fd, name, flags | (b->raw_direct ? O_DIRECT : 0), 0644);
    if (fd < 0 && errno == EINVAL && b->raw_direct) {
        fprintf(stderr, "%s: O_DIRECT refused here; the raw baseline uses buffered writes\n",
                PROGRAM);
        b->raw_direct = 0;
        fd = openat(b->scratch_fd, name, flags, 0644);
    }
    if (fd < 0) {
        int rc = -errno;
        report_failure("open (raw file)", rc);
        return rc;
    }
    int rc = bench_write_zeros(fd, zeros, ZERO_CHUNK_BYTES, b->raw_bytes);
    if (rc == -EINVAL && b->raw_direct) {
        /* Some filesystems accept O_DIRECT at open and refuse the writes. */
        fprintf(stderr, "%s: O_DIRECT writes refused here; the raw baseline uses buffered writes\n",
                PROGRAM);
        b->raw_direct = 0;
        rc = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT) < 0 ? -errno : 0;
        if (rc == 0)
            rc = bench_write_zeros(fd, zeros, ZERO_CHUNK_BYTES, b->raw_bytes);
    }
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    if (rc < 0) {
        report_failure("preallocating a raw file", rc);
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static void log_message(void *ctx, const char *message)
{
    (void)ctx;
    fprintf(stderr, "%s: %s\n", PROGRAM, message);
}

static int open_log(struct bench *b, uint64_t size, wal **out)
{
    char path[PATH_MAX + 32];
    int len = snprintf(path, sizeof path, "%s/wal-%" PRIu64, b->scratch, size);
    if (len < 0 || (size_t)len >= sizeof path) {
        report_failure("wal_open", -ENAMETOOLONG);
        return -ENAMETOOLONG;
    }
    struct wal_options options;
    wal_options_init(&options);
    options.create = 1;
    options.direct_io = b->cfg.direct;
    if (b->cfg.ring_bytes)
        options.ring_bytes = (size_t)b->cfg.ring_bytes;
    if (b->cfg.segment_bytes)
        options.segment_bytes = b->cfg.segment_bytes;
    if (b->cfg.spare_segments >= 0)
        options.spare_segments = (unsigned)b->cfg.spare_segments;
    b->spare_segments = options.spare_segments;
    options.log = log_message;
    b->ring_bytes = options.ring_bytes;
    int rc = wal_open(path, &options, out);
    if (rc < 0)
        report_failure("wal_open", rc);
    return rc;
}

/* ---- Runs ---- */

static uint64_t next_random(uint64_t *state)
{
    /* splitmix64: plenty for sampling and filler bytes */
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static void record_sample(struct worker *w, uint64_t ns)
{
    if (w->sample_count < SAMPLES_PER_THREAD) {
        w->samples[w->sample_count++] = ns;
        return;
    }
    /* Reservoir sampling: commit k replaces a kept sample with probability
     * SAMPLES_PER_THREAD / k, so the kept ones stay a uniform sample. */
    uint64_t slot = next_random(&w->rng) % w->commits;
    if (slot < SAMPLES_PER_THREAD)
        w->samples[slot] = ns;
}

static int commit_wal_record(struct worker *w, const char **call)
{
    struct run *run = w->run;
    struct wal_ticket ticket;
    int rc = wal_append(run->log, w->record, (size_t)run->size, &ticket);
    if (rc < 0) {
        *call = "wal_append";
        return rc;
    }
    rc = wal_commit_to(run->log, ticket.end);
    if (rc < 0) {
        *call = "wal_commit_to";
        return rc;
    }
    return 0;
}

static int commit_raw_record(struct worker *w, const char **call)
{
    struct run *run = w->run;
    uint64_t start = w->raw_off, end = w->raw_off + run->size;
    if (run->raw_direct) {
        start = start / BLOCK_BYTES * BLOCK_BYTES;
        end = round_up(end, BLOCK_BYTES);
    }
    if (end > run->raw_bytes) {
        w->raw_off = 0;
        start = 0;
        end = run->raw_direct ? round_up(run->size, BLOCK_BYTES) : run->size;
    }
    size_t len = (size_t)(end - start);
    ssize_t n = pwrite(w->raw_fd, w->record, len, (off_t)start);
    if (n < 0) {
        *call = "pwrite";
        return -errno;
    }
    if ((size_t)n != len) {
        *call = "pwrite (short write)";
        return -EIO;
    }
    if (fdatasync(w->raw_fd) != 0) {
        *call = "fdatasync";
        return -errno;
    }
    w->raw_off += run->size;
    w->raw_bytes_written += len;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *run = w->run;

    pthread_mutex_lock(&run->gate_lock);
    while (run->gate == GATE_CLOSED)
        pthread_cond_wait(&run->gate_cond, &run->gate_lock);
    bool go = run->gate == GATE_OPEN;
    pthread_mutex_unlock(&run->gate_lock);

    uint64_t now = now_ns();
    w->start_ns = now;
    uint64_t deadline = now + run->duration_ns;
    while (go && !interrupted && !atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        if (run->count ? w->commits >= run->count : now >= deadline)
            break;
        const char *call = NULL;
        uint64_t before = now_ns();
        int rc =
            run->target == TARGET_WAL ? commit_wal_record(w, &call) : commit_raw_record(w, &call);
        now = now_ns();
        if (rc < 0) {
            w->error = rc;
            w->failed_call = call;
            atomic_store(&run->stop, true);
            break;
        }
        w->commits++;
        record_sample(w, now - before);
    }
    w->end_ns = now;
    return NULL;
}

/* Stands in for the store's checkpoint: frees what is durable while the
 * writers go on, so the log reuses its segments rather than grow. */
static void *releaser_main(void *arg)
{
    struct run *run = arg;
    struct timespec pause = {
        .tv_sec = (time_t)(run->release_ns / 1000000000u),
        .tv_nsec = (long)(run->release_ns % 1000000000u),
    };
    while (!atomic_load(&run->workers_done)) {
        nanosleep(&pause, NULL);
        int rc = wal_release(run->log, wal_durable_pos(run->log));
        if (rc < 0) {
            run->release_error = rc;
            atomic_store(&run->stop, true);
            break;
        }
        run->releases++;
    }
    return NULL;
}

/* Runs the workers (and for the log, the releaser) to the end. */
static int run_threads(struct bench *b, struct run *run)
{
    pthread_t releaser;
    bool releasing = false;
    int rc = 0;
    if (run->target == TARGET_WAL && run->release_ns > 0) {
        rc = -pthread_create(&releaser, NULL, releaser_main, run);
        if (rc < 0) {
            report_failure("pthread_create", rc);
            return rc;
        }
        releasing = true;
    }

    unsigned made = 0;
    for (; made < run->threads; made++) {
        struct worker *w = &b->workers[made];
        w->run = run;
        w->sample_count = 0;
        w->commits = 0;
        w->raw_bytes_written = 0;
        w->error = 0;
        w->failed_call = NULL;
        rc = -pthread_create(&w->thread, NULL, worker_main, w);
        if (rc < 0)
            break;
    }
    pthread_mutex_lock(&run->gate_lock);
    run->gate = rc < 0 ? GATE_ABORT : GATE_OPEN;
    pthread_cond_broadcast(&run->gate_cond);
    pthread_mutex_unlock(&run->gate_lock);
    for (unsigned i = 0; i < made; i++)
        pthread_join(b->workers[i].thread, NULL);
    atomic_store(&run->workers_done, true);
    if (releasing)
        pthread_join(releaser, NULL);
    if (rc < 0)
        report_failure("pthread_create", rc);
    else if (run->release_error < 0) {
        report_failure("wal_release", run->release_error);
        rc = run->release_error;
    }
    return rc;
}

/* One timed run of `threads` threads on `target`. With the log, its segments
 * are released afterwards, so the next run reuses them. */
static int run_once(struct bench *b, enum target target, uint64_t size, unsigned threads, wal *log,
                    struct run_result *out)
{
    struct run run = {
        .target = target,
        .size = size,
        .threads = threads,
        .log = log,
        .raw_direct = b->raw_direct,
        .raw_bytes = b->raw_bytes,
        .count = b->cfg.count,
        .duration_ns = (uint64_t)(b->cfg.seconds * 1e9),
        .release_ns = (uint64_t)b->cfg.release_ms * 1000000u,
        .gate = GATE_CLOSED,
    };
    atomic_init(&run.stop, false);
    atomic_init(&run.workers_done, false);
    pthread_mutex_init(&run.gate_lock, NULL);
    pthread_cond_init(&run.gate_cond, NULL);

    struct wal_stats before = {0}, after = {0};
    if (target == TARGET_WAL)
        wal_stats(log, &before);
    int rc = run_threads(b, &run);
    pthread_cond_destroy(&run.gate_cond);
    pthread_mutex_destroy(&run.gate_lock);
    if (rc < 0)
        return rc;

    for (unsigned i = 0; i < threads; i++) {
        if (b->workers[i].error < 0) {
            report_failure(b->workers[i].failed_call, b->workers[i].error);
            return b->workers[i].error;
        }
    }
    if (interrupted) {
        fprintf(stderr, "%s: interrupted\n", PROGRAM);
        return -EINTR;
    }

    *out = (struct run_result){0};
    uint64_t first_start = UINT64_MAX, last_end = 0;
    size_t merged = 0;
    for (unsigned i = 0; i < threads; i++) {
        struct worker *w = &b->workers[i];
        out->commits += w->commits;
        out->bytes_written += w->raw_bytes_written;
        if (w->start_ns < first_start)
            first_start = w->start_ns;
        if (w->end_ns > last_end)
            last_end = w->end_ns;
        memcpy(b->merged + merged, w->samples, w->sample_count * sizeof *w->samples);
        merged += w->sample_count;
    }
    bench_sort_samples(b->merged, merged);
    out->seconds = (double)(last_end - first_start) / 1e9;
    out->rate = out->seconds > 0 ? (double)out->commits / out->seconds : 0;
    out->p50_us = bench_percentile_us(b->merged, merged, 50);
    out->p99_us = bench_percentile_us(b->merged, merged, 99);

    if (target == TARGET_RAW) {
        out->syncs = out->commits;
        return 0;
    }
    wal_stats(log, &after);
    out->syncs = after.syncs - before.syncs;
    out->commits_shared = after.commits_shared - before.commits_shared;
    out->bytes_written = after.bytes_written - before.bytes_written;
    out->segments_created = after.segments_created - before.segments_created;
    out->segments_reused = after.segments_reused - before.segments_reused;
    out->releases = run.releases;
    b->wal_direct = after.direct_io;
    rc = wal_release(log, wal_durable_pos(log));
    if (rc < 0)
        report_failure("wal_release", rc);
    return rc;
}

static void print_run(uint64_t size, unsigned threads, enum target target,
                      const struct run_result *r, const char *label)
{
    char size_text[32];
    bench_print_size(size_text, sizeof size_text, size);
    fprintf(stderr,
            "%s: %s %s x %u %s: %.0f commits/s, p50 %.1f us, p99 %.1f us, %" PRIu64
            " syncs, %" PRIu64 " new segments\n",
            PROGRAM, label, size_text, threads, target_names[target], r->rate, r->p50_us, r->p99_us,
            r->syncs, r->segments_created);
}

struct run_result *result_at(struct bench *b, unsigned size_i, unsigned thread_i,
                             enum target target, unsigned round)
{
    size_t cell = ((size_t)size_i * b->cfg.thread_count + thread_i) * TARGET_COUNT + target;
    return &b->results[cell * b->cfg.rounds + round];
}

static int run_all(struct bench *b)
{
    const struct config *cfg = &b->cfg;
    unsigned max_threads = 0;
    for (unsigned i = 0; i < cfg->thread_count; i++)
        if (cfg->threads[i] > max_threads)
            max_threads = cfg->threads[i];

    if (cfg->warmup) {
        for (unsigned s = 0; s < cfg->size_count; s++) {
            struct run_result warm;
            int rc = run_once(b, TARGET_WAL, cfg->sizes[s], max_threads, b->logs[s], &warm);
            if (rc < 0)
                return rc;
            if (cfg->verbose)
                print_run(cfg->sizes[s], max_threads, TARGET_WAL, &warm, "warm-up");
        }
    }

    for (unsigned round = 0; round < cfg->rounds; round++) {
        fprintf(stderr, "%s: round %u of %u\n", PROGRAM, round + 1, cfg->rounds);
        for (unsigned s = 0; s < cfg->size_count; s++) {
            for (unsigned t = 0; t < cfg->thread_count; t++) {
                /* Flipping the order each round keeps a drift in the
                 * machine's speed from favouring one target. */
                enum target first = round % 2 == 0 ? TARGET_RAW : TARGET_WAL;
                for (unsigned k = 0; k < TARGET_COUNT; k++) {
                    enum target target = k == 0 ? first : (enum target)(TARGET_COUNT - 1 - first);
                    struct run_result *r = result_at(b, s, t, target, round);
                    wal *log = target == TARGET_WAL ? b->logs[s] : NULL;
                    int rc = run_once(b, target, cfg->sizes[s], cfg->threads[t], log, r);
                    if (rc < 0)
                        return rc;
                    if (cfg->verbose)
                        print_run(cfg->sizes[s], cfg->threads[t], target, r, "run");
                }
            }
        }
    }
    return 0;
}

/* ---- Setup and teardown ---- */

static int setup(struct bench *b)
{
    const struct config *cfg = &b->cfg;
    int len = snprintf(b->scratch, sizeof b->scratch, "%s/wal-bench.XXXXXX", cfg->parent_dir);
    if (len < 0 || (size_t)len >= sizeof b->scratch) {
        report_failure("mkdtemp", -ENAMETOOLONG);
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(b->scratch)) {
        int rc = -errno;
        fprintf(stderr, "%s: mkdtemp in %s: %s\n", PROGRAM, cfg->parent_dir, strerror(-rc));
        return rc;
    }
    b->scratch_made = true;
    b->fs_name = bench_filesystem_name(b->scratch);
    b->scratch_fd = open(b->scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->scratch_fd < 0) {
        int rc = -errno;
        report_failure("open (scratch directory)", rc);
        return rc;
    }

    uint64_t max_size = 0;
    for (unsigned i = 0; i < cfg->size_count; i++)
        if (cfg->sizes[i] > max_size)
            max_size = cfg->sizes[i];
    b->max_threads = 0;
    for (unsigned i = 0; i < cfg->thread_count; i++)
        if (cfg->threads[i] > b->max_threads)
            b->max_threads = cfg->threads[i];

    /* Logs first: the raw files take the size of the log's segments. */
    b->logs = calloc(cfg->size_count, sizeof *b->logs);
    if (!b->logs) {
        report_failure("calloc", -ENOMEM);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < cfg->size_count; i++) {
        int rc = open_log(b, cfg->sizes[i], &b->logs[i]);
        if (rc < 0)
            return rc;
    }
    struct wal_stats stats;
    wal_stats(b->logs[0], &stats);
    b->segment_bytes = stats.segment_bytes;
    b->wal_direct = stats.direct_io;

    /* A record straddling blocks spans one block more than its rounded size;
     * the file must hold at least two such, so that wrapping is rare. */
    b->record_buf_bytes = round_up(max_size, BLOCK_BYTES) + BLOCK_BYTES;
    b->raw_bytes = b->segment_bytes;
    if (b->raw_bytes < 2 * b->record_buf_bytes)
        b->raw_bytes = 2 * b->record_buf_bytes;
    b->raw_direct = cfg->direct;

    b->workers = calloc(b->max_threads, sizeof *b->workers);
    b->merged = malloc((size_t)b->max_threads * SAMPLES_PER_THREAD * sizeof *b->merged);
    size_t runs = (size_t)cfg->size_count * cfg->thread_count * TARGET_COUNT * cfg->rounds;
    b->results = calloc(runs, sizeof *b->results);
    if (!b->workers || !b->merged || !b->results) {
        report_failure("malloc", -ENOMEM);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < b->max_threads; i++)
        b->workers[i].raw_fd = -1;

    void *zeros;
    if (posix_memalign(&zeros, BLOCK_BYTES, ZERO_CHUNK_BYTES) != 0) {
        report_failure("posix_memalign", -ENOMEM);
        return -ENOMEM;
    }
    memset(zeros, 0, ZERO_CHUNK_BYTES);
    int rc = 0;
    for (unsigned i = 0; i < b->max_threads && rc == 0; i++) {
        struct worker *w = &b->workers[i];
        w->rng = 0x6D696E6462u + i;
        w->samples = malloc(SAMPLES_PER_THREAD * sizeof *w->samples);
        void *record;
        if (!w->samples || posix_memalign(&record, BLOCK_BYTES, b->record_buf_bytes) != 0) {
            report_failure("malloc", -ENOMEM);
            rc = -ENOMEM;
            break;
        }
        w->record = record;
        /* Random bytes, so that nothing on the way can shortcut zeros. */
        for (uint64_t off = 0; off < b->record_buf_bytes; off += 8) {
            uint64_t x = next_random(&w->rng);
            memcpy(w->record + off, &x, 8);
        }
        rc = make_raw_file(b, i, zeros, &w->raw_fd);
    }
    free(zeros);
    return rc;
}

static int teardown(struct bench *b)
{
    int status = 0;
    if (b->logs) {
        for (unsigned i = 0; i < b->cfg.size_count; i++) {
            if (!b->logs[i])
                continue;
            int rc = wal_close(b->logs[i]);
            if (rc < 0) {
                report_failure("wal_close", rc);
                status = 1;
            }
        }
        free(b->logs);
    }
    if (b->workers) {
        for (unsigned i = 0; i < b->max_threads; i++) {
            if (b->workers[i].raw_fd >= 0)
                close(b->workers[i].raw_fd);
            free(b->workers[i].samples);
            free(b->workers[i].record);
        }
        free(b->workers);
    }
    free(b->merged);
    free(b->results);
    if (b->scratch_fd >= 0)
        close(b->scratch_fd);
    if (b->scratch_made) {
        int rc = bench_remove_tree(AT_FDCWD, b->scratch);
        if (rc < 0) {
            fprintf(stderr, "%s: removing %s: %s\n", PROGRAM, b->scratch, strerror(-rc));
            status = 1;
        }
    }
    return status;
}

int main(int argc, char **argv)
{
    struct bench b = {.scratch_fd = -1};
    int status = parse_args(argc, argv, &b.cfg);
    if (status >= 0)
        return status;

    /* Stop at the end of the current commit and clean up, rather than leave
     * the scratch directory behind. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    FILE *json = NULL;
    if (b.cfg.json_path) {
        json = fopen(b.cfg.json_path, "w");
        if (!json) {
            fprintf(stderr, "%s: fopen %s: %s\n", PROGRAM, b.cfg.json_path, strerror(errno));
            return 1;
        }
    }

    status = 0;
    if (setup(&b) < 0 || run_all(&b) < 0) {
        status = 1;
    } else {
        print_results(&b);
        if (json) {
            if (write_json(&b, json) < 0)
                status = 1;
            json = NULL;
        }
    }
    if (json) {
        /* No results: an empty file would pass for some. */
        fclose(json);
        unlink(b.cfg.json_path);
    }
    if (teardown(&b) != 0)
        status = 1;
    return status;
}
