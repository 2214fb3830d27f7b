/*
 * N-API surface of the dstor native addon (plain C, node_api.h only).
 *
 * Every argument is validated here, before any kernel runs: wrong types
 * throw a TypeError, wrong sizes or unknown kernels a RangeError. Kernels
 * themselves assume valid input. All functions are synchronous except
 * merkleRootAsync and gcmOpenBlocksAsync (aead_gcm.c), which run on libuv's
 * thread pool and return a promise; other callers that need to keep the
 * event loop free run them in a worker thread (the module is context-aware,
 * so it can be loaded in several workers).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAPI_VERSION 8
#include <node_api.h>

#include "dstor_native.h"

/* Reed-Solomon over GF(2^8) never needs more than 256 rows or columns. */
#define GF_MAX_DIM 256
/* Leaf hashes of trees up to this many leaves live on the stack. */
#define STACK_LEAVES 64

static const uint8_t empty_bytes[1] = {0};

#define CHECK_NAPI(call)                                                    \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      throw_last_error(env);                                                \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

static void throw_last_error(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, NULL,
                   info != NULL && info->error_message != NULL ? info->error_message
                                                               : "dstor_native: N-API call failed");
}

static void throw_type(napi_env env, const char *fmt, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, what);
  napi_throw_type_error(env, NULL, msg);
}

static void throw_range(napi_env env, const char *msg) { napi_throw_range_error(env, NULL, msg); }

/* Reads a Uint8Array (or Buffer); throws TypeError and returns false otherwise. */
static bool get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) {
    throw_type(env, "%s must be a Uint8Array", what);
    return false;
  }
  napi_typedarray_type type;
  size_t length = 0;
  void *ptr = NULL;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, NULL, NULL) != napi_ok) {
    throw_last_error(env);
    return false;
  }
  if (type != napi_uint8_array) {
    throw_type(env, "%s must be a Uint8Array", what);
    return false;
  }
  /* A zero-length or detached view may report a NULL pointer. */
  *data = ptr != NULL ? (uint8_t *)ptr : (uint8_t *)empty_bytes;
  *len = ptr != NULL ? length : 0;
  return true;
}

/* Reads a non-negative safe integer. */
static bool get_size(napi_env env, napi_value v, const char *what, size_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    throw_type(env, "%s must be a number", what);
    return false;
  }
  double d = 0;
  napi_get_value_double(env, v, &d);
  if (!isfinite(d) || d < 0 || d != floor(d) || d > 9007199254740991.0) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s must be a non-negative integer", what);
    throw_range(env, msg);
    return false;
  }
  *out = (size_t)d;
  return true;
}

/* Reads a JS array of exactly `expected` Uint8Arrays, each holding at least
 * `need` bytes, into ptrs/lens. */
static bool get_byte_list(napi_env env, napi_value v, const char *what, size_t expected,
                          size_t need, uint8_t **ptrs) {
  bool is_array = false;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array) {
    throw_type(env, "%s must be an array of Uint8Array", what);
    return false;
  }
  uint32_t n = 0;
  napi_get_array_length(env, v, &n);
  if (n != expected) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s has %u entries, expected %zu", what, n, expected);
    throw_range(env, msg);
    return false;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    if (napi_get_element(env, v, i, &el) != napi_ok) {
      throw_last_error(env);
      return false;
    }
    char name[96];
    snprintf(name, sizeof name, "%s[%u]", what, i);
    size_t len = 0;
    if (!get_bytes(env, el, name, &ptrs[i], &len)) return false;
    if (len < need) {
      char msg[256];
      snprintf(msg, sizeof msg, "%s has %zu bytes, needs at least offset + length = %zu", name, len,
               need);
      throw_range(env, msg);
      return false;
    }
  }
  return true;
}

static bool overlaps(const uint8_t *a, const uint8_t *b, size_t len_a, size_t len_b) {
  return len_a > 0 && len_b > 0 && a < b + len_b && b < a + len_a;
}

/* ---- cpuKernels(): string[] ---- */
static napi_value cpu_kernels(napi_env env, napi_callback_info info) {
  const dstor_cpu_features *f = dstor_cpu();
  const char *names[4];
  uint32_t n = 0;
  if (f->gfni) names[n++] = "gfni";
  if (f->avx2) names[n++] = "avx2";
  if (f->ssse3) names[n++] = "ssse3";
  names[n++] = "scalar";
  napi_value arr;
  CHECK_NAPI(napi_create_array_with_length(env, n, &arr));
  for (uint32_t i = 0; i < n; i++) {
    napi_value s;
    CHECK_NAPI(napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &s));
    CHECK_NAPI(napi_set_element(env, arr, i, s));
  }
  return arr;
}

/* Maps a kernel name to its function if this CPU supports it. */
static dstor_gf_matmul_fn kernel_by_name(const char *name) {
  const dstor_cpu_features *f = dstor_cpu();
  if (strcmp(name, "scalar") == 0) return dstor_gf_matmul_scalar;
  if (strcmp(name, "ssse3") == 0 && f->ssse3) return dstor_gf_matmul_ssse3;
  if (strcmp(name, "avx2") == 0 && f->avx2) return dstor_gf_matmul_avx2;
  if (strcmp(name, "gfni") == 0 && f->gfni) return dstor_gf_matmul_gfni;
  return NULL;
}

/* ---- gfMatMul(kernel, matrix, rows, cols, inputs, outputs, offset, length) ---- */
static napi_value gf_mat_mul(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8) {
    napi_throw_type_error(env, NULL,
                          "gfMatMul(kernel, matrix, rows, cols, inputs, outputs, offset, length) "
                          "needs 8 arguments");
    return NULL;
  }
  napi_valuetype t;
  CHECK_NAPI(napi_typeof(env, argv[0], &t));
  if (t != napi_string) {
    napi_throw_type_error(env, NULL, "kernel must be a string");
    return NULL;
  }
  char kname[16];
  size_t klen = 0;
  CHECK_NAPI(napi_get_value_string_utf8(env, argv[0], kname, sizeof kname, &klen));
  dstor_gf_matmul_fn fn = kernel_by_name(kname);
  if (fn == NULL || klen >= sizeof kname - 1) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "kernel \"%s\" is unknown or not supported by this CPU; use one of cpuKernels()",
             kname);
    throw_range(env, msg);
    return NULL;
  }
  uint8_t *matrix;
  size_t matrix_len, rows, cols, offset, length;
  if (!get_bytes(env, argv[1], "matrix", &matrix, &matrix_len)) return NULL;
  if (!get_size(env, argv[2], "rows", &rows)) return NULL;
  if (!get_size(env, argv[3], "cols", &cols)) return NULL;
  if (rows < 1 || rows > GF_MAX_DIM || cols < 1 || cols > GF_MAX_DIM) {
    throw_range(env, "rows and cols must be between 1 and 256");
    return NULL;
  }
  if (matrix_len < rows * cols) {
    throw_range(env, "matrix is shorter than rows * cols");
    return NULL;
  }
  if (!get_size(env, argv[6], "offset", &offset)) return NULL;
  if (!get_size(env, argv[7], "length", &length)) return NULL;
  if (offset + length > 9007199254740991.0) {
    throw_range(env, "offset + length is too large");
    return NULL;
  }
  uint8_t *inputs[GF_MAX_DIM];
  uint8_t *outputs[GF_MAX_DIM];
  if (!get_byte_list(env, argv[4], "inputs", cols, offset + length, inputs)) return NULL;
  if (!get_byte_list(env, argv[5], "outputs", rows, offset + length, outputs)) return NULL;
  if (length == 0) return NULL;
  for (size_t c = 0; c < cols; c++) inputs[c] += offset;
  for (size_t r = 0; r < rows; r++) outputs[r] += offset;
  /* Outputs are written while inputs and the matrix are still being read:
   * any overlap would make the result depend on the kernel's loop order. */
  for (size_t r = 0; r < rows; r++) {
    if (overlaps(outputs[r], matrix, length, rows * cols)) {
      throw_range(env, "an output overlaps the matrix");
      return NULL;
    }
    for (size_t c = 0; c < cols; c++) {
      if (overlaps(outputs[r], inputs[c], length, length)) {
        throw_range(env, "an output overlaps an input");
        return NULL;
      }
    }
    for (size_t q = 0; q < r; q++) {
      if (overlaps(outputs[r], outputs[q], length, length)) {
        throw_range(env, "two outputs overlap");
        return NULL;
      }
    }
  }
  fn(matrix, rows, cols, (const uint8_t *const *)inputs, outputs, length);
  return NULL;
}

/* ---- sha256Kernel(): string ---- */
static napi_value sha256_kernel(napi_env env, napi_callback_info info) {
  napi_value s;
  CHECK_NAPI(napi_create_string_utf8(env, dstor_sha256_kernel(), NAPI_AUTO_LENGTH, &s));
  return s;
}

static bool one_bytes_arg(napi_env env, napi_callback_info info, const char *what, size_t want,
                          napi_value *argv, uint8_t **data, size_t *len) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_last_error(env);
    return false;
  }
  if (argc < want) {
    throw_type(env, "%s", what);
    return false;
  }
  return get_bytes(env, argv[0], "data", data, len);
}

static napi_value new_buffer32(napi_env env, const uint8_t digest[32]) {
  napi_value result;
  void *copy = NULL;
  CHECK_NAPI(napi_create_buffer_copy(env, 32, digest, &copy, &result));
  return result;
}

/* ---- sha256(data): Uint8Array ---- */
static napi_value sha256_fn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t *data;
  size_t len;
  if (!one_bytes_arg(env, info, "sha256(data) needs 1 argument", 1, argv, &data, &len)) return NULL;
  uint8_t digest[32];
  dstor_sha256(data, len, digest);
  return new_buffer32(env, digest);
}

/* ---- merkleLeafHashes(data, out): void ---- */
static napi_value merkle_leaf_hashes(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint8_t *data, *out;
  size_t len, out_len;
  if (!one_bytes_arg(env, info, "merkleLeafHashes(data, out) needs 2 arguments", 2, argv, &data,
                     &len))
    return NULL;
  if (!get_bytes(env, argv[1], "out", &out, &out_len)) return NULL;
  size_t need = dstor_merkle_leaf_count(len) * 32;
  if (out_len < need) {
    char msg[160];
    snprintf(msg, sizeof msg, "out has %zu bytes, needs leafCount * 32 = %zu", out_len, need);
    throw_range(env, msg);
    return NULL;
  }
  if (overlaps(out, data, need, len)) {
    throw_range(env, "out overlaps data");
    return NULL;
  }
  dstor_merkle_leaf_hashes(data, len, out);
  return NULL;
}

/* Root of one piece; scratch is stack memory for small trees, heap otherwise. */
static bool root_of(const uint8_t *data, size_t len, uint8_t *heap_scratch, uint8_t out[32]) {
  size_t leaves = dstor_merkle_leaf_count(len);
  if (leaves <= STACK_LEAVES) {
    uint8_t scratch[STACK_LEAVES * 32];
    dstor_merkle_root(data, len, scratch, out);
    return true;
  }
  if (heap_scratch != NULL) {
    dstor_merkle_root(data, len, heap_scratch, out);
    return true;
  }
  uint8_t *scratch = malloc(leaves * 32);
  if (scratch == NULL) return false;
  dstor_merkle_root(data, len, scratch, out);
  free(scratch);
  return true;
}

/* ---- merkleRoot(data): Uint8Array ---- */
static napi_value merkle_root(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t *data;
  size_t len;
  if (!one_bytes_arg(env, info, "merkleRoot(data) needs 1 argument", 1, argv, &data, &len))
    return NULL;
  uint8_t root[32];
  if (!root_of(data, len, NULL, root)) {
    napi_throw_error(env, NULL, "merkleRoot: out of memory");
    return NULL;
  }
  return new_buffer32(env, root);
}

/* ---- merkleRootAsync(data): Promise<Uint8Array> ----
 * The same root computed on libuv's thread pool, so a caller's event loop
 * keeps running (the renter verifies every downloaded piece this way). The
 * data is pinned by a reference until the work completes; the caller must
 * not change it meanwhile. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref data_ref;
  const uint8_t *data;
  size_t len;
  bool ok;
  uint8_t root[32];
} root_job;

static void root_job_execute(napi_env env, void *p) {
  (void)env;
  root_job *job = p;
  job->ok = root_of(job->data, job->len, NULL, job->root);
}

static void root_job_complete(napi_env env, napi_status status, void *p) {
  root_job *job = p;
  napi_value value = NULL;
  if (status == napi_ok && job->ok) {
    void *copy = NULL;
    if (napi_create_buffer_copy(env, 32, job->root, &copy, &value) != napi_ok) value = NULL;
  }
  if (value != NULL) {
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    napi_value message, error;
    napi_create_string_utf8(env, status == napi_ok ? "merkleRootAsync: out of memory" : "merkleRootAsync: cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_reference(env, job->data_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value merkle_root_async(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t *data;
  size_t len;
  if (!one_bytes_arg(env, info, "merkleRootAsync(data) needs 1 argument", 1, argv, &data, &len))
    return NULL;
  root_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "merkleRootAsync: out of memory");
    return NULL;
  }
  job->data = data;
  job->len = len;
  napi_value promise, name;
  if (napi_create_reference(env, argv[0], 1, &job->data_ref) != napi_ok) {
    free(job);
    throw_last_error(env);
    return NULL;
  }
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "dstor:merkleRoot", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, root_job_execute, root_job_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    /* A promise created before the failure is left unsettled; the exception is what the caller sees. */
    napi_delete_reference(env, job->data_ref);
    free(job);
    throw_last_error(env);
    return NULL;
  }
  return promise;
}

/* ---- merkleRoots(pieces, out): void ---- */
static napi_value merkle_roots(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "merkleRoots(pieces, out) needs 2 arguments");
    return NULL;
  }
  bool is_array = false;
  CHECK_NAPI(napi_is_array(env, argv[0], &is_array));
  if (!is_array) {
    napi_throw_type_error(env, NULL, "pieces must be an array of Uint8Array");
    return NULL;
  }
  uint8_t *out;
  size_t out_len;
  if (!get_bytes(env, argv[1], "out", &out, &out_len)) return NULL;
  uint32_t n = 0;
  CHECK_NAPI(napi_get_array_length(env, argv[0], &n));
  if (out_len < (size_t)n * 32) {
    char msg[160];
    snprintf(msg, sizeof msg, "out has %zu bytes, needs pieces.length * 32 = %zu", out_len,
             (size_t)n * 32);
    throw_range(env, msg);
    return NULL;
  }
  uint8_t **ptrs = malloc((n > 0 ? n : 1) * sizeof *ptrs);
  size_t *lens = malloc((n > 0 ? n : 1) * sizeof *lens);
  uint8_t *scratch = NULL;
  napi_value result = NULL;
  if (ptrs == NULL || lens == NULL) {
    napi_throw_error(env, NULL, "merkleRoots: out of memory");
    goto done;
  }
  /* Validate everything first so that a bad entry leaves out untouched. */
  size_t max_leaves = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok) {
      throw_last_error(env);
      goto done;
    }
    char name[48];
    snprintf(name, sizeof name, "pieces[%u]", i);
    if (!get_bytes(env, el, name, &ptrs[i], &lens[i])) goto done;
    if (overlaps(out, ptrs[i], (size_t)n * 32, lens[i])) {
      throw_range(env, "out overlaps a piece");
      goto done;
    }
    size_t leaves = dstor_merkle_leaf_count(lens[i]);
    if (leaves > max_leaves) max_leaves = leaves;
  }
  if (max_leaves > STACK_LEAVES) {
    scratch = malloc(max_leaves * 32);
    if (scratch == NULL) {
      napi_throw_error(env, NULL, "merkleRoots: out of memory");
      goto done;
    }
  }
  for (uint32_t i = 0; i < n; i++) root_of(ptrs[i], lens[i], scratch, out + 32 * (size_t)i);
done:
  free(scratch);
  free(lens);
  free(ptrs);
  return result;
}

/* Largest buffer alignedBytes hands out (1 GiB): far above any use, below size_t trouble. */
#define ALIGNED_MAX_BYTES ((size_t)1 << 30)
/* Alignment of alignedBytes buffers: the page size, which O_DIRECT I/O needs at most. */
#define ALIGNED_BYTES_ALIGNMENT 4096

static void free_aligned(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/* alignedBytes(size): a Uint8Array of `size` bytes (uninitialised) whose
 * memory starts on a 4096-byte boundary, for O_DIRECT file writes. Its
 * memory is freed when the ArrayBuffer is collected. */
static napi_value aligned_bytes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    throw_type(env, "%s needs a size", "alignedBytes(size)");
    return NULL;
  }
  size_t size = 0;
  if (!get_size(env, argv[0], "size", &size)) return NULL;
  if (size == 0 || size > ALIGNED_MAX_BYTES) {
    throw_range(env, "size must be between 1 and 2^30");
    return NULL;
  }
  void *data = NULL;
  if (posix_memalign(&data, ALIGNED_BYTES_ALIGNMENT, size) != 0) {
    napi_throw_error(env, "ENOMEM", "out of memory for an aligned buffer");
    return NULL;
  }
  napi_value buffer, array;
  if (napi_create_external_arraybuffer(env, data, size, free_aligned, NULL, &buffer) != napi_ok) {
    free(data);
    throw_last_error(env);
    return NULL;
  }
  CHECK_NAPI(napi_create_typedarray(env, napi_uint8_array, size, buffer, 0, &array));
  return array;
}

napi_status dstor_aead_register(napi_env env, napi_value exports);
napi_status dstor_ecrecover_register(napi_env env, napi_value exports);

NAPI_MODULE_INIT() {
  dstor_gf_init();
  dstor_hash_init();
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"cpuKernels", cpu_kernels},
      {"gfMatMul", gf_mat_mul},
      {"sha256Kernel", sha256_kernel},
      {"sha256", sha256_fn},
      {"merkleLeafHashes", merkle_leaf_hashes},
      {"merkleRoot", merkle_root},
      {"merkleRoots", merkle_roots},
      {"merkleRootAsync", merkle_root_async},
      {"alignedBytes", aligned_bytes},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &f) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, f) != napi_ok) {
      throw_last_error(env);
      return NULL;
    }
  }
  if (dstor_aead_register(env, exports) != napi_ok || dstor_ecrecover_register(env, exports) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return exports;
}
