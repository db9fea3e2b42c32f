/*
 * apply.c - what each change does to the state, and what it is refused
 * with. One function per change checks it, then passes the gate, then
 * changes the state. Live, the gate appends the record to the log, so a
 * change is logged only once it is known to apply, and the state is looked
 * up once; checking alone stops at the gate; replay walks through it. Live
 * and replay run the same code and cannot drift apart. Every time a change
 * sets comes from its record, so replay reproduces it exactly.
 */
#include "db_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct object *lookup(mindb *db, const void *key, size_t len)
{
    struct kinode *n = keyindex_find(db->index, key, len);
    return n ? n->obj : NULL;
}

void object_unref(mindb *db, struct object *obj)
{
    if (obj->nlink > 0 || obj->open_count > 0)
        return;
    object_slots_cut(obj, 0, chunk_slot_forget, db);
    objtable_remove(&db->objects, obj);
    object_free(obj);
}

#define GATE_STOP 1

/* Between checking a change and making it. */
static int gate(mindb *db, const struct rec *r, enum apply_mode mode)
{
    if (mode == APPLY_CHECK)
        return GATE_STOP;
    return mode == APPLY_LIVE ? log_append(db, r) : 0;
}

#define GATE(db, r, mode)                                                                          \
    do {                                                                                           \
        int gate_ = gate(db, r, mode);                                                             \
        if (gate_)                                                                                 \
            return gate_ == GATE_STOP ? 0 : gate_;                                                 \
    } while (0)

static int is_dir(const struct object *obj)
{
    return obj && S_ISDIR(obj->mode);
}

struct object *parent_dir(mindb *db, const uint8_t *key, size_t len)
{
    if (len == 0)
        return NULL; /* the root has no parent */
    const uint8_t *slash = memrchr(key, '/', len);
    if (slash == key)
        return NULL; /* "/x": no component before the slash */
    struct object *p = lookup(db, key, slash ? (size_t)(slash - key) : 0);
    return is_dir(p) ? p : NULL;
}

/* An entry appeared in or left the parent: its times change, and its count
 * of subdirectories when the entry is a directory. */
static void parent_changed(mindb *db, const uint8_t *key, size_t len, int64_t t, int dir_delta)
{
    struct object *p = parent_dir(db, key, len);
    if (!p)
        return;
    p->mtime = p->ctime = t;
    p->subdirs = (uint32_t)((int64_t)p->subdirs + dir_delta);
}

/* Whether any key lies under "key/". */
static int has_children(mindb *db, const uint8_t *key, size_t len)
{
    uint8_t buf[MINDB_MAX_KEY + 1];
    memcpy(buf, key, len);
    buf[len] = '/';
    struct kinode *n = keyindex_seek(db->index, buf, len + 1, 0);
    return n && n->len > len && memcmp(kinode_key(n), buf, len + 1) == 0;
}

/* Counts the directories directly under "key/" (for the root, the empty
 * key: the keys without a '/'). A directory may be made after keys below it
 * exist (keys need no parent), or land by a rename where keys already are,
 * and an older store gets its root over all its keys, so the count is taken
 * from the index, not assumed 0. */
static void recount_subdirs(mindb *db, struct object *dir, const uint8_t *key, size_t len)
{
    uint8_t pos[MINDB_MAX_KEY + 2];
    size_t plen = 0; /* the children's prefix: "key/", or nothing for the root */
    if (len) {
        memcpy(pos, key, len);
        pos[len] = '/';
        plen = len + 1;
    }
    uint32_t count = 0;
    /* For the root, from past the empty key itself. */
    struct kinode *n = keyindex_seek(db->index, pos, plen, plen == 0);
    while (n && n->len > plen && memcmp(kinode_key(n), pos, plen) == 0) {
        const uint8_t *k = kinode_key(n);
        const uint8_t *slash = memchr(k + plen, '/', n->len - plen);
        if (!slash) {
            count += is_dir(n->obj);
            n = keyindex_next(n);
            continue;
        }
        /* Skip the subtree below this child. */
        size_t clen = (size_t)(slash - k);
        memcpy(pos, k, clen);
        pos[clen] = '0';
        n = keyindex_seek(db->index, pos, clen + 1, 0);
    }
    dir->subdirs = count;
}

/* `b` lies under `a` ("a/..."). */
static int is_under(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return blen > alen && b[alen] == '/' && memcmp(a, b, alen) == 0;
}

/* Names `obj` by `key`, where keyindex_locate() found it would go (NULL:
 * find it). */
static int bind_key_at(mindb *db, struct ki_where *where, const uint8_t *key, size_t len,
                       struct object *obj, int64_t t)
{
    int err = where ? keyindex_insert_at(db->index, where, key, len, obj)
                    : keyindex_insert(db->index, key, len, obj);
    if (err)
        return err;
    obj->nlink++;
    parent_changed(db, key, len, t, is_dir(obj) ? 1 : 0);
    return 0;
}

static int bind_key(mindb *db, const uint8_t *key, size_t len, struct object *obj, int64_t t)
{
    return bind_key_at(db, NULL, key, len, obj, t);
}

static void unbind_key(mindb *db, const uint8_t *key, size_t len, int64_t t)
{
    struct object *obj = keyindex_remove(db->index, key, len);
    if (!obj)
        return;
    parent_changed(db, key, len, t, is_dir(obj) ? -1 : 0);
    obj->nlink--;
    obj->ctime = t;
    object_unref(db, obj);
}

/* Whether a record may make an object of id `id`. Live, ids come from
 * next_id and always may; a log replayed has them from its records, and
 * an id in use would make two objects of one id, which the next
 * checkpoint writes into a manifest no open accepts. Ids run from 1 to
 * UINT64_MAX - 1, so that next_id never wraps round to 0. */
static int id_unused(mindb *db, uint64_t id)
{
    return id != 0 && id != UINT64_MAX && !objtable_get(&db->objects, id);
}

static struct object *new_object(mindb *db, const struct rec *r, uint32_t mode)
{
    struct object *obj = object_new(r->id, mode, r->uid, r->gid, r->time);
    if (!obj)
        return NULL;
    objtable_put(&db->objects, obj);
    if (r->id >= db->next_id)
        db->next_id = r->id + 1;
    return obj;
}

static int apply_put(mindb *db, const struct rec *r, enum apply_mode mode)
{
    if (r->key_len == 0)
        return -EISDIR; /* the root */
    if (!id_unused(db, r->id))
        return -EINVAL;
    struct ki_where where;
    struct kinode *n = keyindex_locate(db->index, r->key, r->key_len, &where);
    if (n && is_dir(n->obj))
        return -EISDIR;
    GATE(db, r, mode);
    struct object *obj = new_object(db, r, S_IFREG | (r->mode & 07777));
    if (!obj)
        return -ENOMEM;
    int err = 0;
    if (r->type == REC_PUT) {
        err = chunk_write(db, obj, r->data, (size_t)r->data_len, 0);
    } else {
        for (uint32_t i = 0; i < r->n_refs && !err; i++) {
            struct chunk_slot *s = object_slot_add(obj, i);
            if (!s)
                err = -ENOMEM;
            else
                rec_unpack_ref(r->refs + (size_t)i * REC_REF_BYTES, &s->ref);
        }
        obj->size = r->off;
    }
    if (!err && !n)
        err = bind_key_at(db, &where, r->key, r->key_len, obj, r->time);
    if (err) {
        object_unref(db, obj);
        return err;
    }
    if (n) {
        struct object *old = n->obj;
        n->obj = obj;
        obj->nlink = 1;
        old->nlink--;
        old->ctime = r->time;
        object_unref(db, old);
        struct object *p = parent_dir(db, r->key, r->key_len);
        if (p)
            p->mtime = p->ctime = r->time;
    }
    return 0;
}

static int apply_create(mindb *db, const struct rec *r, enum apply_mode mode)
{
    uint32_t type = r->mode & S_IFMT;
    if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK)
        return -EINVAL;
    struct ki_where where;
    if (keyindex_locate(db->index, r->key, r->key_len, &where))
        return -EEXIST;
    if (r->key_len == 0 && type != S_IFDIR)
        return -EINVAL; /* the root, made at open, is a directory */
    if (!id_unused(db, r->id))
        return -EINVAL;
    GATE(db, r, mode);
    struct object *obj = new_object(db, r, r->mode);
    if (!obj)
        return -ENOMEM;
    int err = type == S_IFLNK ? chunk_write(db, obj, r->data, (size_t)r->data_len, 0) : 0;
    if (!err)
        err = bind_key_at(db, &where, r->key, r->key_len, obj, r->time);
    if (err)
        object_unref(db, obj);
    else if (type == S_IFDIR)
        recount_subdirs(db, obj, r->key, r->key_len);
    return err;
}

static int apply_delete(mindb *db, const struct rec *r, enum apply_mode mode)
{
    if (r->key_len == 0)
        return -EBUSY; /* the root, as rmdir("/") */
    struct object *obj = lookup(db, r->key, r->key_len);
    if (!obj)
        return -ENOENT;
    if (is_dir(obj) && has_children(db, r->key, r->key_len))
        return -ENOTEMPTY;
    GATE(db, r, mode);
    unbind_key(db, r->key, r->key_len, r->time);
    return 0;
}

/* The end both links share, once the names are checked: `obj` gets key2. */
static int link_object(mindb *db, const struct rec *r, struct object *obj, enum apply_mode mode)
{
    if (obj->nlink >= UINT32_MAX - 1)
        return -EMLINK;
    GATE(db, r, mode);
    obj->ctime = r->time;
    return bind_key(db, r->key2, r->key2_len, obj, r->time);
}

static int apply_link(mindb *db, const struct rec *r, enum apply_mode mode)
{
    struct object *obj = lookup(db, r->key, r->key_len);
    if (!obj)
        return -ENOENT;
    if (is_dir(obj))
        return -EPERM;
    if (r->key2_len == 0 || lookup(db, r->key2, r->key2_len))
        return -EEXIST; /* the empty key is the root, which always exists */
    return link_object(db, r, obj, mode);
}

/* A new name for an object found by id (through a handle). The errors come
 * in the order linkat(2) gives them: the new name first, then the object: a
 * directory, or one without a name left (ext4 refuses to bring an unlinked
 * file back). */
static int apply_link_id(mindb *db, const struct rec *r, enum apply_mode mode)
{
    struct object *obj = objtable_get(&db->objects, r->id);
    if (!obj)
        return -ENOENT;
    if (r->key2_len == 0 || lookup(db, r->key2, r->key2_len))
        return -EEXIST;
    if (is_dir(obj))
        return -EPERM;
    if (obj->nlink == 0)
        return -ENOENT;
    return link_object(db, r, obj, mode);
}

/* ---- rename ---- */

struct moved_key {
    uint8_t *key;
    size_t len;
    struct object *obj;
};

/* Takes every key under "prefix/" out of the index, into *out. */
static int take_subtree(mindb *db, const uint8_t *prefix, size_t plen, struct moved_key **out,
                        size_t *count)
{
    uint8_t lo[MINDB_MAX_KEY + 1];
    memcpy(lo, prefix, plen);
    lo[plen] = '/';
    size_t n = 0, cap = 0;
    struct moved_key *keys = NULL;
    for (struct kinode *k = keyindex_seek(db->index, lo, plen + 1, 0);
         k && k->len > plen && memcmp(kinode_key(k), lo, plen + 1) == 0; k = keyindex_next(k)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct moved_key *m = realloc(keys, cap * sizeof(*m));
            if (!m)
                goto nomem;
            keys = m;
        }
        keys[n].len = k->len;
        keys[n].obj = k->obj;
        keys[n].key = malloc(k->len);
        if (!keys[n].key)
            goto nomem;
        memcpy(keys[n].key, kinode_key(k), k->len);
        n++;
    }
    for (size_t i = 0; i < n; i++)
        keyindex_remove(db->index, keys[i].key, keys[i].len);
    *out = keys;
    *count = n;
    return 0;
nomem:
    for (size_t i = 0; i < n; i++)
        free(keys[i].key);
    free(keys);
    return -ENOMEM;
}

/* Puts keys taken from under `from` back under `to`. */
static int put_subtree(mindb *db, struct moved_key *keys, size_t count, size_t from_len,
                       const uint8_t *to, size_t to_len)
{
    int err = 0;
    uint8_t buf[2 * MINDB_MAX_KEY];
    for (size_t i = 0; i < count; i++) {
        size_t rest = keys[i].len - from_len;
        memcpy(buf, to, to_len);
        memcpy(buf + to_len, keys[i].key + from_len, rest);
        if (!err)
            err = keyindex_insert(db->index, buf, to_len + rest, keys[i].obj);
        free(keys[i].key);
    }
    free(keys);
    return err;
}

/* The longest key a subtree move would make. */
static int subtree_fits(mindb *db, const uint8_t *from, size_t from_len, size_t to_len)
{
    if (to_len <= from_len)
        return 1;
    uint8_t lo[MINDB_MAX_KEY + 1];
    memcpy(lo, from, from_len);
    lo[from_len] = '/';
    for (struct kinode *k = keyindex_seek(db->index, lo, from_len + 1, 0);
         k && k->len > from_len && memcmp(kinode_key(k), lo, from_len + 1) == 0;
         k = keyindex_next(k))
        if (k->len - from_len + to_len > MINDB_MAX_KEY)
            return 0;
    return 1;
}

static int rename_check(mindb *db, const struct rec *r, struct object *src, struct object *dst)
{
    if (!src)
        return -ENOENT;
    if (r->flags & MINDB_RENAME_EXCHANGE) {
        if (!dst)
            return -ENOENT;
        if (is_under(r->key, r->key_len, r->key2, r->key2_len) ||
            is_under(r->key2, r->key2_len, r->key, r->key_len))
            return -EINVAL;
        if (!subtree_fits(db, r->key, r->key_len, r->key2_len) ||
            !subtree_fits(db, r->key2, r->key2_len, r->key_len))
            return -ENAMETOOLONG;
        return 0;
    }
    if (is_under(r->key, r->key_len, r->key2, r->key2_len))
        return is_dir(src) ? -EINVAL : -ENOTDIR;
    if (dst && (r->flags & MINDB_RENAME_NOREPLACE))
        return -EEXIST;
    if (dst && is_dir(src) && !is_dir(dst))
        return -ENOTDIR;
    if (dst && !is_dir(src) && is_dir(dst))
        return -EISDIR;
    if (dst && is_dir(dst) && dst != src && has_children(db, r->key2, r->key2_len))
        return -ENOTEMPTY;
    if (is_dir(src) && !subtree_fits(db, r->key, r->key_len, r->key2_len))
        return -ENAMETOOLONG;
    return 0;
}

static int apply_rename(mindb *db, const struct rec *r, enum apply_mode mode)
{
    if (r->key_len == 0 || r->key2_len == 0)
        return -EBUSY; /* the root moves nowhere, and nothing replaces it */
    struct kinode *sn = keyindex_find(db->index, r->key, r->key_len);
    struct kinode *dn = keyindex_find(db->index, r->key2, r->key2_len);
    struct object *src = sn ? sn->obj : NULL, *dst = dn ? dn->obj : NULL;
    int err = rename_check(db, r, src, dst);
    if (err)
        return err;
    GATE(db, r, mode);
    /* Renaming a name onto itself, or onto another link of the same object,
     * does nothing (POSIX). */
    if (src == dst && !(r->flags & MINDB_RENAME_EXCHANGE))
        return 0;
    if (sn == dn)
        return 0;
    src->ctime = r->time;
    if (r->flags & MINDB_RENAME_EXCHANGE) {
        dst->ctime = r->time;
        struct moved_key *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (is_dir(src))
            err = take_subtree(db, r->key, r->key_len, &a, &na);
        if (!err && is_dir(dst))
            err = take_subtree(db, r->key2, r->key2_len, &b, &nb);
        sn->obj = dst;
        dn->obj = src;
        int delta = is_dir(src) - is_dir(dst);
        parent_changed(db, r->key, r->key_len, r->time, -delta);
        parent_changed(db, r->key2, r->key2_len, r->time, delta);
        if (a)
            err = put_subtree(db, a, na, r->key_len, r->key2, r->key2_len) ?: err;
        if (b)
            err = put_subtree(db, b, nb, r->key2_len, r->key, r->key_len) ?: err;
        if (is_dir(src))
            recount_subdirs(db, src, r->key2, r->key2_len);
        if (is_dir(dst))
            recount_subdirs(db, dst, r->key, r->key_len);
        return err;
    }
    struct moved_key *sub = NULL;
    size_t nsub = 0;
    if (is_dir(src) && (err = take_subtree(db, r->key, r->key_len, &sub, &nsub)))
        return err;
    if (dst)
        unbind_key(db, r->key2, r->key2_len, r->time);
    keyindex_remove(db->index, r->key, r->key_len);
    parent_changed(db, r->key, r->key_len, r->time, is_dir(src) ? -1 : 0);
    src->nlink--;
    err = bind_key(db, r->key2, r->key2_len, src, r->time);
    if (sub)
        err = put_subtree(db, sub, nsub, r->key_len, r->key2, r->key2_len) ?: err;
    if (is_dir(src))
        recount_subdirs(db, src, r->key2, r->key2_len);
    return err;
}

/* ---- changes to one object ---- */

static int apply_setattr(mindb *db, const struct rec *r, struct object *obj, enum apply_mode mode)
{
    unsigned f = r->fields;
    if ((f & MINDB_SET_SIZE) && is_dir(obj))
        return -EISDIR;
    if ((f & MINDB_SET_SIZE) && r->attr.size > MINDB_MAX_SIZE)
        return -EFBIG;
    GATE(db, r, mode);
    if (f & MINDB_SET_MODE)
        obj->mode = (obj->mode & S_IFMT) | (r->attr.mode & 07777);
    if (f & MINDB_SET_UID)
        obj->uid = r->attr.uid;
    if (f & MINDB_SET_GID)
        obj->gid = r->attr.gid;
    if (f & MINDB_SET_SIZE) {
        int err = chunk_truncate(db, obj, r->attr.size);
        if (err)
            return err;
        obj->mtime = r->time;
    }
    if (f & MINDB_SET_ATIME)
        obj->atime = r->attr.atime_ns;
    if (f & MINDB_SET_MTIME)
        obj->mtime = r->attr.mtime_ns;
    obj->ctime = (f & MINDB_SET_CTIME) ? r->attr.ctime_ns : r->time;
    return 0;
}

static int apply_object(mindb *db, const struct rec *r, enum apply_mode mode)
{
    struct object *obj = objtable_get(&db->objects, r->id);
    if (!obj)
        return -ENOENT;
    switch (r->type) {
    case REC_WRITE:
        if (is_dir(obj))
            return -EISDIR;
        if (r->off > MINDB_MAX_SIZE || r->data_len > MINDB_MAX_SIZE - r->off)
            return -EFBIG;
        GATE(db, r, mode);
        obj->mtime = obj->ctime = r->time;
        return chunk_write(db, obj, r->data, (size_t)r->data_len, r->off);
    case REC_WRITE_REFS: {
        if (is_dir(obj))
            return -EISDIR;
        /* The head ends where the first whole chunk starts; the tail is
         * less than a chunk. */
        if (r->data_len >= CHUNK_BYTES || r->tail_len >= CHUNK_BYTES || r->n_refs == 0 ||
            r->off > MINDB_MAX_SIZE - r->data_len ||
            (r->off + r->data_len) % CHUNK_BYTES != 0)
            return -EINVAL;
        uint64_t first = (r->off + r->data_len) / CHUNK_BYTES;
        uint64_t tail_off = (first + r->n_refs) * CHUNK_BYTES;
        if (first + r->n_refs > MINDB_MAX_SIZE / CHUNK_BYTES ||
            r->tail_len > MINDB_MAX_SIZE - tail_off)
            return -EFBIG;
        for (uint32_t i = 0; i < r->n_refs; i++) {
            struct chunk_ref ref;
            rec_unpack_ref(r->refs + (size_t)i * REC_REF_BYTES, &ref);
            if (ref.seg == 0 || ref.raw_len != CHUNK_BYTES)
                return -EINVAL;
        }
        GATE(db, r, mode);
        obj->mtime = obj->ctime = r->time;
        int err = chunk_write(db, obj, r->data, (size_t)r->data_len, r->off);
        if (!err)
            err = chunk_bind(db, obj, first, r->refs, r->n_refs);
        if (!err)
            err = chunk_write(db, obj, r->tail, (size_t)r->tail_len, tail_off);
        return err;
    }
    case REC_TRUNCATE: {
        struct rec s = *r;
        s.fields = MINDB_SET_SIZE;
        s.attr.size = r->off;
        return apply_setattr(db, &s, obj, mode);
    }
    case REC_SETATTR:
        return apply_setattr(db, r, obj, mode);
    case REC_SETXATTR: {
        struct xattr *x = object_xattr(obj, r->name);
        if (x && (r->flags & MINDB_XATTR_CREATE))
            return -EEXIST;
        if (!x && (r->flags & MINDB_XATTR_REPLACE))
            return -ENODATA;
        GATE(db, r, mode);
        obj->ctime = r->time;
        return object_xattr_set(obj, r->name, r->data, (size_t)r->data_len);
    }
    case REC_RMXATTR:
        if (!object_xattr(obj, r->name))
            return -ENODATA;
        GATE(db, r, mode);
        obj->ctime = r->time;
        return object_xattr_remove(obj, r->name);
    }
    return -EINVAL;
}

int apply_rec(mindb *db, const struct rec *r, enum apply_mode mode)
{
    switch (r->type) {
    case REC_PUT:
    case REC_PUT_REFS:
        return apply_put(db, r, mode);
    case REC_CREATE:
        return apply_create(db, r, mode);
    case REC_DELETE:
        return apply_delete(db, r, mode);
    case REC_RENAME:
        return apply_rename(db, r, mode);
    case REC_LINK:
        return apply_link(db, r, mode);
    case REC_LINK_ID:
        return apply_link_id(db, r, mode);
    default:
        return apply_object(db, r, mode);
    }
}
