/** The integrity check of a finished file, through SQLite itself (blufio verify is inspect.ts). */
import { fromSqliteException, integrityOf } from './core/sqlite-errors.ts';
import { loadSqlite, openDb } from './sqlite.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import { timeLimitError } from './errors.ts';

/**
 * Runs `PRAGMA integrity_check` (or quick_check) on the file at `path`, read-only. Returns the
 * problems SQLite reports; an empty list means the database is sound.
 */
export async function integrityProblems(path: string, quick = false, maxErrors = 20, signal?: AbortSignal, deadline?: number): Promise<string[]> {
  const sqlite3 = await loadSqlite();
  let db;
  try {
    db = openDb(sqlite3, path);
    db.exec('PRAGMA temp_store=MEMORY');
    // The check is one long call that the event loop cannot interrupt: SQLite's progress
    // handler ends it when the time limit has passed.
    if (deadline !== undefined) sqlite3.capi.sqlite3_progress_handler(db.pointer!, 10_000, () => (Date.now() > deadline ? 1 : 0), 0);
    const problems = integrityOf(sqlite3, db, quick, maxErrors);
    if (problems.length > 0) pastDeadline(signal, deadline);
    return problems;
  } catch (e) {
    pastDeadline(signal, deadline);
    const err = fromSqliteException(sqlite3, e);
    if (err) return [err.message];
    throw e;
  } finally {
    db?.close();
  }
}

/** A check interrupted by the time limit says nothing about the file: the limit is the error. */
function pastDeadline(signal?: AbortSignal, deadline?: number): void {
  if (deadline === undefined || Date.now() <= deadline) return;
  throwIfAborted(signal);
  throw timeLimitError();
}
