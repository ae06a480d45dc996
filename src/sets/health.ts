/**
 * What is restorable. A set changes outside blufio (a lifecycle rule that expires old objects,
 * `aws s3 rm`, a sync tool): every listing says which backups would fail to restore, and why.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import { plainPrefix, type KeyOptions } from '../transforms/index.ts';
import { hasSqliteMagic } from '../core/header.ts';
import type { ObjectStorageOptions } from '../storage/index.ts';
import { openStore, type Store, type StoredFile } from '../storage/index.ts';
import { parseDiffHeader, type DiffHeader } from './diff.ts';
import { chainEnd, logsOf, rangesOf, type LogEntry, type Range } from './logs.ts';
import { entriesOf, FUTURE_SLACK, type SetEntry } from './names.ts';
import { hashCacheDir, pagesMeta } from './pages.ts';
import { holdersOf, type Holder } from '../replicate/lease.ts';

/** A backup of a set, and whether it can be restored. */
export interface SetMember extends SetEntry {
  /** False when its restore would fail: its base is gone or is not the file it was made from, its header is damaged. */
  restorable: boolean;
  /** Why not, for people (null when restorable). */
  problem: string | null;
  /** How far it was checked: its name against the listing, or its header too (an encrypted one needs a key). */
  checked: 'name' | 'header';
  /** Named more than 5 minutes after this machine's now (a clock that jumped ahead, or is behind now). */
  future: boolean;
}

/** Bytes read from the start of each backup to check its header: an age header and its first chunk. */
const HEAD_BYTES = 96 * 1024;

/** A message about `shown`, said of "it" ("`shown` is cut off" -> "it is cut off"). */
export function aboutIt(message: string, shown: string): string {
  return message.replaceAll(shown, 'it');
}

/** What the listing alone shows is wrong with a backup: a differential whose base is gone. */
export function problemByName(e: SetEntry, names: ReadonlySet<string>): string | null {
  return e.kind === 'diff' && !names.has(e.base!) ? `its base ${e.base} is missing` : null;
}

/**
 * Every backup of the listing, with what can be told of its restorability: from the names (a
 * differential's base is there), and with `headers`, from the first bytes of each file (its
 * layers open, it holds a database or a differential, a differential's header names its base
 * and the base's size, and the base's SHA-256 where its page hashes are known). A backup that
 * cannot be read without a key is checked by name only: never called damaged for that.
 */
export async function assess(store: Store, files: StoredFile[], entries: SetEntry[], opts: { headers: boolean; keys?: KeyOptions; cacheDir?: string }): Promise<SetMember[]> {
  const names = new Set(files.map((f) => f.name));
  const byName = new Map(entries.map((e) => [e.name, e]));
  const now = Date.now();
  const found = new Map<string, { problem: string | null; checked: 'name' | 'header' }>();
  const headerOf = async (e: SetEntry): Promise<{ problem: string | null; checked: 'name' | 'header' }> => {
    const shown = store.where(e.name);
    let plain: Uint8Array;
    try {
      plain = await plainPrefix(await store.peek(e.name, HEAD_BYTES), opts.keys ?? {}, shown);
    } catch (err) {
      if (err instanceof BlufioError && err.code === 'E_KEY') return { problem: null, checked: 'name' };
      if (err instanceof BlufioError && (err.code === 'E_CORRUPT' || err.code === 'E_NOT_SQLITE')) return { problem: aboutIt(err.message, shown), checked: 'header' };
      // Removed between the listing and this read (a prune running beside it): not there to restore.
      if (err instanceof BlufioError && err.code === 'E_SOURCE_MISSING') return { problem: 'it was removed while the set was read', checked: 'header' };
      throw err;
    }
    if (e.kind === 'full') return { problem: hasSqliteMagic(plain) ? null : 'it does not hold an SQLite database', checked: 'header' };
    let header: DiffHeader;
    try {
      header = parseDiffHeader(plain, shown).header;
    } catch (err) {
      return { problem: aboutIt((err as Error).message, shown), checked: 'header' };
    }
    if (header.base !== e.base) return { problem: `it names ${header.base} as its base inside, ${e.base} in its name (renamed?)`, checked: 'header' };
    const base = byName.get(e.base!);
    if (base && header.baseBytes !== undefined && header.baseBytes !== base.bytes) {
      return { problem: `its base ${e.base} is not the file it was made from (${base.bytes} bytes; it was made from one of ${header.baseBytes})`, checked: 'header' };
    }
    const baseSha = base ? await pagesSha256(store, names, base.name, opts.cacheDir) : null;
    if (baseSha && baseSha !== header.baseSha256) return { problem: `its base ${e.base} is not the backup it was made from (the SHA-256 its page hashes record differs)`, checked: 'header' };
    return { problem: null, checked: 'header' };
  };
  if (opts.headers) {
    // A few at a time: one request each on object storage.
    const queue = [...entries];
    await Promise.all(Array.from({ length: Math.min(8, queue.length) }, async () => {
      for (let e = queue.shift(); e; e = queue.shift()) found.set(e.name, await headerOf(e));
    }));
  }
  const problemOf = (e: SetEntry): string | null => {
    const own = problemByName(e, names) ?? found.get(e.name)?.problem ?? null;
    if (own || e.kind === 'full') return own;
    const baseProblem = found.get(e.base!)?.problem;
    return baseProblem ? `its base ${e.base} cannot be restored (${baseProblem})` : null;
  };
  return entries.map((e) => {
    const problem = problemOf(e);
    return { ...e, restorable: problem === null, problem, checked: found.get(e.name)?.checked ?? 'name', future: e.time.getTime() > now + FUTURE_SLACK };
  });
}

/** The SHA-256 a full backup's page hashes record (this machine's copy, else the set's), or null. */
async function pagesSha256(store: Store, names: ReadonlySet<string>, name: string, cacheDir?: string): Promise<string | null> {
  const local = cacheDir ? path.join(cacheDir, `${name}.pages`) : null;
  try {
    let head: Buffer | null = null;
    if (local && fs.existsSync(local)) {
      const fd = fs.openSync(local, 'r');
      try {
        head = Buffer.alloc(4096);
        head = head.subarray(0, fs.readSync(fd, head, 0, head.length, 0));
      } finally {
        fs.closeSync(fd);
      }
    } else if (names.has(`${name}.pages`)) {
      head = await store.peek(`${name}.pages`, 4096);
    }
    return head ? pagesMeta(head)?.sha256 ?? null : null;
  } catch {
    return null;
  }
}

/** The backups of a set (of one series when `stem` is given), newest first. */
export async function listSet(set: string, opts: ObjectStorageOptions & { stem?: string; signal?: AbortSignal } = {}): Promise<SetEntry[]> {
  return entriesOf(await openStore(set, opts).list(), opts.stem);
}

/** The backups of a set (of one series when `stem` is given), newest first, each with whether it can be restored. */
export async function listMembers(set: string, opts: ObjectStorageOptions & KeyOptions & { stem?: string; signal?: AbortSignal; headers?: boolean } = {}): Promise<SetMember[]> {
  return (await listSetContents(set, opts)).backups;
}

/** A log segment of a set, and whether it can be replayed (its base restorable, its chain whole up to it). */
export interface LogMember extends LogEntry {
  restorable: boolean;
  problem: string | null;
}

/**
 * Everything a set holds of one listing: its backups (as listMembers), its log segments, and the
 * restorable range of each series. Segments are judged by their names (no segment is read).
 */
export async function listSetContents(set: string, opts: ObjectStorageOptions & KeyOptions & { stem?: string; signal?: AbortSignal; headers?: boolean; leases?: boolean } = {}): Promise<{ backups: SetMember[]; logs: LogMember[]; ranges: Range[]; replicators: Array<Holder & { series: string }> }> {
  const store = openStore(set, opts);
  const files = await store.list();
  const backups = await assess(store, files, entriesOf(files, opts.stem), { headers: opts.headers ?? true, keys: opts, cacheDir: hashCacheDir(set, opts) });
  const all = logsOf(files, opts.stem);
  const byName = new Map(backups.map((b) => [b.name, b]));
  const ends = new Map(backups.map((b) => [b.name, chainEnd(all, b.name)]));
  const logs = all.map((l) => {
    const base = byName.get(l.base);
    const problem = !base ? `its base ${l.base} is missing` : !base.restorable ? `its base ${l.base} cannot be restored` : l.last > (ends.get(l.base) ?? 0) ? 'a segment before it in its chain is missing' : null;
    return { ...l, restorable: problem === null, problem };
  });
  // Who replicates into it (the leases' holders: two small reads a series), when asked.
  const replicators = opts.leases ? await holdersOf(store, files) : [];
  return { backups, logs, ranges: rangesOf(backups, logs.filter((l) => l.restorable)), replicators };
}

