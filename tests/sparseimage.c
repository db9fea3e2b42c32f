/*
 * sparseimage.c - see sparseimage.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate, SEEK_DATA */
#endif
#include "sparseimage.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMAGE_BLOCK 4096u
#define READ_BYTES ((size_t)1 << 20) /* a multiple of IMAGE_BLOCK */

static void path_join(char out[TU_PATH_MAX], const char *a, const char *b)
{
    int n = snprintf(out, TU_PATH_MAX, "%s%s%s", a, *a && *b ? "/" : "", b);
    CHECKF(n >= 0 && n < TU_PATH_MAX, "path too long: %s/%s", a, b);
}

static struct sparse_entry *add_entry(struct sparse_image *img, const char *rel, int is_dir)
{
    if (img->n == img->cap) {
        img->cap = img->cap ? img->cap * 2 : 32;
        img->e = realloc(img->e, img->cap * sizeof *img->e);
        CHECK(img->e != NULL);
    }
    struct sparse_entry *e = &img->e[img->n++];
    memset(e, 0, sizeof *e);
    e->rel = strdup(rel);
    CHECK(e->rel != NULL);
    e->is_dir = is_dir;
    return e;
}

/* Adds [off, off + len) of `data` to the entry, joining it to the last
 * extent when they touch. */
static void add_bytes(struct sparse_entry *e, uint64_t off, const uint8_t *data, size_t len)
{
    struct sparse_extent *last = e->n_ext ? &e->ext[e->n_ext - 1] : NULL;
    if (last && last->off + last->len == off) {
        last->data = realloc(last->data, last->len + len);
        CHECK(last->data != NULL);
        memcpy(last->data + last->len, data, len);
        last->len += len;
        return;
    }
    if (e->n_ext == e->cap_ext) {
        e->cap_ext = e->cap_ext ? e->cap_ext * 2 : 8;
        e->ext = realloc(e->ext, e->cap_ext * sizeof *e->ext);
        CHECK(e->ext != NULL);
    }
    struct sparse_extent *x = &e->ext[e->n_ext++];
    x->off = off;
    x->len = len;
    x->data = malloc(len);
    CHECK(x->data != NULL);
    memcpy(x->data, data, len);
}

static int all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static void load_file(struct sparse_image *img, struct sparse_entry *e, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECKF(fd >= 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    e->size = (uint64_t)st.st_size;
    uint8_t *buf = malloc(READ_BYTES);
    CHECK(buf != NULL);
    for (uint64_t off = 0; off < e->size;) {
        size_t want = e->size - off < READ_BYTES ? (size_t)(e->size - off) : READ_BYTES;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        CHECKF(n > 0, "read %s at %llu: %s", path, (unsigned long long)off,
               n < 0 ? strerror(errno) : "the file shrank");
        for (size_t b = 0; b < (size_t)n; b += IMAGE_BLOCK) {
            size_t len = (size_t)n - b < IMAGE_BLOCK ? (size_t)n - b : IMAGE_BLOCK;
            if (!all_zero(buf + b, len)) {
                add_bytes(e, off + b, buf + b, len);
                img->bytes += len;
            }
        }
        off += (uint64_t)n;
    }
    free(buf);
    close(fd);
}

static void load_dir(struct sparse_image *img, const char *root, const char *rel)
{
    char path[TU_PATH_MAX];
    path_join(path, root, rel);
    DIR *d = opendir(path);
    CHECKF(d != NULL, "opendir %s: %s", path, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[TU_PATH_MAX], full[TU_PATH_MAX];
        path_join(sub, rel, de->d_name);
        path_join(full, root, sub);
        struct stat st;
        CHECKF(lstat(full, &st) == 0, "stat %s: %s", full, strerror(errno));
        if (S_ISDIR(st.st_mode)) {
            add_entry(img, sub, 1);
            load_dir(img, root, sub);
        } else if (S_ISREG(st.st_mode)) {
            load_file(img, add_entry(img, sub, 0), full);
        }
    }
    closedir(d);
}

void sparse_image_load(struct sparse_image *img, const char *dir)
{
    memset(img, 0, sizeof *img);
    load_dir(img, dir, "");
}

static const struct sparse_entry *find_entry(const struct sparse_image *img, const char *rel)
{
    for (size_t i = 0; i < img->n; i++)
        if (strcmp(img->e[i].rel, rel) == 0)
            return &img->e[i];
    return NULL;
}

/* Removes what lies under dst/rel and is not in the image (or is a file
 * where the image has a directory, or the other way round). */
static void remove_strays(const struct sparse_image *img, const char *dst, const char *rel)
{
    char path[TU_PATH_MAX];
    path_join(path, dst, rel);
    DIR *d = opendir(path);
    CHECKF(d != NULL, "opendir %s: %s", path, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[TU_PATH_MAX], full[TU_PATH_MAX];
        path_join(sub, rel, de->d_name);
        path_join(full, dst, sub);
        struct stat st;
        CHECKF(lstat(full, &st) == 0, "stat %s: %s", full, strerror(errno));
        const struct sparse_entry *e = find_entry(img, sub);
        if (e && e->is_dir && S_ISDIR(st.st_mode)) {
            remove_strays(img, dst, sub);
        } else if (!e || e->is_dir || !S_ISREG(st.st_mode)) {
            int rc = tu_rm_rf(full);
            CHECKF(rc == 0, "remove %s: %s", full, tu_strerror(rc));
        }
    }
    closedir(d);
}

/* Whether [off, off + len) of the file holds `data`. */
static int holds(int fd, uint64_t off, const uint8_t *data, size_t len, uint8_t *buf)
{
    for (size_t done = 0; done < len;) {
        size_t n = len - done < READ_BYTES ? len - done : READ_BYTES;
        if (pread(fd, buf, n, (off_t)(off + done)) != (ssize_t)n || memcmp(buf, data + done, n))
            return 0;
        done += n;
    }
    return 1;
}

/* Makes the file at `path` hold the entry: holes punched where it has data
 * outside the entry's extents, the extents written where they differ.
 * Rewriting only what a run changed spares freeing and allocating the
 * blocks of large files at every restore. */
static void restore_file(const struct sparse_entry *e, const char *path, uint8_t *buf)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECKF(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECKF(ftruncate(fd, (off_t)e->size) == 0, "ftruncate %s: %s", path, strerror(errno));
    off_t at = 0;
    size_t x = 0; /* the first extent that ends after `at` */
    for (;;) {
        off_t data = lseek(fd, at, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;
        CHECKF(data >= 0, "SEEK_DATA in %s: %s", path, strerror(errno));
        off_t hole = lseek(fd, data, SEEK_HOLE);
        CHECKF(hole >= 0, "SEEK_HOLE in %s: %s", path, strerror(errno));
        /* Punch [data, hole) but for the extents in it. */
        for (off_t from = data; from < hole;) {
            while (x < e->n_ext && (off_t)(e->ext[x].off + e->ext[x].len) <= from)
                x++;
            off_t to = x < e->n_ext && (off_t)e->ext[x].off < hole ? (off_t)e->ext[x].off : hole;
            if (to > from)
                CHECKF(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, from, to - from) ==
                           0,
                       "punching a hole in %s: %s", path, strerror(errno));
            from = x < e->n_ext && to < hole ? (off_t)(e->ext[x].off + e->ext[x].len) : hole;
        }
        at = hole;
    }
    for (size_t j = 0; j < e->n_ext; j++) {
        const struct sparse_extent *ext = &e->ext[j];
        if (holds(fd, ext->off, ext->data, ext->len, buf))
            continue;
        ssize_t n = pwrite(fd, ext->data, ext->len, (off_t)ext->off);
        CHECKF(n == (ssize_t)ext->len, "write %s: %s", path, n < 0 ? strerror(errno) : "short");
    }
    close(fd);
}

void sparse_image_restore(const struct sparse_image *img, const char *dst)
{
    struct stat st;
    if (stat(dst, &st) == 0 && S_ISDIR(st.st_mode)) {
        remove_strays(img, dst, "");
    } else {
        int rc = tu_rm_rf(dst);
        CHECKF(rc == 0, "remove %s: %s", dst, tu_strerror(rc));
        CHECKF(mkdir(dst, 0755) == 0, "mkdir %s: %s", dst, strerror(errno));
    }
    uint8_t *buf = malloc(READ_BYTES);
    CHECK(buf != NULL);
    for (size_t i = 0; i < img->n; i++) {
        const struct sparse_entry *e = &img->e[i];
        char path[TU_PATH_MAX];
        path_join(path, dst, e->rel);
        if (e->is_dir)
            CHECKF(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", path,
                   strerror(errno));
        else
            restore_file(e, path, buf);
    }
    free(buf);
}

void sparse_image_free(struct sparse_image *img)
{
    for (size_t i = 0; i < img->n; i++) {
        for (size_t j = 0; j < img->e[i].n_ext; j++)
            free(img->e[i].ext[j].data);
        free(img->e[i].ext);
        free(img->e[i].rel);
    }
    free(img->e);
    memset(img, 0, sizeof *img);
}
