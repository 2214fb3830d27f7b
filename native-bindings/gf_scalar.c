/*
 * Portable GF(2^8) region matrix multiply with the 64 KiB multiplication
 * table: the reference kernel and the fallback for CPUs without SSSE3.
 * Tiled so one tile of every input stays in L1 while all rows pass over it.
 */
#include "dstor_native.h"

void dstor_gf_matmul_scalar(const uint8_t *matrix, size_t rows, size_t cols,
                            const uint8_t *const *inputs, uint8_t *const *outputs,
                            size_t length) {
  const size_t tile = dstor_gf_tile_bytes(cols);
  for (size_t base = 0; base < length; base += tile) {
    size_t n = length - base < tile ? length - base : tile;
    for (size_t r = 0; r < rows; r++) {
      uint8_t *out = outputs[r] + base;
      const uint8_t *coef = matrix + r * cols;
      /* First input overwrites, the others accumulate. */
      const uint8_t *t = dstor_gf_mul[coef[0]];
      const uint8_t *in = inputs[0] + base;
      for (size_t i = 0; i < n; i++) out[i] = t[in[i]];
      for (size_t c = 1; c < cols; c++) {
        t = dstor_gf_mul[coef[c]];
        in = inputs[c] + base;
        for (size_t i = 0; i < n; i++) out[i] ^= t[in[i]];
      }
    }
  }
}
