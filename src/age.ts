/**
 * The age v1 file format (https://age-encryption.org/v1) with X25519 recipients, as streams.
 *
 * A backup encrypted here decrypts with the `age` CLI (`age -d -i key.txt`), and files the `age`
 * CLI writes (`age -r age1…`) decrypt here: the format is the standard one, byte for byte —
 *
 *   age-encryption.org/v1
 *   -> X25519 <ephemeral share, base64>
 *   <file key wrapped with ChaCha20-Poly1305, base64>
 *   --- <HMAC-SHA256 of the header, base64>
 *   <16-byte nonce><payload: 64 KiB chunks, each ChaCha20-Poly1305 sealed, the last one flagged>
 *
 * Why our own code and not the `age-encryption` package (measured, docs/encryption.md): its pure
 * JavaScript cipher ran 38 MiB/s on Node 20, which would make an encrypted backup of a 200 MB
 * database take 5 s longer than a plain one; the runtime's own ChaCha20-Poly1305 (OpenSSL) runs at
 * ~740 MiB/s. X25519, HKDF and HMAC come from node:crypto on every runtime; only the AEAD falls
 * back to our WebAssembly ChaCha20-Poly1305 (src/cipher/) where node:crypto lacks it (Bun). The format is tested against the `age`
 * CLI and the `age-encryption` package in both directions (test/age.test.ts).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { cipherWasmBase64, LAYOUT as WASM_LAYOUT, WasmAead } from './cipher/wasm-aead.ts';
import { BlufioError } from './errors.ts';
import { readFully, writeFully } from './vfs/disk-file.ts';

const MAGIC = 'age-encryption.org/v1';
/** What every age file starts with. */
export const AGE_MAGIC = Buffer.from(`${MAGIC}\n`);
/** Plaintext bytes per payload chunk (fixed by the format). */
const CHUNK = 64 * 1024;
export const CHUNK_BYTES = CHUNK;
const TAG = 16;
/** A header bigger than this is not one blufio or age would write (a stanza is ~100 bytes). */
const MAX_HEADER = 1024 * 1024;

/** An X25519 recipient: who a backup is encrypted to (`age1…`). */
export interface Recipient {
  /** The recipient as written (`age1…`), for messages. */
  text: string;
  publicKey: Uint8Array;
}

/** An X25519 identity: the private key that decrypts (`AGE-SECRET-KEY-1…`). */
export interface Identity {
  secretKey: Uint8Array;
  /** The matching public key, needed to unwrap (it is part of the HKDF salt). */
  publicKey: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Keys: bech32 (BIP 173) texts.

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i];
  }
  return chk >>> 0;
}

const hrpExpand = (hrp: string) => [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];

function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | null {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const max = (1 << to) - 1;
  for (let i = 0; i < data.length; i++) {
    acc = (acc << from) | data[i];
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & max);
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & max);
  } else if (bits >= from || acc !== 0) {
    return null;
  }
  return out;
}

function bech32Encode(hrp: string, bytes: Uint8Array): string {
  const data = convertBits(bytes, 8, 5, true)!;
  const mod = polymod([...hrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = [0, 1, 2, 3, 4, 5].map((i) => (mod >>> (5 * (5 - i))) & 31);
  return `${hrp}1${[...data, ...checksum].map((d) => CHARSET[d]).join('')}`;
}

function bech32Decode(text: string): { hrp: string; bytes: Uint8Array } | null {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return null;
  const s = text.toLowerCase();
  const sep = s.lastIndexOf('1');
  if (sep < 1 || sep + 7 > s.length) return null;
  const hrp = s.slice(0, sep);
  const data = [...s.slice(sep + 1)].map((c) => CHARSET.indexOf(c));
  if (data.some((d) => d < 0) || [...hrp].some((c) => c.charCodeAt(0) < 33 || c.charCodeAt(0) > 126)) return null;
  if (polymod([...hrpExpand(hrp), ...data]) !== 1) return null;
  const bytes = convertBits(data.slice(0, -6), 5, 8, false);
  return bytes ? { hrp, bytes: Uint8Array.from(bytes) } : null;
}

/** Parses one recipient (`age1…`); `where` names where it came from in the error. */
export function parseRecipient(text: string, where = 'recipient'): Recipient {
  const t = text.trim().replace(/^\uFEFF/, '');
  if (/^AGE-SECRET-KEY-/i.test(t)) {
    // Never echoed: it would land in cron mail and logs.
    throw new BlufioError('E_KEY', `${where} is a secret key (AGE-SECRET-KEY-…), not a public key; it was not printed, but keep it off this server`,
      'give its public key instead (age-keygen -y <key file> prints it)');
  }
  // What does not look like a key is shown only in part: it may be something secret pasted by mistake.
  const shown = t.startsWith('age1') || t.startsWith('ssh-') ? (t.length > 80 ? `${t.slice(0, 77)}...` : t) : `${t.slice(0, 6)}…`;
  if (/^age1pq1/i.test(t)) {
    throw new BlufioError('E_KEY', `${where} "${shown}" is a post-quantum age key, which age 1.1 and older cannot read`, 'use an X25519 key (age1…) from blufio keygen or age-keygen');
  }
  if (/^(ssh-|ecdsa-|sk-)/.test(t)) {
    throw new BlufioError('E_KEY', `${where} "${shown}" is an SSH key; blufio encrypts to age X25519 keys only`, 'make one with blufio keygen (or age-keygen) and use its public key (age1…)');
  }
  const d = bech32Decode(t);
  if (!d || d.hrp !== 'age' || d.bytes.length !== 32 || t !== t.toLowerCase()) {
    throw new BlufioError('E_KEY', `${where} "${shown}" is not an age public key (age1… with 58 more letters and digits)`, 'copy the "public key" line that blufio keygen or age-keygen printed');
  }
  return { text: t, publicKey: d.bytes };
}

/** Parses an age recipients file: one recipient per line, `#` comments and blank lines ignored. */
export function parseRecipientsFile(text: string, file: string): Recipient[] {
  const out: Recipient[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    out.push(parseRecipient(t, `${file}:${i + 1}: recipient`));
  });
  return out;
}

/** Parses an identity file as age-keygen writes it: `AGE-SECRET-KEY-1…` lines, `#` comments. */
export function parseIdentityFile(text: string, file: string): Identity[] {
  if (text.startsWith(MAGIC) && !/^-> scrypt /m.test(text)) {
    // Encrypted to a key, not with a passphrase: a backup, most likely, given in the key's place.
    throw new BlufioError('E_KEY', `${file} is an age-encrypted file (a backup?), not a key file`,
      'give with --identity the key file that blufio keygen or age-keygen wrote (it holds an AGE-SECRET-KEY-1... line), and the backup as the file to read');
  }
  if (text.startsWith(MAGIC) || text.startsWith('-----BEGIN AGE ENCRYPTED FILE-----')) {
    throw new BlufioError('E_KEY', `the identity file ${file} is itself encrypted (a passphrase-protected key?)`, `if it is your key, decrypt it first: age -d -o key.txt ${file}, and keep key.txt private`);
  }
  if (/-----BEGIN (OPENSSH|RSA|EC) PRIVATE KEY-----/.test(text)) {
    throw new BlufioError('E_KEY', `the identity file ${file} is an SSH key; blufio decrypts with age X25519 keys only`, 'give the key file that blufio keygen or age-keygen wrote');
  }
  const out: Identity[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const d = t.startsWith('AGE-SECRET-KEY-1') ? bech32Decode(t) : null;
    if (!d || d.hrp !== 'age-secret-key-' || d.bytes.length !== 32) {
      const what = t.startsWith('AGE-PLUGIN-') ? 'an age plugin key, which blufio cannot use' : t.startsWith('AGE-SECRET-KEY-PQ-') ? 'a post-quantum key, which blufio cannot use'
        : t.startsWith('age1') ? 'a public key (what backups are encrypted to), not the private key that decrypts them' : 'not an age secret key (AGE-SECRET-KEY-1…)';
      throw new BlufioError('E_KEY', `${file}:${i + 1}: ${what}`, 'give the key file that blufio keygen or age-keygen wrote');
    }
    out.push({ secretKey: d.bytes, publicKey: publicKeyOf(d.bytes) });
  });
  if (out.length === 0) throw new BlufioError('E_KEY', `the identity file ${file} holds no key`, 'give the key file that blufio keygen or age-keygen wrote');
  return out;
}

/** A new identity, as the text of an age-keygen key file, and its public key. */
export function generateIdentity(now = new Date()): { file: string; recipient: string } {
  const secret = crypto.randomBytes(32);
  const recipient = bech32Encode('age', publicKeyOf(secret));
  const created = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return {
    file: `# created: ${created}\n# public key: ${recipient}\n${bech32Encode('age-secret-key-', secret).toUpperCase()}\n`,
    recipient,
  };
}

// ---------------------------------------------------------------------------------------------
// Primitives: X25519, HKDF and HMAC from node:crypto; ChaCha20-Poly1305 from it when it has it.

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

const privateKey = (raw: Uint8Array) => crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
const publicKey = (raw: Uint8Array) => crypto.createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });

function publicKeyOf(secret: Uint8Array): Uint8Array {
  return new Uint8Array((crypto.createPublicKey(privateKey(secret)).export({ format: 'der', type: 'spki' }) as Buffer).subarray(SPKI_X25519.length));
}

/** X25519; null for a low-order point (an all-zero shared secret, which the format forbids). */
function x25519(secret: Uint8Array, peer: Uint8Array): Uint8Array | null {
  try {
    const shared = new Uint8Array(crypto.diffieHellman({ privateKey: privateKey(secret), publicKey: publicKey(peer) }));
    return shared.some((b) => b !== 0) ? shared : null;
  } catch {
    return null;
  }
}

const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: string) => new Uint8Array(crypto.hkdfSync('sha256', ikm, salt, info, 32));
const hmac = (key: Uint8Array, data: Uint8Array) => crypto.createHmac('sha256', key).update(data).digest();

interface Aead {
  /** The ciphertext and tag, as one or more buffers (not joined: a copy of 64 KiB per chunk saved). */
  seal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array): Uint8Array[];
  /** null when the tag does not match. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Uint8Array | null;
}

const nodeAead: Aead = {
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
const wasmAead: Aead = {
  seal: (key, nonce, plain) => [(wasm ??= new WasmAead()).seal(key, nonce, plain)],
  open: (key, nonce, sealed) => (wasm ??= new WasmAead()).open(key, nonce, sealed),
};

/**
 * The runtime's ChaCha20-Poly1305 when it has one (Node and Deno: OpenSSL / Rust, 1–2 GiB/s per
 * 64 KiB chunk here), else the WebAssembly one (Bun: ~430 MiB/s).
 */
const aead: Aead = (() => {
  try {
    nodeAead.seal(new Uint8Array(32), new Uint8Array(12), new Uint8Array(1));
    return nodeAead;
  } catch {
    return wasmAead;
  }
})();

// ---------------------------------------------------------------------------------------------
// Header.

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64').replace(/=+$/, '');

/** Strict, canonical unpadded base64 (the format rejects anything else); null if it is not. */
function unb64(s: string): Uint8Array | null {
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) return null;
  const bytes = Buffer.from(s, 'base64');
  return b64(bytes) === s ? new Uint8Array(bytes) : null;
}

const ZERO_NONCE = new Uint8Array(12);
const X25519_INFO = 'age-encryption.org/v1/X25519';

/** Wraps the file key to one recipient: the `-> X25519` stanza. */
function x25519Stanza(fileKey: Uint8Array, r: Recipient): string {
  const ephemeral = crypto.randomBytes(32);
  const share = publicKeyOf(ephemeral);
  const shared = x25519(ephemeral, r.publicKey);
  if (!shared) throw new BlufioError('E_KEY', `recipient "${r.text}" is not a usable X25519 key (a low-order point)`, 'use a key made by blufio keygen or age-keygen');
  const wrapKey = hkdf(shared, Buffer.concat([share, r.publicKey]), X25519_INFO);
  const body = b64(Buffer.concat(aead.seal(wrapKey, ZERO_NONCE, fileKey)));
  // Body lines are 64 columns; the last one is always shorter (empty if need be).
  const lines: string[] = body.match(/.{1,64}/g) ?? [];
  if (body.length % 64 === 0) lines.push('');
  return `-> X25519 ${b64(share)}\n${lines.join('\n')}\n`;
}

/** The header (with the payload nonce after it) and the payload key of a new file. */
function newFile(recipients: Recipient[]): { head: Buffer; payloadKey: Uint8Array } {
  if (recipients.length === 0) throw new BlufioError('E_USAGE', 'encrypting needs at least one recipient', 'pass --recipient age1… or set backup.age_recipients in blufio.toml');
  const fileKey = crypto.randomBytes(16);
  const text = `${MAGIC}\n${recipients.map((r) => x25519Stanza(fileKey, r)).join('')}---`;
  const mac = hmac(hkdf(fileKey, new Uint8Array(0), 'header'), Buffer.from(text));
  const nonce = crypto.randomBytes(16);
  return { head: Buffer.concat([Buffer.from(`${text} ${b64(mac)}\n`), nonce]), payloadKey: hkdf(fileKey, nonce, 'payload') };
}

interface Stanza {
  type: string;
  args: string[];
  body: Uint8Array;
}

/**
 * Parses a header; returns its stanzas, the bytes the MAC covers, the MAC, and where the payload
 * nonce starts. null while `buf` does not yet hold the whole header; an error if it is not one.
 */
function parseHeader(buf: Buffer, name: string): { stanzas: Stanza[]; macInput: Buffer; mac: Uint8Array; end: number } | null {
  const damaged = (why: string) => new BlufioError('E_CORRUPT', `${name} is not a valid age file: ${why}`, 'the file is damaged or was not written by age or blufio; use another backup file');
  if (buf.length < AGE_MAGIC.length) return null;
  if (!buf.subarray(0, AGE_MAGIC.length).equals(AGE_MAGIC)) throw damaged('it does not start with age-encryption.org/v1');
  const stanzas: Stanza[] = [];
  let pos = AGE_MAGIC.length;
  const line = (): string | null => {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) {
      if (buf.length > MAX_HEADER) throw damaged('its header is too long');
      return null;
    }
    const l = buf.subarray(pos, nl).toString('latin1');
    pos = nl + 1;
    return l;
  };
  for (;;) {
    const start = pos;
    const l = line();
    if (l === null) return null;
    if (l.startsWith('--- ')) {
      const mac = unb64(l.slice(4));
      if (!mac || mac.length !== 32) throw damaged('its header MAC is malformed');
      return { stanzas, macInput: buf.subarray(0, start + 3), mac, end: pos };
    }
    if (!l.startsWith('-> ')) throw damaged('its header has a line that is neither a stanza nor the MAC');
    const args = l.slice(3).split(' ');
    if (args.some((a) => a === '' || !/^[\x21-\x7e]+$/.test(a))) throw damaged('a stanza has a malformed argument');
    const chunks: Uint8Array[] = [];
    for (;;) {
      const b = line();
      if (b === null) return null;
      const bytes = unb64(b);
      if (!bytes || b.length > 64) throw damaged('a stanza body is not canonical base64 in 64-column lines');
      chunks.push(bytes);
      if (b.length < 64) break;
    }
    stanzas.push({ type: args[0], args: args.slice(1), body: Buffer.concat(chunks) });
  }
}

/**
 * Opens the header at the start of `buf` with one of `identities`: the file key unwrapped, the
 * header's MAC checked, the payload key derived. null while `buf` does not yet hold the header and
 * the payload nonce; an E_KEY error for the wrong keys, E_CORRUPT for a damaged header.
 */
function openHeader(buf: Buffer, identities: Identity[], name: string): { payloadKey: Uint8Array; payloadStart: number } | null {
  const h = parseHeader(buf, name);
  if (!h || buf.length < h.end + 16) return null;
  const fileKey = unwrapFileKey(h.stanzas, identities, name);
  if (!crypto.timingSafeEqual(hmac(hkdf(fileKey, new Uint8Array(0), 'header'), h.macInput), h.mac)) {
    throw new BlufioError('E_CORRUPT', `${name} has a damaged or tampered header (its MAC does not match)`, 'use another backup file; nothing was replaced');
  }
  return { payloadKey: hkdf(fileKey, buf.subarray(h.end, h.end + 16), 'payload'), payloadStart: h.end + 16 };
}

/** The file key, unwrapped with one of `identities`; an E_KEY error saying why not. */
function unwrapFileKey(stanzas: Stanza[], identities: Identity[], name: string): Uint8Array {
  if (stanzas.some((s) => s.type === 'scrypt')) {
    throw new BlufioError('E_KEY', `${name} is encrypted with a passphrase; blufio decrypts files encrypted to age keys`, `decrypt it with age -d first, or encrypt backups to a key (age -r age1…)`);
  }
  for (const s of stanzas) {
    if (s.type !== 'X25519') continue;
    const share = s.args.length === 1 ? unb64(s.args[0]) : null;
    if (!share || share.length !== 32 || s.body.length !== 32) {
      throw new BlufioError('E_CORRUPT', `${name} is not a valid age file: a malformed X25519 stanza`, 'the file is damaged; use another backup file');
    }
    for (const id of identities) {
      const shared = x25519(id.secretKey, share);
      if (!shared) continue;
      const key = aead.open(hkdf(shared, Buffer.concat([share, id.publicKey]), X25519_INFO), ZERO_NONCE, s.body);
      if (key && key.length === 16) return key;
    }
  }
  const types = [...new Set(stanzas.map((s) => s.type))].filter((t) => t !== 'X25519');
  throw new BlufioError('E_KEY', `${name} is not encrypted to any of the given identities${types.length ? ` (it also has ${types.join(', ')} stanzas, which blufio cannot use)` : ''}`,
    'give the key file of one of the recipients it was encrypted to: --identity <file> (or backup.age_identity_file, BLUFIO_AGE_IDENTITY_FILE)');
}

// ---------------------------------------------------------------------------------------------
// Payload: the STREAM construction over 64 KiB chunks.

function chunkNonce(counter: number, last: boolean): Uint8Array {
  const n = new Uint8Array(12);
  writeChunkNonce(n, counter, last);
  return n;
}

/**
 * Writes a payload chunk's nonce into `into` (12 bytes): the 11-byte big-endian chunk counter,
 * then 1 on the last chunk only. Uses nothing but its arguments: its source is also the
 * encrypting thread's.
 */
function writeChunkNonce(into: Uint8Array, counter: number, last: boolean): void {
  into.fill(0);
  for (let c = counter, i = 10; i >= 0 && c > 0; i--) {
    into[i] = c % 256;
    c = Math.floor(c / 256);
  }
  into[11] = last ? 1 : 0;
}

/**
 * Opens an age file far enough to know it can be decrypted: reads its header, finds the file
 * key with one of `identities` (an E_KEY error if none fits), authenticates the header and
 * decrypts the first chunk, which is returned (what the plaintext starts with: a gzip or SQLite
 * header). Reads at most the header and one chunk.
 */
export function peekAgeFile(file: string, identities: Identity[], name: string): Uint8Array {
  const fd = fs.openSync(file, 'r');
  let buf: Buffer;
  try {
    // Armored files are ~4/3 bigger (plus line ends): read enough text for a header and a chunk.
    const want = Math.ceil((MAX_HEADER + 16 + CHUNK + TAG) * 1.4) + 1024;
    buf = Buffer.alloc(Math.min(fs.fstatSync(fd).size, want));
    buf = buf.subarray(0, readFully(fd, buf, 0));
  } finally {
    fs.closeSync(fd);
  }
  return peekAge(buf, identities, name);
}

/** peekAgeFile() on the first bytes of an age file (the header and at least one chunk, or all of it). */
export function peekAge(buf: Buffer, identities: Identity[], name: string): Uint8Array {
  if (isArmored(buf)) buf = dearmorPrefix(buf, name);
  const damaged = (why: string) => new BlufioError('E_CORRUPT', `${name} ${why}`, 'use another backup file; nothing was replaced');
  const opened = openHeader(buf, identities, name);
  if (!opened) throw damaged('is cut off (truncated) inside its header');
  const { payloadKey, payloadStart } = opened;
  const first = buf.subarray(payloadStart, payloadStart + CHUNK + TAG);
  // The first chunk is the last one too when the file is small; the tag tells which it is.
  const plain = aead.open(payloadKey, chunkNonce(0, false), first) ?? aead.open(payloadKey, chunkNonce(0, true), first);
  if (!plain) {
    throw damaged(first.length < CHUNK + TAG ? 'is cut off or damaged (chunk 1 fails its authentication)' : 'is damaged or was tampered with (chunk 1 fails its authentication)');
  }
  return plain;
}

// ---------------------------------------------------------------------------------------------
// ASCII armor (age -a): PEM-style base64 of the binary file, 64 columns.

const ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----';
const ARMOR_END = '-----END AGE ENCRYPTED FILE-----';

const isArmored = (b: Uint8Array) => Buffer.from(b.subarray(0, 200)).toString('latin1').trimStart().startsWith(ARMOR_BEGIN);

/** Decodes as much of an armored file's beginning as `text` holds (whole lines only). */
function dearmorPrefix(text: Buffer, name: string): Buffer {
  const d = new Dearmor(name);
  const out = d.push(text, false);
  return Buffer.concat(out);
}

/** Line-by-line armor decoder: the BEGIN line, base64 lines, the END line, nothing after. */
class Dearmor {
  private rest = '';
  private state: 'begin' | 'body' | 'end' = 'begin';
  constructor(private readonly name: string) {}
  private bad = (why: string) => new BlufioError('E_CORRUPT', `${this.name} is not a valid armored age file: ${why}`, 'use another backup file');
  push(chunk: Buffer, final: boolean): Buffer[] {
    this.rest += chunk.toString('latin1');
    const lines = this.rest.split('\n');
    this.rest = final ? '' : lines.pop()!;
    // No line of an armored file is longer than 64 columns (and its CR, and some spaces): a
    // longer one is refused at once, not gathered (a crafted one took minutes and GiBs).
    if (this.rest.length > 80) throw this.bad('a line is longer than 64 columns');
    const out: Buffer[] = [];
    for (const raw of lines) {
      const line = raw.replace(/\r$/, '').trim();
      if (this.state === 'begin') {
        if (line === '') continue;
        if (line !== ARMOR_BEGIN) throw this.bad('it does not start with the BEGIN line');
        this.state = 'body';
      } else if (this.state === 'body') {
        if (line === ARMOR_END) {
          this.state = 'end';
          continue;
        }
        if (line.length > 64 || !/^[A-Za-z0-9+/]*={0,2}$/.test(line)) throw this.bad('a line is not base64 of 64 columns');
        out.push(Buffer.from(line, 'base64'));
      } else if (line !== '') {
        throw this.bad('there is more after the END line');
      }
    }
    if (final && this.state !== 'end') throw this.bad('it is cut off (no END line)');
    return out;
  }
}

/** The binary age file that the armored one `input` holds (what it yields is its own). */
export async function* dearmorChunks(input: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<Uint8Array> {
  const d = new Dearmor(name);
  for await (const piece of input) yield* d.push(Buffer.from(piece.buffer, piece.byteOffset, piece.length), false);
  yield* d.push(Buffer.alloc(0), true);
}

/**
 * Checks what can be checked of an age file's beginning without its key: the header's form
 * (an E_CORRUPT error naming what is damaged). `buf` holds the file's first bytes.
 */
export function checkAgeHeader(buf: Buffer, name: string): void {
  if (isArmored(buf)) buf = dearmorPrefix(buf, name);
  if (!parseHeader(buf, name) && buf.length <= MAX_HEADER) {
    throw new BlufioError('E_CORRUPT', `${name} is cut off (truncated) inside its age header`, 'use another backup file');
  }
}

/**
 * True for the first bytes of a file that was meant to be an age file and whose first line is
 * damaged: its stanza or MAC lines are there (`-> X25519 …`, `--- …`), or it starts like the magic.
 */
export function looksLikeDamagedAge(b: Uint8Array): boolean {
  const text = Buffer.from(b.subarray(0, 4096)).toString('latin1');
  if (text.startsWith(MAGIC) && text.charCodeAt(MAGIC.length) === 0x0a) return false;
  return /^age-encryption\.org\//.test(text) || /^age-/.test(text) || /\n-> X25519 [A-Za-z0-9+/]{43}\n/.test(text) || (/\n-> [\x21-\x7e]+/.test(text.slice(0, 300)) && /\n--- [A-Za-z0-9+/]{43}\n/.test(text));
}

/** True for an armored age file (age -a). */
export function isArmoredAgeFile(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(200);
    return isArmored(b.subarray(0, fs.readSync(fd, b, 0, b.length, 0)));
  } finally {
    fs.closeSync(fd);
  }
}

/** True for a file that starts the way every age file does. */
export function isAgeFile(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(AGE_MAGIC.length);
    return fs.readSync(fd, b, 0, b.length, 0) === b.length && b.equals(AGE_MAGIC);
  } finally {
    fs.closeSync(fd);
  }
}

/** Chunks taken at a time: 1 MiB read, sealed and written with one call each. */
const GROUP = 16;

/**
 * Seals groups of up to GROUP chunks in place: `buf` takes the plaintext of a group, and
 * `sealChunk(k, n, at)` seals its chunk k (n bytes) with the nonce in `nonce` into `sealed` at
 * offset `at`, returning the sealed size. Opens them too (openChunk).
 */
interface GroupSealer {
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

/** The sizes the sealers and the loop use (passed in: their source also runs in the worker). */
const SIZES = { CHUNK, GROUP, TAG, KEY: WASM_LAYOUT.key, NONCE: WASM_LAYOUT.nonce, IN: WASM_LAYOUT.data, OUT: WASM_LAYOUT.data + CHUNK * GROUP };

// The four functions below use nothing but their arguments (and writeChunkNonce): their source
// is also the worker's.

/** The WebAssembly cipher, reading, sealing and writing in its own memory (nothing to collect). */
function wasmSealer(B: typeof Buffer, base64: string, S: typeof SIZES): GroupSealer {
  const ex = new WebAssembly.Instance(new WebAssembly.Module(B.from(base64, 'base64')), {}).exports as unknown as {
    memory: WebAssembly.Memory;
    seal(key: number, nonce: number, src: number, len: number, dst: number): void;
    open(key: number, nonce: number, src: number, len: number, dst: number): number;
  };
  ex.memory.grow(Math.ceil((S.OUT + (S.CHUNK + S.TAG) * S.GROUP) / 65536));
  const mem = new Uint8Array(ex.memory.buffer);
  return {
    buf: mem.subarray(S.IN, S.OUT),
    sealed: mem.subarray(S.OUT, S.OUT + (S.CHUNK + S.TAG) * S.GROUP),
    nonce: mem.subarray(S.NONCE, S.NONCE + 12),
    setKey: (key) => mem.set(key, S.KEY),
    sealChunk(k, n, at) {
      ex.seal(S.KEY, S.NONCE, S.IN + k * S.CHUNK, n, S.OUT + at);
      return n + S.TAG;
    },
    openChunk: (k, n) => n >= S.TAG && ex.open(S.KEY, S.NONCE, S.OUT + k * (S.CHUNK + S.TAG), n - S.TAG, S.IN + k * S.CHUNK) === 1,
    collect: null,
  };
}

/** node:crypto's cipher, for Node's thread (faster there than the WebAssembly one). */
function nodeSealer(B: typeof Buffer, c: typeof crypto, v8: typeof import('node:v8') | null, vm: typeof import('node:vm') | null, S: typeof SIZES): GroupSealer {
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
  const buf = B.alloc(S.CHUNK * S.GROUP);
  const sealed = B.alloc((S.CHUNK + S.TAG) * S.GROUP);
  const nonce = B.alloc(12);
  let key: Uint8Array = B.alloc(32);
  return {
    buf,
    sealed,
    nonce,
    setKey: (k) => {
      key = k;
    },
    sealChunk(k, n, at) {
      const cipher = c.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      const m = cipher.update(buf.subarray(k * S.CHUNK, k * S.CHUNK + n)).copy(sealed, at);
      cipher.final();
      return m + cipher.getAuthTag().copy(sealed, at + m);
    },
    openChunk(k, n) {
      if (n < S.TAG) return false;
      const at = k * (S.CHUNK + S.TAG);
      const d = c.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: S.TAG });
      d.setAuthTag(sealed.subarray(at + n - S.TAG, at + n));
      d.update(sealed.subarray(at, at + n - S.TAG)).copy(buf, k * S.CHUNK);
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
function sealBuffered(s: GroupSealer, first: number, bytes: number, final: boolean, S: typeof SIZES): number {
  const n = Math.max(1, Math.ceil(bytes / S.CHUNK));
  let len = 0;
  for (let k = 0; k < n; k++) {
    writeChunkNonce(s.nonce, first + k, final && k === n - 1);
    len += s.sealChunk(k, Math.min(bytes, (k + 1) * S.CHUNK) - k * S.CHUNK, len);
  }
  return len;
}

/**
 * Seals the group of chunks that starts with chunk g of a file of known size into its place in
 * the output (header + g × (64 KiB + tag)): the same 64 KiB chunks, nonces and tags as
 * sealChunks. False when the file has no chunk g. Throws ECHANGED if the file is not
 * the size it was.
 */
function sealGroup(f: typeof fs, s: GroupSealer, job: { fdIn: number; fdOut: number; size: number; headBytes: number }, g: number, S: typeof SIZES): boolean {
  const chunks = Math.max(1, Math.ceil(job.size / S.CHUNK));
  if (g >= chunks) return false;
  const n = Math.min(S.GROUP, chunks - g);
  const want = Math.min(n * S.CHUNK, job.size - g * S.CHUNK);
  let got = 0;
  for (let r; got < want && (r = f.readSync(job.fdIn, s.buf, got, want - got, g * S.CHUNK + got)) > 0; ) got += r;
  if (got !== want) throw Object.assign(new Error('the copy changed size while it was encrypted'), { code: 'ECHANGED' });
  const len = sealBuffered(s, g, got, g + n === chunks, S);
  for (let off = 0; off < len; ) off += f.writeSync(job.fdOut, s.sealed, off, len - off, job.headBytes + g * (S.CHUNK + S.TAG) + off);
  return true;
}

/**
 * Seals the groups claimed one at a time from `next`, a counter in shared memory that the
 * encrypting thread and the main thread take from together, until no group is left; `between`
 * runs after each (given how many this caller has sealed). Returns that count. Uses nothing but
 * its arguments (and sealGroup): its source is also the worker's.
 */
async function sealClaimed(f: typeof fs, s: GroupSealer, job: { fdIn: number; fdOut: number; size: number; headBytes: number }, next: Int32Array, S: typeof SIZES, between: (sealed: number) => Promise<void> | void): Promise<number> {
  let sealed = 0;
  while (sealGroup(f, s, job, Atomics.add(next, 0, 1) * S.GROUP, S)) await between(++sealed);
  return sealed;
}

/**
 * Encrypts `input` to `recipients` in the age format: the header, then the payload sealed a group
 * (1 MiB) at a time in the sealer's own buffers. Like every stage of layers.ts, what it yields is
 * valid until the next piece is asked for, and it is done with each piece of `input` before
 * asking for the next: nothing is allocated per chunk.
 */
export async function* sealChunks(input: AsyncIterable<Uint8Array>, recipients: Recipient[], cipher: 'node' | 'wasm' = 'wasm'): AsyncGenerator<Uint8Array> {
  const f = newFile(recipients);
  const s = mainThreadSealer(cipher);
  s.setKey(f.payloadKey);
  yield f.head;
  const full = CHUNK * GROUP;
  let filled = 0;
  let counter = 0;
  // Seals what s.buf holds, the file's last chunk flagged as such.
  const seal = (final: boolean): Uint8Array => {
    const len = sealBuffered(s, counter, filled, final, SIZES);
    counter += Math.max(1, Math.ceil(filled / CHUNK));
    filled = 0;
    return s.sealed.subarray(0, len);
  };
  for await (const piece of input) {
    for (let off = 0; off < piece.length; ) {
      // A full group is sealed only once more comes: until then its last chunk may be the file's.
      if (filled === full) yield seal(false);
      const n = Math.min(full - filled, piece.length - off);
      s.buf.set(piece.subarray(off, off + n), filled);
      filled += n;
      off += n;
    }
  }
  yield seal(true);
}

/**
 * The sealer of the main thread's streams (sealChunks, openChunks): the WebAssembly one on every
 * runtime, which works in its own memory. node:crypto's makes a buffer per chunk: under Node, 200
 * MiB decrypted for verify peaked at 118–123 MiB with it and 100–106 MiB without, encrypted to
 * stdout 110 against 79 MiB, and was no faster (3 interleaved runs). `cipher` is for tests.
 */
const mainThreadSealer = (cipher: 'node' | 'wasm') => (cipher === 'node' ? nodeSealer(Buffer, crypto, null, null, SIZES) : wasmSealer(Buffer, cipherWasmBase64, SIZES));

/**
 * Decrypts the age file that `input` holds with one of `identities` (`name` names it in errors),
 * a group (1 MiB) at a time in the sealer's buffers; what it yields is valid until the next piece
 * is asked for. Nothing comes out before the header is authenticated, and each chunk only once
 * its tag matches: a tampered file fails at the first changed chunk, a cut-off one at its end.
 * The consumer must not trust what it received unless the generator ends without an error.
 */
export async function* openChunks(input: AsyncIterable<Uint8Array>, identities: Identity[], name: string, cipher: 'node' | 'wasm' = 'wasm'): AsyncGenerator<Uint8Array> {
  const damaged = (why: string) => new BlufioError('E_CORRUPT', `${name} ${why}`, 'use another backup file; nothing was replaced');
  const RECORD = CHUNK + TAG;
  const full = RECORD * GROUP;
  const s = mainThreadSealer(cipher);
  let header: Buffer | null = Buffer.alloc(0);
  let filled = 0;
  let counter = 0;
  // Opens the first n chunks that s.sealed holds, whole ones that are not the file's last.
  const open = (n: number): Uint8Array => {
    for (let k = 0; k < n; k++) {
      writeChunkNonce(s.nonce, counter, false);
      if (!s.openChunk(k, RECORD)) throw damaged(`is damaged or was tampered with (chunk ${counter + 1} fails its authentication)`);
      counter++;
    }
    return s.buf.subarray(0, n * CHUNK);
  };
  for await (let piece of input) {
    if (header) {
      // The header is small (MAX_HEADER bounds it): gathered until whole, then authenticated.
      header = Buffer.concat([header, piece]);
      const opened = openHeader(header, identities, name);
      if (!opened) continue;
      s.setKey(opened.payloadKey);
      piece = header.subarray(opened.payloadStart);
      header = null;
    }
    for (let off = 0; off < piece.length; ) {
      // A full group is opened only once more comes: until then its last chunk may be the file's.
      if (filled === full) {
        yield open(GROUP);
        filled = 0;
      }
      const n = Math.min(full - filled, piece.length - off);
      s.sealed.set(piece.subarray(off, off + n), filled);
      filled += n;
      off += n;
    }
  }
  if (header) {
    const h = header.length > 0 ? parseHeader(header, name) : null;
    throw damaged(h || header.length > 0 ? 'is cut off (truncated) inside its header' : 'is empty');
  }
  // The rest: whole chunks, then the last one (flagged; empty only when it is the only one),
  // given out together once the last one has opened.
  const n = Math.max(1, Math.ceil(filled / RECORD));
  const lastLength = filled - (n - 1) * RECORD;
  open(n - 1);
  writeChunkNonce(s.nonce, counter, true);
  if (s.openChunk(n - 1, lastLength) && (lastLength > TAG || counter === 0)) {
    yield s.buf.subarray(0, (n - 1) * CHUNK + lastLength - TAG);
    return;
  }
  // A chunk that opens as a middle one: what followed it was cut off.
  writeChunkNonce(s.nonce, counter, false);
  const cut = lastLength === 0 || s.openChunk(n - 1, lastLength);
  throw damaged(cut ? 'is cut off (truncated): its last chunk is missing' : `is damaged or was tampered with (chunk ${counter + 1} fails its authentication)`);
}

/**
 * The worker thread's source (no imports but node's own): makes its sealer while it waits (and
 * warms it: an engine compiles hot code on its first uses), then seals groups until none is left;
 * starts the disk writing every 32 MiB, and collects its heap every 8 MiB when its cipher makes
 * garbage. Posts { done: true } or an error message with its code.
 */
function workerSource(engine: 'node' | 'wasm'): string {
  const make =
    engine === 'wasm'
      ? `(${wasmSealer.toString()})(Buffer, '${cipherWasmBase64}', S)`
      : `(${nodeSealer.toString()})(Buffer, require('node:crypto'), require('node:v8'), require('node:vm'), S)`;
  // (__name: what esbuild's keepNames, under tsx, wraps named functions in.)
  return `
const __name = (f) => f;
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const S = ${JSON.stringify(SIZES)};
${writeChunkNonce.toString()}
${sealBuffered.toString()}
const sealGroup = ${sealGroup.toString()};
const sealClaimed = ${sealClaimed.toString()};
const sealer = ${make};
sealer.setKey(new Uint8Array(32));
for (let k = 0; k < S.GROUP; k++) sealer.sealChunk(k, S.CHUNK, 0);
parentPort.once('message', async ({ src, out, headBytes, key, claims }) => {
  let fdIn, fdOut;
  try {
    sealer.setKey(key);
    fdIn = fs.openSync(src, 'r');
    fdOut = fs.openSync(out, 'r+');
    const job = { fdIn, fdOut, size: fs.fstatSync(fdIn).size, headBytes };
    // The main thread joins once its check is done.
    await sealClaimed(fs, sealer, job, new Int32Array(claims), S, (groups) => {
      if (sealer.collect && groups % 8 === 0) sealer.collect();
      // The disk writes while we seal (the caller's fsync then has little left to do). A turn
      // of the event loop after asking: Deno starts an asynchronous call only when its loop
      // turns, and without one its final fsync still had 54-66 ms to write (23-27 ms with it).
      if (groups % 32 === 0) {
        fs.fdatasync(fdOut, () => {});
        return new Promise((r) => setTimeout(r, 0));
      }
    });
    parentPort.postMessage({ done: true });
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.message), code: e && e.code });
  } finally {
    if (fdIn !== undefined) fs.closeSync(fdIn);
    if (fdOut !== undefined) fs.closeSync(fdOut);
  }
});`;
}

type NodeWorker = import('node:worker_threads').Worker;

/**
 * The encrypting thread's cipher: node:crypto's under Node (a 100 MiB `.db.age` backup 0.64–0.86 s
 * with it, 0.70–0.74 s with the WebAssembly one), the WebAssembly one elsewhere. Under Deno
 * node:crypto's cipher is fast but its buffer per chunk is not: 0.99–1.15 s with it, 0.80–0.84 s
 * with the WebAssembly one, which seals in its own memory (docs/encryption.md).
 */
function workerCipher(): 'node' | 'wasm' {
  return aead === nodeAead && !process.versions.deno && !process.versions.bun ? 'node' : 'wasm';
}

/**
 * Encrypts a file of known size that does not change (a verified copy) in a worker thread, on
 * the core the main thread is not using. Made before the file exists, so that starting the thread
 * (~50–100 ms) overlaps the copy; `start()` sets it sealing beside the integrity check on the main
 * thread; `finish()`, once the check is done, has the main thread seal what is left beside it
 * (1 GiB: 4.3 → 3.5 s under Bun). One thread: a second one joining after the check was slower on
 * two cores (its start costs about what it saves; docs/encryption.md). null where there are no
 * worker threads: the caller then encrypts on the main thread.
 */
export class EncryptionThread {
  private job: { src: string; out: string; done: Promise<void>; headBytes: number; key: Uint8Array; next: Int32Array } | null = null;
  /** The main thread's sealer, made the first time it helps. */
  private helper: GroupSealer | null = null;
  /** Groups the main thread sealed in the last finish() (for tests). */
  helped = 0;
  private idle: NodeWorker | null;
  private running: NodeWorker | null = null;

  private constructor(
    private readonly WorkerClass: typeof import('node:worker_threads').Worker,
    private readonly recipients: Recipient[],
    private readonly engine: 'node' | 'wasm',
  ) {
    this.idle = this.spawn();
  }

  /** `cipher: 'wasm'` uses the WebAssembly cipher even where node:crypto has one (for tests). */
  static async create(recipients: Recipient[], cipher?: 'wasm'): Promise<EncryptionThread | null> {
    try {
      const { Worker } = await import('node:worker_threads');
      return new EncryptionThread(Worker, recipients, cipher ?? workerCipher());
    } catch {
      return null;
    }
  }

  private spawn(): NodeWorker {
    const w = new this.WorkerClass(workerSource(this.engine), { eval: true });
    w.unref();
    w.on('error', () => {}); // reported through the job's promise
    return w;
  }

  /** Starts encrypting the file `src` into `out` (created here, 0600, never over a file). */
  async start(src: string, out: string): Promise<void> {
    await this.abandon();
    const f = newFile(this.recipients);
    const fd = fs.openSync(out, 'wx', 0o600);
    try {
      writeFully(fd, f.head, 0);
    } finally {
      fs.closeSync(fd);
    }
    const w = this.idle ?? this.spawn();
    this.idle = null;
    w.ref();
    this.running = w;
    const done = new Promise<void>((resolve, reject) => {
      w.once('message', (m: { done?: boolean; error?: string; code?: string }) => {
        if (m.done) resolve();
        else reject(Object.assign(new Error(m.error ?? 'encryption failed'), { code: m.code }));
      });
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`the encrypting thread stopped (${code})`)));
    });
    done.catch(() => {});
    const claims = new SharedArrayBuffer(4);
    this.job = { src, out, done, headBytes: f.head.length, key: f.payloadKey, next: new Int32Array(claims) };
    w.postMessage({ src, out, headBytes: f.head.length, key: f.payloadKey, claims });
  }

  /**
   * Seals beside the thread until no group is left, then waits for it, and returns the file's
   * size in bytes (publishing it makes it durable). Called once the check is done, when the main
   * thread would otherwise wait: the groups are claimed from the counter the thread takes them
   * from. `pause` is awaited every few groups (a turn of the event loop, where a Ctrl-C stops the
   * job by throwing).
   */
  async finish(pause: () => Promise<void> = async () => {}): Promise<number> {
    const job = this.job;
    if (!job) throw new Error('nothing is being encrypted');
    const s = (this.helper ??= mainThreadSealer('wasm'));
    s.setKey(job.key);
    const fdIn = fs.openSync(job.src, 'r');
    let fdOut: number | undefined;
    try {
      fdOut = fs.openSync(job.out, 'r+');
      const j = { fdIn, fdOut, size: fs.fstatSync(fdIn).size, headBytes: job.headBytes };
      this.helped = await sealClaimed(fs, s, j, job.next, SIZES, (n) => (n % 8 === 0 ? pause() : undefined));
    } finally {
      fs.closeSync(fdIn);
      if (fdOut !== undefined) fs.closeSync(fdOut);
    }
    await job.done;
    return fs.statSync(job.out).size;
  }

  /** Ends the job in progress, if any (its output is the caller's to remove). */
  private async abandon(): Promise<void> {
    const running = this.running;
    this.running = null;
    this.job = null;
    await running?.terminate();
  }

  /** Ends the thread, and a job in progress (its output is the caller's to remove). */
  async stop(): Promise<void> {
    await this.abandon();
    const idle = this.idle;
    this.idle = null;
    await idle?.terminate();
  }
}
