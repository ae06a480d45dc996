/** Entry of the one-file bundle dist/blufio.mjs: the .wasm is embedded, loaded only when needed. */
import { setFlagsFromString } from 'node:v8';
import { main } from './cli/index.ts';
import { setWasmLoader } from './sqlite.ts';

/**
 * Under Node 20 (V8 11), a job smaller than BASELINE_ONLY_BELOW runs SQLite's WebAssembly on
 * V8's baseline compiler only (--liftoff-only). With V8's default tiering, optimising hot
 * functions in background threads made the main thread wait for them (~100 ms idle at the start
 * of every copy) and cost ~25 MiB of memory: a 100 MB restore took 0.41-0.43 s with it and
 * 0.36-0.39 s without. On bigger jobs the optimised code pays for itself (a 2 GB restore: 2.5-2.8 s
 * of CPU with it, 2.9-3.4 s without; equal at 512 MB). Only for the CLI process: the library
 * leaves an embedding server's V8 alone. Deno and Bun are not V8-flag-tunable here.
 * Set just before the module is compiled, not at start-up: changing a flag makes Node compile its
 * own built-in modules from source afterwards (their code cache is tied to the flags), which
 * cost `--version` ~15 ms.
 */
const BASELINE_ONLY_BELOW = 512 * 2 ** 20;

function tuneWasmCompiler(workBytes: number | undefined): void {
  const v8Major = Number(process.versions.v8?.split('.')[0]);
  const small = workBytes !== undefined && workBytes < BASELINE_ONLY_BELOW;
  // Node 22 (V8 12) too: a tiny backup 87 -> 76 MiB peak RSS. Under Node 24 and 26 (V8 13+) the
  // flag set at run time has no effect on WebAssembly (measured: 91 vs 91 MiB; on the command
  // line it would save ~11), so it is not set there (docs/benchmarks.md, "Start-up per Node line").
  if (small && !('Deno' in globalThis) && !process.versions.bun && v8Major <= 12) setFlagsFromString('--liftoff-only');
}

setWasmLoader(async (workBytes) => {
  tuneWasmCompiler(workBytes);
  return (await import('./wasm-embedded.ts')).default;
});
process.exitCode = await main(process.argv.slice(2));
