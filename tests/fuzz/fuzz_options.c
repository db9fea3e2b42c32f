/*
 * fuzz_options.c - the daemon's command line (fuse/options.c):
 * options_parse() and options_store() on an argument list made from the
 * input, as main() calls them; nothing is mounted.
 *
 * Input: the arguments after the program's name, each ending with a NUL
 * byte (a last one without it ends with the input), at most 64.
 *
 * Promises checked, besides no crash, leak or undefined behaviour (the
 * parsed configuration freed as main() frees it):
 *  - what options_store() accepts lies within the documented bounds:
 *    compression 1..19, checkpoint_interval at most a day, a dirty_size of
 *    at least 1M when given, timeouts 0..86400 s, and a read-only store
 *    never created;
 *  - a parse that succeeded without --help or --version leaves
 *    default_permissions among the options for libfuse, and the mount
 *    point (when given) as an absolute path.
 *
 * libfuse takes the mount point's real path, so a parse succeeds only with
 * one that exists: the seeds use "." and "/".
 *
 * Seeds: corpus/options/, made by fuzz_seeds (see README).
 *
 * CI runs it for 30 s (tools/fuzz); the long form, an hour:
 *   tools/fuzz --seconds 3600 options
 */
#include "fuzzutil.h"
#include "mindbfs.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 64

static void check_store_options(const struct mindbfs_config *conf, const struct mindb_options *o)
{
    FZ_CHECK(o->compression_level >= 1 && o->compression_level <= 19,
             "a zstd level of 1 to 19, got %d", o->compression_level);
    FZ_CHECK(o->checkpoint_interval_ms <= 86400u * 1000u,
             "a checkpoint interval of at most a day, got %u ms", o->checkpoint_interval_ms);
    FZ_CHECK(!conf->dirty_size || o->dirty_bytes >= (1u << 20),
             "a dirty_size of at least 1M, got %llu bytes", (unsigned long long)o->dirty_bytes);
    FZ_CHECK(conf->attr_timeout >= 0 && conf->attr_timeout <= 86400 && conf->entry_timeout >= 0 &&
                 conf->entry_timeout <= 86400 && conf->negative_timeout >= 0 &&
                 conf->negative_timeout <= 86400,
             "timeouts of 0 to 86400 s, got attr %g entry %g negative %g", conf->attr_timeout,
             conf->entry_timeout, conf->negative_timeout);
    FZ_CHECK(!o->read_only || !o->create, "a read-only store is never created, got create=%d",
             o->create);
    FZ_CHECK(o->read_only == conf->read_only && o->sync_writes == conf->sync,
             "ro and sync as given (%d, %d), got %d, %d", conf->read_only, conf->sync, o->read_only,
             o->sync_writes);
}

static void check_args(const struct mindbfs_config *conf, const struct fuse_args *args)
{
    FZ_CHECK(!conf->mountpoint || conf->mountpoint[0] == '/',
             "the mount point as an absolute path, got %s", conf->mountpoint);
    int found = 0;
    for (int i = 0; i < args->argc; i++)
        if (strcmp(args->argv[i], "-odefault_permissions") == 0)
            found = 1;
    FZ_CHECK(found, "-odefault_permissions among the %d arguments left for libfuse", args->argc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy with a NUL at its end, so that the last argument ends too. */
    char *text = malloc(size + 1);
    FZ_CHECK(text != NULL, "%zu bytes", size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "mindbfs";
    for (size_t at = 0; at < size && argc <= MAX_ARGS; at += strlen(text + at) + 1)
        argv[argc++] = text + at;
    argv[argc] = NULL;

    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct mindbfs_config conf;
    memset(&conf, 0, sizeof conf);
    if (options_parse(&args, &conf) == 0 && !conf.show_help && !conf.show_version) {
        check_args(&conf, &args);
        struct mindb_options o;
        if (options_store(&conf, &o) == 0)
            check_store_options(&conf, &o);
    }
    fuse_opt_free_args(&args);
    options_free(&conf);
    free(text);
    return 0;
}
