/**
 * Restores racing real processes: a native writer (a server restarted by systemd) opening the
 * database while a restore runs, two restores of one database at once, a restore --force over an
 * open transaction. Each is run for real, bounded in time; the assertions are about data, not
 * timing: no acknowledged write is ever lost, the original database always survives somewhere.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backup, restore } from '../src/index.ts';
import { CLI, asNobody, cleanup, fingerprint, header, holdOpen, makeSampleDb, rejects, sql, tmpdir, skip } from './helpers.ts';

const test = suite('restore races');
test.after.each(cleanup);

/**
 * A server-like native writer: after `delay` s it opens the database and commits a row every ~2 ms
 * for `seconds`, writing each key to `acked` only once its COMMIT returned. Like a server that
 * systemd restarts, it opens the database again after an error (a database closed to others by a
 * restore's swap says "file is not a database"); a failed transaction is never acknowledged.
 */
const WRITER = `
import os, sqlite3, sys, time
db, acked, delay, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
time.sleep(delay)
f = open(acked, 'a')
end = time.time() + seconds
i = 0
c = None
while time.time() < end:
    try:
        if c is None:
            c = sqlite3.connect(db, timeout=30, isolation_level=None)
            c.execute('PRAGMA busy_timeout=30000')
            c.execute('PRAGMA journal_mode=WAL')
        key = 'w-%d-%d' % (os.getpid(), i)
        c.execute('INSERT INTO vault VALUES (?, randomblob(64))', (key,))
        f.write(key + '\\n'); f.flush()
        i += 1
    except sqlite3.DatabaseError:
        if c is not None: c.close()
        c = None
    time.sleep(0.002)
if c is not None: c.close()
`;

/** A pid that no process has now (a child that has exited). */
function deadPid(): number {
  return Number(String(spawnSync('sh', ['-c', 'echo $$']).stdout).trim());
}

function run(cmd: string, args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('exit', (status) => resolve({ status, stderr }));
  });
}

/** A database (WAL, as the server keeps it) and a bigger backup of other content, so a restore takes a while. */
async function setup(rows = 30000) {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  const other = path.join(d, 'other.db');
  makeSampleDb(other, { rows });
  const bak = path.join(d, 'backup.db');
  await backup(other, bak, { sleepMs: 0 });
  fs.rmSync(other);
  makeSampleDb(db, { wal: true, rows: 100 });
  return { d, db, bak };
}

/** Keys acknowledged by the writer that `db` does not hold. */
function missing(db: string, acked: string): string[] {
  const keys = fs.existsSync(acked) ? fs.readFileSync(acked, 'utf8').split('\n').filter(Boolean) : [];
  if (keys.length === 0) return [];
  const have = new Set(sql(db, `SELECT key FROM vault WHERE key LIKE 'w-%'`).split('\n'));
  return keys.filter((k) => !have.has(k));
}

test('a native writer opening the database at any point of a restore never loses an acknowledged write', async () => {
  // How long a restore takes here, so that the writer's start falls across all of its steps.
  const probe = await setup();
  const t0 = performance.now();
  spawnSync(process.execPath, [CLI, 'restore', probe.bak, '--db', probe.db, '--quiet']);
  const took = (performance.now() - t0) / 1000;
  cleanup();
  const outcomes: string[] = [];
  const trial = async (n: number, delay: number) => {
    const { d, db, bak } = await setup();
    const acked = path.join(d, 'acked');
    const [r, w] = await Promise.all([
      run(process.execPath, [CLI, 'restore', bak, '--db', db, '--quiet']),
      run('python3', ['-c', WRITER, db, acked, String(delay), String(took + 0.3)]),
    ]);
    assert.is(w.status, 0, `the writer failed: ${w.stderr}`);
    assert.ok(r.status === 0 || /opened the database|in use/.test(r.stderr), `restore: ${r.status} ${r.stderr}`);
    if (r.status !== 0) assert.match(r.stderr, /is still the database it uses, with all its writes|in use by process/);
    const lost = missing(db, acked);
    assert.equal(lost.length, 0, `trial ${n} (writer after ${delay.toFixed(2)} s, restore exit ${r.status}: ${r.stderr.trim()}): ${lost.length} acknowledged writes are not in the database`);
    assert.is(sql(db, 'PRAGMA integrity_check'), 'ok');
    outcomes.push(r.status === 0 ? 'restored' : 'refused');
    cleanup();
  };
  for (let n = 0; n < 10; n++) await trial(n, (took * (n + 0.5)) / 10);
  // On a loaded machine the probe's time can overshoot every trial's: then a writer that is there
  // from the start makes sure the refusal is seen too.
  for (let n = 10; n < 14 && !outcomes.includes('refused'); n++) await trial(n, 0);
  // Both outcomes happen across the trials (the writer came before and after the swap).
  assert.ok(outcomes.includes('refused'), outcomes.join(','));
});

test('a process that opens the old database between the last look and the swap: the swap is undone, E_IN_USE', async () => {
  const { db, bak } = await setup(200);
  const oldPrint = fingerprint(db);
  const earlier = `${db}.pre-restore`;
  fs.writeFileSync(earlier, 'an earlier safety copy');
  let h: Awaited<ReturnType<typeof holdOpen>> | undefined;
  try {
    const e = await rejects(restore(db, bak, { beforeSwap: async () => { h = await holdOpen(db, '.print x'); } }),
      'E_IN_USE', /while it was being replaced; the restore was undone/);
    assert.match(e.message, new RegExp(`process ${h!.proc.pid}`));
  } finally {
    await h?.stop();
  }
  assert.is(fingerprint(db), oldPrint, 'the old database is back at its path');
  assert.is(fs.readFileSync(earlier, 'utf8'), 'an earlier safety copy', 'the earlier safety copy is back at its name');
  assert.equal(fs.readdirSync(path.dirname(db)).filter((n) => n.includes('pre-restore-') || n.includes('.tmp')), []);
});

test('a process that commits while the new database is built and closes again: the restore is refused, its write kept', async () => {
  const { db, bak } = await setup(200);
  let wrote = false;
  const e = await rejects(restore(db, bak, {
    afterBegin: () => {
      if (wrote) return;
      wrote = true;
      sql(db, "INSERT INTO vault VALUES ('during-build', x'01');");
    },
  }), 'E_IN_USE', /was written to while the new database was built .*nothing was replaced/);
  assert.ok(wrote, e.message);
  assert.is(sql(db, "SELECT count(*) FROM vault WHERE key = 'during-build'"), '1');
  assert.not.ok(fs.existsSync(`${db}.pre-restore`));
});

test('a connection that opens the old file in the last instant before the swap cannot use it: no write of it is acknowledged, then lost', async () => {
  const { db, bak } = await setup(200);
  const newPrint = fingerprint(bak);
  let writer: ChildProcess | undefined;
  let exited: Promise<unknown> | undefined;
  const out: string[] = [];
  const say = (marker: string) => new Promise<void>((resolve, reject) => {
    const give = setTimeout(() => { clearInterval(t); reject(new Error(`sqlite3 did not say ${marker}`)); }, 10_000);
    const t = setInterval(() => { if (out.join('').includes(marker)) { clearInterval(t); clearTimeout(give); resolve(); } }, 5);
  });
  await restore(db, bak, {
    beforeSwap: async () => {
      // Opens the old file after the last look (as root: the cleared permission bits do not stop it).
      writer = spawn('sqlite3', ['-batch', db], { stdio: ['pipe', 'pipe', 'pipe'] });
      exited = new Promise((resolve) => writer!.on('exit', resolve));
      writer.stdout!.on('data', (b) => out.push(String(b)));
      writer.stderr!.on('data', (b) => out.push(String(b)));
      writer.stdin!.write(`SELECT count(*) FROM vault;\n.print opened\n`);
      await say('opened');
    },
    afterSwap: async () => {
      // SQLite refuses the old file altogether: a connection that could write here would leave
      // its WAL beside the new file when it closes (SQLite does not checkpoint a moved file).
      writer!.stdin!.end(`INSERT INTO vault VALUES ('after-rename', x'02');\n.print tried\n`);
      await say('tried');
      await exited;
    },
  }).catch((x) => { writer?.kill('SIGKILL'); throw x; });
  assert.match(out.join(''), /file is not a database/, 'the old file refused the connection');
  assert.not.match(out.join(''), /^\d+$/m, 'it could not even read it');
  assert.is(fingerprint(db), newPrint);
  assert.is(sql(db, 'PRAGMA integrity_check'), 'ok');
  assert.is(sql(`${db}.pre-restore`, 'PRAGMA integrity_check'), 'ok', 'the safety copy is readable again');
  assert.equal(header(`${db}.pre-restore`, 18, 2), [2, 2]);
});

test('the old file is closed to other users (permission bits, header read version) for the last look and the swap, and gets them back', async () => {
  const { db, bak } = await setup(200);
  fs.chmodSync(db, 0o640);
  let during: number[] = [];
  await restore(db, bak, { beforeSwap: () => { during = [fs.statSync(db).mode & 0o7777, ...header(db, 18, 2)]; } });
  assert.equal(during, [0, 2, 255]);
  assert.is(fs.statSync(`${db}.pre-restore`).mode & 0o7777, 0o640);
  assert.equal(header(`${db}.pre-restore`, 18, 2), [2, 2]);
  assert.is(fs.statSync(db).mode & 0o7777, 0o640);
  // Undone after the swap: the database gets them back too.
  const other = await setup(200);
  fs.chmodSync(other.db, 0o644);
  let h: Awaited<ReturnType<typeof holdOpen>> | undefined;
  try {
    await rejects(restore(other.db, other.bak, { beforeSwap: async () => { h = await holdOpen(other.db, '.print x'); } }), 'E_IN_USE', /the restore was undone/);
  } finally {
    await h?.stop();
  }
  assert.is(fs.statSync(other.db).mode & 0o7777, 0o644);
  assert.equal(header(other.db, 18, 2), [2, 2]);
  assert.is(sql(other.db, 'PRAGMA integrity_check'), 'ok');
});

test('a restore killed while the old file is closed to others: the next run puts it back, under either of its names', async () => {
  for (const killedAfterRename of [false, true]) {
    const { d, db, bak } = await setup(200);
    fs.chmodSync(db, 0o640);
    const oldPrint = fingerprint(db);
    const ino = fs.statSync(db).ino;
    // What a run killed in that window leaves: the bits cleared, byte 19 at 255, its claim saying so.
    fs.chmodSync(db, 0);
    const fd = fs.openSync(db, 'r+');
    fs.writeSync(fd, Uint8Array.of(255), 0, 1, 19);
    fs.closeSync(fd);
    if (killedAfterRename) {
      fs.renameSync(db, `${db}.pre-restore`);
      fs.copyFileSync(bak, db);
    }
    fs.writeFileSync(path.join(d, `.blufio.db.blufio-restore-${deadPid()}-1.lock`),
      JSON.stringify({ pid: 1, lockedOut: [db, `${db}.pre-restore`], ino, mode: 0o640, readVersion: 2 }));
    await restore(db, bak);
    const old = killedAfterRename ? fs.readdirSync(d).find((n) => /pre-restore-\d/.test(n))! : 'blufio.db.pre-restore';
    assert.is(fs.statSync(path.join(d, old)).mode & 0o7777, 0o640, old);
    assert.is(fingerprint(path.join(d, old)), oldPrint);
    assert.is(fs.statSync(db).mode & 0o7777, killedAfterRename ? 0o600 : 0o640);
    cleanup();
  }
});

test('a restore really killed (SIGKILL) right before the swap: `blufio verify` on the database puts it back, and leaves nothing of the dead run', async () => {
  const { d, db, bak } = await setup(200);
  const oldPrint = fingerprint(db);
  const lib = path.join(path.dirname(CLI), 'index.mjs');
  const killed = spawnSync(process.execPath, ['-e', `import(${JSON.stringify(lib)}).then((m) => m.restore(${JSON.stringify(db)}, ${JSON.stringify(bak)}, { beforeSwap: () => process.kill(process.pid, 'SIGKILL') }))`]);
  assert.is(killed.signal, 'SIGKILL', String(killed.stderr));
  assert.is(fs.statSync(db).mode & 0o7777, 0, 'closed to others when it died');
  const r = spawnSync(process.execPath, [CLI, 'verify', db, '--quiet'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.is(fingerprint(db), oldPrint);
  assert.is(sql(db, 'PRAGMA integrity_check'), 'ok');
  // Its claim and its staged copy are gone; the hard link it made as the safety copy stays.
  assert.equal(fs.readdirSync(d).filter((n) => n.startsWith('.')), []);
});

test('as the database\'s owner (not root): a killed run\'s lock-out is put back by the next command; one that cannot be is refused, never copied', async () => {
  const nobody = asNobody([process.execPath]);
  if (!nobody) return skip('needs root to act as another user');
  const { d, db, bak } = await setup(200);
  fs.chmodSync(d, 0o755);
  fs.chmodSync(bak, 0o644);
  for (const f of fs.readdirSync(d)) fs.chownSync(path.join(d, f), 65534, 65534);
  fs.chownSync(d, 65534, 65534);
  fs.chmodSync(db, 0o640);
  const oldPrint = fingerprint(db);
  const lockOut = (file: string) => {
    const ino = fs.statSync(file).ino;
    fs.chmodSync(file, 0);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Uint8Array.of(255), 0, 1, 19);
    fs.closeSync(fd);
    const claim = path.join(d, `.${path.basename(file)}.blufio-restore-${deadPid()}-1.lock`);
    fs.writeFileSync(claim, JSON.stringify({ pid: 1, lockedOut: [file, `${file}.pre-restore`], ino, mode: 0o640, readVersion: 2 }), { mode: 0o644 });
    return claim;
  };
  const asOwner = (args: string[]) => spawnSync(nobody.runtime[0], [...nobody.runtime.slice(1), nobody.cliPath, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: d } });
  const claim = lockOut(db);
  const v = asOwner(['verify', db, '--quiet']);
  assert.is(v.status, 0, v.stderr);
  assert.is(fs.statSync(db).mode & 0o7777, 0o640);
  assert.equal(header(db, 18, 2), [2, 2]);
  assert.is(fingerprint(db), oldPrint);
  assert.not.ok(fs.existsSync(claim));
  // A file the owner cannot put back (root's): refused with what to do, the claim kept for root.
  const rootFile = path.join(d, 'root.db');
  fs.copyFileSync(db, rootFile);
  // Root's: under Node 24 copyFileSync keeps the source's owner (Node 20 gave the copier's).
  fs.chownSync(rootFile, 0, 0);
  const rootClaim = lockOut(rootFile);
  const r = asOwner(['verify', rootFile]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /left closed by a restore that was killed .* \(run any blufio command on it as root or as its owner/, r.stderr);
  assert.ok(fs.existsSync(rootClaim));
  const again = spawnSync(process.execPath, [CLI, 'verify', rootFile, '--quiet']);
  assert.is(again.status, 0, 'root puts it back');
  assert.not.ok(fs.existsSync(rootClaim));
  // A read-only database (0440) is restored by its owner, and stays read-only.
  fs.chmodSync(db, 0o440);
  const res = asOwner(['restore', bak, '--db', db, '--quiet']);
  assert.is(res.status, 0, res.stderr);
  assert.is(fs.statSync(db).mode & 0o7777, 0o440);
  assert.is(fingerprint(db), fingerprint(bak));
});

test('restore --force over an open transaction: the writer\'s later commit is kept in the safety copy, and said so', async () => {
  const { db, bak } = await setup(200);
  const writer = spawn('sqlite3', ['-batch', db], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out: string[] = [];
  writer.stdout!.on('data', (b) => out.push(String(b)));
  const said = (s: string) => new Promise<void>((resolve, reject) => {
    const give = setTimeout(() => { clearInterval(t); reject(new Error(`sqlite3 did not say ${s} within 10 s`)); }, 10_000);
    const t = setInterval(() => { if (out.join('').includes(s)) { clearInterval(t); clearTimeout(give); resolve(); } }, 10);
  });
  writer.stdin!.write(`PRAGMA wal_autocheckpoint=0; BEGIN; INSERT INTO vault VALUES ('in-flight', x'00'); SELECT 'begun';\n`);
  await said('begun');
  const notices: string[] = [];
  const r = await restore(db, bak, { force: true, onNotice: (m) => notices.push(m) });
  assert.is(r.inUseCheck, 'forced');
  assert.ok(notices.some((n) => n.includes(`its writes from now on are in ${db}.pre-restore`)), notices.join('\n'));
  writer.stdin!.write(`COMMIT; SELECT 'committed';\n`);
  await said('committed');
  writer.stdin!.end();
  await new Promise((resolve) => writer.on('exit', resolve));
  assert.is(sql(`${db}.pre-restore`, "SELECT count(*) FROM vault WHERE key = 'in-flight'"), '1', 'the commit is in the safety copy');
  assert.is(sql(db, "SELECT count(*) FROM vault WHERE key = 'in-flight'"), '0');
  assert.is(sql(db, 'PRAGMA integrity_check'), 'ok');
  assert.is(sql(`${db}.pre-restore`, 'PRAGMA integrity_check'), 'ok');
});

test('two restores of one database at once: at most one runs, the other is refused; the original is never lost', async () => {
  for (let trial = 0; trial < 4; trial++) {
    const { d, db, bak } = await setup(20000);
    const bak2 = path.join(d, 'backup2.db');
    fs.copyFileSync(bak, bak2);
    const oldPrint = fingerprint(db);
    const [a, b] = await Promise.all([
      run(process.execPath, [CLI, 'restore', bak, '--db', db, '--quiet']),
      run(process.execPath, [CLI, 'restore', bak2, '--db', db, '--quiet']),
    ]);
    assert.ok(a.status === 0 || b.status === 0, `one of them ran: ${a.stderr} ${b.stderr}`);
    for (const x of [a, b]) assert.ok(x.status === 0 || /another restore of .* is running/.test(x.stderr), x.stderr);
    const kept = fs.readdirSync(d).filter((n) => /^blufio\.db(\.pre-restore(-\d{8}T\d{6}Z(-\d+)?)?)?$/.test(n));
    assert.ok(kept.some((n) => fingerprint(path.join(d, n)) === oldPrint), `trial ${trial}: the original database is kept (${kept.join(', ')})`);
    assert.is(sql(db, 'PRAGMA integrity_check'), 'ok');
    assert.equal(fs.readdirSync(d).filter((n) => n.endsWith('.lock') || n.endsWith('.tmp')), []);
  }
});

test('a restore is refused while another one holds the database (a live claim); a killed one\'s claim is stale', async () => {
  const { d, db, bak } = await setup(200);
  const sleeper = spawn('sleep', ['30']);
  try {
    const stat = fs.readFileSync(`/proc/${sleeper.pid}/stat`, 'utf8');
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    const claim = path.join(d, `.blufio.db.blufio-restore-${sleeper.pid}-${start}.lock`);
    fs.writeFileSync(claim, '');
    await rejects(restore(db, bak), 'E_IN_USE', new RegExp(`another restore of ${db} is running \\(process ${sleeper.pid}\\)`));
    await rejects(backup(db, `${db}.pre-restore`), 'E_IN_USE', /a restore of .* is running and keeps its safety copy/);
    // The same pid with another start time is another program that got a dead restore's pid.
    fs.renameSync(claim, path.join(d, `.blufio.db.blufio-restore-${sleeper.pid}-1.lock`));
    await restore(db, bak);
  } finally {
    sleeper.kill('SIGKILL');
  }
  assert.equal(fs.readdirSync(d).filter((n) => n.endsWith('.lock')), []);
});

test.run();
