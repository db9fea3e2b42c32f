/*
 * memio.h - a struct wal_io whose files live in memory, for the log's fuzz
 * target: reading and writing a segment costs a memcpy, not a system call.
 *
 * The log lists its directory with readdir() on a real descriptor, so each
 * file also has an empty namesake in that real directory, made, renamed and
 * removed along with it. Descriptors of files in memory are numbers from
 * MEMIO_FD_BASE up, which no real descriptor reaches; syncs succeed.
 */
#ifndef MINDB_MEMIO_H
#define MINDB_MEMIO_H

#include "wal.h"

#include <stddef.h>
#include <stdint.h>

#define MEMIO_FD_BASE (1 << 24)
#define MEMIO_MAX_FILES 32
#define MEMIO_MAX_FDS 32
/* A file grows no further (-ENOSPC): a runaway writer ends the run. */
#define MEMIO_MAX_FILE_BYTES ((size_t)16 << 20)

struct mem_file {
    char name[64];
    uint8_t *data;
    size_t len, cap;
    int linked;     /* has its name in the directory */
    unsigned opens; /* descriptors on it */
};

struct memio {
    struct wal_io io; /* io.ctx points back here */
    int dirfd;        /* the real directory of the namesakes */
    struct mem_file *files[MEMIO_MAX_FILES];
    struct mem_file *fds[MEMIO_MAX_FDS];
};

/* Starts with no file, the namesakes going to the (empty) real directory
 * `dirfd`, which the caller keeps open meanwhile. */
void memio_init(struct memio *m, int dirfd);
/* Adds a file with the given contents (and its namesake). */
void memio_add(struct memio *m, const char *name, const void *data, size_t len);
/* Frees every file; the caller removes the directory. Descriptors still
 * open fail the run: the product leaked them. */
void memio_destroy(struct memio *m);

#endif /* MINDB_MEMIO_H */
