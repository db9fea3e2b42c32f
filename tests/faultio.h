/*
 * faultio.h - a struct wal_io that injects failures, for the tests of the
 * log (wal_options.io) and of the store (mindb_open_io).
 *
 * Two kinds of faults:
 *   - the failure loop: every call of the table is counted, and call
 *     number `fail_at` fails (FAIL_ONCE), or it and every later one
 *     (FAIL_FROM), or it fails after a write tore (FAIL_TORN_CRASH). An
 *     injected failure is -ENOSPC for pwrite and -EIO for everything else.
 *     fault_arm() restarts the count, so a test can count from the start
 *     of the one operation it looks at;
 *   - targeted faults: knobs that make one kind of call fail while set,
 *     counted in `targeted`.
 * With lose_unsynced, a failed fdatasync or fsync also loses the writes it
 * should have made durable (zeroes them), as Linux may after a writeback
 * error.
 * Every call goes on to wal_posix_io unless it fails. Open descriptors are
 * counted (`open_fds`), so a test can check that nothing leaked.
 *
 * The fields may be read and set directly between calls of the code under
 * test; fault_arm() and fault_disarm() also while other threads run.
 */
#ifndef MINDB_FAULTIO_H
#define MINDB_FAULTIO_H

#include "wal.h"

#include <pthread.h>

#define FAULT_MAX_FDS 256

enum fail_mode {
    FAIL_ONCE,       /* only call N fails */
    FAIL_FROM,       /* call N and every call after it fail */
    FAIL_TORN_CRASH, /* call N fails (a write writes half first), then all */
};

/* The calls, in the order of struct wal_io: indexes of by_op. */
enum fault_op {
    OP_OPENAT,
    OP_CLOSE,
    OP_PREAD,
    OP_PWRITE,
    OP_FDATASYNC,
    OP_FSYNC,
    OP_RENAMEAT,
    OP_UNLINKAT,
    OP_CLEAR_DIRECT,
    OP_COUNT
};

struct fault_range {
    int fd;
    off_t off;
    size_t len;
};

struct fault {
    struct wal_io io; /* what the code under test gets; io.ctx points back here */
    pthread_mutex_t mu;
    /* The failure loop. */
    long calls;
    long by_op[OP_COUNT]; /* calls per operation */
    long fail_at;         /* 0: never */
    enum fail_mode mode;
    long injected;
    int failed_op; /* the operation of call `fail_at` once it came, else -1 */
    /* Targeted faults (0: off). */
    int error[OP_COUNT];       /* every call of the operation returns it */
    int refuse_direct_open;    /* openat with O_DIRECT returns -EINVAL */
    int refuse_direct_pwrite;  /* this many pwrites on O_DIRECT fds return -EINVAL */
    int pwrite_error;          /* every pwrite returns it */
    int new_file_pwrite_error; /* pwrites to files created while set return it */
    int fdatasync_error;       /* every fdatasync returns it */
    long fdatasync_countdown;  /* the fdatasync this many calls from now fails */
    /* With lose_unsynced, an fdatasync or fsync that fails (by the loop or
     * targeted) also zeroes what was written through that descriptor since
     * its last successful one: Linux may mark pages whose writeback failed
     * clean, so they are gone once evicted, and a later sync succeeds. */
    int lose_unsynced;
    long lost_bytes;
    struct fault_range *unsynced; /* written, not yet synced */
    size_t n_unsynced, cap_unsynced;
    int trace; /* print every call to stderr (for debugging a failing N) */
    /* What happened. */
    long direct_opens, direct_pwrites_refused, targeted;
    long opens_for_writing; /* openat with O_CREAT, O_RDWR or O_WRONLY */
    int open_fds;
    int new_fds[FAULT_MAX_FDS];
    int new_count;
};

void fault_init(struct fault *f);
void fault_destroy(struct fault *f);
/* Call `n` from now fails in `mode`: the call counters start again at 0. */
void fault_arm(struct fault *f, long n, enum fail_mode mode);
/* No more failures from the loop (the counters stay). */
void fault_disarm(struct fault *f);

const char *fault_mode_name(enum fail_mode mode);
const char *fault_op_name(enum fault_op op);
/* The calls counted since the last fault_arm, per operation, as text. */
void fault_describe_calls(const struct fault *f, char *buf, size_t len);

#endif /* MINDB_FAULTIO_H */
