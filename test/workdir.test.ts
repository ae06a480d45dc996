/**
 * Where whole copies are staged (--work-dir), free space checked before the work starts, and
 * private staging directories that killed runs leave in $TMPDIR removed by the next run.
 * The full-disk tests mount small tmpfs file systems (root only; skipped elsewhere).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backup, restore } from '../src/index.ts';
import { CLI, RUNTIMES, asNobody, cleanup, fingerprint, makeSampleDb, rejects, sql, tmpdir, skip } from './helpers.ts';

const test = suite('work dir');
const mounts: string[] = [];
test.after.each(() => {
  for (const m of mounts.splice(0)) spawnSync('umount', ['-l', m]);
  cleanup();
});

/** A tmpfs of `size` at a new directory, or null where it cannot be mounted (not root). */
function smallDisk(size: string): string | null {
  const d = tmpdir();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', d], { stdio: 'ignore' });
  } catch {
    return null;
  }
  mounts.push(d);
  return d;
}

/** A ~6 MB database that compresses to almost nothing. */
function compressibleDb(dir: string): string {
  const db = path.join(dir, 'blufio.db');
  makeSampleDb(db, { rows: 10 });
  sql(db, "CREATE TABLE big(x); INSERT INTO big SELECT zeroblob(4000) FROM generate_series(1, 1500);");
  return db;
}

/** A pid that no process has now (a child that has exited). */
function deadPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(String(r.stdout).trim());
}

test('a backup that cannot fit is refused before it starts, naming the file system; nothing is left', async () => {
  const small = smallDisk('2m');
  if (!small) return skip('cannot mount a tmpfs');
  const db = compressibleDb(tmpdir());
  const dest = path.join(small, 'b.db');
  await rejects(backup(db, dest), 'E_IO', new RegExp(`not enough free space on the file system holding ${small}: .* needs about \\d+\\.\\d MB, 2\\.\\d MB are free`));
  assert.equal(fs.readdirSync(small), []);
});

test('.db.age: a destination without room for the encrypted backup is refused before the copy, even with the staging elsewhere', async () => {
  const small = smallDisk('3m');
  if (!small) return skip('cannot mount a tmpfs');
  const db = compressibleDb(tmpdir());
  const key = execFileSync('age-keygen', { encoding: 'utf8' });
  const recipient = /public key: (age1\w+)/.exec(key)![1];
  const r = spawnSync(process.execPath, [CLI, 'backup', '--db', db, path.join(small, 'b.db.age'), '--recipient', recipient, '--work-dir', tmpdir()], { encoding: 'utf8' });
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^error: not enough free space on the file system holding ${small}: the encrypted backup \\(as big as the database\\) needs about`));
  assert.equal(fs.readdirSync(small), []);
});

test('.db.age: a work directory (or TMPDIR) inside the destination directory is refused: the plaintext would be staged there', () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 20 });
  const dest = path.join(d, 'synced');
  fs.mkdirSync(path.join(dest, 'tmp'), { recursive: true });
  const key = execFileSync('age-keygen', { encoding: 'utf8' });
  const recipient = /public key: (age1\w+)/.exec(key)![1];
  for (const [args, env] of [
    [['--work-dir', dest], {}],
    [['--work-dir', path.join(dest, 'tmp')], {}],
    [[], { TMPDIR: path.join(dest, 'tmp') }],
  ] as const) {
    const r = spawnSync(process.execPath, [CLI, 'backup', '--db', db, path.join(dest, 'b.db.age'), '--recipient', recipient, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, `is inside ${dest}, where the encrypted backup goes: its plaintext copy would be staged there`);
    assert.equal(fs.readdirSync(dest), ['tmp']);
    assert.equal(fs.readdirSync(path.join(dest, 'tmp')), []);
  }
  // A work directory beside it is fine, and so is a backup written into $TMPDIR itself (its
  // copy is staged in a private subdirectory of a temporary directory).
  const ok = spawnSync(process.execPath, [CLI, 'backup', '--db', db, path.join(dest, 'b.db.age'), '--recipient', recipient, '--work-dir', d], { encoding: 'utf8' });
  assert.is(ok.status, 0, ok.stderr);
  const inTmp = spawnSync(process.execPath, [CLI, 'backup', '--db', db, path.join(dest, 'tmp', 'c.db.age'), '--recipient', recipient], { encoding: 'utf8', env: { ...process.env, TMPDIR: path.join(dest, 'tmp') } });
  assert.is(inTmp.status, 0, inTmp.stderr);
});

test('.gz backup: the uncompressed copy is staged in --work-dir, so a result that fits is made', async () => {
  const small = smallDisk('3m');
  if (!small) return skip('cannot mount a tmpfs');
  const db = compressibleDb(tmpdir());
  const dest = path.join(small, 'b.db.gz');
  // Staged beside it by default: refused up front, saying where to stage instead (in the
  // library's words: its option workDir; the command line says --work-dir).
  const e = await rejects(backup(db, dest), 'E_IO', /the uncompressed copy staged before compressing/);
  assert.match(e.hint ?? '', /workDir/);
  assert.equal(fs.readdirSync(small), []);
  const work = tmpdir();
  const r = spawnSync(process.execPath, [CLI, 'backup', dest, '--db', db, '--work-dir', work, '--quiet']);
  assert.is(r.status, 0, String(r.stderr));
  assert.equal(fs.readdirSync(work), [], 'nothing left in the work directory');
  assert.ok(fs.statSync(dest).size < 200_000);
  const back = path.join(tmpdir(), 'back.db');
  await restore(back, dest);
  assert.is(fingerprint(back), fingerprint(db));
});

test('restore of a .gz: decompressed in --work-dir; the target\'s file system is checked for room first', async () => {
  const db = compressibleDb(tmpdir());
  const gz = path.join(tmpdir(), 'b.db.gz');
  await backup(db, gz);
  const work = tmpdir();
  const target = path.join(tmpdir(), 'restored.db');
  const r = spawnSync(process.execPath, [CLI, 'restore', gz, '--db', target, '--work-dir', work, '--quiet']);
  assert.is(r.status, 0, String(r.stderr));
  assert.is(fingerprint(target), fingerprint(db));
  assert.equal(fs.readdirSync(work), []);
  const small = smallDisk('3m');
  if (!small) return skip('cannot mount a tmpfs: the restore onto a small disk was not tried');
  const r2 = spawnSync(process.execPath, [CLI, 'restore', gz, '--db', path.join(small, 'blufio.db'), '--work-dir', work, '--quiet']);
  assert.is(r2.status, 1);
  assert.match(String(r2.stderr), new RegExp(`not enough free space on the file system holding ${small}`));
  assert.equal(fs.readdirSync(small), []);
});

test('verify x.gz with no room to decompress says so, and never calls the backup damaged', async () => {
  const small = smallDisk('2m');
  if (!small) return skip('cannot mount a tmpfs');
  const db = compressibleDb(tmpdir());
  const gz = path.join(tmpdir(), 'b.db.gz');
  await backup(db, gz);
  const r = spawnSync(process.execPath, [CLI, 'verify', gz], { env: { ...process.env, TMPDIR: small }, encoding: 'utf8' });
  assert.is(r.status, 1);
  assert.not.match(r.stdout + r.stderr, /FAILED|do not restore/);
  assert.match(r.stderr, new RegExp(`^error: .*no space left on the device holding ${small}.*\\(the backup itself was not judged\\)`));
  assert.equal(fs.readdirSync(small), []);
});

test('no room to unpack an encrypted backup, under every runtime: never called damaged', async () => {
  const small = smallDisk('2m');
  if (!small) return skip('cannot mount a tmpfs');
  const d = tmpdir();
  const db = compressibleDb(d);
  execFileSync('age-keygen', ['-o', path.join(d, 'key.txt')], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', path.join(d, 'key.txt')], { encoding: 'utf8' }).trim();
  const age = path.join(d, 'b.db.gz.age');
  await backup(db, age, { recipients: [recipient] });
  for (const runtime of Object.values(RUNTIMES)) {
    const r = spawnSync(runtime[0], [...runtime.slice(1), CLI, 'verify', age, '--identity', path.join(d, 'key.txt'), '--work-dir', small], { encoding: 'utf8' });
    assert.is(r.status, 1, runtime[0]);
    assert.not.match(r.stdout + r.stderr, /FAILED|do not restore|damaged/, runtime[0]);
    assert.match(r.stderr, /no space left on the device.*\(the backup itself was not judged\)/, runtime[0]);
    assert.equal(fs.readdirSync(small), []);
  }
});

test('a gzip bomb whose header does not declare its size stops at the free space, not at a full disk', async () => {
  const small = smallDisk('40m');
  if (!small) return skip('cannot mount a tmpfs');
  const d = tmpdir();
  const db = compressibleDb(d);
  // A header whose page count is not marked valid (offset 92 differs from 24), then 200 MB of zeros.
  const head = Buffer.from(fs.readFileSync(db).subarray(0, 4096));
  head.writeUInt32BE(head.readUInt32BE(24) + 1, 92);
  const bomb = path.join(d, 'bomb.db.gz');
  execFileSync('bash', ['-c', `{ cat; head -c 200000000 /dev/zero; } | gzip -1 > "${bomb}"`], { input: head });
  const target = path.join(small, 'live.db');
  makeSampleDb(target, { rows: 10 });
  const before = fingerprint(target);
  const r = spawnSync(process.execPath, [CLI, 'restore', '--db', target, bomb], { encoding: 'utf8' });
  assert.is(r.status, 1);
  assert.match(r.stderr, 'header does not declare its size, and it unpacks to more than the free space');
  assert.is(fingerprint(target), before);
  assert.ok(Number(fs.statfsSync(small).bavail) * Number(fs.statfsSync(small).bsize) > 30 * 2 ** 20, 'the disk was not filled');
});

test('a stale staging directory of another user does not break a run (it is left to its owner)', async () => {
  const nobody = asNobody(RUNTIMES.node);
  if (!nobody) return skip('not root');
  const base = tmpdir();
  fs.chmodSync(base, 0o1777);
  const stale = path.join(base, 'blufio-backup-99998-abcdef');
  fs.mkdirSync(stale);
  fs.writeFileSync(path.join(stale, 'f'), 'x');
  const d = tmpdir();
  fs.chmodSync(d, 0o777);
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 10 });
  fs.chmodSync(db, 0o644);
  const r = spawnSync(nobody.runtime[0], [...nobody.runtime.slice(1), nobody.cliPath, 'backup', '--db', db, path.join(d, 'b.db.gz'), '--work-dir', base], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.ok(fs.existsSync(path.join(stale, 'f')), 'another user\'s directory is left alone');
});

test('a missing --work-dir is a clear error', async () => {
  const db = compressibleDb(tmpdir());
  const r = spawnSync(process.execPath, [CLI, 'backup', '-', '--db', db, '--work-dir', '/nonexistent/work'], { stdio: ['ignore', 'pipe', 'pipe'] });
  assert.is(r.status, 1);
  assert.is(String(r.stderr), 'error: the work directory /nonexistent/work does not exist or is not a directory (create it, or pass --work-dir <directory> with room for a copy of the database)\n');
});

test('staging directories of killed runs in $TMPDIR are removed by the next run; a running one\'s are not; they are private (0700)', async () => {
  const tmp = tmpdir();
  const db = compressibleDb(tmpdir());
  const dead = path.join(tmp, `blufio-stream-${deadPid()}-AbC123`);
  const deadVerify = path.join(tmp, `blufio-verify-${deadPid()}-XyZ789`);
  const alive = path.join(tmp, `blufio-stream-${process.pid}-Live00`);
  for (const d of [dead, deadVerify, alive]) {
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'backup.db'), 'a full plaintext copy');
  }
  const out = path.join(tmpdir(), 'out.db');
  const r = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" backup - --db "${db}" --quiet > "${out}"`], { env: { ...process.env, TMPDIR: tmp } });
  assert.is(r.status, 0, String(r.stderr));
  assert.is(fingerprint(out), fingerprint(db));
  assert.equal(fs.readdirSync(tmp).sort(), [path.basename(alive)]);
  // While it runs, the staging directory is private.
  const { makeWorkDir } = await import('../src/files.ts');
  const mine = makeWorkDir('stream', tmp);
  assert.is(fs.statSync(mine).mode & 0o777, 0o700);
  fs.rmSync(mine, { recursive: true });
  fs.rmSync(alive, { recursive: true });
  // verify x.gz cleans up the same way.
  fs.mkdirSync(deadVerify);
  const gz = path.join(tmpdir(), 'b.db.gz');
  await backup(db, gz);
  const v = spawnSync(process.execPath, [CLI, 'verify', gz, '--quiet'], { env: { ...process.env, TMPDIR: tmp } });
  assert.is(v.status, 0, String(v.stderr));
  assert.equal(fs.readdirSync(tmp), []);
  // Runs that stage nothing themselves remove them too: a plaintext copy left by a killed
  // encrypted backup does not wait for the next encrypted one (in $TMPDIR or --work-dir).
  const work = tmpdir();
  for (const [args, where] of [[['backup', path.join(tmpdir(), 'plain.db'), '--db', db], tmp], [['verify', db], tmp], [['backup', path.join(tmpdir(), 'plain2.db'), '--db', db, '--work-dir', work], work]] as const) {
    const left = path.join(where, `blufio-backup-${deadPid()}-Pl41nT`);
    fs.mkdirSync(left);
    fs.writeFileSync(path.join(left, 'backup.db'), 'a full plaintext copy');
    const p = spawnSync(process.execPath, [CLI, ...args, '--quiet'], { env: { ...process.env, TMPDIR: tmp } });
    assert.is(p.status, 0, String(p.stderr));
    assert.equal(fs.readdirSync(where), [], args.join(' '));
  }
});

test.run();
