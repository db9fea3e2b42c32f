/*
 * wal_bench_options.c - wal_bench's command line: its --help text, its
 * options with their defaults and limits, and parse_args(), which turns
 * argv into a struct config or an exit status. What the options mean for a
 * run is in wal_bench.c; the number parsers are bench_args.c's.
 */
#include "wal_bench.h"

#include "bench_args.h"

#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_THREADS 256
#define MAX_RECORD_BYTES ((uint64_t)64 << 20)
/* How often a WAL run releases what is durable, as a store's checkpoint
 * would. Without it a 2 s run at 64 KiB x 8 writes some 20 segments, more
 * than the spares, and the log zero-fills new ones in its commit path, which
 * the preallocated raw baseline never pays for. */
#define DEFAULT_RELEASE_MS 10

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [OPTION]...\n"
            "Measure the commit path of the mindb write-ahead log beside a raw baseline\n"
            "measured by the same harness in the same run, and print a table.\n"
            "\n"
            "Workload. Each thread repeats: append one record, then commit up to its end\n"
            "(wal_append + wal_commit_to), timing each pair with CLOCK_MONOTONIC. The raw\n"
            "baseline does the same by hand: pwrite() of the record at the next offset of\n"
            "a file preallocated by writing zeros over its whole length (not fallocate:\n"
            "unwritten extents make fdatasync commit the journal), then fdatasync(). Each\n"
            "raw thread writes a file of its own, so 8 raw threads are 8 independent\n"
            "writers. With O_DIRECT (the default) a raw write covers the 4 KiB blocks the\n"
            "record touches, as a packed log must; with --no-direct it writes just the\n"
            "record's bytes. A raw file is as large as a log segment (or two records);\n"
            "its writer wraps to the start at the end, as a log moves into a reused\n"
            "segment.\n"
            "\n"
            "Rounds. Within a round the targets alternate (raw, wal, raw, wal...) for each\n"
            "record size and thread count; the order flips every other round. Each run\n"
            "lasts --seconds or --count. Figures are medians over the rounds, because\n"
            "single runs on these machines vary by 20-30 %%.\n"
            "\n"
            "The log. One log per record size is created (wal_open with create=1) and\n"
            "kept for all rounds. During a run a background thread calls\n"
            "wal_release(log, wal_durable_pos(log)) every --release-ms, as a store's\n"
            "checkpoint would, and once more after the run, so the log stays a segment\n"
            "or two long and writes into released segments it reuses, as the raw\n"
            "baseline writes into preallocated files. An untimed warm-up run per size,\n"
            "with the largest thread count, makes the segments beforehand.\n"
            "\n"
            "Options:\n"
            "  --dir DIR           make the scratch directory wal-bench.XXXXXX inside DIR\n"
            "                      (default: the current directory); it holds the raw\n"
            "                      files and the logs, and is removed at the end\n"
            "  --seconds N         length of each run in seconds (default 2; may be a\n"
            "                      fraction)\n"
            "  --count N           run N commits per thread instead of a fixed time\n"
            "  --rounds N          number of rounds (default 3, at most %d)\n"
            "  --sizes LIST        record sizes in bytes, comma-separated; suffixes k and m\n"
            "                      mean KiB and MiB (default 128,4096,65536)\n"
            "  --threads LIST      thread counts, comma-separated (default 1,8)\n"
            "  --no-direct         no O_DIRECT: wal_options.direct_io = 0, and buffered\n"
            "                      raw writes\n"
            "  --ring-bytes N      the log's ring (wal_options.ring_bytes; default 4 MiB)\n"
            "  --segment-bytes N   one segment file (wal_options.segment_bytes; default\n"
            "                      64 MiB), also the size of each raw file\n"
            "  --spare-segments N  released segments the log keeps for reuse\n"
            "                      (wal_options.spare_segments; default: the library's)\n"
            "  --release-ms N      release what is durable every N ms during a run\n"
            "                      (default %d; 0: only after each run)\n"
            "  --no-warmup         skip the warm-up runs\n"
            "  --json FILE         also write the results, round by round, as JSON\n"
            "  -v, --verbose       print each run on stderr as it finishes\n"
            "  -h, --help          print this help and exit\n"
            "  -V, --version       print the version and exit\n"
            "Numbers of bytes accept the suffixes k, m and g (KiB, MiB, GiB).\n"
            "\n"
            "Output: a row per record size, thread count and target, medians over rounds:\n"
            "  commits/s       commits finished per second, all threads together\n"
            "  p50 us, p99 us  latency of one append + commit (raw: pwrite + fdatasync)\n"
            "  syncs           fdatasync calls in a run (wal: from wal_stats)\n"
            "  commits/sync    commits served by one fdatasync (group commit)\n"
            "  new segs        segment files the log created, rather than reused, in a run\n"
            "then the ratios the project tracks, for each record size:\n"
            "  WAL 1-thread rate / raw 1-thread rate   target >= 0.95: the log costs little\n"
            "                                          more than the disk itself\n"
            "  WAL 8-thread rate / WAL 1-thread rate   target >= 4: group commit works\n"
            "  WAL N-thread rate / raw N-thread rate   for reference, no target\n"
            "Each ratio is the median over rounds of the ratio of the two runs within one\n"
            "round, which ran seconds apart, so that a drift in the machine's speed from\n"
            "round to round cancels out; in brackets are the lowest and highest of these\n"
            "per-round ratios, which shows the noise. A * marks a ratio below its target.\n"
            "\n"
            "Exit status: 0 ok, 1 a call failed (named on stderr), 2 usage error.\n",
            MAX_ROUNDS, DEFAULT_RELEASE_MS);
}

enum {
    OPT_DIR = 256,
    OPT_SECONDS,
    OPT_COUNT,
    OPT_ROUNDS,
    OPT_SIZES,
    OPT_THREADS,
    OPT_NO_DIRECT,
    OPT_RING_BYTES,
    OPT_SEGMENT_BYTES,
    OPT_SPARE_SEGMENTS,
    OPT_RELEASE_MS,
    OPT_NO_WARMUP,
    OPT_JSON,
};

int parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option options[] = {
        {"dir", required_argument, NULL, OPT_DIR},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"count", required_argument, NULL, OPT_COUNT},
        {"rounds", required_argument, NULL, OPT_ROUNDS},
        {"sizes", required_argument, NULL, OPT_SIZES},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"no-direct", no_argument, NULL, OPT_NO_DIRECT},
        {"ring-bytes", required_argument, NULL, OPT_RING_BYTES},
        {"segment-bytes", required_argument, NULL, OPT_SEGMENT_BYTES},
        {"spare-segments", required_argument, NULL, OPT_SPARE_SEGMENTS},
        {"release-ms", required_argument, NULL, OPT_RELEASE_MS},
        {"no-warmup", no_argument, NULL, OPT_NO_WARMUP},
        {"json", required_argument, NULL, OPT_JSON},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };

    *cfg = (struct config){
        .seconds = 2.0,
        .rounds = 3,
        .sizes = {128, 4096, 65536},
        .size_count = 3,
        .threads = {1, 8},
        .thread_count = 2,
        .direct = 1,
        .spare_segments = -1,
        .release_ms = DEFAULT_RELEASE_MS,
        .warmup = true,
        .parent_dir = ".",
    };

    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":vhV", options, NULL)) != -1) {
        uint64_t value, list[MAX_LIST];
        switch (opt) {
        case OPT_DIR:
            cfg->parent_dir = optarg;
            break;
        case OPT_SECONDS:
            if (!bench_parse_seconds(optarg, 86400, &cfg->seconds))
                return bench_usage_error(
                    PROGRAM, "--seconds wants a positive number of seconds, not '%s'", optarg);
            break;
        case OPT_COUNT:
            if (!bench_parse_u64(optarg, false, &value) || value == 0)
                return bench_usage_error(PROGRAM, "--count wants a positive number, not '%s'",
                                         optarg);
            cfg->count = value;
            break;
        case OPT_ROUNDS:
            if (!bench_parse_u64(optarg, false, &value) || value == 0 || value > MAX_ROUNDS)
                return bench_usage_error(PROGRAM, "--rounds wants a number from 1 to 99, not '%s'",
                                         optarg);
            cfg->rounds = (unsigned)value;
            break;
        case OPT_SIZES:
            if (!bench_parse_list(optarg, true, 1, MAX_RECORD_BYTES, cfg->sizes, MAX_LIST,
                                  &cfg->size_count))
                return bench_usage_error(PROGRAM,
                                         "--sizes wants up to 16 sizes from 1 to 64m, "
                                         "comma-separated, not '%s'",
                                         optarg);
            break;
        case OPT_THREADS:
            if (!bench_parse_list(optarg, false, 1, MAX_THREADS, list, MAX_LIST,
                                  &cfg->thread_count))
                return bench_usage_error(PROGRAM,
                                         "--threads wants up to 16 counts from 1 to 256, "
                                         "comma-separated, not '%s'",
                                         optarg);
            for (unsigned i = 0; i < cfg->thread_count; i++)
                cfg->threads[i] = (unsigned)list[i];
            break;
        case OPT_NO_DIRECT:
            cfg->direct = 0;
            break;
        case OPT_RING_BYTES:
            /* wal_open() checks the rest; this catches what is plainly wrong. */
            if (!bench_parse_u64(optarg, true, &value) || value == 0 || value % BLOCK_BYTES != 0 ||
                value > SIZE_MAX)
                return bench_usage_error(PROGRAM, "--ring-bytes wants a multiple of 4096, not '%s'",
                                         optarg);
            cfg->ring_bytes = value;
            break;
        case OPT_SEGMENT_BYTES:
            if (!bench_parse_u64(optarg, true, &value) || value == 0 || value % BLOCK_BYTES != 0)
                return bench_usage_error(
                    PROGRAM, "--segment-bytes wants a multiple of 4096, not '%s'", optarg);
            cfg->segment_bytes = value;
            break;
        case OPT_SPARE_SEGMENTS:
            if (!bench_parse_u64(optarg, false, &value) || value > UINT_MAX)
                return bench_usage_error(PROGRAM, "--spare-segments wants a number, not '%s'",
                                         optarg);
            cfg->spare_segments = (long)value;
            break;
        case OPT_RELEASE_MS:
            if (!bench_parse_u64(optarg, false, &value) || value > 60000)
                return bench_usage_error(
                    PROGRAM, "--release-ms wants a number of milliseconds, not '%s'", optarg);
            cfg->release_ms = (unsigned)value;
            break;
        case OPT_NO_WARMUP:
            cfg->warmup = false;
            break;
        case OPT_JSON:
            cfg->json_path = optarg;
            break;
        case 'v':
            cfg->verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("%s (mindb) %s\n", PROGRAM, MINDB_VERSION);
            return 0;
        case ':':
            return bench_usage_error(PROGRAM, "option '%s' needs an argument", argv[optind - 1]);
        default:
            return bench_usage_error(PROGRAM, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bench_usage_error(PROGRAM, "unexpected argument '%s'", argv[optind]);
    return -1;
}
