/** Entry of the one-file bundle dist/blufio.mjs: the .wasm is embedded, loaded only when needed. */
import { main } from './cli.ts';
import { setWasmLoader } from './sqlite.ts';

setWasmLoader(async () => (await import('./wasm-embedded.ts')).default);
process.exitCode = await main(process.argv.slice(2));
