/*
 * test_keyindex.c - the in-memory key index (store/keyindex.c) against a
 * sorted array: inserts and removes in random, ascending and descending
 * order, keys that share long prefixes, prefixes of one another and the
 * empty key; after each batch the tree's invariants (keyindex_verify), and
 * find, seek (at and after), the linked order and the count.
 */
#include "keyindex.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 40000
#define KEY_MAX 40

struct mkey {
    uint8_t b[KEY_MAX];
    size_t len;
};

struct model {
    struct mkey all[MAX_KEYS];
    struct mkey *k; /* the first key, in all[] */
    size_t n;
};

static struct model model;

static void model_reset(void)
{
    model.k = model.all;
    model.n = 0;
}

/* The slot of the first model key >= key (> with after). */
static size_t model_rank(const uint8_t *key, size_t len, int after)
{
    size_t lo = 0, hi = model.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = key_cmp(model.k[mid].b, model.k[mid].len, key, len);
        if (c < 0 || (after && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The object pointer a key maps to: its first byte's address in no real
 * object, only something the index hands back unchanged. */
static struct object *obj_of(const uint8_t *key, size_t len)
{
    uintptr_t h = 1469598103934665603u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 1099511628211u;
    return (struct object *)(h | 1);
}

/* Keys of a few shapes: 16 decimal digits (kv_bench's), paths under a few
 * directories sharing long prefixes, short keys that prefix others. */
static void make_key(uint64_t *rng, uint8_t *out, size_t *len)
{
    switch (tu_rand_range(rng, 0, 3)) {
    case 0:
        *len = (size_t)snprintf((char *)out, KEY_MAX, "%016llu",
                                (unsigned long long)tu_rand_range(rng, 0, 20000));
        break;
    case 1:
        *len = (size_t)snprintf((char *)out, KEY_MAX, "dir/sub%u/file%u",
                                (unsigned)tu_rand_range(rng, 0, 3),
                                (unsigned)tu_rand_range(rng, 0, 3000));
        break;
    case 2:
        *len = (size_t)tu_rand_range(rng, 0, 3);
        for (size_t i = 0; i < *len; i++)
            out[i] = (uint8_t)tu_rand_range(rng, 0, 2);
        break;
    default:
        *len = (size_t)tu_rand_range(rng, 8, 30);
        memset(out, 'p', *len);
        out[*len - 1] = (uint8_t)tu_rand_range(rng, 0, 255);
        break;
    }
}

static void check_all(struct keyindex *ki, uint64_t *rng)
{
    const char *err = keyindex_verify(ki);
    CHECKF(!err, "expected a sound tree with %zu keys, got: %s", model.n, err);
    CHECK_EQ_U(keyindex_count(ki), model.n);
    size_t i = 0;
    for (struct kinode *n = keyindex_first(ki); n; n = keyindex_next(n), i++) {
        CHECKF(i < model.n, "expected %zu keys in the list, got more", model.n);
        CHECKF(key_cmp(kinode_key(n), n->len, model.k[i].b, model.k[i].len) == 0,
               "expected key %zu of the list to be the model's (length %zu), got length %u", i,
               model.k[i].len, n->len);
        CHECK(n->obj == obj_of(model.k[i].b, model.k[i].len));
    }
    CHECK_EQ_U(i, model.n);
    for (int probe = 0; probe < 200; probe++) {
        uint8_t key[KEY_MAX];
        size_t len;
        if (model.n && probe % 2) {
            const struct mkey *m = &model.k[tu_rand_range(rng, 0, model.n - 1)];
            memcpy(key, m->b, m->len);
            len = m->len;
        } else {
            make_key(rng, key, &len);
        }
        for (int after = 0; after < 2; after++) {
            size_t r = model_rank(key, len, after);
            struct kinode *n = keyindex_seek(ki, key, len, after);
            if (r == model.n) {
                CHECKF(!n, "expected no key past probe %d (after %d), got one of length %u", probe,
                       after, n ? n->len : 0);
            } else {
                CHECKF(n && key_cmp(kinode_key(n), n->len, model.k[r].b, model.k[r].len) == 0,
                       "expected seek (after %d) to land on model key %zu, got %s", after, r,
                       n ? "another key" : "none");
            }
        }
        size_t r = model_rank(key, len, 0);
        int present = r < model.n && key_cmp(model.k[r].b, model.k[r].len, key, len) == 0;
        struct kinode *f = keyindex_find(ki, key, len);
        CHECKF((f != NULL) == present, "expected find to say %s, got %s",
               present ? "present" : "absent", f ? "present" : "absent");
    }
}

static void model_insert(size_t at, const uint8_t *key, size_t len)
{
    memmove(&model.k[at + 1], &model.k[at], (model.n - at) * sizeof(model.k[0]));
    memcpy(model.k[at].b, key, len);
    model.k[at].len = len;
    model.n++;
}

static void model_remove(size_t at)
{
    if (at == 0) {
        model.k++;
        model.n--;
        return;
    }
    memmove(&model.k[at], &model.k[at + 1], (model.n - at - 1) * sizeof(model.k[0]));
    model.n--;
}

/* Random inserts (through locate + insert_at, as apply.c does) and
 * removes, growing then shrinking the index to empty. */
static void test_random(void)
{
    uint64_t rng = tu_seed(7);
    struct keyindex *ki;
    CHECK_OK(keyindex_new(&ki));
    model_reset();
    check_all(ki, &rng);
    for (int phase = 0; phase < 3; phase++) {
        int grow = phase != 1;
        for (int step = 0; step < 12000; step++) {
            uint8_t key[KEY_MAX];
            size_t len;
            int insert = grow ? tu_rand_range(&rng, 0, 9) < 7 : tu_rand_range(&rng, 0, 9) < 2;
            if (!insert && model.n) {
                /* Remove a present key most of the time, an absent one too. */
                if (tu_rand_range(&rng, 0, 9) < 9) {
                    const struct mkey *m = &model.k[tu_rand_range(&rng, 0, model.n - 1)];
                    memcpy(key, m->b, m->len);
                    len = m->len;
                } else {
                    make_key(&rng, key, &len);
                }
                size_t r = model_rank(key, len, 0);
                int present = r < model.n && key_cmp(model.k[r].b, model.k[r].len, key, len) == 0;
                struct object *o = keyindex_remove(ki, key, len);
                CHECKF(o == (present ? obj_of(key, len) : NULL),
                       "expected remove of a %s key to return %s", present ? "present" : "absent",
                       present ? "its object" : "NULL");
                if (present)
                    model_remove(r);
            } else if (model.n < 6000) {
                make_key(&rng, key, &len);
                struct ki_where where;
                struct kinode *n = keyindex_locate(ki, key, len, &where);
                size_t r = model_rank(key, len, 0);
                int present = r < model.n && key_cmp(model.k[r].b, model.k[r].len, key, len) == 0;
                CHECKF((n != NULL) == present, "expected locate to say %s",
                       present ? "present" : "absent");
                if (!present) {
                    CHECK_OK(keyindex_insert_at(ki, &where, key, len, obj_of(key, len)));
                    model_insert(r, key, len);
                }
            }
            if (step % 1500 == 0)
                check_all(ki, &rng);
        }
        check_all(ki, &rng);
        tu_note("phase %d: %zu keys", phase, model.n);
    }
    /* Empty it. */
    while (model.n) {
        const struct mkey *m = &model.k[tu_rand_range(&rng, 0, model.n - 1)];
        uint8_t key[KEY_MAX];
        size_t len = m->len;
        memcpy(key, m->b, len);
        CHECK(keyindex_remove(ki, key, len) == obj_of(key, len));
        model_remove(model_rank(key, len, 0));
        if (model.n % 500 == 0)
            check_all(ki, &rng);
    }
    CHECK(keyindex_first(ki) == NULL);
    keyindex_free(ki);
}

/* Ascending inserts (a manifest loaded at open), then removal from the
 * front and from the back, which empty whole leaves in turn. */
static void test_ordered(void)
{
    uint64_t rng = tu_seed(11);
    for (int from_back = 0; from_back < 2; from_back++) {
        struct keyindex *ki;
        CHECK_OK(keyindex_new(&ki));
        model_reset();
        for (int i = 0; i < MAX_KEYS; i++) {
            uint8_t key[KEY_MAX];
            size_t len = (size_t)snprintf((char *)key, KEY_MAX, "k%08d", i);
            CHECK_OK(keyindex_insert(ki, key, len, obj_of(key, len)));
            model_insert(model.n, key, len);
        }
        check_all(ki, &rng);
        while (model.n) {
            size_t at = from_back ? model.n - 1 : 0;
            struct mkey m = model.k[at];
            CHECK(keyindex_remove(ki, m.b, m.len) == obj_of(m.b, m.len));
            model_remove(at);
            if (model.n % 4001 == 0)
                check_all(ki, &rng);
        }
        check_all(ki, &rng);
        keyindex_free(ki);
    }
    /* Descending inserts: every one a new first key. */
    struct keyindex *ki;
    CHECK_OK(keyindex_new(&ki));
    model_reset();
    model.k = model.all + MAX_KEYS;
    for (int i = MAX_KEYS - 1; i >= 0; i--) {
        uint8_t key[KEY_MAX];
        size_t len = (size_t)snprintf((char *)key, KEY_MAX, "k%08d", i);
        CHECK_OK(keyindex_insert(ki, key, len, obj_of(key, len)));
        model.k--;
        memcpy(model.k->b, key, len);
        model.k->len = len;
        model.n++;
    }
    check_all(ki, &rng);
    keyindex_free(ki);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("random", test_random);
    tu_run("ordered", test_ordered);
    return tu_finish();
}
