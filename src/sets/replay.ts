/**
 * Restore to any time from a chain of log segments (`blufio replicate`, src/replicate/): the
 * chain's base (a full backup, or a differential with its full one) made local, then every step of its segments observed at or before the
 * time, none after (segment.ts applySegment: each step's checksum checked as it is applied, each
 * segment's checksum before it checked against the state it is applied to).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError, renamed } from '../errors.ts';
import { applySegment, checksumOf, LOG_MAGIC } from '../replicate/segment.ts';
import type { Store } from '../storage/store.ts';
import { pageSizeOf } from '../core/header.ts';
import { firstBytes, layersOfFile, unpackFile, type Guard, type KeyOptions } from '../transforms/index.ts';
import { chainOf, type LogEntry } from './logs.ts';
import type { SetEntry } from './names.ts';
import { materialize } from './rebuild.ts';

export interface LogPlan {
  base: SetEntry;
  /** The segments to fetch, in order (those whose first step is at or before the time). */
  chain: LogEntry[];
  /** The newest time the chain can give at or before the limit (ms). */
  reach: number;
  /** The chain goes on past the limit (its replicator was still shipping it then). */
  beyond: boolean;
}

/**
 * The chain that gives the newest state at or before `limit` (ms): of the newest backup (full
 * or differential) at or before it that has segments. Null when no chain starts by then.
 */
export function planLogs(entries: SetEntry[], logs: LogEntry[], limit: number): LogPlan | null {
  for (const base of entries) {
    // A base is named after its state's time rounded up to the second; its chain's first step
    // may come before that name (it was seen after the state was taken): it counts from there.
    const whole = chainOf(logs, base.name);
    const chain = whole.filter((l) => l.from.getTime() <= limit);
    if (chain.length === 0) continue;
    return { base, chain, reach: Math.min(limit, chain[chain.length - 1].to.getTime()), beyond: whole[whole.length - 1].to.getTime() > limit };
  }
  return null;
}

/**
 * The database at `limit` from `plan`, in `work`: returns the file and the last segment whose
 * steps were applied.
 */
export async function replayLogs(store: Store, plan: LogPlan, work: string, keys: KeyOptions, limit: number, signal?: AbortSignal): Promise<{ file: string; last: LogEntry }> {
  const file = await materialize(store, plan.base, work, keys, signal);
  const pageSize = pageSizeOf(firstBytes(file, 100));
  const sum = checksumOf(file, pageSize);
  let last = plan.chain[0];
  for (const l of plan.chain) {
    const shown = store.where(l.name);
    const packed = await store.fetch(l.name, work, { signal });
    const plain = path.join(work, `segment-${l.n}`);
    try {
      await unpackFile(packed, plain, layersOfFile(packed, keys), keys, signal, logGuard(shown, work));
      const r = applySegment(plain, file, sum, limit, shown);
      if (r.header.base !== plan.base.name || r.header.n !== l.n || (r.header.last ?? r.header.n) !== l.last) {
        throw new BlufioError('E_CORRUPT', `${shown} says it is segment ${r.header.n}${(r.header.last ?? r.header.n) > r.header.n ? `-${r.header.last}` : ''} of ${r.header.base} inside: renamed or foreign`, 'restore to a time before it');
      }
      if (r.applied !== null) last = l;
      if (!r.whole) break;
    } catch (e) {
      throw Object.assign(renamed(renamed(e, packed, shown), plain, shown) as object, { member: l.name });
    } finally {
      fs.rmSync(plain, { force: true });
      if (packed.startsWith(work)) fs.rmSync(packed, { force: true });
    }
  }
  return { file, last };
}

/** Lets a segment through while it can be one: its first line, and no more than the free space there. */
function logGuard(shown: string, dir: string): Guard {
  let head = Buffer.alloc(0);
  let seen = 0;
  let room = Infinity;
  try {
    const st = fs.statfsSync(dir);
    room = Math.max(0, Number(st.bavail) * Number(st.bsize) - 64 * 2 ** 20);
  } catch {
    // unknown: unbounded
  }
  return (piece) => {
    seen += piece.length;
    if (head.length < LOG_MAGIC.length) {
      head = Buffer.concat([head, piece.subarray(0, LOG_MAGIC.length)]);
      const n = Math.min(head.length, LOG_MAGIC.length);
      if (!head.subarray(0, n).equals(Buffer.from(LOG_MAGIC).subarray(0, n))) throw new BlufioError('E_CORRUPT', `${shown} is not a blufio log segment`, 'restore to a time before it');
    }
    if (seen > room) throw new BlufioError('E_IO', `${shown} unpacks to more than the free space in ${dir}; stopped`, 'free some space there, or pass --work-dir <directory> on a file system with room');
  };
}
