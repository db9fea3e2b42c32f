/*
 * powercut.h - a struct wal_io that simulates a power cut, for the tests of
 * the store and the log after a sudden loss of power (test_store_powercut).
 *
 * Every call goes on to wal_posix_io, while the table records what a power
 * cut could still take away:
 *   - data: before each pwrite, the 4 KiB blocks it overwrites as they were
 *     at the file's last completed fdatasync or fsync (through any
 *     descriptor: the kernel syncs the inode), and every size the file had
 *     since then;
 *   - names: a file made by openat(O_CREAT), a renameat and an unlinkat
 *     are durable only once an fsync of their directory completes, which is
 *     all POSIX promises (ext4 often gives more). Until then, the file that
 *     a rename replaced or an unlink removed is kept under a hidden hard
 *     link in the attic, a directory of the test's on the same filesystem
 *     (never inside the directory under test, whose listings would see it),
 *     so that the operation can be undone.
 * Call number `cut_at` of the run (every call counts, as in faultio.h) and
 * every later one fail with -EIO and change nothing: the machine is gone.
 * A close still releases the descriptor, so that the code under test can
 * free its handle. Then powercut_apply() rewrites the directories to a state
 * the disk may hold when the power comes back:
 *   - each 4 KiB block with unsynced writes keeps its new bytes, goes back
 *     to its old ones, or is torn: its first 1 to 7 512-byte sectors new,
 *     the rest old. Either each block chooses on its own, or (every other
 *     cut seed) the blocks reached the disk in the order they were first
 *     written, up to one torn block: the torn tail of a log;
 *   - a file whose size changed since its last sync takes one of the sizes
 *     it had since (an extension lost, a truncation undone);
 *   - the latest unsynced namespace operations, a random number of them,
 *     are undone, newest first: a journal like ext4's commits metadata in
 *     order, so what a cut loses is a suffix.
 * The state depends only on what the run did and on the cut seed.
 *
 * O_DIRECT writes follow the same model: they reached the device, whose
 * volatile cache may still lose them until a flush. Files whose changes do
 * not go through the table (the store's LOCK and FORMAT files, directories
 * made with mkdir: see mindb_io.h) are whatever the run left in them, so a
 * test starts its run from a store made and closed beforehand, all of
 * which is durable.
 *
 * Syncs are passed on to the kernel only with `pass_syncs`: the model, not
 * the device, decides what survives, and a run without device flushes is
 * much faster. Calls may come from several threads, but cut points repeat
 * from one run to the next only when one thread makes them all.
 */
#ifndef MINDB_POWERCUT_H
#define MINDB_POWERCUT_H

#include "faultio.h" /* enum fault_op, fault_op_name() */
#include "wal.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct pc_file;
struct pc_dir;
struct pc_op;

struct powercut {
    struct wal_io io; /* what the code under test gets; io.ctx points here */
    long cut_at;      /* the call that cuts the power; 0: never */
    int pass_syncs;   /* also fdatasync/fsync for real (default 0) */
    int trace;        /* print every call to stderr (for debugging one point) */
    /* What happened. */
    long calls;
    int cut;    /* call cut_at came */
    int cut_op; /* its operation (enum fault_op), else -1 */
    long pwrites, syncs, dir_syncs;
    /* The bookkeeping of powercut.c. */
    pthread_mutex_t mu;
    int spent; /* powercut_apply() ran: every call fails */
    int attic_fd;
    unsigned attic_seq;
    uint64_t write_seq; /* orders the first writes of blocks since their sync */
    struct pc_file **files;
    size_t n_files, cap_files;
    struct pc_dir **dirs;
    size_t n_dirs, cap_dirs;
    struct pc_op *ops; /* unsynced namespace operations, oldest first */
    size_t n_ops, cap_ops;
};

/* What powercut_apply() did. */
struct powercut_result {
    int ordered; /* blocks reached the disk in the order they were written */
    long blocks_kept, blocks_restored, blocks_torn;
    long files_resized; /* files left at another size than the run's last */
    size_t ops_pending; /* namespace operations not made durable */
    size_t ops_undone;
};

/* `attic` must be an empty directory on the filesystem of the directories
 * the code under test changes. */
void powercut_init(struct powercut *pc, const char *attic);
/* Rewrites the files and directories the run changed into a state the disk
 * may hold after a cut now (or at the cut, once it came). Ends the
 * simulation: the table may not be used afterwards. */
void powercut_apply(struct powercut *pc, uint64_t cut_seed, struct powercut_result *result);
/* Frees everything; without powercut_apply(), leaves every file as it is. */
void powercut_destroy(struct powercut *pc);

/* "cut at call N (pwrite)" or "no cut (N calls)", for messages. */
void powercut_describe_cut(const struct powercut *pc, char *buf, size_t len);
/* One line saying what powercut_apply() did. */
void powercut_describe_result(const struct powercut_result *r, char *buf, size_t len);

#endif /* MINDB_POWERCUT_H */
