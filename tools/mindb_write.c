/*
 * mindb_write.c - the commands of the mindb tool that change a store: init,
 * put and rm. Each ends with mindb_sync() before closing, so what it did is
 * durable once it exits 0.
 */
#include "mindb_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct option common_only[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};

/* Parses the options of a command that has none of its own. Returns -1 to
 * go on, or the exit status. */
static int no_options(struct cli *cli, int argc, char **argv)
{
    int c = cli_getopt(cli, argc, argv, CLI_COMMON_SHORTOPTS, common_only);
    if (c == CLI_STOP)
        return cli->status;
    if (c != -1) /* cannot happen: getopt returns only the options it was given */
        return cli_usage_error(cli, "unexpected option");
    return -1;
}

/* Syncs what the command changed, then closes; 0 or 1. */
static int sync_and_close(struct cli *cli, mindb *db, int status)
{
    int rc = mindb_sync(db);
    if (rc < 0)
        status = cli_fail(cli, rc, NULL, 0);
    if (cli_close(cli, db) != 0)
        status = 1;
    return status;
}

/* ---- init --------------------------------------------------------------- */

static void init_usage(FILE *out)
{
    fprintf(out, "usage: mindb init [OPTIONS] STORE\n"
                 "\n"
                 "Creates an empty mindb store in the directory STORE, which must be missing\n"
                 "or empty (its parent must exist). Refuses a directory that holds a store\n"
                 "already, or anything else.\n"
                 "\n");
    cli_common_help(out);
}

int cmd_init(int argc, char **argv)
{
    struct cli cli;
    cli_init(&cli, "init", init_usage);
    int status = no_options(&cli, argc, argv);
    if (status >= 0)
        return status;
    if (argc - optind != 1)
        return cli_usage_error(&cli, "expects one STORE");
    cli.store = argv[optind];

    /* Opening with `create` would open an existing store as well, and a
     * script that runs init on a store by mistake should hear about it. A
     * read-only open changes nothing, whatever the directory holds. */
    struct mindb_options probe;
    mindb_options_init(&probe);
    probe.read_only = 1;
    mindb *db;
    if (mindb_open(cli.store, &probe, &db) == 0) {
        mindb_close(db);
        fprintf(stderr, "mindb: %s is a mindb store already\n", cli.store);
        return 1;
    }
    if (cli_open(&cli, 0, 1, &db) != 0)
        return 1;
    return sync_and_close(&cli, db, 0);
}

/* ---- put ---------------------------------------------------------------- */

static void put_usage(FILE *out)
{
    fprintf(out, "usage: mindb put [OPTIONS] STORE KEY [FILE|-]\n"
                 "\n"
                 "Sets the value of KEY to the contents of FILE, or of stdin when FILE is\n"
                 "'-' or missing, in one atomic step: after a crash KEY has its old value\n"
                 "or the new one. A regular FILE is mapped, not copied into memory; stdin\n"
                 "(or a pipe or device given as FILE) is read into memory in full first.\n"
                 "The value is durable when the command exits 0.\n"
                 "\n");
    cli_common_help(out);
}

/* Reads fd to its end into a buffer from malloc(); 0 or a negative errno. */
static int read_all(int fd, char **out, size_t *out_len)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            /* Doubling keeps the copies to twice the value's size. */
            if (cap > SIZE_MAX / 2) {
                free(buf);
                return -EFBIG;
            }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                return -ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = -errno;
            free(buf);
            return err;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* Where a value comes from: a mapping of a regular file, or a buffer. */
struct value {
    const char *name; /* for messages: the file, or "stdin" */
    void *map;        /* munmap() when set */
    char *buf;        /* free() when set */
    const void *data;
    size_t len;
};

static int value_load(struct cli *cli, const char *path, struct value *v)
{
    memset(v, 0, sizeof *v);
    v->name = path ? path : "stdin";
    int fd = STDIN_FILENO;
    if (path && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return cli_fail_io(cli, path, -errno);
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
    } else if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
    } else if (!S_ISREG(st.st_mode) || lseek(fd, 0, SEEK_CUR) != 0) {
        /* A pipe, terminal or device has no size to map. Stdin redirected
         * from a file that was read from already holds the value in what
         * is left, which a mapping from offset 0 would not be. */
        rc = read_all(fd, &v->buf, &v->len);
        v->data = v->buf;
    } else if (st.st_size == 0) {
        v->data = "";
    } else if ((uint64_t)st.st_size > SIZE_MAX) {
        rc = -EFBIG;
    } else {
        /* One mapping and one mindb_put(): atomic whatever the size, and
         * the value never has to fit in memory at once. (A file cut short
         * while mapped would fault; the value read would not be one the
         * file ever held anyway.) */
        v->len = (size_t)st.st_size;
        v->map = mmap(NULL, v->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (v->map == MAP_FAILED) {
            v->map = NULL;
            rc = -errno;
        } else {
            madvise(v->map, v->len, MADV_SEQUENTIAL);
            v->data = v->map;
        }
    }
    if (path)
        close(fd);
    return rc < 0 ? cli_fail_io(cli, v->name, rc) : 0;
}

static void value_free(struct value *v)
{
    if (v->map)
        munmap(v->map, v->len);
    free(v->buf);
}

int cmd_put(int argc, char **argv)
{
    struct cli cli;
    cli_init(&cli, "put", put_usage);
    int status = no_options(&cli, argc, argv);
    if (status >= 0)
        return status;
    int nargs = argc - optind;
    if (nargs < 2 || nargs > 3)
        return cli_usage_error(&cli, "expects STORE KEY [FILE|-]");
    cli.store = argv[optind];
    const char *key = argv[optind + 1];
    const char *path = nargs == 3 && strcmp(argv[optind + 2], "-") != 0 ? argv[optind + 2] : NULL;

    /* The value first: the store stays unlocked while a pipe is slow, and a
     * missing file is reported before the store is touched. */
    struct value v;
    if (value_load(&cli, path, &v) != 0) {
        value_free(&v);
        return 1;
    }
    mindb *db;
    if (cli_open(&cli, 0, 0, &db) != 0) {
        value_free(&v);
        return 1;
    }
    status = 0;
    int rc = mindb_put(db, key, strlen(key), v.data, v.len);
    if (rc < 0)
        status = cli_fail(&cli, rc, key, strlen(key));
    status = sync_and_close(&cli, db, status);
    value_free(&v);
    return status;
}

/* ---- rm ----------------------------------------------------------------- */

static void rm_usage(FILE *out)
{
    fprintf(out, "usage: mindb rm [OPTIONS] STORE KEY...\n"
                 "\n"
                 "Removes each KEY: a file, a symlink or an empty directory. The removals\n"
                 "are durable when the command exits 0.\n"
                 "\n"
                 "  -r, --recursive        remove a directory and every key under it\n"
                 "                         (also the keys under KEY/ when KEY has none)\n"
                 "  -f, --force            a missing KEY is not an error\n"
                 "\n");
    cli_common_help(out);
}

struct key_list {
    struct key_copy {
        char *p;
        size_t len;
    } * keys;
    size_t n, cap;
};

static int key_list_add(struct key_list *l, const void *key, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct key_copy *keys = realloc(l->keys, cap * sizeof *keys);
        if (!keys)
            return -ENOMEM;
        l->keys = keys;
        l->cap = cap;
    }
    char *p = malloc(len ? len : 1);
    if (!p)
        return -ENOMEM;
    memcpy(p, key, len);
    l->keys[l->n].p = p;
    l->keys[l->n++].len = len;
    return 0;
}

static void key_list_clear(struct key_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i].p);
    l->n = 0;
}

/* Keys read per pass before they are deleted: the iterator is closed while
 * deleting, so its position never sits on a key being removed. */
#define RM_BATCH 256

/* Removes every key under `prefix` (ending in '/'): files and symlinks as
 * the iteration meets them, batch by batch; directories at the end, in
 * reverse key order, which puts every directory after the keys below it.
 * Only the directories are held in memory all along. */
static int remove_under(struct cli *cli, mindb *db, const char *prefix, size_t plen,
                        size_t *removed)
{
    struct key_list batch = {0}, dirs = {0};
    char *resume = NULL;
    size_t resume_len = 0;
    int rc = 0, done = 0;
    while (rc == 0 && !done) {
        mindb_iter *it;
        rc = resume ? mindb_iter_open(db, resume, resume_len, NULL, 0, MINDB_ITER_AFTER, &it)
                    : mindb_iter_open(db, prefix, plen, NULL, 0, 0, &it);
        if (rc < 0)
            break;
        done = 1;
        const void *key;
        size_t len;
        struct mindb_stat st;
        while (rc == 0 && (rc = mindb_iter_next(it, &key, &len, &st)) > 0) {
            rc = 0;
            if (len < plen || memcmp(key, prefix, plen) != 0)
                break;
            if (st.id == 0) /* a prefix without a key of its own */
                continue;
            rc = key_list_add(S_ISDIR(st.mode) ? &dirs : &batch, key, len);
            if (rc == 0 && batch.n == RM_BATCH) {
                free(resume);
                resume = malloc(len);
                if (!resume) {
                    rc = -ENOMEM;
                    break;
                }
                memcpy(resume, key, len);
                resume_len = len;
                done = 0;
                break;
            }
        }
        mindb_iter_close(it);
        if (rc < 0) {
            rc = cli_fail(cli, rc, prefix, plen);
            break;
        }
        for (size_t i = 0; i < batch.n && rc == 0; i++) {
            int err = mindb_delete(db, batch.keys[i].p, batch.keys[i].len);
            if (err < 0)
                rc = cli_fail(cli, err, batch.keys[i].p, batch.keys[i].len);
            else
                (*removed)++;
        }
        key_list_clear(&batch);
    }
    for (size_t i = dirs.n; i-- > 0 && rc == 0;) {
        int err = mindb_delete(db, dirs.keys[i].p, dirs.keys[i].len);
        if (err < 0)
            rc = cli_fail(cli, err, dirs.keys[i].p, dirs.keys[i].len);
        else
            (*removed)++;
    }
    key_list_clear(&dirs);
    free(batch.keys);
    free(dirs.keys);
    free(resume);
    return rc ? 1 : 0;
}

static int remove_key(struct cli *cli, mindb *db, const char *arg, int recursive, int force)
{
    size_t len = strlen(arg);
    size_t removed = 0;
    if (recursive) {
        /* "dir/" names the same tree as "dir". */
        while (len > 1 && arg[len - 1] == '/')
            len--;
        char *prefix = malloc(len + 2);
        if (!prefix)
            return cli_fail(cli, -ENOMEM, arg, len);
        memcpy(prefix, arg, len);
        prefix[len] = '/';
        int status = remove_under(cli, db, prefix, len + 1, &removed);
        free(prefix);
        if (status != 0)
            return status;
    }
    int rc = mindb_delete(db, arg, len);
    if (rc == -ENOENT && (force || removed > 0))
        return 0;
    return rc < 0 ? cli_fail(cli, rc, arg, len) : 0;
}

int cmd_rm(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"recursive", no_argument, NULL, 'r'},
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    struct cli cli;
    cli_init(&cli, "rm", rm_usage);
    int recursive = 0, force = 0, c;
    while ((c = cli_getopt(&cli, argc, argv, CLI_COMMON_SHORTOPTS "rRf", longopts)) != -1) {
        if (c == CLI_STOP)
            return cli.status;
        if (c == 'f')
            force = 1;
        else
            recursive = 1;
    }
    if (argc - optind < 2)
        return cli_usage_error(&cli, "expects STORE KEY...");
    cli.store = argv[optind];
    mindb *db;
    if (cli_open(&cli, 0, 0, &db) != 0)
        return 1;
    int status = 0;
    for (int i = optind + 1; i < argc; i++)
        if (remove_key(&cli, db, argv[i], recursive, force) != 0)
            status = 1;
    return sync_and_close(&cli, db, status);
}
