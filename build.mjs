// Bundles the CLI into one file, dist/blufio.mjs, with sqlite3.wasm embedded: it runs with
// nothing beside it on Node 20+, Deno and Bun.
import { build } from 'esbuild';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));

// The encrypting thread's code (src/age/seal-worker.ts), bundled first into one CommonJS script
// that src/age/thread.ts starts with `eval: true`: the bundles below carry it as a string
// (__BLUFIO_SEAL_WORKER__), so that each stays one file. From source, thread.ts bundles it the
// same way itself.
const sealWorker = await build({
  entryPoints: ['src/age/seal-worker.ts'],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  legalComments: 'none',
  logLevel: 'warning',
  write: false,
});

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  // Without a target, esbuild >= 0.27 emits Uint8Array.fromBase64 for the .wasm, which Node 20 lacks.
  target: 'node20',
  // The .wasm goes in as base64 text, decoded by Buffer's native decoder in src/wasm-embedded.ts
  // (~1 ms; the JavaScript decoder esbuild emits for 'binary' took ~5 ms of every start-up).
  loader: { '.wasm': 'base64' },
  define: { __BLUFIO_VERSION__: JSON.stringify(pkg.version), __BLUFIO_SEAL_WORKER__: JSON.stringify(sealWorker.outputFiles[0].text) },
  legalComments: 'none',
  logLevel: 'warning',
};

/**
 * Makes a bundle pure ASCII. esbuild escapes non-ASCII characters in strings, templates and
 * regular expressions (its default charset), but keeps some comments as written: one em dash in
 * a comment made V8 hold the whole 1.9 MB source as a two-byte string, and Node's decoding of
 * the file took ~29 ms instead of ~12 ms of every start-up (--cpu-prof; ~10 ms of wall time).
 * What is left outside ASCII can only be in comments.
 */
function asciiOnly(file) {
  const text = readFileSync(file, 'utf8');
  if (/[^\x00-\x7f]/.test(text)) writeFileSync(file, text.replace(/[^\x00-\x7f]/g, '?'));
}

// The CLI: dist/blufio.mjs, executable.
await build({
  ...common,
  entryPoints: ['src/bin.ts'],
  outfile: 'dist/blufio.mjs',
  banner: { js: '#!/usr/bin/env node' },
});
asciiOnly('dist/blufio.mjs');
chmodSync('dist/blufio.mjs', 0o755);

// The library for embedding in the blufio server: dist/index.mjs (+ types in dist/types).
await build({ ...common, entryPoints: ['src/lib.ts'], outfile: 'dist/index.mjs' });
asciiOnly('dist/index.mjs');

// Browsers: the library (blufio-backup/browser) and the OPFS demo page (examples/browser/), in dist/browser.
const browser = { bundle: true, platform: 'browser', format: 'esm', target: 'es2022', loader: { '.wasm': 'binary' }, legalComments: 'none', logLevel: 'warning' };
await build({ ...browser, entryPoints: ['src/browser/index.ts'], outfile: 'dist/browser/blufio-browser.mjs' });
await build({ ...browser, entryPoints: ['examples/browser/demo-worker.ts'], outfile: 'dist/browser/demo-worker.js' });
await build({ ...browser, entryPoints: ['examples/browser/demo-page.ts'], outfile: 'dist/browser/demo.js' });
mkdirSync('dist/browser', { recursive: true });
copyFileSync('examples/browser/demo.html', 'dist/browser/index.html');
// The "opfs" VFS runs its file I/O in this worker, which sqlite-wasm loads from beside the bundle.
copyFileSync('node_modules/@sqlite.org/sqlite-wasm/dist/sqlite3-opfs-async-proxy.js', 'dist/browser/sqlite3-opfs-async-proxy.js');
