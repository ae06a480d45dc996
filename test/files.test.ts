/**
 * Unit suite for the file-system helpers (src/files.ts), the lock reader (src/locks.ts) and the
 * restore claims (src/claim.ts): each in a temporary directory, no SQLite, well under a second.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { claimForRestore, lockedByKilledRestore, ownerAlive, restoresRunning, sweepStaleClaims } from '../src/claim.ts';
import { canonicalPath, checkDestination, databaseFiles, ensureRoom, makeWorkDir, publish, removeStaleTemps, tempPathBeside } from '../src/files.ts';
import { locksOn, PENDING_BYTE, writerActive } from '../src/locks.ts';
import { cleanup, rejects, tmpdir, skip } from './helpers.ts';

const test = suite('files, locks, claims');
test.after.each(cleanup);

const deadPid = () => Number(String(spawnSync('sh', ['-c', 'echo $$']).stdout).trim());

test('temporary names are hidden, beside the target, named after our pid; stale ones of any name go, live ones stay', () => {
  const d = tmpdir();
  const t = tempPathBeside(path.join(d, 'b.db'));
  assert.is(path.dirname(t), d);
  assert.match(path.basename(t), new RegExp(`^\\.b\\.db\\.blufio-${process.pid}-[0-9a-f]{8}\\.tmp$`));
  const dead = deadPid();
  const names = [
    `.other-2026-11-25.db.blufio-${dead}-0a1b2c3d.tmp`,
    `.b.db.blufio-${dead}-0a1b2c3d.tmp.gz`,
    `..b.db.blufio-${dead}-01234567.tmp.blufio-${dead}-89abcdef.tmp`,
    `.b.db.blufio-${process.pid}-deadbeef.tmp`,
    'b.db',
    '.b.db.notours.tmp',
  ];
  for (const n of names) fs.writeFileSync(path.join(d, n), '');
  removeStaleTemps(path.join(d, 'b.db'));
  assert.equal(fs.readdirSync(d).sort(), [`.b.db.blufio-${process.pid}-deadbeef.tmp`, '.b.db.notours.tmp', 'b.db'].sort());
});

test('work directories are private and a dead run\'s are removed', () => {
  const base = tmpdir();
  fs.mkdirSync(path.join(base, `blufio-stream-${deadPid()}-AbCdEf`));
  const mine = makeWorkDir('verify', base);
  assert.is(fs.statSync(mine).mode & 0o777, 0o700);
  assert.equal(fs.readdirSync(base), [path.basename(mine)]);
});

test('free space: refused up front, naming the file system and the sizes', () => {
  const d = tmpdir();
  ensureRoom(d, 1, 'a byte', 'x');
  try {
    ensureRoom(d, 2 ** 60, 'an exabyte', 'free some space');
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, new RegExp(`^not enough free space on the file system holding ${d}: an exabyte needs about \\d+\\.\\d MB, \\d+\\.\\d MB are free$`));
  }
});

test('paths compare as the file system resolves them; a database\'s own files through every spelling', () => {
  const d = tmpdir();
  fs.mkdirSync(path.join(d, 'real'));
  fs.symlinkSync(path.join(d, 'real'), path.join(d, 'link'));
  const db = path.join(d, 'real', 'x.db');
  fs.writeFileSync(db, '');
  assert.is(canonicalPath(path.join(d, 'link', 'x.db-wal')), `${db}-wal`);
  assert.is(canonicalPath(path.join(d, 'link', '..', 'real', 'x.db')), db);
  const files = databaseFiles(path.join(d, 'link', 'x.db'));
  for (const s of ['', '-wal', '-shm', '-journal']) assert.ok(files.has(db + s), s);
});

test('publish without clobbering: a file that appeared at the name is never replaced', () => {
  const d = tmpdir();
  const dest = path.join(d, 'b.db');
  const tmp = tempPathBeside(dest);
  fs.writeFileSync(tmp, 'new');
  fs.writeFileSync(dest, 'someone else\'s');
  try {
    publish(tmp, dest, { noClobber: true });
    assert.unreachable();
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_DEST_EXISTS');
  }
  assert.is(fs.readFileSync(dest, 'utf8'), 'someone else\'s');
  publish(tmp, dest);
  assert.is(fs.readFileSync(dest, 'utf8'), 'new');
});

test('the lock-out mark is byte 19 = 255 of an SQLite header only: a .gz or .age with 255 there is not closed', () => {
  const d = tmpdir();
  const f = path.join(d, 'x');
  const head = Buffer.alloc(100);
  head.write('SQLite format 3\0', 'latin1');
  head[18] = 2;
  head[19] = 255;
  fs.writeFileSync(f, head);
  assert.is(lockedByKilledRestore(f), true);
  head[19] = 2;
  fs.writeFileSync(f, head);
  assert.is(lockedByKilledRestore(f), false);
  // One .gz in 256 has 255 at offset 19 (a restore of one was refused as "closed by a restore").
  const gz = Buffer.alloc(100, 0x41);
  gz[0] = 0x1f;
  gz[1] = 0x8b;
  gz[19] = 255;
  fs.writeFileSync(f, gz);
  assert.is(lockedByKilledRestore(f), false);
});

test('/proc/locks lines are read for the file they name, without our own locks', () => {
  const d = tmpdir();
  const f = path.join(d, 'x.db');
  fs.writeFileSync(f, '');
  const st = fs.statSync(f);
  const major = Math.floor(st.dev / 256) & 0xfff;
  const minor = st.dev & 0xff;
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`;
  const text = [
    `1: POSIX  ADVISORY  WRITE 4242 ${id} ${PENDING_BYTE + 1} ${PENDING_BYTE + 1}`,
    `2: POSIX  ADVISORY  READ 4343 ${id} 128 EOF`,
    `3: POSIX  ADVISORY  WRITE ${process.pid} ${id} 0 0`,
    `4: -> POSIX  ADVISORY  WRITE 4444 ${id} 0 0`,
    `5: POSIX  ADVISORY  WRITE 4545 ${major.toString(16)}:${minor.toString(16)}:${st.ino + 1} 0 0`,
  ].join('\n');
  const locks = locksOn(f, text)!;
  assert.equal(locks.map((l) => [l.pid, l.write, l.end]), [[4242, true, PENDING_BYTE + 1], [4343, false, Infinity]]);
  assert.is(writerActive(path.join(d, 'missing.db')), null);
});

test('restore claims: one holder at a time; a dead or reused pid\'s claim is stale and swept', async () => {
  const d = tmpdir();
  const db = path.join(d, 'x.db');
  fs.writeFileSync(db, '');
  const first = await claimForRestore(db);
  assert.equal(restoresRunning(db), [], 'our own claim is not another restore');
  // A second claimant sees the first (a different "process": the claim file names our pid, so
  // fake another live one with a sleeping child).
  const sleeper = spawn('sleep', ['30']);
  const pid = sleeper.pid!;
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  fs.writeFileSync(path.join(d, `.x.db.blufio-restore-${pid}-${start}.lock`), '{}');
  assert.ok(ownerAlive(pid, start));
  assert.not.ok(ownerAlive(pid, start + 1), 'a reused pid is not the owner');
  assert.equal(restoresRunning(db), [pid]);
  first.release();
  await rejects(claimForRestore(db, 1), 'E_IN_USE', new RegExp(`another restore of ${db} is running \\(process ${pid}\\)`));
  const gone = new Promise((r) => sleeper.on('exit', r));
  sleeper.kill('SIGKILL');
  await gone;
  sweepStaleClaims(d);
  assert.equal(fs.readdirSync(d), ['x.db']);
  (await claimForRestore(db)).release();
  assert.equal(fs.readdirSync(d), ['x.db']);
});

test('a forged claim cannot make a repair change another user\'s file (nor set setuid bits)', () => {
  if (process.getuid?.() !== 0) return skip('needs root to own files as another user');
  const d = tmpdir();
  fs.chmodSync(d, 0o1777);
  const victim = path.join(d, 'victim.db');
  fs.writeFileSync(victim, Buffer.alloc(100));
  fs.chmodSync(victim, 0);
  const ino = fs.statSync(victim).ino;
  const forge = (owner: number, mode: number) => {
    const claim = path.join(d, `.victim.db.blufio-restore-${deadPid()}-1.lock`);
    fs.writeFileSync(claim, JSON.stringify({ pid: 1, lockedOut: [victim, '/etc/shadow'], ino, mode, readVersion: 2 }));
    fs.chownSync(claim, owner, owner);
    return claim;
  };
  forge(65534, 0o4777);
  sweepStaleClaims(d);
  assert.is(fs.statSync(victim).mode & 0o7777, 0, 'a claim by another user is not acted on');
  forge(0, 0o4777);
  sweepStaleClaims(d);
  assert.is(fs.statSync(victim).mode & 0o7777, 0o777, 'only permission bits are put back');
});

test('claims planted by another user: a FIFO does not hang, a link is not followed, a live-looking one does not block', async () => {
  if (process.getuid?.() !== 0) return skip('needs root to own files as another user');
  const d = tmpdir();
  fs.chmodSync(d, 0o1777);
  const db = path.join(d, 'x.db');
  fs.writeFileSync(db, Buffer.alloc(100));
  spawnSync('mkfifo', [path.join(d, `.x.db.blufio-restore-${deadPid()}-0.lock`)]);
  sweepStaleClaims(d); // returns: the FIFO is not opened for reading
  const victim = path.join(d, 'victim');
  fs.writeFileSync(victim, '');
  fs.chmodSync(victim, 0);
  const planted = path.join(d, 'y.db');
  fs.symlinkSync(victim, planted);
  const claim = path.join(d, `.y.db.blufio-restore-${deadPid()}-0.lock`);
  fs.writeFileSync(claim, JSON.stringify({ ino: fs.statSync(victim).ino, mode: 0o777, readVersion: 2 }));
  sweepStaleClaims(d);
  assert.is(fs.statSync(victim).mode & 0o7777, 0, 'a symbolic link named like the database is not followed');
  const live = path.join(d, '.x.db.blufio-restore-1-0.lock');
  fs.writeFileSync(live, '');
  fs.lchownSync(live, 65534, 65534);
  (await claimForRestore(db)).release();
  assert.ok(fs.existsSync(live), 'another user\'s claim is neither obeyed nor removed');
});

test('a symbolic link to nothing is refused as a destination, naming where it points', () => {
  const d = tmpdir();
  const link = path.join(d, 'dl.db');
  fs.symlinkSync(path.join(d, 'nowhere.db'), link);
  assert.throws(() => checkDestination(link, true, 'database'), (e: Error) => (e as { code?: string }).code === 'E_NOT_FILE' && /is a symbolic link to a missing file \(.*nowhere\.db\)/.test(e.message));
  assert.not.ok(fs.existsSync(path.join(d, 'nowhere.db')));
});

test.run();
