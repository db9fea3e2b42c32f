/*
 * dedup.h - which chunk record already holds given bytes: a bounded, lossy
 * table from a chunk's content hash to the ref of a record holding those
 * bytes, so that a chunk written again is named instead of stored again.
 * Private to datafile.c.
 *
 * The table is a hint, never the truth: a found ref must be read back and
 * compared before it is used (a hash can collide), and an entry may be
 * overwritten by another at any time (the table's memory is bounded). It
 * only knows records written since the store was opened.
 *
 * Every function is safe from many threads.
 */
#ifndef MINDB_DEDUP_H
#define MINDB_DEDUP_H

#include "datafile.h"

#include <stddef.h>
#include <stdint.h>

struct dedup_key {
    uint64_t lo, hi; /* XXH3-128 of the chunk's bytes */
};

struct dedup;

/* A table holding at most `max_entries` (rounded down to a power of two,
 * at least 1024); it starts at 1024 and grows. 0 or -ENOMEM. */
int dedup_create(size_t max_entries, struct dedup **out);
void dedup_destroy(struct dedup *d);

void dedup_key_of(const void *raw, size_t len, struct dedup_key *key);

/* Fills *ref with a record that held bytes of this hash when it was added,
 * and returns 1; 0 when there is none. */
int dedup_find(struct dedup *d, const struct dedup_key *key, struct chunk_ref *ref);

/* Remembers that the record at *ref holds bytes of this hash, in place of
 * an older entry when its slots are full. */
void dedup_add(struct dedup *d, const struct dedup_key *key, const struct chunk_ref *ref);

/* Forgets the entry of this hash naming exactly *ref (its bytes did not
 * match, or could not be read). */
void dedup_forget(struct dedup *d, const struct dedup_key *key, const struct chunk_ref *ref);

/* Forgets every entry in segment `seg`: it is deleted, about to be
 * compacted away, or its unsynced records may be lost. */
void dedup_drop_segment(struct dedup *d, uint32_t seg);

struct dedup_stats {
    uint64_t entries, capacity;
};
void dedup_stats(struct dedup *d, struct dedup_stats *stats);

#endif /* MINDB_DEDUP_H */
