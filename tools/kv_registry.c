/*
 * kv_registry.c - the backends kv_bench was built with. The build defines
 * KV_HAVE_<STORE> for each peer store it found (tools/CMakeLists.txt), and
 * KV_BENCH_WITHOUT_MINDB only while the store itself does not link yet.
 * The order is the order of the table's columns: mindb first, rawdisk last.
 */
#include "kv_bench.h"

#include <stddef.h>

const struct kv_backend *const kv_backends[] = {
#ifndef KV_BENCH_WITHOUT_MINDB
    &kv_mindb_backend,
#endif
#ifdef KV_HAVE_ROCKSDB
    &kv_rocksdb_backend,
#endif
#ifdef KV_HAVE_LEVELDB
    &kv_leveldb_backend,
#endif
#ifdef KV_HAVE_LMDB
    &kv_lmdb_backend,
#endif
#ifdef KV_HAVE_SQLITE
    &kv_sqlite_backend,
#endif
    &kv_rawdisk_backend, NULL,
};
