/*
 * SHA-256 front end and the piece Merkle tree (docs/formats.md):
 *   leaf  = SHA-256(0x00 || leaf bytes)   (1024-byte leaves, short last leaf as-is)
 *   node  = SHA-256(0x01 || left || right)
 *   an odd node at the end of a level is promoted unchanged.
 *
 * Full 1024-byte leaves and internal nodes go through the `full_leaves` and
 * `nodes` kernels: with SHA-NI these hash several messages at once straight
 * from memory (sha256_shani.c), hiding the latency of SHA256RNDS2. The
 * portable kernels, the short last leaf and the empty leaf copy each message
 * into a padded buffer (prefix, data, 0x80, zeros, bit length) and compress
 * it in one go, two messages at a time through blocks2.
 */
#include <pthread.h>
#include <string.h>

#include "dstor_native.h"

static dstor_sha256_blocks_fn blocks1 = dstor_sha256_blocks_scalar;
static dstor_sha256_blocks2_fn blocks2 = dstor_sha256_blocks2_scalar;
static void full_leaves_generic(const uint8_t *data, size_t count, uint8_t *out);
static void nodes_generic(const uint8_t *in, size_t count, uint8_t *out);
static dstor_merkle_leaves_fn full_leaves = full_leaves_generic;
static dstor_merkle_nodes_fn nodes = nodes_generic;
static const char *kernel_name = "scalar";
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void select_kernels(void) {
  if (dstor_cpu()->sha) {
    blocks1 = dstor_sha256_blocks_shani;
    blocks2 = dstor_sha256_blocks2_shani;
    full_leaves = dstor_merkle_full_leaves_shani;
    nodes = dstor_merkle_nodes_shani;
    kernel_name = "sha-ni";
  }
}

void dstor_hash_init(void) { pthread_once(&hash_once, select_kernels); }

const char *dstor_sha256_kernel(void) {
  dstor_hash_init();
  return kernel_name;
}

static void store_digest(const uint32_t state[8], uint8_t out[32]) {
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(state[i] >> 24);
    out[4 * i + 1] = (uint8_t)(state[i] >> 16);
    out[4 * i + 2] = (uint8_t)(state[i] >> 8);
    out[4 * i + 3] = (uint8_t)state[i];
  }
}

/* Writes the SHA-256 padding for a message of total_len bytes whose last
 * `rem` (< 64) bytes are already at buf[0..rem); returns the block count. */
static size_t pad_tail(uint8_t *buf, size_t rem, uint64_t total_len) {
  size_t nblocks = (rem + 9 + 63) / 64;
  size_t end = nblocks * 64;
  buf[rem] = 0x80;
  memset(buf + rem + 1, 0, end - rem - 1 - 8);
  uint64_t bits = total_len * 8;
  for (int i = 0; i < 8; i++) buf[end - 1 - i] = (uint8_t)(bits >> (8 * i));
  return nblocks;
}

void dstor_sha256(const uint8_t *data, size_t len, uint8_t out[32]) {
  dstor_hash_init();
  uint32_t state[8];
  memcpy(state, dstor_sha256_iv, sizeof state);
  size_t full = len / 64;
  if (full > 0) blocks1(state, data, full);
  uint8_t buf[128];
  size_t rem = len - full * 64;
  if (rem > 0) memcpy(buf, data + full * 64, rem);
  size_t n = pad_tail(buf, rem, (uint64_t)len);
  blocks1(state, buf, n);
  store_digest(state, out);
}

/* Largest padded message: prefix + 1024 data bytes + padding = 17 blocks. */
#define MSG_BUF_BYTES (18 * 64)

/* Builds prefix || data || padding in buf; returns the block count. */
static size_t build_message(uint8_t *buf, uint8_t prefix, const uint8_t *data, size_t n) {
  buf[0] = prefix;
  if (n > 0) memcpy(buf + 1, data, n);
  size_t msg_len = n + 1;
  size_t full = msg_len / 64;
  return full + pad_tail(buf + full * 64, msg_len - full * 64, (uint64_t)msg_len);
}

/* Hashes up to two prepared messages, pairing them when their sizes agree. */
static void hash_two(const uint8_t *m0, size_t n0, uint8_t *out0, const uint8_t *m1, size_t n1,
                     uint8_t *out1) {
  uint32_t s0[8], s1[8];
  memcpy(s0, dstor_sha256_iv, sizeof s0);
  if (m1 != NULL) {
    memcpy(s1, dstor_sha256_iv, sizeof s1);
    if (n0 == n1) {
      blocks2(s0, m0, s1, m1, n0);
    } else {
      blocks1(s0, m0, n0);
      blocks1(s1, m1, n1);
    }
    store_digest(s1, out1);
  } else {
    blocks1(s0, m0, n0);
  }
  store_digest(s0, out0);
}

size_t dstor_merkle_leaf_count(size_t len) {
  return len == 0 ? 1 : (len + DSTOR_MERKLE_LEAF_SIZE - 1) / DSTOR_MERKLE_LEAF_SIZE;
}

/* Portable kernels: each message is built in a padded buffer and hashed
 * two at a time through blocks2. */
static void full_leaves_generic(const uint8_t *data, size_t count, uint8_t *out) {
  _Alignas(64) uint8_t buf0[MSG_BUF_BYTES];
  _Alignas(64) uint8_t buf1[MSG_BUF_BYTES];
  const size_t L = DSTOR_MERKLE_LEAF_SIZE;
  size_t i = 0;
  for (; i + 1 < count; i += 2) {
    size_t n0 = build_message(buf0, 0x00, data + i * L, L);
    size_t n1 = build_message(buf1, 0x00, data + (i + 1) * L, L);
    hash_two(buf0, n0, out + 32 * i, buf1, n1, out + 32 * (i + 1));
  }
  if (i < count) {
    size_t n0 = build_message(buf0, 0x00, data + i * L, L);
    hash_two(buf0, n0, out + 32 * i, NULL, 0, NULL);
  }
}

/* The message buffers are filled before the digests are stored, so out may
 * equal in. */
static void nodes_generic(const uint8_t *in, size_t count, uint8_t *out) {
  _Alignas(64) uint8_t buf0[128];
  _Alignas(64) uint8_t buf1[128];
  size_t j = 0;
  for (; j + 1 < count; j += 2) {
    build_message(buf0, 0x01, in + 64 * j, 64);
    build_message(buf1, 0x01, in + 64 * (j + 1), 64);
    hash_two(buf0, 2, out + 32 * j, buf1, 2, out + 32 * (j + 1));
  }
  if (j < count) {
    build_message(buf0, 0x01, in + 64 * j, 64);
    hash_two(buf0, 2, out + 32 * j, NULL, 0, NULL);
  }
}

void dstor_merkle_leaf_hashes(const uint8_t *data, size_t len, uint8_t *out) {
  dstor_hash_init();
  const size_t full = len / DSTOR_MERKLE_LEAF_SIZE;
  if (full > 0) full_leaves(data, full, out);
  size_t rem = len - full * DSTOR_MERKLE_LEAF_SIZE;
  if (rem > 0 || len == 0) {
    /* Short last leaf (or the single empty leaf of an empty piece). */
    _Alignas(64) uint8_t buf[MSG_BUF_BYTES];
    size_t n = build_message(buf, 0x00, data + full * DSTOR_MERKLE_LEAF_SIZE, rem);
    hash_two(buf, n, out + 32 * full, NULL, 0, NULL);
  }
}

void dstor_merkle_root(const uint8_t *data, size_t len, uint8_t *scratch, uint8_t out[32]) {
  dstor_merkle_leaf_hashes(data, len, scratch);
  size_t count = dstor_merkle_leaf_count(len);
  /* Reduce level by level in place: node j of the next level is written at
   * slot j, which is never ahead of the slots 2j, 2j+1 still to be read. */
  while (count > 1) {
    size_t pairs = count / 2;
    nodes(scratch, pairs, scratch);
    if (count & 1) memmove(scratch + 32 * pairs, scratch + 32 * (count - 1), 32);
    count = pairs + (count & 1);
  }
  memcpy(out, scratch, 32);
}
