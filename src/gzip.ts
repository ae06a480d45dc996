/**
 * gzip-compressed backups, streamed through the runtime's own zlib (Node, Deno and Bun all have
 * node:zlib): nothing is held in memory but zlib's window and a stream buffer.
 */
import * as fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { BlufioError } from './errors.ts';

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

/** True for a destination the user wants compressed. */
export const wantsGzip = (dest: string) => dest.toLowerCase().endsWith('.gz');

/** Compresses `src` into `dest` (created 0600); publishing it fsyncs it. */
export async function gzipFile(src: string, dest: string, signal?: AbortSignal): Promise<void> {
  await pipeline(fs.createReadStream(src), createGzip({ level: 6 }), fs.createWriteStream(dest, { mode: 0o600 }), { signal });
}

/** Decompresses `src` into `dest` (created 0600); a damaged or cut-off file is E_CORRUPT. */
export async function gunzipFile(src: string, dest: string, signal?: AbortSignal): Promise<void> {
  try {
    await pipeline(fs.createReadStream(src), createGunzip(), fs.createWriteStream(dest, { mode: 0o600 }), { signal });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    const msg = (e as Error).message;
    const why = /unexpected end/i.test(msg) ? 'it is cut off (truncated)' : `it is damaged (${msg})`;
    throw new BlufioError('E_CORRUPT', `cannot decompress ${src}: ${why}`, 'use another backup file', { cause: e });
  }
}
