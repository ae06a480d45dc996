// Generates src/cipher/chacha20poly1305-wasm.ts: ChaCha20-Poly1305 (RFC 8439) in WebAssembly with
// 128-bit SIMD, for the runtimes whose node:crypto has no ChaCha20-Poly1305 (Bun). The module is
// written here as WebAssembly text (the rounds unrolled by this script), assembled with wabt and
// embedded as base64. `node scripts/gen-cipher.mjs` rewrites the file; `--check` fails if the
// committed file is not what this script makes (test/cipher.test.ts runs it).
//
// Memory (exported, grown by the caller): the caller puts key, nonce and data where it wants;
// bytes 0..511 are this module's scratch.
//   seal(key, nonce, src, len, dst)      dst[0..len) = ciphertext, dst[len..len+16) = tag
//   open(key, nonce, src, len, dst) -> 1 src holds len bytes of ciphertext then the tag; the
//                                        plaintext goes to dst only if the tag matches (else 0)
//   poly1305(src, len)                   for tests: bare Poly1305 of whole blocks, key at 0..31,
//                                        tag at 80..95
// No additional data (age uses none). src and dst may be the same place (not otherwise overlap).
import { readFileSync, writeFileSync } from 'node:fs';
import wabtInit from 'wabt';

const OUT = new URL('../src/cipher/chacha20poly1305-wasm.ts', import.meta.url);

// Scratch: 0..63 Poly1305 key (first keystream block), 64..79 a padding block, 80..95 the
// computed tag, 256..511 the tail of a message (keystream for its last < 256 bytes).
const POLYKEY = 0;
const PADBLOCK = 64;
const TAGBUF = 80;
const TAIL = 256;

const range = (n) => [...Array(n).keys()];
const x = (i) => `$x${i}`;

/** ChaCha20's quarter round on four blocks at once (one block per lane). */
function quarter(a, b, c, d) {
  const add = (p, q) => `(local.set ${x(p)} (i32x4.add (local.get ${x(p)}) (local.get ${x(q)})))`;
  const xorRot = (p, q, n) => {
    const v = `(v128.xor (local.get ${x(p)}) (local.get ${x(q)}))`;
    // Rotations by 16 and 8 are byte shuffles (one instruction); 12 and 7 are shifts.
    if (n === 16) return `(local.set ${x(p)} (i8x16.shuffle 2 3 0 1 6 7 4 5 10 11 8 9 14 15 12 13 ${v} ${v}))`;
    if (n === 8) return `(local.set ${x(p)} (i8x16.shuffle 3 0 1 2 7 4 5 6 11 8 9 10 15 12 13 14 ${v} ${v}))`;
    return `(local.set $t ${v}) (local.set ${x(p)} (v128.or (i32x4.shl (local.get $t) (i32.const ${n})) (i32x4.shr_u (local.get $t) (i32.const ${32 - n}))))`;
  };
  return [add(a, b), xorRot(d, a, 16), add(c, d), xorRot(b, c, 12), add(a, b), xorRot(d, a, 8), add(c, d), xorRot(b, c, 7)].join('\n');
}

const doubleRound = [
  quarter(0, 4, 8, 12), quarter(1, 5, 9, 13), quarter(2, 6, 10, 14), quarter(3, 7, 11, 15),
  quarter(0, 5, 10, 15), quarter(1, 6, 11, 12), quarter(2, 7, 8, 13), quarter(3, 4, 9, 14),
].join('\n');

// 32-bit lane k of a shuffle is bytes 4k..4k+3; the second operand's lanes are 4..7.
const lanes = (...ks) => ks.flatMap((k) => [4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3]).join(' ');

/**
 * Four blocks of keystream from counter $ctr, XORed with 256 bytes at $src into $dst. The 16 state
 * words are $s0..$s15 (lane j: block j); after the rounds, each group of four words is transposed
 * to block order (4×4 transposition by shuffles) and XORed with the input.
 */
const block4 = `
(func $block4 (param $key i32) (param $nonce i32) (param $ctr i32) (param $src i32) (param $dst i32)
  ${range(16).map((i) => `(local ${x(i)} v128)`).join(' ')}
  ${range(16).map((i) => `(local $s${i} v128)`).join(' ')}
  (local $t v128) (local $a v128) (local $b v128) (local $c v128) (local $d v128) (local $i i32)
  (local.set $s0 (i32x4.splat (i32.const 0x61707865)))
  (local.set $s1 (i32x4.splat (i32.const 0x3320646e)))
  (local.set $s2 (i32x4.splat (i32.const 0x79622d32)))
  (local.set $s3 (i32x4.splat (i32.const 0x6b206574)))
  ${range(8).map((i) => `(local.set $s${4 + i} (i32x4.splat (i32.load offset=${4 * i} align=1 (local.get $key))))`).join('\n')}
  (local.set $s12 (i32x4.add (i32x4.splat (local.get $ctr)) (v128.const i32x4 0 1 2 3)))
  ${range(3).map((i) => `(local.set $s${13 + i} (i32x4.splat (i32.load offset=${4 * i} align=1 (local.get $nonce))))`).join('\n')}
  ${range(16).map((i) => `(local.set ${x(i)} (local.get $s${i}))`).join('\n')}
  ;; ten double rounds, two per turn (unrolled further: no faster; not at all: ~12 % slower under Bun)
  (local.set $i (i32.const 5))
  (loop $rounds
    ${doubleRound}
    ${doubleRound}
    (local.set $i (i32.sub (local.get $i) (i32.const 1)))
    (br_if $rounds (local.get $i)))
  ${range(16).map((i) => `(local.set ${x(i)} (i32x4.add (local.get ${x(i)}) (local.get $s${i})))`).join('\n')}
  ${range(4).map((g) => {
    const [p, q, r, s] = [4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3].map(x);
    const t0 = `(i8x16.shuffle ${lanes(0, 4, 1, 5)} (local.get ${p}) (local.get ${q}))`;
    const t1 = `(i8x16.shuffle ${lanes(0, 4, 1, 5)} (local.get ${r}) (local.get ${s}))`;
    const t2 = `(i8x16.shuffle ${lanes(2, 6, 3, 7)} (local.get ${p}) (local.get ${q}))`;
    const t3 = `(i8x16.shuffle ${lanes(2, 6, 3, 7)} (local.get ${r}) (local.get ${s}))`;
    const out = (block, v) =>
      `(v128.store offset=${64 * block + 16 * g} align=1 (local.get $dst) (v128.xor ${v} (v128.load offset=${64 * block + 16 * g} align=1 (local.get $src))))`;
    return [
      `(local.set $a ${t0}) (local.set $b ${t1}) (local.set $c ${t2}) (local.set $d ${t3})`,
      out(0, `(i8x16.shuffle ${lanes(0, 1, 4, 5)} (local.get $a) (local.get $b))`),
      out(1, `(i8x16.shuffle ${lanes(2, 3, 6, 7)} (local.get $a) (local.get $b))`),
      out(2, `(i8x16.shuffle ${lanes(0, 1, 4, 5)} (local.get $c) (local.get $d))`),
      out(3, `(i8x16.shuffle ${lanes(2, 3, 6, 7)} (local.get $c) (local.get $d))`),
    ].join('\n');
  }).join('\n')}
)`;

/** XORs len bytes at $src with the keystream from block $ctr on, into $dst. */
const xorStream = `
(func $xor (param $key i32) (param $nonce i32) (param $ctr i32) (param $src i32) (param $len i32) (param $dst i32)
  (block $done
    (loop $whole
      (br_if $done (i32.lt_u (local.get $len) (i32.const 256)))
      (call $block4 (local.get $key) (local.get $nonce) (local.get $ctr) (local.get $src) (local.get $dst))
      (local.set $ctr (i32.add (local.get $ctr) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 256)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 256)))
      (local.set $len (i32.sub (local.get $len) (i32.const 256)))
      (br $whole)))
  (if (local.get $len) (then
    (memory.fill (i32.const ${TAIL}) (i32.const 0) (i32.const 256))
    (memory.copy (i32.const ${TAIL}) (local.get $src) (local.get $len))
    (call $block4 (local.get $key) (local.get $nonce) (local.get $ctr) (i32.const ${TAIL}) (i32.const ${TAIL}))
    (memory.copy (local.get $dst) (i32.const ${TAIL}) (local.get $len))))
)`;

// Poly1305 in five 26-bit limbs (poly1305-donna-32's arithmetic, products in i64).
const M26 = '(i64.const 0x3ffffff)';
const polyVars = ['h0', 'h1', 'h2', 'h3', 'h4', 'r0', 'r1', 'r2', 'r3', 'r4', 's1', 's2', 's3', 's4', 'd0', 'd1', 'd2', 'd3', 'd4', 'c', 'g0', 'g1', 'g2', 'g3', 'g4', 'mask', 'f'];
const g = (v) => `(local.get $${v})`;
const set = (v, e) => `(local.set $${v} ${e})`;
const add = (...es) => es.reduce((a, b) => `(i64.add ${a} ${b})`);
const mul = (a, b) => `(i64.mul ${g(a)} ${g(b)})`;
const ld = (off) => `(i64.load32_u offset=${off} align=1 (local.get $m))`;

/** h = (h + block at $m + hibit) × r mod 2^130 − 5. */
const polyBlock = [
  set('h0', add(g('h0'), `(i64.and ${ld(0)} ${M26})`)),
  set('h1', add(g('h1'), `(i64.and (i64.shr_u ${ld(3)} (i64.const 2)) ${M26})`)),
  set('h2', add(g('h2'), `(i64.and (i64.shr_u ${ld(6)} (i64.const 4)) ${M26})`)),
  set('h3', add(g('h3'), `(i64.and (i64.shr_u ${ld(9)} (i64.const 6)) ${M26})`)),
  set('h4', add(g('h4'), `(i64.or (i64.shr_u ${ld(12)} (i64.const 8)) (i64.const 0x1000000))`)),
  set('d0', add(mul('h0', 'r0'), mul('h1', 's4'), mul('h2', 's3'), mul('h3', 's2'), mul('h4', 's1'))),
  set('d1', add(mul('h0', 'r1'), mul('h1', 'r0'), mul('h2', 's4'), mul('h3', 's3'), mul('h4', 's2'))),
  set('d2', add(mul('h0', 'r2'), mul('h1', 'r1'), mul('h2', 'r0'), mul('h3', 's4'), mul('h4', 's3'))),
  set('d3', add(mul('h0', 'r3'), mul('h1', 'r2'), mul('h2', 'r1'), mul('h3', 'r0'), mul('h4', 's4'))),
  set('d4', add(mul('h0', 'r4'), mul('h1', 'r3'), mul('h2', 'r2'), mul('h3', 'r1'), mul('h4', 'r0'))),
  set('c', `(i64.shr_u ${g('d0')} (i64.const 26))`), set('h0', `(i64.and ${g('d0')} ${M26})`),
  set('d1', add(g('d1'), g('c'))), set('c', `(i64.shr_u ${g('d1')} (i64.const 26))`), set('h1', `(i64.and ${g('d1')} ${M26})`),
  set('d2', add(g('d2'), g('c'))), set('c', `(i64.shr_u ${g('d2')} (i64.const 26))`), set('h2', `(i64.and ${g('d2')} ${M26})`),
  set('d3', add(g('d3'), g('c'))), set('c', `(i64.shr_u ${g('d3')} (i64.const 26))`), set('h3', `(i64.and ${g('d3')} ${M26})`),
  set('d4', add(g('d4'), g('c'))), set('c', `(i64.shr_u ${g('d4')} (i64.const 26))`), set('h4', `(i64.and ${g('d4')} ${M26})`),
  set('h0', add(g('h0'), `(i64.mul ${g('c')} (i64.const 5))`)),
  set('c', `(i64.shr_u ${g('h0')} (i64.const 26))`), set('h0', `(i64.and ${g('h0')} ${M26})`),
  set('h1', add(g('h1'), g('c'))),
].join('\n');

/**
 * The AEAD's tag over the ciphertext at $m (len bytes, no additional data) with the one-time key
 * at ${POLYKEY}, into ${TAGBUF}: Poly1305 of ciphertext ‖ zero padding to 16 ‖ le64(0) ‖ le64(len).
 * With $aead 0, bare Poly1305 of whole 16-byte blocks (for tests: RFC 8439's edge-case vectors).
 */
const polyMac = `
(func $mac (param $m i32) (param $len i32) (param $aead i32)
  ${polyVars.map((v) => `(local $${v} i64)`).join(' ')}
  (local $k i32) (local $end i32)
  (local.set $k (i32.const ${POLYKEY}))
  ${set('r0', `(i64.and (i64.load32_u offset=0 align=1 (local.get $k)) (i64.const 0x3ffffff))`)}
  ${set('r1', `(i64.and (i64.shr_u (i64.load32_u offset=3 align=1 (local.get $k)) (i64.const 2)) (i64.const 0x3ffff03))`)}
  ${set('r2', `(i64.and (i64.shr_u (i64.load32_u offset=6 align=1 (local.get $k)) (i64.const 4)) (i64.const 0x3ffc0ff))`)}
  ${set('r3', `(i64.and (i64.shr_u (i64.load32_u offset=9 align=1 (local.get $k)) (i64.const 6)) (i64.const 0x3f03fff))`)}
  ${set('r4', `(i64.and (i64.shr_u (i64.load32_u offset=12 align=1 (local.get $k)) (i64.const 8)) (i64.const 0x00fffff))`)}
  ${['1', '2', '3', '4'].map((i) => set(`s${i}`, `(i64.mul ${g(`r${i}`)} (i64.const 5))`)).join('\n')}
  (local.set $end (i32.add (local.get $m) (i32.and (local.get $len) (i32.const -16))))
  (block $done
    (loop $blocks
      (br_if $done (i32.ge_u (local.get $m) (local.get $end)))
      ${polyBlock}
      (local.set $m (i32.add (local.get $m) (i32.const 16)))
      (br $blocks)))
  (if (local.get $aead) (then
  ;; the last partial block, zero padded (still a full block with the high bit: RFC 8439 2.8)
  (if (i32.and (local.get $len) (i32.const 15)) (then
    (v128.store (i32.const ${PADBLOCK}) (v128.const i64x2 0 0))
    (memory.copy (i32.const ${PADBLOCK}) (local.get $m) (i32.and (local.get $len) (i32.const 15)))
    (local.set $m (i32.const ${PADBLOCK}))
    ${polyBlock}))
  ;; the lengths: additional data 0, ciphertext len
  (i64.store (i32.const ${PADBLOCK}) (i64.const 0))
  (i64.store offset=8 (i32.const ${PADBLOCK}) (i64.extend_i32_u (local.get $len)))
  (local.set $m (i32.const ${PADBLOCK}))
  ${polyBlock}))
  ;; fully carry h
  ${set('c', `(i64.shr_u ${g('h1')} (i64.const 26))`)} ${set('h1', `(i64.and ${g('h1')} ${M26})`)}
  ${set('h2', add(g('h2'), g('c')))} ${set('c', `(i64.shr_u ${g('h2')} (i64.const 26))`)} ${set('h2', `(i64.and ${g('h2')} ${M26})`)}
  ${set('h3', add(g('h3'), g('c')))} ${set('c', `(i64.shr_u ${g('h3')} (i64.const 26))`)} ${set('h3', `(i64.and ${g('h3')} ${M26})`)}
  ${set('h4', add(g('h4'), g('c')))} ${set('c', `(i64.shr_u ${g('h4')} (i64.const 26))`)} ${set('h4', `(i64.and ${g('h4')} ${M26})`)}
  ${set('h0', add(g('h0'), `(i64.mul ${g('c')} (i64.const 5))`))} ${set('c', `(i64.shr_u ${g('h0')} (i64.const 26))`)} ${set('h0', `(i64.and ${g('h0')} ${M26})`)}
  ${set('h1', add(g('h1'), g('c')))}
  ;; g = h + 5 - 2^130; h = g unless g is negative
  ${set('g0', add(g('h0'), '(i64.const 5)'))} ${set('c', `(i64.shr_u ${g('g0')} (i64.const 26))`)} ${set('g0', `(i64.and ${g('g0')} ${M26})`)}
  ${set('g1', add(g('h1'), g('c')))} ${set('c', `(i64.shr_u ${g('g1')} (i64.const 26))`)} ${set('g1', `(i64.and ${g('g1')} ${M26})`)}
  ${set('g2', add(g('h2'), g('c')))} ${set('c', `(i64.shr_u ${g('g2')} (i64.const 26))`)} ${set('g2', `(i64.and ${g('g2')} ${M26})`)}
  ${set('g3', add(g('h3'), g('c')))} ${set('c', `(i64.shr_u ${g('g3')} (i64.const 26))`)} ${set('g3', `(i64.and ${g('g3')} ${M26})`)}
  ${set('g4', `(i64.sub ${add(g('h4'), g('c'))} (i64.const 0x4000000))`)}
  ;; mask: all ones when g4 < 0 (keep h), else zero (take g)
  ${set('mask', `(i64.shr_s ${g('g4')} (i64.const 63))`)}
  ${range(5).map((i) => set(`h${i}`, `(i64.or (i64.and ${g(`h${i}`)} ${g('mask')}) (i64.and ${g(`g${i}`)} (i64.xor ${g('mask')} (i64.const -1))))`)).join('\n')}
  ;; h to 128 bits, plus s (key bytes 16..31), mod 2^128
  ${set('h0', `(i64.and (i64.or ${g('h0')} (i64.shl ${g('h1')} (i64.const 26))) (i64.const 0xffffffff))`)}
  ${set('h1', `(i64.and (i64.or (i64.shr_u ${g('h1')} (i64.const 6)) (i64.shl ${g('h2')} (i64.const 20))) (i64.const 0xffffffff))`)}
  ${set('h2', `(i64.and (i64.or (i64.shr_u ${g('h2')} (i64.const 12)) (i64.shl ${g('h3')} (i64.const 14))) (i64.const 0xffffffff))`)}
  ${set('h3', `(i64.and (i64.or (i64.shr_u ${g('h3')} (i64.const 18)) (i64.shl ${g('h4')} (i64.const 8))) (i64.const 0xffffffff))`)}
  ${set('f', add(g('h0'), `(i64.load32_u offset=16 (local.get $k))`))}
  (i32.store offset=${TAGBUF} (i32.const 0) (i32.wrap_i64 ${g('f')}))
  ${set('f', add(g('h1'), `(i64.load32_u offset=20 (local.get $k))`, `(i64.shr_u ${g('f')} (i64.const 32))`))}
  (i32.store offset=${TAGBUF + 4} (i32.const 0) (i32.wrap_i64 ${g('f')}))
  ${set('f', add(g('h2'), `(i64.load32_u offset=24 (local.get $k))`, `(i64.shr_u ${g('f')} (i64.const 32))`))}
  (i32.store offset=${TAGBUF + 8} (i32.const 0) (i32.wrap_i64 ${g('f')}))
  ${set('f', add(g('h3'), `(i64.load32_u offset=28 (local.get $k))`, `(i64.shr_u ${g('f')} (i64.const 32))`))}
  (i32.store offset=${TAGBUF + 12} (i32.const 0) (i32.wrap_i64 ${g('f')}))
)`;

/** The one-time Poly1305 key: the first 32 bytes of keystream block 0 (the rest is scratch). */
const polyKey = `
(func $polykey (param $key i32) (param $nonce i32)
  (memory.fill (i32.const ${TAIL}) (i32.const 0) (i32.const 256))
  (call $block4 (local.get $key) (local.get $nonce) (i32.const 0) (i32.const ${TAIL}) (i32.const ${TAIL}))
  (memory.copy (i32.const ${POLYKEY}) (i32.const ${TAIL}) (i32.const 32)))`;

const wat = `(module
(memory (export "memory") 1)
${block4}
${xorStream}
${polyMac}
${polyKey}
;; For tests: bare Poly1305 of len bytes (a multiple of 16) with the key at ${POLYKEY}, tag at ${TAGBUF}.
(func (export "poly1305") (param $m i32) (param $len i32)
  (call $mac (local.get $m) (local.get $len) (i32.const 0)))
(func (export "seal") (param $key i32) (param $nonce i32) (param $src i32) (param $len i32) (param $dst i32)
  (call $polykey (local.get $key) (local.get $nonce))
  (call $xor (local.get $key) (local.get $nonce) (i32.const 1) (local.get $src) (local.get $len) (local.get $dst))
  (call $mac (local.get $dst) (local.get $len) (i32.const 1))
  (v128.store align=1 (i32.add (local.get $dst) (local.get $len)) (v128.load (i32.const ${TAGBUF}))))
(func (export "open") (param $key i32) (param $nonce i32) (param $src i32) (param $len i32) (param $dst i32) (result i32)
  (local $diff v128)
  (call $polykey (local.get $key) (local.get $nonce))
  (call $mac (local.get $src) (local.get $len) (i32.const 1))
  ;; compared in constant time
  (local.set $diff (v128.xor (v128.load (i32.const ${TAGBUF})) (v128.load align=1 (i32.add (local.get $src) (local.get $len)))))
  (if (v128.any_true (local.get $diff)) (then (return (i32.const 0))))
  (call $xor (local.get $key) (local.get $nonce) (i32.const 1) (local.get $src) (local.get $len) (local.get $dst))
  (i32.const 1))
)`;

const wabt = await wabtInit();
const mod = wabt.parseWat('chacha20poly1305.wat', wat, { simd: true, bulk_memory: true });
mod.validate();
const { buffer } = mod.toBinary({});
const text = `// Generated by scripts/gen-cipher.mjs: do not edit (see that script for what it is).
// ChaCha20-Poly1305 (RFC 8439) in WebAssembly with 128-bit SIMD, ${buffer.length} bytes.
export default '${Buffer.from(buffer).toString('base64')}';
`;
if (process.argv.includes('--check')) {
  if (readFileSync(OUT, 'utf8') !== text) {
    console.error('src/cipher/chacha20poly1305-wasm.ts is not what scripts/gen-cipher.mjs makes: run node scripts/gen-cipher.mjs');
    process.exit(1);
  }
} else {
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT.pathname} (${buffer.length} bytes of WebAssembly)`);
}
