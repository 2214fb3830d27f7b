/*
 * secp256k1 public-key recovery ("ecrecover") on the OpenSSL that Node
 * exports to addons. A farmer recovers the renter's address from every
 * order it serves (src/protocol/orders.ts); in JavaScript (ethers' bundled
 * @noble/curves) that costs 5-12 ms of CPU per order on this class of
 * machine and its BigInt garbage feeds the collector — 10-15 % of a farmer's
 * CPU during uploads (bench:network profile). OpenSSL does it in a fraction
 * of that.
 *
 * ecrecover(hash, r, s, recoveryBit) with 32-byte big-endian hash, r, s and
 * a recovery bit 0/1: R = the curve point with x = r and y parity =
 * recoveryBit; Q = r^-1 (s R - e G), e = hash mod n. Returns the 64-byte
 * uncompressed public key X || Y, or null when no valid key exists (r or s
 * out of [1, n-1], r not an x-coordinate on the curve, Q at infinity). The
 * caller (TypeScript) parses and normalises signatures exactly as ethers
 * does, hashes the typed data, and turns the key into an address; tests
 * check the result against ethers for random and hostile inputs.
 *
 * The EC_POINT/BIGNUM API is deprecated in OpenSSL 3 but still exported by
 * Node's bundled OpenSSL; there is no EVP equivalent of key recovery.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <node_api.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <stdint.h>
#include <string.h>

static int get32(napi_env env, napi_value v, const uint8_t **out) {
  napi_typedarray_type t;
  size_t n;
  void *d;
  if (napi_get_typedarray_info(env, v, &t, &n, &d, NULL, NULL) != napi_ok || t != napi_uint8_array || n != 32) return 0;
  *out = (const uint8_t *)d;
  return 1;
}

/* Recovers X || Y into out[64]; returns 1 on success, 0 when no key exists, -1 on an OpenSSL failure. */
static int recover(const uint8_t hash[32], const uint8_t r_bytes[32], const uint8_t s_bytes[32], int bit, uint8_t out[64]) {
  int result = -1;
  BN_CTX *ctx = BN_CTX_new();
  EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_secp256k1);
  EC_POINT *R = NULL, *Q = NULL;
  if (ctx == NULL || group == NULL) goto done;
  BN_CTX_start(ctx);
  BIGNUM *n = BN_CTX_get(ctx), *r = BN_CTX_get(ctx), *s = BN_CTX_get(ctx), *e = BN_CTX_get(ctx);
  BIGNUM *rinv = BN_CTX_get(ctx), *u1 = BN_CTX_get(ctx), *u2 = BN_CTX_get(ctx), *x = BN_CTX_get(ctx), *y = BN_CTX_get(ctx);
  if (y == NULL) goto done;
  if (EC_GROUP_get_order(group, n, ctx) != 1) goto done;
  if (BN_bin2bn(r_bytes, 32, r) == NULL || BN_bin2bn(s_bytes, 32, s) == NULL || BN_bin2bn(hash, 32, e) == NULL) goto done;
  result = 0;
  if (BN_is_zero(r) || BN_is_zero(s) || BN_cmp(r, n) >= 0 || BN_cmp(s, n) >= 0) goto done;
  R = EC_POINT_new(group);
  Q = EC_POINT_new(group);
  if (R == NULL || Q == NULL) goto fail;
  /* r < n < p, so r is a valid field element; the point may still not exist. */
  if (EC_POINT_set_compressed_coordinates(group, R, r, bit, ctx) != 1) goto done;
  if (BN_nnmod(e, e, n, ctx) != 1) goto fail;
  if (BN_mod_inverse(rinv, r, n, ctx) == NULL) goto fail;
  /* u1 = -e / r, u2 = s / r (mod n); Q = u1 G + u2 R. */
  if (BN_mod_mul(u1, e, rinv, n, ctx) != 1 || BN_mod_sub(u1, n, u1, n, ctx) != 1) goto fail;
  if (BN_mod_mul(u2, s, rinv, n, ctx) != 1) goto fail;
  if (EC_POINT_mul(group, Q, u1, R, u2, ctx) != 1) goto fail;
  if (EC_POINT_is_at_infinity(group, Q)) goto done;
  if (EC_POINT_get_affine_coordinates(group, Q, x, y, ctx) != 1) goto fail;
  if (BN_bn2binpad(x, out, 32) != 32 || BN_bn2binpad(y, out + 32, 32) != 32) goto fail;
  result = 1;
  goto done;
fail:
  result = -1;
done:
  EC_POINT_free(R);
  EC_POINT_free(Q);
  if (ctx != NULL) BN_CTX_end(ctx);
  BN_CTX_free(ctx);
  EC_GROUP_free(group);
  return result;
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
    napi_throw_error(env, NULL, "ecrecover: OpenSSL failed");
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

napi_status dstor_ecrecover_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ecrecover", NULL, ecrecover_fn, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
