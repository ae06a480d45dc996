/**
 * The differential format: `blufio-diff 1\n`, a JSON header line (its base's name, size and
 * SHA-256, the rebuilt database's geometry and SHA-256, how many pages it holds), then one record
 * per changed page: its number (4 bytes, big-endian, from 1) and its bytes. Single step: always
 * against a full backup, never a chain. docs/sets.md has the decisions.
 */
import * as fs from 'node:fs';
import { BlufioError } from '../errors.ts';
import type { Guard } from '../transforms/index.ts';
import type { SetEntry } from './names.ts';
import { HashBlocks, readAt, validGeometry, type PageHashes } from './pages.ts';

const DIFF_MAGIC = 'blufio-diff 1\n';

export interface DiffHeader {
  /** The base's name. */
  base: string;
  baseSha256: string;
  pageSize: number;
  /** Pages of the rebuilt database. */
  pages: number;
  /** SHA-256 of the rebuilt database. */
  sha256: string;
  /** Pages the differential holds. */
  changed: number;
  /** The base's size as published (packed): a base replaced by another file is told from the listing. Since 0.2. */
  baseBytes?: number;
}

/** The pages (from 0) whose hashes in `now` differ from `base`'s or lie past its end, in order, read a block at a time. */
function* changedPages(now: PageHashes, base: PageHashes): Generator<number> {
  const a = new HashBlocks(now);
  const b = new HashBlocks(base);
  try {
    for (let p = 0; p < now.pages; p++) if (p >= base.pages || !a.at(p).equals(b.at(p))) yield p;
  } finally {
    a.close();
    b.close();
  }
}

/** How many pages a differential of `now` against `base` holds. */
export function countChanged(now: PageHashes, base: PageHashes): number {
  let n = 0;
  for (const _ of changedPages(now, base)) n++;
  return n;
}

/**
 * Writes the `changed` pages of `file` (countChanged()) whose hashes differ from `base`'s to
 * `out`: the hashes are compared a block at a time, once to count (the header, first, says how
 * many pages follow) and once here — no list of pages, no table of hashes in memory at any size.
 */
export function writeDiff(file: string, now: PageHashes, base: PageHashes, baseEntry: SetEntry, out: string, changed: number, whileBusy?: () => void): void {
  const header: DiffHeader = { base: baseEntry.name, baseSha256: base.sha256, pageSize: now.pageSize, pages: now.pages, sha256: now.sha256, changed, baseBytes: baseEntry.bytes };
  const fdIn = fs.openSync(file, 'r');
  const fdOut = fs.openSync(out, 'wx', 0o600);
  try {
    fs.writeSync(fdOut, Buffer.from(`${DIFF_MAGIC}${JSON.stringify(header)}\n`));
    const rec = Buffer.allocUnsafe(4 + now.pageSize);
    let written = 0;
    for (const p of changedPages(now, base)) {
      rec.writeUInt32BE(p + 1, 0);
      readAt(fdIn, rec.subarray(4), now.pageSize, p * now.pageSize);
      fs.writeSync(fdOut, rec);
      if (++written % 256 === 0) whileBusy?.();
    }
    if (written !== changed) throw new BlufioError('E_IO', 'the page hashes changed while the differential was written', 'try again');
  } finally {
    fs.closeSync(fdIn);
    fs.closeSync(fdOut);
  }
}

/** Reads a differential's header (from its unpacked file). */
export function readDiffHeader(file: string, shown: string): { header: DiffHeader; offset: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    return parseDiffHeader(buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)), shown);
  } finally {
    fs.closeSync(fd);
  }
}

/** A differential's header from its first bytes (4 KiB hold it), and where its pages start. */
export function parseDiffHeader(buf: Uint8Array, shown: string): { header: DiffHeader; offset: number } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, 4096));
  const nl = b.indexOf(0x0a, DIFF_MAGIC.length);
  if (!b.subarray(0, DIFF_MAGIC.length).equals(Buffer.from(DIFF_MAGIC)) || nl < 0) {
    throw new BlufioError('E_CORRUPT', `${shown} is not a blufio differential (no header)`, 'use another backup');
  }
  try {
    const header = JSON.parse(b.subarray(DIFF_MAGIC.length, nl).toString('utf8')) as DiffHeader;
    if (!validGeometry(header.pageSize, header.pages) || !Number.isInteger(header.changed) || header.changed < 0 || header.changed > header.pages
      || typeof header.sha256 !== 'string' || typeof header.baseSha256 !== 'string' || typeof header.base !== 'string'
      || (header.baseBytes !== undefined && !Number.isSafeInteger(header.baseBytes))) throw new Error('bad header');
    return { header, offset: nl + 1 };
  } catch (e) {
    throw new BlufioError('E_CORRUPT', `${shown} has a damaged header`, 'use another backup', { cause: e });
  }
}

/**
 * Passes a differential through while it can be one: its magic first, then no more bytes than
 * its header says it holds (changed x (4 + page size)): a gzip bomb never fills the disk.
 */
export function diffSizeGuard(shown: string): Guard {
  let head = Buffer.alloc(0);
  let limit = Infinity;
  let seen = 0;
  const bad = (why: string) => new BlufioError('E_CORRUPT', `${shown} ${why}`, 'use another backup');
  return (piece) => {
    seen += piece.length;
    if (limit === Infinity) {
      head = Buffer.concat([head, piece.subarray(0, 8192)]);
      if (!Buffer.from(DIFF_MAGIC).subarray(0, Math.min(head.length, DIFF_MAGIC.length)).equals(head.subarray(0, Math.min(head.length, DIFF_MAGIC.length)))) throw bad('is not a blufio differential');
      const nl = head.indexOf(0x0a, DIFF_MAGIC.length);
      if (nl > 0) {
        let h: DiffHeader;
        try {
          h = JSON.parse(head.subarray(DIFF_MAGIC.length, nl).toString('utf8')) as DiffHeader;
        } catch {
          throw bad('has a damaged header');
        }
        limit = nl + 1 + h.changed * (4 + h.pageSize);
        if (!Number.isSafeInteger(limit)) throw bad('has a damaged header');
      } else if (head.length >= 8192) {
        throw bad('has a damaged header');
      }
    }
    if (seen > limit) throw bad(`unpacks to more than the ${limit} bytes its header declares; stopped`);
  };
}

