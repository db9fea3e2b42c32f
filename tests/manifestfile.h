/*
 * manifestfile.h - manifests written by hand (docs/FORMAT.md), for tests
 * of how a store loads what another build, or damage, left: objects
 * without xattrs or chunks, keys, and the file around them.
 */
#ifndef MINDB_TESTS_MANIFESTFILE_H
#define MINDB_TESTS_MANIFESTFILE_H

#include <stddef.h>
#include <stdint.h>

/* A manifest's body being written; CHECK fails past its room. */
struct mf_body {
    uint8_t p[1 << 16];
    size_t len;
    uint64_t objects, keys;
};

/* An empty object (no xattrs, size 0, no chunks) owned by the caller's
 * euid and egid, with all three times `time_ns`. */
void mf_object(struct mf_body *b, uint64_t id, uint32_t mode, int64_t time_ns);
void mf_key(struct mf_body *b, const char *key, uint64_t id);

/* The greatest manifest name in `dir` ("" when none). */
void mf_newest(const char *dir, char name[64]);

/* Replaces every manifest of the closed store `dir` with one holding `b`,
 * at the newest one's sequence number and log position (so the log after
 * it must be empty) and with `next_id` in its header. */
void mf_replace(const char *dir, const struct mf_body *b, uint64_t next_id);

#endif /* MINDB_TESTS_MANIFESTFILE_H */
