/*
 * fuzzutil.c - see fuzzutil.h.
 */
#include "fuzzutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

void fz_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "\n%s:%d: check failed: %s\n    ", file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

uint8_t fz_u8(struct fz_input *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

uint16_t fz_u16(struct fz_input *in)
{
    uint16_t lo = fz_u8(in);
    return (uint16_t)(lo | fz_u8(in) << 8);
}

const uint8_t *fz_take(struct fz_input *in, size_t len, size_t *got)
{
    if (len > in->left)
        len = in->left;
    const uint8_t *p = in->p;
    in->p += len;
    in->left -= len;
    *got = len;
    return p;
}

const uint8_t *fz_piece(struct fz_input *in, unsigned length_bytes, size_t *len)
{
    size_t want = 0;
    for (unsigned i = 0; i < length_bytes && i < 4; i++)
        want |= (size_t)fz_u8(in) << (8 * i);
    return fz_take(in, want, len);
}

static char scratch[4096];
static pid_t scratch_owner;

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void fz_rm_tree(const char *path)
{
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        FZ_CHECK(0, "removing %s: %s", path, strerror(errno));
}

static void scratch_remove(void)
{
    /* Not in a child a target forked: the directory is its parent's. */
    if (scratch[0] && getpid() == scratch_owner)
        fz_rm_tree(scratch);
}

const char *fz_scratch(void)
{
    if (scratch[0])
        return scratch;
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(scratch, sizeof scratch, "%s/mindb-fuzz-XXXXXX", base);
    FZ_CHECK(n > 0 && (size_t)n < sizeof scratch, "a scratch path under %s", base);
    FZ_CHECK(mkdtemp(scratch) != NULL, "a scratch directory %s: %s", scratch, strerror(errno));
    scratch_owner = getpid();
    atexit(scratch_remove);
    return scratch;
}

void fz_fresh_dir(const char *name, char *out)
{
    int n = snprintf(out, 4096, "%s/%s", fz_scratch(), name);
    FZ_CHECK(n > 0 && n < 4096, "a path for %s", name);
    fz_rm_tree(out);
    FZ_CHECK(mkdir(out, 0755) == 0, "mkdir %s: %s", out, strerror(errno));
}

void fz_write_file(int dirfd, const char *name, const void *data, size_t len)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FZ_CHECK(fd >= 0, "creating %s: %s", name, strerror(errno));
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        FZ_CHECK(n > 0, "writing %s: %s", name, n < 0 ? strerror(errno) : "wrote nothing");
        p += n;
        len -= (size_t)n;
    }
    FZ_CHECK(close(fd) == 0, "closing %s: %s", name, strerror(errno));
}

int fz_open_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FZ_CHECK(fd >= 0, "opening %s: %s", path, strerror(errno));
    return fd;
}

uint32_t fz_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t fz_get64(const uint8_t *p)
{
    return (uint64_t)fz_get32(p) | (uint64_t)fz_get32(p + 4) << 32;
}

void fz_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The layouts are described atop store/segfile.c (a 64-byte header, its
 * checksum in the last 8) and store/datafile.c (a 40-byte record header,
 * the checksum first, over the rest and the payload; stored length at 36). */
void fz_fix_data_segment(uint8_t *seg, size_t len)
{
    if (len >= 64)
        fz_put64(seg + 56, XXH3_64bits(seg, 56));
    for (uint64_t off = 64; off + 40 <= len;) {
        uint64_t stored = fz_get32(seg + off + 36);
        if (stored > len - off - 40)
            break;
        fz_put64(seg + off, XXH3_64bits(seg + off + 8, 32 + stored));
        off += 40 + stored;
    }
}
