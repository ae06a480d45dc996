/**
 * Follows the source database from a private copy of one of its committed states (the replica),
 * one step at a time without any lock: the snapshot's own machinery (docs/consistency.md) used
 * continuously. A WalFollower reads every frame committed since the last step; catchUp() reads
 * the pages they touched from their newest frames or the database file (overlay.ts, into a
 * scratch file) and proves they are one committed state exactly as the WAL guard proves a backup
 * (wal-guard.ts): nothing read from the database file can have moved under it. Where the WAL cannot show what was committed (checkpointed and restarted before it
 * was read: the replicator was slow, stopped or killed) and the database file changed, every
 * page is compared with the file instead (a full pass): the gap is closed by the pages that
 * differ from the last shipped state, never by a guess.
 *
 * The hashes of the newest state's pages are kept here (the checksum of segment.ts): a step is
 * the pages whose hash changed, written to the replicator's spool. The replica file itself is
 * not changed here: the replicator applies a segment to it once the segment is shipped, so that
 * it is always the state the chain in the set ends with (what a restart resumes from).
 */
import * as fs from 'node:fs';
import { pageSizeOf } from '../core/header.ts';
import { BlufioError } from '../errors.ts';
import { RetryAttempt } from '../retry.ts';
import { overlay } from '../snapshot/overlay.ts';
import { SourceFile } from '../snapshot/source-file.ts';
import { readFully } from '../vfs/disk-file.ts';
import { WalFollower, diskWal } from '../wal-follower.ts';
import { ReplicaHashes } from './replica-hashes.ts';
import { CHECKSUM_BYTES, pageHash, xorInto, type StepWriter } from './segment.ts';

/** Most rounds of one catch-up before it is left for the next interval. */
const ROUNDS = 8;

/** A step as written to the spool: when, the size after it, its checksum, how many pages, and a gap it closed. */
export interface StepMeta {
  time: number;
  pages: number;
  checksum: Uint8Array;
  count: number;
  gap: string | null;
}

/**
 * The source followed before there is a replica: started before the base's state is copied, and
 * looked at while the base is made and shipped (lookAhead), so that the first step takes in
 * what was committed meanwhile without a full pass — a base uploaded for a minute beside a busy
 * writer otherwise met two WAL restarts unread, and began every chain with a gap.
 */
export interface Watch {
  src: SourceFile;
  follower: WalFollower;
  /** The database file's stamp taken before the last look that read the WAL. */
  lastPre: string;
  /** Why the first step must compare every page (a discontinuity seen meanwhile), or null. */
  gap: string | null;
}

export class LiveReplica {
  /** Pages the WAL showed committed since the replica's state, not yet in it. */
  private touched = new Set<number>();
  /** Why every page must be compared (frames may have been committed unseen), or null. */
  private gap: string | null = null;
  /** A full pass was made since the last step: every page is compared for it. */
  private wide = false;
  private lastPre: string;
  readonly follower: WalFollower;
  /** The hash of each page of the replica's state (a file behind a bounded cache), and their checksum. */
  private readonly hashes: ReplicaHashes;
  readonly checksum = new Uint8Array(CHECKSUM_BYTES);
  /** When the last look at the WAL ended (ms, rounded up). */
  private lookedAt = 0;
  /** Gaps closed since start (for reports). */
  gaps = 0;
  lastGap: string | null = null;
  /** How long the last full pass took to read the database file (ms; 0: none yet). */
  lastPassMs = 0;

  /** Where pages are read to (each step's touched pages, at their offsets; sparse). */
  private readonly scratch: string;
  readonly src: SourceFile;

  /**
   * `watch` must have been started (follow()) before the replica's state was copied, so that
   * every page committed since then is touched.
   */
  constructor(watch: Watch, readonly replica: string, readonly pageSize: number, public nPages: number) {
    this.src = watch.src;
    this.follower = watch.follower;
    this.lastPre = watch.lastPre;
    this.gap = watch.gap;
    this.scratch = `${replica}.scratch`;
    fs.writeFileSync(this.scratch, '', { mode: 0o600 });
    for (const p of this.follower.touched) this.touched.add(p);
    this.hashes = new ReplicaHashes(`${replica}.hashes`);
    try {
      this.rehash(1, nPages);
    } catch (e) {
      this.hashes.close();
      throw e;
    }
  }

  /** Starts following the database at `dbPath`: call before its state is copied to the replica. */
  static follow(dbPath: string): Watch {
    const src = SourceFile.open(dbPath);
    const lastPre = src.stamp();
    const follower = new WalFollower(diskWal(`${dbPath}-wal`));
    follower.start();
    return { src, follower, lastPre, gap: null };
  }

  /**
   * One look while there is no replica yet (the base being made): the follower keeps the pages
   * it saw committed; a discontinuity while the database file changed is kept as the gap the
   * first step closes (as look() below).
   */
  static lookAhead(w: Watch): void {
    const pre = w.src.stamp();
    const { read, reason, blind } = w.follower.look(new Set());
    if (w.src.stamp() !== w.lastPre) {
      if (reason) w.gap ??= reason;
      else if (blind) w.gap ??= 'the database file changed while there was no WAL to follow';
    }
    if (read) w.lastPre = pre;
  }

  /**
   * A step that changes nothing, at the last look's time: "the state was still this then". Only
   * when that look found nothing committed and no gap (else null).
   */
  heartbeat(out: StepWriter): StepMeta | null {
    if (this.touched.size > 0 || this.gap !== null || this.lookedAt === 0) return null;
    out.begin(this.lookedAt, this.nPages);
    out.end(this.checksum);
    return { time: this.lookedAt, pages: this.nPages, checksum: Uint8Array.from(this.checksum), count: 0, gap: null };
  }

  /** A gap waits to be closed by a full pass. */
  gapPending(): boolean {
    return this.gap !== null;
  }

  /** The next catch-up compares every page with the database file (frames may have been committed unseen). */
  forceFullPass(why: string): void {
    this.gap = why;
  }

  /** The checksum of the replica's state, hex. */
  get checksumHex(): string {
    return Buffer.from(this.checksum).toString('hex');
  }

  /** Anything committed since the last step, or a gap to close (a cheap look at the WAL). */
  pending(): boolean {
    this.look(undefined);
    return this.touched.size > 0 || this.gap !== null;
  }

  /**
   * Brings the replica to the newest committed state and returns what changed (null: nothing).
   * Throws RetryAttempt when the state could not be proven in ROUNDS rounds (a storm of
   * checkpoints): nothing is lost, the next call goes on from the same pages.
   */
  catchUp(out: StepWriter, opts: { fullPass?: boolean; now?: number; holdGap?: boolean } = {}): StepMeta | null {
    // A database file replaced (a restore, a copy moved over it) or rebuilt with another page
    // size: its pages no longer follow the chain's (an attack run shipped corrupt segments so).
    if (this.src.replaced()) throw new BlufioError('E_SOURCE_MISSING', `${this.src.path} was replaced by another file (a restore, or a copy moved over it)`, 'start blufio replicate again: it compares every page with the new file and goes on from there');
    const head = this.src.header();
    if (head.length >= 18 && pageSizeOf(head) !== this.pageSize) throw new BlufioError('E_USAGE', `${this.src.path} now has pages of ${pageSizeOf(head)} bytes, not ${this.pageSize} (a VACUUM with another page_size)`, 'start blufio replicate again: a new chain starts on a new full backup');
    this.look(undefined);
    // When the commits the step holds were seen: the look they were read in (not later: a commit
    // seen after it is in the next step, and its time must not be this one's).
    let seenAt = this.lookedAt;
    if (this.touched.size === 0 && this.gap === null) return null;
    // A full pass reads the whole database file: not at every look (a writer that truncates its
    // WAL after every commit would make it one every tenth of a second), only when allowed.
    if (this.gap !== null && (opts.fullPass === false || opts.holdGap)) return null;
    let why = 'the WAL kept moving under the pages being read';
    let closed: string | null = null;
    for (let round = 1; round <= ROUNDS; round++) {
      const full = this.gap !== null;
      if (full) {
        closed ??= this.gap;
        this.wide = true;
      }
      this.gap = null;
      const f = this.follower;
      const gen = f.gen;
      const nFinal = gen && gen.lastCommit > 0 ? gen.nPages : this.src.dbPages(this.pageSize);
      const before = this.lastPre;
      const applying = new Set(this.touched);
      // Page 1 every time: the scratch file's header is rewritten by the overlay from it.
      applying.add(1);
      let fromFile: (p: number) => boolean;
      const passStart = performance.now();
      try {
        fromFile = overlay({ destPath: this.scratch, src: this.src, pageSize: this.pageSize, viewPages: this.nPages, viewIndex: null, gen, wal: f.reader, touched: full ? null : applying, nFinal });
      } catch (e) {
        if (!(e instanceof RetryAttempt)) throw e;
        this.gap = why = e.reason;
        continue;
      }
      if (full) this.lastPassMs = performance.now() - passStart;
      const fresh = new Set<number>();
      this.look(fresh);
      const lookedAgain = this.lookedAt;
      if (this.gap) {
        why = `a full pass did not fit between two commits (${this.gap})`;
        seenAt = lookedAgain;
        continue;
      }
      if (f.gen !== gen || (before !== this.src.stamp() && [...fresh].some(fromFile))) {
        // The next round takes in what that look saw.
        seenAt = lookedAgain;
        continue;
      }
      const format = this.src.headerByte(18);
      if (format >= 0 && format !== 2) throw new RetryAttempt('the database left WAL mode');
      // One committed state: what changed is told by the pages' hashes.
      const now = opts.now ?? seenAt;
      out.begin(now, nFinal);
      const count = this.advance(nFinal, this.wide ? null : applying, out);
      out.end(this.checksum);
      this.touched = fresh;
      this.wide = false;
      if (closed) {
        this.gaps++;
        this.lastGap = closed;
      }
      return { time: now, pages: nFinal, checksum: Uint8Array.from(this.checksum), count, gap: closed };
    }
    throw new RetryAttempt(why);
  }

  /**
   * Takes the new state's pages in (from the scratch file): those of `pages` (null: all), page 1,
   * and any beyond the old size; each whose hash changed goes to `out`. Returns how many did.
   */
  private advance(nFinal: number, pages: Set<number> | null, out: StepWriter): number {
    const ps = this.pageSize;
    // Pages past the new end leave the checksum.
    for (let p = nFinal + 1; p <= this.nPages; p++) xorInto(this.checksum, this.hashes.get(p));
    // The hashes are kept in place (entries past the end are stale until the database grows
    // over them again: such pages always count as changed). A new buffer per step was 4 MiB of
    // garbage a step on a 1 GiB database, 40 steps a second: 189 MiB peak RSS, measured.
    const old = this.nPages;
    this.nPages = nFinal;
    // Every page, in order, for a full pass (no set of them: 262,144 numbers for 1 GiB was
    // ~40 MiB of heap at once); else the touched ones, page 1 and those past the old end.
    let check: Iterable<number>;
    if (pages === null) check = (function* () { for (let p = 1; p <= nFinal; p++) yield p; })();
    else {
      const some = new Set<number>(pages);
      some.add(1);
      for (let p = old + 1; p <= nFinal; p++) some.add(p);
      check = [...some].sort((a, b) => a - b);
    }
    let count = 0;
    const fd = fs.openSync(this.scratch, 'r');
    try {
      const page = new Uint8Array(ps);
      for (const p of check) {
        if (p > nFinal) continue;
        page.fill(0, readFully(fd, page, (p - 1) * ps));
        const h = pageHash(p, page);
        const was = this.hashes.get(p);
        if (p <= old && h.equals(was)) continue;
        if (p <= old) xorInto(this.checksum, was);
        xorInto(this.checksum, h);
        this.hashes.set(p, h);
        out.record(p, page);
        count++;
      }
    } finally {
      fs.closeSync(fd);
    }
    return count;
  }

  /** Hashes pages `first`..`last` of the replica into `hashes` and the checksum. */
  private rehash(first: number, last: number): void {
    const ps = this.pageSize;
    const fd = fs.openSync(this.replica, 'r');
    try {
      const page = new Uint8Array(ps);
      for (let p = first; p <= last; p++) {
        page.fill(0, readFully(fd, page, (p - 1) * ps));
        const h = pageHash(p, page);
        this.hashes.set(p, h);
        xorInto(this.checksum, h);
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  /** One look at the source (as WalGuard.look): a discontinuity counts only if the database file changed. */
  private look(fresh: Set<number> | undefined): void {
    const pre = this.src.stamp();
    const collect = new Set<number>();
    const { read, reason, blind } = this.follower.look(collect);
    // Every commit this look read was made before now (to the millisecond above), on the wall
    // clock as it is now (a monotonic clock kept the time before an NTP correction: an attack
    // run restored rows 5 s after --at); never before an earlier look's (steps are ordered).
    this.lookedAt = Math.max(this.lookedAt, Date.now() + 1);
    const post = this.src.stamp();
    if (post !== this.lastPre) {
      if (reason) this.gap = reason;
      else if (blind) this.gap = 'the database file changed while there was no WAL to follow';
    }
    if (read) this.lastPre = pre;
    for (const p of collect) {
      this.touched.add(p);
      fresh?.add(p);
    }
    // The follower's own set grows with every page ever touched: ours is what matters.
    this.follower.touched.clear();
  }

  close(): void {
    this.follower.close();
    this.src.close();
    this.hashes.close();
    fs.rmSync(this.scratch, { force: true });
  }
}
