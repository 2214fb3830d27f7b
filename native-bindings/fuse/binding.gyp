# fuse-native 2.2.6's addon (MIT, mafintosh/fuse-native) rebuilt with dstor's
# one-line fix in fuse-native.c (utimens passed the atime twice; see
# README.md). Linked like upstream: libfuse.so.2 (Debian libfuse2) at run time.
{
  "targets": [{
    "target_name": "fuse_native_dstor",
    "include_dirs": [
      "<!(node -p \"require('path').dirname(require.resolve('napi-macros/package.json'))\")",
      "<!(node -e \"require('fuse-shared-library/include')\")"
    ],
    "libraries": ["<!(node -e \"require('fuse-shared-library/lib')\")"],
    "sources": ["fuse-native.c"],
    "cflags": ["-O3", "-Wall", "-Wno-unused-result", "-Wno-unused-variable", "-D_FILE_OFFSET_BITS=64"]
  }]
}
