#!/usr/bin/env node
// `npm run demo:browser`: serves dist/browser (the OPFS demo) on http://127.0.0.1:8080/ with the
// COOP/COEP headers that cross-origin isolation needs. Also used by test/browser.test.ts.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'browser');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };

/** Starts the server on 127.0.0.1 (`port` 0: any free port); resolves to it and its base URL. */
export function serveBrowserDemo(port = 0) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/$/, '/index.html');
    const file = path.join(DIR, rel);
    if (!file.startsWith(DIR + path.sep) || !fs.existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}/` })));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { url } = await serveBrowserDemo(Number(process.env.PORT ?? 8080));
  console.log(`blufio OPFS demo: ${url} (Ctrl-C to stop)`);
}
