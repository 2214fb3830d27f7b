;; GF(2^8) (poly 0x11d) matrix × byte-vectors kernel, WebAssembly SIMD.
;;
;; Split-nibble multiply: for a coefficient a, a ⊗ x = LO_a[x & 15] ⊕ HI_a[x >> 4]
;; where LO_a[i] = a ⊗ i and HI_a[i] = a ⊗ (i << 4). Both are 16-byte tables,
;; so one swizzle each multiplies 16 bytes at once. i8x16.swizzle yields 0 for
;; lane indices ≥ 16 (and relaxed_swizzle is only defined below 16), so both
;; nibbles are masked with 0x0f: the low one directly, the high one after a
;; 16-bit shift (cheaper than i8x16.shr_u, which V8 has to emulate on x86).
;; With every index < 16, i8x16.relaxed_swizzle is fully deterministic and
;; equals i8x16.swizzle; we use it because it compiles to a bare pshufb.
;;
;; Memory layout (managed by src/erasure/kernel-wasm.ts):
;;   tables: for a group of G output rows (G = 4, 2 or 1) and each input column
;;           c, the G rows' tables are contiguous: entry (c, j) at
;;           tab + (c·G + j)·32, LO first then HI. Keeping a group's tables
;;           together lets every table load use a constant offset.
;;   inputs: input c at in + c·stride; outputs: row j at out + j·stride.
;;   len is a positive multiple of 32; cols ≥ 1.
;;
;; Each group function walks the byte positions 32 at a time and, for each
;; input column, loads the two input vectors ONCE, splits them into nibbles,
;; and folds them into 2·G accumulators held in registers (each table load
;; serves two shuffles), so each output vector is written exactly once.
;; rows4 is the workhorse; rows2/rows1 take the leftover rows.
;; (The three functions are the same loop, written out once for each G.)
(module
  (memory (export "memory") 1)

  (func (export "rows4")
    (param $tab i32) (param $cols i32) (param $in i32) (param $out i32) (param $stride i32) (param $len i32)
    (local $pos i32) (local $c i32) (local $ip i32) (local $tp i32) (local $op i32)
    (local $x v128) (local $lo0 v128) (local $hi0 v128) (local $lo1 v128) (local $hi1 v128) (local $mask v128) (local $t v128)
    (local $a0 v128) (local $b0 v128) (local $a1 v128) (local $b1 v128) (local $a2 v128) (local $b2 v128) (local $a3 v128) (local $b3 v128)
    (local.set $mask (v128.const i8x16 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15))
    (local.set $pos (i32.const 0))
    (loop $positions
      (local.set $a0 (v128.const i64x2 0 0))
      (local.set $b0 (v128.const i64x2 0 0))
      (local.set $a1 (v128.const i64x2 0 0))
      (local.set $b1 (v128.const i64x2 0 0))
      (local.set $a2 (v128.const i64x2 0 0))
      (local.set $b2 (v128.const i64x2 0 0))
      (local.set $a3 (v128.const i64x2 0 0))
      (local.set $b3 (v128.const i64x2 0 0))
      (local.set $ip (i32.add (local.get $in) (local.get $pos)))
      (local.set $tp (local.get $tab))
      (local.set $c (local.get $cols))
      (loop $columns
        ;; two input vectors (32 bytes) split into nibbles; the high nibble via a
        ;; 16-bit shift + mask, which compiles to 2 instructions (i8x16.shr_u needs more)
        (local.set $x (v128.load (local.get $ip)))
        (local.set $lo0 (v128.and (local.get $x) (local.get $mask)))
        (local.set $hi0 (v128.and (i16x8.shr_u (local.get $x) (i32.const 4)) (local.get $mask)))
        (local.set $x (v128.load offset=16 (local.get $ip)))
        (local.set $lo1 (v128.and (local.get $x) (local.get $mask)))
        (local.set $hi1 (v128.and (i16x8.shr_u (local.get $x) (i32.const 4)) (local.get $mask)))
        (local.set $t (v128.load offset=0 (local.get $tp)))
        (local.set $a0 (v128.xor (local.get $a0) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo0))))
        (local.set $b0 (v128.xor (local.get $b0) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo1))))
        (local.set $t (v128.load offset=16 (local.get $tp)))
        (local.set $a0 (v128.xor (local.get $a0) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi0))))
        (local.set $b0 (v128.xor (local.get $b0) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi1))))
        (local.set $t (v128.load offset=32 (local.get $tp)))
        (local.set $a1 (v128.xor (local.get $a1) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo0))))
        (local.set $b1 (v128.xor (local.get $b1) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo1))))
        (local.set $t (v128.load offset=48 (local.get $tp)))
        (local.set $a1 (v128.xor (local.get $a1) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi0))))
        (local.set $b1 (v128.xor (local.get $b1) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi1))))
        (local.set $t (v128.load offset=64 (local.get $tp)))
        (local.set $a2 (v128.xor (local.get $a2) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo0))))
        (local.set $b2 (v128.xor (local.get $b2) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo1))))
        (local.set $t (v128.load offset=80 (local.get $tp)))
        (local.set $a2 (v128.xor (local.get $a2) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi0))))
        (local.set $b2 (v128.xor (local.get $b2) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi1))))
        (local.set $t (v128.load offset=96 (local.get $tp)))
        (local.set $a3 (v128.xor (local.get $a3) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo0))))
        (local.set $b3 (v128.xor (local.get $b3) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo1))))
        (local.set $t (v128.load offset=112 (local.get $tp)))
        (local.set $a3 (v128.xor (local.get $a3) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi0))))
        (local.set $b3 (v128.xor (local.get $b3) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi1))))
        (local.set $ip (i32.add (local.get $ip) (local.get $stride)))
        (local.set $tp (i32.add (local.get $tp) (i32.const 128)))
        (local.tee $c (i32.sub (local.get $c) (i32.const 1)))
        (br_if $columns))
      (local.set $op (i32.add (local.get $out) (local.get $pos)))
      (v128.store (local.get $op) (local.get $a0))
      (v128.store offset=16 (local.get $op) (local.get $b0))
      (local.set $op (i32.add (local.get $op) (local.get $stride)))
      (v128.store (local.get $op) (local.get $a1))
      (v128.store offset=16 (local.get $op) (local.get $b1))
      (local.set $op (i32.add (local.get $op) (local.get $stride)))
      (v128.store (local.get $op) (local.get $a2))
      (v128.store offset=16 (local.get $op) (local.get $b2))
      (local.set $op (i32.add (local.get $op) (local.get $stride)))
      (v128.store (local.get $op) (local.get $a3))
      (v128.store offset=16 (local.get $op) (local.get $b3))
      (local.tee $pos (i32.add (local.get $pos) (i32.const 32)))
      (br_if $positions (i32.lt_u (local.get $len)))))

  (func (export "rows2")
    (param $tab i32) (param $cols i32) (param $in i32) (param $out i32) (param $stride i32) (param $len i32)
    (local $pos i32) (local $c i32) (local $ip i32) (local $tp i32) (local $op i32)
    (local $x v128) (local $lo0 v128) (local $hi0 v128) (local $lo1 v128) (local $hi1 v128) (local $mask v128) (local $t v128)
    (local $a0 v128) (local $b0 v128) (local $a1 v128) (local $b1 v128)
    (local.set $mask (v128.const i8x16 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15))
    (local.set $pos (i32.const 0))
    (loop $positions
      (local.set $a0 (v128.const i64x2 0 0))
      (local.set $b0 (v128.const i64x2 0 0))
      (local.set $a1 (v128.const i64x2 0 0))
      (local.set $b1 (v128.const i64x2 0 0))
      (local.set $ip (i32.add (local.get $in) (local.get $pos)))
      (local.set $tp (local.get $tab))
      (local.set $c (local.get $cols))
      (loop $columns
        ;; two input vectors (32 bytes) split into nibbles; the high nibble via a
        ;; 16-bit shift + mask, which compiles to 2 instructions (i8x16.shr_u needs more)
        (local.set $x (v128.load (local.get $ip)))
        (local.set $lo0 (v128.and (local.get $x) (local.get $mask)))
        (local.set $hi0 (v128.and (i16x8.shr_u (local.get $x) (i32.const 4)) (local.get $mask)))
        (local.set $x (v128.load offset=16 (local.get $ip)))
        (local.set $lo1 (v128.and (local.get $x) (local.get $mask)))
        (local.set $hi1 (v128.and (i16x8.shr_u (local.get $x) (i32.const 4)) (local.get $mask)))
        (local.set $t (v128.load offset=0 (local.get $tp)))
        (local.set $a0 (v128.xor (local.get $a0) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo0))))
        (local.set $b0 (v128.xor (local.get $b0) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo1))))
        (local.set $t (v128.load offset=16 (local.get $tp)))
        (local.set $a0 (v128.xor (local.get $a0) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi0))))
        (local.set $b0 (v128.xor (local.get $b0) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi1))))
        (local.set $t (v128.load offset=32 (local.get $tp)))
        (local.set $a1 (v128.xor (local.get $a1) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo0))))
        (local.set $b1 (v128.xor (local.get $b1) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo1))))
        (local.set $t (v128.load offset=48 (local.get $tp)))
        (local.set $a1 (v128.xor (local.get $a1) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi0))))
        (local.set $b1 (v128.xor (local.get $b1) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi1))))
        (local.set $ip (i32.add (local.get $ip) (local.get $stride)))
        (local.set $tp (i32.add (local.get $tp) (i32.const 64)))
        (local.tee $c (i32.sub (local.get $c) (i32.const 1)))
        (br_if $columns))
      (local.set $op (i32.add (local.get $out) (local.get $pos)))
      (v128.store (local.get $op) (local.get $a0))
      (v128.store offset=16 (local.get $op) (local.get $b0))
      (local.set $op (i32.add (local.get $op) (local.get $stride)))
      (v128.store (local.get $op) (local.get $a1))
      (v128.store offset=16 (local.get $op) (local.get $b1))
      (local.tee $pos (i32.add (local.get $pos) (i32.const 32)))
      (br_if $positions (i32.lt_u (local.get $len)))))

  (func (export "rows1")
    (param $tab i32) (param $cols i32) (param $in i32) (param $out i32) (param $stride i32) (param $len i32)
    (local $pos i32) (local $c i32) (local $ip i32) (local $tp i32) (local $op i32)
    (local $x v128) (local $lo0 v128) (local $hi0 v128) (local $lo1 v128) (local $hi1 v128) (local $mask v128) (local $t v128)
    (local $a0 v128) (local $b0 v128)
    (local.set $mask (v128.const i8x16 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15))
    (local.set $pos (i32.const 0))
    (loop $positions
      (local.set $a0 (v128.const i64x2 0 0))
      (local.set $b0 (v128.const i64x2 0 0))
      (local.set $ip (i32.add (local.get $in) (local.get $pos)))
      (local.set $tp (local.get $tab))
      (local.set $c (local.get $cols))
      (loop $columns
        ;; two input vectors (32 bytes) split into nibbles; the high nibble via a
        ;; 16-bit shift + mask, which compiles to 2 instructions (i8x16.shr_u needs more)
        (local.set $x (v128.load (local.get $ip)))
        (local.set $lo0 (v128.and (local.get $x) (local.get $mask)))
        (local.set $hi0 (v128.and (i16x8.shr_u (local.get $x) (i32.const 4)) (local.get $mask)))
        (local.set $x (v128.load offset=16 (local.get $ip)))
        (local.set $lo1 (v128.and (local.get $x) (local.get $mask)))
        (local.set $hi1 (v128.and (i16x8.shr_u (local.get $x) (i32.const 4)) (local.get $mask)))
        (local.set $t (v128.load offset=0 (local.get $tp)))
        (local.set $a0 (v128.xor (local.get $a0) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo0))))
        (local.set $b0 (v128.xor (local.get $b0) (i8x16.relaxed_swizzle (local.get $t) (local.get $lo1))))
        (local.set $t (v128.load offset=16 (local.get $tp)))
        (local.set $a0 (v128.xor (local.get $a0) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi0))))
        (local.set $b0 (v128.xor (local.get $b0) (i8x16.relaxed_swizzle (local.get $t) (local.get $hi1))))
        (local.set $ip (i32.add (local.get $ip) (local.get $stride)))
        (local.set $tp (i32.add (local.get $tp) (i32.const 32)))
        (local.tee $c (i32.sub (local.get $c) (i32.const 1)))
        (br_if $columns))
      (local.set $op (i32.add (local.get $out) (local.get $pos)))
      (v128.store (local.get $op) (local.get $a0))
      (v128.store offset=16 (local.get $op) (local.get $b0))
      (local.tee $pos (i32.add (local.get $pos) (i32.const 32)))
      (br_if $positions (i32.lt_u (local.get $len)))))
)
