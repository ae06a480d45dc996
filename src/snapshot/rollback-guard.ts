/**
 * The guard of a rollback-journal database: every commit rewrites page 1 (its change counter) and
 * keeps a hot journal while it writes pages. An attempt counts only if the 100-byte header and the
 * file size are the same at the end as at the start and no hot journal was seen at either end
 * (docs/consistency.md).
 */
import { BlufioError } from '../errors.ts';
import { holders, writerActive } from '../locks.ts';
import { RetryAttempt } from '../retry.ts';
import { sameBytes } from '../wal-follower.ts';
import type { ConsistencyGuard } from './guard.ts';
import { journalIsHot, type SourceFile } from './source-file.ts';

export class RollbackGuard implements ConsistencyGuard {
  readonly mode = 'rollback';
  readonly fullPasses = 0;
  private readonly size0: number;

  /** Begins an attempt: throws RetryAttempt while a commit is under way. */
  constructor(
    private readonly src: SourceFile,
    private readonly header0: Uint8Array,
  ) {
    this.size0 = src.opened.size;
    const writer = writerActive(src.path);
    if (writer) throw new RetryAttempt('another process is committing (it holds a write lock)');
    if (src.journalIsHot()) {
      if (writer === false && holders(src.path)?.length === 0) {
        throw new BlufioError('E_NEEDS_RECOVERY', `${src.path} has a hot journal left by an interrupted write, and no process has it open`,
          `open it once with SQLite (e.g. sqlite3 ${src.path} "PRAGMA quick_check") so that SQLite rolls the interrupted transaction back, then try again`);
      }
      throw new RetryAttempt('another process is committing (hot rollback journal)');
    }
  }

  watch(): void {
    const head = new Uint8Array(this.header0.length);
    this.src.read(head, 0);
    if (!sameBytes(head, this.header0) || this.src.size() !== this.size0) {
      throw new RetryAttempt('another process committed during the copy');
    }
    if (this.src.journalIsHot()) throw new RetryAttempt('another process is committing (hot rollback journal)');
  }

  movedSinceBegin(): boolean {
    try {
      this.watch();
      return false;
    } catch (e) {
      if (e instanceof RetryAttempt) return true;
      throw e;
    }
  }

  finish(): void {
    // watch(true), just before, compared the header and the size: nothing more to do.
  }
}

/**
 * Resolves as soon as no other process holds a write lock or a hot journal on the rollback-mode
 * database at `dbPath` (polled every millisecond), or after `maxMs`.
 */
export async function waitForQuiet(dbPath: string, maxMs: number, signal?: AbortSignal): Promise<void> {
  const until = performance.now() + maxMs;
  while (performance.now() < until && !signal?.aborted) {
    if (!writerActive(dbPath) && !journalIsHot(`${dbPath}-journal`)) return;
    await new Promise((r) => setTimeout(r, 1));
  }
}
