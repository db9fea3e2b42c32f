/*
 * check.c - verifying a store: every chunk of every key read back from its
 * data segment and checked (checksum, identity, decompression). The index
 * and the manifest were verified when the store was opened, the log when it
 * was replayed.
 */
#include "db_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct check_item {
    uint64_t index;
    struct chunk_ref ref;
};

static void add_stored(void *ctx, struct object *obj)
{
    uint64_t *total = ctx;
    if (obj->nlink)
        for (uint32_t i = 0; i < obj->n_slots; i++)
            if (obj->slots[i].ref.seg)
                *total += chunk_ref_disk_bytes(&obj->slots[i].ref);
}

int mindb_check(mindb *db, void (*damaged)(void *ctx, const void *key, size_t key_len, int err),
                void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
    /* No compaction may move chunks (and delete their segment) meanwhile. */
    pthread_mutex_lock(&db->maint);
    uint64_t total = 0, done = 0;
    pthread_rwlock_rdlock(&db->state);
    objtable_each(&db->objects, add_stored, &total);
    pthread_rwlock_unlock(&db->state);

    uint8_t key[MINDB_MAX_KEY];
    size_t key_len = 0;
    int bad = 0, err = 0;
    struct check_item *items = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_rwlock_rdlock(&db->state);
        /* From past the empty key: the root holds no chunks. */
        struct kinode *n = keyindex_seek(db->index, key, key_len, 1);
        size_t count = 0;
        uint64_t id = 0;
        if (n) {
            memcpy(key, kinode_key(n), n->len);
            key_len = n->len;
            struct object *obj = n->obj;
            id = obj->id;
            if (obj->n_slots > cap) {
                struct check_item *p = realloc(items, obj->n_slots * sizeof(*p));
                if (!p)
                    err = -ENOMEM;
                else {
                    items = p;
                    cap = obj->n_slots;
                }
            }
            for (uint32_t i = 0; i < obj->n_slots && !err; i++)
                if (obj->slots[i].ref.seg && !obj->slots[i].dirty && !obj->slots[i].frozen)
                    items[count++] = (struct check_item){obj->slots[i].index, obj->slots[i].ref};
        }
        pthread_rwlock_unlock(&db->state);
        if (!n || err)
            break;
        int key_err = 0;
        for (size_t i = 0; i < count; i++) {
            int e = datafile_verify(db->data, id, items[i].index, &items[i].ref);
            if (e && !key_err)
                key_err = e;
            done += chunk_ref_disk_bytes(&items[i].ref);
        }
        if (key_err) {
            bad++;
            if (damaged)
                damaged(ctx, key, key_len, key_err);
        }
        if (progress && count)
            progress(ctx, done, total);
    }
    free(items);
    pthread_mutex_unlock(&db->maint);
    return err ? err : bad;
}
