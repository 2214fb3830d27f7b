/*
 * GF(2^8) tables for polynomial 0x11d, built once at load time from log/exp
 * tables. Every kernel derives its constants from dstor_gf_mul so that all
 * of them agree byte for byte.
 */
#include <pthread.h>
#include <string.h>

#include "dstor_native.h"

uint8_t dstor_gf_mul[256][256];
uint8_t dstor_gf_nib[256][32];
uint64_t dstor_gf_affine[256];

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build(void) {
  uint8_t exp_t[512];
  uint8_t log_t[256];
  unsigned x = 1;
  for (int i = 0; i < 255; i++) {
    exp_t[i] = (uint8_t)x;
    log_t[x] = (uint8_t)i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (int i = 255; i < 512; i++) exp_t[i] = exp_t[i - 255];
  log_t[0] = 0; /* unused */
  for (int a = 0; a < 256; a++) {
    for (int b = 0; b < 256; b++) {
      dstor_gf_mul[a][b] = (a == 0 || b == 0) ? 0 : exp_t[log_t[a] + log_t[b]];
    }
  }
  for (int c = 0; c < 256; c++) {
    for (int i = 0; i < 16; i++) {
      dstor_gf_nib[c][i] = dstor_gf_mul[c][i];
      dstor_gf_nib[c][16 + i] = dstor_gf_mul[c][i << 4];
    }
    /*
     * GF2P8AFFINEQB computes result bit i = parity(A.byte[7 - i] & x).
     * Multiplication by c is linear over GF(2): bit i of c*x is the XOR over
     * set bits j of x of bit i of c*2^j. So A.byte[7 - i] has bit j set iff
     * bit i of c*(1 << j) is set.
     */
    uint64_t m = 0;
    for (int i = 0; i < 8; i++) {
      unsigned row = 0;
      for (int j = 0; j < 8; j++) row |= (unsigned)((dstor_gf_mul[c][1 << j] >> i) & 1) << j;
      m |= (uint64_t)row << (8 * (7 - i));
    }
    dstor_gf_affine[c] = m;
  }
}

void dstor_gf_init(void) { pthread_once(&tables_once, build); }

void dstor_gf_matmul_tail(const uint8_t *matrix, size_t rows, size_t cols,
                          const uint8_t *const *inputs, uint8_t *const *outputs,
                          size_t start, size_t length) {
  for (size_t r = 0; r < rows; r++) {
    uint8_t *out = outputs[r];
    const uint8_t *coef = matrix + r * cols;
    for (size_t i = start; i < length; i++) {
      uint8_t acc = 0;
      for (size_t c = 0; c < cols; c++) acc ^= dstor_gf_mul[coef[c]][inputs[c][i]];
      out[i] = acc;
    }
  }
}
