/*
 * manifest.c - the checkpoint of the state: every object with its metadata,
 * xattrs and chunk refs, and every key, as of one log position. Opening a
 * store loads the newest manifest and replays the log from its position.
 *
 * File "manifest.SEQ" (SEQ: 16 hex digits, one more per checkpoint), all
 * integers little-endian:
 *
 *   header, 64 bytes:
 *     0  "MINDBMAN"
 *     8  u32 format version (1)      12 u32 flags (0)
 *     16 u64 seq                     24 u64 log position replay starts at
 *     32 u64 next object id          40 u64 objects that follow
 *     48 u64 keys that follow        56 u64 bytes of the body below
 *   the body, as one zstd frame (level 1: the manifest is rewritten at
 *   every checkpoint; metadata compresses about 3x even so):
 *   objects, each (those that one key names first, in the order of their
 *   keys, which loads fastest; a reader takes any order):
 *     u64 id, u32 mode, u32 uid, u32 gid, u32 xattr count, u64 size,
 *     i64 atime, i64 mtime, i64 ctime (ns), u32 chunk count,
 *     xattrs: u16 name length, name, u32 value length, value,
 *     chunks: u64 index, then a chunk ref (u64 offset, u32 segment, u32
 *     stored length, u32 raw length, u8 codec)
 *   keys, in order, each: u16 length, key bytes, u64 object id (the first
 *   is the root directory, of length 0; older stores lack it, and get it
 *   at their next open)
 *   trailer: u64 XXH3-64 of every byte of the file before it.
 *
 * The switch is atomic: written to manifest.tmp, fsynced, renamed, and the
 * directory fsynced. The manifest before the newest is kept (with the log
 * since its position) so that a damaged newest one can be passed over.
 */
#include "db_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define MANIFEST_MAGIC "MINDBMAN"
#define MANIFEST_VERSION 1
#define MANIFEST_HEADER 64
#define MANIFEST_TMP "manifest.tmp"
#define MANIFEST_ZSTD_LEVEL 1

static int mb_reserve(struct manifest_buf *m, size_t n)
{
    if (m->len + n <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 65536;
    while (cap < m->len + n)
        cap *= 2;
    uint8_t *p = realloc(m->p, cap);
    if (!p)
        return -ENOMEM;
    m->p = p;
    m->cap = cap;
    return 0;
}

static void mb_put(struct manifest_buf *m, const void *p, size_t n)
{
    memcpy(m->p + m->len, p, n);
    m->len += n;
}
#define MB_PUT(m, v)                                                                               \
    do {                                                                                           \
        __typeof__(v) mb_v_ = (v);                                                                 \
        mb_put(m, &mb_v_, sizeof(mb_v_));                                                          \
    } while (0)

struct snap {
    mindb *db;
    struct manifest_buf *m;
    struct frozen_chunk *frozen;
    size_t n_frozen, cap_frozen;
    uint64_t objects;
    int err;
};

static int add_frozen(struct snap *s, const struct frozen_chunk *f)
{
    if (s->n_frozen == s->cap_frozen) {
        size_t cap = s->cap_frozen ? s->cap_frozen * 2 : 256;
        struct frozen_chunk *p = realloc(s->frozen, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->frozen = p;
        s->cap_frozen = cap;
    }
    s->frozen[s->n_frozen++] = *f;
    return 0;
}

/* Hands every dirty chunk of the object to the checkpoint. */
static void freeze_object(struct snap *s, struct object *obj)
{
    for (uint32_t i = 0; i < obj->n_slots && !s->err; i++) {
        struct chunk_slot *c = &obj->slots[i];
        if (!c->dirty)
            continue;
        if (c->dirty_len == 0) {
            /* Emptied: the chunk becomes a hole. */
            s->db->dirty_bytes -= c->dirty_cap;
            free(c->dirty);
            c->dirty = NULL;
            memset(&c->ref, 0, sizeof(c->ref));
            continue;
        }
        struct frozen_chunk f = {.id = obj->id,
                                 .index = c->index,
                                 .buf = c->dirty,
                                 .len = c->dirty_len,
                                 .cap = c->dirty_cap,
                                 .patch_off = SIZE_MAX};
        if ((s->err = add_frozen(s, &f)))
            return;
        s->db->dirty_bytes -= c->dirty_cap;
        c->frozen = c->dirty;
        c->frozen_len = c->dirty_len;
        c->dirty = NULL;
    }
}

/* Freezes the object's dirty chunks and writes it (unless no key names
 * it). Its chunks were frozen just now, at the end of `frozen`, which is
 * where the search for each frozen chunk's place in the manifest starts. */
static void snap_object(struct snap *s, struct object *obj)
{
    if (s->err)
        return;
    freeze_object(s, obj);
    if (s->err || obj->nlink == 0)
        return;
    uint32_t chunks = 0;
    size_t need = 64;
    for (uint32_t i = 0; i < obj->n_slots; i++)
        if (obj->slots[i].frozen || obj->slots[i].ref.seg)
            chunks++;
    for (uint32_t i = 0; i < obj->n_xattrs; i++)
        need += 6 + strlen(obj->xattrs[i].name) + obj->xattrs[i].len;
    need += (size_t)chunks * (8 + REC_REF_BYTES);
    if ((s->err = mb_reserve(s->m, need)))
        return;
    struct manifest_buf *m = s->m;
    MB_PUT(m, obj->id);
    MB_PUT(m, obj->mode);
    MB_PUT(m, obj->uid);
    MB_PUT(m, obj->gid);
    MB_PUT(m, obj->n_xattrs);
    MB_PUT(m, obj->size);
    MB_PUT(m, obj->atime);
    MB_PUT(m, obj->mtime);
    MB_PUT(m, obj->ctime);
    MB_PUT(m, chunks);
    for (uint32_t i = 0; i < obj->n_xattrs; i++) {
        uint16_t nl = (uint16_t)strlen(obj->xattrs[i].name);
        MB_PUT(m, nl);
        mb_put(m, obj->xattrs[i].name, nl);
        MB_PUT(m, obj->xattrs[i].len);
        mb_put(m, obj->xattrs[i].value, obj->xattrs[i].len);
    }
    for (uint32_t i = 0; i < obj->n_slots; i++) {
        struct chunk_slot *c = &obj->slots[i];
        if (!c->frozen && !c->ref.seg)
            continue;
        MB_PUT(m, c->index);
        if (c->frozen) {
            /* Its ref is known once the checkpoint has written it. */
            for (size_t f = s->n_frozen; f-- > 0;)
                if (s->frozen[f].buf == c->frozen) {
                    s->frozen[f].patch_off = m->len;
                    break;
                }
            memset(m->p + m->len, 0, REC_REF_BYTES);
        } else {
            rec_pack_ref(m->p + m->len, &c->ref);
        }
        m->len += REC_REF_BYTES;
    }
    s->objects++;
}

static int pointer_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (struct object *const *)a;
    uintptr_t y = (uintptr_t) * (struct object *const *)b;
    return x < y ? -1 : x > y;
}

/* The objects no single key names: those several keys name (each met once
 * per key in the walk, gathered in `linked`), and those only handles hold
 * (nlink 0, reachable through the open handles alone), whose dirty chunks
 * are frozen too though they are not written. */
static void snap_unordered(struct snap *s, struct object **linked, size_t n_linked)
{
    if (n_linked > 1) /* qsort takes no NULL, even for nothing */
        qsort(linked, n_linked, sizeof(*linked), pointer_cmp);
    for (size_t i = 0; i < n_linked; i++)
        if (i == 0 || linked[i] != linked[i - 1])
            snap_object(s, linked[i]);
    for (mindb_file *f = s->db->files; f; f = f->next)
        if (f->obj->nlink == 0)
            snap_object(s, f->obj);
}

int manifest_snapshot(mindb *db, uint64_t seq, uint64_t pos, struct manifest_buf *out,
                      struct frozen_chunk **frozen, size_t *n_frozen)
{
    struct snap s = {.db = db, .m = out};
    out->len = 0;
    int err = mb_reserve(out, MANIFEST_HEADER);
    if (err)
        return err;
    out->len = MANIFEST_HEADER;
    /* Objects named by one key go in the order of their keys, so that a
     * load finds the object of each key next in line instead of looking
     * it up (see load_body); the rest (hard links, objects only handles
     * hold) follow. */
    struct object **linked = NULL;
    size_t n_linked = 0, cap_linked = 0;
    for (struct kinode *n = keyindex_first(db->index); n && !s.err; n = keyindex_next(n)) {
        if (n->obj->nlink == 1) {
            snap_object(&s, n->obj);
            continue;
        }
        if (n_linked == cap_linked) {
            size_t cap = cap_linked ? cap_linked * 2 : 64;
            struct object **p = realloc(linked, cap * sizeof(*p));
            if (!p) {
                s.err = -ENOMEM;
                break;
            }
            linked = p;
            cap_linked = cap;
        }
        linked[n_linked++] = n->obj;
    }
    if (!s.err)
        snap_unordered(&s, linked, n_linked);
    free(linked);
    uint64_t keys = 0;
    for (struct kinode *n = keyindex_first(db->index); n && !s.err; n = keyindex_next(n)) {
        if ((s.err = mb_reserve(out, 2 + n->len + 8 + 8)))
            break;
        MB_PUT(out, n->len);
        mb_put(out, kinode_key(n), n->len);
        MB_PUT(out, n->obj->id);
        keys++;
    }
    /* Frozen chunks stay with the checkpoint even when it fails here: the
     * caller gives them back to their slots. */
    *frozen = s.frozen;
    *n_frozen = s.n_frozen;
    if (s.err)
        return s.err;
    uint8_t *h = out->p;
    memset(h, 0, MANIFEST_HEADER);
    memcpy(h, MANIFEST_MAGIC, 8);
    uint32_t version = MANIFEST_VERSION;
    memcpy(h + 8, &version, 4);
    memcpy(h + 16, &seq, 8);
    memcpy(h + 24, &pos, 8);
    memcpy(h + 32, &db->next_id, 8);
    memcpy(h + 40, &s.objects, 8);
    memcpy(h + 48, &keys, 8);
    return 0;
}

void manifest_seal(struct manifest_buf *m, const struct frozen_chunk *frozen, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (frozen[i].patch_off != SIZE_MAX)
            rec_pack_ref(m->p + frozen[i].patch_off, &frozen[i].ref);
    uint64_t body = m->len - MANIFEST_HEADER;
    memcpy(m->p + 56, &body, 8);
}

/* Appends bytes to the file being written, and to its checksum. */
struct file_out {
    mindb *db;
    int fd;
    uint64_t off;
    XXH3_state_t *sum;
};

static int out_write(struct file_out *o, const void *p, size_t len)
{
    XXH3_64bits_update(o->sum, p, len);
    const uint8_t *b = p;
    while (len > 0) {
        ssize_t n = o->db->io->pwrite(o->db->io->ctx, o->fd, b, len, (off_t)o->off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        b += n;
        len -= (size_t)n;
        o->off += (uint64_t)n;
    }
    return 0;
}

/* Header, the body through zstd's streaming API (no second copy of a
 * manifest that may be hundreds of MB), and the checksum of it all. */
static int write_compressed(mindb *db, int fd, const struct manifest_buf *m)
{
    size_t cap = ZSTD_CStreamOutSize();
    uint8_t *buf = malloc(cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    XXH3_state_t *sum = XXH3_createState();
    int err = buf && cctx && sum ? 0 : -ENOMEM;
    struct file_out o = {.db = db, .fd = fd, .sum = sum};
    if (!err) {
        XXH3_64bits_reset(sum);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, MANIFEST_ZSTD_LEVEL);
        ZSTD_CCtx_setPledgedSrcSize(cctx, m->len - MANIFEST_HEADER);
        err = out_write(&o, m->p, MANIFEST_HEADER);
    }
    ZSTD_inBuffer in = {m->p + MANIFEST_HEADER, m->len - MANIFEST_HEADER, 0};
    for (size_t left = 1; !err && left;) {
        ZSTD_outBuffer out = {buf, cap, 0};
        left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
        if (ZSTD_isError(left))
            err = -EIO;
        else
            err = out_write(&o, buf, out.pos);
    }
    if (!err) {
        uint64_t digest = XXH3_64bits_digest(sum);
        err = out_write(&o, &digest, 8);
    }
    XXH3_freeState(sum);
    ZSTD_freeCCtx(cctx);
    free(buf);
    return err;
}

int manifest_write(mindb *db, uint64_t seq, const struct manifest_buf *m)
{
    const struct wal_io *io = db->io;
    char name[64];
    snprintf(name, sizeof(name), "manifest.%016" PRIx64, seq);
    int fd = io->openat(io->ctx, db->dirfd, MANIFEST_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                        0644);
    if (fd < 0)
        return fd;
    int err = write_compressed(db, fd, m);
    if (!err)
        err = io->fsync(io->ctx, fd);
    int cerr = io->close(io->ctx, fd);
    if (!err)
        err = cerr;
    if (!err)
        err = io->renameat(io->ctx, db->dirfd, MANIFEST_TMP, name);
    if (!err)
        err = io->fsync(io->ctx, db->dirfd);
    atomic_fetch_add(&db->manifest_syncs, 2);
    if (err)
        (void)io->unlinkat(io->ctx, db->dirfd, MANIFEST_TMP);
    return err;
}

int manifest_create(mindb *db, uint64_t pos)
{
    struct manifest_buf m = {0};
    struct frozen_chunk *frozen = NULL;
    size_t n = 0;
    int err = manifest_snapshot(db, 1, pos, &m, &frozen, &n);
    free(frozen);
    if (!err) {
        manifest_seal(&m, NULL, 0);
        err = manifest_write(db, 1, &m);
    }
    free(m.p);
    if (!err) {
        db->manifest_seq = db->loaded_seq = 1;
        db->checkpoint_pos = pos;
    }
    return err;
}

/* ---- loading ---- */

/* Manifest sequence numbers present, largest first. */
static int list_manifests(mindb *db, uint64_t **out, size_t *count)
{
    int fd = openat(db->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long seq;
        char tail;
        if (strlen(e->d_name) != 25 || sscanf(e->d_name, "manifest.%16llx%c", &seq, &tail) != 1)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *p = realloc(seqs, cap * sizeof(*p));
            if (!p) {
                free(seqs);
                closedir(d);
                return -ENOMEM;
            }
            seqs = p;
        }
        seqs[n++] = seq;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && seqs[j - 1] < seqs[j]; j--) {
            uint64_t t = seqs[j];
            seqs[j] = seqs[j - 1];
            seqs[j - 1] = t;
        }
    *out = seqs;
    *count = n;
    return 0;
}

static int read_file(mindb *db, const char *name, uint8_t **out, size_t *len)
{
    const struct wal_io *io = db->io;
    int fd = io->openat(io->ctx, db->dirfd, name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        io->close(io->ctx, fd);
        return err;
    }
    uint8_t *p = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!p) {
        io->close(io->ctx, fd);
        return -ENOMEM;
    }
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = io->pread(io->ctx, fd, p + off, (size_t)st.st_size - off, (off_t)off);
        if (n <= 0) {
            io->close(io->ctx, fd);
            free(p);
            return n < 0 ? (int)n : -EIO;
        }
        off += (size_t)n;
    }
    io->close(io->ctx, fd);
    *out = p;
    *len = off;
    return 0;
}

struct reader {
    const uint8_t *p;
    size_t left;
    int bad;
};

static const uint8_t *rd_take(struct reader *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}
#define RD(r, v)                                                                                   \
    do {                                                                                           \
        const uint8_t *rd_p_ = rd_take(r, sizeof(v));                                              \
        if (rd_p_)                                                                                 \
            memcpy(&(v), rd_p_, sizeof(v));                                                        \
        else                                                                                       \
            memset(&(v), 0, sizeof(v));                                                            \
    } while (0)

/* Which ids a load has seen, to refuse an id given twice. A bitmap of the
 * ids below the header's next id is a few bytes per object and stays in
 * the processor's cache; asking the table instead costs a miss in memory
 * per object. Ids at or above it (none in a sound manifest) and a bitmap
 * too large to be worth it go through the table, where such objects are
 * put as they are loaded. */
struct seen_ids {
    uint8_t *bits;
    uint64_t limit;
};

static int seen_before(mindb *db, struct seen_ids *seen, uint64_t id)
{
    if (id >= seen->limit)
        return objtable_get(&db->objects, id) != NULL;
    uint8_t bit = (uint8_t)(1u << (id & 7));
    if (seen->bits[id >> 3] & bit)
        return 1;
    seen->bits[id >> 3] |= bit;
    return 0;
}

static int load_object(mindb *db, struct reader *r, struct seen_ids *seen, struct object **out)
{
    uint64_t id, size;
    uint32_t mode, uid, gid, n_x, n_c;
    int64_t at, mt, ct;
    RD(r, id);
    RD(r, mode);
    RD(r, uid);
    RD(r, gid);
    RD(r, n_x);
    RD(r, size);
    RD(r, at);
    RD(r, mt);
    RD(r, ct);
    RD(r, n_c);
    /* Ids run from 1 to UINT64_MAX - 1 (see apply.c). */
    if (r->bad || id == 0 || id == UINT64_MAX || seen_before(db, seen, id) ||
        size > MINDB_MAX_SIZE)
        return MINDB_ECORRUPT;
    struct object *obj = object_new(id, mode, uid, gid, 0);
    if (!obj)
        return -ENOMEM;
    obj->size = size;
    obj->atime = at;
    obj->mtime = mt;
    obj->ctime = ct;
    /* The caller puts the rest in the table, all at once. */
    if (id >= seen->limit)
        objtable_put(&db->objects, obj);
    *out = obj;
    /* The header's next id is a floor: ids already used are never handed
     * out again, whatever it says. */
    if (id >= db->next_id)
        db->next_id = id + 1;
    for (uint32_t i = 0; i < n_x; i++) {
        uint16_t nl;
        uint32_t vl;
        RD(r, nl);
        const uint8_t *name = rd_take(r, nl);
        RD(r, vl);
        const uint8_t *value = rd_take(r, vl);
        if (r->bad || nl == 0 || nl > MINDB_MAX_XATTR_NAME || memchr(name, 0, nl))
            return MINDB_ECORRUPT;
        char nbuf[MINDB_MAX_XATTR_NAME + 1];
        memcpy(nbuf, name, nl);
        nbuf[nl] = 0;
        int err = object_xattr_set(obj, nbuf, value, vl);
        if (err)
            return err;
    }
    if (n_c > r->left / (8 + REC_REF_BYTES))
        return MINDB_ECORRUPT;
    obj->slots = calloc(n_c ? n_c : 1, sizeof(*obj->slots));
    if (!obj->slots)
        return -ENOMEM;
    obj->slots_cap = n_c ? n_c : 1;
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n_c; i++) {
        uint64_t index;
        RD(r, index);
        const uint8_t *ref = rd_take(r, REC_REF_BYTES);
        if (r->bad || (i > 0 && index <= prev) || index > size / CHUNK_BYTES)
            return MINDB_ECORRUPT;
        struct chunk_slot *s = &obj->slots[obj->n_slots++];
        s->index = index;
        rec_unpack_ref(ref, &s->ref);
        if (s->ref.seg == 0 || s->ref.raw_len == 0 || s->ref.raw_len > CHUNK_BYTES)
            return MINDB_ECORRUPT;
        prev = index;
    }
    return 0;
}

static int load_body(mindb *db, const uint8_t *body, size_t len, uint64_t n_obj, uint64_t n_keys);
/*
 * Decompresses the body, which must be one zstd frame of exactly body_len
 * bytes. The buffer grows with what the frame yields, not with what the
 * header (or the frame's own size field) claims: a damaged length is
 * MINDB_ECORRUPT, never an allocation of terabytes. A sound manifest
 * compresses about 3x, so the first guess is right and nothing is copied.
 */
static int inflate_body(const uint8_t *src, size_t src_len, uint64_t body_len, uint8_t **out)
{
    if (body_len > SIZE_MAX / 2)
        return MINDB_ECORRUPT;
    /* One byte more than the body, so that a frame yielding more is seen. */
    size_t limit = (size_t)body_len + 1;
    size_t guess = src_len < SIZE_MAX / 16 - 65536 ? 16 * src_len + 65536 : SIZE_MAX / 2;
    size_t cap = limit < guess ? limit : guess;
    uint8_t *buf = malloc(cap);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    int err = buf && dctx ? 0 : -ENOMEM;
    ZSTD_inBuffer in = {src, src_len, 0};
    size_t got = 0;
    while (!err) {
        ZSTD_outBuffer o = {buf, cap, got};
        size_t left = ZSTD_decompressStream(dctx, &o, &in);
        got = o.pos;
        if (ZSTD_isError(left) || got > body_len)
            err = MINDB_ECORRUPT;
        else if (left == 0)
            break; /* the frame is whole */
        else if (got < cap && in.pos == in.size)
            err = MINDB_ECORRUPT; /* cut short */
        else if (got == cap) {
            size_t ncap = cap < limit / 2 ? cap * 2 : limit;
            uint8_t *n = realloc(buf, ncap);
            if (!n)
                err = -ENOMEM;
            else {
                buf = n;
                cap = ncap;
            }
        }
    }
    ZSTD_freeDCtx(dctx);
    if (!err && (got != body_len || in.pos != in.size))
        err = MINDB_ECORRUPT; /* short, or bytes after the frame */
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    return 0;
}

static int load_one(mindb *db, const uint8_t *p, size_t len, uint64_t *pos)
{
    if (len < MANIFEST_HEADER + 8 || memcmp(p, MANIFEST_MAGIC, 8) != 0)
        return MINDB_ECORRUPT;
    uint32_t version;
    memcpy(&version, p + 8, 4);
    uint64_t sum;
    memcpy(&sum, p + len - 8, 8);
    if (XXH3_64bits(p, len - 8) != sum)
        return MINDB_ECORRUPT;
    if (version != MANIFEST_VERSION)
        return MINDB_EVERSION;
    uint64_t n_obj, n_keys, body_len;
    memcpy(pos, p + 24, 8);
    memcpy(&db->next_id, p + 32, 8);
    if (db->next_id == 0)
        db->next_id = 1; /* 0 names no object */
    memcpy(&n_obj, p + 40, 8);
    memcpy(&n_keys, p + 48, 8);
    memcpy(&body_len, p + 56, 8);
    uint8_t *body;
    int err = inflate_body(p + MANIFEST_HEADER, len - MANIFEST_HEADER - 8, body_len, &body);
    if (err)
        return err;
    err = load_body(db, body, (size_t)body_len, n_obj, n_keys);
    free(body);
    return err;
}

/* Bytes an object takes in the body at least (no xattrs, no chunks). */
#define OBJECT_MIN_BYTES 60

/* The objects and keys of a manifest, once decompressed. Keys come in
 * order, so each goes at the end of the index, along its right edge; and
 * the object a key names is usually the next one in the order of loading
 * (see manifest_snapshot), found without a look-up in the table, whose
 * memory a million keys would visit at random. */
static int load_body(mindb *db, const uint8_t *body, size_t len, uint64_t n_obj, uint64_t n_keys)
{
    struct reader r = {.p = body, .left = len};
    if (n_obj > len / OBJECT_MIN_BYTES)
        return MINDB_ECORRUPT;
    struct object **loaded = malloc((n_obj ? n_obj : 1) * sizeof(*loaded));
    if (!loaded)
        return -ENOMEM;
    /* The header's next id, before load_object raises it. */
    struct seen_ids seen = {.limit = db->next_id <= (uint64_t)len ? db->next_id : 0};
    seen.bits = calloc(seen.limit / 8 + 1, 1);
    int err = seen.bits ? 0 : -ENOMEM;
    size_t made = 0, early = 0;
    for (uint64_t i = 0; i < n_obj && !err; i++) {
        loaded[i] = NULL;
        err = load_object(db, &r, &seen, &loaded[i]);
        if (loaded[i]) {
            made++;
            early += loaded[i]->id >= seen.limit;
        }
    }
    free(seen.bits);
    /* Into the table, also after a failure, which frees them from there. */
    if (!early)
        objtable_put_many(&db->objects, loaded, made);
    else
        for (size_t i = 0; i < made; i++)
            if (loaded[i]->id < seen.limit)
                objtable_put(&db->objects, loaded[i]);
    uint8_t prev[MINDB_MAX_KEY];
    uint16_t prev_len = 0;
    uint64_t next = 0; /* the object the next key most likely names */
    struct ki_where where;
    for (uint64_t i = 0; i < n_keys && !err; i++) {
        uint16_t kl;
        uint64_t id;
        RD(&r, kl);
        const uint8_t *key = rd_take(&r, kl);
        RD(&r, id);
        struct object *obj;
        if (r.bad)
            obj = NULL;
        else if (next < n_obj && loaded[next]->id == id)
            obj = loaded[next++];
        else
            obj = objtable_get(&db->objects, id);
        /* The empty key, the root, is a directory (and comes first). A
         * directory has one key: nothing links one, and the counts of
         * subdirectories (its nlink) assume it. */
        if (!obj || (kl == 0 && !S_ISDIR(obj->mode)) || (S_ISDIR(obj->mode) && obj->nlink) ||
            kl > MINDB_MAX_KEY || (i > 0 && key_cmp(prev, prev_len, key, kl) >= 0)) {
            err = MINDB_ECORRUPT;
            break;
        }
        /* Keys come in order, so each descent follows the index's right
         * edge, which the previous one left in the cache. */
        keyindex_locate(db->index, key, kl, &where);
        err = keyindex_insert_at(db->index, &where, key, kl, obj);
        if (err)
            break;
        obj->nlink++;
        memcpy(prev, key, kl);
        prev_len = kl;
    }
    free(loaded);
    if (!err && (r.bad || r.left != 0))
        err = MINDB_ECORRUPT;
    return err;
}

/* Counts each directory's subdirectories (the root's: the top-level
 * ones), which the manifest leaves out. */
static void count_subdirs(mindb *db)
{
    for (struct kinode *n = keyindex_first(db->index); n; n = keyindex_next(n)) {
        if (!S_ISDIR(n->obj->mode))
            continue;
        struct object *p = parent_dir(db, kinode_key(n), n->len);
        if (p)
            p->subdirs++;
    }
}

static void reset_state(mindb *db)
{
    keyindex_free(db->index);
    db->index = NULL;
    objtable_destroy(&db->objects);
}

static int init_state(mindb *db)
{
    int err = keyindex_new(&db->index);
    if (!err && (err = objtable_init(&db->objects)))
        reset_state(db);
    return err;
}

int manifest_load(mindb *db)
{
    uint64_t *seqs;
    size_t n;
    int err = list_manifests(db, &seqs, &n);
    if (err)
        return err;
    if (n == 0) {
        free(seqs);
        db_log(db, "%s: no manifest", db->dir);
        return MINDB_ECORRUPT;
    }
    err = MINDB_ECORRUPT;
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof(name), "manifest.%016" PRIx64, seqs[i]);
        uint8_t *p = NULL;
        size_t len = 0;
        err = read_file(db, name, &p, &len);
        uint64_t pos = 0;
        if (!err && !(err = init_state(db))) {
            err = load_one(db, p, len, &pos);
            if (err)
                reset_state(db);
        }
        free(p);
        if (!err) {
            count_subdirs(db);
            db->manifest_seq = seqs[0];
            db->loaded_seq = seqs[i];
            db->checkpoint_pos = pos;
            if (i > 0)
                db_log(db, "%s: newest manifest is damaged; using %s", db->dir, name);
            break;
        }
        db_log(db, "%s: %s: %s", db->dir, name, mindb_strerror(err));
        if (err == -ENOMEM || err == MINDB_EVERSION)
            break;
    }
    free(seqs);
    return err;
}

void manifest_prune(mindb *db, uint64_t keep_a, uint64_t keep_b)
{
    uint64_t *seqs;
    size_t n;
    if (list_manifests(db, &seqs, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (seqs[i] == keep_a || seqs[i] == keep_b)
            continue;
        char name[64];
        snprintf(name, sizeof(name), "manifest.%016" PRIx64, seqs[i]);
        (void)db->io->unlinkat(db->io->ctx, db->dirfd, name);
    }
    free(seqs);
}
