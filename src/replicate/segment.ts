/**
 * The log segment format: what `blufio replicate` ships, one object per sync interval. Pure
 * bytes (tests build and break segments in memory: test/segment.test.ts).
 *
 *   blufio-log 1\n
 *   {"base":…,"n":…,"pageSize":…,"pre":…,"post":…,"from":…,"to":…,"steps":…}\n
 *   step × steps:
 *     "STEP" | time (float64, ms since 1970, when the replicator observed the commit)
 *            | pages (u32: the database's size after it) | count (u32) | checksum after (16 bytes)
 *     record × count: page number (u32, from 1) | the page's bytes (pageSize)
 *
 * All integers big-endian. A step is the state after the last transaction the replicator saw
 * committed at one look at the WAL: restoring to time T applies every step whose time is at or
 * before T, none after — so a restore is always one committed state, never a mix.
 *
 * The chain: the database's checksum is the XOR, over its pages, of the first 16 bytes of
 * SHA-256(page number ‖ page) (LTX's rolling checksum, with SHA-256 in place of CRC64). Changing
 * a page XORs its old hash out and its new one in, so a segment's `pre` must equal the `post` of
 * the one before it (the base full backup's checksum for the first): a missing, reordered or
 * foreign segment is found from the segments alone, and each step's checksum proves its pages
 * were applied to the state they were made from.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { validPageSize } from '../core/header.ts';
import { BlufioError } from '../errors.ts';
import { copyRange, readFully, writeFully } from '../vfs/disk-file.ts';

export const LOG_MAGIC = 'blufio-log 1\n';
const STEP_MAGIC = 0x53544550; // "STEP"
const STEP_HEAD = 4 + 8 + 4 + 4 + 16;
export const CHECKSUM_BYTES = 16;

export interface SegmentHeader {
  /** The full backup the chain starts from (its name in the set). */
  base: string;
  /** The segment's place in the chain (1 for the first after the base). */
  n: number;
  /** The last place it covers (a compacted segment: the steps of segments n to last); n when absent. */
  last?: number;
  pageSize: number;
  /** The database's checksum before the first step and after the last (hex). */
  pre: string;
  post: string;
  /** When the first and the last step were observed (ISO 8601, ms). */
  from: string;
  to: string;
  steps: number;
  /** A gap closed here: commits between the previous segment and this one's first step were not seen one by one (the WAL was checkpointed and restarted unread); times inside it restore to the state before it. */
  gap?: string;
}

export interface Step {
  /** When it was observed (ms since 1970). */
  time: number;
  /** The database's size after it, in pages. */
  pages: number;
  /** Its checksum after it. */
  checksum: Uint8Array;
  /** Page number -> the page's bytes after it. */
  records: Array<{ pgno: number; page: Uint8Array }>;
}

/** The hash of one page as it counts in the checksum. */
const pgnoBytes = Buffer.alloc(4);

export function pageHash(pgno: number, page: Uint8Array): Buffer {
  pgnoBytes.writeUInt32BE(pgno);
  return createHash('sha256').update(pgnoBytes).update(page).digest().subarray(0, CHECKSUM_BYTES);
}

/** `into` ^= `h` (16 bytes). */
export function xorInto(into: Uint8Array, h: Uint8Array): void {
  for (let i = 0; i < CHECKSUM_BYTES; i++) into[i] ^= h[i];
}

export const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A segment's first line and header line. */
export function segmentHead(header: SegmentHeader): Buffer {
  return Buffer.from(`${LOG_MAGIC}${JSON.stringify(header)}\n`);
}

/**
 * Appends steps to a file (the replicator's spool of what it has not shipped yet): begin(), a
 * record per changed page, end() with the checksum after the step. Only the steps' times, sizes
 * and checksums stay in memory, whatever the pages weigh (a gap closed on a big database).
 */
export class StepWriter {
  private at: number;
  private head = -1;
  private count = 0;
  constructor(private readonly fd: number, readonly pageSize: number) {
    this.at = fs.fstatSync(fd).size;
  }
  get bytes(): number {
    return this.at;
  }
  begin(time: number, pages: number): void {
    const head = Buffer.alloc(STEP_HEAD);
    head.writeUInt32BE(STEP_MAGIC, 0);
    head.writeDoubleBE(time, 4);
    head.writeUInt32BE(pages, 12);
    this.head = this.at;
    this.count = 0;
    this.write(head);
  }
  /** One record: its page number and page, in one write (from a buffer kept for it). */
  private rec: Buffer | null = null;
  record(pgno: number, page: Uint8Array): void {
    const rec = (this.rec ??= Buffer.allocUnsafe(4 + this.pageSize));
    rec.writeUInt32BE(pgno, 0);
    if (page.length !== this.pageSize) throw new Error(`a page of ${page.length} bytes in a spool of ${this.pageSize}-byte pages`);
    rec.set(page, 4);
    this.write(rec);
    this.count++;
  }
  end(checksum: Uint8Array): number {
    const tail = Buffer.alloc(4 + CHECKSUM_BYTES);
    tail.writeUInt32BE(this.count, 0);
    Buffer.from(checksum).copy(tail, 4);
    writeFully(this.fd, tail, this.head + 16);
    return this.count;
  }
  /** Takes back the step begun last (it changed nothing). */
  drop(): void {
    fs.ftruncateSync(this.fd, this.head);
    this.at = this.head;
  }
  /** Forgets what was written (after it was shipped). */
  reset(): void {
    fs.ftruncateSync(this.fd, 0);
    this.at = 0;
  }
  /**
   * Forgets the first `bytes` (whole steps, shipped) and keeps what was written after them (steps
   * seen while they were being shipped), moved to the start.
   */
  shift(bytes: number): void {
    if (bytes <= 0) return;
    if (bytes > this.at) throw new Error(`shift(${bytes}) past the spool's ${this.at} bytes`);
    // Forward, a chunk at a time: the bytes read are always past those written.
    if (copyRange(this.fd, bytes, this.fd, 0, this.at - bytes) !== this.at - bytes) throw new Error('the spool was cut short');
    this.at -= bytes;
    this.head -= bytes;
    fs.ftruncateSync(this.fd, this.at);
  }
  /**
   * Folds the steps written from byte `from` on (a step's start; 0: all) into one: the state
   * after the last, holding the newest image of each page any of them changed (a backlog kept
   * while the store was unreachable, bounded so). `tmp` is a scratch file beside the spool.
   * Returns the folded step's time, size, checksum and page count, and how many were folded.
   */
  collapse(tmp: string, from = 0): { time: number; pages: number; checksum: Uint8Array; count: number; folded: number } {
    const ps = this.pageSize;
    const head = Buffer.alloc(STEP_HEAD);
    const num = Buffer.alloc(4);
    const newest = new Map<number, number>();
    let last: { time: number; pages: number; checksum: Uint8Array } | null = null;
    let folded = 0;
    for (let at = from; at < this.at; ) {
      if (readFully(this.fd, head, at) !== STEP_HEAD || head.readUInt32BE(0) !== STEP_MAGIC) throw new Error(`the spool has no step at byte ${at}`);
      last = { time: head.readDoubleBE(4), pages: head.readUInt32BE(12), checksum: Uint8Array.from(head.subarray(20, 20 + CHECKSUM_BYTES)) };
      const count = head.readUInt32BE(16);
      at += STEP_HEAD;
      for (let k = 0; k < count; k++) {
        readFully(this.fd, num, at);
        newest.set(num.readUInt32BE(0), at + 4);
        at += 4 + ps;
      }
      folded++;
    }
    if (!last) throw new Error('collapse() of an empty spool');
    const out = fs.openSync(tmp, 'w+', 0o600);
    try {
      const w = new StepWriter(out, ps);
      w.begin(last.time, last.pages);
      const page = Buffer.alloc(ps);
      for (const pgno of [...newest.keys()].sort((a, b) => a - b)) {
        if (pgno > last.pages) continue;
        readFully(this.fd, page, newest.get(pgno)!);
        w.record(pgno, page);
      }
      const count = w.end(last.checksum);
      // Back into the spool, where the folded steps began.
      if (copyRange(out, 0, this.fd, from, w.bytes) !== w.bytes) throw new Error('the folded step was cut short');
      fs.ftruncateSync(this.fd, from + w.bytes);
      this.at = from + w.bytes;
      this.head = from;
      return { ...last, count, folded };
    } finally {
      fs.closeSync(out);
      fs.rmSync(tmp, { force: true });
    }
  }
  private write(b: Uint8Array): void {
    writeFully(this.fd, b, this.at);
    this.at += b.length;
  }
}

/** A segment's bytes. */
export function encodeSegment(header: Omit<SegmentHeader, 'steps'>, steps: Step[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`${LOG_MAGIC}${JSON.stringify({ ...header, steps: steps.length })}\n`)];
  for (const s of steps) {
    const head = Buffer.alloc(STEP_HEAD);
    head.writeUInt32BE(STEP_MAGIC, 0);
    head.writeDoubleBE(s.time, 4);
    head.writeUInt32BE(s.pages, 12);
    head.writeUInt32BE(s.records.length, 16);
    Buffer.from(s.checksum).copy(head, 20);
    parts.push(head);
    for (const r of s.records) {
      if (r.page.length !== header.pageSize) throw new Error(`a page of ${r.page.length} bytes in a segment of ${header.pageSize}-byte pages`);
      const n = Buffer.alloc(4);
      n.writeUInt32BE(r.pgno);
      parts.push(n, Buffer.from(r.page.buffer, r.page.byteOffset, r.page.length));
    }
  }
  return Buffer.concat(parts);
}


/** A segment's header from its first bytes (4 KiB hold it), and where its steps start. */
export function parseSegmentHeader(buf: Uint8Array, shown: string): { header: SegmentHeader; offset: number } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, 4096));
  const nl = b.indexOf(0x0a, LOG_MAGIC.length);
  if (!b.subarray(0, LOG_MAGIC.length).equals(Buffer.from(LOG_MAGIC)) || nl < 0) {
    throw new BlufioError('E_CORRUPT', `${shown} is not a blufio log segment (no header)`, 'the set was changed by hand, or the file is damaged');
  }
  try {
    const h = JSON.parse(b.subarray(LOG_MAGIC.length, nl).toString('utf8')) as SegmentHeader;
    if (typeof h.base !== 'string' || !Number.isSafeInteger(h.n) || h.n < 1 || (h.last !== undefined && (!Number.isSafeInteger(h.last) || h.last < h.n)) || !(typeof h.pageSize === 'number' && validPageSize(h.pageSize)) || !/^[0-9a-f]{32}$/.test(h.pre) || !/^[0-9a-f]{32}$/.test(h.post)
      || Number.isNaN(Date.parse(h.from)) || Number.isNaN(Date.parse(h.to)) || !Number.isSafeInteger(h.steps) || h.steps < 1) throw new Error('bad header');
    return { header: h, offset: nl + 1 };
  } catch (e) {
    throw new BlufioError('E_CORRUPT', `${shown} has a damaged header`, 'the file is damaged; restore to a time before it', { cause: e });
  }
}

/**
 * Applies the segment in the file `file` (unpacked) to the database file `db`, whose checksum is
 * `sum` (updated in place): every step observed at or before `upTo` (ms), none after. Every
 * step's checksum must come out as the step says. Reads a record at a time (constant memory).
 * Returns the time of the last step applied (null: none), and whether all were.
 */
export function applySegment(file: string, db: string, sum: Uint8Array, upTo: number, shown: string): { applied: number | null; whole: boolean; header: SegmentHeader } {
  const fdIn = fs.openSync(file, 'r');
  const fdDb = fs.openSync(db, 'r+');
  try {
    const first = Buffer.alloc(4096);
    const { header, offset } = parseSegmentHeader(first.subarray(0, readFully(fdIn, first, 0)), shown);
    if (hex(sum) !== header.pre) {
      throw new BlufioError('E_CORRUPT', `${shown} does not follow the state before it (its checksum before is not the database's): a segment is missing, out of order or from another chain`, 'restore to a time before it');
    }
    const size = fs.fstatSync(fdIn).size;
    const bad = (why: string) => new BlufioError('E_CORRUPT', `${shown} is damaged (${why})`, 'restore to a time before it');
    const ps = header.pageSize;
    const head = Buffer.alloc(STEP_HEAD);
    const rec = Buffer.alloc(4 + ps);
    const old = Buffer.alloc(ps);
    let at = offset;
    let applied: number | null = null;
    let lastTime = -Infinity;
    for (let i = 0; i < header.steps; i++) {
      if (readFully(fdIn, head, at) !== STEP_HEAD || head.readUInt32BE(0) !== STEP_MAGIC) throw bad(`step ${i + 1} of ${header.steps} is cut off`);
      const time = head.readDoubleBE(4);
      const pages = head.readUInt32BE(12);
      const count = head.readUInt32BE(16);
      if (!Number.isFinite(time) || time < lastTime || count > pages || at + STEP_HEAD + count * rec.length > size) throw bad(`step ${i + 1} is malformed`);
      lastTime = time;
      if (time > upTo) return { applied, whole: false, header };
      at += STEP_HEAD;
      const was = Math.floor(fs.fstatSync(fdDb).size / ps);
      for (let k = 0; k < count; k++, at += rec.length) {
        readFully(fdIn, rec, at);
        const pgno = rec.readUInt32BE(0);
        if (pgno < 1 || pgno > pages) throw bad(`step ${i + 1} holds page ${pgno} of a ${pages}-page database`);
        const page = rec.subarray(4);
        if (pgno <= was) {
          old.fill(0, readFully(fdDb, old, (pgno - 1) * ps));
          xorInto(sum, pageHash(pgno, old));
        }
        xorInto(sum, pageHash(pgno, page));
        writeFully(fdDb, page, (pgno - 1) * ps);
      }
      if (pages < was) {
        for (let p = pages + 1; p <= was; p++) {
          old.fill(0, readFully(fdDb, old, (p - 1) * ps));
          xorInto(sum, pageHash(p, old));
        }
        fs.ftruncateSync(fdDb, pages * ps);
      } else if (pages > Math.floor(fs.fstatSync(fdDb).size / ps)) {
        throw bad(`step ${i + 1} grows the database to ${pages} pages without giving them all`);
      }
      if (!head.subarray(20, 36).equals(Buffer.from(sum))) throw bad(`step ${i + 1} does not give the state it says (checksum)`);
      applied = time;
    }
    if (at !== size) throw bad(`${size - at} bytes after its last step`);
    if (hex(sum) !== header.post) throw bad('its last step does not end where its header says');
    return { applied, whole: true, header };
  } finally {
    fs.closeSync(fdIn);
    fs.closeSync(fdDb);
  }
}

/**
 * Writes a segment's pages into `db` in order, checking nothing: for the replicator's own
 * segment, re-applied after a kill that may have stopped an earlier application midway (writing
 * page images in order is idempotent). The caller checks the whole file's checksum afterwards.
 */
export function replaySteps(file: string, db: string): void {
  const fdIn = fs.openSync(file, 'r');
  const fdDb = fs.openSync(db, 'r+');
  try {
    const first = Buffer.alloc(4096);
    const { header, offset } = parseSegmentHeader(first.subarray(0, readFully(fdIn, first, 0)), file);
    const head = Buffer.alloc(STEP_HEAD);
    const rec = Buffer.alloc(4 + header.pageSize);
    let at = offset;
    for (let i = 0; i < header.steps; i++) {
      readFully(fdIn, head, at);
      const pages = head.readUInt32BE(12);
      const count = head.readUInt32BE(16);
      at += STEP_HEAD;
      for (let k = 0; k < count; k++, at += rec.length) {
        readFully(fdIn, rec, at);
        writeFully(fdDb, rec.subarray(4), (rec.readUInt32BE(0) - 1) * header.pageSize);
      }
      if (fs.fstatSync(fdDb).size > pages * header.pageSize) fs.ftruncateSync(fdDb, pages * header.pageSize);
    }
    fs.fsyncSync(fdDb);
  } finally {
    fs.closeSync(fdIn);
    fs.closeSync(fdDb);
  }
}

/** A whole segment read back; every length checked against what is there. */
export function decodeSegment(buf: Uint8Array, shown: string): { header: SegmentHeader; steps: Step[] } {
  const { header, offset } = parseSegmentHeader(buf, shown);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const bad = (why: string) => new BlufioError('E_CORRUPT', `${shown} is damaged (${why})`, 'restore to a time before it');
  const steps: Step[] = [];
  let at = offset;
  for (let i = 0; i < header.steps; i++) {
    if (at + STEP_HEAD > b.length) throw bad(`cut off in step ${i + 1} of ${header.steps}`);
    if (b.readUInt32BE(at) !== STEP_MAGIC) throw bad(`step ${i + 1} has no step mark`);
    const time = b.readDoubleBE(at + 4);
    const pages = b.readUInt32BE(at + 12);
    const count = b.readUInt32BE(at + 16);
    const checksum = b.subarray(at + 20, at + 36);
    at += STEP_HEAD;
    if (!Number.isFinite(time) || count > pages || at + count * (4 + header.pageSize) > b.length) throw bad(`step ${i + 1} is cut off or malformed`);
    const records: Step['records'] = [];
    for (let k = 0; k < count; k++) {
      const pgno = b.readUInt32BE(at);
      if (pgno < 1 || pgno > pages) throw bad(`step ${i + 1} holds page ${pgno} of a ${pages}-page database`);
      records.push({ pgno, page: b.subarray(at + 4, at + 4 + header.pageSize) });
      at += 4 + header.pageSize;
    }
    if (steps.length > 0 && time < steps[steps.length - 1].time) throw bad(`step ${i + 1} is older than the one before it`);
    steps.push({ time, pages, checksum, records });
  }
  if (at !== b.length) throw bad(`${b.length - at} bytes after its last step`);
  if (hex(steps[steps.length - 1].checksum) !== header.post) throw bad('its last step does not end where its header says');
  return { header, steps };
}

/** The checksum of a database file, for a replay's first check. */
export function checksumOf(file: string, pageSize: number): Uint8Array {
  const sum = new Uint8Array(CHECKSUM_BYTES);
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const pages = Math.floor(size / pageSize);
    const page = new Uint8Array(pageSize);
    for (let p = 1; p <= pages; p++) {
      readFully(fd, page, (p - 1) * pageSize);
      xorInto(sum, pageHash(p, page));
    }
  } finally {
    fs.closeSync(fd);
  }
  return sum;
}
