/**
 * inspect(): what a person needs to know about a database file before trusting it — integrity,
 * size, format, who wrote it, and what it holds. Read-only, through the same consistent view as a
 * backup, so it is safe on a live database as well as on a backup file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkSource } from './backup.ts';
import { fromSqliteException, integrityOf } from './core/sqlite-errors.ts';
import { BlufioError } from './errors.ts';
import { gunzipFile, isGzip } from './gzip.ts';
import { openSnapshotView, RetryAttempt } from './snapshot.ts';
import { loadSqlite, openDb } from './sqlite.ts';

export interface TableInfo {
  name: string;
  /** null when the table cannot be counted here (e.g. a virtual table whose module is missing). */
  rows: number | null;
}

export interface InspectResult {
  command: 'verify';
  path: string;
  /** true when the file passed the check and would restore cleanly. */
  ok: boolean;
  integrity: 'ok' | 'failed';
  check: 'integrity_check' | 'quick_check';
  /** What the check reported, when it did not pass (at most 20 lines). */
  problems: string[];
  /** Size of the file (compressed, for a .gz). */
  bytes: number;
  compressed: boolean;
  pageSize: number;
  pages: number;
  journalMode: 'wal' | 'rollback';
  /** The SQLite version that last wrote the file (header offset 96). */
  sqliteVersion: string;
  tables: TableInfo[];
}

export async function inspect(file: string, opts: { quick?: boolean } = {}): Promise<InspectResult> {
  const abs = path.resolve(file);
  const st = checkSource(abs, 'file', 'check the path');
  if (st.size >= 2 && isGzip(abs)) {
    // Decompressed into a private temporary file, then inspected as it would be restored.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-verify-'));
    try {
      const plain = path.join(dir, 'backup.db');
      try {
        await gunzipFile(abs, plain);
      } catch (e) {
        return failedVerdict(abs, st.size, true, opts, e);
      }
      return { ...(await verdict(plain, opts)), path: abs, bytes: st.size, compressed: true };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return verdict(abs, opts);
}

/** inspectFile(), with the failures a damaged file causes turned into a verdict. */
async function verdict(abs: string, opts: { quick?: boolean }): Promise<InspectResult> {
  const size = fs.statSync(abs).size;
  try {
    const r = await inspectFile(abs, opts);
    if (r.ok && size < 512) return { ...r, ok: false, problems: [`the file is truncated (${size} bytes)`] };
    return r;
  } catch (e) {
    // A damaged file shows as our "not SQLite" / "corrupt" errors, or as any SQLite error.
    const damage = e instanceof BlufioError ? ['E_NOT_SQLITE', 'E_CORRUPT'].includes(e.code) : fromSqliteException(await loadSqlite(), e) !== null;
    if (!damage) throw e;
    return failedVerdict(abs, size, false, opts, e);
  }
}

function failedVerdict(abs: string, bytes: number, compressed: boolean, opts: { quick?: boolean }, e: unknown): InspectResult {
  return {
    command: 'verify',
    path: abs,
    ok: false,
    integrity: 'failed',
    check: opts.quick ? 'quick_check' : 'integrity_check',
    problems: [(e as Error).message],
    bytes,
    compressed,
    pageSize: 0,
    pages: 0,
    journalMode: 'rollback',
    sqliteVersion: 'unknown',
    tables: [],
  };
}

async function inspectFile(abs: string, opts: { quick?: boolean }): Promise<InspectResult> {
  const st = fs.statSync(abs);
  const sqlite3 = await loadSqlite(st.size);
  const { snapshot, name: view, close } = openSnapshotView(abs);
  const check = opts.quick ? 'quick_check' : 'integrity_check';
  try {
    for (let attempt = 1; ; attempt++) {
      snapshot.begin();
      let db;
      try {
        db = openDb(sqlite3, view);
        db.exec('PRAGMA temp_store=MEMORY');
        const head = snapshot.fileHeader();
        let problems = integrityOf(sqlite3, db, !!opts.quick);
        const tables: TableInfo[] = [];
        try {
          for (const name of db.selectValues("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name") as string[]) {
            let rows: number | null = null;
            try {
              rows = Number(db.selectValue(`SELECT count(*) FROM "${name.replaceAll('"', '""')}"`));
            } catch {
              rows = null;
            }
            tables.push({ name, rows });
          }
        } catch (e) {
          if (problems.length === 0) problems = [(fromSqliteException(sqlite3, e) ?? (e as Error)).message];
        }
        snapshot.stillValid(true);
        const pageSize = snapshot.pageSize;
        return {
          command: 'verify',
          path: abs,
          compressed: false,
          ok: problems.length === 0,
          integrity: problems.length === 0 ? 'ok' : 'failed',
          check,
          problems,
          bytes: st.size,
          pageSize,
          pages: snapshot.nPages,
          journalMode: head[18] === 2 ? 'wal' : 'rollback',
          sqliteVersion: head.length >= 100 ? versionString(new DataView(head.buffer, head.byteOffset).getUint32(96)) : 'unknown',
          tables,
        };
      } catch (e) {
        if (e instanceof RetryAttempt && attempt < 10) continue;
        if (e instanceof RetryAttempt) throw new BlufioError('E_TOO_BUSY', `the file kept changing while it was read: ${e.reason}`, 'try again');
        throw e;
      } finally {
        db?.close();
      }
    }
  } finally {
    close();
  }
}

/** 3040001 -> "3.40.1" */
export function versionString(n: number): string {
  if (!n) return 'unknown';
  return `${Math.floor(n / 1000000)}.${Math.floor(n / 1000) % 1000}.${n % 1000}`;
}
