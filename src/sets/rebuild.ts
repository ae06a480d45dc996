/**
 * A set's backup as a local, plain database: a full backup unpacked, a differential rebuilt on
 * its base and checked against both SHA-256s.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError, renamed } from '../errors.ts';
import type { Guard } from '../transforms/index.ts';
import { firstBytes, layersOfFile, unpackFile, type KeyOptions, type Layers } from '../transforms/index.ts';
import { hasSqliteMagic } from '../core/header.ts';
import type { Store } from '../storage/store.ts';
import { diffSizeGuard, readDiffHeader } from './diff.ts';
import { parseName, type SetEntry } from './names.ts';
import { readAt, sha256Of } from './pages.ts';

/** The local, plain database of a set's entry in `work`: unpacked, and for a differential rebuilt from its base. */
export async function materialize(store: Store, entry: SetEntry, work: string, keys: KeyOptions, signal?: AbortSignal): Promise<string> {
  let unpacked = 0;
  const plainOf = async (name: string): Promise<string> => {
    const packed = await store.fetch(name, work);
    const plain = path.join(work, `plain-${++unpacked}`);
    try {
      const layers = layersOfFile(packed, keys);
      await unpackPlain(packed, plain, layers, keys, signal, parseName(name)?.kind === 'diff' ? diffSizeGuard(store.where(name)) : undefined);
    } catch (e) {
      // Named as the user knows it (s3://… or the set's file), never by the private download;
      // and which file it was (a differential's base, say), for the caller's advice.
      throw Object.assign(renamed(renamed(e, packed, store.where(name)), plain, store.where(name)) as object, { member: name });
    }
    return plain;
  };
  if (entry.kind === 'full') {
    const plain = await plainOf(entry.name);
    // What a full backup holds must be a database: said here, as a set's member (restore would
    // only say "not an SQLite database" of the file it was given).
    if (!hasSqliteMagic(firstBytes(plain, 16))) throw Object.assign(new BlufioError('E_NOT_SQLITE', `${store.where(entry.name)} does not hold an SQLite database`, 'use another backup'), { member: entry.name });
    return plain;
  }
  const diff = await plainOf(entry.name);
  const { header, offset } = readDiffHeader(diff, store.where(entry.name));
  if (header.base !== entry.base) {
    throw new BlufioError('E_CORRUPT', `${store.where(entry.name)} names ${header.base} as its base inside, ${entry.base} in its file name`, 'the file was renamed or damaged; use another backup');
  }
  let basePlain: string;
  try {
    basePlain = await plainOf(header.base);
  } catch (e) {
    if (e instanceof BlufioError && e.code === 'E_SOURCE_MISSING') {
      throw Object.assign(new BlufioError('E_SOURCE_MISSING', `the base of ${store.where(entry.name)}, ${store.where(header.base)}, is missing`, 'restore from another backup; blufio list shows them'), { member: header.base });
    }
    throw e;
  }
  if (sha256Of(basePlain, header.pageSize) !== header.baseSha256) {
    throw Object.assign(new BlufioError('E_CORRUPT', `${store.where(header.base)} is not the base ${store.where(entry.name)} was made against (its SHA-256 differs)`, 'use another backup'), { member: header.base });
  }
  // Apply the pages, cut to the new size, and the result must be the database that was backed up.
  const out = path.join(work, 'rebuilt.db');
  fs.renameSync(basePlain, out);
  const fdIn = fs.openSync(diff, 'r');
  const fdOut = fs.openSync(out, 'r+');
  try {
    const rec = Buffer.allocUnsafe(4 + header.pageSize);
    const size = fs.fstatSync(fdIn).size;
    if (size !== offset + header.changed * rec.length) {
      throw new BlufioError('E_CORRUPT', `${store.where(entry.name)} is cut off or damaged (${size} bytes, its header says ${offset + header.changed * rec.length})`, 'use another backup');
    }
    for (let i = 0; i < header.changed; i++) {
      readAt(fdIn, rec, rec.length, offset + i * rec.length);
      const page = rec.readUInt32BE(0);
      if (page < 1 || page > header.pages) throw new BlufioError('E_CORRUPT', `${store.where(entry.name)} holds page ${page} of a ${header.pages}-page database`, 'use another backup');
      fs.writeSync(fdOut, rec, 4, header.pageSize, (page - 1) * header.pageSize);
    }
    fs.ftruncateSync(fdOut, header.pages * header.pageSize);
  } finally {
    fs.closeSync(fdIn);
    fs.closeSync(fdOut);
  }
  fs.rmSync(diff, { force: true });
  if (sha256Of(out, header.pageSize) !== header.sha256) {
    throw new BlufioError('E_CORRUPT', `rebuilding ${store.where(entry.name)} on its base did not give the database that was backed up (SHA-256 differs)`, 'use another backup');
  }
  return out;
}

/** unpackFile for a set file: plain files are copied, so that the caller owns the result. */
async function unpackPlain(src: string, dest: string, layers: Layers, keys: KeyOptions, signal?: AbortSignal, guard?: Guard): Promise<void> {
  if (layers.length > 0) return unpackFile(src, dest, layers, keys, signal, guard);
  fs.copyFileSync(src, dest);
}

