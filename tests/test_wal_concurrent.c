/*
 * test_wal_concurrent.c - many threads appending and committing at once:
 * every committed record is in the log after a reopen, each thread's
 * records in its order, a record whose commit returned before another's
 * append started comes before it, and commits share fdatasyncs. A second
 * sub-test reads the log over and over while the writers run.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define KiB 1024u
#define THREADS 8
#define PER_THREAD 2000
#define NONE UINT64_MAX

struct rec_state {
    size_t len;            /* chosen before the threads start */
    uint64_t seen;         /* the commit counter when the append started */
    _Atomic uint64_t done; /* the counter value its commit completion took; 0 before */
    struct wal_ticket t;
};

static wal *g_log;
static struct rec_state g_recs[THREADS][PER_THREAD];
static unsigned g_per_thread = PER_THREAD;
static atomic_uint_fast64_t g_done_counter;
static atomic_int g_writers_left;
static uint64_t g_seed;

static uint64_t rec_id(unsigned tid, unsigned seq)
{
    return (uint64_t)tid << 32 | seq;
}

static size_t rec_len(uint64_t *rng)
{
    uint64_t r = tu_rand(rng) % 1000;
    if (r < 3)
        return (size_t)tu_rand_range(rng, 20000, 70000); /* several frames */
    if (r < 100)
        return (size_t)tu_rand_range(rng, 2000, 9000);
    return (size_t)tu_rand_range(rng, 8, 600);
}

/* Chooses every record's length, before any thread starts. */
static void plan_records(unsigned per_thread)
{
    g_per_thread = per_thread;
    memset(g_recs, 0, sizeof g_recs);
    for (unsigned tid = 0; tid < THREADS; tid++) {
        uint64_t rng = g_seed ^ (0x1234567ull * (tid + 1));
        for (unsigned seq = 0; seq < per_thread; seq++)
            g_recs[tid][seq].len = rec_len(&rng);
    }
    atomic_store(&g_done_counter, 0);
    atomic_store(&g_writers_left, THREADS);
}

static void *writer(void *arg)
{
    unsigned tid = (unsigned)(uintptr_t)arg;
    uint8_t *buf = malloc(70000);
    CHECK(buf != NULL);
    for (unsigned seq = 0; seq < g_per_thread; seq++) {
        struct rec_state *r = &g_recs[tid][seq];
        tu_payload(buf, r->len, rec_id(tid, seq));
        r->seen = atomic_load(&g_done_counter);
        int rc = wal_append(g_log, buf, r->len, &r->t);
        CHECKF(rc == 0, "thread %u record %u: wal_append returned %d", tid, seq, rc);
        rc = wal_commit_to(g_log, r->t.end);
        CHECKF(rc == 0, "thread %u record %u: wal_commit_to returned %d", tid, seq, rc);
        atomic_store(&r->done, atomic_fetch_add(&g_done_counter, 1) + 1);
        uint64_t durable = wal_durable_pos(g_log);
        CHECKF(durable >= r->t.end, "thread %u record %u: durable %llu < end %llu", tid, seq,
               (unsigned long long)durable, (unsigned long long)r->t.end);
    }
    free(buf);
    atomic_fetch_sub(&g_writers_left, 1);
    return NULL;
}

/* Reads the whole log while the writers run: what it reads must be each
 * thread's records in order without a gap, byte for byte, and every record
 * whose commit returned before the pass started must be there. */
static void *scanner(void *arg)
{
    long *passes = arg;
    for (int last = 0; !last;) {
        last = atomic_load(&g_writers_left) == 0;
        uint64_t committed_by = atomic_load(&g_done_counter);
        wal_reader *rd;
        CHECK_OK(wal_reader_open(g_log, wal_first_pos(g_log), &rd));
        unsigned next[THREADS] = {0};
        const void *data;
        size_t len;
        uint64_t pos, prev = 0;
        int rc;
        while ((rc = wal_reader_next(rd, &data, &len, &pos)) == 1) {
            CHECKF(len >= 8 && pos >= prev, "pass %ld: record of %zu bytes at %llu", *passes, len,
                   (unsigned long long)pos);
            prev = pos;
            uint64_t id = tu_payload_id(data, len);
            unsigned tid = (unsigned)(id >> 32), seq = (unsigned)id;
            CHECKF(tid < THREADS && seq == next[tid],
                   "pass %ld: record %llx at %llu where thread %u's record %u was due", *passes,
                   (unsigned long long)id, (unsigned long long)pos, tid < THREADS ? tid : 0,
                   tid < THREADS ? next[tid] : 0);
            CHECKF(tu_payload_matches(data, len, id, g_recs[tid][seq].len),
                   "pass %ld: thread %u record %u at %llu has other bytes", *passes, tid, seq,
                   (unsigned long long)pos);
            next[tid]++;
        }
        CHECKF(rc == 0, "pass %ld: wal_reader_next returned %d", *passes, rc);
        struct wal_stop stop;
        wal_reader_stop(rd, &stop);
        wal_reader_close(rd);
        CHECKF(stop.reason != WAL_STOP_IO, "pass %ld: the reader failed: %d", *passes, stop.error);
        for (unsigned tid = 0; tid < THREADS; tid++)
            for (unsigned seq = next[tid]; seq < g_per_thread; seq++) {
                uint64_t done = atomic_load(&g_recs[tid][seq].done);
                CHECKF(done == 0 || done > committed_by,
                       "pass %ld: thread %u record %u was committed before the pass began, but "
                       "the reader stopped before it: %s at %llu",
                       *passes, tid, seq, wal_stop_reason_name(stop.reason),
                       (unsigned long long)stop.pos);
            }
        (*passes)++;
    }
    return NULL;
}

struct seen_rec {
    unsigned tid, seq;
};

static void test_concurrent_commits(void)
{
    g_seed = tu_seed(0xc0c0);
    tu_note("seed %llu, %d threads x %d records", (unsigned long long)g_seed, THREADS, PER_THREAD);
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, 256 * KiB, 1024 * KiB);
    g_log = TU_OPEN(dir, &o);
    plan_records(PER_THREAD);

    pthread_t threads[THREADS];
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, writer, (void *)(uintptr_t)i) == 0);
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);

    struct wal_stats st;
    wal_stats(g_log, &st);
    tu_note("commits %llu, shared %llu, syncs %llu, writes %llu, frames %llu, padded %llu bytes",
            (unsigned long long)st.commits, (unsigned long long)st.commits_shared,
            (unsigned long long)st.syncs, (unsigned long long)st.writes,
            (unsigned long long)st.frames, (unsigned long long)st.bytes_padded);
    CHECK_EQ_U(st.appends, THREADS * PER_THREAD);
    CHECK_EQ_U(st.commits, THREADS * PER_THREAD);
    CHECKF(st.syncs < st.commits, "no commit shared a sync: %llu syncs for %llu commits",
           (unsigned long long)st.syncs, (unsigned long long)st.commits);
    CHECK_OK(wal_close(g_log));

    o.create = 0;
    g_log = TU_OPEN(dir, &o);
    wal_reader *rd;
    CHECK_OK(wal_reader_open(g_log, wal_first_pos(g_log), &rd));
    struct seen_rec *order = calloc(THREADS * PER_THREAD, sizeof *order);
    CHECK(order != NULL);
    static unsigned char found[THREADS][PER_THREAD];
    memset(found, 0, sizeof found);
    unsigned next_seq[THREADS] = {0};
    size_t n = 0;
    const void *data;
    size_t len;
    uint64_t pos;
    int rc;
    while ((rc = wal_reader_next(rd, &data, &len, &pos)) == 1) {
        CHECKF(len >= 8, "record of %zu bytes at %llu", len, (unsigned long long)pos);
        uint64_t id = tu_payload_id(data, len);
        unsigned tid = (unsigned)(id >> 32), seq = (unsigned)id;
        CHECKF(tid < THREADS && seq < PER_THREAD, "unknown record id %llx at %llu",
               (unsigned long long)id, (unsigned long long)pos);
        struct rec_state *r = &g_recs[tid][seq];
        CHECKF(!found[tid][seq], "thread %u record %u read twice", tid, seq);
        CHECKF(tu_payload_matches(data, len, id, r->len) && pos == r->t.pos,
               "thread %u record %u: wrong contents or position (%llu, ticket %llu)", tid, seq,
               (unsigned long long)pos, (unsigned long long)r->t.pos);
        CHECKF(seq == next_seq[tid], "thread %u: record %u read where %u was due", tid, seq,
               next_seq[tid]);
        next_seq[tid]++;
        found[tid][seq] = 1;
        CHECK(n < THREADS * PER_THREAD);
        order[n].tid = tid;
        order[n].seq = seq;
        n++;
    }
    CHECKF(rc == 0, "wal_reader_next returned %d", rc);
    struct wal_stop stop;
    wal_reader_stop(rd, &stop);
    wal_reader_close(rd);
    CHECKF(n == THREADS * PER_THREAD, "read %zu records of %d; reader stopped: %s at %llu", n,
           THREADS * PER_THREAD, wal_stop_reason_name(stop.reason), (unsigned long long)stop.pos);

    /* Committed before appended, then first in the log: walking the log
     * backwards, the smallest completion number after a record must be
     * larger than the counter its append saw. */
    uint64_t min_done_after = NONE;
    size_t min_at = 0;
    for (size_t i = n; i-- > 0;) {
        struct rec_state *r = &g_recs[order[i].tid][order[i].seq];
        uint64_t done = atomic_load(&r->done);
        CHECKF(min_done_after == NONE || min_done_after > r->seen,
               "thread %u record %u (at %llu) was appended after thread %u record %u's commit "
               "returned, yet comes before it",
               order[i].tid, order[i].seq, (unsigned long long)r->t.pos, order[min_at].tid,
               order[min_at].seq);
        if (done < min_done_after) {
            min_done_after = done;
            min_at = i;
        }
    }
    CHECK_OK(wal_close(g_log));
    free(order);
}

static void test_commits_with_reader(void)
{
    g_seed = tu_seed(0xc0c0) + 1;
    enum { PER = 600 };
    tu_note("seed %llu, %d threads x %d records, a reader reading all the while",
            (unsigned long long)g_seed, THREADS, PER);
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, 64 * KiB, 256 * KiB);
    g_log = TU_OPEN(dir, &o);
    plan_records(PER);

    long passes = 0;
    pthread_t threads[THREADS], reader;
    CHECK(pthread_create(&reader, NULL, scanner, &passes) == 0);
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, writer, (void *)(uintptr_t)i) == 0);
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK(pthread_join(reader, NULL) == 0);
    tu_note("%ld passes over the log", passes);
    CHECK(passes >= 2);
    CHECK_OK(wal_close(g_log));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("concurrent_commits", test_concurrent_commits);
    tu_run("commits_with_reader", test_commits_with_reader);
    return tu_finish();
}
