/*
 * cutpoints.c - see cutpoints.h.
 */
#include "cutpoints.h"
#include "storeutil.h" /* su_xmalloc */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define POINTS_PER_WORKLOAD 1000
#define POINTS_PER_CHILD 25
#define SHOWN_FAILURES 3 /* failed points whose messages are printed */
#define LISTED_FAILURES 10

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

void cut_count(struct tally *t, const struct powercut *pc, const struct powercut_result *r)
{
    t->points++;
    if (pc->cut && pc->cut_op >= 0)
        t->cut_by_op[pc->cut_op]++;
    else
        t->no_cut++;
    t->kept += r->blocks_kept;
    t->restored += r->blocks_restored;
    t->torn += r->blocks_torn;
    t->resized += r->files_resized;
    t->ops_pending += (long)r->ops_pending;
    t->ops_undone += (long)r->ops_undone;
}

static void note_tally(const char *name, const struct tally *t)
{
    char ops[256] = "";
    size_t used = 0;
    for (int op = 0; op < OP_COUNT && used < sizeof ops; op++)
        if (t->cut_by_op[op])
            used += (size_t)snprintf(ops + used, sizeof ops - used, "%s%s %ld", used ? ", " : "",
                                     fault_op_name((enum fault_op)op), t->cut_by_op[op]);
    tu_note("%s: %ld points: %ld without a cut; cut at %s", name, t->points, t->no_cut, ops);
    tu_note("  blocks after the cut: %ld kept, %ld restored, %ld torn; %ld files resized; "
            "%ld of %ld namespace operations undone",
            t->kept, t->restored, t->torn, t->resized, t->ops_undone, t->ops_pending);
    tu_note("  %ld cuts during the open; %ld syncs or closes returned 0 after the cut; "
            "%ld second cuts during the recovery; %ld reopens logged a recovery; %ld showed "
            "fewer changes than were made (%ld only the synced ones)",
            t->cut_in_open, t->ok_after_cut, t->second_cuts, t->recoveries, t->short_reopens,
            t->synced_only);
}

void cut_describe_point(char *buf, size_t len, const char *test, const struct point *p,
                        const struct powercut *pc, const struct powercut_result *r)
{
    char cut[96], result[256];
    powercut_describe_cut(pc, cut, sizeof cut);
    powercut_describe_result(r, result, sizeof result);
    snprintf(buf, len, "%s point %#" PRIx64 ":%ld:%#" PRIx64 " (MINDB_POWERCUT_ONLY), %s; %s", test,
             p->wseed, p->n, p->cseed, cut, result);
}

uint64_t cut_mix(uint64_t a, uint64_t b)
{
    uint64_t s = a * 0x9e3779b97f4a7c15ull ^ b;
    return tu_rand(&s);
}

void cut_attic(char out[TU_PATH_MAX])
{
    tu_path(out, "attic");
    if (mkdir(out, 0755) == 0)
        return;
    CHECKF(errno == EEXIST, "mkdir %s: %s", out, strerror(errno));
    if (tu_count_files(out, "", "") == 2) /* "." and ".." */
        return;
    int rc = tu_rm_rf(out);
    CHECKF(rc == 0, "remove %s: %s", out, tu_strerror(rc));
    CHECKF(mkdir(out, 0755) == 0, "mkdir %s: %s", out, strerror(errno));
}

void cut_table_env(struct powercut *pc)
{
    pc->trace = env_flag("MINDB_POWERCUT_TRACE");
    pc->pass_syncs = env_flag("MINDB_POWERCUT_SYNCS");
}

/* ---- the loop ---- */

/*
 * Runs points [from, to) of `pts` one after the other in a child process,
 * which spares a fork and a leak check per point; t->at says which one
 * runs. Returns 0 when all passed, else the exit status of the child at the
 * point that failed (128 + signal for a crash), which ends the batch.
 */
static int run_batch(point_fn fn, const void *setup, const struct point *pts, long from, long to,
                     struct tally *t, int quiet)
{
    fflush(stdout);
    fflush(stderr);
    t->at = from;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (quiet) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0) {
                dup2(null, 1);
                dup2(null, 2);
                close(null);
            }
        }
        for (long i = from; i < to; i++) {
            t->at = i;
            fn(setup, &pts[i], t);
        }
        t->at = to;
        fflush(stdout);
        fflush(stderr);
        exit(0); /* exit, not _exit: LeakSanitizer reports at exit */
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0)
        CHECK(errno == EINTR);
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    return 128 + WTERMSIG(ws);
}

long cut_points_wanted(long fallback)
{
    const char *v = getenv("MINDB_POWERCUT_POINTS");
    return v && *v ? atol(v) : fallback;
}

/* MINDB_POWERCUT_ONLY=SEED:N:CUTSEED: that point, in this process. */
static int run_only(const char *test, point_fn fn, const void *setup)
{
    const char *only = getenv("MINDB_POWERCUT_ONLY");
    if (!only || !*only)
        return 0;
    struct point p;
    char *end;
    p.wseed = strtoull(only, &end, 0);
    CHECKF(*end == ':', "MINDB_POWERCUT_ONLY=%s: SEED:N:CUTSEED expected", only);
    p.n = strtol(end + 1, &end, 0);
    CHECKF(*end == ':', "MINDB_POWERCUT_ONLY=%s: SEED:N:CUTSEED expected", only);
    p.cseed = strtoull(end + 1, &end, 0);
    CHECKF(*end == 0, "MINDB_POWERCUT_ONLY=%s: SEED:N:CUTSEED expected", only);
    struct tally t;
    memset(&t, 0, sizeof t);
    fn(setup, &p, &t);
    tu_note("%s %s: the point passed (%ld calls)", test, only, t.calls);
    return 1;
}

/* The points of one workload that makes `calls` calls: point i falls in
 * the i-th of `n` equal stretches of the calls (several points on one
 * call when there are more points than calls). */
static struct point *spread_points(uint64_t wseed, long calls, long n)
{
    struct point *pts = malloc((size_t)(n ? n : 1) * sizeof *pts);
    CHECK(pts != NULL);
    for (long i = 0; i < n; i++) {
        uint64_t rng = cut_mix(wseed, (uint64_t)i + 2);
        long lo = 1 + (long)((double)i * (double)calls / (double)n);
        long hi = (long)((double)(i + 1) * (double)calls / (double)n);
        pts[i] = (struct point){.wseed = wseed,
                                .n = (long)tu_rand_range(&rng, (uint64_t)lo, (uint64_t)hi),
                                .cseed = tu_rand(&rng)};
    }
    return pts;
}

void cut_run_points(const char *test, point_fn fn, const void *setup, long total,
                    uint64_t first_seed)
{
    if (run_only(test, fn, setup))
        return;
    struct tally *t =
        mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(t != MAP_FAILED);
    memset(t, 0, sizeof *t);
    long workloads = (total + POINTS_PER_WORKLOAD - 1) / POINTS_PER_WORKLOAD;
    if (workloads < 1)
        workloads = 1;
    int failures = 0;
    char failed[1024] = "";
    for (long w = 0; w < workloads; w++) {
        uint64_t wseed = first_seed + (uint64_t)w;
        long n = total / workloads + (w < total % workloads);
        /* Without a cut, twice: the number of calls must repeat. */
        struct point dry[2];
        long calls[2];
        for (int k = 0; k < 2; k++) {
            dry[k] = (struct point){.wseed = wseed, .n = 0, .cseed = cut_mix(wseed, (uint64_t)k)};
            int status = run_batch(fn, setup, dry, k, k + 1, t, 0);
            CHECKF(status == 0,
                   "%s: workload %#" PRIx64 " without a cut failed (status %d); nothing else "
                   "can be right",
                   test, wseed, status);
            calls[k] = t->calls;
        }
        CHECKF(calls[0] == calls[1] && calls[0] > 0,
               "%s: workload %#" PRIx64 " made %ld calls, then %ld: its cut points do not repeat",
               test, wseed, calls[0], calls[1]);
        tu_note("%s: workload %#" PRIx64 ": %ld calls, %ld cut points", test, wseed, calls[0], n);
        struct point *pts = spread_points(wseed, calls[0], n);
        for (long i = 0; i < n;) {
            long to = i + POINTS_PER_CHILD < n ? i + POINTS_PER_CHILD : n;
            int status = run_batch(fn, setup, pts, i, to, t, failures >= SHOWN_FAILURES);
            if (status == 0) {
                i = to;
                continue;
            }
            char why[64];
            if (status > 128)
                snprintf(why, sizeof why, "%s", strsignal(status - 128));
            else
                snprintf(why, sizeof why, status == 1 ? "check failed" : "exit status %d", status);
            size_t used = strlen(failed);
            if (failures < LISTED_FAILURES && t->at < to)
                snprintf(failed + used, sizeof failed - used,
                         "%s %#" PRIx64 ":%ld:%#" PRIx64 " (%s)", failures ? "," : "",
                         pts[t->at].wseed, pts[t->at].n, pts[t->at].cseed, why);
            else if (failures < LISTED_FAILURES)
                /* All passed, then the exit failed: the leak check. */
                snprintf(failed + used, sizeof failed - used,
                         "%s the child of points %ld to %ld at "
                         "its exit (%s)",
                         failures ? "," : "", i, to - 1, why);
            failures++;
            i = t->at < to ? t->at + 1 : to;
        }
        free(pts);
    }
    note_tally(test, t);
    munmap(t, sizeof *t);
    CHECKF(failures == 0,
           "%d cut points failed (SEED:N:CUTSEED, run one with MINDB_POWERCUT_ONLY):%s%s", failures,
           failed, failures > LISTED_FAILURES ? ", ..." : "");
}
