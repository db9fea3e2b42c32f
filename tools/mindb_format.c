/*
 * mindb_format.c - how the mindb tool shows keys, sizes, modes and times,
 * and writes output whole.
 */
#include "mindb_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Code points that are valid but would mislead on a terminal: line and
 * paragraph separators (a key would seem to end), bidirectional overrides
 * (a key would seem spelled otherwise) and the byte order mark. */
static int misleading(uint32_t cp)
{
    return cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/* The length of the printable UTF-8 sequence of more than one byte at p, or
 * 0 when there is none (ASCII, invalid, overlong, a surrogate, a control). */
static size_t utf8_printable(const uint8_t *p, size_t n)
{
    size_t len;
    uint32_t cp, min;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2, cp = p[0] & 0x1f, min = 0x80;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3, cp = p[0] & 0x0f, min = 0x800;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4, cp = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    /* U+0080..U+009F are the C1 controls. */
    if (cp < 0xa0 || misleading(cp))
        return 0;
    return len;
}

void cli_print_key(FILE *out, const void *key, size_t len)
{
    const uint8_t *p = key;
    size_t i = 0;
    while (i < len) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
            putc(p[i++], out);
            continue;
        }
        size_t n = p[i] >= 0x80 ? utf8_printable(p + i, len - i) : 0;
        if (n) {
            fwrite(p + i, 1, n, out);
            i += n;
        } else {
            fprintf(out, "\\x%02x", p[i++]);
        }
    }
}

const char *cli_human(char *buf, uint64_t bytes)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, CLI_HUMAN_BYTES, "%" PRIu64 " B", bytes);
        return buf;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    /* Stop before 1024.0 would print as "1024.0 KiB". */
    while (v >= 1023.95 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(buf, CLI_HUMAN_BYTES, "%.1f %s", v, units[u]);
    return buf;
}

const char *cli_mode_string(char *buf, uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        buf[0] = '-';
        break;
    case S_IFDIR:
        buf[0] = 'd';
        break;
    case S_IFLNK:
        buf[0] = 'l';
        break;
    default:
        buf[0] = '?';
        break;
    }
    static const char rwx[] = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        buf[1 + i] = mode & (1u << (8 - i)) ? rwx[i] : '-';
    /* As ls shows them: lower case when the execute bit is set too. */
    if (mode & S_ISUID)
        buf[3] = mode & S_IXUSR ? 's' : 'S';
    if (mode & S_ISGID)
        buf[6] = mode & S_IXGRP ? 's' : 'S';
    if (mode & S_ISVTX)
        buf[9] = mode & S_IXOTH ? 't' : 'T';
    buf[10] = '\0';
    return buf;
}

const char *cli_time(char *buf, int64_t time_ns, int ns)
{
    /* Floor division, so that times before 1970 keep a positive fraction. */
    int64_t sec = time_ns / 1000000000;
    int64_t frac = time_ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!localtime_r(&t, &tm)) {
        snprintf(buf, CLI_TIME_BYTES, "@%" PRId64, sec);
        return buf;
    }
    size_t n = strftime(buf, CLI_TIME_BYTES, "%Y-%m-%dT%H:%M:%S", &tm);
    if (ns)
        snprintf(buf + n, CLI_TIME_BYTES - n, ".%09" PRId64, frac);
    return buf;
}

int cli_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
