/*
 * test_store_concurrent.c - eight threads on one handle: four writers (puts
 * and deletes of their own keys, writes of 4 KiB blocks into their own file
 * through a handle, puts of shared keys), two readers (gets and preads that
 * must return a whole version that was written, never a torn one: values
 * carry their own checksum), a lister (children listings while keys come
 * and go) and a syncer (mindb_sync in a loop). The work is counted in
 * operations, not time. Afterwards, and again after a close and reopen,
 * every key holds its writer's last version, and each shared key the value
 * of a put that no other put followed.
 *
 * MINDB_CONC_OPS sets the operations per writer (default 1000).
 */
#include "storeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define WRITERS 4
#define READERS 2
#define OWN_KEYS 40
#define STABLE_KEYS 5
#define SHARED_KEYS 8
#define BLOCKS 64
#define BLOCK 4096
#define DEFAULT_OPS 1000

struct own_key {
    int present;
    uint64_t version; /* tag2 of its value */
    size_t len;
};

struct shared_put {
    uint64_t version;
    uint64_t start, end; /* g_clock before and after the put */
};

struct writer {
    unsigned id;
    uint64_t rng;
    struct own_key own[OWN_KEYS];
    struct own_key stable[STABLE_KEYS];
    uint64_t blocks[BLOCKS]; /* version of each block of the file */
    struct shared_put *shared[SHARED_KEYS];
    size_t nshared[SHARED_KEYS];
    _Atomic uint64_t started; /* sequence number of the op under way */
};

static mindb *g_db;
static struct writer g_w[WRITERS];
static long g_ops = DEFAULT_OPS;
static atomic_uint_fast64_t g_clock;
static atomic_int g_writers_left;

static void own_name(char *out, unsigned w, unsigned k)
{
    sprintf(out, "w%u/k%02u", w, k);
}

static void stable_name(char *out, unsigned w, unsigned k)
{
    sprintf(out, "w%u/stable%u", w, k);
}

static void file_name(char *out, unsigned w)
{
    sprintf(out, "w%u/file", w);
}

static void shared_name(char *out, unsigned k)
{
    sprintf(out, "shared/s%u", k);
}

static uint64_t block_tag(unsigned w, unsigned b)
{
    return su_key_hash("block", 5) ^ ((uint64_t)w << 40) ^ b;
}

static uint64_t version_of(unsigned w, uint64_t seq)
{
    return (uint64_t)w << 48 | seq;
}

static size_t rand_len(uint64_t *rng)
{
    uint64_t r = tu_rand(rng) % 100;
    if (r < 95)
        return (size_t)tu_rand_range(rng, SU_VALUE_MIN, 8 * KiB);
    return (size_t)tu_rand_range(rng, 8 * KiB, 100 * KiB);
}

/* Gets `key` and checks it is a whole su_value for `tag1`; returns its
 * version, or 0 when missing (allowed only with `may_miss`). */
static uint64_t get_whole(const char *key, int may_miss)
{
    void *v = NULL;
    size_t len = 0;
    int rc = mindb_get(g_db, KEY(key), &v, &len);
    if (rc == -ENOENT && may_miss)
        return 0;
    CHECKF(rc == 0, "get %s returned %d (%s)", key, rc, su_strerror(rc));
    uint64_t tag1 = 0, version = 0;
    CHECKF(su_value_parse(v, len, &tag1, &version) && tag1 == su_key_hash(KEY(key)),
           "get %s: %zu bytes that are no whole value of the key (torn?)", key, len);
    free(v);
    return version;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = malloc(100 * KiB + 3 * BLOCK);
    CHECK(buf != NULL);
    char key[64];
    file_name(key, w->id);
    mindb_file *f = NULL;
    CHECK_OK(mindb_file_open(g_db, KEY(key), 0, 0, &f));
    for (long n = 0; n < SHARED_KEYS; n++) {
        w->shared[n] = malloc((size_t)g_ops * sizeof *w->shared[n]);
        CHECK(w->shared[n] != NULL);
    }
    for (uint64_t seq = 1; seq <= (uint64_t)g_ops; seq++) {
        atomic_store(&w->started, seq);
        uint64_t version = version_of(w->id, seq);
        uint64_t r = tu_rand(&w->rng) % 100;
        if (r < 40) {
            unsigned k = (unsigned)(tu_rand(&w->rng) % OWN_KEYS);
            own_name(key, w->id, k);
            size_t len = rand_len(&w->rng);
            su_value(buf, len, su_key_hash(KEY(key)), version);
            CHECK_OK(mindb_put(g_db, KEY(key), buf, len));
            w->own[k] = (struct own_key){.present = 1, .version = version, .len = len};
            if (tu_rand(&w->rng) % 10 == 0)
                CHECK_EQ_U(get_whole(key, 0), version); /* our own write, at once */
        } else if (r < 55) {
            unsigned k = (unsigned)(tu_rand(&w->rng) % OWN_KEYS);
            own_name(key, w->id, k);
            CHECK_ERR(mindb_delete(g_db, KEY(key)), w->own[k].present ? 0 : -ENOENT);
            w->own[k].present = 0;
        } else if (r < 75) {
            unsigned b = (unsigned)(tu_rand(&w->rng) % BLOCKS);
            unsigned count = 1 + (unsigned)(tu_rand(&w->rng) % 3);
            if (b + count > BLOCKS)
                count = BLOCKS - b;
            for (unsigned i = 0; i < count; i++)
                su_value(buf + (size_t)i * BLOCK, BLOCK, block_tag(w->id, b + i), version);
            ssize_t wrote = mindb_pwrite(f, buf, (size_t)count * BLOCK, (uint64_t)b * BLOCK);
            CHECK_EQ(wrote, (ssize_t)count * BLOCK);
            for (unsigned i = 0; i < count; i++)
                w->blocks[b + i] = version;
        } else if (r < 90) {
            unsigned k = (unsigned)(tu_rand(&w->rng) % SHARED_KEYS);
            shared_name(key, k);
            size_t len = rand_len(&w->rng);
            su_value(buf, len, su_key_hash(KEY(key)), version);
            struct shared_put *p = &w->shared[k][w->nshared[k]++];
            p->version = version;
            p->start = atomic_fetch_add(&g_clock, 1);
            CHECK_OK(mindb_put(g_db, KEY(key), buf, len));
            p->end = atomic_fetch_add(&g_clock, 1);
        } else {
            unsigned k = (unsigned)(tu_rand(&w->rng) % STABLE_KEYS);
            stable_name(key, w->id, k);
            size_t len = rand_len(&w->rng);
            su_value(buf, len, su_key_hash(KEY(key)), version);
            CHECK_OK(mindb_put(g_db, KEY(key), buf, len));
            w->stable[k] = (struct own_key){.present = 1, .version = version, .len = len};
        }
    }
    mindb_file_close(f);
    free(buf);
    atomic_fetch_sub(&g_writers_left, 1);
    return NULL;
}

/* A version read for writer `w` must come from an op it started. */
static void check_version(uint64_t version, unsigned w, uint64_t started_after, const char *what)
{
    CHECKF(version >> 48 == w && (version & 0xffffffffffffull) <= started_after,
           "%s: version %llx of writer %u, which had started op %llu only", what,
           (unsigned long long)version, w, (unsigned long long)started_after);
}

struct reader_stats {
    long gets, preads;
};

static void *reader_main(void *arg)
{
    struct reader_stats *rs = arg;
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull;
    mindb_file *files[WRITERS];
    char key[64];
    for (unsigned w = 0; w < WRITERS; w++) {
        file_name(key, w);
        CHECK_OK(mindb_file_open(g_db, KEY(key), 0, 0, &files[w]));
    }
    uint8_t block[BLOCK];
    while (atomic_load(&g_writers_left) > 0) {
        unsigned w = (unsigned)(tu_rand(&rng) % WRITERS);
        uint64_t r = tu_rand(&rng) % 4;
        if (r == 0) {
            own_name(key, w, (unsigned)(tu_rand(&rng) % OWN_KEYS));
            uint64_t v = get_whole(key, 1);
            if (v)
                check_version(v, w, atomic_load(&g_w[w].started), key);
            rs->gets++;
        } else if (r == 1) {
            stable_name(key, w, (unsigned)(tu_rand(&rng) % STABLE_KEYS));
            uint64_t v = get_whole(key, 0);
            if (v >> 48 != 0xff)
                check_version(v, w, atomic_load(&g_w[w].started), key);
            rs->gets++;
        } else if (r == 2) {
            shared_name(key, (unsigned)(tu_rand(&rng) % SHARED_KEYS));
            get_whole(key, 0);
            rs->gets++;
        } else {
            /* A 4 KiB block never crosses a 64 KiB chunk: read whole. */
            unsigned b = (unsigned)(tu_rand(&rng) % BLOCKS);
            ssize_t n = mindb_pread(files[w], block, BLOCK, (uint64_t)b * BLOCK);
            CHECK_EQ(n, BLOCK);
            uint64_t tag1 = 0, v = 0;
            CHECKF(su_value_parse(block, BLOCK, &tag1, &v) && tag1 == block_tag(w, b),
                   "block %u of writer %u is no whole version (torn?)", b, w);
            if (v >> 48 != 0xff)
                check_version(v, w, atomic_load(&g_w[w].started), "block");
            rs->preads++;
        }
    }
    for (unsigned w = 0; w < WRITERS; w++)
        mindb_file_close(files[w]);
    return NULL;
}

static void *lister_main(void *arg)
{
    long *passes = arg;
    char prefix[16], key[64];
    while (atomic_load(&g_writers_left) > 0) {
        unsigned w = (unsigned)(*passes % WRITERS);
        snprintf(prefix, sizeof prefix, "w%u/", w);
        size_t n;
        struct su_key *keys = su_list_children(g_db, prefix, &n);
        size_t plen = strlen(prefix);
        unsigned stable_seen = 0, file_seen = 0;
        for (size_t i = 0; i < n; i++) {
            CHECKF(keys[i].len > plen && memcmp(keys[i].key, prefix, plen) == 0 &&
                       !memchr(keys[i].key + plen, '/', keys[i].len - plen),
                   "listing %s returned %s", prefix, su_keystr(keys[i].key, keys[i].len));
            if (i > 0) {
                size_t a = keys[i - 1].len, b = keys[i].len, m = a < b ? a : b;
                int c = memcmp(keys[i - 1].key, keys[i].key, m);
                CHECKF(c < 0 || (c == 0 && a < b), "listing %s: %s then %s", prefix,
                       su_keystr(keys[i - 1].key, a), su_keystr(keys[i].key, b));
            }
            for (unsigned k = 0; k < STABLE_KEYS; k++) {
                stable_name(key, w, k);
                stable_seen +=
                    keys[i].len == strlen(key) && memcmp(keys[i].key, key, keys[i].len) == 0;
            }
            file_name(key, w);
            file_seen += keys[i].len == strlen(key) && memcmp(keys[i].key, key, keys[i].len) == 0;
        }
        CHECKF(stable_seen == STABLE_KEYS && file_seen == 1,
               "listing %s: %u of the keys that are never deleted", prefix,
               stable_seen + file_seen);
        CHECK(n <= OWN_KEYS + STABLE_KEYS + 1);
        su_free_keys(keys, n);
        (*passes)++;
    }
    return NULL;
}

static void *syncer_main(void *arg)
{
    long *syncs = arg;
    while (atomic_load(&g_writers_left) > 0) {
        CHECK_OK(mindb_sync(g_db));
        (*syncs)++;
    }
    return NULL;
}

static void expect_version(const char *key, uint64_t version, size_t len)
{
    uint8_t *want = malloc(len);
    CHECK(want != NULL);
    su_value(want, len, su_key_hash(KEY(key)), version);
    EXPECT_VALUE(g_db, KEY(key), want, len);
    free(want);
}

/* The final state: each writer's last versions; for a shared key, a put
 * that no other put started after the end of. */
static void check_final(void)
{
    char key[64];
    for (unsigned w = 0; w < WRITERS; w++) {
        struct writer *wr = &g_w[w];
        for (unsigned k = 0; k < OWN_KEYS; k++) {
            own_name(key, w, k);
            if (wr->own[k].present) {
                expect_version(key, wr->own[k].version, wr->own[k].len);
            } else {
                struct mindb_stat st;
                CHECK_ERR(mindb_stat(g_db, KEY(key), &st), -ENOENT);
            }
        }
        for (unsigned k = 0; k < STABLE_KEYS; k++) {
            stable_name(key, w, k);
            expect_version(key, wr->stable[k].version, wr->stable[k].len);
        }
        file_name(key, w);
        mindb_file *f = NULL;
        CHECK_OK(mindb_file_open(g_db, KEY(key), 0, 0, &f));
        uint8_t got[BLOCK], want[BLOCK];
        for (unsigned b = 0; b < BLOCKS; b++) {
            CHECK_EQ(mindb_pread(f, got, BLOCK, (uint64_t)b * BLOCK), BLOCK);
            su_value(want, BLOCK, block_tag(w, b), wr->blocks[b]);
            CHECKF(memcmp(got, want, BLOCK) == 0, "block %u of writer %u", b, w);
        }
        struct mindb_stat st;
        CHECK_OK(mindb_fstat(f, &st));
        CHECK_EQ_U(st.size, BLOCKS * BLOCK);
        mindb_file_close(f);
    }
    for (unsigned k = 0; k < SHARED_KEYS; k++) {
        shared_name(key, k);
        uint64_t v = get_whole(key, 0);
        const struct shared_put *final = NULL;
        uint64_t latest_start = 0;
        int any = 0;
        for (unsigned w = 0; w < WRITERS; w++)
            for (size_t i = 0; i < g_w[w].nshared[k]; i++) {
                const struct shared_put *p = &g_w[w].shared[k][i];
                if (p->version == v)
                    final = p;
            }
        CHECKF(final != NULL || (v >> 48 == 0xff), "%s holds version %llx that no one put", key,
               (unsigned long long)v);
        for (unsigned w = 0; w < WRITERS; w++)
            for (size_t i = 0; i < g_w[w].nshared[k]; i++) {
                const struct shared_put *p = &g_w[w].shared[k][i];
                if (p != final && (!any || p->start > latest_start)) {
                    latest_start = p->start;
                    any = 1;
                }
            }
        if (any)
            CHECKF(final && final->end > latest_start,
                   "%s holds version %llx, but a put started at %llu after it ended at %llu", key,
                   (unsigned long long)v, (unsigned long long)latest_start,
                   (unsigned long long)(final ? final->end : 0));
    }
}

static void test_concurrent(void)
{
    const char *env = getenv("MINDB_CONC_OPS");
    if (env && atol(env) > 0)
        g_ops = atol(env);
    uint64_t seed = tu_seed(0xc0c0a);
    char dir[TU_PATH_MAX];
    su_store_path(dir, "store");
    struct mindb_options o;
    su_options(&o, 1);
    o.dirty_bytes = 2 * MiB;
    g_db = SU_OPEN(dir, &o);

    /* Before the threads: the directories, the keys never deleted (version
     * 0xff<<48, "the initial one") and the files of blocks. */
    char key[64];
    CHECK_OK(mindb_create(g_db, KEY("shared"), S_IFDIR | 0755, 0, 0, NULL, 0));
    uint8_t *buf = malloc(BLOCKS * BLOCK);
    CHECK(buf != NULL);
    const uint64_t initial = 0xffull << 48;
    for (unsigned k = 0; k < SHARED_KEYS; k++) {
        shared_name(key, k);
        su_value(buf, 100, su_key_hash(KEY(key)), initial);
        SU_PUT(g_db, KEY(key), buf, 100);
    }
    for (unsigned w = 0; w < WRITERS; w++) {
        memset(&g_w[w], 0, sizeof g_w[w]);
        g_w[w].id = w;
        g_w[w].rng = seed ^ (0x1234567ull * (w + 1));
        snprintf(key, sizeof key, "w%u", w);
        CHECK_OK(mindb_create(g_db, KEY(key), S_IFDIR | 0755, 0, 0, NULL, 0));
        for (unsigned k = 0; k < STABLE_KEYS; k++) {
            stable_name(key, w, k);
            su_value(buf, 200, su_key_hash(KEY(key)), initial);
            SU_PUT(g_db, KEY(key), buf, 200);
            g_w[w].stable[k] = (struct own_key){.present = 1, .version = initial, .len = 200};
        }
        for (unsigned b = 0; b < BLOCKS; b++) {
            su_value(buf + (size_t)b * BLOCK, BLOCK, block_tag(w, b), initial);
            g_w[w].blocks[b] = initial;
        }
        file_name(key, w);
        SU_PUT(g_db, KEY(key), buf, BLOCKS * BLOCK);
    }
    free(buf);
    atomic_store(&g_writers_left, WRITERS);
    atomic_store(&g_clock, 1);

    pthread_t writers[WRITERS], readers[READERS], lister, syncer;
    struct reader_stats rs[READERS] = {{0}};
    long passes = 0, syncs = 0;
    for (unsigned i = 0; i < READERS; i++)
        CHECK(pthread_create(&readers[i], NULL, reader_main, &rs[i]) == 0);
    CHECK(pthread_create(&lister, NULL, lister_main, &passes) == 0);
    CHECK(pthread_create(&syncer, NULL, syncer_main, &syncs) == 0);
    for (unsigned i = 0; i < WRITERS; i++)
        CHECK(pthread_create(&writers[i], NULL, writer_main, &g_w[i]) == 0);
    for (unsigned i = 0; i < WRITERS; i++)
        CHECK(pthread_join(writers[i], NULL) == 0);
    for (unsigned i = 0; i < READERS; i++)
        CHECK(pthread_join(readers[i], NULL) == 0);
    CHECK(pthread_join(lister, NULL) == 0);
    CHECK(pthread_join(syncer, NULL) == 0);

    struct mindb_stats st;
    CHECK_OK(mindb_stats(g_db, &st));
    tu_note("seed %llu: %d writers x %ld ops; readers %ld gets, %ld preads; %ld listings; %ld "
            "syncs; %llu checkpoints",
            (unsigned long long)seed, WRITERS, g_ops, rs[0].gets + rs[1].gets,
            rs[0].preads + rs[1].preads, passes, syncs, (unsigned long long)st.checkpoints);
    check_final();
    g_db = SU_REOPEN(g_db, dir, &o);
    check_final();
    CHECK_EQ(mindb_check(g_db, NULL, NULL, NULL), 0);
    CHECK_OK(mindb_close(g_db));
    for (unsigned w = 0; w < WRITERS; w++)
        for (unsigned k = 0; k < SHARED_KEYS; k++)
            free(g_w[w].shared[k]);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("concurrent", test_concurrent);
    return tu_finish();
}
