/*
 * cutpoints.h - running a check at power-cut points spread over a run, for
 * test_store_powercut.
 *
 * A cut point is a workload seed, a call number N and a cut seed: the
 * run's call N cuts the power (powercut.h) and the cut seed says what the
 * disk kept. For each workload seed, cut_run_points() first runs the point
 * without a cut twice: both runs must make the same number of calls, or
 * the N of one run would not be the N of the next. Then it spreads the
 * points over those calls: every call number when there are more points
 * than calls (several cut seeds each), else one point in each of as many
 * equal stretches of the calls. Points run in child processes, 25 to a
 * child: a crash or a failed check ends that child and is reported with its
 * point, and the next child goes on from the point after; at the end, the
 * failed points are listed as SEED:N:CUTSEED.
 *
 * Environment:
 *   MINDB_POWERCUT_POINTS  how many points (cut_points_wanted()); workloads
 *                          have up to 1000 points each, seeds first, +1, ...
 *   MINDB_POWERCUT_ONLY    SEED:N:CUTSEED runs that one point in this
 *                          process (N = 0: no cut)
 *   MINDB_POWERCUT_TRACE   1 prints every call of the table
 *                          (cut_table_env(); useful with ONLY)
 *   MINDB_POWERCUT_SYNCS   1 passes fdatasync/fsync on to the kernel (slow
 *                          on a disk; the model decides what survives)
 */
#ifndef MINDB_CUTPOINTS_H
#define MINDB_CUTPOINTS_H

#include "faultio.h"
#include "powercut.h"
#include "testutil.h"

#include <stdint.h>

struct point {
    uint64_t wseed; /* the workload */
    long n;         /* the call that cuts the power; 0: none */
    uint64_t cseed; /* what the cut keeps */
};

/* What the points of one loop did, filled by the child processes in
 * shared memory; the loop prints it at the end. */
struct tally {
    long at;    /* the point a child process runs */
    long calls; /* of the last run */
    long points, no_cut;
    long cut_by_op[OP_COUNT];
    long cut_in_open;   /* the open failed: the cut came while it recovered */
    long ok_after_cut;  /* a sync or close returned 0 after the cut */
    long short_reopens; /* fewer changes than were made */
    long synced_only;   /* no more than the synced ones */
    long recoveries;    /* the reopen logged a crash recovery */
    long second_cuts;   /* the power went again during the recovery */
    long kept, restored, torn, resized;
    long ops_pending, ops_undone;
};

/* Runs point `p` on `setup`, CHECKing what it must; sets t->calls to the
 * number of calls its run made. */
typedef void (*point_fn)(const void *setup, const struct point *p, struct tally *t);

/* `total` points of `fn` named `test`, from workload seed `first_seed` on
 * (or the one of MINDB_POWERCUT_ONLY); fails the sub-test if any failed. */
void cut_run_points(const char *test, point_fn fn, const void *setup, long total,
                    uint64_t first_seed);
/* MINDB_POWERCUT_POINTS, or `fallback`. */
long cut_points_wanted(long fallback);

/* Adds what the cut did to the tally. */
void cut_count(struct tally *t, const struct powercut *pc, const struct powercut_result *r);
/* The point's name for messages: first how to run it again (storehist.c
 * cuts its messages at 256 bytes), then what the cut did. */
void cut_describe_point(char *buf, size_t len, const char *test, const struct point *p,
                        const struct powercut *pc, const struct powercut_result *r);
/* A seed drawn from two numbers (a point's seeds, a purpose). */
uint64_t cut_mix(uint64_t a, uint64_t b);
/* An empty attic for a table (tu_dir()/attic, beside the directories under
 * test): the one of the point before, which its cut left empty, unless that
 * point failed half way. */
void cut_attic(char out[TU_PATH_MAX]);
/* Sets the table's trace and pass_syncs from the environment. */
void cut_table_env(struct powercut *pc);

#endif /* MINDB_CUTPOINTS_H */
