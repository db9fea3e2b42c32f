/*
 * options.c - the command line, through libfuse's option parser.
 *
 * mindbfs's own options are taken out of the argument list here; the
 * connection options (writeback_cache, max_write...) are taken by
 * fuse_parse_conn_info_opts(), the daemon's (-f, -d, the mount point) by
 * fuse_parse_cmdline(), and whatever is left goes to fuse_session_new(),
 * which refuses what it does not know. Options that mount(8) and
 * mount.fuse3 pass along for every filesystem are accepted and ignored.
 */
#include "mindbfs.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_COMPRESSION 3
#define DEFAULT_CHECKPOINT_INTERVAL 30
#define DEFAULT_TIMEOUT 1.0
/* The daemon's memory is the chunk cache, the dirty data, and the index
 * (about 270 bytes per key), plus for the length of a checkpoint the dirty
 * data it is writing out: 32M + 2 x 32M leave room for the index of a few
 * hundred thousand files within 128 MiB. 32M of dirty data instead of 64M
 * measured within the noise on a 1 GiB write; a smaller cache costs little,
 * since the kernel's page cache holds what is read again. docs/FUSE.md,
 * "Mount time and memory". */
#define DEFAULT_CACHE_SIZE "32M"
#define DEFAULT_DIRTY_SIZE "32M"

enum {
    KEY_HELP = 1,
    KEY_VERSION,
    KEY_RO,
    KEY_ALLOW_OTHER,
    KEY_DROP,
};

#define OPT(t, field, value) {t, offsetof(struct mindbfs_config, field), value}

static const struct fuse_opt option_spec[] = {
    OPT("compression=%u", compression, 0),
    OPT("cache_size=%s", cache_size, 0),
    OPT("dirty_size=%s", dirty_size, 0),
    OPT("checkpoint_interval=%u", checkpoint_interval, 0),
    OPT("sync", sync, 1),
    OPT("async", sync, 0),
    OPT("attr_timeout=%lf", attr_timeout, 0),
    OPT("entry_timeout=%lf", entry_timeout, 0),
    OPT("negative_timeout=%lf", negative_timeout, 0),
    /* Seen, and left for libfuse too: */
    OPT("max_read=%u", max_read, 0),
    FUSE_OPT_KEY("max_read=", FUSE_OPT_KEY_KEEP),
    FUSE_OPT_KEY("ro", KEY_RO),
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    /* Given by mount(8) or fstab for every filesystem; mount.fuse3 drops
     * some of them itself, not all in every version. */
    FUSE_OPT_KEY("defaults", KEY_DROP),
    FUSE_OPT_KEY("auto", KEY_DROP),
    FUSE_OPT_KEY("noauto", KEY_DROP),
    FUSE_OPT_KEY("nofail", KEY_DROP),
    FUSE_OPT_KEY("_netdev", KEY_DROP),
    FUSE_OPT_KEY("user", KEY_DROP),
    FUSE_OPT_KEY("users", KEY_DROP),
    FUSE_OPT_KEY("relatime", KEY_DROP),
    FUSE_OPT_KEY("strictatime", KEY_DROP),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_END,
};

static int option_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
    (void)out;
    struct mindbfs_config *conf = data;
    switch (key) {
    case FUSE_OPT_KEY_NONOPT:
        if (!conf->store) {
            conf->store = strdup(arg);
            return conf->store ? 0 : -1;
        }
        return 1; /* the mount point, for fuse_parse_cmdline() */
    case FUSE_OPT_KEY_OPT:
        /* x-systemd.automount, x-gvfs-show...: for mount(8) and systemd. */
        return strncmp(arg, "x-", 2) == 0 ? 0 : 1;
    case KEY_HELP:
        conf->show_help = 1;
        return 0;
    case KEY_VERSION:
        conf->show_version = 1;
        return 0;
    case KEY_RO:
        conf->read_only = 1;
        return 1;
    case KEY_ALLOW_OTHER:
        conf->allow_other = 1;
        return 1;
    case KEY_DROP:
        return 0;
    default:
        return 1;
    }
}

int options_parse(struct fuse_args *args, struct mindbfs_config *conf)
{
    conf->compression = DEFAULT_COMPRESSION;
    conf->checkpoint_interval = DEFAULT_CHECKPOINT_INTERVAL;
    conf->attr_timeout = conf->entry_timeout = conf->negative_timeout = DEFAULT_TIMEOUT;
    if (fuse_opt_parse(args, conf, option_spec, option_proc) != 0)
        return -1;
    if (conf->show_help || conf->show_version)
        return 0;
    conf->conn_opts = fuse_parse_conn_info_opts(args);
    if (!conf->conn_opts)
        return -1;
    struct fuse_cmdline_opts cmd;
    if (fuse_parse_cmdline(args, &cmd) != 0) {
        /* libfuse keeps the mount point it took before a later argument
         * failed: freeing it is the caller's job. */
        free(cmd.mountpoint);
        return -1;
    }
    conf->mountpoint = cmd.mountpoint;
    conf->foreground = cmd.foreground;
    conf->debug = cmd.debug;
    conf->singlethread = cmd.singlethread;
    conf->clone_fd = cmd.clone_fd;
    conf->max_threads = cmd.max_threads;
    conf->max_idle_threads = cmd.max_idle_threads;
    if (cmd.show_help)
        conf->show_help = 1;
    if (cmd.show_version)
        conf->show_version = 1;
    /* Permissions are checked by the kernel against the modes, as on a
     * local filesystem; with allow_other that is what keeps users apart. */
    if (fuse_opt_add_arg(args, "-odefault_permissions") != 0)
        return -1;
    return 0;
}

/* Parses "64M"-style sizes: a number with an optional K, M or G (powers of
 * 1024). */
static int parse_size(const char *what, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (errno || end == text || *end || text[0] == '-' || v > (UINT64_MAX >> shift)) {
        fprintf(stderr, "mindbfs: invalid %s '%s' (a size such as 64M)\n", what, text);
        return -EINVAL;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

int options_store(const struct mindbfs_config *conf, struct mindb_options *o)
{
    mindb_options_init(o);
    o->create = !conf->read_only;
    o->read_only = conf->read_only;
    o->sync_writes = conf->sync;
    if (conf->compression < 1 || conf->compression > 19) {
        fprintf(stderr, "mindbfs: invalid compression=%u (a zstd level, 1 to 19)\n",
                conf->compression);
        return -EINVAL;
    }
    o->compression_level = (int)conf->compression;
    const char *cache = conf->cache_size ? conf->cache_size : DEFAULT_CACHE_SIZE;
    const char *dirty = conf->dirty_size ? conf->dirty_size : DEFAULT_DIRTY_SIZE;
    if (parse_size("cache_size", cache, &o->cache_bytes) ||
        parse_size("dirty_size", dirty, &o->dirty_bytes))
        return -EINVAL;
    if (o->dirty_bytes < (1u << 20)) {
        fprintf(stderr, "mindbfs: invalid dirty_size=%s (at least 1M)\n", dirty);
        return -EINVAL;
    }
    if (conf->checkpoint_interval > 86400) {
        fprintf(stderr, "mindbfs: invalid checkpoint_interval=%u (seconds, at most 86400)\n",
                conf->checkpoint_interval);
        return -EINVAL;
    }
    o->checkpoint_interval_ms = conf->checkpoint_interval * 1000u;
    const struct {
        const char *name;
        double value;
    } timeouts[] = {{"attr_timeout", conf->attr_timeout},
                    {"entry_timeout", conf->entry_timeout},
                    {"negative_timeout", conf->negative_timeout}};
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        if (!(timeouts[i].value >= 0 && timeouts[i].value <= 86400)) {
            fprintf(stderr, "mindbfs: invalid %s=%g (seconds, 0 to 86400)\n", timeouts[i].name,
                    timeouts[i].value);
            return -EINVAL;
        }
    }
    return 0;
}

void options_free(struct mindbfs_config *conf)
{
    free(conf->store);
    free(conf->mountpoint);
    free(conf->cache_size);
    free(conf->dirty_size);
    free(conf->conn_opts);
}

void options_help(const char *prog)
{
    printf("usage: %s STORE_DIR MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]\n"
           "\n"
           "Mounts the mindb store in STORE_DIR (created when missing or empty) at\n"
           "MOUNTPOINT. Detaches once the mount has succeeded; start-up errors are\n"
           "printed here and exit with status 1. Unmount with umount or fusermount3 -u:\n"
           "the store is committed and checkpointed, then the daemon exits.\n"
           "\n"
           "mindbfs options:\n"
           "    -o compression=N          zstd level of stored data, 1..19 (default %d)\n"
           "    -o cache_size=SIZE        decompressed data kept for reads (default %s)\n"
           "    -o dirty_size=SIZE        written data held in memory before it must be\n"
           "                              checkpointed (default %s); the daemon holds\n"
           "                              about cache_size + dirty_size + 270 bytes a\n"
           "                              file, and during a checkpoint dirty_size more\n"
           "    -o checkpoint_interval=S  checkpoint after S seconds with changes; 0 only\n"
           "                              by size (default %d)\n"
           "    -o sync                   every change is durable before its call returns\n"
           "                              (default: durable at fsync)\n"
           "    -o writeback_cache        the kernel gathers writes in its page cache (default)\n"
           "    -o no_writeback_cache     every write goes to the daemon as it is made\n"
           "    -o attr_timeout=S         seconds the kernel trusts attributes (default %g)\n"
           "    -o entry_timeout=S        seconds the kernel trusts names (default %g)\n"
           "    -o negative_timeout=S     seconds the kernel trusts a missing name (default %g)\n"
           "    -o ro                     read-only: the store is opened without changes\n"
           "    -o allow_other            other users may use the mount (permissions are\n"
           "                              always checked, as default_permissions does)\n"
           "    -h, --help                this help\n"
           "    -V, --version             the version\n"
           "\n"
           "In /etc/fstab:  STORE_DIR MOUNTPOINT fuse.mindbfs defaults 0 0\n"
           "\n",
           prog, DEFAULT_COMPRESSION, DEFAULT_CACHE_SIZE, DEFAULT_DIRTY_SIZE,
           DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_TIMEOUT,
           DEFAULT_TIMEOUT, DEFAULT_TIMEOUT);
    printf("libfuse options:\n");
    fflush(stdout);
    fuse_cmdline_help();
    fuse_lowlevel_help();
}
