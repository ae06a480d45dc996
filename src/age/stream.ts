/**
 * The age payload as streams: the STREAM construction over 64 KiB chunks (each sealed with
 * ChaCha20-Poly1305 under the payload key, its nonce the chunk counter and a last-chunk flag),
 * written after a new header (sealChunks) and read back after the header is opened (openChunks),
 * a group of chunks at a time in the sealer's buffers; and a peek at the first chunk of a file
 * (peekAge, peekAgeFile), which tells whether it can be decrypted without reading it all.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { TAG } from '../cipher/wasm-aead.ts';
import { BlufioError } from '../errors.ts';
import { readFully } from '../vfs/disk-file.ts';
import { dearmorPrefix, isArmored } from './armor.ts';
import { MAX_HEADER, newFile, openHeader, parseHeader, type Identity, type Recipient } from './header.ts';
import { aead } from './primitives.ts';
import { CHUNK, GROUP, nodeSealer, sealBuffered, wasmSealer, writeChunkNonce } from './sealers.ts';

/** A payload chunk's nonce in a new buffer (peekAge; the streams write theirs in the sealer's). */
function chunkNonce(counter: number, last: boolean): Uint8Array {
  const n = new Uint8Array(12);
  writeChunkNonce(n, counter, last);
  return n;
}

/**
 * The sealer of the main thread's streams (sealChunks, openChunks): the WebAssembly one on every
 * runtime, which works in its own memory. node:crypto's makes a buffer per chunk: under Node, 200
 * MiB decrypted for verify peaked at 118–123 MiB with it and 100–106 MiB without, encrypted to
 * stdout 110 against 79 MiB, and was no faster (3 interleaved runs). `cipher` is for tests.
 */
const mainThreadSealer = (cipher: 'node' | 'wasm') => (cipher === 'node' ? nodeSealer(crypto, null, null) : wasmSealer());

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
    const len = sealBuffered(s, counter, filled, final);
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
