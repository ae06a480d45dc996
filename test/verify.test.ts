import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { inspect } from '../src/index.ts';
import { cleanup, cli, makeSampleDb, sampleWithBackup, sql, tmpdir } from './helpers.ts';

const test = suite('verify');
test.after.each(cleanup);

const sampleBackup = () => sampleWithBackup(500);

test('a sound backup: integrity, size, format, writer version, tables with row counts', async () => {
  const { bak } = await sampleBackup();
  const r = await inspect(bak);
  assert.is(r.ok, true);
  assert.is(r.integrity, 'ok');
  assert.is(r.check, 'integrity_check');
  assert.is(r.bytes, fs.statSync(bak).size);
  assert.is(r.pages * r.pageSize, r.bytes);
  assert.is(r.journalMode, 'rollback');
  assert.match(r.sqliteVersion, /^3\.\d+\.\d+$/);
  assert.equal(r.tables, [
    { name: 'audit', rows: Number(sql(bak, 'SELECT count(*) FROM audit')) },
    { name: 'memory', rows: 500 },
    { name: 'sessions', rows: 50 },
    { name: 'vault', rows: 500 },
  ]);
  assert.is((await inspect(bak, { quick: true })).check, 'quick_check');
});

test('CLI: report on stderr and exit 0; --json on stdout; --quiet prints nothing', async () => {
  const { bak } = await sampleBackup();
  const r = cli(['verify', bak]);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  assert.is(lines[0], `${bak}: OK, sound and ready to restore`);
  assert.match(r.stderr, 'integrity     ok (integrity_check)');
  assert.match(r.stderr, 'journal mode  rollback journal (self-contained)');
  assert.match(r.stderr, 'tables        audit');
  assert.match(r.stderr, 'vault 500');
  const j = JSON.parse(cli(['verify', bak, '--json', '--quick']).stdout);
  assert.is(j.ok, true);
  assert.is(j.check, 'quick_check');
  const q = cli(['verify', bak, '--quiet']);
  assert.is(q.code, 0);
  assert.is(q.stderr + q.stdout, '');
});

test('damaged, truncated and non-SQLite files get a verdict, exit 1, never a crash', async () => {
  const { d, bak } = await sampleBackup();
  const good = fs.readFileSync(bak);
  const corrupt = path.join(d, 'corrupt.db');
  const bytes = Buffer.from(good);
  bytes.fill(0x33, 4096 * 5, 4096 * 6);
  fs.writeFileSync(corrupt, bytes);
  const cut = path.join(d, 'cut.db');
  fs.writeFileSync(cut, good.subarray(0, good.length / 2));
  const tiny = path.join(d, 'tiny.db');
  fs.writeFileSync(tiny, good.subarray(0, 100));
  const text = path.join(d, 'notes.txt');
  fs.writeFileSync(text, 'not a database\n'.repeat(50));
  const empty = path.join(d, 'empty.db');
  fs.writeFileSync(empty, '');
  for (const f of [corrupt, cut, tiny, text, empty]) {
    const r = await inspect(f);
    assert.is(r.ok, false, f);
    assert.ok(r.problems.length > 0, f);
    const c = cli(['verify', f]);
    assert.is(c.code, 1, `${f}: ${c.stderr}`);
    assert.match(c.stderr, `${f}: FAILED, do not restore from this file\n`);
    assert.not.match(c.stderr, /\n\s+at /, 'no stack trace');
  }
  assert.match((await inspect(text)).problems[0], 'not an SQLite database');
  const missing = cli(['verify', path.join(d, 'nope.db')]);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /^error: file not found/);
});

test('a backup cut short (under one page, or shorter than its header declares) is FAILED and never restored as an empty or smaller database', async () => {
  const { d, bak } = await sampleWithBackup(2000);
  const whole = fs.readFileSync(bak);
  const target = path.join(d, 'target.db');
  makeSampleDb(target, { rows: 30 });
  const before = sql(target, 'SELECT count(*) FROM memory');
  for (const [name, bytes] of [['under-a-page.db', 1000], ['pages-missing.db', whole.length - 4096 * 3], ['half-a-page.db', whole.length - 100]] as const) {
    const cut = path.join(d, name);
    fs.writeFileSync(cut, whole.subarray(0, bytes));
    // Native SQLite agrees that these are damaged.
    assert.throws(() => sql(cut, 'PRAGMA integrity_check; SELECT count(*) FROM memory'), undefined, name);
    const r = await inspect(cut);
    assert.is(r.ok, false, name);
    assert.match(r.problems[0], 'is truncated', name);
    const run = cli(['restore', '--db', target, cut]);
    assert.is(run.code, 1, name);
    assert.match(run.stderr, 'is truncated');
    assert.is(sql(target, 'SELECT count(*) FROM memory'), before);
  }
});

test('a live WAL database held open: verified through the same read-only view, files untouched', async () => {
  const d = tmpdir();
  const db = path.join(d, 'live.db');
  makeSampleDb(db, { wal: true, rows: 100 });
  const before = fs.readFileSync(db);
  const r = await inspect(db);
  assert.is(r.ok, true);
  assert.is(r.journalMode, 'wal');
  assert.equal(fs.readFileSync(db), before);
});

test('verify says what a bare OK would hide: an empty database, a WAL-mode file without its -wal', async () => {
  const d = tmpdir();
  const empty = path.join(d, 'empty.db');
  sql(empty, 'PRAGMA user_version = 1');
  const r = cli(['verify', empty]);
  assert.is(r.code, 0);
  assert.match(r.stderr, new RegExp(`^${empty}: OK, sound, but an empty database \\(no tables\\)\n`));
  assert.match((await inspect(empty)).warnings.join(), /^empty database \(no tables\)/);
  const wal = path.join(d, 'wal.db');
  sql(wal, 'PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);');
  assert.not.ok(fs.existsSync(`${wal}-wal`));
  const w = cli(['verify', wal]);
  assert.is(w.code, 0);
  assert.match(w.stderr, /OK, sound and ready to restore\n[\s\S]*\n  note          a WAL-mode file with no -wal beside it/);
  // A backup made by blufio is self-contained (rollback journal): nothing to warn about.
  const b = path.join(d, 'b.db');
  assert.is(cli(['backup', '--db', wal, b, '--quiet']).code, 0);
  assert.equal((await inspect(b)).warnings, []);
});

test.run();
