/*
 * ops_dir.c - directories: listing, fsync, and statfs.
 *
 * A listing is a range scan over the directory's children in key order. An
 * open directory remembers the last name it returned and the offset after
 * it, so reading on continues after that name: entries removed or added
 * meanwhile (rm -rf unlinks as it reads) never make it skip or repeat one.
 * Offsets count entries ("." is 1, ".." 2, the children 3, 4, ...); seeking
 * anywhere else lists again from the start and skips that many.
 */
#include "mindbfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

struct dir_handle {
    struct dir_handle *prev, *next; /* fs->open_dirs */
    struct node *node;
    off_t next_off;                   /* the offset the last entry returned gave */
    size_t last_len;                  /* the key of the last child returned */
    char last[MINDB_MAX_KEY + 2];
};

static void dir_unlink(struct mindbfs *fs, struct dir_handle *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        fs->open_dirs = d->next;
    if (d->next)
        d->next->prev = d->prev;
}

static void dir_close(struct mindbfs *fs, struct dir_handle *d)
{
    pthread_mutex_lock(&fs->table_lock);
    dir_unlink(fs, d);
    pthread_mutex_unlock(&fs->table_lock);
    node_unpin(fs, d->node);
    free(d);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mindbfs *fs = fs_of(req);
    struct dir_handle *d = calloc(1, sizeof(*d));
    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    d->node = node_get(fs, ino);
    node_pin(fs, d->node);
    pthread_mutex_lock(&fs->table_lock);
    d->next = fs->open_dirs;
    if (d->next)
        d->next->prev = d;
    fs->open_dirs = d;
    pthread_mutex_unlock(&fs->table_lock);
    fi->fh = (uintptr_t)d;
    if (fuse_reply_open(req, fi) != 0)
        dir_close(fs, d);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    dir_close(fs_of(req), (struct dir_handle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

void dirs_release_all(struct mindbfs *fs)
{
    while (fs->open_dirs) {
        struct dir_handle *d = fs->open_dirs;
        dir_unlink(fs, d);
        free(d);
    }
}

/* The inode number listed for a child. A prefix without a key of its own
 * (written through the library) has no object: it is listed with the number
 * a read-only mount gives it (a read-write one makes it a directory, with an
 * id, when it is looked up). */
static ino_t child_ino(struct mindbfs *fs, const struct mindb_stat *st, fuse_ino_t dir,
                       const char *name)
{
    return st->id != 0 ? ino_of_id(fs, st->id) : bare_ino(dir, name);
}

/* Adds entries to `buf` from offset `d->next_off` on; returns the bytes
 * used or a negative errno. */
static ssize_t fill_listing(fuse_req_t req, struct mindbfs *fs, struct dir_handle *d,
                            char *buf, size_t size, off_t skip_to)
{
    size_t used = 0;
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_mode = S_IFDIR;
    pthread_rwlock_rdlock(&fs->tree);
    fuse_ino_t up = d->node->parent ? d->node->parent->ino : FUSE_ROOT_ID;
    pthread_rwlock_unlock(&fs->tree);
    while (d->next_off < 2) {
        const char *dot = d->next_off == 0 ? "." : "..";
        st.st_ino = d->next_off == 0 ? d->node->ino : up;
        if (d->next_off + 1 > skip_to) {
            size_t n = fuse_add_direntry(req, buf + used, size - used, dot, &st, d->next_off + 1);
            if (n > size - used)
                return (ssize_t)used;
            used += n;
        }
        d->next_off++;
    }

    char prefix[MINDB_MAX_KEY + 2];
    pthread_rwlock_rdlock(&fs->tree);
    int prefix_len = node_key(d->node, NULL, prefix);
    pthread_rwlock_unlock(&fs->tree);
    if (prefix_len < 0)
        return prefix_len == -ENOENT ? (ssize_t)used : prefix_len; /* removed: empty */
    if (prefix_len > 0)
        prefix[prefix_len++] = '/';
    mindb_iter *it;
    int err = mindb_iter_open(fs->db, prefix, (size_t)prefix_len, d->last, d->last_len,
                              MINDB_ITER_CHILDREN, &it);
    if (err)
        return err;
    const void *key;
    size_t key_len;
    struct mindb_stat ms;
    char name[NAME_MAX_BYTES + 2];
    while ((err = mindb_iter_next(it, &key, &key_len, &ms)) == 1) {
        const char *child = (const char *)key + prefix_len;
        size_t len = key_len - (size_t)prefix_len;
        if (len > 0 && child[len - 1] == '/')
            len--; /* a prefix without a key: "sub/" lists as "sub" */
        if (len == 0 || len > NAME_MAX_BYTES || memchr(child, '\0', len))
            continue; /* no name the kernel could take */
        memcpy(name, child, len);
        name[len] = '\0';
        if (d->next_off + 1 > skip_to) {
            st.st_ino = child_ino(fs, &ms, d->node->ino, name);
            st.st_mode = ms.mode & S_IFMT;
            size_t n = fuse_add_direntry(req, buf + used, size - used, name, &st, d->next_off + 1);
            if (n > size - used)
                break;
            used += n;
        }
        d->next_off++;
        memcpy(d->last, key, key_len);
        d->last_len = key_len;
    }
    mindb_iter_close(it);
    return err < 0 ? err : (ssize_t)used;
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    struct mindbfs *fs = fs_of(req);
    struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
    char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    off_t skip_to = 0;
    if (off != d->next_off) {
        /* A seek (or rewind): list again from the start. */
        d->next_off = 0;
        d->last_len = 0;
        skip_to = off;
    }
    ssize_t n = fill_listing(req, fs, d, buf, size, skip_to);
    if (n < 0)
        fuse_reply_err(req, fs_errno((int)n));
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    /* Entries are records in the one log: committing it commits them. */
    fuse_reply_err(req, fs_errno(mindb_sync(fs_of(req)->db)));
}

void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct mindbfs *fs = fs_of(req);
    struct statvfs host;
    struct mindb_stats stats;
    if (statvfs(fs->conf->store, &host) != 0) {
        fuse_reply_err(req, errno);
        return;
    }
    int err = mindb_stats(fs->db, &stats);
    if (err) {
        fuse_reply_err(req, fs_errno(err));
        return;
    }
    /* Space is the host filesystem's, where the store lives; files are the
     * keys there are, plus as many more as the host has inodes free (a key
     * costs no inode of its own). */
    struct statvfs out;
    memset(&out, 0, sizeof(out));
    out.f_bsize = out.f_frsize = 4096;
    double scale = (double)host.f_frsize / 4096.0;
    out.f_blocks = (fsblkcnt_t)((double)host.f_blocks * scale);
    out.f_bfree = (fsblkcnt_t)((double)host.f_bfree * scale);
    out.f_bavail = (fsblkcnt_t)((double)host.f_bavail * scale);
    out.f_ffree = out.f_favail = host.f_ffree > 0 ? host.f_ffree : 1u << 30;
    out.f_files = stats.keys + out.f_ffree;
    out.f_namemax = NAME_MAX_BYTES;
    fuse_reply_statfs(req, &out);
}
