/**
 * The encrypting thread: a verified copy of known size encrypted on a worker thread, beside the
 * main thread's integrity check, the main thread joining once its check is done. The worker runs
 * seal-worker.ts bundled into one script: build.mjs puts that script's text in the bundles
 * (`__BLUFIO_SEAL_WORKER__`, so each stays one file); from source (tsx: the tests) it is bundled
 * here with esbuild, once per process.
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { writeFully } from '../vfs/disk-file.ts';
import { newFile, type Recipient } from './header.ts';
import { aead, nodeAead } from './primitives.ts';
import { sealClaimed, wasmSealer, type GroupSealer } from './sealers.ts';

/** seal-worker.ts bundled into one CommonJS script, set by build.mjs (absent under tsx). */
declare const __BLUFIO_SEAL_WORKER__: string | undefined;

let workerCode: Promise<string> | undefined;

/** The worker's code (a script, run with `eval: true`): the bundle's own, else seal-worker.ts bundled now. */
function sealWorkerCode(): Promise<string> {
  return (workerCode ??= typeof __BLUFIO_SEAL_WORKER__ === 'string' ? Promise.resolve(__BLUFIO_SEAL_WORKER__) : bundleSealWorker());
}

/** seal-worker.ts bundled to a script, as build.mjs does (esbuild is a devDependency: from source only). */
async function bundleSealWorker(): Promise<string> {
  // Not a string literal, so that esbuild leaves the import alone: the bundles never come here.
  const esbuild = 'esbuild';
  const { build } = (await import(esbuild)) as typeof import('esbuild');
  const entry = fileURLToPath(new URL('./seal-worker.ts', import.meta.url));
  const r = await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', write: false, logLevel: 'warning' });
  return r.outputFiles[0].text;
}

type NodeWorker = import('node:worker_threads').Worker;

/**
 * The encrypting thread's cipher: node:crypto's under Node (a 100 MiB `.db.age` backup 0.64–0.86 s
 * with it, 0.70–0.74 s with the WebAssembly one), the WebAssembly one elsewhere. Under Deno
 * node:crypto's cipher is fast but its buffer per chunk is not: 0.99–1.15 s with it, 0.80–0.84 s
 * with the WebAssembly one, which seals in its own memory (docs/encryption.md).
 */
function workerCipher(): 'node' | 'wasm' {
  return aead === nodeAead && !process.versions.deno && !process.versions.bun ? 'node' : 'wasm';
}

/**
 * Encrypts a file of known size that does not change (a verified copy) in a worker thread, on
 * the core the main thread is not using. Made before the file exists, so that starting the thread
 * (~50–100 ms) overlaps the copy; `start()` sets it sealing beside the integrity check on the main
 * thread; `finish()`, once the check is done, has the main thread seal what is left beside it
 * (1 GiB: 4.3 → 3.5 s under Bun). One thread: a second one joining after the check was slower on
 * two cores (its start costs about what it saves; docs/encryption.md). null where there are no
 * worker threads: the caller then encrypts on the main thread.
 */
export class EncryptionThread {
  private job: { src: string; out: string; done: Promise<void>; headBytes: number; key: Uint8Array; next: Int32Array } | null = null;
  /** The main thread's sealer (the WebAssembly one, as its streams'), made the first time it helps. */
  private helper: GroupSealer | null = null;
  /** Groups the main thread sealed in the last finish() (for tests). */
  helped = 0;
  private idle: NodeWorker | null;
  private running: NodeWorker | null = null;

  private constructor(
    private readonly WorkerClass: typeof import('node:worker_threads').Worker,
    private readonly code: string,
    private readonly recipients: Recipient[],
    private readonly engine: 'node' | 'wasm',
  ) {
    this.idle = this.spawn();
  }

  /** `cipher: 'wasm'` uses the WebAssembly cipher even where node:crypto has one (for tests). */
  static async create(recipients: Recipient[], cipher?: 'wasm'): Promise<EncryptionThread | null> {
    const code = await sealWorkerCode();
    try {
      const { Worker } = await import('node:worker_threads');
      return new EncryptionThread(Worker, code, recipients, cipher ?? workerCipher());
    } catch {
      return null;
    }
  }

  private spawn(): NodeWorker {
    const w = new this.WorkerClass(this.code, { eval: true, workerData: { engine: this.engine } });
    w.unref();
    w.on('error', () => {}); // reported through the job's promise
    return w;
  }

  /** Starts encrypting the file `src` into `out` (created here, 0600, never over a file). */
  async start(src: string, out: string): Promise<void> {
    await this.abandon();
    const f = newFile(this.recipients);
    const fd = fs.openSync(out, 'wx', 0o600);
    try {
      writeFully(fd, f.head, 0);
    } finally {
      fs.closeSync(fd);
    }
    const w = this.idle ?? this.spawn();
    this.idle = null;
    w.ref();
    this.running = w;
    const done = new Promise<void>((resolve, reject) => {
      w.once('message', (m: { done?: boolean; error?: string; code?: string }) => {
        if (m.done) resolve();
        else reject(Object.assign(new Error(m.error ?? 'encryption failed'), { code: m.code }));
      });
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`the encrypting thread stopped (${code})`)));
    });
    done.catch(() => {});
    const claims = new SharedArrayBuffer(4);
    this.job = { src, out, done, headBytes: f.head.length, key: f.payloadKey, next: new Int32Array(claims) };
    w.postMessage({ src, out, headBytes: f.head.length, key: f.payloadKey, claims });
  }

  /**
   * Seals beside the thread until no group is left, then waits for it, and returns the file's
   * size in bytes (publishing it makes it durable). Called once the check is done, when the main
   * thread would otherwise wait: the groups are claimed from the counter the thread takes them
   * from. `pause` is awaited every few groups (a turn of the event loop, where a Ctrl-C stops the
   * job by throwing).
   */
  async finish(pause: () => Promise<void> = async () => {}): Promise<number> {
    const job = this.job;
    if (!job) throw new Error('nothing is being encrypted');
    const s = (this.helper ??= wasmSealer());
    s.setKey(job.key);
    const fdIn = fs.openSync(job.src, 'r');
    let fdOut: number | undefined;
    try {
      fdOut = fs.openSync(job.out, 'r+');
      const j = { fdIn, fdOut, size: fs.fstatSync(fdIn).size, headBytes: job.headBytes };
      this.helped = await sealClaimed(s, j, job.next, (n) => (n % 8 === 0 ? pause() : undefined));
    } finally {
      fs.closeSync(fdIn);
      if (fdOut !== undefined) fs.closeSync(fdOut);
    }
    await job.done;
    return fs.statSync(job.out).size;
  }

  /** Ends the job in progress, if any (its output is the caller's to remove). */
  private async abandon(): Promise<void> {
    const running = this.running;
    this.running = null;
    this.job = null;
    await running?.terminate();
  }

  /** Ends the thread, and a job in progress (its output is the caller's to remove). */
  async stop(): Promise<void> {
    await this.abandon();
    const idle = this.idle;
    this.idle = null;
    await idle?.terminate();
  }
}
