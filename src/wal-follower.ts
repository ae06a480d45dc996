/**
 * Follows a live WAL across checkpoints and restarts while a copy is under way, and keeps the
 * set of every page that any committed frame touched meanwhile.
 *
 * Why: in WAL mode the database file changes only when a checkpoint copies committed frames of
 * the *current* generation into it. So a page that no frame touched, in any generation seen
 * since the copy began, cannot have changed in the file while we read it. Every other page is
 * rewritten at the end, from its newest frame or from the file. That holds across restarts as
 * long as no frame of a generation was overwritten before we read it; tail() proves that or
 * throws RetryAttempt. See docs/consistency.md for the whole argument.
 */
import * as fs from 'node:fs';
import { RetryAttempt } from './retry.ts';
import { readFully } from './vfs/disk-file.ts';
import { WAL_HEADER_SIZE, WalIndex, parseWalHeader, readFrameHeader } from './wal.ts';

export class WalFollower {
  /** Every page a committed frame touched since the copy began (its first generation included). */
  readonly touched = new Set<number>();
  /** Database size in pages as of the newest commit seen (0: none seen). */
  nPages: number;
  /** Restarts followed (for reports). */
  restarts = 0;
  private maxSize: number;
  private stamp = '';

  constructor(
    private readonly fd: number,
    private readonly walPath: string,
    private readonly ino: number,
    /** The generation at the start, already scanned. */
    public gen: WalIndex,
  ) {
    for (const p of gen.frames.keys()) this.touched.add(p);
    this.nPages = gen.nPages;
    this.maxSize = fs.fstatSync(fd).size;
  }

  /**
   * Takes in what was committed since the last look. `fresh`, if given, receives the pages of
   * frames newly committed by this call; `whenChanged` skips the scan when the WAL file shows no
   * write since the last look. Throws RetryAttempt when frames may have been lost.
   */
  tail(fresh?: Set<number>, opts: { whenChanged?: boolean } = {}): void {
    const st = fs.fstatSync(this.fd);
    // Between copy steps (every 2 ms) a WAL nobody wrote since the last look is not scanned again:
    // a large transaction still being written would otherwise be re-read each time. A write
    // changes the size or the times at the latest one clock tick later, i.e. at the next look.
    const stamp = `${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (opts.whenChanged && stamp === this.stamp) return;
    this.stamp = stamp;
    const raw = this.readHeader();
    if (raw.length < WAL_HEADER_SIZE) throw new RetryAttempt('the WAL was truncated during the copy');
    const size = st.size;
    let ino = -1;
    try {
      ino = fs.statSync(this.walPath).ino;
    } catch {
      // gone: handled below
    }
    if (ino !== this.ino) throw new RetryAttempt('the WAL was checkpointed and removed during the copy');
    if (size < this.maxSize) throw new RetryAttempt('the WAL was truncated during the copy');
    this.maxSize = size;
    const collect = new Set<number>();
    const takeIn = () => {
      for (const p of collect) {
        this.touched.add(p);
        fresh?.add(p);
      }
    };
    if (sameBytes(raw, this.gen.header.raw)) {
      this.gen.scan(this.fd, collect);
      takeIn();
      if (this.gen.lastCommit > 0) this.nPages = this.gen.nPages;
      return;
    }

    // The WAL restarted: the writer checkpointed all of the old generation into the database
    // file, then began writing the new one from frame 1.
    const next = parseWalHeader(raw);
    const old = this.gen.header;
    if (!next) throw new RetryAttempt('the WAL header changed during the copy');
    if (next.checkpointSeq !== ((old.checkpointSeq + 1) >>> 0) || next.salt1 !== ((old.salt1 + 1) >>> 0)) {
      throw new RetryAttempt('the WAL restarted more than once between two looks');
    }
    // Finish the old generation: its frames we had not read yet. The first frame that does not
    // continue it marks its end, unless the new generation may have overwritten it: a frame with
    // the new salts is ambiguous (the old one may have gone on), and so is one with the old salts
    // and a bad checksum (we may have read the old header with new data), unless it is still the
    // same after the new generation has been read.
    this.gen.scan(this.fd, collect);
    const stop = this.gen.stop;
    const salts = stop.head ? [readU32(stop.head, 8), readU32(stop.head, 12)] : null;
    if (salts && salts[0] === next.salt1 && salts[1] === next.salt2) {
      throw new RetryAttempt('frames of the old WAL generation were overwritten before they could be read');
    }
    if (this.gen.lastCommit > 0) this.nPages = this.gen.nPages;
    const gen = new WalIndex(next);
    gen.scan(this.fd, collect);
    if (salts && salts[0] === old.salt1 && salts[1] === old.salt2 && !sameBytes(readFrameHeader(this.fd, stop.index, old.pageSize), stop.head)) {
      throw new RetryAttempt('frames of the old WAL generation were overwritten while they were read');
    }
    // Frames of a third generation (if the WAL restarted again meanwhile) fail the new one's
    // salts, so what was taken in is right; the next look follows that restart.
    takeIn();
    this.gen = gen;
    if (gen.lastCommit > 0) this.nPages = gen.nPages;
    this.restarts++;
  }

  private readHeader(): Uint8Array {
    const raw = new Uint8Array(WAL_HEADER_SIZE);
    return raw.subarray(0, readFully(this.fd, raw, 0));
  }
}

function readU32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.length).getUint32(at);
}

export function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
