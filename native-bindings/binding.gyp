# Build description of the dstor native addon (node-gyp).
#
# Every SIMD kernel lives in its own static library compiled with only the
# instruction-set flags it needs, so the compiler can never let AVX2/GFNI/SHA
# instructions leak into code that runs before run-time dispatch (cpu.c)
# has checked the CPU. The main target is compiled for baseline x86-64.
{
  "target_defaults": {
    "cflags_c": ["-std=c11", "-O3", "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags!": ["-O2", "-Os"],
    "cflags_c!": ["-O2", "-Os"]
  },
  "targets": [
    {
      "target_name": "dstor_gf_ssse3",
      "type": "static_library",
      "sources": ["gf_ssse3.c"],
      "cflags_c": ["-mssse3"]
    },
    {
      "target_name": "dstor_gf_avx2",
      "type": "static_library",
      "sources": ["gf_avx2.c"],
      "cflags_c": ["-mavx2"]
    },
    {
      "target_name": "dstor_gf_gfni",
      "type": "static_library",
      "sources": ["gf_gfni.c"],
      "cflags_c": ["-mgfni", "-mavx2"]
    },
    {
      "target_name": "dstor_sha256_shani",
      "type": "static_library",
      "sources": ["sha256_shani.c"],
      "cflags_c": ["-msha", "-msse4.1", "-mssse3"]
    },
    {
      "target_name": "dstor_native",
      "sources": ["addon.c", "cpu.c", "gf_tables.c", "gf_scalar.c", "sha256_scalar.c", "merkle.c", "aead_gcm.c", "ecrecover.c"],
      "dependencies": ["dstor_gf_ssse3", "dstor_gf_avx2", "dstor_gf_gfni", "dstor_sha256_shani"],
      "libraries": ["-lsecp256k1"]
    }
  ]
}
