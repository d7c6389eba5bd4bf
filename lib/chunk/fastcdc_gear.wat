;; FastCDC's cut-point search (the gear loop) for lib/chunk/fastcdc_scanner.ts; the reference is
;; `findCut` in lib/chunk/fastcdc.ts, and the boundaries must be bit-identical to it.
;; Built by `deno task build:wasm` into lib/chunk/fastcdc_wasm.ts.
;;
;; Memory layout: bytes 0..1023 hold the 256 u32 gear table (little-endian), written by the host
;; from `GEAR` at instantiation; the host's data starts at byte 1024. All addresses are absolute.
;;
;; Why two lanes: the hash after byte i is h_i = sum over k of GEAR[b(i-k)] << k (mod 2^32), so it
;; depends only on the last 32 bytes. A block of 2*W bytes is scanned as two independent chains
;; (the second one warmed up on the 31 bytes before its start, which makes its hash exact), which
;; the CPU runs in parallel; a block that holds a cut point is rescanned byte by byte from its start
;; to find the first one. Each lane loads 8 bytes at a time. Measured on this machine (16 MiB of
;; random data, default sizes): one serial lane 0.50 s/GiB, two lanes 0.31, three or four lanes
;; 0.31, four SIMD lanes (v128.load32_lane as the gather) 0.54; the TypeScript loop 0.44.
(module
  (memory (export "memory") 1)

  ;; The hash carried between blocks (the running h of the chunk being scanned).
  (global $h (mut i32) (i32.const 0))

    ;; Serial scan of [i, e) with `mask`, continuing from $h. Returns the address after the first
  ;; cut point, or 0 (then $h holds the hash after byte e - 1).
  (func $serial (param $i i32) (param $e i32) (param $mask i32) (result i32)
    (local $h i32)
    (local.set $h (global.get $h))
    (block $done
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (loop $next
        (local.set $h
          (i32.add
            (i32.shl (local.get $h) (i32.const 1))
            (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.eqz (i32.and (local.get $h) (local.get $mask)))
          (then (return (local.get $i))))
        (br_if $next (i32.lt_u (local.get $i) (local.get $e)))))
    (global.set $h (local.get $h))
    (i32.const 0))

  ;; Whether [i, i + 4096) holds a cut point for `mask`, given $h before byte i: lane 0 scans
  ;; [i, i + 2048) from $h, lane 1 scans [i + 2048, i + 4096) after a warm-up on the 31 bytes
  ;; before it. Returns 1 on a cut (leaving $h alone), else 0 with $h = the hash after the block.
  ;; Lane 1's warm-up bytes lie inside the block, so its hash is exact from its first tested byte.
  (func $block (param $i i32) (param $mask i32) (result i32)
    (local $h0 i32) (local $h1 i32) (local $w0 i64) (local $w1 i64) (local $q i32) (local $e i32)
    (local.set $h0 (global.get $h))
    ;; Warm-up of lane 1 on bytes i + 2048 - 31 .. i + 2048 - 1.
    (local.set $q (i32.sub (local.get $i) (i32.const 31)))
    (loop $warm
      (local.set $h1
        (i32.add
          (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.shl (i32.load8_u offset=2048 (local.get $q)) (i32.const 2)))))
      (local.set $q (i32.add (local.get $q) (i32.const 1)))
      (br_if $warm (i32.lt_u (local.get $q) (local.get $i))))
    (local.set $e (i32.add (local.get $i) (i32.const 2048)))
    (block $cut
      (loop $next
        (local.set $w0 (i64.load (local.get $q)))
        (local.set $w1 (i64.load offset=2048 (local.get $q)))
        ;; Byte k of each word, as a table offset: (w >> (8k - 2)) & 0x3fc.
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.shl (i32.wrap_i64 (local.get $w0)) (i32.const 2)) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.shl (i32.wrap_i64 (local.get $w1)) (i32.const 2)) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w0) (i64.const 6))) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w1) (i64.const 6))) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w0) (i64.const 14))) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w1) (i64.const 14))) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w0) (i64.const 22))) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w1) (i64.const 22))) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w0) (i64.const 30))) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w1) (i64.const 30))) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w0) (i64.const 38))) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w1) (i64.const 38))) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w0) (i64.const 46))) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w1) (i64.const 46))) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $h0 (i32.add (i32.shl (local.get $h0) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w0) (i64.const 54))) (i32.const 1020)))))
        (local.set $h1 (i32.add (i32.shl (local.get $h1) (i32.const 1))
          (i32.load (i32.and (i32.wrap_i64 (i64.shr_u (local.get $w1) (i64.const 54))) (i32.const 1020)))))
        (br_if $cut (i32.eqz (i32.and (local.get $h0) (local.get $mask))))
        (br_if $cut (i32.eqz (i32.and (local.get $h1) (local.get $mask))))
        (local.set $q (i32.add (local.get $q) (i32.const 8)))
        (br_if $next (i32.lt_u (local.get $q) (local.get $e))))
      (global.set $h (local.get $h1))
      (return (i32.const 0)))
    (i32.const 1))

  ;; First cut point in [i, e) for `mask`, continuing from $h: whole blocks first, then the tail.
  ;; Returns the address after it, or 0 (then $h holds the hash after byte e - 1).
  (func $scan (param $i i32) (param $e i32) (param $mask i32) (result i32)
    (block $tail
      (loop $next
        (br_if $tail (i32.lt_u (i32.sub (local.get $e) (local.get $i)) (i32.const 4096)))
        (if (call $block (local.get $i) (local.get $mask))
          (then
            (return
              (call $serial (local.get $i) (i32.add (local.get $i) (i32.const 4096)) (local.get $mask)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4096)))
        (br $next)))
    (call $serial (local.get $i) (local.get $e) (local.get $mask)))

  ;; `findCut(mem, start, end, {min, avg, max, maskS, maskL}, final)` of lib/chunk/fastcdc.ts, on
  ;; memory addresses: the length of the chunk at `start`, or 0 for "give me more data".
  (func (export "find_cut")
    (param $start i32) (param $end i32) (param $min i32) (param $avg i32) (param $max i32)
    (param $maskS i32) (param $maskL i32) (param $final i32) (result i32)
    (local $len i32) (local $limit i32) (local $normal i32) (local $r i32)
    (local.set $len (i32.sub (local.get $end) (local.get $start)))
    (if (i32.le_u (local.get $len) (local.get $min))
      (then
        (return
          (select
            (local.get $len)
            (select (local.get $max) (i32.const 0) (i32.ge_u (local.get $len) (local.get $max)))
            (local.get $final)))))
    (local.set $limit
      (select (local.get $len) (local.get $max) (i32.lt_u (local.get $len) (local.get $max))))
    (local.set $normal
      (select (local.get $limit) (local.get $avg) (i32.lt_u (local.get $limit) (local.get $avg))))
    (global.set $h (i32.const 0))
    (local.set $r
      (call $scan
        (i32.add (local.get $start) (local.get $min))
        (i32.add (local.get $start) (local.get $normal))
        (local.get $maskS)))
    (if (local.get $r) (then (return (i32.sub (local.get $r) (local.get $start)))))
    (local.set $r
      (call $scan
        (i32.add (local.get $start) (local.get $normal))
        (i32.add (local.get $start) (local.get $limit))
        (local.get $maskL)))
    (if (local.get $r) (then (return (i32.sub (local.get $r) (local.get $start)))))
    (if (i32.eq (local.get $limit) (local.get $max)) (then (return (local.get $max))))
    (select (local.get $len) (i32.const 0) (local.get $final)))
)
