/*
 * wal_bench_results.c - what wal_bench makes of its rounds once they have
 * run: the medians over rounds of each (size, threads, target), the ratios it
 * tracks between targets and thread counts, the table and ratio lines it
 * prints on stdout, and the JSON file of every round's figures. wal_bench.c
 * measures and fills b->results; bench_report.c holds the reporting that
 * does not depend on what is measured.
 */
#include "wal_bench.h"

#include "bench_report.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

_Static_assert(MAX_ROUNDS <= BENCH_MAX_ROUNDS, "more rounds than bench_ratio_over_rounds takes");

/* The medians over the rounds of one (size, threads, target). */
struct summary {
    double rate;
    double p50_us;
    double p99_us;
    double syncs;
    double commits_per_sync;
    double segments_created;
};

static struct summary summarize(struct bench *b, unsigned size_i, unsigned thread_i,
                                enum target target)
{
    double rate[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS], syncs[MAX_ROUNDS],
        per_sync[MAX_ROUNDS], created[MAX_ROUNDS];
    unsigned n = b->cfg.rounds;
    for (unsigned r = 0; r < n; r++) {
        const struct run_result *res = result_at(b, size_i, thread_i, target, r);
        rate[r] = res->rate;
        p50[r] = res->p50_us;
        p99[r] = res->p99_us;
        syncs[r] = (double)res->syncs;
        per_sync[r] = res->syncs ? (double)res->commits / (double)res->syncs : 0;
        created[r] = (double)res->segments_created;
    }
    return (struct summary){
        .rate = bench_median(rate, n),
        .p50_us = bench_median(p50, n),
        .p99_us = bench_median(p99, n),
        .syncs = bench_median(syncs, n),
        .commits_per_sync = bench_median(per_sync, n),
        .segments_created = bench_median(created, n),
    };
}

enum ratio_kind { RATIO_WAL1_RAW1, RATIO_WALN_WAL1, RATIO_WALN_RAWN };

struct ratio {
    enum ratio_kind kind;
    uint64_t size;
    unsigned threads; /* N */
    struct bench_ratio stats;
};

/* Each kind for at most every (size, threads). */
#define MAX_RATIOS (3 * MAX_LIST * MAX_LIST)

static int find_threads(const struct config *cfg, unsigned threads)
{
    for (unsigned i = 0; i < cfg->thread_count; i++)
        if (cfg->threads[i] == threads)
            return (int)i;
    return -1;
}

static struct ratio make_ratio(struct bench *b, enum ratio_kind kind, unsigned size_i,
                               unsigned num_t, enum target num_target, unsigned den_t,
                               enum target den_target, double target_value)
{
    double num[MAX_ROUNDS], den[MAX_ROUNDS];
    unsigned n = b->cfg.rounds;
    for (unsigned round = 0; round < n; round++) {
        num[round] = result_at(b, size_i, num_t, num_target, round)->rate;
        den[round] = result_at(b, size_i, den_t, den_target, round)->rate;
    }
    return (struct ratio){
        .kind = kind,
        .size = b->cfg.sizes[size_i],
        .threads = b->cfg.threads[num_t],
        .stats = bench_ratio_over_rounds(num, den, n, target_value),
    };
}

/* Fills `out` (room for MAX_RATIOS) with the tracked ratios, in the order
 * they are printed. */
static unsigned compute_ratios(struct bench *b, struct ratio *out)
{
    const struct config *cfg = &b->cfg;
    unsigned n = 0;
    int one = find_threads(cfg, 1);
    if (one >= 0)
        for (unsigned s = 0; s < cfg->size_count; s++)
            out[n++] = make_ratio(b, RATIO_WAL1_RAW1, s, (unsigned)one, TARGET_WAL, (unsigned)one,
                                  TARGET_RAW, 0.95);
    for (unsigned t = 0; t < cfg->thread_count; t++) {
        if (cfg->threads[t] == 1 || one < 0)
            continue;
        for (unsigned s = 0; s < cfg->size_count; s++)
            out[n++] = make_ratio(b, RATIO_WALN_WAL1, s, t, TARGET_WAL, (unsigned)one, TARGET_WAL,
                                  cfg->threads[t] == 8 ? 4.0 : 0);
    }
    for (unsigned t = 0; t < cfg->thread_count; t++) {
        if (cfg->threads[t] == 1)
            continue;
        for (unsigned s = 0; s < cfg->size_count; s++)
            out[n++] = make_ratio(b, RATIO_WALN_RAWN, s, t, TARGET_WAL, t, TARGET_RAW, 0);
    }
    return n;
}

static void ratio_title(const struct ratio *r, char *out, size_t out_len)
{
    switch (r->kind) {
    case RATIO_WAL1_RAW1:
        snprintf(out, out_len, "WAL 1-thread rate / raw 1-thread rate");
        break;
    case RATIO_WALN_WAL1:
        snprintf(out, out_len, "WAL %u-thread rate / WAL 1-thread rate", r->threads);
        break;
    case RATIO_WALN_RAWN:
        snprintf(out, out_len, "WAL %u-thread rate / raw %u-thread rate", r->threads, r->threads);
        break;
    }
}

void print_results(struct bench *b)
{
    const struct config *cfg = &b->cfg;
    struct ratio ratios[MAX_RATIOS];
    unsigned ratio_count = compute_ratios(b, ratios);
    char ring[32], segment[32];
    bench_print_size(ring, sizeof ring, b->ring_bytes);
    bench_print_size(segment, sizeof segment, b->segment_bytes);
    printf("%s %s on %s (%s): ", PROGRAM, MINDB_VERSION, cfg->parent_dir, b->fs_name);
    if (cfg->count)
        printf("%u rounds of %" PRIu64 " commits per thread", cfg->rounds, cfg->count);
    else
        printf("%u rounds of %g s", cfg->rounds, cfg->seconds);
    printf(", medians over rounds\n");
    char raw_file[32], release[48] = "released after each run";
    bench_print_size(raw_file, sizeof raw_file, b->raw_bytes);
    if (cfg->release_ms)
        snprintf(release, sizeof release, "released every %u ms", cfg->release_ms);
    printf("wal: %s, ring %s, segments %s, %u spare, %s; raw: %s, files of %s\n\n",
           b->wal_direct ? "O_DIRECT" : "buffered", ring, segment, b->spare_segments, release,
           b->raw_direct ? "O_DIRECT" : "buffered", raw_file);

    printf("%10s %7s %6s %11s %9s %9s %8s %12s %8s\n", "size", "threads", "target", "commits/s",
           "p50 us", "p99 us", "syncs", "commits/sync", "new segs");
    for (unsigned s = 0; s < cfg->size_count; s++) {
        char size_text[32];
        bench_print_size(size_text, sizeof size_text, cfg->sizes[s]);
        for (unsigned t = 0; t < cfg->thread_count; t++) {
            for (unsigned k = 0; k < TARGET_COUNT; k++) {
                struct summary m = summarize(b, s, t, (enum target)k);
                printf("%10s %7u %6s %11.0f %9.1f %9.1f %8.0f %12.2f ", size_text, cfg->threads[t],
                       target_names[k], m.rate, m.p50_us, m.p99_us, m.syncs, m.commits_per_sync);
                if (k == TARGET_WAL)
                    printf("%8.0f\n", m.segments_created);
                else
                    printf("%8s\n", "-");
            }
        }
    }

    bool below = false;
    for (unsigned i = 0; i < ratio_count;) {
        char title[96];
        ratio_title(&ratios[i], title, sizeof title);
        bench_print_ratio_heading(title, ratios[i].stats.target);
        unsigned j = i;
        for (; j < ratio_count && ratios[j].kind == ratios[i].kind &&
               ratios[j].threads == ratios[i].threads;
             j++) {
            char size_text[32];
            bench_print_size(size_text, sizeof size_text, ratios[j].size);
            below |= bench_print_ratio_row(size_text, &ratios[j].stats);
        }
        i = j;
    }
    bench_print_ratio_footnote(below);
}

static const char *ratio_key(enum ratio_kind kind)
{
    switch (kind) {
    case RATIO_WAL1_RAW1:
        return "wal_1_over_raw_1";
    case RATIO_WALN_WAL1:
        return "wal_n_over_wal_1";
    case RATIO_WALN_RAWN:
        return "wal_n_over_raw_n";
    }
    return "?";
}

/* Writes and closes `f`, opened before the runs so that a bad path fails at
 * once rather than after them. */
int write_json(struct bench *b, FILE *f)
{
    const struct config *cfg = &b->cfg;
    struct ratio ratios[MAX_RATIOS];
    unsigned ratio_count = compute_ratios(b, ratios);
    fprintf(f, "{\n  \"tool\": \"%s\",\n  \"version\": ", PROGRAM);
    bench_json_string(f, MINDB_VERSION);
    fprintf(f, ",\n  \"config\": {\"dir\": ");
    bench_json_string(f, cfg->parent_dir);
    fprintf(f, ", \"filesystem\": ");
    bench_json_string(f, b->fs_name);
    fprintf(f,
            ", \"seconds\": %g, \"count\": %" PRIu64 ", \"rounds\": %u, \"warmup\": %s, "
            "\"direct_io\": %s, \"wal_direct_io\": %s, \"raw_direct_io\": %s, "
            "\"ring_bytes\": %" PRIu64 ", \"segment_bytes\": %" PRIu64
            ", \"spare_segments\": %u, \"release_ms\": %u, \"raw_file_bytes\": %" PRIu64 "},\n",
            cfg->count ? 0 : cfg->seconds, cfg->count, cfg->rounds, bench_json_bool(cfg->warmup),
            bench_json_bool(cfg->direct), bench_json_bool(b->wal_direct),
            bench_json_bool(b->raw_direct), b->ring_bytes, b->segment_bytes, b->spare_segments,
            cfg->release_ms, b->raw_bytes);

    fprintf(f, "  \"results\": [");
    bool first = true;
    for (unsigned s = 0; s < cfg->size_count; s++) {
        for (unsigned t = 0; t < cfg->thread_count; t++) {
            for (unsigned k = 0; k < TARGET_COUNT; k++) {
                struct summary m = summarize(b, s, t, (enum target)k);
                fprintf(f,
                        "%s\n    {\"size\": %" PRIu64 ", \"threads\": %u, \"target\": \"%s\", "
                        "\"median\": {\"commits_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": "
                        "%.1f, \"syncs\": %.1f, \"commits_per_sync\": %.3f, "
                        "\"segments_created\": %.1f},\n     \"rounds\": [",
                        first ? "" : ",", cfg->sizes[s], cfg->threads[t], target_names[k], m.rate,
                        m.p50_us, m.p99_us, m.syncs, m.commits_per_sync, m.segments_created);
                first = false;
                for (unsigned r = 0; r < cfg->rounds; r++) {
                    const struct run_result *res = result_at(b, s, t, (enum target)k, r);
                    fprintf(f,
                            "%s\n      {\"commits\": %" PRIu64 ", \"seconds\": %.6f, "
                            "\"commits_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
                            "\"syncs\": %" PRIu64 ", \"commits_shared\": %" PRIu64
                            ", \"bytes_written\": %" PRIu64 ", \"segments_created\": %" PRIu64
                            ", \"segments_reused\": %" PRIu64 ", \"releases\": %" PRIu64 "}",
                            r ? "," : "", res->commits, res->seconds, res->rate, res->p50_us,
                            res->p99_us, res->syncs, res->commits_shared, res->bytes_written,
                            res->segments_created, res->segments_reused, res->releases);
                }
                fprintf(f, "]}");
            }
        }
    }
    fprintf(f, "\n  ],\n  \"ratios\": [");
    for (unsigned i = 0; i < ratio_count; i++) {
        const struct ratio *r = &ratios[i];
        fprintf(f, "%s\n    {\"name\": \"%s\", \"size\": %" PRIu64 ", \"threads\": %u, ",
                i ? "," : "", ratio_key(r->kind), r->size, r->threads);
        bench_json_ratio_members(f, &r->stats);
        fputc('}', f);
    }
    fprintf(f, "\n  ]\n}\n");
    int rc = bench_close_results(f);
    if (rc < 0) {
        fprintf(stderr, "%s: writing %s: %s\n", PROGRAM, cfg->json_path, strerror(-rc));
        return rc;
    }
    return 0;
}
