/*
 * kv_bench_options.c - kv_bench's command line: its --help text, its options
 * with their defaults and limits, and kv_parse_args(), which turns argv into
 * a struct kv_config or an exit status. What the workloads do is in
 * kv_bench.c; the number parsers are bench_args.c's.
 */
#include "kv_bench.h"

#include "bench_args.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define MAX_KEYS ((uint64_t)UINT32_MAX) /* orders are arrays of uint32_t */
#define MAX_VALUE_BYTES ((uint64_t)64 << 20)

const char *const kv_measure_names[M_COUNT] = {
    "fillseq", "fillrandom", "overwrite", "readrandom", "readmissing",
    "scan",    "fillsync",   "fillsync8", "bigwrite",   "bigread",
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: " PROGRAM " [OPTION]...\n"
                 "Run the same key-value workloads on mindb and on the peer stores built in, and\n"
                 "print mindb beside them: ops/s, MB/s, sizes on disk, and mindb / peer ratios.\n"
                 "\n"
                 "Workloads (keys of 16 bytes, values half random and half a repeated pattern):\n"
                 "  fillseq      --keys puts in key order into an empty store, then sync\n"
                 "  fillrandom   --keys puts in random order into an empty store, then sync;\n"
                 "               the store's size on disk is measured after it is closed\n"
                 "  overwrite    --keys puts of new values in random order over the\n"
                 "               fillrandom store, then sync\n"
                 "  readrandom   --keys gets of present keys in random order (fillrandom store)\n"
                 "  readmissing  --keys gets of absent keys, which sort among present ones\n"
                 "  scan         scans of --scan-length entries (keys and values) from random\n"
                 "               present keys, --keys entries in all; ops are entries\n"
                 "  fillsync     --sync-ops puts, each durable before the next, 1 thread\n"
                 "  fillsync8    the same with --threads threads sharing --sync-ops puts\n"
                 "  bigvalues    --big-count values of --big-size written (then sync), and\n"
                 "               after a reopen read back in random order\n"
                 "Each engine, workload and round gets a fresh directory, except that the read\n"
                 "workloads and overwrite use the store fillrandom made in the same round\n"
                 "(reopened; made untimed when fillrandom is not asked for). Timed: the\n"
                 "operations and a fill's closing sync; not timed: open and close. Every 16th\n"
                 "read is checked against the value written, every scan's first entry too.\n"
                 "\n"
                 "Rounds: within a round, each workload runs on every engine in turn, the\n"
                 "first engine rotating from round to round; figures are medians over rounds,\n"
                 "ratios the medians of the per-round ratios [lowest-highest].\n"
                 "\n"
                 "Engines built in (durable put / sync at the end of a fill):\n");
    for (const struct kv_backend *const *e = kv_backends; *e; e++)
        fprintf(out, "  %-8s %s\n  %-8s %s\n", (*e)->name, (*e)->put_durability, "",
                (*e)->sync_durability);
    fprintf(out,
            "rawdisk runs the fillsync workloads only: the floor for durable puts.\n"
            "\n"
            "Options:\n"
            "  --engines LIST     engines to run, comma-separated (default: all built in)\n"
            "  --workloads LIST   workloads to run, comma-separated, or all (default all)\n"
            "  --keys N           keys of the fill and read workloads (default 1000000)\n"
            "  --value-size N     bytes per value (default 100)\n"
            "  --scan-length N    entries per scan (default 100)\n"
            "  --sync-ops N       puts of each fillsync workload (default 10000)\n"
            "  --threads N        threads of fillsync8 (default 8)\n"
            "  --big-count N      values of bigvalues (default 10000)\n"
            "  --big-size N       bytes per value of bigvalues (default 256k)\n"
            "  --rounds N         rounds (default 3, at most %d)\n"
            "  --seed N           seed of keys' orders and values (default 1)\n"
            "  --dir DIR          make the scratch directory kv-bench.XXXXXX in DIR\n"
            "                     (default: the current directory); removed at the end\n"
            "  --keep             keep the scratch directory, with the stores of the last\n"
            "                     round (earlier rounds' are removed as they go)\n"
            "  --json FILE        write the results as JSON to FILE (default:\n"
            "                     bench-results/kv_bench-YYYYMMDD-HHMMSS.json)\n"
            "  --no-json          write no JSON file\n"
            "  -v, --verbose      print each run on stderr as it finishes\n"
            "  -h, --help         print this help and exit\n"
            "  -V, --version      print the version and exit\n"
            "Numbers of bytes accept the suffixes k, m and g (KiB, MiB, GiB).\n"
            "\n"
            "Exit status: 0 ok, 1 a run failed (named on stderr; the others go on),\n"
            "2 usage error.\n",
            KV_MAX_ROUNDS);
}

enum {
    OPT_ENGINES = 256,
    OPT_WORKLOADS,
    OPT_KEYS,
    OPT_VALUE_SIZE,
    OPT_SCAN_LENGTH,
    OPT_SYNC_OPS,
    OPT_THREADS,
    OPT_BIG_COUNT,
    OPT_BIG_SIZE,
    OPT_ROUNDS,
    OPT_SEED,
    OPT_DIR,
    OPT_KEEP,
    OPT_JSON,
    OPT_NO_JSON,
};

static const struct kv_backend *find_engine(const char *name, size_t len)
{
    for (const struct kv_backend *const *e = kv_backends; *e; e++)
        if (strlen((*e)->name) == len && strncmp((*e)->name, name, len) == 0)
            return *e;
    return NULL;
}

static int parse_engines(const char *text, struct kv_config *cfg)
{
    cfg->engine_count = 0;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            const struct kv_backend *e = find_engine(p, len);
            if (!e)
                return bench_usage_error(PROGRAM,
                                         "--engines: no engine '%.*s' in this build "
                                         "(see --help)",
                                         (int)len, p);
            /* Keep the registry's order, whatever the list's, so that the
             * columns stay put; a name given twice counts once. */
            bool seen = false;
            for (unsigned i = 0; i < cfg->engine_count; i++)
                seen |= cfg->engines[i] == e;
            if (!seen)
                cfg->engines[cfg->engine_count++] = e;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (cfg->engine_count == 0)
        return bench_usage_error(PROGRAM, "--engines wants at least one engine");
    const struct kv_backend *sorted[KV_MAX_ENGINES];
    unsigned n = 0;
    for (const struct kv_backend *const *e = kv_backends; *e; e++)
        for (unsigned i = 0; i < cfg->engine_count; i++)
            if (cfg->engines[i] == *e)
                sorted[n++] = *e;
    memcpy(cfg->engines, sorted, n * sizeof *sorted);
    return -1;
}

static int parse_workloads(const char *text, struct kv_config *cfg)
{
    memset(cfg->measure_on, 0, sizeof cfg->measure_on);
    bool any = false;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            bool found = false;
            if (len == 3 && strncmp(p, "all", 3) == 0) {
                for (unsigned m = 0; m < M_COUNT; m++)
                    cfg->measure_on[m] = true;
                found = true;
            } else if (len == 9 && strncmp(p, "bigvalues", 9) == 0) {
                cfg->measure_on[M_BIGWRITE] = cfg->measure_on[M_BIGREAD] = true;
                found = true;
            } else {
                for (unsigned m = 0; m < M_BIGWRITE; m++) {
                    if (strlen(kv_measure_names[m]) == len &&
                        strncmp(kv_measure_names[m], p, len) == 0) {
                        cfg->measure_on[m] = true;
                        found = true;
                    }
                }
            }
            if (!found)
                return bench_usage_error(PROGRAM, "--workloads: no workload '%.*s' (see --help)",
                                         (int)len, p);
            any = true;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (!any)
        return bench_usage_error(PROGRAM, "--workloads wants at least one workload");
    return -1;
}

/* Parses a number from `min` to `max` for `option`, or says what it wants. */
static int parse_number(const char *option, const char *text, bool suffix, uint64_t min,
                        uint64_t max, uint64_t *out)
{
    uint64_t value;
    if (!bench_parse_u64(text, suffix, &value) || value < min || value > max)
        return bench_usage_error(PROGRAM, "%s wants a number from %llu to %llu, not '%s'", option,
                                 (unsigned long long)min, (unsigned long long)max, text);
    *out = value;
    return -1;
}

int kv_parse_args(int argc, char **argv, struct kv_config *cfg)
{
    static const struct option options[] = {
        {"engines", required_argument, NULL, OPT_ENGINES},
        {"workloads", required_argument, NULL, OPT_WORKLOADS},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
        {"scan-length", required_argument, NULL, OPT_SCAN_LENGTH},
        {"sync-ops", required_argument, NULL, OPT_SYNC_OPS},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"big-count", required_argument, NULL, OPT_BIG_COUNT},
        {"big-size", required_argument, NULL, OPT_BIG_SIZE},
        {"rounds", required_argument, NULL, OPT_ROUNDS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"dir", required_argument, NULL, OPT_DIR},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"json", required_argument, NULL, OPT_JSON},
        {"no-json", no_argument, NULL, OPT_NO_JSON},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };

    *cfg = (struct kv_config){
        .keys = 1000000,
        .value_size = 100,
        .rounds = 3,
        .threads = 8,
        .sync_ops = 10000,
        .big_count = 10000,
        .big_size = 256 << 10,
        .scan_length = 100,
        .seed = 1,
        .parent_dir = ".",
    };
    for (unsigned m = 0; m < M_COUNT; m++)
        cfg->measure_on[m] = true;
    for (const struct kv_backend *const *e = kv_backends; *e; e++)
        cfg->engines[cfg->engine_count++] = *e;

    opterr = 0;
    int opt, status = -1;
    while (status < 0 && (opt = getopt_long(argc, argv, ":vhV", options, NULL)) != -1) {
        uint64_t value = 0;
        switch (opt) {
        case OPT_ENGINES:
            status = parse_engines(optarg, cfg);
            break;
        case OPT_WORKLOADS:
            status = parse_workloads(optarg, cfg);
            break;
        case OPT_KEYS:
            status = parse_number("--keys", optarg, true, 1, MAX_KEYS, &cfg->keys);
            break;
        case OPT_VALUE_SIZE:
            status =
                parse_number("--value-size", optarg, true, 1, MAX_VALUE_BYTES, &cfg->value_size);
            break;
        case OPT_SCAN_LENGTH:
            status = parse_number("--scan-length", optarg, true, 1, MAX_KEYS, &cfg->scan_length);
            break;
        case OPT_SYNC_OPS:
            status = parse_number("--sync-ops", optarg, true, 1, MAX_KEYS, &cfg->sync_ops);
            break;
        case OPT_THREADS:
            status = parse_number("--threads", optarg, false, 1, KV_MAX_THREADS, &value);
            cfg->threads = (unsigned)value;
            break;
        case OPT_BIG_COUNT:
            status = parse_number("--big-count", optarg, true, 1, MAX_KEYS, &cfg->big_count);
            break;
        case OPT_BIG_SIZE:
            status = parse_number("--big-size", optarg, true, 1, MAX_VALUE_BYTES, &cfg->big_size);
            break;
        case OPT_ROUNDS:
            status = parse_number("--rounds", optarg, false, 1, KV_MAX_ROUNDS, &value);
            cfg->rounds = (unsigned)value;
            break;
        case OPT_SEED:
            status = parse_number("--seed", optarg, false, 0, UINT64_MAX, &cfg->seed);
            break;
        case OPT_DIR:
            cfg->parent_dir = optarg;
            break;
        case OPT_KEEP:
            cfg->keep = true;
            break;
        case OPT_JSON:
            cfg->json_path = optarg;
            cfg->no_json = false;
            break;
        case OPT_NO_JSON:
            cfg->no_json = true;
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
    if (status >= 0)
        return status;
    if (optind < argc)
        return bench_usage_error(PROGRAM, "unexpected argument '%s'", argv[optind]);
    if (cfg->sync_ops < cfg->threads)
        return bench_usage_error(PROGRAM, "--sync-ops must be at least --threads (%u)",
                                 cfg->threads);
    return -1;
}
