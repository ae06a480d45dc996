/**
 * A consistent, lock-free read of a live SQLite database that other processes keep writing.
 *
 * SQLite reads the source through this object (the VfsFile behind a registered view name), never
 * through the source's own files, so nothing the tool does can write them. One *attempt* is:
 *
 *   begin()       fix the state to copy: the database file plus, in WAL mode, every WAL frame
 *                 committed so far; pick the journal mode's guard and build the view;
 *   ...copy...    SQLite's backup API reads the view page by page (view.ts); watch() is cheap to
 *                 call between steps (the guard follows the WAL, or ends a doomed rollback-mode
 *                 attempt early);
 *   finish(dest)  the guard makes the copy exactly a committed state and proves it, or throws
 *                 RetryAttempt.
 *
 * The parts, one concept each: source-file.ts (the database file: stamp, header, journal),
 * view.ts (what SQLite reads), guard.ts (the interface) with rollback-guard.ts and wal-guard.ts
 * (one per journal mode), overlay.ts (rewriting the copy into a committed state). Why this is
 * safe is argued in docs/consistency.md.
 */
import { BlufioError } from '../errors.ts';
import { hasSqliteMagic, journalModeOf, declaredBytes, pageSizeOf, validPageSize, HEADER_BYTES } from '../core/header.ts';
import { statOrNull } from '../files.ts';
import { writerActive } from '../locks.ts';
import { RetryAttempt } from '../retry.ts';
import { ReadAhead } from '../vfs/disk-file.ts';
import { jsMemory, ReadOnlyFile, type IoMemory } from '../vfs/file.ts';
import type { NodeVfs } from '../vfs/node-vfs.ts';
import { WalFollower, diskWal, type WalHandle, type WalSource } from '../wal-follower.ts';
import type { ConsistencyGuard, JournalMode } from './guard.ts';
import { RollbackGuard, waitForQuiet } from './rollback-guard.ts';
import { SourceFile } from './source-file.ts';
import { trace, tracing } from './trace.ts';
import { SnapshotView } from './view.ts';
import { WalGuard } from './wal-guard.ts';

export type { JournalMode } from './guard.ts';

export class SourceSnapshot extends ReadOnlyFile {
  readonly walPath: string;
  private readonly follower: WalFollower;
  private src: SourceFile | null = null;
  private wal0: WalHandle | null = null;
  private header0: Uint8Array = new Uint8Array(0);
  private guard: ConsistencyGuard | null = null;
  private view: SnapshotView | null = null;
  /** The read-ahead over the database file, kept across attempts (its windows are in `memory`). */
  private ahead: ReadAhead | null = null;
  private openedStamp = '';
  /** The mode the last begin() found, kept when it then threw (the retry policy depends on it). */
  private lastMode: JournalMode = 'rollback';

  constructor(
    readonly dbPath: string,
    private readonly walSource: WalSource = diskWal(`${dbPath}-wal`),
    /** Where the read-ahead windows live: the VFS's (SQLite's heap) when SQLite reads the view. */
    private readonly memory: IoMemory = jsMemory(),
  ) {
    super();
    this.walPath = `${dbPath}-wal`;
    this.follower = new WalFollower(walSource);
  }

  /** Every file of the source, for the VFS's write protection. */
  get files(): string[] {
    return [this.dbPath, this.walPath, `${this.dbPath}-shm`, `${this.dbPath}-journal`];
  }

  get mode(): JournalMode {
    return this.lastMode;
  }

  get pageSize(): number {
    return this.view?.pageSize ?? 4096;
  }

  /** Pages in the state fixed by begin(). */
  get nPages(): number {
    return this.view?.nPages ?? 0;
  }

  /** Full passes made by the last finish() (for reports and tests). */
  get fullPasses(): number {
    return this.guard?.fullPasses ?? 0;
  }

  /** The database file's own first 100 bytes as read at begin() (empty for an empty file). */
  fileHeader(): Uint8Array {
    return this.header0;
  }

  /** Fixes the state this attempt copies. Throws RetryAttempt while a commit is under way. */
  begin(): void {
    this.release();
    const src = (this.src = SourceFile.open(this.dbPath));
    this.guard = null;
    this.view = null;
    let head: Uint8Array;
    let lastPre: string;
    for (let tries = 1; ; tries++) {
      // The file's stamp is taken before anything else is read (see WalGuard.look()); if a
      // checkpoint wrote the file before the WAL was read, header and WAL may not describe one
      // state: read both again (cheap), a few times, before the attempt is given up.
      lastPre = src.stamp();
      if (tries === 1) this.openedStamp = lastPre;
      head = src.header();
      if (head.length > 0 && (head.length < HEADER_BYTES || !hasSqliteMagic(head))) {
        throw new BlufioError('E_NOT_SQLITE', `${this.dbPath} is not an SQLite database (no SQLite header)`,
          'check the path: it must name an SQLite database file');
      }
      this.follower.start();
      if (src.stamp() === lastPre) break;
      if (tries === 100) throw new RetryAttempt('a checkpoint was under way each time the copy began');
    }
    this.header0 = head;
    let pageSize = 4096;
    if (head.length > 0) {
      pageSize = pageSizeOf(head);
      if (!validPageSize(pageSize)) {
        throw new BlufioError('E_CORRUPT', `${this.dbPath} has an invalid page size (${pageSize})`, 'the file is damaged; use another backup');
      }
    }

    const gen = this.follower.gen;
    let index0 = gen && gen.lastCommit > 0 ? gen.clone() : null;
    if (tracing) trace(`begin salt1=${gen?.header.salt1} commit=${gen?.lastCommit} index0=${[...(index0?.frames.keys() ?? [])].join(',')}`);
    // The header says which mode the database is in; a WAL with committed frames beside an
    // empty file (a database never checkpointed yet) says it too. A stale, empty -wal beside a
    // rollback-mode database does not: the rollback checks must apply there.
    const mode: JournalMode = journalModeOf(head) === 'wal' || (head.length === 0 && index0) ? 'wal' : 'rollback';
    this.lastMode = mode;
    if (head.length === 0 && !index0) {
      // A WAL with bytes in it that showed no commit (yet): look again rather than judge.
      if ((statOrNull(this.walPath)?.size ?? 0) > 0) throw new RetryAttempt('an empty database file beside a WAL that showed no commit');
      // SQLite would open an empty file as an empty database, and a backup of it would restore
      // as one: almost always a wrong path, never something to keep as a backup.
      throw new BlufioError('E_NOT_SQLITE', `${this.dbPath} is empty (0 bytes, and no WAL with committed data beside it)`, 'check the path: it must name an SQLite database file');
    }

    let nPages: number;
    if (mode === 'rollback') {
      // SQLite does not read a WAL beside a rollback-mode database: neither do we.
      index0 = null;
      this.follower.close();
      this.guard = new RollbackGuard(src, head);
    }
    if (index0) {
      this.wal0 = this.walSource.open();
      if (!this.wal0 || this.wal0.ino !== this.follower.ino) throw new RetryAttempt('the WAL was replaced as the copy began');
      pageSize = index0.pageSize;
      nPages = index0.nPages;
    } else {
      nPages = Math.floor(src.opened.size / pageSize);
      this.checkWhole(src, head, pageSize, mode, lastPre);
    }
    this.ahead ??= new ReadAhead(src.fd, this.memory);
    this.ahead.reopen(src.fd);
    this.view = new SnapshotView(pageSize, nPages, index0, this.wal0, head, mode, this.ahead);
    this.guard ??= new WalGuard(src, this.follower, lastPre, { index: index0, pages: nPages, pageSize });
  }

  /**
   * A file cut short reads as a smaller database, or (under one page) as an empty one — which
   * the check then calls sound: a 1000-byte piece of a backup was verified "OK" and restored as
   * an empty database before this. SQLite writes whole pages, so a file with a header and less
   * than one page is always damaged; in rollback mode (nothing is being committed: checked just
   * before) so is a file that is not whole pages, or shorter than the size its header declares.
   */
  private checkWhole(src: SourceFile, head: Uint8Array, pageSize: number, mode: JournalMode, stampAtBegin: string): void {
    if (head.length === 0) return;
    const size = src.size();
    const declared = declaredBytes(head);
    const cut = size < pageSize || (mode === 'rollback' && (size % pageSize !== 0 || (declared !== null && declared > size)));
    if (!cut) return;
    // A live writer extends the file and rewrites page 1 in one commit: a header and a size read
    // on either side of it disagree without anything being damaged (found by the live suite).
    // Judged only when nothing changed since the header was read, and no commit is under way;
    // otherwise looked at again.
    if (src.stamp() !== stampAtBegin || src.journalIsHot() || writerActive(this.dbPath)) {
      throw new RetryAttempt('the size and the header of the file disagree while it changes');
    }
    throw new BlufioError('E_CORRUPT', `${this.dbPath} is truncated: ${declared !== null ? `its header declares ${declared} bytes` : `its pages are ${pageSize} bytes`}, the file holds ${size}`,
      'the file was cut short (an interrupted copy or download?); use another backup');
  }

  private current(): ConsistencyGuard {
    if (!this.guard) throw new Error('SourceSnapshot: begin() first');
    return this.guard;
  }

  /** Between copy steps: see ConsistencyGuard.watch(). */
  watch(final = false): void {
    this.current().watch(final);
  }

  /**
   * True if anything was committed to the source since begin(), or may have been. An SQLite error
   * while reading the view is then no verdict on the database: the view may have been torn.
   */
  movedSinceBegin(): boolean {
    if (this.guard) return this.guard.movedSinceBegin();
    // begin() itself gave a verdict (not SQLite, truncated): it counts if the file is unchanged.
    return this.src !== null && (this.src.replaced() || this.src.stamp() !== this.openedStamp);
  }

  /**
   * Ends an attempt whose copy is in `destPath` (closed by SQLite). Throws RetryAttempt unless
   * the copy can be made exactly a committed state.
   */
  finish(destPath: string): void {
    const guard = this.current();
    guard.watch(true);
    if (this.src!.replaced()) throw new RetryAttempt('the database file was replaced during the copy');
    guard.finish(destPath);
  }

  /** Rollback mode, after a torn attempt: waits until no commit is under way (at most `maxMs`). */
  waitForQuiet(maxMs: number, signal?: AbortSignal): Promise<void> {
    return waitForQuiet(this.dbPath, maxMs, signal);
  }

  /** Releases the source's file descriptors (the next begin() opens them again). */
  release(): void {
    this.src?.close();
    this.src = null;
    this.wal0?.close();
    this.wal0 = null;
    this.follower.close();
    // Nothing read in one attempt may be served in the next (begin() forgets it too).
    this.ahead?.invalidate();
  }

  /** Gives back the read-ahead's memory (after release(); the snapshot is not used again). */
  dispose(): void {
    this.ahead?.dispose();
    this.ahead = null;
  }

  // ---- VfsFile: SQLite reads the current attempt's view ---------------------------------------

  read(mem: Uint8Array, at: number, n: number, offset: number): number {
    if (!this.view) throw new Error('the snapshot has no attempt under way');
    return this.view.read(mem, at, n, offset);
  }

  size(): number {
    return this.view?.size() ?? 0;
  }
}

let viewCounter = 0;

/**
 * A snapshot of the database at `dbPath` that SQLite can open under `name` (a view registered
 * with `vfs`), with the source's files protected from writes, until close().
 */
export function openSnapshotView(vfs: NodeVfs, dbPath: string): { snapshot: SourceSnapshot; name: string; close: () => void } {
  const snapshot = new SourceSnapshot(dbPath, undefined, vfs.memory);
  const unprotect = vfs.protect(snapshot.files);
  const name = `/blufio-view/${process.pid}/${++viewCounter}`;
  vfs.registerView(name, snapshot);
  return {
    snapshot,
    name,
    close: () => {
      vfs.unregisterView(name);
      snapshot.release();
      snapshot.dispose();
      unprotect();
    },
  };
}
