/*
 * faultio.c - the injecting struct wal_io of faultio.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_DIRECT */
#endif
#include "faultio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a torn write keeps: whole blocks, as O_DIRECT wants them. */
#define TORN_BLOCK 4096u

static struct fault *F(void *ctx)
{
    return ctx;
}

const char *fault_mode_name(enum fail_mode mode)
{
    return mode == FAIL_ONCE ? "once" : mode == FAIL_FROM ? "from" : "torn";
}

const char *fault_op_name(enum fault_op op)
{
    static const char *const names[OP_COUNT] = {"openat",   "close",     "pread",
                                                "pwrite",   "fdatasync", "fsync",
                                                "renameat", "unlinkat",  "clear_direct"};
    return op >= 0 && op < OP_COUNT ? names[op] : "none";
}

void fault_describe_calls(const struct fault *f, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int op = 0; op < OP_COUNT && used < len; op++) {
        int n = snprintf(buf + used, len - used, "%s%s %ld", op ? ", " : "",
                         fault_op_name((enum fault_op)op), f->by_op[op]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Counts the call; returns the error to inject, or 0. */
static int loop_fault(struct fault *f, int op, int error)
{
    if (f->trace)
        fprintf(stderr, "faultio: call %ld: %s%s\n", f->calls + 1, fault_op_name((enum fault_op)op),
                f->fail_at > 0 && f->calls + 1 >= f->fail_at ? " (fault armed)" : "");
    pthread_mutex_lock(&f->mu);
    f->by_op[op]++;
    long n = ++f->calls;
    int fail = f->fail_at > 0 && (n == f->fail_at || (f->mode != FAIL_ONCE && n > f->fail_at));
    if (f->fail_at > 0 && n == f->fail_at)
        f->failed_op = op;
    int rc = fail ? error : f->error[op];
    if (fail)
        f->injected++;
    else if (rc)
        f->targeted++;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int is_new_fd(struct fault *f, int fd)
{
    pthread_mutex_lock(&f->mu);
    int found = 0;
    for (int i = 0; i < f->new_count && !found; i++)
        found = f->new_fds[i] == fd;
    pthread_mutex_unlock(&f->mu);
    return found;
}

/* ---- unsynced writes (lose_unsynced) ---- */

static void note_write(struct fault *f, int fd, off_t off, size_t len)
{
    pthread_mutex_lock(&f->mu);
    struct fault_range *last = f->n_unsynced ? &f->unsynced[f->n_unsynced - 1] : NULL;
    if (last && last->fd == fd && last->off + (off_t)last->len == off) {
        last->len += len;
    } else {
        if (f->n_unsynced == f->cap_unsynced) {
            size_t cap = f->cap_unsynced ? f->cap_unsynced * 2 : 64;
            struct fault_range *p = realloc(f->unsynced, cap * sizeof *p);
            if (!p)
                abort(); /* a test helper: no way to go on without its record */
            f->unsynced = p;
            f->cap_unsynced = cap;
        }
        f->unsynced[f->n_unsynced++] = (struct fault_range){.fd = fd, .off = off, .len = len};
    }
    pthread_mutex_unlock(&f->mu);
}

/* Forgets the descriptor's unsynced writes; with `lose`, zeroes them first,
 * through a second descriptor of the file without O_DIRECT (no alignment
 * to keep, and the first keeps its flags). */
static void settle_writes(struct fault *f, int fd, int lose)
{
    static const uint8_t zeros[65536];
    int wfd = -1;
    if (lose) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        wfd = open(path, O_WRONLY | O_CLOEXEC);
    }
    pthread_mutex_lock(&f->mu);
    size_t keep = 0;
    for (size_t i = 0; i < f->n_unsynced; i++) {
        struct fault_range *r = &f->unsynced[i];
        if (r->fd != fd) {
            f->unsynced[keep++] = *r;
            continue;
        }
        for (size_t done = 0; wfd >= 0 && done < r->len;) {
            size_t n = r->len - done < sizeof zeros ? r->len - done : sizeof zeros;
            ssize_t w = pwrite(wfd, zeros, n, r->off + (off_t)done);
            if (w <= 0)
                break;
            done += (size_t)w;
            f->lost_bytes += w;
        }
    }
    f->n_unsynced = keep;
    pthread_mutex_unlock(&f->mu);
    if (wfd >= 0)
        close(wfd);
}

static int f_openat(void *ctx, int dirfd, const char *name, int flags, mode_t mode)
{
    struct fault *f = F(ctx);
    if (f->trace)
        fprintf(stderr, "faultio: openat %s flags %#x\n", name, (unsigned)flags);
    if (flags & (O_CREAT | O_RDWR | O_WRONLY)) {
        pthread_mutex_lock(&f->mu);
        f->opens_for_writing++;
        pthread_mutex_unlock(&f->mu);
    }
    int rc = loop_fault(f, OP_OPENAT, -EIO);
    if (rc)
        return rc;
    if (flags & O_DIRECT) {
        f->direct_opens++;
        if (f->refuse_direct_open) {
            f->targeted++;
            return -EINVAL;
        }
    }
    struct stat st;
    int existed = fstatat(dirfd, name, &st, 0) == 0;
    int fd = wal_posix_io.openat(wal_posix_io.ctx, dirfd, name, flags, mode);
    if (fd >= 0) {
        pthread_mutex_lock(&f->mu);
        f->open_fds++;
        /* Files created while the fault is armed are the new segments. */
        if (!existed && f->new_file_pwrite_error && f->new_count < FAULT_MAX_FDS)
            f->new_fds[f->new_count++] = fd;
        pthread_mutex_unlock(&f->mu);
    }
    return fd;
}

static int f_close(void *ctx, int fd)
{
    struct fault *f = F(ctx);
    int rc = loop_fault(f, OP_CLOSE, -EIO);
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->new_count; i++)
        if (f->new_fds[i] == fd) {
            f->new_fds[i] = f->new_fds[--f->new_count];
            break;
        }
    f->open_fds--;
    pthread_mutex_unlock(&f->mu);
    if (f->n_unsynced)
        settle_writes(f, fd, 0);
    /* Like Linux: the descriptor is gone even when close reports an error. */
    int closed = wal_posix_io.close(wal_posix_io.ctx, fd);
    return rc ? rc : closed;
}

static ssize_t f_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    int rc = loop_fault(F(ctx), OP_PREAD, -EIO);
    if (rc)
        return rc;
    return wal_posix_io.pread(wal_posix_io.ctx, fd, buf, len, off);
}

static ssize_t f_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct fault *f = F(ctx);
    pthread_mutex_lock(&f->mu);
    int torn = f->fail_at > 0 && f->mode == FAIL_TORN_CRASH && f->calls + 1 == f->fail_at;
    pthread_mutex_unlock(&f->mu);
    int rc = loop_fault(f, OP_PWRITE, -ENOSPC);
    if (rc) {
        if (torn) {
            /* A crash in the middle of the write: its first half (whole
             * blocks) reached the file. */
            size_t half = len / 2 / TORN_BLOCK * TORN_BLOCK;
            if (half)
                wal_posix_io.pwrite(wal_posix_io.ctx, fd, buf, half, off);
            return -EIO;
        }
        return rc;
    }
    if (f->refuse_direct_pwrite > 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_DIRECT)) {
            f->refuse_direct_pwrite--;
            f->direct_pwrites_refused++;
            f->targeted++;
            return -EINVAL;
        }
    }
    if (f->pwrite_error) {
        f->targeted++;
        return f->pwrite_error;
    }
    if (f->new_file_pwrite_error && is_new_fd(f, fd)) {
        f->targeted++;
        return f->new_file_pwrite_error;
    }
    ssize_t n = wal_posix_io.pwrite(wal_posix_io.ctx, fd, buf, len, off);
    if (n > 0 && f->lose_unsynced)
        note_write(f, fd, off, (size_t)n);
    return n;
}

/* A sync that failed (rc != 0) or succeeded: what becomes of the writes. */
static int sync_result(struct fault *f, int fd, int rc)
{
    if (f->lose_unsynced || f->n_unsynced)
        settle_writes(f, fd, rc != 0 && f->lose_unsynced);
    return rc;
}

static int f_fdatasync(void *ctx, int fd)
{
    struct fault *f = F(ctx);
    int rc = loop_fault(f, OP_FDATASYNC, -EIO);
    if (rc)
        return sync_result(f, fd, rc);
    if (f->fdatasync_error) {
        f->targeted++;
        return sync_result(f, fd, f->fdatasync_error);
    }
    if (f->fdatasync_countdown > 0 && --f->fdatasync_countdown == 0) {
        f->targeted++;
        return sync_result(f, fd, -EIO);
    }
    return sync_result(f, fd, wal_posix_io.fdatasync(wal_posix_io.ctx, fd));
}

static int f_fsync(void *ctx, int fd)
{
    struct fault *f = F(ctx);
    int rc = loop_fault(f, OP_FSYNC, -EIO);
    return sync_result(f, fd, rc ? rc : wal_posix_io.fsync(wal_posix_io.ctx, fd));
}

static int f_renameat(void *ctx, int dirfd, const char *from, const char *to)
{
    int rc = loop_fault(F(ctx), OP_RENAMEAT, -EIO);
    return rc ? rc : wal_posix_io.renameat(wal_posix_io.ctx, dirfd, from, to);
}

static int f_unlinkat(void *ctx, int dirfd, const char *name)
{
    int rc = loop_fault(F(ctx), OP_UNLINKAT, -EIO);
    return rc ? rc : wal_posix_io.unlinkat(wal_posix_io.ctx, dirfd, name);
}

static int f_clear_direct(void *ctx, int fd)
{
    int rc = loop_fault(F(ctx), OP_CLEAR_DIRECT, -EIO);
    return rc ? rc : wal_posix_io.clear_direct(wal_posix_io.ctx, fd);
}

void fault_init(struct fault *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->failed_op = -1;
    f->io.openat = f_openat;
    f->io.close = f_close;
    f->io.pread = f_pread;
    f->io.pwrite = f_pwrite;
    f->io.fdatasync = f_fdatasync;
    f->io.fsync = f_fsync;
    f->io.renameat = f_renameat;
    f->io.unlinkat = f_unlinkat;
    f->io.clear_direct = f_clear_direct;
    f->io.ctx = f;
}

void fault_destroy(struct fault *f)
{
    free(f->unsynced);
    pthread_mutex_destroy(&f->mu);
}

void fault_arm(struct fault *f, long n, enum fail_mode mode)
{
    pthread_mutex_lock(&f->mu);
    f->calls = 0;
    memset(f->by_op, 0, sizeof f->by_op);
    f->injected = 0;
    f->failed_op = -1;
    f->mode = mode;
    f->fail_at = n;
    pthread_mutex_unlock(&f->mu);
}

void fault_disarm(struct fault *f)
{
    pthread_mutex_lock(&f->mu);
    f->fail_at = 0;
    pthread_mutex_unlock(&f->mu);
}
