/*
 * bench_args.h - the parsers a benchmark in tools/ needs for its command
 * line: numbers with binary suffixes, comma-separated lists of them, a
 * duration in seconds, and the one-line usage error that goes with exit
 * status 2. wal_bench uses them; a filesystem benchmark can use them as well,
 * so that both take numbers alike.
 *
 * The parsers print nothing: each says only whether the text was good, and
 * the caller, which knows the option, says what was wanted.
 */
#ifndef MINDB_TOOLS_BENCH_ARGS_H
#define MINDB_TOOLS_BENCH_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* The exit status of a usage error. */
#define BENCH_EXIT_USAGE 2

/* Parses a decimal number, with no sign or leading space, into `out`. With
 * `allow_suffix`, one k, m or g (either case) may follow, multiplying it by
 * 2^10, 2^20 or 2^30. False for anything else, or a value over UINT64_MAX;
 * `out` is then left alone. */
bool bench_parse_u64(const char *text, bool allow_suffix, uint64_t *out);

/* Parses a comma-separated list of 1 to `max_count` numbers, each as
 * bench_parse_u64() does and from `min` to `max`, into `values` and their
 * number into `count`. Empty items are skipped, so "1,,2" is two numbers.
 * False if any is bad, there are none or too many, or `text` is over 255
 * bytes; `count` is then left alone but `values` may have been written. */
bool bench_parse_list(const char *text, bool allow_suffix, uint64_t min, uint64_t max,
                      uint64_t *values, unsigned max_count, unsigned *count);

/* Parses a positive number of seconds, which may have a fraction, up to
 * `max`, into `out`. False for anything else; `out` is then left alone. */
bool bench_parse_seconds(const char *text, double max, double *out);

/* Prints "PROGRAM: " and the message `fmt` makes on one line of stderr, and
 * a pointer to --help on the next, and returns BENCH_EXIT_USAGE, so that a
 * parser can `return bench_usage_error(...)`. */
int bench_usage_error(const char *program, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* MINDB_TOOLS_BENCH_ARGS_H */
