/*
 * bench_args.c - command-line number and list parsers for the benchmarks in
 * tools/, and their usage error. bench_args.h says what each promises.
 */
#include "bench_args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool bench_parse_u64(const char *text, bool allow_suffix, uint64_t *out)
{
    /* strtoull() would take leading space and a sign, and wrap "-1". */
    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0)
        return false;
    unsigned shift = 0;
    if (allow_suffix && *end != '\0' && end[1] == '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return false;
        }
        end++;
    }
    if (*end != '\0' || value > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)value << shift;
    return true;
}

bool bench_parse_list(const char *text, bool allow_suffix, uint64_t min, uint64_t max,
                      uint64_t *values, unsigned max_count, unsigned *count)
{
    /* strtok_r() writes into the text, which is argv's. */
    char copy[256];
    if (strlen(text) >= sizeof copy)
        return false;
    strcpy(copy, text);
    unsigned n = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (n == max_count || !bench_parse_u64(item, allow_suffix, &values[n]) || values[n] < min ||
            values[n] > max)
            return false;
        n++;
    }
    *count = n;
    return n > 0;
}

bool bench_parse_seconds(const char *text, double max, double *out)
{
    errno = 0;
    char *end;
    double value = strtod(text, &end);
    /* !(value > 0) also turns away NaN. */
    if (errno != 0 || end == text || *end != '\0' || !(value > 0) || value > max)
        return false;
    *out = value;
    return true;
}

int bench_usage_error(const char *program, const char *fmt, ...)
{
    fprintf(stderr, "%s: ", program);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", program);
    return BENCH_EXIT_USAGE;
}
