/**
 * Page hashes: 16 bytes of SHA-256 per page of a full backup, and the SHA-256 of the whole
 * database. A differential is the pages whose hashes differ from its base's (diff.ts). Pure
 * byte-level code but for reading the database file and where the hashes are kept.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import { stateDir } from '../files.ts';
import type { ObjectStorageOptions } from '../storage/index.ts';
import { canonicalSet } from '../storage/index.ts';
import { readFully } from '../vfs/disk-file.ts';

export const HASH_BYTES = 16;

export interface PageHashes {
  pageSize: number;
  pages: number;
  /** SHA-256 of the whole database file, hex. */
  sha256: string;
  hashes: Buffer;
  /** The published backup these hashes describe: its size (a base swapped or rewritten since is not used). */
  bytes?: number;
  /** Who it was encrypted to (a fingerprint of the sorted recipients): a new key means a new full backup. */
  recipients?: string;
}

/** Hashes a database file page by page, and as a whole. */
export function hashPages(file: string, pageSize: number): PageHashes {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const pages = Math.floor(size / pageSize);
    const hashes = Buffer.alloc(pages * HASH_BYTES);
    const whole = createHash('sha256');
    const buf = Buffer.allocUnsafe(pageSize * 256);
    for (let p = 0; p < pages; ) {
      const n = Math.min(256, pages - p);
      readAt(fd, buf, n * pageSize, p * pageSize);
      whole.update(buf.subarray(0, n * pageSize));
      for (let i = 0; i < n; i++) createHash('sha256').update(buf.subarray(i * pageSize, (i + 1) * pageSize)).digest().copy(hashes, (p + i) * HASH_BYTES, 0, HASH_BYTES);
      p += n;
    }
    return { pageSize, pages, sha256: whole.digest('hex'), hashes };
  } finally {
    fs.closeSync(fd);
  }
}

export function readAt(fd: number, buf: Buffer, len: number, at: number): void {
  if (readFully(fd, buf.subarray(0, len), at) !== len) throw new BlufioError('E_IO', 'a file changed size while it was read', 'try again');
}

const PAGES_MAGIC = 'blufio-pages 1\n';

export function encodePages(h: PageHashes): Buffer {
  return Buffer.concat([Buffer.from(PAGES_MAGIC), Buffer.from(`${JSON.stringify({ pageSize: h.pageSize, pages: h.pages, sha256: h.sha256, bytes: h.bytes, recipients: h.recipients })}\n`), h.hashes]);
}

export const recipientsKey = (recipients: string[]) => (recipients.length ? createHash('sha256').update([...recipients].sort().join('\n')).digest('hex').slice(0, 32) : '');

/** The first line of a page-hashes file (its size, SHA-256, …), from its first bytes. */
export function pagesMeta(b: Buffer): { pageSize: number; pages: number; sha256: string; bytes?: number; recipients?: string } | null {
  if (!b.subarray(0, PAGES_MAGIC.length).equals(Buffer.from(PAGES_MAGIC))) return null;
  const nl = b.indexOf(0x0a, PAGES_MAGIC.length);
  if (nl < 0) return null;
  try {
    const meta = JSON.parse(b.subarray(PAGES_MAGIC.length, nl).toString('utf8'));
    return typeof meta?.sha256 === 'string' ? meta : null;
  } catch {
    return null;
  }
}

export function decodePages(b: Buffer): PageHashes | null {
  const meta = pagesMeta(b);
  if (!meta) return null;
  const hashes = b.subarray(b.indexOf(0x0a, PAGES_MAGIC.length) + 1);
  if (!validGeometry(meta.pageSize, meta.pages) || hashes.length !== meta.pages * HASH_BYTES) return null;
  return { ...meta, hashes };
}

/**
 * Where the page hashes of a set's full backups are kept on this machine: the state directory,
 * one folder per set. Encrypted sets keep them only here (hashes of plaintext pages would tell
 * whoever holds the storage which pages are equal); plain sets also keep them in the set, beside
 * their backup (`<name>.pages`), so that another machine can go on making differentials.
 */
export function hashCacheDir(set: string, opts: ObjectStorageOptions): string {
  // One set, one id, however it is spelled (a link, a relative path, a trailing slash).
  const id = createHash('sha256').update(canonicalSet(set)).digest('hex').slice(0, 16);
  return path.join(stateDir(opts), 'sets', id);
}

/** A page size SQLite can have and a page count it can reach. */
export const validGeometry = (pageSize: unknown, pages: unknown) =>
  typeof pageSize === 'number' && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0 && typeof pages === 'number' && Number.isInteger(pages) && pages >= 0 && pages < 2 ** 32;

