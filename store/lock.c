/*
 * lock.c - the store's lock: STORE/LOCK, held with flock() while a handle is
 * open and holding the holder's pid as text, so a second opener can name
 * the process in its error. The lock, not the pid, decides: a pid left by a
 * process that died is never believed, because its flock died with it.
 */
#include "db_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#define LOCK_NAME "LOCK"

static pid_t read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? (pid_t)pid : 0;
}

int store_lock(mindb *db)
{
    int fd = openat(db->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && db->opt.read_only)
        fd = openat(db->dirfd, LOCK_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (err == -EBUSY) {
            pid_t pid = read_pid(fd);
            if (pid)
                db_log(db, "%s is in use by process %d", db->dir, (int)pid);
            else
                db_log(db, "%s is in use by another process", db->dir);
        }
        close(fd);
        return err;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) != n)
        (void)ftruncate(fd, 0);
    db->lockfd = fd;
    return 0;
}

int lock_held_elsewhere(mindb *db)
{
    int fd = openat(db->dirfd, LOCK_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    pid_t pid = held ? read_pid(fd) : 0;
    if (pid)
        db_log(db, "%s is being made or used by process %d", db->dir, (int)pid);
    else if (held)
        db_log(db, "%s is being made or used by another process", db->dir);
    close(fd);
    return held;
}

pid_t mindb_lock_holder(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, LOCK_NAME) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    pid_t pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        pid = errno == EWOULDBLOCK ? read_pid(fd) : -errno;
        if (pid == 0)
            pid = -ESRCH;
    } else {
        flock(fd, LOCK_UN);
    }
    close(fd);
    return pid;
}
