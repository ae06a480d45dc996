/**
 * The gzip layer of a backup, as streams through the runtime's own zlib (Node, Deno and Bun all
 * have node:zlib): nothing is held in memory but zlib's window and a stream buffer. layers.ts
 * puts the layers together.
 */
import * as fs from 'node:fs';
import type { Transform } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { declaredBytes, hasSqliteMagic } from './core/header.ts';
import { BlufioError } from './errors.ts';
import { collectGarbage } from './gc.ts';

/** Input bytes between two collections of zlib's garbage (collectGarbage). */
const COLLECT_EVERY = 16 * 1024 * 1024;

/** A file starting with gzip's magic bytes (1f 8b). */
export function isGzip(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(2);
    return fs.readSync(fd, b, 0, 2, 0) === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Runs `input` through a zlib stream: each piece is handed to zlib and waited for (zlib is done
 * with it then: the producer may reuse it), and what zlib made of it is yielded before the next
 * piece is asked for, so nothing piles up whatever the size. Yields zlib's own buffers.
 */
async function* throughZlib(z: Transform, input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const out: Buffer[] = [];
  z.on('data', (c: Buffer) => out.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    z.once('end', resolve);
    z.once('error', reject);
  });
  ended.catch(() => {});
  let sinceCollected = 0;
  try {
    for await (const piece of input) {
      await Promise.race([ended, new Promise<void>((resolve, reject) => z.write(piece, (e) => (e ? reject(e) : resolve())))]);
      while (out.length > 0) yield out.shift()!;
      // zlib's output buffers live outside V8's heap: collected every 16 MiB, not every ~64.
      sinceCollected += piece.length;
      if (sinceCollected >= COLLECT_EVERY) {
        sinceCollected = 0;
        collectGarbage();
      }
    }
    z.end();
    await ended;
    while (out.length > 0) yield out.shift()!;
  } finally {
    z.destroy();
  }
}

/**
 * The size of zlib's output buffers (a new one each time one fills): 16 KiB, zlib's default;
 * 64 KiB or 1 MiB ones took 15–40 MiB more peak RSS. Under Deno 4 KiB: there the stream of new
 * buffers grows V8's young generation (~35 MiB more for 200 MiB through gzip or gunzip, gone with
 * `--v8-flags=--max-semi-space-size=1`, a flag a program cannot set for itself), and 4 KiB
 * buffers kept ~20 MiB of it off (verify of a 200 MiB .db.gz: 128–137 -> 111–113 MiB, 0.1–0.2 s
 * slower; gzip of it no slower). Node and Bun were 2x slower with 4 KiB buffers.
 */
const ZLIB_CHUNK = 'Deno' in globalThis ? 4096 : 16384;

/** Compresses `input` as one gzip member (gzip -6: ~36 MiB/s, ~13x smaller on text-like data). */
export const gzipChunks = (input: AsyncIterable<Uint8Array>) => throughZlib(createGzip({ level: 6, chunkSize: ZLIB_CHUNK }), input);

/** Decompresses `input`; zlib's errors are told apart by gunzipError(). */
export const gunzipChunks = (input: AsyncIterable<Uint8Array>) => throughZlib(createGunzip({ chunkSize: ZLIB_CHUNK }), input);

/** zlib's error for a damaged or cut-off stream, as one a person can act on. */
export function gunzipError(e: unknown, name: string): BlufioError {
  const msg = (e as Error).message;
  const why = /unexpected end/i.test(msg) ? 'it is cut off (truncated)' : `it is damaged (${msg})`;
  return new BlufioError('E_CORRUPT', `cannot decompress ${name}: ${why}`, 'use another backup file', { cause: e });
}

/** Looks at each piece of what a backup unpacks to, and throws when it cannot be what it should. */
export type Guard = (piece: Uint8Array) => void;

/**
 * Lets bytes through while they can be an SQLite database: the first 16 must be its magic, and
 * no more than the header's page size x in-header page count may follow (when the header says
 * its page count is valid: offset 92 equal to the change counter at 24, as in every backup
 * blufio writes); when it does not, no more than `room` (the free space where it goes, less a
 * margin).
 */
export function sqliteSizeGuard(src: string, room = Infinity, roomWhere = ''): Guard {
  let seen = 0;
  let head = Buffer.alloc(0);
  let limit = Infinity;
  return (piece) => {
    if (head.length < 100) {
      head = Buffer.concat([head, piece.subarray(0, 100 - head.length)]);
      if (head.length >= 16 && !hasSqliteMagic(head)) {
        throw new BlufioError('E_NOT_SQLITE', `${src} does not hold an SQLite database (what it unpacks to has no SQLite header)`, 'use a backup file made by blufio backup');
      }
      if (head.length === 100) {
        limit = declaredBytes(head) ?? Infinity;
        // A size that cannot fit is refused before it fills the disk (a bomb that claims 1 TiB).
        if (limit !== Infinity && limit > room) {
          throw new BlufioError('E_IO', `no space left on the device holding ${roomWhere || 'the destination'} for what ${src} unpacks to: ${limit} bytes, its database header says, and ${room} bytes are free (less a 64 MiB margin); stopped, nothing was replaced`,
            'if the backup is that big, free some space there or pass --work-dir <directory> on a file system with room; if not, the file is damaged: use another backup file');
        }
      }
    }
    seen += piece.length;
    // A header that does not declare its size (older SQLite, or crafted) is bounded by the room
    // there is: a bomb never fills the disk the live database is on.
    if (limit === Infinity && seen > room) {
      throw new BlufioError('E_IO', `${src}'s database header does not declare its size, and it unpacks to more than the free space${roomWhere ? ` in ${roomWhere}` : ''}; stopped, nothing was replaced`,
        'free some space there, or pass --work-dir <directory> on a file system with room');
    }
    if (seen > limit) {
      throw new BlufioError('E_CORRUPT', `${src} decompresses to more than the ${limit} bytes its database header declares; stopped`, 'the file is damaged or not a backup: use another backup file');
    }
  };
}
