/*
 * wal_bench.h - what the three files of wal_bench share: its settings as the
 * command line leaves them (struct config), the limits the options are
 * checked against, and parse_args(); the state of a benchmark and its runs'
 * results (struct bench, struct run_result), and the two reports of them.
 * wal_bench_options.c reads the command line; wal_bench.c measures;
 * wal_bench_results.c sums up and reports. Private to wal_bench, not a
 * library header.
 */
#ifndef MINDB_TOOLS_WAL_BENCH_H
#define MINDB_TOOLS_WAL_BENCH_H

#include "wal.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifndef MINDB_VERSION
#define MINDB_VERSION "unknown"
#endif

#define PROGRAM "wal_bench"
/* The block O_DIRECT writes align to; the log's ring and segments are
 * whole blocks too, which the options check before wal_open() does. */
#define BLOCK_BYTES ((uint64_t)4096)
/* The most record sizes, and thread counts, one run takes. */
#define MAX_LIST 16
/* The per-round figures live on the stack; wal_bench_results.c checks this
 * against what bench_ratio_over_rounds() takes. */
#define MAX_ROUNDS 99

struct config {
    double seconds;
    uint64_t count; /* commits per thread and run; 0 means run for `seconds` */
    unsigned rounds;
    uint64_t sizes[MAX_LIST];
    unsigned size_count;
    unsigned threads[MAX_LIST];
    unsigned thread_count;
    int direct;
    uint64_t ring_bytes;    /* 0: the library's default */
    uint64_t segment_bytes; /* 0: the library's default */
    long spare_segments;    /* -1: the library's default */
    unsigned release_ms;    /* 0: release only between runs */
    bool warmup;
    bool verbose;
    const char *parent_dir;
    const char *json_path;
};

/* Fills `cfg` from the command line, printing the help, the version or a
 * usage error as asked. Returns -1 to go on, else the exit status. */
int parse_args(int argc, char **argv, struct config *cfg);

enum target { TARGET_RAW, TARGET_WAL, TARGET_COUNT };
extern const char *const target_names[TARGET_COUNT];

/* One run of one (size, threads, target). */
struct run_result {
    uint64_t commits;
    double seconds;
    double rate;
    double p50_us;
    double p99_us;
    uint64_t syncs;
    uint64_t commits_shared;
    uint64_t bytes_written;
    uint64_t segments_created;
    uint64_t segments_reused;
    uint64_t releases;
};

struct worker; /* wal_bench.c's */

struct bench {
    struct config cfg;
    char scratch[PATH_MAX];
    bool scratch_made;
    int scratch_fd;
    const char *fs_name;
    int raw_direct;
    uint64_t raw_bytes;
    uint64_t record_buf_bytes;
    unsigned max_threads;
    struct worker *workers;
    uint64_t *merged; /* all threads' samples of a run, for the percentiles */
    wal **logs;       /* one per record size */
    int wal_direct;
    uint64_t segment_bytes;
    uint64_t ring_bytes;
    unsigned spare_segments;
    struct run_result *results; /* [size][threads][target][round] */
};

/* The result of one run in b->results. */
struct run_result *result_at(struct bench *b, unsigned size_i, unsigned thread_i,
                             enum target target, unsigned round);

/* Prints the table of medians over rounds, then the ratios, on stdout. */
void print_results(struct bench *b);

/* Writes the settings, every round's figures, their medians and the ratios
 * to `f` as JSON and closes it. Returns 0, or a negative errno after saying
 * on stderr that writing failed. */
int write_json(struct bench *b, FILE *f);

#endif /* MINDB_TOOLS_WAL_BENCH_H */
