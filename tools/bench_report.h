/*
 * bench_report.h - the half of a benchmark in tools/ that does not know what
 * was measured: medians and percentiles of samples, the ratio of two targets'
 * rates over rounds with its target and spread, sizes written for people, and
 * the small pieces of JSON writing the benchmarks share. wal_bench uses it; a
 * filesystem benchmark can use it as well, so that both report alike.
 *
 * Tables and ratios are printed on stdout, where a benchmark's results go.
 */
#ifndef MINDB_TOOLS_BENCH_REPORT_H
#define MINDB_TOOLS_BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The most rounds bench_ratio_over_rounds() takes: it works on the stack. */
#define BENCH_MAX_ROUNDS 99

/* Writes `bytes` to `out` as "N MiB", "N KiB" or "N B", the largest unit
 * that divides it exactly, so that no size is shown rounded. */
void bench_print_size(char *out, size_t out_len, uint64_t bytes);

/* Sorts `n` samples into ascending order, for bench_percentile_us(). */
void bench_sort_samples(uint64_t *samples, size_t n);

/* The nearest-rank percentile `p` (0-100) of `n` sorted samples in
 * nanoseconds, in microseconds; 0 when there are none. */
double bench_percentile_us(const uint64_t *sorted, size_t n, double p);

/* The median of `n` (at least 1) values. Sorts `values`, which callers
 * rely on to read the lowest and highest afterwards. */
double bench_median(double *values, unsigned n);

/* How one target's rate compares with another's. */
struct bench_ratio {
    double value;      /* median of the per-round ratios */
    double of_medians; /* the ratio of the two medians, for the record */
    double round_min;  /* of the per-round ratios */
    double round_max;
    double target; /* 0: none */
};

/* The ratio of num[r] to den[r] over `rounds` rounds (1 to BENCH_MAX_ROUNDS),
 * each pair the rates of two runs within one round. Taking the median of the
 * per-round ratios, rather than the ratio of the medians, cancels a drift in
 * the machine's speed from round to round, as the two runs of a round ran
 * seconds apart; their lowest and highest show the noise. */
struct bench_ratio bench_ratio_over_rounds(const double *num, const double *den, unsigned rounds,
                                           double target);

/* Prints the heading of a group of ratios, with its target if it has one. */
void bench_print_ratio_heading(const char *title, double target);

/* Prints one ratio as a row under its heading, labelled `label`, with a *
 * when it is below its target. Returns whether it is. */
bool bench_print_ratio_row(const char *label, const struct bench_ratio *r);

/* Explains the * after the ratios if any was below its target. */
void bench_print_ratio_footnote(bool any_below);

/* Writes `s` as a JSON string, quoted and escaped. */
void bench_json_string(FILE *f, const char *s);

/* "true" or "false". */
const char *bench_json_bool(bool value);

/* Writes the members of `r` for a JSON object, without braces:
 * "value", "of_medians", "round_min", "round_max" and "target" (null when
 * there is none), so that the caller can add what the ratio is of. */
void bench_json_ratio_members(FILE *f, const struct bench_ratio *r);

/* Closes `f`, a file of results, and returns 0, or a negative errno if
 * writing it failed at any point. */
int bench_close_results(FILE *f);

#endif /* MINDB_TOOLS_BENCH_REPORT_H */
