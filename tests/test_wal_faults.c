/*
 * test_wal_faults.c - the log under failing file operations, injected
 * through wal_options.io: O_DIRECT refused (the buffered fallback), ENOSPC
 * from writes and from making a new segment, a failed fdatasync (sticky),
 * a loop that fails the Nth call for every N, and a real full tmpfs.
 * After every failure the log must open and show a prefix of what was
 * appended that holds everything whose commit returned 0. The injecting
 * table is faultio.c's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_DIRECT, strsignal, nftw */
#endif
#include "faultio.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KiB 1024u
#define SEG (64 * KiB)
#define RING (64 * KiB)

/* ---- the log callback ---- */

struct messages {
    int count;
    char last[512];
};

static void log_message(void *ctx, const char *message)
{
    struct messages *m = ctx;
    m->count++;
    snprintf(m->last, sizeof m->last, "%s", message);
}

/* ---- helpers ---- */

static void options_with(struct wal_options *o, struct fault *f, struct messages *msgs)
{
    tu_options(o, RING, SEG);
    o->io = f ? &f->io : NULL;
    o->log = msgs ? log_message : NULL;
    o->log_ctx = msgs;
}

/* Opens a copy of `dir` with the plain io and checks that it holds a prefix
 * of the model of at least `min` records; returns how many. */
static size_t check_copy(const char *dir, const char *name, const struct tu_model *m, size_t min)
{
    char copy[TU_PATH_MAX];
    tu_path(copy, "%s", name);
    tu_copy_dir(dir, copy);
    struct wal_options o;
    options_with(&o, NULL, NULL);
    o.create = 0;
    wal *log = TU_OPEN(copy, &o);
    size_t n = READ_CHECK(log, wal_first_pos(log), m, 0, min, m->n, NULL);
    CHECK_OK(wal_close(log));
    CHECK_OK(tu_rm_rf(copy));
    return n;
}

/* Whether the filesystem under the test's directory takes O_DIRECT. */
static int direct_supported(void)
{
    char path[TU_PATH_MAX];
    tu_path(path, "direct-probe");
    int fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0644);
    if (fd >= 0)
        close(fd);
    unlink(path);
    return fd >= 0;
}

static void append_records(wal *log, struct tu_model *m, uint64_t *id, int count, size_t len)
{
    for (int i = 0; i < count; i++)
        CHECK_OK(tu_append(log, m, (*id)++, len + (size_t)i * 37));
}

/* ---- (a) O_DIRECT refused ---- */

/* `existing`: the log exists before the faulty open (made with the plain
 * io), so the first O_DIRECT write is a data write, not a zero fill. */
static void direct_refused(int at_open, int existing)
{
    if (!at_open && !direct_supported())
        tu_skip("the filesystem refuses O_DIRECT: no O_DIRECT write to refuse");
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    struct wal_options o;
    if (existing) {
        options_with(&o, NULL, NULL);
        o.direct_io = 1;
        wal *log = TU_OPEN(dir, &o);
        append_records(log, &m, &id, 5, 500);
        CHECK_OK(wal_commit(log));
        CHECK_OK(wal_close(log));
    }

    struct fault f;
    fault_init(&f);
    if (at_open)
        f.refuse_direct_open = 1;
    else
        f.refuse_direct_pwrite = 1;
    struct messages msgs = {0};
    options_with(&o, &f, &msgs);
    o.direct_io = 1; /* the fallback is what this tests, whatever MINDB_WAL_DIRECT says */
    wal *log = TU_OPEN(dir, &o);
    /* Into a second segment: a new file to open. */
    for (int round = 0; round < 10; round++) {
        append_records(log, &m, &id, 4, 3000);
        CHECK_OK(wal_commit(log));
    }
    CHECK(wal_durable_pos(log) > SEG);
    struct wal_stats st;
    wal_stats(log, &st);
    CHECK_EQ(st.direct_io, 0);
    if (at_open)
        CHECK(f.direct_opens >= 1);
    else
        CHECK_EQ(f.direct_pwrites_refused, 1);
    CHECKF(msgs.count == 1, "%d messages, the last: %s", msgs.count, msgs.last);
    tu_note("message: %s", msgs.last);
    CHECK_OK(wal_close(log));
    CHECK_EQ(f.open_fds, 0);
    fault_destroy(&f);

    options_with(&o, NULL, NULL);
    o.create = 0;
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
}

static void test_direct_refused_at_open(void)
{
    direct_refused(1, 0);
}

static void test_direct_refused_at_write(void)
{
    direct_refused(0, 0);
}

static void test_direct_refused_at_write_existing(void)
{
    direct_refused(0, 1);
}

/* ---- (b) ENOSPC from pwrite ---- */

static void test_pwrite_enospc(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct fault f;
    fault_init(&f);
    struct wal_options o;
    options_with(&o, &f, NULL);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    append_records(log, &m, &id, 10, 700);
    CHECK_OK(wal_commit(log));
    size_t committed = m.n;
    uint64_t durable = wal_durable_pos(log);

    f.pwrite_error = -ENOSPC;
    append_records(log, &m, &id, 5, 900); /* fits the ring: nothing written yet */
    CHECK_EQ(wal_commit(log), -ENOSPC);
    CHECK_EQ(wal_commit_to(log, m.r[m.n - 1].t.end), -ENOSPC);
    CHECK_EQ(wal_flush(log), -ENOSPC);
    CHECK(f.targeted > 0);
    CHECK_LE_U(durable, wal_durable_pos(log));
    CHECK(wal_durable_pos(log) < m.r[m.n - 1].t.end);
    size_t seen = check_copy(dir, "copy", &m, committed);
    tu_note("with the disk full: %zu of %zu records in a copy", seen, m.n);

    /* Space again: the same handle goes on, nothing lost. */
    f.pwrite_error = 0;
    CHECK_OK(wal_commit(log));
    CHECK_LE_U(m.r[m.n - 1].t.end, wal_durable_pos(log));
    append_records(log, &m, &id, 3, 5000);
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    CHECK_EQ(f.open_fds, 0);

    options_with(&o, NULL, NULL);
    o.create = 0;
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
    fault_destroy(&f);
}

/* ---- (c) ENOSPC while making a new segment ---- */

static void test_new_segment_enospc(void)
{
    char dir[TU_PATH_MAX], seg1[TU_PATH_MAX];
    tu_path(dir, "log");
    tu_segment_path(seg1, dir, 1);
    struct fault f;
    fault_init(&f);
    struct wal_options o;
    options_with(&o, &f, NULL);
    o.spare_segments = 0;
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    /* Segment 0 exists once something is committed. */
    append_records(log, &m, &id, 1, 3000);
    CHECK_OK(wal_commit(log));
    f.new_file_pwrite_error = -ENOSPC;
    size_t committed = m.n;
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++) {
        append_records(log, &m, &id, 1, 3000);
        rc = wal_commit(log);
        if (rc == 0)
            committed = m.n;
    }
    CHECKF(rc == -ENOSPC, "commit returned %d (%s)", rc, tu_strerror(rc));
    CHECK(f.targeted > 0);
    CHECK(committed > 1);
    CHECK(m.r[committed - 1].t.end <= SEG);
    tu_note("segment 1 file %s after the failure", tu_exists(seg1) ? "exists" : "is gone");
    size_t seen = check_copy(dir, "copy", &m, committed);
    tu_note("%zu committed, %zu appended, %zu in a copy", committed, m.n, seen);

    /* Retried with space: the segment is made, everything is there. */
    CHECK_EQ(wal_commit(log), -ENOSPC);
    f.new_file_pwrite_error = 0;
    CHECK_OK(wal_commit(log));
    CHECK(tu_exists(seg1));
    append_records(log, &m, &id, 5, 3000);
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    CHECK_EQ(f.open_fds, 0);

    options_with(&o, NULL, NULL);
    o.create = 0;
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
    fault_destroy(&f);
}

/* ---- (d) fdatasync fails: sticky ---- */

static void test_fdatasync_eio(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct fault f;
    fault_init(&f);
    struct wal_options o;
    options_with(&o, &f, NULL);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    append_records(log, &m, &id, 5, 1000);
    CHECK_OK(wal_commit(log));
    size_t committed = m.n;

    f.fdatasync_error = -EIO;
    append_records(log, &m, &id, 3, 1000);
    CHECK_EQ(wal_commit(log), -EIO);
    /* The kernel may have dropped the pages: the log refuses to go on, even
     * once fdatasync works again. */
    f.fdatasync_error = 0;
    CHECK_EQ(wal_commit(log), -EIO);
    int sync_rc = wal_sync(log); /* checked at the end, to see the rest first */
    CHECK_EQ(wal_commit_to(log, m.r[m.n - 1].t.end), -EIO);
    /* An append may be refused; if not, the record may or may not survive. */
    int rc = tu_append(log, &m, id++, 5);
    tu_note("wal_append after the failed sync returned %d", rc);
    CHECK_EQ(wal_commit(log), -EIO);
    CHECK(wal_durable_pos(log) < m.r[m.n - 1].t.end);
    rc = wal_close(log);
    CHECKF(rc < 0, "wal_close after a failed fdatasync returned %d", rc);
    CHECK_EQ(f.open_fds, 0);

    /* Reopen: recovery starts over from what is on disk. */
    options_with(&o, NULL, NULL);
    o.create = 0;
    log = TU_OPEN(dir, &o);
    size_t n = READ_CHECK(log, wal_first_pos(log), &m, 0, committed, m.n, NULL);
    m.n = n;
    append_records(log, &m, &id, 2, 1000);
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
    fault_destroy(&f);
    CHECKF(sync_rc == -EIO, "wal_sync after a failed fdatasync returned %d, not the sticky -EIO",
           sync_rc);
}

/* The fdatasync that closes a full segment before the next one starts fails:
 * as final as the commit's own, though the next write would succeed. */
static void test_segment_switch_sync_eio(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "log");
    struct fault f;
    fault_init(&f);
    struct wal_options o;
    options_with(&o, &f, NULL);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    uint64_t id = 1;
    /* Records through the 64 KiB ring until one fails: the ring drains
     * into segment 0, made with a zero fill that ends with fdatasync 1,
     * whose header is synced alone by fdatasync 2; before segment 1
     * begins, segment 0 is synced: fdatasync 3 fails. */
    f.fdatasync_countdown = 3;
    int rc = 0;
    while (rc == 0 && wal_append_pos(log) < 3 * SEG)
        rc = tu_append(log, &m, id++, 1000);
    CHECK_EQ(rc, -EIO);
    CHECK_EQ_U(f.targeted, 1);
    CHECK_LE_U(SEG, wal_append_pos(log));
    /* The next fdatasync would succeed, but nothing may build on it. */
    CHECK_EQ(wal_commit(log), -EIO);
    CHECK_EQ(wal_sync(log), -EIO);
    CHECK_EQ(tu_append(log, &m, id++, 10), -EIO);
    CHECK(wal_close(log) < 0);
    CHECK_EQ(f.open_fds, 0);

    /* What reached the disk is a prefix; the log goes on after it. */
    options_with(&o, NULL, NULL);
    o.create = 0;
    log = TU_OPEN(dir, &o);
    m.n = READ_CHECK(log, wal_first_pos(log), &m, 0, 0, m.n, NULL);
    append_records(log, &m, &id, 2, 1000);
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
    fault_destroy(&f);
}

/* ---- (e) fail the Nth call ---- */

struct scenario {
    struct tu_model s1, s2; /* appended by session 1 and 2 */
    size_t c1, c2;          /* ...of which this many were committed */
    int opened1, opened2;
    uint64_t released; /* what session 2 released, if wal_release returned 0 */
};

static const size_t scenario_sizes[] = {100,   3000, 20000, 1,     5000, 0,
                                        17000, 4080, 900,   12000, 64,   7000};

static void quiet_log(void *ctx, const char *message)
{
    (void)ctx;
    (void)message;
}

/*
 * Session 1: open (create), append, commit now and then, close.
 * Session 2: open, read everything, append and commit, release what is
 * durable, append into new segments (reusing the spares), close.
 */
static void run_scenario(const char *dir, struct fault *f, struct scenario *s)
{
    struct wal_options o;
    options_with(&o, f, NULL);
    o.log = quiet_log;
    wal *log = NULL;
    if (wal_open(dir, &o, &log) != 0) {
        CHECKF(f->open_fds == 0, "%d descriptors left open after a failed wal_open", f->open_fds);
        return;
    }
    s->opened1 = 1;
    size_t n = sizeof scenario_sizes / sizeof scenario_sizes[0];
    for (size_t i = 0; i < n; i++) {
        tu_append(log, &s->s1, i + 1, scenario_sizes[i]);
        if (i % 3 == 2 && wal_commit(log) == 0)
            s->c1 = s->s1.n;
    }
    if (wal_close(log) == 0)
        s->c1 = s->s1.n;
    CHECKF(f->open_fds == 0, "%d descriptors left open after wal_close", f->open_fds);

    o.create = 0;
    if (wal_open(dir, &o, &log) != 0) {
        CHECKF(f->open_fds == 0, "%d descriptors left open after a failed wal_open", f->open_fds);
        return;
    }
    s->opened2 = 1;
    wal_reader *rd;
    if (wal_reader_open(log, wal_first_pos(log), &rd) == 0) {
        const void *data;
        size_t len;
        uint64_t pos;
        while (wal_reader_next(rd, &data, &len, &pos) == 1)
            ;
        wal_reader_close(rd);
    }
    for (size_t i = 0; i < 4; i++) {
        tu_append(log, &s->s2, 1000 + i, 2500 * i);
        if (i % 2 == 1 && wal_commit(log) == 0)
            s->c2 = s->s2.n;
    }
    if (s->c2 == s->s2.n) {
        uint64_t durable = wal_durable_pos(log);
        if (wal_release(log, durable) == 0)
            s->released = durable;
    }
    for (size_t i = 0; i < 8; i++) {
        tu_append(log, &s->s2, 2000 + i, 15000);
        if (i % 2 == 1 && wal_commit(log) == 0)
            s->c2 = s->s2.n;
    }
    if (wal_close(log) == 0)
        s->c2 = s->s2.n;
    CHECKF(f->open_fds == 0, "%d descriptors left open after wal_close", f->open_fds);
}

static size_t first_index_from(const struct tu_model *m, uint64_t pos)
{
    size_t i = 0;
    while (i < m->n && m->r[i].t.pos < pos)
        i++;
    return i;
}

static int g_missing_logs; /* logs created, never committed to, reported missing */

/* The log after the scenario, from its first position on: a prefix of
 * session 1's records holding the committed ones, then a prefix of session
 * 2's holding the committed ones, less what was released. */
static void check_scenario(const char *dir, const struct scenario *s, const char *what)
{
    struct wal_options o;
    options_with(&o, NULL, NULL);
    o.create = !s->opened1; /* the failed first open may have left a half-made log */
    wal *log = NULL;
    int rc = wal_open(dir, &o, &log);
    if (rc == -ENOENT && s->c1 == 0 && s->c2 == 0 && tu_count_files(dir, "", ".wal") == 0) {
        /* A log that never got a segment file is reported missing (the
         * same as test_wal_basic's empty_log checks): not what this loop
         * looks for, so count it and look at the rest. */
        g_missing_logs++;
        o.create = 1;
        rc = wal_open(dir, &o, &log);
    }
    CHECKF(rc == 0, "%s: the log does not open: %d (%s)", what, rc, tu_strerror(rc));
    uint64_t first = wal_first_pos(log);
    if (s->released)
        CHECKF(first <= s->released, "%s: first_pos %llu beyond the released %llu", what,
               (unsigned long long)first, (unsigned long long)s->released);
    wal_reader *rd;
    CHECK_OK(wal_reader_open(log, first, &rd));
    size_t i1 = first_index_from(&s->s1, first), i2 = first_index_from(&s->s2, first);
    int in_s2 = 0;
    const void *data;
    size_t len;
    uint64_t pos;
    while ((rc = wal_reader_next(rd, &data, &len, &pos)) == 1) {
        if (!in_s2 && i1 < s->s1.n && pos == s->s1.r[i1].t.pos &&
            tu_payload_matches(data, len, s->s1.r[i1].id, s->s1.r[i1].len)) {
            i1++;
            continue;
        }
        CHECKF(i2 < s->s2.n && pos == s->s2.r[i2].t.pos &&
                   tu_payload_matches(data, len, s->s2.r[i2].id, s->s2.r[i2].len),
               "%s: after session 1's record %zu and session 2's %zu, a record of %zu bytes "
               "at %llu that is neither's next",
               what, i1, i2, len, (unsigned long long)pos);
        in_s2 = 1;
        i2++;
    }
    CHECKF(rc == 0, "%s: wal_reader_next returned %d", what, rc);
    struct wal_stop stop;
    wal_reader_stop(rd, &stop);
    wal_reader_close(rd);
    CHECKF(i1 >= s->c1,
           "%s: session 1's records end at %zu in the log, %zu were committed; "
           "reader stopped: %s at %llu",
           what, i1, s->c1, wal_stop_reason_name(stop.reason), (unsigned long long)stop.pos);
    CHECKF(i2 >= s->c2,
           "%s: session 2's records end at %zu in the log, %zu were committed; reader stopped: "
           "%s at %llu",
           what, i2, s->c2, wal_stop_reason_name(stop.reason), (unsigned long long)stop.pos);
    CHECK_OK(wal_close(log));
}

static void failure_loop(enum fail_mode mode)
{
    char dir[TU_PATH_MAX], what[128];
    long n;
    long total_calls = 0, by_op[OP_COUNT] = {0};
    for (n = 1;; n++) {
        CHECKF(n < 5000, "the scenario still hits a fault at call %ld", n);
        tu_path(dir, "log-%ld", n);
        struct fault f;
        fault_init(&f);
        f.fail_at = n;
        f.mode = mode;
        struct scenario s;
        memset(&s, 0, sizeof s);
        tu_model_init(&s.s1);
        tu_model_init(&s.s2);
        run_scenario(dir, &f, &s);
        snprintf(what, sizeof what, "mode %s, call %ld of %ld failed", fault_mode_name(mode), n,
                 f.calls);
        if (f.injected == 0) {
            /* Nothing failed: the whole scenario must have succeeded. */
            CHECK(s.opened1 && s.opened2);
            CHECK_EQ_U(s.c1, s.s1.n);
            CHECK_EQ_U(s.c2, s.s2.n);
        }
        check_scenario(dir, &s, what);
        total_calls = f.calls;
        memcpy(by_op, f.by_op, sizeof by_op);
        int done = f.injected == 0;
        tu_model_free(&s.s1);
        tu_model_free(&s.s2);
        fault_destroy(&f);
        CHECK_OK(tu_rm_rf(dir));
        if (done)
            break;
    }
    tu_note("mode %s: failed each of the first %ld calls; the scenario makes %ld",
            fault_mode_name(mode), n - 1, total_calls);
    tu_note("(openat %ld, close %ld, pread %ld, pwrite %ld, fdatasync %ld, fsync %ld, renameat "
            "%ld, unlinkat %ld, clear_direct %ld)",
            by_op[0], by_op[1], by_op[2], by_op[3], by_op[4], by_op[5], by_op[6], by_op[7],
            by_op[8]);
    if (g_missing_logs)
        tu_note("%d times a log created by wal_open and never committed to was reported "
                "missing (-ENOENT) by the next wal_open",
                g_missing_logs);
}

static void test_fail_nth_once(void)
{
    failure_loop(FAIL_ONCE);
}

static void test_fail_nth_onwards(void)
{
    failure_loop(FAIL_FROM);
}

static void test_fail_nth_torn(void)
{
    failure_loop(FAIL_TORN_CRASH);
}

/* ---- (f) a real full filesystem ---- */

static int ci(void)
{
    const char *v = getenv("CI");
    return v && strcmp(v, "true") == 0;
}

/* Fills the tmpfs mounted at tu_dir()/mnt. */
static void fill_tmpfs(void)
{
    char filler[TU_PATH_MAX], dir[TU_PATH_MAX];
    tu_path(filler, "mnt/filler");
    tu_path(dir, "mnt/log");
    {
        size_t len = 256 * KiB;
        uint8_t *junk = malloc(len);
        CHECK(junk != NULL);
        memset(junk, 0x5a, len);
        int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0);
        CHECK(write(fd, junk, len) == (ssize_t)len);
        CHECK(close(fd) == 0);
        free(junk);
    }

    struct wal_options o;
    tu_options(&o, RING, SEG);
    wal *log = TU_OPEN(dir, &o);
    struct tu_model m;
    tu_model_init(&m);
    size_t committed = 0;
    int rc = 0;
    for (uint64_t id = 1; rc == 0; id++) {
        CHECKF(id < 2000, "a 1 MiB filesystem took %llu records without filling up",
               (unsigned long long)id);
        CHECK_OK(tu_append(log, &m, id, 3000));
        rc = wal_commit(log);
        if (rc == 0)
            committed = m.n;
    }
    CHECKF(rc == -ENOSPC, "commit returned %d (%s)", rc, tu_strerror(rc));
    size_t seen = check_copy(dir, "copy", &m, committed);
    tu_note("full after %zu committed records; %zu in a copy", committed, seen);

    CHECK(unlink(filler) == 0);
    CHECK_OK(wal_commit(log));
    for (uint64_t id = 5000; id < 5005; id++)
        CHECK_OK(tu_append(log, &m, id, 3000));
    CHECK_OK(wal_commit(log));
    CHECK_OK(wal_close(log));
    o.create = 0;
    REOPEN_CHECK(dir, &o, &m);
    tu_model_free(&m);
}

static void test_tmpfs_enospc(void)
{
    if (geteuid() != 0) {
        CHECKF(!ci(), "not root, so no tmpfs can be mounted (CI=true: failing, not skipping)");
        tu_skip("not root, so no tmpfs can be mounted");
    }
    char mnt[TU_PATH_MAX];
    tu_path(mnt, "mnt");
    CHECK(mkdir(mnt, 0755) == 0);
    if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") != 0) {
        int e = errno;
        CHECKF(!ci(), "mount tmpfs: %s (CI=true: failing, not skipping)", strerror(e));
        tu_skip("mount tmpfs: %s", strerror(e));
    }
    /* The work runs in a child so that the filesystem is unmounted whatever
     * happens to it. */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        fill_tmpfs();
        fflush(stdout);
        exit(0);
    }
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    int unmounted = umount2(mnt, 0) == 0 || umount2(mnt, MNT_DETACH) == 0;
    CHECK(pid > 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the work on the tmpfs failed");
    CHECKF(unmounted, "umount %s: %s", mnt, strerror(errno));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("direct_refused_at_open", test_direct_refused_at_open);
    tu_run("direct_refused_at_write", test_direct_refused_at_write);
    tu_run("direct_refused_at_write_existing", test_direct_refused_at_write_existing);
    tu_run("pwrite_enospc", test_pwrite_enospc);
    tu_run("new_segment_enospc", test_new_segment_enospc);
    tu_run("fdatasync_eio", test_fdatasync_eio);
    tu_run("segment_switch_sync_eio", test_segment_switch_sync_eio);
    tu_run("fail_nth_once", test_fail_nth_once);
    tu_run("fail_nth_onwards", test_fail_nth_onwards);
    tu_run("fail_nth_torn", test_fail_nth_torn);
    tu_run("tmpfs_enospc", test_tmpfs_enospc);
    return tu_finish();
}
