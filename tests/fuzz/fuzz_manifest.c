/*
 * fuzz_manifest.c - opening a store: the manifest and the key index built
 * from it (store/manifest.c, store/keyindex.c, store/object.c), the replay
 * of log records (store/record.c, store/apply.c), and reads, listings and
 * checks of what was loaded.
 *
 * Input:
 *   u8  flags:
 *       bits 0-1, how the manifest piece becomes the store's manifest:
 *         RAW       as it is;
 *         FIX_SUM   as it is, its trailing checksum recomputed;
 *         BODY      a 64-byte header, then the body uncompressed: the
 *                   target compresses it, puts its length in the header
 *                   and appends the checksum, so the input reaches the
 *                   loader behind the checksum and the zstd frame;
 *         BODY_LEN  the same, the header's body length kept as given;
 *       FIX_DATA    recompute the data segment's checksums
 *                   (fz_fix_data_segment), so that chunk refs reach the
 *                   decompression;
 *       WRITE_BACK  the round trip below
 *   the manifest piece (24-bit little-endian length, then the bytes)
 *   STORE/data/00000001.seg (24-bit length, then the bytes; none when 0)
 *   log records to the end, each a 16-bit length and the bytes: the target
 *   appends them to a fresh log (64 KiB segments) with the log's own
 *   writer, so every record reaches the record decoder and the replay
 *
 * Promises checked, besides no crash, leak or undefined behaviour:
 *  - a read-only open succeeds, or fails with MINDB_ECORRUPT or
 *    MINDB_EVERSION (the log, made here, is sound);
 *  - every key listed stats as listed; a read returns the bytes asked for
 *    (up to the size) or -EIO; a directory's children lie under it;
 *  - mindb_check names every key a read found damaged;
 *  - WRITE_BACK: the store opens for writing and shows the same keys,
 *    metadata, values and xattrs; after a few changes and a close (which
 *    checkpoints), it opens again and shows exactly what it showed before
 *    the close.
 *
 * Seeds: corpus/manifest/, made by fuzz_seeds (see README).
 *
 * CI runs it for 30 s (tools/fuzz); the long form, an hour:
 *   tools/fuzz --seconds 3600 manifest
 */
#include "frame.h"
#include "fuzzutil.h"
#include "mindb.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define MANIFEST_HEADER 64
#define WAL_SEGMENT ((uint64_t)64 << 10)
#define MAX_KEYS 256
#define MAX_CHILDREN 64
#define VALUE_CAP ((uint64_t)256 << 10)
#define READ_STEP ((size_t)64 << 10)
#define XATTR_BUF (MINDB_MAX_XATTR_VALUE + 1)

enum { RAW, FIX_SUM, BODY, BODY_LEN };
#define MANIFEST_MODE 0x3
#define FIX_DATA 0x4
#define WRITE_BACK 0x8

/* ---- making the store ---- */

/* The manifest file the piece stands for, as `mode` says; *len its size. */
static uint8_t *manifest_file(const uint8_t *piece, size_t plen, unsigned mode, size_t *len)
{
    if (mode == RAW || mode == FIX_SUM) {
        uint8_t *f = malloc(plen ? plen : 1);
        FZ_CHECK(f != NULL, "%zu bytes", plen);
        memcpy(f, piece, plen);
        if (mode == FIX_SUM && plen >= 8)
            fz_put64(f + plen - 8, XXH3_64bits(f, plen - 8));
        *len = plen;
        return f;
    }
    size_t body = plen > MANIFEST_HEADER ? plen - MANIFEST_HEADER : 0;
    size_t cap = MANIFEST_HEADER + ZSTD_compressBound(body) + 8;
    uint8_t *f = calloc(1, cap);
    FZ_CHECK(f != NULL, "%zu bytes", cap);
    memcpy(f, piece, plen < MANIFEST_HEADER ? plen : MANIFEST_HEADER);
    const uint8_t *src = body ? piece + MANIFEST_HEADER : piece;
    size_t z = ZSTD_compress(f + MANIFEST_HEADER, cap - MANIFEST_HEADER - 8, src, body, 1);
    FZ_CHECK(!ZSTD_isError(z), "compressing %zu bytes: %s", body, ZSTD_getErrorName(z));
    if (mode == BODY)
        fz_put64(f + 56, body);
    *len = MANIFEST_HEADER + z + 8;
    fz_put64(f + *len - 8, XXH3_64bits(f, *len - 8));
    return f;
}

/* A log of 64 KiB segments (a store's own would make 64 MiB ones) holding
 * the records: a first segment with only its header, as a log looks that
 * was made and never written, then the records through the log's writer.
 * Returns the position where the log ends. */
static uint64_t make_log(const char *store, struct fz_input *in)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/wal", store);
    FZ_CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    int dirfd = fz_open_dir(dir);
    uint8_t header[WAL_SEGMENT_HEADER_BYTES];
    struct segment_header h = {.segment_bytes = WAL_SEGMENT, .segno = 0, .salt = 0x5eed};
    segment_header_encode(header, &h);
    fz_write_file(dirfd, "0000000000000000.wal", header, sizeof header);
    int fd = openat(dirfd, "0000000000000000.wal", O_WRONLY | O_CLOEXEC);
    FZ_CHECK(fd >= 0 && ftruncate(fd, (off_t)WAL_SEGMENT) == 0, "a segment of %" PRIu64 " bytes",
             WAL_SEGMENT);
    close(fd);
    close(dirfd);

    struct wal_options o;
    wal_options_init(&o);
    o.ring_bytes = 64 << 10;
    o.direct_io = 0;
    o.spare_segments = 0;
    wal *log;
    int rc = wal_open(dir, &o, &log);
    FZ_CHECK(rc == 0, "opening the new log, got %d", rc);
    if (in->left == 0) {
        uint64_t end = wal_append_pos(log);
        FZ_CHECK(wal_close(log) == 0, "closing the new log");
        return end;
    }
    while (in->left > 0) {
        size_t len;
        const uint8_t *rec = fz_piece(in, 2, &len);
        struct wal_ticket t;
        rc = wal_append(log, rec, len, &t);
        FZ_CHECK(rc == 0, "appending a record of %zu bytes, got %d", len, rc);
    }
    rc = wal_commit(log);
    FZ_CHECK(rc == 0, "committing the new log, got %d", rc);
    uint64_t end = wal_append_pos(log);
    rc = wal_close(log);
    FZ_CHECK(rc == 0, "closing the new log, got %d", rc);
    return end;
}

/* What the store made from the input holds, as far as the checks need. */
struct made {
    uint64_t manifest_pos; /* where replay starts, as its manifest says */
    uint64_t log_end;      /* where the log ends */
};

static void make_store(const char *dir, const uint8_t *data, size_t size, struct made *made)
{
    struct fz_input in = {data, size};
    unsigned flags = fz_u8(&in);
    int fd = fz_open_dir(dir);
    static const char format[] = "mindb store format 1\n";
    fz_write_file(fd, "FORMAT", format, sizeof format - 1);

    size_t plen;
    const uint8_t *piece = fz_piece(&in, 3, &plen);
    size_t mlen;
    uint8_t *manifest = manifest_file(piece, plen, flags & MANIFEST_MODE, &mlen);
    fz_write_file(fd, "manifest.0000000000000001", manifest, mlen);
    made->manifest_pos = mlen >= 32 ? fz_get64(manifest + 24) : 0;
    free(manifest);

    FZ_CHECK(mkdirat(fd, "data", 0755) == 0, "mkdir data");
    const uint8_t *seg = fz_piece(&in, 3, &plen);
    if (plen) {
        uint8_t *copy = malloc(plen);
        FZ_CHECK(copy != NULL, "%zu bytes", plen);
        memcpy(copy, seg, plen);
        if (flags & FIX_DATA)
            fz_fix_data_segment(copy, plen);
        int dfd = openat(fd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        FZ_CHECK(dfd >= 0, "open data");
        fz_write_file(dfd, "00000001.seg", copy, plen);
        close(dfd);
        free(copy);
    }
    close(fd);
    made->log_end = make_log(dir, &in);
}

/* ---- what a store shows ---- */

struct entry {
    uint8_t *key;
    size_t len;
    struct mindb_stat st;
    int value_err;      /* 0, or the first error reading the value */
    uint64_t value_sum; /* of the first VALUE_CAP bytes */
    int whole;          /* the value was read to its end */
    uint64_t xattr_sum;
    int damaged; /* mindb_check named it */
};

struct snapshot {
    struct entry e[MAX_KEYS];
    size_t n;
};

static const char *show(const void *key, size_t len)
{
    static char out[4 * 80 + 8];
    const uint8_t *p = key;
    size_t n = 0;
    for (size_t i = 0; i < len && i < 80; i++)
        n += (size_t)snprintf(out + n, sizeof out - n,
                              p[i] >= 0x20 && p[i] < 0x7f ? "%c" : "\\x%02x", p[i]);
    if (len > 80)
        snprintf(out + n, sizeof out - n, "...");
    return out;
}

static void read_value(mindb *db, struct entry *e)
{
    mindb_file *f;
    int rc = mindb_file_open(db, e->key, e->len, 0, 0, &f);
    FZ_CHECK(rc == 0, "a listed key %s opens, got %d (%s)", show(e->key, e->len), rc,
             mindb_strerror(rc));
    static uint8_t buf[READ_STEP];
    XXH3_state_t *sum = XXH3_createState();
    XXH3_64bits_reset(sum);
    uint64_t end = e->st.size < VALUE_CAP ? e->st.size : VALUE_CAP;
    e->whole = end == e->st.size;
    for (uint64_t off = 0; off < end;) {
        size_t want = end - off < READ_STEP ? (size_t)(end - off) : READ_STEP;
        ssize_t n = mindb_pread(f, buf, want, off);
        FZ_CHECK(n == (ssize_t)want || n == -EIO,
                 "reading %zu bytes at %" PRIu64 " of %s (size %" PRIu64 ") gives them or -EIO, "
                 "got %zd",
                 want, off, show(e->key, e->len), e->st.size, n);
        if (n < 0) {
            e->value_err = (int)n;
            break;
        }
        XXH3_64bits_update(sum, buf, want);
        off += want;
    }
    e->value_sum = XXH3_64bits_digest(sum);
    XXH3_freeState(sum);
    mindb_file_close(f);
    if (!e->whole || !S_ISREG(e->st.mode))
        return;
    void *value;
    size_t len;
    rc = mindb_get(db, e->key, e->len, &value, &len);
    FZ_CHECK(rc == e->value_err &&
                 (rc != 0 || (len == e->st.size && XXH3_64bits(value, len) == e->value_sum)),
             "mindb_get of %s gives what reading it did (error %d, %" PRIu64 " bytes), got "
             "error %d, %zu bytes",
             show(e->key, e->len), e->value_err, e->st.size, rc, rc ? 0 : len);
    if (rc == 0)
        free(value);
}

static void read_xattrs(mindb *db, struct entry *e)
{
    static char names[XATTR_BUF];
    static uint8_t value[XATTR_BUF];
    ssize_t n = mindb_listxattr(db, e->key, e->len, names, sizeof names);
    FZ_CHECK(n >= 0, "listing the xattrs of %s, got %zd", show(e->key, e->len), n);
    XXH3_state_t *sum = XXH3_createState();
    XXH3_64bits_reset(sum);
    for (ssize_t at = 0; at < n; at += (ssize_t)strlen(names + at) + 1) {
        FZ_CHECK(memchr(names + at, 0, (size_t)(n - at)) != NULL,
                 "xattr names of %s end with a NUL", show(e->key, e->len));
        ssize_t len = mindb_getxattr(db, e->key, e->len, names + at, value, sizeof value);
        FZ_CHECK(len >= 0 && len <= MINDB_MAX_XATTR_VALUE, "a listed xattr %s of %s reads, got %zd",
                 names + at, show(e->key, e->len), len);
        XXH3_64bits_update(sum, names + at, strlen(names + at) + 1);
        XXH3_64bits_update(sum, value, (size_t)len);
    }
    e->xattr_sum = XXH3_64bits_digest(sum);
    XXH3_freeState(sum);
}

static void list_children(mindb *db, const struct entry *dir)
{
    uint8_t prefix[MINDB_MAX_KEY + 1];
    memcpy(prefix, dir->key, dir->len);
    prefix[dir->len] = '/';
    mindb_iter *it;
    int rc = mindb_iter_open(db, prefix, dir->len + 1, NULL, 0, MINDB_ITER_CHILDREN, &it);
    FZ_CHECK(rc == 0, "listing the children of %s, got %d", show(dir->key, dir->len), rc);
    const void *key;
    size_t len;
    struct mindb_stat st;
    for (int i = 0; i < MAX_CHILDREN && (rc = mindb_iter_next(it, &key, &len, &st)) == 1; i++)
        FZ_CHECK(len > dir->len + 1 && memcmp(key, prefix, dir->len + 1) == 0,
                 "a child of %s lies under it, got %s", show(dir->key, dir->len), show(key, len));
    FZ_CHECK(rc >= 0, "listing the children of %s, got %d", show(dir->key, dir->len), rc);
    mindb_iter_close(it);
}

static void snapshot_free(struct snapshot *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->e[i].key);
    s->n = 0;
}

static void take_snapshot(mindb *db, struct snapshot *s)
{
    s->n = 0;
    mindb_iter *it;
    int rc = mindb_iter_open(db, NULL, 0, NULL, 0, 0, &it);
    FZ_CHECK(rc == 0, "an iterator over every key, got %d", rc);
    const void *key;
    size_t len;
    struct mindb_stat st;
    while (s->n < MAX_KEYS && (rc = mindb_iter_next(it, &key, &len, &st)) == 1) {
        FZ_CHECK(s->n == 0 || memcmp(key, s->e[s->n - 1].key,
                                     len < s->e[s->n - 1].len ? len : s->e[s->n - 1].len) >= 0,
                 "keys in order, got %s after %s", show(key, len),
                 show(s->e[s->n - 1].key, s->e[s->n - 1].len));
        struct entry *e = &s->e[s->n++];
        memset(e, 0, sizeof *e);
        e->key = malloc(len ? len : 1);
        FZ_CHECK(e->key != NULL, "%zu bytes", len);
        memcpy(e->key, key, len);
        e->len = len;
        e->st = st;
        e->st.disk_bytes = 0; /* moves from memory to disk at a checkpoint */
    }
    FZ_CHECK(rc >= 0, "iterating, got %d", rc);
    mindb_iter_close(it);
    for (size_t i = 0; i < s->n; i++) {
        struct entry *e = &s->e[i];
        struct mindb_stat st2;
        rc = mindb_stat(db, e->key, e->len, &st2);
        st2.disk_bytes = 0;
        FZ_CHECK(rc == 0 && memcmp(&st2, &e->st, sizeof st2) == 0,
                 "%s stats as listed (id %" PRIu64 " mode %o size %" PRIu64 "), got %d (%s), "
                 "id %" PRIu64 " mode %o size %" PRIu64,
                 show(e->key, e->len), e->st.id, e->st.mode, e->st.size, rc, mindb_strerror(rc),
                 st2.id, st2.mode, st2.size);
        if (S_ISDIR(e->st.mode))
            list_children(db, e);
        else
            read_value(db, e);
        read_xattrs(db, e);
    }
}

static void on_damaged(void *ctx, const void *key, size_t len, int err)
{
    struct snapshot *s = ctx;
    (void)err;
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].len == len && memcmp(s->e[i].key, key, len) == 0)
            s->e[i].damaged = 1;
}

static void check_store(mindb *db, struct snapshot *s)
{
    int rc = mindb_check(db, on_damaged, NULL, s);
    FZ_CHECK(rc >= 0, "mindb_check counts damaged keys, got %d (%s)", rc, mindb_strerror(rc));
    for (size_t i = 0; i < s->n; i++)
        FZ_CHECK(s->e[i].value_err != -EIO || s->e[i].damaged,
                 "mindb_check names %s, whose value read -EIO", show(s->e[i].key, s->e[i].len));
}

static void expect_same(const struct snapshot *a, const struct snapshot *b, const char *what)
{
    for (size_t i = 0; i < a->n || i < b->n; i++) {
        FZ_CHECK(i < a->n && i < b->n, "%s: %zu keys, got %zu", what, a->n, b->n);
        const struct entry *x = &a->e[i], *y = &b->e[i];
        FZ_CHECK(x->len == y->len && memcmp(x->key, y->key, x->len) == 0,
                 "%s: key %zu is %s, got another", what, i, show(x->key, x->len));
        FZ_CHECK(memcmp(&x->st, &y->st, sizeof x->st) == 0,
                 "%s: %s has id %" PRIu64 " mode %o uid %u gid %u nlink %u size %" PRIu64
                 " times %" PRId64 " %" PRId64 " %" PRId64 ", got id %" PRIu64 " mode %o uid %u"
                 " gid %u nlink %u size %" PRIu64 " times %" PRId64 " %" PRId64 " %" PRId64,
                 what, show(x->key, x->len), x->st.id, x->st.mode, x->st.uid, x->st.gid,
                 x->st.nlink, x->st.size, x->st.atime_ns, x->st.mtime_ns, x->st.ctime_ns, y->st.id,
                 y->st.mode, y->st.uid, y->st.gid, y->st.nlink, y->st.size, y->st.atime_ns,
                 y->st.mtime_ns, y->st.ctime_ns);
        FZ_CHECK(x->value_err == y->value_err && x->value_sum == y->value_sum,
                 "%s: the value of %s reads the same (error %d), got error %d%s", what,
                 show(x->key, x->len), x->value_err, y->value_err,
                 x->value_err == y->value_err ? " and other bytes" : "");
        FZ_CHECK(x->xattr_sum == y->xattr_sum, "%s: %s keeps its xattrs", what,
                 show(x->key, x->len));
    }
}

static void on_line(void *ctx, uint64_t pos, const char *text)
{
    (void)ctx;
    FZ_CHECK(strlen(text) < 1024, "a line of the log at %" PRIu64 " in its buffer", pos);
}

/* ---- the run ---- */

/* The store's messages: each a line of text, printed only with
 * MINDB_FUZZ_VERBOSE=1 (a run makes thousands), to see why an input did
 * what it did. */
static void on_log(void *ctx, const char *message)
{
    (void)ctx;
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("MINDB_FUZZ_VERBOSE") != NULL;
    FZ_CHECK(strlen(message) < 4096 && !strchr(message, '\n'), "a log message of one line");
    if (verbose)
        fprintf(stderr, "mindb: %s\n", message);
}

static void options(struct mindb_options *o, int read_only)
{
    mindb_options_init(o);
    o->log = on_log;
    o->read_only = read_only;
    o->background = 0;
    o->cache_bytes = 1 << 20;
    o->direct_io = 0;
}

/* A few changes on whatever the store holds; their errors do not matter,
 * only that the state stays whole. */
static void change_some(mindb *db, const struct snapshot *s)
{
    static const char value[] = "written by fuzz_manifest";
    (void)mindb_put(db, "fuzz/new", 8, value, sizeof value);
    (void)mindb_setxattr(db, "", 0, "user.fuzz", value, sizeof value, 0);
    if (s->n > 0)
        (void)mindb_rename(db, s->e[0].key, s->e[0].len, "fuzz-renamed", 12, 0);
    if (s->n > 1)
        (void)mindb_delete(db, s->e[1].key, s->e[1].len);
    if (s->n > 2 && !S_ISDIR(s->e[2].st.mode)) {
        mindb_file *f;
        if (mindb_file_open(db, s->e[2].key, s->e[2].len, 0, 0, &f) == 0) {
            (void)mindb_pwrite(f, value, sizeof value, 70000);
            (void)mindb_truncate(f, 100);
            mindb_file_close(f);
        }
    }
    if (s->n > 3)
        (void)mindb_link(db, s->e[3].key, s->e[3].len, "fuzz-link", 9);
    (void)mindb_put(db, "fuzz/gone", 9, value, sizeof value);
    (void)mindb_checkpoint(db);
    (void)mindb_delete(db, "fuzz/gone", 9);
    /* Compaction moves every chunk still referenced into a new segment. */
    (void)mindb_compact(db, 100, NULL, NULL);
    struct mindb_stats st;
    FZ_CHECK(mindb_stats(db, &st) == 0, "mindb_stats");
}

static void write_back(const char *dir, const struct snapshot *ro, const struct made *made)
{
    struct mindb_options o;
    options(&o, 0);
    mindb *db;
    int rc = mindb_open(dir, &o, &db);
    /* A log that ends before the manifest's position lost records: written
     * on, it would hide new ones from the next replay. */
    if (made->log_end < made->manifest_pos) {
        FZ_CHECK(rc == MINDB_ECORRUPT,
                 "a store whose log ends (%" PRIu64 ") before its manifest's position (%" PRIu64
                 ") refuses to open for writing, got %d (%s)",
                 made->log_end, made->manifest_pos, rc, mindb_strerror(rc));
        return;
    }
    FZ_CHECK(rc == 0, "a store that opens read-only opens for writing, got %d (%s)", rc,
             mindb_strerror(rc));
    static struct snapshot rw, before, after;
    take_snapshot(db, &rw);
    expect_same(ro, &rw, "opened for writing");
    change_some(db, &rw);
    take_snapshot(db, &before);
    rc = mindb_close(db);
    FZ_CHECK(rc == 0, "closing (and checkpointing) succeeds, got %d (%s)", rc, mindb_strerror(rc));

    options(&o, 1);
    rc = mindb_open(dir, &o, &db);
    FZ_CHECK(rc == 0, "the store opens again after its checkpoint, got %d (%s)", rc,
             mindb_strerror(rc));
    take_snapshot(db, &after);
    check_store(db, &after);
    expect_same(&before, &after, "reopened after the checkpoint");
    mindb_close(db);
    snapshot_free(&rw);
    snapshot_free(&before);
    snapshot_free(&after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[4096];
    fz_fresh_dir("store", dir);
    struct made made;
    make_store(dir, data, size, &made);

    struct mindb_options o;
    options(&o, 1);
    mindb *db;
    int rc = mindb_open(dir, &o, &db);
    FZ_CHECK(rc == 0 || rc == MINDB_ECORRUPT || rc == MINDB_EVERSION,
             "a read-only open succeeds or fails with MINDB_ECORRUPT or MINDB_EVERSION, got %d "
             "(%s)",
             rc, mindb_strerror(rc));
    if (rc != 0)
        return 0;
    static struct snapshot ro;
    take_snapshot(db, &ro);
    check_store(db, &ro);
    int describe = mindb_describe_log(db, on_line, NULL);
    FZ_CHECK(describe >= 0, "describing the log, got %d", describe);
    mindb_close(db);
    if (size > 0 && (data[0] & WRITE_BACK))
        write_back(dir, &ro, &made);
    snapshot_free(&ro);
    return 0;
}
