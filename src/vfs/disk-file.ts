/**
 * A real file on node:fs synchronous calls, with the two things that make a page-at-a-time copy
 * fast: read-ahead for sequential reads and coalesced writes for sequential writes. The backup API
 * reads and writes one page per call; without these, each page costs a system call.
 */
import * as fs from 'node:fs';
import { copyBytes, type IoMemory, type VfsFile } from './file.ts';

/** Bytes read ahead on a sequential read, and the most bytes gathered before one write. */
export const IO_CHUNK = 1 << 20;
/** What a random read fetches: the aligned block around the bytes asked for. */
const RANDOM_BLOCK = 64 << 10;
/**
 * Random-read windows kept, least recently filled replaced first: integrity_check interleaves
 * walks of several b-trees (a table and its index), each with its own locality. 8 windows cut
 * the blocks read by a check of a 212 MiB indexed database by 16% (14955 -> 12501; 1, 2, 4, 8,
 * 16 tried: docs/benchmarks.md).
 */
const RANDOM_WINDOWS = 8;
/** After this many bytes written, start writing them to the disk in the background. */
const EARLY_SYNC_BYTES = 32 << 20;

/** A span of the file held in a block of IoMemory. */
class Window {
  start = 0;
  len = 0;

  constructor(
    private readonly memory: IoMemory,
    /** Where the block starts in memory.bytes(), and its size. */
    readonly at: number,
    readonly size: number,
  ) {}

  /** Copies [offset, offset + n) to `mem` at `to` if the window holds all of it. */
  serve(mem: Uint8Array, to: number, n: number, offset: number): boolean {
    if (offset < this.start || offset + n > this.start + this.len) return false;
    copyBytes(this.memory.bytes(), this.at + offset - this.start, mem, to, n);
    return true;
  }

  /** Reads the window from `from`; copies what it holds of [offset, offset + n) to `mem` at `to`, and returns how much that is. */
  fill(fd: number, from: number, mem: Uint8Array, to: number, n: number, offset: number): number {
    this.len = 0; // holds nothing while it is read (a read that throws leaves it so)
    this.start = from;
    this.len = readRange(fd, this.memory.bytes(), this.at, this.size, from);
    const got = Math.max(0, Math.min(n, this.len - (offset - from)));
    copyBytes(this.memory.bytes(), this.at + offset - from, mem, to, got);
    return got;
  }
}

/**
 * Read-ahead with two windows. A sequential read (starting where the last one ended, as the
 * backup API reads) refills a window of IO_CHUNK bytes from there. A random read (a b-tree walk,
 * as integrity_check reads) fetches the aligned RANDOM_BLOCK around it into a second, small
 * window (one of RANDOM_WINDOWS), since pages written together tend to be read together; it
 * never evicts the sequential window, so the small header reads SQLite makes between steps cost
 * one syscall. The windows are blocks of `memory` (the WebAssembly heap, for SQLite's reads),
 * taken at construction and given back by dispose().
 */
export class ReadAhead {
  private readonly block: number;
  private readonly seq: Window;
  /** Random-read windows, most recently filled last (one per stream of reads SQLite interleaves). */
  private readonly rand: Window[];
  private lastEnd = -1;

  constructor(private fd: number, private readonly memory: IoMemory) {
    this.block = memory.alloc(IO_CHUNK + RANDOM_WINDOWS * RANDOM_BLOCK);
    this.seq = new Window(memory, this.block, IO_CHUNK);
    this.rand = Array.from({ length: RANDOM_WINDOWS }, (_, i) => new Window(memory, this.block + IO_CHUNK + i * RANDOM_BLOCK, RANDOM_BLOCK));
  }

  read(mem: Uint8Array, at: number, n: number, offset: number): number {
    const sequential = offset === this.lastEnd;
    this.lastEnd = offset + n;
    if (this.seq.serve(mem, at, n, offset)) return n;
    for (let i = this.rand.length - 1; i >= 0; i--) if (this.rand[i].serve(mem, at, n, offset)) return n;
    if (sequential && n < IO_CHUNK) return this.seq.fill(this.fd, offset, mem, at, n, offset);
    if (!sequential && n <= RANDOM_BLOCK / 2 && offset % RANDOM_BLOCK + n <= RANDOM_BLOCK) {
      // The least recently filled window takes the block.
      const w = this.rand.shift()!;
      this.rand.push(w);
      return w.fill(this.fd, offset - (offset % RANDOM_BLOCK), mem, at, n, offset);
    }
    return readRange(this.fd, mem, at, n, offset);
  }

  /** Forgets what it holds (the file was written to or truncated). */
  invalidate(): void {
    this.seq.len = 0;
    for (const w of this.rand) w.len = 0;
    this.lastEnd = -1;
  }

  /** Reads another descriptor from now on (a new attempt of a snapshot), holding nothing. */
  reopen(fd: number): void {
    this.fd = fd;
    this.invalidate();
  }

  /** Gives the windows' memory back; the object is not used after this. */
  dispose(): void {
    this.invalidate();
    this.memory.free(this.block);
  }
}

/** pread until `dst` is full or the file ends; returns the bytes read. */
export function readFully(fd: number, dst: Uint8Array, offset: number): number {
  return readRange(fd, dst, 0, dst.length, offset);
}

/** pread into bytes [at, at + n) of `mem` until they are filled or the file ends; returns the bytes read. */
export function readRange(fd: number, mem: Uint8Array, at: number, n: number, offset: number): number {
  let done = 0;
  while (done < n) {
    const got = fs.readSync(fd, mem, at + done, n - done, offset + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

/** pwrite all of `src` at `offset`. */
export function writeFully(fd: number, src: Uint8Array, offset: number): void {
  writeRange(fd, src, 0, src.length, offset);
}

/** pwrite bytes [at, at + n) of `mem` at `offset`. */
export function writeRange(fd: number, mem: Uint8Array, at: number, n: number, offset: number): void {
  let done = 0;
  while (done < n) done += fs.writeSync(fd, mem, at + done, n - done, offset + done);
}

/** The buffer copyRange() copies through: one for the process (a new 1 MiB buffer per copy was garbage enough to force a full collection every few hundred ms in the replicator). */
let copyBuffer: Buffer | null = null;

/**
 * Copies up to `n` bytes of `fdIn` from `inAt` to `fdOut` at `outAt`, IO_CHUNK at a time through
 * one shared buffer (synchronous: never used by two copies at once); returns the bytes copied
 * (fewer when `fdIn` ends first). `whileBusy` is called between two chunks (CopyOptions').
 */
export function copyRange(fdIn: number, inAt: number, fdOut: number, outAt: number, n: number, whileBusy?: () => void): number {
  const buf = (copyBuffer ??= Buffer.allocUnsafe(IO_CHUNK));
  let done = 0;
  while (done < n) {
    const got = readRange(fdIn, buf, 0, Math.min(buf.length, n - done), inAt + done);
    if (got === 0) break;
    writeRange(fdOut, buf, 0, got, outAt + done);
    done += got;
    whileBusy?.();
  }
  return done;
}

export class DiskFile implements VfsFile {
  private readonly ahead: ReadAhead;
  /** Where writes are gathered in memory.bytes() (IO_CHUNK bytes; -1 for a read-only file). */
  private readonly wbuf: number;
  private wStart = 0;
  private wLen = 0;
  private unsynced = 0;
  /**
   * Early write-back: every EARLY_SYNC_BYTES, an fdatasync on a second descriptor of the same
   * file runs in libuv's thread pool while SQLite goes on copying. The disk then writes while we
   * compute (native SQLite, single-threaded, does one after the other), dirty pages never pile
   * up to the kernel's throttling limits, and the final fsync has little left to do.
   */
  private syncFd = -1;
  private syncing = false;
  private closed = false;

  constructor(
    readonly fd: number,
    readonly path: string,
    readonly readOnly: boolean,
    /** Where the read-ahead windows and the gathered writes live (the VFS: SQLite's heap). */
    private readonly memory: IoMemory,
    private readonly deleteOnClose = false,
    /** Write back early (see syncFd); false for a staging copy that is read back and removed. */
    private readonly earlySync = true,
  ) {
    this.ahead = new ReadAhead(fd, memory);
    this.wbuf = readOnly ? -1 : memory.alloc(IO_CHUNK);
  }

  read(mem: Uint8Array, at: number, n: number, offset: number): number {
    this.flush();
    return this.ahead.read(mem, at, n, offset);
  }

  write(mem: Uint8Array, at: number, n: number, offset: number): void {
    if (this.readOnly) throw new Error('file is read-only');
    this.ahead.invalidate();
    if (this.wLen > 0 && offset === this.wStart + this.wLen && this.wLen + n <= IO_CHUNK) {
      copyBytes(mem, at, this.memory.bytes(), this.wbuf + this.wLen, n);
      this.wLen += n;
      return;
    }
    this.flush();
    if (n > IO_CHUNK / 2) {
      writeRange(this.fd, mem, at, n, offset);
      return;
    }
    copyBytes(mem, at, this.memory.bytes(), this.wbuf, n);
    this.wStart = offset;
    this.wLen = n;
  }

  /** Writes out what has been gathered. */
  flush(): void {
    if (this.wLen === 0) return;
    const len = this.wLen;
    this.wLen = 0;
    writeRange(this.fd, this.memory.bytes(), this.wbuf, len, this.wStart);
    this.unsynced += len;
    if (this.earlySync && this.unsynced >= EARLY_SYNC_BYTES) this.syncInBackground();
  }

  private syncInBackground(): void {
    if (this.syncing || this.closed) return;
    this.unsynced = 0;
    try {
      if (this.syncFd < 0) this.syncFd = fs.openSync(this.path, 'r');
    } catch {
      return; // an optimisation only: the final sync still happens
    }
    this.syncing = true;
    fs.fdatasync(this.syncFd, () => {
      this.syncing = false;
      if (this.closed) this.closeSyncFd();
    });
  }

  private closeSyncFd(): void {
    if (this.syncFd >= 0) fs.close(this.syncFd, () => {});
    this.syncFd = -1;
  }

  truncate(size: number): void {
    this.flush();
    this.ahead.invalidate();
    fs.ftruncateSync(this.fd, size);
  }

  sync(): void {
    this.flush();
    fs.fsyncSync(this.fd);
  }

  size(): number {
    this.flush();
    return fs.fstatSync(this.fd).size;
  }

  close(): void {
    try {
      this.flush();
    } finally {
      this.closed = true;
      this.ahead.dispose();
      if (this.wbuf >= 0) this.memory.free(this.wbuf);
      if (!this.syncing) this.closeSyncFd();
      fs.closeSync(this.fd);
      if (this.deleteOnClose) fs.rmSync(this.path, { force: true });
    }
  }
}
