/*
 * describe.c - the log since the last checkpoint, one line per record, for
 * `mindb wal-dump` and for people debugging a store.
 */
#include "db_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Appends `len` bytes as a quoted string, non-printable bytes escaped. */
static size_t quote(char *out, size_t cap, const uint8_t *p, size_t len)
{
    size_t n = 0;
    if (n < cap)
        out[n++] = '"';
    for (size_t i = 0; i < len && n + 5 < cap; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            out[n++] = (char)p[i];
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", p[i]);
    }
    if (n < cap)
        out[n++] = '"';
    out[n < cap ? n : cap - 1] = 0;
    return n;
}

static void describe(const struct rec *r, char *out, size_t cap)
{
    char k1[256], k2[256];
    quote(k1, sizeof(k1), r->key, r->key_len < 64 ? r->key_len : 64);
    quote(k2, sizeof(k2), r->key2, r->key2_len < 64 ? r->key2_len : 64);
    const char *t = rec_type_name(r->type);
    unsigned long long id = (unsigned long long)r->id;
    switch (r->type) {
    case REC_PUT:
    case REC_CREATE:
        snprintf(out, cap, "%s key=%s id=%llu mode=%o bytes=%" PRIu64, t, k1, id, r->mode,
                 r->data_len);
        break;
    case REC_PUT_REFS:
        snprintf(out, cap, "%s key=%s id=%llu bytes=%" PRIu64 " chunks=%u", t, k1, id, r->off,
                 r->n_refs);
        break;
    case REC_DELETE:
        snprintf(out, cap, "%s key=%s id=%llu", t, k1, id);
        break;
    case REC_RENAME:
    case REC_LINK:
        snprintf(out, cap, "%s key=%s to=%s flags=%u", t, k1, k2, r->flags);
        break;
    case REC_LINK_ID:
        snprintf(out, cap, "%s id=%llu to=%s", t, id, k2);
        break;
    case REC_WRITE:
        snprintf(out, cap, "%s id=%llu off=%" PRIu64 " bytes=%" PRIu64, t, id, r->off, r->data_len);
        break;
    case REC_WRITE_REFS:
        snprintf(out, cap,
                 "%s id=%llu off=%" PRIu64 " bytes=%" PRIu64 " (head %" PRIu64 ", %u chunks, tail %" PRIu64 ")",
                 t, id, r->off, r->data_len + (uint64_t)r->n_refs * CHUNK_BYTES + r->tail_len,
                 r->data_len, r->n_refs, r->tail_len);
        break;
    case REC_TRUNCATE:
        snprintf(out, cap, "%s id=%llu size=%" PRIu64, t, id, r->off);
        break;
    case REC_SETATTR:
        snprintf(out, cap, "%s id=%llu fields=0x%x", t, id, r->fields);
        break;
    case REC_SETXATTR:
        snprintf(out, cap, "%s id=%llu name=%s bytes=%" PRIu64, t, id, r->name, r->data_len);
        break;
    case REC_RMXATTR:
        snprintf(out, cap, "%s id=%llu name=%s", t, id, r->name);
        break;
    default:
        snprintf(out, cap, "%s", t);
    }
}

int mindb_describe_log(mindb *db, void (*line)(void *ctx, uint64_t pos, const char *text),
                       void *ctx)
{
    if (!db->opt.read_only) {
        int err = wal_flush(db->log);
        if (err)
            return err;
    }
    wal_reader *rd;
    int err = wal_reader_open(db->log, db->checkpoint_pos, &rd);
    if (err)
        return err;
    int count = 0;
    const void *data;
    size_t len;
    uint64_t pos;
    char text[1024];
    while ((err = wal_reader_next(rd, &data, &len, &pos)) == 1) {
        struct rec r;
        if (rec_decode(data, len, &r) != 0)
            snprintf(text, sizeof(text), "undecodable record of %zu bytes", len);
        else
            describe(&r, text, sizeof(text));
        line(ctx, pos, text);
        count++;
    }
    wal_reader_close(rd);
    return err < 0 ? err : count;
}
