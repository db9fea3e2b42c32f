/*
 * fuzzutil.h - what the libFuzzer targets share: a scratch directory per
 * process, reading an input field by field, writing and removing files, and
 * the check that ends a run when the product breaks a promise.
 *
 * A failed check prints what was expected and what came, then aborts, so
 * that libFuzzer saves the input as a crash; the product's own crashes,
 * leaks and undefined behaviour are caught by the sanitizers of the build.
 */
#ifndef MINDB_FUZZUTIL_H
#define MINDB_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points, which every target defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn, format(printf, 4, 5))) void
fz_fail(const char *file, int line, const char *expr, const char *fmt, ...);

/* Ends the run when `expr` is false; the format says what was expected and
 * what came instead. */
#define FZ_CHECK(expr, ...)                                                                        \
    do {                                                                                           \
        if (!(expr))                                                                               \
            fz_fail(__FILE__, __LINE__, #expr, __VA_ARGS__);                                       \
    } while (0)

/* An input read front to back. Reads past the end give zeros and empty
 * pieces, so a short input is as valid as a long one. */
struct fz_input {
    const uint8_t *p;
    size_t left;
};

uint8_t fz_u8(struct fz_input *in);
uint16_t fz_u16(struct fz_input *in);
/* The next `len` bytes, or fewer when the input ends first (*got says). */
const uint8_t *fz_take(struct fz_input *in, size_t len, size_t *got);
/* A piece with its length in front of it, little-endian in `length_bytes`
 * bytes (1 to 4). */
const uint8_t *fz_piece(struct fz_input *in, unsigned length_bytes, size_t *len);

/* The process's scratch directory: made at the first call under $TMPDIR
 * (or /tmp), removed at exit. tools/fuzz points TMPDIR at tmpfs. */
const char *fz_scratch(void);

/* Makes `name` under the scratch directory (removing what was there) and
 * returns its path in `out` (at least 4096 bytes). */
void fz_fresh_dir(const char *name, char *out);

/* Removes a directory tree; a path that does not exist is fine. */
void fz_rm_tree(const char *path);

/* Writes `len` bytes as the whole file `name` in directory `dirfd`. */
void fz_write_file(int dirfd, const char *name, const void *data, size_t len);

/* Opens a directory (O_RDONLY | O_DIRECTORY), failing the run on error. */
int fz_open_dir(const char *path);

/* Little-endian fields, as every mindb format has them. */
uint32_t fz_get32(const uint8_t *p);
uint64_t fz_get64(const uint8_t *p);
void fz_put64(uint8_t *p, uint64_t v);

/* Recomputes the checksums of a data segment file (store/segfile.c,
 * store/datafile.c): its header's, and that of every chunk record laid back
 * to back after it whose payload fits the file, so that a fuzzer's edits
 * reach the checks and the decompression behind the checksums. */
void fz_fix_data_segment(uint8_t *seg, size_t len);

#endif /* MINDB_FUZZUTIL_H */
