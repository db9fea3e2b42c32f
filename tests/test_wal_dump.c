/*
 * test_wal_dump.c - the wal_dump tool, run as a program: its listing matches
 * what was appended, it names where and why a damaged log ends, it refuses a
 * log a writer holds, and its usage errors exit 2.
 *
 * The path of the wal_dump binary is the first argument (CTest passes it).
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *dump_path;

/* Runs wal_dump with `args`; returns its exit status and its output. */
static int run_dump(const char *args, char *out, size_t out_len)
{
    char cmd[TU_PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", dump_path, args);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void make_log(const char *dir, struct tu_model *m, size_t records)
{
    struct wal_options o;
    tu_options(&o, 64 * 1024, 64 * 1024);
    wal *log = TU_OPEN(dir, &o);
    for (size_t i = 0; i < records; i++)
        CHECK_OK(tu_append(log, m, i, 10 + i * 100));
    CHECK_OK(wal_close(log));
}

static void test_lists_records(void)
{
    char dir[TU_PATH_MAX], args[TU_PATH_MAX + 16];
    static char out[1 << 16];
    tu_path(dir, "log");
    struct tu_model m;
    tu_model_init(&m);
    make_log(dir, &m, 20);

    snprintf(args, sizeof args, "'%s'", dir);
    CHECK_EQ(run_dump(args, out, sizeof out), 0);
    /* One line per record: "<position> <length>", in order. */
    const char *line = out;
    for (size_t i = 0; i < m.n; i++) {
        unsigned long long pos;
        size_t len;
        CHECKF(sscanf(line, "%llu %zu", &pos, &len) == 2, "line %zu: %s", i, line);
        CHECK_EQ_U(pos, m.r[i].t.pos);
        CHECK_EQ_U(len, m.r[i].len);
        line = strchr(line, '\n');
        CHECK(line != NULL);
        line++;
    }
    CHECKF(strstr(line, "records 20,") != NULL, "%s", line);
    CHECKF(strstr(line, "end of log") != NULL, "%s", line);
    tu_model_free(&m);
}

static void test_names_damage(void)
{
    char dir[TU_PATH_MAX], seg[TU_PATH_MAX], args[TU_PATH_MAX + 16];
    static char out[1 << 16];
    tu_path(dir, "log");
    struct tu_model m;
    tu_model_init(&m);
    make_log(dir, &m, 5);
    /* One bit of the last record's payload: the log ends there. */
    const struct tu_rec *last = &m.r[m.n - 1];
    uint64_t seg_bytes = 64 * 1024;
    tu_segment_path(seg, dir, last->t.pos / seg_bytes);
    tu_flip_bit(seg, last->t.pos % seg_bytes + 20, 3);

    snprintf(args, sizeof args, "-q '%s'", dir);
    CHECK_EQ(run_dump(args, out, sizeof out), 1);
    char want[64];
    snprintf(want, sizeof want, "ends at %llu: checksum mismatch",
             (unsigned long long)last->t.pos);
    CHECKF(strstr(out, want) != NULL, "wanted \"%s\" in:\n%s", want, out);
    CHECKF(strstr(out, "records 4,") != NULL, "%s", out);
    tu_model_free(&m);
}

static void test_refuses_held_log(void)
{
    char dir[TU_PATH_MAX], args[TU_PATH_MAX + 16];
    static char out[4096];
    tu_path(dir, "log");
    struct wal_options o;
    tu_options(&o, 64 * 1024, 64 * 1024);
    wal *log = TU_OPEN(dir, &o);
    snprintf(args, sizeof args, "'%s'", dir);
    CHECK_EQ(run_dump(args, out, sizeof out), 1);
    CHECKF(strstr(out, "in use by a writer") != NULL, "%s", out);
    CHECK_OK(wal_close(log));
}

static void test_usage(void)
{
    static char out[8192];
    CHECK_EQ(run_dump("--help", out, sizeof out), 0);
    CHECK(strstr(out, "usage: wal_dump") != NULL);
    CHECK_EQ(run_dump("", out, sizeof out), 2);
    CHECK_EQ(run_dump("--hex nope x", out, sizeof out), 2);
    CHECK_EQ(run_dump("--no-such-option x", out, sizeof out), 2);
    CHECK_EQ(run_dump("/nonexistent/log", out, sizeof out), 1);
    CHECK(strstr(out, "No such file or directory") != NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_wal_dump PATH_TO_WAL_DUMP [SUBTEST...]\n");
        return 2;
    }
    dump_path = argv[1];
    tu_init(argc - 1, argv + 1);
    tu_run("lists_records", test_lists_records);
    tu_run("names_damage", test_names_damage);
    tu_run("refuses_held_log", test_refuses_held_log);
    tu_run("usage", test_usage);
    return tu_finish();
}
