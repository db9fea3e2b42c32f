/*
 * storehist.h - a history of changes to a store, the workload that makes
 * them, and checks that a store shows a prefix of the history: what the
 * tests of the store under failing file operations (test_store_faults)
 * compare a store with.
 *
 * The changes are puts and deletes of HIST_NKEYS keys "f/k000", "f/k001",
 * ...; every value is an su_value whose tags are the hash of its key and
 * its version, so a value never written to a key cannot pass for one. The
 * rule the checks apply: a store shows the state after some prefix of the
 * history that holds every change a mindb_sync (or a checkpoint, or a
 * close) returning 0 covered.
 */
#ifndef MINDB_STOREHIST_H
#define MINDB_STOREHIST_H

#include "storeutil.h"

#include <stddef.h>
#include <stdint.h>

#define HIST_NKEYS 48

struct change {
    unsigned key;
    uint64_t ver; /* 0: a delete */
    size_t len;
};

struct history {
    struct change *c;
    size_t n, cap;
    size_t synced; /* changes [0, synced) were made durable */
    /* The state after all n changes. */
    uint64_t ver[HIST_NKEYS];
    size_t len[HIST_NKEYS];
};

void hist_init(struct history *h);
void hist_free(struct history *h);
/* `dst` becomes the first `n` changes of `src`. */
void hist_copy_prefix(struct history *dst, const struct history *src, size_t n);
/* mindb_sync; on success every change so far is durable. */
int hist_sync(mindb *db, struct history *h);

/* A deterministic source of changes: versions from `first_ver` up, values
 * of at most `max_len` bytes, and deletes of existing keys in
 * `delete_percent` of the changes. */
struct workload {
    uint64_t rng;
    uint64_t next_ver;
    uint8_t *buf;
    size_t max_len;
    unsigned delete_percent;
};

void wl_init(struct workload *w, uint64_t seed, uint64_t first_ver, size_t max_len,
             unsigned delete_percent);
void wl_free(struct workload *w);
/* `count` changes made in `db` and recorded in `h`; with db == NULL only
 * recorded, as the same call with a store would have. Returns 0 or the
 * error of the first change that failed (not recorded; *done, when not
 * NULL, gets the number made). */
int wl_run(struct workload *w, mindb *db, struct history *h, int count, int *done);
/* One put of exactly `len` (>= SU_VALUE_MIN) bytes to a key the workload
 * picks, made and recorded as wl_run() does: for sizes its draws do not aim
 * at, such as a record just too large for one frame of the log. */
int wl_put(struct workload *w, mindb *db, struct history *h, size_t len);
/* A new version of exactly `len` (< 1 MiB) bytes to a key the workload
 * picks, written with one mindb_pwrite() at 0 over the key's value when it
 * has one no longer than `len` (one change: whole chunks go to data
 * segments before the record that binds them), else a put. */
int wl_write(struct workload *w, mindb *db, struct history *h, size_t len);

/* The checks; each fails the sub-test with `what` in its message. */
/* The open handle shows every change of the history. */
void hist_expect_handle(const char *what, mindb *db, const struct history *h);
/* Opens `dir` again with `opts` (but not `create`), without injection:
 * it must open, pass mindb_check, and show a prefix of the history holding
 * every synced change. Returns the length of that prefix. */
size_t hist_verify_reopen(const char *what, const char *dir, const struct mindb_options *opts,
                          const struct history *h);
/* A handle just opened on a store made from `base` must show a prefix of
 * `base` holding its synced changes; `h` becomes that prefix. */
void hist_adopt_open_state(const char *what, mindb *db, const struct history *base,
                           struct history *h);

#endif /* MINDB_STOREHIST_H */
