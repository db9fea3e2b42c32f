/*
 * bench_fs.c - scratch directory and file helpers for the benchmarks in
 * tools/: the filesystem's name, preallocation by writing zeros, and the
 * removal of a scratch directory. bench_fs.h says what each promises.
 */
#include "bench_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <unistd.h>

const char *bench_filesystem_name(const char *path)
{
    struct statfs st;
    if (statfs(path, &st) != 0)
        return "unknown";
    switch ((unsigned long)st.f_type) {
    case 0xEF53:
        return "ext4";
    case 0x58465342:
        return "xfs";
    case 0x9123683E:
        return "btrfs";
    case 0x01021994:
        return "tmpfs";
    case 0x794C7630:
        return "overlayfs";
    case 0x2FC12FC1:
        return "zfs";
    case 0x65735546:
        return "fuse";
    default:
        return "other";
    }
}

int bench_remove_tree(int parent_fd, const char *name)
{
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int rc = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        if (unlinkat(fd, entry->d_name, 0) == 0)
            continue;
        /* unlink() of a directory fails with EISDIR on Linux, EPERM per POSIX. */
        int err =
            (errno == EISDIR || errno == EPERM) ? bench_remove_tree(fd, entry->d_name) : -errno;
        if (err < 0 && rc == 0)
            rc = err;
    }
    closedir(dir);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int bench_write_zeros(int fd, const void *zeros, size_t zeros_bytes, uint64_t len)
{
    for (uint64_t off = 0; off < len;) {
        size_t chunk = len - off < zeros_bytes ? (size_t)(len - off) : zeros_bytes;
        ssize_t n = pwrite(fd, zeros, chunk, (off_t)off);
        if (n < 0)
            return -errno;
        /* A write of nothing would loop forever. */
        if (n == 0)
            return -EIO;
        off += (uint64_t)n;
    }
    return 0;
}
