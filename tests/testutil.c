/*
 * testutil.c - see testutil.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_DIRECT, strsignal, nftw */
#endif
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define TU_SKIP_STATUS 77
#define TU_DEFAULT_TIMEOUT 600

static const char *g_prog = "test";
static char **g_only;
static int g_only_count;
static int g_passed, g_failed, g_skipped;
static const char *g_name = "";
static char g_dir[TU_PATH_MAX];
static int g_nofork;
static jmp_buf g_nofork_jmp;

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

const char *tu_strerror(long long rc)
{
    if (rc < 0)
        rc = -rc;
    return rc > INT_MAX ? "?" : strerror((int)rc);
}

static __attribute__((noreturn)) void end_child(int status)
{
    fflush(stdout);
    fflush(stderr);
    if (g_nofork)
        longjmp(g_nofork_jmp, status == 0 ? 1000 : status);
    /* _exit: no leak report on top of the failure, no atexit handlers. */
    _exit(status);
}

void tu_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", file, line, g_name, expr);
    end_child(1);
}

void tu_failf(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: [%s] CHECK failed: %s: ", file, line, g_name, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    end_child(1);
}

void tu_skip(const char *fmt, ...)
{
    va_list ap;
    printf("    skipped: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    end_child(TU_SKIP_STATUS);
}

void tu_note(const char *fmt, ...)
{
    va_list ap;
    printf("    ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void tu_init(int argc, char **argv)
{
    if (argc > 0 && argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        g_prog = slash ? slash + 1 : argv[0];
    }
    g_only = argv + 1;
    g_only_count = argc > 1 ? argc - 1 : 0;
    g_nofork = env_flag("MINDB_TEST_NOFORK");
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static int selected(const char *name)
{
    if (g_only_count == 0)
        return 1;
    for (int i = 0; i < g_only_count; i++)
        if (strcmp(g_only[i], name) == 0)
            return 1;
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tu_run(const char *name, tu_test_fn fn)
{
    if (!selected(name))
        return;
    g_name = name;
    char tag[256];
    snprintf(tag, sizeof tag, "%s-%s", g_prog, name);
    int rc = tu_mkdtemp(g_dir, tag);
    if (rc < 0) {
        printf("FAIL %s: cannot make a temporary directory: %s\n", name, tu_strerror(rc));
        g_failed++;
        return;
    }

    fflush(stdout);
    fflush(stderr);
    double t0 = now_seconds();
    int status;
    if (g_nofork) {
        int jumped = setjmp(g_nofork_jmp);
        if (jumped == 0) {
            fn();
            status = 0;
        } else {
            status = jumped == 1000 ? 0 : jumped;
        }
    } else {
        pid_t pid = fork();
        if (pid < 0) {
            printf("FAIL %s: fork: %s\n", name, strerror(errno));
            g_failed++;
            tu_rm_rf(g_dir);
            return;
        }
        if (pid == 0) {
            const char *t = getenv("MINDB_TEST_TIMEOUT");
            alarm(t && atoi(t) > 0 ? (unsigned)atoi(t) : TU_DEFAULT_TIMEOUT);
            fn();
            fflush(stdout);
            fflush(stderr);
            exit(0); /* exit, not _exit: LeakSanitizer reports at exit */
        }
        int ws;
        while (waitpid(pid, &ws, 0) < 0)
            if (errno != EINTR) {
                ws = 1 << 8;
                break;
            }
        if (WIFEXITED(ws))
            status = WEXITSTATUS(ws);
        else {
            fprintf(stderr, "[%s] killed by signal %d (%s)\n", name, WTERMSIG(ws),
                    strsignal(WTERMSIG(ws)));
            status = 128 + WTERMSIG(ws);
        }
    }
    double secs = now_seconds() - t0;

    if (status == 0) {
        printf("ok   %s (%.2f s)\n", name, secs);
        g_passed++;
    } else if (status == TU_SKIP_STATUS) {
        printf("skip %s\n", name);
        g_skipped++;
        g_passed++;
    } else {
        printf("FAIL %s (status %d, %.2f s)\n", name, status, secs);
        g_failed++;
    }
    if (status != 0 && status != TU_SKIP_STATUS && env_flag("MINDB_TEST_KEEP"))
        printf("    kept %s\n", g_dir);
    else
        tu_rm_rf(g_dir);
    fflush(stdout);
    g_name = "";
}

int tu_finish(void)
{
    if (g_skipped)
        printf("(%d skipped, counted as passed)\n", g_skipped);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    fflush(stdout);
    return g_failed ? 1 : 0;
}

const char *tu_dir(void)
{
    return g_dir;
}

void tu_path(char out[TU_PATH_MAX], const char *fmt, ...)
{
    char rel[TU_PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    int n = snprintf(out, TU_PATH_MAX, "%s/%s", g_dir, rel);
    CHECK(n > 0 && n < TU_PATH_MAX);
}

uint64_t tu_seed(uint64_t fallback)
{
    const char *s = getenv("MINDB_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return fallback;
}

/* ---- directories and files ---- */

int tu_mkdtemp(char out[TU_PATH_MAX], const char *tag)
{
    const char *base = getenv("MINDB_TEST_TMPDIR");
    if (!base || !*base)
        base = ".";
    char abs[PATH_MAX];
    if (!realpath(base, abs))
        return -errno;
    int n = snprintf(out, TU_PATH_MAX, "%s/mindb-%s-XXXXXX", abs, tag);
    if (n < 0 || n >= TU_PATH_MAX)
        return -ENAMETOOLONG;
    if (!mkdtemp(out))
        return -errno;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int tu_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (rc == -1)
        return -errno;
    return rc;
}

static void read_whole(const char *path, uint8_t **data, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECKF(fd >= 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
        CHECKF(n > 0, "read %s: %s", path, n < 0 ? strerror(errno) : "short file");
        done += (size_t)n;
    }
    close(fd);
    *data = buf;
    *size = len;
}

static void write_whole(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECKF(fd >= 0, "create %s: %s", path, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, data + done, len - done, (off_t)done);
        CHECKF(n > 0, "write %s: %s", path, n < 0 ? strerror(errno) : "wrote nothing");
        done += (size_t)n;
    }
    CHECK(close(fd) == 0);
}

static int is_regular(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

void tu_dir_image_load(struct tu_dir_image *image, const char *dir)
{
    memset(image, 0, sizeof *image);
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "opendir %s: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_regular(dirfd(d), e->d_name))
            continue;
        if (image->count == cap) {
            cap = cap ? 2 * cap : 8;
            image->names = realloc(image->names, cap * sizeof *image->names);
            image->data = realloc(image->data, cap * sizeof *image->data);
            image->sizes = realloc(image->sizes, cap * sizeof *image->sizes);
            CHECK(image->names && image->data && image->sizes);
        }
        char path[TU_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        image->names[image->count] = strdup(e->d_name);
        CHECK(image->names[image->count] != NULL);
        read_whole(path, &image->data[image->count], &image->sizes[image->count]);
        image->count++;
    }
    closedir(d);
}

void tu_dir_image_restore(const struct tu_dir_image *image, const char *dst)
{
    int rc = tu_rm_rf(dst);
    CHECKF(rc == 0, "remove %s: %s", dst, tu_strerror(rc));
    CHECKF(mkdir(dst, 0755) == 0, "mkdir %s: %s", dst, strerror(errno));
    for (size_t i = 0; i < image->count; i++) {
        char path[TU_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dst, image->names[i]);
        write_whole(path, image->data[i], image->sizes[i]);
    }
}

static int image_has(const struct tu_dir_image *image, const char *name)
{
    for (size_t i = 0; i < image->count; i++)
        if (strcmp(image->names[i], name) == 0)
            return 1;
    return 0;
}

void tu_dir_image_reset(const struct tu_dir_image *image, const char *dst)
{
    DIR *d = opendir(dst);
    if (!d) {
        CHECKF(errno == ENOENT, "opendir %s: %s", dst, strerror(errno));
        tu_dir_image_restore(image, dst);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            image_has(image, e->d_name))
            continue;
        char path[TU_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dst, e->d_name);
        int rc = tu_rm_rf(path);
        CHECKF(rc == 0, "remove %s: %s", path, tu_strerror(rc));
    }
    closedir(d);

    uint8_t *cur = NULL;
    size_t cur_cap = 0;
    for (size_t i = 0; i < image->count; i++) {
        char path[TU_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dst, image->names[i]);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        CHECKF(fd >= 0, "open %s: %s", path, strerror(errno));
        struct stat st;
        CHECK(fstat(fd, &st) == 0);
        size_t len = image->sizes[i], have = (size_t)st.st_size;
        if (cur_cap < len) {
            free(cur);
            cur_cap = len;
            cur = malloc(cur_cap);
            CHECK(cur != NULL);
        }
        size_t got = 0;
        while (got < len && got < have) {
            ssize_t n = pread(fd, cur + got, (len < have ? len : have) - got, (off_t)got);
            CHECKF(n > 0, "read %s: %s", path, n < 0 ? strerror(errno) : "short file");
            got += (size_t)n;
        }
        /* Rewrites only the blocks that differ: fewer dirty pages for the
         * log's next fdatasync to write. */
        const size_t chunk = 4096;
        for (size_t off = 0; off < len;) {
            size_t n = len - off < chunk ? len - off : chunk;
            if (off + n <= got && memcmp(cur + off, image->data[i] + off, n) == 0) {
                off += n;
                continue;
            }
            size_t end = off + n;
            while (end < len) {
                size_t m = len - end < chunk ? len - end : chunk;
                if (end + m <= got && memcmp(cur + end, image->data[i] + end, m) == 0)
                    break;
                end += m;
            }
            for (size_t done = off; done < end;) {
                ssize_t w = pwrite(fd, image->data[i] + done, end - done, (off_t)done);
                CHECKF(w > 0, "write %s: %s", path, w < 0 ? strerror(errno) : "wrote nothing");
                done += (size_t)w;
            }
            off = end;
        }
        if (have != len)
            CHECK(ftruncate(fd, (off_t)len) == 0);
        CHECK(close(fd) == 0);
    }
    free(cur);
}

void tu_dir_image_free(struct tu_dir_image *image)
{
    for (size_t i = 0; i < image->count; i++) {
        free(image->names[i]);
        free(image->data[i]);
    }
    free(image->names);
    free(image->data);
    free(image->sizes);
    memset(image, 0, sizeof *image);
}

void tu_copy_dir(const char *src, const char *dst)
{
    struct tu_dir_image image;
    tu_dir_image_load(&image, src);
    tu_dir_image_restore(&image, dst);
    tu_dir_image_free(&image);
}

int tu_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

uint64_t tu_file_size(const char *path)
{
    struct stat st;
    CHECKF(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

void tu_truncate(const char *path, uint64_t len)
{
    CHECKF(truncate(path, (off_t)len) == 0, "truncate %s: %s", path, strerror(errno));
}

void tu_pread_file(const char *path, void *buf, size_t len, uint64_t off)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECKF(fd >= 0, "open %s: %s", path, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        CHECKF(n > 0, "read %s at %llu: %s", path, (unsigned long long)(off + done),
               n < 0 ? strerror(errno) : "end of file");
        done += (size_t)n;
    }
    close(fd);
}

void tu_pwrite_file(const char *path, const void *buf, size_t len, uint64_t off)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    CHECKF(fd >= 0, "open %s: %s", path, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
        CHECKF(n > 0, "write %s: %s", path, n < 0 ? strerror(errno) : "wrote nothing");
        done += (size_t)n;
    }
    CHECK(close(fd) == 0);
}

void tu_zero_range(const char *path, uint64_t from, uint64_t to)
{
    if (to <= from)
        return;
    size_t len = (size_t)(to - from);
    void *zeros = calloc(1, len);
    CHECK(zeros != NULL);
    tu_pwrite_file(path, zeros, len, from);
    free(zeros);
}

void tu_flip_bit(const char *path, uint64_t off, unsigned bit)
{
    uint8_t b;
    tu_pread_file(path, &b, 1, off);
    b ^= (uint8_t)(1u << (bit & 7));
    tu_pwrite_file(path, &b, 1, off);
}

size_t tu_count_files(const char *dir, const char *prefix, const char *suffix)
{
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "opendir %s: %s", dir, strerror(errno));
    size_t count = 0, plen = strlen(prefix), slen = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len >= plen + slen && strncmp(e->d_name, prefix, plen) == 0 &&
            strcmp(e->d_name + len - slen, suffix) == 0)
            count++;
    }
    closedir(d);
    return count;
}

void tu_segment_path(char out[TU_PATH_MAX], const char *dir, uint64_t segno)
{
    snprintf(out, TU_PATH_MAX, "%s/%016" PRIx64 ".wal", dir, segno);
}

/* ---- randomness ---- */

uint64_t tu_rand(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tu_rand_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo + 1;
    return lo + (span == 0 ? tu_rand(state) : tu_rand(state) % span);
}

/* ---- records ---- */

/* The id is stored 7 bits per byte with the top bit set, so no byte of a
 * record is ever zero; the rest comes from a generator seeded with the id
 * and the length, 8 bytes at a time, zero bytes replaced. */
#define ID_BYTES 8

static uint64_t payload_seed(uint64_t id, size_t len)
{
    return id * 0x2545f4914f6cdd1dull ^ (uint64_t)len * 0x9e3779b97f4a7c15ull;
}

/* Bytes [off, off + n) of the record, off a multiple of 8 past ID_BYTES or
 * 0; `state` carries the generator from one piece to the next. */
static void payload_piece(uint8_t *p, size_t off, size_t n, uint64_t id, uint64_t *state)
{
    size_t i = 0;
    for (; off + i < ID_BYTES && i < n; i++)
        p[i] = (uint8_t)(0x80 | ((id >> (7 * (off + i))) & 0x7f));
    while (i < n) {
        uint64_t r = tu_rand(state);
        /* Set a bit in every zero byte: no byte is zero. */
        uint64_t zero =
            ~(((r & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | r | 0x7f7f7f7f7f7f7f7full);
        r |= zero >> 7;
        size_t take = n - i < 8 ? n - i : 8;
        memcpy(p + i, &r, take);
        i += take;
    }
}

void tu_payload(void *buf, size_t len, uint64_t id)
{
    uint64_t state = payload_seed(id, len);
    payload_piece(buf, 0, len, id, &state);
}

int tu_payload_matches(const void *data, size_t len, uint64_t id, size_t want_len)
{
    if (len != want_len)
        return 0;
    const uint8_t *p = data;
    uint64_t state = payload_seed(id, len);
    uint8_t piece[4096 + ID_BYTES];
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        size_t max = off == 0 ? sizeof piece : 4096;
        if (n > max)
            n = max;
        payload_piece(piece, off, n, id, &state);
        if (memcmp(piece, p + off, n) != 0)
            return 0;
        off += n;
    }
    return 1;
}

uint64_t tu_payload_id(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t id = 0;
    for (size_t i = 0; i < ID_BYTES && i < len; i++)
        id |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    return id;
}

void tu_model_init(struct tu_model *m)
{
    memset(m, 0, sizeof *m);
}

void tu_model_free(struct tu_model *m)
{
    free(m->r);
    free(m->buf);
    memset(m, 0, sizeof *m);
}

void tu_model_push(struct tu_model *m, const struct tu_rec *rec)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->r = realloc(m->r, m->cap * sizeof *m->r);
        CHECK(m->r != NULL);
    }
    m->r[m->n++] = *rec;
}

void tu_model_copy_prefix(struct tu_model *dst, const struct tu_model *src, size_t n)
{
    CHECK(n <= src->n);
    dst->n = 0;
    for (size_t i = 0; i < n; i++)
        tu_model_push(dst, &src->r[i]);
}

int tu_append(wal *log, struct tu_model *m, uint64_t id, size_t len)
{
    if (m->buf_cap < len) {
        free(m->buf);
        m->buf_cap = len;
        m->buf = malloc(len);
        CHECK(m->buf != NULL);
    }
    tu_payload(m->buf, len, id);
    struct tu_rec rec = {.id = id, .len = len, .hash = XXH3_64bits(m->buf, len)};
    int rc = wal_append(log, m->buf, len, &rec.t);
    if (rc == 0) {
        CHECKF(rec.t.end > rec.t.pos, "ticket [%llu, %llu) of record %llu",
               (unsigned long long)rec.t.pos, (unsigned long long)rec.t.end,
               (unsigned long long)id);
        if (m->n > 0)
            CHECKF(rec.t.pos >= m->r[m->n - 1].t.end,
                   "record %llu at %llu, before the end %llu of the one before",
                   (unsigned long long)id, (unsigned long long)rec.t.pos,
                   (unsigned long long)m->r[m->n - 1].t.end);
        tu_model_push(m, &rec);
    }
    return rc;
}

size_t tu_model_count_ending_by(const struct tu_model *m, uint64_t pos)
{
    size_t n = 0;
    while (n < m->n && m->r[n].t.end <= pos)
        n++;
    return n;
}

size_t tu_model_count_starting_by(const struct tu_model *m, uint64_t pos)
{
    size_t n = 0;
    while (n < m->n && m->r[n].t.pos <= pos)
        n++;
    return n;
}

size_t tu_read_check_at(const char *file, int line, wal *log, uint64_t from,
                        const struct tu_model *m, size_t first, size_t min, size_t max,
                        struct wal_stop *stop)
{
    const char *what = "the log holds the expected records";
    if (first > m->n)
        first = m->n;
    if (max > m->n - first)
        max = m->n - first;
    wal_reader *rd = NULL;
    int rc = wal_reader_open(log, from, &rd);
    if (rc != 0)
        tu_failf(file, line, what, "wal_reader_open(%llu) returned %d (%s)",
                 (unsigned long long)from, rc, tu_strerror(rc));
    size_t i = 0;
    for (;;) {
        const void *data;
        size_t len;
        uint64_t pos;
        rc = wal_reader_next(rd, &data, &len, &pos);
        if (rc < 0)
            tu_failf(file, line, what, "wal_reader_next returned %d (%s) after %zu records", rc,
                     tu_strerror(rc), i);
        if (rc == 0)
            break;
        if (i >= max)
            tu_failf(file, line, what,
                     "read record #%zu (pos %llu, len %zu, id %llu) but expected at most %zu "
                     "records from %llu",
                     i, (unsigned long long)pos, len,
                     (unsigned long long)(len >= ID_BYTES ? tu_payload_id(data, len) : 0), max,
                     (unsigned long long)from);
        const struct tu_rec *e = &m->r[first + i];
        if (pos != e->t.pos || len != e->len || XXH3_64bits(data, len) != e->hash)
            tu_failf(file, line, what,
                     "record #%zu: expected id %llu len %zu at %llu; got len %zu at %llu%s", i,
                     (unsigned long long)e->id, e->len, (unsigned long long)e->t.pos, len,
                     (unsigned long long)pos,
                     pos == e->t.pos && len == e->len ? " with other contents" : "");
        i++;
    }
    struct wal_stop st;
    wal_reader_stop(rd, &st);
    wal_reader_close(rd);
    if (i < min)
        tu_failf(file, line, what,
                 "read %zu records from %llu, expected at least %zu; the reader stopped: %s at "
                 "%llu (error %d)",
                 i, (unsigned long long)from, min, wal_stop_reason_name(st.reason),
                 (unsigned long long)st.pos, st.error);
    if (st.reason == WAL_STOP_IO)
        tu_failf(file, line, what, "the reader stopped on an I/O error %d (%s) at %llu", st.error,
                 tu_strerror(st.error), (unsigned long long)st.pos);
    if (stop)
        *stop = st;
    return i;
}

/* ---- logs ---- */

void tu_options(struct wal_options *o, size_t ring_bytes, uint64_t segment_bytes)
{
    wal_options_init(o);
    if (ring_bytes)
        o->ring_bytes = ring_bytes;
    if (segment_bytes)
        o->segment_bytes = segment_bytes;
    o->create = 1;
    const char *direct = getenv("MINDB_WAL_DIRECT");
    if (direct && *direct && atoi(direct) == 0)
        o->direct_io = 0;
}

wal *tu_open_at(const char *file, int line, const char *dir, const struct wal_options *o)
{
    wal *log = NULL;
    int rc = wal_open(dir, o, &log);
    if (rc != 0)
        tu_failf(file, line, "wal_open", "wal_open(%s) returned %d (%s)", dir, rc, tu_strerror(rc));
    if (!log)
        tu_failf(file, line, "wal_open", "wal_open(%s) returned 0 and no log", dir);
    return log;
}

void tu_reopen_check_at(const char *file, int line, const char *dir, const struct wal_options *o,
                        const struct tu_model *m)
{
    wal *log = tu_open_at(file, line, dir, o);
    tu_read_check_at(file, line, log, wal_first_pos(log), m, 0, m->n, m->n, NULL);
    int rc = wal_close(log);
    if (rc != 0)
        tu_failf(file, line, "wal_close", "wal_close(%s) returned %d (%s)", dir, rc,
                 tu_strerror(rc));
}
