/*
 * kv_bench_results.c - what kv_bench makes of its rounds once they have run:
 * the medians over rounds of each (workload, engine), the sizes on disk, the
 * ratios mindb / peer, the tables printed on stdout, and the JSON file of
 * every round's figures. kv_bench.c measures; bench_report.c holds the
 * reporting that does not depend on what is measured.
 */
#include "kv_bench.h"

#include "bench_report.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

_Static_assert(KV_MAX_ROUNDS <= BENCH_MAX_ROUNDS, "more rounds than bench_ratio_over_rounds takes");

enum cell_state { CELL_NONE, CELL_FAILED, CELL_OK };

/* Medians over the rounds of one (measure, engine). */
struct summary {
    enum cell_state state;
    double ops_per_s;
    double mb_per_s;
    double close_seconds;
};

static double rate(const struct kv_run *r)
{
    return r->seconds > 0 ? (double)r->ops / r->seconds : 0;
}

static double mb_rate(const struct kv_run *r)
{
    return r->seconds > 0 ? (double)r->bytes / r->seconds / 1e6 : 0;
}

/* A measure counts only when every round of it ran and none failed, so that
 * a median is always over the same rounds as the ratios. */
static enum cell_state cell_state(struct kv_bench *b, enum kv_measure m, unsigned engine)
{
    bool ran = false;
    for (unsigned r = 0; r < b->cfg.rounds; r++) {
        const struct kv_run *run = kv_run_at(b, m, engine, r);
        if (run->failed)
            return CELL_FAILED;
        ran |= run->ran;
        if (!run->ran && ran)
            return CELL_FAILED; /* interrupted part way */
    }
    return ran ? CELL_OK : CELL_NONE;
}

static struct summary summarize(struct kv_bench *b, enum kv_measure m, unsigned engine)
{
    struct summary s = {.state = cell_state(b, m, engine)};
    if (s.state != CELL_OK)
        return s;
    double ops[KV_MAX_ROUNDS], mb[KV_MAX_ROUNDS], close_s[KV_MAX_ROUNDS];
    unsigned n = b->cfg.rounds;
    for (unsigned r = 0; r < n; r++) {
        const struct kv_run *run = kv_run_at(b, m, engine, r);
        ops[r] = rate(run);
        mb[r] = mb_rate(run);
        close_s[r] = run->close_seconds;
    }
    s.ops_per_s = bench_median(ops, n);
    s.mb_per_s = bench_median(mb, n);
    s.close_seconds = bench_median(close_s, n);
    return s;
}

/* The ratio of mindb's ops/s to engine `peer`'s in measure `m`; false when
 * either is missing. */
static bool mindb_ratio(struct kv_bench *b, enum kv_measure m, unsigned peer,
                        struct bench_ratio *out)
{
    int mi = kv_mindb_index(&b->cfg);
    if (mi < 0 || (unsigned)mi == peer || cell_state(b, m, (unsigned)mi) != CELL_OK ||
        cell_state(b, m, peer) != CELL_OK)
        return false;
    double num[KV_MAX_ROUNDS], den[KV_MAX_ROUNDS];
    for (unsigned r = 0; r < b->cfg.rounds; r++) {
        num[r] = rate(kv_run_at(b, m, (unsigned)mi, r));
        den[r] = rate(kv_run_at(b, m, peer, r));
    }
    *out = bench_ratio_over_rounds(num, den, b->cfg.rounds, 0);
    return true;
}

/* Medians of the sizes measured in `sizes` ([engine][round]) for `engine`;
 * false when none was. */
static bool median_size(struct kv_bench *b, const struct kv_size *sizes, unsigned engine,
                        double *apparent, double *allocated)
{
    double a[KV_MAX_ROUNDS], l[KV_MAX_ROUNDS];
    unsigned n = 0;
    for (unsigned r = 0; r < b->cfg.rounds; r++) {
        const struct kv_size *s = &sizes[engine * b->cfg.rounds + r];
        if (s->measured) {
            a[n] = (double)s->apparent;
            l[n] = (double)s->allocated;
            n++;
        }
    }
    if (n == 0)
        return false;
    *apparent = bench_median(a, n);
    *allocated = bench_median(l, n);
    return true;
}

static bool measure_wanted(const struct kv_config *cfg, enum kv_measure m)
{
    return cfg->measure_on[m];
}

static void print_header_row(const struct kv_config *cfg, const char *title, int width)
{
    printf("%-12s", title);
    for (unsigned e = 0; e < cfg->engine_count; e++)
        printf(" %*s", width, cfg->engines[e]->name);
    printf("\n");
}

static void print_rates(struct kv_bench *b, bool mb)
{
    const struct kv_config *cfg = &b->cfg;
    print_header_row(cfg, mb ? "MB/s" : "ops/s", 10);
    for (unsigned m = 0; m < M_COUNT; m++) {
        if (!measure_wanted(cfg, (enum kv_measure)m))
            continue;
        printf("%-12s", kv_measure_names[m]);
        for (unsigned e = 0; e < cfg->engine_count; e++) {
            struct summary s = summarize(b, (enum kv_measure)m, e);
            if (s.state == CELL_OK)
                printf(mb ? " %10.1f" : " %10.0f", mb ? s.mb_per_s : s.ops_per_s);
            else
                printf(" %10s", s.state == CELL_FAILED ? "failed" : "-");
        }
        printf("\n");
    }
}

static void print_sizes(struct kv_bench *b, const struct kv_size *sizes, const char *after)
{
    const struct kv_config *cfg = &b->cfg;
    double logical = (double)(cfg->keys * (KV_KEY_BYTES + cfg->value_size));
    printf("\nSize on disk after %s, closed (MiB; keys and values put: %.1f MiB):\n", after,
           logical / 1048576.0);
    printf("%-12s %10s %10s %10s\n", "engine", "apparent", "allocated", "/ data");
    for (unsigned e = 0; e < cfg->engine_count; e++) {
        double apparent, allocated;
        if (!median_size(b, sizes, e, &apparent, &allocated))
            continue;
        printf("%-12s %10.1f %10.1f %10.2f\n", cfg->engines[e]->name, apparent / 1048576.0,
               allocated / 1048576.0, logical > 0 ? allocated / logical : 0);
    }
}

static void print_ratios(struct kv_bench *b)
{
    const struct kv_config *cfg = &b->cfg;
    int mi = kv_mindb_index(cfg);
    if (mi < 0 || cfg->engine_count < 2)
        return;
    printf("\nmindb ops/s / peer ops/s, median of the per-round ratios [lowest-highest]:\n");
    printf("%-12s", "");
    for (unsigned e = 0; e < cfg->engine_count; e++)
        if (e != (unsigned)mi)
            printf(" %20s", cfg->engines[e]->name);
    printf("\n");
    for (unsigned m = 0; m < M_COUNT; m++) {
        if (!measure_wanted(cfg, (enum kv_measure)m))
            continue;
        printf("%-12s", kv_measure_names[m]);
        for (unsigned e = 0; e < cfg->engine_count; e++) {
            if (e == (unsigned)mi)
                continue;
            struct bench_ratio r;
            char cell[48] = "-";
            if (mindb_ratio(b, (enum kv_measure)m, e, &r))
                snprintf(cell, sizeof cell, "%.2f [%.2f-%.2f]", r.value, r.round_min, r.round_max);
            printf(" %20s", cell);
        }
        printf("\n");
    }
}

void kv_print_results(struct kv_bench *b)
{
    const struct kv_config *cfg = &b->cfg;
    char value[32], big[32];
    bench_print_size(value, sizeof value, cfg->value_size);
    bench_print_size(big, sizeof big, cfg->big_size);
    printf("%s %s on %s (%s): %u round%s, medians over rounds\n", PROGRAM, MINDB_VERSION,
           cfg->parent_dir, b->fs_name, cfg->rounds, cfg->rounds == 1 ? "" : "s");
    printf("%" PRIu64 " keys of %d B, values of %s (half compressible), scans of %" PRIu64
           "; fillsync %" PRIu64 " durable puts (fillsync8: %u threads); bigvalues %" PRIu64
           " x %s\n\n",
           cfg->keys, KV_KEY_BYTES, value, cfg->scan_length, cfg->sync_ops, cfg->threads,
           cfg->big_count, big);
    print_rates(b, false);
    printf("\n");
    print_rates(b, true);
    if (cfg->measure_on[M_FILLRANDOM] || cfg->measure_on[M_OVERWRITE] ||
        cfg->measure_on[M_READRANDOM] || cfg->measure_on[M_READMISSING] || cfg->measure_on[M_SCAN])
        print_sizes(b, b->sizes, "fillrandom");
    if (cfg->measure_on[M_OVERWRITE])
        print_sizes(b, b->ow_sizes, "overwrite");
    print_ratios(b);
}

/* ---- JSON ---- */

static void json_sizes(struct kv_bench *b, FILE *f, const struct kv_size *sizes, const char *after,
                       bool *first)
{
    const struct kv_config *cfg = &b->cfg;
    for (unsigned e = 0; e < cfg->engine_count; e++) {
        double apparent, allocated;
        if (!median_size(b, sizes, e, &apparent, &allocated))
            continue;
        fprintf(f,
                "%s\n    {\"engine\": \"%s\", \"after\": \"%s\", \"median\": {\"apparent\": %.0f, "
                "\"allocated\": %.0f}, \"rounds\": [",
                *first ? "" : ",", cfg->engines[e]->name, after, apparent, allocated);
        *first = false;
        bool first_round = true;
        for (unsigned r = 0; r < cfg->rounds; r++) {
            const struct kv_size *s = &sizes[e * cfg->rounds + r];
            if (!s->measured)
                continue;
            fprintf(f, "%s{\"round\": %u, \"apparent\": %" PRIu64 ", \"allocated\": %" PRIu64 "}",
                    first_round ? "" : ", ", r + 1, s->apparent, s->allocated);
            first_round = false;
        }
        fprintf(f, "]}");
    }
}

int kv_write_json(struct kv_bench *b, FILE *f, const char *path)
{
    const struct kv_config *cfg = &b->cfg;
    fprintf(f, "{\n  \"tool\": \"%s\",\n  \"version\": ", PROGRAM);
    bench_json_string(f, MINDB_VERSION);
    fprintf(f, ",\n  \"started\": %.0f,\n  \"config\": {\"dir\": ", b->started);
    bench_json_string(f, cfg->parent_dir);
    fprintf(f, ", \"filesystem\": ");
    bench_json_string(f, b->fs_name);
    fprintf(f,
            ", \"rounds\": %u, \"keys\": %" PRIu64 ", \"key_size\": %d, \"value_size\": %" PRIu64
            ", \"scan_length\": %" PRIu64 ", \"sync_ops\": %" PRIu64
            ", \"fillsync8_threads\": %u, \"big_count\": %" PRIu64 ", \"big_size\": %" PRIu64
            ", \"seed\": %" PRIu64 "},\n",
            cfg->rounds, cfg->keys, KV_KEY_BYTES, cfg->value_size, cfg->scan_length, cfg->sync_ops,
            cfg->threads, cfg->big_count, cfg->big_size, cfg->seed);

    fprintf(f, "  \"engines\": [");
    for (unsigned e = 0; e < cfg->engine_count; e++) {
        fprintf(f, "%s\n    {\"name\": \"%s\", \"put_durability\": ", e ? "," : "",
                cfg->engines[e]->name);
        bench_json_string(f, cfg->engines[e]->put_durability);
        fprintf(f, ", \"sync_durability\": ");
        bench_json_string(f, cfg->engines[e]->sync_durability);
        fprintf(f, "}");
    }

    fprintf(f, "\n  ],\n  \"results\": [");
    bool first = true;
    for (unsigned m = 0; m < M_COUNT; m++) {
        for (unsigned e = 0; e < cfg->engine_count; e++) {
            struct summary s = summarize(b, (enum kv_measure)m, e);
            if (s.state == CELL_NONE)
                continue;
            fprintf(f, "%s\n    {\"workload\": \"%s\", \"engine\": \"%s\", \"threads\": %u, ",
                    first ? "" : ",", kv_measure_names[m], cfg->engines[e]->name,
                    m == M_FILLSYNC8 ? cfg->threads : 1);
            first = false;
            if (s.state == CELL_OK)
                fprintf(f,
                        "\"median\": {\"ops_per_s\": %.1f, \"mb_per_s\": %.3f, "
                        "\"close_seconds\": %.4f},",
                        s.ops_per_s, s.mb_per_s, s.close_seconds);
            else
                fprintf(f, "\"median\": null,");
            fprintf(f, "\n     \"rounds\": [");
            for (unsigned r = 0; r < cfg->rounds; r++) {
                const struct kv_run *run = kv_run_at(b, (enum kv_measure)m, e, r);
                fprintf(f,
                        "%s\n      {\"round\": %u, \"ok\": %s, \"ops\": %" PRIu64
                        ", \"bytes\": %" PRIu64 ", \"scans\": %" PRIu64
                        ", \"seconds\": %.6f, \"ops_per_s\": %.1f, \"mb_per_s\": %.3f, "
                        "\"close_seconds\": %.4f}",
                        r ? "," : "", r + 1, bench_json_bool(run->ran && !run->failed), run->ops,
                        run->bytes, run->scans, run->seconds, rate(run), mb_rate(run),
                        run->close_seconds);
            }
            fprintf(f, "]}");
        }
    }

    fprintf(f, "\n  ],\n  \"sizes\": [");
    first = true;
    json_sizes(b, f, b->sizes, "fillrandom", &first);
    json_sizes(b, f, b->ow_sizes, "overwrite", &first);

    fprintf(f, "\n  ],\n  \"ratios\": [");
    first = true;
    int mi = kv_mindb_index(cfg);
    for (unsigned m = 0; m < M_COUNT && mi >= 0; m++) {
        for (unsigned e = 0; e < cfg->engine_count; e++) {
            struct bench_ratio r;
            if (!mindb_ratio(b, (enum kv_measure)m, e, &r))
                continue;
            fprintf(f,
                    "%s\n    {\"workload\": \"%s\", \"of\": \"mindb ops_per_s / %s ops_per_s\", "
                    "\"peer\": \"%s\", ",
                    first ? "" : ",", kv_measure_names[m], cfg->engines[e]->name,
                    cfg->engines[e]->name);
            first = false;
            bench_json_ratio_members(f, &r);
            fputc('}', f);
        }
    }
    fprintf(f, "\n  ]\n}\n");
    int rc = bench_close_results(f);
    if (rc < 0) {
        fprintf(stderr, "%s: writing %s: %s\n", PROGRAM, path, strerror(-rc));
        return rc;
    }
    return 0;
}
