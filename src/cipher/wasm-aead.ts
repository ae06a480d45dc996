/**
 * ChaCha20-Poly1305 (RFC 8439) in WebAssembly, the same on every runtime: Bun's node:crypto has
 * no ChaCha20-Poly1305 at all, and Deno's makes a new buffer per call (garbage its worker
 * threads collect slowly). The module (scripts/gen-cipher.mjs, ~6 KB) seals 64 KiB chunks at
 * ~700 MiB/s under Node and Deno and ~430 MiB/s under Bun, against 1–2 GiB/s for node:crypto's
 * (OpenSSL) and ~87 MiB/s for the JavaScript cipher it replaces (docs/encryption.md). Tested
 * against node:crypto, a Poly1305 by its definition, and the `age` CLI (test/cipher.test.ts,
 * test/age.test.ts).
 */
import { Buffer } from 'node:buffer';
import wasmBase64 from './chacha20poly1305-wasm.ts';

export { default as cipherWasmBase64 } from './chacha20poly1305-wasm.ts';

/** Where things live in the module's memory: 0..511 is the module's own scratch. */
export const LAYOUT = { key: 512, nonce: 544, data: 1024 } as const;
const PAGE = 65536;
/** Bytes of the Poly1305 tag after each ciphertext. */
export const TAG = 16;

interface Exports {
  memory: WebAssembly.Memory;
  seal(key: number, nonce: number, src: number, len: number, dst: number): void;
  open(key: number, nonce: number, src: number, len: number, dst: number): number;
}

let module: WebAssembly.Module | undefined;

/** One instance: its own memory, used by one caller at a time (synchronous calls only). */
export class WasmAead {
  private readonly ex: Exports;
  private mem: Uint8Array;

  constructor() {
    try {
      module ??= new WebAssembly.Module(Buffer.from(wasmBase64, 'base64'));
    } catch (e) {
      // Every runtime blufio supports has WebAssembly SIMD (Node 20, Deno 2, Bun 1.x); an older one may not.
      throw new Error(`this runtime cannot run blufio's ChaCha20-Poly1305 (WebAssembly SIMD): ${(e as Error).message}; run blufio under Node 20 or later`, { cause: e });
    }
    this.ex = new WebAssembly.Instance(module, {}).exports as unknown as Exports;
    this.mem = new Uint8Array(this.ex.memory.buffer);
  }

  /** Room for `len` bytes in and len + 16 out, past the data offset. */
  private room(len: number): { src: number; dst: number } {
    const src = LAYOUT.data;
    const dst = src + ((len + 15) & ~15);
    const need = dst + len + TAG;
    if (need > this.mem.length) {
      this.ex.memory.grow(Math.ceil((need - this.mem.length) / PAGE));
      this.mem = new Uint8Array(this.ex.memory.buffer);
    }
    return { src, dst };
  }

  private keyed(key: Uint8Array, nonce: Uint8Array): void {
    if (key.length !== 32 || nonce.length !== 12) throw new Error('ChaCha20-Poly1305 takes a 32-byte key and a 12-byte nonce');
    this.mem.set(key, LAYOUT.key);
    this.mem.set(nonce, LAYOUT.nonce);
  }

  /** The ciphertext followed by its 16-byte tag, in a new buffer. */
  seal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array): Uint8Array {
    const { src, dst } = this.room(plain.length);
    this.keyed(key, nonce);
    this.mem.set(plain, src);
    this.ex.seal(LAYOUT.key, LAYOUT.nonce, src, plain.length, dst);
    return Buffer.from(this.mem.subarray(dst, dst + plain.length + TAG));
  }

  /** The plaintext in a new buffer, or null when the tag does not match (or there is none). */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Uint8Array | null {
    if (sealed.length < TAG) return null;
    const len = sealed.length - TAG;
    const { src, dst } = this.room(sealed.length);
    this.keyed(key, nonce);
    this.mem.set(sealed, src);
    if (!this.ex.open(LAYOUT.key, LAYOUT.nonce, src, len, dst)) return null;
    return Buffer.from(this.mem.subarray(dst, dst + len));
  }
}
