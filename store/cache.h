/*
 * cache.h - a bounded cache of decompressed chunks, keyed by where their
 * record lives (segment, offset). Used by datafile.c only.
 *
 * Entries also remember the object id, chunk index, length and a tag (what
 * else the caller wants matched: datafile.c's codec and stored length) they
 * were stored for, and a lookup that names other ones misses: a hit then
 * answers exactly what a read from disk would have checked.
 *
 * Every function is safe from many threads. A cache made with a bound of 0
 * holds nothing and only counts misses.
 */
#ifndef MINDB_CACHE_H
#define MINDB_CACHE_H

#include <stdint.h>

struct cache;

/* Makes a cache holding at most `bytes` (data plus a small overhead per
 * entry). Returns 0 or -ENOMEM. */
int cache_create(uint64_t bytes, struct cache **out);
void cache_destroy(struct cache *c);

/* The identity of a chunk beside its key (seg, off). */
struct cache_who {
    uint64_t id, index, tag;
};

/* Copies the chunk at (seg, off) into `buf` and returns 1 when it is cached
 * for exactly `who` with exactly `len` bytes; returns 0 otherwise. */
int cache_get(struct cache *c, uint32_t seg, uint64_t off, const struct cache_who *who, void *buf,
              uint32_t len);

/* Inserts a copy of `data`, evicting the least recently used entries to
 * make room. Best effort: a chunk larger than the cache, or one that cannot
 * be allocated, is simply not cached. */
void cache_put(struct cache *c, uint32_t seg, uint64_t off, const struct cache_who *who,
               const void *data, uint32_t len);

/* Drops the entries of segment `seg` (it was deleted). */
void cache_drop_segment(struct cache *c, uint32_t seg);
/* Drops every entry; the counters stay. */
void cache_drop_all(struct cache *c);

struct cache_stats {
    uint64_t hits, misses;
    uint64_t bytes;   /* charged now, overhead included */
    uint64_t entries; /* chunks held now */
};
void cache_stats(struct cache *c, struct cache_stats *stats);

#endif /* MINDB_CACHE_H */
