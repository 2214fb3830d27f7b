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
 * ~2.8 GB/s two at a time. More streams would not fit in 16 XMM registers.
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
