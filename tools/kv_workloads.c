/*
 * kv_workloads.c - kv_bench's workloads on an open store: fills, reads of
 * present and absent keys, scans, and durable puts from several threads,
 * each timed and checked as it goes. kv_bench.c decides which run on which
 * engine and in which directory; kv_bench_data.c makes the keys and values.
 */
#ifndef _GNU_SOURCE /* the build defines it; this is for a compile by hand */
#define _GNU_SOURCE
#endif

#include "kv_bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One read in this many is checked against the value written. */
#define CHECK_EVERY 16

volatile sig_atomic_t kv_interrupted;
/* What kv_touch() read, so that the compiler keeps the reads. */
static volatile uint64_t touched;

double kv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int kv_store_open(const struct kv_backend *e, const char *dir,
                  const struct kv_open_options *options, struct kv_store *st)
{
    st->e = e;
    int rc = e->open(dir, options, &st->db);
    if (rc < 0)
        return rc;
    rc = e->session_open(st->db, 0, &st->s);
    if (rc < 0)
        e->close(st->db);
    return rc;
}

int kv_store_close(struct kv_store *st, double *seconds)
{
    double start = kv_now();
    st->e->session_close(st->s);
    int rc = st->e->close(st->db);
    if (seconds)
        *seconds = kv_now() - start;
    return rc;
}

int kv_fill(struct kv_harness *h, struct kv_store *st, const uint32_t *order, uint64_t n,
            uint64_t value_size, unsigned version, struct kv_run *run)
{
    uint64_t seed = h->b->cfg.seed;
    char key[KV_KEY_BYTES];
    double start = kv_now();
    for (uint64_t i = 0; i < n; i++) {
        if (kv_interrupted)
            return -EINTR;
        uint64_t index = order ? order[i] : i;
        kv_make_key(index, key);
        kv_make_value(seed, index, version, h->value, (size_t)value_size);
        int rc = st->e->put(st->s, key, KV_KEY_BYTES, h->value, (size_t)value_size);
        if (rc < 0)
            return rc;
    }
    int rc = st->e->sync(st->s);
    if (rc < 0)
        return rc;
    run->seconds = kv_now() - start;
    run->ops = n;
    run->bytes = n * (KV_KEY_BYTES + value_size);
    return 0;
}

int kv_read_keys(struct kv_harness *h, struct kv_store *st, const uint32_t *order, uint64_t n,
                 uint64_t value_size, bool missing, struct kv_run *run)
{
    uint64_t seed = h->b->cfg.seed, bytes = 0;
    char key[KV_KEY_BYTES];
    double start = kv_now();
    for (uint64_t i = 0; i < n; i++) {
        if (kv_interrupted)
            return -EINTR;
        uint64_t index = order[i];
        if (missing)
            kv_make_missing_key(index, key);
        else
            kv_make_key(index, key);
        const void *value;
        size_t len;
        int rc = st->e->get(st->s, key, KV_KEY_BYTES, &value, &len);
        if (missing) {
            if (rc == 0) {
                kv_report(st->e->name, "readmissing", "found a key that was never put");
                return -EEXIST;
            }
            if (rc != -ENOENT)
                return rc;
            bytes += KV_KEY_BYTES;
            continue;
        }
        if (rc == -ENOENT) {
            kv_report(st->e->name, "read", "a key that was put is missing");
            return -ENOENT;
        }
        if (rc < 0)
            return rc;
        touched += kv_touch(value, len);
        if (len != value_size ||
            (i % CHECK_EVERY == 0 &&
             !kv_check_value(seed, index, 0, value, len, (size_t)value_size, h->expected))) {
            kv_report(st->e->name, "read", "a value differs from the one put");
            return -EBADMSG;
        }
        bytes += KV_KEY_BYTES + len;
    }
    run->seconds = kv_now() - start;
    run->ops = n;
    run->bytes = bytes;
    return 0;
}

struct scan_check {
    struct kv_harness *h;
    const char *engine;
    uint64_t value_size;
    uint64_t entries;
    uint64_t bytes;
    uint64_t start_index;
    uint64_t last_index;
};

static int scan_entry(void *ctx, const void *key, size_t key_len, const void *value,
                      size_t value_len)
{
    struct scan_check *c = ctx;
    uint64_t index = kv_key_index(key, key_len);
    /* The store holds keys start, start+1, ...: each entry is the next. */
    uint64_t want = c->entries == 0 ? c->start_index : c->last_index + 1;
    if (index != want || value_len != c->value_size) {
        kv_report(c->engine, "scan", "an entry out of order, or of the wrong size");
        return -EBADMSG;
    }
    if (c->entries == 0 &&
        !kv_check_value(c->h->b->cfg.seed, index, 0, value, value_len, value_len, c->h->expected)) {
        kv_report(c->engine, "scan", "a value differs from the one put");
        return -EBADMSG;
    }
    touched += kv_touch(value, value_len);
    c->last_index = index;
    c->entries++;
    c->bytes += key_len + value_len;
    return 0;
}

int kv_scan_keys(struct kv_harness *h, struct kv_store *st, struct kv_run *run)
{
    const struct kv_config *cfg = &h->b->cfg;
    uint64_t scans = (cfg->keys + cfg->scan_length - 1) / cfg->scan_length;
    uint64_t state = cfg->seed ^ 0x5CA11u, entries = 0, bytes = 0;
    char key[KV_KEY_BYTES];
    double start = kv_now();
    for (uint64_t i = 0; i < scans; i++) {
        if (kv_interrupted)
            return -EINTR;
        struct scan_check c = {
            .h = h,
            .engine = st->e->name,
            .value_size = cfg->value_size,
            .start_index = kv_random(&state) % cfg->keys,
        };
        kv_make_key(c.start_index, key);
        int rc = st->e->scan(st->s, key, KV_KEY_BYTES, cfg->scan_length, scan_entry, &c);
        if (rc < 0)
            return rc;
        uint64_t want = cfg->keys - c.start_index;
        if (want > cfg->scan_length)
            want = cfg->scan_length;
        if (c.entries != want) {
            kv_report(st->e->name, "scan", "fewer entries than the store holds");
            return -EBADMSG;
        }
        entries += c.entries;
        bytes += c.bytes;
    }
    run->seconds = kv_now() - start;
    run->ops = entries;
    run->bytes = bytes;
    run->scans = scans;
    return 0;
}

/* ---- Durable puts from several threads ---- */

enum gate { GATE_CLOSED, GATE_OPEN, GATE_ABORT };

struct sync_run {
    const struct kv_backend *e;
    struct kv_db *db;
    uint64_t seed;
    uint64_t value_size;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum gate gate;
};

struct sync_worker {
    pthread_t thread;
    struct sync_run *run;
    unsigned index;
    uint64_t first_key, puts;
    double start, end;
    int error;
};

static void *sync_worker_main(void *arg)
{
    struct sync_worker *w = arg;
    struct sync_run *run = w->run;
    struct kv_session *s = NULL;
    unsigned char *value = malloc(run->value_size);
    w->error = !value ? kv_report_errno(run->e->name, "malloc", -ENOMEM)
                      : run->e->session_open(run->db, w->index, &s);

    pthread_mutex_lock(&run->lock);
    while (run->gate == GATE_CLOSED)
        pthread_cond_wait(&run->cond, &run->lock);
    bool go = run->gate == GATE_OPEN;
    pthread_mutex_unlock(&run->lock);

    w->start = kv_now();
    char key[KV_KEY_BYTES];
    for (uint64_t i = 0; go && w->error == 0 && i < w->puts; i++) {
        if (kv_interrupted) {
            w->error = -EINTR;
            break;
        }
        uint64_t index = w->first_key + i;
        kv_make_key(index, key);
        kv_make_value(run->seed, index, 0, value, (size_t)run->value_size);
        w->error = run->e->put(s, key, KV_KEY_BYTES, value, (size_t)run->value_size);
    }
    w->end = kv_now();
    if (s)
        run->e->session_close(s);
    free(value);
    return NULL;
}

int kv_fill_sync(struct kv_harness *h, const struct kv_backend *e, struct kv_db *db,
                 unsigned threads, struct kv_run *out)
{
    const struct kv_config *cfg = &h->b->cfg;
    struct sync_run run = {
        .e = e,
        .db = db,
        .seed = cfg->seed,
        .value_size = cfg->value_size,
        .gate = GATE_CLOSED,
    };
    struct sync_worker *workers = calloc(threads, sizeof *workers);
    if (!workers)
        return kv_report_errno(e->name, "calloc", -ENOMEM);
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.cond, NULL);
    uint64_t next = 0;
    int rc = 0;
    unsigned made = 0;
    for (; made < threads; made++) {
        struct sync_worker *w = &workers[made];
        w->run = &run;
        w->index = made;
        w->first_key = next;
        w->puts = cfg->sync_ops / threads + (made < cfg->sync_ops % threads);
        next += w->puts;
        rc = -pthread_create(&w->thread, NULL, sync_worker_main, w);
        if (rc < 0) {
            kv_report_errno(e->name, "pthread_create", rc);
            break;
        }
    }
    pthread_mutex_lock(&run.lock);
    run.gate = rc < 0 ? GATE_ABORT : GATE_OPEN;
    pthread_cond_broadcast(&run.cond);
    pthread_mutex_unlock(&run.lock);
    double first = 0, last = 0;
    for (unsigned i = 0; i < made; i++) {
        pthread_join(workers[i].thread, NULL);
        if (rc == 0 && workers[i].error < 0)
            rc = workers[i].error;
        if (i == 0 || workers[i].start < first)
            first = workers[i].start;
        if (workers[i].end > last)
            last = workers[i].end;
    }
    free(workers);
    pthread_cond_destroy(&run.cond);
    pthread_mutex_destroy(&run.lock);
    if (rc < 0)
        return rc;
    out->seconds = last - first;
    out->ops = cfg->sync_ops;
    out->bytes = cfg->sync_ops * (KV_KEY_BYTES + cfg->value_size);
    return 0;
}
