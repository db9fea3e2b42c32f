/*
 * ops_file.c - open files: open, read, write, fsync, fallocate, release.
 *
 * An open file is its node (fi->fh), pinned while open: every access goes
 * to the object by handle, so renaming or unlinking the name does not
 * disturb it. Durability comes from fsync only (a commit of the store's
 * log); flush and release never wait for the disk, since the kernel sends
 * them at close, fork and exit, as often as it likes or not at all.
 */
#include "mindbfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

static struct node *file_node(struct fuse_file_info *fi)
{
    return (struct node *)(uintptr_t)fi->fh;
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mindbfs *fs = fs_of(req);
    struct node *node = node_get(fs, ino);
    if (S_ISDIR(node->mode)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    /* Linux truncates on O_TRUNC even when opening read-only (the kernel
     * has checked write permission), and an empty file too: that sets its
     * mtime and ctime, as on ext4. */
    if (fi->flags & O_TRUNC) {
        struct mindb_stat st;
        int err = mindb_fstat(node->obj, &st);
        if (!err) {
            if (st.size > 0)
                node->data_version++;
            err = mindb_truncate(node->obj, 0);
        }
        if (err) {
            fuse_reply_err(req, fs_errno(err));
            return;
        }
    }
    node_pin(fs, node);
    /* Every change reaches the store through this kernel, whose page cache
     * therefore holds it; still, a file written since it was last opened
     * starts with a fresh cache, the cheap way to never serve a page that
     * went stale by a path we did not foresee. */
    uint64_t version = node->data_version;
    fi->keep_cache = version == node->open_version;
    node->open_version = version;
    fi->fh = (uintptr_t)node;
    if (fuse_reply_open(req, fi) != 0)
        node_unpin(fs, node);
}

/* Each worker thread reads into a buffer of its own, grown to the largest
 * request it has served (at most max_read) and freed when the thread ends. */
static pthread_key_t read_buffer_key;
static pthread_once_t read_buffer_once = PTHREAD_ONCE_INIT;

struct read_buffer {
    size_t cap;
    char data[];
};

static void read_buffer_key_make(void)
{
    pthread_key_create(&read_buffer_key, free);
}

static char *read_buffer(size_t size)
{
    pthread_once(&read_buffer_once, read_buffer_key_make);
    struct read_buffer *b = pthread_getspecific(read_buffer_key);
    if (b && b->cap >= size)
        return b->data;
    free(b);
    b = malloc(sizeof(*b) + size);
    pthread_setspecific(read_buffer_key, b);
    if (!b)
        return NULL;
    b->cap = size;
    return b->data;
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    char *buf = read_buffer(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ssize_t n = mindb_pread(file_node(fi)->obj, buf, size, (uint64_t)off);
    if (n < 0)
        fuse_reply_err(req, fs_errno((int)n));
    else
        fuse_reply_buf(req, buf, (size_t)n);
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi)
{
    (void)ino;
    struct node *node = file_node(fi);
    ssize_t n = mindb_pwrite(node->obj, buf, size, (uint64_t)off);
    node->data_version++;
    if (n < 0)
        fuse_reply_err(req, fs_errno((int)n));
    else
        fuse_reply_write(req, (size_t)n);
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    node_unpin(fs_of(req), file_node(fi));
    fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)datasync; /* a commit of the log carries data and metadata alike */
    struct mindbfs *fs = fs_of(req);
    struct node *node = fi ? file_node(fi) : node_get(fs, ino);
    fuse_reply_err(req, fs_errno(mindb_fsync(node->obj)));
}

/* Writes zeros over [off, end) of the value, a piece at a time. */
static int write_zeros(mindb_file *obj, uint64_t off, uint64_t end)
{
    static const char zeros[65536];
    while (off < end) {
        size_t n = end - off < sizeof(zeros) ? (size_t)(end - off) : sizeof(zeros);
        ssize_t done = mindb_pwrite(obj, zeros, n, off);
        if (done < 0)
            return (int)done;
        off += (uint64_t)done;
    }
    return 0;
}

static int fallocate_node(struct node *node, int mode, uint64_t off, uint64_t len)
{
    if (len == 0 || off > MINDB_MAX_SIZE || len > MINDB_MAX_SIZE - off)
        return len == 0 ? -EINVAL : -EFBIG;
    struct mindb_stat st;
    int err = mindb_fstat(node->obj, &st);
    if (err)
        return err;
    uint64_t end = off + len;
    switch (mode) {
    case 0:
        /* Space is not reserved (chunks are compressed when written), so
         * allocating only makes the file at least this long. */
        return end > st.size ? mindb_truncate(node->obj, end) : 0;
    case FALLOC_FL_KEEP_SIZE:
        return 0;
    case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
        return write_zeros(node->obj, off, end < st.size ? end : st.size);
    case FALLOC_FL_ZERO_RANGE:
    case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE:
        err = write_zeros(node->obj, off, end < st.size ? end : st.size);
        if (!err && !(mode & FALLOC_FL_KEEP_SIZE) && end > st.size)
            err = mindb_truncate(node->obj, end);
        return err;
    default:
        return -EOPNOTSUPP;
    }
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                  struct fuse_file_info *fi)
{
    (void)ino;
    struct node *node = file_node(fi);
    int err = off < 0 || len < 0 ? -EINVAL : fallocate_node(node, mode, (uint64_t)off, (uint64_t)len);
    /* It sets mtime and ctime even where no byte changed (space is never
     * reserved here), as ext4 and tmpfs do. */
    if (!err) {
        struct mindb_attr now = {.mtime_ns = MINDB_TIME_NOW};
        err = mindb_fsetattr(node->obj, &now, MINDB_SET_MTIME);
    }
    node->data_version++;
    fuse_reply_err(req, fs_errno(err));
}
