/*
 * fuzz_chunk.c - the data segments and their chunk records (store/segfile.c,
 * store/datafile.c, store/cache.c, zstd frames included) on an arbitrary
 * segment file.
 *
 * Input:
 *   u8  flags: FIX_CHECKSUMS recomputes the segment header's checksum and
 *       that of every record whose lengths fit the file, so that the input
 *       reaches the identity checks and the decompression behind them;
 *       WRITE_BACK opens for writing and adds the round trip below
 *   then the bytes of STORE/data/00000001.seg
 *
 * The target walks the file as records laid back to back after the 64-byte
 * header and reads each through a ref made from the record's own fields,
 * so the fuzzer steers the refs by editing the records.
 *
 * Promises checked, besides no crash, leak or undefined behaviour:
 *  - opening succeeds, or fails with MINDB_ECORRUPT or MINDB_EVERSION;
 *  - a read returns 0 or -EIO, never anything else, and writes no byte
 *    past the chunk's length; verifying gives the same answer;
 *  - a chunk read right has the bytes the record holds: the payload itself
 *    for a raw chunk, what zstd alone makes of it for a compressed one, and
 *    the same again from the cache;
 *  - the same ref asked for under another object id or chunk index is
 *    -EIO; as a shared ref (CHUNK_SHARED) it reads the same bytes;
 *  - WRITE_BACK: each chunk read right is copied (compaction's move) and a
 *    new chunk written, then written again as another chunk, which shares
 *    its record; all read back right, before and after the segment is
 *    synced, closed and opened again.
 *
 * Seeds: corpus/chunk/, made by fuzz_seeds (see README).
 *
 * CI runs it for 30 s (tools/fuzz); the long form, an hour:
 *   tools/fuzz --seconds 3600 chunk
 */
#include "datafile.h"
#include "fuzzutil.h"
#include "mindb.h"

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

#define SEG_NAME "00000001.seg"
#define SEG_HEADER_BYTES 64
#define REC_HEADER_BYTES 40
#define MAX_RECORDS 64
#define FIX_CHECKSUMS 0x1
#define WRITE_BACK 0x2

struct chunk {
    uint64_t id, index;
    struct chunk_ref ref;
    uint8_t *bytes; /* what a read gave: ref.raw_len bytes */
};

/* mindb_strerror() is libmindb's; this target links the data segments
 * alone. */
static const char *error_name(int rc)
{
    switch (rc) {
    case MINDB_ECORRUPT:
        return "MINDB_ECORRUPT";
    case MINDB_EVERSION:
        return "MINDB_EVERSION";
    }
    return rc < 0 ? strerror(-rc) : "success";
}

/* The ref that names the record at `off`, and its owner, from the record's
 * own header (which must fit the file). */
static void ref_at(const uint8_t *seg, uint64_t off, struct chunk *c)
{
    const uint8_t *h = seg + off;
    c->id = fz_get64(h + 16);
    c->index = fz_get64(h + 24);
    c->ref = (struct chunk_ref){.off = off,
                                .seg = 1,
                                .raw_len = fz_get32(h + 32),
                                .stored_len = fz_get32(h + 36),
                                .codec = h[12]};
}

/* What the record's payload holds once decoded, as zstd alone sees it;
 * NULL when it is not a chunk of raw_len bytes. */
static uint8_t *expected_bytes(const uint8_t *seg, const struct chunk_ref *ref)
{
    const uint8_t *payload = seg + ref->off + REC_HEADER_BYTES;
    uint8_t *out = malloc(ref->raw_len ? ref->raw_len : 1);
    FZ_CHECK(out != NULL, "%u bytes", ref->raw_len);
    if (ref->codec == CHUNK_RAW) {
        memcpy(out, payload, ref->raw_len);
        return out;
    }
    size_t n = ZSTD_decompress(out, ref->raw_len, payload, ref->stored_len);
    if (ZSTD_isError(n) || n != ref->raw_len) {
        free(out);
        return NULL;
    }
    return out;
}

/* Reads chunk `c` as the store would; on success c->bytes holds it. */
static int read_chunk(struct datafile *df, struct chunk *c)
{
    /* Exactly the chunk's size, so that a byte written past it is caught;
     * no chunk is larger than DATAFILE_MAX_CHUNK, whatever the ref says. */
    size_t size = c->ref.raw_len < DATAFILE_MAX_CHUNK ? c->ref.raw_len : DATAFILE_MAX_CHUNK;
    uint8_t *buf = malloc(size ? size : 1);
    FZ_CHECK(buf != NULL, "%zu bytes", size);
    int rc = datafile_read(df, c->id, c->index, &c->ref, buf);
    FZ_CHECK(rc == 0 || rc == -EIO,
             "reading seg %u off %" PRIu64 " (codec %u, %u -> %u bytes) gives 0 or -EIO, got %d",
             c->ref.seg, c->ref.off, c->ref.codec, c->ref.stored_len, c->ref.raw_len, rc);
    if (rc == 0)
        c->bytes = buf;
    else
        free(buf);
    return rc;
}

static void expect_bytes(struct datafile *df, const struct chunk *c, const char *when)
{
    struct chunk again = *c;
    again.bytes = NULL;
    int rc = read_chunk(df, &again);
    FZ_CHECK(rc == 0 && memcmp(again.bytes, c->bytes, c->ref.raw_len) == 0,
             "%s, chunk %" PRIu64 "/%" PRIu64 " at seg %u off %" PRIu64
             " reads back the same %u bytes, got %s",
             when, c->id, c->index, c->ref.seg, c->ref.off, c->ref.raw_len,
             rc ? "an error" : "other bytes");
    free(again.bytes);
}

static int open_data(int store_fd, int read_only, struct datafile **df)
{
    struct datafile_options o = {.compression_level = 3,
                                 .cache_bytes = 1 << 20,
                                 .segment_bytes = 1 << 20,
                                 .read_only = read_only,
                                 .share_chunks = 1};
    return datafile_open(store_fd, "data", 0, &o, df);
}

/* The chunks of `seg` read through refs made from its records, each
 * checked. Returns how many there are in `chunks`. */
static size_t read_records(struct datafile *df, const uint8_t *seg, size_t len,
                           struct chunk *chunks)
{
    size_t n = 0;
    for (uint64_t off = SEG_HEADER_BYTES; off + REC_HEADER_BYTES <= len && n < MAX_RECORDS;) {
        struct chunk *c = &chunks[n];
        memset(c, 0, sizeof *c);
        ref_at(seg, off, c);
        int rc = read_chunk(df, c);
        int verified = datafile_verify(df, c->id, c->index, &c->ref);
        FZ_CHECK(verified == rc,
                 "verifying the chunk at %" PRIu64 " gives %d, as reading it did, "
                 "got %d",
                 off, rc, verified);
        if (rc == 0) {
            uint8_t *want = expected_bytes(seg, &c->ref);
            FZ_CHECK(want && memcmp(want, c->bytes, c->ref.raw_len) == 0,
                     "the chunk at %" PRIu64 " (codec %u) reads as its record decodes, got %s", off,
                     c->ref.codec, want ? "other bytes" : "a chunk zstd refuses");
            free(want);
            expect_bytes(df, c, "from the cache");
            struct chunk other = *c;
            other.id++;
            FZ_CHECK(datafile_read(df, other.id, other.index, &other.ref, c->bytes) == -EIO,
                     "the chunk at %" PRIu64 " asked for as object %" PRIu64 " is -EIO", off,
                     other.id);
            other = *c;
            other.index++;
            FZ_CHECK(datafile_read(df, other.id, other.index, &other.ref, c->bytes) == -EIO,
                     "the chunk at %" PRIu64 " asked for as index %" PRIu64 " is -EIO", off,
                     other.index);
            other = *c;
            other.id++;
            other.ref.codec |= CHUNK_SHARED;
            expect_bytes(df, &other, "as a shared ref of another object");
            n++;
        }
        uint64_t stored = c->ref.stored_len;
        if (stored > len - off - REC_HEADER_BYTES)
            break;
        off += REC_HEADER_BYTES + stored;
    }
    return n;
}

static void write_back(int store_fd, struct datafile *df, struct chunk *chunks, size_t n,
                       const uint8_t *data, size_t size)
{
    struct chunk moved[MAX_RECORDS + 2];
    for (size_t i = 0; i < n; i++) {
        moved[i] = chunks[i];
        int rc = datafile_copy(df, chunks[i].id, chunks[i].index, &chunks[i].ref, &moved[i].ref);
        FZ_CHECK(rc == 0, "copying the chunk at %" PRIu64 " that read right succeeds, got %d",
                 chunks[i].ref.off, rc);
        expect_bytes(df, &moved[i], "copied");
    }
    /* A new chunk: the input itself, at most a chunk of it. */
    struct chunk *fresh = &moved[n];
    memset(fresh, 0, sizeof *fresh);
    fresh->id = 7;
    fresh->index = 3;
    size_t len = size < DATAFILE_MAX_CHUNK ? size : DATAFILE_MAX_CHUNK;
    fresh->bytes = (uint8_t *)data;
    int rc = datafile_write_shared(df, fresh->id, fresh->index, data, len, &fresh->ref);
    FZ_CHECK(rc == 0 && !(fresh->ref.codec & CHUNK_SHARED),
             "writing a chunk of %zu bytes succeeds, unshared (nothing written before holds "
             "it), got %d, codec %#x",
             len, rc, fresh->ref.codec);
    expect_bytes(df, fresh, "written");
    struct chunk *twin = &moved[n + 1];
    *twin = *fresh;
    twin->id = 8;
    twin->index = 0;
    rc = datafile_write_shared(df, twin->id, twin->index, data, len, &twin->ref);
    FZ_CHECK(rc == 0 && (twin->ref.codec & CHUNK_SHARED) && twin->ref.seg == fresh->ref.seg &&
                 twin->ref.off == fresh->ref.off,
             "the same %zu bytes written again share the record at %" PRIu64
             ", got %d, codec %#x at %" PRIu64,
             len, fresh->ref.off, rc, twin->ref.codec, twin->ref.off);
    expect_bytes(df, twin, "shared");
    rc = datafile_sync(df);
    FZ_CHECK(rc == 0, "datafile_sync == 0, got %d", rc);
    datafile_close(df);

    rc = open_data(store_fd, 1, &df);
    FZ_CHECK(rc == 0, "the segments open again after the writes, got %d (%s)", rc, error_name(rc));
    for (size_t i = 0; i <= n + 1; i++)
        expect_bytes(df, &moved[i], "reopened");
    datafile_close(df);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in = {data, size};
    unsigned flags = fz_u8(&in);
    size_t len;
    const uint8_t *bytes = fz_take(&in, in.left, &len);
    uint8_t *seg = malloc(len ? len : 1);
    FZ_CHECK(seg != NULL, "%zu bytes", len);
    memcpy(seg, bytes, len);
    if (flags & FIX_CHECKSUMS)
        fz_fix_data_segment(seg, len);

    char dir[4096];
    fz_fresh_dir("chunk", dir);
    int store_fd = fz_open_dir(dir);
    FZ_CHECK(mkdirat(store_fd, "data", 0755) == 0, "mkdir data");
    int data_fd = openat(store_fd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FZ_CHECK(data_fd >= 0, "open data");
    fz_write_file(data_fd, SEG_NAME, seg, len);
    close(data_fd);

    struct datafile *df;
    int write = (flags & WRITE_BACK) != 0;
    int rc = open_data(store_fd, !write, &df);
    FZ_CHECK(rc == 0 || rc == MINDB_ECORRUPT || rc == MINDB_EVERSION,
             "opening the segment succeeds or fails with MINDB_ECORRUPT or MINDB_EVERSION, "
             "got %d (%s)",
             rc, error_name(rc));
    if (rc == 0) {
        static struct chunk chunks[MAX_RECORDS];
        size_t n = read_records(df, seg, len, chunks);
        if (write)
            write_back(store_fd, df, chunks, n, data, size);
        else
            datafile_close(df);
        for (size_t i = 0; i < n; i++)
            free(chunks[i].bytes);
    }
    close(store_fd);
    free(seg);
    return 0;
}
