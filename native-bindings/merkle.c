/*
 * SHA-256 front end and the piece Merkle tree (docs/formats.md):
 *   leaf  = SHA-256(0x00 || leaf bytes)   (1024-byte leaves, short last leaf as-is)
 *   node  = SHA-256(0x01 || left || right)
 *   an odd node at the end of a level is promoted unchanged.
 *
 * Every message hashed here is tiny and of known length, so each one is
 * copied into a padded buffer (prefix, data, 0x80, zeros, bit length) and
 * compressed in one go; the copy costs far less than the hashing. Leaves and
 * nodes are hashed two at a time through the two-stream compression
 * function, which on SHA-NI hides the latency of SHA256RNDS2.
 */
#include <pthread.h>
#include <string.h>

#include "dstor_native.h"

static dstor_sha256_blocks_fn blocks1 = dstor_sha256_blocks_scalar;
static dstor_sha256_blocks2_fn blocks2 = dstor_sha256_blocks2_scalar;
static const char *kernel_name = "scalar";
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void select_kernels(void) {
  if (dstor_cpu()->sha) {
    blocks1 = dstor_sha256_blocks_shani;
    blocks2 = dstor_sha256_blocks2_shani;
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

void dstor_merkle_leaf_hashes(const uint8_t *data, size_t len, uint8_t *out) {
  dstor_hash_init();
  _Alignas(64) uint8_t buf0[MSG_BUF_BYTES];
  _Alignas(64) uint8_t buf1[MSG_BUF_BYTES];
  const size_t count = dstor_merkle_leaf_count(len);
  for (size_t i = 0; i < count; i += 2) {
    size_t off0 = i * DSTOR_MERKLE_LEAF_SIZE;
    size_t len0 = len - off0 < DSTOR_MERKLE_LEAF_SIZE ? len - off0 : DSTOR_MERKLE_LEAF_SIZE;
    size_t n0 = build_message(buf0, 0x00, data + off0, len0);
    if (i + 1 < count) {
      size_t off1 = off0 + DSTOR_MERKLE_LEAF_SIZE;
      size_t len1 = len - off1 < DSTOR_MERKLE_LEAF_SIZE ? len - off1 : DSTOR_MERKLE_LEAF_SIZE;
      size_t n1 = build_message(buf1, 0x00, data + off1, len1);
      hash_two(buf0, n0, out + 32 * i, buf1, n1, out + 32 * (i + 1));
    } else {
      hash_two(buf0, n0, out + 32 * i, NULL, 0, NULL);
    }
  }
}

void dstor_merkle_root(const uint8_t *data, size_t len, uint8_t *scratch, uint8_t out[32]) {
  dstor_merkle_leaf_hashes(data, len, scratch);
  _Alignas(64) uint8_t buf0[128];
  _Alignas(64) uint8_t buf1[128];
  size_t count = dstor_merkle_leaf_count(len);
  /* Reduce level by level in place: node j of the next level is written at
   * slot j, which is never ahead of the slots 2j, 2j+1 still to be read. */
  while (count > 1) {
    size_t pairs = count / 2;
    size_t j = 0;
    for (; j + 1 < pairs; j += 2) {
      build_message(buf0, 0x01, scratch + 64 * j, 64);
      build_message(buf1, 0x01, scratch + 64 * (j + 1), 64);
      hash_two(buf0, 2, scratch + 32 * j, buf1, 2, scratch + 32 * (j + 1));
    }
    if (j < pairs) {
      build_message(buf0, 0x01, scratch + 64 * j, 64);
      hash_two(buf0, 2, scratch + 32 * j, NULL, 0, NULL);
    }
    if (count & 1) memmove(scratch + 32 * pairs, scratch + 32 * (count - 1), 32);
    count = pairs + (count & 1);
  }
  memcpy(out, scratch, 32);
}
