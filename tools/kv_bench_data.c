/*
 * kv_bench_data.c - the keys and values kv_bench writes and checks, the
 * orders it visits them in, and the helpers every backend shares: error
 * lines and the size of a store's directory.
 *
 * Values are made on the fly from (seed, key index, version) rather than
 * taken from a pool: a pool's bytes would repeat across values, and a store
 * that compresses many values together (mindb's chunks, RocksDB's blocks)
 * would find those repeats and look better than it is on real data.
 */
#ifndef _GNU_SOURCE /* the build defines it; this is for a compile by hand */
#define _GNU_SOURCE
#endif

#include "kv_bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t kv_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

void kv_make_key(uint64_t index, char key[KV_KEY_BYTES])
{
    for (int i = KV_KEY_BYTES - 1; i >= 0; i--) {
        key[i] = (char)('0' + index % 10);
        index /= 10;
    }
}

void kv_make_missing_key(uint64_t index, char key[KV_KEY_BYTES])
{
    kv_make_key(index, key);
    key[KV_KEY_BYTES - 1] = 'x';
}

uint64_t kv_key_index(const void *key, size_t key_len)
{
    if (key_len != KV_KEY_BYTES)
        return UINT64_MAX;
    const char *k = key;
    uint64_t index = 0;
    for (size_t i = 0; i < KV_KEY_BYTES; i++) {
        if (k[i] < '0' || k[i] > '9')
            return UINT64_MAX;
        index = index * 10 + (uint64_t)(k[i] - '0');
    }
    return index;
}

void kv_make_value(uint64_t seed, uint64_t index, unsigned version, unsigned char *out, size_t len)
{
    uint64_t state = seed ^ (index * 0xD1B54A32D192ED03u) ^ ((uint64_t)version << 56);
    size_t random_len = (len + 1) / 2, i = 0;
    for (; i + 8 <= random_len; i += 8) {
        uint64_t x = kv_random(&state);
        memcpy(out + i, &x, 8);
    }
    if (i < random_len) {
        uint64_t x = kv_random(&state);
        memcpy(out + i, &x, random_len - i);
    }
    unsigned char pattern[8];
    uint64_t x = kv_random(&state);
    memcpy(pattern, &x, 8);
    for (i = random_len; i < len; i++)
        out[i] = pattern[(i - random_len) % 8];
}

bool kv_check_value(uint64_t seed, uint64_t index, unsigned version, const void *value,
                    size_t value_len, size_t len, unsigned char *scratch)
{
    if (value_len != len)
        return false;
    kv_make_value(seed, index, version, scratch, len);
    return memcmp(value, scratch, len) == 0;
}

uint64_t kv_touch(const void *value, size_t len)
{
    const unsigned char *p = value;
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i += 64)
        sum += p[i];
    return len ? sum + p[len - 1] : sum;
}

void kv_shuffle(uint32_t *order, uint64_t n, uint64_t seed)
{
    for (uint64_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    uint64_t state = seed;
    for (uint64_t i = n; i > 1; i--) {
        /* The modulo bias is far below anything a benchmark order shows. */
        uint64_t j = kv_random(&state) % i;
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

void kv_report(const char *engine, const char *call, const char *message)
{
    fprintf(stderr, "%s: %s: %s: %s\n", PROGRAM, engine, call, message);
}

int kv_report_errno(const char *engine, const char *call, int err)
{
    kv_report(engine, call, strerror(-err));
    return err;
}

static int dir_usage_at(int dir_fd, uint64_t *apparent, uint64_t *allocated)
{
    DIR *dir = fdopendir(dir_fd);
    if (!dir) {
        int rc = -errno;
        close(dir_fd);
        return rc;
    }
    int rc = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = -errno;
            break;
        }
        if (S_ISREG(st.st_mode)) {
            *apparent += (uint64_t)st.st_size;
            *allocated += (uint64_t)st.st_blocks * 512;
        } else if (S_ISDIR(st.st_mode)) {
            int fd = openat(dirfd(dir), entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            rc = fd < 0 ? -errno : dir_usage_at(fd, apparent, allocated);
            if (rc < 0)
                break;
        }
    }
    closedir(dir);
    return rc;
}

int kv_dir_usage(const char *dir, uint64_t *apparent, uint64_t *allocated)
{
    *apparent = 0;
    *allocated = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return dir_usage_at(fd, apparent, allocated);
}
