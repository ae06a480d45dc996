/** Entry of the library bundle dist/index.mjs: the public API, with sqlite3.wasm embedded. */
import { setWasmLoader } from './sqlite.ts';

setWasmLoader(async () => (await import('./wasm-embedded.ts')).default);

export * from './index.ts';
