/*
 * test_store_crash.c - kill -9 at random moments. A child process opens the
 * store and runs a seeded random workload (puts of values up to 300 KiB,
 * deletes, writes through handles, renames, mkdir), calling mindb_sync now
 * and then; before each step it tells the parent, through a pipe, the step
 * it starts, and after each sync that returned 0 the step it has made
 * durable. The parent kills it with SIGKILL after a random delay, opens the
 * store, runs mindb_check, and replays the same workload (it is a function
 * of the seed and of the state it starts from) in the model of storeutil.h
 * until the model equals the store: the store must equal the model at some
 * step S with  last synced step <= S <= last step started.  The next
 * iteration goes on from that state, so recovering a store that was killed
 * while recovering, or while checkpointing (the log limit is small), is
 * tested as well.
 *
 * A second sub-test kills a put of a 40 MiB value: afterwards the key holds
 * the old value or the new one, whole.
 *
 * Environment:
 *   MINDB_CRASH_ITERATIONS  kills of the first sub-test (default 200). The
 *                           long form (about 20 minutes; the sub-test
 *                           timeout must be raised from its 600 s):
 *                             MINDB_CRASH_ITERATIONS=10000 MINDB_TEST_TIMEOUT=7200 \
 *                                 build/tests/test_store_crash
 *   MINDB_TEST_SEED         the seed
 */
#include "storemodel.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ITERATIONS 200
#define STEPS_PER_RUN 400
#define MAX_VALUE (300 * KiB)
#define MAX_FILE (1024 * KiB)
#define MAX_DELAY_US 50000
#define BIG_VALUE (40 * MiB)

/* What the child tells the parent. */
enum { REC_OPENED = 0, REC_STARTED = 1, REC_SYNCED = 2, REC_DONE = 3 };

struct rec {
    uint32_t kind;
    uint32_t pad;
    uint64_t step;
};

static void send_rec(int fd, uint32_t kind, uint64_t step)
{
    struct rec r = {.kind = kind, .step = step};
    /* 16 bytes to a pipe: written whole or not at all. */
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(4);
}

static void crash_options(struct mindb_options *o)
{
    su_options(o, 1);
    o->checkpoint_wal_bytes = 1 * MiB;
    o->dirty_bytes = 2 * MiB;
    o->checkpoint_interval_ms = 50;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the workload ---- */

enum op_type { W_PUT, W_DELETE, W_PWRITE, W_RENAME, W_MKDIR };

struct op {
    enum op_type type;
    uint8_t k1[32], k2[32];
    size_t l1, l2;
    unsigned flags;
    uint64_t off;
    size_t len; /* bytes of data in the workload's buffer */
    int sync;   /* mindb_sync after the step */
};

struct workload {
    uint64_t rng;
    uint64_t iteration;
    uint8_t *buf;
};

static uint64_t wrnd(struct workload *w, uint64_t n)
{
    return n ? tu_rand(&w->rng) % n : 0;
}

static size_t file_path(struct workload *w, uint8_t *k)
{
    int n = 0;
    for (uint64_t d = wrnd(w, 3); d > 0; d--)
        n += sprintf((char *)k + n, "d%u/", (unsigned)wrnd(w, 2));
    n += sprintf((char *)k + n, "f%u", (unsigned)wrnd(w, 5));
    return (size_t)n;
}

static size_t dir_path(struct workload *w, uint8_t *k)
{
    int n = sprintf((char *)k, "d%u", (unsigned)wrnd(w, 2));
    if (wrnd(w, 2))
        n += sprintf((char *)k + n, "/d%u", (unsigned)wrnd(w, 2));
    return (size_t)n;
}

/* A random key of the model of `type`, or 0 when there is none. */
static size_t pick(struct workload *w, const struct sm_model *m, int type, uint8_t *k)
{
    size_t count = 0;
    for (size_t i = 0; i < m->n; i++)
        count += m->e[i].obj->type == type && m->e[i].len <= 32;
    if (count == 0)
        return 0;
    size_t want = wrnd(w, count);
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].obj->type == type && m->e[i].len <= 32 && want-- == 0) {
            memcpy(k, m->e[i].key, m->e[i].len);
            return m->e[i].len;
        }
    return 0;
}

static size_t value_len(struct workload *w)
{
    uint64_t r = wrnd(w, 100);
    if (r < 50)
        return (size_t)wrnd(w, 4097);
    if (r < 85)
        return (size_t)wrnd(w, 64 * KiB);
    return (size_t)wrnd(w, MAX_VALUE + 1);
}

/* Chooses step `step` from the model's state and applies it to the model.
 * Only operations that succeed are chosen, so every step changes the
 * state; the store must then return 0. */
static void next_op(struct workload *w, struct sm_model *m, uint64_t step, struct op *op)
{
    uint64_t tag = w->iteration << 32 | step;
    for (int attempt = 0;; attempt++) {
        memset(op, 0, sizeof *op);
        uint64_t r = wrnd(w, 100);
        int rc = SM_SKIP;
        if (attempt >= 20) {
            /* A put of a key that never has children always works. */
            op->type = W_PUT;
            op->l1 = (size_t)sprintf((char *)op->k1, "f%u", (unsigned)wrnd(w, 5));
            op->len = value_len(w);
            su_value(w->buf, op->len, su_key_hash(op->k1, op->l1), tag);
            rc = sm_put(m, op->k1, op->l1, w->buf, op->len);
            CHECK(rc == 0);
        } else if (r < 40) {
            op->type = W_PUT;
            op->l1 = file_path(w, op->k1);
            op->len = value_len(w);
            su_value(w->buf, op->len, su_key_hash(op->k1, op->l1), tag);
            rc = sm_put(m, op->k1, op->l1, w->buf, op->len);
        } else if (r < 55) {
            op->type = W_DELETE;
            op->l1 = pick(w, m, wrnd(w, 4) ? MINDB_REG : MINDB_DIR, op->k1);
            if (op->l1)
                rc = sm_delete(m, op->k1, op->l1);
        } else if (r < 75) {
            op->type = W_PWRITE;
            op->l1 = pick(w, m, MINDB_REG, op->k1);
            long i = op->l1 ? sm_find(m, op->k1, op->l1) : -1;
            if (i >= 0) {
                struct sm_obj *o = m->e[i].obj;
                op->len = 1 + (size_t)wrnd(w, 100 * KiB);
                op->off = wrnd(w, o->size + 64 * KiB);
                if (op->off + op->len > MAX_FILE)
                    op->off = wrnd(w, MAX_FILE - op->len);
                su_fill(w->buf, op->len, tag);
                sm_pwrite(o, w->buf, op->len, op->off);
                rc = 0;
            }
        } else if (r < 90) {
            op->type = W_RENAME;
            int dirs = wrnd(w, 4) == 0;
            op->l1 = pick(w, m, dirs ? MINDB_DIR : MINDB_REG, op->k1);
            op->l2 = dirs ? dir_path(w, op->k2) : file_path(w, op->k2);
            op->flags = wrnd(w, 8) == 0 ? MINDB_RENAME_EXCHANGE : 0;
            if (op->l1)
                rc = sm_rename(m, op->k1, op->l1, op->k2, op->l2, op->flags);
        } else {
            op->type = W_MKDIR;
            op->l1 = dir_path(w, op->k1);
            rc = sm_create(m, op->k1, op->l1, S_IFDIR | 0755, m->uid, m->gid, NULL, 0);
        }
        if (rc == 0)
            break;
    }
    op->sync = wrnd(w, 100) < 15;
}

static const char *op_text(const struct op *op)
{
    static char s[160];
    static const char *const names[] = {"put", "delete", "pwrite", "rename", "mkdir"};
    snprintf(s, sizeof s, "%s %s %s len %zu off %llu flags %u%s", names[op->type],
             su_keystr(op->k1, op->l1), op->l2 ? su_keystr(op->k2, op->l2) : "", op->len,
             (unsigned long long)op->off, op->flags, op->sync ? " +sync" : "");
    return s;
}

static int store_op(mindb *db, const struct op *op, const uint8_t *buf)
{
    switch (op->type) {
    case W_PUT:
        return mindb_put(db, op->k1, op->l1, buf, op->len);
    case W_DELETE:
        return mindb_delete(db, op->k1, op->l1);
    case W_PWRITE: {
        mindb_file *f = NULL;
        int rc = mindb_file_open(db, op->k1, op->l1, 0, 0, &f);
        if (rc != 0)
            return rc;
        ssize_t n = mindb_pwrite(f, buf, op->len, op->off);
        mindb_file_close(f);
        return n == (ssize_t)op->len ? 0 : n < 0 ? (int)n : -EIO;
    }
    case W_RENAME:
        return mindb_rename(db, op->k1, op->l1, op->k2, op->l2, op->flags);
    case W_MKDIR:
        return mindb_create(db, op->k1, op->l1, S_IFDIR | 0755, (uint32_t)getuid(),
                            (uint32_t)getgid(), NULL, 0);
    }
    return -EINVAL;
}

/* ---- the child ---- */

static __attribute__((noreturn)) void run_child(const char *dir, struct sm_model *m, uint64_t seed,
                                                uint64_t iteration, int fd)
{
    struct workload w = {.rng = seed, .iteration = iteration, .buf = malloc(MAX_FILE)};
    CHECK(w.buf != NULL);
    struct mindb_options o;
    crash_options(&o);
    mindb *db = SU_OPEN(dir, &o);
    send_rec(fd, REC_OPENED, 0);
    for (uint64_t step = 1; step <= STEPS_PER_RUN; step++) {
        struct op op;
        next_op(&w, m, step, &op);
        send_rec(fd, REC_STARTED, step);
        int rc = store_op(db, &op, w.buf);
        CHECKF(rc == 0, "iteration %llu step %llu (%s) returned %d (%s)",
               (unsigned long long)iteration, (unsigned long long)step, op_text(&op), rc,
               su_strerror(rc));
        if (op.sync) {
            rc = mindb_sync(db);
            CHECKF(rc == 0, "mindb_sync returned %d (%s)", rc, su_strerror(rc));
            send_rec(fd, REC_SYNCED, step);
        }
    }
    send_rec(fd, REC_DONE, STEPS_PER_RUN);
    for (;;)
        pause();
}

/* ---- the parent ---- */

struct outcome {
    uint64_t started, synced;
    int done;
};

static void take_rec(struct outcome *out, const struct rec *r)
{
    if (r->kind == REC_STARTED && r->step > out->started)
        out->started = r->step;
    else if (r->kind == REC_SYNCED && r->step > out->synced)
        out->synced = r->step;
    else if (r->kind == REC_DONE)
        out->done = 1;
}

/* Forks the child and kills it `delay_us` after the fork or, with
 * `after_open`, after the child has opened the store; collects what it
 * said. */
static void run_and_kill(const char *dir, struct sm_model *m, uint64_t seed, uint64_t iteration,
                         uint64_t delay_us, int after_open, struct outcome *out)
{
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        run_child(dir, m, seed, iteration, p[1]);
    }
    close(p[1]);
    memset(out, 0, sizeof *out);
    struct rec r;
    ssize_t n;
    if (after_open) {
        while ((n = read(p[0], &r, sizeof r)) == (ssize_t)sizeof r && r.kind != REC_OPENED)
            take_rec(out, &r);
        CHECKF(n == (ssize_t)sizeof r, "iteration %llu: the child did not open the store",
               (unsigned long long)iteration);
    }
    sleep_us(delay_us);
    CHECK(kill(pid, SIGKILL) == 0);
    int ws;
    CHECK(waitpid(pid, &ws, 0) == pid);
    CHECKF(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL,
           "iteration %llu: the child ended by itself, status 0x%x", (unsigned long long)iteration,
           ws);
    while ((n = read(p[0], &r, sizeof r)) == (ssize_t)sizeof r)
        take_rec(out, &r);
    CHECK(n == 0);
    close(p[0]);
}

struct totals {
    uint64_t steps, synced, read_only_opens, rw_opens, in_open;
};

/* Opens the killed store, checks it, and finds the step it stopped at;
 * `m` becomes the model at that step. */
static void verify(const char *dir, struct sm_model *m, uint64_t seed, uint64_t iteration,
                   const struct outcome *out, struct totals *t)
{
    CHECKF(mindb_lock_holder(dir) == 0, "iteration %llu: lock holder %d after the kill",
           (unsigned long long)iteration, (int)mindb_lock_holder(dir));
    struct mindb_options o;
    crash_options(&o);
    o.create = 0;
    /* Every other time read-only: the next child then recovers the crash
     * itself, and may be killed while it does. */
    o.read_only = iteration % 2 == 0;
    t->read_only_opens += o.read_only != 0;
    t->rw_opens += o.read_only == 0;
    mindb *db = NULL;
    int rc = mindb_open(dir, &o, &db);
    CHECKF(rc == 0, "seed %llu iteration %llu: mindb_open after the kill returned %d (%s)",
           (unsigned long long)seed, (unsigned long long)iteration, rc, su_strerror(rc));
    rc = mindb_check(db, NULL, NULL, NULL);
    CHECKF(rc == 0, "seed %llu iteration %llu: mindb_check returned %d", (unsigned long long)seed,
           (unsigned long long)iteration, rc);
    char why[1024];
    struct su_snap store;
    rc = su_snap_store(db, &store, why, sizeof why);
    CHECKF(rc == 0, "seed %llu iteration %llu: reading the store: %s", (unsigned long long)seed,
           (unsigned long long)iteration, why);

    struct workload w = {.rng = seed, .iteration = iteration, .buf = malloc(MAX_FILE)};
    CHECK(w.buf != NULL);
    struct sm_model cur;
    sm_clone(&cur, m);
    char first_why[1024] = "";
    uint64_t found = UINT64_MAX;
    for (uint64_t step = 0; step <= out->started; step++) {
        if (step > 0) {
            struct op op;
            next_op(&w, &cur, step, &op);
        }
        if (step < out->synced)
            continue;
        struct su_snap model;
        su_snap_model(&cur, &model);
        int diff = su_snap_diff(&store, &model, why, sizeof why);
        su_snap_free(&model);
        if (!diff) {
            found = step;
            break;
        }
        if (step == out->synced)
            snprintf(first_why, sizeof first_why, "%s", why);
    }
    CHECKF(found != UINT64_MAX,
           "seed %llu iteration %llu: the store equals the model at no step from %llu (synced) "
           "to %llu (started); at step %llu: %s; at step %llu: %s",
           (unsigned long long)seed, (unsigned long long)iteration, (unsigned long long)out->synced,
           (unsigned long long)out->started, (unsigned long long)out->synced, first_why,
           (unsigned long long)out->started, why);
    t->steps += found;
    t->synced += out->synced;
    t->in_open += out->started == 0;
    sm_free(m);
    *m = cur;
    free(w.buf);
    su_snap_free(&store);
    rc = mindb_close(db);
    CHECKF(rc == 0, "iteration %llu: mindb_close returned %d (%s)", (unsigned long long)iteration,
           rc, su_strerror(rc));
}

static long iterations(void)
{
    const char *s = getenv("MINDB_CRASH_ITERATIONS");
    long n = s && *s ? atol(s) : DEFAULT_ITERATIONS;
    return n > 0 ? n : 1;
}

static void test_kill_workload(void)
{
    uint64_t seed = tu_seed(0xc4a5);
    long n = iterations();
    tu_note("seed %llu, %ld kills", (unsigned long long)seed, n);
    char dir[TU_PATH_MAX];
    su_store_path(dir, "store");
    struct mindb_options o;
    crash_options(&o);
    mindb *db = SU_OPEN(dir, &o);
    CHECK_OK(mindb_close(db));

    struct sm_model m;
    sm_init(&m);
    struct totals t = {0};
    uint64_t rng = seed;
    for (long i = 0; i < n; i++) {
        uint64_t it_seed = tu_rand(&rng);
        uint64_t delay = tu_rand(&rng) % (MAX_DELAY_US + 1);
        /* Mostly while the workload runs, sometimes while the child opens
         * (recovers) the store. */
        int after_open = tu_rand(&rng) % 4 != 0;
        /* An open of these small stores takes a few milliseconds: most of
         * the kills meant for it must come that early. */
        if (!after_open && tu_rand(&rng) % 4 != 0)
            delay %= MAX_DELAY_US / 4;
        struct outcome out;
        run_and_kill(dir, &m, it_seed, (uint64_t)i + 1, delay, after_open, &out);
        verify(dir, &m, it_seed, (uint64_t)i + 1, &out, &t);
    }
    tu_note("%llu steps survived in all (%llu of them synced), %llu kills before the first "
            "step, %zu keys at the end; %llu read-only and %llu read-write opens to check",
            (unsigned long long)t.steps, (unsigned long long)t.synced,
            (unsigned long long)t.in_open, m.n, (unsigned long long)t.read_only_opens,
            (unsigned long long)t.rw_opens);
    CHECK(t.steps > 0);
    sm_free(&m);
}

/* ---- a 40 MiB put, killed ---- */

static __attribute__((noreturn)) void big_child(const char *dir, uint64_t version, int fd)
{
    uint8_t *v = malloc(BIG_VALUE);
    CHECK(v != NULL);
    su_value(v, BIG_VALUE, 40, version);
    struct mindb_options o;
    crash_options(&o);
    o.dirty_bytes = 16 * MiB;
    o.checkpoint_wal_bytes = 8 * MiB;
    mindb *db = SU_OPEN(dir, &o);
    send_rec(fd, REC_OPENED, version);
    CHECK_OK(mindb_put(db, KEY("big"), v, BIG_VALUE));
    CHECK_OK(mindb_sync(db));
    send_rec(fd, REC_SYNCED, version);
    for (;;)
        pause();
}

/* Which version "big" holds: the value must be whole. */
static uint64_t big_version(const char *dir)
{
    struct mindb_options o;
    crash_options(&o);
    o.create = 0;
    mindb *db = SU_OPEN(dir, &o);
    void *v = NULL;
    size_t len = 0;
    int rc = mindb_get(db, KEY("big"), &v, &len);
    CHECKF(rc == 0, "get big after the kill returned %d (%s)", rc, su_strerror(rc));
    uint64_t tag1 = 0, version = 0;
    CHECKF(len == BIG_VALUE && su_value_parse(v, len, &tag1, &version) && tag1 == 40,
           "big holds %zu bytes that are no whole version", len);
    free(v);
    CHECK_EQ(mindb_check(db, NULL, NULL, NULL), 0);
    CHECK_OK(mindb_close(db));
    return version;
}

static void test_kill_big_put(void)
{
    uint64_t rng = tu_seed(0xb16) ^ 0x40;
    long n = iterations() / 25;
    if (n < 6)
        n = 6;
    char dir[TU_PATH_MAX];
    su_store_path(dir, "store");
    uint8_t *v = malloc(BIG_VALUE);
    CHECK(v != NULL);
    su_value(v, BIG_VALUE, 40, 1);
    struct mindb_options o;
    crash_options(&o);
    mindb *db = SU_OPEN(dir, &o);
    SU_PUT(db, KEY("big"), v, BIG_VALUE);
    CHECK_OK(mindb_close(db));
    free(v);

    uint64_t version = 1;
    double full = 0;
    int olds = 0, news = 0;
    for (long i = 0; i < n; i++) {
        int p[2];
        CHECK(pipe(p) == 0);
        fflush(stdout);
        fflush(stderr);
        double t0 = now_s();
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            big_child(dir, version + 1, p[1]);
        }
        close(p[1]);
        struct rec r;
        if (i == 0) {
            /* How long the put and its sync take: the kills fall within. */
            while (read(p[0], &r, sizeof r) == (ssize_t)sizeof r && r.kind != REC_OPENED)
                ;
            t0 = now_s();
            while (read(p[0], &r, sizeof r) == (ssize_t)sizeof r && r.kind != REC_SYNCED)
                ;
            full = now_s() - t0;
        } else {
            while (read(p[0], &r, sizeof r) == (ssize_t)sizeof r && r.kind != REC_OPENED)
                ;
            sleep_us(tu_rand(&rng) % (uint64_t)(full * 1.1e6 + 1));
        }
        CHECK(kill(pid, SIGKILL) == 0);
        int ws;
        CHECK(waitpid(pid, &ws, 0) == pid);
        CHECKF(WIFSIGNALED(ws), "the child ended by itself, status 0x%x", ws);
        int synced = 0;
        while (read(p[0], &r, sizeof r) == (ssize_t)sizeof r)
            synced |= r.kind == REC_SYNCED;
        close(p[0]);
        synced |= i == 0;
        uint64_t got = big_version(dir);
        CHECKF(got == version + 1 || (got == version && !synced),
               "kill %ld: big holds version %llu; before %llu, the put of %llu %s", i,
               (unsigned long long)got, (unsigned long long)version,
               (unsigned long long)(version + 1), synced ? "was synced" : "was not synced");
        olds += got == version;
        news += got == version + 1;
        version = got;
    }
    tu_note("the put and its sync took %.2f s; %d kills kept the old value, %d found the new one",
            full, olds, news);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("kill_workload", test_kill_workload);
    tu_run("kill_big_put", test_kill_big_put);
    return tu_finish();
}
