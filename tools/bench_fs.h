/*
 * bench_fs.h - the scratch directory and file chores of a benchmark in
 * tools/: naming the filesystem a result was measured on, preallocating a
 * file by writing zeros, and removing the scratch directory afterwards.
 * wal_bench uses them; a filesystem benchmark can use them as well.
 *
 * Like the library, these print nothing and return 0 or a negative errno, so
 * that each benchmark words its own errors.
 */
#ifndef MINDB_TOOLS_BENCH_FS_H
#define MINDB_TOOLS_BENCH_FS_H

#include <stddef.h>
#include <stdint.h>

/* The name of the filesystem holding `path` ("ext4", "xfs", "tmpfs"...),
 * "other" for one not listed, "unknown" if statfs() fails. Results say it
 * because the same disk commits at very different rates under different
 * filesystems. The string is static. */
const char *bench_filesystem_name(const char *path);

/* Removes directory `name` (relative to `parent_fd`, or AT_FDCWD) and
 * everything in it, without following a symbolic link at `name`. Meant for a
 * scratch directory the benchmark made itself, whose contents it need not
 * know: the code under test names its own files. Goes on past a failure and
 * returns the first one. */
int bench_remove_tree(int parent_fd, const char *name);

/* Writes `len` zero bytes at the start of `fd`, at most `zeros_bytes` per
 * pwrite() from `zeros`, a buffer of that many zero bytes. Aligned `zeros`,
 * `zeros_bytes` and `len` make it work on an O_DIRECT descriptor too.
 * Writing, rather than fallocate(), gives the file written extents, so later
 * writes and fdatasync() into it cost what overwrites cost. */
int bench_write_zeros(int fd, const void *zeros, size_t zeros_bytes, uint64_t len);

#endif /* MINDB_TOOLS_BENCH_FS_H */
