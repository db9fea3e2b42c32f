/*
 * file.c - handles on objects: what the filesystem's open files are. A
 * handle counts in the object's open_count, which keeps the object (and its
 * chunks) alive after its last key is gone, until the handle is closed.
 * Extended attributes through a handle are in xattr.c.
 */
#include "db_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Pieces a large pwrite is logged in: each is one record, and writers wait
 * for memory between them. */
#define WRITE_PIECE ((size_t)1 << 20)

static int file_new(mindb *db, struct object *obj, mindb_file **out)
{
    mindb_file *f = malloc(sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->db = db;
    f->obj = obj;
    f->prev = NULL;
    f->next = db->files;
    if (db->files)
        db->files->prev = f;
    db->files = f;
    obj->open_count++;
    *out = f;
    return 0;
}

/* With the state lock held for writing. */
static void file_release(mindb_file *f)
{
    mindb *db = f->db;
    if (f->prev)
        f->prev->next = f->next;
    else
        db->files = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->obj->open_count--;
    object_unref(db, f->obj);
    free(f);
}

void files_close_all(mindb *db)
{
    pthread_rwlock_wrlock(&db->state);
    while (db->files)
        file_release(db->files);
    pthread_rwlock_unlock(&db->state);
}

int mindb_file_open(mindb *db, const void *key, size_t key_len, unsigned flags, uint32_t mode,
                    mindb_file **out)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    int changes = (flags & (MINDB_OPEN_CREATE | MINDB_OPEN_TRUNC)) != 0;
    if (changes && (err = change_begin(db)))
        return err;
    pthread_rwlock_wrlock(&db->state);
    struct object *obj = lookup(db, key, key_len);
    if (obj && (flags & MINDB_OPEN_CREATE) && (flags & MINDB_OPEN_EXCL))
        err = -EEXIST;
    else if (!obj && !(flags & MINDB_OPEN_CREATE))
        err = -ENOENT;
    else if (obj && (flags & MINDB_OPEN_TRUNC) && S_ISDIR(obj->mode))
        err = -EISDIR;
    else if (key_len == 0 && (flags & MINDB_OPEN_CREATE))
        err = -EISDIR; /* the root, as open("/", O_CREAT) */
    if (!err && !obj) {
        struct rec r = {.type = REC_CREATE,
                        .id = db->next_id,
                        .key = key,
                        .key_len = key_len,
                        .mode = S_IFREG | (mode & 07777),
                        .uid = geteuid(),
                        .gid = getegid()};
        err = log_change(db, &r);
        obj = err ? NULL : lookup(db, key, key_len);
    } else if (!err && (flags & MINDB_OPEN_TRUNC) && obj->size > 0) {
        struct rec r = {.type = REC_TRUNCATE, .id = obj->id, .off = 0};
        err = log_change(db, &r);
    }
    if (!err)
        err = file_new(db, obj, out);
    uint64_t end = atomic_load(&db->last_end);
    pthread_rwlock_unlock(&db->state);
    return changes ? change_end(db, err, end) : err;
}

int mindb_file_open_id(mindb *db, uint64_t id, mindb_file **out)
{
    pthread_rwlock_wrlock(&db->state);
    struct object *obj = objtable_get(&db->objects, id);
    int err = obj ? file_new(db, obj, out) : -ENOENT;
    pthread_rwlock_unlock(&db->state);
    return err;
}

void mindb_file_close(mindb_file *f)
{
    if (!f)
        return;
    mindb *db = f->db;
    pthread_rwlock_wrlock(&db->state);
    file_release(f);
    pthread_rwlock_unlock(&db->state);
}

ssize_t mindb_pread(mindb_file *f, void *buf, size_t len, uint64_t off)
{
    if (len && !buf)
        return -EINVAL;
    pthread_rwlock_rdlock(&f->db->state);
    ssize_t n = S_ISDIR(f->obj->mode) ? -EISDIR : chunk_read(f->db, f->obj, buf, len, off);
    pthread_rwlock_unlock(&f->db->state);
    return n;
}

/* zstd's level for whole chunks while more writers compress them than
 * there are cores: the writers are then waiting for the CPU, and at the
 * store's level (3 by default) compression is what bounds a streaming write
 * (one core compresses fio's half-compressible data at about 140 MB/s at
 * level 3, 630 MB/s at level -1, to the same size). Chunks written then
 * are larger on data that compresses better at higher levels. */
#define BACKLOG_LEVEL (-1)

/* What write_through_segments() returns when a data segment did not take
 * the chunks: nothing was changed. */
#define SEGMENT_APPEND_FAILED 1

/* The whole chunks of a write skip the log and memory, as a large put's
 * do: compressed on the writer's thread and appended to a data segment,
 * then bound to the object by one REC_WRITE_REFS record that also carries
 * the bytes before the first whole chunk and after the last, so that the
 * write stays one change, there or not after a crash. The record is
 * appended with wal_append_after_sync(): the log syncs the data segments
 * before any write that puts it on disk (once for all such records it
 * carries), so recovery never meets a record naming bytes that did not
 * reach the disk, and a write costs no fdatasync of its own. Chunks whose
 * record never came are dead space for compaction.
 *
 * `len` is at most WRITE_PIECE and covers at least one whole chunk.
 * Returns 0, a negative errno, or SEGMENT_APPEND_FAILED. */
static int write_through_segments(mindb_file *f, const uint8_t *buf, size_t len, uint64_t off)
{
    mindb *db = f->db;
    size_t head = (size_t)((CHUNK_BYTES - off % CHUNK_BYTES) % CHUNK_BYTES);
    uint64_t first = (off + head) / CHUNK_BYTES;
    uint32_t n = (uint32_t)((len - head) / CHUNK_BYTES);
    size_t tail = len - head - (size_t)n * CHUNK_BYTES;
    int err = change_begin(db);
    if (err)
        return err;
    pthread_rwlock_wrlock(&db->state);
    if (S_ISDIR(f->obj->mode)) {
        pthread_rwlock_unlock(&db->state);
        return -EISDIR;
    }
    /* Compaction leaves the segments these chunks go to alone until the
     * record names them. */
    if (db->large_puts++ == 0) {
        uint32_t active = datafile_active_segment(db->data);
        db->pin_seg = active ? active : 1;
    }
    pthread_rwlock_unlock(&db->state);

    uint8_t refs[WRITE_PIECE / CHUNK_BYTES * REC_REF_BYTES];
    atomic_fetch_add(&db->chunk_writers, 1);
    for (uint32_t i = 0; i < n && !err; i++) {
        struct chunk_ref ref;
        int level = atomic_load(&db->chunk_writers) > db->cores ? BACKLOG_LEVEL
                                                                 : db->opt.compression_level;
        err = datafile_write_level(db->data, f->obj->id, first + i,
                                   buf + head + i * CHUNK_BYTES, CHUNK_BYTES, level, &ref);
        if (!err)
            rec_pack_ref(refs + (size_t)i * REC_REF_BYTES, &ref);
    }
    atomic_fetch_sub(&db->chunk_writers, 1);
    if (err) {
        /* The caller writes these bytes through the log instead: a full
         * disk then fills the log too before writes fail, so that every
         * fsync after that keeps failing while bytes it would cover are
         * not on disk, as without this path (docs/RELIABILITY.md). */
        pthread_rwlock_wrlock(&db->state);
        db->large_puts--;
        pthread_rwlock_unlock(&db->state);
        return SEGMENT_APPEND_FAILED;
    }

    pthread_rwlock_wrlock(&db->state);
    uint64_t tail_off = (first + n) * CHUNK_BYTES;
    err = chunk_prepare_write(db, f->obj, head, off);
    if (!err)
        err = chunk_prepare_write(db, f->obj, tail, tail_off);
    if (!err) {
        struct rec r = {.type = REC_WRITE_REFS,
                        .id = f->obj->id,
                        .off = off,
                        .time = now_ns(),
                        .data = buf,
                        .data_len = head,
                        .refs = refs,
                        .n_refs = n,
                        .tail = buf + len - tail,
                        .tail_len = tail};
        err = log_change(db, &r);
    }
    db->large_puts--;
    uint64_t end = atomic_load(&db->last_end);
    pthread_rwlock_unlock(&db->state);
    return change_end(db, err, end);
}

static ssize_t write_pieces(mindb_file *f, const uint8_t *buf, size_t len, uint64_t off, int append)
{
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < WRITE_PIECE ? len - done : WRITE_PIECE;
        uint64_t at = off + done;
        uint64_t head = (CHUNK_BYTES - at % CHUNK_BYTES) % CHUNK_BYTES;
        if (!append && f->db->write_refs && n >= head + CHUNK_BYTES) {
            int err = write_through_segments(f, buf + done, n, at);
            if (err < 0)
                return done ? (ssize_t)done : err;
            if (err == 0) {
                done += n;
                continue;
            }
        }
        struct rec r = {.type = REC_WRITE, .data = buf + done, .data_len = n};
        if (append) {
            /* The end is read under the same lock the write is logged in. */
            mindb *db = f->db;
            int err = change_begin(db);
            if (!err) {
                pthread_rwlock_wrlock(&db->state);
                r.id = f->obj->id;
                r.off = f->obj->size;
                r.time = now_ns();
                if (S_ISDIR(f->obj->mode))
                    err = -EISDIR;
                if (!err && r.off > MINDB_MAX_SIZE - n)
                    err = -EFBIG;
                if (!err)
                    err = chunk_prepare_write(db, f->obj, n, r.off);
                if (!err)
                    err = log_change(db, &r);
                uint64_t end = atomic_load(&db->last_end);
                pthread_rwlock_unlock(&db->state);
                err = change_end(db, err, end);
            }
            if (err)
                return done ? (ssize_t)done : err;
        } else {
            r.off = off + done;
            int err = change_object(f->db, NULL, 0, f->obj->id, &r);
            if (err)
                return done ? (ssize_t)done : err;
        }
        done += n;
    }
    return (ssize_t)len;
}

ssize_t mindb_pwrite(mindb_file *f, const void *buf, size_t len, uint64_t off)
{
    if (len && !buf)
        return -EINVAL;
    if (off > MINDB_MAX_SIZE || len > MINDB_MAX_SIZE - off)
        return -EFBIG;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    return write_pieces(f, buf, len, off, 0);
}

ssize_t mindb_append(mindb_file *f, const void *buf, size_t len)
{
    if (len && !buf)
        return -EINVAL;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    return write_pieces(f, buf, len, 0, 1);
}

int mindb_truncate(mindb_file *f, uint64_t size)
{
    if (size > MINDB_MAX_SIZE)
        return -EFBIG;
    struct rec r = {.type = REC_TRUNCATE, .off = size};
    return change_object(f->db, NULL, 0, f->obj->id, &r);
}

int mindb_fstat(mindb_file *f, struct mindb_stat *st)
{
    pthread_rwlock_rdlock(&f->db->state);
    stat_fill(f->obj, st);
    pthread_rwlock_unlock(&f->db->state);
    return 0;
}

int mindb_fsetattr(mindb_file *f, const struct mindb_attr *attr, unsigned fields)
{
    struct rec r = {.type = REC_SETATTR, .fields = fields, .attr = *attr};
    return change_object(f->db, NULL, 0, f->obj->id, &r);
}

int mindb_fsync(mindb_file *f)
{
    mindb *db = f->db;
    pthread_rwlock_rdlock(&db->state);
    uint64_t end = f->obj->last_end;
    pthread_rwlock_unlock(&db->state);
    if (db->opt.read_only || end == 0)
        return 0;
    atomic_fetch_add(&db->commits, 1);
    return wal_commit_to(db->log, end);
}

int mindb_file_link(mindb_file *f, const void *new_key, size_t new_len)
{
    int err = check_key(&new_key, new_len);
    if (err)
        return err;
    struct rec r = {.type = REC_LINK_ID, .id = f->obj->id, .key2 = new_key, .key2_len = new_len};
    return run_change(f->db, &r);
}
