/**
 * Reading a WAL file without SQLite and without the -shm: the header, the frames, their
 * cumulative checksums, and which frames are committed. This is what lets a reader in another
 * process (us) know the exact committed state of a live WAL database without taking any lock.
 * Format: https://www.sqlite.org/fileformat2.html#walformat
 */

import { validPageSize } from './core/header.ts';

export const WAL_HEADER_SIZE = 32;
export const WAL_FRAME_HEADER_SIZE = 24;
const WAL_MAGIC = 0x377f0682;
const WAL_VERSION = 3007000;

export interface WalHeader {
  /** Checksums are computed on big-endian words (magic 0x377f0683) or little-endian ones. */
  bigEndCksum: boolean;
  pageSize: number;
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  cksum1: number;
  cksum2: number;
  /** The 32 bytes as read: two reads are the same generation of the WAL only if these match. */
  raw: Uint8Array;
}

/** Parses the 32-byte WAL header; null if it is not a valid one (SQLite then ignores the WAL). */
export function parseWalHeader(raw: Uint8Array): WalHeader | null {
  if (raw.length < WAL_HEADER_SIZE) return null;
  const dv = new DataView(raw.buffer, raw.byteOffset, WAL_HEADER_SIZE);
  const magic = dv.getUint32(0);
  if ((magic & 0xfffffffe) !== WAL_MAGIC) return null;
  if (dv.getUint32(4) !== WAL_VERSION) return null;
  const pageSize = dv.getUint32(8) === 1 ? 65536 : dv.getUint32(8);
  if (!validPageSize(pageSize)) return null;
  const bigEndCksum = (magic & 1) === 1;
  const [c1, c2] = walChecksum(raw.subarray(0, 24), bigEndCksum, 0, 0);
  if (c1 !== dv.getUint32(24) || c2 !== dv.getUint32(28)) return null;
  return {
    bigEndCksum,
    pageSize,
    checkpointSeq: dv.getUint32(12),
    salt1: dv.getUint32(16),
    salt2: dv.getUint32(20),
    cksum1: c1,
    cksum2: c2,
    raw: raw.slice(0, WAL_HEADER_SIZE),
  };
}

/**
 * SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from (s1, s2).
 * Words are read big- or little-endian as the WAL header's magic says.
 */
export function walChecksum(data: Uint8Array, bigEnd: boolean, s1: number, s2: number): [number, number] {
  const n = data.length >>> 2;
  if (!bigEnd && (data.byteOffset & 3) === 0 && littleEndianHost) {
    const w = new Uint32Array(data.buffer, data.byteOffset, n);
    for (let i = 0; i < n; i += 2) {
      s1 = (s1 + w[i] + s2) >>> 0;
      s2 = (s2 + w[i + 1] + s1) >>> 0;
    }
    return [s1, s2];
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.length);
  const le = !bigEnd;
  for (let i = 0; i < n; i += 2) {
    s1 = (s1 + dv.getUint32(i * 4, le) + s2) >>> 0;
    s2 = (s2 + dv.getUint32(i * 4 + 4, le) + s1) >>> 0;
  }
  return [s1, s2];
}

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Byte offset of frame `index` (1-based) in a WAL with this page size. */
export function frameOffset(index: number, pageSize: number): number {
  return WAL_HEADER_SIZE + (index - 1) * (WAL_FRAME_HEADER_SIZE + pageSize);
}

/** Reads bytes of a WAL: fills `dst` from `offset`, returns how many bytes the file had there. */
export interface WalReader {
  read(dst: Uint8Array, offset: number): number;
}

/** Frames read per system call while scanning. */
const SCAN_FRAMES = 128;

/**
 * The buffer scans read into, shared (scan() is synchronous): a new one per scan was half a MiB
 * of garbage at each of the replicator's 40 looks a second, a full collection every ~300 ms.
 */
let scanBuffer = new Uint8Array(0);

/**
 * The committed content of one WAL generation (one header, one pair of salts), built by
 * scanning frames and extendable by scanning again as the writer appends.
 *
 * Frames after the last commit frame are not counted: they belong to a transaction that may
 * still be rolled back, and a later scan restarts from the last commit.
 */
export class WalIndex {
  /** Page number -> index of the newest committed frame holding it. */
  readonly frames = new Map<number, number>();
  /** Index of the last commit frame (0: none). */
  lastCommit = 0;
  /** Database size in pages as of the last commit (0: no commit in this WAL). */
  nPages = 0;
  private cksum: [number, number];
  private readonly frameSize: number;

  constructor(readonly header: WalHeader) {
    this.cksum = [header.cksum1, header.cksum2];
    this.frameSize = WAL_FRAME_HEADER_SIZE + header.pageSize;
  }

  get pageSize(): number {
    return this.header.pageSize;
  }

  /** Copies the index (the frames map included) so a later scan leaves this one as it was. */
  clone(): WalIndex {
    const c = new WalIndex(this.header);
    for (const [p, i] of this.frames) c.frames.set(p, i);
    c.lastCommit = this.lastCommit;
    c.nPages = this.nPages;
    c.cksum = [this.cksum[0], this.cksum[1]];
    return c;
  }

  /**
   * Where the last scan stopped: the index of the first frame that was not a valid continuation
   * (or that lies past the end of the file), and that frame's 24-byte header as read (null at
   * end of file). Used to tell the true end of a generation from frames overwritten by the next.
   */
  stop: { index: number; head: Uint8Array | null } = { index: 1, head: null };

  /**
   * Reads frames after the last commit until one is invalid (wrong salts, broken checksum
   * chain, page number 0) or the file ends, and takes in every transaction that committed.
   * Pages of newly committed frames are added to `touched`. Returns how many commits were new.
   */
  scan(wal: WalReader, touched?: Set<number>): number {
    const { header, frameSize } = this;
    if (scanBuffer.length < frameSize * SCAN_FRAMES) scanBuffer = new Uint8Array(frameSize * SCAN_FRAMES);
    const buf = scanBuffer.subarray(0, frameSize * SCAN_FRAMES);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    let index = this.lastCommit + 1;
    let [s1, s2] = this.cksum;
    let pending: Array<[number, number]> = [];
    let commits = 0;
    for (;;) {
      const got = wal.read(buf, frameOffset(index, header.pageSize));
      const whole = Math.floor(got / frameSize);
      for (let k = 0; k < whole; k++, index++) {
        const at = k * frameSize;
        const pgno = dv.getUint32(at);
        const commitSize = dv.getUint32(at + 4);
        let valid = pgno !== 0 && dv.getUint32(at + 8) === header.salt1 && dv.getUint32(at + 12) === header.salt2;
        if (valid) {
          [s1, s2] = walChecksum(buf.subarray(at, at + 8), header.bigEndCksum, s1, s2);
          [s1, s2] = walChecksum(buf.subarray(at + WAL_FRAME_HEADER_SIZE, at + frameSize), header.bigEndCksum, s1, s2);
          valid = s1 === dv.getUint32(at + 16) && s2 === dv.getUint32(at + 20);
        }
        if (!valid) {
          this.stop = { index, head: buf.slice(at, at + WAL_FRAME_HEADER_SIZE) };
          return commits;
        }
        pending.push([pgno, index]);
        if (commitSize !== 0) {
          for (const [p, i] of pending) {
            this.frames.set(p, i);
            touched?.add(p);
          }
          pending = [];
          this.lastCommit = index;
          this.nPages = commitSize;
          this.cksum = [s1, s2];
          commits++;
        }
      }
      if (whole < SCAN_FRAMES) {
        // A partial frame at the end counts as the end of the file.
        this.stop = { index, head: null };
        return commits;
      }
    }
  }
}
