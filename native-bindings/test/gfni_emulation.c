/*
 * Checks the GFNI kernel on CPUs without GFNI: the kernel source is compiled
 * with GF2P8AFFINEQB replaced by a software model written from the Intel SDM
 * pseudocode, then compared with the scalar kernel on random shapes, offsets
 * and lengths. This validates the affine matrices (multiplication modulo
 * 0x11d) and the loop/tail structure; it cannot catch a compiler or CPU
 * fault in the real instruction. Run by test/native/gfni-emulation.test.ts.
 *
 *   gcc -O2 -std=c11 -mavx2 -I.. gfni_emulation.c ../gf_tables.c ../gf_scalar.c -lpthread
 */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* Software GF2P8AFFINEQB per the Intel SDM pseudocode. */
static __m256i emu_affine(__m256i x, __m256i a, int imm) {
  uint8_t xs[32], out[32]; uint64_t as[4];
  memcpy(xs, &x, 32); memcpy(as, &a, 32);
  for (int j = 0; j < 4; j++) for (int b = 0; b < 8; b++) {
    uint8_t src = xs[8*j+b], r = 0;
    for (int i = 0; i < 8; i++) {
      uint8_t row = (uint8_t)(as[j] >> (8 * (7 - i)));
      r |= (uint8_t)((__builtin_popcount(row & src) & 1) ^ ((imm >> i) & 1)) << i;
    }
    out[8*j+b] = r;
  }
  __m256i o; memcpy(&o, out, 32); return o;
}
/* Must come after immintrin.h and before the kernel source. */
#define _mm256_gf2p8affine_epi64_epi8(x, a, b) emu_affine(x, a, b)
#include "../gf_gfni.c"
int main(void) {
  dstor_gf_init();
  srand(7);
  int bad = 0;
  /* Anchors the model to a published constant: the identity matrix of
   * GF2P8AFFINEQB is 0x0102040810204080 (multiplication by 1). */
  if (dstor_gf_affine[1] != 0x0102040810204080ULL) {
    printf("identity matrix wrong: %016llx\n", (unsigned long long)dstor_gf_affine[1]);
    bad++;
  }
  for (int t = 0; t < 300; t++) {
    size_t rows = 1 + rand() % 32, cols = 1 + rand() % 32, len = rand() % 3000, off = rand() % 50;
    /* Two shapes with more than 1024 coefficients (heap-allocated matrices)
     * and lengths that take the cache-line alignment head. */
    if (t == 0) { rows = 48; cols = 32; len = 5001; }
    if (t == 1) { rows = 256; cols = 5; len = 4163; }
    if (t == 2) { rows = 20; cols = 10; len = 100003; }
    static uint8_t mat[256 * 256];
    for (size_t i = 0; i < rows * cols; i++) mat[i] = rand();
    const uint8_t *in[256]; uint8_t *o1[256], *o2[256];
    for (size_t c = 0; c < cols; c++) { uint8_t *p = malloc(len + off + 1); for (size_t i = 0; i < len + off; i++) p[i] = rand(); in[c] = p + off; }
    for (size_t r = 0; r < rows; r++) { o1[r] = calloc(len + 1, 1); o2[r] = calloc(len + 1, 1); }
    dstor_gf_matmul_gfni(mat, rows, cols, in, o1, len);
    dstor_gf_matmul_scalar(mat, rows, cols, in, o2, len);
    for (size_t r = 0; r < rows; r++) if (memcmp(o1[r], o2[r], len)) bad++;
    for (size_t c = 0; c < cols; c++) free((uint8_t *)in[c] - off);
    for (size_t r = 0; r < rows; r++) { free(o1[r]); free(o2[r]); }
  }
  printf("gfni-emulated mismatches: %d\n", bad);
  return bad != 0;
}
