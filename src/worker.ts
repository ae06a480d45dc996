/**
 * The library's jobs on a worker thread, for an embedding server whose event loop must keep
 * serving: SQLite's `PRAGMA integrity_check` is one synchronous call (seconds on a big database),
 * and so are parts of a restore. `offThread.backup(...)`, `offThread.inspect(...)` and
 * `offThread.restore(...)` take the same arguments as the functions they are named after (except
 * the test hooks, functions that cannot cross: refused) and run them in a worker thread of their
 * own (one SQLite module each); progress events, notices and an AbortSignal are carried across
 * (an abort reaches even the integrity check, through shared memory), errors come back as the same
 * BlufioError (code, message, hint). A hook of the caller's that throws ends the job with its error.
 *
 * The worker runs this very module file (the library bundle dist/index.mjs, or this file under a
 * TypeScript loader): the check at the bottom serves the job when the module is loaded as a worker
 * with our marker in its workerData, and does nothing anywhere else.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { throwIfAborted } from './core/backup-loop.ts';
import { BlufioError, type ErrorCode } from './core/errors.ts';
import type { Progress, ProgressCallback } from './core/progress.ts';

const MARK = 'blufio-backup/worker@1';

type Job = 'backup' | 'inspect' | 'restore';

/** What may cross to the worker besides plain data: the hooks offThread carries by messages. */
const CARRIED = new Set(['signal', 'onProgress', 'onNotice']);

interface Hooks {
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  onNotice?: (message: string) => void;
}

type FromWorker =
  | { t: 'progress'; p: Progress }
  | { t: 'notice'; m: string }
  | { t: 'done'; result: unknown }
  | { t: 'error'; code?: ErrorCode; message: string; hint?: string; name?: string; errno?: string; stack?: string };

let moduleUrl: URL | string | undefined;

/**
 * The file the worker runs: by default the module this code is in (the library, dist/index.mjs).
 * An application that bundles blufio-backup into its own bundle must point this at the library's
 * file (or keep the package external when bundling): otherwise the worker would run the
 * application's bundle, top level and all.
 */
export function setOffThreadModule(url: URL | string): void {
  moduleUrl = url;
}

/** The options without the hooks, refusing what cannot be carried (a function would be dropped). */
function plain(job: Job, opts: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(opts)) {
    if (CARRIED.has(k) || v === undefined) continue;
    if (typeof v === 'function' || typeof v === 'symbol') {
      throw new BlufioError('E_USAGE', `offThread.${job}() cannot carry the option ${k} (a ${typeof v}) to its worker thread`, `call ${job}() on this thread to use ${k}`);
    }
    out[k] = v;
  }
  return out;
}

function run<T>(job: Job, args: unknown[], opts: Hooks & object): Promise<T> {
  try {
    throwIfAborted(opts.signal);
    if (!isMainThread && (workerData as Record<string, unknown> | null)?.[MARK]) {
      throw new BlufioError('E_USAGE', `offThread.${job}() was called inside blufio's own worker thread: the worker is running an application bundle that includes the library`,
        'keep blufio-backup external when bundling, or call setOffThreadModule(<url of the library\'s dist/index.mjs>)');
    }
    return start<T>(job, args, opts, plain(job, opts));
  } catch (e) {
    return Promise.reject(e);
  }
}

function start<T>(job: Job, args: unknown[], opts: Hooks, data: Record<string, unknown>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // Set from this thread when the job must stop: the worker reads it inside SQLite's long
    // synchronous calls (the integrity check), where a message could not reach it.
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(moduleUrl ?? new URL(import.meta.url), { workerData: { [MARK]: { job, args, opts: data, stop: stop.buffer } } });
    let settled = false;
    /** The error a hook of ours threw: the job is stopped, and this is what it ends with. */
    let hookError: unknown;
    const halt = () => {
      Atomics.store(stop, 0, 1);
      worker.postMessage({ t: 'abort' });
    };
    opts.signal?.addEventListener('abort', halt, { once: true });
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', halt);
      f();
      void worker.terminate();
    };
    const hook = (f: () => void) => {
      try {
        f();
      } catch (e) {
        hookError ??= e;
        halt();
      }
    };
    worker.on('message', (m: FromWorker) => {
      if (m.t === 'progress') hook(() => opts.onProgress?.(m.p));
      else if (m.t === 'notice') hook(() => opts.onNotice?.(m.m));
      else if (hookError !== undefined) settle(() => reject(hookError));
      else if (m.t === 'done') settle(() => resolve(m.result as T));
      else settle(() => reject(fromWorker(m)));
    });
    worker.on('error', (e) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`the blufio worker thread exited (${code}) without an answer`))));
  });
}

/** The error the worker reported, as the same kind of error the job throws on this thread. */
function fromWorker(m: Extract<FromWorker, { t: 'error' }>): Error {
  if (m.code) return new BlufioError(m.code, m.message, m.hint);
  const e = new Error(m.message);
  if (m.name) e.name = m.name;
  if (m.errno) (e as NodeJS.ErrnoException).code = m.errno;
  if (m.stack) e.stack = m.stack;
  return e;
}

type BackupFn = typeof import('./backup.ts').backup;
type InspectFn = typeof import('./inspect.ts').inspect;
type RestoreFn = typeof import('./restore.ts').restore;
/** Test hooks (functions) cannot cross to a worker thread: not offered here. */
type NoHooks<F extends (...a: never[]) => unknown> = F extends (a: infer A, b: infer B, o?: infer O) => infer R ? (a: A, b: B, o?: Omit<O, 'afterBegin' | 'beforeSwap' | 'afterSwap'>) => R : never;

/** backup(), inspect() and restore() on a worker thread each (see above). */
export const offThread = {
  backup: ((dbPath, destPath, options = {}) => run('backup', [dbPath, destPath], options)) as NoHooks<BackupFn>,
  inspect: ((file, opts = {}) => run('inspect', [file], opts)) as InspectFn,
  restore: ((dbPath, fromPath, options = {}) => run('restore', [dbPath, fromPath], options)) as NoHooks<RestoreFn>,
};

/** In the worker: runs the job with hooks that post back, and answers once. */
async function serve(port: NonNullable<typeof parentPort>, task: { job: Job; args: string[]; opts: Record<string, unknown>; stop: SharedArrayBuffer }): Promise<void> {
  // The library bundle sets up how SQLite is loaded after this module's own top level has run.
  await new Promise((r) => setImmediate(r));
  const abort = new AbortController();
  const stop = new Int32Array(task.stop);
  port.on('message', (m: { t: string }) => {
    if (m.t === 'abort') abort.abort();
  });
  const hooks = {
    signal: abort.signal,
    interrupted: () => {
      if (Atomics.load(stop, 0) === 1 && !abort.signal.aborted) abort.abort();
      return abort.signal.aborted;
    },
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
    const err = e as BlufioError & NodeJS.ErrnoException;
    port.postMessage({
      t: 'error', code: e instanceof BlufioError ? err.code : undefined, message: String(err?.message ?? e), hint: err?.hint,
      name: err?.name, errno: typeof err?.code === 'string' ? err.code : undefined, stack: err?.stack,
    } satisfies FromWorker);
  }
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[MARK]) {
  void serve(parentPort, (workerData as Record<string, never>)[MARK]);
}
