/*
 * ops.c - the changes of the public API on keys: each is checked, logged
 * and applied under the state lock (see apply.c for what they do), and the
 * read-only calls on keys.
 *
 * A put larger than LARGE_PUT_BYTES does not go through the log: its chunks
 * are written to data segments and made durable first, then one small
 * record binds them to the key. That keeps a put of several GiB atomic
 * (the record is there or not) without holding the value in memory or
 * writing it twice.
 */
#include "db_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int check_key(const void **key, size_t len)
{
    if (len > MINDB_MAX_KEY)
        return -ENAMETOOLONG;
    if (!*key) {
        if (len)
            return -EINVAL;
        *key = ""; /* the root, given as NULL */
    }
    return 0;
}

int change_begin(mindb *db)
{
    if (db->opt.read_only)
        return -EROFS;
    if (db->broken)
        return -EIO;
    if (db->dirty_bytes > db->opt.dirty_bytes)
        background_wait_memory(db);
    return 0;
}

int change_end(mindb *db, int err, uint64_t end)
{
    if (err)
        return err;
    background_poke(db);
    if (db->opt.sync_writes && end) {
        atomic_fetch_add(&db->commits, 1);
        return wal_commit_to(db->log, end);
    }
    return 0;
}

int log_append(mindb *db, const struct rec *r)
{
    size_t n = rec_size(r);
    if (n > db->enc_cap) {
        size_t cap = n < 65536 ? 65536 : n;
        uint8_t *p = realloc(db->enc, cap);
        if (!p)
            return -ENOMEM;
        db->enc = p;
        db->enc_cap = cap;
    }
    rec_encode(r, db->enc);
    struct wal_ticket t;
    int err = r->type == REC_WRITE_REFS ? wal_append_after_sync(db->log, db->enc, n, &t)
                                        : wal_append(db->log, db->enc, n, &t);
    if (err)
        return err;
    db->logged = 1;
    db->logged_end = t.end;
    return 0;
}

int log_change(mindb *db, struct rec *r)
{
    if (db->broken)
        return -EIO;
    if (!r->time)
        r->time = now_ns();
    db->logged = 0;
    db->change_seq++;
    int err = apply_rec(db, r, APPLY_LIVE);
    if (err && db->logged) {
        /* Logged but not applied: memory and log disagree until a reopen
         * replays the log. */
        db->broken = err;
        db_log(db, "a change was logged but could not be applied (%s); reopen the store",
               mindb_strerror(err));
    }
    if (err)
        return err;
    atomic_store(&db->last_end, db->logged_end);
    struct object *obj = r->id ? objtable_get(&db->objects, r->id) : NULL;
    if (obj)
        obj->last_end = db->logged_end;
    return 0;
}

int run_change(mindb *db, struct rec *r)
{
    int err = change_begin(db);
    if (err)
        return err;
    pthread_rwlock_wrlock(&db->state);
    if (r->key && !r->id && r->type != REC_PUT && r->type != REC_CREATE) {
        struct object *obj = lookup(db, r->key, r->key_len);
        r->id = obj ? obj->id : 0;
    }
    if (r->type == REC_PUT || r->type == REC_CREATE)
        r->id = db->next_id;
    err = log_change(db, r);
    uint64_t end = atomic_load(&db->last_end);
    pthread_rwlock_unlock(&db->state);
    return change_end(db, err, end);
}

static int put_large(mindb *db, const void *key, size_t key_len, const void *value, size_t len)
{
    int err = change_begin(db);
    if (err)
        return err;
    uint64_t n_refs = (len + CHUNK_BYTES - 1) / CHUNK_BYTES;
    uint8_t *refs = malloc(n_refs * REC_REF_BYTES);
    if (!refs)
        return -ENOMEM;
    pthread_rwlock_wrlock(&db->state);
    struct object *old = lookup(db, key, key_len);
    if (old && S_ISDIR(old->mode)) {
        pthread_rwlock_unlock(&db->state);
        free(refs);
        return -EISDIR;
    }
    uint64_t id = db->next_id++;
    if (db->large_puts++ == 0) {
        uint32_t active = datafile_active_segment(db->data);
        db->pin_seg = active ? active : 1;
    }
    pthread_rwlock_unlock(&db->state);

    for (uint64_t i = 0; i < n_refs && !err; i++) {
        size_t n = len - i * CHUNK_BYTES < CHUNK_BYTES ? len - i * CHUNK_BYTES : CHUNK_BYTES;
        struct chunk_ref ref;
        err = datafile_write(db->data, id, i, (const uint8_t *)value + i * CHUNK_BYTES, n, &ref);
        if (!err)
            rec_pack_ref(refs + i * REC_REF_BYTES, &ref);
    }
    /* The chunks must be durable before a record that names them can be. */
    if (!err)
        err = datafile_sync(db->data);

    pthread_rwlock_wrlock(&db->state);
    if (!err) {
        struct rec r = {.type = REC_PUT_REFS,
                        .id = id,
                        .key = key,
                        .key_len = key_len,
                        .mode = S_IFREG | 0644,
                        .uid = geteuid(),
                        .gid = getegid(),
                        .off = len,
                        .refs = refs,
                        .n_refs = (uint32_t)n_refs};
        err = log_change(db, &r);
    }
    db->large_puts--;
    uint64_t end = atomic_load(&db->last_end);
    pthread_rwlock_unlock(&db->state);
    free(refs);
    return change_end(db, err, end);
}

int mindb_put(mindb *db, const void *key, size_t key_len, const void *value, size_t len)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    if (len && !value)
        return -EINVAL;
    if (len >= LARGE_PUT_BYTES)
        return put_large(db, key, key_len, value, len);
    struct rec r = {.type = REC_PUT,
                    .key = key,
                    .key_len = key_len,
                    .mode = S_IFREG | 0644,
                    .uid = geteuid(),
                    .gid = getegid(),
                    .data = value,
                    .data_len = len};
    return run_change(db, &r);
}

int mindb_get(mindb *db, const void *key, size_t key_len, void **value, size_t *len)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    pthread_rwlock_rdlock(&db->state);
    struct object *obj = lookup(db, key, key_len);
    if (!obj)
        err = -ENOENT;
    else if (S_ISDIR(obj->mode))
        err = -EISDIR;
    else if (obj->size > SIZE_MAX / 2)
        err = -EFBIG;
    void *buf = NULL;
    if (!err) {
        buf = malloc(obj->size ? (size_t)obj->size : 1);
        if (!buf)
            err = -ENOMEM;
    }
    ssize_t n = 0;
    if (!err && (n = chunk_read(db, obj, buf, (size_t)obj->size, 0)) < 0)
        err = (int)n;
    pthread_rwlock_unlock(&db->state);
    if (err) {
        free(buf);
        return err;
    }
    *value = buf;
    *len = (size_t)n;
    return 0;
}

int mindb_delete(mindb *db, const void *key, size_t key_len)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    struct rec r = {.type = REC_DELETE, .key = key, .key_len = key_len};
    return run_change(db, &r);
}

int mindb_create(mindb *db, const void *key, size_t key_len, uint32_t mode, uint32_t uid,
                 uint32_t gid, const void *target, size_t target_len)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    uint32_t type = mode & S_IFMT;
    if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK)
        return -EINVAL;
    if (type == S_IFLNK) {
        if (!target || target_len == 0)
            return -ENOENT;
        if (target_len >= 4096)
            return -ENAMETOOLONG;
    } else {
        target_len = 0;
    }
    struct rec r = {.type = REC_CREATE,
                    .key = key,
                    .key_len = key_len,
                    .mode = mode,
                    .uid = uid,
                    .gid = gid,
                    .data = target,
                    .data_len = target_len};
    return run_change(db, &r);
}

int mindb_rename(mindb *db, const void *from, size_t from_len, const void *to, size_t to_len,
                 unsigned flags)
{
    int err = check_key(&from, from_len);
    if (!err)
        err = check_key(&to, to_len);
    if (err)
        return err;
    if ((flags & ~(unsigned)(MINDB_RENAME_NOREPLACE | MINDB_RENAME_EXCHANGE)) ||
        ((flags & MINDB_RENAME_NOREPLACE) && (flags & MINDB_RENAME_EXCHANGE)))
        return -EINVAL;
    struct rec r = {.type = REC_RENAME,
                    .flags = (uint8_t)flags,
                    .key = from,
                    .key_len = from_len,
                    .key2 = to,
                    .key2_len = to_len};
    return run_change(db, &r);
}

int mindb_link(mindb *db, const void *key, size_t key_len, const void *new_key, size_t new_len)
{
    int err = check_key(&key, key_len);
    if (!err)
        err = check_key(&new_key, new_len);
    if (err)
        return err;
    struct rec r = {
        .type = REC_LINK, .key = key, .key_len = key_len, .key2 = new_key, .key2_len = new_len};
    return run_change(db, &r);
}

void stat_fill(const struct object *obj, struct mindb_stat *st)
{
    st->id = obj->id;
    st->mode = obj->mode;
    st->uid = obj->uid;
    st->gid = obj->gid;
    /* A directory removed while open (rmdir, or replaced by a rename) has
     * no link left, as on ext4. */
    st->nlink = !S_ISDIR(obj->mode) ? obj->nlink : obj->nlink ? 2 + obj->subdirs : 0;
    st->size = obj->size;
    st->disk_bytes = object_disk_bytes(obj);
    st->atime_ns = obj->atime;
    st->mtime_ns = obj->mtime;
    st->ctime_ns = obj->ctime;
}

int mindb_stat(mindb *db, const void *key, size_t key_len, struct mindb_stat *st)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    pthread_rwlock_rdlock(&db->state);
    struct object *obj = lookup(db, key, key_len);
    if (obj)
        stat_fill(obj, st);
    pthread_rwlock_unlock(&db->state);
    return obj ? 0 : -ENOENT;
}

/* Logs a change to one object, found by key or (key NULL) by id. */
int change_object(mindb *db, const void *key, size_t key_len, uint64_t id, struct rec *r)
{
    int err = change_begin(db);
    if (err)
        return err;
    pthread_rwlock_wrlock(&db->state);
    struct object *obj = key ? lookup(db, key, key_len) : objtable_get(&db->objects, id);
    if (!obj)
        err = -ENOENT;
    if (!err) {
        r->id = obj->id;
        r->time = now_ns();
        if (r->type == REC_SETATTR) {
            if (r->attr.atime_ns == MINDB_TIME_NOW)
                r->attr.atime_ns = r->time;
            if (r->attr.mtime_ns == MINDB_TIME_NOW)
                r->attr.mtime_ns = r->time;
            if (r->attr.ctime_ns == MINDB_TIME_NOW)
                r->attr.ctime_ns = r->time;
        }
        uint64_t size = r->type == REC_TRUNCATE ? r->off : r->attr.size;
        int sizing =
            r->type == REC_TRUNCATE || (r->type == REC_SETATTR && (r->fields & MINDB_SET_SIZE));
        if (sizing && size <= MINDB_MAX_SIZE && !S_ISDIR(obj->mode))
            err = chunk_prepare_truncate(db, obj, size);
        if (r->type == REC_WRITE && !S_ISDIR(obj->mode) && r->off <= MINDB_MAX_SIZE &&
            r->data_len <= MINDB_MAX_SIZE - r->off)
            err = chunk_prepare_write(db, obj, (size_t)r->data_len, r->off);
    }
    if (!err)
        err = log_change(db, r);
    uint64_t end = atomic_load(&db->last_end);
    pthread_rwlock_unlock(&db->state);
    return change_end(db, err, end);
}

int mindb_setattr(mindb *db, const void *key, size_t key_len, const struct mindb_attr *attr,
                  unsigned fields)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    struct rec r = {.type = REC_SETATTR, .fields = fields, .attr = *attr};
    return change_object(db, key, key_len, 0, &r);
}
