/**
 * `blufio replicate`: every commit of a live database off the machine within the sync interval,
 * without a lock, a checkpoint or a table in the server's database.
 *
 *   start     the series' chain is resumed from this machine's state directory (the replica,
 *             the base and the chain's last number and checksum) when the set still ends
 *             there; otherwise a new backup (full, or a differential against the newest full
 *             one when that pays) is the base (and the replica a copy of it).
 *   every look (a fortieth of the interval) the replica catches up with what was committed
 *             (live-replica.ts): one step, observed now.
 *   every interval  the steps seen are shipped as the chain's next segment (segment.ts), named
 *             put-if-absent: a second replicator on the same chain can never interleave — its
 *             put of a number already there is refused, and it stops.
 *   on SIGTERM / SIGINT  what was committed is shipped, then it ends (exit 0).
 *
 * Resuming after a stop or a kill -9, the commits made meanwhile may have been checkpointed out
 * of the WAL: the first step is then a full pass (every page compared with the file), marked as
 * a gap in its segment: times inside it restore to the state before it.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { backup, refuseUnencryptedOffsite } from '../backup.ts';
import { seriesOwner } from '../sets/backup.ts';
import type { BackupOptions, BackupResult } from '../build.ts';
import { hasSqliteMagic, journalModeOf, pageSizeOf } from '../core/header.ts';
import { BlufioError, fsError } from '../errors.ts';
import { canonicalPath, fsyncFile, makeWorkDir, pidAlive, stateDir } from '../files.ts';
import { RetryAttempt } from '../retry.ts';
import { copyRange, writeFully } from '../vfs/disk-file.ts';
import { chainEnd, logNameFor, logsOf } from '../sets/logs.ts';
import { parseName, stemOf } from '../sets/names.ts';
import { canonicalSet, openStore } from '../storage/index.ts';
import type { Store, StoredFile } from '../storage/store.ts';
import { firstBytes, layersFor, packedBody, recipientsOf } from '../transforms/index.ts';
import { LiveReplica, type StepMeta, type Watch } from './live-replica.ts';
import { Lease, LEASE_RENEW_MS, newRun, replicatorId, takeLease } from './lease.ts';
import { confirmStep, refuseClockBehind, refuseClockOff, WallWatch } from './clock.ts';
import { batchEndingAt, compact, keepShipped, mergesAt, nameOf, writeMerged } from './compact.ts';
import { applySegment, checksumOf, hex, replaySteps, segmentHead, StepWriter, type SegmentHeader } from './segment.ts';

export interface ReplicateOptions extends BackupOptions {
  /** How often what was committed is shipped (default 1000 ms). */
  intervalMs?: number;
  /** Each event worth an operator's notice (started, shipped, caught up, gap closed, retried, …). */
  onEvent?: (e: ReplicateEvent) => void;
  /**
   * Start a new chain on a new base (a full backup, or a differential when it pays) this often
   * (default 6 h): a restore then needs the base (and a differential's full backup) and at most
   * 29 + 19 + 5 + 5 segments (docs/replication.md).
   */
  newBaseEveryMs?: number;
  /**
   * Most bytes of unshipped steps kept in the spool while the set cannot be reached (default
   * 1 GiB): beyond it they are folded into one state (a gap in the range: per-commit times are
   * given up for that span, never a commit).
   */
  maxBacklogBytes?: number;
  /** Aborted when the stop must not wait any longer for what is being shipped (a second SIGTERM). */
  hurry?: AbortSignal;
  /** Say so when the oldest unshipped commit is older than this (default 10 s). */
  lagWarnMs?: number;
  /** Called after each interval that shipped or had nothing to ship (for --ping); `ok` false when shipping failed. */
  onInterval?: (ok: boolean, why?: string) => void;
  /**
   * Take the set's lease from the replicator that holds it (lease.ts), which stands down before
   * its next segment: for a holder that is gone for good (its machine lost).
   */
  takeOver?: boolean;
}

export type ReplicateEvent =
  | { event: 'started'; base: string; resumed: boolean; set: string; database: string; replicator: string; lease: number }
  | { event: 'lease'; lease: number; from: string | null; why: string }
  | { event: 'shipped'; segment: string; steps: number; pages: number; bytes: number; lagMs: number; shipMs: number }
  | { event: 'gap'; segment: string; why: string }
  | { event: 'retry'; error: string; backlogSteps: number; nextInMs: number; hint?: string }
  | { event: 'caught-up'; afterMs: number }
  | { event: 'lag'; lagMs: number; why?: string; hint?: string }
  | { event: 'backlog'; folded: number; bytes: number; from: string; to: string }
  | { event: 'compacted'; segment: string; merged: number; bytes: number }
  | { event: 'new-base'; base: string }
  | { event: 'clock'; steppedMs: number; right: boolean | null }
  | { event: 'copy'; run: string | null; removed: string[] }
  | { event: 'stopped'; segments: number; lastCommit: string | null };

export interface ReplicateStatus {
  database: string;
  set: string;
  base: string;
  /** The chain's last shipped segment number. */
  segment: number;
  /** The newest observed commit shipped (ISO time), and how long ago it was observed when shipped. */
  lastShipped: string | null;
  lagMs: number;
  /** Steps seen and not yet shipped, and their bytes kept here. */
  backlogSteps: number;
  backlogBytes: number;
  bytesSent: number;
  requests: number;
  updated: string;
  pid: number;
  /** This replicator's id (its state directory's), and the number of the set's lease it holds (lease.ts). */
  replicator: string;
  lease: number;
}

interface Meta {
  database: string;
  set: string;
  base: string;
  /** The chain's last segment number and the checksum after it: the replica's state. */
  n: number;
  post: string;
  pageSize: number;
  /** A segment being shipped (outgoing.seg), not yet applied to the replica. */
  pending?: { n: number; post: string };
  /**
   * Written by a clean stop that had shipped everything it saw: the database file's and its
   * WAL's stamps then. A start that finds both unchanged resumes without a full pass (nothing
   * was written meanwhile), and without a gap in the range.
   */
  stopped?: { db: string; wal: string };
  /** The set's lease (lease.ts) the chain was made under: resumed only under the same one. */
  lease?: number;
}

/** The page size the database's header says now (0: unknown). */
function pageSizeNow(db: string): number {
  try {
    const head = firstBytes(db, 100);
    return head.length >= 18 ? pageSizeOf(head) : 0;
  } catch {
    return 0;
  }
}

/** The time a backup's name says (a set's file: ms), 0 when it says none. */
function nameTime(file: string): number {
  return parseName(file.slice(file.lastIndexOf('/') + 1))?.time.getTime() ?? 0;
}

/** A new chain's base, being made while the old chain goes on. */
interface NextBase {
  done: boolean;
  failed: unknown;
  w: ReturnType<typeof LiveReplica.follow>;
  r: BackupResult | null;
  /** Its replica, opened (hashed) once the base is made: followed from then on, while the old chain ships. */
  live: LiveReplica | null;
  /** Settles when the backup has (done). */
  settled: Promise<void>;
}

/**
 * A new chain's first step holds what was committed since `since` (ms, wall clock), all stamped
 * with its own time: over a second of that is marked a gap (LiveReplica.labelNextStep).
 */
function labelIfLate(live: LiveReplica, since: number, what: string): void {
  const took = Date.now() - since;
  if (took > 1000) live.labelNextStep(`the commits of the ${Math.round(took / 1000)} s ${what} are stamped when it was done`);
}

/** A next base that is not switched to: its replica (or its watch) closed, its file removed. */
function closeNext(nb: NextBase, replica: string): void {
  if (nb.live) nb.live.close();
  else {
    nb.w.follower.close();
    nb.w.src.close();
  }
  fs.rmSync(replica, { force: true });
}

/** Where this machine keeps a chain's replica and state: one folder per (set, database). */
export function replicaDir(set: string, db: string, opts: BackupOptions): string {
  const id = createHash('sha256').update(`${canonicalSet(set)}\n${db}`).digest('hex').slice(0, 16);
  return path.join(stateDir(opts), 'replicate', id);
}


/** Runs until `opts.signal` is aborted; then ships what was committed and returns. */
export async function replicate(dbPath: string, set: string, opts: ReplicateOptions = {}): Promise<ReplicateStatus> {
  // One name per database, however it is reached (a symlinked directory made a second
  // replicator and a second chain: found by an attack run).
  const db = canonicalPath(path.resolve(dbPath));
  const interval = Math.max(50, opts.intervalMs ?? 1000);
  const lagWarn = opts.lagWarnMs ?? 10_000;
  const say = opts.onEvent ?? (() => {});
  const stem = stemOf(db);
  refuseUnencryptedOffsite(set, opts);
  refuseRollbackMode(db);
  if (!fs.existsSync(db)) {
    throw new BlufioError('E_SOURCE_MISSING', `${db} does not exist`, 'check --db (or storage.database_path in blufio.toml): blufio replicate follows a database the server has made');
  }
  // The store is not bound to the job's signal: a stop ships what was committed first (each put
  // gets its own signal, the last one a time limit instead).
  const store = openStore(set.endsWith('/') ? set : `${set}/`, { ...opts, signal: undefined });
  // Compaction and the removals after it are an optimisation: a stop ends them at once (what
  // they did not finish is merged or removed next time, never lost), even on a hung store.
  const background = new AbortController();
  opts.signal?.addEventListener('abort', () => background.abort(), { once: true });
  const bgStore = openStore(set.endsWith('/') ? set : `${set}/`, { ...opts, signal: background.signal });
  const recipients = recipientsOf(opts);
  const layers = layersFor({ compress: true, encrypt: recipients.length > 0 });
  const dir = replicaDir(set, db, opts);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const replicaPath = path.join(dir, 'replica.db');
  const metaPath = path.join(dir, 'chain.json');
  const outgoing = path.join(dir, 'outgoing.seg');
  const segDir = path.join(dir, 'segments');
  const statusPath = path.join(dir, 'status.json');
  const beatenPath = path.join(dir, 'beaten.json');

  // One replicator per chain: a lock file in the state directory (a dead holder's is taken over),
  // and one per database *file* and set in /dev/shm (or the temporary directory), so that the
  // same file reached by a symbolic or hard link, from another state directory or with another
  // TMPDIR, is refused too (attack runs started second chains so).
  const { release: unlock, previous } = lockChain(path.join(dir, 'lock'), db, store.where(''));
  const myId = replicatorId(dir);
  const myRun = newRun(dir);
  let lease: Lease | null = null;
  // The base this run put in the set for its chain (taken out again if this run turns out to be
  // a copy's: its chain must not stand in the set as the newest).
  let madeBase: string | null = null;
  let unlockFile = () => {};
  try {
    const st = fs.statSync(db);
    const setId = createHash('sha256').update(canonicalSet(set)).digest('hex').slice(0, 16);
    // /dev/shm where there is one: shared by services with a private /tmp and by any TMPDIR.
    const shared = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
    unlockFile = lockChain(path.join(shared, `blufio-replicate-${st.dev}-${st.ino}-${setId}.lock`), db, store.where('')).release;
  } catch (e) {
    if (e instanceof BlufioError || !(e as NodeJS.ErrnoException).code) {
      unlock();
      throw e;
    }
    // No such file yet, or no temporary directory: the base backup says what is wrong.
  }
  try {
    return await run();
  } catch (e) {
    // The state directory full, read-only or taken away: said as such, not as a bug.
    const code = (e as NodeJS.ErrnoException)?.code;
    if (!(e instanceof BlufioError) && code && ['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO'].includes(code)) {
      const err = fsError(e, dir, 'blufio replicate cannot keep its state');
      const fix = code === 'ENOSPC' || code === 'EDQUOT' ? 'free some space there (or set XDG_STATE_HOME to a roomier place)' : (err.hint ?? 'fix it');
      throw new BlufioError(err.code, err.message, `${fix}, then start blufio replicate again: what was not shipped is closed from the database file`, { cause: e });
    }
    throw e;
  } finally {
    // Stopped (not stood down): the lease is free for the next one at once, this one included.
    const held = lease as Lease | null; // set inside run()
    if (held && !held.lost) await held.renew(AbortSignal.timeout(10_000), true).catch(() => {});
    const mine = madeBase as string | null;
    if (held?.surelyTheCopy && mine) {
      // Its chain's segments (without their base they restore nothing, and `check` would fail
      // the set for them: an attack run), then its base — unless another's differential was
      // made on it meanwhile (taken out, that one's chain would not restore).
      const left = await store.list().catch(() => null);
      for (const l of logsOf(left ?? [], stem).filter((x) => x.base === mine)) await store.remove(l.name).catch(() => {});
      if (!basedOn(left, mine)) {
        await store.remove(mine).catch(() => {});
        await store.remove(`${mine}.pages`).catch(() => {});
      }
    }
    unlockFile();
    unlock();
  }

  /**
   * After a base is put in the set: still the lease's holder? If not, the base is taken out
   * again and the replicator stands down (an attack run found a holder's new base, published
   * during a take-over, named after the new holder's: the newest restore gave the old database).
   * A store that does not answer is not a reason to stop: the next segment looks again.
   */
  async function leaseHeld(base: string): Promise<void> {
    let by: Awaited<ReturnType<Lease['takenOver']>> = null;
    try {
      by = await lease!.takenOver(true, AbortSignal.timeout(30_000));
    } catch (e) {
      if (!(e instanceof BlufioError) || e.code !== 'E_IO') throw e;
    }
    // (The base was named in the sign of life before its put — naming() — and the look above
    // read the sign of life again: a copy's there, this one stands down here.)
    if (!by) return;
    // (A differential's full backup stays: it was there before, and may be anyone's base; and
    // so does this one if the new holder's differential was made on it meanwhile.)
    if (!basedOn(await store.list().catch(() => null), base)) {
      await store.remove(base).catch(() => {});
      await store.remove(`${base}.pages`).catch(() => {});
    }
    throw lease!.standDown(by, null);
  }

  /** A new base's name, said in the lease's sign of life before it is put (lease.ts naming()). */
  function naming(name: string, mine: boolean): Promise<void> {
    return lease!.naming(name, mine, AbortSignal.timeout(30_000));
  }

  async function run(): Promise<ReplicateStatus> {
  // Resume the chain, or start one on a new base. A set that cannot be reached yet (the
  // endpoint down at boot) is waited for, said, with backoff: a service that exited at once
  // would be given up on by its supervisor. Commits made meanwhile are closed from the file.
  let files: Awaited<ReturnType<typeof store.list>>;
  for (let wait = Math.min(interval, 1000); ; wait = Math.min(30_000, wait * 2)) {
    // Each try bounded (a hung endpoint answers nothing) and ended by a stop.
    const limit = AbortSignal.timeout(30_000);
    try {
      const bounded = openStore(set.endsWith('/') ? set : `${set}/`, { ...opts, signal: opts.signal ? AbortSignal.any([opts.signal, limit]) : limit });
      files = await bounded.list();
      // Refused before the lease is taken (a failed start must not make the holder stand down).
      await refuseOtherSeries(bounded, files, stem, db, opts.takeOver === true);
      // A clock off the store's, or behind the set's newest time (NTP not synced yet after a
      // boot, a skewed machine taking over), would put its steps at the wrong place among what
      // is there: refused, before the lease (clock.ts).
      refuseClockBehind(files, stem, store.where(''), await refuseClockOff(bounded));
      // One replicator per series of the set, across machines (lease.ts).
      lease = (await takeLease(bounded, files, stem, myId, path.join(dir, 'lease.tmp'), { takeOver: opts.takeOver, run: myRun })).on(store);
      // A copy's chains this state directory's last run had yet to take out (killed before its
      // passes: an attack run), then what else is in the set is kept.
      lease.beaten.push(...readBeaten(beatenPath));
      lease.keep(files.map((f) => f.name));
      break;
    } catch (e) {
      if (opts.signal?.aborted) throw new BlufioError('E_ABORTED', `stopped while waiting for ${store.where('')} to answer (nothing was shipped)`);
      const err = limit.aborted ? new BlufioError('E_IO', `${store.where('')} did not answer within 30 s`) : e;
      if (!(err instanceof BlufioError) || err.code !== 'E_IO') throw err;
      say({ event: 'retry', error: err.message, backlogSteps: 0, nextInMs: wait });
      opts.onInterval?.(false, err.message);
      await sleep(wait, opts.signal);
      if (opts.signal?.aborted) throw new BlufioError('E_ABORTED', `stopped while waiting for ${store.where('')} to answer (nothing was shipped)`);
    }
  }
  let meta = readMeta(metaPath);
  const chainLength = meta ? chainEnd(logsOf(files, stem), meta.base) : -1;
  if (meta?.pending && chainLength === meta.pending.n && fs.existsSync(outgoing) && fs.existsSync(replicaPath)) {
    // Killed after its last segment was shipped, before (or while) it was applied here.
    replaySteps(outgoing, replicaPath);
    if (hex(checksumOf(replicaPath, meta.pageSize)) === meta.pending.post) {
      meta = { ...meta, n: meta.pending.n, post: meta.pending.post, pending: undefined };
      writeMeta(metaPath, meta);
    }
  }
  fs.rmSync(outgoing, { force: true });
  // Its base must be there, and a differential's full backup too.
  const baseFull = meta ? parseName(meta.base) : null;
  const resumable = meta && meta.database === db && fs.existsSync(replicaPath) && files.some((f) => f.name === meta!.base) && (!baseFull?.base || files.some((f) => f.name === baseFull.base)) && pageSizeNow(db) === meta.pageSize
    && chainEnd(logsOf(files, stem), meta.base) === meta.n
    // Under the lease it was made under (a chain from before leases: when there was none).
    && (meta.lease === lease!.k || (meta.lease === undefined && lease!.took === 'first'))
    // And only when the last run of this state directory is known to be over: it stopped cleanly
    // (its sign of life says so, or it left no lock), or it was a process of this boot of this
    // machine that is gone. Otherwise it may be running elsewhere (a copy of this state
    // directory): a chain of its own, which the two runs' looks settle, never segments of this
    // database in that run's chain (an attack run's copy shipped 9 s of forked segments into it).
    && lastRunOver(previous, lease!);
  if (lease!.took !== 'first' && lease!.took !== 'held') {
    const b = lease!.before!;
    say({ event: 'lease', lease: lease!.k, from: b.id, why: lease!.took === 'ended' ? 'its holder stopped' : lease!.took === 'lapsed' ? `no sign of life from its holder since ${new Date(b.seen!).toISOString()}` : 'taken over (--take-over): its holder stands down before its next segment' });
  }
  const watch = LiveReplica.follow(db);
  let live: LiveReplica;
  let resumed = false;
  try {
    if (resumable) {
      live = await LiveReplica.opening(watch, replicaPath, meta!.pageSize, Math.floor(fs.statSync(replicaPath).size / meta!.pageSize));
      if (live.checksumHex !== meta!.post) {
        live.close();
        throw new RetryAttempt('the replica is not the state the chain ends with');
      }
      // What was committed while no replicator ran may be in the database file only — unless
      // neither it nor its WAL has been written since a clean stop.
      const quiet = meta!.stopped && meta!.stopped.db === fileStamp(db) && meta!.stopped.wal === fileStamp(`${db}-wal`);
      if (!quiet) live.forceFullPass('the replicator was not running');
      meta = { ...meta!, stopped: undefined, lease: lease!.k };
      writeMeta(metaPath, meta);
      resumed = true;
    } else {
      throw new RetryAttempt('no chain to resume');
    }
  } catch (e) {
    if (!(e instanceof RetryAttempt)) throw e;
    // A new base: a backup into the set (a differential against the newest full backup when one
    // pays, as `blufio backup` decides), made after the follower started (every page committed
    // since is touched), its plain copy kept as the replica.
    const w = resumable ? LiveReplica.follow(db) : watch;
    fs.rmSync(replicaPath, { force: true });
    let r: BackupResult;
    for (let wait = 1000; ; wait = Math.min(30_000, wait * 2)) {
      try {
        // --take-over adopts the series too (the database moved to a new place on a new machine).
        r = await whileLooking(w, (whileBusy) => backup(db, store.where(''), { ...opts, force: opts.takeOver === true, keepCopyAt: replicaPath, naming, whileBusy } as BackupOptions));
        break;
      } catch (e) {
        // The database kept changing under every copy (a big one whose WAL is truncated after
        // every commit): waited for, with backoff, and said — an exit would have a supervisor
        // restart it in a loop (found by an attack run).
        if (!(e instanceof BlufioError) || e.code !== 'E_TOO_BUSY' || opts.signal?.aborted) throw e;
        say({ event: 'retry', error: `the first base could not be copied yet (${e.message.replace(/^gave up after (\d+) attempts?: /, '$1 tries: ')})`, backlogSteps: 0, nextInMs: wait, hint: 'nothing is shipped until a copy is proven; one fits once the writes pause (a server that truncates its WAL after every commit leaves no other way: docs/replication.md); SQLite\'s default checkpointing is followed commit by commit' });
        opts.onInterval?.(false, `the first base could not be made: ${e.message}`);
        await sleep(wait, opts.signal);
        if (opts.signal?.aborted) throw new BlufioError('E_ABORTED', 'stopped before the first base was made (nothing was shipped)');
      }
    }
    const base = r.path.slice(r.path.lastIndexOf('/') + 1);
    // Taken over while the base was made (a big one takes minutes): it must not stand in the set,
    // whose newest base it may be (a restore would take it over the new holder's chain).
    await leaseHeld(base);
    madeBase = base;
    live = await LiveReplica.opening(w, replicaPath, r.pageSize, r.pages);
    meta = { database: db, set: store.where(''), base, n: 0, post: live.checksumHex, pageSize: r.pageSize, lease: lease!.k };
    writeMeta(metaPath, meta);
  }
  say({ event: 'started', base: meta!.base, resumed, set: store.where(''), database: db, replicator: myId, lease: lease!.k });

  const status: ReplicateStatus = { database: db, set: store.where(''), base: meta!.base, segment: meta!.n, lastShipped: null, lagMs: 0, backlogSteps: 0, backlogBytes: 0, bytesSent: 0, requests: 0, updated: new Date().toISOString(), pid: process.pid, replicator: myId, lease: lease!.k };
  // What was seen and not shipped yet: the steps' pages in a spool file, their times here, their
  // sizes in the spool and when the look before them began (their commits were made after it).
  // The first `inFlight` of them are being shipped (a segment on its way): the looks go on
  // meanwhile, what they see is spooled after them.
  const pending: Array<StepMeta & { bytes: number; since: number }> = [];
  let inFlight = 0;
  let shipping: Promise<void> | null = null;
  let fatal: unknown = null;
  // A stop lets the segments on their way finish, for a minute at most.
  const stopLimit = new AbortController();
  let stopTimer: ReturnType<typeof setTimeout> | undefined;
  const maxBacklog = opts.maxBacklogBytes ?? 2 ** 30;
  // How long shipping a segment takes (ms, a moving average): a segment is started that much
  // before its first commit's interval is up.
  let shipEwma = 0;
  let mergeEwma = 0;
  const mergedOut = path.join(dir, 'outgoing-merged.seg');
  // Removals of segments merged as they were shipped: waited for before the end.
  const removals = new Set<Promise<void>>();
  // A segment is due when its first commit's interval is up, less the time shipping it takes
  // (and 2 ms for the timer): every commit off the machine within the interval. (Compaction's
  // first level costs no PUT of its own, so that a segment a little more often than once a
  // second still stays under 90,000 PUTs a day.)
  const dueOf = (st: { since: number }) => {
    // The 30th segment of a run goes up merged with the 29 before it: it takes longer.
    const takes = mergeEwma > 0 && mergesAt(segDir, meta!.n + 1) ? mergeEwma : shipEwma;
    return st.since + interval - Math.min(interval / 4, takes + 2);
  };
  // Scheduling is on a monotonic clock (a wall clock stepped back by NTP stopped shipping for as
  // long as the step, in an attack run); step times stay on the wall clock (live-replica.ts).
  let lookStart = clock();
  let backlogLimit = maxBacklog;
  const spoolFd = fs.openSync(path.join(dir, 'spool'), 'w+', 0o600);
  const spool = new StepWriter(spoolFd, meta!.pageSize);
  let backoff = 0;
  let nextShip = clock() + interval;
  let lagSaid = false;
  let compacting: Promise<void> | null = null;
  let stuckSince: number | null = null;
  let stuckSaid = false;
  /**
   * No committed state proven since stuckSince: said (and the monitor told) once it lasts
   * lagWarn, with why and what to do. `reason`: why the last try was given up, if it was.
   */
  const stuck = (reason: string | null) => {
    stuckSince ??= clock();
    if (clock() - stuckSince <= lagWarn || stuckSaid) return;
    stuckSaid = true;
    const s = Math.round((clock() - stuckSince) / 1000);
    let why: string;
    let hint: string;
    if (live.gapPending() || reason?.includes('full pass')) {
      // A gap waits for a full pass that never fits between two commits (docs/replication.md:
      // without a lock, nothing else can prove which pages the unseen commits changed).
      const mib = Math.round((live.nPages * live.pageSize) / 1048576);
      why = `no committed state could be proven for ${s} s: the server checkpoints and restarts its WAL before the replicator reads it, so the whole database file (${mib} MiB) must be read without a commit landing meanwhile${live.lastPassMs > 0 ? `, and a read takes ${Math.round(live.lastPassMs)} ms` : ''}`;
      hint = `nothing is lost: shipping goes on (the span listed as a gap) once the writes pause for ${live.lastPassMs > 0 ? `~${Math.ceil(live.lastPassMs / 100) / 10} s` : 'a moment'}; to be followed commit by commit, let the server checkpoint as SQLite does by default (wal_autocheckpoint) instead of TRUNCATE or RESTART after every commit`;
    } else {
      why = `no committed state could be proven for ${s} s: checkpoints kept moving the pages being read (${reason ?? 'a storm of checkpoints'})`;
      hint = 'nothing is lost: the same pages are read again at every look';
    }
    say({ event: 'lag', lagMs: Math.round(clock() - stuckSince), why, hint });
    opts.onInterval?.(false, why);
  };
  let behindSince: number | null = null;
  let stopRounds = 0;
  let lastStepTime = 0;
  let renewing: Promise<void> | null = null;
  let renewTried = -Infinity;
  let contestsSeen = 0;
  /** When the chains of an overruled copy are taken out of the set (monotonic ms: now, then again after its looks). */
  let takeOutsDue: number[] = lease!.beaten.length > 0 ? [clock(), clock() + 120_000, clock() + LEASE_RENEW_MS] : [];
  let takingOut: Promise<void> | null = null;
  /** The next base is a full backup (after a contest with a copy: see there). */
  let fullNext = false;
  // The wall clock as it was found right at start (against the store's), watched for steps.
  const wall = new WallWatch();
  let clockCheck: Promise<void> | null = null;
  let clockRetryAt = 0;
  /** A step of the wall clock seen and not yet found right by the store's (ms; 0: none). */
  let stepped = 0;
  // A new chain every newBaseEveryMs: its base is made while the old chain goes on
  // shipping, then the replicator moves over (the chains overlap: no gap between them).
  const baseEvery = opts.newBaseEveryMs ?? 6 * 3_600_000;
  // (From the base's time, not this start's: a replicator restarted more often than that — a crash
  // loop — would otherwise never start a new chain, an attack run found.)
  let chainStart = clock() - Math.max(0, Math.min(baseEvery, Date.now() - nameTime(meta!.base)));
  let nextBase: NextBase | null = null;
  const nextReplica = `${replicaPath}.next`;
  /**
   * Takes the chains of an overruled copy of this state directory out of the set (their
   * segments; their bases too, but never one a differential was made on, nor this run's own):
   * what was taken out.
   */
  async function takeOutBeaten(): Promise<string[]> {
    const files = await bgStore.list();
    // (lease.ts names only backups of this series made since this run started; its own — every
    // base it named, everything there when it started — are never taken out, nor a full backup
    // a differential was made on.)
    const removed: string[] = [];
    for (const b of lease!.beaten) {
      if (lease!.mine(b)) continue;
      for (const l of logsOf(files, stem).filter((x) => x.base === b)) {
        await bgStore.remove(l.name);
        removed.push(l.name);
      }
      if (files.some((f) => f.name === b) && !basedOn(files, b)) {
        await bgStore.remove(b);
        await bgStore.remove(`${b}.pages`).catch(() => {});
        removed.push(b);
      }
    }
    return removed;
  }

  const work = makeWorkDir('replicate', opts.workDir);
  let statusAt = 0;
  const writeStatus = () => {
    statusAt = clock();
    status.updated = new Date().toISOString();
    status.backlogSteps = pending.length;
    status.backlogBytes = spool.bytes;
    try {
      fs.writeFileSync(`${statusPath}.tmp`, `${JSON.stringify(status, null, 2)}\n`, { mode: 0o600 });
      fs.renameSync(`${statusPath}.tmp`, statusPath);
    } catch {
      // the status file is a convenience: never a reason to stop shipping
    }
  };

  const ship = async (): Promise<void> => {
    // A step that closed a gap starts a segment of its own (its place in the range is its
    // segment's first time): the steps before it go first.
    let k = pending.findIndex((s, i) => i > 0 && s.gap !== null);
    if (k < 0) k = pending.length;
    const steps = pending.slice(0, k);
    const bytes = steps.reduce((a, st) => a + st.bytes, 0);
    const n = meta!.n + 1;
    const gap = steps.find((s) => s.gap)?.gap ?? undefined;
    const name = logNameFor(stem, meta!.base, n, new Date(steps[0].time), new Date(steps[steps.length - 1].time), layers, gap !== undefined);
    const header: SegmentHeader = { base: meta!.base, n, pageSize: meta!.pageSize, pre: meta!.post, post: hex(steps[steps.length - 1].checksum), from: new Date(steps[0].time).toISOString(), to: new Date(steps[steps.length - 1].time).toISOString(), steps: steps.length, ...(gap ? { gap } : {}) };
    const head = segmentHead(header);
    // Kept in the state directory until it is applied to the replica (a kill between the two
    // is finished by the next start).
    const file = outgoing;
    fs.rmSync(file, { force: true });
    writeSegmentFile(file, head, spoolFd, bytes);
    inFlight = k;
    // The 30th segment of a run goes up as the merge of the run (compaction's first level, at no
    // PUT of its own); the segments it stands for are removed once it is in the set.
    const batch = batchEndingAt(segDir, meta!.base, n);
    const merged = batch ? { file: mergedOut, header: writeMerged(mergedOut, [...batch, { file, header }]) } : null;
    const upName = merged ? nameOf(stem, merged.header, layers) : name;
    const post = hex(steps[steps.length - 1].checksum);
    writeMeta(metaPath, { ...meta!, pending: { n, post } });
    const started = clock();
    // Taken over by a replicator elsewhere (a HEAD every 10 s at most): stood down before
    // this segment, so that the set never has two streams of one series.
    const by = await lease!.takenOver(false, AbortSignal.any([stopLimit.signal, AbortSignal.timeout(30_000)]));
    status.requests += lease!.takeRequests();
    if (by) throw lease!.standDown(by, status.lastShipped);
    // A store that hangs does not hold a segment (and the backlog behind it) for ever: a minute,
    // and a second a MiB beyond, then it is tried again.
    const upFile = merged?.file ?? file;
    const limitMs = 60_000 + Math.ceil(fs.statSync(upFile).size / 2 ** 20) * 1000;
    const timedOut = AbortSignal.timeout(limitMs);
    try {
      // One writer per chain (the lock) and names that cannot repeat: no claim protocol and no
      // look first, one request a segment (a PUT with If-None-Match), not five.
      const put = await store.put(upName, packedBody(upFile, layers, recipients), { signal: AbortSignal.any([stopLimit.signal, timedOut]), alone: true, fresh: true }).catch((e) => {
        if (timedOut.aborted && !stopLimit.signal.aborted) {
          throw new BlufioError('E_IO', `${store.where('')} did not take segment ${n} within ${Math.round(limitMs / 1000)} s`,
            opts.signal?.aborted ? 'what was not shipped is closed from the database file by the next start' : 'it is tried again');
        }
        throw e;
      });
      status.requests += 1;
      // Already there under this very name (its first and last times to the millisecond): our own
      // earlier attempt, whose answer was lost. Any other name with this number cannot be: one
      // replicator per chain (the lock in the state directory).
      if (!put.published && !(await store.stat(upName))) {
        throw new BlufioError('E_IN_USE', `segment ${n} of ${meta!.base} is already in ${store.where('')}: another replicator is shipping this database's chain`, 'run one replicator per database; stop the other one (or remove its state if it is gone), then start this one again');
      }
      // Off the machine: said now (the replica here is brought to it next).
      const shippedAt = Date.now();
      const tookMs = clock() - started;
      // A step that closed a gap holds commits made since the last look before it, which may be
      // long before the step (a wait for a full pass): counted from there (an attack run saw
      // "134 ms after the first commit" for commits that had waited 11 s).
      const lagMs = steps[0].gap ? Math.max(shippedAt - steps[0].time, Math.round(clock() - steps[0].since)) : shippedAt - steps[0].time;
      status.segment = n;
      status.lastShipped = new Date(steps[steps.length - 1].time).toISOString();
      status.lagMs = lagMs;
      status.bytesSent += put.bytes;
      if (merged) mergeEwma = mergeEwma === 0 ? tookMs : 0.7 * mergeEwma + 0.3 * tookMs;
      else shipEwma = shipEwma === 0 ? tookMs : 0.8 * shipEwma + 0.2 * tookMs;
      say({ event: 'shipped', segment: upName, steps: steps.length, pages: steps.reduce((a, s) => a + s.count, 0), bytes: put.bytes, lagMs, shipMs: Math.round(tookMs) });
      if (gap) say({ event: 'gap', segment: upName, why: gap });
      // What was seen while it was on its way stays in the spool, first now.
      pending.splice(0, k);
      spool.shift(bytes);
      // The replica moves to the state the chain now ends with.
      const sum = Buffer.from(meta!.post, 'hex');
      applySegment(file, replicaPath, sum, Infinity, store.where(name));
      fsyncFile(replicaPath);
      meta = { ...meta!, n, post, pending: undefined };
      writeMeta(metaPath, meta);
      // Kept for compaction (compact.ts), merged beside the shipping when a batch is full (one
      // compaction at a time; the next ship never waits for it).
      if (merged) {
        // Done here before anything is removed there (compact.ts merge() says why).
        for (const h of batch!) fs.rmSync(h.file, { force: true });
        keepShipped(segDir, merged.file, merged.header, 1);
        fs.rmSync(file, { force: true });
        say({ event: 'compacted', segment: upName, merged: batch!.length + 1, bytes: put.bytes });
        const gone = batch!.map((h) => nameOf(stem, h.header, layers));
        const removing = (async () => {
          for (const g of gone) await bgStore.remove(g).catch(() => {});
          status.requests += gone.length;
        })();
        removals.add(removing);
        void removing.finally(() => removals.delete(removing));
      } else keepShipped(segDir, file, header);
      if (!compacting) {
        const base = meta.base;
        compacting = compact({ store: bgStore, dir: segDir, stem, layers, recipients, base, onMerged: (merged, count, bytes) => say({ event: 'compacted', segment: merged, merged: count, bytes }) })
          .then((r) => {
            status.requests += r;
          }, (e) => {
            // An optimisation: the segments stay as they are, merged next time.
            if (!background.signal.aborted) say({ event: 'retry', error: `compaction: ${e instanceof Error ? e.message : String(e)}`, backlogSteps: pending.length, nextInMs: interval });
          })
          .finally(() => {
            compacting = null;
          });
      }
    } finally {
      inFlight = 0;
      fs.rmSync(file, { force: true });
      fs.rmSync(mergedOut, { force: true });
      if (meta!.pending) writeMeta(metaPath, { ...meta!, pending: undefined });
    }
  };

  /**
   * A step now, pending: what was committed since the last one, or (nothing committed) a step
   * that changes nothing, stamped now. False when none could be made (a gap waits for its pass,
   * or a storm of checkpoints).
   */
  const stepNow = async (fullPass: boolean): Promise<boolean> => {
    // (A pass in pieces, the event loop running meanwhile; then its step. A small one at once.)
    if (fullPass && !live.quickPass) await live.passInPieces();
    const mark = spool.bytes;
    let st: StepMeta | null = null;
    try {
      st = live.catchUp(spool, { fullPass: fullPass && live.quickPass });
    } catch (e) {
      if (!(e instanceof RetryAttempt)) throw e;
    }
    if (st && st.count === 0 && !st.gap) {
      spool.drop();
      st = null;
    }
    st ??= live.heartbeat(spool);
    if (!st) return false;
    pending.push({ ...st, bytes: spool.bytes - mark, since: clock() });
    lastStepTime = st.time;
    return true;
  };

  try {
    // Looks at the WAL 40 times a second at the default interval: a commit is seen within ~25 ms,
    // so that its lag to shipped stays near the interval.
    const look = Math.max(10, Math.min(50, Math.floor(interval / 40)));
    const onStop = () => {
      stopTimer = setTimeout(() => stopLimit.abort(new BlufioError('E_ABORTED', 'stopped: what was committed could not be shipped within a minute (the next start closes it from the database file)')), 60_000);
    };
    if (opts.signal?.aborted) onStop();
    else opts.signal?.addEventListener('abort', onStop, { once: true });
    opts.hurry?.addEventListener('abort', () => stopLimit.abort(new BlufioError('E_ABORTED', 'stopped again: what was not shipped yet is closed as a gap by the next start')), { once: true });
    if (!resumed) {
      // A new chain ships its first step at once — what was committed since its base, or a step
      // that changes nothing: from then on a restore takes this chain, never an older one that
      // may reach past its base (a stood-down holder's last segments, another database's: an
      // attack run restored the old holder's database while the new one's chain was empty).
      // Not a full pass: a gap (the WAL restarted unseen while the base was made) is closed as
      // usual, at the interval, its lag counted from when it began.
      // Its commits were seen while the base was checked and uploaded, but are stamped now: a
      // time in between restores the base's state. When that took more than a second (an attack
      // run: 16 s at 400 MB), the step is marked a gap, so that `list` says so.
      labelIfLate(live, nameTime(meta!.base), 'the base took to publish');
      if (await stepNow(false)) nextShip = clock();
    }
    for (;;) {
      if (fatal) throw fatal;
      const stopping = opts.signal?.aborted ?? false;
      try {
        // Full passes (a gap to close) once an interval, when the steps are shipped.
        // A gap is closed in a segment of its own (shipped first: what was seen before it), so
        // that its place in the range is its first step's (an attack run found gaps shown
        // seconds away from where they were).
        // A step's time is when the look that read its commits ended (live-replica.ts).
        const thisLook = clock();
        // A new base is ready and the old chain reaches its time: what is committed from now on
        // is left to the new chain (its watch follows it), while the old chain's last steps go
        // out; then it moves over. (Stepping on meanwhile made the switch wait for a moment with
        // nothing committed — under constant writes, a segment a look and no switch at all.)
        const nb0 = nextBase;
        if (nb0?.done && nb0.r && !nb0.failed) nb0.live!.pending();
        const switching = !stopping && behindSince === null && !!nb0?.done && !!nb0.r && !nb0.failed
          && Date.now() >= nameTime(nb0.r.path) + 2 * look && lastStepTime >= nameTime(nb0.r.path);
        // A gap's full pass is made in pieces, the event loop running meanwhile (a big database's
        // takes seconds: the segment on its way goes on), then its step is taken below.
        // (A small database's pass is made at once, in the catch-up's rounds: quickPass.)
        const holdGap = pending.length > inFlight;
        const passDue = stopping || clock() >= nextShip - look;
        if (!switching && !holdGap && passDue && live.needsPass() && !live.quickPass) await live.passInPieces();
        // (Measured after the pass: a segment shipped meanwhile takes its bytes off the spool.)
        const before = spool.bytes;
        const step = switching ? null : live.catchUp(spool, { fullPass: passDue && live.quickPass, holdGap });
        if (step && (step.count > 0 || step.gap)) {
          pending.push({ ...step, bytes: spool.bytes - before, since: lookStart });
          if (pending.length === 1) nextShip = dueOf(pending[0]);
          lastStepTime = step.time;
        } else if (step) spool.drop();
        // Commits not yet in a step were made after the last look that left none behind.
        if (!live.gapPending() && !switching) lookStart = thisLook;
        if (switching && pending.length > inFlight && !shipping) nextShip = Math.min(nextShip, clock());
        // (Not while backing off from a failed ship: that would try the store at every look.)
        if (live.gapPending() && pending.length > inFlight && behindSince === null) nextShip = Math.min(nextShip, clock());
        // A backlog at its bound while the set answers (a long --interval): shipped at once.
        if (!shipping && spool.bytes > backlogLimit && behindSince === null) nextShip = Math.min(nextShip, clock());
        else if (pending.length - inFlight > 1 && spool.bytes > backlogLimit && (behindSince !== null || shipping)) {
          // The set cannot be reached (or a segment hangs on its way) and the backlog is at its
          // bound: the steps not on their way are folded into one state (the newest image of
          // each page), shipped as a gap when the set answers.
          const first = pending[inFlight];
          const at = pending.slice(0, inFlight).reduce((a, st) => a + st.bytes, 0);
          const from = new Date(first.time).toISOString();
          const c = spool.collapse(path.join(dir, 'spool.fold'), at);
          const to = new Date(c.time).toISOString();
          pending.splice(inFlight, pending.length - inFlight, { time: c.time, pages: c.pages, checksum: c.checksum, count: c.count, gap: `the set could not be reached: ${c.folded} steps seen from ${from} to ${to} were kept as one state (the --max-backlog bound)`, bytes: spool.bytes - at, since: first.since });
          // Folded again once as much again has come in: the folded state itself cannot be made
          // smaller (it is every page changed since the last shipped state).
          backlogLimit = spool.bytes + maxBacklog;
          say({ event: 'backlog', folded: c.folded, bytes: spool.bytes, from, to });
          writeStatus();
        }
        if (step || !live.gapPending()) {
          stuckSince = null;
          stuckSaid = false;
        } else {
          // A gap that no full pass has closed yet (a big database whose WAL is truncated after
          // every commit): said when it lasts, and the monitor told.
          stuck(null);
        }
      } catch (e) {
        if (!(e instanceof RetryAttempt)) throw e;
        if (e.reason === 'the database left WAL mode') {
          throw new BlufioError('E_USAGE', `${db} left WAL mode (journal_mode was changed): blufio replicate follows a WAL-mode database only`, 'switch it back (PRAGMA journal_mode=WAL) and start blufio replicate again; what was shipped so far stays restorable');
        }
        // A storm of checkpoints: the same pages are tried again at the next look.
        stuck(e.reason);
      }
      const now = clock();
      // A wall clock that stepped: nothing stamped since is shipped (nor a base switched to)
      // until the store's clock says it is right (clock.ts WallWatch) — held until a check
      // succeeds, not until the clock comes back by itself (an attack run stepped it ahead and
      // back while the store was down: the steps stamped meanwhile were shipped).
      if (!clockCheck) {
        const d = wall.drift();
        if (d !== 0 && stepped === 0) {
          stepped = d;
          say({ event: 'clock', steppedMs: Math.round(d), right: null });
        }
      }
      if (stepped !== 0 && !clockCheck && now >= clockRetryAt) {
        const drift = stepped;
        clockCheck = confirmStep(store, drift).then(() => {
          // Right now. A step ahead that stayed (a paused VM resumed, the store agreeing) stamped
          // what was seen since by the right clock. Anything else — ahead and back, or back (steps
          // are never stamped before an earlier one, so they were held at the step's time: an
          // attack run restored rows 8 s before they were committed) — stamped it wrongly: not
          // shipped, and the restart closes it from the database file as a gap.
          const now2 = wall.drift();
          if (!(drift > 0 && now2 > 0)) {
            fatal = new BlufioError('E_CLOCK', `this machine's clock stepped ${Math.round(Math.abs(drift) / 1000)} s ${drift > 0 ? 'ahead' : 'back'}${now2 === 0 ? ' and back' : ''} while replicating: what was seen meanwhile is stamped by a wrong clock; nothing stamped so was shipped`,
              'start blufio replicate again: what was committed meanwhile is shipped from the database file (a gap)');
            return;
          }
          wall.settle();
          stepped = 0;
          say({ event: 'clock', steppedMs: Math.round(drift), right: true });
        }, (e) => {
          if (e instanceof BlufioError && e.code === 'E_CLOCK') fatal = e;
          else clockRetryAt = clock() + 5_000;
        }).finally(() => {
          clockCheck = null;
        });
      }
      const clockHeld = stepped !== 0 || clockCheck !== null;
      if (!shipping && !clockHeld && pending.length > 0 && (now >= nextShip || stopping)) {
        // Shipped beside the looks: a slow store or a big segment does not delay seeing commits.
        nextShip = now + interval;
        const shipped = ship().then(() => {
          if (backoff > 0) say({ event: 'caught-up', afterMs: clock() - (behindSince ?? now) });
          backoff = 0;
          backlogLimit = maxBacklog;
          behindSince = null;
          lagSaid = false;
          opts.onInterval?.(true);
          // What was seen while it was on its way is due by its own first commit.
          if (pending.length > 0) nextShip = dueOf(pending[0]);
        }, (e) => {
          if ((e instanceof BlufioError && (e.code === 'E_IN_USE' || e.code === 'E_ABORTED')) || opts.signal?.aborted) {
            fatal = e;
            return;
          }
          behindSince ??= now;
          backoff = Math.min(30_000, backoff ? backoff * 2 : interval);
          const why = e instanceof Error ? e.message : String(e);
          say({ event: 'retry', error: why, backlogSteps: pending.length, nextInMs: backoff });
          opts.onInterval?.(false, why);
          nextShip = clock() + backoff;
        }).finally(() => {
          if (shipping === shipped) shipping = null;
          writeStatus();
        });
        shipping = shipped;
      } else if (now >= nextShip) {
        nextShip = now + interval;
        opts.onInterval?.(true);
      }
      if (pending.length > 0 && !lagSaid && now - pending[0].since > lagWarn) {
        lagSaid = true;
        say({ event: 'lag', lagMs: Math.round(now - pending[0].since) });
        // A store that hangs says nothing by itself: the monitor is told here.
        opts.onInterval?.(false, `the oldest commit not shipped was made ${Math.round((now - pending[0].since) / 1000)} s ago${shipping ? ' (a segment is still on its way)' : ''}`);
      }
      // The status file stays current while a segment hangs or the set is down.
      if (now - statusAt >= 1000) writeStatus();
      // A younger run of this id was found (a copy of this state directory) and overruled: a
      // new base at once, so that its chain is not the set's newest for hours.
      if (lease!.contests > contestsSeen) {
        contestsSeen = lease!.contests;
        if (!nextBase && !stopping) chainStart = -Infinity;
        // A full one: the newest full backup in the set may be the copy's, which it takes out
        // when it stands down (an attack run's differential on it left the chain unrestorable).
        fullNext = true;
        // Its chains out of the set (it stands down at its next look and takes them out itself,
        // unless it was killed first): now, and again once its looks are surely over (a segment
        // it still shipped meanwhile), and an hour later.
        takeOutsDue = [now, now + 120_000, now + LEASE_RENEW_MS];
        writeBeaten(beatenPath, lease!.beaten);
        say({ event: 'copy', run: lease!.beatenRun, removed: [] });
      }
      if (!takingOut && !stopping && takeOutsDue.length > 0 && now >= takeOutsDue[0]) {
        takeOutsDue.shift();
        const last = takeOutsDue.length === 0;
        const removing = takeOutBeaten().then((removed) => {
          if (removed.length > 0) say({ event: 'copy', run: lease!.beatenRun, removed });
          if (last) fs.rmSync(beatenPath, { force: true });
        }, () => {}).finally(() => {
          takingOut = null;
        });
        takingOut = removing;
      }
      // The lease's hourly sign of life (a failed one is tried again a minute later).
      if (!renewing && !stopping && lease!.renewDue() && now - renewTried >= 60_000) {
        renewTried = now;
        renewing = lease!.renewHourly(AbortSignal.timeout(60_000)).then(() => {
          status.requests += lease!.takeRequests();
          // Its sign of life is another run's, older (this one is a copy of its state directory):
          // stands down now, not at its next segment (lease.ts).
          if (lease!.lost && !fatal) fatal = lease!.standDown(lease!.takenOverBy!, status.lastShipped);
        }, (e) => {
          say({ event: 'retry', error: `the lease's sign of life: ${e instanceof Error ? e.message : String(e)}`, backlogSteps: pending.length, nextInMs: 60_000 });
        }).finally(() => {
          renewing = null;
        });
      }
      if (!stopping && !nextBase && !clockHeld && clock() - chainStart >= baseEvery) {
        fs.rmSync(nextReplica, { force: true });
        const nb: NextBase = { done: false, failed: null, w: LiveReplica.follow(db), r: null, live: null, settled: Promise.resolve() };
        nextBase = nb;
        nb.settled = lease!.takenOver(true, AbortSignal.timeout(30_000)).then((by) => {
          if (by) throw lease!.standDown(by, status.lastShipped);
          const full = fullNext;
          fullNext = false;
          // (Inside the base's long synchronous work, the chain still shipping is looked at too:
          // an attack run's writer restarting its WAL every ~80 ms left gaps at every new base.)
          return whileLooking(nb.w, (whileBusy) => backup(db, store.where(''), { ...opts, force: opts.takeOver === true, signal: opts.signal, keepCopyAt: nextReplica, naming, whileBusy, ...(full ? { full: true } : {}) } as BackupOptions), () => live.pending());
        }).then(async (r) => {
          await leaseHeld(r.path.slice(r.path.lastIndexOf('/') + 1));
          // Its replica hashed now, in pieces, looking at the source between two (the switch is
          // then a rename: seconds at 4 GiB otherwise, with no chain looking).
          try {
            nb.live = await LiveReplica.opening(nb.w, nextReplica, r.pageSize, r.pages);
          } catch (e) {
            nb.failed = e;
            return;
          }
          nb.r = r;
        }, (e) => {
          nb.failed = e;
        }).finally(() => {
          nb.done = true;
        });
      }
      // The new chain reaches back only to its base's name (its time rounded up to the second):
      // the old one goes on until then, so that no moment falls between them.
      const baseReady = !clockHeld && nextBase?.done && (nextBase.failed || !nextBase.r || Date.now() >= nameTime(nextBase.r.path) + 2 * look);
      // The old chain must reach the new base's time; with nothing committed since its last
      // step, a step that changes nothing says the state held until now.
      if (baseReady && nextBase?.r && !nextBase.failed && pending.length === 0 && lastStepTime < nameTime(nextBase.r.path)) {
        const before = spool.bytes;
        const hb = live.heartbeat(spool);
        if (hb) {
          pending.push({ ...hb, bytes: spool.bytes - before, since: clock() });
          lastStepTime = hb.time;
          nextShip = clock();
        }
      } else if (baseReady && nextBase && (nextBase.failed || pending.length === 0)) {
        const nb = nextBase;
        nextBase = null;
        if (nb.failed instanceof BlufioError && nb.failed.code === 'E_IN_USE') fatal = nb.failed;
        if (nb.failed || !nb.r) {
          closeNext(nb, nextReplica);
          if (!stopping) say({ event: 'retry', error: `a new base: ${nb.failed instanceof Error ? nb.failed.message : String(nb.failed)}`, backlogSteps: pending.length, nextInMs: 600_000 });
          chainStart = clock() - baseEvery + 600_000;
        } else {
          // Everything the old chain saw is shipped: move over to the new one.
          live.close();
          nb.live!.moveTo(replicaPath);
          live = nb.live!;
          const base = nb.r.path.slice(nb.r.path.lastIndexOf('/') + 1);
          madeBase = base;
          meta = { database: db, set: store.where(''), base, n: 0, post: live.checksumHex, pageSize: nb.r.pageSize, lease: lease!.k };
          writeMeta(metaPath, meta);
          spool.reset();
          status.base = base;
          status.segment = 0;
          chainStart = clock();
          say({ event: 'new-base', base });
          // Its first step at once, as a new chain at start: the old chain stopped looking when
          // the switch began, and until this chain's first step a time restores the old one's
          // last state (an attack run found 0.2–0.35 s of commits missed there, at the interval).
          // A full pass if one is due (a writer that removes its WAL): once per new base.
          // (As at start: more than a second since the old chain's last step is listed as a gap.)
          labelIfLate(live, lastStepTime, 'the switch to a new base took');
          if (await stepNow(true)) nextShip = clock();
        }
      }
      // Stopping: what was committed is shipped — the segment on its way first, then what was
      // seen after it; a gap still open is closed (its own segment, one more round).
      if (stopping) {
        if (shipping) await shipping;
        // (A clock step being checked: its answer first, then what it allows is shipped.)
        if (clockCheck) {
          await clockCheck;
          if (!fatal) continue;
        }
        if (fatal) throw fatal;
        // A new base made meanwhile is named after its time rounded up to the second: the old chain
        // must reach that name before the end, or a restore of the newest state takes the base
        // alone — older than what the chain holds (a test run restored 28 rows fewer so).
        if (pending.length === 0 && !live.gapPending() && stopRounds <= 4) {
          if (nextBase && !nextBase.done) await nextBase.settled;
          const made = nextBase?.r && !nextBase.failed ? nextBase.r : null;
          if (made && lastStepTime < nameTime(made.path)) {
            stopRounds++;
            const wait = nameTime(made.path) + 2 * look - Date.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            if (await stepNow(true)) continue;
          }
        }
        if ((pending.length === 0 && !live.gapPending()) || ++stopRounds > 4) {
          // Everything seen is shipped: the files' stamps, if a last look finds nothing new and
          // nothing written while it looked (a start that finds them so skips its full pass).
          const before = { db: fileStamp(db), wal: fileStamp(`${db}-wal`) };
          const mark = spool.bytes;
          const last = pending.length === 0 && !live.gapPending() ? live.catchUp(spool, { fullPass: false }) : null;
          const news = last !== null && (last.count > 0 || last.gap !== null);
          if (news && ++stopRounds <= 4) {
            // Committed just now: shipped in one more round.
            pending.push({ ...last, bytes: spool.bytes - mark, since: clock() });
            continue;
          }
          if (last && !news) spool.drop();
          if (!news && pending.length === 0 && !live.gapPending() && before.db === fileStamp(db) && before.wal === fileStamp(`${db}-wal`)) {
            meta = { ...meta!, stopped: before };
            writeMeta(metaPath, meta);
          }
          break;
        }
      } else await sleep(!shipping && pending.length > 0 ? Math.max(1, Math.min(look, nextShip - clock())) : look, opts.signal);
    }
  } finally {
    await shipping;
    clearTimeout(stopTimer);
    if (nextBase) {
      const nb = nextBase;
      await new Promise<void>((r) => {
        const wait = () => (nb.done ? r() : setTimeout(wait, 20));
        wait();
      });
      closeNext(nb, nextReplica);
    }
    await compacting;
    await renewing;
    await Promise.all([...removals]);
    live.close();
    fs.closeSync(spoolFd);
    fs.rmSync(work, { recursive: true, force: true });
    writeStatus();
  }
  say({ event: 'stopped', segments: meta!.n, lastCommit: status.lastShipped });
  return status;
  }
}

/**
 * The set's series of this name belongs to another database (its `<stem>.series` marker records
 * another path): refused before the lease is taken (exit 3, as a lease held by another), unless
 * taken over (the base backup then adopts the series).
 */
async function refuseOtherSeries(store: Store, files: StoredFile[], stem: string, db: string, takeOver: boolean): Promise<void> {
  if (takeOver) return;
  // (Unreadable: the base backup rewrites it.)
  const { recorded, real } = await seriesOwner(store, files, stem, db);
  if (typeof recorded === 'string' && recorded !== real) {
    throw new BlufioError('E_IN_USE', `${store.where('')} holds the series "${stem}" of another database (${recorded}); this is ${real}`,
      'replicate it into another set, or start blufio replicate with --take-over if this is the same database moved to a new place');
  }
}

/** Replication follows the WAL: a rollback-journal database (or not a database) is refused before anything is written. */
function refuseRollbackMode(db: string): void {
  let head: Uint8Array;
  try {
    head = firstBytes(db, 100);
  } catch {
    return; // the base backup says what is wrong with the path
  }
  if (head.length === 100 && hasSqliteMagic(head) && journalModeOf(head) !== 'wal') {
    throw new BlufioError('E_USAGE', `${db} is in rollback-journal mode: blufio replicate follows a WAL-mode database's commits`,
      'the blufio server keeps its database in WAL mode (storage.wal_mode = true); for other databases, take backups with blufio backup');
  }
}

/** When process `pid` started (Linux: ticks since boot, /proc/<pid>/stat), or null where that cannot be read. */
function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** The chains of an overruled copy still to be taken out (lease.ts beaten), as a run left them. */
function readBeaten(file: string): string[] {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8'));
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && parseName(x) !== null).slice(0, 16) : [];
  } catch {
    return [];
  }
}

function writeBeaten(file: string, names: string[]): void {
  try {
    fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(names)}\n`, { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
  } catch {
    // then only this run takes them out
  }
}

/** Whether a differential in `files` is made on `full` (null: the set could not be listed — assumed so). */
function basedOn(files: StoredFile[] | null, full: string): boolean {
  return files === null || files.some((f) => parseName(f.name)?.base === full);
}

/**
 * Whether the last run of this state directory is known to be over: its sign of life in the set
 * says it stopped cleanly, or its lock names a process of this boot and namespace that is gone,
 * or it left no lock and no run of it is in the set (legacy, or a new lease).
 */
function lastRunOver(previous: 'none' | 'dead-here' | 'unknown', lease: Lease): boolean {
  const before = lease.took === 'held' ? lease.before : null;
  if (before?.ended || previous === 'dead-here') return true;
  return previous === 'none' && !before?.run;
}

/**
 * This boot of this machine and this process-id namespace (Linux), or null: a lock left by a
 * process of the same boot and namespace names a process this one can see. (The boot alone is
 * shared by every container of a host: an attack run's copy in a container of its own took the
 * original's lock for a dead process's, and resumed its chain.)
 */
function bootId(): string | null {
  try {
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return boot ? `${boot}/${fs.readlinkSync('/proc/self/ns/pid')}` : null;
  } catch {
    return null;
  }
}

/**
 * Takes the chain's lock file (O_EXCL, with our pid and this boot); returns its release, and
 * what the last holder was: none (no lock: a clean stop, or a fresh state directory), dead here
 * (a process of this boot of this machine, gone: a kill -9, a crash), or unknown (a lock from
 * another boot — a reboot, or a copy of the state directory made on another machine).
 */
function lockChain(file: string, db: string, set: string): { release: () => void; previous: 'none' | 'dead-here' | 'unknown' } {
  let previous: 'none' | 'dead-here' | 'unknown' = 'none';
  for (let tries = 0; ; tries++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${JSON.stringify({ pid: process.pid, since: processStart(process.pid), boot: bootId(), started: new Date().toISOString() })}\n`);
      fs.closeSync(fd);
      return { release: () => fs.rmSync(file, { force: true }), previous };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || tries > 0) throw e;
      let holder: { pid?: number; since?: string | null; boot?: string | null } = {};
      try {
        holder = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch {
        // unreadable: a kill while it was written; taken over
      }
      // A holder whose process is gone, or whose number now belongs to another process (started
      // at another time), left it behind: taken over.
      if (holder.pid && holder.pid !== process.pid && pidAlive(holder.pid) && (!holder.since || holder.since === processStart(holder.pid))) {
        throw new BlufioError('E_IN_USE', `another blufio replicate (process ${holder.pid}) is shipping ${db} to ${set}`, 'run one replicator per database and set; stop the other one first');
      }
      const boot = bootId();
      previous = boot !== null && holder.boot === boot ? 'dead-here' : 'unknown';
      fs.rmSync(file, { force: true });
    }
  }
}

/** The segment file: its header, then the spool's steps. */
function writeSegmentFile(file: string, head: Buffer, spoolFd: number, spoolBytes: number): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    writeFully(fd, head, 0);
    if (copyRange(spoolFd, 0, fd, head.length, spoolBytes) !== spoolBytes) throw new BlufioError('E_IO', 'the replicator\'s spool file was cut short', 'restart blufio replicate');
  } finally {
    fs.closeSync(fd);
  }
}

const clock = () => performance.now();

/**
 * `job` (a new base being made), with the source looked at every 25 ms meanwhile (lookAhead):
 * what is committed while the base is copied and uploaded is followed, not lost to a gap —
 * from a timer, and from inside the job's long synchronous work (its whileBusy hook: checking,
 * hashing and copying a 4 GiB base blocked the timer for tens of seconds, and the WAL restarted
 * unseen under it: every chain began with a gap).
 */
async function whileLooking<T>(w: Watch, job: (whileBusy: () => void) => Promise<T>, alsoWhileBusy?: () => void): Promise<T> {
  let last = 0;
  /** A look, unless one was made in the last 20 ms: whether it looked. */
  const look = (): boolean => {
    const now = performance.now();
    if (now - last < 20) return false;
    last = now;
    try {
      LiveReplica.lookAhead(w);
    } catch {
      w.gap ??= 'the WAL could not be read while the base was made';
    }
    return true;
  };
  const busy = () => {
    try {
      if (look()) alsoWhileBusy?.();
    } catch {
      // (the chain's own next look says what is wrong)
    }
  };
  const timer = setInterval(look, 25);
  try {
    return await job(busy);
  } finally {
    clearInterval(timer);
  }
}

/** A file's identity and change times, to the nanosecond ('none' when there is none). */
function fileStamp(file: string): string {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    throw e;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function readMeta(file: string): Meta | null {
  try {
    const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Meta;
    return typeof m.base === 'string' && Number.isSafeInteger(m.n) && typeof m.post === 'string' ? m : null;
  } catch {
    return null;
  }
}

function writeMeta(file: string, meta: Meta): void {
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(meta)}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}
