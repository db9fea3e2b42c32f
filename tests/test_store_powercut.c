/*
 * test_store_powercut.c - the store and its log after a power cut,
 * simulated by powercut.h's table (through mindb_open_io() and
 * wal_options.io), at cut points spread over a run (cutpoints.h).
 *
 * At each point the run's call N cuts the power (it and every later call
 * fail with -EIO and change nothing), the code under test closes its
 * handle, the table rewrites the directory to a state the disk may hold
 * after the cut, and the store or log is opened again without injection
 * (and without syncs: no cut follows them, so they would only wait for
 * the disk). Half the points (by cut seed) cut the power a second time, at
 * a call the cut seed draws, while the store or log recovers from the
 * first cut and is closed (recovery writes too): what that open showed
 * must be exactly what the next open shows.
 *
 *   store  a store made and closed beforehand; the run opens it, makes
 *          puts (small ones, values up to 160 KiB, a put just under 1 MiB
 *          whose record the log splits into two frames, puts of over
 *          1 MiB that go to data segments before their record), writes
 *          through handles over a value (whole chunks to data segments,
 *          bound by one record the log writes only after syncing them) and
 *          deletes, with syncs, checkpoints and a compaction, then closes
 *          it. After the cut the store must open, pass mindb_check, and
 *          show a prefix of the history of changes holding every change
 *          that a sync, checkpoint, compaction or close returning 0 covered
 *          (storehist.c), also when that return came after the cut. At
 *          one point in four (by cut seed) it must then go on: changes
 *          made, synced and closed are all there when it is opened again.
 *   wal    a bare log with 64 KiB segments, where records fill segments,
 *          released ones become spares and are reused within one run
 *          (the store's log has 64 MiB segments, which a test run never
 *          fills). After the cut the log must open and hold a run of the
 *          appended records, from its first one on, that covers every
 *          record committed and not released; records appended, committed
 *          and closed after reopening must follow it.
 *   wal_switch  the same checks on a short run of the log into its first
 *          segment and its second, with one commit at the end: every call
 *          cut, with 12 cut seeds each. A cut that kept a segment's first
 *          frames and lost its header left a log that would not open
 *          (-EUCLEAN) before the writer synced headers first.
 *
 * Environment (cutpoints.h has the rest):
 *   MINDB_POWERCUT_POINTS  cut points of `store` (default 500; `wal` runs
 *                          a quarter as many). The long form:
 *                            MINDB_POWERCUT_POINTS=20000 MINDB_TEST_TIMEOUT=7200 \
 *                                build/tests/test_store_powercut
 *   MINDB_POWERCUT_ONLY    SEED:N:CUTSEED runs that one point of the
 *                          sub-tests named on the command line, e.g.
 *                            MINDB_POWERCUT_ONLY=0x5eed0200:371:0x9c1e2f \
 *                            MINDB_POWERCUT_TRACE=1 build/tests/test_store_powercut store
 */
#include "cutpoints.h"
#include "mindb_io.h"
#include "powercut.h"
#include "sparseimage.h"
#include "storehist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_POINTS 500
#define RUN_VERSION_BASE 1000000u     /* versions of the changes of the run */
#define AFTER_VERSION_BASE 2000000u   /* ...and of those after the cut */
#define BIG_PUT_BYTES (MiB + 8 * KiB) /* 1 MiB or more: chunks first, then a record */
#define SPLIT_PUT_BYTES (MiB - 24)    /* its record is a little over one frame */
#define GOES_ON_EVERY 4               /* points (by cut seed) that also go on */
#define SECOND_CUT_CALLS 60           /* about the calls of an open and a close */

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* The file operations of the opens that check a store or log after a cut:
 * no crash follows them, so their syncs would only wait for the disk. */
static int skip_sync(void *ctx, int fd)
{
    (void)ctx;
    (void)fd;
    return 0;
}

static struct wal_io nosync_io;

static const struct wal_io *no_syncs(void)
{
    nosync_io = wal_posix_io;
    nosync_io.fdatasync = skip_sync;
    nosync_io.fsync = skip_sync;
    return &nosync_io;
}

/* ---- store: a workload on a store ---- */

struct store_setup {
    char dir[TU_PATH_MAX];
    struct sparse_image img;
    struct history base;
};

static void store_options(struct mindb_options *o)
{
    su_options(o, 1);
    o->create = 0;
    /* Every checkpoint and compaction is the workload's, on its thread:
     * the Nth call of one run is the Nth call of the next. */
    o->background = 0;
    o->checkpoint_interval_ms = 0;
    o->compact_live_percent = 0;
    o->data_segment_bytes = 128 * KiB; /* several segments for compaction */
    o->compression_level = 1;          /* the fastest: a point compresses a lot */
}

static void count_recovery(void *ctx, const char *message)
{
    if (strstr(message, "recovered after a crash"))
        (*(long *)ctx)++;
    if (env_flag("MINDB_TEST_LOG"))
        fprintf(stderr, "    mindb: %s\n", message);
}

/* A sync-like call that returned: on 0, everything made so far is durable. */
static void covered(struct history *h, int rc, const struct powercut *pc, struct tally *t)
{
    if (rc != 0)
        return;
    h->synced = h->n;
    if (pc->cut)
        t->ok_after_cut++;
}

/*
 * The run: changes in eight rounds, each round's count and sizes drawn
 * from the seed, its other steps fixed. After the cut every step fails or
 * works in memory only; the steps go on regardless, so that a sync that
 * claims success after the cut is caught.
 */
static void store_workload(mindb *db, struct history *h, uint64_t seed, const struct powercut *pc,
                           struct tally *t)
{
    struct workload w;
    wl_init(&w, seed, RUN_VERSION_BASE, 160 * KiB, 20);
    uint64_t rng = cut_mix(seed, 1);
    for (int round = 0; round < 8; round++) {
        (void)wl_run(&w, db, h, (int)tu_rand_range(&rng, 3, 8), NULL);
        switch (round) {
        case 1:
        case 6:
            (void)wl_put(&w, db, h, BIG_PUT_BYTES + (size_t)tu_rand_range(&rng, 0, 128 * KiB));
            break;
        case 3:
            (void)wl_put(&w, db, h, SPLIT_PUT_BYTES - (size_t)tu_rand_range(&rng, 0, 8));
            break;
        case 0:
        case 5:
        case 7:
            for (int i = 0; i < 3; i++)
                (void)wl_write(&w, db, h, (size_t)tu_rand_range(&rng, 160 * KiB, MiB - 1));
            break;
        }
        switch (round) {
        case 2:
        case 4:
            covered(h, mindb_checkpoint(db), pc, t);
            break;
        case 5:
            covered(h, mindb_compact(db, 100, NULL, NULL), pc, t);
            break;
        case 7:
            break; /* left for the close */
        default:
            covered(h, mindb_sync(db), pc, t);
            break;
        }
    }
    wl_free(&w);
}

/* storehist.c's hist_verify_reopen() without syncs: the store opens,
 * passes mindb_check and shows a prefix of `h` that holds its synced
 * changes. Returns the length of that prefix. */
static size_t verify_reopen(const char *what, const char *dir, const struct mindb_options *opts,
                            const struct history *h)
{
    struct mindb_options o = *opts;
    o.create = 0;
    mindb *db = NULL;
    int rc = mindb_open_io(dir, &o, no_syncs(), &db);
    CHECKF(rc == 0, "%s: the store does not open again: %d (%s)", what, rc, su_strerror(rc));
    rc = mindb_check(db, NULL, NULL, NULL);
    CHECKF(rc == 0, "%s: mindb_check after reopening returned %d (%s)", what, rc,
           rc < 0 ? su_strerror(rc) : "damaged keys");
    struct history seen;
    hist_init(&seen);
    hist_adopt_open_state(what, db, h, &seen);
    size_t s = seen.n;
    hist_free(&seen);
    rc = mindb_close(db);
    CHECKF(rc == 0, "%s: closing the reopened store returned %d (%s)", what, rc, su_strerror(rc));
    return s;
}

/* After a cut: the store must go on, and keep what it then syncs. */
static void store_goes_on(const char *what, const char *dir, const struct mindb_options *o,
                          const struct history *seen, uint64_t seed)
{
    mindb *db = NULL;
    int rc = mindb_open_io(dir, o, no_syncs(), &db);
    CHECKF(rc == 0, "%s, opened again to go on: %d (%s)", what, rc, su_strerror(rc));
    struct history h;
    hist_init(&h);
    hist_adopt_open_state(what, db, seen, &h);
    struct workload w;
    wl_init(&w, cut_mix(seed, 3), AFTER_VERSION_BASE, 100 * KiB, 20);
    CHECK_OK(wl_run(&w, db, &h, 6, NULL));
    CHECK_OK(hist_sync(db, &h));
    CHECK_OK(wl_run(&w, db, &h, 3, NULL));
    CHECK_OK(mindb_close(db));
    h.synced = h.n;
    char after[1100];
    snprintf(after, sizeof after, "%s, after going on", what);
    size_t s = verify_reopen(after, dir, o, &h);
    CHECKF(s == h.n, "%s: %zu of %zu changes there after a clean close", after, s, h.n);
    wl_free(&w);
    hist_free(&h);
}

/*
 * Opens the store after the cut through a second table, whose power goes
 * at its call `n2` (beyond the calls made: no second cut), closes it, and
 * applies that cut: recovery writes too (a BEGIN frame, segments turned
 * back into spares, an unmade data segment deleted, the close's
 * checkpoint). Returns how many changes of `h` the open showed, or -1 when
 * the cut came before the open returned.
 */
static long recover_under_cut(const char *what, const char *dir, const struct mindb_options *o,
                              const struct history *h, long n2, uint64_t cseed2, struct tally *t)
{
    char attic[TU_PATH_MAX];
    cut_attic(attic);
    struct powercut pc;
    powercut_init(&pc, attic);
    cut_table_env(&pc);
    pc.cut_at = n2;
    mindb *db = NULL;
    long shown = -1;
    int rc = mindb_open_io(dir, o, &pc.io, &db);
    if (rc == 0 && !pc.cut) {
        /* The reads that look at the state do not count: the second cut
         * falls in the open or in the close. */
        long left = pc.cut_at - pc.calls;
        pc.cut_at = 0;
        struct history seen;
        hist_init(&seen);
        hist_adopt_open_state(what, db, h, &seen);
        shown = (long)seen.n;
        hist_free(&seen);
        pc.cut_at = pc.calls + left;
    }
    if (rc == 0) {
        (void)mindb_close(db);
    } else {
        CHECKF(pc.cut, "%s: the store did not open without a second cut: %d (%s)", what, rc,
               su_strerror(rc));
    }
    t->second_cuts += pc.cut;
    struct powercut_result r;
    powercut_apply(&pc, cseed2, &r);
    powercut_destroy(&pc);
    return shown;
}

static void store_point(const void *arg, const struct point *p, struct tally *t)
{
    const struct store_setup *s = arg;
    char attic[TU_PATH_MAX];
    sparse_image_restore(&s->img, s->dir);
    cut_attic(attic);
    struct powercut pc;
    powercut_init(&pc, attic);
    cut_table_env(&pc);
    pc.cut_at = p->n;
    struct mindb_options o;
    store_options(&o);
    struct history h;
    hist_init(&h);
    hist_copy_prefix(&h, &s->base, s->base.n);

    mindb *db = NULL;
    int rc = mindb_open_io(s->dir, &o, &pc.io, &db);
    if (rc == 0) {
        store_workload(db, &h, p->wseed, &pc, t);
        covered(&h, mindb_close(db), &pc, t);
    } else {
        CHECKF(pc.cut, "the store did not open without a cut: %d (%s)", rc, su_strerror(rc));
        t->cut_in_open++;
    }
    t->calls = pc.calls;
    struct powercut_result r;
    powercut_apply(&pc, p->cseed, &r);
    cut_count(t, &pc, &r);
    char what[1024];
    cut_describe_point(what, sizeof what, "store", p, &pc, &r);
    powercut_destroy(&pc);

    /* Half the points cut the power a second time, while the store
     * recovers: the open must show the same changes before and after. */
    long before = -1;
    if (p->cseed % 2 == 0) {
        uint64_t rng = cut_mix(p->cseed, 5);
        long n2 = (long)tu_rand_range(&rng, 1, SECOND_CUT_CALLS);
        size_t used = strlen(what);
        snprintf(what + used, sizeof what - used, "; 2nd cut at call %ld", n2);
        before = recover_under_cut(what, s->dir, &o, &h, n2, tu_rand(&rng), t);
        if (before >= 0)
            h.synced = (size_t)before; /* shown, and changed by nothing since */
    }
    if (getenv("MINDB_POWERCUT_ONLY"))
        tu_note("%s", what);

    long recoveries = 0;
    o.log = count_recovery;
    o.log_ctx = &recoveries;
    size_t shown = verify_reopen(what, s->dir, &o, &h);
    CHECKF(before < 0 || shown == (size_t)before,
           "%s: the store showed %ld changes when it recovered from the first cut, then %zu "
           "after a cut while it did",
           what, before, shown);
    t->recoveries += recoveries > 0;
    t->short_reopens += shown < h.n;
    t->synced_only += shown == h.synced && h.synced < h.n;
    if (p->cseed % GOES_ON_EVERY == 0) {
        struct history seen;
        hist_init(&seen);
        hist_copy_prefix(&seen, &h, shown);
        store_goes_on(what, s->dir, &o, &seen, p->wseed);
        hist_free(&seen);
    }
    hist_free(&h);
}

/* A store of several data segments with dead space, closed. */
static void store_prepare(struct store_setup *s)
{
    char prepared[TU_PATH_MAX];
    tu_path(prepared, "prepared");
    struct mindb_options o;
    store_options(&o);
    o.create = 1;
    mindb *db = SU_OPEN(prepared, &o);
    hist_init(&s->base);
    struct workload w;
    wl_init(&w, 0x5eed0100, 1, 100 * KiB, 25);
    CHECK_OK(wl_run(&w, db, &s->base, 24, NULL));
    CHECK_OK(hist_sync(db, &s->base));
    CHECK_OK(mindb_checkpoint(db));
    CHECK_OK(wl_run(&w, db, &s->base, 12, NULL));
    CHECK_OK(mindb_close(db));
    s->base.synced = s->base.n;
    wl_free(&w);
    sparse_image_load(&s->img, prepared);
    CHECK_OK(tu_rm_rf(prepared));
    tu_path(s->dir, "store");
    tu_note("prepared store: %zu files and directories, %" PRIu64 " KiB not zero, %zu changes",
            s->img.n, s->img.bytes / KiB, s->base.n);
}

static void test_store(void)
{
    struct store_setup s;
    store_prepare(&s);
    cut_run_points("store", store_point, &s, cut_points_wanted(DEFAULT_POINTS),
                   tu_seed(0x5eed0200));
    sparse_image_free(&s.img);
    hist_free(&s.base);
}

/* ---- wal: a bare log with small segments ---- */

#define WAL_SEGMENT_BYTES (64 * KiB)
#define WAL_RECORDS 160
#define WAL_SWITCH_CALLS 24 /* about the calls of test_wal_switch's run */

static void wal_options(struct wal_options *o)
{
    tu_options(o, 64 * KiB, WAL_SEGMENT_BYTES);
    o->create = 0;
}

static void print_wal_log(void *ctx, const char *message)
{
    (void)ctx;
    fprintf(stderr, "    wal: %s\n", message);
}

struct wal_setup {
    struct sparse_image img; /* an empty log */
    int across;              /* the short workload of wal_switch */
};

/* What a run of the log promised. */
struct wal_promise {
    struct tu_model m;
    size_t committed;  /* records [0, committed) were committed */
    uint64_t released; /* records before this position are no longer needed */
};

static void wal_commit_covers(struct wal_promise *pr, int rc, const struct powercut *pc,
                              struct tally *t)
{
    if (rc != 0)
        return;
    pr->committed = pr->m.n;
    if (pc->cut)
        t->ok_after_cut++;
}

/* Records of 20 bytes to 24 KiB (those over 16 KiB take two frames),
 * commits every few, and a release of what the last commits covered every
 * 20 records, as a store's checkpoints do. */
static void wal_workload(wal *log, struct wal_promise *pr, uint64_t seed, const struct powercut *pc,
                         struct tally *t)
{
    uint64_t rng = cut_mix(seed, 4);
    for (uint64_t id = 1; id <= WAL_RECORDS; id++) {
        size_t len = tu_rand_range(&rng, 0, 9) < 8 ? (size_t)tu_rand_range(&rng, 20, 3000)
                                                   : (size_t)tu_rand_range(&rng, 3000, 24 * KiB);
        (void)tu_append(log, &pr->m, id, len);
        if (tu_rand_range(&rng, 0, 3) == 0)
            wal_commit_covers(pr, wal_commit(log), pc, t);
        if (id % 20 == 0 && pr->committed > 8) {
            /* Given up by the call, whatever it returns: a release that
             * fails half way has retired some of the segments. */
            uint64_t pos = pr->m.r[pr->committed - 8].t.pos;
            if (pos > pr->released)
                pr->released = pos;
            (void)wal_release(log, pos);
        }
    }
}

/* Records into the first segment and the second, one commit at the end:
 * the ring fills and is written out without syncs, so each segment gets
 * its header and first frames while nothing of it is durable. */
static void wal_across_workload(wal *log, struct wal_promise *pr, const struct powercut *pc,
                                struct tally *t)
{
    for (uint64_t id = 1; id <= WAL_SEGMENT_BYTES / 3000 + 2; id++)
        (void)tu_append(log, &pr->m, id, 3000);
    wal_commit_covers(pr, wal_commit(log), pc, t);
}

/* Reads the log from its first position: the records must be model
 * records first, first+1, ... Returns how many; *first gets the first. */
static size_t wal_read_run(const char *what, wal *log, const struct tu_model *m, size_t *first)
{
    wal_reader *rd = NULL;
    uint64_t from = wal_first_pos(log);
    int rc = wal_reader_open(log, from, &rd);
    CHECKF(rc == 0, "%s: wal_reader_open(%" PRIu64 ") returned %d (%s)", what, from, rc,
           tu_strerror(rc));
    size_t n = 0;
    *first = m->n;
    const void *data;
    size_t len;
    uint64_t pos;
    while ((rc = wal_reader_next(rd, &data, &len, &pos)) == 1) {
        if (n == 0) {
            size_t j = 0;
            while (j < m->n && m->r[j].t.pos < pos)
                j++;
            CHECKF(j < m->n && m->r[j].t.pos == pos,
                   "%s: the first record read, at %" PRIu64 ", is at no position a record was "
                   "appended at",
                   what, pos);
            *first = j;
        }
        size_t i = *first + n;
        CHECKF(i < m->n, "%s: record #%zu of the log, at %" PRIu64 ", was never appended", what, n,
               pos);
        const struct tu_rec *e = &m->r[i];
        CHECKF(pos == e->t.pos && len == e->len && tu_payload_matches(data, len, e->id, e->len),
               "%s: the log's record #%zu is not record %" PRIu64 " (len %zu at %" PRIu64
               "): len %zu at %" PRIu64,
               what, n, e->id, e->len, e->t.pos, len, pos);
        n++;
    }
    CHECKF(rc == 0, "%s: wal_reader_next returned %d (%s)", what, rc, tu_strerror(rc));
    struct wal_stop stop;
    wal_reader_stop(rd, &stop);
    wal_reader_close(rd);
    CHECKF(stop.reason != WAL_STOP_IO, "%s: the reader stopped on a read error %d at %" PRIu64,
           what, stop.error, stop.pos);
    return n;
}

/* As recover_under_cut() for the store: opens the log through a second
 * table whose power goes at its call `n2`, reads it, closes it, applies the
 * cut. Returns how many records the open showed (*first: from which), or
 * -1 when the cut came before the open returned. */
static long wal_recover_under_cut(const char *what, const char *dir, const struct wal_options *o,
                                  const struct tu_model *m, long n2, uint64_t cseed2, size_t *first,
                                  struct tally *t)
{
    char attic[TU_PATH_MAX];
    cut_attic(attic);
    struct powercut pc;
    powercut_init(&pc, attic);
    cut_table_env(&pc);
    pc.cut_at = n2;
    struct wal_options o2 = *o;
    o2.io = &pc.io;
    wal *log = NULL;
    long shown = -1;
    int rc = wal_open(dir, &o2, &log);
    if (rc == 0 && !pc.cut) {
        long left = pc.cut_at - pc.calls; /* the reads do not count */
        pc.cut_at = 0;
        shown = (long)wal_read_run(what, log, m, first);
        pc.cut_at = pc.calls + left;
    }
    if (rc == 0)
        (void)wal_close(log);
    else
        CHECKF(pc.cut, "%s: the log did not open without a second cut: %d (%s)", what, rc,
               tu_strerror(rc));
    t->second_cuts += pc.cut;
    struct powercut_result r;
    powercut_apply(&pc, cseed2, &r);
    powercut_destroy(&pc);
    return shown;
}

static void wal_point(const void *arg, const struct point *p, struct tally *t)
{
    const struct wal_setup *setup = arg;
    char dir[TU_PATH_MAX], attic[TU_PATH_MAX];
    tu_path(dir, "log");
    sparse_image_restore(&setup->img, dir);
    cut_attic(attic);
    struct powercut pc;
    powercut_init(&pc, attic);
    cut_table_env(&pc);
    pc.cut_at = p->n;
    struct wal_options o;
    wal_options(&o);
    o.io = &pc.io;
    struct wal_promise pr;
    memset(&pr, 0, sizeof pr);
    tu_model_init(&pr.m);

    wal *log = NULL;
    int rc = wal_open(dir, &o, &log);
    if (rc == 0) {
        if (setup->across)
            wal_across_workload(log, &pr, &pc, t);
        else
            wal_workload(log, &pr, p->wseed, &pc, t);
        wal_commit_covers(&pr, wal_close(log), &pc, t);
    } else {
        CHECKF(pc.cut, "the log did not open without a cut: %d (%s)", rc, tu_strerror(rc));
        t->cut_in_open++;
    }
    t->calls = pc.calls;
    struct powercut_result r;
    powercut_apply(&pc, p->cseed, &r);
    cut_count(t, &pc, &r);
    char what[1024];
    cut_describe_point(what, sizeof what, "wal", p, &pc, &r);
    powercut_destroy(&pc);
    o.io = no_syncs();
    if (env_flag("MINDB_TEST_LOG"))
        o.log = print_wal_log;

    /* Half the points cut the power again while the log recovers. */
    long before = -1;
    size_t first_before = 0;
    if (p->cseed % 2 == 0) {
        uint64_t rng = cut_mix(p->cseed, 5);
        long n2 = (long)tu_rand_range(&rng, 1, SECOND_CUT_CALLS / 2);
        size_t used = strlen(what);
        snprintf(what + used, sizeof what - used, "; 2nd cut at call %ld", n2);
        before = wal_recover_under_cut(what, dir, &o, &pr.m, n2, tu_rand(&rng), &first_before, t);
    }
    if (getenv("MINDB_POWERCUT_ONLY"))
        tu_note("%s", what);

    rc = wal_open(dir, &o, &log);
    CHECKF(rc == 0, "%s: the log does not open again: %d (%s)", what, rc, tu_strerror(rc));
    struct wal_stop stop;
    wal_recovery(log, &stop);
    t->recoveries += stop.reason != WAL_STOP_END;
    size_t first = 0;
    size_t n = wal_read_run(what, log, &pr.m, &first);
    CHECKF(before < 0 || (n == (size_t)before && (n == 0 || first == first_before)),
           "%s: the log held %ld records from record %zu when it recovered from the first cut, "
           "then %zu from record %zu after a cut while it did",
           what, before, first_before, n, first);
    /* Every committed record at or after the released position is there. */
    size_t needed = 0;
    while (needed < pr.committed && pr.m.r[needed].t.pos < pr.released)
        needed++;
    if (needed < pr.committed)
        CHECKF(n > 0 && first <= needed && first + n >= pr.committed,
               "%s: records %zu to %zu were committed and not released, but the log holds %zu "
               "records from record %zu on",
               what, needed, pr.committed, n, n ? first : 0);
    t->short_reopens += n == 0 || first + n < pr.m.n;
    t->synced_only += n > 0 && first + n == pr.committed && pr.committed < pr.m.n;

    /* Going on: new records follow the ones that survived. */
    struct tu_model seen;
    tu_model_init(&seen);
    if (n > 0)
        for (size_t i = 0; i < first + n; i++)
            tu_model_push(&seen, &pr.m.r[i]);
    for (uint64_t id = 1; id <= 3; id++)
        CHECK_OK(tu_append(log, &seen, WAL_RECORDS + id, 100 + 1000 * id));
    CHECK_OK(wal_close(log));
    log = TU_OPEN(dir, &o);
    char after[1100];
    snprintf(after, sizeof after, "%s, after going on", what);
    size_t first2 = 0;
    size_t n2 = wal_read_run(after, log, &seen, &first2);
    CHECKF(first2 + n2 == seen.n && n2 >= 3 && (n == 0 || first2 == first),
           "%s: read %zu records from record %zu; expected the %zu that survived the cut from "
           "record %zu, then the 3 new ones",
           after, n2, first2, n, first);
    CHECK_OK(wal_close(log));
    tu_model_free(&seen);
    tu_model_free(&pr.m);
}

/* An empty log: its segments are made on first use, in the run. */
static void wal_prepare(struct wal_setup *setup)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "prepared");
    struct wal_options o;
    wal_options(&o);
    o.create = 1;
    CHECK_OK(wal_close(TU_OPEN(dir, &o)));
    sparse_image_load(&setup->img, dir);
    CHECK_OK(tu_rm_rf(dir));
}

static void test_wal(void)
{
    struct wal_setup setup = {.across = 0};
    wal_prepare(&setup);
    cut_run_points("wal", wal_point, &setup, cut_points_wanted(DEFAULT_POINTS) / 4,
                   tu_seed(0x5eed0200));
    sparse_image_free(&setup.img);
}

/* Every call of a short run into a new segment, cut with 12 cut seeds
 * each: a cut that kept a segment's first frames but not its header once
 * left a log that refused to open (-EUCLEAN), until the writer synced the
 * header first. */
static void test_wal_switch(void)
{
    struct wal_setup setup = {.across = 1};
    wal_prepare(&setup);
    cut_run_points("wal_switch", wal_point, &setup, 12 * WAL_SWITCH_CALLS, tu_seed(0x5eed0300));
    sparse_image_free(&setup.img);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("store", test_store);
    tu_run("wal", test_wal);
    tu_run("wal_switch", test_wal_switch);
    return tu_finish();
}
