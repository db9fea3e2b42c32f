/*
 * frame.h - encoding of the log's frames and segment headers (private to
 * wal/ and its tests). The layouts are described in frame.c and
 * docs/FORMAT.md.
 */
#ifndef MINDB_WAL_FRAME_H
#define MINDB_WAL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WAL_BLOCK_BYTES 4096u
#define WAL_FRAME_HEADER_BYTES 16u
#define WAL_FRAME_MAX_PAYLOAD ((1u << 24) - 1u)
#define WAL_FORMAT_VERSION 1u

enum frame_type {
    FRAME_FULL = 1,   /* a whole record */
    FRAME_FIRST = 2,  /* first piece of a record split into frames */
    FRAME_MIDDLE = 3, /* ...a piece between */
    FRAME_LAST = 4,   /* ...its last piece */
    FRAME_PAD = 5,    /* fills a block up to its end before a flush */
    FRAME_BEGIN = 6,  /* a writer's first frame after reopening the log */
};

struct frame_header {
    uint64_t checksum;
    uint32_t salt;
    uint32_t length;
    enum frame_type type;
};

/* Payload of a FRAME_BEGIN: the salt in effect before it. */
#define WAL_BEGIN_PAYLOAD_BYTES 8u

/* The checksum of a frame at log position `pos`: XXH3-64 seeded with `pos`
 * over header bytes 8..15 and the payload, which may come in two pieces
 * (a frame that wraps around the end of the ring). */
uint64_t frame_checksum(uint64_t pos, const uint8_t header[WAL_FRAME_HEADER_BYTES],
                        const void *payload1, size_t len1, const void *payload2, size_t len2);

/* Writes the 16-byte header of a frame at `pos`, checksum included. */
void frame_encode(uint8_t header[WAL_FRAME_HEADER_BYTES], uint64_t pos, enum frame_type type,
                  uint32_t salt, const void *payload1, size_t len1, const void *payload2,
                  size_t len2);

/* Outcome of decoding a header, before the payload is checked. */
enum frame_decode {
    FRAME_DECODE_OK,
    FRAME_DECODE_ZERO, /* all zero: never written */
    FRAME_DECODE_BAD,  /* impossible type or length */
};

/* Decodes a header; `room` is the number of bytes available for the payload
 * before the end of the segment. */
enum frame_decode frame_decode(const uint8_t header[WAL_FRAME_HEADER_BYTES], size_t room,
                               struct frame_header *out);

/* Checks a decoded frame's checksum against its header and payload. */
int frame_verify(const struct frame_header *frame, uint64_t pos,
                 const uint8_t header[WAL_FRAME_HEADER_BYTES], const void *payload);

/* The segment header, in the first block of every segment file. */
struct segment_header {
    uint64_t segment_bytes;
    uint64_t segno;
    uint32_t salt; /* salt in effect where the segment's first frame starts */
};

#define WAL_SEGMENT_HEADER_BYTES 48u

void segment_header_encode(uint8_t out[WAL_SEGMENT_HEADER_BYTES], const struct segment_header *h);

/* Returns 0 on a valid header, -ENOTSUP on a valid header of another format
 * version, -EBADMSG on anything else. */
int segment_header_decode(const uint8_t in[WAL_SEGMENT_HEADER_BYTES], struct segment_header *out);

#endif /* MINDB_WAL_FRAME_H */
