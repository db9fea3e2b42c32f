/*
 * mindb_common.c - what every command of the mindb tool does alike: the
 * common options, opening and closing the store with one clear line per
 * failure, the library's log lines, and progress on a terminal.
 */
#include "mindb_cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_init(struct cli *cli, const char *cmd, void (*usage)(FILE *out))
{
    memset(cli, 0, sizeof *cli);
    cli->cmd = cmd;
    cli->usage = usage;
    pthread_mutex_init(&cli->log_lock, NULL);
    /* A progress line is for a person watching; in a pipe or a log file it
     * would only be noise. */
    cli->progress = isatty(STDERR_FILENO);
    cli->last_permille = -1;
    /* glibc starts over (and rereads the optstring's mode) when optind is 0. */
    optind = 0;
    opterr = 0;
}

void cli_common_help(FILE *out)
{
    fprintf(out, "Common options:\n"
                 "  -q, --quiet            no progress line\n"
                 "      --compression N    zstd level 1..19 for data written (default 3)\n"
                 "      --cache-mb N       MiB of decompressed chunks kept for reads\n"
                 "                         (default 64)\n"
                 "  -h, --help             show this help\n"
                 "  -V, --version          show the version\n"
                 "\n"
                 "Exit status: 0 on success, 1 on failure, 2 on a usage error.\n");
}

int cli_usage_error(struct cli *cli, const char *fmt, ...)
{
    fprintf(stderr, "mindb %s: ", cli->cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'mindb %s --help'\n", cli->cmd);
    cli->status = 2;
    return 2;
}

int cli_parse_number(const char *s, unsigned long long min, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    /* strtoull() would take leading blanks and negate a '-'. */
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The option getopt stopped at, for a message: "-x" or "--long". */
static const char *bad_option(char **argv, char *buf, size_t size)
{
    if (optopt > 0 && optopt < 0x80) {
        snprintf(buf, size, "-%c", optopt);
        return buf;
    }
    return argv[optind - 1];
}

int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    for (;;) {
        int c = getopt_long(argc, argv, shortopts, longopts, NULL);
        unsigned long long v;
        char buf[8];
        switch (c) {
        case 'q':
            cli->quiet = 1;
            cli->progress = 0;
            break;
        case CLI_OPT_COMPRESSION:
            if (cli_parse_number(optarg, 1, 19, &v) < 0) {
                cli_usage_error(cli, "--compression: not a level from 1 to 19: %s", optarg);
                return CLI_STOP;
            }
            cli->compression_level = (int)v;
            break;
        case CLI_OPT_CACHE_MB:
            if (cli_parse_number(optarg, 1, UINT64_MAX >> 20, &v) < 0) {
                cli_usage_error(cli, "--cache-mb: not a positive number of MiB: %s", optarg);
                return CLI_STOP;
            }
            cli->cache_bytes = (uint64_t)v << 20;
            break;
        case 'h':
            cli->usage(stdout);
            cli->status = 0;
            return CLI_STOP;
        case 'V':
            printf("mindb " MINDB_VERSION "\n");
            cli->status = 0;
            return CLI_STOP;
        case '?':
            cli_usage_error(cli, "unknown option '%s'", bad_option(argv, buf, sizeof buf));
            return CLI_STOP;
        case ':':
            cli_usage_error(cli, "option '%s' needs an argument",
                            bad_option(argv, buf, sizeof buf));
            return CLI_STOP;
        default:
            return c;
        }
    }
}

/* ---- The library's log lines ------------------------------------------ */

static void log_line(void *ctx, const char *message)
{
    struct cli *cli = ctx;
    /* Background threads log too, so the switch from held to printed is
     * under the lock. */
    pthread_mutex_lock(&cli->log_lock);
    FILE *out = cli->log_hold && cli->held_out ? cli->held_out : stderr;
    if (out == stderr)
        cli_progress_clear(cli); /* redrawn at the next progress call */
    fprintf(out, "mindb: %s\n", message);
    pthread_mutex_unlock(&cli->log_lock);
}

static void hold_log(struct cli *cli)
{
    pthread_mutex_lock(&cli->log_lock);
    cli->held_out = open_memstream(&cli->held, &cli->held_len);
    cli->log_hold = 1;
    pthread_mutex_unlock(&cli->log_lock);
}

static void release_log(struct cli *cli, int print)
{
    pthread_mutex_lock(&cli->log_lock);
    if (cli->held_out) {
        fclose(cli->held_out);
        if (print && cli->held_len)
            fputs(cli->held, stderr);
        free(cli->held);
        cli->held = NULL;
        cli->held_out = NULL;
    }
    cli->log_hold = 0;
    pthread_mutex_unlock(&cli->log_lock);
}

/* ---- Opening, closing, failing ---------------------------------------- */

int cli_open(struct cli *cli, int read_only, int create, mindb **out)
{
    struct mindb_options options;
    mindb_options_init(&options);
    options.read_only = read_only;
    options.create = create;
    if (cli->compression_level)
        options.compression_level = cli->compression_level;
    if (cli->cache_bytes)
        options.cache_bytes = cli->cache_bytes;
    options.log = log_line;
    options.log_ctx = cli;

    hold_log(cli);
    int rc = mindb_open(cli->store, &options, out);
    struct stat st;
    int missing = rc < 0 && !create && lstat(cli->store, &st) < 0 && errno == ENOENT;
    /* The failures explained below in words of the CLI's own. */
    int explained = rc == -EBUSY || rc == MINDB_ENOTSTORE || missing;
    release_log(cli, !explained);
    if (rc == 0)
        return 0;

    if (missing) {
        fprintf(stderr, "mindb: %s does not exist (create a store with: mindb init %s)\n",
                cli->store, cli->store);
    } else if (rc == -EBUSY) {
        pid_t pid = mindb_lock_holder(cli->store);
        if (pid > 0)
            fprintf(stderr, "mindb: %s is in use by process %ld\n", cli->store, (long)pid);
        else
            fprintf(stderr, "mindb: %s is in use by another process\n", cli->store);
    } else if (rc == MINDB_ENOTSTORE && create) {
        fprintf(stderr, "mindb: %s is not empty and is not a mindb store\n", cli->store);
    } else if (rc == MINDB_ENOTSTORE) {
        fprintf(stderr, "mindb: %s is not a mindb store (create one with: mindb init %s)\n",
                cli->store, cli->store);
    } else {
        cli_fail(cli, rc, NULL, 0);
    }
    return 1;
}

int cli_close(struct cli *cli, mindb *db)
{
    int rc = mindb_close(db);
    return rc < 0 ? cli_fail(cli, rc, NULL, 0) : 0;
}

int cli_fail(struct cli *cli, int err, const void *key, size_t key_len)
{
    cli_progress_clear(cli);
    fprintf(stderr, "mindb: %s: %s: ", cli->cmd, cli->store);
    if (key) {
        cli_print_key(stderr, key, key_len);
        fputs(": ", stderr);
    }
    fprintf(stderr, "%s\n", mindb_strerror(err));
    return 1;
}

int cli_fail_io(struct cli *cli, const char *what, int err)
{
    cli_progress_clear(cli);
    fprintf(stderr, "mindb: %s: %s: %s\n", cli->cmd, what, strerror(-err));
    return 1;
}

/* ---- Progress ----------------------------------------------------------- */

void cli_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct cli *cli = ctx;
    if (!cli->progress)
        return;
    int permille = total ? (int)((double)done / (double)total * 1000.0) : 1000;
    if (permille > 1000)
        permille = 1000;
    /* Redraw only when the figure changes: the callback may come per chunk. */
    if (permille == cli->last_permille)
        return;
    cli->last_permille = permille;
    char h[CLI_HUMAN_BYTES];
    fprintf(stderr, "\r%s: %3d.%d%% of %s", cli->cmd, permille / 10, permille % 10,
            cli_human(h, total));
    fflush(stderr);
    cli->progress_shown = 1;
}

void cli_progress_clear(struct cli *cli)
{
    if (!cli->progress_shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    cli->progress_shown = 0;
    cli->last_permille = -1;
}
