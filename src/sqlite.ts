/**
 * Loads the SQLite WebAssembly build once, with our node:fs VFS registered, and offers the few
 * C-API helpers the rest of the code needs. The bundle entry hands in the embedded .wasm bytes
 * with setWasmLoader(); in development the package finds sqlite3.wasm beside itself.
 */
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';
import { BlufioError } from './errors.ts';
import { installNodeVfs, VFS_NAME } from './vfs/node-vfs.ts';

export type Sqlite3 = Awaited<ReturnType<typeof sqlite3InitModule>>;
export type Database = InstanceType<Sqlite3['oo1']['DB']>;

let wasmLoader: (() => Promise<Uint8Array>) | undefined;
let loading: Promise<Sqlite3> | undefined;

/** Used by the bundle entry: the .wasm bytes are embedded in the one file. */
export function setWasmLoader(load: () => Promise<Uint8Array>): void {
  wasmLoader = load;
}

/** The initialised module, loaded on first use (`--help` and `--version` never load it). */
export function loadSqlite(): Promise<Sqlite3> {
  loading ??= (async () => {
    // The library logs failed statements to the console; we report errors ourselves.
    const quiet = process.env.BLUFIO_DEBUG === '1' ? undefined : () => {};
    (globalThis as { sqlite3ApiConfig?: object }).sqlite3ApiConfig = quiet ? { warn: quiet, error: quiet, debug: quiet, log: quiet } : {};
    const moduleArg: Record<string, unknown> = { print: () => {}, printErr: () => {} };
    if (wasmLoader) moduleArg.wasmBinary = await wasmLoader();
    const sqlite3 = await (sqlite3InitModule as (arg: unknown) => Promise<Sqlite3>)(moduleArg);
    installNodeVfs(sqlite3);
    return sqlite3;
  })();
  return loading;
}

export interface OpenOptions {
  readonly?: boolean;
  create?: boolean;
}

/** Opens `name` through our VFS. Read-only unless asked; never the source's real files writable. */
export function openDb(sqlite3: Sqlite3, name: string, opts: OpenOptions = {}): Database {
  const flags = opts.create ? 'c' : opts.readonly === false ? 'w' : 'r';
  return new sqlite3.oo1.DB({ filename: name, flags, vfs: VFS_NAME });
}

/** Throws a BlufioError for a non-OK SQLite result code. */
export function check(sqlite3: Sqlite3, db: Database, rc: number, doing: string): void {
  if (rc === 0) return;
  const msg = sqlite3.capi.sqlite3_errmsg(db.pointer!) || sqlite3.capi.sqlite3_errstr(rc);
  throw sqliteError(sqlite3, rc, `${doing}: ${msg}`);
}

/** Maps an SQLite result code to the error kind a user can act on. */
export function sqliteError(sqlite3: Sqlite3, rc: number, message: string): BlufioError {
  const { capi } = sqlite3;
  switch (rc & 0xff) {
    case capi.SQLITE_NOTADB:
      return new BlufioError('E_NOT_SQLITE', message, 'make sure the file is an SQLite database');
    case capi.SQLITE_CORRUPT:
      return new BlufioError('E_CORRUPT', message, 'the file is damaged: check it with sqlite3 <file> "PRAGMA integrity_check", or use another copy');
    case capi.SQLITE_CANTOPEN:
      return new BlufioError('E_IO', message, 'check that the file exists and is readable');
    case capi.SQLITE_FULL:
      return new BlufioError('E_IO', message, 'free some disk space and try again');
    default:
      return new BlufioError('E_IO', message);
  }
}

/** Runs one PRAGMA-style query and returns the first column of every row. */
export function column(db: Database, sql: string): unknown[] {
  return db.selectValues(sql) as unknown[];
}
