/*
 * mindb_cli.h - what the commands of the mindb tool share: option parsing,
 * opening and closing a store with one clear message per failure, progress
 * lines, and the formatting of keys, sizes, modes and times.
 *
 * Each command is a function taking the argument vector that starts at the
 * command's name and returning the exit status: 0 ok, 1 failure, 2 usage.
 */
#ifndef MINDB_CLI_H
#define MINDB_CLI_H

#include "mindb.h"

#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

/* Long options without a short form, past any character getopt returns. */
enum {
    CLI_OPT_COMPRESSION = 0x100,
    CLI_OPT_CACHE_MB,
    CLI_OPT_LIVE,
};

/* Options every command takes; a command lists them first in its table and
 * its own after them. The leading ':' makes getopt tell a missing argument
 * from an unknown option. The long ones stay one a line, where clang-format
 * would pack them. */
#define CLI_COMMON_SHORTOPTS ":qhV"
/* clang-format off */
#define CLI_COMMON_LONGOPTS                                         \
    {"quiet", no_argument, NULL, 'q'},                              \
    {"compression", required_argument, NULL, CLI_OPT_COMPRESSION}, \
    {"cache-mb", required_argument, NULL, CLI_OPT_CACHE_MB},        \
    {"help", no_argument, NULL, 'h'},                               \
    {"version", no_argument, NULL, 'V'}
/* clang-format on */

/* cli_getopt() returns this when the command must stop and return
 * cli->status: after --help or --version (0) or a usage error (2). */
#define CLI_STOP (-2)

struct cli {
    const char *cmd;   /* the command, as messages name it */
    const char *store; /* the store directory, once known */
    void (*usage)(FILE *out);
    int status;
    int quiet;
    int compression_level; /* 0: the library's default */
    uint64_t cache_bytes;  /* 0: the library's default */

    /* Log lines met while opening are held back until the outcome is
     * known: when the CLI explains the failure itself (store in use, not a
     * store), the library's own line about it would say it twice. */
    pthread_mutex_t log_lock;
    int log_hold;
    char *held;
    size_t held_len;
    FILE *held_out;

    /* Progress on stderr: a single line rewritten in place. */
    int progress;       /* stderr is a terminal and -q was not given */
    int progress_shown; /* a progress line is on the screen */
    int last_permille;
};

void cli_init(struct cli *cli, const char *cmd, void (*usage)(FILE *out));
/* Like getopt_long() on the command's arguments, handling the common options
 * itself; returns a command option, -1 at the end, or CLI_STOP. */
int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts);
/* Parses a whole decimal number in [min, max]; 0, or -1 when it is not
 * one. */
int cli_parse_number(const char *s, unsigned long long min, unsigned long long max,
                     unsigned long long *out);
/* Prints "mindb CMD: MESSAGE" and the hint to --help; returns 2. */
int cli_usage_error(struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The help text of the common options, for each command's usage. */
void cli_common_help(FILE *out);

/* Opens cli->store; on failure prints one line and returns 1. `create` only
 * for init. */
int cli_open(struct cli *cli, int read_only, int create, mindb **out);
/* Closes the store; on failure prints one line and returns 1. */
int cli_close(struct cli *cli, mindb *db);
/* Prints "mindb: CMD: STORE: [KEY: ]ERROR" and returns 1. */
int cli_fail(struct cli *cli, int err, const void *key, size_t key_len);
/* Prints "mindb: CMD: WHAT: ERROR" for errors outside the store (files,
 * stdin, stdout) and returns 1. */
int cli_fail_io(struct cli *cli, const char *what, int err);

/* mindb_compact()/mindb_check() progress callback; ctx is the cli. */
void cli_progress(void *ctx, uint64_t done, uint64_t total);
/* Removes the progress line so that other output starts on a clean line. */
void cli_progress_clear(struct cli *cli);

/* Writes a key with every byte that is not printable (and backslash) as a
 * \xHH escape, so that any key fits on one line; valid UTF-8 passes. */
void cli_print_key(FILE *out, const void *key, size_t len);
/* "1.5 MiB"; buf needs CLI_HUMAN_BYTES. */
#define CLI_HUMAN_BYTES 16
const char *cli_human(char *buf, uint64_t bytes);
/* "drwxr-xr-x"; buf needs 11 bytes. */
const char *cli_mode_string(char *buf, uint32_t mode);
/* ISO 8601 local time, "2026-11-24T10:15:30", with nanoseconds when `ns`;
 * buf needs CLI_TIME_BYTES. */
#define CLI_TIME_BYTES 48
const char *cli_time(char *buf, int64_t time_ns, int ns);
/* Writes all of buf to fd, across short writes; 0 or a negative errno. */
int cli_write_all(int fd, const void *buf, size_t len);

int cmd_init(int argc, char **argv);
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_compact(int argc, char **argv);
int cmd_wal_dump(int argc, char **argv);

#endif /* MINDB_CLI_H */
