/**
 * The library's jobs on a worker thread, for an embedding server whose event loop must keep
 * serving: SQLite's `PRAGMA integrity_check` is one synchronous call (seconds on a big database),
 * and so are parts of a restore. `offThread.backup(...)`, `offThread.inspect(...)` and
 * `offThread.restore(...)` take the same arguments as the functions they are named after and run
 * them in a worker thread of their own (one SQLite module each); progress events, notices and an
 * AbortSignal are carried across, errors come back as the same BlufioError (code, message, hint).
 *
 * The worker runs this very module file (the library bundle dist/index.mjs, or this file under a
 * TypeScript loader): the check at the bottom serves the job when the module is loaded as a worker
 * with our marker in its workerData, and does nothing anywhere else.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { BlufioError, type ErrorCode } from './core/errors.ts';
import type { Progress, ProgressCallback } from './core/progress.ts';

const MARK = 'blufio-backup/worker@1';

type Job = 'backup' | 'inspect' | 'restore';

interface Hooks {
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  onNotice?: (message: string) => void;
}

/** What crosses to the worker: the options without functions or signals (they cannot be cloned). */
function plain(opts: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(opts).filter(([, v]) => typeof v !== 'function' && !(v instanceof AbortSignal)));
}

type FromWorker =
  | { t: 'progress'; p: Progress }
  | { t: 'notice'; m: string }
  | { t: 'done'; result: unknown }
  | { t: 'error'; code?: ErrorCode; message: string; hint?: string; stack?: string };

function run<T>(job: Job, args: unknown[], opts: Hooks & object): Promise<T> {
  if (opts.signal?.aborted) return Promise.reject(new BlufioError('E_ABORTED', 'interrupted', 'nothing was changed'));
  return new Promise<T>((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { [MARK]: { job, args, opts: plain(opts) } },
    });
    let settled = false;
    const onAbort = () => worker.postMessage({ t: 'abort' });
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      f();
      void worker.terminate();
    };
    worker.on('message', (m: FromWorker) => {
      if (m.t === 'progress') opts.onProgress?.(m.p);
      else if (m.t === 'notice') opts.onNotice?.(m.m);
      else if (m.t === 'done') settle(() => resolve(m.result as T));
      else settle(() => reject(m.code ? new BlufioError(m.code, m.message, m.hint) : Object.assign(new Error(m.message), { stack: m.stack })));
    });
    worker.on('error', (e) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`the blufio worker thread exited (${code}) without an answer`))));
  });
}

type BackupFn = typeof import('./backup.ts').backup;
type InspectFn = typeof import('./inspect.ts').inspect;
type RestoreFn = typeof import('./restore.ts').restore;

/** backup(), inspect() and restore() on a worker thread each (see above). */
export const offThread = {
  backup: ((dbPath, destPath, options = {}) => run('backup', [dbPath, destPath], options)) as BackupFn,
  inspect: ((file, opts = {}) => run('inspect', [file], opts)) as InspectFn,
  restore: ((dbPath, fromPath, options = {}) => run('restore', [dbPath, fromPath], options)) as RestoreFn,
};

/** In the worker: runs the job with hooks that post back, and answers once. */
async function serve(port: NonNullable<typeof parentPort>, task: { job: Job; args: string[]; opts: Record<string, unknown> }): Promise<void> {
  // The library bundle sets up how SQLite is loaded after this module's own top level has run.
  await new Promise((r) => setImmediate(r));
  const abort = new AbortController();
  port.on('message', (m: { t: string }) => {
    if (m.t === 'abort') abort.abort();
  });
  const hooks = {
    signal: abort.signal,
    onProgress: (p: Progress) => port.postMessage({ t: 'progress', p } satisfies FromWorker),
    onNotice: (m: string) => port.postMessage({ t: 'notice', m } satisfies FromWorker),
  };
  const opts = { ...task.opts, ...hooks };
  try {
    let result: unknown;
    const [a, b] = task.args;
    if (task.job === 'backup') result = await (await import('./backup.ts')).backup(a, b, opts);
    else if (task.job === 'inspect') result = await (await import('./inspect.ts')).inspect(a, opts);
    else result = await (await import('./restore.ts')).restore(a, b, opts);
    port.postMessage({ t: 'done', result } satisfies FromWorker);
  } catch (e) {
    const err = e as BlufioError;
    port.postMessage({ t: 'error', code: e instanceof BlufioError ? err.code : undefined, message: String(err?.message ?? e), hint: err?.hint, stack: err?.stack } satisfies FromWorker);
  } finally {
    port.close();
  }
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[MARK]) {
  void serve(parentPort, (workerData as Record<string, never>)[MARK]);
}
