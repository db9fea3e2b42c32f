/*
 * test_frame.c - the encoding of frames and segment headers (frame.h):
 * round trips, the documented byte layout, and that every single-bit flip,
 * a frame read at another position and an impossible header are rejected.
 */
#include "frame.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

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

/* The checksum as the format documents it, computed without frame.c. */
static uint64_t reference_checksum(uint64_t pos, const uint8_t *header, const void *payload,
                                   size_t len)
{
    XXH3_state_t *state = XXH3_createState();
    CHECK(state != NULL);
    XXH3_64bits_reset_withSeed(state, pos);
    XXH3_64bits_update(state, header + 8, 8);
    if (len)
        XXH3_64bits_update(state, payload, len);
    uint64_t sum = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return sum;
}

static const uint64_t positions[] = {4096, 4096 + 24, 123456789, (1ull << 40) + 17,
                                     UINT64_MAX - 100};

static void test_round_trip(void)
{
    static const size_t lengths[] = {0, 1, 100, 4000, WAL_BEGIN_PAYLOAD_BYTES};
    uint8_t *frame = malloc(WAL_FRAME_HEADER_BYTES + 4000);
    uint8_t *separate = malloc(4000);
    CHECK(frame && separate);
    uint64_t rng = 1;
    int checked = 0;

    for (int type = FRAME_FULL; type <= FRAME_BEGIN; type++) {
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            size_t len = lengths[li];
            for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
                uint64_t pos = positions[pi];
                uint32_t salt = (uint32_t)tu_rand(&rng);
                uint8_t *payload = frame + WAL_FRAME_HEADER_BYTES;
                for (size_t i = 0; i < len; i++)
                    payload[i] = (uint8_t)tu_rand(&rng);
                memcpy(separate, payload, len);

                frame_encode(frame, pos, (enum frame_type)type, salt, payload, len, NULL, 0);

                /* The documented layout. */
                CHECK_EQ_U(get32(frame + 8), salt);
                CHECK_EQ_U(get32(frame + 12), (uint32_t)type << 24 | (uint32_t)len);
                CHECK_EQ_U(get64(frame), reference_checksum(pos, frame, payload, len));
                CHECK_EQ_U(get64(frame), frame_checksum(pos, frame, separate, len, NULL, 0));

                /* A payload in two pieces (wrapping the ring) encodes the
                 * same header. */
                uint8_t two[WAL_FRAME_HEADER_BYTES];
                size_t cut = len / 3;
                frame_encode(two, pos, (enum frame_type)type, salt, separate, cut, separate + cut,
                             len - cut);
                CHECK(memcmp(two, frame, WAL_FRAME_HEADER_BYTES) == 0);
                CHECK_EQ_U(frame_checksum(pos, frame, separate, cut, separate + cut, len - cut),
                           get64(frame));

                struct frame_header h;
                memset(&h, 0xee, sizeof h);
                enum frame_decode d = frame_decode(frame, len, &h);
                if (type == FRAME_BEGIN && len != WAL_BEGIN_PAYLOAD_BYTES) {
                    /* A BEGIN frame carries exactly the previous salt. */
                    CHECKF(d == FRAME_DECODE_BAD, "BEGIN of %zu bytes decoded as %d", len, d);
                    continue;
                }
                CHECKF(d == FRAME_DECODE_OK, "type %d len %zu decoded as %d", type, len, d);
                CHECK_EQ(h.type, type);
                CHECK_EQ_U(h.length, len);
                CHECK_EQ_U(h.salt, salt);
                CHECK_EQ_U(h.checksum, get64(frame));
                CHECK(frame_verify(&h, pos, frame, payload));
                CHECK(frame_verify(&h, pos, frame, separate));

                /* More room than needed is fine; less is not. */
                CHECK(frame_decode(frame, len + 5000, &h) == FRAME_DECODE_OK);
                if (len > 0)
                    CHECK(frame_decode(frame, len - 1, &h) == FRAME_DECODE_BAD);

                /* The same bytes at any other position are rejected. */
                CHECK(frame_decode(frame, len, &h) == FRAME_DECODE_OK);
                static const uint64_t deltas[] = {1, 16, 4096, 1ull << 32, 1ull << 63};
                for (size_t di = 0; di < sizeof deltas / sizeof deltas[0]; di++) {
                    CHECKF(!frame_verify(&h, pos + deltas[di], frame, payload),
                           "frame of %zu bytes at %llu verified at %llu", len,
                           (unsigned long long)pos, (unsigned long long)(pos + deltas[di]));
                    CHECK(!frame_verify(&h, pos - deltas[di], frame, payload));
                }
                checked++;
            }
        }
    }
    tu_note("%d frames round-tripped", checked);
    free(frame);
    free(separate);
}

/* Flips every bit of a frame (header and payload): each flip must be
 * rejected by frame_decode or by frame_verify. */
static void test_bit_flips(void)
{
    enum { PAYLOAD = 64, ROOM = WAL_BLOCK_BYTES - WAL_FRAME_HEADER_BYTES };
    static const int types[] = {FRAME_FULL, FRAME_FIRST, FRAME_MIDDLE, FRAME_LAST, FRAME_PAD};
    uint8_t orig[WAL_FRAME_HEADER_BYTES + ROOM];
    uint8_t buf[WAL_FRAME_HEADER_BYTES + ROOM];
    uint64_t rng = 7;
    long decode_rejects = 0, verify_rejects = 0;

    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
            uint64_t pos = positions[pi];
            /* The bytes after the frame are zero, as in a fresh block, so a
             * flip that makes the length longer reads zeros. */
            memset(orig, 0, sizeof orig);
            for (size_t i = 0; i < PAYLOAD; i++)
                orig[WAL_FRAME_HEADER_BYTES + i] = (uint8_t)tu_rand(&rng);
            frame_encode(orig, pos, (enum frame_type)types[ti], (uint32_t)tu_rand(&rng),
                         orig + WAL_FRAME_HEADER_BYTES, PAYLOAD, NULL, 0);
            struct frame_header h;
            CHECK(frame_decode(orig, ROOM, &h) == FRAME_DECODE_OK);
            CHECK(frame_verify(&h, pos, orig, orig + WAL_FRAME_HEADER_BYTES));

            for (size_t bit = 0; bit < (WAL_FRAME_HEADER_BYTES + PAYLOAD) * 8; bit++) {
                memcpy(buf, orig, sizeof buf);
                buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                enum frame_decode d = frame_decode(buf, ROOM, &h);
                CHECKF(d != FRAME_DECODE_ZERO, "bit %zu: a flipped frame decoded as zero", bit);
                if (d == FRAME_DECODE_BAD) {
                    decode_rejects++;
                    continue;
                }
                CHECKF(!frame_verify(&h, pos, buf, buf + WAL_FRAME_HEADER_BYTES),
                       "type %d at %llu: flipping bit %zu (byte %zu) was not detected", types[ti],
                       (unsigned long long)pos, bit, bit / 8);
                verify_rejects++;
            }
        }
    }

    /* Two random flips at a time, for good measure. */
    for (int trial = 0; trial < 20000; trial++) {
        uint64_t pos = positions[trial % 5];
        memset(orig, 0, sizeof orig);
        for (size_t i = 0; i < PAYLOAD; i++)
            orig[WAL_FRAME_HEADER_BYTES + i] = (uint8_t)tu_rand(&rng);
        frame_encode(orig, pos, FRAME_FULL, 99, orig + WAL_FRAME_HEADER_BYTES, PAYLOAD, NULL, 0);
        memcpy(buf, orig, sizeof buf);
        size_t b1 = tu_rand(&rng) % ((WAL_FRAME_HEADER_BYTES + PAYLOAD) * 8);
        size_t b2 = tu_rand(&rng) % ((WAL_FRAME_HEADER_BYTES + PAYLOAD) * 8);
        if (b1 == b2)
            continue;
        buf[b1 / 8] ^= (uint8_t)(1u << (b1 % 8));
        buf[b2 / 8] ^= (uint8_t)(1u << (b2 % 8));
        struct frame_header h;
        if (frame_decode(buf, ROOM, &h) == FRAME_DECODE_OK)
            CHECKF(!frame_verify(&h, pos, buf, buf + WAL_FRAME_HEADER_BYTES),
                   "flipping bits %zu and %zu was not detected", b1, b2);
    }
    tu_note("single flips: %ld rejected by frame_decode, %ld by frame_verify", decode_rejects,
            verify_rejects);
}

static void test_zero_and_bad_headers(void)
{
    uint8_t h0[WAL_FRAME_HEADER_BYTES] = {0};
    struct frame_header h;
    CHECK(frame_decode(h0, 0, &h) == FRAME_DECODE_ZERO);
    CHECK(frame_decode(h0, 1 << 20, &h) == FRAME_DECODE_ZERO);

    /* Any single non-zero byte makes it something else than ZERO. */
    for (size_t i = 0; i < WAL_FRAME_HEADER_BYTES; i++) {
        uint8_t b[WAL_FRAME_HEADER_BYTES] = {0};
        b[i] = 1;
        CHECKF(frame_decode(b, 1 << 20, &h) != FRAME_DECODE_ZERO, "byte %zu", i);
    }

    /* Impossible types, with a valid checksum. */
    uint8_t payload[32] = {1, 2, 3};
    for (unsigned type = 0; type < 256; type++) {
        if (type >= FRAME_FULL && type <= FRAME_BEGIN)
            continue;
        uint8_t b[WAL_FRAME_HEADER_BYTES];
        put32(b + 8, 1234);
        put32(b + 12, type << 24 | 4u);
        put64(b, reference_checksum(8192, b, payload, 4));
        CHECKF(frame_decode(b, 4096, &h) == FRAME_DECODE_BAD, "type %u", type);
    }

    /* A length beyond the room left in the segment. */
    uint8_t b[WAL_FRAME_HEADER_BYTES];
    frame_encode(b, 8192, FRAME_FULL, 5, payload, 32, NULL, 0);
    CHECK(frame_decode(b, 32, &h) == FRAME_DECODE_OK);
    CHECK(frame_decode(b, 31, &h) == FRAME_DECODE_BAD);
    CHECK(frame_decode(b, 0, &h) == FRAME_DECODE_BAD);

    /* The largest length a frame can carry decodes when there is room. */
    put32(b + 12, (uint32_t)FRAME_MIDDLE << 24 | WAL_FRAME_MAX_PAYLOAD);
    CHECK(frame_decode(b, WAL_FRAME_MAX_PAYLOAD, &h) == FRAME_DECODE_OK);
    CHECK_EQ_U(h.length, WAL_FRAME_MAX_PAYLOAD);
    CHECK(frame_decode(b, WAL_FRAME_MAX_PAYLOAD - 1, &h) == FRAME_DECODE_BAD);
}

static void test_segment_header(void)
{
    static const struct segment_header cases[] = {
        {.segment_bytes = 16 * WAL_BLOCK_BYTES, .segno = 0, .salt = 0},
        {.segment_bytes = 64ull << 20, .segno = 1, .salt = 0xdeadbeef},
        {.segment_bytes = 1ull << 32, .segno = (1ull << 40) + 3, .salt = 1},
        {.segment_bytes = 20 * WAL_BLOCK_BYTES, .segno = UINT64_MAX / (20 * 4096), .salt = 7},
    };
    long ebadmsg = 0, enotsup = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t buf[WAL_SEGMENT_HEADER_BYTES];
        memset(buf, 0x55, sizeof buf);
        segment_header_encode(buf, &cases[c]);
        struct segment_header out;
        memset(&out, 0, sizeof out);
        CHECK_OK(segment_header_decode(buf, &out));
        CHECK_EQ_U(out.segment_bytes, cases[c].segment_bytes);
        CHECK_EQ_U(out.segno, cases[c].segno);
        CHECK_EQ_U(out.salt, cases[c].salt);

        /* The layout documented in frame.c. */
        CHECK(memcmp(buf, "MINDBWAL", 8) == 0);
        CHECK_EQ_U(get32(buf + 8), WAL_FORMAT_VERSION);
        CHECK_EQ_U(get32(buf + 12), WAL_BLOCK_BYTES);
        CHECK_EQ_U(get64(buf + 16), cases[c].segment_bytes);
        CHECK_EQ_U(get64(buf + 24), cases[c].segno);
        CHECK_EQ_U(get32(buf + 32), cases[c].salt);
        CHECK_EQ_U(get32(buf + 36), 0);
        CHECK_EQ_U(get64(buf + 40), XXH3_64bits(buf, 40));

        for (size_t bit = 0; bit < WAL_SEGMENT_HEADER_BYTES * 8; bit++) {
            uint8_t flipped[WAL_SEGMENT_HEADER_BYTES];
            memcpy(flipped, buf, sizeof buf);
            flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            int rc = segment_header_decode(flipped, &out);
            CHECKF(rc < 0, "case %zu: flipping bit %zu (byte %zu) was not detected", c, bit,
                   bit / 8);
            if (rc == -EBADMSG)
                ebadmsg++;
            else if (rc == -ENOTSUP)
                enotsup++;
            else
                CHECKF(0, "bit %zu: unexpected error %d", bit, rc);
        }

        /* Another format version, checksum intact: -ENOTSUP. */
        uint8_t other[WAL_SEGMENT_HEADER_BYTES];
        memcpy(other, buf, sizeof buf);
        put32(other + 8, WAL_FORMAT_VERSION + 1);
        put64(other + 40, XXH3_64bits(other, 40));
        CHECK_EQ(segment_header_decode(other, &out), -ENOTSUP);

        /* A segment size that is no segment size, checksum intact. */
        memcpy(other, buf, sizeof buf);
        put64(other + 16, cases[c].segment_bytes + 1);
        put64(other + 40, XXH3_64bits(other, 40));
        CHECK_EQ(segment_header_decode(other, &out), -EBADMSG);
        memcpy(other, buf, sizeof buf);
        put64(other + 16, 15 * WAL_BLOCK_BYTES);
        put64(other + 40, XXH3_64bits(other, 40));
        CHECK_EQ(segment_header_decode(other, &out), -EBADMSG);
    }
    uint8_t zeros[WAL_SEGMENT_HEADER_BYTES] = {0};
    struct segment_header out;
    CHECK_EQ(segment_header_decode(zeros, &out), -EBADMSG);
    tu_note("segment header flips: %ld -EBADMSG, %ld -ENOTSUP", ebadmsg, enotsup);
    CHECKF(enotsup == 0, "a corrupted header passed for another format version");
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_run("round_trip", test_round_trip);
    tu_run("bit_flips", test_bit_flips);
    tu_run("zero_and_bad_headers", test_zero_and_bad_headers);
    tu_run("segment_header", test_segment_header);
    return tu_finish();
}
