/*
 * mindb.h - the key-value store of mindb (libmindb).
 *
 * A store is a directory holding a write-ahead log, compressed data segments
 * and a manifest. Keys are byte strings of 1 to MINDB_MAX_KEY bytes; each key
 * names an object (an inode, in filesystem terms) that carries a value and
 * metadata: type and mode, owner, times, extended attributes. Two keys may
 * name one object (hard links), and an object stays alive while a
 * mindb_file handle holds it, even after its last key is gone.
 *
 * Keys are ordered bytewise. A key is also a path: '/' separates components,
 * a key of type directory has children "key/...", and renaming a directory
 * renames every key under it in one atomic step. Keys without a directory
 * above them are allowed (the store is a key-value store first); the
 * filesystem layer keeps its tree whole.
 *
 * The root: the empty key (length 0; the pointer may then be NULL) names
 * the store's root directory, which every store has (made with the store,
 * mode 0755, owned by the creating process's euid/egid; a store made by an
 * older build gets it at its first writable open). It is the parent of
 * every key without a '/': creating, removing or renaming such a key
 * changes the root's mtime and ctime, and its nlink is 2 plus the top-level
 * directories. Stat, setattr, extended attributes, mindb_file_open()
 * without CREATE or TRUNC and mindb_sync_key() take it like any key; what
 * would remove, replace or rename it is refused with the errno a filesystem
 * gives for "/" (each call says which). It is never a key of a listing nor
 * of mindb_stats(). A key whose only '/' is its first byte ("/x") has no
 * parent.
 *
 * Durability: every change is appended to the write-ahead log and applied in
 * memory before the call returns; it becomes durable at the next
 * mindb_sync() (or any sync by another thread that covers it). After a
 * crash the store opens and shows a prefix of the history of changes,
 * including everything synced. A put is atomic whatever its size.
 *
 * Errors are negative errno values, or one of the MINDB_E* codes below;
 * mindb_strerror() describes both. Nothing in the library prints or exits;
 * events a person should know about go to the `log` callback.
 *
 * Every function is safe to call from many threads on one handle, except
 * mindb_close(), which must be the last call. A reader is never held up by
 * another thread's sync.
 */
#ifndef MINDB_H
#define MINDB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions libmindb exports. The library is compiled with
 * -fvisibility=hidden, so libmindb.so exports these and nothing else: its
 * private functions and the write-ahead log folded into it stay inside. */
#if defined(__GNUC__) || defined(__clang__)
#define MINDB_API __attribute__((visibility("default")))
#else
#define MINDB_API
#endif

typedef struct mindb mindb;
typedef struct mindb_file mindb_file;
typedef struct mindb_iter mindb_iter;

/* Longest key, in bytes (the longest path the filesystem accepts). */
#define MINDB_MAX_KEY 4096
/* Longest extended attribute name and value, as Linux allows. */
#define MINDB_MAX_XATTR_NAME 255
#define MINDB_MAX_XATTR_VALUE 65536
/* Largest value or file size: what a signed 64-bit offset can address. */
#define MINDB_MAX_SIZE ((uint64_t)INT64_MAX)

/* Errors of the store's own, outside errno's range. */
#define MINDB_ENOTSTORE (-1001) /* the directory is not a mindb store */
#define MINDB_EVERSION (-1002)  /* written by a newer format version */
#define MINDB_ECORRUPT (-1003)  /* damaged beyond what recovery repairs */

/* Describes an error returned by any mindb_ function (or a negative errno). */
MINDB_API const char *mindb_strerror(int err);

/* The version of the library, "MAJOR.MINOR.PATCH". */
MINDB_API const char *mindb_version(void);

struct mindb_options {
    /* Create the store when the directory is missing or empty (default 0). */
    int create;
    /* Open without changing anything on disk: no checkpoint, nothing logged;
     * changing calls fail with -EROFS. The lock is still taken, so a store
     * open elsewhere is refused (default 0). */
    int read_only;
    /* zstd level for data chunks, 1..19 (default 3, measured in
     * docs/STORE-CHUNKS.md). */
    int compression_level;
    /* Bytes of decompressed chunks kept for reads (default 64 MiB). */
    uint64_t cache_bytes;
    /* Bytes of written-but-not-checkpointed data held in memory (default
     * 64 MiB). Above it, writers wait for a checkpoint. */
    uint64_t dirty_bytes;
    /* A checkpoint starts when the WAL since the last one exceeds this
     * (default 256 MiB), when dirty data exceeds half of dirty_bytes, or
     * after checkpoint_interval_ms with changes (default 30000; 0 = never
     * by time). */
    uint64_t checkpoint_wal_bytes;
    unsigned checkpoint_interval_ms;
    /* Data segments whose live fraction falls below this percentage are
     * compacted in the background (default 50; 0 turns background compaction
     * off, mindb_compact() still works). */
    unsigned compact_live_percent;
    /* Make every change durable before the call returns (default 0). */
    int sync_writes;
    /* A data segment file is closed to new chunks once it reaches this size
     * (default 64 MiB). Smaller segments compact sooner and in smaller
     * steps; each is one open file while in use. */
    uint64_t data_segment_bytes;
    /* Write the WAL with O_DIRECT (default 1; falls back when refused). */
    int direct_io;
    /* Run checkpoints and compaction on a background thread (default 1). With
     * 0 they happen only on mindb_checkpoint()/mindb_compact() and, when
     * memory runs over, on the writer's own thread. */
    int background;
    /* Receives one line for events a person should know about (a recovered
     * crash, a checksum mismatch, a lock held by another process). */
    void (*log)(void *log_ctx, const char *message);
    void *log_ctx;
};

MINDB_API void mindb_options_init(struct mindb_options *options);

/* Opens the store in `dir`, recovering it after a crash. A store open
 * elsewhere gives -EBUSY (mindb_lock_holder() names the process). A
 * directory that is not a store gives MINDB_ENOTSTORE (or, with `create`, is
 * made one if it is empty). */
MINDB_API int mindb_open(const char *dir, const struct mindb_options *options, mindb **out);

/* Syncs, checkpoints and releases everything; the handle is freed in every
 * case. Files still open are closed. Returns the first error met. */
MINDB_API int mindb_close(mindb *db);

/* The pid of the process holding the store in `dir` open, or 0 when none;
 * negative errno when it cannot be read. */
MINDB_API pid_t mindb_lock_holder(const char *dir);

/* ---- Object metadata -------------------------------------------------- */

enum mindb_type {
    MINDB_REG = 1, /* a regular file: the value is its contents */
    MINDB_DIR = 2, /* a directory: no value; children are "key/..." */
    MINDB_LNK = 3, /* a symbolic link: the value is the target */
};

struct mindb_stat {
    uint64_t id;   /* object id: stable across renames, shared by links */
    uint32_t mode; /* st_mode: type bits (S_IFREG, S_IFDIR, S_IFLNK) and
                    * permission bits */
    uint32_t uid, gid;
    uint32_t nlink;                       /* keys naming the object; for a directory 2 plus its
                                           * subdirectories, as ext4 counts (0 once removed) */
    uint64_t size;                        /* value bytes */
    uint64_t disk_bytes;                  /* bytes the value occupies on disk, compressed,
                                           * or in memory until checkpointed */
    int64_t atime_ns, mtime_ns, ctime_ns; /* nanoseconds since the epoch */
};

/* Fields of mindb_setattr(). */
#define MINDB_SET_MODE 0x01 /* permission bits only; the type stays */
#define MINDB_SET_UID 0x02
#define MINDB_SET_GID 0x04
#define MINDB_SET_SIZE 0x08 /* truncate or extend with zeros */
#define MINDB_SET_ATIME 0x10
#define MINDB_SET_MTIME 0x20
#define MINDB_SET_CTIME 0x40     /* otherwise any change sets ctime to now */
#define MINDB_TIME_NOW INT64_MIN /* as a time: the store's clock now */

struct mindb_attr {
    uint32_t mode, uid, gid;
    uint64_t size;
    int64_t atime_ns, mtime_ns, ctime_ns;
};

/* ---- Whole values ------------------------------------------------------ */

/* Sets the value of `key`, creating it as a regular file (mode 0644, the
 * caller's uid and gid) or replacing its object: other links to the old
 * object keep the old value, as with a file saved by rename. Atomic for any
 * size. -EISDIR when `key` is a directory (the root included). */
MINDB_API int mindb_put(mindb *db, const void *key, size_t key_len, const void *value, size_t len);

/* Reads the whole value into a buffer from malloc() that the caller frees.
 * -ENOENT when missing, -EISDIR for a directory (the root included), -EIO
 * when a checksum fails, -EFBIG when the value does not fit in memory's
 * address space. */
MINDB_API int mindb_get(mindb *db, const void *key, size_t key_len, void **value, size_t *len);

/* Removes `key` (a file or symlink, or an empty directory). The object goes
 * when its last key and handle are gone. -ENOTEMPTY for a directory with
 * children, -EBUSY for the root. */
MINDB_API int mindb_delete(mindb *db, const void *key, size_t key_len);

/* ---- Namespace --------------------------------------------------------- */

/* Creates `key` as an object of `mode` (S_IFREG, S_IFDIR or S_IFLNK plus
 * permission bits) owned by uid/gid; for a symlink `target` is its value.
 * -EEXIST when the key exists (the root always does). */
MINDB_API int mindb_create(mindb *db, const void *key, size_t key_len, uint32_t mode, uint32_t uid,
                           uint32_t gid, const void *target, size_t target_len);

/* Flags of mindb_rename(), as renameat2() has them. */
#define MINDB_RENAME_NOREPLACE 0x1
#define MINDB_RENAME_EXCHANGE 0x2

/* Renames `from` to `to` with POSIX rules: replacing an existing `to` (a file
 * by a file, an empty directory by a directory), -EISDIR/-ENOTDIR/-ENOTEMPTY
 * otherwise, -EINVAL when a directory would move into its own subtree,
 * -EBUSY when `from` or `to` is the root. A directory takes every key under
 * "from/" along, in one atomic step. */
MINDB_API int mindb_rename(mindb *db, const void *from, size_t from_len, const void *to,
                           size_t to_len, unsigned flags);

/* Makes `new_key` a second name of the object of `key` (not a directory:
 * -EPERM). -EEXIST when `new_key` exists (the root always does). */
MINDB_API int mindb_link(mindb *db, const void *key, size_t key_len, const void *new_key,
                         size_t new_len);

/* Both take the root (the empty key) too. */
MINDB_API int mindb_stat(mindb *db, const void *key, size_t key_len, struct mindb_stat *st);
MINDB_API int mindb_setattr(mindb *db, const void *key, size_t key_len,
                            const struct mindb_attr *attr, unsigned fields);

/* ---- Extended attributes ----------------------------------------------- */

/* Flags of mindb_setxattr(), as setxattr() has them. */
#define MINDB_XATTR_CREATE 0x1  /* -EEXIST when it exists */
#define MINDB_XATTR_REPLACE 0x2 /* -ENODATA when it does not */

MINDB_API int mindb_setxattr(mindb *db, const void *key, size_t key_len, const char *name,
                             const void *value, size_t len, unsigned flags);
/* Copies the value into buf (at most `size` bytes) and returns its length;
 * with size 0 returns the length only. -ERANGE when it does not fit,
 * -ENODATA when missing. */
MINDB_API ssize_t mindb_getxattr(mindb *db, const void *key, size_t key_len, const char *name,
                                 void *buf, size_t size);
/* Writes the names, each ending with a NUL, as listxattr() does. */
MINDB_API ssize_t mindb_listxattr(mindb *db, const void *key, size_t key_len, char *buf,
                                  size_t size);
MINDB_API int mindb_removexattr(mindb *db, const void *key, size_t key_len, const char *name);

/* ---- File-style access, through a handle on an object ------------------ */

/* Opens the object of `key`; the handle keeps the object alive after its key
 * is deleted or renamed away. MINDB_OPEN_CREATE makes a regular file of
 * `mode` when missing (-EEXIST with MINDB_OPEN_EXCL when present);
 * MINDB_OPEN_TRUNC empties it. The root opens with flags 0 (-EISDIR with
 * CREATE or TRUNC, -EEXIST with CREATE and EXCL). */
#define MINDB_OPEN_CREATE 0x1
#define MINDB_OPEN_EXCL 0x2
#define MINDB_OPEN_TRUNC 0x4
MINDB_API int mindb_file_open(mindb *db, const void *key, size_t key_len, unsigned flags,
                              uint32_t mode, mindb_file **out);
/* Opens an object by id (what mindb_stat() returned) while it has a key or
 * another handle; -ENOENT otherwise. */
MINDB_API int mindb_file_open_id(mindb *db, uint64_t id, mindb_file **out);
MINDB_API void mindb_file_close(mindb_file *file);

/* Reads up to `len` bytes at `off`; returns the bytes read (0 at or after
 * the end). Holes read as zeros. */
MINDB_API ssize_t mindb_pread(mindb_file *file, void *buf, size_t len, uint64_t off);
/* Writes `len` bytes at `off`, extending the value (with a hole) as needed;
 * returns `len`. -EFBIG beyond MINDB_MAX_SIZE. */
MINDB_API ssize_t mindb_pwrite(mindb_file *file, const void *buf, size_t len, uint64_t off);
/* Writes at the current end of the value, atomically with finding it. */
MINDB_API ssize_t mindb_append(mindb_file *file, const void *buf, size_t len);
MINDB_API int mindb_truncate(mindb_file *file, uint64_t size);
MINDB_API int mindb_fstat(mindb_file *file, struct mindb_stat *st);
MINDB_API int mindb_fsetattr(mindb_file *file, const struct mindb_attr *attr, unsigned fields);
/* The extended attributes of the handle's object, as mindb_setxattr() and
 * the others have them (same flags, results and errors), also once its last
 * key is gone. */
MINDB_API int mindb_file_setxattr(mindb_file *file, const char *name, const void *value, size_t len,
                                  unsigned flags);
MINDB_API ssize_t mindb_file_getxattr(mindb_file *file, const char *name, void *buf, size_t size);
MINDB_API ssize_t mindb_file_listxattr(mindb_file *file, char *buf, size_t size);
MINDB_API int mindb_file_removexattr(mindb_file *file, const char *name);
/* Makes `new_key` another name of the handle's object, as linkat() with
 * AT_EMPTY_PATH does: -EEXIST when `new_key` exists (the root always does),
 * -EPERM for a directory, -ENOENT when the object has no key left (an
 * unlinked file is not brought back). */
MINDB_API int mindb_file_link(mindb_file *file, const void *new_key, size_t new_len);
/* Makes every change made so far durable (the whole log up to now: changes
 * to other keys ride along in the same commit). */
MINDB_API int mindb_fsync(mindb_file *file);

/* ---- Iteration --------------------------------------------------------- */

/* An iterator over keys in order, starting at the first key >= start (or
 * > start with MINDB_ITER_AFTER). With MINDB_ITER_CHILDREN, `start` is a
 * directory prefix ending in '/' (or empty for the top) and the iterator
 * yields its direct children only: a key deeper down is reported once as
 * its child component ("a/b/" yields "a/b/x" and, for "a/b/sub/y", the key
 * "a/b/sub" when it exists or else "a/b/sub/"), skipping the deeper keys
 * without visiting them. `resume` (may be NULL) continues a CHILDREN listing
 * after that key, for readdir offsets. The root (the empty key) is never
 * returned: the children of "" are the top-level keys. */
#define MINDB_ITER_AFTER 0x1
#define MINDB_ITER_CHILDREN 0x2
MINDB_API int mindb_iter_open(mindb *db, const void *start, size_t start_len, const void *resume,
                              size_t resume_len, unsigned flags, mindb_iter **out);
/* Returns 1 with the next key (valid until the next call) and, when `st` is
 * not NULL, its metadata (a prefix without a key of its own reports
 * S_IFDIR, id 0). Returns 0 at the end, or a negative errno. The iterator
 * sees changes made while it runs in key order after its position. */
MINDB_API int mindb_iter_next(mindb_iter *it, const void **key, size_t *key_len,
                              struct mindb_stat *st);
/* Reads the value of the key the iterator returned last, as mindb_pread()
 * does (-ENOENT when it has gone since, -EISDIR for a directory). Saves a
 * lookup per key in a scan. */
MINDB_API ssize_t mindb_iter_read(mindb_iter *it, void *buf, size_t len, uint64_t off);
MINDB_API void mindb_iter_close(mindb_iter *it);

/* ---- Durability and maintenance ---------------------------------------- */

/* Everything changed before the call is durable when it returns 0. */
MINDB_API int mindb_sync(mindb *db);
/* Every change to the object of `key` made before the call is durable when
 * it returns 0 (the log is one stream: earlier changes to other keys become
 * durable with it). */
MINDB_API int mindb_sync_key(mindb *db, const void *key, size_t key_len);

/* Moves committed data from the log into data segments and writes a new
 * manifest; the log before it is released. */
MINDB_API int mindb_checkpoint(mindb *db);

/* Rewrites data segments whose live fraction is below `live_percent` (100:
 * every segment with any dead byte), then checkpoints so the old ones can
 * go. `progress` (may be NULL) is called with bytes done and total. */
MINDB_API int mindb_compact(mindb *db, unsigned live_percent,
                            void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx);

struct mindb_stats {
    uint64_t keys;          /* keys, directories included, the root not */
    uint64_t objects;       /* objects, unlinked-but-open ones included, the
                             * root not */
    uint64_t logical_bytes; /* sum of value sizes */
    uint64_t stored_bytes;  /* live chunk bytes on disk, compressed */
    uint64_t dirty_bytes;   /* bytes written and not yet checkpointed */
    uint64_t segment_bytes; /* data segment files, dead bytes included */
    uint64_t wal_bytes;     /* log bytes since the last checkpoint */
    uint64_t checkpoints;   /* checkpoints by this handle */
    uint64_t compactions;   /* segments compacted by this handle */
    uint64_t cache_hits, cache_misses;
    uint64_t fdatasyncs;      /* fdatasync/fsync calls, log and data */
    uint64_t commits;         /* syncs asked for */
    double compression_ratio; /* logical bytes checkpointed / stored bytes */
};
MINDB_API int mindb_stats(mindb *db, struct mindb_stats *stats);

/* Reads every chunk of every object and checks its checksum, as well as the
 * index. `damaged` (may be NULL) is called for each damaged key with the
 * error; `progress` as for mindb_compact(). Returns 0 when all is sound, the
 * number of damaged keys otherwise, or a negative errno. */
MINDB_API int mindb_check(mindb *db,
                          void (*damaged)(void *ctx, const void *key, size_t key_len, int err),
                          void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx);

/* Describes the log records written since the last checkpoint, one line
 * each, in the order they are replayed: `line` gets the record's log
 * position and text such as "put key=\"a/b\" id=7 bytes=100". Returns the
 * number of records, or a negative errno. */
MINDB_API int mindb_describe_log(mindb *db, void (*line)(void *ctx, uint64_t pos, const char *text),
                                 void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* MINDB_H */
