/*
 * bench_files - the small-file phases of tools/bench, in one process each,
 * so that what is timed is the filesystem and not a process start per file:
 *
 *   bench_files create DIR FILES DIRS SIZE   FILES files of SIZE bytes spread
 *                                            over DIRS new directories
 *   bench_files read DIR FILES DIRS SIZE     reads them back and checks them
 *
 * Creating ends with syncfs() on DIR's filesystem, timed apart and included
 * in the total: a file is not created, for a user who cares, until it would
 * survive a crash. Each phase prints one line of JSON:
 * {"seconds": S, "sync_seconds": T, ...}.
 *
 * The contents are text, different in every file (its name and a counter
 * are stamped into each line), so a filesystem that compresses sees data
 * that compresses as source code does, and one that stores identical
 * blocks once sees none.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "bench_files: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

/* The contents of file number n: lines of words with n and a counter. */
static void fill(char *buf, size_t size, unsigned long n)
{
    static const char *const words[] = {"static", "int", "return", "struct", "const",
                                        "unsigned", "if", "for", "while", "void"};
    size_t used = 0;
    unsigned long line = 0;
    while (used < size) {
        char tmp[96];
        int len = snprintf(tmp, sizeof(tmp), "%s %s_%lu(%lu, %s);\n", words[line % 10],
                           words[(n + line) % 10], n, line * 7919 % 10007, words[n % 10]);
        size_t take = (size_t)len < size - used ? (size_t)len : size - used;
        memcpy(buf + used, tmp, take);
        used += take;
        line++;
    }
}

static void file_path(char *out, size_t cap, const char *dir, unsigned long n, unsigned long dirs)
{
    snprintf(out, cap, "%s/d%03lu/f%06lu", dir, n % dirs, n);
}

static double sync_dir(const char *dir)
{
    double t0 = now();
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        die("open", dir);
    if (syncfs(fd) < 0)
        die("syncfs", dir);
    close(fd);
    return now() - t0;
}

static int usage(FILE *to, int status)
{
    fprintf(to, "Usage: bench_files create|read DIR FILES DIRS SIZE\n"
                "  create  makes DIRS directories d000... in DIR and FILES files of SIZE\n"
                "          bytes spread over them, then syncfs()\n"
                "  read    reads every file back and checks its contents\n"
                "Prints one line of JSON: the seconds of the phase, syncfs() included.\n");
    return status;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
        return usage(stdout, 0);
    if (argc != 6)
        return usage(stderr, 2);
    int create = !strcmp(argv[1], "create");
    if (!create && strcmp(argv[1], "read"))
        return usage(stderr, 2);
    const char *dir = argv[2];
    unsigned long files = strtoul(argv[3], NULL, 10);
    unsigned long dirs = strtoul(argv[4], NULL, 10);
    size_t size = strtoul(argv[5], NULL, 10);
    if (!files || !dirs || dirs > 1000 || !size || size > (1u << 24)) {
        fprintf(stderr, "bench_files: FILES and SIZE (at most 16 MiB) must be positive, "
                        "DIRS 1..1000\n");
        return 2;
    }
    char *want = malloc(size), *got = malloc(size + 1);
    if (!want || !got)
        die("malloc", "");
    char path[4096];

    double t0 = now();
    if (create) {
        for (unsigned long d = 0; d < dirs; d++) {
            snprintf(path, sizeof(path), "%s/d%03lu", dir, d);
            if (mkdir(path, 0755) < 0)
                die("mkdir", path);
        }
    }
    for (unsigned long n = 0; n < files; n++) {
        file_path(path, sizeof(path), dir, n, dirs);
        fill(want, size, n);
        if (create) {
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0)
                die("create", path);
            if (write(fd, want, size) != (ssize_t)size)
                die("write", path);
            if (close(fd) < 0)
                die("close", path);
        } else {
            int fd = open(path, O_RDONLY);
            if (fd < 0)
                die("open", path);
            ssize_t n_read = read(fd, got, size + 1);
            if (n_read < 0)
                die("read", path);
            if ((size_t)n_read != size || memcmp(got, want, size)) {
                fprintf(stderr, "bench_files: %s: %zd bytes read, not the %zu written "
                                "or not the same bytes\n", path, n_read, size);
                return 1;
            }
            close(fd);
        }
    }
    double phase = now() - t0;
    double sync = create ? sync_dir(dir) : 0;
    printf("{\"seconds\": %.6f, \"sync_seconds\": %.6f, \"files\": %lu, \"bytes\": %llu}\n",
           phase + sync, sync, files, (unsigned long long)files * size);
    free(want);
    free(got);
    return 0;
}
