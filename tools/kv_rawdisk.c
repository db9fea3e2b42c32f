/*
 * kv_rawdisk.c - the floor under kv_bench's durable puts: no store at all,
 * just what the disk costs to make 4 KiB durable. Each put writes one 4 KiB
 * block holding the value (O_DIRECT) at the next offset of a preallocated
 * file, then fdatasync(). A store cannot make a put durable for less.
 *
 * Each session (thread) has a file of its own, raw-N, so N threads are N
 * independent writers, with no sharing of syncs. The files live in the
 * directory the harness keeps from round to round and are made once:
 * fallocate() then zeros written over the whole length and synced, because
 * a write into an unwritten extent makes fdatasync() commit the
 * filesystem's journal as well, which is not a cost of the put. It takes
 * part in the fillsync workloads only; it cannot read.
 */
#ifndef _GNU_SOURCE /* the build defines it; this is for a compile by hand */
#define _GNU_SOURCE /* O_DIRECT, fallocate */
#endif

#include "kv_bench.h"

#include "bench_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME "rawdisk"
#define BLOCK ((size_t)4096)
#define ZEROS_BYTES ((size_t)1 << 20)

struct kv_db {
    unsigned count;
    int *fds;
    uint64_t file_bytes;
};

struct kv_session {
    int fd;
    uint64_t file_bytes;
    uint64_t off;
    unsigned char *block;
};

static bool told_buffered;

/* Opens raw-`index` in `dir`, making and preallocating it when it is
 * missing or too short. */
static int open_file(int dir_fd, unsigned index, uint64_t bytes, int *out)
{
    char name[32];
    snprintf(name, sizeof name, "raw-%u", index);
    int flags = O_RDWR | O_CREAT | O_CLOEXEC;
    int fd = openat(dir_fd, name, flags | O_DIRECT, 0644);
    if (fd < 0 && errno == EINVAL) {
        if (!told_buffered)
            fprintf(stderr, "%s: rawdisk: O_DIRECT refused here; buffered writes\n", PROGRAM);
        told_buffered = true;
        fd = openat(dir_fd, name, flags, 0644);
    }
    if (fd < 0)
        return kv_report_errno(NAME, "open", -errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = kv_report_errno(NAME, "fstat", -errno);
        close(fd);
        return rc;
    }
    if ((uint64_t)st.st_size < bytes) {
        /* fallocate() reserves the blocks at once; the zeros then make the
         * extents written ones. A filesystem without it still gets them. */
        if (fallocate(fd, 0, 0, (off_t)bytes) != 0 && errno != EOPNOTSUPP) {
            int rc = kv_report_errno(NAME, "fallocate", -errno);
            close(fd);
            return rc;
        }
        void *zeros;
        if (posix_memalign(&zeros, BLOCK, ZEROS_BYTES) != 0) {
            close(fd);
            return kv_report_errno(NAME, "posix_memalign", -ENOMEM);
        }
        memset(zeros, 0, ZEROS_BYTES);
        int rc = bench_write_zeros(fd, zeros, ZEROS_BYTES, bytes);
        free(zeros);
        if (rc == 0 && fdatasync(fd) != 0)
            rc = -errno;
        if (rc < 0) {
            close(fd);
            return kv_report_errno(NAME, "preallocating", rc);
        }
    }
    *out = fd;
    return 0;
}

static int rawdisk_open(const char *dir, const struct kv_open_options *options, struct kv_db **out)
{
    (void)dir; /* the files outlive the run's directory */
    if (mkdir(options->persist_dir, 0755) != 0 && errno != EEXIST)
        return kv_report_errno(NAME, "mkdir", -errno);
    int dir_fd = open(options->persist_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return kv_report_errno(NAME, "open (directory)", -errno);
    struct kv_db *db = calloc(1, sizeof *db);
    int *fds = calloc(options->sessions, sizeof *fds);
    if (!db || !fds) {
        free(db);
        free(fds);
        close(dir_fd);
        return kv_report_errno(NAME, "calloc", -ENOMEM);
    }
    db->fds = fds;
    db->file_bytes = (options->max_puts ? options->max_puts : 1) * BLOCK;
    int rc = 0;
    for (; db->count < options->sessions; db->count++) {
        rc = open_file(dir_fd, db->count, db->file_bytes, &db->fds[db->count]);
        if (rc < 0)
            break;
    }
    close(dir_fd);
    if (rc < 0) {
        for (unsigned i = 0; i < db->count; i++)
            close(db->fds[i]);
        free(db->fds);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int rawdisk_close(struct kv_db *db)
{
    for (unsigned i = 0; i < db->count; i++)
        close(db->fds[i]);
    free(db->fds);
    free(db);
    return 0;
}

static int rawdisk_session_open(struct kv_db *db, unsigned index, struct kv_session **out)
{
    if (index >= db->count)
        return kv_report_errno(NAME, "session", -EINVAL);
    struct kv_session *s = calloc(1, sizeof *s);
    void *block = NULL;
    if (!s || posix_memalign(&block, BLOCK, BLOCK) != 0) {
        free(s);
        return kv_report_errno(NAME, "malloc", -ENOMEM);
    }
    memset(block, 0, BLOCK);
    s->block = block;
    s->fd = db->fds[index];
    s->file_bytes = db->file_bytes;
    *out = s;
    return 0;
}

static void rawdisk_session_close(struct kv_session *s)
{
    free(s->block);
    free(s);
}

static int rawdisk_put(struct kv_session *s, const void *key, size_t key_len, const void *value,
                       size_t value_len)
{
    (void)key;
    (void)key_len;
    memcpy(s->block, value, value_len < BLOCK ? value_len : BLOCK);
    if (s->off + BLOCK > s->file_bytes)
        s->off = 0;
    ssize_t n = pwrite(s->fd, s->block, BLOCK, (off_t)s->off);
    if (n < 0)
        return kv_report_errno(NAME, "pwrite", -errno);
    if ((size_t)n != BLOCK)
        return kv_report_errno(NAME, "pwrite (short write)", -EIO);
    if (fdatasync(s->fd) != 0)
        return kv_report_errno(NAME, "fdatasync", -errno);
    s->off += BLOCK;
    return 0;
}

static int rawdisk_sync(struct kv_session *s)
{
    (void)s; /* every put was synced */
    return 0;
}

const struct kv_backend kv_rawdisk_backend = {
    .name = NAME,
    .put_durability = "O_DIRECT pwrite of one 4 KiB block into a preallocated file + fdatasync",
    .sync_durability = "nothing left to do",
    .open = rawdisk_open,
    .close = rawdisk_close,
    .session_open = rawdisk_session_open,
    .session_close = rawdisk_session_close,
    .put = rawdisk_put,
    .sync = rawdisk_sync,
    .get = NULL,
    .scan = NULL,
    .bytes_on_disk = kv_dir_usage,
};
