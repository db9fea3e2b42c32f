/*
 * mindbfs.h - what the daemon's files share: the mounted store, the table of
 * nodes the kernel knows (nodes.c), and the request handlers (ops_*.c).
 *
 * A node is an object of the store as the kernel sees it: its node id is the
 * object's id (the root's and id 1 trade places, since the kernel calls the
 * root 1), so two hard links are one inode to the kernel and share its page
 * cache. Each node holds a store handle on its object, which keeps an
 * unlinked file alive until the kernel forgets it, and lets every request on
 * an inode (getattr, read, write, xattrs...) work by handle, whatever names
 * the object has now. Only requests that name something (lookup, create,
 * unlink, rename...) need a key: the parent directory's path, built by
 * walking directory nodes up to the root, plus the name.
 */
#ifndef MINDBFS_H
#define MINDBFS_H

#include <fuse_lowlevel.h>
#include <mindb.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

/* Longest name of one path component, as ext4 allows. */
#define NAME_MAX_BYTES 255

/* What the command line chose; see options.c for the defaults. */
struct mindbfs_config {
    char *store;      /* absolute path of the store directory */
    char *mountpoint; /* absolute path */
    unsigned compression;
    char *cache_size, *dirty_size; /* as given, parsed by options_store() */
    unsigned checkpoint_interval;  /* seconds */
    int sync, read_only, allow_other;
    double attr_timeout, entry_timeout, negative_timeout;
    int foreground, debug, singlethread, clone_fd;
    unsigned max_threads, max_idle_threads;
    unsigned max_read; /* the mount option, 0 when not given */
    int show_help, show_version;
    struct fuse_conn_info_opts *conn_opts; /* writeback_cache, max_write... */
};

struct node {
    fuse_ino_t ino;
    uint64_t id;        /* the store object's */
    uint32_t mode;      /* type bits, for path building and checks */
    mindb_file *obj;    /* the handle that keeps the object alive (NULL: bare) */
    uint64_t nlookup;   /* the kernel's references */
    unsigned pins;      /* open handles, and child directories naming it */
    struct node *parent; /* directories only; NULL at the root or once removed */
    char *name;         /* directories only: the last component of its key */
    size_t name_len;
    /* Contents changed since the kernel last opened it: its page cache is
     * kept on open only when nothing was written since the last open. */
    _Atomic uint64_t data_version;
    _Atomic uint64_t open_version;
    struct node *hash_next;
};

struct mindbfs {
    mindb *db;
    struct mindbfs_config *conf;
    uint64_t root_id;
    /* Paths are built with it held for reading; renames and rmdir, which
     * move or remove directory nodes, hold it for writing, so a path stays
     * true while the request that built it runs. */
    pthread_rwlock_t tree;
    pthread_mutex_t table_lock; /* the hash table, nlookup and pins */
    struct node **buckets;
    size_t mask, count;
    struct node *root;
    /* Directories open now (ops_dir.c), under table_lock: the kernel may
     * unmount before the last RELEASEDIR arrives, and they are freed then. */
    struct dir_handle *open_dirs;
};

/* ---- nodes.c ---- */
int nodes_init(struct mindbfs *fs);
void nodes_destroy(struct mindbfs *fs);
fuse_ino_t ino_of_id(const struct mindbfs *fs, uint64_t id);
/* The node of an inode the kernel holds (never NULL for a valid ino). */
struct node *node_get(struct mindbfs *fs, fuse_ino_t ino);
/* Takes the kernel's reference for `st` found as `name` in `parent`: the
 * node is made (with a handle on the object) when missing. */
int node_lookup(struct mindbfs *fs, const struct mindb_stat *st, struct node *parent,
                const char *name, struct node **out);
/* A store written through the library may hold "a/b" without a key "a".
 * A read-write mount makes "a" a directory when it is looked up; a
 * read-only one shows a directory without an object ("bare": obj NULL),
 * numbered from its parent and name above the range of object ids. */
#define BARE_INO_BIT (1ull << 63)
fuse_ino_t bare_ino(fuse_ino_t parent, const char *name);
int node_lookup_bare(struct mindbfs *fs, struct node *parent, const char *name,
                     struct node **out);
/* The node's attributes (a bare one's are made up from the root's). */
int node_stat(struct mindbfs *fs, struct node *node, struct mindb_stat *st);
void node_forget(struct mindbfs *fs, struct node *node, uint64_t nlookup);
void node_pin(struct mindbfs *fs, struct node *node);
void node_unpin(struct mindbfs *fs, struct node *node);
/* With the tree lock held for writing: the directory node now lives at
 * parent/name, or (parent NULL) is gone. */
int node_move(struct mindbfs *fs, struct node *node, struct node *parent, const char *name);
/* The node of object `id`, if the kernel holds it (no reference taken: only
 * under the tree lock held for writing). */
struct node *node_find(struct mindbfs *fs, uint64_t id);
/* With the tree lock held: the key of `name` in directory `dir` ("" for the
 * root itself when name is NULL). Returns its length or a negative errno. */
int node_key(struct node *dir, const char *name, char key[MINDB_MAX_KEY + 1]);

/* ---- attributes and errors (ops_entry.c) ---- */
void stat_from_mindb(const struct mindbfs *fs, const struct mindb_stat *in, struct stat *out);
/* A store error as an errno for the kernel. */
int fs_errno(int err);
int reply_entry(fuse_req_t req, struct mindbfs *fs, struct node *node,
                const struct mindb_stat *st);

static inline struct mindbfs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* ---- options.c ---- */
int options_parse(struct fuse_args *args, struct mindbfs_config *conf);
void options_help(const char *prog);
/* The store's options as the command line set them; -EINVAL (with a
 * message) on a bad value. */
int options_store(const struct mindbfs_config *conf, struct mindb_options *o);
void options_free(struct mindbfs_config *conf);

/* ---- handlers ---- */
void op_init(void *userdata, struct fuse_conn_info *conn);
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi);
void op_readlink(fuse_req_t req, fuse_ino_t ino);
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi);
void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                  struct fuse_file_info *fi);

/* Frees the directory handles the kernel did not release (at unmount). */
void dirs_release_all(struct mindbfs *fs);
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void op_statfs(fuse_req_t req, fuse_ino_t ino);

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif /* MINDBFS_H */
