/*
 * mindb - the command-line tool of a mindb store: create one, put, get,
 * remove and list keys, and inspect, check and compact it.
 *
 * This file holds main(): the list of commands and the options that come
 * before a command. The commands live in mindb_write.c (changes),
 * mindb_read.c (reads and listings) and mindb_maint.c (maintenance).
 */
#include "mindb_cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"init", cmd_init, "create an empty store"},
    {"put", cmd_put, "set a key's value from a file or stdin"},
    {"get", cmd_get, "write a key's value to stdout"},
    {"rm", cmd_rm, "remove keys (-r: directories and all under them)"},
    {"ls", cmd_ls, "list the children of a directory (-R: every key under it)"},
    {"stat", cmd_stat, "show the store's numbers, or a key's metadata"},
    {"check", cmd_check, "verify every checksum and name the damaged keys"},
    {"compact", cmd_compact, "reclaim the space of overwritten and deleted data"},
    {"wal-dump", cmd_wal_dump, "print the log records since the last checkpoint"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: mindb COMMAND STORE [ARGS]\n"
                 "       mindb help COMMAND | --help | --version\n"
                 "\n"
                 "Works on the mindb store in the directory STORE. Commands:\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n"
                 "Run 'mindb COMMAND --help' for a command's arguments and options.\n"
                 "\n"
                 "Exit status: 0 on success, 1 on failure, 2 on a usage error.\n");
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    fprintf(stderr, "mindb: unknown command '%s'\nTry 'mindb --help'\n", name);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *first = argv[1];
    if (strcmp(first, "-h") == 0 || strcmp(first, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(first, "-V") == 0 || strcmp(first, "--version") == 0) {
        printf("mindb " MINDB_VERSION "\n");
        return 0;
    }
    if (first[0] == '-') {
        fprintf(stderr, "mindb: unknown option '%s'\nTry 'mindb --help'\n", first);
        return 2;
    }
    if (strcmp(first, "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return 0;
        }
        const struct command *cmd = find_command(argv[2]);
        if (!cmd)
            return unknown_command(argv[2]);
        static char help_option[] = "--help";
        char *help_argv[] = {argv[2], help_option, NULL};
        return cmd->run(2, help_argv);
    }
    const struct command *cmd = find_command(first);
    if (!cmd)
        return unknown_command(first);
    int status = cmd->run(argc - 1, argv + 1);
    /* Output that never reached its destination (a full disk) fails the
     * command, whatever the command itself saw. */
    errno = 0;
    if ((fflush(stdout) != 0 || ferror(stdout)) && status == 0) {
        fprintf(stderr, "mindb: %s: stdout: %s\n", first, strerror(errno ? errno : EIO));
        status = 1;
    }
    return status;
}
