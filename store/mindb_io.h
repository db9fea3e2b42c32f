/*
 * mindb_io.h - opening a store with the file operations replaced, for tests
 * that inject failures (the Nth write fails, a sync fails, the disk is
 * full). Not part of the public API: tests include it from store/.
 *
 * Every file operation of the store goes through `io`: the log, the data
 * segments, the manifests. The lock file, the FORMAT file and directory
 * listings do not.
 */
#ifndef MINDB_IO_H
#define MINDB_IO_H

#include "mindb.h"
#include "wal.h"

int mindb_open_io(const char *dir, const struct mindb_options *options, const struct wal_io *io,
                  mindb **out);

#endif /* MINDB_IO_H */
