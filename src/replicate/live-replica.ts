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
import { readFully, writeFully } from '../vfs/disk-file.ts';
import { WAL_FRAME_HEADER_SIZE, frameOffset } from '../wal.ts';
import { WalFollower, diskWal } from '../wal-follower.ts';
import { PageBits } from './page-bits.ts';
import { ReplicaHashes } from './replica-hashes.ts';
import { CHECKSUM_BYTES, pageHash, xorInto, type StepWriter } from './segment.ts';

/** Most rounds of one catch-up before it is left for the next interval. */
const ROUNDS = 8;

/**
 * Bytes of pages a full pass (or the hashing of a new replica) reads between two looks at the
 * WAL: ~10 ms of reading and hashing here, so that a WAL restart is never missed for the time a
 * pass takes, at any database size.
 */
const PIECE_BYTES = 4 * 1024 * 1024;

export interface OpenOptions {
  /** Bytes of pages read between two looks (default PIECE_BYTES; tests make pieces of a few pages). */
  pieceBytes?: number;
}

/** Runs a piecewise job to its end at once. */
function runNow<T>(job: Generator<void, T>): T {
  for (;;) {
    const r = job.next();
    if (r.done) return r.value;
  }
}

/** Runs a piecewise job, letting the event loop run between two pieces (shipping, timers, signals). */
async function runBetween<T>(job: Generator<void, T>): Promise<T> {
  for (;;) {
    const r = job.next();
    if (r.done) return r.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

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
  /**
   * A full pass made since the last step, waiting for it: the pages that differ from the
   * replica's (in the scratch file now), how many pages it covered, and the gap it closes.
   */
  private passed: { changed: PageBits; pages: number; why: string } | null = null;
  private lastPre = '';
  readonly follower: WalFollower;
  /** The hash of each page of the replica's state (a file behind a bounded cache), and their checksum. */
  private readonly hashes: ReplicaHashes;
  readonly checksum = new Uint8Array(CHECKSUM_BYTES);
  /** When the last look at the WAL ended (ms, rounded up). */
  private lookedAt = 0;
  /** Gaps closed since start (for reports). */
  gaps = 0;
  lastGap: string | null = null;
  /** How long the last full pass took to read the database file (ms; 0: none yet; estimated from its part when it was voided). */
  lastPassMs = 0;
  /** Passes voided by a gap seen while they were made (for reports and tests). */
  voidedPasses = 0;

  /** Where pages are read to (each step's touched pages, at their offsets; sparse). */
  private scratch: string;
  readonly src: SourceFile;

  /** Pages read between two looks by a full pass or the hashing of the replica. */
  private readonly per: number;

  private constructor(private readonly watch: Watch, public replica: string, readonly pageSize: number, public nPages: number, opts: OpenOptions) {
    this.per = Math.max(1, Math.floor((opts.pieceBytes ?? PIECE_BYTES) / pageSize));
    this.src = watch.src;
    this.follower = watch.follower;
    this.scratch = `${replica}.scratch`;
    fs.writeFileSync(this.scratch, '', { mode: 0o600 });
    this.hashes = new ReplicaHashes(`${replica}.hashes`);
  }

  /**
   * The replica at `replica` (a committed state of `nPages` pages), followed from `watch`, which
   * must have been started (follow()) before that state was copied, so that every page committed
   * since then is touched. Its pages are hashed in pieces with a look at the WAL between two
   * (lookAhead), at once; opening() lets the event loop run between them.
   */
  static open(watch: Watch, replica: string, pageSize: number, nPages: number, opts: OpenOptions = {}): LiveReplica {
    const r = new LiveReplica(watch, replica, pageSize, nPages, opts);
    try {
      runNow(r.rehash());
    } catch (e) {
      throw r.discard(e);
    }
    return r.adopt();
  }

  static async opening(watch: Watch, replica: string, pageSize: number, nPages: number, opts: OpenOptions = {}): Promise<LiveReplica> {
    const r = new LiveReplica(watch, replica, pageSize, nPages, opts);
    try {
      await runBetween(r.rehash());
    } catch (e) {
      throw r.discard(e);
    }
    return r.adopt();
  }

  /** Takes in what the watch saw while there was no replica (and while its pages were hashed). */
  private adopt(): this {
    this.lastPre = this.watch.lastPre;
    this.gap = this.watch.gap;
    for (const p of this.follower.touched) this.touched.add(p);
    this.follower.touched.clear();
    return this;
  }

  /** Removes what the constructor made (opening failed); returns `e`. */
  private discard(e: unknown): unknown {
    this.hashes.close();
    fs.rmSync(this.scratch, { force: true });
    return e;
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
    if (this.touched.size > 0 || this.gapPending() || this.lookedAt === 0) return null;
    out.begin(this.lookedAt, this.nPages);
    out.end(this.checksum);
    return { time: this.lookedAt, pages: this.nPages, checksum: Uint8Array.from(this.checksum), count: 0, gap: null };
  }

  /**
   * Moves the replica and its files to `replica` (a new chain's, opened beside the old one while
   * it shipped, taking its place: hashing a big replica at the switch left seconds in which no
   * chain looked).
   */
  moveTo(replica: string): void {
    fs.renameSync(this.replica, replica);
    fs.renameSync(this.scratch, `${replica}.scratch`);
    this.hashes.moveTo(`${replica}.hashes`);
    this.replica = replica;
    this.scratch = `${replica}.scratch`;
  }

  /** Why the next step with pages in it is marked as a gap though no pass was needed (labelNextStep). */
  private label: string | null = null;

  /**
   * Marks the next step that holds commits as a gap: its commits were seen over a span but are
   * all stamped with its time (a new chain's first step after a base that took seconds to make
   * and upload), so a time inside that span is not exact — listed as a gap, never shown exact.
   */
  labelNextStep(why: string): void {
    this.label = why;
  }

  /** A gap waits to be closed (by a full pass, then its step). */
  gapPending(): boolean {
    return this.gap !== null || this.passed !== null;
  }

  /** A gap waits for a full pass (passInPieces(), or a catch-up that may make one). */
  needsPass(): boolean {
    return this.gap !== null;
  }

  /**
   * A full pass is a few pieces (16 MiB at most): quick enough to be made at once, again in each
   * round of a catch-up — how a gap is closed between the commits of a writer that truncates its
   * WAL after each one (a pass has to fit between two of them: docs/replication.md).
   */
  get quickPass(): boolean {
    return this.nPages <= 4 * this.per;
  }

  /** The next catch-up compares every page with the database file (frames may have been committed unseen). */
  forceFullPass(why: string): void {
    this.gap = why;
    this.passed = null;
  }

  /** The checksum of the replica's state, hex. */
  get checksumHex(): string {
    return Buffer.from(this.checksum).toString('hex');
  }

  /** Anything committed since the last step, or a gap to close (a cheap look at the WAL). */
  pending(): boolean {
    this.look(undefined);
    return this.touched.size > 0 || this.gapPending();
  }

  /**
   * The full pass a pending gap needs, made in pieces with the event loop running between them
   * (a big database's pass takes seconds: shipping and signals go on meanwhile). The next
   * catch-up takes it in as its step. Nothing to do without a gap; a gap seen during the pass
   * leaves it pending (voidedPasses).
   */
  async passInPieces(): Promise<void> {
    if (this.gap !== null) await runBetween(this.pass());
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
    if (this.touched.size === 0 && !this.gapPending()) {
      // (Nothing was committed meanwhile: no span to label.)
      this.label = null;
      return null;
    }
    // A full pass reads the whole database file: not at every look (a writer that truncates its
    // WAL after every commit would make it one every tenth of a second), only when allowed.
    // A gap's step waits while steps before it wait (it ships in a segment of its own).
    if (this.gapPending() && opts.holdGap) return null;
    let why = 'the WAL kept moving under the pages being read';
    for (let round = 1; round <= ROUNDS; round++) {
      if (this.gap !== null) {
        // (At once: a caller that lets the event loop run meanwhile calls passInPieces() first,
        // and catchUp() with fullPass false.)
        if (opts.fullPass === false) return null;
        runNow(this.pass());
        if (this.gap !== null) {
          why = `a full pass did not fit between two commits (${this.gap})`;
          continue;
        }
        // What the pass's looks saw is in this step: its time is theirs.
        seenAt = this.lookedAt;
      }
      const passed = this.passed;
      const f = this.follower;
      const gen = f.gen;
      const nFinal = gen && gen.lastCommit > 0 ? gen.nPages : this.src.dbPages(this.pageSize);
      const before = this.lastPre;
      const applying = new Set(this.touched);
      // Page 1 every time: the scratch file's header is rewritten by the overlay from it.
      applying.add(1);
      let fromFile: (p: number) => boolean;
      try {
        // (The pages a pass covered are in the scratch file already: only those beyond are read.)
        fromFile = overlay({ destPath: this.scratch, src: this.src, pageSize: this.pageSize, viewPages: Math.max(this.nPages, passed?.pages ?? 0), viewIndex: null, gen, wal: f.reader, touched: applying, nFinal });
      } catch (e) {
        if (!(e instanceof RetryAttempt)) throw e;
        this.forceFullPass(why = e.reason);
        continue;
      }
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
      const count = this.advance(nFinal, applying, passed?.changed ?? null, out);
      out.end(this.checksum);
      this.touched = fresh;
      this.passed = null;
      if (passed) {
        this.gaps++;
        this.lastGap = passed.why;
      }
      const label = count > 0 ? this.label : null;
      this.label = null;
      return { time: now, pages: nFinal, checksum: Uint8Array.from(this.checksum), count, gap: passed?.why ?? label };
    }
    throw new RetryAttempt(why);
  }

  /**
   * A full pass (docs/replication.md, "Gaps"): every page of the database file, or of its newest
   * frame, compared with the replica's hash — in pieces, with a look at the WAL between two, so
   * that no restart of the WAL goes unseen for the time a pass takes, at any size (one read of a
   * 4 GiB file took 12 s, and its WAL restarted unseen every 4 s at 100 tx/s: every step was a
   * gap, lag 19–31 s). This is the backup copy's own method (docs/consistency.md):
   * - a piece is read from the generation the look before it saw: a page's newest frame there,
   *   else the file (a checkpoint writes to the file only frames of that generation, or of one
   *   the next look reads: continuity, or a gap);
   * - a page committed after that look is touched by the next one, and read again in the step;
   * - a page read from a frame while the generation changed (a restart may have overwritten the
   *   frame) is touched too, as is one whose frame the WAL no longer reaches;
   * - a gap seen meanwhile (frames committed unseen while the file changed) voids the pass: what
   *   the unseen commits changed may be in pieces already read. The first gap stays the one to close.
   * The pages that differ are written to the scratch file and kept in `passed` for the step.
   */
  private *pass(): Generator<void, void> {
    const why = this.gap!;
    this.gap = null;
    this.passed = null;
    const ps = this.pageSize;
    const per = this.per;
    const changed = new PageBits();
    const f = this.follower;
    const started = performance.now();
    const fd = fs.openSync(this.scratch, 'r+');
    try {
      const buf = new Uint8Array(per * ps);
      const page = new Uint8Array(ps);
      for (let first = 1; ; ) {
        const gen = f.gen;
        const nNow = gen && gen.lastCommit > 0 ? gen.nPages : this.src.dbPages(ps);
        if (first > nNow) {
          this.passed = { changed, pages: first - 1, why };
          this.lastPassMs = performance.now() - started;
          return;
        }
        const n = Math.min(per, nNow - first + 1);
        const piece = buf.subarray(0, n * ps);
        piece.fill(0, this.src.read(piece, (first - 1) * ps));
        const fromFrames: number[] = [];
        for (let k = 0; gen && k < n; k++) {
          const frame = gen.frames.get(first + k);
          if (frame === undefined) continue;
          if (f.reader && f.reader.read(page, frameOffset(frame, ps) + WAL_FRAME_HEADER_SIZE) === ps) {
            piece.set(page, k * ps);
            fromFrames.push(first + k);
          } else this.touched.add(first + k);
        }
        let differs = false;
        for (let k = 0; k < n; k++) {
          const p = first + k;
          if (p <= this.nPages && pageHash(p, piece.subarray(k * ps, (k + 1) * ps)).equals(this.hashes.get(p))) continue;
          changed.add(p);
          differs = true;
        }
        if (differs) writeFully(fd, piece, (first - 1) * ps);
        this.look(undefined);
        if (this.gap !== null) {
          this.voidedPasses++;
          this.lastPassMs = ((performance.now() - started) * nNow) / (first - 1 + n);
          this.gap = why;
          return;
        }
        if (f.gen !== gen) for (const p of fromFrames) this.touched.add(p);
        first += n;
        yield;
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Takes the new state's pages in (from the scratch file): those of `pages`, of `changed` (a
   * full pass's), page 1 and any beyond the old size; each whose hash changed goes to `out`.
   * Returns how many did.
   */
  private advance(nFinal: number, pages: Set<number>, changed: PageBits | null, out: StepWriter): number {
    const ps = this.pageSize;
    // Pages past the new end leave the checksum.
    for (let p = nFinal + 1; p <= this.nPages; p++) xorInto(this.checksum, this.hashes.get(p));
    // The hashes are kept in place (entries past the end are stale until the database grows
    // over them again: such pages always count as changed). A new buffer per step was 4 MiB of
    // garbage a step on a 1 GiB database, 40 steps a second: 189 MiB peak RSS, measured.
    const old = this.nPages;
    this.nPages = nFinal;
    // In order; after a full pass as bits (a set of every page was ~40 MiB of heap per GiB).
    let check: Iterable<number>;
    if (changed) {
      for (const p of pages) changed.add(p);
      changed.add(1);
      for (let p = old + 1; p <= nFinal; p++) changed.add(p);
      check = changed;
    } else {
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

  /** Hashes the replica's pages into `hashes` and the checksum, in pieces, the source looked at between two. */
  private *rehash(): Generator<void, void> {
    const ps = this.pageSize;
    const per = this.per;
    const fd = fs.openSync(this.replica, 'r');
    try {
      const buf = new Uint8Array(per * ps);
      for (let first = 1; first <= this.nPages; first += per) {
        const n = Math.min(per, this.nPages - first + 1);
        const piece = buf.subarray(0, n * ps);
        piece.fill(0, readFully(fd, piece, (first - 1) * ps));
        for (let k = 0; k < n; k++) {
          const h = pageHash(first + k, piece.subarray(k * ps, (k + 1) * ps));
          this.hashes.set(first + k, h);
          xorInto(this.checksum, h);
        }
        LiveReplica.lookAhead(this.watch);
        yield;
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
      if (reason) this.forceFullPass(reason);
      else if (blind) this.forceFullPass('the database file changed while there was no WAL to follow');
    }
    if (read) this.lastPre = pre;
    for (const p of collect) {
      this.touched.add(p);
      fresh?.add(p);
    }
    // The follower's own set grows with every page ever touched: ours is what matters.
    this.follower.touched.clear();
  }

  private closed = false;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.follower.close();
    this.src.close();
    this.hashes.close();
    fs.rmSync(this.scratch, { force: true });
  }
}
