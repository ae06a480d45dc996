/**
 * The encrypting thread's code (thread.ts starts it, bundled to one CommonJS script: by build.mjs
 * into the bundles, by thread.ts itself from source). Makes its sealer while it waits (and warms
 * it: an engine compiles hot code on its first uses), then seals the groups it claims until none
 * is left; starts the disk writing every 32 MiB, and collects its heap every 8 MiB when its cipher
 * makes garbage. Posts { done: true } or an error message with its code. `workerData.engine`
 * names the cipher: node:crypto's ('node': v8 and vm too, for the collections) or the
 * WebAssembly one ('wasm': nothing more is loaded).
 */
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { CHUNK, GROUP, nodeSealer, sealClaimed, wasmSealer, type GroupSealer } from './sealers.ts';

const port = parentPort!;

/** The sealer, made and warmed at once; node:crypto, v8 and vm are required (a script) only for node:crypto's cipher. */
function makeSealer(engine: 'node' | 'wasm'): GroupSealer {
  const sealer = engine === 'wasm' ? wasmSealer() : nodeSealer(require('node:crypto'), require('node:v8'), require('node:vm'));
  sealer.setKey(new Uint8Array(32));
  for (let k = 0; k < GROUP; k++) sealer.sealChunk(k, CHUNK, 0);
  return sealer;
}

// Made while the thread waits for its job; what went wrong is reported with the job.
let sealer: GroupSealer | undefined;
let failed: unknown;
try {
  sealer = makeSealer((workerData as { engine: 'node' | 'wasm' }).engine);
} catch (e) {
  failed = e;
}

port.once('message', async ({ src, out, headBytes, key, claims }: { src: string; out: string; headBytes: number; key: Uint8Array; claims: SharedArrayBuffer }) => {
  let fdIn: number | undefined;
  let fdOut: number | undefined;
  try {
    if (!sealer) throw failed;
    const s = sealer;
    s.setKey(key);
    fdIn = fs.openSync(src, 'r');
    fdOut = fs.openSync(out, 'r+');
    const job = { fdIn, fdOut, size: fs.fstatSync(fdIn).size, headBytes };
    // The main thread joins once its check is done.
    await sealClaimed(s, job, new Int32Array(claims), (groups) => {
      if (s.collect && groups % 8 === 0) s.collect();
      // The disk writes while we seal (the caller's fsync then has little left to do). A turn
      // of the event loop after asking: Deno starts an asynchronous call only when its loop
      // turns, and without one its final fsync still had 54-66 ms to write (23-27 ms with it).
      if (groups % 32 === 0) {
        fs.fdatasync(job.fdOut, () => {});
        return new Promise((r) => setTimeout(r, 0));
      }
    });
    port.postMessage({ done: true });
  } catch (e) {
    const err = e as { message?: string; code?: string } | undefined;
    port.postMessage({ error: String(err && err.message), code: err && err.code });
  } finally {
    if (fdIn !== undefined) fs.closeSync(fdIn);
    if (fdOut !== undefined) fs.closeSync(fdOut);
  }
});
