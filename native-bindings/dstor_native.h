/*
 * Internal interfaces of the dstor native addon.
 *
 * GF(2^8) here is the field with the polynomial x^8+x^4+x^3+x^2+1 (0x11d),
 * the one the whole project (TypeScript and WebAssembly fallbacks) uses.
 *
 * Only declarations and `static inline` helpers belong in this header: a
 * non-static inline function would be emitted by every translation unit that
 * uses it, and the linker could keep the copy compiled with -mavx2 or -mgfni
 * and run it on a CPU that lacks those instructions.
 */
#ifndef DSTOR_NATIVE_H
#define DSTOR_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* ---- CPU features (cpu.c) ---- */
typedef struct {
  int ssse3;
  int sse41;
  int avx2; /* includes OS support for YMM state */
  int gfni;
  int sha;
} dstor_cpu_features;

/* Detects once (thread-safe) and returns the features of this CPU. */
const dstor_cpu_features *dstor_cpu(void);

/* ---- GF(2^8) tables (gf_tables.c) ---- */
/* Full multiplication table: dstor_gf_mul[a][b] = a*b. 64 KiB. */
extern uint8_t dstor_gf_mul[256][256];
/* Split-nibble tables for PSHUFB: [c][0..15] = c*i, [c][16..31] = c*(i<<4). */
extern uint8_t dstor_gf_nib[256][32];
/* GF2P8AFFINEQB bit matrices performing multiplication by c under 0x11d. */
extern uint64_t dstor_gf_affine[256];
/* Fills the tables above once (thread-safe). */
void dstor_gf_init(void);

/*
 * Region matrix multiply, all kernels share this signature.
 * For r < rows: outputs[r][0..length) = XOR_c matrix[r*cols+c] * inputs[c][0..length).
 * Outputs are overwritten. Outputs must not overlap inputs or each other
 * (the addon checks this before calling). rows, cols >= 1.
 */
typedef void (*dstor_gf_matmul_fn)(const uint8_t *matrix, size_t rows, size_t cols,
                                   const uint8_t *const *inputs, uint8_t *const *outputs,
                                   size_t length);

void dstor_gf_matmul_scalar(const uint8_t *matrix, size_t rows, size_t cols,
                            const uint8_t *const *inputs, uint8_t *const *outputs,
                            size_t length);
void dstor_gf_matmul_ssse3(const uint8_t *matrix, size_t rows, size_t cols,
                           const uint8_t *const *inputs, uint8_t *const *outputs,
                           size_t length);
void dstor_gf_matmul_avx2(const uint8_t *matrix, size_t rows, size_t cols,
                          const uint8_t *const *inputs, uint8_t *const *outputs,
                          size_t length);
void dstor_gf_matmul_gfni(const uint8_t *matrix, size_t rows, size_t cols,
                          const uint8_t *const *inputs, uint8_t *const *outputs,
                          size_t length);

/*
 * Scalar tail used by the SIMD kernels for the last < vector-width bytes:
 * same semantics as the kernels, on outputs[r][start..length).
 */
void dstor_gf_matmul_tail(const uint8_t *matrix, size_t rows, size_t cols,
                          const uint8_t *const *inputs, uint8_t *const *outputs,
                          size_t start, size_t length);

/* Regions from this length get a scalar head that aligns the SIMD stores. */
#define DSTOR_GF_ALIGN_MIN_BYTES 4096

/* Matrices up to this many coefficients get their expanded tables on the stack. */
#define DSTOR_GF_STACK_COEFS 1024

/*
 * Bytes of each input processed per tile: chosen so that one tile of all the
 * inputs (16 KiB in total) stays in L1 while every group of output rows
 * passes over it; a multiple of 64 so SIMD steps never straddle tiles.
 * (Overridable at compile time for experiments; 8..64 KiB measured alike.)
 */
#ifndef DSTOR_GF_TILE_TOTAL
#define DSTOR_GF_TILE_TOTAL 16384
#endif
static inline size_t dstor_gf_tile_bytes(size_t cols) {
  size_t t = (size_t)DSTOR_GF_TILE_TOTAL / cols;
  t &= ~(size_t)63;
  if (t < 256) t = 256;
  return t;
}

/* ---- SHA-256 (sha256_scalar.c, sha256_shani.c) ---- */
extern const uint32_t dstor_sha256_k[64];
extern const uint32_t dstor_sha256_iv[8];

/* Compress nblocks 64-byte blocks into state. */
typedef void (*dstor_sha256_blocks_fn)(uint32_t state[8], const uint8_t *data, size_t nblocks);
/* Compress two independent streams of the same block count (interleaved). */
typedef void (*dstor_sha256_blocks2_fn)(uint32_t s0[8], const uint8_t *d0, uint32_t s1[8],
                                        const uint8_t *d1, size_t nblocks);

void dstor_sha256_blocks_scalar(uint32_t state[8], const uint8_t *data, size_t nblocks);
void dstor_sha256_blocks2_scalar(uint32_t s0[8], const uint8_t *d0, uint32_t s1[8],
                                 const uint8_t *d1, size_t nblocks);
void dstor_sha256_blocks_shani(uint32_t state[8], const uint8_t *data, size_t nblocks);
void dstor_sha256_blocks2_shani(uint32_t s0[8], const uint8_t *d0, uint32_t s1[8],
                                const uint8_t *d1, size_t nblocks);

/*
 * Merkle kernels (format in merkle.c):
 *   full_leaves: out[32i..) = SHA-256(0x00 || data[1024i .. 1024i+1024)) for
 *                i < count; out must not overlap data.
 *   nodes:       out[32i..) = SHA-256(0x01 || in[64i .. 64i+64)) for i < count;
 *                out may equal in (in-place level reduction).
 * The SHA-NI versions hash several independent messages at once.
 */
typedef void (*dstor_merkle_leaves_fn)(const uint8_t *data, size_t count, uint8_t *out);
typedef void (*dstor_merkle_nodes_fn)(const uint8_t *in, size_t count, uint8_t *out);
void dstor_merkle_full_leaves_shani(const uint8_t *data, size_t count, uint8_t *out);
void dstor_merkle_nodes_shani(const uint8_t *in, size_t count, uint8_t *out);

/* ---- SHA-256 + Merkle front end (merkle.c) ---- */
/* Selects the compression functions once (thread-safe). */
void dstor_hash_init(void);
/* "sha-ni" or "scalar". */
const char *dstor_sha256_kernel(void);
/* One-shot SHA-256 of data. */
void dstor_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

#define DSTOR_MERKLE_LEAF_SIZE 1024
/* max(1, ceil(len / 1024)). */
size_t dstor_merkle_leaf_count(size_t len);
/* Writes leaf_count(len)*32 bytes of leaf hashes into out. */
void dstor_merkle_leaf_hashes(const uint8_t *data, size_t len, uint8_t *out);
/*
 * Root of a piece. scratch must hold leaf_count(len)*32 bytes (it receives
 * the leaf hashes and is then reduced in place).
 */
void dstor_merkle_root(const uint8_t *data, size_t len, uint8_t *scratch, uint8_t out[32]);

#endif
