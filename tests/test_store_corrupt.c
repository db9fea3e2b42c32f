/*
 * test_store_corrupt.c - damage on disk. A store holds 60 keys of distinct
 * compressible values of 100-300 KiB, checkpointed twice and closed; then
 * one file is damaged:
 *
 *  - a byte in the middle of a data segment (STORE/data/NNNNNNNN.seg,
 *    beyond its 64-byte header): the store opens, exactly the keys whose
 *    gets return -EIO are damaged (at least one), all others read right,
 *    and mindb_check counts and names exactly those keys;
 *  - the newest manifest (STORE/manifest.SEQ, 16 hex digits) cut to half or
 *    with a byte flipped: the open fails with MINDB_ECORRUPT, or falls back
 *    to an older manifest and still shows every committed key;
 *  - a byte of a segment's header: MINDB_ECORRUPT (MINDB_EVERSION for the
 *    version field), or damage confined to reads (-EIO, never wrong data);
 *  - the identity file STORE/FORMAT gone, unreadable, or of a newer
 *    version: MINDB_ENOTSTORE, MINDB_EVERSION, and nothing changed.
 *
 * None of it may crash (the sanitizer build runs this too).
 */
#include "storeutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYS 60
#define FIRST_BATCH 50
#define SEG_HEADER 64

static size_t value_len(unsigned i)
{
    return 100 * KiB + (size_t)(i * 7919u) % (200 * KiB);
}

static void key_name(char *out, unsigned i)
{
    sprintf(out, "c/k%02u", i);
}

static uint8_t *value_of(unsigned i, size_t *len)
{
    *len = value_len(i);
    uint8_t *v = malloc(*len);
    CHECK(v != NULL);
    char key[32];
    key_name(key, i);
    su_value(v, *len, su_key_hash(KEY(key)), i);
    return v;
}

static void build_store(const char *dir)
{
    struct mindb_options o;
    su_options(&o, 0);
    mindb *db = SU_OPEN(dir, &o);
    char key[32];
    for (unsigned i = 0; i < KEYS; i++) {
        size_t len;
        uint8_t *v = value_of(i, &len);
        key_name(key, i);
        SU_PUT(db, KEY(key), v, len);
        free(v);
        if (i + 1 == FIRST_BATCH)
            CHECK_OK(mindb_checkpoint(db));
    }
    CHECK_OK(mindb_checkpoint(db));
    CHECK_OK(mindb_close(db));
}

/* The newest file of `sub` (a subdirectory of `dir`, or "") whose name
 * starts with `prefix` and ends with `suffix`: the greatest name, or with
 * `largest` the largest file. */
static void find_file(char out[TU_PATH_MAX], const char *dir, const char *sub, const char *prefix,
                      const char *suffix, int largest)
{
    char path[TU_PATH_MAX];
    CHECK(snprintf(path, sizeof path, "%s/%s", dir, sub) < (int)sizeof path);
    DIR *d = opendir(path);
    CHECKF(d != NULL, "opendir %s", path);
    char best[256] = "";
    uint64_t best_size = 0;
    struct dirent *e;
    size_t plen = strlen(prefix), slen = strlen(suffix);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < plen + slen || strncmp(e->d_name, prefix, plen) != 0 ||
            strcmp(e->d_name + len - slen, suffix) != 0 || strchr(e->d_name, '~') ||
            strstr(e->d_name, ".tmp"))
            continue;
        char p[TU_PATH_MAX];
        CHECK(snprintf(p, sizeof p, "%s/%s", path, e->d_name) < (int)sizeof p);
        uint64_t size = tu_file_size(p);
        if (largest ? size > best_size : strcmp(e->d_name, best) > 0) {
            snprintf(best, sizeof best, "%s", e->d_name);
            best_size = size;
        }
    }
    closedir(d);
    CHECKF(best[0], "no file %s*%s in %s", prefix, suffix, path);
    CHECK(snprintf(out, TU_PATH_MAX, "%s/%s", path, best) < TU_PATH_MAX);
}

struct damage {
    int count;
    char names[KEYS];
};

static void on_damaged(void *ctx, const void *key, size_t len, int err)
{
    struct damage *d = ctx;
    unsigned i;
    char name[32];
    CHECKF(len < sizeof name, "damaged key %s", su_keystr(key, len));
    memcpy(name, key, len);
    name[len] = 0;
    CHECKF(sscanf(name, "c/k%02u", &i) == 1 && i < KEYS, "damaged key %s", name);
    CHECK(err < 0);
    CHECKF(!d->names[i], "%s reported twice", name);
    d->names[i] = 1;
    d->count++;
}

/* Reads every key: each is right or -EIO, never other data. Returns the
 * damaged keys, checks mindb_check agrees, and with `want_damage` that
 * there is some. */
static int check_reads(mindb *db, int want_damage)
{
    char eio[KEYS] = {0};
    int damaged = 0;
    char key[32];
    for (unsigned i = 0; i < KEYS; i++) {
        key_name(key, i);
        size_t want_len;
        uint8_t *want = value_of(i, &want_len);
        void *v = NULL;
        size_t len = 0;
        int rc = mindb_get(db, KEY(key), &v, &len);
        CHECKF(rc == 0 || rc == -EIO, "get %s returned %d (%s)", key, rc, su_strerror(rc));
        if (rc == 0)
            CHECKF(len == want_len && memcmp(v, want, len) == 0, "%s: other data, not -EIO", key);
        else
            eio[i] = 1, damaged++;
        free(v);
        free(want);
    }
    if (want_damage)
        CHECKF(damaged >= 1, "no key reads -EIO");
    struct damage d = {0};
    int rc = mindb_check(db, on_damaged, NULL, &d);
    CHECKF(rc == damaged, "mindb_check returned %d, %d keys read -EIO", rc, damaged);
    CHECK_EQ(d.count, damaged);
    for (unsigned i = 0; i < KEYS; i++)
        CHECKF(d.names[i] == eio[i], "key %u: mindb_check says %s, get says %s", i,
               d.names[i] ? "damaged" : "sound", eio[i] ? "-EIO" : "sound");
    return damaged;
}

static mindb *try_open(const char *dir, int *rc)
{
    struct mindb_options o;
    su_options(&o, 0);
    o.create = 0;
    mindb *db = NULL;
    *rc = mindb_open(dir, &o, &db);
    return *rc == 0 ? db : NULL;
}

static void test_segment_payload(void)
{
    char dir[TU_PATH_MAX], seg[TU_PATH_MAX];
    su_store_path(dir, "store");
    build_store(dir);
    find_file(seg, dir, "data", "", ".seg", 1);
    uint64_t size = tu_file_size(seg);
    CHECK(size > 2 * SEG_HEADER);
    tu_note("flipping a bit at %llu of %s (%llu bytes)", (unsigned long long)(size / 2),
            strrchr(seg, '/') + 1, (unsigned long long)size);
    tu_flip_bit(seg, size / 2, 3);
    int rc;
    mindb *db = try_open(dir, &rc);
    CHECKF(db != NULL, "open returned %d (%s)", rc, su_strerror(rc));
    int damaged = check_reads(db, 1);
    tu_note("%d keys damaged", damaged);
    /* Still so after a reopen, and a second look gives the same. */
    CHECK_OK(mindb_close(db));
    db = try_open(dir, &rc);
    CHECKF(db != NULL, "open returned %d (%s)", rc, su_strerror(rc));
    CHECK_EQ(check_reads(db, 1), damaged);
    CHECK_OK(mindb_close(db));
}

/* After damage to the newest manifest: MINDB_ECORRUPT, or every key. */
static void manifest_case(const char *name, int cut)
{
    char dir[TU_PATH_MAX], man[TU_PATH_MAX];
    su_store_path(dir, name);
    build_store(dir);
    find_file(man, dir, "", "manifest.", "", 0);
    uint64_t size = tu_file_size(man);
    if (cut)
        tu_truncate(man, size / 2);
    else
        tu_flip_bit(man, size / 2, 5);
    int rc;
    mindb *db = try_open(dir, &rc);
    if (!db) {
        CHECKF(rc == MINDB_ECORRUPT, "%s of %s: open returned %d (%s), expected MINDB_ECORRUPT",
               cut ? "cut" : "flip", strrchr(man, '/') + 1, rc, su_strerror(rc));
        CHECK(strlen(mindb_strerror(rc)) > 0);
        tu_note("%s: MINDB_ECORRUPT (%s)", name, mindb_strerror(rc));
        return;
    }
    CHECK_EQ(check_reads(db, 0), 0);
    struct mindb_stats st;
    CHECK_OK(mindb_stats(db, &st));
    CHECK_EQ_U(st.keys, KEYS);
    tu_note("%s: opened on an older manifest, every key there", name);
    CHECK_OK(mindb_close(db));
}

static void test_manifest_cut(void)
{
    manifest_case("cut", 1);
}

static void test_manifest_flip(void)
{
    manifest_case("flip", 0);
}

static void test_segment_header(void)
{
    static const unsigned offsets[] = {0, 5, 8, 12, 16, 24, 40, 63};
    for (size_t c = 0; c < sizeof offsets / sizeof offsets[0]; c++) {
        char name[32], dir[TU_PATH_MAX], seg[TU_PATH_MAX];
        snprintf(name, sizeof name, "store%zu", c);
        su_store_path(dir, name);
        build_store(dir);
        find_file(seg, dir, "data", "", ".seg", 1);
        tu_flip_bit(seg, offsets[c], 1);
        int rc;
        mindb *db = try_open(dir, &rc);
        if (!db) {
            /* A flip in the version field reads as a newer version. */
            int version_field = offsets[c] >= 8 && offsets[c] < 12;
            CHECKF(rc == MINDB_ECORRUPT || (version_field && rc == MINDB_EVERSION),
                   "header byte %u: open returned %d (%s)", offsets[c], rc, su_strerror(rc));
            tu_note("header byte %u: %s", offsets[c],
                    rc == MINDB_ECORRUPT ? "MINDB_ECORRUPT" : "MINDB_EVERSION");
        } else {
            int damaged = check_reads(db, 0);
            tu_note("header byte %u: opened, %d keys damaged", offsets[c], damaged);
            CHECK_OK(mindb_close(db));
        }
        CHECK_OK(tu_rm_rf(dir));
    }
}

static void write_text(const char *path, const char *text)
{
    CHECK_OK(tu_rm_rf(path));
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

static void test_format(void)
{
    char dir[TU_PATH_MAX], format[TU_PATH_MAX];
    su_store_path(dir, "store");
    build_store(dir);
    CHECK(snprintf(format, sizeof format, "%s/FORMAT", dir) < (int)sizeof format);
    CHECKF(tu_exists(format), "no FORMAT in the store");
    char saved[256] = {0};
    tu_pread_file(format, saved, (size_t)tu_file_size(format), 0);

    struct mindb_options o;
    su_options(&o, 0);
    mindb *db = NULL;
    CHECK(unlink(format) == 0);
    o.create = 0;
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_ENOTSTORE);
    o.create = 1; /* not empty: never made a store again */
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_ENOTSTORE);
    CHECK(!tu_exists(format));

    write_text(format, "something else\n");
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_ENOTSTORE);
    write_text(format, "");
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_ENOTSTORE);
    write_text(format, "mindb store format 4\n");
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_EVERSION);
    write_text(format, "mindb store format 99999\n");
    CHECK_ERR(mindb_open(dir, &o, &db), MINDB_EVERSION);
    CHECK(strlen(mindb_strerror(MINDB_EVERSION)) > 0);

    /* Format 1 (before shared chunks) still opens, and is left format 1. */
    write_text(format, "mindb store format 1\n");
    int rc;
    db = try_open(dir, &rc);
    CHECKF(db != NULL, "format 1: open returned %d (%s)", rc, su_strerror(rc));
    CHECK_EQ(check_reads(db, 0), 0);
    CHECK_OK(mindb_close(db));

    /* Put back, the store is whole. */
    write_text(format, saved);
    db = try_open(dir, &rc);
    CHECKF(db != NULL, "open returned %d (%s)", rc, su_strerror(rc));
    CHECK_EQ(check_reads(db, 0), 0);
    CHECK_OK(mindb_close(db));
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("segment_payload", test_segment_payload);
    tu_run("manifest_cut", test_manifest_cut);
    tu_run("manifest_flip", test_manifest_flip);
    tu_run("segment_header", test_segment_header);
    tu_run("format", test_format);
    return tu_finish();
}
