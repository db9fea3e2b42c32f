/*
 * ops_xattr.c - extended attributes, kept by the store with the object.
 *
 * The user, trusted and security namespaces are stored as given (the
 * kernel has checked the caller may touch them). system.* names belong to
 * features the store does not have, POSIX ACLs above all: refusing them
 * tells tools such as cp -a and setfacl so.
 */
#include "mindbfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

/* 0 when the store keeps the name, else the errno: a bare prefix is no
 * name (EINVAL, as ext4 says), system.* no feature of ours. */
static int name_check(const char *name)
{
    static const char *const kept[] = {"user.", "trusted.", "security."};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        size_t n = strlen(kept[i]);
        if (strncmp(name, kept[i], n) == 0)
            return name[n] ? 0 : EINVAL;
    }
    return EOPNOTSUPP;
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags)
{
    if (name_check(name)) {
        fuse_reply_err(req, name_check(name));
        return;
    }
    unsigned f = 0;
    if (flags & XATTR_CREATE)
        f |= MINDB_XATTR_CREATE;
    if (flags & XATTR_REPLACE)
        f |= MINDB_XATTR_REPLACE;
    mindb_file *obj = node_get(fs_of(req), ino)->obj;
    int err = obj ? mindb_file_setxattr(obj, name, value, size, f) : -EROFS;
    fuse_reply_err(req, fs_errno(err));
}

/* Replies with the value (or list) that `get` fetches, or its size when the
 * caller asked for the size only. */
static void reply_sized(fuse_req_t req, size_t size, ssize_t (*get)(void *ctx, char *buf, size_t size),
                        void *ctx)
{
    if (size == 0) {
        ssize_t n = get(ctx, NULL, 0);
        if (n < 0)
            fuse_reply_err(req, fs_errno((int)n));
        else
            fuse_reply_xattr(req, (size_t)n);
        return;
    }
    char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ssize_t n = get(ctx, buf, size);
    if (n < 0)
        fuse_reply_err(req, fs_errno((int)n));
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

struct get_ctx {
    mindb_file *obj;
    const char *name;
};

/* A bare directory (obj NULL) has no attributes. */
static ssize_t get_value(void *ctx, char *buf, size_t size)
{
    struct get_ctx *g = ctx;
    return g->obj ? mindb_file_getxattr(g->obj, g->name, buf, size) : -ENODATA;
}

static ssize_t get_list(void *ctx, char *buf, size_t size)
{
    struct get_ctx *g = ctx;
    return g->obj ? mindb_file_listxattr(g->obj, buf, size) : 0;
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    if (name_check(name)) {
        fuse_reply_err(req, name_check(name));
        return;
    }
    struct get_ctx g = {.obj = node_get(fs_of(req), ino)->obj, .name = name};
    reply_sized(req, size, get_value, &g);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct get_ctx g = {.obj = node_get(fs_of(req), ino)->obj};
    reply_sized(req, size, get_list, &g);
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    if (name_check(name)) {
        fuse_reply_err(req, name_check(name));
        return;
    }
    mindb_file *obj = node_get(fs_of(req), ino)->obj;
    int err = obj ? mindb_file_removexattr(obj, name) : -EROFS;
    fuse_reply_err(req, fs_errno(err));
}
