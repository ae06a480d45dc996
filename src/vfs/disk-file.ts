/**
 * A real file on node:fs synchronous calls, with the two things that make a page-at-a-time copy
 * fast: read-ahead for sequential reads and coalesced writes for sequential writes. The backup API
 * reads and writes one page per call; without these, each page costs a system call.
 */
import * as fs from 'node:fs';
import type { VfsFile } from './file.ts';

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

/** A span of the file held in memory. */
class Window {
  readonly buf: Uint8Array;
  start = 0;
  len = 0;

  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }

  /** Copies [offset, offset + dst.length) into dst if the window holds all of it. */
  serve(dst: Uint8Array, offset: number): boolean {
    if (offset < this.start || offset + dst.length > this.start + this.len) return false;
    dst.set(this.buf.subarray(offset - this.start, offset - this.start + dst.length));
    return true;
  }

  /** Reads the window from `from`; returns how many of the bytes at `offset` it now holds. */
  fill(fd: number, from: number, offset: number, dst: Uint8Array): number {
    this.start = from;
    this.len = readFully(fd, this.buf, from);
    const got = Math.max(0, Math.min(dst.length, this.len - (offset - from)));
    dst.set(this.buf.subarray(offset - from, offset - from + got));
    return got;
  }
}

/**
 * Read-ahead with two windows. A sequential read (starting where the last one ended, as the
 * backup API reads) refills a window of IO_CHUNK bytes from there. A random read (a b-tree walk,
 * as integrity_check reads) fetches the aligned RANDOM_BLOCK around it into a second, small
 * window (one of RANDOM_WINDOWS), since pages written together tend to be read together; it
 * never evicts the sequential window, so the small header reads SQLite makes between steps cost
 * one syscall.
 */
export class ReadAhead {
  private readonly seq = new Window(IO_CHUNK);
  /** Random-read windows, most recently filled last (one per stream of reads SQLite interleaves). */
  private readonly rand: Window[] = Array.from({ length: RANDOM_WINDOWS }, () => new Window(RANDOM_BLOCK));
  private lastEnd = -1;

  constructor(private readonly fd: number) {}

  read(dst: Uint8Array, offset: number): number {
    const n = dst.length;
    const sequential = offset === this.lastEnd;
    this.lastEnd = offset + n;
    if (this.seq.serve(dst, offset)) return n;
    for (let i = this.rand.length - 1; i >= 0; i--) if (this.rand[i].serve(dst, offset)) return n;
    if (sequential && n < IO_CHUNK) return this.seq.fill(this.fd, offset, offset, dst);
    if (!sequential && n <= RANDOM_BLOCK / 2 && offset % RANDOM_BLOCK + n <= RANDOM_BLOCK) {
      // The least recently filled window takes the block.
      const w = this.rand.shift()!;
      this.rand.push(w);
      return w.fill(this.fd, offset - (offset % RANDOM_BLOCK), offset, dst);
    }
    return readFully(this.fd, dst, offset);
  }

  /** Forgets what it holds (the file was written to or truncated). */
  invalidate(): void {
    this.seq.len = 0;
    for (const w of this.rand) w.len = 0;
    this.lastEnd = -1;
  }
}

/** pread until `dst` is full or the file ends; returns the bytes read. */
export function readFully(fd: number, dst: Uint8Array, offset: number): number {
  let done = 0;
  while (done < dst.length) {
    const n = fs.readSync(fd, dst, done, dst.length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** pwrite all of `src` at `offset`. */
export function writeFully(fd: number, src: Uint8Array, offset: number): void {
  let done = 0;
  while (done < src.length) done += fs.writeSync(fd, src, done, src.length - done, offset + done);
}

export class DiskFile implements VfsFile {
  private readonly ahead: ReadAhead;
  private readonly wbuf: Uint8Array;
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
    private readonly deleteOnClose = false,
    /** Write back early (see syncFd); false for a staging copy that is read back and removed. */
    private readonly earlySync = true,
  ) {
    this.ahead = new ReadAhead(fd);
    this.wbuf = readOnly ? new Uint8Array(0) : new Uint8Array(IO_CHUNK);
  }

  read(dst: Uint8Array, offset: number): number {
    this.flush();
    return this.ahead.read(dst, offset);
  }

  write(src: Uint8Array, offset: number): void {
    this.ahead.invalidate();
    const n = src.length;
    if (this.wLen > 0 && offset === this.wStart + this.wLen && this.wLen + n <= IO_CHUNK) {
      this.wbuf.set(src, this.wLen);
      this.wLen += n;
      return;
    }
    this.flush();
    if (n > IO_CHUNK / 2) {
      writeFully(this.fd, src, offset);
      return;
    }
    this.wbuf.set(src, 0);
    this.wStart = offset;
    this.wLen = n;
  }

  /** Writes out what has been gathered. */
  flush(): void {
    if (this.wLen === 0) return;
    const len = this.wLen;
    this.wLen = 0;
    writeFully(this.fd, this.wbuf.subarray(0, len), this.wStart);
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
      if (!this.syncing) this.closeSyncFd();
      fs.closeSync(this.fd);
      if (this.deleteOnClose) fs.rmSync(this.path, { force: true });
    }
  }
}
