/*
 * compact.c - reclaiming the space of overwritten and deleted chunks.
 *
 * The live chunks of a mostly dead segment are copied, verbatim (no
 * recompression), to the newest segment, and their refs moved in memory.
 * The old segment is deleted only once two manifests written after the move
 * exist: the newest manifest and its fallback then both name the new
 * places, and the log they replay from starts after the move, so nothing
 * that can still be read names the old segment.
 *
 * Segments that large puts in flight are writing to are left alone: their
 * chunks are live before the record that names them is logged.
 *
 * A record may be named by several refs (shared chunks, see datafile.h):
 * it is live while any names it, its bytes count once in its segment's live
 * bytes, it is copied once, and every ref that named it moves to the one
 * copy.
 */
#include "db_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENT_HEADER_BYTES 64

/* A record that shared refs name, and whether the ref it was written for
 * is live too (then that one counts it). */
struct shared_place {
    uint64_t off;
    uint32_t seg;
    uint32_t owned;
    uint64_t bytes;
};

struct live_walk {
    uint64_t *live;
    uint32_t max_seg;
    struct shared_place *shared;
    size_t n_shared, cap;
    int err;
};

static void count_live(void *ctx, struct object *obj)
{
    struct live_walk *w = ctx;
    for (uint32_t i = 0; i < obj->n_slots && !w->err; i++) {
        const struct chunk_ref *r = &obj->slots[i].ref;
        if (!r->seg || r->seg > w->max_seg)
            continue;
        if (!(r->codec & CHUNK_SHARED)) {
            w->live[r->seg] += chunk_ref_record_bytes(r);
            continue;
        }
        if (w->n_shared == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 256;
            struct shared_place *p = realloc(w->shared, cap * sizeof(*p));
            if (!p) {
                w->err = -ENOMEM;
                return;
            }
            w->shared = p;
            w->cap = cap;
        }
        w->shared[w->n_shared++] =
            (struct shared_place){.off = r->off, .seg = r->seg, .bytes = chunk_ref_record_bytes(r)};
    }
}

static int place_order(const void *a, const void *b)
{
    const struct shared_place *x = a, *y = b;
    if (x->seg != y->seg)
        return x->seg < y->seg ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void mark_owned(void *ctx, struct object *obj)
{
    struct live_walk *w = ctx;
    for (uint32_t i = 0; i < obj->n_slots; i++) {
        const struct chunk_ref *r = &obj->slots[i].ref;
        if (!r->seg || r->seg > w->max_seg || (r->codec & CHUNK_SHARED))
            continue;
        struct shared_place key = {.off = r->off, .seg = r->seg};
        struct shared_place *p =
            bsearch(&key, w->shared, w->n_shared, sizeof(*w->shared), place_order);
        if (p)
            p->owned = 1;
    }
}

/* Adds the records that only shared refs name, once each. */
static void count_shared(mindb *db, struct live_walk *w)
{
    qsort(w->shared, w->n_shared, sizeof(*w->shared), place_order);
    size_t n = 0;
    for (size_t i = 0; i < w->n_shared; i++)
        if (n == 0 || place_order(&w->shared[n - 1], &w->shared[i]) != 0)
            w->shared[n++] = w->shared[i];
    w->n_shared = n;
    objtable_each(&db->objects, mark_owned, w);
    for (size_t i = 0; i < n; i++)
        if (!w->shared[i].owned)
            w->live[w->shared[i].seg] += w->shared[i].bytes;
}

static int segment_list(mindb *db, uint32_t **segs, uint64_t **sizes, size_t *n)
{
    size_t count = datafile_segments(db->data, NULL, NULL, 0);
    *segs = malloc((count + 1) * sizeof(**segs));
    *sizes = malloc((count + 1) * sizeof(**sizes));
    if (!*segs || !*sizes) {
        free(*segs);
        free(*sizes);
        return -ENOMEM;
    }
    *n = datafile_segments(db->data, *segs, *sizes, count);
    if (*n > count)
        *n = count;
    return 0;
}

/* The data segments, their sizes and their live bytes. */
struct seg_usage {
    uint32_t *segs;
    uint64_t *sizes;
    size_t n;
    uint64_t *live; /* by segment number, 0..max_seg */
    uint32_t max_seg;
};

static void usage_free(struct seg_usage *u)
{
    free(u->segs);
    free(u->sizes);
    free(u->live);
}

static int usage_load(mindb *db, struct seg_usage *u)
{
    memset(u, 0, sizeof(*u));
    int err = segment_list(db, &u->segs, &u->sizes, &u->n);
    if (err)
        return err;
    struct live_walk w = {.max_seg = u->n ? u->segs[u->n - 1] : 0};
    w.live = calloc((size_t)w.max_seg + 1, sizeof(*w.live));
    if (!w.live) {
        usage_free(u);
        return -ENOMEM;
    }
    pthread_rwlock_rdlock(&db->state);
    objtable_each(&db->objects, count_live, &w);
    if (!w.err && w.n_shared)
        count_shared(db, &w);
    pthread_rwlock_unlock(&db->state);
    free(w.shared);
    if (w.err) {
        free(w.live);
        usage_free(u);
        return w.err;
    }
    u->live = w.live;
    u->max_seg = w.max_seg;
    return 0;
}

/* Whether the i-th segment has dead bytes and a live fraction below
 * `percent`. */
static int usage_below(const struct seg_usage *u, size_t i, unsigned percent)
{
    uint64_t body = u->sizes[i] > SEGMENT_HEADER_BYTES ? u->sizes[i] - SEGMENT_HEADER_BYTES : 0;
    uint64_t live = u->segs[i] <= u->max_seg ? u->live[u->segs[i]] : 0;
    return live < body && live * 100 < body * percent;
}

int compact_due(mindb *db)
{
    if (!db->opt.compact_live_percent)
        return 0;
    struct seg_usage u;
    if (usage_load(db, &u) != 0)
        return 0;
    uint32_t active = datafile_active_segment(db->data);
    int due = 0;
    for (size_t i = 0; i < u.n && !due; i++)
        due = u.segs[i] != active && usage_below(&u, i, db->opt.compact_live_percent);
    usage_free(&u);
    return due;
}

static int is_pending(mindb *db, uint32_t seg)
{
    for (size_t i = 0; i < db->n_pending; i++)
        if (db->pending[i].seg == seg)
            return 1;
    return 0;
}

struct move {
    uint64_t id, index;
    struct chunk_ref from, to;
};

/* By place, the ref a record was written for (not shared) first: it is the
 * one whose copy can be checked against its id and index. */
static int move_order(const void *a, const void *b)
{
    const struct move *x = a, *y = b;
    if (x->from.seg != y->from.seg)
        return x->from.seg < y->from.seg ? -1 : 1;
    if (x->from.off != y->from.off)
        return x->from.off < y->from.off ? -1 : 1;
    int xs = (x->from.codec & CHUNK_SHARED) != 0, ys = (y->from.codec & CHUNK_SHARED) != 0;
    return xs - ys;
}

static int same_place(const struct chunk_ref *a, const struct chunk_ref *b)
{
    return a->seg == b->seg && a->off == b->off;
}

struct move_walk {
    const uint8_t *victim; /* by segment number */
    uint32_t max_seg;
    struct move *moves;
    size_t n, cap;
    int err;
};

static void collect_moves(void *ctx, struct object *obj)
{
    struct move_walk *w = ctx;
    for (uint32_t i = 0; i < obj->n_slots && !w->err; i++) {
        const struct chunk_ref *r = &obj->slots[i].ref;
        if (!r->seg || r->seg > w->max_seg || !w->victim[r->seg])
            continue;
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 1024;
            struct move *m = realloc(w->moves, cap * sizeof(*m));
            if (!m) {
                w->err = -ENOMEM;
                return;
            }
            w->moves = m;
            w->cap = cap;
        }
        w->moves[w->n++] = (struct move){.id = obj->id, .index = obj->slots[i].index, .from = *r};
    }
}

int compact_run(mindb *db, unsigned live_percent,
                void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
    struct seg_usage u;
    int err = usage_load(db, &u);
    if (err)
        return err;
    uint32_t max_seg = u.max_seg;
    struct move_walk w = {.max_seg = max_seg};
    uint8_t *victim = calloc((size_t)max_seg + 1, 1);
    if (!victim) {
        err = -ENOMEM;
        goto out;
    }
    w.victim = victim;
    uint32_t active = datafile_active_segment(db->data);
    pthread_rwlock_rdlock(&db->state);
    uint32_t pin = db->large_puts ? db->pin_seg : UINT32_MAX;
    pthread_rwlock_unlock(&db->state);
    size_t n_victims = 0;
    for (size_t i = 0; i < u.n; i++) {
        uint32_t s = u.segs[i];
        if (s == active || s >= pin || is_pending(db, s) || s > max_seg)
            continue;
        if (usage_below(&u, i, live_percent)) {
            victim[s] = 1;
            n_victims++;
        }
    }
    if (!n_victims)
        goto out;
    for (uint32_t s = 1; s <= max_seg; s++)
        if (victim[s])
            datafile_retire(db->data, s);

    pthread_rwlock_rdlock(&db->state);
    objtable_each(&db->objects, collect_moves, &w);
    pthread_rwlock_unlock(&db->state);
    if ((err = w.err))
        goto out;
    if (w.n)
        qsort(w.moves, w.n, sizeof(*w.moves), move_order);
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < w.n; i++)
        if (i == 0 || !same_place(&w.moves[i].from, &w.moves[i - 1].from))
            total += chunk_ref_record_bytes(&w.moves[i].from);
    for (size_t i = 0; i < w.n && !err; i++) {
        struct move *m = &w.moves[i];
        if (i > 0 && same_place(&m->from, &m[-1].from)) {
            /* Already copied: this ref names the copy too, shared or not as
             * it was. */
            m->to = m[-1].to;
            m->to.codec = m->from.codec;
            continue;
        }
        err = datafile_copy(db->data, m->id, m->index, &m->from, &m->to);
        done += chunk_ref_record_bytes(&m->from);
        if (progress)
            progress(ctx, done, total);
    }
    /* The copies must be durable before any ref points at them: a failed
     * sync may have lost them, and the next checkpoint, finding nothing of
     * its own to sync, would name them in a manifest. */
    if (!err)
        err = datafile_sync(db->data);
    if (err) {
        /* A damaged chunk cannot move, a failed write or sync leaves the
         * refs where they were; the segments stay (check reports damage). */
        db_log(db, "compaction stopped: %s", mindb_strerror(err));
        goto out;
    }
    pthread_rwlock_wrlock(&db->state);
    for (size_t i = 0; i < w.n; i++) {
        struct move *m = &w.moves[i];
        struct object *obj = objtable_get(&db->objects, m->id);
        struct chunk_slot *s = obj ? object_slot(obj, m->index) : NULL;
        if (s && s->ref.seg == m->from.seg && s->ref.off == m->from.off)
            s->ref = m->to;
    }
    pthread_rwlock_unlock(&db->state);

    if (db->n_pending + n_victims > db->pending_cap) {
        size_t cap = db->n_pending + n_victims + 16;
        struct pending_segment *p = realloc(db->pending, cap * sizeof(*p));
        if (!p) {
            err = -ENOMEM;
            goto out;
        }
        db->pending = p;
        db->pending_cap = cap;
    }
    for (uint32_t s = 1; s <= max_seg; s++)
        if (victim[s])
            db->pending[db->n_pending++] =
                (struct pending_segment){.seg = s, .after_seq = db->manifest_seq};
    atomic_fetch_add(&db->compactions, n_victims);
out:
    free(victim);
    free(w.moves);
    usage_free(&u);
    return err;
}

void compact_delete_pending(mindb *db)
{
    size_t keep = 0;
    for (size_t i = 0; i < db->n_pending; i++) {
        struct pending_segment *p = &db->pending[i];
        if (db->manifest_seq >= p->after_seq + 2) {
            int err = datafile_remove(db->data, p->seg);
            if (err == 0 || err == -ENOENT)
                continue;
            db_log(db, "removing data segment %u: %s", p->seg, mindb_strerror(err));
        }
        db->pending[keep++] = *p;
    }
    db->n_pending = keep;
}

/* When the segment new chunks go to is itself below the threshold, starts
 * a new one so the current one can be compacted too: otherwise a store
 * smaller than one segment would never get its dead bytes back. */
static int seal_active_if_dead(mindb *db, unsigned live_percent)
{
    uint32_t active = datafile_active_segment(db->data);
    struct seg_usage u;
    int err = active ? usage_load(db, &u) : 0;
    if (!active || err)
        return err;
    int due = 0;
    for (size_t i = 0; i < u.n; i++)
        if (u.segs[i] == active)
            due = usage_below(&u, i, live_percent);
    usage_free(&u);
    return due ? datafile_seal_active(db->data) : 0;
}

int mindb_compact(mindb *db, unsigned live_percent,
                  void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
    if (db->opt.read_only)
        return -EROFS;
    if (live_percent > 100)
        return -EINVAL;
    pthread_mutex_lock(&db->maint);
    /* Settle dirty data first, then move, then two checkpoints so the old
     * segments can go now rather than later. */
    int err = checkpoint_run(db);
    if (!err && live_percent)
        err = seal_active_if_dead(db, live_percent);
    if (!err)
        err = compact_run(db, live_percent, progress, ctx);
    if (!err)
        err = checkpoint_run(db);
    if (!err)
        err = checkpoint_run(db);
    pthread_mutex_unlock(&db->maint);
    return err;
}
