/*
 * cache.c - the decompressed-chunk cache: a few shards, each a chained hash
 * table and an LRU list under one mutex.
 *
 * Shards: a cache hit copies up to 64 KiB under the shard's lock, so one lock
 * would serialise readers on that copy. A large cache is split into up to
 * MAX_SHARDS shards chosen by the key's hash, each with an equal part of the
 * bound; a small one (below 16 chunks of 64 KiB per shard) keeps a single
 * shard so that a full-size chunk always fits.
 *
 * Memory: an entry is one allocation, header and data together, with its
 * data capacity rounded up (to 64 bytes, or 4 KiB above 4 KiB). When an
 * insert must evict, it reuses an evicted entry of a fitting capacity
 * instead of freeing it and allocating anew, so a cache that is full of
 * chunks of one size (the common case: whole 64 KiB chunks of large values)
 * inserts without touching malloc. An entry is charged its capacity plus
 * ENTRY_OVERHEAD, the header and the allocator's own bookkeeping.
 *
 * Deleting a segment walks the LRU lists: it happens once per compacted
 * segment, rarely enough that per-segment lists are not worth their upkeep.
 */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHARDS 8
#define MIN_SHARD_BYTES ((uint64_t)16 * 64 * 1024)
#define INITIAL_BUCKETS 64

struct centry {
    struct centry *hnext;       /* hash chain */
    struct centry *prev, *next; /* LRU list, most recent after the head */
    uint64_t off;
    struct cache_who who;
    uint32_t seg, len, cap;
    unsigned char data[];
};

/* The header, plus what malloc keeps beside each block. */
#define ENTRY_OVERHEAD (sizeof(struct centry) + 16)

struct shard {
    pthread_mutex_t mu;
    struct centry **buckets;
    size_t mask; /* buckets - 1, a power of two minus one */
    size_t count;
    struct centry lru; /* sentinel */
    uint64_t bytes, limit;
    uint64_t hits, misses;
} __attribute__((aligned(64))); /* no false sharing between shard locks */

struct cache {
    unsigned nshards;
    struct shard *shards;
};

static uint64_t key_hash(uint32_t seg, uint64_t off)
{
    uint64_t h = off ^ ((uint64_t)seg << 40) ^ ((uint64_t)seg >> 24);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint32_t capacity_for(uint32_t len)
{
    uint32_t step = len > 4096 ? 4096 : 64;
    return (len + step - 1) / step * step;
}

static uint64_t charge(const struct centry *e)
{
    return (uint64_t)e->cap + ENTRY_OVERHEAD;
}

static struct shard *shard_of(struct cache *c, uint64_t h)
{
    return &c->shards[(h >> 40) % c->nshards];
}

int cache_create(uint64_t bytes, struct cache **out)
{
    struct cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    uint64_t n = bytes / MIN_SHARD_BYTES;
    c->nshards = bytes == 0 ? 0 : n < 1 ? 1 : n > MAX_SHARDS ? MAX_SHARDS : (unsigned)n;
    /* Even an empty cache has one shard, to count misses in. */
    unsigned alloc = c->nshards ? c->nshards : 1;
    if (posix_memalign((void **)&c->shards, 64, alloc * sizeof *c->shards) != 0) {
        free(c);
        return -ENOMEM;
    }
    memset(c->shards, 0, alloc * sizeof *c->shards);
    for (unsigned i = 0; i < alloc; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->lru.prev = s->lru.next = &s->lru;
        s->limit = c->nshards ? bytes / c->nshards : 0;
    }
    if (c->nshards == 0)
        c->nshards = 1; /* limit 0: nothing is ever inserted */
    *out = c;
    return 0;
}

static void free_entries(struct shard *s)
{
    for (struct centry *e = s->lru.next, *next; e != &s->lru; e = next) {
        next = e->next;
        free(e);
    }
    s->lru.prev = s->lru.next = &s->lru;
    if (s->buckets)
        memset(s->buckets, 0, (s->mask + 1) * sizeof *s->buckets);
    s->count = 0;
    s->bytes = 0;
}

void cache_destroy(struct cache *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nshards; i++) {
        free_entries(&c->shards[i]);
        free(c->shards[i].buckets);
        pthread_mutex_destroy(&c->shards[i].mu);
    }
    free(c->shards);
    free(c);
}

static void lru_unlink(struct centry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push_front(struct shard *s, struct centry *e)
{
    e->prev = &s->lru;
    e->next = s->lru.next;
    s->lru.next->prev = e;
    s->lru.next = e;
}

static struct centry **find_slot(struct shard *s, uint64_t h, uint32_t seg, uint64_t off)
{
    struct centry **p = &s->buckets[h & s->mask];
    while (*p && ((*p)->seg != seg || (*p)->off != off))
        p = &(*p)->hnext;
    return p;
}

/* Takes `e` out of its shard entirely (hash chain, LRU list, accounting). */
static void remove_entry(struct shard *s, struct centry *e)
{
    struct centry **p = find_slot(s, key_hash(e->seg, e->off), e->seg, e->off);
    *p = e->hnext;
    lru_unlink(e);
    s->count--;
    s->bytes -= charge(e);
}

/* Doubles the bucket array once chains would average more than one entry.
 * Failing to grow only makes chains longer. */
static void maybe_grow(struct shard *s)
{
    if (s->buckets && s->count < s->mask + 1)
        return;
    size_t n = s->buckets ? (s->mask + 1) * 2 : INITIAL_BUCKETS;
    struct centry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (struct centry *e = s->lru.next; e != &s->lru; e = e->next) {
        size_t i = key_hash(e->seg, e->off) & (n - 1);
        e->hnext = b[i];
        b[i] = e;
    }
    free(s->buckets);
    s->buckets = b;
    s->mask = n - 1;
}

int cache_get(struct cache *c, uint32_t seg, uint64_t off, const struct cache_who *who, void *buf,
              uint32_t len)
{
    uint64_t h = key_hash(seg, off);
    struct shard *s = shard_of(c, h);
    int hit = 0;
    pthread_mutex_lock(&s->mu);
    if (s->buckets) {
        struct centry *e = *find_slot(s, h, seg, off);
        if (e && e->who.id == who->id && e->who.index == who->index && e->who.tag == who->tag &&
            e->len == len) {
            memcpy(buf, e->data, len);
            lru_unlink(e);
            lru_push_front(s, e);
            hit = 1;
        }
    }
    if (hit)
        s->hits++;
    else
        s->misses++;
    pthread_mutex_unlock(&s->mu);
    return hit;
}

/* A victim's block can hold a new entry of capacity `cap` without wasting
 * more than a quarter of it. */
static int reusable(const struct centry *e, uint32_t cap)
{
    return e->cap >= cap && e->cap - cap <= e->cap / 4;
}

void cache_put(struct cache *c, uint32_t seg, uint64_t off, const struct cache_who *who,
               const void *data, uint32_t len)
{
    uint64_t h = key_hash(seg, off);
    struct shard *s = shard_of(c, h);
    uint32_t cap = capacity_for(len);
    if ((uint64_t)cap + ENTRY_OVERHEAD > s->limit)
        return;

    struct centry *dead = NULL, *e = NULL;
    pthread_mutex_lock(&s->mu);
    maybe_grow(s);
    if (!s->buckets)
        goto out;
    if (*find_slot(s, h, seg, off))
        goto out; /* records never change: what is there is the same */
    while (s->bytes + cap + ENTRY_OVERHEAD > s->limit) {
        struct centry *victim = s->lru.prev;
        remove_entry(s, victim);
        if (!e && reusable(victim, cap)) {
            e = victim;
        } else {
            victim->hnext = dead;
            dead = victim;
        }
    }
    if (!e) {
        e = malloc(sizeof *e + cap);
        if (!e)
            goto out;
        e->cap = cap;
    }
    /* A reused block may be larger than asked for: make room for it too. */
    while (s->bytes + charge(e) > s->limit && s->lru.next != &s->lru) {
        struct centry *victim = s->lru.prev;
        remove_entry(s, victim);
        victim->hnext = dead;
        dead = victim;
    }
    e->seg = seg;
    e->off = off;
    e->who = *who;
    e->len = len;
    memcpy(e->data, data, len);
    struct centry **slot = find_slot(s, h, seg, off);
    e->hnext = NULL;
    *slot = e;
    lru_push_front(s, e);
    s->count++;
    s->bytes += charge(e);
out:
    pthread_mutex_unlock(&s->mu);
    while (dead) {
        struct centry *next = dead->hnext;
        free(dead);
        dead = next;
    }
}

void cache_drop_segment(struct cache *c, uint32_t seg)
{
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        struct centry *dead = NULL;
        pthread_mutex_lock(&s->mu);
        for (struct centry *e = s->lru.next, *next; e != &s->lru; e = next) {
            next = e->next;
            if (e->seg == seg) {
                remove_entry(s, e);
                e->hnext = dead;
                dead = e;
            }
        }
        pthread_mutex_unlock(&s->mu);
        while (dead) {
            struct centry *next = dead->hnext;
            free(dead);
            dead = next;
        }
    }
}

void cache_drop_all(struct cache *c)
{
    for (unsigned i = 0; i < c->nshards; i++) {
        pthread_mutex_lock(&c->shards[i].mu);
        free_entries(&c->shards[i]);
        pthread_mutex_unlock(&c->shards[i].mu);
    }
}

void cache_stats(struct cache *c, struct cache_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        stats->hits += s->hits;
        stats->misses += s->misses;
        stats->bytes += s->bytes;
        stats->entries += s->count;
        pthread_mutex_unlock(&s->mu);
    }
}
