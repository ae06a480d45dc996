/**
 * The layers of a backup file — database, then gzip, then age — and the pipelines that add and
 * remove them. gzip.ts and age.ts are the transforms; this is the one place that puts them
 * together, so every destination (a file, stdout, object storage) and every reader (restore,
 * verify) handles `.db`, `.db.gz`, `.db.age` and `.db.gz.age` alike.
 *
 * What a new backup gets is said by its name (`…db.gz.age`: compress, then encrypt); what a file
 * to restore or verify holds is found from its content (an age file renamed `.db` is still
 * decrypted, a `.gz` that is plain SQLite is read as is).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createGunzip, constants as zlibConstants } from 'node:zlib';
import { AGE_MAGIC, checkAgeHeader, dearmorChunks, isArmoredAgeFile, isAgeFile, looksLikeDamagedAge, openChunks, parseIdentityFile, parseRecipient, peekAge, peekAgeFile, sealChunks, type Identity, type Recipient } from './age.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import type { ProgressCallback } from './core/progress.ts';
import { readFully, writeFully } from './vfs/disk-file.ts';
import { BlufioError, fsError, isFileSystemError } from './errors.ts';
import { gunzipChunks, gunzipError, gzipChunks, isGzip, sqliteSizeGuard, type Guard } from './gzip.ts';

/** What is wrapped around the database in a backup file. */
export interface Layers {
  gzip: boolean;
  age: boolean;
  /** An age file in ASCII armor (age -a): only ever read, never written. */
  armor?: boolean;
}

/** The layers a backup path's name asks for: `.gz` compresses, `.age` (last) encrypts. */
export function layersOfName(name: string): Layers {
  const lower = name.toLowerCase();
  const age = lower.endsWith('.age');
  return { age, gzip: (age ? lower.slice(0, -4) : lower).endsWith('.gz') };
}

/** Keys for the age layer: who to encrypt to, and what to decrypt with. */
export interface KeyOptions {
  /**
   * Encrypt to these age recipients (`age1…`). Required when the destination ends in `.age`;
   * refused for any other file destination (its name would lie about what it holds).
   */
  recipients?: string[];
  /** Decrypt with these: the text of age identity files, or `AGE-SECRET-KEY-1…` keys. */
  identities?: string[];
}

/** options.recipients, parsed (a malformed one is an E_KEY error that names it). */
export const recipientsOf = (opts: KeyOptions): Recipient[] => (opts.recipients ?? []).map((r) => parseRecipient(r));

const identitiesOf = (opts: KeyOptions): Identity[] => (opts.identities ?? []).flatMap((text, i) => parseIdentityFile(text, `identity ${i + 1}`));

/**
 * Checks that `layers` and the recipients agree before anything is written: an `.age` name
 * needs a recipient, and a recipient needs an `.age` name.
 */
export function checkKeysFor(dest: string, layers: Layers, recipients: Recipient[]): void {
  if (layers.age && recipients.length === 0) {
    throw new BlufioError('E_USAGE', `${dest} ends in .age but no recipient was given to encrypt it to`,
      'pass --recipient age1… or --recipients-file <file>, or set backup.age_recipients in blufio.toml (blufio keygen makes a key)');
  }
  if (!layers.age && recipients.length > 0) {
    throw new BlufioError('E_USAGE', `a recipient was given but ${dest} does not end in .age, so it would not be encrypted`,
      `add .age to the name (${dest}.age) to encrypt it, or leave the recipients out`);
  }
}

/**
 * Bytes in pieces, each valid only until the next one is asked for: every stage below reuses its
 * buffers, and is done with a piece of its input before it asks for the next. A pipeline of any
 * length and any size of file then holds a few MiB, and makes no garbage per MiB (streams made
 * a new 1 MiB buffer per read: 50–80 MiB more peak RSS under Bun and Deno, and Deno's stream
 * machinery took 1.3 s to pass 200 MiB along that a loop passes in 0.25 s; docs/encryption.md).
 */
export type Chunks = AsyncIterable<Uint8Array>;

/**
 * The file `src` in 1 MiB pieces, read into one buffer. It yields to the event loop every 16 MiB
 * (a Ctrl-C or --timeout ends it there) and stops with E_IO if the file changes size.
 */
async function* fileChunks(src: string, signal?: AbortSignal, onRead?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  const fd = fs.openSync(src, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(size, 1)));
    for (let at = 0; at < size; ) {
      const n = readFully(fd, buf.subarray(0, Math.min(buf.length, size - at)), at);
      if (n === 0) throw new BlufioError('E_IO', `${src} changed size while it was read`, 'try again');
      at += n;
      onRead?.(at);
      yield buf.subarray(0, n);
      if (at % (16 << 20) < n) {
        await new Promise((r) => setImmediate(r));
        throwIfAborted(signal);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The database file `src` with `layers` added, as Chunks (a file's read, compressed, sealed). */
export function packedChunks(src: string, layers: Layers, recipients: Recipient[], signal?: AbortSignal, onRead?: (bytes: number) => void): Chunks {
  let chunks: Chunks = fileChunks(src, signal, onRead);
  if (layers.gzip) chunks = gzipChunks(chunks);
  if (layers.age) chunks = sealChunks(chunks, recipients);
  return chunks;
}

/**
 * Progress of packing the verified copy `file` into its layers: the bytes of it read so far.
 * Without layers there is nothing to report, unless the copy is being written to stdout.
 */
export function packing(file: string, layers: Layers, onProgress?: ProgressCallback, toStdout = false): ((read: number) => void) | undefined {
  const phase = layers.gzip ? 'compress' : layers.age ? 'encrypt' : toStdout ? 'stream' : null;
  if (!onProgress || !phase) return undefined;
  const total = fs.statSync(file).size;
  onProgress({ phase, totalPages: total, remainingPages: total, attempt: 1, pageSize: 1 });
  return (read) => onProgress({ phase, totalPages: total, remainingPages: Math.max(0, total - read), attempt: 1, pageSize: 1 });
}

/** Where packed bytes go: a function that is done with each piece when it returns (or resolves). */
export type ChunkWriter = (piece: Uint8Array) => void | Promise<void>;

/**
 * Streams the database file `src` through the layers into `out`: a file it creates (0600, never
 * over another), or a writer. Returns the bytes written.
 */
export async function packFile(src: string, out: string | ChunkWriter, layers: Layers, recipients: Recipient[], signal?: AbortSignal, onRead?: (bytes: number) => void): Promise<number> {
  let fd: number | undefined;
  let bytes = 0;
  try {
    if (typeof out === 'string') fd = fs.openSync(out, 'wx', 0o600);
    const write = typeof out === 'string' ? (p: Uint8Array) => writeFully(fd!, p, bytes) : out;
    for await (const piece of packedChunks(src, layers, recipients, signal, onRead)) {
      await write(piece);
      bytes += piece.length;
      // (A slow reader of stdout: Ctrl-C is seen after each MiB, not each 16 MiB read.)
      throwIfAborted(signal);
    }
    return bytes;
  } catch (e) {
    throwIfAborted(signal);
    if (e instanceof BlufioError) throw e;
    throw fsError(e, typeof out === 'string' ? out : 'the output', 'cannot write the backup');
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * A ChunkWriter onto a writable stream, for `blufio backup -` and backupToStream(). Onto
 * process.stdout the pieces go to descriptor 1 with the runtime's asynchronous writes: nothing is
 * copied, and a reader that stops reading leaves the event loop free (--timeout and Ctrl-C still
 * end the job; a full non-blocking pipe is waited on). Onto any other stream (an embedding
 * program's), each piece is copied, since a stream may keep what it is given, and the stream's
 * back-pressure is waited on. `done()` takes the writer's error listener off the stream.
 */
export function streamWriter(out: NodeJS.WritableStream, signal?: AbortSignal): { write: ChunkWriter; done(): void } {
  if (out === process.stdout) {
    const write = async (piece: Uint8Array) => {
      // A full non-blocking pipe: tried again at once, then after waits doubling up to 8 ms.
      for (let off = 0, wait = 0; off < piece.length; ) {
        try {
          off += await new Promise<number>((resolve, reject) => fs.write(1, piece, off, piece.length - off, null, (e, n) => (e ? reject(e) : resolve(n))));
          wait = 0;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
          await new Promise((r) => (wait ? setTimeout(r, wait) : setImmediate(r)));
          wait = Math.min(8, wait * 2 || 0.25);
          throwIfAborted(signal);
        }
      }
    };
    return { write, done: () => {} };
  }
  // A stream reports a failed write to the callback and as an 'error' event, which must be heard.
  const ignore = () => {};
  out.on('error', ignore);
  const write = (piece: Uint8Array) => new Promise<void>((resolve, reject) => {
    out.write(Buffer.from(piece), (e) => (e ? reject(e) : resolve()));
  });
  return { write, done: () => out.removeListener('error', ignore) };
}

/**
 * The layers of the file `file`, found from its content. For an age file, the identities must
 * open it (an E_KEY error says which option to give), and what is inside is looked at too.
 */
export function layersOfFile(file: string, keys: KeyOptions): Layers {
  const size = fs.statSync(file).size;
  const armor = size > 0 && isArmoredAgeFile(file);
  if (armor || (size >= AGE_MAGIC.length && isAgeFile(file))) {
    const ids = identitiesOf(keys);
    if (ids.length === 0) {
      throw new BlufioError('E_KEY', `${file} is encrypted (age); no identity was given to decrypt it`,
        'pass --identity <key file>, or set backup.age_identity_file in blufio.toml or BLUFIO_AGE_IDENTITY_FILE');
    }
    const first = peekAgeFile(file, ids, file);
    return { age: true, armor, gzip: first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b };
  }
  if (size > 0) refuseDamagedAge(firstBytes(file, 4096), file);
  return { age: false, gzip: size >= 2 && isGzip(file) };
}

/** An age file whose first line was damaged is said to be one, not "not an SQLite database". */
function refuseDamagedAge(head: Uint8Array, shown: string): void {
  if (looksLikeDamagedAge(head)) {
    throw new BlufioError('E_CORRUPT', `${shown} is an age file whose header is damaged (its first line is not age-encryption.org/v1)`, 'use another backup file');
  }
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

/** Plain bytes plainPrefix() gives: a differential's header and an SQLite header fit many times. */
const PREFIX_PLAIN_BYTES = 64 * 1024;

/**
 * What the first bytes of a packed backup (`packed`: its first ~100 KiB, or all of it) unpack to:
 * at least the first few KiB of the plain file, or all of it when it is shorter. Reads what it
 * can without the key: an encrypted file without identities is an E_KEY error after its header's
 * form was checked (E_CORRUPT when damaged). For listings and checks, which read no whole file.
 */
export async function plainPrefix(packed: Buffer, keys: KeyOptions, shown: string): Promise<Uint8Array> {
  let plain: Uint8Array = packed;
  if (packed.subarray(0, AGE_MAGIC.length).equals(AGE_MAGIC) || packed.toString('latin1', 0, 200).trimStart().startsWith('-----BEGIN AGE ENCRYPTED FILE-----')) {
    const ids = identitiesOf(keys);
    if (ids.length === 0) {
      checkAgeHeader(packed, shown);
      throw new BlufioError('E_KEY', `${shown} is encrypted (age); no identity was given to read it`, 'pass --identity <key file>, or set backup.age_identity_file in blufio.toml or BLUFIO_AGE_IDENTITY_FILE');
    }
    plain = peekAge(packed, ids, shown);
  } else {
    refuseDamagedAge(packed, shown);
  }
  if (plain.length >= 2 && plain[0] === 0x1f && plain[1] === 0x8b) {
    try {
      return await gunzipPrefix(plain, PREFIX_PLAIN_BYTES);
    } catch (e) {
      throw gunzipError(e, shown);
    }
  }
  return plain;
}

/**
 * What a prefix of a gzip stream decodes to (a sync flush at its end, not an error), stopped once
 * `want` bytes came out: a long header field (FNAME, FEXTRA) is read through, and a bomb never
 * expands past `want` and one of zlib's buffers.
 */
function gunzipPrefix(input: Uint8Array, want: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const z = createGunzip({ finishFlush: zlibConstants.Z_SYNC_FLUSH });
    const out: Buffer[] = [];
    let got = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      z.destroy();
      resolve(Buffer.concat(out));
    };
    z.on('data', (c: Buffer) => {
      out.push(c);
      got += c.length;
      if (got >= want) finish();
    });
    z.on('end', finish);
    z.on('error', (e) => {
      if (!done) reject(e);
      done = true;
    });
    z.end(input);
  });
}

/**
 * Removes the layers of `src` into `dest` (created 0600): decrypt, decompress, and check on the
 * way (`guard`; by default: an SQLite database no bigger than its header declares) that what
 * comes out is what it should be (a gzip bomb never fills the disk). A damaged, cut-off or
 * tampered file is E_CORRUPT, a problem writing `dest` E_IO (not the file's fault). `dest` is
 * complete only if this resolves.
 */
export async function unpackFile(src: string, dest: string, layers: Layers, keys: KeyOptions, signal?: AbortSignal, guard: Guard = sqliteSizeGuard(src, roomIn(path.dirname(dest)), path.dirname(dest))): Promise<void> {
  let chunks: Chunks = fileChunks(src, signal);
  if (layers.armor) chunks = dearmorChunks(chunks, src);
  if (layers.age) chunks = openChunks(chunks, identitiesOf(keys), src);
  if (layers.gzip) chunks = gunzipChunks(chunks);
  let fd: number | undefined;
  let written = 0;
  try {
    fd = fs.openSync(dest, 'w', 0o600);
    for await (const piece of chunks) {
      guard(piece);
      try {
        writeFully(fd, piece, written);
        written += piece.length;
      } catch (e) {
        // The disk we write to (full, read-only...) is not the backup file's fault.
        throw fsError(Object.assign(e as object, { code: (e as NodeJS.ErrnoException).code ?? diskCode(e) }), dest, `cannot unpack ${src}`);
      }
    }
    throwIfAborted(signal);
  } catch (e) {
    throwIfAborted(signal);
    if (e instanceof BlufioError) throw e;
    // Before dest is open, its creation failed; after, writes are handled above: src's reads.
    if (isFileSystemError(e)) throw fsError(e, fd === undefined ? dest : src, `cannot unpack ${src}`);
    throw gunzipError(e, src);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Free bytes in `dir` less 64 MiB (the system's own margin); Infinity where it cannot be told. */
function roomIn(dir: string): number {
  try {
    const st = fs.statfsSync(dir);
    return Math.max(0, Number(st.bavail) * Number(st.bsize) - 64 * 2 ** 20);
  } catch {
    return Infinity;
  }
}

/** The errno a message-only file-system error stands for (Deno), so that fsError names it. */
function diskCode(e: unknown): string | undefined {
  const m = String((e as Error)?.message ?? '');
  return /No space left|os error 28/i.test(m) ? 'ENOSPC' : /Disk quota|os error 122/i.test(m) ? 'EDQUOT' : /File too large|os error 27/i.test(m) ? 'EFBIG' : /Read-only|os error 30/i.test(m) ? 'EROFS' : /Permission denied|os error 13/i.test(m) ? 'EACCES' : undefined;
}
