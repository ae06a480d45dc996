/**
 * `blufio check <set>` (restic's `check`): is every backup of a set restorable, and would an
 * operator find out before a restore needs it? Reads every name and header (sets.ts, assess()),
 * finds names in the future and chains that are broken, and with readData rebuilds the backups
 * (all, or a random share) and runs SQLite's integrity_check on each. Reads; never changes the set.
 */
import * as fs from 'node:fs';
import { BlufioError } from './errors.ts';
import { makeWorkDir } from './files.ts';
import { inspect } from './inspect.ts';
import type { KeyOptions } from './transforms/index.ts';
import type { ObjectStorageOptions } from './storage/index.ts';
import { aboutIt, assess, entriesOf, hashCacheDir, materialize, openStore } from './sets/index.ts';
import { chainEnd, logsOf } from './sets/logs.ts';

export interface CheckOptions extends ObjectStorageOptions, KeyOptions {
  /** Rebuild and integrity_check this share of the backups (0–100; 100 = all; default 0: headers only). */
  readDataPercent?: number;
  /** Only this series (a database's stem). */
  stem?: string;
  workDir?: string;
  signal?: AbortSignal;
}

export interface CheckResult {
  ok: boolean;
  command: 'check';
  set: string;
  /** Backups in the set (of the series, when one was given). */
  backups: number;
  /** Backups whose header was read (an encrypted one needs a key). */
  headersRead: number;
  /** Backups rebuilt and integrity_checked (readDataPercent). */
  dataRead: number;
  /** Each backup that is not sound, and why (empty when ok). */
  problems: Array<{ name: string; problem: string }>;
  /** What was not checked, and how to check it. */
  notes: string[];
}

/** Checks the set `set`; ok only when everything checked is sound. */
export async function checkSet(set: string, opts: CheckOptions = {}): Promise<CheckResult> {
  const pct = opts.readDataPercent ?? 0;
  if (!(pct >= 0 && pct <= 100)) throw new BlufioError('E_USAGE', `the share of backups to read must be between 0 and 100 %, not ${pct}`, 'e.g. --read-data-subset 10%');
  const store = openStore(set, opts);
  const files = await store.list();
  const entries = entriesOf(files, opts.stem);
  const members = await assess(store, files, entries, { headers: true, keys: opts, cacheDir: hashCacheDir(set, opts) });
  const problems: CheckResult['problems'] = [];
  // Log segments (blufio replicate): each must be reachable from its base without a hole
  // (by their names; segments are not replayed here: restore --at and verify --at do that).
  const logs = logsOf(files, opts.stem);
  const byName = new Map(members.map((m) => [m.name, m]));
  for (const base of new Set(logs.map((l) => l.base))) {
    const end = chainEnd(logs, base);
    const b = byName.get(base);
    const broken = logs.filter((l) => l.base === base && (l.last > end || !b || !b.restorable));
    if (broken.length > 0) problems.push({ name: broken[0].name, problem: !b ? `its base ${base} is missing` : !b.restorable ? `its base ${base} cannot be restored` : `segment ${end + 1} of the chain on ${base} is missing: ${broken.length} segment(s) after it cannot be replayed` });
  }
  for (const m of members) {
    if (!m.restorable) problems.push({ name: m.name, problem: m.problem! });
    if (m.future) problems.push({ name: m.name, problem: `it is named after now (${m.time.toISOString()}; a clock that jumped ahead?): it sorts as the newest backup and stops prune; check the clock, then rename or remove it` });
  }
  const notes: string[] = [];
  const unread = members.filter((m) => m.checked === 'name').length;
  if (unread > 0) notes.push(`${unread} encrypted backup(s) were checked by name only: give --identity <key file> to read their headers`);
  // The data: every backup, or a random share, rebuilt (a differential on its base, both hashes
  // checked) and integrity_checked. Known-broken ones are not read again.
  const readable = members.filter((m) => m.restorable);
  const share = pct >= 100 ? readable : shuffled(readable).slice(0, Math.ceil((readable.length * pct) / 100));
  let dataRead = 0;
  for (const m of share) {
    const work = makeWorkDir('set', opts.workDir);
    try {
      const file = await materialize(store, m, work, opts, opts.signal);
      const r = await inspect(file, { signal: opts.signal });
      if (!r.ok) problems.push({ name: m.name, problem: `its database is damaged: ${r.problems.slice(0, 3).map((p) => p.replaceAll(file, 'it')).join('; ')}` });
    } catch (e) {
      if (!(e instanceof BlufioError) || ['E_ABORTED', 'E_TIMEOUT'].includes(e.code)) throw e;
      // Asked to read the data and it cannot be with the keys given (none, or a rotated one):
      // nothing proves it restorable, so this is a problem, not a note.
      if (e.code === 'E_KEY') {
        problems.push({ name: m.name, problem: `its data could not be read to be checked: ${e.message.replaceAll(store.where(m.name), 'it')}` });
        continue;
      }
      // A full work directory or an endpoint that cannot be reached says nothing of the backup.
      if (e.code === 'E_IO' || e.code === 'E_PERMISSION' || e.code === 'E_CONFIG') throw e;
      problems.push({ name: m.name, problem: aboutIt(e.message, store.where(m.name)) });
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    dataRead++;
  }
  if (pct === 0 && readable.length > 0) notes.push('the backups\' data was not read: --read-data rebuilds and integrity_checks each one (--read-data-subset 10% a random tenth)');
  // An empty set is no backup at all: a mistyped prefix or folder would otherwise stay green
  // in a weekly check forever (found by an attack run).
  if (members.length === 0) problems.push({ name: store.where(''), problem: 'it holds no backups (a mistyped path or prefix?)' });
  return { ok: problems.length === 0, command: 'check', set: store.where(''), backups: members.length, headersRead: members.filter((m) => m.checked === 'header').length, dataRead, problems, notes };
}

function shuffled<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
