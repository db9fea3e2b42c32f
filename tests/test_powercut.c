/*
 * test_powercut.c - the power-cut table itself (powercut.h), on plain
 * files, before test_store_powercut trusts it with a store: through the
 * table, a file is rewritten (one block synced, one not) and extended, a
 * file is truncated and written, one is made and synced with its name,
 * and three namespace operations are left unsynced (a file made, a rename
 * over another, an unlink); then the power is cut, and a write, a sync
 * and a close after the cut must fail and change nothing. Over 100 cut
 * seeds, what the table leaves must be a state a disk could hold: synced
 * bytes and names as they were, each unsynced block new, old or torn at a
 * sector, a size the file had since its last sync, and a suffix of the
 * unsynced operations undone. And each of these outcomes must happen at
 * least once: a table that loses nothing would let every store test pass.
 */
#include "faultio.h"
#include "powercut.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_ROUNDS 100

/* The table's attic, empty: the round before left it so, as checked. */
static void fresh_attic(char out[TU_PATH_MAX])
{
    tu_path(out, "attic");
    CHECKF(mkdir(out, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", out, strerror(errno));
}

enum fate { FATE_KEEP, FATE_RESTORE, FATE_TEAR, FATE_COUNT };

static void fill_file(const char *path, int byte, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    memset(buf, byte, len);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECKF(fd >= 0, "create %s: %s", path, strerror(errno));
    CHECK(write(fd, buf, len) == (ssize_t)len);
    close(fd);
    free(buf);
}

static void in_dir(char out[TU_PATH_MAX], const char *dir, const char *name)
{
    int n = snprintf(out, TU_PATH_MAX, "%s/%s", dir, name);
    CHECKF(n > 0 && n < TU_PATH_MAX, "path too long: %s/%s", dir, name);
}

/* The file's bytes, or NULL when it does not exist; *len gets its size. */
static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        CHECKF(errno == ENOENT, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    *len = (size_t)st.st_size;
    uint8_t *buf = malloc(*len + 1);
    CHECK(buf != NULL);
    CHECK(pread(fd, buf, *len, 0) == (ssize_t)*len);
    close(fd);
    return buf;
}

static int all_bytes(const uint8_t *p, size_t len, int byte)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != byte)
            return 0;
    return 1;
}

/* Which fate block `got` shows in its first `len` bytes, between the bytes
 * written, `cur`, and those synced, `old` (4 KiB each): new, old, or its
 * first 1 to 7 sectors new and the rest old; -1 for none of these. */
static int block_fate(const uint8_t *got, size_t len, const uint8_t *cur, const uint8_t *old)
{
    for (size_t sectors = 0; sectors <= 8; sectors++) {
        size_t split = sectors * 512 < len ? sectors * 512 : len;
        if (memcmp(got, cur, split) == 0 && memcmp(got + split, old + split, len - split) == 0)
            return sectors == 8 ? FATE_KEEP : sectors == 0 ? FATE_RESTORE : FATE_TEAR;
    }
    return -1;
}

static const uint8_t *filled(uint8_t buf[4096], int byte, size_t len)
{
    memset(buf, 0, 4096);
    memset(buf, byte, len);
    return buf;
}

static const char *const fate_names[] = {"kept", "restored", "torn"};

/* One cut on a small directory; counts what it kept. */
static void model_round(const char *dir, uint64_t seed, long fates[2][FATE_COUNT], long sizes[2],
                        long truncs[3], long undone[4])
{
    char path[TU_PATH_MAX], attic[TU_PATH_MAX];
    CHECK_OK(tu_rm_rf(dir));
    CHECKF(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
    fresh_attic(attic);
    /* Synced before the run (made outside the table): three blocks of 'A',
     * a file a rename replaces, one it brings in, one an unlink removes. */
    in_dir(path, dir, "data");
    fill_file(path, 'A', 3 * 4096);
    in_dir(path, dir, "old");
    fill_file(path, 'O', 5000);
    in_dir(path, dir, "tmp");
    fill_file(path, 'T', 3000);
    in_dir(path, dir, "gone");
    fill_file(path, 'G', 100);
    in_dir(path, dir, "trunc");
    fill_file(path, 'R', 6000);

    struct powercut pc;
    powercut_init(&pc, attic);
    const struct wal_io *io = &pc.io;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dirfd >= 0);
    static uint8_t buf[2 * 4096];

    /* data: block 0 rewritten and synced; block 1 rewritten and blocks 3
     * and 4 appended, not synced. */
    int fd = io->openat(io->ctx, dirfd, "data", O_RDWR, 0);
    CHECK(fd >= 0);
    memset(buf, 'B', 4096);
    CHECK(io->pwrite(io->ctx, fd, buf, 4096, 0) == 4096);
    CHECK_OK(io->fdatasync(io->ctx, fd));
    memset(buf, 'C', 4096);
    CHECK(io->pwrite(io->ctx, fd, buf, 4096, 4096) == 4096);
    memset(buf, 'D', 2 * 4096);
    CHECK(io->pwrite(io->ctx, fd, buf, 2 * 4096, 3 * 4096) == 2 * 4096);
    CHECK_OK(io->close(io->ctx, fd));
    /* trunc: emptied by O_TRUNC, then 100 bytes written, not synced. */
    fd = io->openat(io->ctx, dirfd, "trunc", O_WRONLY | O_TRUNC, 0);
    CHECK(fd >= 0);
    memset(buf, 'S', 100);
    CHECK(io->pwrite(io->ctx, fd, buf, 100, 0) == 100);
    CHECK_OK(io->close(io->ctx, fd));
    /* made: created, written and synced, name synced by the directory. */
    fd = io->openat(io->ctx, dirfd, "made", O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    memset(buf, 'M', 100);
    CHECK(io->pwrite(io->ctx, fd, buf, 100, 0) == 100);
    CHECK_OK(io->fsync(io->ctx, fd));
    CHECK_OK(io->close(io->ctx, fd));
    CHECK_OK(io->fsync(io->ctx, dirfd));
    /* Then three operations the directory never syncs: a file made (its
     * data synced), a rename over "old", an unlink. */
    fd = io->openat(io->ctx, dirfd, "new", O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    memset(buf, 'N', 100);
    CHECK(io->pwrite(io->ctx, fd, buf, 100, 0) == 100);
    CHECK_OK(io->fdatasync(io->ctx, fd));
    CHECK_OK(io->close(io->ctx, fd));
    CHECK_OK(io->renameat(io->ctx, dirfd, "tmp", "old"));
    CHECK_OK(io->unlinkat(io->ctx, dirfd, "gone"));
    /* The cut: a write after it changes nothing. */
    fd = io->openat(io->ctx, dirfd, "data", O_RDWR, 0);
    CHECK(fd >= 0);
    pc.cut_at = pc.calls + 1;
    memset(buf, 'X', 4096);
    CHECK_EQ(io->pwrite(io->ctx, fd, buf, 4096, 2 * 4096), -EIO);
    CHECK_EQ(io->fdatasync(io->ctx, fd), -EIO);
    CHECK_EQ(io->close(io->ctx, fd), -EIO);
    CHECKF(fcntl(fd, F_GETFD) < 0, "descriptor %d still open after a close at the cut", fd);
    CHECK_EQ(pc.cut_op, OP_PWRITE);
    struct powercut_result r;
    powercut_apply(&pc, seed, &r);
    CHECK_EQ(io->unlinkat(io->ctx, dirfd, "data"), -EIO);
    powercut_destroy(&pc);
    close(dirfd);

    char what[160];
    snprintf(what, sizeof what, "cut seed %" PRIu64, seed);
    size_t len = 0;
    in_dir(path, dir, "data");
    uint8_t *data = slurp(path, &len);
    CHECKF(data && (len == 3 * 4096 || len == 5 * 4096),
           "%s: data has %zu bytes, not its synced 12288 or 20480", what, data ? len : 0);
    CHECKF(all_bytes(data, 4096, 'B'), "%s: the synced block 0 of data changed", what);
    CHECKF(all_bytes(data + 2 * 4096, 4096, 'A'), "%s: block 2 of data, never written, changed",
           what);
    uint8_t cur[4096], old[4096];
    int f1 = block_fate(data + 4096, 4096, filled(cur, 'C', 4096), filled(old, 'A', 4096));
    CHECKF(f1 >= 0, "%s: block 1 of data is none of new, old or torn", what);
    fates[0][f1]++;
    sizes[len == 5 * 4096]++;
    for (size_t b = 3; b * 4096 < len; b++) {
        int f = block_fate(data + b * 4096, 4096, filled(cur, 'D', 4096), filled(old, 0, 0));
        CHECKF(f >= 0, "%s: appended block %zu of data is none of new, zeros or torn", what, b);
        fates[1][f]++;
    }
    free(data);

    /* trunc: at the size it had synced (6000), after O_TRUNC or after the
     * write; each block new, old or torn up to that size. */
    in_dir(path, dir, "trunc");
    uint8_t *tr = slurp(path, &len);
    CHECKF(tr && (len == 6000 || len == 0 || len == 100),
           "%s: trunc has %zu bytes, not 6000, 0 or 100", what, tr ? len : 0);
    for (size_t b = 0; b * 4096 < len; b++) {
        size_t n = len - b * 4096 < 4096 ? len - b * 4096 : 4096;
        filled(cur, 'S', b == 0 ? 100 : 0);
        filled(old, 'R', b == 0 ? 4096 : 6000 - 4096);
        CHECKF(block_fate(tr + b * 4096, n, cur, old) >= 0,
               "%s: block %zu of the truncated file is none of new, old or torn", what, b);
    }
    truncs[len == 6000 ? 0 : len == 0 ? 1 : 2]++;
    free(tr);

    in_dir(path, dir, "made");
    uint8_t *made = slurp(path, &len);
    CHECKF(made && len == 100 && all_bytes(made, 100, 'M'),
           "%s: \"made\", synced with its name, is gone or changed", what);
    free(made);
    /* The unsynced operations, newest first: unlink, rename, create. */
    const char *names[] = {"new", "old", "tmp", "gone"};
    uint8_t *got[4];
    size_t lens[4] = {0};
    for (int i = 0; i < 4; i++) {
        in_dir(path, dir, names[i]);
        got[i] = slurp(path, &lens[i]);
    }
    size_t k = r.ops_undone;
    CHECKF(r.ops_pending == 3, "%s: %zu unsynced operations, expected 3", what, r.ops_pending);
    int gone_ok = k >= 1 ? got[3] && lens[3] == 100 && all_bytes(got[3], 100, 'G') : !got[3];
    int rename_ok = k >= 2 ? got[1] && lens[1] == 5000 && all_bytes(got[1], 5000, 'O') && got[2] &&
                                 lens[2] == 3000 && all_bytes(got[2], 3000, 'T')
                           : got[1] && lens[1] == 3000 && all_bytes(got[1], 3000, 'T') && !got[2];
    int new_ok = k >= 3 ? !got[0] : got[0] && lens[0] == 100 && all_bytes(got[0], 100, 'N');
    CHECKF(gone_ok && rename_ok && new_ok,
           "%s: with the last %zu operations undone, expected %s, %s, %s; found new %s, old %zu "
           "bytes, tmp %s, gone %s",
           what, k, k >= 3 ? "no new" : "new", k >= 2 ? "old and tmp as before" : "old = tmp",
           k >= 1 ? "gone back" : "no gone", got[0] ? "present" : "missing", got[1] ? lens[1] : 0,
           got[2] ? "present" : "missing", got[3] ? "present" : "missing");
    undone[k]++;
    for (int i = 0; i < 4; i++)
        free(got[i]);
    size_t left = tu_count_files(attic, "", "") - 2; /* not "." and ".." */
    CHECKF(left == 0, "%s: %zu files left in the attic after the cut", what, left);
}

static void test_model(void)
{
    char dir[TU_PATH_MAX];
    tu_path(dir, "dir");
    long fates[2][FATE_COUNT] = {{0}}, sizes[2] = {0}, truncs[3] = {0}, undone[4] = {0};
    for (uint64_t seed = 1; seed <= MODEL_ROUNDS; seed++)
        model_round(dir, seed, fates, sizes, truncs, undone);
    tu_note("an unsynced overwrite: %ld kept, %ld restored, %ld torn; an unsynced append: "
            "%ld kept, %ld zeros, %ld torn (in %ld of %d rounds the size was kept)",
            fates[0][0], fates[0][1], fates[0][2], fates[1][0], fates[1][1], fates[1][2], sizes[1],
            MODEL_ROUNDS);
    tu_note("an unsynced truncation and write: the synced size %ld times, 0 %ld times, the "
            "written one %ld times",
            truncs[0], truncs[1], truncs[2]);
    tu_note("the last 0, 1, 2, 3 namespace operations undone: %ld, %ld, %ld, %ld rounds", undone[0],
            undone[1], undone[2], undone[3]);
    /* A table that never loses anything would pass every other test. */
    for (int kind = 0; kind < 2; kind++)
        for (int f = 0; f < FATE_COUNT; f++)
            CHECKF(fates[kind][f] > 0, "no unsynced %s block was ever %s in %d cuts",
                   kind ? "appended" : "rewritten", fate_names[f], MODEL_ROUNDS);
    CHECKF(sizes[0] > 0 && sizes[1] > 0, "the size was %s in all %d cuts",
           sizes[0] ? "lost" : "kept", MODEL_ROUNDS);
    CHECKF(truncs[0] > 0 && truncs[1] > 0 && truncs[2] > 0,
           "in %d cuts, a truncated file never came back at each of its sizes: %ld, %ld, %ld",
           MODEL_ROUNDS, truncs[0], truncs[1], truncs[2]);
    for (int k = 0; k < 4; k++)
        CHECKF(undone[k] > 0, "in %d cuts, never exactly the last %d namespace operations undone",
               MODEL_ROUNDS, k);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("model", test_model);
    return tu_finish();
}
