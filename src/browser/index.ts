/**
 * blufio backup & restore in browsers: databases kept in the Origin Private File System, through
 * sqlite-wasm's "opfs-sahpool" VFS. Runs in a dedicated Worker (that VFS needs synchronous access
 * handles, which only workers have). The copying is the same core as on Node
 * (../core/backup-loop.ts): SQLite's backup API, pages per step, progress, abort, integrity check
 * and BlufioError codes.
 *
 *   const store = await openOpfsStore();
 *   await store.backup('blufio.db', 'backup.db', { onProgress });
 *   const bytes = await store.exportDatabase('blufio.db');   // a verified copy, for download
 *   await store.importDatabase('blufio.db', bytes);          // validated before anything changes
 */
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';
import wasmBinary from '@sqlite.org/sqlite-wasm/sqlite3.wasm';
import { runBackupLoop, throwIfAborted } from '../core/backup-loop.ts';
import { integrityOf, sqliteError } from '../core/sqlite-errors.ts';
import type { Database, Sqlite3 } from '../core/types.ts';
import { BlufioError } from '../errors.ts';
import type { ProgressCallback } from '../progress.ts';

export { BlufioError };
export type { Progress, ProgressCallback } from '../progress.ts';

export interface OpfsCopyOptions {
  /** Pages per step of the backup API (default 100). */
  pagesPerStep?: number;
  /** Pause between steps in ms (default 0: a page in a browser shares nothing with a server). */
  sleepMs?: number;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
}

export interface OpfsCopyResult {
  source: string;
  destination: string;
  pages: number;
  pageSize: number;
  bytes: number;
  durationMs: number;
  integrity: 'ok';
}

export interface OpfsStore {
  readonly vfs: string;
  /** Opens (creating if asked) a database in the store, for the application's own use. */
  open(name: string, opts?: { create?: boolean }): Database;
  /** Names of the databases in the store. */
  list(): string[];
  exists(name: string): boolean;
  /** Backs up `source` to `destination` (replaced only once the copy is verified). */
  backup(source: string, destination: string, opts?: OpfsCopyOptions): Promise<OpfsCopyResult>;
  /** A verified copy of `name` as bytes, e.g. for a download. */
  exportDatabase(name: string, opts?: OpfsCopyOptions): Promise<Uint8Array>;
  /**
   * Replaces (or creates) `name` with the database in `bytes`: checked for the SQLite header and
   * with integrity_check first; the current database is kept as `<name>.pre-restore`.
   */
  importDatabase(name: string, bytes: Uint8Array, opts?: OpfsCopyOptions): Promise<OpfsCopyResult & { safetyCopy: string | null }>;
  remove(name: string): void;
}

const SQLITE_HEADER = 'SQLite format 3\0';
let loading: Promise<Sqlite3> | undefined;

function loadSqlite(): Promise<Sqlite3> {
  loading ??= (sqlite3InitModule as (arg: unknown) => Promise<Sqlite3>)({ wasmBinary, print: () => {}, printErr: () => {} });
  return loading;
}

/** Opens the OPFS store (installs the opfs-sahpool VFS once). Call it in a dedicated Worker. */
export async function openOpfsStore(opts: { name?: string; directory?: string } = {}): Promise<OpfsStore> {
  const sqlite3 = await loadSqlite();
  const name = opts.name ?? 'blufio-sahpool';
  const pool = await (sqlite3 as unknown as { installOpfsSAHPoolVfs(o: object): Promise<SahPool> }).installOpfsSAHPoolVfs({
    name,
    directory: opts.directory ?? '/blufio',
    initialCapacity: 8,
  });
  return new SahPoolStore(sqlite3, pool);
}

interface SahPool {
  vfsName: string;
  getFileNames(): string[];
  exportFile(name: string): Uint8Array;
  importDb(name: string, bytes: Uint8Array): number;
  unlink(name: string): boolean;
  getCapacity(): number;
  getFileCount(): number;
  addCapacity(n: number): Promise<number>;
}

const path = (name: string) => (name.startsWith('/') ? name : `/${name}`);
let tempCounter = 0;

class SahPoolStore implements OpfsStore {
  readonly vfs: string;

  constructor(
    private readonly sqlite3: Sqlite3,
    private readonly pool: SahPool,
  ) {
    this.vfs = pool.vfsName;
  }

  open(name: string, opts: { create?: boolean } = {}): Database {
    if (!opts.create && !this.exists(name)) {
      throw new BlufioError('E_SOURCE_MISSING', `database not found in OPFS: ${name}`, 'create it first, or check the name');
    }
    return new this.sqlite3.oo1.DB({ filename: path(name), flags: opts.create ? 'c' : 'w', vfs: this.vfs });
  }

  list(): string[] {
    return this.pool.getFileNames().filter((n) => !/-(journal|wal)$/.test(n)).map((n) => n.replace(/^\//, ''));
  }

  exists(name: string): boolean {
    return this.pool.getFileNames().includes(path(name));
  }

  remove(name: string): void {
    this.pool.unlink(path(name));
  }

  async backup(source: string, destination: string, opts: OpfsCopyOptions = {}): Promise<OpfsCopyResult> {
    const started = performance.now();
    if (source === destination) throw new BlufioError('E_SAME_FILE', `the backup ${destination} is the database itself`, 'choose another name');
    const tmp = await this.verifiedCopy(source, opts);
    try {
      const r = await this.replaceWith(destination, tmp, opts);
      return { ...r, source, destination, durationMs: Math.round(performance.now() - started) };
    } finally {
      this.pool.unlink(path(tmp));
    }
  }

  async exportDatabase(name: string, opts: OpfsCopyOptions = {}): Promise<Uint8Array> {
    const tmp = await this.verifiedCopy(name, opts);
    try {
      return this.pool.exportFile(path(tmp));
    } finally {
      this.pool.unlink(path(tmp));
    }
  }

  async importDatabase(name: string, bytes: Uint8Array, opts: OpfsCopyOptions = {}) {
    const started = performance.now();
    if (bytes.length === 0) throw new BlufioError('E_NOT_SQLITE', 'the file is empty', 'choose a file made by blufio backup');
    if (new TextDecoder().decode(bytes.subarray(0, 16)) !== SQLITE_HEADER) {
      throw new BlufioError('E_NOT_SQLITE', 'the file is not an SQLite database (no SQLite header)', 'choose a file made by blufio backup');
    }
    if (bytes.length < 512) throw new BlufioError('E_CORRUPT', `the file is truncated (${bytes.length} bytes)`, 'choose another backup file');
    const copy = Uint8Array.from(bytes);
    // A file exported by a WAL-mode database says so in bytes 18/19; in the store it is one file.
    copy[18] = 1;
    copy[19] = 1;
    const staged = await this.tempName();
    try {
      this.pool.importDb(path(staged), copy);
    } catch (e) {
      throw new BlufioError('E_CORRUPT', `the file cannot be imported: ${(e as Error).message}`, 'choose another backup file', { cause: e });
    }
    try {
      this.assertSound(staged, 'the imported file');
      let safetyCopy: string | null = null;
      if (this.exists(name)) {
        safetyCopy = `${name}.pre-restore`;
        await this.backup(name, safetyCopy, opts);
      }
      const r = await this.replaceWith(name, staged, opts);
      return { ...r, source: 'imported file', destination: name, durationMs: Math.round(performance.now() - started), safetyCopy };
    } finally {
      this.pool.unlink(path(staged));
    }
  }

  /** Copies `source` into a new temporary database with the backup API and verifies it. */
  private async verifiedCopy(source: string, opts: OpfsCopyOptions): Promise<string> {
    const tmp = await this.tempName();
    try {
      await this.copy(source, tmp, opts);
      this.assertSound(tmp, `the copy of ${source}`);
      return tmp;
    } catch (e) {
      this.pool.unlink(path(tmp));
      throw e;
    }
  }

  /**
   * Replaces `name` with the verified database `from` in one backup-API pass: SQLite writes the
   * destination in one transaction, so it is either the old database or the new one.
   */
  private async replaceWith(name: string, from: string, opts: OpfsCopyOptions) {
    await this.copy(from, name, { ...opts, pagesPerStep: -1, onProgress: undefined });
    const db = this.open(name);
    try {
      const pageSize = Number(db.selectValue('PRAGMA page_size'));
      const pages = Number(db.selectValue('PRAGMA page_count'));
      return { pages, pageSize, bytes: pages * pageSize, integrity: 'ok' as const };
    } finally {
      db.close();
    }
  }

  private async copy(source: string, dest: string, opts: OpfsCopyOptions): Promise<void> {
    throwIfAborted(opts.signal);
    const src = this.open(source);
    let dst: Database | undefined;
    try {
      dst = this.open(dest, { create: true });
      const pageSize = Number(src.selectValue('PRAGMA page_size'));
      await runBackupLoop(this.sqlite3, src, dst, {
        pagesPerStep: opts.pagesPerStep ?? 100,
        sleepMs: opts.sleepMs ?? 0,
        attempt: 1,
        pageSize,
        signal: opts.signal,
        onProgress: opts.onProgress,
        source,
      });
    } finally {
      src.close();
      dst?.close();
    }
  }

  private assertSound(name: string, what: string): void {
    let db: Database | undefined;
    let problems: string[];
    try {
      db = this.open(name);
      problems = integrityOf(this.sqlite3, db);
    } catch (e) {
      const rc = (e as { resultCode?: number }).resultCode;
      if (typeof rc !== 'number') throw e;
      problems = [sqliteError(this.sqlite3, rc, (e as Error).message).message];
    } finally {
      db?.close();
    }
    if (problems.length > 0) {
      throw new BlufioError('E_INTEGRITY', `${what} failed the integrity check: ${problems[0]}`, 'choose another backup file');
    }
  }

  /** A fresh name for a temporary database, with room in the pool for it. */
  private async tempName(): Promise<string> {
    if (this.pool.getFileCount() + 2 > this.pool.getCapacity()) await this.pool.addCapacity(4);
    return `.blufio-tmp-${Date.now().toString(36)}-${++tempCounter}.db`;
  }
}
