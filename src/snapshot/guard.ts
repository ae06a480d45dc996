/**
 * What makes an attempt's copy a committed state depends on the journal mode: one guard per
 * mode, behind one interface. The snapshot picks the guard at begin() from what it finds (see
 * snapshot.ts) and asks it, between copy steps and at the end, whether the attempt still counts.
 *
 * - RollbackGuard (rollback-guard.ts): every commit rewrites page 1 and keeps a hot journal while
 *   it writes pages; an attempt counts only if nothing of the kind was seen from begin to end.
 * - WalGuard (wal-guard.ts): the database file changes only through checkpoints of committed
 *   frames; the guard follows the WAL and, at the end, rewrites in the copy every page committed
 *   meanwhile (overlay.ts). A WAL-mode database with no WAL yet, or whose WAL was deleted, is the
 *   same guard in its blind state: any change to the database file while it cannot see the WAL
 *   forces a full pass.
 */
export type JournalMode = 'wal' | 'rollback';

export interface ConsistencyGuard {
  readonly mode: JournalMode;
  /**
   * Cheap to call between copy steps. WAL: takes in what was committed since the last look
   * (`final`: read the WAL even if it looks untouched). Rollback: throws RetryAttempt as soon as
   * a commit can be seen.
   */
  watch(final?: boolean): void;
  /** True if anything was committed to the source since begin(), or may have been. */
  movedSinceBegin(): boolean;
  /**
   * Ends an attempt whose copy is in `destPath` (closed by SQLite): makes it exactly a committed
   * state, or throws RetryAttempt. Called after watch(true) found nothing wrong.
   */
  finish(destPath: string): void;
  /** Full passes the last finish() made (WAL; for reports and tests). */
  readonly fullPasses: number;
}
