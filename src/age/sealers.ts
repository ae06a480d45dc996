/**
 * The payload's chunks sealed and opened a group at a time, in buffers made once: the
 * WebAssembly cipher in its own memory, or node:crypto's; the chunk nonces; sealing a group of
 * a file of known size in its place in the output, and claiming groups from a counter shared
 * with another thread. Used by the main thread's streams (stream.ts) and by the encrypting
 * thread (seal-worker.ts): nothing here loads what the worker does not need (node:crypto comes
 * in as an argument).
 */
import { Buffer } from 'node:buffer';
import type * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { cipherWasmBase64, LAYOUT, TAG } from '../cipher/wasm-aead.ts';

/** Plaintext bytes per payload chunk (fixed by the format). */
export const CHUNK = 64 * 1024;
/** Chunks taken at a time: 1 MiB read, sealed and written with one call each. */
export const GROUP = 16;

/** Where the WebAssembly sealer keeps the key, the nonce, a group's plaintext and its sealed chunks. */
const KEY = LAYOUT.key;
const NONCE = LAYOUT.nonce;
const IN = LAYOUT.data;
const OUT = LAYOUT.data + CHUNK * GROUP;

/**
 * Seals groups of up to GROUP chunks in place: `buf` takes the plaintext of a group, and
 * `sealChunk(k, n, at)` seals its chunk k (n bytes) with the nonce in `nonce` into `sealed` at
 * offset `at`, returning the sealed size. Opens them too (openChunk).
 */
export interface GroupSealer {
  buf: Uint8Array;
  sealed: Uint8Array;
  nonce: Uint8Array;
  setKey(key: Uint8Array): void;
  sealChunk(k: number, n: number, at: number): number;
  /**
   * The other way: opens the sealed chunk k of a group (n bytes at k × (CHUNK + TAG) in `sealed`)
   * into its place in `buf` (k × CHUNK); false when its tag does not match.
   */
  openChunk(k: number, n: number): boolean;
  /** Collects the thread's heap (node:crypto's buffers; see nodeSealer). */
  collect: (() => void) | null;
}

/**
 * Writes a payload chunk's nonce into `into` (12 bytes): the 11-byte big-endian chunk counter,
 * then 1 on the last chunk only.
 */
export function writeChunkNonce(into: Uint8Array, counter: number, last: boolean): void {
  into.fill(0);
  for (let c = counter, i = 10; i >= 0 && c > 0; i--) {
    into[i] = c % 256;
    c = Math.floor(c / 256);
  }
  into[11] = last ? 1 : 0;
}

/** The WebAssembly cipher, reading, sealing and writing in its own memory (nothing to collect). */
export function wasmSealer(): GroupSealer {
  const ex = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(cipherWasmBase64, 'base64')), {}).exports as unknown as {
    memory: WebAssembly.Memory;
    seal(key: number, nonce: number, src: number, len: number, dst: number): void;
    open(key: number, nonce: number, src: number, len: number, dst: number): number;
  };
  ex.memory.grow(Math.ceil((OUT + (CHUNK + TAG) * GROUP) / 65536));
  const mem = new Uint8Array(ex.memory.buffer);
  return {
    buf: mem.subarray(IN, OUT),
    sealed: mem.subarray(OUT, OUT + (CHUNK + TAG) * GROUP),
    nonce: mem.subarray(NONCE, NONCE + 12),
    setKey: (key) => mem.set(key, KEY),
    sealChunk(k, n, at) {
      ex.seal(KEY, NONCE, IN + k * CHUNK, n, OUT + at);
      return n + TAG;
    },
    openChunk: (k, n) => n >= TAG && ex.open(KEY, NONCE, OUT + k * (CHUNK + TAG), n - TAG, IN + k * CHUNK) === 1,
    collect: null,
  };
}

/** node:crypto's cipher, for Node's thread (faster there than the WebAssembly one). */
export function nodeSealer(c: typeof crypto, v8: typeof import('node:v8') | null, vm: typeof import('node:vm') | null): GroupSealer {
  // Each chunk's ciphertext is a new buffer outside V8's heap, which V8 collects only once some
  // 64 MiB of it has piled up: a thread collects every 8 MiB instead (peak RSS, issue 14; every
  // 4 MiB was slower, docs/encryption.md); the main thread (no v8, vm given) never forces one.
  // Not named gc: once a thread has set the flag, later threads have a global gc.
  let collect: (() => void) | null = null;
  try {
    if (v8 && vm) {
      v8.setFlagsFromString('--expose-gc');
      collect = vm.runInNewContext('gc');
    }
  } catch {}
  const buf = Buffer.alloc(CHUNK * GROUP);
  const sealed = Buffer.alloc((CHUNK + TAG) * GROUP);
  const nonce = Buffer.alloc(12);
  let key: Uint8Array = Buffer.alloc(32);
  return {
    buf,
    sealed,
    nonce,
    setKey: (k) => {
      key = k;
    },
    sealChunk(k, n, at) {
      const cipher = c.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      const m = cipher.update(buf.subarray(k * CHUNK, k * CHUNK + n)).copy(sealed, at);
      cipher.final();
      return m + cipher.getAuthTag().copy(sealed, at + m);
    },
    openChunk(k, n) {
      if (n < TAG) return false;
      const at = k * (CHUNK + TAG);
      const d = c.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
      d.setAuthTag(sealed.subarray(at + n - TAG, at + n));
      d.update(sealed.subarray(at, at + n - TAG)).copy(buf, k * CHUNK);
      try {
        d.final();
        return true;
      } catch {
        return false;
      }
    },
    collect,
  };
}

/**
 * Seals the `bytes` that s.buf holds as chunks `first`, `first + 1`… into s.sealed (the last of
 * them flagged as the file's last when `final`; no bytes still make one, empty, chunk). Returns
 * the sealed length.
 */
export function sealBuffered(s: GroupSealer, first: number, bytes: number, final: boolean): number {
  const n = Math.max(1, Math.ceil(bytes / CHUNK));
  let len = 0;
  for (let k = 0; k < n; k++) {
    writeChunkNonce(s.nonce, first + k, final && k === n - 1);
    len += s.sealChunk(k, Math.min(bytes, (k + 1) * CHUNK) - k * CHUNK, len);
  }
  return len;
}

/** A file of known size being sealed into its place after the header (`headBytes`) in the output. */
export interface SealJob {
  fdIn: number;
  fdOut: number;
  size: number;
  headBytes: number;
}

/**
 * Seals the group of chunks that starts with chunk g of a file of known size into its place in
 * the output (header + g × (64 KiB + tag)): the same 64 KiB chunks, nonces and tags as
 * sealChunks. False when the file has no chunk g. Throws ECHANGED if the file is not
 * the size it was.
 */
function sealGroup(s: GroupSealer, job: SealJob, g: number): boolean {
  const chunks = Math.max(1, Math.ceil(job.size / CHUNK));
  if (g >= chunks) return false;
  const n = Math.min(GROUP, chunks - g);
  const want = Math.min(n * CHUNK, job.size - g * CHUNK);
  let got = 0;
  for (let r; got < want && (r = fs.readSync(job.fdIn, s.buf, got, want - got, g * CHUNK + got)) > 0; ) got += r;
  if (got !== want) throw Object.assign(new Error('the copy changed size while it was encrypted'), { code: 'ECHANGED' });
  const len = sealBuffered(s, g, got, g + n === chunks);
  for (let off = 0; off < len; ) off += fs.writeSync(job.fdOut, s.sealed, off, len - off, job.headBytes + g * (CHUNK + TAG) + off);
  return true;
}

/**
 * Seals the groups claimed one at a time from `next`, a counter in shared memory that the
 * encrypting thread and the main thread take from together, until no group is left; `between`
 * runs after each (given how many this caller has sealed). Returns that count.
 */
export async function sealClaimed(s: GroupSealer, job: SealJob, next: Int32Array, between: (sealed: number) => Promise<void> | void): Promise<number> {
  let sealed = 0;
  while (sealGroup(s, job, Atomics.add(next, 0, 1) * GROUP)) await between(++sealed);
  return sealed;
}
