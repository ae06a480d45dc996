/** Entry of the one-file bundle dist/blufio.mjs: the .wasm is embedded, loaded only when needed. */
import { setFlagsFromString } from 'node:v8';
import { main } from './cli.ts';
import { setWasmLoader } from './sqlite.ts';

/**
 * Under Node 20 (V8 11), SQLite's WebAssembly runs on V8's baseline compiler only. With V8's
 * default tiering, optimising hot functions in background threads made the main thread wait for
 * them (~100 ms idle at the start of every copy) and cost ~25 MiB of memory, and the optimised
 * code was no faster here: the copy is bound by system calls and memory copies, and a 2 GB
 * integrity_check took the same time either way (docs/benchmarks.md). Only for the CLI process:
 * the library leaves an embedding server's V8 alone. Deno and Bun are not V8-flag-tunable here.
 * Set just before the module is compiled, not at start-up: changing a flag makes Node compile its
 * own built-in modules from source afterwards (their code cache is tied to the flags), which
 * cost `--version` ~15 ms.
 */
function baselineWasmOnly(): void {
  const v8Major = Number(process.versions.v8?.split('.')[0]);
  if (!('Deno' in globalThis) && !process.versions.bun && v8Major <= 11) setFlagsFromString('--liftoff-only');
}

setWasmLoader(async () => {
  baselineWasmOnly();
  return (await import('./wasm-embedded.ts')).default;
});
process.exitCode = await main(process.argv.slice(2));
