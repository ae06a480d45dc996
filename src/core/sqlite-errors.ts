/** SQLite result codes turned into errors a user can act on (Node and browser alike). */
import { BlufioError } from './errors.ts';
import type { Database, Sqlite3 } from './types.ts';

/** Throws a BlufioError for a non-OK SQLite result code. */
export function check(sqlite3: Sqlite3, db: Database, rc: number, doing: string): void {
  if (rc === 0) return;
  const msg = sqlite3.capi.sqlite3_errmsg(db.pointer!) || sqlite3.capi.sqlite3_errstr(rc);
  throw sqliteError(sqlite3, rc, `${doing}: ${msg}`);
}

/** Maps an SQLite result code to the error kind a user can act on. */
function sqliteError(sqlite3: Sqlite3, rc: number, text: string, cause?: unknown): BlufioError {
  const { capi } = sqlite3;
  // The WASM build prefixes its messages with "SQLITE_CORRUPT: sqlite3 result code 11: ".
  const message = text.replace(/SQLITE_[A-Z_]+: sqlite3 result code \d+: /g, '');
  switch (rc & 0xff) {
    case capi.SQLITE_NOTADB:
      return new BlufioError('E_NOT_SQLITE', message, 'make sure the file is an SQLite database', { cause });
    case capi.SQLITE_CORRUPT:
      return new BlufioError('E_CORRUPT', message, 'the file is damaged: check it with sqlite3 <file> "PRAGMA integrity_check", or use another copy', { cause });
    case capi.SQLITE_CANTOPEN:
      return new BlufioError('E_IO', message, 'check that the file exists and is readable', { cause });
    case capi.SQLITE_FULL:
      return new BlufioError('E_IO', message, 'free some disk space and try again', { cause });
    default:
      return new BlufioError('E_IO', message, undefined, { cause });
  }
}

/**
 * The BlufioError for an exception the WASM build threw for an SQLite result code (it carries
 * `resultCode`), with `doing` in front of its message; null for any other exception.
 */
export function fromSqliteException(sqlite3: Sqlite3, e: unknown, doing?: string): BlufioError | null {
  const rc = (e as { resultCode?: unknown })?.resultCode;
  if (typeof rc !== 'number') return null;
  const msg = (e as Error).message;
  return sqliteError(sqlite3, rc, doing ? `${doing}: ${msg}` : msg, e);
}

/** The problems PRAGMA integrity_check (or quick_check) reports; empty when the database is sound. */
export function integrityOf(sqlite3: Sqlite3, db: Database, quick = false, maxErrors = 20): string[] {
  try {
    const rows = db.selectValues(`PRAGMA ${quick ? 'quick_check' : 'integrity_check'}(${maxErrors})`) as string[];
    if (rows.length === 1 && rows[0] === 'ok') return [];
    // A row may hold several lines ("*** in database main ***\nTree 2 page 2 …"): one problem a line.
    return rows.flatMap((r) => String(r).split('\n')).map((l) => l.trim()).filter((l) => l !== '' && !/^\*\*\* in database \w+ \*\*\*$/.test(l));
  } catch (e) {
    const err = fromSqliteException(sqlite3, e);
    if (err) return [err.message];
    throw e;
  }
}

/**
 * The verdict on a check that found problems, the same words on every path (Node and browsers):
 * "<what> failed the integrity check: <first problem> (and N more)". The problems stay available
 * on the error for reports that list them all.
 */
export function integrityError(what: string, problems: string[], hint: string): BlufioError & { problems: string[] } {
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  return Object.assign(new BlufioError('E_INTEGRITY', `${what} failed the integrity check: ${problems[0]}${more}`, hint), { problems });
}
