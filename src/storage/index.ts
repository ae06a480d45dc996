/**
 * Where backups go and come from: the one place that turns what the user typed into a
 * destination or a source. Every command asks locate(); none tests for "s3://" or a directory on
 * its own.
 *
 *   -                          stdout (backup) — never a source
 *   s3://bucket/prefix/        a set in a bucket (any case: S3://, s3://)
 *   s3://bucket/key            one object
 *   /backups/ or an existing folder   a set in a folder
 *   anything else              one local file
 *
 * A new kind of store (an SFTP server, say) is one file that implements Store (store.ts) and
 * one line in REMOTES below: its scheme and how to open a set there.
 */
import { realpathSync } from 'node:fs';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import { statOrNull } from '../files.ts';
import type { ObjectStorageOptions } from './s3/transfer.ts';

export type { ObjectStorageOptions } from './s3/transfer.ts';
import { FolderStore } from './folder.ts';
import { BucketStore } from './s3/bucket.ts';
import type { Store, StoreOptions } from './store.ts';

export type { Body, PutOptions, Store, StoredFile, StoreOptions } from './store.ts';

/** The options any store may need to be opened (a remote's credentials and endpoint, a job's signal). */
export type OpenOptions = ObjectStorageOptions & StoreOptions;

/**
 * Stores reached by a URL scheme: the scheme (lower case), how to open a set at a URL, and the
 * store and name of one file at a URL (which checks the URL as that store's own).
 */
interface Remote {
  scheme: string;
  open(url: string, opts: OpenOptions): Store;
  openFile(url: string, opts: OpenOptions): { store: Store; name: string };
}

const REMOTES: Remote[] = [
  { scheme: 's3', open: (url, opts) => BucketStore.open(url, opts), openFile: (url, opts) => BucketStore.openFile(url, opts) },
];

export type Location =
  /** `-`: the backup is written to stdout. */
  | { kind: 'stdout'; text: string }
  /** A set: a folder, or a remote prefix (the text ends in / or names an existing folder). */
  | { kind: 'set'; text: string; remote: string | null }
  /** One file: a local path, or one remote object (`remote` is its scheme). */
  | { kind: 'file'; text: string; remote: string | null };

/** The remote scheme `text` is written in (compared without case: S3://… is s3://…), or null for a local path. */
export function remoteOf(text: string): string | null {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  const scheme = m?.[1].toLowerCase();
  return scheme && REMOTES.some((r) => r.scheme === scheme) ? scheme : null;
}

/** What `text` (a command's argument) names. */
export function locate(text: string): Location {
  if (text === '-') return { kind: 'stdout', text };
  const remote = remoteOf(text);
  if (remote) return { kind: text.endsWith('/') ? 'set' : 'file', text, remote };
  return { kind: text.endsWith('/') || statOrNull(path.resolve(text))?.isDirectory() ? 'set' : 'file', text, remote: null };
}

/** True when `text` names a set: it ends in / or is an existing folder. */
export const isSet = (text: string) => locate(text).kind === 'set';

/** True when `text` is on a remote store (off this machine). */
export const isRemote = (text: string) => remoteOf(text) !== null;

/** The store of the set at `set` (a folder must exist). */
export function openStore(set: string, opts: OpenOptions = {}): Store {
  const remote = remoteOf(set);
  if (remote) return REMOTES.find((r) => r.scheme === remote)!.open(set, opts);
  const dir = path.resolve(set);
  const st = statOrNull(dir);
  if (!st) throw new BlufioError('E_DEST_DIR', `the backup set ${dir} does not exist`, `create it first: mkdir -p ${dir}`);
  if (!st.isDirectory()) throw new BlufioError('E_NOT_FILE', `${dir} is a file, not a backup set (a directory)`, 'give the directory that holds the backups, or the file itself without a trailing /');
  return new FolderStore(dir);
}

/** The store of the remote file at `url` (s3://bucket/key), and its name there. */
export function openRemoteFile(url: string, opts: OpenOptions = {}): { store: Store; name: string } {
  const remote = remoteOf(url);
  if (!remote) throw new BlufioError('E_USAGE', `${url} is not a remote address`, 'give an s3://BUCKET/KEY address');
  return REMOTES.find((r) => r.scheme === remote)!.openFile(url, opts);
}

/**
 * The set at `url` + "/" when it holds files — what a path without its trailing slash may have
 * meant (`s3://b/blufio` beside the set `s3://b/blufio/`) — else null. Only a guard: where the
 * listing is not allowed, null.
 */
export async function setBeside(url: string, opts: OpenOptions = {}): Promise<string | null> {
  if (url.endsWith('/')) return null;
  const set = `${url}/`;
  try {
    const store = openStore(set, opts);
    return (await store.list()).length > 0 ? store.where('') : null;
  } catch {
    return null;
  }
}

/**
 * For commands that take a set (list, check, prune): refuses `text` when it names one remote
 * object (s3://b/k/x.db.gz) rather than a prefix — it was listed as an empty, healthy set (found
 * by an attack run). A remote prefix without its slash still counts as the set.
 */
export async function refuseFileAsSet(text: string, command: string, opts: OpenOptions = {}): Promise<void> {
  const where = locate(text);
  if (where.kind !== 'file' || where.remote === null) return;
  const { store, name } = openRemoteFile(text, opts);
  if (await store.stat(name)) {
    throw new BlufioError('E_USAGE', `${store.where(name)} is one backup, not a set`, `blufio ${command} takes a set: the prefix that holds the backups, ending in / (e.g. ${store.where('')}); blufio verify checks one backup`);
  }
}

/** A file's store and name within it: `/backups/x.diff.gz` → (/backups, x.diff.gz); `s3://b/p/x` → (s3://b/p/, x). */
export function splitFile(file: string): { store: string; name: string } {
  if (remoteOf(file)) {
    const cut = file.lastIndexOf('/') + 1;
    return { store: file.slice(0, cut), name: file.slice(cut) };
  }
  return { store: path.dirname(path.resolve(file)), name: path.basename(file) };
}

/** One spelling per set, whatever the user typed (a link, a relative path, a trailing slash): for ids of state kept about it. */
export function canonicalSet(set: string): string {
  if (remoteOf(set)) return set.replace(/^[^:]+/, (scheme) => scheme.toLowerCase()).replace(/\/?$/, '/');
  const where = path.resolve(set);
  try {
    return realpathSync(where);
  } catch {
    return where; // not there: its spelling will do
  }
}
