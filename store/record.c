/*
 * record.c - encoding and decoding of the store's log records.
 */
#include "record.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

struct cursor {
    uint8_t *w;       /* encoding */
    const uint8_t *r; /* decoding */
    size_t left;
    int bad;
};

static void put_u8(struct cursor *c, uint8_t v)
{
    *c->w++ = v;
}
static void put_u16(struct cursor *c, uint16_t v)
{
    memcpy(c->w, &v, 2);
    c->w += 2;
}
static void put_u32(struct cursor *c, uint32_t v)
{
    memcpy(c->w, &v, 4);
    c->w += 4;
}
static void put_u64(struct cursor *c, uint64_t v)
{
    memcpy(c->w, &v, 8);
    c->w += 8;
}
static void put_bytes(struct cursor *c, const void *p, size_t n)
{
    if (n)
        memcpy(c->w, p, n);
    c->w += n;
}

static const uint8_t *take(struct cursor *c, size_t n)
{
    if (c->bad || n > c->left) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *p = c->r;
    c->r += n;
    c->left -= n;
    return p;
}
static uint8_t get_u8(struct cursor *c)
{
    const uint8_t *p = take(c, 1);
    return p ? *p : 0;
}
static uint16_t get_u16(struct cursor *c)
{
    uint16_t v = 0;
    const uint8_t *p = take(c, 2);
    if (p)
        memcpy(&v, p, 2);
    return v;
}
static uint32_t get_u32(struct cursor *c)
{
    uint32_t v = 0;
    const uint8_t *p = take(c, 4);
    if (p)
        memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(struct cursor *c)
{
    uint64_t v = 0;
    const uint8_t *p = take(c, 8);
    if (p)
        memcpy(&v, p, 8);
    return v;
}

void rec_pack_ref(uint8_t *p, const struct chunk_ref *ref)
{
    struct cursor c = {.w = p};
    put_u64(&c, ref->off);
    put_u32(&c, ref->seg);
    put_u32(&c, ref->stored_len);
    put_u32(&c, ref->raw_len);
    put_u8(&c, ref->codec);
}

void rec_unpack_ref(const uint8_t *p, struct chunk_ref *ref)
{
    struct cursor c = {.r = p, .left = REC_REF_BYTES};
    ref->off = get_u64(&c);
    ref->seg = get_u32(&c);
    ref->stored_len = get_u32(&c);
    ref->raw_len = get_u32(&c);
    ref->codec = get_u8(&c);
}

/* Which fields each type carries. */
enum {
    F_KEY = 1 << 0,
    F_KEY2 = 1 << 1,
    F_OWNER = 1 << 2, /* mode, uid, gid */
    F_OFF = 1 << 3,
    F_DATA = 1 << 4,
    F_ATTR = 1 << 5,
    F_NAME = 1 << 6,
    F_REFS = 1 << 7,
    F_TAIL = 1 << 8,
};

static unsigned type_fields(uint8_t type)
{
    switch (type) {
    case REC_PUT:
        return F_KEY | F_OWNER | F_DATA;
    case REC_PUT_REFS:
        return F_KEY | F_OWNER | F_OFF | F_REFS;
    case REC_CREATE:
        return F_KEY | F_OWNER | F_DATA;
    case REC_DELETE:
        return F_KEY;
    case REC_RENAME:
    case REC_LINK:
        return F_KEY | F_KEY2;
    case REC_LINK_ID:
        return F_KEY2;
    case REC_WRITE:
        return F_OFF | F_DATA;
    case REC_WRITE_REFS:
        return F_OFF | F_DATA | F_REFS | F_TAIL;
    case REC_TRUNCATE:
        return F_OFF;
    case REC_SETATTR:
        return F_ATTR;
    case REC_SETXATTR:
        return F_NAME | F_DATA;
    case REC_RMXATTR:
        return F_NAME;
    default:
        return 0;
    }
}

size_t rec_size(const struct rec *r)
{
    unsigned f = type_fields(r->type);
    size_t n = 20;
    if (f & F_KEY)
        n += 2 + r->key_len;
    if (f & F_KEY2)
        n += 2 + r->key2_len;
    if (f & F_OWNER)
        n += 12;
    if (f & F_OFF)
        n += 8;
    if (f & F_ATTR)
        n += 4 + 12 + 8 + 24;
    if (f & F_NAME)
        n += 2 + r->name_len + 1;
    if (f & F_DATA)
        n += 8 + r->data_len;
    if (f & F_REFS)
        n += 4 + (size_t)r->n_refs * REC_REF_BYTES;
    if (f & F_TAIL)
        n += 8 + r->tail_len;
    return n;
}

void rec_encode(const struct rec *r, uint8_t *buf)
{
    unsigned f = type_fields(r->type);
    struct cursor c = {.w = buf};
    put_u8(&c, r->type);
    put_u8(&c, r->flags);
    put_u16(&c, 0);
    put_u64(&c, (uint64_t)r->time);
    put_u64(&c, r->id);
    if (f & F_KEY) {
        put_u16(&c, (uint16_t)r->key_len);
        put_bytes(&c, r->key, r->key_len);
    }
    if (f & F_KEY2) {
        put_u16(&c, (uint16_t)r->key2_len);
        put_bytes(&c, r->key2, r->key2_len);
    }
    if (f & F_OWNER) {
        put_u32(&c, r->mode);
        put_u32(&c, r->uid);
        put_u32(&c, r->gid);
    }
    if (f & F_OFF)
        put_u64(&c, r->off);
    if (f & F_ATTR) {
        put_u32(&c, r->fields);
        put_u32(&c, r->attr.mode);
        put_u32(&c, r->attr.uid);
        put_u32(&c, r->attr.gid);
        put_u64(&c, r->attr.size);
        put_u64(&c, (uint64_t)r->attr.atime_ns);
        put_u64(&c, (uint64_t)r->attr.mtime_ns);
        put_u64(&c, (uint64_t)r->attr.ctime_ns);
    }
    if (f & F_NAME) {
        put_u16(&c, (uint16_t)r->name_len);
        put_bytes(&c, r->name, r->name_len);
        put_u8(&c, 0);
    }
    if (f & F_DATA) {
        put_u64(&c, r->data_len);
        put_bytes(&c, r->data, r->data_len);
    }
    if (f & F_REFS) {
        put_u32(&c, r->n_refs);
        put_bytes(&c, r->refs, (size_t)r->n_refs * REC_REF_BYTES);
    }
    if (f & F_TAIL) {
        put_u64(&c, r->tail_len);
        put_bytes(&c, r->tail, r->tail_len);
    }
}

int rec_decode(const void *buf, size_t len, struct rec *r)
{
    struct cursor c = {.r = buf, .left = len};
    memset(r, 0, sizeof(*r));
    r->type = get_u8(&c);
    r->flags = get_u8(&c);
    (void)get_u16(&c);
    r->time = (int64_t)get_u64(&c);
    r->id = get_u64(&c);
    unsigned f = type_fields(r->type);
    if (!f)
        return -EBADMSG;
    if (f & F_KEY) {
        r->key_len = get_u16(&c);
        r->key = take(&c, r->key_len);
    }
    if (f & F_KEY2) {
        r->key2_len = get_u16(&c);
        r->key2 = take(&c, r->key2_len);
    }
    if (f & F_OWNER) {
        r->mode = get_u32(&c);
        r->uid = get_u32(&c);
        r->gid = get_u32(&c);
    }
    if (f & F_OFF)
        r->off = get_u64(&c);
    if (f & F_ATTR) {
        r->fields = get_u32(&c);
        r->attr.mode = get_u32(&c);
        r->attr.uid = get_u32(&c);
        r->attr.gid = get_u32(&c);
        r->attr.size = get_u64(&c);
        r->attr.atime_ns = (int64_t)get_u64(&c);
        r->attr.mtime_ns = (int64_t)get_u64(&c);
        r->attr.ctime_ns = (int64_t)get_u64(&c);
    }
    if (f & F_NAME) {
        r->name_len = get_u16(&c);
        r->name = (const char *)take(&c, r->name_len + 1);
        if (r->name && r->name[r->name_len] != 0)
            return -EBADMSG;
    }
    if (f & F_DATA) {
        r->data_len = get_u64(&c);
        if (r->data_len > c.left)
            return -EBADMSG;
        r->data = take(&c, (size_t)r->data_len);
    }
    if (f & F_REFS) {
        r->n_refs = get_u32(&c);
        if ((uint64_t)r->n_refs * REC_REF_BYTES > c.left)
            return -EBADMSG;
        r->refs = take(&c, (size_t)r->n_refs * REC_REF_BYTES);
    }
    if (f & F_TAIL) {
        r->tail_len = get_u64(&c);
        if (r->tail_len > c.left)
            return -EBADMSG;
        r->tail = take(&c, (size_t)r->tail_len);
    }
    if (c.bad || c.left != 0)
        return -EBADMSG;
    /* The empty key is the root, which only a directory's creation names. */
    int root = r->type == REC_CREATE && (r->mode & S_IFMT) == S_IFDIR;
    if ((f & F_KEY) && ((r->key_len == 0 && !root) || r->key_len > MINDB_MAX_KEY))
        return -EBADMSG;
    if ((f & F_KEY2) && (r->key2_len == 0 || r->key2_len > MINDB_MAX_KEY))
        return -EBADMSG;
    return 0;
}

const char *rec_type_name(uint8_t type)
{
    static const char *const names[] = {
        [REC_PUT] = "put",           [REC_PUT_REFS] = "put-refs", [REC_CREATE] = "create",
        [REC_DELETE] = "delete",     [REC_RENAME] = "rename",     [REC_LINK] = "link",
        [REC_WRITE] = "write",       [REC_TRUNCATE] = "truncate", [REC_SETATTR] = "setattr",
        [REC_SETXATTR] = "setxattr", [REC_RMXATTR] = "rmxattr",   [REC_LINK_ID] = "link-id",
        [REC_WRITE_REFS] = "write-refs",
    };
    if (type < sizeof(names) / sizeof(names[0]) && names[type])
        return names[type];
    return "unknown";
}
