/**
 * The age format's primitives for the header and for single messages: X25519, HKDF-SHA-256 and
 * HMAC-SHA-256 from node:crypto on every runtime, and ChaCha20-Poly1305 from it when it has one,
 * else our WebAssembly one (src/cipher/: Bun's node:crypto lacks it). The payload's chunks are
 * sealed by sealers.ts, in buffers of their own.
 */
import * as crypto from 'node:crypto';
import { TAG, WasmAead } from '../cipher/wasm-aead.ts';

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

const privateKey = (raw: Uint8Array) => crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
const publicKey = (raw: Uint8Array) => crypto.createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });

/** The X25519 public key of a 32-byte secret. */
export function publicKeyOf(secret: Uint8Array): Uint8Array {
  return new Uint8Array((crypto.createPublicKey(privateKey(secret)).export({ format: 'der', type: 'spki' }) as Buffer).subarray(SPKI_X25519.length));
}

/** X25519; null for a low-order point (an all-zero shared secret, which the format forbids). */
export function x25519(secret: Uint8Array, peer: Uint8Array): Uint8Array | null {
  try {
    const shared = new Uint8Array(crypto.diffieHellman({ privateKey: privateKey(secret), publicKey: publicKey(peer) }));
    return shared.some((b) => b !== 0) ? shared : null;
  } catch {
    return null;
  }
}

export const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: string) => new Uint8Array(crypto.hkdfSync('sha256', ikm, salt, info, 32));
export const hmac = (key: Uint8Array, data: Uint8Array) => crypto.createHmac('sha256', key).update(data).digest();

export interface Aead {
  /** The ciphertext and tag, as one or more buffers (not joined: a copy of 64 KiB per chunk saved). */
  seal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array): Uint8Array[];
  /** null when the tag does not match. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Uint8Array | null;
}

export const nodeAead: Aead = {
  seal(key, nonce, plain) {
    const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
    const body = c.update(plain);
    const last = c.final();
    return last.length ? [body, last, c.getAuthTag()] : [body, c.getAuthTag()];
  },
  open(key, nonce, sealed) {
    if (sealed.length < TAG) return null;
    const d = crypto.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    const body = d.update(sealed.subarray(0, sealed.length - TAG));
    try {
      const last = d.final();
      return last.length ? Buffer.concat([body, last]) : body;
    } catch {
      return null;
    }
  },
};

/** A WebAssembly ChaCha20-Poly1305 (src/cipher/), made on first use. */
let wasm: WasmAead | undefined;
export const wasmAead: Aead = {
  seal: (key, nonce, plain) => [(wasm ??= new WasmAead()).seal(key, nonce, plain)],
  open: (key, nonce, sealed) => (wasm ??= new WasmAead()).open(key, nonce, sealed),
};

/**
 * The runtime's ChaCha20-Poly1305 when it has one (Node and Deno: OpenSSL / Rust, 1–2 GiB/s per
 * 64 KiB chunk here), else the WebAssembly one (Bun: ~430 MiB/s).
 */
export const aead: Aead = (() => {
  try {
    nodeAead.seal(new Uint8Array(32), new Uint8Array(12), new Uint8Array(1));
    return nodeAead;
  } catch {
    return wasmAead;
  }
})();
