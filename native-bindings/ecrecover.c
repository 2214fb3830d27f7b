/*
 * secp256k1 for orders: public-key recovery ("ecrecover") and signing, with
 * libsecp256k1 (Debian's libsecp256k1-dev, the library Bitcoin Core is built
 * on). A farmer recovers the renter's address from every order it serves and
 * the renter signs one per piece it moves (src/protocol/orders.ts).
 * Measured per operation on this machine: ethers' JavaScript (@noble/curves)
 * 0.4 ms to sign and several ms to recover; OpenSSL's generic EC code, used
 * here before, 0.87 ms to recover; libsecp256k1 a few tens of microseconds.
 *
 * ecrecover(hash, r, s, recoveryBit) with 32-byte big-endian hash, r, s and
 * a recovery bit 0/1 returns the 64-byte uncompressed public key X || Y, or
 * null when no valid key exists (r or s out of [1, n-1], r not an
 * x-coordinate on the curve, Q at infinity). The caller (TypeScript) parses
 * and normalises signatures exactly as ethers does, hashes the typed data,
 * and turns the key into an address; tests check the result against ethers
 * for random and hostile inputs.
 *
 * secp256k1Sign(hash, privateKey) returns r || s || recoveryBit (65 bytes):
 * RFC 6979 deterministic nonces and low s, exactly what ethers produces
 * (tests compare them byte for byte). Signing runs in constant time and the
 * context is randomised once (blinding against side channels).
 */
#include <node_api.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

/* Created on first use; read-only afterwards, so safe to share. */
static secp256k1_context *ctx = NULL;

static secp256k1_context *context(void) {
  if (ctx != NULL) return ctx;
  secp256k1_context *c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
  if (c == NULL) return NULL;
  unsigned char seed[32];
  if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed || !secp256k1_context_randomize(c, seed)) {
    secp256k1_context_destroy(c);
    return NULL;
  }
  ctx = c;
  return ctx;
}

static int get32(napi_env env, napi_value v, const uint8_t **out) {
  napi_typedarray_type t;
  size_t n;
  void *d;
  if (napi_get_typedarray_info(env, v, &t, &n, &d, NULL, NULL) != napi_ok || t != napi_uint8_array || n != 32) return 0;
  *out = (const uint8_t *)d;
  return 1;
}

/* Recovers X || Y into out[64]; returns 1 on success, 0 when no key exists, -1 when the library could not start. */
static int recover(const uint8_t hash[32], const uint8_t r_bytes[32], const uint8_t s_bytes[32], int bit, uint8_t out[64]) {
  secp256k1_context *c = context();
  if (c == NULL) return -1;
  uint8_t compact[64];
  memcpy(compact, r_bytes, 32);
  memcpy(compact + 32, s_bytes, 32);
  secp256k1_ecdsa_recoverable_signature sig;
  secp256k1_pubkey key;
  /* parse_compact refuses r or s >= n; recover refuses r or s = 0, an r with no point, and Q at infinity. */
  if (!secp256k1_ecdsa_recoverable_signature_parse_compact(c, &sig, compact, bit)) return 0;
  if (!secp256k1_ecdsa_recover(c, &key, &sig, hash)) return 0;
  uint8_t full[65];
  size_t len = sizeof full;
  if (!secp256k1_ec_pubkey_serialize(c, full, &len, &key, SECP256K1_EC_UNCOMPRESSED) || len != 65) return -1;
  memcpy(out, full + 1, 64);
  return 1;
}

static napi_value ecrecover_fn(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  const uint8_t *hash, *r, *s;
  int32_t bit;
  if (argc != 4 || !get32(env, argv[0], &hash) || !get32(env, argv[1], &r) || !get32(env, argv[2], &s)) {
    napi_throw_type_error(env, NULL, "ecrecover(hash, r, s, bit): hash, r and s must be 32-byte Uint8Arrays");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[3], &bit) != napi_ok || (bit != 0 && bit != 1)) {
    napi_throw_range_error(env, NULL, "ecrecover: the recovery bit must be 0 or 1");
    return NULL;
  }
  uint8_t key[64];
  int ok = recover(hash, r, s, bit, key);
  napi_value result;
  if (ok < 0) {
    napi_throw_error(env, NULL, "ecrecover: libsecp256k1 failed to start");
    return NULL;
  }
  if (ok == 0) {
    napi_get_null(env, &result);
    return result;
  }
  void *data;
  if (napi_create_buffer_copy(env, 64, key, &data, &result) != napi_ok) return NULL;
  return result;
}

static napi_value sign_fn(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  const uint8_t *hash, *key;
  if (argc != 2 || !get32(env, argv[0], &hash) || !get32(env, argv[1], &key)) {
    napi_throw_type_error(env, NULL, "secp256k1Sign(hash, privateKey): both must be 32-byte Uint8Arrays");
    return NULL;
  }
  secp256k1_context *c = context();
  if (c == NULL) {
    napi_throw_error(env, NULL, "secp256k1Sign: libsecp256k1 failed to start");
    return NULL;
  }
  if (!secp256k1_ec_seckey_verify(c, key)) {
    napi_throw_range_error(env, NULL, "secp256k1Sign: the private key is not in [1, n-1]");
    return NULL;
  }
  secp256k1_ecdsa_recoverable_signature sig;
  uint8_t out[65];
  int recid = 0;
  if (!secp256k1_ecdsa_sign_recoverable(c, &sig, hash, key, NULL, NULL) ||
      !secp256k1_ecdsa_recoverable_signature_serialize_compact(c, out, &recid, &sig)) {
    napi_throw_error(env, NULL, "secp256k1Sign: signing failed");
    return NULL;
  }
  out[64] = (uint8_t)recid;
  napi_value result;
  void *data;
  if (napi_create_buffer_copy(env, 65, out, &data, &result) != napi_ok) return NULL;
  return result;
}

napi_status dstor_ecrecover_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ecrecover", NULL, ecrecover_fn, NULL, NULL, NULL, napi_default, NULL},
      {"secp256k1Sign", NULL, sign_fn, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
