/**
 * Compaction: the replicator merges what it shipped into coarser segments, so that a restore
 * fetches few objects whatever the time. Segments of one interval (level 0) are merged 30 at a
 * time (level 1: ~30 s), those 20 at a time (level 2: ~10 min), those 6 at a time (level 3:
 * ~1 h), those 24 at a time (level 4: ~1 day). A merged segment holds every step of the ones it
 * merged (no precision is lost); once it is in the set, they are removed. Merging is done from
 * the replicator's own copies of what it shipped (the state directory): nothing is downloaded.
 * The first level is merged as it is shipped: the 30th segment goes up as the merge of the 29
 * before it and itself (batchEndingAt, writeMerged), costing no PUT of its own; the higher
 * levels are merged beside the shipping (compact()).
 *
 * PUTs a day at one segment a second: 86,400 + 144 + 24 + 1 (86,569), and a restore to any time
 * needs at most 29 + 19 + 5 + 23 segments, plus one a day since the chain's base
 * (docs/replication.md). Segments that closed a gap are merged too (a writer that
 * truncates its WAL after every commit makes every segment one): the merged segment is then
 * named a gap over its whole span (list shows the span as a gap: times inside it restore to the
 * newest state observed by then, which may miss commits made just before).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import { logNameFor } from '../sets/logs.ts';
import type { Store } from '../storage/store.ts';
import type { Recipient } from '../age/index.ts';
import { packedBody, type Layers } from '../transforms/index.ts';
import { copyRange, readFully, writeFully } from '../vfs/disk-file.ts';
import { parseSegmentHeader, segmentHead, type SegmentHeader } from './segment.ts';

/** How many segments of each level make one of the next. */
export const FANIN = [30, 20, 6, 24];

interface Held {
  level: number;
  file: string;
  header: SegmentHeader;
}

const fileName = (level: number, h: SegmentHeader) => `${level}-${String(h.n).padStart(8, '0')}-${String(h.last ?? h.n).padStart(8, '0')}${h.gap ? '-gap' : ''}.seg`;

/** A kept segment as its file name tells it: level, first and last number. */
interface Named {
  level: number;
  n: number;
  last: number;
  file: string;
}

/** The shipped segments kept in `dir` for merging, from their file names alone (no file read), in order. */
function named(dir: string): Named[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: Named[] = [];
  for (const name of names) {
    const m = /^(\d)-(\d{8})-(\d{8})(?:-gap)?\.seg$/.exec(name);
    if (m) out.push({ level: Number(m[1]), n: Number(m[2]), last: Number(m[3]), file: path.join(dir, name) });
  }
  return out.sort((a, b) => a.n - b.n);
}

/** The headers of kept segments; one that cannot be read (a kill while it was written) is removed, never merged. */
function withHeaders(kept: Named[]): Held[] {
  const out: Held[] = [];
  const b = Buffer.alloc(4096);
  for (const k of kept) {
    try {
      const fd = fs.openSync(k.file, 'r');
      try {
        out.push({ level: k.level, file: k.file, header: parseSegmentHeader(b.subarray(0, readFully(fd, b, 0)), k.file).header });
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      fs.rmSync(k.file, { force: true });
    }
  }
  return out;
}

/** The shipped segments kept in `dir` for merging, with their headers. */
const held = (dir: string): Held[] => withHeaders(named(dir));

/** The state directories whose segments of other chains were swept (once per chain and process). */
const swept = new Set<string>();

/** Keeps a shipped segment (its plain file) for merging. */
export function keepShipped(dir: string, file: string, header: SegmentHeader, level = 0): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (level >= FANIN.length) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.renameSync(file, path.join(dir, fileName(level, header)));
}

export interface CompactContext {
  store: Store;
  dir: string;
  stem: string;
  layers: Layers;
  recipients: Recipient[];
  /** The chain's base: segments of another chain kept here are removed, never merged. */
  base: string;
  signal?: AbortSignal;
  onMerged?: (name: string, merged: number, bytes: number) => void;
}

/**
 * Merges every full batch kept in `dir`; returns how many requests were made. Called after every
 * ship: batches are found from the file names, and headers read only for a full one (reading
 * every kept segment's header each time was ~40 files a second).
 */
export async function compact(c: CompactContext): Promise<number> {
  // Segments another chain left here are never merged with this one's: removed once.
  const key = `${c.dir}\0${c.base}`;
  if (!swept.has(key)) {
    for (const h of held(c.dir)) if (h.header.base !== c.base) fs.rmSync(h.file, { force: true });
    swept.add(key);
  }
  let requests = 0;
  for (let level = 0; level < FANIN.length; level++) {
    // Runs of consecutive segments (each starts where the one before ends).
    let run: Named[] = [];
    for (const k of named(c.dir).filter((k) => k.level === level)) {
      if (run.length > 0 && k.n !== run[run.length - 1].last + 1) {
        // A hole (a segment not kept: a kill between its shipping and its keeping): what came
        // before can never make a batch.
        for (const r of run) fs.rmSync(r.file, { force: true });
        run = [];
      }
      run.push(k);
      if (run.length === FANIN[level]) {
        const batch = withHeaders(run);
        run = [];
        // One unreadable (removed by withHeaders) or of another chain: the batch waits (the
        // next call sees the hole and starts the run over).
        if (batch.length !== FANIN[level] || batch.some((h) => h.header.base !== c.base)) {
          for (const h of batch) if (h.header.base !== c.base) fs.rmSync(h.file, { force: true });
          continue;
        }
        requests += await merge(c, level, batch);
      }
    }
  }
  return requests;
}

/** The numbers of the level-0 segments kept in `dir`, from their file names alone (no file read). */
function levelZero(dir: string): Map<number, string> {
  const out = new Map<number, string>();
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const m = /^0-(\d{8})-\d{8}(?:-gap)?\.seg$/.exec(name);
    if (m) out.set(Number(m[1]), path.join(dir, name));
  }
  return out;
}

/** True when the segment `n` would complete a first-level batch (batchEndingAt()), told from the file names alone. */
export function mergesAt(dir: string, n: number): boolean {
  const zero = levelZero(dir);
  for (let k = n - FANIN[0] + 1; k < n; k++) if (!zero.has(k)) return false;
  return true;
}

/**
 * The level-0 segments kept in `dir` that make a full batch with segment `n` of chain `base`,
 * about to be shipped: FANIN[0] - 1 of them, consecutive, ending at n - 1 (null otherwise). The
 * replicator then ships their merge with it instead of it alone — the merge costs no PUT of
 * its own (a segment a second: 2,880 PUTs a day fewer). Headers are read only for a full run.
 */
export function batchEndingAt(dir: string, base: string, n: number): Array<{ file: string; header: SegmentHeader }> | null {
  if (!mergesAt(dir, n)) return null;
  const run = withHeaders(named(dir).filter((k) => k.level === 0 && k.n < n).slice(-(FANIN[0] - 1))).filter((h) => h.header.base === base);
  if (run.length !== FANIN[0] - 1) return null;
  for (let i = 0; i < run.length; i++) if (run[i].header.n !== n - run.length + i) return null;
  return run;
}

/** Writes to `out` the segment made of `batch` (consecutive segments, in order): their steps, one header. */
export function writeMerged(out: string, batch: Array<{ file: string; header: SegmentHeader }>): SegmentHeader {
  const first = batch[0].header;
  const last = batch[batch.length - 1].header;
  const header: SegmentHeader = {
    base: first.base, n: first.n, last: last.last ?? last.n, pageSize: first.pageSize, pre: first.pre, post: last.post,
    from: first.from, to: last.to, steps: batch.reduce((a, h) => a + h.header.steps, 0),
  };
  const gap = batch.find((h) => h.header.gap)?.header.gap;
  if (gap) header.gap = gap;
  fs.rmSync(out, { force: true });
  const fd = fs.openSync(out, 'wx', 0o600);
  try {
    const head = segmentHead(header);
    writeFully(fd, head, 0);
    let at = head.length;
    for (const h of batch) {
      const fdIn = fs.openSync(h.file, 'r');
      try {
        const start = segmentHead(h.header).length;
        const size = fs.fstatSync(fdIn).size;
        if (copyRange(fdIn, start, fd, at, size - start) !== size - start) throw new BlufioError('E_IO', `${h.file} was cut short`, 'nothing is lost: the segments stay as they are');
        at += size - start;
      } finally {
        fs.closeSync(fdIn);
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return header;
}

/** The name a kept segment has in the set. */
export const nameOf = (stem: string, h: SegmentHeader, layers: Layers) => logNameFor(stem, h.base, h.n, new Date(h.from), new Date(h.to), layers, h.gap !== undefined, h.last ?? h.n);

async function merge(c: CompactContext, level: number, batch: Held[]): Promise<number> {
  const out = path.join(c.dir, `merging-${level + 1}.seg`);
  const header = writeMerged(out, batch);
  const name = nameOf(c.stem, header, c.layers);
  const put = await c.store.put(name, packedBody(out, c.layers, c.recipients), { signal: c.signal, alone: true, fresh: true });
  if (!put.published && !(await c.store.stat(name))) {
    fs.rmSync(out, { force: true });
    throw new BlufioError('E_IN_USE', `${c.store.where(name)} could not be written`, 'the segments it merges stay as they are');
  }
  // It is in the set: this batch is done here before anything is removed there (a failed
  // removal must never leave its segments to be merged again into a batch that overlaps this
  // one: an attack run broke a chain so). The segments it merged then go, each as it can; one
  // left beside it is harmless (the chain takes the merged one; prune removes it with its base).
  for (const h of batch) fs.rmSync(h.file, { force: true });
  for (const h of batch) {
    await c.store.remove(nameOf(c.stem, h.header, c.layers)).catch(() => {});
  }
  c.onMerged?.(name, batch.length, put.bytes);
  keepShipped(c.dir, out, header, level + 1);
  return 1 + batch.length;
}
