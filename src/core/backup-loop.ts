/**
 * The backup API loop, the same in Node and in browsers: sqlite3_backup_init, then steps of
 * `pagesPerStep` pages with progress after each, a pause between steps that yields to the event
 * loop (progress output, Ctrl-C, abort), and sqlite3_backup_finish on every path.
 */
import { BlufioError } from './errors.ts';
import type { ProgressCallback } from './progress.ts';
import { check } from './sqlite-errors.ts';
import type { Database, Sqlite3 } from './types.ts';

export interface LoopOptions {
  pagesPerStep: number;
  /** Pause between steps, ms (0: only yield). */
  sleepMs: number;
  attempt: number;
  pageSize: number;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  /** Called after each step and every `watchMs` while pausing; throws to end the copy. */
  watch?: () => void;
  watchMs?: number;
  /** Names the source in error messages. */
  source: string;
  /** More detail for a failed step (the VFS's last error). */
  lastError?: () => string | undefined;
}

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/**
 * Deno hands a signal (Ctrl-C, SIGTERM) to its listener only when its event loop runs timers: a
 * copy that only ever yields by setImmediate ran to its end past a SIGTERM in 3 runs of 8 (a 47
 * MB restore). Under Deno a timer turn is taken every TIMER_TURN_MS of copying.
 */
const TIMER_TURN_MS = 50;
const needsTimerTurns = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';
/** Yields to the event loop without a timer's minimum delay where the runtime allows. */
const yieldNow = () => new Promise<void>((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));

/**
 * Throws when `signal` has fired: its reason when that is a BlufioError (a time limit), else
 * E_ABORTED (Ctrl-C, or an embedder's abort).
 */
export function throwIfAborted(signal?: AbortSignal): void {
  if (!signal?.aborted) return;
  if (signal.reason instanceof BlufioError) throw signal.reason;
  throw new BlufioError('E_ABORTED', 'interrupted; nothing was written', undefined, { cause: signal.reason });
}

/**
 * Takes a timer turn (where every runtime hands pending signals to their listeners: Deno only
 * there, Bun and Node there too), then throwIfAborted(). Before a step that cannot be taken back
 * (a restore's swap): a SIGTERM that came while a long synchronous call ran (an integrity check)
 * would otherwise be seen only after it (a Bun restore exited 0 past a SIGTERM, 1 run in ~40).
 */
export async function signalsSeen(signal?: AbortSignal): Promise<void> {
  await new Promise((r) => setTimeout(r, 0));
  throwIfAborted(signal);
}

/** Copies all of `src` into `dest` through the backup API. */
export async function runBackupLoop(sqlite3: Sqlite3, src: Database, dest: Database, o: LoopOptions): Promise<void> {
  const { capi } = sqlite3;
  let backup = capi.sqlite3_backup_init(dest.pointer!, 'main', src.pointer!, 'main') as number;
  if (!backup) check(sqlite3, dest, capi.sqlite3_errcode(dest.pointer!), `cannot start copying ${o.source}`);
  let lastTimerTurn = performance.now();
  try {
    for (;;) {
      o.lastError?.(); // a message left by an earlier failure must not be attached to this step's
      const rc = capi.sqlite3_backup_step(backup as never, o.pagesPerStep);
      if (rc !== capi.SQLITE_OK && rc !== capi.SQLITE_DONE) {
        const detail = o.lastError?.();
        capi.sqlite3_backup_finish(backup as never);
        backup = 0;
        check(sqlite3, dest, rc, `cannot copy ${o.source}${detail ? ` (${detail})` : ''}`);
      }
      const total = capi.sqlite3_backup_pagecount(backup as never);
      const remaining = capi.sqlite3_backup_remaining(backup as never);
      o.onProgress?.({ phase: 'copy', totalPages: total, remainingPages: remaining, attempt: o.attempt, pageSize: o.pageSize });
      if (rc === capi.SQLITE_DONE) break;
      const resume = performance.now() + o.sleepMs;
      do {
        o.watch?.();
        throwIfAborted(o.signal);
        const now = performance.now();
        const left = resume - now;
        if (left <= 0 && needsTimerTurns && now - lastTimerTurn >= TIMER_TURN_MS) {
          lastTimerTurn = now;
          await pause(0);
          continue;
        }
        await (left > 0 ? pause(Math.min(o.watchMs ?? left, left)) : yieldNow());
      } while (performance.now() < resume);
    }
    const rc = capi.sqlite3_backup_finish(backup as never);
    backup = 0;
    check(sqlite3, dest, rc, `cannot copy ${o.source}`);
  } finally {
    if (backup) capi.sqlite3_backup_finish(backup as never);
  }
}
