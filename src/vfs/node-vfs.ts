/**
 * The "blufio" VFS: SQLite's file access on node:fs synchronous calls, for the WebAssembly build
 * (whose own Node VFS keeps databases in memory only).
 *
 * Invariants:
 * - No exception ever crosses into WASM: every method catches, remembers the message for
 *   xGetLastError and returns an SQLite result code.
 * - Source files are never opened writable. A source database is read through a registered
 *   *view* (a SnapshotFile), never by SQLite opening its real files; and any path registered with
 *   protect() is refused for writing or deleting, whoever asks.
 * - Locks are no-ops: every real file SQLite opens through this VFS is private to this process
 *   (a temporary destination or a file under verification). Consistency against other processes
 *   is the snapshot's job, not SQLite's locking (see docs/consistency.md).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Sqlite3 } from '../core/types.ts';
import type { VfsFile } from './file.ts';
import { DiskFile } from './disk-file.ts';

export const VFS_NAME = 'blufio';

/** Registered read-only views by the name SQLite is given to open. */
const viewsByName = new Map<string, VfsFile>();
/** Absolute paths that must never be opened writable or deleted (the source's files). */
const protectedPaths = new Map<string, number>();
/** Open files by their sqlite3_file pointer. */
const filesByPointer = new Map<number, VfsFile>();
let lastError: { message: string; rc: number } | undefined;

/** Makes `file` openable by SQLite under `name` (read-only) until unregisterView(name). */
export function registerView(name: string, file: VfsFile): void {
  viewsByName.set(name, file);
}

export function unregisterView(name: string): void {
  viewsByName.delete(name);
}

/** Refuses writes and deletes of these paths until the returned function is called. */
export function protect(paths: string[]): () => void {
  const abs = paths.map((p) => path.resolve(p));
  for (const p of abs) protectedPaths.set(p, (protectedPaths.get(p) ?? 0) + 1);
  return () => {
    for (const p of abs) {
      const n = (protectedPaths.get(p) ?? 1) - 1;
      if (n <= 0) protectedPaths.delete(p);
      else protectedPaths.set(p, n);
    }
  };
}

export function isProtected(p: string): boolean {
  return protectedPaths.has(path.resolve(p));
}

/** The message behind the last failed VFS call (for error reports and tests). */
export function takeLastVfsError(): string | undefined {
  const msg = lastError?.message;
  lastError = undefined;
  return msg;
}

let installed = false;

export function installNodeVfs(sqlite3: Sqlite3): void {
  if (installed) return;
  installed = true;
  const { capi, wasm } = sqlite3;

  const fail = (e: unknown, rc: number): number => {
    lastError = { message: e instanceof Error ? e.message : String(e), rc };
    return rc;
  };
  const heap = (p: number, n: number) => wasm.heap8u().subarray(p, p + n);
  const str = (p: number): string => (p ? (wasm.cstrToJs(p as never) ?? '') : '');
  const fileOf = (p: number): VfsFile => {
    const f = filesByPointer.get(Number(p));
    if (!f) throw new Error('unknown file handle');
    return f;
  };
  const sleeper = new Int32Array(new SharedArrayBuffer(4));

  const ioMethods = {
    xCheckReservedLock(_pFile: number, pOut: number): number {
      wasm.poke32(pOut as never, 0);
      return 0;
    },
    xClose(pFile: number): number {
      try {
        const f = fileOf(pFile);
        filesByPointer.delete(Number(pFile));
        f.close();
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_IOERR_CLOSE);
      }
    },
    xDeviceCharacteristics(_pFile: number): number {
      return capi.SQLITE_IOCAP_POWERSAFE_OVERWRITE;
    },
    xFileControl(_pFile: number, _op: number, _pArg: number): number {
      return capi.SQLITE_NOTFOUND;
    },
    xFileSize(pFile: number, pSize: number): number {
      try {
        wasm.poke64(pSize as never, BigInt(fileOf(pFile).size()));
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_IOERR_FSTAT);
      }
    },
    xLock(_pFile: number, _level: number): number {
      return 0;
    },
    xRead(pFile: number, pDst: number, n: number, offset: bigint | number): number {
      try {
        const dst = heap(Number(pDst), n);
        const got = fileOf(pFile).read(dst, Number(offset));
        if (got < n) {
          dst.fill(0, got);
          return capi.SQLITE_IOERR_SHORT_READ;
        }
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_IOERR_READ);
      }
    },
    xSectorSize(_pFile: number): number {
      return 4096;
    },
    xSync(pFile: number, _flags: number): number {
      try {
        fileOf(pFile).sync();
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_IOERR_FSYNC);
      }
    },
    xTruncate(pFile: number, size: bigint | number): number {
      try {
        const f = fileOf(pFile);
        if (f.readOnly) throw new Error('file is read-only');
        f.truncate(Number(size));
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_IOERR_TRUNCATE);
      }
    },
    xUnlock(_pFile: number, _level: number): number {
      return 0;
    },
    xWrite(pFile: number, pSrc: number, n: number, offset: bigint | number): number {
      try {
        const f = fileOf(pFile);
        if (f.readOnly) throw new Error('file is read-only');
        f.write(heap(Number(pSrc), n), Number(offset));
        return 0;
      } catch (e) {
        return fail(e, (e as NodeJS.ErrnoException).code === 'ENOSPC' ? capi.SQLITE_FULL : capi.SQLITE_IOERR_WRITE);
      }
    },
  };

  const openReal = (name: string | null, flags: number): VfsFile => {
    const tempName = name === null;
    const file = name ?? path.join(os.tmpdir(), `blufio-${randomBytes(8).toString('hex')}.tmp`);
    const writable = (flags & capi.SQLITE_OPEN_READWRITE) !== 0;
    if (writable && isProtected(file)) {
      throw new Error(`refusing to open ${file} for writing: it belongs to the source database`);
    }
    let oflags = writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY;
    if (flags & capi.SQLITE_OPEN_CREATE) oflags |= fs.constants.O_CREAT;
    if (flags & capi.SQLITE_OPEN_EXCLUSIVE) oflags |= fs.constants.O_EXCL;
    const fd = fs.openSync(file, oflags, 0o600);
    const deleteOnClose = tempName || (flags & capi.SQLITE_OPEN_DELETEONCLOSE) !== 0;
    return new DiskFile(fd, file, !writable, deleteOnClose);
  };

  const vfsMethods = {
    xAccess(_pVfs: number, zName: number, flags: number, pOut: number): number {
      let exists = 0;
      try {
        const name = str(zName);
        if (viewsByName.has(name)) exists = 1;
        else if (!isViewSidecar(name)) {
          const mode = flags === capi.SQLITE_ACCESS_READWRITE ? fs.constants.R_OK | fs.constants.W_OK : fs.constants.F_OK;
          fs.accessSync(name, mode);
          exists = 1;
        }
      } catch {
        exists = 0;
      }
      wasm.poke32(pOut as never, exists);
      return 0;
    },
    xCurrentTime(_pVfs: number, pOut: number): number {
      wasm.poke(pOut as never, 2440587.5 + Date.now() / 864e5, 'double');
      return 0;
    },
    xCurrentTimeInt64(_pVfs: number, pOut: number): number {
      wasm.poke64(pOut as never, BigInt(210866760000000 + Date.now()));
      return 0;
    },
    xDelete(_pVfs: number, zName: number, _syncDir: number): number {
      try {
        const name = str(zName);
        if (isProtected(name)) throw new Error(`refusing to delete ${name}: it belongs to the source database`);
        fs.rmSync(name, { force: true });
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_IOERR_DELETE);
      }
    },
    xFullPathname(_pVfs: number, zName: number, nOut: number, pOut: number): number {
      try {
        const name = str(zName);
        const full = viewsByName.has(name) || isViewSidecar(name) ? name : path.resolve(name);
        const bytes = new TextEncoder().encode(full);
        if (bytes.length + 1 > nOut) return capi.SQLITE_CANTOPEN;
        const out = heap(Number(pOut), bytes.length + 1);
        out.set(bytes);
        out[bytes.length] = 0;
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_CANTOPEN);
      }
    },
    xGetLastError(_pVfs: number, nOut: number, pOut: number): number {
      const e = lastError;
      if (e && nOut > 0) {
        const bytes = new TextEncoder().encode(e.message).subarray(0, nOut - 1);
        const out = heap(Number(pOut), bytes.length + 1);
        out.set(bytes);
        out[bytes.length] = 0;
      }
      return e ? e.rc : 0;
    },
    xOpen(_pVfs: number, zName: number, pFile: number, flags: number, pOutFlags: number): number {
      try {
        const name = zName ? str(zName) : null;
        const view = name === null ? undefined : viewsByName.get(name);
        let file: VfsFile;
        if (view) {
          if (flags & capi.SQLITE_OPEN_READWRITE) throw new Error(`${name} is a read-only view`);
          file = view;
        } else {
          file = openReal(name, flags);
        }
        filesByPointer.set(Number(pFile), file);
        const sq3File = new capi.sqlite3_file(pFile as never);
        sq3File.$pMethods = ioStruct.pointer;
        sq3File.dispose();
        if (pOutFlags) wasm.poke32(pOutFlags as never, flags);
        return 0;
      } catch (e) {
        return fail(e, capi.SQLITE_CANTOPEN);
      }
    },
    xRandomness(_pVfs: number, nOut: number, pOut: number): number {
      const out = heap(Number(pOut), nOut);
      for (let i = 0; i < nOut; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(nOut, i + 65536)) as Uint8Array<ArrayBuffer>);
      return nOut;
    },
    xSleep(_pVfs: number, micros: number): number {
      Atomics.wait(sleeper, 0, 0, Math.max(1, Math.round(micros / 1000)));
      return micros;
    },
  };

  /** "-journal", "-wal" names next to a view: a view is one self-contained file. */
  function isViewSidecar(name: string): boolean {
    const m = /^(.*)-(journal|wal|shm)$/.exec(name);
    return m !== null && viewsByName.has(m[1]);
  }

  // The struct members are typed loosely by the package; these are its documented fields.
  const ioStruct = new capi.sqlite3_io_methods() as InstanceType<typeof capi.sqlite3_io_methods> & Record<string, unknown>;
  ioStruct.$iVersion = 1;
  const vfsStruct = new capi.sqlite3_vfs() as InstanceType<typeof capi.sqlite3_vfs> & Record<string, unknown>;
  vfsStruct.$iVersion = 2;
  vfsStruct.$szOsFile = (capi.sqlite3_file as unknown as { structInfo: { sizeof: number } }).structInfo.sizeof;
  vfsStruct.$mxPathname = 1024;
  sqlite3.vfs.installVfs({
    io: { struct: ioStruct, methods: ioMethods },
    vfs: { struct: vfsStruct, methods: vfsMethods, name: VFS_NAME },
  } as never);
}
