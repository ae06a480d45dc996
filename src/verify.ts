/** Integrity checks of finished copies, through SQLite itself. */
import { fromSqliteException, integrityOf } from './core/sqlite-errors.ts';
import { loadSqlite, openDb } from './sqlite.ts';

/**
 * Runs `PRAGMA integrity_check` (or quick_check) on the file at `path`, read-only. Returns the
 * problems SQLite reports; an empty list means the database is sound.
 */
export async function integrityProblems(path: string, quick = false, maxErrors = 20): Promise<string[]> {
  const sqlite3 = await loadSqlite();
  let db;
  try {
    db = openDb(sqlite3, path);
    db.exec('PRAGMA temp_store=MEMORY');
    return integrityOf(sqlite3, db, quick, maxErrors);
  } catch (e) {
    const err = fromSqliteException(sqlite3, e);
    if (err) return [err.message];
    throw e;
  } finally {
    db?.close();
  }
}
