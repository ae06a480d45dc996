/**
 * A consistent, lock-free read of a live SQLite database that other processes keep writing.
 *
 * SQLite reads the source through this object (it is the VfsFile behind a registered view), never
 * through the source's own files, so nothing the tool does can write them. One *attempt* is:
 *
 *   begin()       fix the state to copy: the database file plus, in WAL mode, every WAL frame
 *                 committed so far (pages are served from the newest such frame, else the file);
 *   ...copy...    SQLite's backup API reads the view page by page; watch() is cheap to call
 *                 between steps: it follows the WAL and ends a doomed rollback-mode attempt early;
 *   finish(dest)  make the copy exactly a committed state and prove it, or throw RetryAttempt.
 *
 * Why this is safe is argued in docs/consistency.md. In short:
 * - WAL mode: the database file changes only through checkpoints, which copy committed frames of
 *   the current WAL generation into it. A WalFollower reads every frame committed while the copy
 *   runs (between steps), across restarts of the WAL, and keeps the set of pages they touched.
 *   finish() rewrites exactly those pages in the copy, from their newest frame or, for pages
 *   whose frames were checkpointed in an earlier generation, from the database file; pages no
 *   frame touched cannot have changed while we read them. The result is the state as of the last
 *   commit taken in, and a last look at the WAL proves nothing moved under the pages we re-read.
 *   Where the WAL cannot show what a checkpoint copied (truncated, deleted, restarted unseen) and
 *   the database file changed meanwhile, every page is read again (a full pass), and that pass
 *   must itself see no such change.
 * - Rollback mode: every commit rewrites page 1 (change counter) and keeps a hot journal while it
 *   writes pages. An attempt counts only if the 100-byte header and the file size are the same at
 *   the end as at the start and no hot journal was seen at either end.
 */
import * as fs from 'node:fs';
import { BlufioError, fsError } from './errors.ts';
import { statOrNull } from './files.ts';
import { holders, writerActive } from './locks.ts';
import { RetryAttempt } from './retry.ts';
import { IO_CHUNK, ReadAhead, readFully, writeFully } from './vfs/disk-file.ts';
import type { VfsFile } from './vfs/file.ts';
import { protect, registerView, unregisterView } from './vfs/node-vfs.ts';
import { WAL_FRAME_HEADER_SIZE, WalIndex, frameOffset } from './wal.ts';
import { WalFollower, diskWal, readU32, sameBytes, type WalHandle, type WalSource } from './wal-follower.ts';


import { declaredBytes, SQLITE_HEADER } from './core/header.ts';
const JOURNAL_MAGIC = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

export type JournalMode = 'wal' | 'rollback';

/**
 * Diagnostic trace (BLUFIO_TRACE=1): the attempts' begins, looks and finishing rounds, kept in
 * memory; the torture script writes it beside an inconsistent backup (that is how the last flaw
 * of the proof was found). Costs nothing when off.
 */
const tracing = typeof process !== 'undefined' && process.env.BLUFIO_TRACE === '1';
function trace(event: string): void {
  if (tracing) ((globalThis as { __blufioTrace?: string[] }).__blufioTrace ??= []).push(`${(performance.now()).toFixed(2)} ${event}`);
}

/** Most rounds of finish() before the attempt is given up as not provable. */
const FINISH_ROUNDS = 8;

export class SourceSnapshot implements VfsFile {
  readonly readOnly = true;
  readonly walPath: string;
  readonly journalPath: string;
  mode: JournalMode = 'rollback';
  pageSize = 4096;
  /** Pages in the state fixed by begin(). */
  nPages = 0;
  /** Full passes made by the last finish() (for reports and tests). */
  fullPasses = 0;

  private dbFd = -1;
  private ahead?: ReadAhead;
  private dbStat?: fs.Stats;
  private header0: Uint8Array = new Uint8Array(0);
  /** The committed frames at begin(), which the view serves pages from, and the file they are in. */
  private index0: WalIndex | null = null;
  private wal0: WalHandle | null = null;
  /** Follows the WAL from begin() on (WAL mode). */
  private readonly follower: WalFollower;
  /** Page 1's first 100 bytes as the view shows them. */
  private page1Head: Uint8Array = new Uint8Array(0);
  /** The database file's stamp taken just before the previous look read the WAL. */
  private lastPre = '';
  /** The database file changed since begin(). */
  private dbMoved = false;
  /**
   * Why a full pass is needed: the WAL could not show every frame committed between two looks,
   * and the database file changed between them (a checkpoint wrote pages we cannot name).
   */
  private gap: string | null = null;
  private frameBuf = new Uint8Array(0);
  private readonly walSource: WalSource;

  constructor(readonly dbPath: string, wal: WalSource = diskWal(`${dbPath}-wal`)) {
    this.walPath = `${dbPath}-wal`;
    this.journalPath = `${dbPath}-journal`;
    this.follower = new WalFollower(wal);
    this.walSource = wal;
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
    this.dbMoved = false;
    this.gap = null;
    this.fullPasses = 0;
    this.ahead = new ReadAhead(this.dbFd);
    const head = new Uint8Array(100);
    let got = 0;
    for (let tries = 1; ; tries++) {
      // The file's stamp is taken before anything else is read (see look()); if a checkpoint
      // wrote the file before the WAL was read, header and WAL may not describe one state: read
      // both again (cheap), a few times, before the attempt is given up.
      this.lastPre = this.dbStampKey();
      got = readFully(this.dbFd, head, 0);
      if (got > 0 && (got < 100 || new TextDecoder().decode(head.subarray(0, 16)) !== SQLITE_HEADER)) {
        throw new BlufioError('E_NOT_SQLITE', `${this.dbPath} is not an SQLite database (no SQLite header)`,
          'check the path: it must name an SQLite database file');
      }
      this.follower.start();
      if (this.dbStampKey() === this.lastPre) break;
      if (tries === 100) throw new RetryAttempt('a checkpoint was under way each time the copy began');
    }
    this.header0 = head.slice(0, got);
    if (got > 0) {
      const ps = (head[16] << 8) | head[17];
      this.pageSize = ps === 1 ? 65536 : ps;
      if (this.pageSize < 512 || (this.pageSize & (this.pageSize - 1)) !== 0) {
        throw new BlufioError('E_CORRUPT', `${this.dbPath} has an invalid page size (${this.pageSize})`,
          'the file is damaged; use another backup');
      }
    }

    const gen = this.follower.gen;
    this.index0 = gen && gen.lastCommit > 0 ? gen.clone() : null;
    if (tracing) trace(`begin salt1=${gen?.header.salt1} commit=${gen?.lastCommit} index0=${[...(this.index0?.frames.keys() ?? [])].join(',')}`);
    // The header says which mode the database is in; a WAL with committed frames beside an
    // empty file (a database never checkpointed yet) says it too. A stale, empty -wal beside a
    // rollback-mode database does not: the rollback checks must apply there.
    this.mode = head[18] === 2 || (got === 0 && this.index0) ? 'wal' : 'rollback';
    if (got === 0 && !this.index0) {
      // A WAL with bytes in it that showed no commit (yet): look again rather than judge.
      if ((statOrNull(`${this.dbPath}-wal`)?.size ?? 0) > 0) throw new RetryAttempt('an empty database file beside a WAL that showed no commit');
      // SQLite would open an empty file as an empty database, and a backup of it would restore
      // as one: almost always a wrong path, never something to keep as a backup.
      throw new BlufioError('E_NOT_SQLITE', `${this.dbPath} is empty (0 bytes, and no WAL with committed data beside it)`, 'check the path: it must name an SQLite database file');
    }

    if (this.mode === 'rollback') {
      // SQLite does not read a WAL beside a rollback-mode database: neither do we.
      this.index0 = null;
      this.follower.close();
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
      // The view reads these frames through a descriptor of its own: the follower lets go of a
      // WAL file that is deleted or replaced, the view must keep reading the one it started with.
      this.wal0 = this.walSource.open();
      if (!this.wal0 || this.wal0.ino !== this.follower.ino) throw new RetryAttempt('the WAL was replaced as the copy began');
      this.pageSize = this.index0.pageSize;
      this.nPages = this.index0.nPages;
    } else {
      this.nPages = Math.floor(this.dbStat.size / this.pageSize);
      this.checkWhole(head, got);
    }
    this.frameBuf = new Uint8Array(WAL_FRAME_HEADER_SIZE + this.pageSize);
    this.page1Head = this.nPages > 0 ? this.viewHeader() : new Uint8Array(0);
  }

  /**
   * A file cut short reads as a smaller database, or (under one page) as an empty one — which
   * the check then calls sound: a 1000-byte piece of a backup was verified "OK" and restored as
   * an empty database before this. SQLite writes whole pages, so a file with a header and less
   * than one page is always damaged; in rollback mode (nothing is being committed: checked just
   * before) so is a file that is not whole pages, or shorter than the size its header declares.
   */
  private checkWhole(head: Uint8Array, got: number): void {
    if (got === 0) return;
    const size = fs.fstatSync(this.dbFd).size;
    const declared = declaredBytes(head);
    const cut = size < this.pageSize || (this.mode === 'rollback' && (size % this.pageSize !== 0 || (declared !== null && declared > size)));
    if (cut) {
      // A live writer extends the file and rewrites page 1 in one commit: a header and a size
      // read on either side of it disagree without anything being damaged (found by the live
      // suite). Judged only when nothing changed since the header was read, and no commit is
      // under way; otherwise looked at again.
      if (this.dbStampKey() !== this.lastPre || this.journalIsHot() || writerActive(this.dbPath)) {
        throw new RetryAttempt('the size and the header of the file disagree while it changes');
      }
      throw new BlufioError('E_CORRUPT', `${this.dbPath} is truncated: ${declared !== null ? `its header declares ${declared} bytes` : `its pages are ${this.pageSize} bytes`}, the file holds ${size}`,
        'the file was cut short (an interrupted copy or download?); use another backup');
    }
  }

  /** The database file's own first 100 bytes as read at begin() (empty for an empty file). */
  fileHeader(): Uint8Array {
    return this.header0;
  }

  /**
   * Cheap to call between copy steps. WAL mode: takes in what was committed since the last look
   * (`final`: read the WAL even if it looks untouched). Rollback mode: throws RetryAttempt as
   * soon as a commit can be seen.
   */
  watch(final = false): void {
    if (this.mode === 'rollback') {
      const head = new Uint8Array(this.header0.length);
      readFully(this.dbFd, head, 0);
      if (!sameBytes(head, this.header0) || fs.fstatSync(this.dbFd).size !== this.dbStat!.size) {
        throw new RetryAttempt('another process committed during the copy');
      }
      if (this.journalIsHot()) throw new RetryAttempt('another process is committing (hot rollback journal)');
    } else {
      this.look(undefined, !final);
    }
  }

  /**
   * True if anything was committed to the source since begin(), or may have been. An SQLite error
   * while reading the view is then no verdict on the database: the view may have been torn.
   */
  movedSinceBegin(): boolean {
    if (this.mode === 'rollback') {
      try {
        this.watch(true);
        return false;
      } catch (e) {
        if (e instanceof RetryAttempt) return true;
        throw e;
      }
    }
    this.look();
    const st = statOrNull(this.dbPath);
    return this.dbMoved || this.follower.changes > 0 || !st || st.ino !== this.dbStat!.ino;
  }

  /**
   * Ends an attempt whose copy is in `destPath` (closed by SQLite). Throws RetryAttempt unless
   * the copy can be made exactly a committed state.
   */
  finish(destPath: string): void {
    this.watch(true);
    const st = statOrNull(this.dbPath);
    if (!st || st.ino !== this.dbStat!.ino) throw new RetryAttempt('the database file was replaced during the copy');
    if (this.mode === 'rollback') return;

    const f = this.follower;
    let why = 'the WAL kept moving under the pages being finished';
    for (let round = 1; round <= FINISH_ROUNDS; round++) {
      this.look();
      const full = this.gap !== null;
      this.gap = null;
      if (full) this.fullPasses++;
      const gen = f.gen;
      const nFinal = gen && gen.lastCommit > 0 ? gen.nPages : this.fileDbPages();
      if (this.nPages === 0 && nFinal > 0) throw new RetryAttempt('the database was created during the copy');
      // The file's stamp from before this round's look read the WAL: a write whose time was set
      // before it but whose bytes land later belongs to a checkpoint of frames that look saw.
      const before = this.lastPre;
      let fromFile: (p: number) => boolean;
      try {
        fromFile = this.overlay(destPath, gen, full ? null : f.touched, nFinal);
      } catch (e) {
        if (!(e instanceof RetryAttempt)) throw e;
        // The WAL was cut under the frames being read: the next round reads every page again.
        this.gap = why = e.reason;
        continue;
      }
      // Done if no discontinuity was seen meanwhile, the same WAL generation is followed, and no
      // page read from the database file can have changed: either the file did not change at
      // all, or nothing committed since then touches such a page (only a checkpoint of a newer
      // frame could have changed it). Otherwise take the newer state in and go again.
      const fresh = new Set<number>();
      this.look(fresh);
      if (this.gap) {
        why = `a full pass did not fit between two commits (${this.gap})`;
        continue;
      }
      if (f.gen !== gen) continue;
      if (tracing) trace(`round ${round} full=${full} nFinal=${nFinal} gen=${gen?.header.salt1}/${gen?.lastCommit} frames=${[...(gen?.frames ?? new Map())].map(([p, i]) => `${p}:${i}`).join(',')} sameDb=${before === this.dbStampKey()} fresh=${[...fresh].join(',')} touched=${[...f.touched].sort((a, b) => a - b).join(',')}`);
      if (before === this.dbStampKey() || ![...fresh].some(fromFile)) {
        // The argument holds only while the database stays in WAL mode: switched to a rollback
        // journal, its file is written in place by every commit (the next attempt copies it so).
        const format = this.fileHeaderByte(18);
        if (format >= 0 && format !== 2) throw new RetryAttempt('the database left WAL mode during the copy');
        return;
      }
    }
    throw new RetryAttempt(why);
  }

  /**
   * One look at the source in WAL mode: the follower reads the WAL, and the database file's stamp
   * is taken before and after. A discontinuity (frames may have been committed unread) matters
   * only if the database file changed between the stamp taken before the *previous* look read the
   * WAL and the one taken after this look read it: that interval covers everything that can have
   * happened unseen. The file's times are compared to the nanosecond; Linux (6.13 and later, on
   * ext4, xfs, btrfs, tmpfs) gives a write a new time whenever the old one has been read.
   */
  private look(fresh?: Set<number>, whenChanged = false): void {
    const pre = this.dbStampKey();
    const { read, reason, blind } = this.follower.look(fresh, { whenChanged });
    const post = this.dbStampKey();
    const dbChanged = post !== this.lastPre;
    if (dbChanged) {
      this.dbMoved = true;
      if (reason) this.gap = reason;
      else if (blind) this.gap = 'the database file changed while there was no WAL to follow';
    }
    // A skipped look saw nothing of the WAL: the next interval still starts at the last look
    // that read it.
    if (read) this.lastPre = pre;
    if (tracing && read) {
      const g = this.follower.gen;
      trace(`look reason=${reason} dbChanged=${dbChanged} gen=${g?.header.salt1}/${g?.lastCommit} restarts=${this.follower.restarts} gap=${this.gap}`);
    }
  }

  private dbStampKey(): string {
    const st = fs.fstatSync(this.dbFd, { bigint: true });
    return `${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  }

  private fileHeaderByte(at: number): number {
    const b = new Uint8Array(1);
    return readFully(this.dbFd, b, at) === 1 ? b[0] : -1;
  }

  /** Pages in the database file alone: its in-header page count where valid, else its size. */
  private fileDbPages(): number {
    const head = new Uint8Array(100);
    const got = readFully(this.dbFd, head, 0);
    const dv = new DataView(head.buffer);
    const size = Math.floor(fs.fstatSync(this.dbFd).size / this.pageSize);
    if (got === 100 && dv.getUint32(24) === dv.getUint32(92) && dv.getUint32(28) > 0) return Math.min(dv.getUint32(28), size);
    return size;
  }

  /**
   * Rewrites pages of the copy from `gen`'s committed frames or else from the database file:
   * the pages in `touched` (and every page past the begin() size), or every page (`touched`
   * null, a full pass). Sizes the copy to `nFinal` pages and makes page 1 a self-contained
   * rollback-journal header. Returns a test for "this page was read from the database file".
   */
  private overlay(destPath: string, gen: WalIndex | null, touched: Set<number> | null, nFinal: number): (p: number) => boolean {
    const ps = this.pageSize;
    // A copy: the follower adds to the generation's map at the next look.
    const frames = new Map<number, number>(gen?.frames ?? []);
    const wal = this.follower.reader;
    // Within one generation frames never change: a page the view served from this very frame
    // is already right in the copy.
    const sameGen = gen !== null && this.index0 !== null && sameBytes(gen.header.raw, this.index0.header.raw);
    const fromFile = new Set<number>();
    const fd = fs.openSync(destPath, 'r+');
    try {
      const page = new Uint8Array(ps);
      const readFrame = (pgno: number, frame: number) => {
        if (!wal || wal.read(page, frameOffset(frame, ps) + WAL_FRAME_HEADER_SIZE) !== ps) {
          throw new RetryAttempt('the WAL was truncated during the copy');
        }
      };
      if (touched === null) {
        this.fullPass(fd, frames, nFinal, readFrame, page);
      } else {
        const put = (pgno: number) => {
          if (pgno > nFinal) return;
          const frame = frames.get(pgno);
          if (frame !== undefined && sameGen && this.index0!.frames.get(pgno) === frame) return;
          if (frame !== undefined) readFrame(pgno, frame);
          else {
            page.fill(0);
            readFully(this.dbFd, page, (pgno - 1) * ps);
            fromFile.add(pgno);
          }
          writeFully(fd, page, (pgno - 1) * ps);
        };
        for (const pgno of touched) put(pgno);
        for (let pgno = this.nPages + 1; pgno <= nFinal; pgno++) if (!touched.has(pgno)) put(pgno);
      }
      if (fs.fstatSync(fd).size !== nFinal * ps) fs.ftruncateSync(fd, nFinal * ps);
      if (nFinal > 0) {
        const head = new Uint8Array(100);
        readFully(fd, head, 0);
        writeFully(fd, selfContainedHeader(head, nFinal), 0);
      }
    } finally {
      fs.closeSync(fd);
    }
    return touched === null ? (p) => !frames.has(p) : (p) => fromFile.has(p);
  }

  /**
   * Every page of the copy made equal to the database file's, then the frames laid over: read in
   * 1 MiB runs and compared, so only pages that differ are written.
   */
  private fullPass(fd: number, frames: Map<number, number>, nFinal: number, readFrame: (pgno: number, frame: number) => void, page: Uint8Array): void {
    const ps = this.pageSize;
    const per = Math.max(1, Math.floor(IO_CHUNK / ps));
    const src = new Uint8Array(per * ps);
    const dst = new Uint8Array(per * ps);
    for (let first = 1; first <= nFinal; first += per) {
      const n = Math.min(per, nFinal - first + 1);
      const len = n * ps;
      const a = src.subarray(0, len);
      const b = dst.subarray(0, len);
      a.fill(0, readFully(this.dbFd, a, (first - 1) * ps));
      b.fill(0, readFully(fd, b, (first - 1) * ps));
      for (let k = 0; k < n; k++) {
        const frame = frames.get(first + k);
        if (frame !== undefined) {
          readFrame(first + k, frame);
          a.set(page, k * ps);
        }
      }
      if (Buffer.compare(a, b) !== 0) writeFully(fd, a, (first - 1) * ps);
    }
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
      const got = frame !== undefined && this.readFrame(frame, part, inPage) ? len : this.ahead!.read(part, pos);
      if (pgno === 1 && inPage < 100) {
        const end = Math.min(100, inPage + len);
        part.set(this.page1Head.subarray(inPage, end), 0);
      }
      if (got < len) return done + got;
      done += len;
    }
    return done;
  }

  /**
   * Reads part of a frame of the begin() generation, checking that it still carries that
   * generation's salts. A frame overwritten by a restart is not served: its page was checkpointed
   * into the database file before the restart, and finish() rewrites every page the follower saw.
   */
  private readFrame(frame: number, part: Uint8Array, inPage: number): boolean {
    const buf = this.frameBuf;
    if (this.wal0!.read(buf, frameOffset(frame, this.pageSize)) !== buf.length) return false;
    const h = this.index0!.header;
    if (readU32(buf, 8) !== h.salt1 || readU32(buf, 12) !== h.salt2) return false;
    part.set(buf.subarray(WAL_FRAME_HEADER_SIZE + inPage, WAL_FRAME_HEADER_SIZE + inPage + part.length));
    return true;
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
    this.dbFd = -1;
    this.wal0?.close();
    this.wal0 = null;
    this.follower.close();
    this.ahead = undefined;
  }

  // ---- helpers --------------------------------------------------------------------------------

  /** Page 1's header as the view presents it: a rollback-journal database of nPages pages. */
  private viewHeader(): Uint8Array {
    const head = new Uint8Array(100);
    const frame = this.index0?.frames.get(1);
    if (frame === undefined || !this.readFrame(frame, head, 0)) head.set(this.header0);
    return this.mode === 'wal' ? selfContainedHeader(head, this.nPages) : head;
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

/**
 * Page 1's first 100 bytes made those of a self-contained rollback-journal database of `nPages`
 * pages: legacy file format bytes (18/19 = 1), and an in-header page count that SQLite trusts
 * (offset 92, version-valid-for, equal to the change counter at 24). Changes `head` in place.
 */
export function selfContainedHeader(head: Uint8Array, nPages: number): Uint8Array {
  head[18] = 1;
  head[19] = 1;
  new DataView(head.buffer, head.byteOffset, head.length).setUint32(28, nPages);
  head.copyWithin(92, 24, 28);
  return head;
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
