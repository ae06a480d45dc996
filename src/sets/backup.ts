/**
 * A backup into a set: a differential against the newest full backup of its series when one
 * pays, a full backup otherwise; named by the state's time, never over another run's file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildVerifiedCopy, checkSource, result, sourceBytes, type BackupOptions, type BackupResult } from '../build.ts';
import { assertNotLockedOut, sweepStaleClaims } from '../claim.ts';
import { BlufioError } from '../errors.ts';
import { ensureRoom, makeWorkDir } from '../files.ts';
import { encrypted, type Layers, layersFor, packedBody, recipientsOf } from '../transforms/index.ts';
import { openStore, remoteOf, type Store } from '../storage/index.ts';
import { CLOCK_SLACK_MS, clockOffset } from '../storage/store.ts';
import { countChanged, writeDiff } from './diff.ts';
import { assess } from './health.ts';
import { DAY, entriesOf, FUTURE_SLACK, nameFor, stemOf, type SetEntry } from './names.ts';
import { hashCacheDir, hashPages, openPages, recipientsKey, writePages, type PageHashes } from './pages.ts';
import { copyRange } from '../vfs/disk-file.ts';

export interface SetBackupOptions extends BackupOptions {
  /** Write a full backup even when a differential could be made. */
  full?: boolean;
  /**
   * Told each name before it is put (`mine` true), and again (false) when the name turned out to
   * be another's (`blufio replicate` names its new base in the lease first). A rejection stops
   * the backup before anything is put.
   * @internal
   */
  naming?: (name: string, mine: boolean) => Promise<void>;
  /** Write an unencrypted backup into a set whose newest backup is encrypted (never implied by force). */
  unencrypted?: boolean;
  /** A new full backup when the newest full one is older than this (default 7 days). */
  fullEveryMs?: number;
  /**
   * Keep the plain database this backup was made from at this path (a private file of the
   * caller's: `blufio replicate` follows the source from there), whether the backup is a full one
   * or a differential (the plain copy is the whole database either way).
   * @internal
   */
  keepCopyAt?: string;
}

export interface SetBackupResult extends BackupResult {
  kind: 'full' | 'diff';
  /** The base, for a differential (its path or URL). */
  base: string | null;
  /** Pages the differential holds (all pages for a full backup). */
  changedPages: number;
  /** Why a full backup was made when a differential could have been: a reason for people, or null. */
  fullBecause: string | null;
  /** Something the operator should fix though the backup succeeded (its page hashes not kept), or null. */
  warning: string | null;
}

/**
 * One series per database: the first backup of a stem into a set records the database's path
 * (`<stem>.series`); a backup of another database with the same file name (another directory,
 * app.db beside app.sqlite) is refused instead of mixing into its series (force: adopt the
 * series, e.g. after moving the server).
 */
async function claimSeries(store: Store, files: Array<{ name: string }>, stem: string, db: string, opts: SetBackupOptions): Promise<void> {
  const marker = `${stem}.series`;
  const { recorded, real } = await seriesOwner(store, files, stem, db);
  if (recorded !== undefined) {
    if (recorded === real) return;
    // An unreadable marker is rewritten below.
    if (recorded !== null && !opts.force) {
      throw new BlufioError('E_DEST_EXISTS', `${store.where('')} holds the series "${stem}" of another database (${recorded}); this is ${real}`,
        'back it up into another set, or add --force if this is the same database moved to a new place');
    }
    await store.remove(marker);
  }
  const work = makeWorkDir('set', opts.workDir);
  try {
    const tmp = path.join(work, 'series');
    fs.writeFileSync(tmp, `${JSON.stringify({ database: real })}\n`, { mode: 0o600 });
    await store.put(marker, { file: tmp });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Whose the series `stem` of a set is: the database path its marker records (undefined: no
 * marker; null: one that cannot be read), and `db`'s own real path.
 */
export async function seriesOwner(store: Store, files: Array<{ name: string }>, stem: string, db: string): Promise<{ recorded: string | null | undefined; real: string }> {
  let real = db;
  try {
    real = fs.realpathSync(db);
  } catch {
    // kept as given
  }
  if (!files.some((f) => f.name === `${stem}.series`)) return { recorded: undefined, real };
  try {
    const v = JSON.parse((await store.peek(`${stem}.series`, 65536)).toString('utf8'))?.database;
    return { recorded: typeof v === 'string' ? v : null, real };
  } catch (e) {
    if (e instanceof BlufioError && e.code === 'E_IO') throw e;
    return { recorded: null, real };
  }
}

/**
 * Backs up `db` into the set `set`: a differential against the newest full backup of its series
 * when there is one with known page hashes, younger than fullEveryMs, and the change is under
 * half the database; a full backup otherwise.
 */
export async function backupToSet(dbPath: string, set: string, opts: SetBackupOptions = {}): Promise<SetBackupResult> {
  const started = performance.now();
  const db = path.resolve(dbPath);
  sweepStaleClaims(path.dirname(db));
  assertNotLockedOut(db);
  checkSource(db, 'database', 'set storage.database_path in blufio.toml, or pass --db <path>');
  const recipients = recipientsOf(opts);
  const layers = layersFor({ compress: true, encrypt: recipients.length > 0 });
  const store = openStore(set, opts);
  const stem = stemOf(db);
  const files = await store.list();
  const before = entriesOf(files, stem);
  // Encryption never turns off by a forgotten option: a plain backup into a set whose newest
  // backup is encrypted is refused unless asked for by its own option (force, which adopts a
  // moved database's series, once let plaintext in too: found by an attack run). Checked before
  // the series, so that an operator fixing that refusal has already seen this one.
  // The newest of the whole set, any database's: a second database (or this one renamed) must not
  // bring plaintext into an encrypted set either (found by an attack run).
  const newest = entriesOf(files)[0];
  if (!encrypted(layers) && opts.unencrypted !== true && newest?.encrypted) {
    throw new BlufioError('E_USAGE', `the newest backup in ${store.where('')} (${newest.name}) is encrypted, and no recipient was given for this one`,
      'give --recipient (or backup.age_recipients in blufio.toml), or add --unencrypted to write an unencrypted backup there on purpose');
  }
  if (encrypted(layers) && opts.unencrypted) throw new BlufioError('E_USAGE', '--unencrypted was given with recipients to encrypt to', 'drop --unencrypted, or the recipients');
  await claimSeries(store, files, stem, db, opts);
  const work = makeWorkDir('set', opts.workDir);
  try {
    ensureRoom(work, sourceBytes(db) * 2, 'the copy staged before it is packed', 'free some space there, or pass --work-dir <directory> on a file system with room');
    const plain = path.join(work, 'backup.db');
    const copy = await buildVerifiedCopy(db, plain, opts, 'the backup', { staging: true });
    const now: PageHashes = { ...hashPages(plain, copy.pageSize, path.join(work, 'hashes'), opts.whileBusy), recipients: recipientsKey(opts.recipients ?? []) };
    const cacheDir = hashCacheDir(set, opts);

    // A differential, if it may and pays.
    const decision = await chooseBase(store, before, now, layers, opts, cacheDir, work);
    let kind: 'full' | 'diff' = 'full';
    let file = plain;
    let changed = now.pages;
    if (decision.base) {
      const diffFile = path.join(work, 'backup.diff');
      changed = countChanged(now, decision.base.hashes);
      if (changed * now.pageSize * 2 > now.pages * now.pageSize) {
        decision.fullBecause = `${Math.round((100 * changed) / Math.max(1, now.pages))} % of the pages changed (a differential pays below 50 %)`;
        changed = now.pages;
      } else {
        writeDiff(plain, now, decision.base.hashes, decision.base.entry, diffFile, changed, opts.whileBusy);
        kind = 'diff';
        file = diffFile;
      }
    }
    // Named after the time the state was taken, rounded up to the second (the state is never
    // newer than its name); a name already there (another run in the same second) is never
    // replaced: the next number is taken.
    // Never named before the newest backup of its series (nor so before its base): a clock that
    // stepped back (NTP correcting a fast clock) would make "newest" an older state. Then it is
    // named in the newest's second, after it. (Names more than 5 minutes ahead are from a clock
    // that jumped: not trusted as newest, never a base; blufio check and prune name them.)
    // An object store's set is timed by the store's clock: where this machine's is more than 5 s
    // off it (CLOCK_SLACK_MS, the replicator's bound), the backup is named by the store's,
    // and it is said (a backup from a machine an hour fast was what `--at` an hour later
    // returned: an attack run). Named no earlier than the state can be (the store's time is to
    // the second). (A folder's files are stamped by this machine's own clock on a local disk:
    // a step of it moves both, and the rule above — never before the newest — applies.)
    let stateAt = copy.takenAt;
    let skewWarning: string | null = null;
    const off = remoteOf(set) ? await clockOffset(store).catch(() => null) : null;
    if (off && !('slow' in off) && (off.ahead > CLOCK_SLACK_MS || off.behind > CLOCK_SLACK_MS)) {
      const fast = off.ahead > CLOCK_SLACK_MS;
      stateAt = fast ? copy.takenAt - off.ahead : copy.takenAt + off.behind + 1000 + (off.t1 - off.t0);
      skewWarning = `this machine's clock is ${Math.round((fast ? off.ahead : off.behind) / 1000)} s ${fast ? 'ahead of' : 'behind'} ${store.where('')}'s (${new Date(off.t0).toISOString()} here, ${new Date(off.theirs).toISOString()} there): this backup is named by the store's clock; set this machine's clock right (timedatectl set-ntp true)`;
    }
    let taken = new Date(Math.ceil(stateAt / 1000) * 1000);
    let firstSeq = 0;
    const newestOfSeries = before.find((e) => e.time.getTime() <= Date.now() + FUTURE_SLACK);
    const clockWarning = newestOfSeries && taken.getTime() < newestOfSeries.time.getTime()
      ? `this machine's clock (${new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')}) is behind the set's newest backup ${newestOfSeries.name}: this one is named after it, so that it is the newest state; check the clock (timedatectl)`
      : null;
    if (newestOfSeries && taken.getTime() <= newestOfSeries.time.getTime()) {
      taken = newestOfSeries.time;
      firstSeq = newestOfSeries.seq + 1;
    }
    const publishAs = async (k: 'full' | 'diff', f: string) => {
      for (let seq = firstSeq; ; seq++) {
        const n = nameFor(stem, taken, seq, k, layers, k === 'diff' ? decision.base!.entry : undefined);
        await opts.naming?.(n, true);
        const r = await store.put(n, packedBody(f, layers, recipients, opts.signal), opts);
        if (r.published) return { name: n, bytes: r.bytes };
        await opts.naming?.(n, false);
        if (seq >= firstSeq + 99) throw new BlufioError('E_DEST_EXISTS', `${store.where(n)} and 99 others of the same second exist`, 'try again in a second');
      }
    };
    let { name, bytes } = await publishAs(kind, file);
    if (kind === 'diff' && !(await store.list()).some((f) => f.name === decision.base!.entry.name)) {
      // Its base went while it was made (a prune beside a newer full backup): a differential
      // without a base restores nothing, so this backup becomes a full one.
      await store.remove(name);
      decision.fullBecause = `its base ${decision.base!.entry.name} was removed while it was made`;
      kind = 'full';
      changed = now.pages;
      ({ name, bytes } = await publishAs('full', plain));
    }
    let warning: string | null = [skewWarning, clockWarning].filter(Boolean).join('; ') || null;
    if (kind === 'full') {
      // Its page hashes: here for the next differential, and in a plain set beside it too. A
      // failure here costs the next backup a differential, never this backup.
      const pages = path.join(work, 'pages');
      const codeOf = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      let written = false;
      try {
        writePages({ ...now, bytes }, pages);
        written = true;
      } catch (e) {
        // The work directory full, say: published all the same (the backup is whole).
        warning = `${warning ? `${warning}; ` : ''}cannot write this backup's page hashes in ${work} (${codeOf(e)}): the next backup into this set will be a full one too`;
      }
      const kept = path.join(cacheDir, `${name}.pages`);
      try {
        if (written) {
          fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
          // Whole or not at all (a backup beside this one may be reading it).
          fs.copyFileSync(pages, `${kept}.tmp`);
          fs.chmodSync(`${kept}.tmp`, 0o600);
          fs.renameSync(`${kept}.tmp`, kept);
        }
      } catch (e) {
        try {
          fs.rmSync(`${kept}.tmp`, { force: true });
        } catch {
          // the directory itself is what failed
        }
        // No state directory: differentials then need the set's copy (plain sets) or wait for one.
        // Said, or a cron job would upload full backups forever without anyone knowing why.
        warning = `${warning ? `${warning}; ` : ''}cannot keep this backup's page hashes in ${cacheDir} (${codeOf(e)}): ${encrypted(layers) ? 'the next backup into this encrypted set will be a full one too' : 'the next backup reads them from the set'}; make that directory writable, or set XDG_STATE_HOME`;
      }
      if (written && !encrypted(layers)) {
        try {
          await store.put(`${name}.pages`, { file: pages });
        } catch (e) {
          if (!(e instanceof BlufioError)) throw e;
        }
      }
    }
    if (opts.keepCopyAt) keepCopy(plain, opts.keepCopyAt, opts.whileBusy);
    return {
      ...result(db, store.where(name), { ...copy, bytes }, layers, opts, started),
      kind,
      base: kind === 'diff' ? store.where(decision.base!.entry.name) : null,
      changedPages: changed,
      fullBecause: kind === 'full' ? decision.fullBecause : null,
      warning,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The base for a differential, or why there is none. */
async function chooseBase(store: Store, entries: SetEntry[], now: PageHashes, layers: Layers, opts: SetBackupOptions, cacheDir: string, work: string): Promise<{ base: { entry: SetEntry; hashes: PageHashes } | null; fullBecause: string | null }> {
  const none = (why: string | null) => ({ base: null, fullBecause: why });
  if (opts.full) return none(null);
  // A full backup named in the future (a clock that jumped ahead) is never a base.
  const newestFull = entries.find((e) => e.kind === 'full' && e.time.getTime() <= Date.now() + FUTURE_SLACK);
  if (!newestFull) return none(null);
  if (newestFull.encrypted !== encrypted(layers)) return none(`the newest full backup is ${newestFull.encrypted ? 'encrypted and this one is not' : 'not encrypted and this one is'}`);
  const maxAge = opts.fullEveryMs ?? 7 * DAY;
  if (Date.now() - newestFull.time.getTime() > maxAge) return none(`the newest full backup is older than ${Math.round(maxAge / DAY * 10) / 10} days`);
  let hashes: PageHashes | null = null;
  const cached = path.join(cacheDir, `${newestFull.name}.pages`);
  if (fs.existsSync(cached)) {
    // A copy to read (a prune beside this backup may remove the one kept).
    try {
      fs.copyFileSync(cached, path.join(work, 'base.pages'));
      hashes = openPages(path.join(work, 'base.pages'));
    } catch {
      hashes = null;
    }
  }
  if (!hashes && !newestFull.encrypted) {
    try {
      hashes = openPages(await store.fetch(`${newestFull.name}.pages`, work));
    } catch {
      hashes = null;
    }
  }
  if (!hashes) return none(`the page hashes of ${newestFull.name} are not on this machine${newestFull.encrypted ? ' (an encrypted set keeps them only where its full backups were made)' : ''}`);
  if (hashes.pageSize !== now.pageSize) return none('the page size changed');
  if ((hashes.recipients ?? '') !== (now.recipients ?? '') && newestFull.encrypted) return none('the recipients changed (a differential must open with the same keys as its base)');
  if (hashes.bytes !== undefined && hashes.bytes !== newestFull.bytes) return none(`${newestFull.name} is not the file its page hashes were taken from (its size changed)`);
  // Its header read as list reads it: a differential on a damaged base could never be restored.
  const [health] = await assess(store, [{ name: newestFull.name, bytes: newestFull.bytes }], [newestFull], { headers: true, keys: {} });
  if (!health.restorable) return none(`the newest full backup ${newestFull.name} cannot be restored (${health.problem})`);
  return { base: { entry: newestFull, hashes }, fullBecause: null };
}

/** The plain copy kept for the caller (the replicator's replica), a chunk at a time when whileBusy is given. */
function keepCopy(from: string, to: string, whileBusy?: () => void): void {
  if (!whileBusy) return fs.copyFileSync(from, to);
  const fdIn = fs.openSync(from, 'r');
  try {
    const fdOut = fs.openSync(to, 'w', 0o600);
    try {
      const size = fs.fstatSync(fdIn).size;
      if (copyRange(fdIn, 0, fdOut, 0, size, whileBusy) !== size) throw new BlufioError('E_IO', `${from} was cut short while it was copied`, 'try again');
    } finally {
      fs.closeSync(fdOut);
    }
  } finally {
    fs.closeSync(fdIn);
  }
}
