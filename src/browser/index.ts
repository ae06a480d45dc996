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
import { fromSqliteException, integrityError, integrityOf } from '../core/sqlite-errors.ts';
import type { Database, Sqlite3 } from '../core/types.ts';
import { checkBackupHeader, HEADER_BYTES, setJournalMode } from '../core/header.ts';
import { BlufioError } from '../core/errors.ts';
import type { ProgressCallback } from '../core/progress.ts';

export { BlufioError };
export type { Progress, ProgressCallback } from '../core/progress.ts';

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
  /** "opfs-sahpool" or "opfs". */
  readonly vfs: string;
  /** Opens (creating if asked) a database in the store, for the application's own use. */
  open(name: string, opts?: { create?: boolean }): Database;
  /** Names of the databases in the store. */
  list(): Promise<string[]>;
  exists(name: string): Promise<boolean>;
  /** Backs up `source` to `destination` (replaced only once the copy is verified). */
  backup(source: string, destination: string, opts?: OpfsCopyOptions): Promise<OpfsCopyResult>;
  /** A verified copy of `name` as bytes, e.g. for a download. */
  exportDatabase(name: string, opts?: OpfsCopyOptions): Promise<Uint8Array>;
  /**
   * Replaces (or creates) `name` with the database in `bytes`: checked for the SQLite header and
   * with integrity_check first; the current database is kept as `<name>.pre-restore`.
   */
  importDatabase(name: string, bytes: Uint8Array, opts?: OpfsCopyOptions): Promise<OpfsCopyResult & { safetyCopy: string | null; earlierSafetyCopy: string | null }>;
  remove(name: string): Promise<void>;
}

let loading: Promise<Sqlite3> | undefined;

/** What sqlite-wasm warned about while starting (e.g. why the "opfs" VFS could not be installed). */
const startupWarnings: string[] = [];

function loadSqlite(): Promise<Sqlite3> {
  const keep = (...args: unknown[]) => startupWarnings.push(args.map((a) => (a instanceof Error ? a.message : String(a))).join(' '));
  (globalThis as { sqlite3ApiConfig?: object }).sqlite3ApiConfig = { warn: keep, error: keep, log: () => {}, debug: () => {} };
  loading ??= (sqlite3InitModule as (arg: unknown) => Promise<Sqlite3>)({ wasmBinary, print: () => {}, printErr: () => {} });
  return loading;
}

/**
 * Opens the OPFS store, in a dedicated Worker. `vfs`:
 * - "opfs-sahpool" (default): sqlite-wasm's pool of sync access handles; no special headers, one
 *   worker at a time per origin;
 * - "opfs": plain OPFS files, shared with other tools of the origin; needs cross-origin isolation
 *   (COOP/COEP headers) and sqlite3-opfs-async-proxy.js served beside the bundle.
 */
export async function openOpfsStore(opts: { vfs?: 'opfs-sahpool' | 'opfs'; directory?: string } = {}): Promise<OpfsStore> {
  const sqlite3 = await loadSqlite();
  const directory = opts.directory ?? '/blufio';
  if (opts.vfs === 'opfs') {
    // sqlite-wasm registers "opfs" once its async proxy worker has answered, which can be after
    // the module itself is ready: give it the few seconds its own start-up timeout allows.
    const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
    for (let waited = 0; isolated && !sqlite3.capi.sqlite3_vfs_find('opfs') && waited < 5000; waited += 50) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!sqlite3.capi.sqlite3_vfs_find('opfs')) {
      throw new BlufioError('E_IO', `the "opfs" VFS is not available here${startupWarnings.length ? ` (${startupWarnings.join('; ')})` : ''}`,
        'serve the page with COOP/COEP headers (cross-origin isolation), run this in a Worker, and serve sqlite3-opfs-async-proxy.js beside the bundle; or use vfs "opfs-sahpool"');
    }
    return new PlainOpfsStore(sqlite3, directory);
  }
  const pool = await (sqlite3 as unknown as { installOpfsSAHPoolVfs(o: object): Promise<SahPool> }).installOpfsSAHPoolVfs({
    name: 'blufio-sahpool',
    directory,
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

let tempCounter = 0;

/**
 * What both stores share: the copy (backup API), verification, export and validated import.
 * Subclasses say how files are named, listed, read whole and written whole.
 */
abstract class StoreBase implements OpfsStore {
  abstract readonly vfs: string;
  protected abstract path(name: string): string;
  protected abstract fileNames(): Promise<string[]>;
  protected abstract readWhole(name: string): Promise<Uint8Array>;
  protected abstract writeWhole(name: string, bytes: Uint8Array): Promise<void>;
  protected abstract unlink(name: string): Promise<void>;
  /** Makes room for `n` more files, where the store has a capacity. */
  protected async reserve(_n: number): Promise<void> {}

  constructor(
    protected readonly sqlite3: Sqlite3,
    /** The name the VFS is registered under. */
    private readonly registeredVfs: string,
  ) {}

  open(name: string, opts: { create?: boolean } = {}): Database {
    try {
      return new this.sqlite3.oo1.DB({ filename: this.path(name), flags: opts.create ? 'c' : 'w', vfs: this.registeredVfs });
    } catch (e) {
      const rc = (e as { resultCode?: unknown }).resultCode;
      if (typeof rc === 'number' && (rc & 0xff) === this.sqlite3.capi.SQLITE_CANTOPEN) {
        throw new BlufioError('E_SOURCE_MISSING', `database not found in OPFS: ${name}`, 'create it first, or check the name', { cause: e });
      }
      throw e;
    }
  }

  async list(): Promise<string[]> {
    return (await this.fileNames()).filter((n) => !/-(journal|wal)$/.test(n) && !n.startsWith('.blufio-tmp-')).sort();
  }

  async exists(name: string): Promise<boolean> {
    return (await this.fileNames()).includes(name);
  }

  async remove(name: string): Promise<void> {
    await this.unlink(name);
  }
  async backup(source: string, destination: string, opts: OpfsCopyOptions = {}): Promise<OpfsCopyResult> {
    const started = performance.now();
    if (source === destination) throw new BlufioError('E_SAME_FILE', `the backup ${destination} is the database itself`, 'choose another name');
    const tmp = await this.verifiedCopy(source, opts);
    try {
      const r = await this.replaceWith(destination, tmp, opts);
      return { ...r, source, destination, durationMs: Math.round(performance.now() - started) };
    } finally {
      await this.unlink(tmp);
    }
  }

  async exportDatabase(name: string, opts: OpfsCopyOptions = {}): Promise<Uint8Array> {
    const tmp = await this.verifiedCopy(name, opts);
    try {
      return await this.readWhole(tmp);
    } finally {
      await this.unlink(tmp);
    }
  }

  async importDatabase(name: string, bytes: Uint8Array, opts: OpfsCopyOptions = {}) {
    const started = performance.now();
    checkBackupHeader(bytes.subarray(0, HEADER_BYTES), bytes.length, 'the file',
      { notBackup: 'choose a file made by blufio backup', damaged: 'choose another backup file' });
    // A file exported by a WAL-mode database says so in bytes 18/19; in the store it is one file.
    const copy = setJournalMode(Uint8Array.from(bytes), false);
    const staged = await this.tempName();
    try {
      await this.writeWhole(staged, copy);
    } catch (e) {
      throw new BlufioError('E_CORRUPT', `the file cannot be imported: ${(e as Error).message}`, 'choose another backup file', { cause: e });
    }
    try {
      this.assertSound(staged, 'the imported file');
      let safetyCopy: string | null = null;
      let earlierSafetyCopy: string | null = null;
      if (await this.exists(name)) {
        safetyCopy = `${name}.pre-restore`;
        // An earlier safety copy is kept under a dated name, never overwritten (as on Node).
        if (await this.exists(safetyCopy)) earlierSafetyCopy = await this.keepEarlier(safetyCopy);
        await this.backup(name, safetyCopy, opts);
      }
      const r = await this.replaceWith(name, staged, opts);
      return { ...r, source: 'imported file', destination: name, durationMs: Math.round(performance.now() - started), safetyCopy, earlierSafetyCopy };
    } finally {
      await this.unlink(staged);
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
      await this.unlink(tmp);
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
      const err = fromSqliteException(this.sqlite3, e);
      if (!err) throw e;
      problems = [err.message];
    } finally {
      db?.close();
    }
    if (problems.length > 0) {
      throw integrityError(what, problems, 'choose another backup file');
    }
  }

  /** Copies `safetyCopy`, byte for byte, to `<safetyCopy>-<YYYYMMDDTHHMMSSZ>` (-2, -3… if taken); returns that name. */
  private async keepEarlier(safetyCopy: string): Promise<string> {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    let to = `${safetyCopy}-${stamp}`;
    for (let n = 2; await this.exists(to); n++) to = `${safetyCopy}-${stamp}-${n}`;
    await this.writeWhole(to, await this.readWhole(safetyCopy));
    return to;
  }

  /** A fresh name for a temporary database, with room in the store for it. */
  private async tempName(): Promise<string> {
    await this.reserve(2);
    return `.blufio-tmp-${Date.now().toString(36)}-${++tempCounter}.db`;
  }
}

/** opfs-sahpool: files live in a pool of pre-opened sync access handles. */
class SahPoolStore extends StoreBase {
  readonly vfs = 'opfs-sahpool';

  constructor(
    sqlite3: Sqlite3,
    private readonly pool: SahPool,
  ) {
    super(sqlite3, pool.vfsName);
  }

  protected path(name: string): string {
    return name.startsWith('/') ? name : `/${name}`;
  }

  protected async fileNames(): Promise<string[]> {
    return this.pool.getFileNames().map((n) => n.replace(/^\//, ''));
  }

  protected async readWhole(name: string): Promise<Uint8Array> {
    return this.pool.exportFile(this.path(name));
  }

  protected async writeWhole(name: string, bytes: Uint8Array): Promise<void> {
    this.pool.importDb(this.path(name), bytes);
  }

  protected async unlink(name: string): Promise<void> {
    this.pool.unlink(this.path(name));
  }

  protected override async reserve(n: number): Promise<void> {
    if (this.pool.getFileCount() + n > this.pool.getCapacity()) await this.pool.addCapacity(n + 2);
  }
}

/** opfs: ordinary OPFS files under one directory, through sqlite-wasm's "opfs" VFS. */
class PlainOpfsStore extends StoreBase {
  readonly vfs = 'opfs';

  constructor(
    sqlite3: Sqlite3,
    private readonly directory: string,
  ) {
    super(sqlite3, 'opfs');
  }

  protected path(name: string): string {
    return `${this.directory}/${name}`;
  }

  /** The store's directory, through the OPFS API itself. */
  private async dir(): Promise<FileSystemDirectoryHandle> {
    let dir = await navigator.storage.getDirectory();
    for (const part of this.directory.split('/').filter(Boolean)) dir = await dir.getDirectoryHandle(part, { create: true });
    return dir;
  }

  protected async fileNames(): Promise<string[]> {
    const names: string[] = [];
    for await (const [n, h] of (await this.dir() as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
      if (h.kind === 'file') names.push(n);
    }
    return names;
  }

  protected async readWhole(name: string): Promise<Uint8Array> {
    const file = await (await (await this.dir()).getFileHandle(name)).getFile();
    return new Uint8Array(await file.arrayBuffer());
  }

  protected async writeWhole(name: string, bytes: Uint8Array): Promise<void> {
    await (this.sqlite3.oo1 as unknown as { OpfsDb: { importDb(n: string, b: Uint8Array): Promise<number> } }).OpfsDb.importDb(this.path(name), bytes);
  }

  protected async unlink(name: string): Promise<void> {
    try {
      await (await this.dir()).removeEntry(name);
    } catch (e) {
      if ((e as DOMException).name !== 'NotFoundError') throw e;
    }
  }
}
