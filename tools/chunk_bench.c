/*
 * chunk_bench.c - how the store's chunk size and zstd level trade
 * compression ratio against speed, measured on a real tree of files.
 *
 * The store splits a value into chunks of DATAFILE_MAX_CHUNK bytes (the last
 * one shorter), compresses each chunk on its own with one reused ZSTD_CCtx,
 * keeps it raw unless zstd saves at least 1/32 of it, and writes it as one
 * record with a 40-byte header (store/datafile.c). This program does the
 * same to every file of the trees it is given, for each chunk size and
 * level on its command line, and times the compression and, separately, the
 * decompression of all chunks back, which it checks byte for byte. Beside
 * the grid it measures a baseline in the same rounds: each file compressed
 * whole at level 3, the best ratio chunking could approach.
 *
 * Files are not concatenated: a value's chunks never span two values, so
 * small files cost the store a whole record each, and this shows it. The
 * input is read into memory first, untimed, so only compression is timed.
 * Disk and the store's I/O are left out on purpose: they are what kv_bench
 * measures.
 */
#include "bench_args.h"
#include "bench_report.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#ifndef MINDB_VERSION
#define MINDB_VERSION "unknown"
#endif

#define PROGRAM "chunk_bench"
/* The store's record header, written before every chunk's payload. */
#define REC_HEADER_BYTES 40
/* The whole-file baseline's level: the store's default. */
#define BASELINE_LEVEL 3
#define MAX_LIST 16
#define MAX_CHUNK_KIB 4096
#define DEFAULT_MAX_BYTES ((uint64_t)256 << 20)

struct config {
    uint64_t chunk_kib[MAX_LIST];
    unsigned chunk_count;
    uint64_t levels[MAX_LIST];
    unsigned level_count;
    uint64_t max_bytes;
    unsigned rounds;
    const char *json_path;
    bool verbose;
    const char *const *dirs;
    unsigned dir_count;
};

/* ---- Command line ---- */

static const char *const default_dirs[] = {"/usr/include", "/usr/share/doc"};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [OPTION]... [DIR]...\n"
            "Measure compression ratio and speed of the store's chunked zstd compression\n"
            "on the files under each DIR (default: /usr/include /usr/share/doc), for a grid\n"
            "of chunk sizes and zstd levels, beside each file compressed whole.\n"
            "\n"
            "Input. Regular files under the DIRs, taken in byte-wise sorted path order\n"
            "(DIRs in the order given) so that runs are reproducible, and read into memory\n"
            "before anything is timed. Symbolic links are skipped and not followed, and so\n"
            "are files already compressed (.gz .xz .bz2 .zst .zip .png .jpg and the like).\n"
            "Reading stops at --max-bytes; the file that reaches it is cut short.\n"
            "\n"
            "Work, as the store does it. Each file is split into chunks of the chunk size,\n"
            "its last chunk shorter; files are not concatenated. Every chunk is compressed\n"
            "on its own with one reused ZSTD_CCtx (ZSTD_compressCCtx) and stored raw unless\n"
            "that saves at least 1/32 of it; then all are decompressed back with one reused\n"
            "ZSTD_DCtx (raw ones copied), timed separately, and compared with the input.\n"
            "Every stored chunk also costs the store a %d-byte record header. The baseline\n"
            "compresses each file whole at level %d, by the same rules.\n"
            "\n"
            "Options:\n"
            "  --chunk-sizes LIST  chunk sizes in KiB, comma-separated, 1 to %d\n"
            "                      (default 4,16,64,128,256)\n"
            "  --levels LIST       zstd levels, comma-separated, 1 to %d (default 1,3,6,9)\n"
            "  --max-bytes N       read at most N bytes of input (default 256m); suffixes\n"
            "                      k, m and g mean KiB, MiB and GiB\n"
            "  --rounds N          measure every row N times, 1 to %d (default 3)\n"
            "  --json FILE         also write the results, round by round, as JSON\n"
            "  -v, --verbose       print each measurement on stderr as it finishes\n"
            "  -h, --help          print this help and exit\n"
            "  -V, --version       print the version and exit\n"
            "\n"
            "Output: a row per chunk size and level, and the baseline row \"whole\":\n"
            "  chunks      records stored (chunks, or files for the baseline)\n"
            "  raw %%       share of them stored raw\n"
            "  stored MiB  payload bytes stored, headers left out\n"
            "  ratio       input bytes / stored bytes\n"
            "  +hdr        input bytes / (stored bytes + %d per record)\n"
            "  comp MB/s   input bytes compressed per second (MB = 10^6 bytes)\n"
            "  dec MB/s    input bytes decompressed per second\n"
            "Speeds are medians over the rounds; in a round every row is measured once.\n"
            "Times are the CPU time of the measuring thread, so that other programs on\n"
            "the machine slow the figures less; they still share its caches and memory.\n"
            "\n"
            "Exit status: 0 ok, 1 a call failed (named on stderr), 2 usage error.\n",
            REC_HEADER_BYTES, BASELINE_LEVEL, MAX_CHUNK_KIB, ZSTD_maxCLevel(), BENCH_MAX_ROUNDS,
            REC_HEADER_BYTES);
}

enum {
    OPT_CHUNK_SIZES = 256,
    OPT_LEVELS,
    OPT_MAX_BYTES,
    OPT_ROUNDS,
    OPT_JSON,
};

/* Fills `cfg` from the command line, printing the help, the version or a
 * usage error as asked. Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option options[] = {
        {"chunk-sizes", required_argument, NULL, OPT_CHUNK_SIZES},
        {"levels", required_argument, NULL, OPT_LEVELS},
        {"max-bytes", required_argument, NULL, OPT_MAX_BYTES},
        {"rounds", required_argument, NULL, OPT_ROUNDS},
        {"json", required_argument, NULL, OPT_JSON},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };

    *cfg = (struct config){
        .chunk_kib = {4, 16, 64, 128, 256},
        .chunk_count = 5,
        .levels = {1, 3, 6, 9},
        .level_count = 4,
        .max_bytes = DEFAULT_MAX_BYTES,
        .rounds = 3,
    };

    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":vhV", options, NULL)) != -1) {
        uint64_t value;
        switch (opt) {
        case OPT_CHUNK_SIZES:
            if (!bench_parse_list(optarg, false, 1, MAX_CHUNK_KIB, cfg->chunk_kib, MAX_LIST,
                                  &cfg->chunk_count))
                return bench_usage_error(PROGRAM,
                                         "--chunk-sizes wants up to %d sizes in KiB from 1 to "
                                         "%d, comma-separated, not '%s'",
                                         MAX_LIST, MAX_CHUNK_KIB, optarg);
            break;
        case OPT_LEVELS:
            if (!bench_parse_list(optarg, false, 1, (uint64_t)ZSTD_maxCLevel(), cfg->levels,
                                  MAX_LIST, &cfg->level_count))
                return bench_usage_error(PROGRAM,
                                         "--levels wants up to %d zstd levels from 1 to %d, "
                                         "comma-separated, not '%s'",
                                         MAX_LIST, ZSTD_maxCLevel(), optarg);
            break;
        case OPT_MAX_BYTES:
            if (!bench_parse_u64(optarg, true, &value) || value == 0 || value > SIZE_MAX / 4)
                return bench_usage_error(PROGRAM, "--max-bytes wants a positive size, not '%s'",
                                         optarg);
            cfg->max_bytes = value;
            break;
        case OPT_ROUNDS:
            if (!bench_parse_u64(optarg, false, &value) || value == 0 || value > BENCH_MAX_ROUNDS)
                return bench_usage_error(PROGRAM, "--rounds wants a number from 1 to %d, not '%s'",
                                         BENCH_MAX_ROUNDS, optarg);
            cfg->rounds = (unsigned)value;
            break;
        case OPT_JSON:
            cfg->json_path = optarg;
            break;
        case 'v':
            cfg->verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("%s (mindb) %s\n", PROGRAM, MINDB_VERSION);
            return 0;
        case ':':
            return bench_usage_error(PROGRAM, "option '%s' needs an argument", argv[optind - 1]);
        default:
            return bench_usage_error(PROGRAM, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        cfg->dirs = (const char *const *)argv + optind;
        cfg->dir_count = (unsigned)(argc - optind);
    } else {
        cfg->dirs = default_dirs;
        cfg->dir_count = sizeof default_dirs / sizeof default_dirs[0];
    }
    return -1;
}

/* ---- Input ---- */

/* Names of files whose contents are compressed already: zstd would only
 * measure its own give-up path on them, which tells nothing of the store's
 * values of text, code and tables. Compared without case. */
static const char *const compressed_suffixes[] = {
    ".gz",  ".tgz",  ".xz",  ".txz", ".bz2", ".tbz2", ".zst",  ".lz4",   ".lz",  ".lzma",
    ".z",   ".zip",  ".jar", ".7z",  ".rar", ".deb",  ".rpm",  ".png",   ".jpg", ".jpeg",
    ".gif", ".webp", ".mp3", ".ogg", ".mp4", ".pdf",  ".woff", ".woff2",
};

static bool is_compressed_name(const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < sizeof compressed_suffixes / sizeof compressed_suffixes[0]; i++) {
        size_t n = strlen(compressed_suffixes[i]);
        if (len > n && strcasecmp(path + len - n, compressed_suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* What the walk of one DIR found; nftw() takes no argument for its
 * callback, hence the one static instance. */
static struct walk {
    char **paths;
    size_t count, cap;
    uint64_t bytes; /* their sizes as the walk saw them */
    uint64_t skipped_compressed, skipped_links, skipped_other;
    int error; /* negative errno of the first failure to keep a path */
} walk;

static int walk_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    switch (type) {
    case FTW_F:
        if (!S_ISREG(st->st_mode)) {
            walk.skipped_other++;
            return 0;
        }
        if (is_compressed_name(path)) {
            walk.skipped_compressed++;
            return 0;
        }
        break;
    case FTW_SL:
    case FTW_SLN:
        walk.skipped_links++;
        return 0;
    case FTW_DNR:
    case FTW_NS:
        fprintf(stderr, "%s: skipping %s: cannot read it\n", PROGRAM, path);
        return 0;
    default:
        return 0;
    }
    if (walk.count == walk.cap) {
        size_t cap = walk.cap ? walk.cap * 2 : 1024;
        char **paths = realloc(walk.paths, cap * sizeof *paths);
        if (!paths) {
            walk.error = -ENOMEM;
            return 1;
        }
        walk.paths = paths;
        walk.cap = cap;
    }
    if (!(walk.paths[walk.count] = strdup(path))) {
        walk.error = -ENOMEM;
        return 1;
    }
    walk.count++;
    walk.bytes += (uint64_t)st->st_size;
    return 0;
}

static int cmp_path(const void *a, const void *b)
{
    /* strcmp, not strcoll: the order must not depend on the locale. */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One file of the input: its bytes are input[off, off + len). */
struct file {
    size_t off, len;
};

struct input {
    uint8_t *bytes;
    size_t len;
    struct file *files;
    size_t file_count;
    uint64_t empty_files;  /* skipped as having nothing to store */
    uint64_t failed_files; /* skipped as unreadable */
    uint64_t unread_files; /* left out past max_bytes */
};

/* Reads up to `want` bytes of `path` into `buf`; the count, or -1 with a
 * message on stderr. */
static ssize_t read_file_into(const char *path, uint8_t *buf, size_t want)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: skipping %s: %s\n", PROGRAM, path, strerror(errno));
        return -1;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "%s: skipping %s: %s\n", PROGRAM, path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return (ssize_t)got;
}

/* Walks the DIRs, then reads their files in order into `in` until
 * max_bytes. Returns 0, or 1 (the exit status) after a message. */
static int load_input(const struct config *cfg, struct input *in)
{
    size_t sorted_from = 0;
    for (unsigned i = 0; i < cfg->dir_count; i++) {
        if (nftw(cfg->dirs[i], walk_visit, 32, FTW_PHYS) != 0) {
            fprintf(stderr, "%s: walking %s: %s\n", PROGRAM, cfg->dirs[i],
                    strerror(walk.error ? -walk.error : errno));
            return 1;
        }
        qsort(walk.paths + sorted_from, walk.count - sorted_from, sizeof *walk.paths, cmp_path);
        sorted_from = walk.count;
    }

    /* The buffer holds the input whole: the measured loops then touch only
     * memory, and decompression can be checked against it. */
    size_t cap = (size_t)(walk.bytes < cfg->max_bytes ? walk.bytes : cfg->max_bytes);
    in->bytes = malloc(cap ? cap : 1);
    in->files = calloc(walk.count ? walk.count : 1, sizeof *in->files);
    if (!in->bytes || !in->files) {
        fprintf(stderr, "%s: allocating %zu bytes of input: %s\n", PROGRAM, cap, strerror(ENOMEM));
        return 1;
    }
    size_t i = 0;
    for (; i < walk.count && in->len < cap; i++) {
        ssize_t n = read_file_into(walk.paths[i], in->bytes + in->len, cap - in->len);
        if (n < 0) {
            in->failed_files++;
            continue;
        }
        if (n == 0) {
            in->empty_files++;
            continue;
        }
        in->files[in->file_count++] = (struct file){.off = in->len, .len = (size_t)n};
        in->len += (size_t)n;
    }
    in->unread_files = walk.count - i;
    if (in->len == 0) {
        fprintf(stderr, "%s: no input: no readable, non-empty, uncompressed files found\n",
                PROGRAM);
        return 1;
    }
    return 0;
}

/* ---- Measuring ---- */

/* Where one stored chunk is, in the store's terms. */
struct chunk {
    size_t raw_off;    /* in the input */
    size_t stored_off; /* in the buffer of stored chunks */
    size_t raw_len, stored_len;
    bool zstd; /* else stored raw */
};

/* One row of the table: a chunk size (0: whole files) and a level. */
struct row {
    size_t chunk_bytes;
    int level;
    size_t chunks, raw_chunks;
    uint64_t stored_bytes;
    double comp_mbps[BENCH_MAX_ROUNDS];
    double dec_mbps[BENCH_MAX_ROUNDS];
};

struct bench {
    const struct config *cfg;
    struct input in;
    struct row *rows;
    size_t row_count;
    struct chunk *chunks; /* for the row being measured */
    uint8_t *stored;      /* its stored chunks, back to back */
    uint8_t *out;         /* the input as decompressed again */
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
};

static void row_label(const struct row *row, char *out, size_t out_len)
{
    if (row->chunk_bytes)
        bench_print_size(out, out_len, row->chunk_bytes);
    else
        snprintf(out, out_len, "whole");
}

static size_t chunk_len_of(size_t chunk_bytes, const struct file *f)
{
    return chunk_bytes ? chunk_bytes : f->len;
}

/* The chunks of the input at `chunk_bytes` (0: whole files), and the bytes
 * their worst-case compressed forms need. */
static size_t count_chunks(const struct input *in, size_t chunk_bytes, size_t *bound)
{
    size_t n = 0;
    *bound = 0;
    for (size_t i = 0; i < in->file_count; i++) {
        const struct file *f = &in->files[i];
        size_t step = chunk_len_of(chunk_bytes, f);
        for (size_t at = 0; at < f->len; at += step) {
            size_t len = f->len - at < step ? f->len - at : step;
            *bound += ZSTD_compressBound(len);
            n++;
        }
    }
    return n;
}

/* Times are CPU time of the measuring thread, not wall time: the work is
 * one thread's computation on memory, and on a shared 2-core machine wall
 * time mostly measures who else was running (a round beside a compiler ran
 * at half speed). Being descheduled does not count; contention for caches
 * and memory still does. */
#define BENCH_CLOCK CLOCK_THREAD_CPUTIME_ID

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(BENCH_CLOCK, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Compresses every chunk as the store does, filling b->chunks. */
static int compress_all(struct bench *b, struct row *row, double *secs)
{
    const struct input *in = &b->in;
    size_t n = 0, raw = 0, pos = 0;
    struct timespec t0;
    clock_gettime(BENCH_CLOCK, &t0);
    for (size_t i = 0; i < in->file_count; i++) {
        const struct file *f = &in->files[i];
        size_t step = chunk_len_of(row->chunk_bytes, f);
        for (size_t at = 0; at < f->len; at += step) {
            size_t len = f->len - at < step ? f->len - at : step;
            const uint8_t *src = in->bytes + f->off + at;
            size_t z = ZSTD_compressCCtx(b->cctx, b->stored + pos, ZSTD_compressBound(len), src,
                                         len, row->level);
            if (ZSTD_isError(z)) {
                fprintf(stderr, "%s: ZSTD_compressCCtx: %s\n", PROGRAM, ZSTD_getErrorName(z));
                return 1;
            }
            /* The store's rule (store/datafile.c): raw unless zstd saves
             * at least 1/32, as decompressing would cost more than the
             * bytes saved. */
            bool zstd = z < len - len / 32;
            if (!zstd) {
                memcpy(b->stored + pos, src, len);
                z = len;
                raw++;
            }
            b->chunks[n++] = (struct chunk){.raw_off = f->off + at,
                                            .stored_off = pos,
                                            .raw_len = len,
                                            .stored_len = z,
                                            .zstd = zstd};
            pos += z;
        }
    }
    *secs = seconds_since(&t0);
    row->chunks = n;
    row->raw_chunks = raw;
    row->stored_bytes = pos;
    return 0;
}

/* Decompresses (or copies) every chunk back into b->out, then compares the
 * whole with the input, untimed. */
static int decompress_all(struct bench *b, const struct row *row, double *secs)
{
    /* So that a chunk left undone cannot pass on the last row's bytes. */
    memset(b->out, 0, b->in.len);
    struct timespec t0;
    clock_gettime(BENCH_CLOCK, &t0);
    for (size_t i = 0; i < row->chunks; i++) {
        const struct chunk *c = &b->chunks[i];
        uint8_t *dst = b->out + c->raw_off;
        const uint8_t *src = b->stored + c->stored_off;
        if (!c->zstd) {
            memcpy(dst, src, c->raw_len);
            continue;
        }
        size_t n = ZSTD_decompressDCtx(b->dctx, dst, c->raw_len, src, c->stored_len);
        if (ZSTD_isError(n) || n != c->raw_len) {
            fprintf(stderr, "%s: ZSTD_decompressDCtx: %s\n", PROGRAM,
                    ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong length");
            return 1;
        }
    }
    *secs = seconds_since(&t0);
    if (memcmp(b->out, b->in.bytes, b->in.len) != 0) {
        char label[32];
        row_label(row, label, sizeof label);
        fprintf(stderr, "%s: chunk %s, level %d: decompressed bytes differ from the input\n",
                PROGRAM, label, row->level);
        return 1;
    }
    return 0;
}

/* Sizes the buffers for the largest row and makes the rows: the baseline
 * first, then each chunk size with each level. */
static int prepare(struct bench *b)
{
    const struct config *cfg = b->cfg;
    b->row_count = 1 + (size_t)cfg->chunk_count * cfg->level_count;
    b->rows = calloc(b->row_count, sizeof *b->rows);
    if (!b->rows)
        goto nomem;
    b->rows[0] = (struct row){.chunk_bytes = 0, .level = BASELINE_LEVEL};
    for (unsigned c = 0; c < cfg->chunk_count; c++)
        for (unsigned l = 0; l < cfg->level_count; l++)
            b->rows[1 + c * cfg->level_count + l] = (struct row){
                .chunk_bytes = (size_t)cfg->chunk_kib[c] << 10, .level = (int)cfg->levels[l]};

    size_t max_chunks = 0, max_bound = 0;
    for (size_t r = 0; r < b->row_count; r++) {
        size_t bound;
        size_t n = count_chunks(&b->in, b->rows[r].chunk_bytes, &bound);
        max_chunks = n > max_chunks ? n : max_chunks;
        max_bound = bound > max_bound ? bound : max_bound;
    }
    b->chunks = calloc(max_chunks, sizeof *b->chunks);
    b->stored = malloc(max_bound);
    b->out = malloc(b->in.len);
    b->cctx = ZSTD_createCCtx();
    b->dctx = ZSTD_createDCtx();
    if (!b->chunks || !b->stored || !b->out || !b->cctx || !b->dctx)
        goto nomem;
    /* Fault the pages in now, not in the first timed loop. */
    memset(b->stored, 0, max_bound);
    memset(b->out, 0, b->in.len);
    return 0;
nomem:
    fprintf(stderr, "%s: allocating buffers: %s\n", PROGRAM, strerror(ENOMEM));
    return 1;
}

static int measure(struct bench *b)
{
    const struct config *cfg = b->cfg;
    double mb = (double)b->in.len / 1e6;
    /* Rounds outermost: a drift in the machine's speed then touches every
     * row alike, and the medians over rounds wash it out. */
    for (unsigned round = 0; round < cfg->rounds; round++) {
        for (size_t r = 0; r < b->row_count; r++) {
            struct row *row = &b->rows[r];
            double comp_s, dec_s;
            if (compress_all(b, row, &comp_s) != 0 || decompress_all(b, row, &dec_s) != 0)
                return 1;
            row->comp_mbps[round] = comp_s > 0 ? mb / comp_s : 0;
            row->dec_mbps[round] = dec_s > 0 ? mb / dec_s : 0;
            if (cfg->verbose) {
                char label[32];
                row_label(row, label, sizeof label);
                fprintf(stderr, "round %u: %s level %d: %.1f MB/s, %.1f MB/s\n", round + 1, label,
                        row->level, row->comp_mbps[round], row->dec_mbps[round]);
            }
        }
    }
    return 0;
}

/* ---- Reporting ---- */

static double median_of(const double *values, unsigned n)
{
    double copy[BENCH_MAX_ROUNDS];
    memcpy(copy, values, n * sizeof *values);
    return bench_median(copy, n);
}

static uint64_t with_headers(const struct row *row)
{
    return row->stored_bytes + (uint64_t)REC_HEADER_BYTES * row->chunks;
}

static void print_table(const struct bench *b)
{
    const struct config *cfg = b->cfg;
    printf("%s (mindb) %s, zstd %s, %u round%s\n", PROGRAM, MINDB_VERSION, ZSTD_versionString(),
           cfg->rounds, cfg->rounds == 1 ? "" : "s");
    printf("input: %zu bytes (%.1f MiB) in %zu files from", b->in.len,
           (double)b->in.len / (1 << 20), b->in.file_count);
    for (unsigned i = 0; i < cfg->dir_count; i++)
        printf(" %s", cfg->dirs[i]);
    printf("\nskipped: %" PRIu64 " compressed, %" PRIu64 " symbolic links, %" PRIu64
           " empty, %" PRIu64 " not regular, %" PRIu64 " unreadable; %" PRIu64
           " files past --max-bytes\n",
           walk.skipped_compressed, walk.skipped_links, b->in.empty_files, walk.skipped_other,
           b->in.failed_files, b->in.unread_files);
    printf("\n%-8s %5s %8s %6s %10s %6s %6s %9s %9s\n", "chunk", "level", "chunks", "raw %",
           "stored MiB", "ratio", "+hdr", "comp MB/s", "dec MB/s");
    for (size_t r = 0; r < b->row_count; r++) {
        const struct row *row = &b->rows[r];
        char label[32];
        row_label(row, label, sizeof label);
        printf("%-8s %5d %8zu %6.1f %10.1f %6.3f %6.3f %9.1f %9.1f\n", label, row->level,
               row->chunks, 100.0 * (double)row->raw_chunks / (double)row->chunks,
               (double)row->stored_bytes / (1 << 20), (double)b->in.len / (double)row->stored_bytes,
               (double)b->in.len / (double)with_headers(row),
               median_of(row->comp_mbps, cfg->rounds), median_of(row->dec_mbps, cfg->rounds));
    }
}

static void json_rates(FILE *f, const char *name, const double *values, unsigned n)
{
    fprintf(f, ", \"%s\": %.2f, \"%s_rounds\": [", name, median_of(values, n), name);
    for (unsigned i = 0; i < n; i++)
        fprintf(f, "%s%.2f", i ? ", " : "", values[i]);
    fprintf(f, "]");
}

static int write_json(const struct bench *b)
{
    const struct config *cfg = b->cfg;
    FILE *f = fopen(cfg->json_path, "w");
    if (!f) {
        fprintf(stderr, "%s: opening %s: %s\n", PROGRAM, cfg->json_path, strerror(errno));
        return 1;
    }
    fprintf(f, "{\n  \"program\": \"" PROGRAM "\", \"version\": ");
    bench_json_string(f, MINDB_VERSION);
    fprintf(f, ", \"zstd\": ");
    bench_json_string(f, ZSTD_versionString());
    fprintf(f, ",\n  \"dirs\": [");
    for (unsigned i = 0; i < cfg->dir_count; i++) {
        fprintf(f, "%s", i ? ", " : "");
        bench_json_string(f, cfg->dirs[i]);
    }
    fprintf(f,
            "],\n  \"max_bytes\": %" PRIu64 ", \"rounds\": %u, \"record_header_bytes\": %d,\n"
            "  \"input_bytes\": %zu, \"files\": %zu,\n  \"rows\": [\n",
            cfg->max_bytes, cfg->rounds, REC_HEADER_BYTES, b->in.len, b->in.file_count);
    for (size_t r = 0; r < b->row_count; r++) {
        const struct row *row = &b->rows[r];
        fprintf(f,
                "    {\"whole_file\": %s, \"chunk_bytes\": %zu, \"level\": %d, \"chunks\": %zu, "
                "\"raw_chunks\": %zu, \"stored_bytes\": %" PRIu64
                ", \"stored_bytes_with_headers\": %" PRIu64
                ", \"ratio\": %.4f, \"ratio_with_headers\": %.4f",
                bench_json_bool(row->chunk_bytes == 0), row->chunk_bytes, row->level, row->chunks,
                row->raw_chunks, row->stored_bytes, with_headers(row),
                (double)b->in.len / (double)row->stored_bytes,
                (double)b->in.len / (double)with_headers(row));
        json_rates(f, "compress_mbps", row->comp_mbps, cfg->rounds);
        json_rates(f, "decompress_mbps", row->dec_mbps, cfg->rounds);
        fprintf(f, "}%s\n", r + 1 < b->row_count ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    int rc = bench_close_results(f);
    if (rc != 0) {
        fprintf(stderr, "%s: writing %s: %s\n", PROGRAM, cfg->json_path, strerror(-rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg;
    int rc = parse_args(argc, argv, &cfg);
    if (rc >= 0)
        return rc;

    struct bench b = {.cfg = &cfg};
    rc = load_input(&cfg, &b.in);
    if (rc == 0)
        rc = prepare(&b);
    if (rc == 0)
        rc = measure(&b);
    if (rc == 0) {
        print_table(&b);
        if (cfg.json_path)
            rc = write_json(&b);
    }

    ZSTD_freeCCtx(b.cctx);
    ZSTD_freeDCtx(b.dctx);
    free(b.out);
    free(b.stored);
    free(b.chunks);
    free(b.rows);
    free(b.in.files);
    free(b.in.bytes);
    for (size_t i = 0; i < walk.count; i++)
        free(walk.paths[i]);
    free(walk.paths);
    return rc;
}
