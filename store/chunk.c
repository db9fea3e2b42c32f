/*
 * chunk.c - a value as chunks of CHUNK_BYTES: reading through the three
 * places a chunk's newest bytes may be (dirty buffer, frozen buffer, data
 * segment), and writing into dirty buffers.
 *
 * Chunk i holds bytes [i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES) of the value;
 * its valid length may be shorter (a small value, or a value extended by
 * truncate), and what lies between the valid length and the value's size
 * reads as zeros. A missing chunk is a hole.
 *
 * Dirty buffers start at the size a write needs and grow, so a store of many
 * small values does not spend a whole chunk of memory on each.
 */
#include "db_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A chunk that does not read back: where it is, so a person can look. The
 * data segment layer answers -EIO both for a record that fails its checks
 * and for a read the disk failed, so the line names both. */
static void log_chunk_error(mindb *db, const struct object *obj, uint64_t index,
                            const struct chunk_ref *ref, int err)
{
    db_log(db, "data segment %08x offset %llu (object %llu, bytes from %llu): %s", ref->seg,
           (unsigned long long)ref->off, (unsigned long long)obj->id,
           (unsigned long long)(index * CHUNK_BYTES),
           err == -EIO ? "read error, or checksum or format mismatch" : mindb_strerror(err));
}

static uint32_t slot_valid_len(const struct chunk_slot *s)
{
    if (s->dirty)
        return s->dirty_len;
    if (s->frozen)
        return s->frozen_len;
    return s->ref.seg ? s->ref.raw_len : 0;
}

void chunk_slot_forget(void *ctx, struct object *obj, struct chunk_slot *slot)
{
    mindb *db = ctx;
    (void)obj;
    if (slot->dirty) {
        db->dirty_bytes -= slot->dirty_cap;
        free(slot->dirty);
        slot->dirty = NULL;
    }
    slot->frozen = NULL; /* the checkpoint owns it */
}

uint64_t object_disk_bytes(const struct object *obj)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < obj->n_slots; i++) {
        const struct chunk_slot *s = &obj->slots[i];
        if (s->dirty)
            n += s->dirty_len;
        else if (s->frozen)
            n += s->frozen_len;
        else if (s->ref.seg)
            /* A shared record counts in full for each object, as a copy
             * would: an object of many bytes and no blocks looks sparse. The
             * store's total counts it once. */
            n += chunk_ref_record_bytes(&s->ref);
    }
    return n;
}

int chunk_make_dirty(mindb *db, struct object *obj, uint64_t index, uint32_t need,
                     struct chunk_slot **out)
{
    struct chunk_slot *s = object_slot_add(obj, index);
    if (!s)
        return -ENOMEM;
    uint32_t valid = slot_valid_len(s);
    if (need < valid)
        need = valid;
    if (s->dirty && s->dirty_cap >= need) {
        *out = s;
        return 0;
    }
    uint32_t cap = s->dirty ? s->dirty_cap * 2 : need;
    if (cap < need)
        cap = need;
    if (cap > CHUNK_BYTES)
        cap = CHUNK_BYTES;
    if (cap == 0)
        cap = 64;
    if (s->dirty) {
        uint8_t *p = realloc(s->dirty, cap);
        if (!p)
            return -ENOMEM;
        db->dirty_bytes += cap - s->dirty_cap;
        s->dirty = p;
        s->dirty_cap = cap;
        *out = s;
        return 0;
    }
    uint8_t *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    if (s->frozen) {
        memcpy(p, s->frozen, s->frozen_len);
    } else if (s->ref.seg) {
        int err = datafile_read(db->data, obj->id, index, &s->ref, p);
        if (err) {
            free(p);
            log_chunk_error(db, obj, index, &s->ref, err);
            return err;
        }
    }
    s->dirty = p;
    s->dirty_cap = cap;
    s->dirty_len = valid;
    db->dirty_bytes += cap;
    *out = s;
    return 0;
}

int chunk_prepare_write(mindb *db, struct object *obj, size_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    uint64_t first = off / CHUNK_BYTES, last = (off + len - 1) / CHUNK_BYTES;
    for (uint64_t i = first; i <= last; i++) {
        uint64_t start = i * CHUNK_BYTES;
        uint64_t end = off + len < start + CHUNK_BYTES ? off + len : start + CHUNK_BYTES;
        struct chunk_slot *s;
        int err = chunk_make_dirty(db, obj, i, (uint32_t)(end - start), &s);
        if (err)
            return err;
    }
    return 0;
}

int chunk_write(mindb *db, struct object *obj, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        uint64_t index = off / CHUNK_BYTES;
        uint32_t at = (uint32_t)(off % CHUNK_BYTES);
        uint32_t n = (uint32_t)(CHUNK_BYTES - at < len ? CHUNK_BYTES - at : len);
        struct chunk_slot *s;
        int err = chunk_make_dirty(db, obj, index, at + n, &s);
        if (err)
            return err;
        if (at > s->dirty_len)
            memset(s->dirty + s->dirty_len, 0, at - s->dirty_len);
        memcpy(s->dirty + at, buf, n);
        if (at + n > s->dirty_len)
            s->dirty_len = at + n;
        buf += n;
        off += n;
        len -= n;
    }
    if (off > obj->size)
        obj->size = off;
    return 0;
}

int chunk_bind(mindb *db, struct object *obj, uint64_t first, const uint8_t *refs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct chunk_slot *s = object_slot_add(obj, first + i);
        if (!s)
            return -ENOMEM;
        /* The ref holds the whole chunk: what memory held is superseded. */
        chunk_slot_forget(db, obj, s);
        rec_unpack_ref(refs + (size_t)i * REC_REF_BYTES, &s->ref);
    }
    uint64_t end = (first + n) * CHUNK_BYTES;
    if (n && end > obj->size)
        obj->size = end;
    return 0;
}

int chunk_prepare_truncate(mindb *db, struct object *obj, uint64_t size)
{
    if (size >= obj->size || size % CHUNK_BYTES == 0)
        return 0;
    uint64_t index = size / CHUNK_BYTES;
    struct chunk_slot *s = object_slot(obj, index);
    if (!s || slot_valid_len(s) <= size % CHUNK_BYTES)
        return 0;
    return chunk_make_dirty(db, obj, index, 0, &s);
}

int chunk_truncate(mindb *db, struct object *obj, uint64_t size)
{
    if (size < obj->size) {
        uint64_t keep = (size + CHUNK_BYTES - 1) / CHUNK_BYTES;
        object_slots_cut(obj, keep, chunk_slot_forget, db);
        uint32_t tail = (uint32_t)(size % CHUNK_BYTES);
        struct chunk_slot *s = tail ? object_slot(obj, size / CHUNK_BYTES) : NULL;
        if (s && slot_valid_len(s) > tail) {
            int err = chunk_make_dirty(db, obj, size / CHUNK_BYTES, 0, &s);
            if (err)
                return err;
            s->dirty_len = tail;
        }
    }
    obj->size = size;
    return 0;
}

ssize_t chunk_read(mindb *db, struct object *obj, void *buf, size_t len, uint64_t off)
{
    if (off >= obj->size)
        return 0;
    if (len > obj->size - off)
        len = (size_t)(obj->size - off);
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    uint8_t *out = buf;
    uint8_t *scratch = NULL;
    size_t done = 0;
    while (done < len) {
        uint64_t pos = off + done;
        uint64_t index = pos / CHUNK_BYTES;
        uint32_t at = (uint32_t)(pos % CHUNK_BYTES);
        size_t n = CHUNK_BYTES - at < len - done ? CHUNK_BYTES - at : len - done;
        const struct chunk_slot *s = object_slot(obj, index);
        const uint8_t *src = NULL;
        uint32_t valid = 0;
        if (s && s->dirty) {
            src = s->dirty;
            valid = s->dirty_len;
        } else if (s && s->frozen) {
            src = s->frozen;
            valid = s->frozen_len;
        } else if (s && s->ref.seg) {
            valid = s->ref.raw_len;
            if (at == 0 && n >= valid) {
                /* The whole chunk is wanted: decompress straight into place. */
                int err = datafile_read(db->data, obj->id, index, &s->ref, out + done);
                if (err) {
                    free(scratch);
                    log_chunk_error(db, obj, index, &s->ref, err);
                    return err;
                }
                memset(out + done + valid, 0, n - valid);
                done += n;
                continue;
            }
            if (!scratch && !(scratch = malloc(CHUNK_BYTES)))
                return -ENOMEM;
            int err = datafile_read(db->data, obj->id, index, &s->ref, scratch);
            if (err) {
                free(scratch);
                log_chunk_error(db, obj, index, &s->ref, err);
                return err;
            }
            src = scratch;
        }
        size_t have = at < valid ? valid - at : 0;
        if (have > n)
            have = n;
        if (have)
            memcpy(out + done, src + at, have);
        memset(out + done + have, 0, n - have);
        done += n;
    }
    free(scratch);
    return (ssize_t)len;
}
