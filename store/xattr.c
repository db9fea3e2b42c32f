/*
 * xattr.c - extended attributes, of the object a key names or of the one a
 * handle holds, with the same checks and errors either way. Changes are
 * REC_SETXATTR and REC_RMXATTR records (see apply.c), which find their
 * object by id: a handle reaches an object whose last key is gone, as
 * fsetxattr(2) on an unlinked file does.
 */
#include "db_int.h"

#include <errno.h>
#include <string.h>

static int check_xattr_name(const char *name)
{
    if (!name)
        return -EINVAL;
    size_t n = strlen(name);
    if (n == 0 || n > MINDB_MAX_XATTR_NAME)
        return -ERANGE;
    return 0;
}

/* Sets an attribute of the object of `key`, or (key NULL) of object `id`. */
static int set_xattr(mindb *db, const void *key, size_t key_len, uint64_t id, const char *name,
                     const void *value, size_t len, unsigned flags)
{
    int err = check_xattr_name(name);
    if (err)
        return err;
    if (len > MINDB_MAX_XATTR_VALUE)
        return -E2BIG;
    if ((flags & ~(unsigned)(MINDB_XATTR_CREATE | MINDB_XATTR_REPLACE)) || (len && !value))
        return -EINVAL;
    struct rec r = {.type = REC_SETXATTR,
                    .flags = (uint8_t)flags,
                    .name = name,
                    .name_len = strlen(name),
                    .data = value,
                    .data_len = len};
    return change_object(db, key, key_len, id, &r);
}

static int remove_xattr(mindb *db, const void *key, size_t key_len, uint64_t id, const char *name)
{
    int err = check_xattr_name(name);
    if (err)
        return err;
    struct rec r = {.type = REC_RMXATTR, .name = name, .name_len = strlen(name)};
    return change_object(db, key, key_len, id, &r);
}

/* Copies the value of `name` (state lock held; obj NULL: -ENOENT). */
static ssize_t get_xattr(const struct object *obj, const char *name, void *buf, size_t size)
{
    struct xattr *x = obj ? object_xattr(obj, name) : NULL;
    if (!obj)
        return -ENOENT;
    if (!x)
        return -ENODATA;
    if (size == 0)
        return x->len;
    if (size < x->len)
        return -ERANGE;
    if (x->len)
        memcpy(buf, x->value, x->len);
    return x->len;
}

/* Copies the names, each ending with a NUL (state lock held; obj NULL:
 * -ENOENT). */
static ssize_t list_xattrs(const struct object *obj, char *buf, size_t size)
{
    if (!obj)
        return -ENOENT;
    size_t need = 0;
    for (uint32_t i = 0; i < obj->n_xattrs; i++)
        need += strlen(obj->xattrs[i].name) + 1;
    if (size == 0)
        return (ssize_t)need;
    if (size < need)
        return -ERANGE;
    char *p = buf;
    for (uint32_t i = 0; i < obj->n_xattrs; i++) {
        size_t n = strlen(obj->xattrs[i].name) + 1;
        memcpy(p, obj->xattrs[i].name, n);
        p += n;
    }
    return (ssize_t)need;
}

/* ---- by key ---- */

int mindb_setxattr(mindb *db, const void *key, size_t key_len, const char *name, const void *value,
                   size_t len, unsigned flags)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    return set_xattr(db, key, key_len, 0, name, value, len, flags);
}

ssize_t mindb_getxattr(mindb *db, const void *key, size_t key_len, const char *name, void *buf,
                       size_t size)
{
    int err = check_key(&key, key_len);
    if (!err)
        err = check_xattr_name(name);
    if (err)
        return err;
    pthread_rwlock_rdlock(&db->state);
    ssize_t ret = get_xattr(lookup(db, key, key_len), name, buf, size);
    pthread_rwlock_unlock(&db->state);
    return ret;
}

ssize_t mindb_listxattr(mindb *db, const void *key, size_t key_len, char *buf, size_t size)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    pthread_rwlock_rdlock(&db->state);
    ssize_t ret = list_xattrs(lookup(db, key, key_len), buf, size);
    pthread_rwlock_unlock(&db->state);
    return ret;
}

int mindb_removexattr(mindb *db, const void *key, size_t key_len, const char *name)
{
    int err = check_key(&key, key_len);
    if (err)
        return err;
    return remove_xattr(db, key, key_len, 0, name);
}

/* ---- through a handle ---- */

int mindb_file_setxattr(mindb_file *f, const char *name, const void *value, size_t len,
                        unsigned flags)
{
    return set_xattr(f->db, NULL, 0, f->obj->id, name, value, len, flags);
}

ssize_t mindb_file_getxattr(mindb_file *f, const char *name, void *buf, size_t size)
{
    int err = check_xattr_name(name);
    if (err)
        return err;
    pthread_rwlock_rdlock(&f->db->state);
    ssize_t ret = get_xattr(f->obj, name, buf, size);
    pthread_rwlock_unlock(&f->db->state);
    return ret;
}

ssize_t mindb_file_listxattr(mindb_file *f, char *buf, size_t size)
{
    pthread_rwlock_rdlock(&f->db->state);
    ssize_t ret = list_xattrs(f->obj, buf, size);
    pthread_rwlock_unlock(&f->db->state);
    return ret;
}

int mindb_file_removexattr(mindb_file *f, const char *name)
{
    return remove_xattr(f->db, NULL, 0, f->obj->id, name);
}
