/*
 * frame.c - the bytes of a frame and of a segment header.
 *
 * A frame is a 16-byte header followed by its payload, little-endian:
 *
 *   0  u64  checksum  XXH3-64, seeded with the frame's log position, over
 *                     header bytes 8..15 and the payload
 *   8  u32  salt      the writer run that wrote the frame (see writer.c)
 *   12 u32  type << 24 | payload length
 *
 * Seeding the checksum with the position makes a frame left from an earlier
 * use of the same file space fail, since that space now has another
 * position; covering the header makes a torn or flipped header fail too. The
 * salt separates runs of the writer that reused the same positions after a
 * crash. Lengths are limited to 24 bits: larger records are split.
 *
 * The segment header fills the first block of every segment file:
 *
 *   0  u8[8] magic      "MINDBWAL"
 *   8  u32   version    WAL_FORMAT_VERSION
 *   12 u32   block size 4096
 *   16 u64   segment_bytes
 *   24 u64   segno      the segment's number; position = segno * segment_bytes
 *   32 u32   salt       salt in effect where the segment's first frame starts
 *   36 u32   reserved   0
 *   40 u64   checksum   XXH3-64 (seed 0) of bytes 0..39
 *
 * and zeros to the end of the block.
 */
#include "frame.h"

#include <errno.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

static const uint8_t segment_magic[8] = {'M', 'I', 'N', 'D', 'B', 'W', 'A', 'L'};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

uint64_t frame_checksum(uint64_t pos, const uint8_t header[WAL_FRAME_HEADER_BYTES],
                        const void *payload1, size_t len1, const void *payload2, size_t len2)
{
    /* One call over a contiguous frame is the common case and the fastest;
     * the streaming state is only needed when the payload is in two pieces. */
    if (len2 == 0 && (const uint8_t *)payload1 == header + WAL_FRAME_HEADER_BYTES)
        return XXH3_64bits_withSeed(header + 8, 8 + len1, pos);

    XXH3_state_t state;
    XXH3_INITSTATE(&state);
    XXH3_64bits_reset_withSeed(&state, pos);
    XXH3_64bits_update(&state, header + 8, 8);
    if (len1)
        XXH3_64bits_update(&state, payload1, len1);
    if (len2)
        XXH3_64bits_update(&state, payload2, len2);
    return XXH3_64bits_digest(&state);
}

void frame_encode(uint8_t header[WAL_FRAME_HEADER_BYTES], uint64_t pos, enum frame_type type,
                  uint32_t salt, const void *payload1, size_t len1, const void *payload2,
                  size_t len2)
{
    put32(header + 8, salt);
    put32(header + 12, (uint32_t)type << 24 | (uint32_t)(len1 + len2));
    put64(header, frame_checksum(pos, header, payload1, len1, payload2, len2));
}

enum frame_decode frame_decode(const uint8_t header[WAL_FRAME_HEADER_BYTES], size_t room,
                               struct frame_header *out)
{
    static const uint8_t zero[WAL_FRAME_HEADER_BYTES];
    if (memcmp(header, zero, sizeof zero) == 0)
        return FRAME_DECODE_ZERO;

    uint32_t type_and_length = get32(header + 12);
    out->checksum = get64(header);
    out->salt = get32(header + 8);
    out->type = (enum frame_type)(type_and_length >> 24);
    out->length = type_and_length & WAL_FRAME_MAX_PAYLOAD;
    if (out->type < FRAME_FULL || out->type > FRAME_BEGIN || out->length > room)
        return FRAME_DECODE_BAD;
    if (out->type == FRAME_BEGIN && out->length != WAL_BEGIN_PAYLOAD_BYTES)
        return FRAME_DECODE_BAD;
    return FRAME_DECODE_OK;
}

int frame_verify(const struct frame_header *frame, uint64_t pos,
                 const uint8_t header[WAL_FRAME_HEADER_BYTES], const void *payload)
{
    return frame_checksum(pos, header, payload, frame->length, NULL, 0) == frame->checksum;
}

void segment_header_encode(uint8_t out[WAL_SEGMENT_HEADER_BYTES], const struct segment_header *h)
{
    memcpy(out, segment_magic, sizeof segment_magic);
    put32(out + 8, WAL_FORMAT_VERSION);
    put32(out + 12, WAL_BLOCK_BYTES);
    put64(out + 16, h->segment_bytes);
    put64(out + 24, h->segno);
    put32(out + 32, h->salt);
    put32(out + 36, 0);
    put64(out + 40, XXH3_64bits(out, 40));
}

int segment_header_decode(const uint8_t in[WAL_SEGMENT_HEADER_BYTES], struct segment_header *out)
{
    if (memcmp(in, segment_magic, sizeof segment_magic) != 0)
        return -EBADMSG;
    if (get64(in + 40) != XXH3_64bits(in, 40))
        return -EBADMSG;
    if (get32(in + 8) != WAL_FORMAT_VERSION)
        return -ENOTSUP;
    if (get32(in + 12) != WAL_BLOCK_BYTES || get32(in + 36) != 0)
        return -EBADMSG;
    out->segment_bytes = get64(in + 16);
    out->segno = get64(in + 24);
    out->salt = get32(in + 32);
    if (out->segment_bytes % WAL_BLOCK_BYTES != 0 || out->segment_bytes < 16 * WAL_BLOCK_BYTES)
        return -EBADMSG;
    return 0;
}
