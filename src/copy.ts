/**
 * The one copy routine behind backup, restore (building the new database) and the check of a live
 * database (inspect): SQLite's backup API (sqlite3_backup_init/step/finish) from a consistent view of the source into a private file,
 * retried when a live source changes under it, within bounds.
 */
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlufioError, fsError } from './errors.ts';
import type { ProgressCallback } from './progress.ts';
import { statOrNull } from './files.ts';
import { holdersSoon } from './locks.ts';
import { RetryAttempt } from './retry.ts';
import { openSnapshotView, type JournalMode, type SourceSnapshot } from './snapshot/snapshot.ts';
import { runBackupLoop, throwIfAborted } from './core/backup-loop.ts';
import { fromSqliteException } from './core/sqlite-errors.ts';
import { loadSqlite, openDb, vfsOf, type Database, type Sqlite3 } from './sqlite.ts';

export interface CopyOptions {
  /** Pages copied per backup step (default 100; 1000 when there is no pause between steps). */
  pagesPerStep?: number;
  /**
   * Pause between steps in ms, to leave I/O to a live server; 0 = full speed. Default: 10 when
   * another process has the source open (or that can't be told), 0 when nobody does.
   */
  sleepMs?: number;
  /** Most attempts when the source keeps changing (default 10). */
  retries?: number;
  /**
   * Give up after this many ms in all, an attempt under way included. Default: no limit on an
   * attempt (a big database its server holds open is copied throttled: 4 GiB took over 100 s),
   * and no attempt is started more than RETRY_WINDOW_MS after the first one ended.
   */
  timeoutMs?: number;
  /**
   * With `signal`: when the whole job must end (ms since the epoch; --timeout). The signal ends
   * the asynchronous steps; this ends the long synchronous ones (the integrity check) too.
   */
  deadline?: number;
  /**
   * True once the job must stop, read inside SQLite's long synchronous calls (the integrity
   * check), where an AbortSignal cannot flip: offThread sets it from the calling thread.
   */
  interrupted?: () => boolean;
  /**
   * Called every few milliseconds during the job's long synchronous work (the integrity check,
   * hashing and copying whole files), where the event loop cannot run: for a caller that must
   * keep watching something meanwhile (the replicator looks at the WAL, or it would miss its
   * restarts while a big base is checked). Cheap and quick, or it slows the job.
   */
  whileBusy?: () => void;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  /**
   * For tests: called when an attempt has fixed its state (begin()) and before SQLite reads
   * anything, so that a test can commit or checkpoint at exactly that point. Not in the
   * published types (stripInternal).
   * @internal
   */
  afterBegin?: (attempt: number) => void;
}

export interface CopyResult {
  pages: number;
  pageSize: number;
  attempts: number;
  journalMode: JournalMode;
  /** When the state copied was current (ms since the epoch): the end of the successful attempt. */
  takenAt: number;
}

export const COPY_DEFAULTS = { pagesPerStep: 100, fullSpeedPagesPerStep: 1000, sleepMs: 10, retries: 10 } as const;

/** Without timeoutMs: how long after the first attempt ended a changing database is tried again. */
const RETRY_WINDOW_MS = 60_000;

/** Longest time between two looks at a live source while a copy pauses. */
const WATCH_MS = 2;

/**
 * Copies the database at `srcPath` into `destPath` (created or overwritten, mode 0600) as one
 * committed state of the source, in rollback-journal mode. Never writes any of the source's files.
 * `staging`: the copy is read back at once and removed (not written to the disk early).
 */
export async function copyDatabase(srcPath: string, destPath: string, opts: CopyOptions = {}, staging = false): Promise<CopyResult> {
  // Without a pause, small steps only add per-step work (a transaction each, a look at the
  // source): 1000 pages still leave a live WAL looked at every few milliseconds.
  const stepFor = (sleep: number) => opts.pagesPerStep ?? (sleep > 0 ? COPY_DEFAULTS.pagesPerStep : COPY_DEFAULTS.fullSpeedPagesPerStep);
  // The caller's limit ends an attempt under way too. Without one, an attempt is never cut short
  // (a 60 s limit on each had every backup of a 4 GiB database its server held open, idle, fail
  // with "try again when the server is less busy"), and retrying stops a minute after the first.
  const deadline = opts.timeoutMs !== undefined ? Date.now() + opts.timeoutMs : Infinity;
  let retryUntil = deadline;
  let windowEnded = false;
  const retries = Math.max(1, opts.retries ?? COPY_DEFAULTS.retries);
  // Who has the source open is asked while SQLite loads: the answer costs the kernel a few ms.
  const [sqlite3, initialThrottle] = await Promise.all([loadSqlite(statOrNull(srcPath)?.size), opts.sleepMs ?? defaultSleep(srcPath)]);
  let throttle = initialThrottle;
  const vfs = vfsOf(sqlite3);
  const view = openSnapshotView(vfs, srcPath);
  const { snapshot, name: viewName } = view;
  const reasons: string[] = [];
  const unscratch = staging ? vfs.scratch(destPath) : () => {};
  try {
    for (let attempt = 1; attempt <= retries; attempt++) {
      throwIfAborted(opts.signal);
      try {
        snapshot.begin();
        opts.afterBegin?.(attempt);
        try {
          await copyAttempt(sqlite3, snapshot, viewName, destPath, { pagesPerStep: stepFor(throttle), sleepMs: throttle, attempt, deadline, opts });
        } catch (e) {
          // The destination's disk, not the source, when writing the copy failed for want of room.
          const m = /\b(ENOSPC|EDQUOT|EFBIG|EROFS)\b|File too large \(os error 27\)/.exec((e as Error)?.message ?? '');
          if (m) throw fsError(Object.assign(new Error(m[1] ?? 'EFBIG'), { code: m[1] ?? 'EFBIG' }), destPath, 'cannot write the copy');
          // A view torn by a concurrent writer can make SQLite fail (say, a page 1 overwritten as
          // we read it). Such a failure is real only if nothing at all was committed since begin().
          if (e instanceof BlufioError && e.code !== 'E_ABORTED' && snapshot.movedSinceBegin()) {
            throw new RetryAttempt(`the source changed while SQLite read it (${e.message})`);
          }
          throw e;
        }
        snapshot.finish(destPath);
        const pages = Math.floor(fs.statSync(destPath).size / snapshot.pageSize);
        return { pages, pageSize: snapshot.pageSize, attempts: attempt, journalMode: snapshot.mode, takenAt: Date.now() };
      } catch (e) {
        if (!(e instanceof RetryAttempt)) throw e;
        reasons.push(e.reason);
        if (process.env.BLUFIO_DEBUG === '1') process.stderr.write(`blufio: attempt ${attempt} not consistent: ${e.reason}\n`);
        if (attempt === 1 && opts.timeoutMs === undefined) retryUntil = Date.now() + RETRY_WINDOW_MS;
        if (attempt === retries) break;
        if (Date.now() >= retryUntil) {
          // Not --retries that ran out: more of them would not help (an attack run was told to raise them).
          windowEnded = opts.timeoutMs === undefined;
          break;
        }
        const pause = Math.min(250, 10 * 2 ** attempt) * (0.5 + Math.random());
        // The next attempt runs at full speed: the shorter it is, the likelier it fits between
        // two changes it cannot follow.
        if (snapshot.mode === 'rollback' || opts.sleepMs === undefined) throttle = 0;
        if (snapshot.mode === 'rollback') {
          // A rollback-mode copy is only good if no commit lands while it runs: start the next
          // one the moment the writer lets go of its locks.
          await snapshot.waitForQuiet(pause, opts.signal);
        } else {
          // Back off a little, with jitter, so we do not start again in lockstep with the writer.
          await sleep(pause, undefined, { signal: opts.signal }).catch(() => {});
        }
      }
    }
    const last = reasons[reasons.length - 1] ?? 'the source kept changing';
    throw new BlufioError('E_TOO_BUSY',
      `gave up after ${reasons.length} attempt${reasons.length === 1 ? '' : 's'}: ${last} (${snapshot.mode === 'wal' ? 'WAL' : 'rollback-journal'} mode)`,
      windowEnded ? `${snapshot.mode === 'wal' ? 'try again when the server is less busy' : 'switch blufio to WAL mode (storage.wal_mode = true)'}, or give --timeout <seconds> to keep trying for longer than a minute` : busyHint(snapshot.mode));
  } catch (e) {
    if (e instanceof BlufioError && e.code === 'E_TIMEOUT' && reasons.length > 0) {
      // The limit ran out while a writer kept tearing the attempts: say that, and what helps.
      throw new BlufioError('E_TIMEOUT', `gave up: the time limit (--timeout) ran out after ${reasons.length + 1} attempts; the database kept changing (${reasons[reasons.length - 1]}); nothing was written`,
        busyHint(snapshot.mode), { cause: e });
    }
    throw e;
  } finally {
    unscratch();
    view.close();
  }
}

interface AttemptParams {
  pagesPerStep: number;
  sleepMs: number;
  attempt: number;
  deadline: number;
  opts: CopyOptions;
}

async function copyAttempt(sqlite3: Sqlite3, snapshot: SourceSnapshot, viewName: string, destPath: string, p: AttemptParams): Promise<void> {
  fs.rmSync(destPath, { force: true });
  let src: Database | undefined;
  let dest: Database | undefined;
  try {
    try {
      src = openDb(sqlite3, viewName);
      dest = openDb(sqlite3, destPath, { create: true });
      // The destination is private until it is published by rename: no journal, one sync at the
      // end. Each source page is read once: a big cache would only grow the WebAssembly heap.
      dest.exec('PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-512;');
      src.exec('PRAGMA cache_size=-256;');
    } catch (e) {
      throw fromSqliteException(sqlite3, e, `cannot copy ${snapshot.dbPath}`) ?? e;
    }
    await runBackupLoop(sqlite3, src, dest, {
      pagesPerStep: p.pagesPerStep,
      sleepMs: p.sleepMs,
      attempt: p.attempt,
      pageSize: snapshot.pageSize,
      signal: p.opts.signal,
      onProgress: p.opts.onProgress,
      source: snapshot.dbPath,
      lastError: () => vfsOf(sqlite3).takeLastError(),
      // A live WAL is looked at every WATCH_MS while pausing: a busy writer can restart it every
      // few ms, and each generation's frames must be read before the next overwrites them.
      watchMs: WATCH_MS,
      watch: () => {
        snapshot.watch();
        if (Date.now() > p.deadline) throw new RetryAttempt('the time limit ran out during the copy');
      },
    });
  } finally {
    src?.close();
    dest?.close();
  }
}

/** The default pause: only a database someone else has open needs I/O left to it. */
async function defaultSleep(srcPath: string): Promise<number> {
  const pids = await holdersSoon(srcPath);
  return pids !== null && pids.length === 0 ? 0 : COPY_DEFAULTS.sleepMs;
}


/** What helps when a writer keeps changing the database under the copy. */
function busyHint(mode: JournalMode): string {
  return mode === 'wal'
    ? 'try again when the server is less busy, or raise --retries / --timeout, or use --sleep-ms 0 to copy faster'
    : 'the database is in rollback-journal mode and written without pause: switch blufio to WAL mode (storage.wal_mode = true), or raise --retries / --timeout';
}
