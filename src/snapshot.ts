/**
 * A consistent, lock-free read of a live SQLite database that other processes keep writing.
 *
 * SQLite reads the source through this object (it is the VfsFile behind a registered view), never
 * through the source's own files, so nothing the tool does can write them. One *attempt* is:
 *
 *   begin()       fix the state to copy: the database file plus, in WAL mode, every WAL frame
 *                 committed so far (pages are served from the newest such frame, else the file);
 *   ...copy...    SQLite's backup API reads the view page by page; stillValid() is cheap to call
 *                 between steps and ends a doomed attempt early;
 *   finish(dest)  prove the copy is a committed state, or throw RetryAttempt.
 *
 * Why this is safe is argued in docs/consistency.md. In short:
 * - WAL mode: the database file changes only through checkpoints, which copy committed frames of
 *   the current WAL generation into it. A WalFollower reads every frame committed while the copy
 *   runs (between steps), across restarts of the WAL, and keeps the set of pages they touched.
 *   finish() rewrites exactly those pages in the copy, from their newest frame or, for pages
 *   whose frames were checkpointed in an earlier generation, from the database file; pages no
 *   frame touched cannot have changed while we read them. The result is the state as of the last
 *   commit taken in, and a last look at the WAL proves nothing moved under the pages we re-read.
 * - Rollback mode: every commit rewrites page 1 (change counter) and keeps a hot journal while it
 *   writes pages. An attempt counts only if the 100-byte header and the file size are the same at
 *   the end as at the start and no hot journal was seen at either end.
 */
import * as fs from 'node:fs';
import { BlufioError, fsError } from './errors.ts';
import { statOrNull } from './files.ts';
import { holders, writerActive } from './locks.ts';
import { RetryAttempt } from './retry.ts';
import { ReadAhead, readFully, writeFully } from './vfs/disk-file.ts';
import type { VfsFile } from './vfs/file.ts';
import { protect, registerView, unregisterView } from './vfs/node-vfs.ts';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, WalIndex, frameOffset, parseWalHeader } from './wal.ts';
import { WalFollower, sameBytes } from './wal-follower.ts';

export { RetryAttempt };

export const SQLITE_HEADER = 'SQLite format 3\0';
const JOURNAL_MAGIC = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

export type JournalMode = 'wal' | 'rollback';

interface WalState {
  exists: boolean;
  ino: number;
  /** The header bytes as read (up to 32); equal bytes = same generation. */
  raw: Uint8Array;
}

export class SourceSnapshot implements VfsFile {
  readonly readOnly = true;
  readonly walPath: string;
  readonly journalPath: string;
  mode: JournalMode = 'rollback';
  pageSize = 4096;
  /** Pages in the state fixed by begin(). */
  nPages = 0;

  private dbFd = -1;
  private walFd = -1;
  private ahead?: ReadAhead;
  private dbStat?: fs.Stats;
  private header0: Uint8Array = new Uint8Array(0);
  private wal0?: WalState;
  /** The committed frames at begin(), which the view serves pages from. */
  private index0?: WalIndex;
  /** Follows the WAL during the copy (WAL mode with a valid WAL header only). */
  private follower?: WalFollower;
  /** Page 1's first 100 bytes as the view shows them. */
  private page1Head: Uint8Array = new Uint8Array(0);

  constructor(readonly dbPath: string) {
    this.walPath = `${dbPath}-wal`;
    this.journalPath = `${dbPath}-journal`;
  }

  /** Every file of the source, for the VFS's write protection. */
  get files(): string[] {
    return [this.dbPath, this.walPath, `${this.dbPath}-shm`, this.journalPath];
  }

  /** Fixes the state this attempt copies. Throws RetryAttempt while a commit is under way. */
  begin(): void {
    this.closeFds();
    try {
      this.dbFd = fs.openSync(this.dbPath, 'r');
      this.dbStat = fs.fstatSync(this.dbFd);
    } catch (e) {
      throw fsError(e, this.dbPath, 'cannot read the database');
    }
    if (!this.dbStat.isFile()) {
      throw new BlufioError('E_NOT_FILE', `${this.dbPath} is not a regular file`, 'give the path of an SQLite database file');
    }
    this.ahead = new ReadAhead(this.dbFd);
    const head = new Uint8Array(100);
    const got = readFully(this.dbFd, head, 0);
    if (got > 0 && (got < 100 || new TextDecoder().decode(head.subarray(0, 16)) !== SQLITE_HEADER)) {
      throw new BlufioError('E_NOT_SQLITE', `${this.dbPath} is not an SQLite database (no SQLite header)`,
        'check the path: it must name an SQLite database file');
    }
    this.header0 = head.subarray(0, got);
    if (got > 0) {
      const ps = (head[16] << 8) | head[17];
      this.pageSize = ps === 1 ? 65536 : ps;
      if (this.pageSize < 512 || (this.pageSize & (this.pageSize - 1)) !== 0) {
        throw new BlufioError('E_CORRUPT', `${this.dbPath} has an invalid page size (${this.pageSize})`,
          'the file is damaged; use another backup');
      }
    }

    this.wal0 = this.readWalState(true);
    this.index0 = undefined;
    this.follower = undefined;
    if (this.wal0.exists) {
      const header = parseWalHeader(this.wal0.raw);
      if (header) {
        const gen = new WalIndex(header);
        gen.scan(this.walFd);
        if (gen.lastCommit > 0) this.index0 = gen.clone();
        this.follower = new WalFollower(this.walFd, this.walPath, this.wal0.ino, gen);
      }
    }
    // The header says which mode the database is in; a WAL with committed frames beside an
    // empty file (a database never checkpointed yet) says it too. A stale, empty -wal beside a
    // rollback-mode database does not: the rollback checks must apply there.
    this.mode = head[18] === 2 || (got === 0 && this.index0) ? 'wal' : 'rollback';

    if (this.mode === 'rollback') {
      // SQLite does not read a WAL beside a rollback-mode database: neither do we.
      this.index0 = undefined;
      this.follower = undefined;
      const writer = writerActive(this.dbPath);
      if (writer) throw new RetryAttempt('another process is committing (it holds a write lock)');
      if (this.journalIsHot()) {
        if (writer === false && holders(this.dbPath)?.length === 0) {
          throw new BlufioError('E_NEEDS_RECOVERY', `${this.dbPath} has a hot journal left by an interrupted write, and no process has it open`,
            `open it once with SQLite (e.g. sqlite3 ${this.dbPath} "PRAGMA quick_check") so that SQLite rolls the interrupted transaction back, then try again`);
        }
        throw new RetryAttempt('another process is committing (hot rollback journal)');
      }
    }
    if (this.index0) {
      this.pageSize = this.index0.pageSize;
      this.nPages = this.index0.nPages;
    } else {
      this.nPages = Math.floor(this.dbStat.size / this.pageSize);
    }
    this.page1Head = this.nPages > 0 ? this.viewHeader() : new Uint8Array(0);
  }

  /** The database file's own first 100 bytes as read at begin() (empty for an empty file). */
  fileHeader(): Uint8Array {
    return this.header0;
  }

  /**
   * Throws RetryAttempt if the attempt can already be seen to be torn (cheap: one or two reads).
   * In WAL mode it takes in what was committed since the last look (`final`: scan even if the
   * WAL file looks untouched).
   */
  stillValid(final = false): void {
    if (this.mode === 'rollback') {
      const head = new Uint8Array(this.header0.length);
      readFully(this.dbFd, head, 0);
      if (!sameBytes(head, this.header0) || fs.fstatSync(this.dbFd).size !== this.dbStat!.size) {
        throw new RetryAttempt('another process committed during the copy');
      }
      if (this.journalIsHot()) throw new RetryAttempt('another process is committing (hot rollback journal)');
    } else if (this.follower) {
      this.follower.tail(undefined, { whenChanged: !final });
    } else {
      this.walUnchanged();
    }
  }

  /**
   * Ends an attempt whose copy is in `destPath` (closed by SQLite). Throws RetryAttempt unless
   * the copy can be made exactly a committed state.
   */
  finish(destPath: string): void {
    this.stillValid(true);
    const st = statOrNull(this.dbPath);
    if (!st || st.ino !== this.dbStat!.ino) throw new RetryAttempt('the database file was replaced during the copy');
    if (this.mode === 'rollback') return;

    if (!this.follower) {
      // No valid WAL at the start, and the same now: only a process that opened, wrote,
      // checkpointed and closed within the copy could have changed the file. Its times would show.
      if (!this.wal0!.exists && (st.size !== this.dbStat!.size || st.mtimeMs !== this.dbStat!.mtimeMs || st.ctimeMs !== this.dbStat!.ctimeMs)) {
        throw new RetryAttempt('the database was written during the copy');
      }
      this.overlay(destPath, new Map(), new Set(), this.nPages);
      return;
    }
    const f = this.follower;
    for (let round = 1; round <= 8; round++) {
      f.tail();
      const gen = f.gen;
      const nFinal = f.nPages || this.nPages;
      if (this.nPages === 0 && nFinal > 0) throw new RetryAttempt('the database was created during the copy');
      const fromFile = this.overlay(destPath, gen.frames, f.touched, nFinal);
      // Done if nothing committed since then touches a page we re-read from the database file
      // (only a checkpoint of a newer frame could have changed it) and the WAL did not restart
      // under the frames we read. Otherwise take the newer state in and go again.
      const fresh = new Set<number>();
      f.tail(fresh);
      if (f.gen === gen && ![...fromFile].some((p) => fresh.has(p))) return;
    }
    throw new RetryAttempt('the WAL kept moving under the pages being finished');
  }

  /**
   * Rewrites in the copy every page in `touched` (and every page past the begin() size) from its
   * frame in `frames` or else from the database file, sizes the copy to `nFinal` pages and makes
   * page 1 a self-contained rollback-journal header. Returns the pages read from the file.
   */
  private overlay(destPath: string, frames: Map<number, number>, touched: Set<number>, nFinal: number): Set<number> {
    const ps = this.pageSize;
    const fromFile = new Set<number>();
    const noRestart = !this.follower || this.follower.restarts === 0;
    const fd = fs.openSync(destPath, 'r+');
    try {
      const page = new Uint8Array(ps);
      const put = (pgno: number) => {
        if (pgno > nFinal) return;
        const frame = frames.get(pgno);
        // Within one generation frames never change: a page the view served from this very
        // frame is already right in the copy.
        if (frame !== undefined && noRestart && this.index0?.frames.get(pgno) === frame) return;
        if (frame !== undefined) {
          if (readFully(this.walFd, page, frameOffset(frame, ps) + WAL_FRAME_HEADER_SIZE) !== ps) {
            throw new RetryAttempt('the WAL was truncated during the copy');
          }
        } else {
          page.fill(0);
          readFully(this.dbFd, page, (pgno - 1) * ps);
          fromFile.add(pgno);
        }
        writeFully(fd, page, (pgno - 1) * ps);
      };
      for (const pgno of touched) put(pgno);
      for (let pgno = this.nPages + 1; pgno <= nFinal; pgno++) if (!touched.has(pgno)) put(pgno);
      if (fs.fstatSync(fd).size !== nFinal * ps) fs.ftruncateSync(fd, nFinal * ps);
      if (nFinal > 0) {
        // A self-contained rollback-journal database: legacy file format bytes, and an in-header
        // page count that SQLite trusts (offset 92 equal to the change counter at 24).
        const head = new Uint8Array(100);
        readFully(fd, head, 0);
        head[18] = 1;
        head[19] = 1;
        new DataView(head.buffer).setUint32(28, nFinal);
        head.copyWithin(92, 24, 28);
        writeFully(fd, head, 0);
      }
    } finally {
      fs.closeSync(fd);
    }
    return fromFile;
  }

  // ---- VfsFile: the view SQLite reads --------------------------------------------------------

  read(dst: Uint8Array, offset: number): number {
    const ps = this.pageSize;
    let done = 0;
    while (done < dst.length) {
      const pos = offset + done;
      const pgno = Math.floor(pos / ps) + 1;
      if (pgno > this.nPages) return done;
      const inPage = pos - (pgno - 1) * ps;
      const len = Math.min(ps - inPage, dst.length - done);
      const part = dst.subarray(done, done + len);
      const frame = this.index0?.frames.get(pgno);
      const got = frame !== undefined
        ? readFully(this.walFd, part, frameOffset(frame, ps) + WAL_FRAME_HEADER_SIZE + inPage)
        : this.ahead!.read(part, pos);
      if (pgno === 1 && inPage < 100) {
        const end = Math.min(100, inPage + len);
        part.set(this.page1Head.subarray(inPage, end), 0);
      }
      if (got < len) return done + got;
      done += len;
    }
    return done;
  }

  size(): number {
    return this.nPages * this.pageSize;
  }

  write(): void {
    throw new Error('the source database is read-only');
  }

  truncate(): void {
    throw new Error('the source database is read-only');
  }

  sync(): void {}

  close(): void {
    // SQLite closing the view does not end the snapshot; closeFds() does.
  }

  /**
   * Rollback mode: resolves as soon as no other process holds a write lock or a hot journal on
   * the source (polled every millisecond), or after `maxMs`.
   */
  async waitForQuiet(maxMs: number, signal?: AbortSignal): Promise<void> {
    const until = performance.now() + maxMs;
    while (performance.now() < until && !signal?.aborted) {
      if (!writerActive(this.dbPath) && !this.journalIsHot()) return;
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Releases the source's file descriptors. */
  closeFds(): void {
    if (this.dbFd >= 0) fs.closeSync(this.dbFd);
    if (this.walFd >= 0) fs.closeSync(this.walFd);
    this.dbFd = -1;
    this.walFd = -1;
    this.ahead = undefined;
  }

  // ---- helpers --------------------------------------------------------------------------------

  /** Page 1's header as the view presents it: a rollback-journal database of nPages pages. */
  private viewHeader(): Uint8Array {
    const head = new Uint8Array(100);
    const frame = this.index0?.frames.get(1);
    if (frame !== undefined) readFully(this.walFd, head, frameOffset(frame, this.pageSize) + WAL_FRAME_HEADER_SIZE);
    else head.set(this.header0);
    if (this.mode === 'wal') {
      head[18] = 1;
      head[19] = 1;
      new DataView(head.buffer).setUint32(28, this.nPages);
      head.copyWithin(92, 24, 28);
    }
    return head;
  }

  /** Opens (at begin) or re-reads the WAL's identity: existence, inode, header bytes. */
  private readWalState(open: boolean): WalState {
    let fd = this.walFd;
    try {
      if (open) fd = this.walFd = fs.openSync(this.walPath, 'r');
      const raw = new Uint8Array(WAL_HEADER_SIZE);
      const n = readFully(fd, raw, 0);
      const ino = fs.statSync(this.walPath).ino;
      return { exists: true, ino, raw: raw.subarray(0, n) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { exists: false, ino: 0, raw: new Uint8Array(0) };
      throw fsError(e, this.walPath, 'cannot read the WAL file');
    }
  }

  /** Throws RetryAttempt unless the WAL is the same file, same generation, as at begin(). */
  private walUnchanged(): void {
    const was = this.wal0!;
    let now: WalState;
    if (was.exists) {
      now = this.readWalState(false);
      if (now.exists && now.ino !== was.ino) throw new RetryAttempt('the WAL file was replaced during the copy');
    } else {
      now = { exists: fs.existsSync(this.walPath), ino: 0, raw: new Uint8Array(0) };
    }
    if (now.exists !== was.exists) {
      throw new RetryAttempt(was.exists ? 'the WAL was checkpointed and removed during the copy' : 'a WAL appeared during the copy');
    }
    if (!sameBytes(now.raw, was.raw)) throw new RetryAttempt('the WAL was restarted by a checkpoint during the copy');
  }

  /** A rollback journal with a valid header: a commit is being written (or a crash left one). */
  private journalIsHot(): boolean {
    let fd: number;
    try {
      fd = fs.openSync(this.journalPath, 'r');
    } catch {
      return false;
    }
    try {
      const head = new Uint8Array(8);
      return readFully(fd, head, 0) === 8 && head.every((b, i) => b === JOURNAL_MAGIC[i]);
    } finally {
      fs.closeSync(fd);
    }
  }
}

let viewCounter = 0;

/**
 * A snapshot of the database at `dbPath` that SQLite can open under `name` (a registered VFS
 * view), with the source's files protected from writes, until close().
 */
export function openSnapshotView(dbPath: string): { snapshot: SourceSnapshot; name: string; close: () => void } {
  const snapshot = new SourceSnapshot(dbPath);
  const unprotect = protect(snapshot.files);
  const name = `/blufio-view/${process.pid}/${++viewCounter}`;
  registerView(name, snapshot);
  return {
    snapshot,
    name,
    close: () => {
      unregisterView(name);
      snapshot.closeFds();
      unprotect();
    },
  };
}
