/**
 * The guard of a WAL-mode database (docs/consistency.md): the database file changes only through
 * checkpoints, which copy committed frames of the current WAL generation into it. A WalFollower
 * reads every frame committed while the copy runs (between steps), across restarts of the WAL,
 * and keeps the set of pages they touched. finish() rewrites exactly those pages in the copy
 * (overlay.ts), from their newest frame or, for pages whose frames were checkpointed in an earlier
 * generation, from the database file; pages no frame touched cannot have changed while we read
 * them. The result is the state as of the last commit taken in, and a last look at the WAL proves
 * nothing moved under the pages re-read. Where the WAL cannot show what a checkpoint copied
 * (truncated, deleted, restarted unseen, or no WAL yet) and the database file changed meanwhile,
 * every page is read again (a full pass), and that pass must itself see no such change.
 */
import { RetryAttempt } from '../retry.ts';
import type { WalIndex } from '../wal.ts';
import type { WalFollower } from '../wal-follower.ts';
import type { ConsistencyGuard } from './guard.ts';
import { overlay } from './overlay.ts';
import type { SourceFile } from './source-file.ts';
import { trace, tracing } from './trace.ts';

/** Most rounds of finish() before the attempt is given up as not provable. */
const FINISH_ROUNDS = 8;

export class WalGuard implements ConsistencyGuard {
  readonly mode = 'wal';
  fullPasses = 0;
  /** The database file changed since begin(). */
  private dbMoved = false;
  /**
   * Why a full pass is needed: the WAL could not show every frame committed between two looks,
   * and the database file changed between them (a checkpoint wrote pages we cannot name).
   */
  private gap: string | null = null;

  /**
   * `lastPre`: the database file's stamp taken just before the follower's start() read the WAL;
   * `view`: the frames the view serves pages from, and how many pages it shows.
   */
  constructor(
    private readonly src: SourceFile,
    private readonly follower: WalFollower,
    private lastPre: string,
    private readonly view: { index: WalIndex | null; pages: number; pageSize: number },
  ) {}

  watch(final = false): void {
    this.look(undefined, !final);
  }

  movedSinceBegin(): boolean {
    this.look();
    return this.dbMoved || this.follower.changes > 0 || this.src.replaced();
  }

  finish(destPath: string): void {
    const f = this.follower;
    let why = 'the WAL kept moving under the pages being finished';
    for (let round = 1; round <= FINISH_ROUNDS; round++) {
      this.look();
      const full = this.gap !== null;
      this.gap = null;
      if (full) this.fullPasses++;
      const gen = f.gen;
      const nFinal = gen && gen.lastCommit > 0 ? gen.nPages : this.src.dbPages(this.view.pageSize);
      if (this.view.pages === 0 && nFinal > 0) throw new RetryAttempt('the database was created during the copy');
      // The file's stamp from before this round's look read the WAL: a write whose time was set
      // before it but whose bytes land later belongs to a checkpoint of frames that look saw.
      const before = this.lastPre;
      let fromFile: (p: number) => boolean;
      try {
        fromFile = overlay({
          destPath, src: this.src, pageSize: this.view.pageSize, viewPages: this.view.pages, viewIndex: this.view.index,
          gen, wal: f.reader, touched: full ? null : f.touched, nFinal,
        });
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
      if (tracing) trace(`round ${round} full=${full} nFinal=${nFinal} gen=${gen?.header.salt1}/${gen?.lastCommit} frames=${[...(gen?.frames ?? new Map())].map(([p, i]) => `${p}:${i}`).join(',')} sameDb=${before === this.src.stamp()} fresh=${[...fresh].join(',')} touched=${[...f.touched].sort((a, b) => a - b).join(',')}`);
      if (before === this.src.stamp() || ![...fresh].some(fromFile)) {
        // The argument holds only while the database stays in WAL mode: switched to a rollback
        // journal, its file is written in place by every commit (the next attempt copies it so).
        const format = this.src.headerByte(18);
        if (format >= 0 && format !== 2) throw new RetryAttempt('the database left WAL mode during the copy');
        return;
      }
    }
    throw new RetryAttempt(why);
  }

  /**
   * One look at the source: the follower reads the WAL, and the database file's stamp is taken
   * before and after. A discontinuity (frames may have been committed unread) matters only if the
   * database file changed between the stamp taken before the *previous* look read the WAL and the
   * one taken after this look read it: that interval covers everything that can have happened
   * unseen. The file's times are compared to the nanosecond; Linux (6.13 and later, on ext4, xfs,
   * btrfs, tmpfs) gives a write a new time whenever the old one has been read.
   */
  private look(fresh?: Set<number>, whenChanged = false): void {
    const pre = this.src.stamp();
    const { read, reason, blind } = this.follower.look(fresh, { whenChanged });
    const post = this.src.stamp();
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
}
