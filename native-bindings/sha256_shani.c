/*
 * SHA-256 compression with the x86 SHA extensions (SHA-NI). Compiled with
 * -msha -msse4.1 -mssse3 on its own; only called after cpu.c saw SHA,
 * SSSE3 and SSE4.1.
 *
 * The structure follows Intel's reference (also Jeffrey Walton's public
 * domain sha256-x86.c): state kept as ABEF/CDGH, four rounds per message
 * vector, the schedule computed with SHA256MSG1/MSG2 four rounds ahead.
 *
 * The two-stream variant interleaves two independent messages: SHA256RNDS2
 * has a multi-cycle latency and each round depends on the previous one, so
 * a single stream leaves the SHA unit idle part of the time; a second,
 * independent stream fills those gaps (used for Merkle leaves and nodes):
 * on Zen 3, 17-block leaf messages hash at ~1.5 GB/s one at a time and
 * ~2.8 GB/s two at a time.
 *
 * The Merkle kernels at the end (dstor_merkle_full_leaves_shani,
 * dstor_merkle_nodes_shani) hash DSTOR_SHA_WAYS (3) leaves or nodes at once
 * straight from the caller's memory: the prefix byte is inserted by a
 * shuffle, middle blocks are unaligned loads, and the final padding block is
 * built in registers, so no message is copied.
 */
#include <immintrin.h>

#include "dstor_native.h"

#define K4(g) _mm_loadu_si128((const __m128i *)(dstor_sha256_k + 4 * (g)))

/* Loads state[8] into the ABEF / CDGH layout SHA256RNDS2 expects. */
#define LOAD_STATE(state, S0, S1)                                    \
  do {                                                               \
    __m128i t_ = _mm_loadu_si128((const __m128i *)&(state)[0]);      \
    S1 = _mm_loadu_si128((const __m128i *)&(state)[4]);              \
    t_ = _mm_shuffle_epi32(t_, 0xB1);  /* CDAB */                    \
    S1 = _mm_shuffle_epi32(S1, 0x1B);  /* EFGH */                    \
    S0 = _mm_alignr_epi8(t_, S1, 8);   /* ABEF */                    \
    S1 = _mm_blend_epi16(S1, t_, 0xF0); /* CDGH */                   \
  } while (0)

#define STORE_STATE(state, S0, S1)                                   \
  do {                                                               \
    __m128i t_ = _mm_shuffle_epi32(S0, 0x1B); /* FEBA */             \
    __m128i u_ = _mm_shuffle_epi32(S1, 0xB1); /* DCHG */             \
    _mm_storeu_si128((__m128i *)&(state)[0], _mm_blend_epi16(t_, u_, 0xF0)); /* DCBA */ \
    _mm_storeu_si128((__m128i *)&(state)[4], _mm_alignr_epi8(u_, t_, 8));    /* HGFE */ \
  } while (0)

/*
 * Four rounds (group g, 0..15) of one stream; M is that stream's 4-vector
 * message schedule ring. Indices are compile-time constants after unrolling.
 */
#define QROUND(g, S0, S1, M)                                                    \
  do {                                                                          \
    __m128i msg_ = _mm_add_epi32(M[(g) & 3], K4(g));                            \
    S1 = _mm_sha256rnds2_epu32(S1, S0, msg_);                                   \
    if ((g) >= 3 && (g) <= 14) {                                                \
      __m128i t_ = _mm_alignr_epi8(M[(g) & 3], M[((g) + 3) & 3], 4);            \
      M[((g) + 1) & 3] = _mm_add_epi32(M[((g) + 1) & 3], t_);                   \
      M[((g) + 1) & 3] = _mm_sha256msg2_epu32(M[((g) + 1) & 3], M[(g) & 3]);    \
    }                                                                           \
    msg_ = _mm_shuffle_epi32(msg_, 0x0E);                                       \
    S0 = _mm_sha256rnds2_epu32(S0, S1, msg_);                                   \
    if ((g) >= 1 && (g) <= 12) M[((g) + 3) & 3] = _mm_sha256msg1_epu32(M[((g) + 3) & 3], M[(g) & 3]); \
  } while (0)

#define LOAD_MSG(M, data, mask)                                                         \
  do {                                                                                  \
    M[0] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((data) + 0)), mask);      \
    M[1] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((data) + 16)), mask);     \
    M[2] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((data) + 32)), mask);     \
    M[3] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((data) + 48)), mask);     \
  } while (0)

void dstor_sha256_blocks_shani(uint32_t state[8], const uint8_t *data, size_t nblocks) {
  const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i s0, s1;
  LOAD_STATE(state, s0, s1);
  for (; nblocks > 0; nblocks--, data += 64) {
    const __m128i save0 = s0, save1 = s1;
    __m128i m[4];
    LOAD_MSG(m, data, mask);
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) QROUND(g, s0, s1, m);
    s0 = _mm_add_epi32(s0, save0);
    s1 = _mm_add_epi32(s1, save1);
  }
  STORE_STATE(state, s0, s1);
}

void dstor_sha256_blocks2_shani(uint32_t st0[8], const uint8_t *d0, uint32_t st1[8],
                                const uint8_t *d1, size_t nblocks) {
  const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i a0, a1, b0, b1;
  LOAD_STATE(st0, a0, a1);
  LOAD_STATE(st1, b0, b1);
  for (; nblocks > 0; nblocks--, d0 += 64, d1 += 64) {
    const __m128i sa0 = a0, sa1 = a1, sb0 = b0, sb1 = b1;
    __m128i ma[4], mb[4];
    LOAD_MSG(ma, d0, mask);
    LOAD_MSG(mb, d1, mask);
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
      QROUND(g, a0, a1, ma);
      QROUND(g, b0, b1, mb);
    }
    a0 = _mm_add_epi32(a0, sa0);
    a1 = _mm_add_epi32(a1, sa1);
    b0 = _mm_add_epi32(b0, sb0);
    b1 = _mm_add_epi32(b1, sb1);
  }
  STORE_STATE(st0, a0, a1);
  STORE_STATE(st1, b0, b1);
}

/* ------------------------------------------------------------------------
 * N-stream kernels specialised for the Merkle tree (merkle.c).
 *
 * Each stream's state and schedule ring are separate named variables
 * (generated by the FORn macros below) rather than arrays indexed by stream:
 * GCC keeps arrays of vectors on the stack and reloads the state every round,
 * which puts store-forwarding latency on the critical path.
 * ---------------------------------------------------------------------- */
#define BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL)

/* Writes the big-endian digest of state (ABEF, CDGH) to out. */
#define STORE_DIGEST_BE(out, S0, S1)                                           \
  do {                                                                         \
    __m128i t_ = _mm_shuffle_epi32(S0, 0x1B); /* FEBA */                       \
    __m128i u_ = _mm_shuffle_epi32(S1, 0xB1); /* DCHG */                       \
    __m128i lo_ = _mm_blend_epi16(t_, u_, 0xF0); /* DCBA */                    \
    __m128i hi_ = _mm_alignr_epi8(u_, t_, 8);    /* HGFE */                    \
    _mm_storeu_si128((__m128i *)(out), _mm_shuffle_epi8(lo_, BSWAP_MASK));      \
    _mm_storeu_si128((__m128i *)((out) + 16), _mm_shuffle_epi8(hi_, BSWAP_MASK)); \
  } while (0)

/*
 * First block of prefix || p[0..63): message bytes 1..15 come from
 * p[0..15) through a shuffle that also byte-swaps and leaves byte 0 zero
 * (the prefix is ORed in); the other three vectors are unaligned loads at
 * p + 15, p + 31, p + 47. Reads p[0..63) only.
 */
#define LOAD_FIRST_BLOCK(M, p, prefix)                                                        \
  do {                                                                                        \
    const __m128i first_ = _mm_set_epi64x(0x0b0c0d0e0708090aLL, 0x0304050680000102LL);       \
    M[0] = _mm_or_si128(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p)), first_),      \
                        _mm_cvtsi32_si128((int)((uint32_t)(prefix) << 24)));                  \
    M[1] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 15)), BSWAP_MASK);        \
    M[2] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 31)), BSWAP_MASK);        \
    M[3] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 47)), BSWAP_MASK);        \
  } while (0)

/* Final block when the last data byte `last` is followed directly by the
 * padding: last || 0x80 || zeros || 64-bit big-endian bit length (< 2^32). */
#define LOAD_LAST_BLOCK(M, last, bits)                                             \
  do {                                                                             \
    M[0] = _mm_cvtsi32_si128((int)(((uint32_t)(last) << 24) | 0x00800000u));       \
    M[1] = _mm_setzero_si128();                                                    \
    M[2] = _mm_setzero_si128();                                                    \
    M[3] = _mm_set_epi32((int)(bits), 0, 0, 0);                                    \
  } while (0)

#define LOAD_BLOCK(M, p) LOAD_MSG(M, p, BSWAP_MASK)

#define FOR1(X) X(0)
#define FOR2(X) X(0) X(1)
#define FOR3(X) X(0) X(1) X(2)
#define FOR4(X) X(0) X(1) X(2) X(3)
#define FOR5(X) X(0) X(1) X(2) X(3) X(4)
#define FOR6(X) X(0) X(1) X(2) X(3) X(4) X(5)

#define DECL_STREAM(i) __m128i s0_##i = iv0, s1_##i = iv1, m_##i[4], v0_##i, v1_##i;
#define SAVE_STREAM(i) v0_##i = s0_##i; v1_##i = s1_##i;
#define ADD_STREAM(i) s0_##i = _mm_add_epi32(s0_##i, v0_##i); s1_##i = _mm_add_epi32(s1_##i, v1_##i);
#define ROUND_STREAM(i) QROUND(g, s0_##i, s1_##i, m_##i);
/* Compresses the block in each stream's m_i. */
#define COMPRESS(FOR)                                \
  do {                                               \
    FOR(SAVE_STREAM)                                 \
    _Pragma("GCC unroll 16")                         \
    for (int g = 0; g < 16; g++) { FOR(ROUND_STREAM) } \
    FOR(ADD_STREAM)                                  \
  } while (0)

#define LEAF_PTR(i) (data + (size_t)(i) * DSTOR_MERKLE_LEAF_SIZE)
#define LEAF_FIRST(i) LOAD_FIRST_BLOCK(m_##i, LEAF_PTR(i), 0x00);
#define LEAF_MID(i) LOAD_BLOCK(m_##i, LEAF_PTR(i) + off);
#define LEAF_LAST(i) LOAD_LAST_BLOCK(m_##i, LEAF_PTR(i)[DSTOR_MERKLE_LEAF_SIZE - 1], \
                                     (DSTOR_MERKLE_LEAF_SIZE + 1) * 8);
#define STORE_STREAM(i) STORE_DIGEST_BE(out + 32 * (i), s0_##i, s1_##i);

/* n full leaves at data (consecutive, 1024 bytes each) -> n digests at out.
 * Block b (1..15) of 0x00 || leaf is leaf[64b-1 .. 64b+63). */
#define DEFINE_LEAVES(n) DEFINE_LEAVES_(n)
#define DEFINE_LEAVES_(n)                                                             \
  static void leaves_##n(const uint8_t *data, uint8_t *out, __m128i iv0, __m128i iv1) { \
    FOR##n(DECL_STREAM)                                                               \
    FOR##n(LEAF_FIRST)                                                                \
    COMPRESS(FOR##n);                                                                 \
    for (size_t off = 63; off < DSTOR_MERKLE_LEAF_SIZE - 1; off += 64) {              \
      FOR##n(LEAF_MID)                                                                \
      COMPRESS(FOR##n);                                                               \
    }                                                                                 \
    FOR##n(LEAF_LAST)                                                                 \
    COMPRESS(FOR##n);                                                                 \
    FOR##n(STORE_STREAM)                                                              \
  }

#define NODE_FIRST(i) LOAD_FIRST_BLOCK(m_##i, in + 64 * (i), 0x01); uint8_t last_##i = in[64 * (i) + 63];
#define NODE_LAST(i) LOAD_LAST_BLOCK(m_##i, last_##i, 65 * 8);

/* n nodes: out + 32i = SHA-256(0x01 || in[64i .. 64i+64)). Every input byte
 * is read before any output byte is written, so out may overlap in. */
#define DEFINE_NODES(n) DEFINE_NODES_(n)
#define DEFINE_NODES_(n)                                                             \
  static void nodes_##n(const uint8_t *in, uint8_t *out, __m128i iv0, __m128i iv1) { \
    FOR##n(DECL_STREAM)                                                              \
    FOR##n(NODE_FIRST)                                                               \
    COMPRESS(FOR##n);                                                                \
    FOR##n(NODE_LAST)                                                                \
    COMPRESS(FOR##n);                                                                \
    FOR##n(STORE_STREAM)                                                             \
  }

/*
 * Streams per batch. Measured on Zen 3 (SHA256RNDS2: latency 4, throughput
 * 1/cycle; SHA256MSG2 throughput 1 per 2 cycles), TSC ticks per 64-byte
 * block of full leaves: 1 stream 94, 2 streams 51, 3 streams 44, 4 streams
 * 47, 5 streams 52: beyond 3 the state and schedule of all streams no longer
 * fit in the 16 XMM registers and the spills cost more than the extra
 * overlap gains. (Expanding the schedule into memory first and keeping only
 * the states in registers measured ~65 for 3..6 streams.)
 */
#ifndef DSTOR_SHA_WAYS
#define DSTOR_SHA_WAYS 3
#endif
#if DSTOR_SHA_WAYS < 2 || DSTOR_SHA_WAYS > 6
#error "DSTOR_SHA_WAYS must be 2..6"
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

DEFINE_LEAVES(1)
DEFINE_LEAVES(2)
DEFINE_NODES(1)
DEFINE_NODES(2)
#if DSTOR_SHA_WAYS > 2
DEFINE_LEAVES(DSTOR_SHA_WAYS)
DEFINE_NODES(DSTOR_SHA_WAYS)
#endif

void dstor_merkle_full_leaves_shani(const uint8_t *data, size_t count, uint8_t *out) {
  __m128i iv0, iv1;
  LOAD_STATE(dstor_sha256_iv, iv0, iv1);
  const size_t L = DSTOR_MERKLE_LEAF_SIZE;
  size_t i = 0;
  for (; i + DSTOR_SHA_WAYS <= count; i += DSTOR_SHA_WAYS)
    CAT(leaves_, DSTOR_SHA_WAYS)(data + i * L, out + 32 * i, iv0, iv1);
  for (; i + 2 <= count; i += 2) leaves_2(data + i * L, out + 32 * i, iv0, iv1);
  if (i < count) leaves_1(data + i * L, out + 32 * i, iv0, iv1);
}

void dstor_merkle_nodes_shani(const uint8_t *in, size_t count, uint8_t *out) {
  __m128i iv0, iv1;
  LOAD_STATE(dstor_sha256_iv, iv0, iv1);
  size_t i = 0;
  for (; i + DSTOR_SHA_WAYS <= count; i += DSTOR_SHA_WAYS)
    CAT(nodes_, DSTOR_SHA_WAYS)(in + 64 * i, out + 32 * i, iv0, iv1);
  for (; i + 2 <= count; i += 2) nodes_2(in + 64 * i, out + 32 * i, iv0, iv1);
  if (i < count) nodes_1(in + 64 * i, out + 32 * i, iv0, iv1);
}
