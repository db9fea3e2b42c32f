/*
 * wal_dump - prints the records of a write-ahead log and where it ends.
 *
 * Opens the log read-only (a shared lock: it refuses a log a writer holds),
 * so it is safe to run on a log whose writer crashed.
 */
#include "wal.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: wal_dump [OPTIONS] WAL_DIR\n"
            "\n"
            "Prints one line per record of the write-ahead log in WAL_DIR (position,\n"
            "length, and the first bytes with -x), then where the log ends and why.\n"
            "\n"
            "  -f, --from POS    start at position POS (default: the oldest record kept)\n"
            "  -q, --quiet       print only the summary\n"
            "  -x, --hex N       print the first N bytes of each record in hex (default 0)\n"
            "  -h, --help        show this help\n"
            "  -V, --version     show the version\n"
            "\n"
            "Exit status: 0 when the log ends cleanly, 1 when it ends at a damaged\n"
            "frame or cannot be read, 2 on a usage error.\n");
}

static void print_hex(const uint8_t *p, size_t len, size_t max)
{
    for (size_t i = 0; i < len && i < max; i++)
        printf("%s%02x", i ? "" : " ", p[i]);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"from", required_argument, NULL, 'f'}, {"quiet", no_argument, NULL, 'q'},
        {"hex", required_argument, NULL, 'x'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},    {NULL, 0, NULL, 0},
    };
    uint64_t from = 0;
    size_t hex = 0;
    int quiet = 0;
    int c;
    while ((c = getopt_long(argc, argv, "f:qx:hV", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'f':
            errno = 0;
            from = strtoull(optarg, &end, 0);
            if (errno || *end) {
                fprintf(stderr, "wal_dump: --from: not a position: %s\n", optarg);
                return 2;
            }
            break;
        case 'q':
            quiet = 1;
            break;
        case 'x':
            errno = 0;
            hex = strtoul(optarg, &end, 0);
            if (errno || *end) {
                fprintf(stderr, "wal_dump: --hex: not a number: %s\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("wal_dump (mindb) " MINDB_VERSION "\n");
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *dir = argv[optind];

    struct wal_options options;
    wal_options_init(&options);
    options.read_only = 1;
    wal *log;
    int rc = wal_open(dir, &options, &log);
    if (rc < 0) {
        fprintf(stderr, "wal_dump: %s: %s\n", dir,
                rc == -EBUSY ? "in use by a writer" : strerror(-rc));
        return 1;
    }
    wal_reader *reader;
    rc = wal_reader_open(log, from, &reader);
    if (rc < 0) {
        fprintf(stderr, "wal_dump: %s: %s\n", dir, strerror(-rc));
        wal_close(log);
        return 1;
    }

    uint64_t records = 0, bytes = 0;
    const void *data;
    size_t len;
    uint64_t pos;
    while ((rc = wal_reader_next(reader, &data, &len, &pos)) > 0) {
        records++;
        bytes += len;
        if (quiet)
            continue;
        printf("%" PRIu64 " %zu", pos, len);
        print_hex(data, len, hex);
        printf("\n");
    }
    struct wal_stop stop;
    wal_reader_stop(reader, &stop);
    struct wal_stats stats;
    wal_stats(log, &stats);
    printf("records %" PRIu64 ", bytes %" PRIu64 ", first position %" PRIu64
           ", segment bytes %" PRIu64 "\n",
           records, bytes, wal_first_pos(log), stats.segment_bytes);
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "wal_dump: %s: %s\n", dir, strerror(-rc));
        status = 1;
    } else {
        printf("ends at %" PRIu64 ": %s", stop.pos, wal_stop_reason_name(stop.reason));
        if (stop.reason == WAL_STOP_IO)
            printf(" (%s)", strerror(-stop.error));
        printf("\n");
        /* A torn tail after a crash is normal; anything but a clean end is
         * still worth a non-zero status for scripts that check logs. */
        status = stop.reason == WAL_STOP_END ? 0 : 1;
    }
    wal_reader_close(reader);
    wal_close(log);
    return status;
}
