/**
 * The WebAssembly ChaCha20-Poly1305 (src/cipher/) against node:crypto's (OpenSSL) as the oracle:
 * every length around its block edges (64-byte ChaCha20 blocks, the 4-block SIMD step of 256
 * bytes, 16-byte Poly1305 blocks, a whole 64 KiB age chunk), a tampered byte anywhere is refused,
 * and the committed module is what scripts/gen-cipher.mjs makes. Both ciphers, as the age code
 * uses them, against Wycheproof's vectors (test/vectors/wycheproof/). The age format on top of
 * them is checked against the `age` CLI in test/age.test.ts (under Bun, and with the cipher forced
 * here) and against the CCTV vectors in test/age-vectors.test.ts.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeAead, wasmAead, type Aead } from '../src/age/primitives.ts';
import { nodeSealer, wasmSealer, type GroupSealer } from '../src/age/sealers.ts';
import { WasmAead, cipherWasmBase64 } from '../src/cipher/wasm-aead.ts';
import { ROOT } from './helpers.ts';

const test = suite('cipher');

function opensslSeal(key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

const LENGTHS = [0, 1, 15, 16, 17, 31, 32, 63, 64, 65, 127, 128, 255, 256, 257, 271, 272, 511, 512, 513, 1000, 4095, 4096, 65535, 65536];

test('seals like OpenSSL at every length around the block edges, and opens what it sealed', () => {
  const w = new WasmAead();
  for (const len of LENGTHS) {
    for (let rep = 0; rep < 3; rep++) {
      const key = crypto.randomBytes(32);
      const nonce = crypto.randomBytes(12);
      const plain = crypto.randomBytes(len);
      const want = opensslSeal(key, nonce, plain);
      assert.ok(Buffer.from(w.seal(key, nonce, plain)).equals(want), `seal, ${len} bytes`);
      const back = w.open(key, nonce, want);
      assert.ok(back && Buffer.from(back).equals(plain), `open, ${len} bytes`);
    }
  }
});

test('a key, nonce or byte changed anywhere is refused', () => {
  const w = new WasmAead();
  const key = crypto.randomBytes(32);
  const nonce = crypto.randomBytes(12);
  const sealed = opensslSeal(key, nonce, crypto.randomBytes(300));
  for (let i = 0; i < sealed.length; i++) {
    const bad = Buffer.from(sealed);
    bad[i] ^= 1 << (i % 8);
    assert.is(w.open(key, nonce, bad), null, `byte ${i} flipped`);
  }
  const otherKey = Buffer.from(key);
  otherKey[31] ^= 0x80;
  assert.is(w.open(otherKey, nonce, sealed), null, 'another key');
  const otherNonce = Buffer.from(nonce);
  otherNonce[11] ^= 1;
  assert.is(w.open(key, otherNonce, sealed), null, 'another nonce (the last-chunk flag of age)');
  assert.is(w.open(key, nonce, sealed.subarray(0, 15)), null, 'shorter than a tag');
  assert.is(w.open(key, nonce, sealed.subarray(0, sealed.length - 1)), null, 'truncated');
});

test('Poly1305 carries: all-ones plaintexts and keys (the final reduction edge)', () => {
  const w = new WasmAead();
  for (const fill of [0x00, 0xff]) {
    for (const len of [16, 64, 256, 4096]) {
      const key = Buffer.alloc(32, fill);
      const nonce = Buffer.alloc(12, fill);
      // The ciphertext is what Poly1305 reads: make it all-ones by choosing the plaintext.
      const keystream = opensslSeal(key, nonce, Buffer.alloc(len)).subarray(0, len);
      const plain = Buffer.from(keystream.map((b) => b ^ 0xff));
      assert.ok(Buffer.from(w.seal(key, nonce, plain)).equals(opensslSeal(key, nonce, plain)), `fill ${fill}, ${len} bytes`);
    }
  }
});

/** Poly1305 by its definition, in BigInt (the oracle for the module's bare Poly1305). */
function poly1305Reference(key: Buffer, msg: Buffer): Buffer {
  const le = (b: Buffer) => BigInt(`0x${Buffer.from(b).reverse().toString('hex') || '0'}`);
  const p = (1n << 130n) - 5n;
  const r = le(key.subarray(0, 16)) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
  let h = 0n;
  for (let i = 0; i < msg.length; i += 16) h = ((h + le(msg.subarray(i, i + 16)) + (1n << 128n)) * r) % p;
  const tag = (h + le(key.subarray(16))) & ((1n << 128n) - 1n);
  return Buffer.from(tag.toString(16).padStart(32, '0'), 'hex').reverse();
}

test('Poly1305 at the edges of its final reduction (RFC 8439 A.3 #6-#11 inputs, against its definition)', () => {
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(cipherWasmBase64, 'base64')), {});
  const ex = exports as unknown as { memory: WebAssembly.Memory; poly1305(m: number, len: number): void };
  const mac = (key: Buffer, msg: Buffer) => {
    const mem = new Uint8Array(ex.memory.buffer);
    mem.set(key, 0);
    mem.set(msg, 1024);
    ex.poly1305(1024, msg.length);
    return Buffer.from(mem.subarray(80, 96));
  };
  const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
  const ff = 'ff'.repeat(16);
  const zero = '00'.repeat(16);
  const r = (first: string) => first + '00'.repeat(16 - first.length / 2);
  const cases: [string, string, string][] = [
    [r('02'), zero, ff], // #6: h reaches 2^130 - 2 (above p)
    [r('02'), ff, r('02')], // #7: s makes the sum overflow 2^128
    [r('01'), zero, ff + 'f0' + 'ff'.repeat(15) + '11' + '00'.repeat(15)], // #8
    [r('01'), zero, ff + 'fb' + 'fe'.repeat(15) + '01'.repeat(16)], // #9: h reaches p exactly
    [r('02'), zero, 'fd' + 'ff'.repeat(15)], // #10
    ['01000000000000000400000000000000', zero, 'e33594d7505e43b900000000000000003394d7505e4379cd01000000000000000000000000000000000000000000000001000000000000000000000000000000'], // #11
  ];
  for (const [i, [rk, sk, m]] of cases.entries()) {
    const key = hex(rk + sk);
    assert.is(mac(key, hex(m)).toString('hex'), poly1305Reference(key, hex(m)).toString('hex'), `case ${i + 6}`);
  }
  // #6, #9 and #10 known answers, in case the reference were wrong the same way.
  assert.is(mac(hex(r('02') + zero), hex(ff)).toString('hex'), '03' + '00'.repeat(15));
  assert.is(mac(hex(r('01') + zero), hex(ff + 'fb' + 'fe'.repeat(15) + '01'.repeat(16))).toString('hex'), '00'.repeat(16));
  for (let i = 0; i < 200; i++) {
    const key = crypto.randomBytes(32);
    const msg = crypto.randomBytes(16 * (1 + (i % 8)));
    assert.is(mac(key, msg).toString('hex'), poly1305Reference(key, msg).toString('hex'), 'random');
  }
});

interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}
const wycheproof = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'vectors', 'wycheproof', 'chacha20_poly1305_test.json'), 'utf8')) as {
  numberOfTests: number;
  testGroups: { keySize: number; ivSize: number; tagSize: number; tests: WycheproofTest[] }[];
};

// Our ciphers take a 256-bit key, a 96-bit nonce and no associated data (age uses none): a
// vector with other sizes is skipped; one with associated data is checked as far as it can be
// (the ciphertext, which does not depend on it) when it is valid, and skipped when it is not (its
// defect is in the tag, which covers the data).
const whole: WycheproofTest[] = [];
const ciphertextOnly: WycheproofTest[] = [];
const skippedSizes: WycheproofTest[] = [];
const skippedInvalidWithData: WycheproofTest[] = [];
for (const g of wycheproof.testGroups) {
  for (const t of g.tests) {
    if (g.keySize !== 256 || g.ivSize !== 96 || g.tagSize !== 128) skippedSizes.push(t);
    else if (t.aad === '') whole.push(t);
    else if (t.result === 'valid') ciphertextOnly.push(t);
    else skippedInvalidWithData.push(t);
  }
}

/** One message sealed and opened with a cipher as the age code uses it. */
interface OneShot {
  seal(key: Buffer, nonce: Buffer, plain: Buffer): Buffer;
  open(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | null;
}
const viaAead = (a: Aead): OneShot => ({
  seal: (key, nonce, plain) => Buffer.concat(a.seal(key, nonce, plain)),
  open: (key, nonce, sealed) => {
    const plain = a.open(key, nonce, sealed);
    return plain && Buffer.from(plain);
  },
});
const viaSealer = (s: GroupSealer): OneShot => ({
  seal(key, nonce, plain) {
    s.setKey(key);
    s.nonce.set(nonce);
    s.buf.set(plain);
    return Buffer.from(s.sealed.subarray(0, s.sealChunk(0, plain.length, 0)));
  },
  open(key, nonce, sealed) {
    s.setKey(key);
    s.nonce.set(nonce);
    s.sealed.set(sealed);
    return s.openChunk(0, sealed.length) ? Buffer.from(s.buf.subarray(0, sealed.length - 16)) : null;
  },
});
const ONE_SHOTS: Record<string, OneShot> = {
  "node:crypto's AEAD (header)": viaAead(nodeAead),
  'the WebAssembly AEAD (header)': viaAead(wasmAead),
  "node:crypto's sealer (payload)": viaSealer(nodeSealer(crypto, null, null)),
  'the WebAssembly sealer (payload)': viaSealer(wasmSealer()),
};
const hex = (s: string) => Buffer.from(s, 'hex');

test(`Wycheproof ChaCha20-Poly1305: ${whole.length} vectors without associated data through both ciphers (AEADs and sealers): the exact ciphertext and tag, opened back; refused with a bit of the tag flipped`, () => {
  assert.is(whole.length + ciphertextOnly.length + skippedSizes.length + skippedInvalidWithData.length, wycheproof.numberOfTests);
  assert.ok(whole.length > 0);
  for (const [name, c] of Object.entries(ONE_SHOTS)) {
    for (const t of whole) {
      const where = `${name}, tcId ${t.tcId} (${t.comment || t.flags.join(', ')})`;
      const sealed = Buffer.concat([hex(t.ct), hex(t.tag)]);
      const opened = c.open(hex(t.key), hex(t.iv), sealed);
      if (t.result === 'invalid') {
        assert.is(opened, null, `${where}: opened`);
        continue;
      }
      assert.is(t.result, 'valid', where);
      assert.is(c.seal(hex(t.key), hex(t.iv), hex(t.msg)).toString('hex'), sealed.toString('hex'), `${where}: sealed`);
      assert.is(opened?.toString('hex'), t.msg, `${where}: opened`);
      const tampered = Buffer.from(sealed);
      tampered[tampered.length - 1] ^= 0x80;
      assert.is(c.open(hex(t.key), hex(t.iv), tampered), null, `${where}: opened with its tag changed`);
    }
  }
});

test(`Wycheproof ChaCha20-Poly1305: the ciphertext of the ${ciphertextOnly.length} valid vectors with associated data, through both ciphers (skipped: ${skippedInvalidWithData.length} invalid ones with associated data, ${skippedSizes.length} with nonces other than 96 bits)`, () => {
  assert.ok(ciphertextOnly.length > 0);
  assert.ok(skippedSizes.every((t) => t.result === 'invalid'));
  for (const [name, c] of Object.entries(ONE_SHOTS)) {
    for (const t of ciphertextOnly) {
      const msg = hex(t.msg);
      assert.is(c.seal(hex(t.key), hex(t.iv), msg).subarray(0, msg.length).toString('hex'), t.ct, `${name}, tcId ${t.tcId}`);
    }
  }
});

test('the committed module is what scripts/gen-cipher.mjs makes', () => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'gen-cipher.mjs'), '--check'], { stdio: 'pipe' });
});

test.run();
