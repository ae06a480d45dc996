#!/usr/bin/env node
// A smoke run of the bundled CLI under the Node that runs this script (.ci/run uses it for the
// Node lines it does not run the whole suite on): backup, verify, restore of a sample database,
// a set (full, differential, list, restore), an encrypted .age file made with blufio keygen, and
// blufio replicate shipping a writer's commits until SIGTERM (exit 0), restored to the newest.
// Native sqlite3 makes the database and checks every result. Exits 1 on the first failure.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'blufio.mjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-smoke-'));
const sql = (db, q) => execFileSync('sqlite3', [db, q], { encoding: 'utf8' }).trim();
const blufio = (...args) => execFileSync(process.execPath, [CLI, ...args, '--quiet'], { encoding: 'utf8', env: { ...process.env, HOME: dir, XDG_STATE_HOME: path.join(dir, 'state') } });
let checks = 0;
const same = (what, a, b) => {
  if (a !== b) throw new Error(`${what}: ${JSON.stringify(a).slice(0, 200)} != ${JSON.stringify(b).slice(0, 200)}`);
  checks++;
};

let rep = null;
try {
  const db = path.join(dir, 'blufio.db');
  sql(db, "PRAGMA journal_mode=WAL; CREATE TABLE memory(id INTEGER PRIMARY KEY, content TEXT); CREATE TABLE vault(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID; INSERT INTO memory(content) SELECT hex(randomblob(200)) FROM generate_series(1, 2000); INSERT INTO vault SELECT 'k' || value, randomblob(64) FROM generate_series(1, 100);");
  const content = (f) => sql(f, 'SELECT count(*), sum(length(content)) FROM memory; SELECT hex(v) FROM vault ORDER BY k;');
  const want = content(db);

  blufio('backup', path.join(dir, 'b.db.gz'), '--db', db);
  blufio('verify', path.join(dir, 'b.db.gz'));
  const target = path.join(dir, 'restored.db');
  blufio('restore', path.join(dir, 'b.db.gz'), '--db', target);
  same('restored .db.gz', content(target), want);
  same('integrity', sql(target, 'PRAGMA integrity_check'), 'ok');

  const set = path.join(dir, 'set');
  fs.mkdirSync(set);
  blufio('backup', `${set}/`, '--db', db);
  sql(db, "INSERT INTO memory(content) VALUES ('after the full backup')");
  blufio('backup', `${set}/`, '--db', db);
  const listed = JSON.parse(execFileSync(process.execPath, [CLI, 'list', `${set}/`, '--json'], { encoding: 'utf8' })).backups;
  same('set kinds', listed.map((b) => b.kind).join(','), 'diff,full');
  blufio('restore', `${set}/`, '--db', target, '--series', 'blufio');
  same('restored from the set', content(target), content(db));

  const key = path.join(dir, 'key.txt');
  const recipient = /age1\w+/.exec(execFileSync(process.execPath, [CLI, 'keygen', key], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) + fs.readFileSync(key, 'utf8'))[0];
  blufio('backup', path.join(dir, 'b.db.gz.age'), '--db', db, '--recipient', recipient);
  blufio('verify', path.join(dir, 'b.db.gz.age'), '--identity', key);
  blufio('restore', path.join(dir, 'b.db.gz.age'), '--db', target, '--identity', key);
  same('restored .db.gz.age', content(target), content(db));

  // Replication: commits shipped while they are made; SIGTERM ships the rest and exits 0.
  const live = path.join(dir, 'live');
  fs.mkdirSync(live);
  rep = spawn(process.execPath, [CLI, 'replicate', `${live}/`, '--db', db, '--interval', '0.2', '--json'], { env: { ...process.env, HOME: dir, XDG_STATE_HOME: path.join(dir, 'state') }, stdio: ['ignore', 'ignore', 'pipe'] });
  let events = '';
  rep.stderr.on('data', (c) => (events += c));
  const exited = new Promise((r) => rep.on('exit', (code, signal) => r(code ?? signal)));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 300 && !events.includes('"event":"started"'); i++) await sleep(100);
  for (let i = 0; i < 20; i++) {
    sql(db, `INSERT INTO memory(content) VALUES ('replicated ${i}')`);
    await sleep(100);
  }
  rep.kill('SIGTERM');
  same('replicate exit code', await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000, 'still running').unref())]), 0);
  same('replicate shipped', /"event":"shipped"/.test(events), true);
  blufio('restore', `${live}/`, '--db', target, '--series', 'blufio');
  same('restored from the replicated set', content(target), content(db));
  console.log(`smoke (node ${process.versions.node}): ${checks} passed, 0 failed`);
} catch (e) {
  console.error(`smoke (node ${process.versions.node}) FAILED: ${e.stderr ?? ''}${e.message}`);
  console.log(`smoke (node ${process.versions.node}): ${checks} passed, 1 failed`);
  process.exitCode = 1;
  rep?.kill('SIGKILL');
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
