/*
 * sparseimage.h - a directory tree held in memory as the nonzero 4 KiB
 * blocks of its files, to put a store back as it was before each of many
 * runs on it. A store's log segments are mostly zero fill: a restored file
 * is sparse where the original held zeros, which reads the same, so a
 * restore writes only the bytes that matter. (testutil.h's tu_dir_image
 * keeps whole files of one directory.)
 */
#ifndef MINDB_SPARSEIMAGE_H
#define MINDB_SPARSEIMAGE_H

#include <stddef.h>
#include <stdint.h>

struct sparse_extent {
    uint64_t off;
    size_t len;
    uint8_t *data;
};

struct sparse_entry {
    char *rel; /* path under the directory */
    int is_dir;
    uint64_t size;
    struct sparse_extent *ext;
    size_t n_ext, cap_ext;
};

struct sparse_image {
    struct sparse_entry *e; /* a directory comes before what it holds */
    size_t n, cap;
    uint64_t bytes; /* nonzero bytes kept */
};

/* Reads the directories and regular files under `dir` (CHECKs failures). */
void sparse_image_load(struct sparse_image *img, const char *dir);
/* Makes `dst` hold exactly what the image holds: what is not in it goes,
 * and its files are written again. Directories and files that are there
 * already are reused, which costs less than making them anew. */
void sparse_image_restore(const struct sparse_image *img, const char *dst);
void sparse_image_free(struct sparse_image *img);

#endif /* MINDB_SPARSEIMAGE_H */
