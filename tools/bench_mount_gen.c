/*
 * bench_mount_gen - makes the store that tools/bench_mount mounts: FILES
 * small files (0 to 4 KiB of text-like bytes each) in directories of
 * PER_DIR files, written through libmindb as mindbfs would see them (every
 * directory a key of its own, "dNNNNN/fNNNNN" below it). A Python driver
 * cannot make a million keys in reasonable time; this takes seconds.
 *
 * usage: bench_mount_gen STORE_DIR FILES [PER_DIR]
 * Prints the deepest file's path, which the driver stats to see a mount
 * answer.
 */
#include "mindb.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_VALUE 4096

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Words from a small vocabulary compress about as well as source code and
 * text do, so that the store's bytes on disk resemble a real tree's. */
static void fill_text(char *buf, size_t len)
{
    static const char *words[] = {"the ",   "store ", "mount ",  "file ",  "index ",
                                  "write ", "key ",   "value ",  "chunk ", "log ",
                                  "sync ",  "read ",  "object ", "\n",     "int ",
                                  "if (",   ") {\n",  "return ", "0;\n",   "}\n"};
    size_t n = sizeof(words) / sizeof(words[0]);
    size_t at = 0;
    while (at < len) {
        const char *w = words[rng() % n];
        while (*w && at < len)
            buf[at++] = *w++;
    }
}

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "bench_mount_gen: %s\n", line);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s STORE_DIR FILES [PER_DIR]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    unsigned long files = strtoul(argv[2], NULL, 10);
    unsigned long per_dir = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000;
    if (files == 0 || per_dir == 0) {
        fprintf(stderr, "%s: FILES and PER_DIR must be positive\n", argv[0]);
        return 2;
    }
    struct mindb_options o;
    mindb_options_init(&o);
    o.create = 1;
    o.log = log_line;
    mindb *db;
    int err = mindb_open(dir, &o, &db);
    if (err) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], dir, mindb_strerror(err));
        return 1;
    }
    uid_t uid = getuid();
    gid_t gid = getgid();
    char key[64], value[MAX_VALUE];
    for (unsigned long i = 0; i < files && !err; i++) {
        unsigned long d = i / per_dir;
        if (i % per_dir == 0) {
            int n = snprintf(key, sizeof(key), "d%05lu", d);
            err = mindb_create(db, key, (size_t)n, S_IFDIR | 0755, uid, gid, NULL, 0);
            if (err)
                break;
        }
        int n = snprintf(key, sizeof(key), "d%05lu/f%05lu", d, i % per_dir);
        size_t len = rng() % (MAX_VALUE + 1);
        fill_text(value, len);
        /* mindb_put() makes files owned by the process, mode 0644: what
         * a user's own files on the mount look like. */
        err = mindb_put(db, key, (size_t)n, value, len);
    }
    if (err) {
        fprintf(stderr, "%s: writing: %s\n", argv[0], mindb_strerror(err));
        mindb_close(db);
        return 1;
    }
    err = mindb_close(db);
    if (err) {
        fprintf(stderr, "%s: closing: %s\n", argv[0], mindb_strerror(err));
        return 1;
    }
    printf("d%05lu/f%05lu\n", (files - 1) / per_dir, (files - 1) % per_dir);
    return 0;
}
