/**
 * age keys as text: recipients (`age1…`) and identities (`AGE-SECRET-KEY-1…`) in bech32 (BIP
 * 173), parsed from the command line, recipients files and identity files (with errors that say
 * what was given instead: an SSH or post-quantum key, a secret key as a recipient, a backup as
 * the key file), and a new identity as age-keygen writes it.
 */
import * as crypto from 'node:crypto';
import { BlufioError } from '../errors.ts';
import { ARMOR_BEGIN } from './armor.ts';
import { MAGIC, type Identity, type Recipient } from './header.ts';
import { publicKeyOf } from './primitives.ts';

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
  if (text.startsWith(MAGIC) || text.startsWith(ARMOR_BEGIN)) {
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
