/*
 * main.c - mindbfs: mounts a mindb store as a directory.
 *
 * Start-up runs in the foreground until the mount has succeeded, so every
 * error reaches the terminal (and mount -a) with a non-zero status: without
 * -f the process forks first, and the parent waits for the child to report
 * that it has opened the store and mounted, or exits with the child's
 * status. Forking first, not after the mount as libfuse's fuse_daemonize()
 * does, is what lets the store start its background thread in the process
 * that keeps running.
 */
#include "mindbfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

static int logging_to_syslog;

static void log_line(void *ctx, const char *message)
{
    (void)ctx;
    if (logging_to_syslog)
        syslog(LOG_NOTICE, "%s", message);
    else
        fprintf(stderr, "mindbfs: %s\n", message);
}

/* libfuse's messages, made ours: one line each, "mindbfs: " instead of
 * "fuse: ", to the terminal or syslog. Debug output (-d) goes as it is. */
static int libfuse_complained;
static pthread_mutex_t libfuse_line_lock = PTHREAD_MUTEX_INITIALIZER;
static char libfuse_line[1024]; /* libfuse writes some lines in pieces */

static void libfuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
    if (level >= FUSE_LOG_DEBUG) {
        if (!logging_to_syslog)
            vfprintf(stderr, fmt, ap);
        return;
    }
    pthread_mutex_lock(&libfuse_line_lock);
    size_t used = strlen(libfuse_line);
    vsnprintf(libfuse_line + used, sizeof(libfuse_line) - used, fmt, ap);
    char *newline = strchr(libfuse_line, '\n');
    if (newline || strlen(libfuse_line) == sizeof(libfuse_line) - 1) {
        if (newline)
            *newline = '\0';
        const char *text = libfuse_line;
        if (strncmp(text, "fuse: ", 6) == 0)
            text += 6;
        if (level <= FUSE_LOG_ERR)
            libfuse_complained = 1;
        log_line(NULL, text);
        libfuse_line[0] = '\0';
    }
    pthread_mutex_unlock(&libfuse_line_lock);
}

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mindbfs: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct mindbfs *fs = userdata;
    /* Large requests: a write of up to 1 MiB is one round trip and one log
     * record. */
    conn->max_write = 1u << 20;
    conn->max_readahead = 1u << 20;
    conn->max_read = fs->conf->max_read; /* libfuse wants the mount option's */
    if (conn->capable & FUSE_CAP_WRITEBACK_CACHE)
        conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
        conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    /* POSIX locks stay local to this kernel, which is the only client. */
    conn->want &= ~(unsigned)(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
    fuse_apply_conn_info_opts(fs->conf->conn_opts, conn);
    /* Read-only, nothing is written back; with `sync`, every write must
     * reach the store (and be committed) before write() returns. */
    if (fs->conf->read_only || fs->conf->sync)
        conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .create = op_create,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    /* No .flush: every write has reached the store by the time close()
     * flushes (the kernel writes back dirty pages before it would ask), so
     * there is nothing to do there; unimplemented, the kernel stops asking
     * after the first close, one request less per file. */
    .release = op_release,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
};

/* Without -f: forks; the parent waits for the child's word and exits with
 * its outcome. Returns, in the child, the pipe to report success on. */
static int fork_waiting_parent(void)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        fail("pipe: %s", strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fail("fork: %s", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        close(pipefd[1]);
        char ok;
        if (read(pipefd[0], &ok, 1) == 1)
            _exit(0);
        int status;
        if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
            _exit(WEXITSTATUS(status));
        _exit(1);
    }
    close(pipefd[0]);
    return pipefd[1];
}

/* The mount is up: the child leaves the terminal and tells the parent. */
static void detach(int report_fd)
{
    openlog("mindbfs", LOG_PID, LOG_DAEMON);
    logging_to_syslog = 1;
    setsid();
    if (chdir("/") != 0)
        syslog(LOG_WARNING, "chdir /: %s", strerror(errno));
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    char ok = 1;
    if (write(report_fd, &ok, 1) != 1)
        syslog(LOG_WARNING, "could not report start-up: %s", strerror(errno));
    close(report_fd);
}

/* Opens (or creates) the store, with a message a person can act on. */
static int open_store(struct mindbfs_config *conf, mindb **db)
{
    struct mindb_options o;
    if (options_store(conf, &o) != 0)
        return -1;
    o.log = log_line;
    int err = mindb_open(conf->store, &o, db);
    if (err == -EBUSY) {
        /* The store has said which process holds it, through log_line(). */
    } else if (err == MINDB_ENOTSTORE) {
        fail("%s: not a mindb store, and not empty (mindbfs creates a store only in a "
             "missing or empty directory)",
             conf->store);
    } else if (err) {
        fail("%s: %s", conf->store, mindb_strerror(err));
    }
    return err ? -1 : 0;
}

/* The store's path made absolute, since the daemon leaves the working
 * directory; a missing directory is fine (the store creates it). */
static int absolute_store_path(struct mindbfs_config *conf)
{
    if (conf->store[0] == '/')
        return 0;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd))) {
        fail("getcwd: %s", strerror(errno));
        return -1;
    }
    char *abs;
    if (asprintf(&abs, "%s/%s", cwd, conf->store) < 0)
        return -1;
    free(conf->store);
    conf->store = abs;
    return 0;
}

static int check_mountpoint(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fail("mount point %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fail("mount point %s: %s", path, strerror(ENOTDIR));
        return -1;
    }
    return 0;
}

static int run(struct mindbfs_config *conf, struct fuse_args *args)
{
    int report_fd = conf->foreground ? -1 : fork_waiting_parent();
    struct mindbfs fs = {.conf = conf};
    int status = 1, err;
    /* The session first: it refuses unknown options before anything is
     * created. Shown by mount and df as the source: the store it is. */
    char *fsname = NULL, *opt;
    if (asprintf(&opt, "fsname=%s", conf->store) < 0)
        return 1;
    err = fuse_opt_add_opt_escaped(&fsname, opt);
    free(opt);
    /* First, so that an fsname given on the command line wins. */
    if (!err)
        err = fuse_opt_insert_arg(args, 1, "-o") || fuse_opt_insert_arg(args, 2, fsname);
    free(fsname);
    if (err)
        return 1;
    struct fuse_session *se = fuse_session_new(args, &ops, sizeof(ops), &fs);
    if (!se) {
        if (!libfuse_complained)
            fail("invalid options (see mindbfs --help)");
        return 1;
    }
    if (open_store(conf, &fs.db) != 0)
        goto out_session;
    err = nodes_init(&fs);
    if (err) {
        fail("%s: %s", conf->store, mindb_strerror(err));
        goto out_nodes;
    }
    if (fuse_set_signal_handlers(se) != 0)
        goto out_nodes;
    if (fuse_session_mount(se, conf->mountpoint) != 0) {
        if (!libfuse_complained)
            fail("cannot mount %s", conf->mountpoint);
        goto out_signals;
    }
    if (report_fd >= 0)
        detach(report_fd);

    if (conf->singlethread) {
        err = fuse_session_loop(se);
    } else {
        struct fuse_loop_config *loop = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(loop, (unsigned)conf->clone_fd);
        if (conf->max_idle_threads != UINT_MAX) /* UINT_MAX: not given */
            fuse_loop_cfg_set_idle_threads(loop, conf->max_idle_threads);
        fuse_loop_cfg_set_max_threads(loop, conf->max_threads);
        err = fuse_session_loop_mt(se, loop);
        fuse_loop_cfg_destroy(loop);
    }
    status = err < 0 ? 1 : 0;
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_nodes:
    dirs_release_all(&fs);
    nodes_destroy(&fs);
    err = mindb_close(fs.db);
    if (err) {
        char line[256];
        snprintf(line, sizeof(line), "closing the store: %s", mindb_strerror(err));
        log_line(NULL, line);
        status = 1;
    }
out_session:
    fuse_session_destroy(se);
    return status;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct mindbfs_config conf;
    memset(&conf, 0, sizeof(conf));
    int status = 1;
    fuse_set_log_func(libfuse_log);
    if (options_parse(&args, &conf) != 0) {
        if (!libfuse_complained)
            fail("invalid command line (see mindbfs --help)");
        goto out;
    }
    if (conf.show_help) {
        options_help(argv[0]);
        status = 0;
        goto out;
    }
    if (conf.show_version) {
        printf("mindbfs %s (libmindb %s, libfuse %s)\n", MINDB_VERSION, mindb_version(),
               fuse_pkgversion());
        status = 0;
        goto out;
    }
    if (!conf.store || !conf.mountpoint) {
        fail("usage: mindbfs STORE_DIR MOUNTPOINT [-o OPTIONS] (see mindbfs --help)");
        goto out;
    }
    if (absolute_store_path(&conf) != 0 || check_mountpoint(conf.mountpoint) != 0)
        goto out;
    status = run(&conf, &args);
out:
    fuse_opt_free_args(&args);
    options_free(&conf);
    return status;
}
