/*
 * ops_entry.c - requests on names and attributes: lookup, getattr, setattr,
 * and the changes to the tree (mknod, mkdir, symlink, link, unlink, rmdir,
 * rename).
 *
 * The store takes keys and leaves the tree's rules to us: a parent must
 * exist (the kernel holds it), unlink refuses directories and rmdir
 * anything else, and names are at most 255 bytes.
 */
#include "mindbfs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int fs_errno(int err)
{
    if (err >= 0)
        return 0;
    if (err < -4095)
        return EIO; /* MINDB_ECORRUPT and the like: the data is not there */
    return -err;
}

static struct timespec ts_of(int64_t ns)
{
    struct timespec t = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    if (t.tv_nsec < 0) {
        t.tv_sec--;
        t.tv_nsec += 1000000000;
    }
    return t;
}

void stat_from_mindb(const struct mindbfs *fs, const struct mindb_stat *in, struct stat *out)
{
    memset(out, 0, sizeof(*out));
    out->st_ino = ino_of_id(fs, in->id);
    out->st_mode = in->mode;
    out->st_nlink = in->nlink;
    out->st_uid = in->uid;
    out->st_gid = in->gid;
    out->st_size = (off_t)in->size;
    /* What the value really occupies, compressed: du tells the truth. */
    out->st_blocks = (blkcnt_t)((in->disk_bytes + 511) / 512);
    out->st_blksize = 65536; /* a chunk: reads and writes of this size cost least */
    out->st_atim = ts_of(in->atime_ns);
    out->st_mtim = ts_of(in->mtime_ns);
    out->st_ctim = ts_of(in->ctime_ns);
}

/* What the kernel is told of a node it now holds. */
static void entry_param(const struct mindbfs *fs, const struct node *node,
                        const struct mindb_stat *st, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = node->ino;
    e->attr_timeout = fs->conf->attr_timeout;
    e->entry_timeout = fs->conf->entry_timeout;
    stat_from_mindb(fs, st, &e->attr);
    e->attr.st_ino = node->ino;
}

int reply_entry(fuse_req_t req, struct mindbfs *fs, struct node *node, const struct mindb_stat *st)
{
    struct fuse_entry_param e;
    entry_param(fs, node, st, &e);
    if (fuse_reply_entry(req, &e) != 0) {
        /* The kernel did not take the reference (the request was
         * interrupted): give it back. */
        node_forget(fs, node, 1);
    }
    return 0;
}

static int is_reserved_name(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* Whether keys lie under "key/" though `key` itself does not exist: a store
 * written through the library may hold "a/b" without a directory "a". */
static int is_bare_prefix(mindb *db, const char *key, int key_len)
{
    char prefix[MINDB_MAX_KEY + 2];
    memcpy(prefix, key, (size_t)key_len);
    prefix[key_len] = '/';
    mindb_iter *it;
    if (mindb_iter_open(db, prefix, (size_t)key_len + 1, NULL, 0, 0, &it) != 0)
        return 0;
    const void *k;
    size_t k_len;
    int found = mindb_iter_next(it, &k, &k_len, NULL) == 1 && k_len > (size_t)key_len + 1 &&
                memcmp(k, prefix, (size_t)key_len + 1) == 0;
    mindb_iter_close(it);
    return found;
}

/* Looks `key` up; a bare prefix becomes a directory of its own (owned like
 * the root) so that the tree is whole from here on. */
static int stat_key(struct mindbfs *fs, const char *key, int key_len, struct mindb_stat *st)
{
    int err = mindb_stat(fs->db, key, (size_t)key_len, st);
    if (err != -ENOENT || fs->conf->read_only || !is_bare_prefix(fs->db, key, key_len))
        return err;
    struct mindb_stat root;
    err = mindb_fstat(fs->root->obj, &root);
    if (!err)
        err = mindb_create(fs->db, key, (size_t)key_len, S_IFDIR | 0755, root.uid, root.gid, NULL,
                           0);
    if (err && err != -EEXIST)
        return err;
    return mindb_stat(fs->db, key, (size_t)key_len, st);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mindbfs *fs = fs_of(req);
    char key[MINDB_MAX_KEY + 1];
    struct mindb_stat st;
    struct node *node = NULL;
    pthread_rwlock_rdlock(&fs->tree);
    struct node *dir = node_get(fs, parent);
    int key_len = node_key(dir, name, key);
    int err = key_len < 0 ? key_len : stat_key(fs, key, key_len, &st);
    if (!err)
        err = node_lookup(fs, &st, dir, name, &node);
    else if (err == -ENOENT && fs->conf->read_only && is_bare_prefix(fs->db, key, key_len) &&
             (err = node_lookup_bare(fs, dir, name, &node)) == 0)
        err = node_stat(fs, node, &st);
    pthread_rwlock_unlock(&fs->tree);
    if (err == -ENOENT && fs->conf->negative_timeout > 0) {
        /* A negative entry the kernel may cache. */
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        e.entry_timeout = fs->conf->negative_timeout;
        fuse_reply_entry(req, &e);
        return;
    }
    if (err) {
        fuse_reply_err(req, fs_errno(err));
        return;
    }
    reply_entry(req, fs, node, &st);
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    struct mindbfs *fs = fs_of(req);
    node_forget(fs, node_get(fs, ino), nlookup);
    fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct mindbfs *fs = fs_of(req);
    for (size_t i = 0; i < count; i++)
        node_forget(fs, node_get(fs, forgets[i].ino), forgets[i].nlookup);
    fuse_reply_none(req);
}

static void reply_attr_of(fuse_req_t req, struct mindbfs *fs, struct node *node)
{
    struct mindb_stat st;
    int err = node_stat(fs, node, &st);
    if (err) {
        fuse_reply_err(req, fs_errno(err));
        return;
    }
    struct stat attr;
    stat_from_mindb(fs, &st, &attr);
    attr.st_ino = node->ino;
    fuse_reply_attr(req, &attr, fs->conf->attr_timeout);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct mindbfs *fs = fs_of(req);
    reply_attr_of(req, fs, node_get(fs, ino));
}

/* The store keeps signed 64-bit nanoseconds (1677 to 2262): times beyond
 * are clamped, as the kernel clamps those a local filesystem cannot hold.
 * INT64_MIN is MINDB_TIME_NOW, so the lowest time kept is one above. */
static int64_t ns_of(struct timespec t)
{
    int64_t ns;
    if (__builtin_mul_overflow((int64_t)t.tv_sec, 1000000000, &ns) ||
        __builtin_add_overflow(ns, (int64_t)t.tv_nsec, &ns))
        return t.tv_sec < 0 ? INT64_MIN + 1 : INT64_MAX;
    return ns == INT64_MIN ? INT64_MIN + 1 : ns;
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi)
{
    (void)fi;
    struct mindbfs *fs = fs_of(req);
    struct node *node = node_get(fs, ino);
    struct mindb_attr a;
    memset(&a, 0, sizeof(a));
    unsigned fields = 0;
    if (to_set & FUSE_SET_ATTR_MODE) {
        fields |= MINDB_SET_MODE;
        a.mode = attr->st_mode & 07777;
    }
    if (to_set & FUSE_SET_ATTR_UID) {
        fields |= MINDB_SET_UID;
        a.uid = attr->st_uid;
    }
    if (to_set & FUSE_SET_ATTR_GID) {
        fields |= MINDB_SET_GID;
        a.gid = attr->st_gid;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        fields |= MINDB_SET_SIZE;
        a.size = (uint64_t)attr->st_size;
    }
    if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
        fields |= MINDB_SET_ATIME;
        a.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? MINDB_TIME_NOW : ns_of(attr->st_atim);
    }
    if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
        fields |= MINDB_SET_MTIME;
        a.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? MINDB_TIME_NOW : ns_of(attr->st_mtim);
    }
    if (to_set & FUSE_SET_ATTR_CTIME) {
        fields |= MINDB_SET_CTIME;
        a.ctime_ns = ns_of(attr->st_ctim);
    }
    int err = !node->obj ? -EROFS : fields ? mindb_fsetattr(node->obj, &a, fields) : 0;
    if (err) {
        fuse_reply_err(req, fs_errno(err));
        return;
    }
    if (fields & MINDB_SET_SIZE)
        node->data_version++;
    reply_attr_of(req, fs, node);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct mindbfs *fs = fs_of(req);
    char target[4097];
    ssize_t n = mindb_pread(node_get(fs, ino)->obj, target, sizeof(target) - 1, 0);
    if (n < 0) {
        fuse_reply_err(req, fs_errno((int)n));
        return;
    }
    target[n] = '\0';
    fuse_reply_readlink(req, target);
}

/* Makes `name` in `parent` an object of `mode` owned by the caller (group
 * from a set-group-ID directory, as ext4 does), and takes the kernel's
 * reference on it. */
static int make_entry(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      const char *target, struct node **out, struct mindb_stat *st)
{
    struct mindbfs *fs = fs_of(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    uint32_t gid = ctx->gid;
    char key[MINDB_MAX_KEY + 1];
    if (is_reserved_name(name))
        return -EEXIST;
    pthread_rwlock_rdlock(&fs->tree);
    struct node *dir = node_get(fs, parent);
    int key_len = node_key(dir, name, key);
    int err = key_len < 0 ? key_len : !dir->obj ? -EROFS : mindb_fstat(dir->obj, st);
    if (!err && (st->mode & S_ISGID)) {
        gid = st->gid;
        if (S_ISDIR(mode))
            mode |= S_ISGID;
    }
    if (!err)
        err = mindb_create(fs->db, key, (size_t)key_len, mode, ctx->uid, gid, target,
                           target ? strlen(target) : 0);
    if (!err)
        err = mindb_stat(fs->db, key, (size_t)key_len, st);
    if (!err)
        err = node_lookup(fs, st, dir, name, out);
    pthread_rwlock_unlock(&fs->tree);
    return err;
}

static void reply_made(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       const char *target)
{
    struct node *node;
    struct mindb_stat st;
    int err = make_entry(req, parent, name, mode, target, &node, &st);
    if (err)
        fuse_reply_err(req, fs_errno(err));
    else
        reply_entry(req, fs_of(req), node, &st);
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)rdev;
    /* The store keeps files, directories and symlinks only. */
    if (!S_ISREG(mode)) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    reply_made(req, parent, name, S_IFREG | (mode & 07777), NULL);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    reply_made(req, parent, name, S_IFDIR | (mode & 07777), NULL);
}

void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    reply_made(req, parent, name, S_IFLNK | 0777, link);
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
    struct node *node;
    struct mindb_stat st;
    int err = make_entry(req, parent, name, S_IFREG | (mode & 07777), NULL, &node, &st);
    if (err) {
        fuse_reply_err(req, fs_errno(err));
        return;
    }
    struct mindbfs *fs = fs_of(req);
    node_pin(fs, node);
    node->open_version = node->data_version;
    fi->fh = (uintptr_t)node;
    struct fuse_entry_param e;
    entry_param(fs, node, &st, &e);
    if (fuse_reply_create(req, &e, fi) != 0) {
        node_unpin(fs, node);
        node_forget(fs, node, 1);
    }
}

/* Removes `name` from `parent` when it is a directory (dir 1) or is not
 * (dir 0); a removed directory's node is cut from the tree. */
static int remove_entry(struct mindbfs *fs, fuse_ino_t parent, const char *name, int dir)
{
    char key[MINDB_MAX_KEY + 1];
    struct mindb_stat st;
    if (dir)
        pthread_rwlock_wrlock(&fs->tree);
    else
        pthread_rwlock_rdlock(&fs->tree);
    int key_len = node_key(node_get(fs, parent), name, key);
    int err = key_len < 0 ? key_len : mindb_stat(fs->db, key, (size_t)key_len, &st);
    if (!err && dir && !S_ISDIR(st.mode))
        err = -ENOTDIR;
    if (!err && !dir && S_ISDIR(st.mode))
        err = -EISDIR;
    if (!err)
        err = mindb_delete(fs->db, key, (size_t)key_len);
    if (!err && dir) {
        struct node *gone = node_find(fs, st.id);
        if (gone)
            node_move(fs, gone, NULL, NULL);
    }
    pthread_rwlock_unlock(&fs->tree);
    return err;
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, fs_errno(remove_entry(fs_of(req), parent, name, 0)));
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, fs_errno(remove_entry(fs_of(req), parent, name, 1)));
}

/* After a rename: the directory nodes that moved follow their keys. */
static int move_nodes(struct mindbfs *fs, unsigned flags, const struct mindb_stat *from,
                      const struct mindb_stat *to, int to_existed, struct node *parent,
                      const char *name, struct node *newparent, const char *newname)
{
    int err = 0;
    struct node *n = S_ISDIR(from->mode) ? node_find(fs, from->id) : NULL;
    if (n)
        err = node_move(fs, n, newparent, newname);
    if (!to_existed || !S_ISDIR(to->mode))
        return err;
    struct node *t = node_find(fs, to->id);
    if (t && (flags & RENAME_EXCHANGE))
        err = node_move(fs, t, parent, name) ?: err;
    else if (t)
        node_move(fs, t, NULL, NULL);
    return err;
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags)
{
    struct mindbfs *fs = fs_of(req);
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
        fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT: for overlay filesystems */
        return;
    }
    char from[MINDB_MAX_KEY + 1], to[MINDB_MAX_KEY + 1];
    struct mindb_stat from_st, to_st;
    pthread_rwlock_wrlock(&fs->tree);
    struct node *dir = node_get(fs, parent), *newdir = node_get(fs, newparent);
    int from_len = node_key(dir, name, from);
    int to_len = node_key(newdir, newname, to);
    int err = from_len < 0 ? from_len : to_len < 0 ? to_len : 0;
    if (!err)
        err = mindb_stat(fs->db, from, (size_t)from_len, &from_st);
    int to_err = err ? err : mindb_stat(fs->db, to, (size_t)to_len, &to_st);
    if (!err && to_err && to_err != -ENOENT)
        err = to_err;
    if (!err && !to_err && to_st.id == from_st.id && !(flags & RENAME_EXCHANGE)) {
        /* Two names of one file: POSIX leaves both in place. */
        err = (flags & RENAME_NOREPLACE) ? -EEXIST : 0;
        pthread_rwlock_unlock(&fs->tree);
        fuse_reply_err(req, fs_errno(err));
        return;
    }
    if (!err)
        err = mindb_rename(fs->db, from, (size_t)from_len, to, (size_t)to_len, flags);
    if (!err)
        err = move_nodes(fs, flags, &from_st, &to_st, to_err == 0, dir, name, newdir, newname);
    pthread_rwlock_unlock(&fs->tree);
    fuse_reply_err(req, fs_errno(err));
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct mindbfs *fs = fs_of(req);
    char key[MINDB_MAX_KEY + 1];
    struct mindb_stat st;
    struct node *node = node_get(fs, ino), *out = NULL;
    pthread_rwlock_rdlock(&fs->tree);
    struct node *dir = node_get(fs, newparent);
    int key_len = node_key(dir, newname, key);
    int err = key_len < 0 ? key_len : mindb_file_link(node->obj, key, (size_t)key_len);
    if (!err)
        err = mindb_fstat(node->obj, &st);
    if (!err)
        err = node_lookup(fs, &st, dir, newname, &out);
    pthread_rwlock_unlock(&fs->tree);
    if (err)
        fuse_reply_err(req, fs_errno(err));
    else
        reply_entry(req, fs, out, &st);
}
