/**
 * Loads the SQLite WebAssembly build once, with our node:fs VFS registered, and offers the few
 * C-API helpers the rest of the code needs. The bundle entry hands in the embedded .wasm bytes
 * with setWasmLoader(); in development the package finds sqlite3.wasm beside itself.
 */
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';
import { NodeVfs, VFS_NAME } from './vfs/node-vfs.ts';

import type { Database, Sqlite3 } from './core/types.ts';
export type { Database, Sqlite3 };

/** Returns the .wasm bytes; told how many bytes of database the process is about to work through. */
export type WasmLoader = (workBytes: number | undefined) => Promise<Uint8Array>;

let wasmLoader: WasmLoader | undefined;
let loading: Promise<Sqlite3> | undefined;
const vfsOfModule = new WeakMap<Sqlite3, NodeVfs>();

/** Used by the bundle entry: the .wasm bytes are embedded in the one file. */
export function setWasmLoader(load: WasmLoader): void {
  wasmLoader = load;
}

/**
 * The initialised module, loaded on first use (`--help` and `--version` never load it).
 * `workBytes`, the size of the database about to be read, lets the CLI tune the WebAssembly
 * compiler for the job (src/bin.ts); the first caller's hint counts.
 */
export function loadSqlite(workBytes?: number): Promise<Sqlite3> {
  loading ??= (async () => {
    // The library logs failed statements to the console; we report errors ourselves.
    const quiet = process.env.BLUFIO_DEBUG === '1' ? undefined : () => {};
    (globalThis as { sqlite3ApiConfig?: object }).sqlite3ApiConfig = quiet ? { warn: quiet, error: quiet, debug: quiet, log: quiet } : {};
    const moduleArg: Record<string, unknown> = { print: () => {}, printErr: () => {} };
    if (wasmLoader) moduleArg.wasmBinary = await wasmLoader(workBytes);
    const sqlite3 = await (sqlite3InitModule as (arg: unknown) => Promise<Sqlite3>)(moduleArg);
    vfsOfModule.set(sqlite3, new NodeVfs(sqlite3));
    return sqlite3;
  })();
  return loading;
}

/** The node:fs VFS registered with this loaded module: its views, protected paths, last error. */
export function vfsOf(sqlite3: Sqlite3): NodeVfs {
  const vfs = vfsOfModule.get(sqlite3);
  if (!vfs) throw new Error('this SQLite module was not loaded by loadSqlite()');
  return vfs;
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

