/**
 * inspect(): what a person needs to know about a database file before trusting it — integrity,
 * size, format, who wrote it, and what it holds. Read-only, through the same consistent view as a
 * backup, so it is safe on a live database as well as on a backup file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkSource, sourceBytes } from './build.ts';
import { ensureRoom, makeWorkDir, sweepWorkDirs } from './files.ts';
import { assertNotLockedOut, sweepStaleClaims } from './claim.ts';
import { copyDatabase } from './copy.ts';
import { fromSqliteException, integrityOf } from './core/sqlite-errors.ts';
import { journalModeOf } from './core/header.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import { afterBlockingCall, prepareCheck, stopWhen, stopped } from './integrity.ts';
import { BlufioError, renamed } from './errors.ts';
import type { ObjectStorageOptions } from './storage/index.ts';
import type { SetEntry } from './sets/index.ts';
import { withSource } from './sources.ts';
import { compressed, encrypted, type KeyOptions, type Layers, layersFor, layersOfFile, PLAIN, unpackFile } from './transforms/index.ts';
import { RetryAttempt } from './retry.ts';
import { openSnapshotView } from './snapshot/snapshot.ts';
import { loadSqlite, openDb, vfsOf } from './sqlite.ts';

export interface TableInfo {
  name: string;
  /** null for a virtual table (not counted), or a table that cannot be counted here. */
  rows: number | null;
  /** A virtual table (FTS5, …); its shadow tables are not listed. */
  virtual?: true;
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
  /** Size of the file (compressed and/or encrypted, for a .gz / .age). */
  bytes: number;
  compressed: boolean;
  /** An age-encrypted file (decrypted with the given identities to be checked). */
  encrypted: boolean;
  pageSize: number;
  pages: number;
  journalMode: 'wal' | 'rollback';
  /** The SQLite version that last wrote the file (header offset 96). */
  sqliteVersion: string;
  tables: TableInfo[];
  /** Things to know about a sound file: "empty database (no tables)", a WAL-mode file without its -wal. */
  warnings: string[];
}

export interface InspectOptions extends Pick<KeyOptions, 'identities'>, ObjectStorageOptions {
  /** For a set: check the newest backup at or before this time (default: the newest). */
  at?: Date;
  /** For a set holding several databases' backups: whose (the series name). */
  series?: string;
  /** Ends downloads, decrypting and decompressing (Ctrl-C, --timeout). */
  signal?: AbortSignal;
  /** When the check must end (ms since the epoch; --timeout). */
  deadline?: number;
  /** True once the job must stop (see CopyOptions.interrupted). */
  interrupted?: () => boolean;
  /** integrity_check's quick form. */
  quick?: boolean;
  /** Where a .gz / .age is unpacked, or a live database copied, to be checked (default: the system's temporary directory). */
  workDir?: string;
}

/** Checks a file, or an s3://BUCKET/KEY object (downloaded to a private work directory first). */
export async function inspect(file: string, opts: InspectOptions = {}): Promise<InspectResult> {
  if (typeof file !== 'string' || file === '') throw new BlufioError('E_USAGE', 'inspect() needs the path of a file', 'pass a path (a string)');
  throwIfAborted(opts.signal);
  sweepWorkDirs(opts.workDir);
  // A set: its newest backup (or the one at opts.at); a differential: rebuilt on its base.
  const remote = async (local: string, where: string) => {
    const r = await inspect(local, { ...opts, at: undefined });
    return { ...r, path: where, problems: r.problems.map((p) => p.replaceAll(local, where)) };
  };
  const rebuilt = async (local: string, e: SetEntry, where: string) => {
    const r = await inspect(local, { ...opts, at: undefined });
    return { ...r, path: where, bytes: e.bytes, compressed: true, encrypted: e.encrypted, problems: r.problems.map((p) => p.replaceAll(local, where)) };
  };
  const made = await withSource(file, { ...opts, stem: opts.series }, (local, { where, entry }) => (entry ? rebuilt(local, entry, where) : remote(local, where)));
  if (made) return made.value;
  const abs = path.resolve(file);
  sweepStaleClaims(path.dirname(abs));
  assertNotLockedOut(abs);
  const st = checkSource(abs, 'file', 'check the path');
  let layers: Layers;
  try {
    layers = layersOfFile(abs, opts);
  } catch (e) {
    // A damaged age header is a verdict on the file; a missing or wrong key is not.
    if (e instanceof BlufioError && e.code === 'E_CORRUPT') return failedVerdict(abs, st.size, layersFor({ compress: false, encrypt: true }), opts, e);
    throw e;
  }
  if (layers.length > 0) {
    // Unpacked into a private temporary file, then inspected as it would be restored.
    const dir = makeWorkDir('verify', opts.workDir);
    try {
      const plain = path.join(dir, 'backup.db');
      try {
        await unpackFile(abs, plain, layers, opts, opts.signal);
      } catch (e) {
        // A full or read-only work directory says nothing about the backup: that is the error.
        // A missing or wrong key is not a verdict on the file either (an age file inside gzip is
        // opened only here).
        if (e instanceof BlufioError && e.code === 'E_KEY') throw e;
        if (e instanceof BlufioError && (e.code === 'E_IO' || e.code === 'E_ABORTED' || e.code === 'E_TIMEOUT')) {
          throw new BlufioError(e.code, `${e.message} (the backup itself was not judged)`,
            e.code === 'E_IO' ? 'free some space there, or pass --work-dir <directory> on a file system with room' : e.hint, { cause: e });
        }
        return failedVerdict(abs, st.size, layers, opts, e);
      }
      // What is said of the unpacked copy names the backup, never the private file.
      const shown = `${abs} (${encrypted(layers) ? 'decrypted' : 'unpacked'})`;
      const r = await verdict(plain, opts).catch((e: unknown) => {
        throw renamed(e, plain, shown);
      });
      const name = (t: string) => t.replaceAll(plain, shown);
      return { ...r, problems: r.problems.map(name), warnings: r.warnings.map(name), path: abs, bytes: st.size, compressed: compressed(layers), encrypted: encrypted(layers) };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const r = await verdict(abs, opts);
  if (r.ok && r.journalMode === 'wal' && !fs.existsSync(`${abs}-wal`)) {
    r.warnings.push('a WAL-mode file with no -wal beside it: it holds what was checkpointed into it; commits still in a -wal elsewhere (a file copied from a live server without its -wal) are not in it');
  }
  return r;
}

/** inspectFile(), with the failures a damaged file causes turned into a verdict. */
async function verdict(abs: string, opts: InspectOptions): Promise<InspectResult> {
  const size = fs.statSync(abs).size;
  try {
    const r = await inspectFile(abs, opts);
    if (r.ok && size < 512) return { ...r, ok: false, integrity: 'failed', problems: [`the file is truncated (${size} bytes)`] };
    if (r.ok && r.tables.length === 0) r.warnings.push('empty database (no tables): check that this is the file you meant');
    return r;
  } catch (e) {
    // A damaged file shows as our "not SQLite" / "corrupt" errors, or as any SQLite error.
    const damage = e instanceof BlufioError ? ['E_NOT_SQLITE', 'E_CORRUPT'].includes(e.code) : fromSqliteException(await loadSqlite(), e) !== null;
    if (!damage) throw e;
    return failedVerdict(abs, size, PLAIN, opts, e);
  }
}

function failedVerdict(abs: string, bytes: number, layers: Layers, opts: InspectOptions, e: unknown): InspectResult {
  // The same keys, in the same order, as a verdict on a file that could be read (inspectFile).
  return {
    command: 'verify',
    path: abs,
    compressed: compressed(layers),
    encrypted: encrypted(layers),
    ok: false,
    integrity: 'failed',
    check: opts.quick ? 'quick_check' : 'integrity_check',
    problems: [(e as Error).message],
    bytes,
    pageSize: 0,
    pages: 0,
    journalMode: 'rollback',
    sqliteVersion: 'unknown',
    tables: [],
    warnings: [],
  };
}

/** A check's WebAssembly work per byte of database, counted in bytes of a copy's (see above). */
const CHECK_WORK_PER_BYTE = 3.2;

/** Most looks at a file before inspect() gives up on a live database that keeps changing. */
const INSPECT_ATTEMPTS = 10;

/**
 * Checks the file through a snapshot view. A live database can change while SQLite reads it, and
 * a torn view can look damaged: problems count only when nothing was committed during the check
 * and the same problems are seen twice. A database that keeps moving under the check is checked
 * through a consistent copy instead (the same copy a backup makes).
 */
async function inspectFile(abs: string, opts: InspectOptions): Promise<InspectResult> {
  const st = fs.statSync(abs);
  // The hint tells the CLI how much WebAssembly work is coming (src/bin.ts picks V8's compilers
  // from it). A check does more per byte than a copy: it read each page of a 212 MiB indexed
  // database ~3.6 times, and optimised code paid off above ~160 MiB (1.20 s vs 1.31 s there;
  // at 100 MiB baseline-only won, 0.50 vs 0.57 s; docs/benchmarks.md).
  const sqlite3 = await loadSqlite(st.size * CHECK_WORK_PER_BYTE);
  const { snapshot, name: view, close } = openSnapshotView(vfsOf(sqlite3), abs);
  const check = opts.quick ? 'quick_check' : 'integrity_check';
  let seen: string[] | null = null;
  let moving = 0;
  try {
    for (let attempt = 1; attempt <= INSPECT_ATTEMPTS; attempt++) {
      let db;
      let problems: string[];
      const tables: TableInfo[] = [];
      try {
        snapshot.begin();
        db = openDb(sqlite3, view);
        prepareCheck(db);
        stopWhen(sqlite3, db, opts.deadline, opts.interrupted);
        problems = integrityOf(sqlite3, db, !!opts.quick);
        pastDeadline(opts);
        // Tables and virtual tables, not the shadow tables behind these (an FTS5 index's
        // _data, _idx…). A virtual table is not counted: its rows are its module's to produce
        // (counting an FTS5 table read its whole content: 0.1 s of a 1.4 s check measured).
        const listed = db.selectArrays("SELECT name, type FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite_%' ORDER BY name") as Array<[string, string]>;
        for (const [name, type] of listed) {
          let rows: number | null = null;
          if (type === 'table') {
            try {
              rows = Number(db.selectValue(`SELECT count(*) FROM "${name.replaceAll('"', '""')}"`));
            } catch {
              rows = null;
            }
          }
          tables.push({ name, rows, ...(type === 'virtual' ? { virtual: true } : {}) });
        }
      } catch (e) {
        if (e instanceof RetryAttempt) {
          // Not even a starting point (a rollback-mode commit under way, say): a consistent copy
          // waits for one the way a backup does.
          if (++moving >= 3) return { ...(await inspectCopy(abs, opts)), bytes: st.size };
          continue;
        }
        // An interrupted check says nothing about the file: the time limit is the error.
        pastDeadline(opts);
        // Our own errors other than "not SQLite" / "corrupt" are not about the file's content.
        if (e instanceof BlufioError && !['E_NOT_SQLITE', 'E_CORRUPT'].includes(e.code)) throw e;
        const err = e instanceof BlufioError ? e : fromSqliteException(sqlite3, e);
        if (!err) throw e;
        problems = [err.message];
      } finally {
        db?.close();
      }
      if (problems.length > 0 && snapshot.movedSinceBegin()) {
        // The view may have been torn: no verdict from this look.
        if (++moving >= 3) return { ...(await inspectCopy(abs, opts)), bytes: st.size };
        continue;
      }
      if (problems.length > 0 && (seen === null || seen.join('\n') !== problems.join('\n'))) {
        seen = problems;
        continue;
      }
      await afterBlockingCall(opts.signal);
      const head = snapshot.fileHeader();
      return {
        command: 'verify',
        path: abs,
        compressed: false,
        encrypted: false,
        ok: problems.length === 0,
        integrity: problems.length === 0 ? 'ok' : 'failed',
        check,
        problems,
        bytes: st.size,
        pageSize: snapshot.pageSize,
        pages: snapshot.nPages,
        journalMode: journalModeOf(head),
        sqliteVersion: head.length >= 100 ? versionString(new DataView(head.buffer, head.byteOffset).getUint32(96)) : 'unknown',
        tables,
        warnings: [],
      };
    }
    throw new BlufioError('E_TOO_BUSY', `${abs} kept changing while it was checked`, 'try again when the server is less busy');
  } finally {
    close();
  }
}

function pastDeadline(opts: InspectOptions): void {
  stopped(opts.signal, opts.deadline, opts.interrupted);
}

/** Checks a consistent copy of a live database (made as a backup is) instead of the database. */
async function inspectCopy(abs: string, opts: InspectOptions): Promise<InspectResult> {
  const dir = makeWorkDir('verify', opts.workDir);
  try {
    ensureRoom(dir, sourceBytes(abs), 'a consistent copy of the live database to check', 'free some space there, or pass --work-dir <directory> on a file system with room');
    const copy = path.join(dir, 'copy.db');
    let seen: string | null = null;
    for (;;) {
      const r = await copyDatabase(abs, copy);
      const result = await inspectFile(copy, opts);
      const key = result.problems.join('\n');
      // A copy is one committed state; still, damage is reported only when two copies show it.
      if (result.ok || key === seen) {
        return { ...result, path: abs, journalMode: r.journalMode };
      }
      seen = key;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** 3040001 -> "3.40.1" */
function versionString(n: number): string {
  if (!n) return 'unknown';
  return `${Math.floor(n / 1000000)}.${Math.floor(n / 1000) % 1000}.${n % 1000}`;
}
