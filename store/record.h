/*
 * record.h - the store's log records: one per change, encoded into a WAL
 * record and decoded again for replay. Private to store/.
 *
 * Layout (little-endian): u8 type, u8 flags, u16 zero, i64 time (ns), u64
 * object id, then the fields of the type in the order of struct rec below:
 * keys as u16 length + bytes, values as u64 length + bytes. docs/FORMAT.md
 * lists the fields of each type.
 *
 * Keys are 1 to MINDB_MAX_KEY bytes, but for one record: the creation of
 * the root directory, a REC_CREATE of a directory with the empty key.
 */
#ifndef MINDB_RECORD_H
#define MINDB_RECORD_H

#include "datafile.h"
#include "mindb.h"

#include <stddef.h>
#include <stdint.h>

enum rec_type {
    REC_PUT = 1,       /* key, mode, uid, gid, value: a new object replaces key's */
    REC_PUT_REFS = 2,  /* key, mode, uid, gid, size, refs: the same for a value
                        * already written to data segments */
    REC_CREATE = 3,    /* key, mode, uid, gid, value (symlink target) */
    REC_DELETE = 4,    /* key */
    REC_RENAME = 5,    /* key, key2, flags */
    REC_LINK = 6,      /* key (existing), key2 (new) */
    REC_WRITE = 7,     /* id, off, value */
    REC_TRUNCATE = 8,  /* id, off (new size) */
    REC_SETATTR = 9,   /* id, fields, attr */
    REC_SETXATTR = 10, /* id, flags, name, value */
    REC_RMXATTR = 11,  /* id, name */
    REC_LINK_ID = 12,  /* id, key2 (new): a new name for the object of a handle */
    REC_WRITE_REFS = 13, /* id, off, value (head), refs, tail: a write of
                          * whole chunks already in data segments, with the
                          * bytes before the first and after the last
                          * (store format 3) */
};

struct rec {
    uint8_t type, flags;
    int64_t time;
    uint64_t id;
    const uint8_t *key, *key2;
    size_t key_len, key2_len;
    uint32_t mode, uid, gid, fields;
    uint64_t off;
    struct mindb_attr attr;
    const uint8_t *data; /* value, bytes written, symlink target, xattr value */
    uint64_t data_len;
    const char *name; /* xattr name, NUL-terminated in the record */
    size_t name_len;
    const uint8_t *refs; /* n_refs packed chunk refs (REC_PUT_REFS, REC_WRITE_REFS) */
    uint32_t n_refs;
    const uint8_t *tail; /* bytes written after the refs' chunks (REC_WRITE_REFS) */
    uint64_t tail_len;
};

/* Bytes of one packed chunk ref: u64 off, u32 seg, u32 stored, u32 raw, u8
 * codec. */
#define REC_REF_BYTES 21

void rec_pack_ref(uint8_t *p, const struct chunk_ref *ref);
void rec_unpack_ref(const uint8_t *p, struct chunk_ref *ref);

/* Bytes rec_encode() writes for `r`. */
size_t rec_size(const struct rec *r);
/* Encodes into `buf` (rec_size() bytes). */
void rec_encode(const struct rec *r, uint8_t *buf);
/* Decodes; pointers point into `buf`. -EBADMSG when it does not parse. */
int rec_decode(const void *buf, size_t len, struct rec *r);

const char *rec_type_name(uint8_t type);

#endif /* MINDB_RECORD_H */
