/**
 * Runs the transforms (index.ts): a database file through its layers into a file, a writer or a
 * store's body, and a backup file out of them. Each stage is a pull loop over reused buffers
 * (Chunks), not a node stream:
 *
 * Bytes in pieces, each valid only until the next one is asked for: every stage below reuses its
 * buffers, and is done with a piece of its input before it asks for the next. A pipeline of any
 * length and any size of file then holds a few MiB, and makes no garbage per MiB (streams made
 * a new 1 MiB buffer per read: 50–80 MiB more peak RSS under Bun and Deno, and Deno's stream
 * machinery took 1.3 s to pass 200 MiB along that a loop passes in 0.25 s; docs/encryption.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Recipient } from '../age/index.ts';
import { throwIfAborted } from '../core/backup-loop.ts';
import type { ProgressCallback } from '../core/progress.ts';
import { BlufioError, fsError, isFileSystemError } from '../errors.ts';
import type { Body } from '../storage/store.ts';
import { readFully, writeFully } from '../vfs/disk-file.ts';
import { gunzipError } from './gzip.ts';
import { sqliteSizeGuard, type Guard } from './guard.ts';
import { compressed, detect, encrypted, refuseDamaged, type Chunks, type FilePacker, type KeyOptions, type Layers } from './registry.ts';

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
  return layers.reduce<Chunks>((chunks, t) => t.pack(chunks, recipients), fileChunks(src, signal, onRead));
}

/** A packer of the whole file on another thread, when the layers have one (age alone: the encrypting thread). */
export async function packerAhead(layers: Layers, recipients: Recipient[]): Promise<FilePacker | null> {
  return layers.length === 1 && layers[0].packerAhead ? layers[0].packerAhead(recipients) : null;
}

/**
 * Progress of packing the verified copy `file` into its layers: the bytes of it read so far.
 * Without layers there is nothing to report, unless the copy is being written to stdout.
 */
export function packing(file: string, layers: Layers, onProgress?: ProgressCallback, toStdout = false): ((read: number) => void) | undefined {
  const phase = compressed(layers) ? 'compress' : encrypted(layers) ? 'encrypt' : toStdout ? 'stream' : null;
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
export function packFile(src: string, out: string | ChunkWriter, layers: Layers, recipients: Recipient[], signal?: AbortSignal, onRead?: (bytes: number) => void): Promise<number> {
  return writeChunks(packedChunks(src, layers, recipients, signal, onRead), out, signal);
}

/** Writes `chunks` into `out`: a file it creates (0600, never over another), or a writer. Returns the bytes written. */
export async function writeChunks(chunks: Chunks, out: string | ChunkWriter, signal?: AbortSignal): Promise<number> {
  let fd: number | undefined;
  let bytes = 0;
  try {
    if (typeof out === 'string') fd = fs.openSync(out, 'wx', 0o600);
    const write = typeof out === 'string' ? (p: Uint8Array) => writeFully(fd!, p, bytes) : out;
    for await (const piece of chunks) {
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
 * The body a store puts for the database file `file` packed into `layers` (store.ts): the file
 * as it is when there are none.
 */
export function packedBody(file: string, layers: Layers, recipients: Recipient[], signal?: AbortSignal): Body {
  if (layers.length === 0) return { file };
  return { file, pack: { chunks: (onRead) => packedChunks(file, layers, recipients, signal, onRead), phase: compressed(layers) ? 'compress' : 'encrypt' } };
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
  const seen = new Set();
  for (let t = detect(plain); t && !seen.has(t); t = detect(plain)) {
    seen.add(t);
    plain = await t.peek(plain, keys, shown, PREFIX_PLAIN_BYTES);
  }
  if (seen.size === 0) refuseDamaged(packed, shown);
  return plain;
}

/**
 * Removes the layers of `src` into `dest` (created 0600): decrypt, decompress, and check on the
 * way (`guard`; by default: an SQLite database no bigger than its header declares) that what
 * comes out is what it should be (a gzip bomb never fills the disk). A damaged, cut-off or
 * tampered file is E_CORRUPT, a problem writing `dest` E_IO (not the file's fault). `dest` is
 * complete only if this resolves.
 */
export async function unpackFile(src: string, dest: string, layers: Layers, keys: KeyOptions, signal?: AbortSignal, guard: Guard = sqliteSizeGuard(src, roomIn(path.dirname(dest)), path.dirname(dest))): Promise<void> {
  const chunks = [...layers].reverse().reduce<Chunks>((input, t) => t.unpack(input, keys, src), fileChunks(src, signal));
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
