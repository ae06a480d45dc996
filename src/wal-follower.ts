/**
 * Follows a live WAL while a copy is under way: every frame committed since the copy began, across
 * checkpoints, restarts, truncations and deletions of the WAL, and the set of every page those
 * frames touched.
 *
 * Why: in WAL mode the database file changes only when a checkpoint copies committed frames into
 * it. A page that no frame touched cannot have changed in the file while we read it; every other
 * page is rewritten at the end, from its newest frame or from the file.
 *
 * Some writers leave no trace of what a checkpoint copied: a WAL truncated to 0 bytes or deleted
 * right after its checkpoint, a restart between two looks whose old generation we could not read
 * to its end. look() never guesses there: it reports a *discontinuity* ("frames may have been
 * committed that we did not read") and starts following whatever WAL is there now from its first
 * frame. The snapshot decides what that costs (nothing if the database file did not change
 * meanwhile; otherwise every page must be read again). See docs/consistency.md.
 *
 * The WAL is read through a WalSource (an open file by default), so tests can drive every branch
 * with bytes they build and changes they make between two looks.
 */
import * as fs from 'node:fs';
import { readFully } from './vfs/disk-file.ts';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, WalIndex, frameOffset, parseWalHeader, type WalReader } from './wal.ts';

/** What the follower needs to know of the file at the WAL's path. */
export interface WalSource {
  /** The inode at the path now, or 0 if there is no file. */
  pathIno(): number;
  /** Opens the file at the path; null if there is none. */
  open(): WalHandle | null;
}

export interface WalHandle extends WalReader {
  readonly ino: number;
  /** Size and change times, as one comparable string (nanoseconds). */
  stamp(): { size: number; key: string };
  close(): void;
}

/** The WAL on disk, read-only. */
export function diskWal(walPath: string): WalSource {
  return {
    pathIno() {
      try {
        return Number(fs.statSync(walPath, { bigint: true }).ino);
      } catch {
        return 0;
      }
    },
    open() {
      let fd: number;
      try {
        fd = fs.openSync(walPath, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
      const ino = Number(fs.fstatSync(fd, { bigint: true }).ino);
      return {
        ino,
        read: (dst, offset) => readFully(fd, dst, offset),
        stamp() {
          const st = fs.fstatSync(fd, { bigint: true });
          return { size: Number(st.size), key: `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.nlink}` };
        },
        close: () => fs.closeSync(fd),
      };
    },
  };
}

/** What one look found: whether it read the WAL at all, and any discontinuity. */
export interface LookResult {
  /** False when the look was skipped (the WAL's stamp was unchanged and the caller allowed it). */
  read: boolean;
  /** Why frames may have been committed that were not read; null when every one was. */
  reason: string | null;
  /** There was no WAL to read, before or now: continuous only if the database file did not change. */
  blind?: boolean;
}

const READ: LookResult = { read: true, reason: null };
const SKIPPED: LookResult = { read: false, reason: null };
const BLIND: LookResult = { read: true, reason: null, blind: true };

export class WalFollower {
  /** Every page a committed frame touched since start() (the first generation's included). */
  readonly touched = new Set<number>();
  /** The generation followed now (null: no WAL, or one without a valid header). */
  gen: WalIndex | null = null;
  /** Database size in pages as of the newest commit read (0: none read). */
  nPages = 0;
  /** Looks that found something committed or a discontinuity since start(). */
  changes = 0;
  /** Restarts followed without a discontinuity (for reports and tests). */
  restarts = 0;
  private file: WalHandle | null = null;
  private stampKey = '';
  private maxSize = 0;

  constructor(private readonly source: WalSource) {}

  /** The inode of the WAL followed now (0: none). */
  get ino(): number {
    return this.file?.ino ?? 0;
  }

  /** The open WAL, for reading frames of the current generation (null when there is none). */
  get reader(): WalReader | null {
    return this.file;
  }

  /** First look: opens and reads whatever WAL is there. */
  start(): void {
    this.close();
    this.touched.clear();
    this.nPages = 0;
    this.changes = 0;
    this.restarts = 0;
    this.anchor(this.touched);
  }

  /**
   * Takes in what was committed since the last look. Pages of newly committed frames go to
   * `fresh` (if given) and to `touched`. The reason is null when every frame committed meanwhile
   * was read, else why that cannot be shown (a discontinuity). `whenChanged`: skip the reading
   * when the WAL file shows no change since the last look (its size and times are the same).
   */
  look(fresh?: Set<number>, opts: { whenChanged?: boolean } = {}): LookResult {
    const collect = new Set<number>();
    const r = this.lookInto(collect, !!opts.whenChanged);
    for (const p of collect) {
      this.touched.add(p);
      fresh?.add(p);
    }
    if (r.reason || collect.size > 0) this.changes++;
    return r;
  }

  close(): void {
    this.file?.close();
    this.file = null;
    this.gen = null;
  }

  private lookInto(collect: Set<number>, whenChanged: boolean): LookResult {
    const ino = this.source.pathIno();
    const file = this.file;
    if (!file) {
      // No WAL then, none now: a WAL may have come and gone in between (a connection that
      // committed, checkpointed and closed). Nothing tells; the caller knows whether the
      // database file changed.
      if (ino === 0) return BLIND;
      this.anchor(collect);
      return { read: true, reason: 'a WAL appeared' };
    }
    const st = file.stamp();
    if (ino !== file.ino) {
      // Deleted (its last connection checkpointed it and closed) or replaced. Whatever was
      // committed to it before that can still be read through our descriptor; what happened
      // after it, we cannot know.
      if (this.gen) this.scanGen(collect);
      file.close();
      this.file = null;
      this.gen = null;
      this.anchor(collect);
      return { read: true, reason: ino === 0 ? 'the WAL was removed' : 'the WAL was replaced' };
    }
    // A file's times are set when a write begins, its bytes land a moment later: an unchanged
    // stamp only lets a look be skipped, never proves that nothing was written.
    const unchanged = st.key === this.stampKey;
    if (whenChanged && unchanged) return SKIPPED;
    this.stampKey = st.key;
    if (st.size < this.maxSize) {
      this.reanchorSameFile(collect, st.size);
      return { read: true, reason: 'the WAL was truncated' };
    }
    this.maxSize = st.size;
    if (!this.gen) {
      // A WAL without a valid header (empty, truncated): any change at all may hide a whole
      // generation that came and went.
      this.reanchorSameFile(collect, st.size);
      return unchanged && !this.gen ? READ : { read: true, reason: 'the WAL was written' };
    }
    // The frames read belong to the generation whose header was read only if that header is
    // still there after them: a restart between the two would make a generation that committed
    // (and was checkpointed) look as if it had nothing new.
    let raw = readHeader(file);
    for (let round = 1; ; round++) {
      let reason: string | null = null;
      if (sameBytes(raw, this.gen!.header.raw)) this.scanGen(collect);
      else reason = this.followRestart(collect, raw);
      if (reason || !this.gen) return { read: true, reason };
      const after = readHeader(file);
      if (sameBytes(after, this.gen.header.raw)) return READ;
      if (round === 4) {
        this.reanchorSameFile(collect, file.stamp().size);
        return { read: true, reason: 'the WAL kept restarting while it was read' };
      }
      raw = after;
    }
  }

  /**
   * The header changed in place: a restart (the writer checkpointed all of the old generation,
   * then began again from frame 1 with salt-1 + 1). We read the rest of the old generation, then
   * the new one. Shown continuous only if the old generation's end can be seen for certain.
   */
  private followRestart(collect: Set<number>, raw: Uint8Array): string | null {
    const file = this.file!;
    const old = this.gen!;
    const next = parseWalHeader(raw);
    if (!next) {
      this.reanchorSameFile(collect, file.stamp().size);
      return 'the WAL header was rewritten';
    }
    let reason: string | null = null;
    if (next.salt1 !== ((old.header.salt1 + 1) >>> 0)) reason = 'the WAL restarted more than once between two looks';
    else {
      this.scanGen(collect);
      const stop = old.stop;
      const ps = old.pageSize;
      const gen = new WalIndex(next);
      gen.scan(file, collect);
      const salts = stop.head ? [readU32(stop.head, 8), readU32(stop.head, 12)] : null;
      if (salts && salts[0] === next.salt1 && salts[1] === next.salt2) {
        // The new generation reaches past where the old one stopped: the old one may have gone on.
        reason = 'frames of the old WAL generation were overwritten before they could be read';
      } else if (salts && salts[0] === old.header.salt1 && salts[1] === old.header.salt2 && !sameBytes(readFrameHeader(file, stop.index, ps), stop.head)) {
        // The old salts with a bad checksum, changed since: a frame being overwritten as we read it.
        reason = 'frames of the old WAL generation were overwritten while they were read';
      } else if (!salts) {
        // The old generation ends at the end of the file. True only if the file was not cut
        // there: the last frame we read of it must still be there, with its salts.
        const last = stop.index > 1 ? readFrameHeader(file, stop.index - 1, ps) : null;
        if (!last || readU32(last, 8) !== old.header.salt1 || readU32(last, 12) !== old.header.salt2) {
          reason = 'the WAL was truncated and restarted between two looks';
        }
      }
      this.gen = gen;
      this.maxSize = file.stamp().size;
      if (gen.lastCommit > 0) this.nPages = gen.nPages;
      if (!reason) this.restarts++;
      return reason;
    }
    this.reanchorSameFile(collect, file.stamp().size);
    return reason;
  }

  /** Reads what was appended to the generation followed now. */
  private scanGen(collect: Set<number>): void {
    const gen = this.gen!;
    gen.scan(this.file!, collect);
    if (gen.lastCommit > 0) this.nPages = gen.nPages;
  }

  /** Follows the file at the path (if any) from its first frame. */
  private anchor(collect: Set<number>): void {
    this.file = this.source.open();
    if (!this.file) return;
    const st = this.file.stamp();
    this.reanchorSameFile(collect, st.size);
  }

  private reanchorSameFile(collect: Set<number>, size: number): void {
    const file = this.file!;
    this.stampKey = file.stamp().key;
    this.maxSize = size;
    // As in lookInto(): the frames belong to the header only if it is still there after them.
    for (let tries = 1; tries <= 4; tries++) {
      const raw = readHeader(file);
      const header = parseWalHeader(raw);
      this.gen = header ? new WalIndex(header) : null;
      if (this.gen) this.scanGen(collect);
      if (sameBytes(readHeader(file), raw)) return;
    }
  }
}

function readHeader(r: WalReader): Uint8Array {
  const raw = new Uint8Array(WAL_HEADER_SIZE);
  return raw.subarray(0, r.read(raw, 0));
}

/** The 24-byte header of frame `index`, or null if the file ends before the whole frame. */
function readFrameHeader(r: WalReader, index: number, pageSize: number): Uint8Array | null {
  const buf = new Uint8Array(WAL_FRAME_HEADER_SIZE + pageSize);
  const got = r.read(buf, frameOffset(index, pageSize));
  return got === buf.length ? buf.subarray(0, WAL_FRAME_HEADER_SIZE) : null;
}

export function readU32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.length).getUint32(at);
}

export function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
