/*
 * test_datafile.c - the data segments (store/datafile.c) and their cache:
 * round trips of every kind of chunk and the codec chosen for it, reopening,
 * segment rotation, damage of every kind (bit flips, wrong refs, truncated
 * records, bad segment headers, newer versions, a newest segment that is
 * short or has a header of zeros),
 * the cache's bound and counters, copy and remove, shared chunks, many
 * threads at once,
 * and injected I/O failures.
 */
#include "datafile.h"
#include "faultio.h"
#include "mindb.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#define KiB 1024u
#define MAXC DATAFILE_MAX_CHUNK
#define REC_HEADER 40

enum kind { TEXT, NOISE };

/* The bytes of chunk `index` of object `id`: a few words drawn at random
 * (TEXT, compresses well) or random bytes (NOISE, does not). */
static void fill(uint8_t *buf, size_t len, uint64_t id, uint64_t index, enum kind kind)
{
    static const char *words[] = {"alpha ", "beta ",  "gamma ", "delta ",
                                  "mindb ", "chunk ", "zstd ",  "\n"};
    uint64_t st = id * 0x9e3779b97f4a7c15ull ^ (index + 1) * 0xc2b2ae3d27d4eb4full ^ kind;
    size_t i = 0;
    while (i < len) {
        uint64_t r = tu_rand(&st);
        if (kind == NOISE) {
            for (int b = 0; b < 8 && i < len; b++)
                buf[i++] = (uint8_t)(r >> (8 * b));
        } else {
            for (const char *w = words[r % 8]; *w && i < len; w++)
                buf[i++] = (uint8_t)*w;
        }
    }
}

static void defaults(struct datafile_options *o)
{
    memset(o, 0, sizeof *o);
    o->compression_level = 3;
    o->cache_bytes = 4 << 20;
    o->segment_bytes = 64 << 20;
}

static int try_open(const struct datafile_options *o, int create, struct datafile **df)
{
    int dirfd = open(tu_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dirfd >= 0);
    int rc = datafile_open(dirfd, "data", create, o, df);
    close(dirfd);
    return rc;
}

static struct datafile *open_df(const struct datafile_options *o)
{
    struct datafile *df = NULL;
    CHECK_OK(try_open(o, 1, &df));
    return df;
}

static void seg_path(char out[TU_PATH_MAX], uint32_t seg)
{
    tu_path(out, "data/%08x.seg", seg);
}

/* Writes chunk (id, index) of `len` bytes and returns its ref. */
static struct chunk_ref put(struct datafile *df, uint64_t id, uint64_t index, size_t len,
                            enum kind kind)
{
    static uint8_t buf[MAXC];
    fill(buf, len, id, index, kind);
    struct chunk_ref ref;
    CHECK_OK(datafile_write(df, id, index, buf, len, &ref));
    CHECK(ref.seg != 0);
    CHECK_EQ_U(ref.raw_len, len);
    return ref;
}

/* Reads the chunk back (and verifies it on disk) and compares. */
static void expect(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *ref,
                   enum kind kind)
{
    static uint8_t want[MAXC], got[MAXC];
    fill(want, ref->raw_len, id, index, kind);
    memset(got, 0xaa, sizeof got);
    CHECK_OK(datafile_read(df, id, index, ref, got));
    CHECKF(memcmp(want, got, ref->raw_len) == 0, "chunk %llu/%llu differs", (unsigned long long)id,
           (unsigned long long)index);
    CHECK_OK(datafile_verify(df, id, index, ref));
}

/* ---- round trips ---- */

static void test_round_trip(void)
{
    static const size_t sizes[] = {1, 2, 31, 32, 33, 100, 4095, 4096, 20000, MAXC - 1, MAXC};
    enum { N = sizeof sizes / sizeof sizes[0] };
    struct chunk_ref refs[N][2];
    struct datafile_options o;
    defaults(&o);
    struct datafile *df = open_df(&o);
    CHECK_EQ(datafile_active_segment(df), 0); /* made at the first write */
    uint64_t bytes = 0;
    for (size_t i = 0; i < N; i++)
        for (int k = TEXT; k <= NOISE; k++) {
            refs[i][k] = put(df, 7, i * 2 + (uint64_t)k, sizes[i], k);
            const struct chunk_ref *r = &refs[i][k];
            bytes += chunk_ref_disk_bytes(r);
            CHECK_EQ_U(chunk_ref_disk_bytes(r), REC_HEADER + r->stored_len);
            /* Tiny and random chunks stay raw, text of a page or more is
             * compressed; in between it depends on what zstd makes of it. */
            if (k == NOISE || sizes[i] <= 2)
                CHECKF(r->codec == CHUNK_RAW, "size %zu kind %d", sizes[i], k);
            else if (sizes[i] >= 4095)
                CHECKF(r->codec == CHUNK_ZSTD, "size %zu", sizes[i]);
            if (r->codec == CHUNK_ZSTD)
                CHECK(r->stored_len < sizes[i] - sizes[i] / 32);
            else
                CHECK_EQ_U(r->stored_len, sizes[i]);
        }
    CHECK_EQ(datafile_active_segment(df), 1);
    struct datafile_stats st;
    datafile_stats(df, &st);
    CHECK_EQ_U(st.chunks_written, 2 * N);
    CHECK_EQ_U(st.bytes_written, bytes);
    CHECK_EQ_U(st.segments, 1);
    CHECK_EQ_U(st.segment_bytes, 64 + bytes);

    for (int pass = 0; pass < 2; pass++) { /* from the cache, then from disk */
        for (size_t i = 0; i < N; i++)
            for (int k = TEXT; k <= NOISE; k++)
                expect(df, 7, i * 2 + (uint64_t)k, &refs[i][k], k);
        datafile_cache_drop(df);
    }
    datafile_stats(df, &st);
    CHECK(st.cache_hits >= 2 * N);
    CHECK(st.cache_misses >= 2 * N);
    CHECK_OK(datafile_sync(df));
    datafile_stats(df, &st);
    CHECK(st.fdatasyncs >= 2); /* the segment and the directory */
    datafile_close(df);

    /* Reopen: everything is there, and appends continue in segment 1. */
    df = open_df(&o);
    CHECK_EQ(datafile_active_segment(df), 1);
    for (size_t i = 0; i < N; i++)
        for (int k = TEXT; k <= NOISE; k++)
            expect(df, 7, i * 2 + (uint64_t)k, &refs[i][k], k);
    struct chunk_ref more = put(df, 8, 0, 5000, TEXT);
    CHECK_EQ(more.seg, 1);
    CHECK_EQ_U(more.off, 64 + bytes);
    expect(df, 8, 0, &more, TEXT);

    /* A hole reads as zeros; bad arguments. */
    uint8_t buf[16] = {1};
    struct chunk_ref hole = {.seg = 0, .raw_len = sizeof buf};
    CHECK_OK(datafile_read(df, 1, 0, &hole, buf));
    for (size_t i = 0; i < sizeof buf; i++)
        CHECK_EQ(buf[i], 0);
    struct chunk_ref r;
    CHECK_EQ(datafile_write(df, 1, 0, buf, 0, &r), -EINVAL);
    static uint8_t big[MAXC + 1];
    CHECK_EQ(datafile_write(df, 1, 0, big, sizeof big, &r), -EINVAL);
    datafile_close(df);

    o.compression_level = 0;
    struct datafile *bad = NULL;
    CHECK_EQ(try_open(&o, 1, &bad), -EINVAL);
}

static void test_rotation(void)
{
    struct datafile_options o;
    defaults(&o);
    o.segment_bytes = 16 * KiB;
    struct datafile *df = open_df(&o);
    struct chunk_ref refs[60];
    for (uint64_t i = 0; i < 60; i++)
        refs[i] = put(df, 3, i, 1000 + i * 97, i % 3 ? NOISE : TEXT);
    uint32_t segs[64];
    uint64_t sizes[64];
    size_t n = datafile_segments(df, segs, sizes, 64);
    CHECK(n >= 4);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_U(segs[i], i + 1);
        /* A segment ends with the record that took it to the limit. */
        CHECK(sizes[i] < o.segment_bytes + REC_HEADER + MAXC);
        if (i + 1 < n)
            CHECK(sizes[i] >= o.segment_bytes);
        char path[TU_PATH_MAX];
        seg_path(path, segs[i]);
        CHECK_EQ_U(tu_file_size(path), sizes[i]);
    }
    CHECK_EQ_U(datafile_active_segment(df), segs[n - 1]);
    CHECK_EQ(datafile_segments(df, segs, sizes, 2), n);
    for (uint64_t i = 0; i < 60; i++)
        expect(df, 3, i, &refs[i], i % 3 ? NOISE : TEXT);
    CHECK_OK(datafile_sync(df));
    datafile_close(df);

    char dir[TU_PATH_MAX];
    tu_path(dir, "data");
    CHECK_EQ(tu_count_files(dir, "", ".seg"), n);
    df = open_df(&o);
    for (uint64_t i = 0; i < 60; i++)
        expect(df, 3, i, &refs[i], i % 3 ? NOISE : TEXT);
    /* Fill the newest segment (if it is not full yet): then a write makes
     * segment n + 1. */
    for (int i = 0; i < 10 && datafile_active_segment(df) != n + 1; i++)
        put(df, 4, 0, 8000, NOISE);
    CHECK_EQ(datafile_active_segment(df), n + 1);
    datafile_close(df);
}

/* ---- damage ---- */

static void expect_eio(struct datafile *df, uint64_t id, uint64_t index, const struct chunk_ref *r)
{
    static uint8_t buf[MAXC];
    CHECK_EQ(datafile_read(df, id, index, r, buf), -EIO);
    CHECK_EQ(datafile_verify(df, id, index, r), -EIO);
}

static void flip_all(struct datafile *df, const struct chunk_ref *r, uint64_t id, uint64_t index,
                     unsigned payload_step)
{
    char path[TU_PATH_MAX];
    seg_path(path, r->seg);
    uint64_t bits = 8 * chunk_ref_disk_bytes(r);
    for (uint64_t b = 0; b < bits; b += b < 8 * REC_HEADER ? 1 : payload_step) {
        tu_flip_bit(path, r->off + b / 8, (unsigned)(b % 8));
        static uint8_t buf[MAXC];
        int rc = datafile_read(df, id, index, r, buf);
        CHECKF(rc == -EIO, "bit %llu: read returned %d", (unsigned long long)b, rc);
        CHECK_EQ(datafile_verify(df, id, index, r), -EIO);
        tu_flip_bit(path, r->off + b / 8, (unsigned)(b % 8));
    }
}

static void test_bit_flips(void)
{
    struct datafile_options o;
    defaults(&o);
    o.cache_bytes = 0; /* every read goes to the disk */
    struct datafile *df = open_df(&o);
    struct chunk_ref z = put(df, 11, 0, 30000, TEXT);
    struct chunk_ref raw = put(df, 11, 1, 3000, NOISE);
    struct chunk_ref tiny = put(df, 11, 2, 1, NOISE);
    CHECK_EQ(z.codec, CHUNK_ZSTD);
    CHECK_EQ(raw.codec, CHUNK_RAW);
    flip_all(df, &z, 11, 0, 3);
    flip_all(df, &raw, 11, 1, 61);
    flip_all(df, &tiny, 11, 2, 1);
    expect(df, 11, 0, &z, TEXT);
    expect(df, 11, 1, &raw, NOISE);
    expect(df, 11, 2, &tiny, NOISE);
    datafile_close(df);
}

static void test_wrong_ref(void)
{
    struct datafile_options o;
    defaults(&o);
    struct datafile *df = open_df(&o);
    struct chunk_ref a = put(df, 5, 9, 20000, TEXT);
    struct chunk_ref b = put(df, 5, 10, 2000, NOISE);
    /* Both in the cache (they were just written), then from disk only: a
     * ref is answered the same either way. */
    for (int cached = 1; cached >= 0; cached--) {
        expect_eio(df, 6, 9, &a);
        expect_eio(df, 5, 8, &a);
        expect_eio(df, 5, 9, &b);
        struct chunk_ref r = a;
        r.raw_len++;
        expect_eio(df, 5, 9, &r);
        r = a;
        r.raw_len--;
        expect_eio(df, 5, 9, &r);
        r = a;
        r.stored_len--;
        expect_eio(df, 5, 9, &r);
        r = a;
        r.codec = CHUNK_RAW;
        expect_eio(df, 5, 9, &r);
        r = a;
        r.codec = 7;
        expect_eio(df, 5, 9, &r);
        r = b;
        r.codec = CHUNK_ZSTD;
        expect_eio(df, 5, 10, &r);
        r = a;
        r.off++;
        expect_eio(df, 5, 9, &r);
        r = a;
        r.off = 0;
        expect_eio(df, 5, 9, &r);
        r = b;
        r.off += 1 << 20; /* beyond the end */
        expect_eio(df, 5, 10, &r);
        r = a;
        r.seg = 99;
        expect_eio(df, 5, 9, &r);
        struct chunk_ref out;
        CHECK_EQ(datafile_copy(df, 6, 9, &a, &out), -EIO);
        if (cached) {
            struct datafile_stats st;
            datafile_stats(df, &st);
            CHECK_EQ_U(st.cache_hits, 0);
        }
        datafile_cache_drop(df);
    }
    expect(df, 5, 9, &a, TEXT);
    expect(df, 5, 10, &b, NOISE);
    datafile_close(df);
}

static void test_truncated(void)
{
    struct datafile_options o;
    defaults(&o);
    o.cache_bytes = 0;
    struct datafile *df = open_df(&o);
    struct chunk_ref a = put(df, 1, 0, 10000, NOISE);
    struct chunk_ref b = put(df, 1, 1, 10000, TEXT);
    datafile_close(df);
    char path[TU_PATH_MAX];
    seg_path(path, 1);
    uint64_t cuts[] = {b.off + chunk_ref_disk_bytes(&b) - 1, b.off + REC_HEADER + 1,
                       b.off + REC_HEADER, b.off + 20, b.off};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tu_truncate(path, cuts[i]);
        df = open_df(&o);
        expect(df, 1, 0, &a, NOISE);
        expect_eio(df, 1, 1, &b);
        datafile_close(df);
    }
    /* A torn tail: appends go after it, and it stays dead space. */
    tu_truncate(path, b.off + 30);
    df = open_df(&o);
    struct chunk_ref c = put(df, 1, 2, 500, TEXT);
    CHECK_EQ_U(c.off, b.off + 30);
    expect(df, 1, 0, &a, NOISE);
    expect(df, 1, 2, &c, TEXT);
    datafile_close(df);
}

/* Writes two segments and closes; returns the path of the first. */
static void two_segments(char path[TU_PATH_MAX])
{
    struct datafile_options o;
    defaults(&o);
    o.segment_bytes = 4 * KiB;
    struct datafile *df = open_df(&o);
    while (datafile_active_segment(df) != 2)
        put(df, 1, 0, 3000, NOISE);
    CHECK_OK(datafile_sync(df));
    datafile_close(df);
    seg_path(path, 1);
}

static void write_header(const char *path, uint32_t version, uint32_t no)
{
    uint8_t h[64] = "MINDBSEG";
    memcpy(h + 8, &version, 4); /* the test machine is little-endian */
    memcpy(h + 12, &no, 4);
    uint64_t sum = XXH3_64bits(h, 56);
    memcpy(h + 56, &sum, 8);
    tu_pwrite_file(path, h, sizeof h, 0);
}

static void test_bad_header(void)
{
    char path[TU_PATH_MAX];
    two_segments(path);
    struct datafile_options o;
    defaults(&o);
    struct datafile *df = NULL;
    /* Every bit of the header matters (the version's high bits aside: they
     * read as a newer version). */
    for (unsigned b = 0; b < 64 * 8; b++) {
        tu_flip_bit(path, b / 8, b % 8);
        int rc = try_open(&o, 0, &df);
        if (b >= 8 * 8 && b < 12 * 8 && b != 8 * 8)
            CHECKF(rc == MINDB_EVERSION, "bit %u: %d", b, rc);
        else
            CHECKF(rc == MINDB_ECORRUPT, "bit %u: %d", b, rc);
        tu_flip_bit(path, b / 8, b % 8);
    }
    /* A valid header of another number. */
    write_header(path, 1, 2);
    CHECK_EQ(try_open(&o, 0, &df), MINDB_ECORRUPT);
    write_header(path, 0, 1);
    CHECK_EQ(try_open(&o, 0, &df), MINDB_ECORRUPT);
    write_header(path, 1, 1);
    CHECK_OK(try_open(&o, 0, &df));
    datafile_close(df);
}

static void test_newer_version(void)
{
    char path[TU_PATH_MAX];
    two_segments(path);
    struct datafile_options o;
    defaults(&o);
    struct datafile *df = NULL;
    write_header(path, 2, 1);
    CHECK_EQ(try_open(&o, 0, &df), MINDB_EVERSION);
    o.read_only = 1;
    CHECK_EQ(try_open(&o, 0, &df), MINDB_EVERSION);
}

static void test_short_segment(void)
{
    char first[TU_PATH_MAX], third[TU_PATH_MAX], dir[TU_PATH_MAX];
    two_segments(first);
    seg_path(third, 3);
    tu_path(dir, "data");
    struct datafile_options o;
    defaults(&o);
    struct datafile *df = NULL;
    static const uint64_t lens[] = {0, 10, 63};
    for (size_t i = 0; i < 3; i++) {
        uint8_t junk[64] = "MINDBSEG";
        int fd = open(third, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        CHECK_EQ(write(fd, junk, lens[i]), lens[i]);
        close(fd);
        /* Read-only: left alone. */
        o.read_only = 1;
        CHECK_OK(try_open(&o, 0, &df));
        CHECK_EQ(tu_exists(third), 1);
        struct datafile_stats st;
        datafile_stats(df, &st);
        CHECK_EQ_U(st.segments_discarded, 1);
        datafile_close(df);
        o.read_only = 0;
        df = open_df(&o);
        CHECK_EQ(tu_exists(third), 0);
        datafile_stats(df, &st);
        CHECK_EQ_U(st.segments_discarded, 1);
        uint32_t segs[4];
        uint64_t sizes[4];
        CHECK_EQ(datafile_segments(df, segs, sizes, 4), 2);
        CHECK_OK(datafile_sync(df)); /* the directory, after the removal */
        datafile_close(df);
    }
    df = open_df(&o);
    struct chunk_ref r = put(df, 9, 9, 100, TEXT);
    CHECK(r.seg >= 2);
    expect(df, 9, 9, &r, TEXT);
    datafile_close(df);

    /* A short segment that is not the newest is damage. */
    tu_truncate(first, 40);
    CHECK_EQ(try_open(&o, 0, &df), MINDB_ECORRUPT);
    CHECK_EQ(tu_exists(first), 1);
}

/* A newest segment whose header never reached the disk (the file was made
 * and sized, its data lost): discarded like a short one. Anywhere else a
 * header of zeros is damage. */
static void test_zeroed_header(void)
{
    char first[TU_PATH_MAX], third[TU_PATH_MAX], dir[TU_PATH_MAX];
    seg_path(third, 3);
    tu_path(dir, "data");
    struct datafile_options o;
    defaults(&o);
    struct datafile *df = NULL;
    struct datafile_stats st;
    uint32_t segs[4];
    uint64_t sizes[4];
    /* Only the header, then a header of zeros before bytes that did reach
     * the disk. */
    static const uint64_t lens[] = {64, 64 + 3000};
    for (size_t i = 0; i < 2; i++) {
        CHECK_OK(tu_rm_rf(dir));
        two_segments(first);
        static uint8_t bytes[64 + 3000];
        memset(bytes, 0, 64);
        memset(bytes + 64, 0x5a, sizeof bytes - 64);
        int fd = open(third, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        CHECK_EQ(write(fd, bytes, lens[i]), lens[i]);
        close(fd);
        o.read_only = 1;
        CHECK_OK(try_open(&o, 0, &df));
        CHECK_EQ(tu_exists(third), 1);
        CHECK_EQ(datafile_segments(df, segs, sizes, 4), 2);
        datafile_stats(df, &st);
        CHECK_EQ_U(st.segments_discarded, 1);
        datafile_close(df);
        o.read_only = 0;
        df = open_df(&o);
        CHECK_EQ(tu_exists(third), 0);
        CHECK_EQ(datafile_segments(df, segs, sizes, 4), 2);
        datafile_stats(df, &st);
        CHECK_EQ_U(st.segments_discarded, 1);
        /* Segment 2 is not resumed: appends go to a new one, and the
         * number of the discarded one is not reused in this run. */
        struct chunk_ref r = put(df, 9, i, 100, TEXT);
        CHECK_EQ(r.seg, 4);
        CHECK_OK(datafile_sync(df)); /* the directory, after the removal */
        datafile_close(df);
        df = open_df(&o);
        datafile_stats(df, &st);
        CHECK_EQ_U(st.segments_discarded, 0);
        expect(df, 9, i, &r, TEXT);
        datafile_close(df);
    }

    /* Zeros over the header of a segment that is not the newest. */
    static const uint8_t zeros[64];
    tu_pwrite_file(first, zeros, sizeof zeros, 0);
    CHECK_EQ(try_open(&o, 0, &df), MINDB_ECORRUPT);
    o.read_only = 1;
    CHECK_EQ(try_open(&o, 0, &df), MINDB_ECORRUPT);
    CHECK_EQ(tu_exists(first), 1);
}

/* ---- cache, copy, remove ---- */

static void test_cache(void)
{
    struct datafile_options o;
    defaults(&o);
    o.cache_bytes = 256 * KiB;
    struct datafile *df = open_df(&o);
    struct chunk_ref refs[64];
    struct datafile_stats st;
    for (uint64_t i = 0; i < 64; i++) {
        refs[i] = put(df, 2, i, 1 + (i * 7919) % (32 * KiB), i % 2 ? NOISE : TEXT);
        datafile_stats(df, &st);
        CHECK_LE_U(st.cache_bytes, o.cache_bytes);
    }
    CHECK(st.cache_bytes > o.cache_bytes / 2);
    /* The last few written are cached: hits, no misses. */
    datafile_stats(df, &st);
    uint64_t hits = st.cache_hits, misses = st.cache_misses;
    for (uint64_t i = 60; i < 64; i++)
        expect(df, 2, i, &refs[i], i % 2 ? NOISE : TEXT);
    datafile_stats(df, &st);
    CHECK_EQ_U(st.cache_hits, hits + 4);
    CHECK_EQ_U(st.cache_misses, misses);
    /* The first ones were evicted: misses, then hits. */
    for (int round = 0; round < 2; round++)
        for (uint64_t i = 0; i < 4; i++)
            expect(df, 2, i, &refs[i], i % 2 ? NOISE : TEXT);
    datafile_stats(df, &st);
    CHECK_EQ_U(st.cache_misses, misses + 4);
    CHECK_EQ_U(st.cache_hits, hits + 8);
    CHECK_LE_U(st.cache_bytes, o.cache_bytes);
    datafile_cache_drop(df);
    datafile_stats(df, &st);
    CHECK_EQ_U(st.cache_bytes, 0);
    for (uint64_t i = 0; i < 64; i++)
        expect(df, 2, i, &refs[i], i % 2 ? NOISE : TEXT);
    datafile_stats(df, &st);
    CHECK_LE_U(st.cache_bytes, o.cache_bytes);
    datafile_close(df);

    /* cache_bytes 0: nothing held, everything a miss. */
    o.cache_bytes = 0;
    df = open_df(&o);
    for (int round = 0; round < 3; round++)
        expect(df, 2, 5, &refs[5], NOISE);
    datafile_stats(df, &st);
    CHECK_EQ_U(st.cache_hits, 0);
    CHECK_EQ_U(st.cache_misses, 3);
    CHECK_EQ_U(st.cache_bytes, 0);
    datafile_close(df);
}

static void test_copy_remove(void)
{
    struct datafile_options o;
    defaults(&o);
    o.segment_bytes = 8 * KiB;
    struct datafile *df = open_df(&o);
    struct chunk_ref a = put(df, 1, 0, 3000, TEXT);
    struct chunk_ref b = put(df, 1, 1, 3000, NOISE);
    CHECK_EQ(a.seg, 1);
    CHECK_EQ(b.seg, 1);
    while (datafile_active_segment(df) == 1)
        put(df, 2, 0, 3000, NOISE);
    struct chunk_ref a2, b2, b3;
    CHECK_OK(datafile_copy(df, 1, 0, &a, &a2));
    CHECK_OK(datafile_copy(df, 1, 1, &b, &b2));
    CHECK_OK(datafile_copy(df, 1, 1, &b2, &b3)); /* a copy of a copy */
    CHECK_EQ(a2.seg, 2);
    CHECK_EQ(a2.codec, a.codec);
    CHECK_EQ(a2.stored_len, a.stored_len);
    CHECK_EQ(a2.raw_len, a.raw_len);
    CHECK(b3.seg > b2.seg || b3.off > b2.off);

    CHECK_EQ(datafile_remove(df, datafile_active_segment(df)), -EBUSY);
    CHECK_EQ(datafile_remove(df, 77), -ENOENT);
    CHECK_OK(datafile_remove(df, 1));
    char path[TU_PATH_MAX];
    seg_path(path, 1);
    CHECK_EQ(tu_exists(path), 0);
    CHECK_EQ(datafile_remove(df, 1), -ENOENT);
    uint32_t segs[8];
    uint64_t sizes[8];
    size_t n = datafile_segments(df, segs, sizes, 8);
    CHECK(n >= 1 && segs[0] == 2);
    expect_eio(df, 1, 0, &a); /* its cached copy went with it */
    expect(df, 1, 0, &a2, TEXT);
    expect(df, 1, 1, &b2, NOISE);
    expect(df, 1, 1, &b3, NOISE);
    struct datafile_stats st;
    datafile_stats(df, &st);
    uint64_t syncs = st.fdatasyncs;
    CHECK_OK(datafile_sync(df));
    datafile_stats(df, &st);
    CHECK(st.fdatasyncs >= syncs + 2);
    datafile_close(df);

    df = open_df(&o);
    CHECK_EQ(datafile_segments(df, segs, sizes, 8), n);
    expect(df, 1, 0, &a2, TEXT);
    expect(df, 1, 1, &b3, NOISE);
    /* Numbers are not reused. */
    while (datafile_active_segment(df) <= segs[n - 1])
        put(df, 2, 1, 3000, NOISE);
    CHECK_EQ(datafile_active_segment(df), segs[n - 1] + 1);
    datafile_close(df);
}

/* ---- shared chunks ---- */

/* datafile_write_shared of chunk (id, index) with the bytes of chunk
 * (like_id, like_index). */
static struct chunk_ref put_shared(struct datafile *df, uint64_t id, uint64_t index,
                                   uint64_t like_id, uint64_t like_index, size_t len)
{
    static uint8_t buf[MAXC];
    fill(buf, len, like_id, like_index, TEXT);
    struct chunk_ref ref;
    CHECK_OK(datafile_write_shared(df, id, index, buf, len, &ref));
    CHECK(ref.seg != 0);
    CHECK_EQ_U(ref.raw_len, len);
    return ref;
}

/* Reads (id, index) at `ref`, through the cache and from disk, and
 * compares it with the bytes of (like_id, like_index). */
static void expect_like(struct datafile *df, uint64_t id, uint64_t index,
                        const struct chunk_ref *ref, uint64_t like_id, uint64_t like_index)
{
    static uint8_t want[MAXC], got[MAXC];
    fill(want, ref->raw_len, like_id, like_index, TEXT);
    for (int cold = 0; cold < 2; cold++) {
        if (cold)
            datafile_cache_drop(df);
        memset(got, 0xaa, sizeof got);
        CHECK_OK(datafile_read(df, id, index, ref, got));
        CHECKF(memcmp(want, got, ref->raw_len) == 0, "chunk %llu/%llu (cold %d) differs",
               (unsigned long long)id, (unsigned long long)index, cold);
    }
    CHECK_OK(datafile_verify(df, id, index, ref));
}

static int is_shared(const struct chunk_ref *r)
{
    return (r->codec & CHUNK_SHARED) != 0;
}

static int same_place(const struct chunk_ref *a, const struct chunk_ref *b)
{
    return a->seg == b->seg && a->off == b->off;
}

static void test_shared(void)
{
    struct fault f;
    fault_init(&f);
    struct datafile_options o;
    defaults(&o);
    o.io = &f.io;

    /* Without share_chunks (a format 1 store) every chunk is written. */
    struct datafile *df = open_df(&o);
    struct chunk_ref a = put_shared(df, 1, 0, 1, 0, 5000);
    struct chunk_ref b = put_shared(df, 2, 0, 1, 0, 5000);
    CHECKF(!is_shared(&b) && !same_place(&a, &b), "b: codec %#x at %u/%llu, a at %u/%llu", b.codec,
           b.seg, (unsigned long long)b.off, a.seg, (unsigned long long)a.off);
    datafile_close(df);

    o.share_chunks = 1;
    df = open_df(&o);
    struct datafile_stats st;
    a = put_shared(df, 1, 0, 1, 0, 5000);
    CHECKF(!is_shared(&a), "the first copy is shared: codec %#x", a.codec);
    datafile_stats(df, &st);
    uint64_t written = st.bytes_written;
    b = put_shared(df, 2, 3, 1, 0, 5000);
    CHECKF(is_shared(&b) && same_place(&a, &b),
           "b: codec %#x at %u/%llu, expected shared at %u/%llu", b.codec, b.seg,
           (unsigned long long)b.off, a.seg, (unsigned long long)a.off);
    CHECK_EQ(b.codec & ~CHUNK_SHARED, a.codec);
    datafile_stats(df, &st);
    CHECK_EQ_U(st.bytes_written, written);
    CHECK_EQ_U(st.shared_chunks, 1);
    CHECK_EQ_U(st.shared_bytes, chunk_ref_record_bytes(&a));
    CHECK_EQ_U(chunk_ref_disk_bytes(&b), 0);
    CHECK_EQ_U(chunk_ref_disk_bytes(&a), chunk_ref_record_bytes(&a));
    expect_like(df, 2, 3, &b, 1, 0);
    expect_like(df, 1, 0, &a, 1, 0);
    /* A shared ref still checks what it can: lengths and codec. */
    struct chunk_ref bad = b;
    bad.raw_len--;
    expect_eio(df, 2, 3, &bad);
    bad = b;
    bad.codec = CHUNK_SHARED | (a.codec == CHUNK_RAW ? CHUNK_ZSTD : CHUNK_RAW);
    expect_eio(df, 2, 3, &bad);
    /* The ref it was written for still checks id and index. */
    expect_eio(df, 2, 3, &a);

    /* A chunk stored raw is shared alike. */
    static uint8_t noise[MAXC], got[MAXC];
    fill(noise, 7000, 9, 0, NOISE);
    struct chunk_ref r1, r2;
    CHECK_OK(datafile_write_shared(df, 9, 0, noise, 7000, &r1));
    CHECK_OK(datafile_write_shared(df, 9, 1, noise, 7000, &r2));
    CHECKF(r1.codec == CHUNK_RAW && r2.codec == (CHUNK_RAW | CHUNK_SHARED) && same_place(&r1, &r2),
           "raw chunk: codecs %#x and %#x, at %llu and %llu", r1.codec, r2.codec,
           (unsigned long long)r1.off, (unsigned long long)r2.off);
    for (int cold = 0; cold < 2; cold++) {
        if (cold)
            datafile_cache_drop(df);
        memset(got, 0xaa, sizeof got);
        CHECK_OK(datafile_read(df, 9, 1, &r2, got));
        CHECKF(memcmp(got, noise, 7000) == 0, "shared raw chunk (cold %d) differs", cold);
    }

    /* Other bytes of the same length, or a prefix, are not shared. */
    struct chunk_ref c = put_shared(df, 3, 0, 1, 1, 5000);
    struct chunk_ref d = put_shared(df, 3, 1, 1, 0, 4999);
    CHECKF(!is_shared(&c) && !is_shared(&d), "c codec %#x, d codec %#x", c.codec, d.codec);

    /* A compaction's copy of a shared ref stays shared, and reads. */
    struct chunk_ref b2;
    CHECK_OK(datafile_copy(df, 2, 3, &b, &b2));
    CHECK(is_shared(&b2) && !same_place(&b, &b2));
    expect_like(df, 2, 3, &b2, 1, 0);

    /* A record whose bytes no longer read back is not shared: a new one is
     * written, and the damaged one is not offered again. */
    char path[TU_PATH_MAX];
    seg_path(path, c.seg);
    uint8_t byte;
    tu_pread_file(path, &byte, 1, c.off + REC_HEADER + 10);
    byte ^= 0x40;
    tu_pwrite_file(path, &byte, 1, c.off + REC_HEADER + 10);
    datafile_cache_drop(df);
    struct chunk_ref e = put_shared(df, 4, 0, 1, 1, 5000);
    CHECKF(!is_shared(&e), "shared a damaged record: codec %#x", e.codec);
    struct chunk_ref e2 = put_shared(df, 4, 1, 1, 1, 5000);
    CHECKF(is_shared(&e2) && same_place(&e, &e2), "e2: codec %#x at %u/%llu, e at %u/%llu",
           e2.codec, e2.seg, (unsigned long long)e2.off, e.seg, (unsigned long long)e.off);

    /* A failed sync may have lost its segments' records: none is shared
     * after it. */
    CHECK_OK(datafile_sync(df));
    struct chunk_ref g = put_shared(df, 5, 0, 5, 0, 3000);
    f.error[OP_FDATASYNC] = -EIO;
    CHECK_EQ(datafile_sync(df), -EIO);
    f.error[OP_FDATASYNC] = 0;
    struct chunk_ref g2 = put_shared(df, 5, 1, 5, 0, 3000);
    CHECKF(!is_shared(&g2) && g2.seg != g.seg, "g2: codec %#x in segment %u, g in %u", g2.codec,
           g2.seg, g.seg);
    expect_like(df, 5, 1, &g2, 5, 0);

    /* Nor are the records of a segment compaction took, or deleted. */
    struct chunk_ref h = put_shared(df, 6, 0, 6, 0, 3000);
    datafile_retire(df, h.seg);
    struct chunk_ref h2 = put_shared(df, 6, 1, 6, 0, 3000);
    CHECKF(!is_shared(&h2), "shared a record of a retired segment: codec %#x", h2.codec);
    CHECK_OK(datafile_seal_active(df));
    struct chunk_ref h3 = put_shared(df, 6, 2, 6, 0, 3000);
    CHECKF(is_shared(&h3) && same_place(&h3, &h2), "h3: codec %#x", h3.codec);
    CHECK_OK(datafile_remove(df, h2.seg));
    struct chunk_ref h4 = put_shared(df, 6, 3, 6, 0, 3000);
    CHECKF(!is_shared(&h4) && h4.seg != h2.seg, "h4: codec %#x in segment %u", h4.codec, h4.seg);
    CHECK_OK(datafile_sync(df));
    datafile_close(df);

    /* Shared refs read the same after a reopen. */
    df = open_df(&o);
    expect_like(df, 2, 3, &b, 1, 0);
    expect_like(df, 2, 3, &b2, 1, 0);
    expect_like(df, 4, 1, &e2, 1, 1);
    datafile_close(df);
}

/* ---- threads ---- */

#define THREADS 4
#define PER_THREAD 1000

struct worker {
    struct datafile *df;
    uint64_t id;
    struct chunk_ref refs[PER_THREAD];
    const char *error;
    int rc;
};

static enum kind kind_of(uint64_t i)
{
    return i % 3 == 0 ? NOISE : TEXT;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t *buf = malloc(MAXC), *got = malloc(MAXC);
    uint64_t rng = w->id * 1000003;
    for (uint64_t i = 0; i < PER_THREAD && !w->error; i++) {
        size_t len = tu_rand_range(&rng, 0, 9) == 0 ? MAXC : tu_rand_range(&rng, 1, 12 * KiB);
        fill(buf, len, w->id, i, kind_of(i));
        w->rc = datafile_write(w->df, w->id, i, buf, len, &w->refs[i]);
        if (w->rc) {
            w->error = "write";
            break;
        }
        uint64_t j = tu_rand_range(&rng, 0, i);
        fill(buf, w->refs[j].raw_len, w->id, j, kind_of(j));
        w->rc = datafile_read(w->df, w->id, j, &w->refs[j], got);
        if (w->rc || memcmp(buf, got, w->refs[j].raw_len) != 0)
            w->error = "read";
        else if (i % 7 == 0 && (w->rc = datafile_verify(w->df, w->id, j, &w->refs[j])) != 0)
            w->error = "verify";
        else if (i % 50 == 0 && (w->rc = datafile_sync(w->df)) != 0)
            w->error = "sync";
        else if (w->id == 1 && i % 100 == 0)
            datafile_cache_drop(w->df);
        else if (w->id == 2 && i % 10 == 0) {
            struct datafile_stats st;
            datafile_stats(w->df, &st);
            uint32_t segs[8];
            uint64_t sizes[8];
            if (datafile_segments(w->df, segs, sizes, 8) < st.segments) /* they only grow */
                w->error = "segments";
        }
    }
    free(buf);
    free(got);
    return NULL;
}

static void test_threads(void)
{
    struct datafile_options o;
    defaults(&o);
    o.compression_level = 1;
    o.segment_bytes = 128 * KiB; /* hundreds: descriptors are opened and closed */
    o.cache_bytes = 2 << 20;
    struct datafile *df = open_df(&o);
    static struct worker w[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (struct worker){.df = df, .id = (uint64_t)t + 1};
        CHECK_EQ(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        CHECK_EQ(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < THREADS; t++)
        CHECKF(!w[t].error, "thread %d: %s: %d", t, w[t].error, w[t].rc);
    CHECK_OK(datafile_sync(df));
    struct datafile_stats st;
    datafile_stats(df, &st);
    CHECK_EQ_U(st.chunks_written, THREADS * PER_THREAD);
    CHECK(st.segments > 100);
    CHECK_LE_U(st.cache_bytes, o.cache_bytes);
    datafile_close(df);

    o.cache_bytes = 0;
    df = open_df(&o);
    for (int t = 0; t < THREADS; t++)
        for (uint64_t i = 0; i < PER_THREAD; i++)
            expect(df, w[t].id, i, &w[t].refs[i], kind_of(i));
    /* Every segment was read, yet few descriptors are open. */
    size_t fds = tu_count_files("/proc/self/fd", "", "");
    CHECKF(fds < 64 + 16, "%zu descriptors open", fds);
    tu_note("%llu segments, %zu descriptors open", (unsigned long long)st.segments, fds);
    datafile_close(df);
}

/* ---- injected failures ---- */

/* Calls that change something on disk. */
static long disk_changes(const struct fault *f)
{
    return f->opens_for_writing + f->by_op[OP_PWRITE] + f->by_op[OP_FDATASYNC] +
           f->by_op[OP_FSYNC] + f->by_op[OP_RENAMEAT] + f->by_op[OP_UNLINKAT];
}

static void test_enospc(void)
{
    struct fault f;
    fault_init(&f);
    struct datafile_options o;
    defaults(&o);
    o.io = &f.io;
    o.segment_bytes = 8 * KiB;
    struct datafile *df = open_df(&o);
    uint8_t buf[3000];
    fill(buf, sizeof buf, 1, 0, NOISE);
    struct chunk_ref refs[40];
    uint64_t n = 0;
    for (int round = 0; round < 6; round++) {
        /* Round 0 fails making the first segment, later ones fail appends
         * to an existing segment or the making of the next one. */
        f.error[OP_PWRITE] = -ENOSPC;
        for (int i = 0; i < 3; i++) {
            struct chunk_ref r;
            CHECK_EQ(datafile_write(df, 1, 999, buf, sizeof buf, &r), -ENOSPC);
        }
        f.error[OP_PWRITE] = 0;
        for (int i = 0; i < round + 1; i++, n++)
            refs[n] = put(df, 1, n, 3000, NOISE);
        CHECK_OK(datafile_sync(df));
    }
    for (uint64_t i = 0; i < n; i++)
        expect(df, 1, i, &refs[i], NOISE);
    datafile_close(df);
    o.io = NULL;
    df = open_df(&o);
    for (uint64_t i = 0; i < n; i++)
        expect(df, 1, i, &refs[i], NOISE);
    datafile_close(df);
}

static void test_sync_failure(void)
{
    struct fault f;
    fault_init(&f);
    struct datafile_options o;
    defaults(&o);
    o.io = &f.io;
    struct datafile *df = open_df(&o);
    struct chunk_ref a = put(df, 1, 0, 5000, TEXT);
    CHECK_EQ(a.seg, 1);
    f.error[OP_FDATASYNC] = -EIO;
    CHECK_EQ(datafile_sync(df), -EIO);
    f.error[OP_FDATASYNC] = 0;
    struct chunk_ref b = put(df, 1, 1, 5000, TEXT);
    CHECK_EQ(b.seg, 2); /* segment 1 is closed to appends */
    CHECK_OK(datafile_sync(df));

    /* The directory's fsync failing: the same, and it is retried. */
    f.error[OP_FSYNC] = -EIO;
    CHECK_EQ(datafile_sync(df), 0); /* nothing made since the last sync */
    struct chunk_ref c = put(df, 1, 2, 100, TEXT);
    CHECK_EQ(c.seg, 2);
    CHECK_OK(datafile_remove(df, 1));
    CHECK_EQ(datafile_sync(df), -EIO);
    f.error[OP_FSYNC] = 0;
    struct chunk_ref d = put(df, 1, 3, 100, TEXT);
    CHECK_EQ(d.seg, 3);
    struct datafile_stats st;
    datafile_stats(df, &st);
    uint64_t syncs = st.fdatasyncs;
    CHECK_OK(datafile_sync(df));
    datafile_stats(df, &st);
    CHECK_EQ_U(st.fdatasyncs, syncs + 2); /* segment 3 and the directory */
    expect(df, 1, 1, &b, TEXT);
    expect(df, 1, 2, &c, TEXT);
    expect(df, 1, 3, &d, TEXT);

    /* A read error is passed on as it is. */
    datafile_cache_drop(df);
    f.error[OP_PREAD] = -ENXIO;
    uint8_t buf[5000];
    CHECK_EQ(datafile_read(df, 1, 1, &b, buf), -ENXIO);
    f.error[OP_PREAD] = 0;
    expect(df, 1, 1, &b, TEXT);
    datafile_close(df);
}

/* Fails the Nth file operation of a short life (open, writes, copies,
 * syncs, a removal) for N = 1, 2, ... until one runs clean: every chunk
 * whose write returned 0 must read back after a clean reopen. */
static void test_failure_loop(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "data");
    struct datafile_options o;
    defaults(&o);
    o.segment_bytes = 6 * KiB;
    long n;
    for (n = 1; n < 10000; n++) {
        CHECK_OK(tu_rm_rf(dir));
        struct fault f;
        fault_init(&f);
        fault_arm(&f, n, FAIL_ONCE);
        o.io = &f.io;
        struct chunk_ref refs[12];
        int ok[12] = {0};
        struct datafile *df = NULL;
        if (try_open(&o, 1, &df) == 0) {
            for (uint64_t i = 0; i < 12; i++) {
                static uint8_t buf[2500];
                fill(buf, sizeof buf, 4, i, i % 2 ? TEXT : NOISE);
                if (i % 4 == 3 && ok[i - 1])
                    ok[i] = datafile_copy(df, 4, i - 1, &refs[i - 1], &refs[i]) == 0 ? 2 : 0;
                else
                    ok[i] = datafile_write(df, 4, i, buf, sizeof buf, &refs[i]) == 0;
                if (i % 5 == 4)
                    datafile_sync(df);
            }
            datafile_remove(df, 1);
            datafile_sync(df);
            datafile_close(df);
        }
        int clean = f.injected == 0;
        o.io = NULL;
        int rc = try_open(&o, 1, &df);
        CHECKF(rc == 0, "fault at call %ld: reopen: %d", n, rc);
        for (uint64_t i = 0; i < 12; i++) {
            if (!ok[i] || refs[i].seg == 1)
                continue; /* failed, or removed with segment 1 */
            uint64_t index = ok[i] == 2 ? i - 1 : i;
            expect(df, 4, index, &refs[i], index % 2 ? TEXT : NOISE);
        }
        datafile_close(df);
        fault_destroy(&f);
        if (clean)
            break;
    }
    CHECK(n > 20 && n < 10000);
    tu_note("%ld runs", n);
}

static void test_read_only(void)
{
    struct fault f;
    fault_init(&f);
    struct datafile_options o;
    defaults(&o);
    o.io = &f.io;
    o.read_only = 1;
    struct datafile *df = NULL;
    /* No directory: an error, and nothing is made. */
    CHECK(try_open(&o, 1, &df) < 0);
    char dir[TU_PATH_MAX];
    tu_path(dir, "data");
    CHECK_EQ(tu_exists(dir), 0);

    o.read_only = 0;
    df = open_df(&o);
    struct chunk_ref a = put(df, 1, 0, 5000, TEXT);
    CHECK_OK(datafile_sync(df));
    datafile_close(df);

    o.read_only = 1;
    long changes = disk_changes(&f);
    CHECK_OK(try_open(&o, 1, &df));
    expect(df, 1, 0, &a, TEXT);
    CHECK_EQ(datafile_active_segment(df), 0);
    struct chunk_ref r;
    uint8_t buf[10] = {0};
    CHECK_EQ(datafile_write(df, 1, 1, buf, sizeof buf, &r), -EROFS);
    CHECK_EQ(datafile_copy(df, 1, 0, &a, &r), -EROFS);
    CHECK_EQ(datafile_remove(df, 1), -EROFS);
    CHECK_OK(datafile_sync(df));
    datafile_close(df);
    CHECK_EQ(disk_changes(&f), changes);
    CHECK_EQ(tu_count_files(dir, "", ""), 1 + 2); /* the segment, "." and ".." */
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("round_trip", test_round_trip);
    tu_run("rotation", test_rotation);
    tu_run("bit_flips", test_bit_flips);
    tu_run("wrong_ref", test_wrong_ref);
    tu_run("truncated", test_truncated);
    tu_run("bad_header", test_bad_header);
    tu_run("newer_version", test_newer_version);
    tu_run("short_segment", test_short_segment);
    tu_run("zeroed_header", test_zeroed_header);
    tu_run("cache", test_cache);
    tu_run("copy_remove", test_copy_remove);
    tu_run("shared", test_shared);
    tu_run("threads", test_threads);
    tu_run("enospc", test_enospc);
    tu_run("sync_failure", test_sync_failure);
    tu_run("failure_loop", test_failure_loop);
    tu_run("read_only", test_read_only);
    return tu_finish();
}
