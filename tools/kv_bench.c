/*
 * kv_bench - the same key-value workloads on mindb and on the peer stores
 * built in (RocksDB, LevelDB, LMDB, SQLite), with a raw-disk floor for
 * durable puts, so that one run prints mindb beside them.
 *
 * This machine's runs vary by 20-30 %, so within a round every workload runs
 * on each engine in turn (the first engine rotating from round to round) and
 * the figures reported are medians over rounds; a ratio is the median of the
 * per-round ratios, which cancels a drift of the machine's speed.
 *
 * What is timed is what a user waits for: the operations, and for a fill
 * the sync that makes it durable. Opening and closing are not timed (closing
 * is recorded), because the stores put different work there (RocksDB and
 * LevelDB flush their memtables at close or not at all, mindb checkpoints).
 *
 * This file decides what runs where: rounds, engines in turn, directories,
 * and the stores the read workloads share; kv_workloads.c runs each
 * workload on an open store. kv_bench.h says how the files divide the rest.
 */
#ifndef _GNU_SOURCE /* the build defines it; this is for a compile by hand */
#define _GNU_SOURCE
#endif

#include "kv_bench.h"

#include "bench_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void on_signal(int sig)
{
    (void)sig;
    kv_interrupted = 1;
}

struct kv_run *kv_run_at(struct kv_bench *b, enum kv_measure m, unsigned engine, unsigned round)
{
    size_t cell = (size_t)m * b->cfg.engine_count + engine;
    return &b->runs[cell * b->cfg.rounds + round];
}

bool kv_engine_measures(const struct kv_backend *e, enum kv_measure m)
{
    return e->get || m == M_FILLSYNC || m == M_FILLSYNC8;
}

int kv_mindb_index(const struct kv_config *cfg)
{
    for (unsigned i = 0; i < cfg->engine_count; i++)
        if (strcmp(cfg->engines[i]->name, "mindb") == 0)
            return (int)i;
    return -1;
}

/* ---- Directories and reports ---- */

static int run_dir(struct kv_harness *h, unsigned round, const struct kv_backend *e,
                   const char *what, char *out, size_t out_len)
{
    int len = snprintf(out, out_len, "%s/r%u-%s-%s", h->b->scratch, round + 1, e->name, what);
    if (len < 0 || (size_t)len >= out_len)
        return kv_report_errno(e->name, "naming a directory", -ENAMETOOLONG);
    if (mkdir(out, 0755) != 0)
        return kv_report_errno(e->name, "mkdir", -errno);
    return 0;
}

/* Removes a run's directory, unless --keep asks to keep the last round's. */
static void drop_dir(struct kv_harness *h, unsigned round, const char *dir)
{
    if (h->b->cfg.keep && round + 1 == h->b->cfg.rounds)
        return;
    int rc = bench_remove_tree(AT_FDCWD, dir);
    if (rc < 0)
        fprintf(stderr, "%s: removing %s: %s\n", PROGRAM, dir, strerror(-rc));
}

static struct kv_open_options open_options(struct kv_harness *h, bool sync_puts, unsigned sessions,
                                           uint64_t data_bytes, uint64_t max_puts)
{
    return (struct kv_open_options){
        .sync_puts = sync_puts,
        .sessions = sessions,
        .data_bytes = data_bytes,
        .max_puts = max_puts,
        .persist_dir = h->rawdisk_dir,
    };
}

static void note_failure(struct kv_harness *h, struct kv_run *run, const struct kv_backend *e,
                         enum kv_measure m, unsigned round, int rc)
{
    if (run) {
        run->ran = true;
        run->failed = true;
    }
    h->b->any_failed = true;
    fprintf(stderr, "%s: %s %s, round %u: failed (%s)\n", PROGRAM, e->name, kv_measure_names[m],
            round + 1, rc == -EINTR ? "kv_interrupted" : strerror(-rc));
}

static void print_run(const struct kv_backend *e, enum kv_measure m, unsigned round,
                      const struct kv_run *run)
{
    fprintf(stderr,
            "%s: round %u %-11s %-8s %10.0f ops/s %8.2f MB/s (%" PRIu64 " ops in %.3f s, "
            "close %.3f s)\n",
            PROGRAM, round + 1, kv_measure_names[m], e->name, (double)run->ops / run->seconds,
            (double)run->bytes / run->seconds / 1e6, run->ops, run->seconds, run->close_seconds);
}

/* ---- Phases: one workload on every engine in turn ---- */

/* The engine that runs k-th in `round`: the first one rotates. */
static unsigned engine_at(const struct kv_config *cfg, unsigned round, unsigned k)
{
    return (k + round) % cfg->engine_count;
}

static uint64_t fill_bytes(const struct kv_config *cfg, uint64_t n)
{
    return n * (KV_KEY_BYTES + cfg->value_size);
}

static void phase_fillseq(struct kv_harness *h, unsigned round)
{
    const struct kv_config *cfg = &h->b->cfg;
    for (unsigned k = 0; k < cfg->engine_count && !kv_interrupted; k++) {
        unsigned ei = engine_at(cfg, round, k);
        const struct kv_backend *e = cfg->engines[ei];
        if (!kv_engine_measures(e, M_FILLSEQ))
            continue;
        struct kv_run *run = kv_run_at(h->b, M_FILLSEQ, ei, round);
        char dir[PATH_MAX];
        int rc = run_dir(h, round, e, "fillseq", dir, sizeof dir);
        if (rc < 0) {
            note_failure(h, run, e, M_FILLSEQ, round, rc);
            continue;
        }
        struct kv_open_options o = open_options(h, false, 1, fill_bytes(cfg, cfg->keys), 0);
        struct kv_store st;
        rc = kv_store_open(e, dir, &o, &st);
        if (rc == 0) {
            rc = kv_fill(h, &st, NULL, cfg->keys, cfg->value_size, 0, run);
            int close_rc = kv_store_close(&st, &run->close_seconds);
            if (rc == 0)
                rc = close_rc;
        }
        if (rc < 0) {
            note_failure(h, run, e, M_FILLSEQ, round, rc);
        } else {
            run->ran = true;
            if (cfg->verbose)
                print_run(e, M_FILLSEQ, round, run);
        }
        drop_dir(h, round, dir);
    }
}

/* Opens the store of `dir` for one measure on the fillrandom store, runs
 * it, closes it. */
static int on_main_store(struct kv_harness *h, const struct kv_backend *e, const char *dir,
                         enum kv_measure m, struct kv_run *run)
{
    const struct kv_config *cfg = &h->b->cfg;
    struct kv_open_options o = open_options(h, false, 1, fill_bytes(cfg, cfg->keys) * 2, 0);
    struct kv_store st;
    int rc = kv_store_open(e, dir, &o, &st);
    if (rc < 0)
        return rc;
    switch (m) {
    case M_READRANDOM:
        rc = kv_read_keys(h, &st, h->read_order, cfg->keys, cfg->value_size, false, run);
        break;
    case M_READMISSING:
        rc = kv_read_keys(h, &st, h->read_order, cfg->keys, cfg->value_size, true, run);
        break;
    case M_SCAN:
        rc = kv_scan_keys(h, &st, run);
        break;
    case M_OVERWRITE:
        rc = kv_fill(h, &st, h->overwrite_order, cfg->keys, cfg->value_size, 1, run);
        break;
    default:
        rc = -EINVAL;
    }
    int close_rc = kv_store_close(&st, &run->close_seconds);
    return rc < 0 ? rc : close_rc;
}

/* Reopens the store of `dir` after the overwrite and checks, untimed, that
 * keys spread over the whole overwrite order have their new values. */
static int check_overwrite(struct kv_harness *h, const struct kv_backend *e, const char *dir)
{
    const struct kv_config *cfg = &h->b->cfg;
    struct kv_open_options o = open_options(h, false, 1, fill_bytes(cfg, cfg->keys) * 2, 0);
    struct kv_store st;
    int rc = kv_store_open(e, dir, &o, &st);
    if (rc < 0)
        return rc;
    uint64_t step = cfg->keys / 1000 ? cfg->keys / 1000 : 1;
    char key[KV_KEY_BYTES];
    for (uint64_t i = 0; i < cfg->keys && rc == 0; i += step) {
        uint64_t index = h->overwrite_order[i];
        kv_make_key(index, key);
        const void *value;
        size_t len;
        rc = e->get(st.s, key, KV_KEY_BYTES, &value, &len);
        if (rc == 0 && !kv_check_value(cfg->seed, index, 1, value, len, (size_t)cfg->value_size,
                                       h->expected)) {
            kv_report(e->name, "overwrite", "a value read back is not the one put last");
            rc = -EBADMSG;
        } else if (rc == -ENOENT) {
            kv_report(e->name, "overwrite", "a key overwritten is missing");
        }
    }
    int close_rc = kv_store_close(&st, NULL);
    return rc < 0 ? rc : close_rc;
}

static void measure_size(const struct kv_backend *e, const char *dir, struct kv_size *size)
{
    int rc = e->bytes_on_disk(dir, &size->apparent, &size->allocated);
    if (rc < 0)
        kv_report_errno(e->name, "measuring the size on disk", rc);
    else
        size->measured = true;
}

/* fillrandom, then on its stores the reads, scan and overwrite. */
static void phase_main(struct kv_harness *h, unsigned round)
{
    struct kv_bench *b = h->b;
    const struct kv_config *cfg = &b->cfg;
    char dirs[KV_MAX_ENGINES][PATH_MAX];
    bool made[KV_MAX_ENGINES] = {false}, ready[KV_MAX_ENGINES] = {false};

    for (unsigned k = 0; k < cfg->engine_count && !kv_interrupted; k++) {
        unsigned ei = engine_at(cfg, round, k);
        const struct kv_backend *e = cfg->engines[ei];
        if (!e->get)
            continue;
        /* Without fillrandom asked for, the fill still runs, untimed. */
        struct kv_run scratch_run = {0};
        struct kv_run *run =
            cfg->measure_on[M_FILLRANDOM] ? kv_run_at(b, M_FILLRANDOM, ei, round) : &scratch_run;
        int rc = run_dir(h, round, e, "main", dirs[ei], sizeof dirs[ei]);
        made[ei] = rc == 0;
        if (rc == 0) {
            struct kv_open_options o = open_options(h, false, 1, fill_bytes(cfg, cfg->keys) * 2, 0);
            struct kv_store st;
            rc = kv_store_open(e, dirs[ei], &o, &st);
            if (rc == 0) {
                rc = kv_fill(h, &st, h->fill_order, cfg->keys, cfg->value_size, 0, run);
                int close_rc = kv_store_close(&st, &run->close_seconds);
                if (rc == 0)
                    rc = close_rc;
            }
        }
        if (rc < 0) {
            note_failure(h, cfg->measure_on[M_FILLRANDOM] ? run : NULL, e, M_FILLRANDOM, round, rc);
            continue;
        }
        ready[ei] = true;
        measure_size(e, dirs[ei], &b->sizes[ei * cfg->rounds + round]);
        if (cfg->measure_on[M_FILLRANDOM]) {
            run->ran = true;
            if (cfg->verbose)
                print_run(e, M_FILLRANDOM, round, run);
        }
    }

    /* Overwrite last: the reads check the values of the fill. */
    static const enum kv_measure on_main[] = {M_READRANDOM, M_READMISSING, M_SCAN, M_OVERWRITE};
    for (unsigned i = 0; i < sizeof on_main / sizeof on_main[0]; i++) {
        enum kv_measure m = on_main[i];
        if (!cfg->measure_on[m])
            continue;
        for (unsigned k = 0; k < cfg->engine_count && !kv_interrupted; k++) {
            unsigned ei = engine_at(cfg, round, k);
            const struct kv_backend *e = cfg->engines[ei];
            if (!e->get)
                continue;
            struct kv_run *run = kv_run_at(b, m, ei, round);
            if (!ready[ei]) {
                run->ran = run->failed = true; /* its fill failed, and said so */
                continue;
            }
            int rc = on_main_store(h, e, dirs[ei], m, run);
            if (rc == 0 && m == M_OVERWRITE)
                rc = check_overwrite(h, e, dirs[ei]);
            if (rc < 0) {
                note_failure(h, run, e, m, round, rc);
                continue;
            }
            run->ran = true;
            if (m == M_OVERWRITE)
                measure_size(e, dirs[ei], &b->ow_sizes[ei * cfg->rounds + round]);
            if (cfg->verbose)
                print_run(e, m, round, run);
        }
    }

    for (unsigned ei = 0; ei < cfg->engine_count; ei++)
        if (made[ei])
            drop_dir(h, round, dirs[ei]);
}

static void phase_fillsync(struct kv_harness *h, unsigned round, enum kv_measure m)
{
    const struct kv_config *cfg = &h->b->cfg;
    unsigned threads = m == M_FILLSYNC ? 1 : cfg->threads;
    for (unsigned k = 0; k < cfg->engine_count && !kv_interrupted; k++) {
        unsigned ei = engine_at(cfg, round, k);
        const struct kv_backend *e = cfg->engines[ei];
        struct kv_run *run = kv_run_at(h->b, m, ei, round);
        char dir[PATH_MAX];
        int rc = run_dir(h, round, e, kv_measure_names[m], dir, sizeof dir);
        if (rc < 0) {
            note_failure(h, run, e, m, round, rc);
            continue;
        }
        uint64_t per_thread = (cfg->sync_ops + threads - 1) / threads;
        struct kv_open_options o =
            open_options(h, true, threads, fill_bytes(cfg, cfg->sync_ops), per_thread);
        struct kv_db *db;
        rc = e->open(dir, &o, &db);
        if (rc == 0) {
            rc = kv_fill_sync(h, e, db, threads, run);
            double start = kv_now();
            int close_rc = e->close(db);
            run->close_seconds = kv_now() - start;
            if (rc == 0)
                rc = close_rc;
        }
        if (rc < 0) {
            note_failure(h, run, e, m, round, rc);
        } else {
            run->ran = true;
            if (cfg->verbose)
                print_run(e, m, round, run);
        }
        drop_dir(h, round, dir);
    }
}

/* Writes big values into a fresh store, syncs, reopens, reads them back. */
static int big_values(struct kv_harness *h, const struct kv_backend *e, const char *dir,
                      struct kv_run *write_run, struct kv_run *read_run)
{
    const struct kv_config *cfg = &h->b->cfg;
    struct kv_open_options o = open_options(h, false, 1, cfg->big_count * cfg->big_size, 0);
    struct kv_store st;
    int rc = kv_store_open(e, dir, &o, &st);
    if (rc < 0)
        return rc;
    rc = kv_fill(h, &st, NULL, cfg->big_count, cfg->big_size, 0, write_run);
    int close_rc = kv_store_close(&st, &write_run->close_seconds);
    if (rc < 0 || close_rc < 0)
        return rc < 0 ? rc : close_rc;
    write_run->ran = true;
    rc = kv_store_open(e, dir, &o, &st);
    if (rc < 0)
        return rc;
    rc = kv_read_keys(h, &st, h->big_order, cfg->big_count, cfg->big_size, false, read_run);
    close_rc = kv_store_close(&st, &read_run->close_seconds);
    if (rc == 0 && close_rc == 0)
        read_run->ran = true;
    return rc < 0 ? rc : close_rc;
}

static void phase_bigvalues(struct kv_harness *h, unsigned round)
{
    const struct kv_config *cfg = &h->b->cfg;
    for (unsigned k = 0; k < cfg->engine_count && !kv_interrupted; k++) {
        unsigned ei = engine_at(cfg, round, k);
        const struct kv_backend *e = cfg->engines[ei];
        if (!e->get)
            continue;
        struct kv_run *w = kv_run_at(h->b, M_BIGWRITE, ei, round);
        struct kv_run *r = kv_run_at(h->b, M_BIGREAD, ei, round);
        char dir[PATH_MAX];
        int rc = run_dir(h, round, e, "bigvalues", dir, sizeof dir);
        bool made = rc == 0;
        if (made)
            rc = big_values(h, e, dir, w, r);
        if (rc < 0) {
            enum kv_measure m = w->ran ? M_BIGREAD : M_BIGWRITE;
            note_failure(h, w->ran ? r : w, e, m, round, rc);
            if (!w->ran)
                r->ran = r->failed = true;
        } else if (cfg->verbose) {
            print_run(e, M_BIGWRITE, round, w);
            print_run(e, M_BIGREAD, round, r);
        }
        if (made)
            drop_dir(h, round, dir);
    }
}

static int run_all(struct kv_harness *h)
{
    const struct kv_config *cfg = &h->b->cfg;
    const bool *on = cfg->measure_on;
    for (unsigned round = 0; round < cfg->rounds && !kv_interrupted; round++) {
        fprintf(stderr, "%s: round %u of %u\n", PROGRAM, round + 1, cfg->rounds);
        if (on[M_FILLSEQ])
            phase_fillseq(h, round);
        if (on[M_FILLRANDOM] || on[M_OVERWRITE] || on[M_READRANDOM] || on[M_READMISSING] ||
            on[M_SCAN])
            phase_main(h, round);
        if (on[M_FILLSYNC])
            phase_fillsync(h, round, M_FILLSYNC);
        if (on[M_FILLSYNC8])
            phase_fillsync(h, round, M_FILLSYNC8);
        if (on[M_BIGWRITE])
            phase_bigvalues(h, round);
    }
    if (kv_interrupted) {
        fprintf(stderr, "%s: kv_interrupted\n", PROGRAM);
        return -EINTR;
    }
    return 0;
}

/* ---- Setup and teardown ---- */

static int setup(struct kv_harness *h)
{
    struct kv_bench *b = h->b;
    const struct kv_config *cfg = &b->cfg;
    int len = snprintf(b->scratch, sizeof b->scratch, "%s/kv-bench.XXXXXX", cfg->parent_dir);
    if (len < 0 || (size_t)len >= sizeof b->scratch) {
        fprintf(stderr, "%s: --dir %s: name too long\n", PROGRAM, cfg->parent_dir);
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(b->scratch)) {
        int rc = -errno;
        fprintf(stderr, "%s: mkdtemp in %s: %s\n", PROGRAM, cfg->parent_dir, strerror(-rc));
        return rc;
    }
    b->scratch_made = true;
    b->fs_name = bench_filesystem_name(b->scratch);
    len = snprintf(h->rawdisk_dir, sizeof h->rawdisk_dir, "%s/rawdisk", b->scratch);
    if (len < 0 || (size_t)len >= sizeof h->rawdisk_dir) {
        fprintf(stderr, "%s: --dir %s: name too long\n", PROGRAM, cfg->parent_dir);
        return -ENAMETOOLONG;
    }

    size_t runs = (size_t)M_COUNT * cfg->engine_count * cfg->rounds;
    size_t cells = (size_t)cfg->engine_count * cfg->rounds;
    uint64_t max_value = cfg->value_size > cfg->big_size ? cfg->value_size : cfg->big_size;
    b->runs = calloc(runs, sizeof *b->runs);
    b->sizes = calloc(cells, sizeof *b->sizes);
    b->ow_sizes = calloc(cells, sizeof *b->ow_sizes);
    h->fill_order = malloc(cfg->keys * sizeof *h->fill_order);
    h->read_order = malloc(cfg->keys * sizeof *h->read_order);
    h->overwrite_order = malloc(cfg->keys * sizeof *h->overwrite_order);
    h->big_order = malloc(cfg->big_count * sizeof *h->big_order);
    h->value = malloc(max_value);
    h->expected = malloc(max_value);
    if (!b->runs || !b->sizes || !b->ow_sizes || !h->fill_order || !h->read_order ||
        !h->overwrite_order || !h->big_order || !h->value || !h->expected) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return -ENOMEM;
    }
    /* The same orders for every engine and round, so that all do the same
     * work; different ones for each workload, so that reads do not follow
     * the order of the writes. */
    kv_shuffle(h->fill_order, cfg->keys, cfg->seed ^ 0xF111u);
    kv_shuffle(h->read_order, cfg->keys, cfg->seed ^ 0x4EADu);
    kv_shuffle(h->overwrite_order, cfg->keys, cfg->seed ^ 0x0FE4u);
    kv_shuffle(h->big_order, cfg->big_count, cfg->seed ^ 0xB16u);
    return 0;
}

static int teardown(struct kv_harness *h)
{
    struct kv_bench *b = h->b;
    int status = 0;
    free(h->fill_order);
    free(h->read_order);
    free(h->overwrite_order);
    free(h->big_order);
    free(h->value);
    free(h->expected);
    free(b->runs);
    free(b->sizes);
    free(b->ow_sizes);
    if (b->scratch_made) {
        if (b->cfg.keep) {
            fprintf(stderr, "%s: kept %s\n", PROGRAM, b->scratch);
        } else {
            int rc = bench_remove_tree(AT_FDCWD, b->scratch);
            if (rc < 0) {
                fprintf(stderr, "%s: removing %s: %s\n", PROGRAM, b->scratch, strerror(-rc));
                status = 1;
            }
        }
    }
    return status;
}

/* Opens the JSON file before the runs, so that a bad path fails at once;
 * the default one goes in bench-results/, made when missing. */
static FILE *open_json(const struct kv_config *cfg, char *path, size_t path_len)
{
    if (cfg->json_path) {
        snprintf(path, path_len, "%s", cfg->json_path);
    } else {
        time_t t = time(NULL);
        struct tm tm;
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime_r(&t, &tm));
        if (mkdir("bench-results", 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "%s: mkdir bench-results: %s\n", PROGRAM, strerror(errno));
            return NULL;
        }
        snprintf(path, path_len, "bench-results/kv_bench-%s.json", stamp);
    }
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "%s: fopen %s: %s\n", PROGRAM, path, strerror(errno));
    return f;
}

int main(int argc, char **argv)
{
    struct kv_bench b = {0};
    int status = kv_parse_args(argc, argv, &b.cfg);
    if (status >= 0)
        return status;

    /* Stop at the end of the current operation and clean up, rather than
     * leave the scratch directory behind. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char json_path[PATH_MAX] = "";
    FILE *json = NULL;
    if (!b.cfg.no_json) {
        json = open_json(&b.cfg, json_path, sizeof json_path);
        if (!json)
            return 1;
    }
    b.started = (double)time(NULL);

    struct kv_harness h = {.b = &b};
    status = 0;
    if (setup(&h) < 0 || run_all(&h) < 0) {
        status = 1;
    } else {
        kv_print_results(&b);
        if (json) {
            if (kv_write_json(&b, json, json_path) < 0)
                status = 1;
            else
                fprintf(stderr, "%s: results in %s\n", PROGRAM, json_path);
            json = NULL;
        }
        if (b.any_failed)
            status = 1;
    }
    if (json) {
        /* No results: an empty file would pass for some. */
        fclose(json);
        unlink(json_path);
    }
    if (teardown(&h) != 0)
        status = 1;
    return status;
}
