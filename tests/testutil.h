/*
 * testutil.h - what the C tests of mindb share: CHECK macros, a sub-test
 * runner, temporary directories, file surgery and a model of the records a
 * test appended to a log.
 *
 * Each sub-test runs in a child process (fork), so a failed CHECK, a crash or
 * a leak ends that sub-test only; the runner prints one line per sub-test and
 * a final "N passed, N failed" line. A failed CHECK prints file:line, the
 * expression and the values involved, then ends the child with status 1.
 *
 * Environment:
 *   MINDB_TEST_TMPDIR  base directory of the temporary directories (default:
 *                      the current working directory)
 *   MINDB_WAL_DIRECT   0 forces wal_options.direct_io = 0 (tu_options)
 *   MINDB_TEST_KEEP    1 keeps the temporary directory of a failed sub-test
 *   MINDB_TEST_NOFORK  1 runs sub-tests in the test process (for debuggers)
 *   MINDB_TEST_SEED    seed of the randomised sub-tests (default: fixed)
 *   MINDB_TEST_TIMEOUT seconds a sub-test may take before it is killed (600)
 *
 * Sub-test names given as arguments run only those sub-tests.
 */
#ifndef MINDB_TESTUTIL_H
#define MINDB_TESTUTIL_H

#include "wal.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TU_PATH_MAX 4096

/* ---- checks ---- */

__attribute__((noreturn)) void tu_fail(const char *file, int line, const char *expr);
__attribute__((noreturn, format(printf, 4, 5))) void
tu_failf(const char *file, int line, const char *expr, const char *fmt, ...);

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr))                                                                               \
            tu_fail(__FILE__, __LINE__, #expr);                                                    \
    } while (0)

/* CHECK with a printf-style explanation of the values involved. */
#define CHECKF(expr, ...)                                                                          \
    do {                                                                                           \
        if (!(expr))                                                                               \
            tu_failf(__FILE__, __LINE__, #expr, __VA_ARGS__);                                      \
    } while (0)

/* A call that must return 0 (negative errno otherwise). */
#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        long long tu_rc_ = (long long)(call);                                                      \
        if (tu_rc_ != 0)                                                                           \
            tu_failf(__FILE__, __LINE__, #call " == 0", "returned %lld (%s)", tu_rc_,              \
                     tu_strerror(tu_rc_));                                                         \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long tu_a_ = (long long)(a), tu_b_ = (long long)(b);                                  \
        if (tu_a_ != tu_b_)                                                                        \
            tu_failf(__FILE__, __LINE__, #a " == " #b, "%lld != %lld", tu_a_, tu_b_);              \
    } while (0)

#define CHECK_EQ_U(a, b)                                                                           \
    do {                                                                                           \
        unsigned long long tu_a_ = (unsigned long long)(a), tu_b_ = (unsigned long long)(b);       \
        if (tu_a_ != tu_b_)                                                                        \
            tu_failf(__FILE__, __LINE__, #a " == " #b, "%llu != %llu", tu_a_, tu_b_);              \
    } while (0)

#define CHECK_LE_U(a, b)                                                                           \
    do {                                                                                           \
        unsigned long long tu_a_ = (unsigned long long)(a), tu_b_ = (unsigned long long)(b);       \
        if (!(tu_a_ <= tu_b_))                                                                     \
            tu_failf(__FILE__, __LINE__, #a " <= " #b, "%llu > %llu", tu_a_, tu_b_);               \
    } while (0)

/* strerror of a negative errno (or of a positive one). */
const char *tu_strerror(long long rc);

/* ---- the runner ---- */

typedef void (*tu_test_fn)(void);

/* Parses argv: test names given on the command line select sub-tests. */
void tu_init(int argc, char **argv);
/* Runs one sub-test in a child process with its own temporary directory. */
void tu_run(const char *name, tu_test_fn fn);
/* Prints "N passed, N failed"; returns the exit status of the program. */
int tu_finish(void);
/* Ends the running sub-test as skipped, printing why. */
__attribute__((noreturn, format(printf, 1, 2))) void tu_skip(const char *fmt, ...);
/* Prints a note under the running sub-test (to stdout). */
__attribute__((format(printf, 1, 2))) void tu_note(const char *fmt, ...);

/* The running sub-test's temporary directory, and paths inside it. */
const char *tu_dir(void);
__attribute__((format(printf, 2, 3))) void tu_path(char out[TU_PATH_MAX], const char *fmt, ...);

/* The seed of randomised sub-tests: MINDB_TEST_SEED, or `fallback`. */
uint64_t tu_seed(uint64_t fallback);

/* ---- temporary directories and files ---- */

/* A new directory under MINDB_TEST_TMPDIR (or the working directory), named
 * after `tag`; the path goes to `out`. Returns 0 or -errno. */
int tu_mkdtemp(char out[TU_PATH_MAX], const char *tag);
/* Removes a file or a directory tree (without crossing mount points).
 * Returns 0 (also when nothing was there) or -errno. */
int tu_rm_rf(const char *path);
/* Copies the regular files of directory `src` into a new directory `dst`. */
void tu_copy_dir(const char *src, const char *dst);

/* The regular files of a directory, held in memory, to recreate it quickly
 * many times. */
struct tu_dir_image {
    size_t count;
    char **names;
    uint8_t **data;
    size_t *sizes;
};
void tu_dir_image_load(struct tu_dir_image *image, const char *dir);
/* Removes `dst`, then recreates it with the image's files. */
void tu_dir_image_restore(const struct tu_dir_image *image, const char *dst);
/* Makes `dst` hold exactly the image's files, rewriting only the files that
 * differ, in place (cheaper than tu_dir_image_restore when called often). */
void tu_dir_image_reset(const struct tu_dir_image *image, const char *dst);
void tu_dir_image_free(struct tu_dir_image *image);

int tu_exists(const char *path);
uint64_t tu_file_size(const char *path);
void tu_truncate(const char *path, uint64_t len);
/* Reads or writes exactly `len` bytes at `off` (CHECKs on failure). */
void tu_pread_file(const char *path, void *buf, size_t len, uint64_t off);
void tu_pwrite_file(const char *path, const void *buf, size_t len, uint64_t off);
/* Overwrites [from, to) with zeros. */
void tu_zero_range(const char *path, uint64_t from, uint64_t to);
void tu_flip_bit(const char *path, uint64_t off, unsigned bit);
/* Number of directory entries whose name starts with `prefix` and ends with
 * `suffix`. */
size_t tu_count_files(const char *dir, const char *prefix, const char *suffix);
/* Path of segment `segno` of the log in `dir`. */
void tu_segment_path(char out[TU_PATH_MAX], const char *dir, uint64_t segno);

/* ---- randomness ---- */

uint64_t tu_rand(uint64_t *state);
/* Uniform in [lo, hi]. */
uint64_t tu_rand_range(uint64_t *state, uint64_t lo, uint64_t hi);

/* ---- records ---- */

/* The bytes of record `id` of length `len`: its id (little-endian, as much
 * of it as fits) then pseudo-random bytes, none of them zero, so that
 * cutting or zeroing any part of a record changes it. */
void tu_payload(void *buf, size_t len, uint64_t id);
/* Returns 1 when `data` are the bytes of record `id` of length `len`. */
int tu_payload_matches(const void *data, size_t len, uint64_t id, size_t want_len);
/* The id in the first 8 bytes of a record (len >= 8). */
uint64_t tu_payload_id(const void *data, size_t len);

/* What a test appended, in order. */
struct tu_rec {
    uint64_t id;
    size_t len;
    uint64_t hash; /* XXH3-64 of the bytes: quicker to compare than them */
    struct wal_ticket t;
};

struct tu_model {
    struct tu_rec *r;
    size_t n, cap;
    uint8_t *buf; /* scratch for payloads */
    size_t buf_cap;
};

void tu_model_init(struct tu_model *m);
void tu_model_free(struct tu_model *m);
void tu_model_push(struct tu_model *m, const struct tu_rec *rec);
/* Copies the first `n` records of `src` into `dst` (which it resets). */
void tu_model_copy_prefix(struct tu_model *dst, const struct tu_model *src, size_t n);
/* Appends record (id, len) to the log; on success adds it to the model.
 * Returns what wal_append() returned. */
int tu_append(wal *log, struct tu_model *m, uint64_t id, size_t len);
/* Number of records of the model that end at or before `pos`, and that start
 * at or before `pos`. */
size_t tu_model_count_ending_by(const struct tu_model *m, uint64_t pos);
size_t tu_model_count_starting_by(const struct tu_model *m, uint64_t pos);

/* Reads the log from `from` and CHECKs that it holds exactly records
 * first, first+1, ... of the model (contents and positions), at least `min`
 * and at most `max` of them, then nothing else. Returns how many it read;
 * `stop` (may be NULL) receives where the reader stopped. */
size_t tu_read_check_at(const char *file, int line, wal *log, uint64_t from,
                        const struct tu_model *m, size_t first, size_t min, size_t max,
                        struct wal_stop *stop);
#define READ_CHECK(log, from, m, first, min, max, stop)                                            \
    tu_read_check_at(__FILE__, __LINE__, log, from, m, first, min, max, stop)

/* ---- logs ---- */

/* wal_options_init(), then ring and segment size (0 keeps the default),
 * create = 1, and MINDB_WAL_DIRECT applied. */
void tu_options(struct wal_options *o, size_t ring_bytes, uint64_t segment_bytes);
/* wal_open() that must succeed. */
wal *tu_open_at(const char *file, int line, const char *dir, const struct wal_options *o);
#define TU_OPEN(dir, o) tu_open_at(__FILE__, __LINE__, dir, o)
/* Opens the log in `dir`, CHECKs that it holds exactly the model's records
 * from its first position on, and closes it. */
void tu_reopen_check_at(const char *file, int line, const char *dir, const struct wal_options *o,
                        const struct tu_model *m);
#define REOPEN_CHECK(dir, o, m) tu_reopen_check_at(__FILE__, __LINE__, dir, o, m)

#endif /* MINDB_TESTUTIL_H */
