/*
 * powercut.c - the power-cut table of powercut.h.
 *
 * Files are known by device and inode, not by name or descriptor: a rename
 * keeps a file's unsynced blocks with it, an fsync through any descriptor
 * syncs them all, and the store syncs its directories through descriptors
 * it opened itself, outside the table. Every file the table saw change is
 * held open by a descriptor of its own, so its inode number cannot pass to
 * another file while it is recorded; these descriptors, and those of the
 * directories, are opened again through /proc/self/fd rather than dup()ed,
 * since a dup would share the open file and with it the flock() the log
 * holds on its directory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "powercut.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PC_BLOCK 4096u
#define PC_SECTOR 512u

/* A block written since its file's last sync, with what it held then. */
struct pc_block {
    uint64_t index;
    uint64_t seq; /* when it was first written since the sync */
    uint8_t *old; /* NULL: nothing, the block lay beyond the synced size */
};

struct pc_file {
    dev_t dev;
    ino_t ino;
    int fd;                  /* our own read-write descriptor */
    struct pc_block *blocks; /* by increasing index */
    size_t n_blocks, cap_blocks;
    uint64_t *sizes; /* every size since the last sync; [0] is the synced one */
    size_t n_sizes, cap_sizes;
};

struct pc_dir {
    dev_t dev;
    ino_t ino;
    int fd; /* our own descriptor */
};

struct pc_op {
    enum fault_op kind; /* OP_OPENAT (a file made), OP_RENAMEAT or OP_UNLINKAT */
    struct pc_dir *dir;
    char *name;  /* the file made, renamed (from) or removed */
    char *to;    /* a rename's new name */
    char *attic; /* what a rename replaced or an unlink removed, in the
                  * attic; NULL when the rename replaced nothing */
};

static __attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "powercut: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort(); /* a test helper that lost track of the disk cannot go on */
}

static void grow(void **array, size_t *cap, size_t n, size_t item)
{
    if (n < *cap)
        return;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*array, ncap * item);
    if (!p)
        die("out of memory");
    *array = p;
    *cap = ncap;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        die("out of memory");
    return p;
}

static struct powercut *PC(void *ctx)
{
    return ctx;
}

/* A new open file for the file or directory behind `fd`. */
static int reopen(int fd, int flags)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int own = open(path, flags | O_CLOEXEC);
    if (own < 0)
        die("reopening descriptor %d: %s", fd, strerror(errno));
    return own;
}

/* Counts the call; returns -EIO from the cut on. Called with mu held. */
static int enter(struct powercut *pc, enum fault_op op, const char *name, const char *name2)
{
    long n = ++pc->calls;
    int cut = pc->spent || (pc->cut_at > 0 && n >= pc->cut_at);
    if (cut && !pc->cut && !pc->spent) {
        pc->cut = 1;
        pc->cut_op = op;
    }
    if (pc->trace)
        fprintf(stderr, "powercut: call %ld: %s%s%s%s%s%s\n", n, fault_op_name(op), name ? " " : "",
                name ? name : "", name2 ? " -> " : "", name2 ? name2 : "",
                cut ? (n == pc->cut_at ? " (the power is cut)" : " (no power)") : "");
    return cut ? -EIO : 0;
}

/* ---- files: unsynced blocks and sizes ---- */

static struct pc_file *find_file(struct powercut *pc, const struct stat *st)
{
    for (size_t i = 0; i < pc->n_files; i++)
        if (pc->files[i]->dev == st->st_dev && pc->files[i]->ino == st->st_ino)
            return pc->files[i];
    return NULL;
}

static void push_size(struct pc_file *f, uint64_t size)
{
    if (f->n_sizes && f->sizes[f->n_sizes - 1] == size)
        return;
    grow((void **)&f->sizes, &f->cap_sizes, f->n_sizes, sizeof *f->sizes);
    f->sizes[f->n_sizes++] = size;
}

/* The record of the file behind `fd` (described by `st`), made when the
 * file first changes: its state then is durable. */
static struct pc_file *track_file(struct powercut *pc, int fd, const struct stat *st)
{
    struct pc_file *f = find_file(pc, st);
    if (f)
        return f;
    f = calloc(1, sizeof *f);
    if (!f)
        die("out of memory");
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    f->fd = reopen(fd, O_RDWR);
    push_size(f, (uint64_t)st->st_size);
    grow((void **)&pc->files, &pc->cap_files, pc->n_files, sizeof *pc->files);
    pc->files[pc->n_files++] = f;
    return f;
}

static void read_block(int fd, uint64_t index, uint8_t buf[PC_BLOCK], uint64_t limit)
{
    memset(buf, 0, PC_BLOCK);
    uint64_t off = index * PC_BLOCK;
    size_t want = limit - off < PC_BLOCK ? (size_t)(limit - off) : PC_BLOCK;
    for (size_t got = 0; got < want;) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("reading block %llu: %s", (unsigned long long)index, strerror(errno));
        if (n == 0)
            break; /* shorter now than it was synced: a truncation kept the rest */
        got += (size_t)n;
    }
}

/* Keeps what block `index` held at the last sync, unless it is kept already. */
static void save_block(struct powercut *pc, struct pc_file *f, uint64_t index)
{
    size_t lo = 0, hi = f->n_blocks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->blocks[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < f->n_blocks && f->blocks[lo].index == index)
        return;
    uint8_t *old = NULL;
    if (index * PC_BLOCK < f->sizes[0]) {
        old = malloc(PC_BLOCK);
        if (!old)
            die("out of memory");
        read_block(f->fd, index, old, f->sizes[0]);
    }
    grow((void **)&f->blocks, &f->cap_blocks, f->n_blocks, sizeof *f->blocks);
    memmove(&f->blocks[lo + 1], &f->blocks[lo], (f->n_blocks - lo) * sizeof *f->blocks);
    f->blocks[lo] = (struct pc_block){.index = index, .seq = pc->write_seq++, .old = old};
    f->n_blocks++;
}

/* A completed sync: everything the file holds now is durable. */
static void settle_file(struct pc_file *f, uint64_t size)
{
    for (size_t i = 0; i < f->n_blocks; i++)
        free(f->blocks[i].old);
    f->n_blocks = 0;
    f->n_sizes = 0;
    push_size(f, size);
}

/* Before an open with O_TRUNC of an existing file: its blocks as they are. */
static void save_whole(struct powercut *pc, int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("looking at %s before truncating it: %s", name, strerror(errno));
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        struct pc_file *f = track_file(pc, fd, &st);
        for (uint64_t b = 0; b * PC_BLOCK < (uint64_t)st.st_size; b++)
            save_block(pc, f, b);
    }
    close(fd);
}

/* ---- directories: unsynced namespace operations ---- */

static struct pc_dir *track_dir(struct powercut *pc, int dirfd)
{
    struct stat st;
    if (fstat(dirfd, &st) < 0)
        return NULL;
    for (size_t i = 0; i < pc->n_dirs; i++)
        if (pc->dirs[i]->dev == st.st_dev && pc->dirs[i]->ino == st.st_ino)
            return pc->dirs[i];
    struct pc_dir *d = malloc(sizeof *d);
    if (!d)
        die("out of memory");
    d->dev = st.st_dev;
    d->ino = st.st_ino;
    d->fd = reopen(dirfd, O_RDONLY | O_DIRECTORY);
    grow((void **)&pc->dirs, &pc->cap_dirs, pc->n_dirs, sizeof *pc->dirs);
    pc->dirs[pc->n_dirs++] = d;
    return d;
}

/* Keeps the file `name` names under a new name in the attic; NULL when
 * there is no such file. */
static char *hide(struct powercut *pc, int dirfd, const char *name)
{
    char hidden[32];
    snprintf(hidden, sizeof hidden, "%u", pc->attic_seq++);
    if (linkat(dirfd, name, pc->attic_fd, hidden, 0) < 0) {
        if (errno == ENOENT)
            return NULL;
        die("keeping %s in the attic: %s (is it on the same filesystem?)", name, strerror(errno));
    }
    return xstrdup(hidden);
}

static void drop_hidden(struct powercut *pc, char *hidden)
{
    if (!hidden)
        return;
    if (unlinkat(pc->attic_fd, hidden, 0) < 0)
        die("removing %s from the attic: %s", hidden, strerror(errno));
    free(hidden);
}

static void push_op(struct powercut *pc, enum fault_op kind, struct pc_dir *d, const char *name,
                    const char *to, char *attic)
{
    grow((void **)&pc->ops, &pc->cap_ops, pc->n_ops, sizeof *pc->ops);
    pc->ops[pc->n_ops++] = (struct pc_op){.kind = kind,
                                          .dir = d,
                                          .name = xstrdup(name),
                                          .to = to ? xstrdup(to) : NULL,
                                          .attic = attic};
}

static void free_op(struct pc_op *op)
{
    free(op->name);
    free(op->to);
}

/* A completed fsync of a directory: its operations are durable. */
static void settle_dir(struct powercut *pc, const struct stat *st)
{
    size_t keep = 0;
    for (size_t i = 0; i < pc->n_ops; i++) {
        struct pc_op *op = &pc->ops[i];
        if (op->dir->dev == st->st_dev && op->dir->ino == st->st_ino) {
            drop_hidden(pc, op->attic);
            free_op(op);
        } else {
            pc->ops[keep++] = *op;
        }
    }
    pc->n_ops = keep;
}

static void undo_op(struct powercut *pc, const struct pc_op *op)
{
    int dfd = op->dir->fd;
    int rc = 0;
    if (op->kind == OP_OPENAT) {
        rc = unlinkat(dfd, op->name, 0);
    } else if (op->kind == OP_RENAMEAT) {
        rc = renameat(dfd, op->to, dfd, op->name);
        if (rc == 0 && op->attic)
            rc = renameat(pc->attic_fd, op->attic, dfd, op->to);
    } else if (op->attic) {
        rc = renameat(pc->attic_fd, op->attic, dfd, op->name);
    }
    if (rc < 0)
        die("undoing %s of %s: %s", fault_op_name(op->kind), op->name, strerror(errno));
}

/* ---- the calls ---- */

static int pc_openat(void *ctx, int dirfd, const char *name, int flags, mode_t mode)
{
    struct powercut *pc = PC(ctx);
    pthread_mutex_lock(&pc->mu);
    int fd = enter(pc, OP_OPENAT, name, NULL);
    if (fd == 0) {
        struct stat st;
        int existed = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        int truncates =
            existed && (flags & O_TRUNC) && (flags & (O_WRONLY | O_RDWR)) && S_ISREG(st.st_mode);
        if (truncates)
            save_whole(pc, dirfd, name);
        fd = wal_posix_io.openat(wal_posix_io.ctx, dirfd, name, flags, mode);
        if (fd >= 0 && (truncates || (!existed && (flags & O_CREAT)))) {
            if (fstat(fd, &st) < 0)
                die("fstat of new %s: %s", name, strerror(errno));
            struct pc_file *f = track_file(pc, fd, &st);
            if (!existed) {
                /* A new file: nothing of it was ever synced. */
                settle_file(f, 0);
                push_op(pc, OP_OPENAT, track_dir(pc, dirfd), name, NULL, NULL);
            } else {
                push_size(f, 0);
            }
        }
    }
    pthread_mutex_unlock(&pc->mu);
    return fd;
}

static int pc_close(void *ctx, int fd)
{
    struct powercut *pc = PC(ctx);
    pthread_mutex_lock(&pc->mu);
    int rc = enter(pc, OP_CLOSE, NULL, NULL);
    pthread_mutex_unlock(&pc->mu);
    /* Also after the cut: the descriptor is the process's, not the disk's. */
    int closed = wal_posix_io.close(wal_posix_io.ctx, fd);
    return rc ? rc : closed;
}

static ssize_t pc_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    struct powercut *pc = PC(ctx);
    pthread_mutex_lock(&pc->mu);
    int rc = enter(pc, OP_PREAD, NULL, NULL);
    pthread_mutex_unlock(&pc->mu);
    return rc ? rc : wal_posix_io.pread(wal_posix_io.ctx, fd, buf, len, off);
}

static ssize_t pc_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct powercut *pc = PC(ctx);
    pthread_mutex_lock(&pc->mu);
    ssize_t n = enter(pc, OP_PWRITE, NULL, NULL);
    if (n == 0) {
        struct stat st;
        if (fstat(fd, &st) < 0) {
            n = -errno;
        } else {
            struct pc_file *f = track_file(pc, fd, &st);
            if (len > 0)
                for (uint64_t b = (uint64_t)off / PC_BLOCK;
                     b <= ((uint64_t)off + len - 1) / PC_BLOCK; b++)
                    save_block(pc, f, b);
            n = wal_posix_io.pwrite(wal_posix_io.ctx, fd, buf, len, off);
            if (n > 0 && (uint64_t)off + (uint64_t)n > (uint64_t)st.st_size)
                push_size(f, (uint64_t)off + (uint64_t)n);
            pc->pwrites++;
        }
    }
    pthread_mutex_unlock(&pc->mu);
    return n;
}

/* fdatasync and fsync: a file's blocks and size, or a directory's
 * operations, become durable. */
static int pc_sync(struct powercut *pc, int fd, enum fault_op op)
{
    pthread_mutex_lock(&pc->mu);
    int rc = enter(pc, op, NULL, NULL);
    struct stat st;
    if (rc == 0 && fstat(fd, &st) < 0)
        rc = -errno;
    if (rc == 0 && pc->pass_syncs)
        rc = op == OP_FSYNC ? wal_posix_io.fsync(wal_posix_io.ctx, fd)
                            : wal_posix_io.fdatasync(wal_posix_io.ctx, fd);
    if (rc == 0 && S_ISDIR(st.st_mode)) {
        settle_dir(pc, &st);
        pc->dir_syncs++;
    } else if (rc == 0) {
        struct pc_file *f = find_file(pc, &st);
        if (f)
            settle_file(f, (uint64_t)st.st_size);
        pc->syncs++;
    }
    pthread_mutex_unlock(&pc->mu);
    return rc;
}

static int pc_fdatasync(void *ctx, int fd)
{
    return pc_sync(PC(ctx), fd, OP_FDATASYNC);
}

static int pc_fsync(void *ctx, int fd)
{
    return pc_sync(PC(ctx), fd, OP_FSYNC);
}

static int pc_renameat(void *ctx, int dirfd, const char *from, const char *to)
{
    struct powercut *pc = PC(ctx);
    pthread_mutex_lock(&pc->mu);
    int rc = enter(pc, OP_RENAMEAT, from, to);
    if (rc == 0) {
        struct pc_dir *d = track_dir(pc, dirfd);
        char *replaced = hide(pc, dirfd, to);
        rc = wal_posix_io.renameat(wal_posix_io.ctx, dirfd, from, to);
        if (rc == 0 && d)
            push_op(pc, OP_RENAMEAT, d, from, to, replaced);
        else
            drop_hidden(pc, replaced);
    }
    pthread_mutex_unlock(&pc->mu);
    return rc;
}

static int pc_unlinkat(void *ctx, int dirfd, const char *name)
{
    struct powercut *pc = PC(ctx);
    pthread_mutex_lock(&pc->mu);
    int rc = enter(pc, OP_UNLINKAT, name, NULL);
    if (rc == 0) {
        struct pc_dir *d = track_dir(pc, dirfd);
        char *removed = hide(pc, dirfd, name);
        rc = wal_posix_io.unlinkat(wal_posix_io.ctx, dirfd, name);
        if (rc == 0 && d)
            push_op(pc, OP_UNLINKAT, d, name, NULL, removed);
        else
            drop_hidden(pc, removed);
    }
    pthread_mutex_unlock(&pc->mu);
    return rc;
}

static int pc_clear_direct(void *ctx, int fd)
{
    struct powercut *pc = PC(ctx);
    pthread_mutex_lock(&pc->mu);
    int rc = enter(pc, OP_CLEAR_DIRECT, NULL, NULL);
    pthread_mutex_unlock(&pc->mu);
    return rc ? rc : wal_posix_io.clear_direct(wal_posix_io.ctx, fd);
}

/* ---- the cut ---- */

enum fate { KEEP, RESTORE, TEAR };

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* In ordered mode, the block first written at `seq` is torn and those
 * written later are lost (UINT64_MAX: every block reached the disk). */
static uint64_t ordered_limit(struct powercut *pc, uint64_t *rng)
{
    size_t total = 0;
    for (size_t i = 0; i < pc->n_files; i++)
        total += pc->files[i]->n_blocks;
    uint64_t *seqs = malloc((total ? total : 1) * sizeof *seqs);
    if (!seqs)
        die("out of memory");
    size_t n = 0;
    for (size_t i = 0; i < pc->n_files; i++)
        for (size_t j = 0; j < pc->files[i]->n_blocks; j++)
            seqs[n++] = pc->files[i]->blocks[j].seq;
    qsort(seqs, n, sizeof *seqs, cmp_u64);
    size_t c = (size_t)tu_rand_range(rng, 0, n);
    uint64_t limit = c < n ? seqs[c] : UINT64_MAX;
    free(seqs);
    return limit;
}

static void apply_file(struct pc_file *f, uint64_t *rng, int ordered, uint64_t limit,
                       struct powercut_result *r)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        die("fstat: %s", strerror(errno));
    uint64_t now = (uint64_t)st.st_size;
    uint64_t size = f->sizes[tu_rand_range(rng, 0, f->n_sizes - 1)];
    static uint8_t cur[PC_BLOCK], out[PC_BLOCK];
    static const uint8_t zeros[PC_BLOCK];
    for (size_t i = 0; i < f->n_blocks; i++) {
        const struct pc_block *b = &f->blocks[i];
        enum fate fate;
        if (ordered)
            fate = b->seq < limit ? KEEP : b->seq == limit ? TEAR : RESTORE;
        else
            fate = (enum fate)tu_rand_range(rng, KEEP, TEAR);
        unsigned sectors =
            fate == TEAR ? (unsigned)tu_rand_range(rng, 1, PC_BLOCK / PC_SECTOR - 1) : 0;
        r->blocks_kept += fate == KEEP;
        r->blocks_restored += fate == RESTORE;
        r->blocks_torn += fate == TEAR;
        if (fate == KEEP)
            continue; /* what the file holds now (zeros past its end) */
        const uint8_t *old = b->old ? b->old : zeros;
        read_block(f->fd, b->index, cur, now);
        memcpy(out, cur, sectors * PC_SECTOR);
        memcpy(out + sectors * PC_SECTOR, old + sectors * PC_SECTOR,
               PC_BLOCK - sectors * PC_SECTOR);
        if (pwrite(f->fd, out, PC_BLOCK, (off_t)(b->index * PC_BLOCK)) != (ssize_t)PC_BLOCK)
            die("rewriting block %llu: %s", (unsigned long long)b->index, strerror(errno));
    }
    /* Blocks rewritten past the chosen size go with the truncation. */
    if (ftruncate(f->fd, (off_t)size) < 0)
        die("ftruncate: %s", strerror(errno));
    r->files_resized += size != now;
}

/* Forgets everything: the attic's links of the operations left, our
 * descriptors, the records. */
static void release(struct powercut *pc)
{
    for (size_t i = 0; i < pc->n_ops; i++) {
        drop_hidden(pc, pc->ops[i].attic);
        free_op(&pc->ops[i]);
    }
    pc->n_ops = 0;
    for (size_t i = 0; i < pc->n_files; i++) {
        struct pc_file *f = pc->files[i];
        settle_file(f, 0);
        close(f->fd);
        free(f->blocks);
        free(f->sizes);
        free(f);
    }
    pc->n_files = 0;
    for (size_t i = 0; i < pc->n_dirs; i++) {
        close(pc->dirs[i]->fd);
        free(pc->dirs[i]);
    }
    pc->n_dirs = 0;
}

void powercut_apply(struct powercut *pc, uint64_t cut_seed, struct powercut_result *r)
{
    pthread_mutex_lock(&pc->mu);
    memset(r, 0, sizeof *r);
    uint64_t rng = cut_seed;
    r->ordered = (int)tu_rand_range(&rng, 0, 1);
    uint64_t limit = r->ordered ? ordered_limit(pc, &rng) : 0;
    for (size_t i = 0; i < pc->n_files; i++)
        apply_file(pc->files[i], &rng, r->ordered, limit, r);
    r->ops_pending = pc->n_ops;
    r->ops_undone = (size_t)tu_rand_range(&rng, 0, pc->n_ops);
    for (size_t i = 0; i < r->ops_undone; i++) {
        struct pc_op *op = &pc->ops[--pc->n_ops];
        undo_op(pc, op);
        free(op->attic); /* back in place: no longer in the attic */
        free_op(op);
    }
    release(pc);
    pc->spent = 1; /* nothing may change the disk after the cut */
    pthread_mutex_unlock(&pc->mu);
}

void powercut_init(struct powercut *pc, const char *attic)
{
    memset(pc, 0, sizeof *pc);
    pthread_mutex_init(&pc->mu, NULL);
    pc->cut_op = -1;
    pc->attic_fd = open(attic, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pc->attic_fd < 0)
        die("opening the attic %s: %s", attic, strerror(errno));
    pc->io.openat = pc_openat;
    pc->io.close = pc_close;
    pc->io.pread = pc_pread;
    pc->io.pwrite = pc_pwrite;
    pc->io.fdatasync = pc_fdatasync;
    pc->io.fsync = pc_fsync;
    pc->io.renameat = pc_renameat;
    pc->io.unlinkat = pc_unlinkat;
    pc->io.clear_direct = pc_clear_direct;
    pc->io.ctx = pc;
}

void powercut_destroy(struct powercut *pc)
{
    release(pc);
    free(pc->files);
    free(pc->dirs);
    free(pc->ops);
    close(pc->attic_fd);
    pthread_mutex_destroy(&pc->mu);
}

void powercut_describe_cut(const struct powercut *pc, char *buf, size_t len)
{
    if (pc->cut && pc->cut_op >= 0)
        snprintf(buf, len, "cut at call %ld, %s", pc->cut_at,
                 fault_op_name((enum fault_op)pc->cut_op));
    else
        snprintf(buf, len, "no cut in %ld calls", pc->calls);
}

void powercut_describe_result(const struct powercut_result *r, char *buf, size_t len)
{
    snprintf(buf, len,
             "blocks %s: %ld kept, %ld restored, %ld torn; %ld resized; %zu/%zu names undone",
             r->ordered ? "in order" : "apart", r->blocks_kept, r->blocks_restored, r->blocks_torn,
             r->files_resized, r->ops_undone, r->ops_pending);
}
