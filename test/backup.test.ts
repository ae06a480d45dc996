import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backup } from '../src/index.ts';
import { CLI, cleanup, faketime, skip, rejects, fileState, fingerprint, header, holdOpen, makeSampleDb, sql, tmpdir } from './helpers.ts';

const test = suite('backup');
test.after.each(cleanup);

test('creates a valid, self-contained database with everything in it', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  const dest = path.join(d, 'backup.db');
  const r = await backup(db, dest, { sleepMs: 0 });
  assert.is(sql(dest, 'PRAGMA integrity_check'), 'ok');
  assert.is(fingerprint(dest), fingerprint(db));
  assert.equal(header(dest, 18, 2), [1, 1], 'rollback-journal format');
  assert.is(fs.statSync(dest).mode & 0o777, 0o600);
  assert.is(r.bytes, fs.statSync(dest).size);
  assert.is(r.pages * r.pageSize, r.bytes);
  assert.is(r.integrity, 'ok');
  assert.is(r.attempts, 1);
  assert.equal(fs.readdirSync(d).sort(), ['backup.db', 'blufio.db']);
});

test('a 0-byte file is refused (a wrong path, not a database to keep); a database with no tables backs up', async () => {
  const d = tmpdir();
  const db = path.join(d, 'empty.db');
  fs.writeFileSync(db, '');
  const dest = path.join(d, 'b.db');
  await rejects(backup(db, dest), 'E_NOT_SQLITE', /is empty \(0 bytes/);
  assert.not.ok(fs.existsSync(dest));
  const d2 = path.join(d, 'schema-less.db');
  sql(d2, 'PRAGMA user_version=7;');
  await backup(d2, path.join(d, 'b2.db'));
  assert.is(sql(path.join(d, 'b2.db'), 'PRAGMA user_version'), '7');
});

test('WAL source held open by a native process: un-checkpointed frames included, source untouched', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { wal: true });
  const holder = await holdOpen(db, `PRAGMA wal_autocheckpoint=0;
    INSERT INTO vault SELECT 'late-' || value, randomblob(500) FROM generate_series(1, 300);
    DELETE FROM memory WHERE id % 3 = 0;`);
  try {
    assert.ok(fs.statSync(`${db}-wal`).size > 100_000, 'the WAL holds frames');
    const expected = fingerprint(db);
    const before = fileState(db);
    const dest = path.join(d, 'backup.db');
    const r = await backup(db, dest, { sleepMs: 0, pagesPerStep: 7 });
    assert.is(r.sourceJournalMode, 'wal');
    assert.equal(fileState(db), before, 'no source file changed');
    assert.is(fingerprint(dest), expected);
    assert.is(sql(dest, "SELECT count(*) FROM vault WHERE key LIKE 'late-%'"), '300');
    assert.equal(header(dest, 18, 2), [1, 1]);
    assert.not.ok(fs.existsSync(`${dest}-wal`));
  } finally {
    await holder.stop();
  }
});

test('a copy that takes longer than a minute (a big database its server holds open is copied throttled) is never cut short without --timeout; --timeout ends it, nothing written (faketime: the clock 50 times as fast)', async () => {
  if (!faketime()) return skip('faketime is not installed (apt-get install faketime)');
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { wal: true });
  const holder = await holdOpen(db, 'SELECT 1;');
  try {
    const pages = Number(sql(db, 'PRAGMA page_count'));
    // One page a step and 80 ms between steps: well over 60 s of the process's clock. Each
    // attempt was cut at 60 s before, and every backup of a 4 GiB database held open failed.
    const slow = ['--sleep-ms', String(Math.ceil(80_000 / pages)), '--pages-per-step', '1', '--json'];
    const run = (dest: string, more: string[] = []) => spawnSync('faketime', ['-f', '+0 x50', process.execPath, CLI, 'backup', dest, '--db', db, ...slow, ...more], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', HOME: d } });
    const r = run(path.join(d, 'slow.db'));
    assert.is(r.status, 0, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout);
    assert.ok(out.durationMs > 70_000, `took ${out.durationMs} ms of the faked clock`);
    assert.is(out.attempts, 1);
    assert.is(fingerprint(path.join(d, 'slow.db')), fingerprint(db));
    const cut = run(path.join(d, 'cut.db'), ['--timeout', '30']);
    assert.is(cut.status, 1, cut.stdout + cut.stderr);
    assert.is(JSON.parse(cut.stdout).error.code, 'E_TIMEOUT');
    assert.not.ok(fs.existsSync(path.join(d, 'cut.db')));
  } finally {
    await holder.stop();
  }
});

for (const pageSize of [512, 65536]) {
  test(`page size ${pageSize}: a WAL source with un-checkpointed frames backs up exactly`, async () => {
    const d = tmpdir();
    const db = path.join(d, 'blufio.db');
    sql(db, `PRAGMA page_size=${pageSize}; PRAGMA journal_mode=WAL; CREATE TABLE vault(k INTEGER PRIMARY KEY, secret BLOB);`);
    const h = await holdOpen(db, `PRAGMA wal_autocheckpoint=0; INSERT INTO vault SELECT value, randomblob(value % 3000) FROM generate_series(1, 400);`);
    try {
      const dest = path.join(d, 'b.db');
      const r = await backup(db, dest, { sleepMs: 0 });
      assert.is(r.pageSize, pageSize);
      assert.is(sql(dest, 'PRAGMA page_size; PRAGMA integrity_check;'), `${pageSize}\nok`);
      const q = 'SELECT k, hex(secret) FROM vault ORDER BY k';
      assert.is(sql(dest, q), sql(db, q));
    } finally {
      await h.stop();
    }
  });
}

test('the vault round-trips byte for byte (random blobs up to 64 KiB)', async () => {
  const d = tmpdir();
  const db = path.join(d, 'v.db');
  sql(db, `CREATE TABLE vault(k INTEGER PRIMARY KEY, secret BLOB);
    INSERT INTO vault SELECT value, randomblob(value * 331 % 65536) FROM generate_series(1, 120);`);
  const dest = path.join(d, 'b.db');
  await backup(db, dest, { sleepMs: 0 });
  const q = 'SELECT k, hex(secret) FROM vault ORDER BY k';
  assert.is(sql(dest, q), sql(db, q));
});

test('refuses bad sources with a clear error and leaves nothing behind', async () => {
  const d = tmpdir();
  const dest = path.join(d, 'out.db');
  await rejects(backup(path.join(d, 'missing.db'), dest), 'E_SOURCE_MISSING', /not found/);
  await rejects(backup(d, dest), 'E_NOT_FILE');
  const text = path.join(d, 'text.db');
  fs.writeFileSync(text, 'hello, this is not a database at all, just some text that is long enough to have a header'.repeat(3));
  await rejects(backup(text, dest), 'E_NOT_SQLITE', /not an SQLite database/);
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  const truncated = path.join(d, 'truncated.db');
  fs.writeFileSync(truncated, fs.readFileSync(db).subarray(0, 4096 + 1000));
  await rejects(backup(truncated, dest), 'E_CORRUPT', /is truncated: its header declares/);
  // An empty file would back up as an empty database: refused (a wrong path, almost always).
  const empty = path.join(d, 'empty.db');
  fs.writeFileSync(empty, '');
  await rejects(backup(empty, dest), 'E_NOT_SQLITE', /is empty \(0 bytes/);
  fs.rmSync(empty);
  assert.equal(fs.readdirSync(d).sort(), ['blufio.db', 'text.db', 'truncated.db']);
});

test('a corrupted page is caught by the integrity check; --no-verify skips it', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 2000 });
  const bad = path.join(d, 'bad.db');
  const bytes = fs.readFileSync(db);
  const pages = bytes.length / 4096;
  // Scribble over a b-tree page in the middle of the file.
  bytes.fill(0x5a, 4096 * Math.floor(pages / 2), 4096 * Math.floor(pages / 2) + 4096);
  fs.writeFileSync(bad, bytes);
  const dest = path.join(d, 'out.db');
  const e = await rejects(backup(bad, dest), 'E_INTEGRITY', /integrity check/);
  assert.match(e.hint ?? '', /PRAGMA integrity_check/);
  assert.not.ok(fs.existsSync(dest));
  const r = await backup(bad, dest, { verify: false });
  assert.is(r.integrity, 'skipped');
  assert.ok(fs.existsSync(dest));
});

test('a hot journal left by a killed writer: a clear error, and the backup works once SQLite recovered it', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 2000 });
  const expected = fingerprint(db);
  // A transaction bigger than the page cache spills into the file; killing the writer then
  // leaves a hot journal behind.
  const h = await holdOpen(db, 'PRAGMA cache_size=2; BEGIN; UPDATE memory SET content = upper(content); DELETE FROM vault;');
  await h.stop();
  assert.ok(fs.statSync(`${db}-journal`).size > 0, 'a journal was left');
  const e = await rejects(backup(db, path.join(d, 'b.db')), 'E_NEEDS_RECOVERY', /hot journal left by an interrupted write/);
  assert.match(e.hint ?? '', /PRAGMA quick_check/);
  assert.not.ok(fs.existsSync(path.join(d, 'b.db')));
  sql(db, 'PRAGMA quick_check');
  await backup(db, path.join(d, 'b.db'));
  assert.is(fingerprint(path.join(d, 'b.db')), expected, 'the interrupted transaction is not in the backup');
});

test('refuses bad destinations', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  await rejects(backup(db, db), 'E_SAME_FILE');
  fs.symlinkSync(db, path.join(d, 'link.db'));
  await rejects(backup(db, path.join(d, 'link.db'), { force: true }), 'E_SAME_FILE');
  fs.linkSync(db, path.join(d, 'hard.db'));
  await rejects(backup(db, path.join(d, 'hard.db'), { force: true }), 'E_SAME_FILE');
  await rejects(backup(db, `${db}-wal`), 'E_SAME_FILE');
  // An existing directory is a backup set: a timestamped backup goes into it.
  assert.match((await backup(db, d)).path, /blufio-\d{8}T\d{6}Z\.db\.gz$/);
  await rejects(backup(db, path.join(d, 'no', 'such', 'dir', 'b.db')), 'E_DEST_DIR', /does not exist/);
  const existing = path.join(d, 'existing.db');
  fs.writeFileSync(existing, 'keep me');
  await rejects(backup(db, existing), 'E_DEST_EXISTS', /already exists/);
  assert.is(fs.readFileSync(existing, 'utf8'), 'keep me');
  await backup(db, existing, { force: true });
  assert.is(fingerprint(existing), fingerprint(db));
});

test('the source\'s own -wal, -shm and -journal are refused through every spelling (symlinked directory, ../, a symlink to the database)', async () => {
  const d = tmpdir();
  const real = path.join(d, 'data');
  fs.mkdirSync(real);
  const db = path.join(real, 'blufio.db');
  makeSampleDb(db, { wal: true });
  fs.symlinkSync(real, path.join(d, 'alias'));
  fs.symlinkSync(db, path.join(d, 'link.db'));
  fs.writeFileSync(`${db}-wal`, 'a live WAL');
  for (const dest of [
    path.join(d, 'alias', 'blufio.db-wal'),
    path.join(d, 'alias', 'blufio.db-shm'),
    path.join(d, 'alias', 'blufio.db-journal'),
    path.join(d, 'alias', '..', 'data', 'blufio.db-wal'),
  ]) {
    await rejects(backup(db, dest, { force: true }), 'E_SAME_FILE');
  }
  // the database named through a symbolic link: its files are beside the file it leads to
  await rejects(backup(path.join(d, 'link.db'), path.join(d, 'alias', 'blufio.db-journal'), { force: true }), 'E_SAME_FILE');
  assert.is(fs.readFileSync(`${db}-wal`, 'utf8'), 'a live WAL', 'the source\'s WAL is untouched');
  assert.not.ok(fs.existsSync(`${db}-journal`), 'no journal created beside the source');
  assert.not.ok(fs.existsSync(`${db}-shm`));
});

test('a -wal or -journal left beside the backup path is refused, and removed with force: SQLite would apply it to the backup', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 50 });
  const stranger = path.join(d, 'stranger.db');
  makeSampleDb(stranger, { wal: true, rows: 10 });
  const h = await holdOpen(stranger, `PRAGMA wal_autocheckpoint=0; DELETE FROM vault;`);
  await h.stop();
  const dest = path.join(d, 'b.db');
  fs.copyFileSync(`${stranger}-wal`, `${dest}-wal`);
  await rejects(backup(db, dest), 'E_DEST_EXISTS', /b\.db-wal is left beside the backup path/);
  assert.not.ok(fs.existsSync(dest));
  await backup(db, dest, { force: true });
  assert.not.ok(fs.existsSync(`${dest}-wal`));
  assert.is(fingerprint(dest), fingerprint(db), 'native sqlite3 reads the backup, not the stale WAL');
  fs.writeFileSync(`${dest}-journal`, 'x'.repeat(4096));
  await rejects(backup(db, dest, { force: false }), 'E_DEST_EXISTS', /already exists/);
  fs.rmSync(dest);
  await rejects(backup(db, dest), 'E_DEST_EXISTS', /b\.db-journal is left beside/);
  await backup(db, `${dest}.gz`); // a compressed backup has no companions to worry about
});

test('an interrupted backup leaves nothing at the destination and no temp file', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 3000 });
  const dest = path.join(d, 'b.db');
  const ac = new AbortController();
  let steps = 0;
  await rejects(backup(db, dest, {
    pagesPerStep: 5,
    sleepMs: 1,
    signal: ac.signal,
    onProgress: (p) => {
      assert.ok(p.remainingPages <= p.totalPages);
      if (++steps === 3) ac.abort();
    },
  }), 'E_ABORTED');
  assert.equal(fs.readdirSync(d), ['blufio.db']);
});

test('--force replaces regular files only: a named pipe at the backup path is refused and left as it is', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  const fifo = path.join(d, 'pipe.db');
  execFileSync('mkfifo', [fifo]);
  await rejects(backup(db, fifo, { force: true }), 'E_NOT_FILE', /not a regular file \(a named pipe\)/);
  assert.ok(fs.statSync(fifo).isFIFO(), 'still a pipe');
});

test('two backups to one new path at once: one is published, the other fails and replaces nothing', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 2000 });
  const dest = path.join(d, 'b.db');
  const results = await Promise.allSettled([backup(db, dest, { sleepMs: 0 }), backup(db, dest, { sleepMs: 0 })]);
  const ok = results.filter((r) => r.status === 'fulfilled');
  const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  assert.is(ok.length, 1, 'exactly one is published');
  assert.is(failed.length, 1);
  assert.is(failed[0].reason.code, 'E_DEST_EXISTS', failed[0].reason.message);
  assert.match(failed[0].reason.message, /appeared while the backup was made/);
  assert.is(fingerprint(dest), fingerprint(db));
  assert.equal(fs.readdirSync(d).sort(), ['b.db', 'blufio.db'], 'no temporary file left');
});

test('a backup path on a read-only file system is named as such, not as a permission problem', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  const ro = path.join(d, 'ro');
  fs.mkdirSync(ro);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', ro], { stdio: 'ignore' });
  } catch {
    return skip('cannot mount a read-only tmpfs here (needs root and a kernel that lets us)');
  }
  try {
    await rejects(backup(db, path.join(ro, 'b.db')), 'E_IO', /is on a read-only file system/);
  } finally {
    execFileSync('umount', [ro]);
  }
});

test('stale temporary files of killed runs are removed whatever destination they were for; a running one is kept', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  const dead = path.join(d, '.blufio-2026-11-24.db.blufio-999999-0badc0de.tmp');
  const deadGz = path.join(d, '.blufio-2026-11-23.db.gz.blufio-999999-0badc0de.tmp.gz');
  const live = path.join(d, `.other.db.blufio-${process.pid}-12345678.tmp`);
  for (const f of [dead, deadGz, live]) fs.writeFileSync(f, 'x');
  await backup(db, path.join(d, 'blufio-2026-11-25.db'), { sleepMs: 0 });
  assert.not.ok(fs.existsSync(dead));
  assert.not.ok(fs.existsSync(deadGz));
  assert.ok(fs.existsSync(live), 'a temp file of a running process is left alone');
});

test('progress goes from all pages remaining to none, once per step', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 1000 });
  const seen: number[] = [];
  const r = await backup(db, path.join(d, 'b.db'), { pagesPerStep: 10, sleepMs: 0, verify: false, onProgress: (p) => p.phase === 'copy' && seen.push(p.remainingPages) });
  assert.is(seen.length, Math.ceil(r.pages / 10));
  assert.is(seen[seen.length - 1], 0);
  assert.equal([...seen].sort((a, b) => b - a), seen, 'remaining never grows');
});

test('a temp file left by a killed run is cleaned up and does not confuse the next run', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  // pid 2^22+1 is above Linux's pid_max default: certainly not alive.
  const stale = path.join(d, '.b.db.blufio-4194305-deadbeef.tmp');
  fs.writeFileSync(stale, 'half a backup');
  await backup(db, path.join(d, 'b.db'));
  assert.not.ok(fs.existsSync(stale));
  assert.is(sql(path.join(d, 'b.db'), 'PRAGMA integrity_check'), 'ok');
});

test('the library\'s errors name its options, not the command line\'s (force: true, not --force)', async () => {
  const d = tmpdir();
  const db = path.join(d, 's.db');
  sql(db, 'CREATE TABLE t(x)');
  await backup(db, path.join(d, 'b.db'));
  const e = await rejects(backup(db, path.join(d, 'b.db')), 'E_DEST_EXISTS');
  assert.match(e.hint ?? '', /pass force: true/);
  assert.not.match(`${e.message} ${e.hint}`, /--/);
});

test.run();
