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
import { copyRange, readFully, writeFully } from '../vfs/disk-file.ts';

export const HASH_BYTES = 16;

export interface PageHashes {
  pageSize: number;
  pages: number;
  /** SHA-256 of the whole database file, hex. */
  sha256: string;
  /**
   * The file the hashes are in (16 bytes a page, in order) from byte `offset`: never in memory
   * (4 MiB per GiB of 4 KiB pages; a backup of a big database, or a replicator's new base, held
   * two such tables at once). Read a block at a time (HashBlocks).
   */
  file: string;
  offset: number;
  /** The published backup these hashes describe: its size (a base swapped or rewritten since is not used). */
  bytes?: number;
  /** Who it was encrypted to (a fingerprint of the sorted recipients): a new key means a new full backup. */
  recipients?: string;
}

/** Pages read (and hashed) at once. */
const PAGES_AT_ONCE = 256;

/**
 * Reads a database file's whole pages in runs of PAGES_AT_ONCE, each given to `run` (its bytes
 * and its first page, from 0); returns the SHA-256 of them all, hex.
 */
function eachRun(file: string, pageSize: number, run: (bytes: Buffer, first: number, n: number) => void, whileBusy?: () => void): { pages: number; sha256: string } {
  const fd = fs.openSync(file, 'r');
  try {
    const pages = Math.floor(fs.fstatSync(fd).size / pageSize);
    const whole = createHash('sha256');
    const buf = Buffer.allocUnsafe(pageSize * PAGES_AT_ONCE);
    for (let p = 0; p < pages; p += PAGES_AT_ONCE) {
      const n = Math.min(PAGES_AT_ONCE, pages - p);
      readAt(fd, buf, n * pageSize, p * pageSize);
      whole.update(buf.subarray(0, n * pageSize));
      run(buf, p, n);
      whileBusy?.();
    }
    return { pages, sha256: whole.digest('hex') };
  } finally {
    fs.closeSync(fd);
  }
}

/** Hashes a database file page by page into the file `out` (made), and as a whole (whileBusy: CopyOptions'). */
export function hashPages(file: string, pageSize: number, out: string, whileBusy?: () => void): PageHashes {
  const fdOut = fs.openSync(out, 'wx', 0o600);
  try {
    const hashes = Buffer.allocUnsafe(HASH_BYTES * PAGES_AT_ONCE);
    const { pages, sha256 } = eachRun(file, pageSize, (buf, first, n) => {
      for (let i = 0; i < n; i++) createHash('sha256').update(buf.subarray(i * pageSize, (i + 1) * pageSize)).digest().copy(hashes, i * HASH_BYTES, 0, HASH_BYTES);
      writeFully(fdOut, hashes.subarray(0, n * HASH_BYTES), first * HASH_BYTES);
    }, whileBusy);
    return { pageSize, pages, sha256, file: out, offset: 0 };
  } finally {
    fs.closeSync(fdOut);
  }
}

/** The SHA-256 of a database file's whole pages, hex (as hashPages() says it; read a block at a time). */
export function sha256Of(file: string, pageSize: number): string {
  return eachRun(file, pageSize, () => {}).sha256;
}

/** Reads a PageHashes' hashes in order, a block at a time: `at(p)` for p = 0, 1, 2, … (pages from 0). */
export class HashBlocks {
  private readonly fd: number;
  private readonly buf = Buffer.allocUnsafe(HASH_BYTES * 4096);
  private first = 0;
  private count = 0;

  constructor(private readonly h: PageHashes) {
    this.fd = fs.openSync(h.file, 'r');
  }

  /** Page `p`'s hash (p < pages): a view valid until the next call. */
  at(p: number): Buffer {
    if (p < this.first || p >= this.first + this.count) {
      this.first = p;
      this.count = Math.min(this.buf.length / HASH_BYTES, this.h.pages - p);
      readAt(this.fd, this.buf, this.count * HASH_BYTES, this.h.offset + p * HASH_BYTES);
    }
    const i = (p - this.first) * HASH_BYTES;
    return this.buf.subarray(i, i + HASH_BYTES);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export function readAt(fd: number, buf: Buffer, len: number, at: number): void {
  if (readFully(fd, buf.subarray(0, len), at) !== len) throw new BlufioError('E_IO', 'a file changed size while it was read', 'try again');
}

const PAGES_MAGIC = 'blufio-pages 1\n';

/** Writes `h` as a page-hashes file (its magic, a JSON line, the hashes) to `dest` (made). */
export function writePages(h: PageHashes, dest: string): void {
  const fdIn = fs.openSync(h.file, 'r');
  const fdOut = fs.openSync(dest, 'wx', 0o600);
  try {
    const head = Buffer.from(`${PAGES_MAGIC}${JSON.stringify({ pageSize: h.pageSize, pages: h.pages, sha256: h.sha256, bytes: h.bytes, recipients: h.recipients })}\n`);
    writeFully(fdOut, head, 0);
    if (copyRange(fdIn, h.offset, fdOut, head.length, h.pages * HASH_BYTES) !== h.pages * HASH_BYTES) throw new BlufioError('E_IO', `${h.file} was cut short while it was copied`, 'try again');
  } finally {
    fs.closeSync(fdIn);
    fs.closeSync(fdOut);
  }
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

/** A page-hashes file's hashes (read in place), or null when it is not one (or is cut short). */
export function openPages(file: string): PageHashes | null {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(4096);
    const head = b.subarray(0, readFully(fd, b, 0));
    const meta = pagesMeta(head);
    if (!meta) return null;
    const offset = head.indexOf(0x0a, PAGES_MAGIC.length) + 1;
    if (!validGeometry(meta.pageSize, meta.pages) || fs.fstatSync(fd).size !== offset + meta.pages * HASH_BYTES) return null;
    return { ...meta, file, offset };
  } finally {
    fs.closeSync(fd);
  }
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

