/*
 * nodes.c - the inodes the kernel holds: a hash table by node id, reference
 * counts (the kernel's lookups, open handles, child directories), and the
 * paths of directories.
 *
 * A node lives while the kernel holds a reference (nlookup > 0) or anything
 * pins it; its store handle closes with it, which is when an unlinked file's
 * space goes.
 */
#include "mindbfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

fuse_ino_t ino_of_id(const struct mindbfs *fs, uint64_t id)
{
    /* The kernel's root is 1: the root object and object 1 trade ids. */
    if (id == fs->root_id)
        return FUSE_ROOT_ID;
    if (id == FUSE_ROOT_ID)
        return fs->root_id;
    return id;
}

static size_t bucket_of(const struct mindbfs *fs, fuse_ino_t ino)
{
    return (size_t)(ino * 0x9e3779b97f4a7c15ull >> 17) & fs->mask;
}

static struct node *table_find(const struct mindbfs *fs, fuse_ino_t ino)
{
    struct node *n = fs->buckets[bucket_of(fs, ino)];
    while (n && n->ino != ino)
        n = n->hash_next;
    return n;
}

static int table_grow(struct mindbfs *fs)
{
    size_t size = (fs->mask + 1) * 2;
    struct node **b = calloc(size, sizeof(*b));
    if (!b)
        return -ENOMEM;
    struct node **old = fs->buckets;
    size_t old_size = fs->mask + 1;
    fs->buckets = b;
    fs->mask = size - 1;
    for (size_t i = 0; i < old_size; i++) {
        while (old[i]) {
            struct node *n = old[i];
            old[i] = n->hash_next;
            size_t k = bucket_of(fs, n->ino);
            n->hash_next = b[k];
            b[k] = n;
        }
    }
    free(old);
    return 0;
}

static int table_insert(struct mindbfs *fs, struct node *n)
{
    if (fs->count >= fs->mask + 1 && table_grow(fs) != 0 && fs->count >= 4 * (fs->mask + 1))
        return -ENOMEM; /* a full table still works, just slower */
    size_t k = bucket_of(fs, n->ino);
    n->hash_next = fs->buckets[k];
    fs->buckets[k] = n;
    fs->count++;
    return 0;
}

static void table_remove(struct mindbfs *fs, struct node *n)
{
    struct node **p = &fs->buckets[bucket_of(fs, n->ino)];
    while (*p != n)
        p = &(*p)->hash_next;
    *p = n->hash_next;
    fs->count--;
}

static int node_set_name(struct node *n, const char *name)
{
    size_t len = strlen(name);
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, len + 1);
    free(n->name);
    n->name = copy;
    n->name_len = len;
    return 0;
}

static void node_free(struct node *n)
{
    mindb_file_close(n->obj);
    free(n->name);
    free(n);
}

/* With table_lock held: whether the node is unreferenced; if so it is taken
 * out of the table and the caller frees it (outside the lock). */
static int node_release_locked(struct mindbfs *fs, struct node *n)
{
    if (n->nlookup > 0 || n->pins > 0 || n == fs->root)
        return 0;
    table_remove(fs, n);
    return 1;
}

/* Frees `n` and drops the pin it held on its parent, and so on up. */
static void node_free_chain(struct mindbfs *fs, struct node *n)
{
    while (n) {
        struct node *parent = n->parent;
        node_free(n);
        n = NULL;
        if (parent) {
            pthread_mutex_lock(&fs->table_lock);
            parent->pins--;
            if (node_release_locked(fs, parent))
                n = parent;
            pthread_mutex_unlock(&fs->table_lock);
        }
    }
}

int nodes_init(struct mindbfs *fs)
{
    fs->mask = 1023;
    fs->buckets = calloc(fs->mask + 1, sizeof(*fs->buckets));
    if (!fs->buckets)
        return -ENOMEM;
    pthread_rwlock_init(&fs->tree, NULL);
    pthread_mutex_init(&fs->table_lock, NULL);
    struct mindb_stat st;
    mindb_file *obj;
    int err = mindb_stat(fs->db, "", 0, &st);
    if (!err)
        err = mindb_file_open(fs->db, "", 0, 0, 0, &obj);
    if (err)
        return err;
    struct node *root = calloc(1, sizeof(*root));
    if (!root) {
        mindb_file_close(obj);
        return -ENOMEM;
    }
    fs->root_id = st.id;
    root->ino = FUSE_ROOT_ID;
    root->id = st.id;
    root->mode = st.mode;
    root->obj = obj;
    root->nlookup = 1;
    fs->root = root;
    table_insert(fs, root);
    return 0;
}

void nodes_destroy(struct mindbfs *fs)
{
    for (size_t i = 0; fs->buckets && i <= fs->mask; i++) {
        while (fs->buckets[i]) {
            struct node *n = fs->buckets[i];
            fs->buckets[i] = n->hash_next;
            node_free(n);
        }
    }
    free(fs->buckets);
    fs->buckets = NULL;
    pthread_rwlock_destroy(&fs->tree);
    pthread_mutex_destroy(&fs->table_lock);
}

struct node *node_get(struct mindbfs *fs, fuse_ino_t ino)
{
    if (ino == FUSE_ROOT_ID)
        return fs->root;
    pthread_mutex_lock(&fs->table_lock);
    struct node *n = table_find(fs, ino);
    pthread_mutex_unlock(&fs->table_lock);
    return n;
}

struct node *node_find(struct mindbfs *fs, uint64_t id)
{
    return node_get(fs, ino_of_id(fs, id));
}

/* Takes a reference on the node of `ino` if there is one. */
static struct node *node_take(struct mindbfs *fs, fuse_ino_t ino)
{
    pthread_mutex_lock(&fs->table_lock);
    struct node *n = table_find(fs, ino);
    if (n)
        n->nlookup++;
    pthread_mutex_unlock(&fs->table_lock);
    return n;
}

/* A new node, made outside the table lock (its store handle is opened
 * there), goes into the table; a directory pins its parent. A racing lookup
 * of the same inode may have won meanwhile: then that node is taken and `n`
 * freed. */
static int node_publish(struct mindbfs *fs, struct node *n, struct node *parent,
                        struct node **out)
{
    int err = 0;
    pthread_mutex_lock(&fs->table_lock);
    struct node *won = table_find(fs, n->ino);
    if (won) {
        won->nlookup++;
    } else if (S_ISDIR(n->mode)) {
        n->parent = parent;
        parent->pins++;
    }
    if (!won && (err = table_insert(fs, n)) != 0 && n->parent) {
        parent->pins--;
        n->parent = NULL;
    }
    pthread_mutex_unlock(&fs->table_lock);
    if (won || err) {
        node_free(n);
        n = won;
    }
    *out = n;
    return err;
}

/* A node of `mode` for inode `ino` with one kernel reference. */
static struct node *node_new(fuse_ino_t ino, uint64_t id, uint32_t mode, const char *name)
{
    struct node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->ino = ino;
    n->id = id;
    n->mode = mode;
    n->nlookup = 1;
    if (S_ISDIR(mode) && node_set_name(n, name) != 0) {
        free(n);
        return NULL;
    }
    return n;
}

int node_lookup(struct mindbfs *fs, const struct mindb_stat *st, struct node *parent,
                const char *name, struct node **out)
{
    fuse_ino_t ino = ino_of_id(fs, st->id);
    if ((*out = node_take(fs, ino)) != NULL)
        return 0;
    struct node *n = node_new(ino, st->id, st->mode, name);
    if (!n)
        return -ENOMEM;
    int err = mindb_file_open_id(fs->db, st->id, &n->obj);
    if (err) {
        node_free(n);
        return err;
    }
    return node_publish(fs, n, parent, out);
}

fuse_ino_t bare_ino(fuse_ino_t parent, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ parent;
    for (const char *c = name; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    return (fuse_ino_t)(h | BARE_INO_BIT);
}

int node_lookup_bare(struct mindbfs *fs, struct node *parent, const char *name, struct node **out)
{
    fuse_ino_t ino = bare_ino(parent->ino, name);
    if ((*out = node_take(fs, ino)) != NULL)
        return 0;
    struct node *n = node_new(ino, 0, S_IFDIR | 0555, name);
    return n ? node_publish(fs, n, parent, out) : -ENOMEM;
}

int node_stat(struct mindbfs *fs, struct node *n, struct mindb_stat *st)
{
    if (n->obj)
        return mindb_fstat(n->obj, st);
    /* A bare prefix on a read-only mount: a directory like the root. */
    int err = mindb_fstat(fs->root->obj, st);
    st->id = 0;
    st->mode = n->mode;
    st->nlink = 2;
    st->size = st->disk_bytes = 0;
    return err;
}

void node_forget(struct mindbfs *fs, struct node *n, uint64_t nlookup)
{
    pthread_mutex_lock(&fs->table_lock);
    n->nlookup = nlookup < n->nlookup ? n->nlookup - nlookup : 0;
    int gone = node_release_locked(fs, n);
    pthread_mutex_unlock(&fs->table_lock);
    if (gone)
        node_free_chain(fs, n);
}

void node_pin(struct mindbfs *fs, struct node *n)
{
    pthread_mutex_lock(&fs->table_lock);
    n->pins++;
    pthread_mutex_unlock(&fs->table_lock);
}

void node_unpin(struct mindbfs *fs, struct node *n)
{
    pthread_mutex_lock(&fs->table_lock);
    n->pins--;
    int gone = node_release_locked(fs, n);
    pthread_mutex_unlock(&fs->table_lock);
    if (gone)
        node_free_chain(fs, n);
}

int node_move(struct mindbfs *fs, struct node *n, struct node *parent, const char *name)
{
    if (parent) {
        int err = node_set_name(n, name);
        if (err)
            return err;
    }
    struct node *old = n->parent;
    pthread_mutex_lock(&fs->table_lock);
    if (parent)
        parent->pins++;
    n->parent = parent;
    pthread_mutex_unlock(&fs->table_lock);
    if (old)
        node_unpin(fs, old);
    return 0;
}

int node_key(struct node *dir, const char *name, char key[MINDB_MAX_KEY + 1])
{
    /* Built from the end: the name, then each directory up to the root. */
    size_t pos = MINDB_MAX_KEY + 1, len = name ? strlen(name) : 0;
    if (len > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    pos -= len;
    if (len)
        memcpy(key + pos, name, len);
    for (struct node *d = dir; d->ino != FUSE_ROOT_ID; d = d->parent) {
        if (!d->parent)
            return -ENOENT; /* removed, or not a directory */
        if (pos < d->name_len + 1)
            return -ENAMETOOLONG;
        if (pos < MINDB_MAX_KEY + 1)
            key[--pos] = '/';
        pos -= d->name_len;
        memcpy(key + pos, d->name, d->name_len);
    }
    size_t key_len = MINDB_MAX_KEY + 1 - pos;
    if (key_len > MINDB_MAX_KEY)
        return -ENAMETOOLONG;
    memmove(key, key + pos, key_len);
    key[key_len] = '\0';
    return (int)key_len;
}
