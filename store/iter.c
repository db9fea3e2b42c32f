/*
 * iter.c - ordered iteration over keys, and listing of a directory's direct
 * children.
 *
 * An iterator holds no lock between calls: it remembers the last key it
 * returned and seeks past it at the next call (O(log n)), so changes made
 * meanwhile are seen in key order after its position. Listing children seeks
 * past each deeper subtree ("a/b/sub/..." is skipped by seeking to
 * "a/b/sub0", '0' being the byte after '/'), so a listing costs O(children
 * * log n) however many keys lie deeper down.
 *
 * The empty key (the root directory) sorts before every other and is never
 * returned: iterating from "" starts at the first real key, and the
 * children of "" are the top-level keys.
 */
#include "db_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct mindb_iter {
    mindb *db;
    unsigned flags;
    size_t prefix_len; /* CHILDREN: the directory prefix */
    uint8_t prefix[MINDB_MAX_KEY + 1];
    uint8_t pos[MINDB_MAX_KEY + 2]; /* seek to here next */
    size_t pos_len;
    int pos_after; /* seek strictly after pos */
    uint8_t out[MINDB_MAX_KEY + 2];
    int done;
    /* The node of the key last returned, while the index has not changed
     * since (change_seq): the next step follows its link instead of
     * seeking, which makes a scan O(1) per key. */
    struct kinode *node;
    uint64_t seq;
};

int mindb_iter_open(mindb *db, const void *start, size_t start_len, const void *resume,
                    size_t resume_len, unsigned flags, mindb_iter **out)
{
    if (start_len > MINDB_MAX_KEY || resume_len > MINDB_MAX_KEY || (start_len && !start) ||
        (resume_len && !resume))
        return -EINVAL;
    if (flags & ~(unsigned)(MINDB_ITER_AFTER | MINDB_ITER_CHILDREN))
        return -EINVAL;
    if ((flags & MINDB_ITER_CHILDREN) && start_len &&
        ((const uint8_t *)start)[start_len - 1] != '/')
        return -EINVAL;
    mindb_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return -ENOMEM;
    it->db = db;
    it->flags = flags;
    if (flags & MINDB_ITER_CHILDREN) {
        it->prefix_len = start_len;
        if (start_len)
            memcpy(it->prefix, start, start_len);
    }
    if (resume && resume_len) {
        memcpy(it->pos, resume, resume_len);
        it->pos_len = resume_len;
        it->pos_after = 1;
        /* A child reported as a prefix "x/" resumes after all of it. */
        if ((flags & MINDB_ITER_CHILDREN) && it->pos[resume_len - 1] == '/') {
            it->pos[resume_len - 1] = '0';
            it->pos_after = 0;
        }
    } else if (start_len) {
        memcpy(it->pos, start, start_len);
        it->pos_len = start_len;
        it->pos_after = (flags & MINDB_ITER_AFTER) != 0;
    }
    *out = it;
    return 0;
}

ssize_t mindb_iter_read(mindb_iter *it, void *buf, size_t len, uint64_t off)
{
    mindb *db = it->db;
    if (len && !buf)
        return -EINVAL;
    pthread_rwlock_rdlock(&db->state);
    struct object *obj = NULL;
    if (it->node && it->seq == db->change_seq)
        obj = it->node->obj;
    else if (it->pos_after && it->pos_len)
        obj = lookup(db, it->pos, it->pos_len);
    ssize_t n;
    if (!obj)
        n = -ENOENT;
    else if (S_ISDIR(obj->mode))
        n = -EISDIR;
    else
        n = chunk_read(db, obj, buf, len, off);
    pthread_rwlock_unlock(&db->state);
    return n;
}

void mindb_iter_close(mindb_iter *it)
{
    free(it);
}

static void prefix_stat(struct mindb_stat *st)
{
    memset(st, 0, sizeof(*st));
    st->mode = S_IFDIR | 0755;
    st->nlink = 2;
}

/* Returns the key of node `n` and moves the position past it. */
static int take_key(mindb_iter *it, struct kinode *n, size_t *key_len, struct mindb_stat *st)
{
    memcpy(it->out, kinode_key(n), n->len);
    *key_len = n->len;
    if (st)
        stat_fill(n->obj, st);
    memcpy(it->pos, kinode_key(n), n->len);
    it->pos_len = n->len;
    it->pos_after = 1;
    it->node = n;
    it->seq = it->db->change_seq;
    return 1;
}

int mindb_iter_next(mindb_iter *it, const void **key, size_t *key_len, struct mindb_stat *st)
{
    if (it->done)
        return 0;
    mindb *db = it->db;
    pthread_rwlock_rdlock(&db->state);
    int ret = 0;
    struct kinode *n;
    if (it->node && it->seq == db->change_seq)
        n = keyindex_next(it->node);
    else
        n = keyindex_seek(db->index, it->pos, it->pos_len, it->pos_after);
    if (n && n->len == 0)
        n = keyindex_next(n); /* the root is no entry of any listing */
    it->node = NULL;
    for (;; n = keyindex_seek(db->index, it->pos, it->pos_len, it->pos_after)) {
        if (!n)
            break;
        const uint8_t *k = kinode_key(n);
        if (!(it->flags & MINDB_ITER_CHILDREN)) {
            ret = take_key(it, n, key_len, st);
            break;
        }
        size_t plen = it->prefix_len;
        if (n->len <= plen || memcmp(k, it->prefix, plen) != 0)
            break;
        const uint8_t *slash = memchr(k + plen, '/', n->len - plen);
        if (!slash) {
            ret = take_key(it, n, key_len, st); /* a direct child */
            break;
        }
        /* A key deeper down: its child component was reported already when
         * a key of its own exists (it sorts first); otherwise report the
         * prefix once. Either way, skip the whole subtree. */
        size_t clen = (size_t)(slash - k);
        memcpy(it->pos, k, clen);
        it->pos[clen] = '0';
        it->pos_len = clen + 1;
        it->pos_after = 0;
        if (clen && keyindex_find(db->index, k, clen))
            continue; /* (the empty component of "/x" is no key: not the root) */
        memcpy(it->out, k, clen + 1);
        *key_len = clen + 1;
        if (st)
            prefix_stat(st);
        ret = 1;
        break;
    }
    pthread_rwlock_unlock(&db->state);
    if (ret == 1)
        *key = it->out;
    else
        it->done = 1;
    return ret;
}
