/**
 * The "blufio" VFS: SQLite's file access on node:fs synchronous calls, for the WebAssembly build
 * (whose own Node VFS keeps databases in memory only).
 *
 * Invariants:
 * - No exception ever crosses into WASM: every method that can fail goes through one guard, which
 *   clears the last error on entry, and on an exception remembers its message for xGetLastError
 *   and returns an SQLite result code.
 * - Source files are never opened writable. A source database is read through a registered
 *   *view* (a SourceSnapshot), never by SQLite opening its real files; and any path registered
 *   with protect() is refused for writing or deleting, whoever asks.
 * - Its state (views, protected paths, open files, the last error) belongs to the NodeVfs object,
 *   which src/sqlite.ts creates once for the SQLite module it loads (a VFS is registered with
 *   one module, by name); nothing is held at module level.
 * - Locks are no-ops: almost every real file SQLite opens through this VFS is private to this
 *   process (a temporary destination or a file under verification). Consistency against other
 *   processes is the snapshot's job, not SQLite's locking (see docs/consistency.md). The exception
 *   is restore's settle step (an old database opened read-write to be checkpointed): restore looks
 *   for other users right before and after it (src/restore.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Sqlite3 } from '../core/types.ts';
import type { IoMemory, VfsFile } from './file.ts';
import { DiskFile } from './disk-file.ts';

export const VFS_NAME = 'blufio';

type Heap = Sqlite3['wasm'];

export class NodeVfs {
  readonly name = VFS_NAME;
  /** Registered read-only views by the name SQLite is given to open. */
  private readonly views = new Map<string, VfsFile>();
  /** Absolute paths that must never be opened writable or deleted (the source's files), counted. */
  private readonly protectedPaths = new Map<string, number>();
  /** Absolute paths of staging copies: read once and removed, never worth writing back early. */
  private readonly scratchPaths = new Set<string>();
  /** Open files by their sqlite3_file pointer. */
  private readonly files = new Map<number, VfsFile>();
  private lastError: { message: string; rc: number } | undefined;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));
  /** SQLite's WebAssembly heap, where the files keep their I/O buffers (see IoMemory). */
  readonly memory: IoMemory;

  /** Registers the VFS with `sqlite3` under VFS_NAME. */
  constructor(private readonly sqlite3: Sqlite3) {
    const { wasm } = sqlite3;
    this.memory = {
      bytes: () => (wasm as Heap).heap8u(),
      alloc: (n) => Number(wasm.alloc(n)),
      free: (at) => wasm.dealloc(at as never),
    };
    this.install();
  }

  /** Makes `file` openable by SQLite under `name` (read-only) until unregisterView(name). */
  registerView(name: string, file: VfsFile): void {
    this.views.set(name, file);
  }

  unregisterView(name: string): void {
    this.views.delete(name);
  }

  /** Refuses writes and deletes of these paths until the returned function is called. */
  protect(paths: string[]): () => void {
    const abs = paths.map((p) => path.resolve(p));
    for (const p of abs) this.protectedPaths.set(p, (this.protectedPaths.get(p) ?? 0) + 1);
    return () => {
      for (const p of abs) {
        const n = (this.protectedPaths.get(p) ?? 1) - 1;
        if (n <= 0) this.protectedPaths.delete(p);
        else this.protectedPaths.set(p, n);
      }
    };
  }

  /**
   * Marks `p` as a staging copy until the returned function is called: a file that is read back
   * at once and removed (the plaintext of an encrypted backup, say) is not written to the disk
   * early (DiskFile's early write-back); the kernel may never need to write it at all.
   */
  scratch(p: string): () => void {
    const abs = path.resolve(p);
    this.scratchPaths.add(abs);
    return () => void this.scratchPaths.delete(abs);
  }

  isProtected(p: string): boolean {
    return this.protectedPaths.has(path.resolve(p));
  }

  /** The message behind the last failed VFS call, if the last call that could fail did (then cleared). */
  takeLastError(): string | undefined {
    const msg = this.lastError?.message;
    this.lastError = undefined;
    return msg;
  }

  /**
   * The one wrapper of every method that can fail: the last error is cleared on entry; an
   * exception becomes `rc` (or rc(e)) with its message kept for xGetLastError.
   */
  private guard<A extends unknown[]>(rc: number | ((e: unknown) => number), fn: (...args: A) => number): (...args: A) => number {
    return (...args: A) => {
      this.lastError = undefined;
      try {
        return fn(...args);
      } catch (e) {
        return this.failed(e, typeof rc === 'number' ? rc : rc(e));
      }
    };
  }

  /** Remembers why a call failed (for xGetLastError) and returns its result code. */
  private failed(e: unknown, rc: number): number {
    this.lastError = { message: e instanceof Error ? e.message : String(e), rc };
    return rc;
  }

  private fileOf(p: number): VfsFile {
    const f = this.files.get(Number(p));
    if (!f) throw new Error('unknown file handle');
    return f;
  }

  /** "-journal", "-wal" names next to a view: a view is one self-contained file. */
  private isViewSidecar(name: string): boolean {
    const m = /^(.*)-(journal|wal|shm)$/.exec(name);
    return m !== null && this.views.has(m[1]);
  }

  private openReal(name: string | null, flags: number): VfsFile {
    const { capi } = this.sqlite3;
    const tempName = name === null;
    const file = name ?? path.join(os.tmpdir(), `blufio-${randomBytes(8).toString('hex')}.tmp`);
    const writable = (flags & capi.SQLITE_OPEN_READWRITE) !== 0;
    if (writable && this.isProtected(file)) {
      throw new Error(`refusing to open ${file} for writing: it belongs to the source database`);
    }
    let oflags = writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY;
    if (flags & capi.SQLITE_OPEN_CREATE) oflags |= fs.constants.O_CREAT;
    if (flags & capi.SQLITE_OPEN_EXCLUSIVE) oflags |= fs.constants.O_EXCL;
    const fd = fs.openSync(file, oflags, 0o600);
    const deleteOnClose = tempName || (flags & capi.SQLITE_OPEN_DELETEONCLOSE) !== 0;
    return new DiskFile(fd, file, !writable, this.memory, deleteOnClose, !this.scratchPaths.has(path.resolve(file)));
  }

  private install(): void {
    const { capi, wasm } = this.sqlite3;
    const heap = (p: number, n: number) => (wasm as Heap).heap8u().subarray(p, p + n);
    const str = (p: number): string => (p ? (wasm.cstrToJs(p as never) ?? '') : '');
    /** Writes `s` as a C string into nOut bytes at pOut, cut to fit unless `whole`; false if it did not fit. */
    const putCString = (pOut: number, nOut: number, s: string, whole = false): boolean => {
      const all = new TextEncoder().encode(s);
      if (nOut <= 0 || (whole && all.length + 1 > nOut)) return false;
      const bytes = all.subarray(0, nOut - 1);
      const out = heap(Number(pOut), bytes.length + 1);
      out.set(bytes);
      out[bytes.length] = 0;
      return true;
    };
    const g = this.guard.bind(this);

    const ioMethods = {
      xCheckReservedLock(_pFile: number, pOut: number): number {
        wasm.poke32(pOut as never, 0);
        return 0;
      },
      xClose: g(capi.SQLITE_IOERR_CLOSE, (pFile: number) => {
        const f = this.fileOf(pFile);
        this.files.delete(Number(pFile));
        f.close();
        return 0;
      }),
      xDeviceCharacteristics: (_pFile: number) => capi.SQLITE_IOCAP_POWERSAFE_OVERWRITE,
      xFileControl: (_pFile: number, _op: number, _pArg: number) => capi.SQLITE_NOTFOUND,
      xFileSize: g(capi.SQLITE_IOERR_FSTAT, (pFile: number, pSize: number) => {
        wasm.poke64(pSize as never, BigInt(this.fileOf(pFile).size()));
        return 0;
      }),
      xLock: (_pFile: number, _level: number) => 0,
      // xRead and xWrite are the hot calls (hundreds of thousands per job): guarded by hand,
      // without the rest parameters of g(), so that a call allocates nothing.
      xRead: (pFile: number, pDst: number, n: number, offset: bigint | number): number => {
        this.lastError = undefined;
        try {
          const mem = wasm.heap8u();
          const at = Number(pDst);
          const got = this.fileOf(pFile).read(mem, at, n, Number(offset));
          if (got < n) {
            mem.fill(0, at + got, at + n);
            return capi.SQLITE_IOERR_SHORT_READ;
          }
          return 0;
        } catch (e) {
          return this.failed(e, capi.SQLITE_IOERR_READ);
        }
      },
      xSectorSize: (_pFile: number) => 4096,
      xSync: g(capi.SQLITE_IOERR_FSYNC, (pFile: number, _flags: number) => {
        this.fileOf(pFile).sync();
        return 0;
      }),
      xTruncate: g(capi.SQLITE_IOERR_TRUNCATE, (pFile: number, size: bigint | number) => {
        const f = this.fileOf(pFile);
        if (f.readOnly) throw new Error('file is read-only');
        f.truncate(Number(size));
        return 0;
      }),
      xUnlock: (_pFile: number, _level: number) => 0,
      xWrite: (pFile: number, pSrc: number, n: number, offset: bigint | number): number => {
        this.lastError = undefined;
        try {
          const f = this.fileOf(pFile);
          if (f.readOnly) throw new Error('file is read-only');
          f.write(wasm.heap8u(), Number(pSrc), n, Number(offset));
          return 0;
        } catch (e) {
          return this.failed(e, (e as NodeJS.ErrnoException).code === 'ENOSPC' ? capi.SQLITE_FULL : capi.SQLITE_IOERR_WRITE);
        }
      },
    };

    const vfsMethods = {
      xAccess: (_pVfs: number, zName: number, flags: number, pOut: number): number => {
        let exists = 0;
        try {
          const name = str(zName);
          if (this.views.has(name)) exists = 1;
          else if (!this.isViewSidecar(name)) {
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
      xDelete: g(capi.SQLITE_IOERR_DELETE, (_pVfs: number, zName: number, _syncDir: number) => {
        const name = str(zName);
        if (this.isProtected(name)) throw new Error(`refusing to delete ${name}: it belongs to the source database`);
        fs.rmSync(name, { force: true });
        return 0;
      }),
      xFullPathname: g(capi.SQLITE_CANTOPEN, (_pVfs: number, zName: number, nOut: number, pOut: number) => {
        const name = str(zName);
        const full = this.views.has(name) || this.isViewSidecar(name) ? name : path.resolve(name);
        return putCString(pOut, nOut, full, true) ? 0 : capi.SQLITE_CANTOPEN;
      }),
      xGetLastError: (_pVfs: number, nOut: number, pOut: number): number => {
        const e = this.lastError;
        if (e) putCString(pOut, nOut, e.message);
        return e ? e.rc : 0;
      },
      xOpen: g(capi.SQLITE_CANTOPEN, (_pVfs: number, zName: number, pFile: number, flags: number, pOutFlags: number) => {
        const name = zName ? str(zName) : null;
        const view = name === null ? undefined : this.views.get(name);
        let file: VfsFile;
        if (view) {
          if (flags & capi.SQLITE_OPEN_READWRITE) throw new Error(`${name} is a read-only view`);
          file = view;
        } else {
          file = this.openReal(name, flags);
        }
        this.files.set(Number(pFile), file);
        const sq3File = new capi.sqlite3_file(pFile as never);
        sq3File.$pMethods = ioStruct.pointer;
        sq3File.dispose();
        if (pOutFlags) wasm.poke32(pOutFlags as never, flags);
        return 0;
      }),
      xRandomness(_pVfs: number, nOut: number, pOut: number): number {
        const out = heap(Number(pOut), nOut);
        for (let i = 0; i < nOut; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(nOut, i + 65536)) as Uint8Array<ArrayBuffer>);
        return nOut;
      },
      xSleep: (_pVfs: number, micros: number): number => {
        Atomics.wait(this.sleeper, 0, 0, Math.max(1, Math.round(micros / 1000)));
        return micros;
      },
    };

    // The struct members are typed loosely by the package; these are its documented fields.
    const ioStruct = new capi.sqlite3_io_methods() as InstanceType<typeof capi.sqlite3_io_methods> & Record<string, unknown>;
    ioStruct.$iVersion = 1;
    const vfsStruct = new capi.sqlite3_vfs() as InstanceType<typeof capi.sqlite3_vfs> & Record<string, unknown>;
    vfsStruct.$iVersion = 2;
    vfsStruct.$szOsFile = (capi.sqlite3_file as unknown as { structInfo: { sizeof: number } }).structInfo.sizeof;
    vfsStruct.$mxPathname = 1024;
    this.sqlite3.vfs.installVfs({
      io: { struct: ioStruct, methods: ioMethods },
      vfs: { struct: vfsStruct, methods: vfsMethods, name: VFS_NAME },
    } as never);
  }
}
