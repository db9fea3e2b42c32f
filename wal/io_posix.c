/*
 * io_posix.c - the file operations of the log, as plain system calls.
 */
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static int posix_openat(void *ctx, int dirfd, const char *name, int flags, mode_t mode)
{
    (void)ctx;
    int fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}

static int posix_close(void *ctx, int fd)
{
    (void)ctx;
    return close(fd) < 0 ? -errno : 0;
}

static ssize_t posix_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    (void)ctx;
    ssize_t n;
    do
        n = pread(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t posix_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    (void)ctx;
    ssize_t n;
    do
        n = pwrite(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static int posix_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd) < 0 ? -errno : 0;
}

static int posix_fsync(void *ctx, int fd)
{
    (void)ctx;
    return fsync(fd) < 0 ? -errno : 0;
}

static int posix_renameat(void *ctx, int dirfd, const char *from, const char *to)
{
    (void)ctx;
    return renameat(dirfd, from, dirfd, to) < 0 ? -errno : 0;
}

static int posix_unlinkat(void *ctx, int dirfd, const char *name)
{
    (void)ctx;
    return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

static int posix_clear_direct(void *ctx, int fd)
{
    (void)ctx;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_DIRECT) < 0)
        return -errno;
    return 0;
}

const struct wal_io wal_posix_io = {
    .openat = posix_openat,
    .close = posix_close,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .fdatasync = posix_fdatasync,
    .fsync = posix_fsync,
    .renameat = posix_renameat,
    .unlinkat = posix_unlinkat,
    .clear_direct = posix_clear_direct,
    .ctx = NULL,
};
