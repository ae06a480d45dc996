/**
 * The age file's header: the magic line, one stanza per recipient (`-> X25519 <share>` and the
 * wrapped file key), the MAC line, then the payload's nonce. Written for X25519 recipients,
 * parsed (strict, canonical base64), opened with X25519 identities (file key unwrapped, MAC
 * checked, payload key derived); and the checks of a file's first bytes that need no key.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { BlufioError } from '../errors.ts';
import { dearmorPrefix, isArmored } from './armor.ts';
import { aead, hkdf, hmac, publicKeyOf, x25519 } from './primitives.ts';

export const MAGIC = 'age-encryption.org/v1';
/** What every age file starts with. */
export const AGE_MAGIC = Buffer.from(`${MAGIC}\n`);
/** A header bigger than this is not one blufio or age would write (a stanza is ~100 bytes). */
export const MAX_HEADER = 1024 * 1024;

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
export function newFile(recipients: Recipient[]): { head: Buffer; payloadKey: Uint8Array } {
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
export function parseHeader(buf: Buffer, name: string): { stanzas: Stanza[]; macInput: Buffer; mac: Uint8Array; end: number } | null {
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
export function openHeader(buf: Buffer, identities: Identity[], name: string): { payloadKey: Uint8Array; payloadStart: number } | null {
  const h = parseHeader(buf, name);
  if (!h || buf.length < h.end + 16) return null;
  const fileKey = unwrapFileKey(h.stanzas, identities, name);
  if (!crypto.timingSafeEqual(hmac(hkdf(fileKey, new Uint8Array(0), 'header'), h.macInput), h.mac)) {
    throw new BlufioError('E_CORRUPT', `${name} has a damaged or tampered header (its MAC does not match)`, 'use another backup file; nothing was replaced');
  }
  return { payloadKey: hkdf(fileKey, buf.subarray(h.end, h.end + 16), 'payload'), payloadStart: h.end + 16 };
}

/** The file key, unwrapped with one of `identities`; an E_KEY error saying why not (E_CORRUPT for a malformed X25519 stanza). */
function unwrapFileKey(stanzas: Stanza[], identities: Identity[], name: string): Uint8Array {
  if (stanzas.some((s) => s.type === 'scrypt')) {
    throw new BlufioError('E_KEY', `${name} is encrypted with a passphrase; blufio decrypts files encrypted to age keys`, `decrypt it with age -d first, or encrypt backups to a key (age -r age1…)`);
  }
  const malformed = (why = '') => new BlufioError('E_CORRUPT', `${name} is not a valid age file: a malformed X25519 stanza${why}`, 'the file is damaged; use another backup file');
  for (const s of stanzas) {
    if (s.type !== 'X25519') continue;
    const share = s.args.length === 1 ? unb64(s.args[0]) : null;
    if (!share || share.length !== 32 || s.body.length !== 32) throw malformed();
    for (const id of identities) {
      const shared = x25519(id.secretKey, share);
      // A low-order share gives every key the all-zero secret, which the format forbids: the
      // stanza is malformed (the CCTV vectors x25519_low_order and x25519_identity), not for
      // another key.
      if (!shared) throw malformed(' (its share is a low-order point)');
      const key = aead.open(hkdf(shared, Buffer.concat([share, id.publicKey]), X25519_INFO), ZERO_NONCE, s.body);
      if (key && key.length === 16) return key;
    }
  }
  const types = [...new Set(stanzas.map((s) => s.type))].filter((t) => t !== 'X25519');
  throw new BlufioError('E_KEY', `${name} is not encrypted to any of the given identities${types.length ? ` (it also has ${types.join(', ')} stanzas, which blufio cannot use)` : ''}`,
    'give the key file of one of the recipients it was encrypted to: --identity <file> (or backup.age_identity_file, BLUFIO_AGE_IDENTITY_FILE)');
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
