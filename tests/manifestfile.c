/*
 * manifestfile.c - manifests written by hand (see manifestfile.h).
 */
#include "manifestfile.h"

#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

static void put(struct mf_body *b, const void *p, size_t n)
{
    CHECK(b->len + n <= sizeof b->p);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}
#define PUT(b, v)                                                                                  \
    do {                                                                                           \
        __typeof__(v) put_v_ = (v);                                                                \
        put(b, &put_v_, sizeof put_v_);                                                            \
    } while (0)

void mf_object(struct mf_body *b, uint64_t id, uint32_t mode, int64_t time_ns)
{
    PUT(b, id);
    PUT(b, mode);
    PUT(b, (uint32_t)geteuid());
    PUT(b, (uint32_t)getegid());
    PUT(b, (uint32_t)0); /* xattrs */
    PUT(b, (uint64_t)0); /* size */
    PUT(b, time_ns);
    PUT(b, time_ns);
    PUT(b, time_ns);
    PUT(b, (uint32_t)0); /* chunks */
    b->objects++;
}

void mf_key(struct mf_body *b, const char *key, uint64_t id)
{
    PUT(b, (uint16_t)strlen(key));
    put(b, key, strlen(key));
    PUT(b, id);
    b->keys++;
}

void mf_newest(const char *dir, char name[64])
{
    name[0] = 0;
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "manifest.", 9) == 0 && strlen(e->d_name) == 25 &&
            strcmp(e->d_name, name) > 0)
            snprintf(name, 64, "%s", e->d_name);
    closedir(d);
}

void mf_replace(const char *dir, const struct mf_body *b, uint64_t next_id)
{
    char name[64], path[TU_PATH_MAX];
    mf_newest(dir, name);
    CHECK(name[0] != 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t head[64];
    tu_pread_file(path, head, sizeof head, 0);
    uint64_t seq, pos;
    memcpy(&seq, head + 16, 8);
    memcpy(&pos, head + 24, 8);
    for (mf_newest(dir, name); name[0]; mf_newest(dir, name)) {
        snprintf(path, sizeof path, "%s/%s", dir, name);
        CHECK(unlink(path) == 0);
    }

    size_t cap = ZSTD_compressBound(b->len);
    uint8_t *file = malloc(64 + cap + 8);
    CHECK(file != NULL);
    memset(file, 0, 64);
    memcpy(file, "MINDBMAN", 8);
    uint32_t version = 1;
    uint64_t body_len = b->len;
    memcpy(file + 8, &version, 4);
    memcpy(file + 16, &seq, 8);
    memcpy(file + 24, &pos, 8);
    memcpy(file + 32, &next_id, 8);
    memcpy(file + 40, &b->objects, 8);
    memcpy(file + 48, &b->keys, 8);
    memcpy(file + 56, &body_len, 8);
    size_t z = ZSTD_compress(file + 64, cap, b->p, b->len, 1);
    CHECK(!ZSTD_isError(z));
    uint64_t sum = XXH3_64bits(file, 64 + z);
    memcpy(file + 64 + z, &sum, 8);
    snprintf(path, sizeof path, "%s/manifest.%016llx", dir, (unsigned long long)seq);
    FILE *out = fopen(path, "wb");
    CHECK(out != NULL);
    CHECK(fwrite(file, 1, 64 + z + 8, out) == 64 + z + 8);
    CHECK(fclose(out) == 0);
    free(file);
}
