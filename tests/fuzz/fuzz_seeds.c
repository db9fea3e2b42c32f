/*
 * fuzz_seeds.c - makes the seed corpora of the fuzz targets from real logs,
 * data segments and stores, written by this build of mindb:
 *
 *   build-fuzz/tests/fuzz/fuzz_seeds tests/fuzz/corpus
 *
 * writes CORPUS/wal, CORPUS/chunk, CORPUS/manifest and CORPUS/options, one
 * file per seed, each in the input format its target's header describes;
 * other files there (the regress-* inputs) stay. The salts and times in
 * them differ from run to run; their shapes do not. Keep the corpus small
 * (the whole under 200 KiB): a seed shows the fuzzer a shape, the fuzzer
 * makes the variations.
 */
#include "datafile.h"
#include "fuzzutil.h"
#include "mindb.h"
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define WAL_SEGMENT ((uint64_t)64 << 10)

static const char *corpus;

/* ---- bytes ---- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        b->p = realloc(b->p, cap);
        FZ_CHECK(b->p != NULL, "%zu bytes", cap);
        b->cap = cap;
    }
    if (len)
        memcpy(b->p + b->len, p, len);
    b->len += len;
}

static void buf_u8(struct buf *b, unsigned v)
{
    uint8_t x = (uint8_t)v;
    buf_add(b, &x, 1);
}

/* A piece as fz_piece() reads it. */
static void buf_piece(struct buf *b, unsigned length_bytes, const void *p, size_t len)
{
    FZ_CHECK(length_bytes == 4 || len >> (8 * length_bytes) == 0,
             "a piece of %zu bytes fits a %u-byte length", len, length_bytes);
    for (unsigned i = 0; i < length_bytes; i++)
        buf_u8(b, (unsigned)(len >> (8 * i)) & 0xff);
    buf_add(b, p, len);
}

static struct buf read_path(const char *path)
{
    struct buf b = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    FZ_CHECK(fd >= 0, "opening %s: %s", path, strerror(errno));
    uint8_t chunk[65536];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        buf_add(&b, chunk, (size_t)n);
    FZ_CHECK(n == 0, "reading %s: %s", path, strerror(errno));
    close(fd);
    return b;
}

/* Without the zeros at its end, which a reader sees as they were anyway. */
static size_t trimmed(const struct buf *b)
{
    size_t len = b->len;
    while (len > 0 && b->p[len - 1] == 0)
        len--;
    return len;
}

static void write_seed(const char *target, const char *name, const struct buf *b)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", corpus, target);
    FZ_CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = fz_open_dir(dir);
    fz_write_file(fd, name, b->p, b->len);
    close(fd);
    printf("%s: %zu bytes\n", path, b->len);
}

enum fill_kind {
    TEXT,   /* words drawn at random: compresses as source and documents do */
    NOISE,  /* random bytes: does not compress, is stored raw */
    REPEAT, /* one phrase again and again: large values in small seeds */
};

/* Bytes of the kind, different for each seed value. */
static void fill(uint8_t *p, size_t len, uint64_t seed, enum fill_kind kind)
{
    static const char *words[] = {"alpha ", "beta ", "gamma ", "mindb ", "chunk ", "\n"};
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len;) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (kind == NOISE)
            p[i++] = (uint8_t)x;
        else
            for (const char *w = words[kind == REPEAT ? 3 : x % 6]; *w && i < len; w++)
                p[i++] = (uint8_t)*w;
    }
}

/* ---- the log ---- */

static wal *open_log(const char *dir, int create)
{
    struct wal_options o;
    wal_options_init(&o);
    o.ring_bytes = 64 << 10;
    o.segment_bytes = WAL_SEGMENT;
    o.direct_io = 0;
    o.create = create;
    wal *log;
    int rc = wal_open(dir, &o, &log);
    FZ_CHECK(rc == 0, "opening the log %s: %d", dir, rc);
    return log;
}

static void append(wal *log, size_t len, uint64_t seed)
{
    uint8_t *p = malloc(len);
    FZ_CHECK(p != NULL, "%zu bytes", len);
    fill(p, len, seed, TEXT);
    struct wal_ticket t;
    FZ_CHECK(wal_append(log, p, len, &t) == 0, "appending %zu bytes", len);
    free(p);
}

/* The fuzz_wal input for the log in `dir`: its segments from `first` on. */
static void wal_seed(const char *dir, uint64_t first, unsigned count, unsigned flags,
                     unsigned from_steps, const char *name)
{
    struct buf in = {0};
    buf_u8(&in, flags);
    buf_u8(&in, from_steps);
    buf_u8(&in, (unsigned)first);
    for (uint64_t s = first; s < first + count; s++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%016" PRIx64 ".wal", dir, s);
        struct buf seg = read_path(path);
        buf_piece(&in, 3, seg.p, trimmed(&seg));
        free(seg.p);
    }
    write_seed("wal", name, &in);
    free(in.p);
}

static void wal_seeds(void)
{
    char dir[4096];

    /* Records of a few sizes. */
    fz_fresh_dir("log-small", dir);
    wal *log = open_log(dir, 1);
    for (unsigned i = 0; i < 6; i++)
        append(log, (size_t)10 << (2 * (i % 4)), i);
    FZ_CHECK(wal_close(log) == 0, "close");
    wal_seed(dir, 0, 1, 0x3, 4, "small-write");

    /* A torn last frame: the reader stops there. */
    char path[4200];
    snprintf(path, sizeof path, "%s/%016x.wal", dir, 0);
    struct buf seg = read_path(path);
    size_t end = trimmed(&seg);
    seg.p[end - 100] ^= 0x40;
    struct buf in = {0};
    buf_u8(&in, 0x2);
    buf_u8(&in, 0);
    buf_u8(&in, 0);
    buf_piece(&in, 3, seg.p, end);
    write_seed("wal", "torn-write", &in);
    free(in.p);
    free(seg.p);

    /* A record split into two frames, and runs of the writer after
     * reopening (their BEGIN frames chain the salts). */
    fz_fresh_dir("log-split", dir);
    log = open_log(dir, 1);
    append(log, 17000, 1);
    FZ_CHECK(wal_close(log) == 0, "close");
    for (unsigned run = 0; run < 2; run++) {
        log = open_log(dir, 0);
        append(log, 300, 10 + run);
        append(log, 900, 20 + run);
        FZ_CHECK(wal_close(log) == 0, "close");
    }
    wal_seed(dir, 0, 1, 0x1, 20, "split-reopened");

    /* Two segments: records cross from the first into the second. */
    fz_fresh_dir("log-two", dir);
    log = open_log(dir, 1);
    for (unsigned i = 0; i < 22; i++)
        append(log, 2900, 100 + i);
    FZ_CHECK(wal_close(log) == 0, "close");
    wal_seed(dir, 0, 2, 0x1, 130, "two-segments");

    /* A log whose first segment was released: it starts at segment 1. */
    fz_fresh_dir("log-released", dir);
    log = open_log(dir, 1);
    for (unsigned i = 0; i < 4; i++)
        append(log, 15000, 200 + i);
    append(log, 2000, 210);
    FZ_CHECK(wal_commit(log) == 0, "commit");
    FZ_CHECK(wal_release(log, WAL_SEGMENT) == 0, "release");
    append(log, 700, 300);
    FZ_CHECK(wal_close(log) == 0, "close");
    wal_seed(dir, 1, 1, 0x3, 0, "released");
}

/* ---- data segments ---- */

static void chunk_seeds(void)
{
    char dir[4096];
    fz_fresh_dir("chunks", dir);
    int fd = fz_open_dir(dir);
    struct datafile_options o = {.compression_level = 3, .cache_bytes = 1 << 20};
    struct datafile *df;
    FZ_CHECK(datafile_open(fd, "data", 1, &o, &df) == 0, "datafile_open");
    static const struct {
        size_t len;
        enum fill_kind kind;
    } chunks[] = {
        {4000, TEXT}, {600, NOISE}, {1, TEXT}, {DATAFILE_MAX_CHUNK, REPEAT}, {100, NOISE}};
    for (unsigned i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        uint8_t *p = malloc(chunks[i].len);
        FZ_CHECK(p != NULL, "%zu bytes", chunks[i].len);
        fill(p, chunks[i].len, 40 + i, chunks[i].kind);
        struct chunk_ref ref;
        FZ_CHECK(datafile_write(df, 5 + i % 2, i, p, chunks[i].len, &ref) == 0, "datafile_write");
        free(p);
    }
    FZ_CHECK(datafile_sync(df) == 0, "datafile_sync");
    datafile_close(df);
    close(fd);

    char path[4200];
    snprintf(path, sizeof path, "%s/data/00000001.seg", dir);
    struct buf seg = read_path(path);
    static const unsigned flags[] = {0x0, 0x1, 0x3};
    static const char *names[] = {"records", "records-fix", "records-write"};
    for (unsigned i = 0; i < 3; i++) {
        struct buf in = {0};
        buf_u8(&in, flags[i]);
        buf_add(&in, seg.p, seg.len);
        write_seed("chunk", names[i], &in);
        free(in.p);
    }
    free(seg.p);
}

/* ---- stores ---- */

static void store_options(struct mindb_options *o)
{
    mindb_options_init(o);
    o->create = 1;
    o->background = 0;
    o->direct_io = 0;
}

static void put_filled(mindb *db, const char *key, size_t len, uint64_t seed, enum fill_kind kind)
{
    uint8_t *p = malloc(len ? len : 1);
    FZ_CHECK(p != NULL, "%zu bytes", len);
    fill(p, len, seed, kind);
    int rc = mindb_put(db, key, strlen(key), p, len);
    FZ_CHECK(rc == 0, "put %s: %d", key, rc);
    free(p);
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        long long ok_rc_ = (long long)(call);                                                      \
        FZ_CHECK(ok_rc_ >= 0, "%s succeeds, got %lld", #call, ok_rc_);                             \
    } while (0)

/* The checkpointed part of the store: one of each kind of thing. */
static void fill_store(mindb *db)
{
    OK(mindb_create(db, "d", 1, S_IFDIR | 0755, 1000, 1000, NULL, 0));
    OK(mindb_create(db, "d/sub", 5, S_IFDIR | 0700, 1000, 1000, NULL, 0));
    put_filled(db, "d/a", 3000, 1, TEXT);
    put_filled(db, "d/b", 300, 2, NOISE);
    put_filled(db, "big", 150000, 3, REPEAT);
    OK(mindb_create(db, "l", 1, S_IFLNK | 0777, 0, 0, "d/a", 3));
    OK(mindb_create(db, "e", 1, S_IFREG | 0600, 0, 0, NULL, 0));
    OK(mindb_setxattr(db, "d/a", 3, "user.note", "hello", 5, 0));
    OK(mindb_link(db, "d/a", 3, "h", 1));
    mindb_file *f;
    OK(mindb_file_open(db, "sparse", 6, MINDB_OPEN_CREATE, 0644, &f));
    OK(mindb_pwrite(f, "tail", 4, 200000));
    mindb_file_close(f);
}

/* The part left in the log: every kind of record. */
static void change_store(mindb *db)
{
    put_filled(db, "d/c", 700, 4, TEXT);
    OK(mindb_rename(db, "d", 1, "dir2", 4, 0));
    OK(mindb_delete(db, "e", 1));
    mindb_file *f;
    OK(mindb_file_open(db, "big", 3, 0, 0, &f));
    OK(mindb_pwrite(f, "patch", 5, 1000));
    /* A whole chunk with bytes either side: a write-refs record. */
    uint8_t *p = malloc(65736);
    FZ_CHECK(p != NULL, "65736 bytes");
    fill(p, 65736, 5, TEXT);
    OK(mindb_pwrite(f, p, 65736, 65436));
    free(p);
    OK(mindb_file_link(f, "big-link", 8));
    mindb_file_close(f);
    OK(mindb_file_open(db, "sparse", 6, 0, 0, &f));
    OK(mindb_truncate(f, 100));
    mindb_file_close(f);
    struct mindb_attr a = {.mode = 0640, .mtime_ns = 123456789};
    OK(mindb_setattr(db, "dir2/a", 6, &a, MINDB_SET_MODE | MINDB_SET_MTIME));
    OK(mindb_setxattr(db, "h", 1, "user.more", "x", 1, 0));
    OK(mindb_removexattr(db, "h", 1, "user.note"));
    OK(mindb_link(db, "l", 1, "l2", 2));
}

/* The newest manifest.* of a store. */
static struct buf newest_manifest(const char *dir)
{
    DIR *d = opendir(dir);
    FZ_CHECK(d != NULL, "opendir %s", dir);
    char best[64] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "manifest.", 9) == 0 && strlen(e->d_name) == 25 &&
            strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    closedir(d);
    FZ_CHECK(best[0], "a manifest in %s", dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, best);
    return read_path(path);
}

/* The records of the store's log from `pos` on, as fuzz_manifest takes
 * them. */
static void add_records(struct buf *in, const char *store, uint64_t pos)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/wal", store);
    struct wal_options o;
    wal_options_init(&o);
    o.read_only = 1;
    wal *log;
    FZ_CHECK(wal_open(dir, &o, &log) == 0, "opening %s", dir);
    wal_reader *r;
    FZ_CHECK(wal_reader_open(log, pos, &r) == 0, "a reader");
    const void *data;
    size_t len;
    uint64_t at;
    while (wal_reader_next(r, &data, &len, &at) == 1)
        buf_piece(in, 2, data, len);
    wal_reader_close(r);
    wal_close(log);
}

/* fuzz_manifest inputs for the store in `dir`. */
static void manifest_seeds(const char *dir, const char *name, int with_log)
{
    struct buf man = newest_manifest(dir);
    FZ_CHECK(man.len >= 72, "a manifest of %zu bytes", man.len);
    uint64_t pos = fz_get64(man.p + 24);
    /* Replay starts at the beginning of the log fuzz_manifest makes. */
    fz_put64(man.p + 24, 0);
    fz_put64(man.p + man.len - 8, XXH3_64bits(man.p, man.len - 8));
    uint64_t body_len = fz_get64(man.p + 56);
    uint8_t *body = malloc(body_len ? body_len : 1);
    FZ_CHECK(body != NULL, "%" PRIu64 " bytes", body_len);
    size_t got = ZSTD_decompress(body, body_len, man.p + 64, man.len - 72);
    FZ_CHECK(got == body_len, "the body of the manifest of %s", dir);

    char path[4200];
    snprintf(path, sizeof path, "%s/data/00000001.seg", dir);
    struct buf seg = {0};
    if (access(path, F_OK) == 0)
        seg = read_path(path);

    static const struct {
        unsigned flags;
        const char *suffix;
    } kinds[] = {{0x0, "raw"}, {0x2, "body"}, {0x2 | 0x4 | 0x8, "body-write"}};
    for (unsigned i = 0; i < 3; i++) {
        struct buf in = {0};
        buf_u8(&in, kinds[i].flags);
        if (kinds[i].flags & 0x2) {
            struct buf plain = {0};
            buf_add(&plain, man.p, 64);
            buf_add(&plain, body, body_len);
            buf_piece(&in, 3, plain.p, plain.len);
            free(plain.p);
        } else {
            buf_piece(&in, 3, man.p, man.len);
        }
        buf_piece(&in, 3, seg.p, seg.len);
        if (with_log)
            add_records(&in, dir, pos);
        char seed[128];
        snprintf(seed, sizeof seed, "%s-%s", name, kinds[i].suffix);
        write_seed("manifest", seed, &in);
        free(in.p);
    }
    free(seg.p);
    free(body);
    free(man.p);
}

static void store_seeds(void)
{
    char dir[4096];
    struct mindb_options o;
    store_options(&o);

    fz_fresh_dir("store-empty", dir);
    mindb *db;
    FZ_CHECK(mindb_open(dir, &o, &db) == 0, "creating %s", dir);
    FZ_CHECK(mindb_close(db) == 0, "closing %s", dir);
    manifest_seeds(dir, "empty", 0);

    fz_fresh_dir("store-full", dir);
    FZ_CHECK(mindb_open(dir, &o, &db) == 0, "creating %s", dir);
    fill_store(db);
    FZ_CHECK(mindb_close(db) == 0, "closing %s", dir);
    /* The changes stay in the log: the child ends without the checkpoint
     * a close makes. */
    fflush(stdout);
    pid_t child = fork();
    FZ_CHECK(child >= 0, "fork");
    if (child == 0) {
        FZ_CHECK(mindb_open(dir, &o, &db) == 0, "reopening %s", dir);
        change_store(db);
        FZ_CHECK(mindb_sync(db) == 0, "sync");
        _exit(0);
    }
    int status;
    FZ_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "the child that changes the store ends well, got status 0x%x", status);
    manifest_seeds(dir, "full", 1);
}

/* ---- mount options ---- */

static void options_seed(const char *name, const char *args, size_t len)
{
    struct buf in = {0};
    buf_add(&in, args, len);
    write_seed("options", name, &in);
    free(in.p);
}

#define OPTIONS_SEED(name, literal) options_seed(name, literal, sizeof literal - 1)

static void option_seeds(void)
{
    /* The mount point must exist for the parse to succeed (libfuse takes
     * its real path): "." always does. */
    OPTIONS_SEED("plain", "store\0.\0");
    OPTIONS_SEED("store-options", "store\0.\0-o\0compression=9,cache_size=128M,dirty_size=16M\0");
    OPTIONS_SEED("flags", "store\0.\0-f\0-s\0-d\0-o\0ro,allow_other,sync\0");
    OPTIONS_SEED("fstab", "store\0.\0-o\0defaults,noauto,user,x-systemd.automount,_netdev,"
                          "nofail,dev,suid,rw,relatime\0");
    OPTIONS_SEED("timeouts", "-oattr_timeout=0.5,entry_timeout=2,negative_timeout=0\0store\0.\0"
                             "-o\0checkpoint_interval=60,max_read=131072\0");
    OPTIONS_SEED("connection", "store\0/\0-o\0writeback_cache,max_write=65536,async\0"
                               "-o\0clone_fd,max_threads=4,max_idle_threads=2\0");
    OPTIONS_SEED("help", "--help\0");
    OPTIONS_SEED("version", "store\0-V\0");
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: fuzz_seeds CORPUS_DIR (writes CORPUS_DIR/wal, chunk, manifest, "
                        "options)\n");
        return 2;
    }
    corpus = argv[1];
    FZ_CHECK(mkdir(corpus, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", corpus, strerror(errno));
    wal_seeds();
    chunk_seeds();
    store_seeds();
    option_seeds();
    return 0;
}
