/**
 * The gzip transform, as streams through the runtime's own zlib (Node, Deno and Bun all have
 * node:zlib): nothing is held in memory but zlib's window and a stream buffer.
 */
import type { Transform as ZlibStream } from 'node:stream';
import * as fs from 'node:fs';
import { createGunzip, createGzip, gunzipSync, constants as zlibConstants } from 'node:zlib';
import { BlufioError } from '../errors.ts';
import { collectGarbage } from '../gc.ts';
import type { Transform } from './transform.ts';

/** Input bytes between two collections of zlib's garbage (collectGarbage). */
const COLLECT_EVERY = 16 * 1024 * 1024;

/**
 * Runs `input` through a zlib stream: each piece is handed to zlib and waited for (zlib is done
 * with it then: the producer may reuse it), and what zlib made of it is yielded before the next
 * piece is asked for, so nothing piles up whatever the size. Yields zlib's own buffers.
 */
async function* throughZlib(z: ZlibStream, input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
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


/** gzip's magic bytes (1f 8b) at the start of `b`. */
const gzipped = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

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

/** The gzip layer: `.gz`. */
export const gzip: Transform = {
  name: 'gzip',
  suffix: '.gz',
  does: 'compress',
  detect: gzipped,
  pack: (input) => gzipChunks(input),
  unpack: (input) => gunzipChunks(input),
  peek: (packed, _keys, shown, want) => gunzipPrefix(packed, want).catch((e) => {
    throw gunzipError(e, shown);
  }),
  /** The first plain bytes: 1 KiB of the file inflated (at most 1 MiB comes out; a damaged one gives none). */
  innerHead(file) {
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(1024);
      const n = fs.readSync(fd, b, 0, b.length, 0);
      return new Uint8Array(gunzipSync(b.subarray(0, n), { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: 1 << 20 }));
    } catch {
      return new Uint8Array(0);
    } finally {
      fs.closeSync(fd);
    }
  },
};
