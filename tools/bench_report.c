/*
 * bench_report.c - reporting for the benchmarks in tools/, apart from what
 * they measure: medians and nearest-rank percentiles, ratios of rates over
 * rounds, sizes for people and small JSON writers. bench_report.h says what
 * each function promises.
 */
#include "bench_report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

void bench_print_size(char *out, size_t out_len, uint64_t bytes)
{
    if (bytes >= ((uint64_t)1 << 20) && bytes % ((uint64_t)1 << 20) == 0)
        snprintf(out, out_len, "%" PRIu64 " MiB", bytes >> 20);
    else if (bytes >= 1024 && bytes % 1024 == 0)
        snprintf(out, out_len, "%" PRIu64 " KiB", bytes >> 10);
    else
        snprintf(out, out_len, "%" PRIu64 " B", bytes);
}

/* ---- Samples ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void bench_sort_samples(uint64_t *samples, size_t n)
{
    qsort(samples, n, sizeof *samples, cmp_u64);
}

double bench_percentile_us(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *values, unsigned n)
{
    qsort(values, n, sizeof *values, cmp_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/* ---- Ratios ---- */

struct bench_ratio bench_ratio_over_rounds(const double *num, const double *den, unsigned rounds,
                                           double target)
{
    double per_round[BENCH_MAX_ROUNDS], num_sorted[BENCH_MAX_ROUNDS], den_sorted[BENCH_MAX_ROUNDS];
    for (unsigned round = 0; round < rounds; round++) {
        per_round[round] = den[round] > 0 ? num[round] / den[round] : 0;
        num_sorted[round] = num[round];
        den_sorted[round] = den[round];
    }
    double num_median = bench_median(num_sorted, rounds);
    double den_median = bench_median(den_sorted, rounds);
    double value = bench_median(per_round, rounds); /* sorts per_round */
    return (struct bench_ratio){
        .value = value,
        .of_medians = den_median > 0 ? num_median / den_median : 0,
        .round_min = per_round[0],
        .round_max = per_round[rounds - 1],
        .target = target,
    };
}

void bench_print_ratio_heading(const char *title, double target)
{
    char target_text[32] = "";
    if (target > 0)
        snprintf(target_text, sizeof target_text, " (target >= %g)", target);
    printf("\n%s%s:\n", title, target_text);
}

bool bench_print_ratio_row(const char *label, const struct bench_ratio *r)
{
    bool miss = r->target > 0 && r->value < r->target;
    printf("  %10s  %5.2f%s [%.2f-%.2f]\n", label, r->value, miss ? "*" : " ", r->round_min,
           r->round_max);
    return miss;
}

void bench_print_ratio_footnote(bool any_below)
{
    if (any_below)
        printf("\n* below target\n");
}

/* ---- JSON ---- */

void bench_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

const char *bench_json_bool(bool value)
{
    return value ? "true" : "false";
}

void bench_json_ratio_members(FILE *f, const struct bench_ratio *r)
{
    fprintf(f,
            "\"value\": %.4f, \"of_medians\": %.4f, \"round_min\": %.4f, "
            "\"round_max\": %.4f, \"target\": ",
            r->value, r->of_medians, r->round_min, r->round_max);
    if (r->target > 0)
        fprintf(f, "%g", r->target);
    else
        fprintf(f, "null");
}

int bench_close_results(FILE *f)
{
    /* `|`, not `||`: fclose() must run whatever ferror() says, to free f. */
    if (ferror(f) | (fclose(f) != 0))
        return errno ? -errno : -EIO;
    return 0;
}
