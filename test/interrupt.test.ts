/**
 * --timeout bounds the whole job (copy, check, compression, stream), and Ctrl-C at any of those
 * steps, or during a restore, exits 130 with nothing left behind: no file at the destination, no
 * temporary file, no staging directory, no restore claim, the database as it was.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { integrityProblems } from '../src/integrity.ts';
import { CLI, RUNTIMES, cleanup, fingerprint, makeSampleDb, rejects, sql, tmpdir } from './helpers.ts';

const test = suite('interrupt');
test.after.each(cleanup);

/** ~48 MB of random data: compressing it takes seconds, copying and checking it a fraction. */
function bigDb(dir: string): string {
  const db = path.join(dir, 'big.db');
  sql(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(b); INSERT INTO t SELECT randomblob(4000) FROM generate_series(1, 12000);');
  return db;
}

/** Starts the CLI, sends SIGINT once `when` says so (or after `ms`), returns exit code and stderr. */
async function interrupt(args: string[], ms: number, opts: { env?: NodeJS.ProcessEnv; holdStdout?: boolean; when?: (stderr: string) => boolean } = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let stderr = '';
  let seen: () => void = () => {};
  const said = new Promise<void>((r) => (seen = r));
  child.stderr.on('data', (d) => {
    stderr += d;
    if (opts.when?.(stderr)) seen();
  });
  // A reader that does not read: a stream backup then waits in the middle of writing.
  if (opts.holdStdout) child.stdout.pause();
  else child.stdout.resume();
  // A signal sent before the job has started (a loaded machine) would meet no handler yet.
  if (opts.when) await said;
  else await new Promise((r) => setTimeout(r, ms));
  child.kill('SIGINT');
  if (opts.holdStdout) child.stdout.resume();
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return { code, stderr };
}

test('--timeout ends a job that never pauses, at any step; nothing is left', async () => {
  const d = tmpdir();
  const db = bigDb(d);
  const dest = path.join(d, 'b.db.gz');
  const r = spawnSync(process.execPath, [CLI, 'backup', dest, '--db', db, '--timeout', '1']);
  assert.is(r.status, 1, String(r.stderr));
  assert.is(String(r.stderr), 'error: gave up: the time limit (--timeout) ran out; nothing was written (raise --timeout, or leave it out: without it a job that makes progress is not limited)\n');
  assert.equal(fs.readdirSync(d).sort(), ['big.db', 'big.db-shm', 'big.db-wal'].filter((f) => fs.existsSync(path.join(d, f))).sort());
});

test('a --timeout too long for a timer is a usage error, not an instant time-out', () => {
  const d = tmpdir();
  const db = path.join(d, 'x.db');
  makeSampleDb(db, { rows: 10 });
  const r = spawnSync(process.execPath, [CLI, 'backup', path.join(d, 'b.db'), '--db', db, '--timeout', '99999999'], { encoding: 'utf8' });
  assert.is(r.status, 2);
  assert.is(r.stderr, 'error: --timeout must be at most 2073600 seconds (24 days) (leave --timeout out for no limit)\n');
  assert.is(spawnSync(process.execPath, [CLI, 'backup', path.join(d, 'b.db'), '--db', db, '--timeout', '2073600'], { encoding: 'utf8' }).status, 0);
});

test('the integrity check is ended by the time limit, and that is never reported as damage', async () => {
  const d = tmpdir();
  const db = path.join(d, 'x.db');
  makeSampleDb(db, { rows: 2000 });
  assert.equal(await integrityProblems(db), []);
  await rejects(integrityProblems(db, false, 20, undefined, Date.now() - 1), 'E_TIMEOUT');
});

/** Starts the CLI under `runtime` and sends SIGINT the moment its progress says the check began. */
async function interruptCheck(runtime: string[], args: string[]) {
  const child = spawn(runtime[0], [...runtime.slice(1), CLI, ...args, '--progress'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let sent = false;
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    // The moment the check starts: the signal arrives while SQLite is busy in it.
    if (!sent && stderr.includes('Verifying integrity')) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.ok(sent, stderr);
  return { code, stderr };
}

// Each runtime delivers a signal in its own turn of the event loop (Deno published a backup and
// a restore interrupted during the check, exit 0, until the wait after it was two turns).
for (const [runtimeName, runtime] of Object.entries(RUNTIMES)) {
  test(`${runtimeName}: Ctrl-C during the integrity check (one long synchronous call) of a backup or a restore: exit 130 once it ends, nothing published or left`, async () => {
    const d = tmpdir();
    // Three indexes over random keys: the check takes a good part of a second.
    const db = path.join(d, 'indexed.db');
    sql(db, 'CREATE TABLE t(a, b, c); INSERT INTO t SELECT randomblob(16), randomblob(16), randomblob(16) FROM generate_series(1, 250000); CREATE INDEX ia ON t(a); CREATE INDEX ib ON t(b); CREATE INDEX ic ON t(c);');
    for (const name of ['b.db', 'b.db.age']) {
      const before = fs.readdirSync(d).sort();
      const r = await interruptCheck(runtime, ['backup', path.join(d, name), '--db', db, ...(name.endsWith('.age') ? ['--recipient', 'age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq'] : [])]);
      assert.is(r.code, 130, r.stderr);
      assert.match(r.stderr, /error: interrupted; nothing was written\n$/);
      assert.equal(fs.readdirSync(d).sort(), before, name);
    }
    // A restore over a WAL database, interrupted while it checks the copy it would swap in.
    const bak = path.join(d, 'bak.db');
    fs.copyFileSync(db, bak);
    const target = path.join(d, 'blufio.db');
    makeSampleDb(target, { wal: true, rows: 100 });
    const print = fingerprint(target);
    const before = fs.readdirSync(d).sort();
    const r = await interruptCheck(runtime, ['restore', bak, '--db', target]);
    assert.is(r.code, 130, r.stderr);
    assert.is(fingerprint(target), print);
    assert.equal(fs.readdirSync(d).sort(), before);
  });
}

test('Ctrl-C while compressing a .gz backup: exit 130, nothing left', async () => {
  const d = tmpdir();
  const db = bigDb(d);
  const before = fs.readdirSync(d).sort();
  // Sent when the process says it is compressing (never after a fixed delay).
  const r = await interrupt(['backup', path.join(d, 'b.db.gz'), '--db', db, '--progress'], 0, { when: (e) => e.includes('Compressing') });
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr.slice(r.stderr.lastIndexOf('error:')), /^error: interrupted; nothing was written\n$/);
  assert.equal(fs.readdirSync(d).sort(), before);
});

test('Ctrl-C while streaming (backup - into a reader that waits): exit 130, no staging directory left', async () => {
  const d = tmpdir();
  const db = bigDb(d);
  const tmp = tmpdir();
  const r = await interrupt(['backup', '-', '--db', db, '--progress'], 0, { env: { ...process.env, TMPDIR: tmp }, holdStdout: true, when: (e) => e.includes('Writing to stdout') });
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr.slice(r.stderr.lastIndexOf('error:')), /^error: interrupted/);
  assert.equal(fs.readdirSync(tmp), []);
});

test('Ctrl-C during a restore: exit 130, the database as it was, no temporary file or claim', async () => {
  const d = tmpdir();
  const big = bigDb(d);
  const bak = path.join(d, 'b.db');
  assert.is(spawnSync(process.execPath, [CLI, 'backup', bak, '--db', big, '--quiet']).status, 0);
  fs.rmSync(big);
  for (const f of ['big.db-wal', 'big.db-shm']) fs.rmSync(path.join(d, f), { force: true });
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { wal: true, rows: 100 });
  const print = fingerprint(db);
  const before = fs.readdirSync(d).sort();
  // Sent at the first progress line: the copy is under way (a fixed delay met a process that had
  // not started its job yet on a loaded machine: killed by the signal, exit code null).
  const r = await interrupt(['restore', bak, '--db', db, '--progress'], 0, { when: (e) => e.includes('Restoring:') });
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr, /error: interrupted/);
  assert.is(fingerprint(db), print);
  assert.equal(fs.readdirSync(d).sort(), before);
});

test.run();
