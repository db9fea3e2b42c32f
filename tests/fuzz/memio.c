/*
 * memio.c - see memio.h.
 */
#include "memio.h"
#include "fuzzutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct mem_file *find(struct memio *m, const char *name)
{
    for (int i = 0; i < MEMIO_MAX_FILES; i++)
        if (m->files[i] && m->files[i]->linked && strcmp(m->files[i]->name, name) == 0)
            return m->files[i];
    return NULL;
}

static struct mem_file *by_fd(struct memio *m, int fd)
{
    if (fd < MEMIO_FD_BASE || fd >= MEMIO_FD_BASE + MEMIO_MAX_FDS)
        return NULL;
    return m->fds[fd - MEMIO_FD_BASE];
}

/* Frees a file that has neither a name nor a descriptor left. */
static void release(struct memio *m, struct mem_file *f)
{
    if (f->linked || f->opens)
        return;
    for (int i = 0; i < MEMIO_MAX_FILES; i++)
        if (m->files[i] == f)
            m->files[i] = NULL;
    free(f->data);
    free(f);
}

static int make_namesake(struct memio *m, const char *name)
{
    int fd = openat(m->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

static struct mem_file *create(struct memio *m, const char *name, int *err)
{
    if (strlen(name) >= sizeof(((struct mem_file *)0)->name)) {
        *err = -ENAMETOOLONG;
        return NULL;
    }
    int slot = 0;
    while (slot < MEMIO_MAX_FILES && m->files[slot])
        slot++;
    if (slot == MEMIO_MAX_FILES) {
        *err = -ENOSPC;
        return NULL;
    }
    struct mem_file *f = calloc(1, sizeof *f);
    if (!f) {
        *err = -ENOMEM;
        return NULL;
    }
    *err = make_namesake(m, name);
    if (*err) {
        free(f);
        return NULL;
    }
    strcpy(f->name, name);
    f->linked = 1;
    m->files[slot] = f;
    return f;
}

static int mem_openat(void *ctx, int dirfd, const char *name, int flags, mode_t mode)
{
    (void)dirfd;
    (void)mode;
    struct memio *m = ctx;
    struct mem_file *f = find(m, name);
    if (f && (flags & O_CREAT) && (flags & O_EXCL))
        return -EEXIST;
    if (!f && !(flags & O_CREAT))
        return -ENOENT;
    int err = 0;
    if (!f && !(f = create(m, name, &err)))
        return err;
    if (flags & O_TRUNC)
        f->len = 0;
    for (int i = 0; i < MEMIO_MAX_FDS; i++)
        if (!m->fds[i]) {
            m->fds[i] = f;
            f->opens++;
            return MEMIO_FD_BASE + i;
        }
    return -EMFILE;
}

static int mem_close(void *ctx, int fd)
{
    struct memio *m = ctx;
    struct mem_file *f = by_fd(m, fd);
    if (!f)
        return -EBADF;
    m->fds[fd - MEMIO_FD_BASE] = NULL;
    f->opens--;
    release(m, f);
    return 0;
}

static ssize_t mem_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    struct mem_file *f = by_fd(ctx, fd);
    if (!f)
        return -EBADF;
    if (off < 0)
        return -EINVAL;
    if ((uint64_t)off >= f->len)
        return 0;
    if (len > f->len - (size_t)off)
        len = f->len - (size_t)off;
    memcpy(buf, f->data + off, len);
    return (ssize_t)len;
}

static ssize_t mem_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct mem_file *f = by_fd(ctx, fd);
    if (!f)
        return -EBADF;
    if (off < 0)
        return -EINVAL;
    if ((uint64_t)off > MEMIO_MAX_FILE_BYTES || len > MEMIO_MAX_FILE_BYTES - (size_t)off)
        return -ENOSPC;
    size_t end = (size_t)off + len;
    if (end > f->cap) {
        size_t cap = f->cap ? f->cap : 65536;
        while (cap < end)
            cap *= 2;
        uint8_t *p = realloc(f->data, cap);
        if (!p)
            return -ENOMEM;
        f->data = p;
        f->cap = cap;
    }
    if ((size_t)off > f->len)
        memset(f->data + f->len, 0, (size_t)off - f->len);
    memcpy(f->data + off, buf, len);
    if (end > f->len)
        f->len = end;
    return (ssize_t)len;
}

/* Syncs of the files, and of the real directory, have nothing to do. */
static int mem_sync(void *ctx, int fd)
{
    (void)ctx;
    (void)fd;
    return 0;
}

static int mem_renameat(void *ctx, int dirfd, const char *from, const char *to)
{
    (void)dirfd;
    struct memio *m = ctx;
    struct mem_file *f = find(m, from);
    if (!f)
        return -ENOENT;
    if (strlen(to) >= sizeof f->name)
        return -ENAMETOOLONG;
    if (renameat(m->dirfd, from, m->dirfd, to) != 0)
        return -errno;
    struct mem_file *old = find(m, to);
    if (old && old != f) {
        old->linked = 0;
        release(m, old);
    }
    strcpy(f->name, to);
    return 0;
}

static int mem_unlinkat(void *ctx, int dirfd, const char *name)
{
    (void)dirfd;
    struct memio *m = ctx;
    struct mem_file *f = find(m, name);
    if (!f)
        return -ENOENT;
    if (unlinkat(m->dirfd, name, 0) != 0)
        return -errno;
    f->linked = 0;
    release(m, f);
    return 0;
}

static int mem_clear_direct(void *ctx, int fd)
{
    return by_fd(ctx, fd) ? 0 : -EBADF;
}

void memio_init(struct memio *m, int dirfd)
{
    memset(m, 0, sizeof *m);
    m->dirfd = dirfd;
    m->io = (struct wal_io){
        .openat = mem_openat,
        .close = mem_close,
        .pread = mem_pread,
        .pwrite = mem_pwrite,
        .fdatasync = mem_sync,
        .fsync = mem_sync,
        .renameat = mem_renameat,
        .unlinkat = mem_unlinkat,
        .clear_direct = mem_clear_direct,
        .ctx = m,
    };
}

void memio_add(struct memio *m, const char *name, const void *data, size_t len)
{
    int err = 0;
    struct mem_file *f = create(m, name, &err);
    FZ_CHECK(f != NULL, "a file %s in memory: error %d", name, err);
    f->data = malloc(len ? len : 1);
    FZ_CHECK(f->data != NULL, "%zu bytes for %s", len, name);
    if (len)
        memcpy(f->data, data, len);
    f->len = f->cap = len;
}

void memio_destroy(struct memio *m)
{
    for (int i = 0; i < MEMIO_MAX_FDS; i++)
        FZ_CHECK(m->fds[i] == NULL, "every descriptor closed; %s is still open", m->fds[i]->name);
    for (int i = 0; i < MEMIO_MAX_FILES; i++)
        if (m->files[i]) {
            free(m->files[i]->data);
            free(m->files[i]);
            m->files[i] = NULL;
        }
}
