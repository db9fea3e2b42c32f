/*
 * kv_bench.h - what the files of kv_bench share.
 *
 * kv_bench runs the same key-value workloads on mindb and on the peer stores
 * that were found at build time (RocksDB, LevelDB, LMDB, SQLite), so that one
 * run prints mindb beside them. Each store is reached through a struct
 * kv_backend, one file per store (kv_mindb.c, kv_rocksdb.c, kv_leveldb.c,
 * kv_lmdb.c, kv_sqlite.c, and kv_rawdisk.c, the floor for durable puts);
 * kv_registry.c lists the ones compiled in. kv_bench_options.c reads the
 * command line, kv_bench_data.c makes keys and values, kv_bench.c decides
 * what runs on which engine and where, kv_workloads.c runs a workload on an
 * open store, and kv_bench_results.c reports. Private to kv_bench, not a
 * library header.
 */
#ifndef MINDB_TOOLS_KV_BENCH_H
#define MINDB_TOOLS_KV_BENCH_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef MINDB_VERSION
#define MINDB_VERSION "unknown"
#endif

#define PROGRAM "kv_bench"

/* ---- Backends ---------------------------------------------------------- */

struct kv_db;      /* a backend's open store */
struct kv_session; /* one thread's use of an open store */

struct kv_open_options {
    /* Each put is durable before it returns (the fillsync workloads);
     * otherwise puts are durable at the next sync. */
    bool sync_puts;
    /* Threads that will open a session, each with its own index. */
    unsigned sessions;
    /* About how many bytes of keys and values the run writes: LMDB sizes its
     * map from it. */
    uint64_t data_bytes;
    /* rawdisk only: puts per session (sizes its files) and the directory
     * that keeps its preallocated files from round to round. */
    uint64_t max_puts;
    const char *persist_dir;
};

/* Called by scan for each entry; the pointers are valid during the call.
 * It returns 0, or a negative errno that stops the scan and is returned by
 * it. */
typedef int (*kv_scan_fn)(void *ctx, const void *key, size_t key_len, const void *value,
                          size_t value_len);

/* Every function returns 0 or a negative errno; get returns -ENOENT for a
 * missing key. A backend says what failed on stderr itself (with its
 * library's own message, which the errno would lose) before it returns a
 * failure; -ENOENT from get is not a failure. */
struct kv_backend {
    const char *name;
    /* What a put does for durability, and what sync does: one line each,
     * for --help and the JSON file. */
    const char *put_durability;
    const char *sync_durability;
    /* Opens or creates the store in `dir`, an existing directory. */
    int (*open)(const char *dir, const struct kv_open_options *options, struct kv_db **out);
    /* Closes and frees; the store stays on disk. */
    int (*close)(struct kv_db *db);
    /* A session belongs to one thread; `index` is below options->sessions. */
    int (*session_open)(struct kv_db *db, unsigned index, struct kv_session **out);
    void (*session_close)(struct kv_session *s);
    int (*put)(struct kv_session *s, const void *key, size_t key_len, const void *value,
               size_t value_len);
    /* Makes every put made so far durable: how a fill ends. */
    int (*sync)(struct kv_session *s);
    /* Finds `key`; the value stays valid until the next call on `s`. NULL
     * for a backend that cannot read (rawdisk). */
    int (*get)(struct kv_session *s, const void *key, size_t key_len, const void **value,
               size_t *value_len);
    /* Calls `fn` for up to `count` entries in key order from the first key
     * at or after `start`, with their values. NULL when get is. */
    int (*scan)(struct kv_session *s, const void *start, size_t start_len, uint64_t count,
                kv_scan_fn fn, void *ctx);
    /* The bytes the store occupies in `dir` once closed. */
    int (*bytes_on_disk)(const char *dir, uint64_t *apparent, uint64_t *allocated);
};

/* The backends compiled in, ending with NULL (kv_registry.c). */
extern const struct kv_backend *const kv_backends[];
extern const struct kv_backend kv_mindb_backend, kv_rocksdb_backend, kv_leveldb_backend,
    kv_lmdb_backend, kv_sqlite_backend, kv_rawdisk_backend;

/* Says on stderr that `call` of `engine` failed with `message`. */
void kv_report(const char *engine, const char *call, const char *message);
/* The same for a negative errno; returns it. */
int kv_report_errno(const char *engine, const char *call, int err);

/* What every backend uses for bytes_on_disk: the sizes of the regular files
 * under `dir`, walked recursively, as st_size (apparent, what `du -b`
 * shows) and as st_blocks * 512 (allocated, what `du` shows). */
int kv_dir_usage(const char *dir, uint64_t *apparent, uint64_t *allocated);

/* ---- Workloads ---------------------------------------------------------- */

/* What is measured, in the order of the table. The workload "bigvalues"
 * measures two things: writing the values and reading them back. */
enum kv_measure {
    M_FILLSEQ,
    M_FILLRANDOM,
    M_OVERWRITE,
    M_READRANDOM,
    M_READMISSING,
    M_SCAN,
    M_FILLSYNC,
    M_FILLSYNC8,
    M_BIGWRITE,
    M_BIGREAD,
    M_COUNT
};
extern const char *const kv_measure_names[M_COUNT];

#define KV_MAX_ENGINES 8
#define KV_MAX_ROUNDS 99
#define KV_MAX_THREADS 256
#define KV_KEY_BYTES 16

struct kv_config {
    uint64_t keys;
    uint64_t value_size;
    unsigned rounds;
    unsigned threads; /* of fillsync8 */
    uint64_t sync_ops;
    uint64_t big_count;
    uint64_t big_size;
    uint64_t scan_length;
    uint64_t seed;
    bool measure_on[M_COUNT];
    const struct kv_backend *engines[KV_MAX_ENGINES];
    unsigned engine_count;
    const char *parent_dir;
    bool keep;
    const char *json_path; /* NULL: the default name */
    bool no_json;
    bool verbose;
};

/* Fills `cfg` from the command line, printing the help, the version or a
 * usage error as asked. Returns -1 to go on, else the exit status. */
int kv_parse_args(int argc, char **argv, struct kv_config *cfg);

/* ---- Keys and values (kv_bench_data.c) --------------------------------- */

/* splitmix64: the generator for orders, keys and values. */
uint64_t kv_random(uint64_t *state);

/* Key `index` as 16 decimal digits: keys in index order sort bytewise. */
void kv_make_key(uint64_t index, char key[KV_KEY_BYTES]);
/* A key that no index has and that sorts just after key `index`'s
 * neighbours: 15 digits then 'x'. */
void kv_make_missing_key(uint64_t index, char key[KV_KEY_BYTES]);
/* The index of a key kv_make_key() made, or UINT64_MAX for another key. */
uint64_t kv_key_index(const void *key, size_t key_len);

/* Writes the value of key `index` at `version` (0 at the first fill, 1 after
 * an overwrite): its first half random bytes, its second half an 8-byte
 * pattern repeated, so that it compresses to about half. Deterministic from
 * `seed`, so reads can check it. */
void kv_make_value(uint64_t seed, uint64_t index, unsigned version, unsigned char *out, size_t len);
/* Whether `value` is what kv_make_value() writes; `scratch` holds `len`. */
bool kv_check_value(uint64_t seed, uint64_t index, unsigned version, const void *value,
                    size_t value_len, size_t len, unsigned char *scratch);

/* Reads a byte of every 64 of `value`, as a reader of the value would touch
 * its cache lines: a store that returns a pointer into its map (LMDB) has
 * not read a value until someone does. Returns their sum, for a sink. */
uint64_t kv_touch(const void *value, size_t len);

/* Fills `order` with 0..n-1 shuffled by `seed`. */
void kv_shuffle(uint32_t *order, uint64_t n, uint64_t seed);

/* ---- Results ------------------------------------------------------------ */

/* One run of one measure on one engine in one round. */
struct kv_run {
    bool ran;
    bool failed;
    uint64_t ops;   /* puts, gets, or entries scanned */
    uint64_t bytes; /* key and value bytes put or read */
    uint64_t scans;
    double seconds;       /* timed: the operations and a fill's final sync */
    double close_seconds; /* not timed: closing the store afterwards */
};

/* The store's size on disk after a fill, once closed. */
struct kv_size {
    bool measured;
    uint64_t apparent;
    uint64_t allocated;
};

struct kv_bench {
    struct kv_config cfg;
    char scratch[PATH_MAX];
    bool scratch_made;
    const char *fs_name;
    struct kv_run *runs;      /* [measure][engine][round] */
    struct kv_size *sizes;    /* [engine][round], after fillrandom */
    struct kv_size *ow_sizes; /* [engine][round], after overwrite */
    double started;           /* wall clock, for the JSON */
    bool any_failed;
};

struct kv_run *kv_run_at(struct kv_bench *b, enum kv_measure m, unsigned engine, unsigned round);
/* Whether engine `e` takes part in measure `m` (rawdisk only in fillsync). */
bool kv_engine_measures(const struct kv_backend *e, enum kv_measure m);
/* The index of mindb among cfg->engines, or -1. */
int kv_mindb_index(const struct kv_config *cfg);

/* Prints the tables of medians, sizes and ratios on stdout. */
void kv_print_results(struct kv_bench *b);
/* Writes everything to `f` as JSON and closes it; 0 or a negative errno
 * after saying on stderr that writing `path` failed. */
int kv_write_json(struct kv_bench *b, FILE *f, const char *path);

/* ---- Running workloads (kv_workloads.c) -------------------------------- */

/* What the runs of one benchmark share beyond struct kv_bench. */
struct kv_harness {
    struct kv_bench *b;
    uint32_t *fill_order;      /* fillrandom */
    uint32_t *read_order;      /* readrandom, readmissing */
    uint32_t *overwrite_order; /* overwrite */
    uint32_t *big_order;       /* bigvalues' reads */
    unsigned char *value;      /* room for the largest value */
    unsigned char *expected;   /* the same, for checks */
    char rawdisk_dir[PATH_MAX];
};

/* An open store with the main thread's session. */
struct kv_store {
    const struct kv_backend *e;
    struct kv_db *db;
    struct kv_session *s;
};

/* Set by SIGINT and SIGTERM: the workloads stop at the next operation and
 * return -EINTR. */
extern volatile sig_atomic_t kv_interrupted;

/* CLOCK_MONOTONIC in seconds. */
double kv_now(void);

/* Opens the store in `dir` with a session for the calling thread. */
int kv_store_open(const struct kv_backend *e, const char *dir,
                  const struct kv_open_options *options, struct kv_store *st);
/* Closes `st`, timing it into *seconds (may be NULL). */
int kv_store_close(struct kv_store *st, double *seconds);

/* Puts `n` keys, key i being order[i] (or i without an order), with values
 * of `version` and `value_size` bytes, then syncs. Fills `run`. */
int kv_fill(struct kv_harness *h, struct kv_store *st, const uint32_t *order, uint64_t n,
            uint64_t value_size, unsigned version, struct kv_run *run);
/* Gets the `n` keys of `order`: present ones, whose values must be those of
 * the first fill (checked one in 16), or with `missing` absent ones, which
 * must not be found. Fills `run`. */
int kv_read_keys(struct kv_harness *h, struct kv_store *st, const uint32_t *order, uint64_t n,
                 uint64_t value_size, bool missing, struct kv_run *run);
/* Scans of scan_length entries from random present keys, keys entries in
 * all, each checked for order and count. Fills `run`. */
int kv_scan_keys(struct kv_harness *h, struct kv_store *st, struct kv_run *run);
/* sync_ops durable puts shared by `threads` threads, each with a session of
 * its own on `db` and keys of its own. Fills `run`. */
int kv_fill_sync(struct kv_harness *h, const struct kv_backend *e, struct kv_db *db,
                 unsigned threads, struct kv_run *run);

#endif /* MINDB_TOOLS_KV_BENCH_H */
