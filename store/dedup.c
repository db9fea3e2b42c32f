/*
 * dedup.c - the content-hash table of dedup.h.
 *
 * Open addressing without tombstones: an entry lives in one of the WINDOW
 * slots that follow its hash's home slot, and a lookup looks at all of
 * them, so an emptied slot (seg 0) breaks no chain. When all are taken a
 * new entry overwrites one of them: losing an entry only loses a chance to
 * share, so the table never needs more memory than its bound.
 */
#include "dedup.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <xxhash.h>

#define WINDOW 8
#define MIN_SLOTS 1024

struct dedup_entry {
    struct dedup_key key;
    struct chunk_ref ref; /* seg 0: an empty slot */
};

struct dedup {
    pthread_mutex_t mu;
    struct dedup_entry *slots;
    size_t cap, max, count;
};

int dedup_create(size_t max_entries, struct dedup **out)
{
    size_t max = MIN_SLOTS;
    while (max * 2 <= max_entries)
        max *= 2;
    struct dedup *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->max = max;
    d->cap = max < MIN_SLOTS ? max : MIN_SLOTS;
    d->slots = calloc(d->cap, sizeof *d->slots);
    if (!d->slots) {
        free(d);
        return -ENOMEM;
    }
    pthread_mutex_init(&d->mu, NULL);
    *out = d;
    return 0;
}

void dedup_destroy(struct dedup *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->mu);
    free(d->slots);
    free(d);
}

void dedup_key_of(const void *raw, size_t len, struct dedup_key *key)
{
    XXH128_hash_t h = XXH3_128bits(raw, len);
    key->lo = h.low64;
    key->hi = h.high64;
}

static int same_key(const struct dedup_key *a, const struct dedup_key *b)
{
    return a->lo == b->lo && a->hi == b->hi;
}

static int same_ref(const struct chunk_ref *a, const struct chunk_ref *b)
{
    return a->seg == b->seg && a->off == b->off;
}

static struct dedup_entry *slot(struct dedup *d, const struct dedup_key *key, unsigned i)
{
    return &d->slots[(key->lo + i) & (d->cap - 1)];
}

/* With mu held. */
static void put(struct dedup *d, const struct dedup_key *key, const struct chunk_ref *ref)
{
    struct dedup_entry *free_slot = NULL;
    for (unsigned i = 0; i < WINDOW; i++) {
        struct dedup_entry *e = slot(d, key, i);
        if (e->ref.seg && same_key(&e->key, key)) {
            e->ref = *ref;
            return;
        }
        if (!e->ref.seg && !free_slot)
            free_slot = e;
    }
    if (free_slot)
        d->count++;
    else
        free_slot = slot(d, key, (unsigned)(key->hi % WINDOW));
    free_slot->key = *key;
    free_slot->ref = *ref;
}

/* Doubles the table up to its bound; on failure it stays as it is. */
static void grow(struct dedup *d)
{
    struct dedup_entry *old = d->slots;
    size_t old_cap = d->cap;
    struct dedup_entry *slots = calloc(old_cap * 2, sizeof *slots);
    if (!slots)
        return;
    d->slots = slots;
    d->cap = old_cap * 2;
    d->count = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].ref.seg)
            put(d, &old[i].key, &old[i].ref);
    free(old);
}

int dedup_find(struct dedup *d, const struct dedup_key *key, struct chunk_ref *ref)
{
    int found = 0;
    pthread_mutex_lock(&d->mu);
    for (unsigned i = 0; i < WINDOW && !found; i++) {
        struct dedup_entry *e = slot(d, key, i);
        if (e->ref.seg && same_key(&e->key, key)) {
            *ref = e->ref;
            found = 1;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return found;
}

void dedup_add(struct dedup *d, const struct dedup_key *key, const struct chunk_ref *ref)
{
    pthread_mutex_lock(&d->mu);
    if (d->count * 4 >= d->cap * 3 && d->cap < d->max)
        grow(d);
    put(d, key, ref);
    pthread_mutex_unlock(&d->mu);
}

void dedup_forget(struct dedup *d, const struct dedup_key *key, const struct chunk_ref *ref)
{
    pthread_mutex_lock(&d->mu);
    for (unsigned i = 0; i < WINDOW; i++) {
        struct dedup_entry *e = slot(d, key, i);
        if (e->ref.seg && same_key(&e->key, key) && same_ref(&e->ref, ref)) {
            e->ref.seg = 0;
            d->count--;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

void dedup_drop_segment(struct dedup *d, uint32_t seg)
{
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->cap; i++)
        if (d->slots[i].ref.seg == seg) {
            d->slots[i].ref.seg = 0;
            d->count--;
        }
    pthread_mutex_unlock(&d->mu);
}

void dedup_stats(struct dedup *d, struct dedup_stats *stats)
{
    pthread_mutex_lock(&d->mu);
    stats->entries = d->count;
    stats->capacity = d->max;
    pthread_mutex_unlock(&d->mu);
}
