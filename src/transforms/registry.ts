/**
 * The transforms a backup file may be wrapped in, in the order they are applied — the one place
 * that lists them. A new one (zstd, say) is one file in this folder implementing Transform
 * (transform.ts) and one line in TRANSFORMS below.
 *
 * What a new backup gets is said by its name (`…db.gz.age`: compress, then encrypt); what a file
 * to restore or verify holds is found from its content (an age file renamed `.db` is still
 * decrypted, a `.gz` that is plain SQLite is read as is). pipeline.ts runs them.
 */
import * as fs from 'node:fs';
import { parseRecipient, type Recipient } from '../age/index.ts';
import { BlufioError } from '../errors.ts';
import { age } from './age.ts';
import { gzip } from './gzip.ts';
import type { KeyOptions, Transform } from './transform.ts';

export type { Chunks, FilePacker, KeyOptions, Transform } from './transform.ts';


/** Every transform, in the order they are applied when packing (a name's suffixes in this order). */
export const TRANSFORMS: readonly Transform[] = [gzip, age];

/** What wraps the database in a backup file, innermost first (packing order). */
export type Layers = readonly Transform[];

/** No transform: the database file as it is. */
export const PLAIN: Layers = [];

/** True when the layers compress. */
export const compressed = (layers: Layers) => layers.some((t) => t.does === 'compress');
/** True when the layers encrypt. */
export const encrypted = (layers: Layers) => layers.some((t) => t.does === 'encrypt');

/** The layers that compress (with the default compressor) and/or encrypt, in packing order. */
export function layersFor(want: { compress: boolean; encrypt: boolean }): Layers {
  return TRANSFORMS.filter((t) => (t.does === 'compress' ? want.compress && t === DEFAULT_COMPRESSOR : want.encrypt));
}

/** The compressor of new backups that ask to be compressed (--gzip, sets). */
const DEFAULT_COMPRESSOR = gzip;

/** The suffixes of `layers`, in order: '.gz.age'. */
export const suffixOf = (layers: Layers) => layers.map((t) => t.suffix).join('');

/**
 * The layers a backup path's name asks for: its suffixes, read from the end, each transform at
 * most once and in packing order (`.gz.age` compresses then encrypts; `x.age.gz` only compresses).
 */
export function layersOfName(name: string): Layers {
  let rest = name.toLowerCase();
  const found: Transform[] = [];
  for (const t of [...TRANSFORMS].reverse()) {
    if (rest.endsWith(t.suffix)) {
      found.unshift(t);
      rest = rest.slice(0, -t.suffix.length);
    }
  }
  return found;
}

/** options.recipients, parsed (a malformed one is an E_KEY error that names it). */
export const recipientsOf = (opts: KeyOptions): Recipient[] => (opts.recipients ?? []).map((r) => parseRecipient(r));

/**
 * Checks that `layers` and the recipients agree before anything is written: an `.age` name
 * needs a recipient, and a recipient needs an `.age` name.
 */
export function checkKeysFor(dest: string, layers: Layers, recipients: Recipient[]): void {
  if (encrypted(layers) && recipients.length === 0) {
    throw new BlufioError('E_USAGE', `${dest} ends in .age but no recipient was given to encrypt it to`,
      'pass --recipient age1… or --recipients-file <file>, or set backup.age_recipients in blufio.toml (blufio keygen makes a key)');
  }
  if (!encrypted(layers) && recipients.length > 0) {
    throw new BlufioError('E_USAGE', `a recipient was given but ${dest} does not end in .age, so it would not be encrypted`,
      `add .age to the name (${dest}.age) to encrypt it, or leave the recipients out`);
  }
}

/** The transform whose output `head` starts like, or null. */
export const detect = (head: Uint8Array): Transform | null => TRANSFORMS.find((t) => t.detect(head)) ?? null;

/** Throws when `head` is a damaged file of one of the transforms (an age header cut short). */
export function refuseDamaged(head: Uint8Array, shown: string): void {
  for (const t of TRANSFORMS) t.refuseDamaged?.(head, shown);
}

/** The first `n` bytes of `file` (fewer when it is shorter). */
export function firstBytes(file: string, n: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(n);
    return b.subarray(0, fs.readSync(fd, b, 0, n, 0));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The layers of the file `file`, found from its content, outermost first read. For an age
 * file the identities must open it (an E_KEY error says which option to give), and what is
 * inside is looked at too.
 */
export function layersOfFile(file: string, keys: KeyOptions): Layers {
  const found: Transform[] = [];
  let head: Uint8Array = firstBytes(file, 4096);
  if (head.length === 0) return found;
  for (;;) {
    const t = found.length < TRANSFORMS.length ? detect(head) : null;
    if (!t || found.includes(t)) break;
    found.unshift(t);
    // Only the outermost layer reads the file for what it holds (an age file inside gzip, made
    // by `gzip x.db.age`, is found so: its layers are age, then gzip).
    if (!t.innerHead || found.length > 1) break;
    head = t.innerHead(file, keys);
  }
  if (found.length === 0) refuseDamaged(head, file);
  return found;
}
