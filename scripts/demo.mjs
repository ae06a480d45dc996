#!/usr/bin/env node
// `npm run demo`: back up and restore a sample blufio database, with the bundled CLI, and show
// what happened. Needs nothing but Node: the sample is made with the WebAssembly SQLite too.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'blufio.mjs');
const { inspect } = await import(path.join(root, 'dist', 'index.mjs'));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-demo-'));
const db = path.join(dir, 'blufio.db');
const bak = path.join(dir, 'backup.db');

/** A blufio-like database (sessions, memory, an encrypted-credential vault), in WAL mode. */
async function makeSample(file, { vault }) {
  const sqlite3 = await sqlite3InitModule({ print: () => {}, printErr: () => {} });
  const mem = new sqlite3.oo1.DB(':memory:');
  // The WASM build has no generate_series: count with a recursive CTE instead.
  const series = (n) => `(WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < ${n}) SELECT value FROM s)`;
  mem.exec(`
    CREATE TABLE sessions(id INTEGER PRIMARY KEY, agent TEXT NOT NULL, started TEXT NOT NULL);
    CREATE TABLE memory(id INTEGER PRIMARY KEY, session_id INTEGER REFERENCES sessions(id), role TEXT, content TEXT);
    CREATE INDEX memory_by_session ON memory(session_id);
    CREATE TABLE vault(name TEXT PRIMARY KEY, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL) WITHOUT ROWID;
    INSERT INTO sessions SELECT value, 'agent-' || (value % 5), datetime('2026-11-01', '+' || value || ' hours') FROM ${series(50)};
    INSERT INTO memory(session_id, role, content)
      SELECT 1 + value % 50, CASE value % 2 WHEN 0 THEN 'user' ELSE 'assistant' END, 'message ' || value || ': ' || hex(randomblob(120))
      FROM ${series(400)};
  `);
  if (vault) mem.exec(`INSERT INTO vault SELECT 'credential-' || value, randomblob(12), randomblob(64 + value * 7) FROM ${series(25)};`);
  const bytes = sqlite3.capi.sqlite3_js_db_export(mem.pointer);
  mem.close();
  bytes[18] = 2; // WAL mode, as blufio runs it
  bytes[19] = 2;
  fs.writeFileSync(file, bytes, { mode: 0o600 });
}

function run(args) {
  console.log(`\n  $ blufio ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args, '--db', db], { encoding: 'utf8' });
  for (const line of (r.stderr + r.stdout).trim().split('\n')) console.log(`    ${line}`);
  if (r.status !== 0) {
    console.error(`\nThe demo failed (exit ${r.status}); files are in ${dir}`);
    process.exit(1);
  }
}

const rows = async (file) => Object.fromEntries((await inspect(file)).tables.map((t) => [t.name, t.rows]));
const show = (t) => Object.entries(t).map(([k, v]) => `${k} ${v}`).join(', ');

console.log(`blufio backup & restore demo (files in ${dir})`);
await makeSample(db, { vault: true });
console.log(`\n1. A sample blufio database: ${db}\n   ${show(await rows(db))}`);

console.log('\n2. Back it up (a verified, self-contained copy, mode 0600):');
run(['backup', bak]);
const v = await inspect(bak);
console.log(`    -> integrity ${v.integrity}, ${v.pages} pages of ${v.pageSize} bytes, ${v.journalMode}-journal format`);

console.log('\n3. An accident: the vault is wiped in the live database.');
await makeSample(db, { vault: false });
console.log(`   ${show(await rows(db))}`);

console.log('\n4. Restore from the backup (the current database is kept as blufio.db.pre-restore):');
run(['restore', bak]);
const after = await rows(db);
console.log(`    -> ${show(after)}`);
console.log(`    -> safety copy: ${show(await rows(`${db}.pre-restore`))}`);

if (after.vault !== 25) {
  console.error('\nThe vault did not come back: the demo failed.');
  process.exit(1);
}
console.log('\nDone: the vault is back. Next: node dist/blufio.mjs --help');
fs.rmSync(dir, { recursive: true, force: true });
