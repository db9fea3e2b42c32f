/*
 * eio_preload.c - an LD_PRELOAD library that makes a running program's reads
 * or syncs of chosen files fail with EIO, as a failing disk would, for the
 * tests that run the FUSE daemon as it is shipped (tests/test_fs_faults.py).
 * The store's own fault injection (faultio.h) needs a program built for it;
 * this reaches the daemon from outside, after it has mounted.
 *
 * Configured by the environment, read once when the library is loaded:
 *
 *   MINDB_EIO_ARMED  a path: calls fail while a file exists there, so a
 *                    test arms and disarms the fault by creating and
 *                    removing it, at any moment of the daemon's life.
 *   MINDB_EIO_PATHS  an fnmatch(3) pattern ('*' also matches '/'): only
 *                    descriptors whose path (as /proc/self/fd shows it)
 *                    matches fail. Without it, nothing fails.
 *   MINDB_EIO_CALLS  which calls fail, comma-separated (default "pread"):
 *                    "pread" (pread, pread64, preadv, preadv64,
 *                    preadv2), "fdatasync",
 *                    "fsync".
 *
 * Each failed call writes one line "eio_preload: CALL PATH: EIO injected"
 * to stderr, so a test can tell its own fault from the program's report.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT, pread64, preadv2 */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum { CALL_PREAD = 1, CALL_FDATASYNC = 2, CALL_FSYNC = 4 };

static const char *armed_path;
static const char *path_pattern;
static unsigned failing_calls;

static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_preadv)(int, const struct iovec *, int, off_t);
static ssize_t (*real_preadv2)(int, const struct iovec *, int, off_t, int);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);

static unsigned parse_calls(const char *list)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"pread", CALL_PREAD}, {"fdatasync", CALL_FDATASYNC}, {"fsync", CALL_FSYNC}};
    unsigned bits = 0;
    while (*list) {
        size_t len = strcspn(list, ",");
        unsigned known = 0;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (strlen(names[i].name) == len && strncmp(list, names[i].name, len) == 0)
                known = names[i].bit;
        }
        if (!known && len > 0)
            fprintf(stderr, "eio_preload: MINDB_EIO_CALLS: unknown call '%.*s'\n", (int)len, list);
        bits |= known;
        list += len;
        if (*list == ',')
            list++;
    }
    return bits;
}

/* Resolved before main(), while the program has one thread: the wrappers
 * then only read these. */
__attribute__((constructor)) static void eio_preload_init(void)
{
    real_pread = (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
    real_preadv = (ssize_t(*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT, "preadv");
    real_preadv2 =
        (ssize_t(*)(int, const struct iovec *, int, off_t, int))dlsym(RTLD_NEXT, "preadv2");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    armed_path = getenv("MINDB_EIO_ARMED");
    path_pattern = getenv("MINDB_EIO_PATHS");
    const char *calls = getenv("MINDB_EIO_CALLS");
    failing_calls = parse_calls(calls ? calls : "pread");
    if (!armed_path || !path_pattern)
        failing_calls = 0;
}

/* Whether this call on fd must fail now; says so on stderr when it does.
 * The arm file is looked at first: while disarmed, a call costs one
 * access(2) more. errno is left as it was when the call goes through. */
static int must_fail(unsigned call, const char *name, int fd)
{
    if (!(failing_calls & call))
        return 0;
    int saved = errno;
    int fail = 0;
    if (access(armed_path, F_OK) == 0) {
        char link[64], path[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof(path) - 1);
        if (n > 0) {
            path[n] = '\0';
            fail = fnmatch(path_pattern, path, 0) == 0;
            if (fail)
                fprintf(stderr, "eio_preload: %s %s: EIO injected\n", name, path);
        }
    }
    errno = saved;
    return fail;
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    if (must_fail(CALL_PREAD, "pread", fd)) {
        errno = EIO;
        return -1;
    }
    return real_pread(fd, buf, count, offset);
}

ssize_t pread64(int fd, void *buf, size_t count, off_t offset)
{
    return pread(fd, buf, count, offset);
}

ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    if (must_fail(CALL_PREAD, "preadv", fd)) {
        errno = EIO;
        return -1;
    }
    return real_preadv(fd, iov, iovcnt, offset);
}

ssize_t preadv64(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    return preadv(fd, iov, iovcnt, offset);
}

ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags)
{
    if (must_fail(CALL_PREAD, "preadv2", fd)) {
        errno = EIO;
        return -1;
    }
    return real_preadv2(fd, iov, iovcnt, offset, flags);
}

int fdatasync(int fd)
{
    if (must_fail(CALL_FDATASYNC, "fdatasync", fd)) {
        errno = EIO;
        return -1;
    }
    return real_fdatasync(fd);
}

int fsync(int fd)
{
    if (must_fail(CALL_FSYNC, "fsync", fd)) {
        errno = EIO;
        return -1;
    }
    return real_fsync(fd);
}
