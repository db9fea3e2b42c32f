/*
 * wal_bench.h - what the two files of wal_bench share: its settings as the
 * command line leaves them (struct config), the limits the options are
 * checked against, and parse_args(). wal_bench_options.c reads the command
 * line; wal_bench.c measures. Private to wal_bench, not a library header.
 */
#ifndef MINDB_TOOLS_WAL_BENCH_H
#define MINDB_TOOLS_WAL_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#ifndef MINDB_VERSION
#define MINDB_VERSION "unknown"
#endif

#define PROGRAM "wal_bench"
/* The block O_DIRECT writes align to; the log's ring and segments are
 * whole blocks too, which the options check before wal_open() does. */
#define BLOCK_BYTES ((uint64_t)4096)
/* The most record sizes, and thread counts, one run takes. */
#define MAX_LIST 16
/* The per-round figures live on the stack; wal_bench.c checks this against
 * what bench_ratio_over_rounds() takes. */
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

#endif /* MINDB_TOOLS_WAL_BENCH_H */
