/** The integrity check of a finished file, through SQLite itself (blufio verify is inspect.ts). */
import { fromSqliteException, integrityOf } from './core/sqlite-errors.ts';
import { loadSqlite, openDb, type Database, type Sqlite3 } from './sqlite.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import { timeLimitError } from './errors.ts';

/**
 * Runs `PRAGMA integrity_check` (or quick_check) on the file at `path`, read-only. Returns the
 * problems SQLite reports; an empty list means the database is sound.
 */
export async function integrityProblems(path: string, quick = false, maxErrors = 20, signal?: AbortSignal, deadline?: number, interrupted?: () => boolean): Promise<string[]> {
  const sqlite3 = await loadSqlite();
  let db;
  try {
    db = openDb(sqlite3, path);
    prepareCheck(db);
    stopWhen(sqlite3, db, deadline, interrupted);
    const problems = integrityOf(sqlite3, db, quick, maxErrors);
    if (problems.length > 0) stopped(signal, deadline, interrupted);
    return problems;
  } catch (e) {
    stopped(signal, deadline, interrupted);
    const err = fromSqliteException(sqlite3, e);
    if (err) return [err.message];
    throw e;
  } finally {
    db?.close();
  }
}

/**
 * Settings for a connection that runs the check: temporary b-trees in memory, and SQLite's own
 * 2 MiB page cache instead of sqlite-wasm's 16 MiB. The bigger cache is slower and heavier on
 * every database measured, the indexed ones included: a verified 100 MiB backup 0.55 s / 78 MiB
 * RSS against 0.60 s / 92 MiB; `verify` of a 200 MiB indexed and FTS5 database 1.16-1.21 s /
 * 102 MiB against 1.26-1.34 s / 122 MiB (docs/benchmarks.md). The check reads each page about
 * twice whatever the cache, and a bigger WebAssembly heap costs its page faults.
 */
export function prepareCheck(db: Database): void {
  db.exec('PRAGMA temp_store=MEMORY; PRAGMA cache_size=-2048;');
}

/**
 * The check is one long call that the event loop cannot interrupt: SQLite's progress handler
 * ends it when the time limit has passed or the job was interrupted (offThread).
 */
export function stopWhen(sqlite3: Sqlite3, db: Database, deadline?: number, interrupted?: () => boolean): void {
  if (deadline === undefined && !interrupted) return;
  sqlite3.capi.sqlite3_progress_handler(db.pointer!, 10_000, () => ((deadline !== undefined && Date.now() > deadline) || interrupted?.() ? 1 : 0), 0);
}

/**
 * The check (or an fsync) is one long synchronous call: a signal that arrives meanwhile (Ctrl-C,
 * SIGTERM) waits for it, since its handler runs only when the event loop gets to it. Waiting here
 * until it has lets the handler run, so that an interrupted job stops here, before anything is
 * published. What that takes differs by runtime: one setImmediate can run before Node polls
 * (a bare script missed the signal) and Deno delivered it only after a timer, not after two
 * nested immediates (it published a backup and a restore interrupted during their check, exit 0).
 * A timer, then an immediate (which Node runs after its next poll) is enough under all three.
 */
export async function afterBlockingCall(signal?: AbortSignal): Promise<void> {
  await new Promise((resolve) => setTimeout(() => setImmediate(resolve), 0));
  throwIfAborted(signal);
}

/** A check ended by an interruption or the time limit says nothing about the file: that is the error. */
export function stopped(signal?: AbortSignal, deadline?: number, interrupted?: () => boolean): void {
  interrupted?.();
  throwIfAborted(signal);
  if (deadline !== undefined && Date.now() > deadline) throw timeLimitError();
}
