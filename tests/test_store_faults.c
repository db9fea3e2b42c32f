/*
 * test_store_faults.c - the store under failing file operations, injected
 * through mindb_open_io() with faultio.h's table.
 *
 * The failure loops fail the Nth file operation of one store operation,
 * for N = 1, 2, 3, ... until the operation runs without reaching N, once
 * with only call N failing (mode "once") and once with call N and every
 * later one failing (mode "from"):
 *   checkpoint_loop  mindb_checkpoint on a store with checkpointed data,
 *                    synced changes replayed from the log, and changes made
 *                    in the handle (synced and not);
 *   open_loop        mindb_open_io on a store whose log holds changes to
 *                    replay (a child process synced them and _exit()ed);
 *   compact_loop     mindb_compact(db, 100) on a store of several 256 KiB
 *                    data segments full of dead space;
 *   close_loop       mindb_close, which checkpoints.
 * Targeted faults:
 *   enospc           every pwrite fails with ENOSPC for a while;
 *   fdatasync_eio    the log's fdatasync fails once.
 *
 * The rule after any failure: the handle may refuse further changes, but
 * reads in it still give what was written, and closing it neither crashes
 * nor leaks (memory: the sanitizer build; descriptors: counted by the
 * table). Opening the store again without injection succeeds, mindb_check
 * finds nothing, and the store shows a prefix of the history of changes
 * that holds every change a mindb_sync (or a checkpoint, or a close)
 * returning 0 covered: every value is an su_value naming its key and its
 * version, so one never written cannot pass. The history, the workload
 * that makes it and these checks are in storehist.c.
 *
 * Every store here runs without the background thread and without timed
 * checkpoints, so that the Nth call of one run is the Nth call of the next.
 *
 * Environment:
 *   MINDB_FAULT_MAX_N  the last N of each loop (default 400; 0: no bound).
 *                      The long form runs every loop to its end:
 *                        MINDB_FAULT_MAX_N=0 build/tests/test_store_faults
 *   MINDB_FAULT_ONLY   MODE:N (MODE once, from or once+lost) runs that one
 *                      iteration of the loops named on the command line;
 *   MINDB_FAULT_TRACE  N prints every file operation of iteration N, e.g.
 *                        MINDB_FAULT_ONLY=once:19 MINDB_FAULT_TRACE=19 \
 *                            build/tests/test_store_faults open_loop
 */
#include "faultio.h"
#include "mindb_io.h"
#include "storehist.h"

#include <dirent.h>
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

#define DEFAULT_MAX_N 400
#define ITER_VERSION_BASE 1000000u /* versions of the changes of one iteration */

/* ---- options ---- */

static void fault_options(struct mindb_options *o)
{
    su_options(o, 1);
    o->background = 0;
    o->checkpoint_interval_ms = 0;
    o->compact_live_percent = 0;
    o->data_segment_bytes = 128 * KiB;
}

static long max_n(void)
{
    const char *v = getenv("MINDB_FAULT_MAX_N");
    if (!v || !*v)
        return DEFAULT_MAX_N;
    return atol(v);
}

/* out = a/b (or b when a is empty). */
static void join_path(char out[TU_PATH_MAX], const char *a, const char *b)
{
    int n = snprintf(out, TU_PATH_MAX, "%s%s%s", a, *a ? "/" : "", b);
    CHECKF(n >= 0 && n < TU_PATH_MAX, "path too long: %s/%s", a, b);
}

/* ---- a store directory held in memory, to recreate it quickly ---- */

/* Files are kept as their nonzero 4 KiB blocks: the log's segments are
 * mostly zero fill, and a restored file is sparse where the original held
 * zeros, which reads the same. */
#define IMG_BLOCK 4096u

struct img_extent {
    uint64_t off;
    size_t len;
    uint8_t *data;
};

struct img_file {
    char *rel; /* path under the directory */
    int is_dir;
    uint64_t size;
    struct img_extent *ext;
    size_t n_ext;
};

struct store_image {
    struct img_file *f;
    size_t n, cap;
    uint64_t bytes; /* nonzero bytes kept */
};

static struct img_file *img_add(struct store_image *img, const char *rel, int is_dir)
{
    if (img->n == img->cap) {
        img->cap = img->cap ? img->cap * 2 : 32;
        img->f = realloc(img->f, img->cap * sizeof *img->f);
        CHECK(img->f != NULL);
    }
    struct img_file *f = &img->f[img->n++];
    memset(f, 0, sizeof *f);
    f->rel = strdup(rel);
    CHECK(f->rel != NULL);
    f->is_dir = is_dir;
    return f;
}

static void img_load_file(struct store_image *img, struct img_file *f, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECKF(fd >= 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    f->size = (uint64_t)st.st_size;
    uint8_t *buf = malloc(f->size ? f->size : 1);
    CHECK(buf != NULL);
    size_t done = 0;
    while (done < f->size) {
        ssize_t n = pread(fd, buf + done, f->size - done, (off_t)done);
        CHECKF(n > 0, "read %s: %s", path, n < 0 ? strerror(errno) : "short");
        done += (size_t)n;
    }
    close(fd);
    size_t cap = 0;
    for (uint64_t off = 0; off < f->size;) {
        uint64_t end = off + IMG_BLOCK < f->size ? off + IMG_BLOCK : f->size;
        int zero = 1;
        for (uint64_t i = off; i < end && zero; i++)
            zero = buf[i] == 0;
        if (zero) {
            off = end;
            continue;
        }
        /* A run of nonzero blocks. */
        uint64_t start = off;
        while (off < f->size) {
            end = off + IMG_BLOCK < f->size ? off + IMG_BLOCK : f->size;
            zero = 1;
            for (uint64_t i = off; i < end && zero; i++)
                zero = buf[i] == 0;
            if (zero)
                break;
            off = end;
        }
        if (f->n_ext == cap) {
            cap = cap ? cap * 2 : 8;
            f->ext = realloc(f->ext, cap * sizeof *f->ext);
            CHECK(f->ext != NULL);
        }
        struct img_extent *e = &f->ext[f->n_ext++];
        e->off = start;
        e->len = (size_t)(off - start);
        e->data = malloc(e->len);
        CHECK(e->data != NULL);
        memcpy(e->data, buf + start, e->len);
        img->bytes += e->len;
    }
    free(buf);
}

static void img_load_dir(struct store_image *img, const char *root, const char *rel)
{
    char path[TU_PATH_MAX];
    join_path(path, root, rel);
    DIR *d = opendir(path);
    CHECKF(d != NULL, "opendir %s: %s", path, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[TU_PATH_MAX], full[TU_PATH_MAX];
        join_path(sub, rel, e->d_name);
        join_path(full, root, sub);
        struct stat st;
        CHECKF(lstat(full, &st) == 0, "stat %s: %s", full, strerror(errno));
        if (S_ISDIR(st.st_mode)) {
            img_add(img, sub, 1);
            img_load_dir(img, root, sub);
        } else if (S_ISREG(st.st_mode)) {
            img_load_file(img, img_add(img, sub, 0), full);
        }
    }
    closedir(d);
}

static void img_load(struct store_image *img, const char *dir)
{
    memset(img, 0, sizeof *img);
    img_load_dir(img, dir, "");
}

static void img_restore(const struct store_image *img, const char *dst)
{
    int rc = tu_rm_rf(dst);
    CHECKF(rc == 0, "remove %s: %s", dst, tu_strerror(rc));
    CHECKF(mkdir(dst, 0755) == 0, "mkdir %s: %s", dst, strerror(errno));
    for (size_t i = 0; i < img->n; i++) {
        const struct img_file *f = &img->f[i];
        char path[TU_PATH_MAX];
        join_path(path, dst, f->rel);
        if (f->is_dir) {
            CHECKF(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
            continue;
        }
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CHECKF(fd >= 0, "create %s: %s", path, strerror(errno));
        CHECK(ftruncate(fd, (off_t)f->size) == 0);
        for (size_t j = 0; j < f->n_ext; j++)
            CHECK(pwrite(fd, f->ext[j].data, f->ext[j].len, (off_t)f->ext[j].off) ==
                  (ssize_t)f->ext[j].len);
        close(fd);
    }
}

static void img_free(struct store_image *img)
{
    for (size_t i = 0; i < img->n; i++) {
        for (size_t j = 0; j < img->f[i].n_ext; j++)
            free(img->f[i].ext[j].data);
        free(img->f[i].ext);
        free(img->f[i].rel);
    }
    free(img->f);
    memset(img, 0, sizeof *img);
}

/* ---- stores to start from ---- */

/* The first changes of every prepared store: values up to 200 KiB,
 * checkpointed, then overwrites and deletes. */
static void base_workload(mindb *db, struct history *h, int crash)
{
    struct workload w;
    wl_init(&w, 0x5eed0001, 1, 200 * KiB, 25);
    CHECK_OK(wl_run(&w, db, h, 60, NULL));
    if (db) {
        CHECK_OK(hist_sync(db, h));
        CHECK_OK(mindb_checkpoint(db));
    } else {
        h->synced = h->n;
    }
    CHECK_OK(wl_run(&w, db, h, 40, NULL));
    if (db)
        CHECK_OK(hist_sync(db, h));
    else
        h->synced = h->n;
    if (crash)
        CHECK_OK(wl_run(&w, db, h, 10, NULL)); /* not synced: lost or not */
    wl_free(&w);
}

/*
 * A store whose log holds synced changes after its manifest: a child
 * process makes them and _exit()s without closing the store. `h` gets
 * the history (the last changes were not synced).
 */
static void prepare_crashed(const char *dir, struct history *h)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct mindb_options o;
        fault_options(&o);
        struct history ch;
        hist_init(&ch);
        mindb *db = SU_OPEN(dir, &o);
        base_workload(db, &ch, 1);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child making the store failed");
    hist_init(h);
    base_workload(NULL, h, 1);
}

/* A store of several data segments with dead space in them, closed. */
static void prepare_segments(const char *dir, struct history *h)
{
    struct mindb_options o;
    fault_options(&o);
    mindb *db = SU_OPEN(dir, &o);
    hist_init(h);
    base_workload(db, h, 0);
    struct workload w;
    wl_init(&w, 0x5eed0002, 500000, 1200 * KiB, 60);
    for (int round = 0; round < 2; round++) {
        CHECK_OK(wl_run(&w, db, h, 30, NULL));
        CHECK_OK(hist_sync(db, h));
        CHECK_OK(mindb_checkpoint(db));
    }
    wl_free(&w);
    CHECK_OK(mindb_close(db));
    char data[TU_PATH_MAX];
    join_path(data, dir, "data");
    size_t segs = tu_count_files(data, "", "");
    CHECKF(segs >= 4, "only %zu data segments in %s", segs, data);
}

/* The changes each iteration makes in its handle before the operation
 * under test: some synced, some not. */
static void iteration_changes(mindb *db, struct history *h)
{
    struct workload w;
    wl_init(&w, 0x5eed0003, ITER_VERSION_BASE, 160 * KiB, 20);
    CHECK_OK(wl_run(&w, db, h, 12, NULL));
    CHECK_OK(hist_sync(db, h));
    CHECK_OK(wl_run(&w, db, h, 6, NULL));
    wl_free(&w);
}

/* ---- the failure loops ---- */

enum loop_kind { LOOP_CHECKPOINT, LOOP_OPEN, LOOP_COMPACT, LOOP_CLOSE };

static const char *const loop_names[] = {"checkpoint", "open", "compact", "close"};

/* What the iterations of one loop tell the loop (in shared memory: each
 * iteration runs in a child process, so a crash or a failed check at one N
 * is reported and the loop goes on). */
struct loop_result {
    int reached;   /* this iteration's fault was reached */
    long calls;    /* calls of the operation run without a fault */
    int op_errors; /* the operation returned an error */
    int close_errors;
    int refused; /* the handle refused a change or a sync afterwards */
    int short_reopens;
    char by_op[256];
};

/* How call N fails: the loop's modes. */
struct variant {
    const char *name;
    enum fail_mode mode;
    int lose; /* a failed sync also loses what it should have made durable */
};

static const struct variant variants[] = {
    {"once", FAIL_ONCE, 0},
    {"from", FAIL_FROM, 0},
    {"once+lost", FAIL_ONCE, 1},
};

/* One iteration: call `n` of the operation fails in `mode`. Returns whether
 * the fault was reached. */
static int loop_iteration(enum loop_kind kind, const struct variant *v, long n,
                          const struct store_image *img, const char *dir,
                          const struct history *base, struct loop_result *res)
{
    enum fail_mode mode = v->mode;
    char what[160];
    snprintf(what, sizeof what, "%s loop, mode %s, N = %ld", loop_names[kind], v->name, n);
    img_restore(img, dir);
    struct fault f;
    fault_init(&f);
    f.lose_unsynced = v->lose;
    f.trace = getenv("MINDB_FAULT_TRACE") && n == atol(getenv("MINDB_FAULT_TRACE"));
    struct mindb_options o;
    fault_options(&o);
    o.create = 0;
    struct history h;
    hist_init(&h);
    mindb *db = NULL;
    int rc;

    if (kind == LOOP_OPEN) {
        fault_arm(&f, n, mode);
        rc = mindb_open_io(dir, &o, &f.io, &db);
        fault_disarm(&f);
    } else {
        CHECK_OK(mindb_open_io(dir, &o, &f.io, &db));
        hist_adopt_open_state(what, db, base, &h);
        iteration_changes(db, &h);
        fault_arm(&f, n, mode);
        if (kind == LOOP_CHECKPOINT)
            rc = mindb_checkpoint(db);
        else if (kind == LOOP_COMPACT)
            rc = mindb_compact(db, 100, NULL, NULL);
        else
            rc = mindb_close(db);
        fault_disarm(&f);
    }
    int reached = f.injected > 0;
    res->reached = reached;
    snprintf(what + strlen(what), sizeof what - strlen(what), " (%s, call %ld of %ld)",
             fault_op_name((enum fault_op)f.failed_op), n, f.calls);
    if (!reached) {
        CHECKF(rc == 0, "%s: without a fault, the %s returned %d (%s)", what, loop_names[kind], rc,
               su_strerror(rc));
        res->calls = f.calls;
        fault_describe_calls(&f, res->by_op, sizeof res->by_op);
    }
    if (rc)
        res->op_errors++;

    if (kind == LOOP_OPEN) {
        if (rc) {
            CHECKF(f.open_fds == 0, "%s: %d descriptors left open by the failed open", what,
                   f.open_fds);
            hist_copy_prefix(&h, base, base->n);
        } else {
            /* An open that succeeds shows the store as it is on disk. */
            hist_adopt_open_state(what, db, base, &h);
            iteration_changes(db, &h);
        }
    } else if (kind != LOOP_CLOSE && rc == 0) {
        /* A checkpoint (or compaction, which ends with two) that succeeded
         * committed the log up to its start. */
        h.synced = h.n;
    }

    if (kind == LOOP_CLOSE) {
        CHECKF(f.open_fds == 0, "%s: %d descriptors left open by mindb_close", what, f.open_fds);
        if (rc == 0)
            h.synced = h.n;
        else
            res->close_errors++;
    } else if (db) {
        hist_expect_handle(what, db, &h);
        /* The handle goes on or refuses: either is allowed, but a sync that
         * returns 0 makes everything durable. */
        struct workload w;
        wl_init(&w, 0x5eed0007, 2 * ITER_VERSION_BASE, 8 * KiB, 0);
        if (wl_run(&w, db, &h, 2, NULL) != 0 || hist_sync(db, &h) != 0)
            res->refused++;
        wl_free(&w);
        int crc = mindb_close(db);
        if (crc == 0)
            h.synced = h.n;
        else
            res->close_errors++;
        CHECKF(f.open_fds == 0, "%s: %d descriptors left open after mindb_close", what, f.open_fds);
    }
    if (hist_verify_reopen(what, dir, &o, &h) < h.n)
        res->short_reopens++;
    hist_free(&h);
    fault_destroy(&f);
    return reached;
}

#define SHOWN_FAILURES 3 /* iterations whose failure is printed in full */
#define LISTED_FAILURES 12

/* Runs one iteration in a child process. Returns 0 when it passed, else
 * its exit status (128 + signal for a crash). */
static int run_iteration(enum loop_kind kind, const struct variant *v, long n,
                         const struct store_image *img, const char *dir, const struct history *base,
                         struct loop_result *res, int quiet)
{
    const char *nofork = getenv("MINDB_TEST_NOFORK");
    if (nofork && *nofork && strcmp(nofork, "0") != 0) {
        loop_iteration(kind, v, n, img, dir, base, res);
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
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
        loop_iteration(kind, v, n, img, dir, base, res);
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

static void failure_loop(enum loop_kind kind, const struct store_image *img,
                         const struct history *base)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "work");
    long limit = max_n();
    /* MINDB_FAULT_ONLY=MODE:N runs that iteration alone, in this process
     * (with MINDB_FAULT_TRACE=N, every call is printed). */
    const char *only = getenv("MINDB_FAULT_ONLY");
    if (only && *only) {
        const char *colon = strchr(only, ':');
        CHECKF(colon != NULL, "MINDB_FAULT_ONLY=%s: MODE:N expected", only);
        for (size_t m = 0; m < sizeof variants / sizeof variants[0]; m++)
            if (strlen(variants[m].name) == (size_t)(colon - only) &&
                strncmp(variants[m].name, only, (size_t)(colon - only)) == 0) {
                struct loop_result r;
                memset(&r, 0, sizeof r);
                loop_iteration(kind, &variants[m], atol(colon + 1), img, dir, base, &r);
                tu_note("%s: passed (fault %s)", only, r.reached ? "reached" : "not reached");
                return;
            }
        CHECKF(0, "MINDB_FAULT_ONLY=%s: no such mode", only);
    }
    struct loop_result *res =
        mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(res != MAP_FAILED);
    int failures = 0;
    char failed[512] = "";
    for (size_t m = 0; m < sizeof variants / sizeof variants[0]; m++) {
        const struct variant *v = &variants[m];
        memset(res, 0, sizeof *res);
        long n, calls = 0;
        int complete = 0, mode_failures = 0;
        char by_op[256] = "";
        for (n = 1; limit <= 0 || n <= limit; n++) {
            res->reached = 1; /* unless the iteration says otherwise */
            int status = run_iteration(kind, v, n, img, dir, base, res, failures >= SHOWN_FAILURES);
            if (status != 0) {
                char why[64];
                if (status > 128)
                    snprintf(why, sizeof why, "%s", strsignal(status - 128));
                else if (status == 1)
                    snprintf(why, sizeof why, "check failed");
                else
                    snprintf(why, sizeof why, "exit status %d", status);
                if (failures < LISTED_FAILURES)
                    snprintf(failed + strlen(failed), sizeof failed - strlen(failed),
                             "%s %s N=%ld (%s)", failures ? "," : "", v->name, n, why);
                failures++;
                mode_failures++;
            }
            if (!res->reached) {
                complete = 1;
                calls = res->calls;
                snprintf(by_op, sizeof by_op, "%s", res->by_op);
                break;
            }
        }
        if (complete)
            tu_note("%s, mode %s: failed each of calls 1..%ld; the whole %s makes %ld (%s)",
                    loop_names[kind], v->name, n - 1, loop_names[kind], calls, by_op);
        else
            tu_note("%s, mode %s: failed each of calls 1..%ld, stopped by MINDB_FAULT_MAX_N",
                    loop_names[kind], v->name, n - 1);
        tu_note("  %d iterations failed; the %s returned an error %d times, mindb_close %d "
                "times; the handle refused a change or sync afterwards %d times; %d reopens "
                "showed fewer changes than were made",
                mode_failures, loop_names[kind], res->op_errors, res->close_errors, res->refused,
                res->short_reopens);
    }
    munmap(res, sizeof *res);
    CHECKF(failures == 0, "%d iterations failed:%s%s", failures, failed,
           failures > LISTED_FAILURES ? ", ..." : "");
}

static void crashed_image(struct store_image *img, struct history *base)
{
    char dir[TU_PATH_MAX], probe[TU_PATH_MAX];
    tu_path(dir, "prepared");
    tu_path(probe, "probe");
    prepare_crashed(dir, base);
    img_load(img, dir);
    /* What a plain open shows: the synced changes and perhaps some of the
     * others. The loops expect no less than that after a fault. */
    img_restore(img, probe);
    struct mindb_options o;
    fault_options(&o);
    o.create = 0;
    mindb *db = SU_OPEN(probe, &o);
    struct history all;
    hist_init(&all);
    hist_copy_prefix(&all, base, base->n);
    hist_adopt_open_state("the prepared store", db, &all, base);
    CHECK_OK(mindb_close(db));
    CHECK_OK(tu_rm_rf(probe));
    tu_note("prepared store: %zu files and directories, %" PRIu64 " KiB of nonzero data; "
            "%zu changes, %zu synced, %zu on disk",
            img->n, img->bytes / KiB, all.n, base->synced, base->n);
    hist_free(&all);
}

static void test_checkpoint_loop(void)
{
    struct store_image img;
    struct history base;
    crashed_image(&img, &base);
    failure_loop(LOOP_CHECKPOINT, &img, &base);
    img_free(&img);
    hist_free(&base);
}

static void test_open_loop(void)
{
    struct store_image img;
    struct history base;
    crashed_image(&img, &base);
    failure_loop(LOOP_OPEN, &img, &base);
    img_free(&img);
    hist_free(&base);
}

static void test_close_loop(void)
{
    struct store_image img;
    struct history base;
    crashed_image(&img, &base);
    failure_loop(LOOP_CLOSE, &img, &base);
    img_free(&img);
    hist_free(&base);
}

static void test_compact_loop(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "prepared");
    struct history base;
    prepare_segments(dir, &base);
    struct store_image img;
    img_load(&img, dir);
    char data[TU_PATH_MAX];
    join_path(data, dir, "data");
    tu_note("prepared store: %zu data segments, %" PRIu64 " KiB of nonzero data",
            tu_count_files(data, "", ""), img.bytes / KiB);
    failure_loop(LOOP_COMPACT, &img, &base);
    img_free(&img);
    hist_free(&base);
}

/* ---- targeted faults ---- */

static mindb *open_faulty(const char *dir, struct fault *f)
{
    struct mindb_options o;
    fault_options(&o);
    mindb *db = NULL;
    int rc = mindb_open_io(dir, &o, &f->io, &db);
    CHECKF(rc == 0, "mindb_open_io(%s) returned %d (%s)", dir, rc, su_strerror(rc));
    return db;
}

static void test_enospc(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "store");
    struct fault f;
    fault_init(&f);
    mindb *db = open_faulty(dir, &f);
    struct history h;
    hist_init(&h);
    struct workload w;
    wl_init(&w, 0x5eed0004, 1, 200 * KiB, 20);
    CHECK_OK(wl_run(&w, db, &h, 30, NULL));
    CHECK_OK(hist_sync(db, &h));
    CHECK_OK(mindb_checkpoint(db));
    CHECK_OK(wl_run(&w, db, &h, 10, NULL));
    CHECK_OK(hist_sync(db, &h));
    size_t synced = h.synced;

    /* The disk is full. */
    f.pwrite_error = -ENOSPC;
    int made = 0;
    int rc = wl_run(&w, db, &h, 15, &made);
    tu_note("with the disk full: %d of 15 changes returned 0 (then %d: %s)", made, rc,
            su_strerror(rc));
    rc = mindb_sync(db);
    CHECKF(rc == -ENOSPC, "mindb_sync with the disk full returned %d (%s)", rc, su_strerror(rc));
    CHECK_EQ_U(h.synced, synced);
    /* A large put writes its chunks to data segments before its record. */
    size_t big_len = 1536 * KiB;
    uint8_t *big = malloc(big_len);
    CHECK(big != NULL);
    su_value(big, big_len, su_key_hash(KEY("f/big")), 999999);
    rc = mindb_put(db, KEY("f/big"), big, big_len);
    CHECKF(rc < 0, "a put of %zu bytes with the disk full returned %d", big_len, rc);
    rc = mindb_checkpoint(db);
    CHECKF(rc < 0, "mindb_checkpoint with the disk full returned %d", rc);
    rc = mindb_sync(db);
    CHECKF(rc == -ENOSPC, "mindb_sync with the disk full returned %d (%s)", rc, su_strerror(rc));
    CHECK(f.targeted > 0);
    hist_expect_handle("with the disk full", db, &h);

    /* Space again. A failed pwrite is not sticky (docs/WAL.md, Errors: the
     * bytes stay in the ring and the next commit writes them): the same
     * handle goes on, and nothing made while the disk was full is lost. */
    f.pwrite_error = 0;
    long targeted = f.targeted;
    CHECK_OK(hist_sync(db, &h));
    CHECK_OK(wl_run(&w, db, &h, 10, NULL));
    CHECK_OK(mindb_put(db, KEY("f/big"), big, big_len));
    CHECK_OK(mindb_delete(db, KEY("f/big")));
    CHECK_OK(hist_sync(db, &h));
    CHECK_OK(mindb_checkpoint(db));
    CHECK_OK(wl_run(&w, db, &h, 5, NULL));
    CHECK_OK(hist_sync(db, &h));
    hist_expect_handle("after the disk had space again", db, &h);
    CHECK_OK(mindb_close(db));
    CHECK_EQ(f.open_fds, 0);
    CHECK_EQ(f.targeted, targeted);
    struct mindb_options o;
    fault_options(&o);
    size_t s = hist_verify_reopen("enospc", dir, &o, &h);
    CHECK_EQ_U(s, h.n);
    tu_note("%zu changes, all there after reopening; %ld pwrites refused", h.n, f.targeted);
    free(big);
    wl_free(&w);
    hist_free(&h);
    fault_destroy(&f);
}

static void test_fdatasync_eio(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "store");
    struct fault f;
    fault_init(&f);
    mindb *db = open_faulty(dir, &f);
    struct history h;
    hist_init(&h);
    struct workload w;
    wl_init(&w, 0x5eed0005, 1, 100 * KiB, 20);
    CHECK_OK(wl_run(&w, db, &h, 30, NULL));
    CHECK_OK(hist_sync(db, &h));
    CHECK_OK(mindb_checkpoint(db));
    CHECK_OK(wl_run(&w, db, &h, 10, NULL));
    CHECK_OK(hist_sync(db, &h));
    size_t synced = h.synced;

    /* Small changes, below the dirty bound: the next fdatasync is the
     * log's, for this sync. */
    struct workload small;
    wl_init(&small, 0x5eed0006, 700000, 2 * KiB, 0);
    CHECK_OK(wl_run(&small, db, &h, 8, NULL));
    f.fdatasync_countdown = 1;
    int rc = mindb_sync(db);
    CHECKF(rc == -EIO, "mindb_sync whose fdatasync failed returned %d (%s)", rc, su_strerror(rc));
    CHECK_EQ(f.targeted, 1);
    /* Sticky: fdatasync works again, but the pages it failed to write may
     * be gone, so nothing may claim durability on this handle. */
    rc = mindb_sync(db);
    CHECKF(rc == -EIO, "the next mindb_sync returned %d (%s), not the sticky -EIO", rc,
           su_strerror(rc));
    int made = 0;
    int prc = wl_run(&small, db, &h, 4, &made);
    tu_note("changes after the failed sync: %d of 4 returned 0 (then %d: %s)", made, prc,
            su_strerror(prc));
    rc = mindb_sync(db);
    CHECKF(rc == -EIO, "a mindb_sync after more changes returned %d (%s)", rc, su_strerror(rc));
    rc = mindb_sync_key(db, KEY("f/k000"));
    CHECKF(rc == -EIO || rc == -ENOENT, "mindb_sync_key returned %d (%s)", rc, su_strerror(rc));
    rc = mindb_checkpoint(db);
    CHECKF(rc < 0, "mindb_checkpoint after the failed sync returned %d: it commits the log", rc);
    hist_expect_handle("after the failed fdatasync", db, &h);
    CHECK_EQ_U(h.synced, synced);
    rc = mindb_close(db);
    CHECKF(rc < 0, "mindb_close after a failed fdatasync returned %d", rc);
    tu_note("mindb_close returned %d (%s)", rc, su_strerror(rc));
    CHECK_EQ(f.open_fds, 0);
    struct mindb_options o;
    fault_options(&o);
    size_t s = hist_verify_reopen("fdatasync_eio", dir, &o, &h);
    tu_note("reopened: %zu of %zu changes (%zu synced)", s, h.n, synced);
    wl_free(&small);
    wl_free(&w);
    hist_free(&h);
    fault_destroy(&f);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("checkpoint_loop", test_checkpoint_loop);
    tu_run("open_loop", test_open_loop);
    tu_run("compact_loop", test_compact_loop);
    tu_run("close_loop", test_close_loop);
    tu_run("enospc", test_enospc);
    tu_run("fdatasync_eio", test_fdatasync_eio);
    return tu_finish();
}
