// build.mjs loads .wasm files as base64 text for the Node bundles: this turns it into the bytes of
// sqlite3.wasm with Buffer's native decoder (node:buffer exists in Node, Deno and Bun).
import { Buffer } from 'node:buffer';
import wasmBase64 from '@sqlite.org/sqlite-wasm/sqlite3.wasm';

export default Buffer.from(wasmBase64 as string, 'base64') as Uint8Array;
