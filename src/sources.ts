/**
 * What restore, verify and a restore's dry run read, made local: the one place that turns a
 * source (storage/index.ts locate()) into a plain local file. A set gives its backup at a time
 * (or its newest), rebuilt if it is a differential; a differential named alone is rebuilt on its
 * base beside it; a remote object is downloaded to a private work directory. Every such file is
 * removed afterwards, and messages name the source as the user wrote it.
 */
import * as fs from 'node:fs';
import { BlufioError, renamed } from './errors.ts';
import { makeWorkDir } from './files.ts';
import type { KeyOptions } from './transforms/index.ts';
import type { ObjectStorageOptions } from './storage/index.ts';
import type { ProgressCallback } from './core/progress.ts';
import { withSetBackup, withSetFile, type SetEntry } from './sets/index.ts';
import { locate, openRemoteFile, setBeside } from './storage/index.ts';

export interface SourceOptions extends ObjectStorageOptions, KeyOptions {
  /** In a set: the newest backup at or before this time (default: the newest). */
  at?: Date;
  /** In a set: the series (database) whose backups are meant. */
  stem?: string;
  workDir?: string;
  signal?: AbortSignal;
  retries?: number;
  onProgress?: ProgressCallback;
}

/** Where a local file came from: the source as the user knows it, its set entry if any, and the objects read for it. */
export interface Origin {
  where: string;
  entry: SetEntry | null;
  objects: string[];
}

/**
 * Runs `fn` on a local plain copy of the source `text` when it is a set, a set's differential or
 * a remote object, and returns what it gave; null for a local file that is read where it is (the
 * caller goes on with `text` itself).
 */
export async function withSource<T>(text: string, opts: SourceOptions, fn: (file: string, origin: Origin) => Promise<T>): Promise<{ value: T } | null> {
  const source = locate(text);
  if (source.kind === 'stdout') throw new BlufioError('E_USAGE', 'a backup is read from a file or a set, not from "-" (stdin)', 'give its path');
  if (source.kind === 'set') return { value: await withSetBackup(text, opts, (file, entry, where, objects) => fn(file, { where, entry, objects })) };
  if (opts.at) throw new BlufioError('E_USAGE', '--at picks a backup from a set (a folder or an s3:// prefix ending in /), not from one file', 'give the set instead of the file, or leave --at out');
  let rebuilt: { value: T } | null = null;
  await withSetFile(text, opts, async (file, entry, where, objects) => {
    rebuilt = { value: await fn(file, { where, entry, objects }) };
  });
  if (rebuilt) return rebuilt;
  if (source.remote) return { value: await withFetched(text, opts, (file) => fn(file, { where: text, entry: null, objects: [text] })) };
  return null;
}

/**
 * Runs `fn` on a private local copy of the remote file at `url` (in a 0700 work directory,
 * removed afterwards on every path): restore and verify then read it as they read any file.
 */
async function withFetched<T>(url: string, opts: SourceOptions, fn: (file: string) => Promise<T>): Promise<T> {
  const { store, name } = openRemoteFile(url, opts);
  const dir = makeWorkDir('download', opts.workDir);
  try {
    const file = await store.fetch(name, dir, { signal: opts.signal, onProgress: opts.onProgress }).catch(async (e) => {
      const set = e instanceof BlufioError && e.code === 'E_SOURCE_MISSING' ? await setBeside(store.where(name), opts) : null;
      throw set ? new BlufioError('E_SOURCE_MISSING', `no object at ${url}, but ${set} holds objects (a backup set)`, `end it with / to restore from the set: ${set}`) : e;
    });
    try {
      return await fn(file);
    } catch (e) {
      // Messages name the file as given, not the private copy of it.
      throw renamed(e, file, url);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
