/**
 * The overlay: what turns a copy read through the view into exactly one committed state of a WAL
 * database. It rewrites pages of the finished copy from the WAL's committed frames, or else from
 * the database file, sizes the copy and makes page 1 a self-contained rollback-journal header.
 * The WAL guard decides which pages and whether the result counts (wal-guard.ts).
 */
import * as fs from 'node:fs';
import { selfContainedHeader, HEADER_BYTES } from '../core/header.ts';
import { RetryAttempt } from '../retry.ts';
import { IO_CHUNK, readFully, writeFully } from '../vfs/disk-file.ts';
import { WAL_FRAME_HEADER_SIZE, frameOffset, type WalIndex, type WalReader } from '../wal.ts';
import { sameBytes } from '../wal-follower.ts';
import type { SourceFile } from './source-file.ts';

export interface OverlayInput {
  /** The copy, closed by SQLite. */
  destPath: string;
  src: SourceFile;
  pageSize: number;
  /** Pages in the state the view served (begin()); every page past it is rewritten. */
  viewPages: number;
  /** The frames the view served pages from (null: none). */
  viewIndex: WalIndex | null;
  /** The WAL generation to take committed frames from (null: no WAL), and a reader of its file. */
  gen: WalIndex | null;
  wal: WalReader | null;
  /** The pages to rewrite, or null for every page (a full pass). */
  touched: Set<number> | null;
  /** Pages in the committed state the copy is made into. */
  nFinal: number;
}

/**
 * Rewrites the copy as described above. Returns a test for "this page was read from the database
 * file" (what the guard must prove did not move). Throws RetryAttempt if the WAL was cut under the
 * frames being read.
 */
export function overlay(o: OverlayInput): (pgno: number) => boolean {
  const ps = o.pageSize;
  // For a full pass a copy (its test of what was read from the file runs after the next look,
  // which adds to the generation's map); else read only here, synchronously: the map itself (a
  // copy per round was ~10 MB a round for a WAL of 200,000 frames after a VACUUM).
  const frames = o.touched === null ? new Map<number, number>(o.gen?.frames ?? []) : (o.gen?.frames ?? new Map<number, number>());
  // Within one generation frames never change: a page the view served from this very frame is
  // already right in the copy.
  const sameGen = o.gen !== null && o.viewIndex !== null && sameBytes(o.gen.header.raw, o.viewIndex.header.raw);
  const fromFile = new Set<number>();
  const fd = fs.openSync(o.destPath, 'r+');
  try {
    const page = new Uint8Array(ps);
    const readFrame = (frame: number) => {
      if (!o.wal || o.wal.read(page, frameOffset(frame, ps) + WAL_FRAME_HEADER_SIZE) !== ps) {
        throw new RetryAttempt('the WAL was truncated during the copy');
      }
    };
    if (o.touched === null) {
      fullPass(o, fd, frames, readFrame, page);
    } else {
      const put = (pgno: number) => {
        if (pgno > o.nFinal) return;
        const frame = frames.get(pgno);
        if (frame !== undefined && sameGen && o.viewIndex!.frames.get(pgno) === frame) return;
        if (frame !== undefined) readFrame(frame);
        else {
          page.fill(0);
          o.src.read(page, (pgno - 1) * ps);
          fromFile.add(pgno);
        }
        writeFully(fd, page, (pgno - 1) * ps);
      };
      for (const pgno of o.touched) put(pgno);
      for (let pgno = o.viewPages + 1; pgno <= o.nFinal; pgno++) if (!o.touched.has(pgno)) put(pgno);
    }
    if (fs.fstatSync(fd).size !== o.nFinal * ps) fs.ftruncateSync(fd, o.nFinal * ps);
    if (o.nFinal > 0) {
      const head = new Uint8Array(HEADER_BYTES);
      readFully(fd, head, 0);
      writeFully(fd, selfContainedHeader(head, o.nFinal), 0);
    }
  } finally {
    fs.closeSync(fd);
  }
  return o.touched === null ? (p) => !frames.has(p) : (p) => fromFile.has(p);
}

/**
 * Every page of the copy made equal to the database file's, then the frames laid over: read in
 * 1 MiB runs and compared, so only pages that differ are written.
 */
function fullPass(o: OverlayInput, fd: number, frames: Map<number, number>, readFrame: (frame: number) => void, page: Uint8Array): void {
  const ps = o.pageSize;
  const per = Math.max(1, Math.floor(IO_CHUNK / ps));
  const src = new Uint8Array(per * ps);
  const dst = new Uint8Array(per * ps);
  for (let first = 1; first <= o.nFinal; first += per) {
    const n = Math.min(per, o.nFinal - first + 1);
    const len = n * ps;
    const a = src.subarray(0, len);
    const b = dst.subarray(0, len);
    a.fill(0, o.src.read(a, (first - 1) * ps));
    b.fill(0, readFully(fd, b, (first - 1) * ps));
    for (let k = 0; k < n; k++) {
      const frame = frames.get(first + k);
      if (frame !== undefined) {
        readFrame(frame);
        a.set(page, k * ps);
      }
    }
    if (Buffer.compare(a, b) !== 0) writeFully(fd, a, (first - 1) * ps);
  }
}
