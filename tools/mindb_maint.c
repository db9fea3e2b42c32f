/*
 * mindb_maint.c - the maintenance commands of the mindb tool: check,
 * compact and wal-dump.
 */
#include "mindb_cli.h"

#include <inttypes.h>

/* Parses the options of a command without options of its own, then expects
 * exactly STORE. Returns -1 to go on, or the exit status. */
static int store_only(struct cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    if (cli_getopt(cli, argc, argv, CLI_COMMON_SHORTOPTS, longopts) == CLI_STOP)
        return cli->status;
    if (argc - optind != 1)
        return cli_usage_error(cli, "expects one STORE");
    cli->store = argv[optind];
    return -1;
}

/* ---- check -------------------------------------------------------------- */

static void check_usage(FILE *out)
{
    fprintf(out, "usage: mindb check [OPTIONS] STORE\n"
                 "\n"
                 "Reads every chunk of every value and verifies its checksum, and the\n"
                 "index. Prints 'damaged: KEY: REASON' for each damaged key, then a\n"
                 "summary. Shows progress on stderr when it is a terminal.\n"
                 "Exits 0 when the store is sound, 1 when a key is damaged.\n"
                 "\n");
    cli_common_help(out);
}

static void on_damaged(void *ctx, const void *key, size_t len, int err)
{
    struct cli *cli = ctx;
    cli_progress_clear(cli);
    fputs("damaged: ", stdout);
    if (len)
        cli_print_key(stdout, key, len);
    else
        fputs("(index)", stdout);
    printf(": %s\n", mindb_strerror(err));
    /* Seen at once when stdout is a terminal shared with the progress line. */
    fflush(stdout);
}

int cmd_check(int argc, char **argv)
{
    struct cli cli;
    cli_init(&cli, "check", check_usage);
    int status = store_only(&cli, argc, argv);
    if (status >= 0)
        return status;
    mindb *db;
    if (cli_open(&cli, 1, 0, &db) != 0)
        return 1;
    struct mindb_stats s;
    int rc = mindb_stats(db, &s);
    if (rc == 0)
        rc = mindb_check(db, on_damaged, cli_progress, &cli);
    cli_progress_clear(&cli);
    char h[CLI_HUMAN_BYTES];
    if (rc < 0) {
        status = cli_fail(&cli, rc, NULL, 0);
    } else {
        printf("checked %" PRIu64 " keys (%s): %d damaged\n", s.keys, cli_human(h, s.logical_bytes),
               rc);
        status = rc > 0;
    }
    if (cli_close(&cli, db) != 0)
        status = 1;
    return status;
}

/* ---- compact ------------------------------------------------------------ */

static void compact_usage(FILE *out)
{
    fprintf(out, "usage: mindb compact [OPTIONS] STORE\n"
                 "\n"
                 "Rewrites the data segments that hold dead bytes (of values overwritten or\n"
                 "deleted) so that their space returns to the filesystem, and prints the\n"
                 "segment bytes before and after. Shows progress on stderr when it is a\n"
                 "terminal.\n"
                 "\n"
                 "      --live PERCENT     rewrite only segments whose live fraction is\n"
                 "                         below PERCENT (1..100; default 100: every segment\n"
                 "                         with a dead byte)\n"
                 "\n");
    cli_common_help(out);
}

int cmd_compact(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"live", required_argument, NULL, CLI_OPT_LIVE},
        {NULL, 0, NULL, 0},
    };
    struct cli cli;
    cli_init(&cli, "compact", compact_usage);
    unsigned live = 100;
    int c;
    while ((c = cli_getopt(&cli, argc, argv, CLI_COMMON_SHORTOPTS, longopts)) != -1) {
        if (c == CLI_STOP)
            return cli.status;
        unsigned long long v;
        if (cli_parse_number(optarg, 1, 100, &v) < 0)
            return cli_usage_error(&cli, "--live: not a percentage from 1 to 100: %s", optarg);
        live = (unsigned)v;
    }
    if (argc - optind != 1)
        return cli_usage_error(&cli, "expects one STORE");
    cli.store = argv[optind];

    mindb *db;
    if (cli_open(&cli, 0, 0, &db) != 0)
        return 1;
    struct mindb_stats before, after;
    int rc = mindb_stats(db, &before);
    if (rc == 0)
        rc = mindb_compact(db, live, cli_progress, &cli);
    if (rc == 0)
        rc = mindb_stats(db, &after);
    cli_progress_clear(&cli);
    int status = 0;
    if (rc < 0) {
        status = cli_fail(&cli, rc, NULL, 0);
    } else {
        char h1[CLI_HUMAN_BYTES], h2[CLI_HUMAN_BYTES];
        printf("segment bytes: before %" PRIu64 " (%s), after %" PRIu64 " (%s)\n",
               before.segment_bytes, cli_human(h1, before.segment_bytes), after.segment_bytes,
               cli_human(h2, after.segment_bytes));
    }
    if (cli_close(&cli, db) != 0)
        status = 1;
    return status;
}

/* ---- wal-dump ----------------------------------------------------------- */

static void wal_dump_usage(FILE *out)
{
    fprintf(out, "usage: mindb wal-dump [OPTIONS] STORE\n"
                 "\n"
                 "Prints the records of the write-ahead log written since the last\n"
                 "checkpoint, in the order recovery replays them, one 'POSITION TEXT' per\n"
                 "line, then their count. Opens the store read-only, so it shows what the\n"
                 "next opening will replay. (Closing a store checkpoints it, so after a\n"
                 "clean close the log is usually empty.)\n"
                 "\n");
    cli_common_help(out);
}

static void on_record(void *ctx, uint64_t pos, const char *text)
{
    (void)ctx;
    printf("%" PRIu64 " %s\n", pos, text);
}

int cmd_wal_dump(int argc, char **argv)
{
    struct cli cli;
    cli_init(&cli, "wal-dump", wal_dump_usage);
    int status = store_only(&cli, argc, argv);
    if (status >= 0)
        return status;
    mindb *db;
    if (cli_open(&cli, 1, 0, &db) != 0)
        return 1;
    int rc = mindb_describe_log(db, on_record, NULL);
    status = 0;
    if (rc < 0)
        status = cli_fail(&cli, rc, NULL, 0);
    else
        printf("records: %d\n", rc);
    if (cli_close(&cli, db) != 0)
        status = 1;
    return status;
}
