/*
 * SSSE3 GF(2^8) region matrix multiply: split-nibble PSHUFB, 32 bytes (two
 * vectors) per step. Compiled with -mssse3 on its own; only called after
 * cpu.c saw SSSE3. Same structure as gf_avx2.c (see the notes there) with
 * 16-byte vectors; prefetches are issued once per 64-byte line.
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "dstor_native.h"

#define GROUP_MAX 4

static inline __attribute__((always_inline)) void group_ssse3(
    const uint8_t *tabs, size_t cols, size_t r0, const int R, const int PF_IN, size_t pf,
    const uint8_t *const *inputs, uint8_t *const *outputs, size_t begin, size_t end) {
  const __m128i mask = _mm_set1_epi8(0x0f);
  for (size_t i = begin; i < end; i += 32) {
    __m128i acc0[GROUP_MAX], acc1[GROUP_MAX];
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm_setzero_si128();
    for (size_t c = 0; c < cols; c++) {
      const __m128i x0 = _mm_loadu_si128((const __m128i *)(inputs[c] + i));
      const __m128i x1 = _mm_loadu_si128((const __m128i *)(inputs[c] + i + 16));
      if (PF_IN && ((i - begin) & 63) == 0) _mm_prefetch((const char *)(inputs[c] + i + pf), _MM_HINT_T0);
      const __m128i lo0 = _mm_and_si128(x0, mask);
      const __m128i hi0 = _mm_and_si128(_mm_srli_epi64(x0, 4), mask);
      const __m128i lo1 = _mm_and_si128(x1, mask);
      const __m128i hi1 = _mm_and_si128(_mm_srli_epi64(x1, 4), mask);
      const uint8_t *ct = tabs + (r0 * cols + c * (size_t)R) * 32;
      for (int r = 0; r < R; r++) {
        const uint8_t *t = ct + 32 * r;
        const __m128i tl = _mm_loadu_si128((const __m128i *)t);
        const __m128i th = _mm_loadu_si128((const __m128i *)(t + 16));
        acc0[r] = _mm_xor_si128(
            acc0[r], _mm_xor_si128(_mm_shuffle_epi8(tl, lo0), _mm_shuffle_epi8(th, hi0)));
        acc1[r] = _mm_xor_si128(
            acc1[r], _mm_xor_si128(_mm_shuffle_epi8(tl, lo1), _mm_shuffle_epi8(th, hi1)));
      }
    }
    for (int r = 0; r < R; r++) {
      uint8_t *o = outputs[r0 + r] + i;
      if (((i - begin) & 63) == 0) _mm_prefetch((const char *)(o + pf), _MM_HINT_T0);
      _mm_storeu_si128((__m128i *)o, acc0[r]);
      _mm_storeu_si128((__m128i *)(o + 16), acc1[r]);
    }
  }
}

void dstor_gf_matmul_ssse3(const uint8_t *matrix, size_t rows, size_t cols,
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
  const size_t vec_end = head + ((length - head) & ~(size_t)31);
  const size_t tile = dstor_gf_tile_bytes(cols);
  const size_t groups = (rows + GROUP_MAX - 1) / GROUP_MAX;
  /*
   * Copy the nibble tables of every coefficient into one array in the order
   * the inner loop reads them (group, input, row in group): the loop then
   * reads tables at fixed offsets from one moving pointer instead of looking
   * up each coefficient.
   */
  _Alignas(32) uint8_t stack_tabs[DSTOR_GF_STACK_COEFS * 32];
  uint8_t *tabs = stack_tabs;
  if (rows * cols > DSTOR_GF_STACK_COEFS) {
    tabs = malloc(rows * cols * 32);
    if (tabs == NULL) {
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
          memcpy(tabs + (r0 * cols + c * n + r) * 32, dstor_gf_nib[matrix[(r0 + r) * cols + c]], 32);
      r0 += n;
    }
  }
  if (head > 0) dstor_gf_matmul_tail(matrix, rows, cols, inputs, outputs, 0, head);
  for (size_t base = head; base < vec_end; base += tile) {
    const size_t stop = vec_end - base < tile ? vec_end : base + tile;
    size_t r0 = 0;
    for (size_t g = 0; g < groups; g++) {
      /* Balanced groups (10 rows -> 4,3,3) keep every pass equally full. */
      const size_t n = (rows - r0) / (groups - g) + ((rows - r0) % (groups - g) != 0);
      /* The first group prefetches the next tile of inputs, every group the
       * next tile of its outputs (see the top of the file). */
      if (g == 0) {
        switch (n) {
          case 1: group_ssse3(tabs, cols, r0, 1, 1, tile, inputs, outputs, base, stop); break;
          case 2: group_ssse3(tabs, cols, r0, 2, 1, tile, inputs, outputs, base, stop); break;
          case 3: group_ssse3(tabs, cols, r0, 3, 1, tile, inputs, outputs, base, stop); break;
          default: group_ssse3(tabs, cols, r0, 4, 1, tile, inputs, outputs, base, stop); break;
        }
      } else {
        switch (n) {
          case 1: group_ssse3(tabs, cols, r0, 1, 0, tile, inputs, outputs, base, stop); break;
          case 2: group_ssse3(tabs, cols, r0, 2, 0, tile, inputs, outputs, base, stop); break;
          case 3: group_ssse3(tabs, cols, r0, 3, 0, tile, inputs, outputs, base, stop); break;
          default: group_ssse3(tabs, cols, r0, 4, 0, tile, inputs, outputs, base, stop); break;
        }
      }
      r0 += n;
    }
  }
  if (tabs != stack_tabs) free(tabs);
  if (vec_end < length) dstor_gf_matmul_tail(matrix, rows, cols, inputs, outputs, vec_end, length);
}
