/**
 * Restore and verify from a set: the backup at a time (or the newest), made local and plain
 * (rebuild.ts), or an error that names the newest older one that can be restored.
 */
import * as fs from 'node:fs';
import { BlufioError, renamed } from '../errors.ts';
import { makeWorkDir } from '../files.ts';
import type { KeyOptions } from '../transforms/index.ts';
import type { ObjectStorageOptions } from '../storage/index.ts';
import { openStore, splitFile } from '../storage/index.ts';
import { aboutIt, assess, problemByName } from './health.ts';
import { entriesOf, FUTURE_SLACK, parseName, type SetEntry } from './names.ts';
import { hashCacheDir } from './pages.ts';
import { logsOf, type LogEntry } from './logs.ts';
import { materialize } from './rebuild.ts';
import { planLogs, replayLogs } from './replay.ts';

/** The newest backup at or before `at` (default: the newest), or an error saying what there is. */
function pickEntry(entries: SetEntry[], set: string, at?: Date): SetEntry {
  if (entries.length === 0) throw Object.assign(new BlufioError('E_SOURCE_MISSING', `the backup set ${set} holds no backups`, 'check the path; blufio list shows what is there'), { emptySet: true });
  // By default the newest that is not named in the future (a clock that jumped ahead).
  const limit = at ? at.getTime() : Date.now() + FUTURE_SLACK;
  const pick = entries.find((e) => e.time.getTime() <= limit);
  if (!pick) {
    const oldest = entries[entries.length - 1];
    throw new BlufioError('E_SOURCE_MISSING', `no backup in ${set} is at or before ${new Date(limit).toISOString()} (the oldest is from ${oldest.time.toISOString()})`,
      at ? 'give a later --at, or leave it out for the newest' : 'every backup there is named in the future (a clock that jumped ahead?): give --at to pick one');
  }
  return pick;
}

/** The objects a backup is made from: a differential's base, then it. */
const objectsOf = (entry: SetEntry) => (entry.kind === 'diff' && entry.base ? [entry.base, entry.name] : [entry.name]);

/**
 * Runs `fn` on a local, plain database of the set's backup at `at`: a full backup unpacked, or
 * a differential rebuilt on its base and checked against both hashes, or a chain's base with its
 * log segments replayed to the time (in a private directory, removed afterwards). `fn` gets the
 * file, the backup's entry and location, and every object it was made from (in the order read).
 */
export async function withSetBackup<T>(set: string, opts: SetRestoreOptions, fn: (file: string, entry: SetEntry, where: string, objects: string[]) => Promise<T>): Promise<T> {
  // A segment removed while the chain was read (compaction merged it: the merged one stands for
  // it now; or a prune): planned again from a new list, four times at most (an attack run's restore
  // failed with "does not exist" while the replicator compacted, and succeeded a minute later).
  for (let attempt = 1; ; attempt++) {
    try {
      return await withSetBackupOnce(set, opts, fn);
    } catch (e) {
      if (!(e as { vanished?: boolean }).vanished || attempt >= 5) throw e;
    }
  }
}

type SetRestoreOptions = ObjectStorageOptions & KeyOptions & { at?: Date; stem?: string; workDir?: string; signal?: AbortSignal; retries?: number };

async function withSetBackupOnce<T>(set: string, opts: SetRestoreOptions, fn: (file: string, entry: SetEntry, where: string, objects: string[]) => Promise<T>): Promise<T> {
  const store = openStore(set, opts);
  const files = await store.list();
  const all = entriesOf(files);
  const entries = opts.stem === undefined ? all : all.filter((e) => e.stem === opts.stem);
  const stems = new Set(all.map((e) => e.stem));
  if (opts.stem !== undefined && entries.length === 0 && stems.size > 0) {
    // Never another database's backups in place of this one's.
    throw new BlufioError('E_SOURCE_MISSING', `the backup set ${set} holds no backups of "${opts.stem}" (it holds ${[...stems].map((x) => `"${x}"`).join(', ')})`,
      `if you mean to, say whose: --series ${[...stems][0]}; blufio list shows them`);
  }
  if (opts.stem === undefined && stems.size > 1) {
    throw new BlufioError('E_USAGE', `the backup set ${set} holds backups of several databases (${[...stems].join(', ')})`, `say whose: --series ${[...stems][0]}`);
  }
  const names = new Set(files.map((f) => f.name));
  // A chain of log segments (blufio replicate) reaching at least as late as the newest backup at
  // the time: the state at the time itself, replayed on the chain's base.
  const limit = opts.at ? opts.at.getTime() : Date.now() + FUTURE_SLACK;
  const series = opts.stem ?? (stems.size === 1 ? [...stems][0] : undefined);
  const plan = planLogs(entries, logsOf(files, series), limit);
  const entry = plan && !entries.some((e) => e.time.getTime() <= limit) ? plan.base : pickEntry(entries, set, opts.at);
  const work = makeWorkDir('set', opts.workDir);
  try {
    // (The chain's own base counts from the chain's first step, which may come before the base's
    // name: a base is named after its time rounded up to the second. An attack run restored the
    // base alone for times between its first chain's first step and its name. And a chain still
    // shipped past the time is what the replicator saw then, newer bases whose chains have not
    // begun notwithstanding: a base taken up to a second before its name gave fewer rows at its
    // name than a millisecond before, where steps came once an interval.)
    if (plan && (plan.base === entry || plan.reach >= entry.time.getTime() || plan.beyond)) {
      let replayed: { file: string; last: LogEntry };
      try {
        replayed = await replayLogs(store, plan, work, opts, limit, opts.signal);
      } catch (e) {
        if (!(e instanceof BlufioError) || !['E_SOURCE_MISSING', 'E_CORRUPT', 'E_NOT_SQLITE'].includes(e.code)) throw e;
        const member = (e as { member?: string }).member;
        const bad = plan.chain.find((l) => l.name === member);
        const vanished = e.code === 'E_SOURCE_MISSING' && bad !== undefined && !(await store.list()).some((f) => f.name === member);
        throw Object.assign(new BlufioError(e.code, `the state at ${new Date(limit).toISOString()} in ${store.where('')} cannot be replayed: ${e.message}`,
          bad ? `restore to a time before it: --at ${bad.from.toISOString()} or earlier; blufio check ${set} tells more` : `blufio check ${set} tells more`, { cause: e }), { vanished });
      }
      const where = store.where(replayed.last.name);
      const objects = [...objectsOf(plan.base), ...plan.chain.slice(0, plan.chain.indexOf(replayed.last) + 1).map((l) => l.name)].map((n) => store.where(n));
      try {
        return await fn(replayed.file, plan.base, where, objects);
      } catch (e) {
        throw renamed(e, replayed.file, where);
      }
    }
    let file: string;
    try {
      const missing = problemByName(entry, names);
      if (missing) throw new BlufioError('E_SOURCE_MISSING', missing);
      file = await materialize(store, entry, work, opts, opts.signal);
    } catch (e) {
      // Never an older state in its place, and never without saying which one can be restored.
      if (!(e instanceof BlufioError) || !['E_SOURCE_MISSING', 'E_CORRUPT', 'E_NOT_SQLITE'].includes(e.code)) throw e;
      // The newest older one that may be restored: not the file that failed (a differential's base,
      // say), nor one made from it, and its name and header sound.
      const failed = new Set([entry.name, (e as { member?: string }).member ?? entry.name]);
      const candidates = entries.slice(entries.indexOf(entry) + 1).filter((x) => !failed.has(x.name) && !(x.base && failed.has(x.base)));
      const members = await assess(store, files, candidates.slice(0, 8), { headers: true, keys: opts, cacheDir: hashCacheDir(set, opts) }).catch(() => null);
      const older = members ? members.find((m) => m.restorable) : candidates.find((x) => !problemByName(x, names));
      const which = opts.at ? `the newest backup at or before ${opts.at.toISOString()}` : 'the newest backup';
      // --at takes the newest of its second: when the older one shares it, it is named by its file.
      const take = older && (older.time.getTime() === entry.time.getTime() ? `give its file instead of the set: ${store.where(older.name)}` : `take it with --at ${older.time.toISOString().replace('.000Z', 'Z')}`);
      throw new BlufioError(e.code, `${which} in ${store.where('')}, ${entry.name}, cannot be restored: ${aboutIt(e.message, store.where(entry.name))}`,
        older ? `the newest one before it whose base is there is ${older.name}: ${take}; blufio check ${set} tells which are sound` : `no older backup of it can be restored either; blufio check ${set} tells more`, { cause: e });
    }
    const where = store.where(entry.name);
    try {
      return await fn(file, entry, where, objectsOf(entry).map((n) => store.where(n)));
    } catch (e) {
      throw renamed(e, file, where);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * withSetBackup() for one named file of a set (`verify /backups/blufio-….from-….diff.gz`): a
 * differential is rebuilt on its base, found beside it; anything else is left to the caller
 * (null: not a set file, or a full backup that reads as it is).
 */
export async function withSetFile<T>(file: string, opts: ObjectStorageOptions & KeyOptions & { workDir?: string; signal?: AbortSignal; retries?: number }, fn: (file: string, entry: SetEntry, where: string, objects: string[]) => Promise<T>): Promise<T | null> {
  const { store: dir, name } = splitFile(file);
  const parsed = parseName(name);
  if (!parsed || parsed.kind !== 'diff' || parsed.pages) return null;
  const store = openStore(dir, opts);
  const found = (await store.list()).find((f) => f.name === name);
  if (!found) return null;
  const { pages: _p, ...entry } = parsed;
  const work = makeWorkDir('set', opts.workDir);
  try {
    const plain = await materialize(store, { ...entry, bytes: found.bytes }, work, opts, opts.signal);
    return await fn(plain, { ...entry, bytes: found.bytes }, store.where(name), objectsOf({ ...entry, bytes: found.bytes }).map((n) => store.where(n)));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** True for the error of a set that holds no backups at all (restore --if-missing starts empty then). */
export function isEmptySet(e: unknown): boolean {
  return e instanceof BlufioError && (e as BlufioError & { emptySet?: boolean }).emptySet === true;
}

/** Parses --at: ISO 8601, extended or basic (a date alone is its midnight UTC; no zone means UTC). */
export function parseAt(text: string): Date {
  // ISO 8601's basic form too, the one backups are named in (20261202T082645Z).
  // (t and z as T and Z: ISO 8601 allows lower case.)
  const given = text.trim().replace(/t/, 'T').replace(/z$/, 'Z');
  const basic = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})?)?(Z?)$/.exec(given);
  const t = basic ? `${basic[1]}-${basic[2]}-${basic[3]}${basic[4] ? `T${basic[4]}:${basic[5]}${basic[6] ? `:${basic[6]}` : ''}` : ''}${basic[7]}` : given;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(t);
  const bad = () => new BlufioError('E_USAGE', `--at "${text}" is not a time`, 'write it in ISO 8601, e.g. --at 2026-11-24T08:00Z (UTC unless a zone is given)');
  if (!m) throw bad();
  const [, y, mo, d, h = '0', mi = '0', sec = '0'] = m;
  // Each field in its range (JavaScript would roll February 30 over into March).
  const days = new Date(Date.UTC(Number(y), Number(mo), 0)).getUTCDate();
  if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > days || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) throw bad();
  const date = new Date(m[7] ? t.replace(' ', 'T') : `${t.replace(' ', 'T')}${m[4] === undefined ? 'T00:00:00' : ''}Z`);
  if (Number.isNaN(date.getTime())) throw bad();
  return date;
}

