/*
 * GFNI GF(2^8) region matrix multiply, 256-bit (VEX) form, 64 bytes (two
 * vectors) per step. Compiled with -mgfni -mavx2 on its own; only called
 * after cpu.c saw GFNI, AVX2 and OS support for YMM state.
 *
 * GF2P8MULB would be simpler but multiplies modulo 0x11b (the AES field),
 * not our 0x11d. Multiplication by a constant c is GF(2)-linear in either
 * field, so we use GF2P8AFFINEQB with the 8x8 bit matrix of "multiply by c
 * modulo 0x11d" (dstor_gf_affine, built in gf_tables.c): one instruction per
 * coefficient and vector instead of two shuffles, and no nibble split.
 *
 * Same tiling, row grouping, table expansion and prefetching as the AVX2
 * kernel (see gf_avx2.c). Groups hold up to 6 rows: 12 accumulators, 2 input
 * vectors and 1 matrix fill the 16 YMM registers.
 *
 * The development machine has no GFNI, so this kernel is checked there by
 * native-bindings/test/gfni_emulation.c, which compiles this file with the
 * instruction replaced by a software model of the Intel SDM pseudocode.
 */
#include <immintrin.h>
#include <stdlib.h>

#include "dstor_native.h"

#define GROUP_MAX 6

static inline __attribute__((always_inline)) void group_gfni(
    const uint64_t *mats, size_t cols, size_t r0, const int R, const int PF_IN, size_t pf,
    const uint8_t *const *inputs, uint8_t *const *outputs, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i += 64) {
    __m256i acc0[GROUP_MAX], acc1[GROUP_MAX];
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm256_setzero_si256();
    for (size_t c = 0; c < cols; c++) {
      const __m256i x0 = _mm256_loadu_si256((const __m256i *)(inputs[c] + i));
      const __m256i x1 = _mm256_loadu_si256((const __m256i *)(inputs[c] + i + 32));
      if (PF_IN) _mm_prefetch((const char *)(inputs[c] + i + pf), _MM_HINT_T0);
      const uint64_t *cm = mats + r0 * cols + c * (size_t)R;
      for (int r = 0; r < R; r++) {
        const __m256i a = _mm256_set1_epi64x((long long)cm[r]);
        acc0[r] = _mm256_xor_si256(acc0[r], _mm256_gf2p8affine_epi64_epi8(x0, a, 0));
        acc1[r] = _mm256_xor_si256(acc1[r], _mm256_gf2p8affine_epi64_epi8(x1, a, 0));
      }
    }
    for (int r = 0; r < R; r++) {
      uint8_t *o = outputs[r0 + r] + i;
      _mm_prefetch((const char *)(o + pf), _MM_HINT_T0);
      _mm256_storeu_si256((__m256i *)o, acc0[r]);
      _mm256_storeu_si256((__m256i *)(o + 32), acc1[r]);
    }
  }
}

#define GFNI_CASES(PF)                                                                        \
  switch (n) {                                                                                \
    case 1: group_gfni(mats, cols, r0, 1, PF, tile, inputs, outputs, base, stop); break;      \
    case 2: group_gfni(mats, cols, r0, 2, PF, tile, inputs, outputs, base, stop); break;      \
    case 3: group_gfni(mats, cols, r0, 3, PF, tile, inputs, outputs, base, stop); break;      \
    case 4: group_gfni(mats, cols, r0, 4, PF, tile, inputs, outputs, base, stop); break;      \
    case 5: group_gfni(mats, cols, r0, 5, PF, tile, inputs, outputs, base, stop); break;      \
    default: group_gfni(mats, cols, r0, 6, PF, tile, inputs, outputs, base, stop); break;     \
  }

void dstor_gf_matmul_gfni(const uint8_t *matrix, size_t rows, size_t cols,
                          const uint8_t *const *inputs, uint8_t *const *outputs,
                          size_t length) {
  /*
   * A short scalar head makes the stores of outputs[0] (and of every output
   * and input allocated the same way, the usual case) cache-line aligned:
   * JS buffers typically start 16 bytes into a line, and stores straddling
   * two lines made a 64 MiB encode markedly slower.
   */
  const size_t head =
      length >= DSTOR_GF_ALIGN_MIN_BYTES ? (64 - ((uintptr_t)outputs[0] & 63)) & 63 : 0;
  const size_t vec_end = head + ((length - head) & ~(size_t)63);
  const size_t tile = dstor_gf_tile_bytes(cols);
  const size_t groups = (rows + GROUP_MAX - 1) / GROUP_MAX;
  /* Affine matrices in the order the loop reads them (group, input, row). */
  uint64_t stack_mats[DSTOR_GF_STACK_COEFS];
  uint64_t *mats = stack_mats;
  if (rows * cols > DSTOR_GF_STACK_COEFS) {
    mats = malloc(rows * cols * sizeof *mats);
    if (mats == NULL) {
      dstor_gf_matmul_scalar(matrix, rows, cols, inputs, outputs, length);
      return;
    }
  }
  {
    size_t r0 = 0;
    for (size_t g = 0; g < groups; g++) {
      const size_t n = (rows - r0) / (groups - g) + ((rows - r0) % (groups - g) != 0);
      for (size_t c = 0; c < cols; c++)
        for (size_t r = 0; r < n; r++)
          mats[r0 * cols + c * n + r] = dstor_gf_affine[matrix[(r0 + r) * cols + c]];
      r0 += n;
    }
  }
  if (head > 0) dstor_gf_matmul_tail(matrix, rows, cols, inputs, outputs, 0, head);
  for (size_t base = head; base < vec_end; base += tile) {
    const size_t stop = vec_end - base < tile ? vec_end : base + tile;
    size_t r0 = 0;
    for (size_t g = 0; g < groups; g++) {
      const size_t n = (rows - r0) / (groups - g) + ((rows - r0) % (groups - g) != 0);
      if (g == 0) {
        GFNI_CASES(1)
      } else {
        GFNI_CASES(0)
      }
      r0 += n;
    }
  }
  if (mats != stack_mats) free(mats);
  if (vec_end < length) dstor_gf_matmul_tail(matrix, rows, cols, inputs, outputs, vec_end, length);
}
