/*
 * mindb_read.c - the commands of the mindb tool that read a store: get, ls
 * and stat. They open it read-only: nothing on disk changes, and the lock
 * still keeps a writer out while they run.
 */
#include "mindb_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- get ---------------------------------------------------------------- */

static void get_usage(FILE *out)
{
    fprintf(out, "usage: mindb get [OPTIONS] STORE KEY\n"
                 "\n"
                 "Writes the value of KEY to stdout, byte for byte (for a symlink, its\n"
                 "target). Large values are read in pieces: memory stays bounded.\n"
                 "\n");
    cli_common_help(out);
}

/* Bytes per read: large enough that a read spans many chunks, small enough
 * that a value of any size is copied through bounded memory. */
#define GET_PIECE (1u << 20)

static int copy_out(struct cli *cli, mindb_file *f, const char *key)
{
    char *buf = malloc(GET_PIECE);
    if (!buf)
        return cli_fail(cli, -ENOMEM, key, strlen(key));
    int status = 0;
    for (uint64_t off = 0;;) {
        ssize_t n = mindb_pread(f, buf, GET_PIECE, off);
        if (n < 0) {
            status = cli_fail(cli, (int)n, key, strlen(key));
            break;
        }
        if (n == 0)
            break;
        int rc = cli_write_all(STDOUT_FILENO, buf, (size_t)n);
        if (rc < 0) {
            status = cli_fail_io(cli, "stdout", rc);
            break;
        }
        off += (uint64_t)n;
    }
    free(buf);
    return status;
}

int cmd_get(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    struct cli cli;
    cli_init(&cli, "get", get_usage);
    int c = cli_getopt(&cli, argc, argv, CLI_COMMON_SHORTOPTS, longopts);
    if (c == CLI_STOP)
        return cli.status;
    if (argc - optind != 2)
        return cli_usage_error(&cli, "expects STORE KEY");
    cli.store = argv[optind];
    const char *key = argv[optind + 1];
    /* A reader that goes away (get ... | head) is a failed copy: say so
     * and exit 1 instead of dying of SIGPIPE without a word. */
    signal(SIGPIPE, SIG_IGN);

    mindb *db;
    if (cli_open(&cli, 1, 0, &db) != 0)
        return 1;
    /* Piece by piece through a handle rather than mindb_get(): the value
     * never has to fit in memory. The lock keeps every writer out, so the
     * pieces are of one version of the value. */
    mindb_file *f;
    struct mindb_stat st;
    int status;
    int rc = mindb_file_open(db, key, strlen(key), 0, 0, &f);
    if (rc < 0) {
        status = cli_fail(&cli, rc, key, strlen(key));
    } else {
        rc = mindb_fstat(f, &st);
        if (rc == 0 && S_ISDIR(st.mode))
            rc = -EISDIR;
        status = rc < 0 ? cli_fail(&cli, rc, key, strlen(key)) : copy_out(&cli, f, key);
        mindb_file_close(f);
    }
    if (cli_close(&cli, db) != 0)
        status = 1;
    return status;
}

/* ---- ls ----------------------------------------------------------------- */

static void ls_usage(FILE *out)
{
    fprintf(out, "usage: mindb ls [OPTIONS] STORE [PREFIX]\n"
                 "\n"
                 "Lists the keys directly under the directory PREFIX (the top when\n"
                 "missing), one full key per line, in key order; a key deeper down shows\n"
                 "as its child directory (ending in '/' when that has no key of its own).\n"
                 "Bytes that are not printable, and backslash, are shown as \\xHH.\n"
                 "\n"
                 "  -l, --long             show type and mode, size, stored bytes and\n"
                 "                         modification time\n"
                 "  -R, --recursive        list every key under PREFIX\n"
                 "\n");
    cli_common_help(out);
}

struct ls_ctx {
    struct cli *cli;
    mindb *db;
    int long_format;
    uint64_t count;
};

static void print_entry(struct ls_ctx *ls, const void *key, size_t len, const struct mindb_stat *st)
{
    ls->count++;
    if (ls->long_format) {
        char mode[11], t[CLI_TIME_BYTES];
        /* A prefix without a key of its own has no metadata to show. */
        printf("%s %12" PRIu64 " %12" PRIu64 " %-19s ", cli_mode_string(mode, st->mode), st->size,
               st->disk_bytes, st->id ? cli_time(t, st->mtime_ns, 0) : "-");
    }
    cli_print_key(stdout, key, len);
    if (ls->long_format && S_ISLNK(st->mode)) {
        void *target;
        size_t tlen;
        if (mindb_get(ls->db, key, len, &target, &tlen) == 0) {
            fputs(" -> ", stdout);
            cli_print_key(stdout, target, tlen);
            free(target);
        }
    }
    putchar('\n');
}

/* Lists from `start`: the children of the directory prefix, or with
 * `recursive` every key that begins with it. */
static int list(struct ls_ctx *ls, const char *start, size_t slen, int recursive)
{
    mindb_iter *it;
    int rc =
        mindb_iter_open(ls->db, start, slen, NULL, 0, recursive ? 0 : MINDB_ITER_CHILDREN, &it);
    if (rc < 0)
        return rc;
    const void *key;
    size_t len;
    struct mindb_stat st;
    while ((rc = mindb_iter_next(it, &key, &len, &st)) > 0) {
        if (len < slen || memcmp(key, start, slen) != 0)
            break;
        print_entry(ls, key, len, &st);
    }
    mindb_iter_close(it);
    return rc < 0 ? rc : 0;
}

static int ls_prefix(struct ls_ctx *ls, const char *arg, int recursive)
{
    size_t len = strlen(arg);
    while (len > 0 && arg[len - 1] == '/')
        len--;
    if (len == 0)
        return list(ls, "", 0, recursive);
    /* Like ls(1): a key that is not a directory lists as itself. */
    struct mindb_stat st;
    int exists = mindb_stat(ls->db, arg, len, &st);
    if (exists == 0 && !S_ISDIR(st.mode)) {
        print_entry(ls, arg, len, &st);
        return 0;
    }
    char *prefix = malloc(len + 1);
    if (!prefix)
        return -ENOMEM;
    memcpy(prefix, arg, len);
    prefix[len] = '/';
    int rc = list(ls, prefix, len + 1, recursive);
    free(prefix);
    /* A directory can exist only as the prefix of deeper keys; a name with
     * neither a key nor keys under it does not exist. */
    if (rc == 0 && exists == -ENOENT && ls->count == 0)
        rc = -ENOENT;
    return rc;
}

int cmd_ls(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"long", no_argument, NULL, 'l'},
        {"recursive", no_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    struct cli cli;
    cli_init(&cli, "ls", ls_usage);
    int long_format = 0, recursive = 0, c;
    while ((c = cli_getopt(&cli, argc, argv, CLI_COMMON_SHORTOPTS "lR", longopts)) != -1) {
        if (c == CLI_STOP)
            return cli.status;
        if (c == 'l')
            long_format = 1;
        else
            recursive = 1;
    }
    int nargs = argc - optind;
    if (nargs < 1 || nargs > 2)
        return cli_usage_error(&cli, "expects STORE [PREFIX]");
    cli.store = argv[optind];
    const char *prefix = nargs == 2 ? argv[optind + 1] : "";

    struct ls_ctx ls = {.cli = &cli, .long_format = long_format};
    if (cli_open(&cli, 1, 0, &ls.db) != 0)
        return 1;
    int rc = ls_prefix(&ls, prefix, recursive);
    int status = rc < 0 ? cli_fail(&cli, rc, prefix, strlen(prefix)) : 0;
    if (cli_close(&cli, ls.db) != 0)
        status = 1;
    return status;
}

/* ---- stat --------------------------------------------------------------- */

static void stat_usage(FILE *out)
{
    fprintf(out, "usage: mindb stat [OPTIONS] STORE [KEY]\n"
                 "\n"
                 "Without KEY, shows the store's numbers: keys, objects, logical and stored\n"
                 "bytes and their ratio, bytes not yet checkpointed, data segment and log\n"
                 "bytes, and the counters of this read-only opening. With KEY, shows its\n"
                 "metadata and the names of its extended attributes.\n"
                 "\n");
    cli_common_help(out);
}

static void print_bytes(const char *label, uint64_t bytes)
{
    char h[CLI_HUMAN_BYTES];
    printf("%s: %" PRIu64 " (%s)\n", label, bytes, cli_human(h, bytes));
}

static int stat_store(mindb *db)
{
    struct mindb_stats s;
    int rc = mindb_stats(db, &s);
    if (rc < 0)
        return rc;
    printf("keys: %" PRIu64 "\n", s.keys);
    printf("objects: %" PRIu64 "\n", s.objects);
    print_bytes("logical bytes", s.logical_bytes);
    print_bytes("stored bytes", s.stored_bytes);
    printf("compression ratio: %.2f\n", s.stored_bytes ? s.compression_ratio : 0.0);
    print_bytes("dirty bytes", s.dirty_bytes);
    print_bytes("segment bytes", s.segment_bytes);
    print_bytes("WAL bytes", s.wal_bytes);
    printf("checkpoints: %" PRIu64 "\n", s.checkpoints);
    printf("compactions: %" PRIu64 "\n", s.compactions);
    printf("cache hits: %" PRIu64 "\n", s.cache_hits);
    printf("cache misses: %" PRIu64 "\n", s.cache_misses);
    printf("fdatasyncs: %" PRIu64 "\n", s.fdatasyncs);
    printf("commits: %" PRIu64 "\n", s.commits);
    return 0;
}

static const char *type_name(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return "regular file";
    case S_IFDIR:
        return "directory";
    case S_IFLNK:
        return "symbolic link";
    default:
        return "unknown";
    }
}

/* Prints the extended attribute names of `key`, growing the buffer while
 * they change under us (-ERANGE). */
static int print_xattrs(mindb *db, const char *key, size_t len)
{
    char *names = NULL;
    ssize_t n;
    for (;;) {
        n = mindb_listxattr(db, key, len, NULL, 0);
        if (n <= 0)
            break;
        char *bigger = realloc(names, (size_t)n);
        if (!bigger) {
            n = -ENOMEM;
            break;
        }
        names = bigger;
        n = mindb_listxattr(db, key, len, names, (size_t)n);
        if (n != -ERANGE)
            break;
    }
    if (n < 0) {
        free(names);
        return (int)n;
    }
    int count = 0;
    for (ssize_t i = 0; i < n; i += (ssize_t)strnlen(names + i, (size_t)(n - i)) + 1)
        count++;
    printf("xattrs: %d\n", count);
    for (ssize_t i = 0; i < n;) {
        size_t l = strnlen(names + i, (size_t)(n - i));
        fputs("xattr: ", stdout);
        cli_print_key(stdout, names + i, l);
        putchar('\n');
        i += (ssize_t)l + 1;
    }
    free(names);
    return 0;
}

static int stat_key(mindb *db, const char *key)
{
    size_t len = strlen(key);
    struct mindb_stat st;
    int rc = mindb_stat(db, key, len, &st);
    if (rc < 0)
        return rc;
    char mode[11], t[CLI_TIME_BYTES];
    fputs("key: ", stdout);
    cli_print_key(stdout, key, len);
    putchar('\n');
    printf("id: %" PRIu64 "\n", st.id);
    printf("type: %s\n", type_name(st.mode));
    printf("mode: %04o (%s)\n", (unsigned)(st.mode & 07777), cli_mode_string(mode, st.mode));
    printf("uid: %" PRIu32 "\n", st.uid);
    printf("gid: %" PRIu32 "\n", st.gid);
    printf("links: %" PRIu32 "\n", st.nlink);
    print_bytes("size", st.size);
    print_bytes("disk bytes", st.disk_bytes);
    printf("atime: %s\n", cli_time(t, st.atime_ns, 1));
    printf("mtime: %s\n", cli_time(t, st.mtime_ns, 1));
    printf("ctime: %s\n", cli_time(t, st.ctime_ns, 1));
    return print_xattrs(db, key, len);
}

int cmd_stat(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    struct cli cli;
    cli_init(&cli, "stat", stat_usage);
    int c = cli_getopt(&cli, argc, argv, CLI_COMMON_SHORTOPTS, longopts);
    if (c == CLI_STOP)
        return cli.status;
    int nargs = argc - optind;
    if (nargs < 1 || nargs > 2)
        return cli_usage_error(&cli, "expects STORE [KEY]");
    cli.store = argv[optind];
    const char *key = nargs == 2 ? argv[optind + 1] : NULL;

    mindb *db;
    if (cli_open(&cli, 1, 0, &db) != 0)
        return 1;
    int rc = key ? stat_key(db, key) : stat_store(db);
    int status = rc < 0 ? cli_fail(&cli, rc, key, key ? strlen(key) : 0) : 0;
    if (cli_close(&cli, db) != 0)
        status = 1;
    return status;
}
