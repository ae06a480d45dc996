// esbuild's binary loader turns this import into the bytes of sqlite3.wasm (see build.mjs).
import wasm from '@sqlite.org/sqlite-wasm/sqlite3.wasm';
export default wasm as unknown as Uint8Array;
