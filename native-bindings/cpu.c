/*
 * Run-time CPU feature detection with CPUID (and XGETBV, because AVX2 is
 * only usable when the OS saves the YMM registers on context switches).
 * We read CPUID directly instead of __builtin_cpu_supports so the check for
 * each feature is explicit and does not depend on the compiler's version of
 * its feature list (older GCCs do not know "gfni" or "sha").
 */
#include <cpuid.h>
#include <pthread.h>

#include "dstor_native.h"

static dstor_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static uint64_t read_xcr0(void) {
  uint32_t lo, hi;
  /* xgetbv with ecx = 0; encoded as bytes so no -mxsave is needed. */
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

static void detect(void) {
  unsigned int eax, ebx, ecx, edx;
  unsigned int max_leaf = __get_cpuid_max(0, 0);
  if (max_leaf < 1) return;
  __cpuid(1, eax, ebx, ecx, edx);
  int ssse3 = (ecx >> 9) & 1;
  int sse41 = (ecx >> 19) & 1;
  int osxsave = (ecx >> 27) & 1;
  int avx = (ecx >> 28) & 1;
  int ymm_enabled = 0;
  if (osxsave && avx) ymm_enabled = (read_xcr0() & 0x6) == 0x6; /* SSE + AVX state */
  int avx2 = 0, gfni = 0, sha = 0;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    avx2 = (ebx >> 5) & 1;
    sha = (ebx >> 29) & 1;
    gfni = (ecx >> 8) & 1;
  }
  features.ssse3 = ssse3;
  features.sse41 = sse41;
  features.avx2 = avx2 && ymm_enabled;
  /* Our GFNI kernel uses the 256-bit (VEX) form, so it also needs AVX2/YMM. */
  features.gfni = gfni && features.avx2;
  features.sha = sha && ssse3 && sse41;
}

const dstor_cpu_features *dstor_cpu(void) {
  pthread_once(&features_once, detect);
  return &features;
}
