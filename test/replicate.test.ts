/**
 * Continuous replication (blufio replicate): a native writer (Python's sqlite3, one connection
 * kept open like the server's) commits numbered rows stamped with their time; the replicator
 * ships them to a set; restores --at many times must each give exactly rows 1..k, none stamped
 * after the time, and every row from before it (outside a gap the set itself reports). Through a
 * kill -9 of the replicator and a restart, TRUNCATE checkpoints after every commit (which must
 * never be busy: the replicator takes no lock), and a second process checkpointing in a loop.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI, ROOT, RUNTIMES, cleanup, cli, faketime, s3Env, skip, startS3Server, tmpdir } from './helpers.ts';

const test = suite('replicate');
test.after.each(cleanup);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `python3 testkit/<script>` and resolves once it printed "ready" (or at once). */
function python(script: string, args: string[], waitReady: boolean): Promise<{ proc: ChildProcess; out: () => string }> {
  const proc = spawn('python3', [path.join(ROOT, 'testkit', script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      if (waitReady && out.includes('ready')) resolve({ proc, out: () => out });
    });
    proc.on('exit', (c) => reject(new Error(`${script} exited (${c}): ${out}`)));
    if (!waitReady) resolve({ proc, out: () => out });
  });
}

async function stopped(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  proc.removeAllListeners('exit');
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
  const done = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  proc.kill(signal);
  return done;
}

/** Starts `blufio replicate`; `until(stderr so far)` says when to resolve (default: once it says it is replicating). */
function replicator(runtime: string[], args: string[], env: Record<string, string>, until = (err: string) => err.includes('Replicating ') || err.includes('"event":"started"')): Promise<{ proc: ChildProcess; err: () => string }> {
  const proc = spawn(runtime[0], [...runtime.slice(1), CLI, 'replicate', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '', ...env } });
  let err = '';
  return new Promise((resolve, reject) => {
    proc.stderr!.on('data', (d) => {
      err += d;
      if (until(err)) resolve({ proc, err: () => err });
    });
    proc.on('exit', (c) => reject(new Error(`replicate exited (${c}) before it started: ${err}`)));
  });
}

/** Rows of a restored database: their numbers and times. */
function rows(db: string): Array<{ i: number; t: number }> {
  const r = spawnSync('sqlite3', ['-json', db, 'SELECT i, t FROM log ORDER BY i'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  return r.stdout.trim() ? JSON.parse(r.stdout) : [];
}

/** Restores the set at `at` (or its newest) into a new file and checks it is exactly a prefix of the writer's rows. */
function restoreAt(set: string, env: Record<string, string>, all: Array<{ i: number; t: number }>, at: number | null, gaps: Array<{ from: string; to: string }>, runtime?: string[]): number {
  const target = path.join(tmpdir(), 'restored.db');
  const r = cli(['restore', set, '--db', target, '--series', 'blufio', ...(at === null ? [] : ['--at', new Date(at).toISOString()]), '-q'], { env, runtime });
  assert.is(r.code, 0, `restore --at ${at === null ? 'newest' : new Date(at).toISOString()}: ${r.stderr}`);
  assert.is(spawnSync('sqlite3', [target, 'PRAGMA integrity_check'], { encoding: 'utf8' }).stdout.trim(), 'ok');
  const got = rows(target);
  // Exactly rows 1..k: a committed state, never a mix.
  got.forEach((row, k) => assert.is(row.i, k + 1, `row ${k + 1} at ${at}`));
  if (at !== null) {
    // None committed after the time…
    for (const row of got) assert.ok(row.t <= at, `row ${row.i} (${new Date(row.t).toISOString()}) is after --at ${new Date(at).toISOString()}`);
    // …and every one committed a little before it, unless the time is inside a reported gap.
    const inGap = gaps.some((g) => Date.parse(g.from) <= at && at <= Date.parse(g.to) + 1000);
    if (!inGap) {
      const due = all.filter((row) => row.t <= at - 1000).length;
      assert.ok(got.length >= due, `--at ${new Date(at).toISOString()}: ${got.length} rows, but ${due} were committed a second before`);
    }
  }
  return got.length;
}

/** Stops the writer and the replicator (each must exit 0), and lists the set: the writer's rows, the backups and the ranges. */
async function stopAndList(writer: { proc: ChildProcess }, rep: { proc: ChildProcess; err: () => string }, db: string, set: string, env: Record<string, string>, more: string[] = []) {
  assert.is(await stopped(writer.proc), 0);
  assert.is(await stopped(rep.proc), 0, rep.err());
  const listed = cli(['list', set, '--json', ...more], { env });
  assert.is(listed.code, 0, listed.stderr);
  const { backups, ranges } = JSON.parse(listed.stdout) as { backups: Array<{ name: string; kind: string }>; ranges: Array<{ from: string; to: string; gaps: Array<{ from: string; to: string }> }> };
  return { all: rows(db), backups, ranges };
}

/** A writer with `writer` options and a segment every 50 ms for 4.5 s (compaction at work), both stopped: the replicator's events. */
async function fastRun(db: string, set: string, env: Record<string, string>, writer: Record<string, unknown>, args = ['--interval', '0.05']) {
  const w = await python('replwriter.py', [db, JSON.stringify(writer)], true);
  const rep = await replicator([process.execPath], [set, '--db', db, ...args, '--json'], env);
  await sleep(4500);
  assert.is(await stopped(w.proc), 0);
  await sleep(300);
  assert.is(await stopped(rep.proc), 0, rep.err());
  return rep.err().trim().split('\n').map((l) => JSON.parse(l)) as Array<{ event: string; segment: string; merged?: number }>;
}

const hasPython = () => spawnSync('python3', ['-c', 'import sqlite3'], { stdio: 'ignore' }).status === 0;

/** A directory with the database's path, an empty set folder, and a fresh HOME. */
function place() {
  const d = tmpdir();
  const set = `${path.join(d, 'set')}/`;
  fs.mkdirSync(set);
  return { d, db: path.join(d, 'blufio.db'), set, env: { HOME: tmpdir('blufio-home-') } };
}

/** Restores at `n` times spread across the range, each checked by restoreAt(). */
function acrossRange(set: string, env: Record<string, string>, all: Array<{ i: number; t: number }>, range: { from: string; to: string; gaps: Array<{ from: string; to: string }> }, n: number): void {
  const first = Date.parse(range.from);
  const last = Date.parse(range.to);
  for (let k = 1; k <= n; k++) restoreAt(set, env, all, Math.round(first + ((last - first) * k) / (n + 1)), range.gaps);
}

test('replicate: every commit shipped through a kill -9 and checkpoint storms; restore --at gives each moment exactly; the server\'s checkpoints never busy', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { db, set, env } = place();
  const writer = await python('replwriter.py', [db, JSON.stringify({ tps: 100, checkpoint: 'TRUNCATE', pad: 300 })], true);
  let rep = await replicator([process.execPath], [set, '--db', db, '--interval', '0.5'], env);
  await sleep(1500);
  // kill -9 mid-run: what it had not shipped is shipped by the next run (a gap, closed from the file).
  await stopped(rep.proc, 'SIGKILL');
  await sleep(700);
  rep = await replicator([process.execPath], [set, '--db', db, '--interval', '0.5'], env);
  assert.match(rep.err(), 'resuming the chain');
  // So far the server's own TRUNCATE checkpoint after every commit was never busy: the
  // replicator (running, killed, restarted) takes no lock.
  await sleep(300);
  const before = JSON.parse(writer.out().trim().split('\n').pop()!);
  assert.ok(before.checkpoints > 100, JSON.stringify(before));
  assert.is(before.busy, 0, `the writer's checkpoints were busy: ${JSON.stringify(before)}`);
  // A second process checkpointing (RESTART) in a loop, for a while (it and the writer may make
  // each other's checkpoints busy: not counted against the replicator).
  const storm = await python('checkpointer.py', [db, 'RESTART'], false);
  await sleep(1500);
  await stopped(storm.proc);
  await sleep(800);
  assert.is(await stopped(writer.proc), 0);
  const w = JSON.parse(writer.out().trim().split('\n').pop()!);
  assert.ok(w.commits > 150, JSON.stringify(w));
  await sleep(700);
  assert.is(await stopped(rep.proc), 0, rep.err());
  assert.match(rep.err(), /Stopped: \d+ segment/);
  const all = rows(db);
  assert.is(all.length, w.commits);
  const listed = cli(['list', set, '--json'], { env });
  assert.is(listed.code, 0, listed.stderr);
  const { ranges, backups } = JSON.parse(listed.stdout);
  assert.ok(backups.some((b: { kind: string }) => b.kind === 'log'));
  assert.is(ranges.length, 1);
  const gaps = ranges[0].gaps as Array<{ from: string; to: string }>;
  // The newest state holds every commit.
  assert.is(restoreAt(set, env, all, null, gaps), all.length);
  // Any moment: a dozen times across the restorable range (it begins with the replicator's base).
  const first = Date.parse(ranges[0].from);
  const last = Math.max(Date.parse(ranges[0].to), all[all.length - 1].t);
  assert.ok(first <= all[Math.floor(all.length / 4)].t, `the range begins early in the run: ${ranges[0].from}`);
  let prev = -1;
  for (let k = 0; k <= 10; k++) {
    const at = Math.round(first + ((last - first) * k) / 10 + 37 * k);
    const n = restoreAt(set, env, all, at, gaps);
    assert.ok(n >= prev, 'later times hold more');
    prev = n;
  }
});

for (const [name, runtime] of Object.entries(RUNTIMES)) {
  test(`${name}: replicate to S3 (s3rver), encrypted; SIGTERM ships what was committed; exit 0; restore --at reaches it`, async () => {
    if (spawnSync('python3', ['-c', 'import sqlite3'], { stdio: 'ignore' }).status !== 0) return skip('python3 is not installed');
    const server = await startS3Server(fs.mkdtempSync(path.join(tmpdir(), 's3-')));
    try {
      const d = tmpdir();
      const db = path.join(d, 'blufio.db');
      const key = path.join(d, 'key.txt');
      const k = cli(['keygen', key, '--json'], {});
      const recipient = JSON.parse(k.stdout).recipient as string;
      const env = { ...s3Env(server), HOME: tmpdir('blufio-home-') };
      const set = `s3://backups/r${name}/`;
      const writer = await python('replwriter.py', [db, JSON.stringify({ tps: 50 })], true);
      const rep = await replicator(runtime, [set, '--db', db, '--recipient', recipient, '--interval', '0.5'], env);
      await sleep(1500);
      // SIGTERM right after the last commit: it is shipped before the exit.
      const { all, backups, ranges } = await stopAndList(writer, rep, db, set, env, ['--identity', key]);
      assert.ok(backups.every((b: { name: string }) => b.name.endsWith('.age')), 'every object encrypted');
      // A segment as stored (s3rver keeps each object in a file) opens with Debian's age CLI,
      // then gzip, then the segment format.
      const dir = path.join(server.dir, 'backups', `r${name}`);
      const seg = fs.readdirSync(dir).find((f) => /\.log\.gz\.age\._S3rver_object$/.test(f));
      assert.ok(seg, fs.readdirSync(dir).join(' '));
      const plain = spawnSync('age', ['-d', '-i', key, path.join(dir, seg!)]);
      assert.is(plain.status, 0, String(plain.stderr));
      assert.is(gunzipSync(plain.stdout).subarray(0, 13).toString(), 'blufio-log 1\n');
      const restore = (at: number | null) => restoreAt(set, { ...env, BLUFIO_AGE_IDENTITY_FILE: key }, all, at, ranges[0].gaps, runtime);
      assert.is(restore(null), all.length);
      restore(Math.round((Date.parse(ranges[0].from) + Date.parse(ranges[0].to)) / 2));
    } finally {
      await server.stop();
    }
  });
}

test('a store that stops answering does not stop the looks: commits made meanwhile are each seen when made (restore --at inside the pause is exact); it catches up when the store is back', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const server = await startS3Server(fs.mkdtempSync(path.join(tmpdir(), 's3-')));
  try {
    const { db, env: home } = place();
    const key = path.join(path.dirname(db), 'key.txt');
    const recipient = JSON.parse(cli(['keygen', key, '--json'], {}).stdout).recipient as string;
    const env = { ...s3Env(server), ...home };
    const set = 's3://backups/paused/';
    const writer = await python('replwriter.py', [db, JSON.stringify({ tps: 50 })], true);
    const rep = await replicator([process.execPath], [set, '--db', db, '--recipient', recipient, '--interval', '0.5', '--json'], env);
    await sleep(1200);
    // The store hangs (a segment's PUT waits on it) for four seconds.
    const pausedFrom = Date.now();
    server.proc.kill('SIGSTOP');
    await sleep(4000);
    server.proc.kill('SIGCONT');
    const pausedTo = Date.now();
    await sleep(2500);
    const { all, ranges } = await stopAndList(writer, rep, db, set, env, ['--identity', key]);
    assert.is(ranges.length, 1);
    // The looks went on while the store hung: nothing to close from the file then (the writer's
    // last close removes the WAL: a gap at the very end, after the pause).
    const gaps = ranges[0].gaps as Array<{ from: string; to: string }>;
    assert.ok(!gaps.some((g) => Date.parse(g.from) <= pausedTo && Date.parse(g.to) >= pausedFrom), `a gap in the pause: ${JSON.stringify(gaps)}`);
    const ids = { ...env, BLUFIO_AGE_IDENTITY_FILE: key };
    assert.is(restoreAt(set, ids, all, null, gaps), all.length);
    // Moments inside the pause restore exactly (every row committed a second before is there).
    for (let k = 1; k <= 4; k++) restoreAt(set, ids, all, Math.round(pausedFrom + ((pausedTo - pausedFrom) * k) / 5), gaps);
  } finally {
    await server.stop();
  }
});

test('the set unreachable for seconds: the backlog kept here stays within --max-backlog (folded into one state, said), and is shipped when the set is back; nothing lost, restore --at exact', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const dir = fs.mkdtempSync(path.join(tmpdir(), 's3-'));
  let server = await startS3Server(dir);
  try {
    const { db, env: home } = place();
    const env = { ...s3Env(server), ...home };
    const set = 's3://backups/down/';
    const writer = await python('replwriter.py', [db, JSON.stringify({ tps: 100, pad: 3000 })], true);
    const rep = await replicator([process.execPath], [set, '--db', db, '--unencrypted', '--interval', '0.2', '--max-backlog', '1', '--json'], env);
    await sleep(1000);
    await server.stop();
    await sleep(5000);
    server = await startS3Server(dir, server.port);
    // Caught up within the backoff (it doubles from the interval: the next try within ~7 s).
    for (let i = 0; i < 100 && !rep.err().includes('"caught-up"'); i++) await sleep(100);
    await sleep(500);
    assert.is(await stopped(writer.proc), 0);
    assert.is(await stopped(rep.proc), 0, rep.err());
    const events = rep.err().trim().split('\n').map((l) => JSON.parse(l));
    const folds = events.filter((e) => e.event === 'backlog');
    assert.ok(folds.length >= 1, `the backlog was folded: ${events.map((e) => e.event).join(',')}`);
    // Bounded: never more than the bound (1 MiB) past what one folded state needs.
    for (const f of folds) assert.ok(f.bytes < 4 * 2 ** 20, JSON.stringify(f));
    assert.ok(events.some((e) => e.event === 'caught-up'));
    const all = rows(db);
    const listed = cli(['list', set, '--json'], { env });
    assert.is(listed.code, 0, listed.stderr);
    const { ranges } = JSON.parse(listed.stdout);
    // The folded span is listed as a gap; outside it, every moment is exact.
    assert.ok(ranges[0].gaps.some((g: { to: string }) => folds.some((f) => Date.parse(g.to) >= Date.parse(f.to))), JSON.stringify(ranges[0].gaps));
    assert.is(restoreAt(set, env, all, null, ranges[0].gaps), all.length);
    acrossRange(set, env, all, ranges[0], 6);
  } finally {
    await server.stop();
  }
});

test('compaction: segments merged 30 at a time, the merged ones removed; restore --at still gives each moment exactly, from fewer objects', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { db, set, env } = place();
  // A segment every 50 ms: 30 of them in ~1.5 s.
  const events = await fastRun(db, set, env, { tps: 200 });
  const merged = events.filter((e) => e.event === 'compacted');
  assert.ok(merged.length >= 2, `compactions: ${merged.length} of ${events.filter((e) => e.event === 'shipped').length} segments`);
  assert.ok(merged.every((e) => e.merged === 30));
  const names = fs.readdirSync(set).filter((n) => n.includes('.seg'));
  // What was merged is gone: the merged segments stand for it.
  for (const e of merged) {
    assert.ok(names.includes(e.segment), e.segment);
    const [a, b] = /\.seg(\d{8})-(\d{8})\./.exec(e.segment)!.slice(1).map(Number);
    assert.not.ok(names.some((n) => { const m = /\.seg(\d{8})\./.exec(n); return m !== null && Number(m[1]) >= a && Number(m[1]) <= b; }), `segments ${a}..${b} removed`);
  }
  const all = rows(db);
  const { ranges, backups } = JSON.parse(cli(['list', set, '--json'], { env }).stdout);
  assert.is(restoreAt(set, env, all, null, ranges[0].gaps), all.length);
  acrossRange(set, env, all, ranges[0], 5);
  // The dry run names the objects a restore reads: the base, then the chain's segments up to the
  // time, merged ones standing for their parts (fewer objects than segments shipped).
  const dry = cli(['restore', set, '--db', path.join(tmpdir(), 'x.db'), '--series', 'blufio', '--dry-run', '--json'], { env });
  assert.is(dry.code, 0, dry.stderr);
  const objects = JSON.parse(dry.stdout).objects as string[];
  const logs = backups.filter((b: { kind: string }) => b.kind === 'log').map((b: { name: string }) => b.name);
  assert.match(path.basename(objects[0]), /^blufio-\d{8}T\d{6}Z\.db\.gz$/);
  assert.equal(objects.slice(1).map((o) => path.basename(o)), logs.slice().sort((a: string, b: string) => Number(/\.seg(\d{8})/.exec(a)![1]) - Number(/\.seg(\d{8})/.exec(b)![1])));
  const shipped = events.filter((e) => e.event === 'shipped').length;
  assert.ok(objects.length - 1 < shipped - 40, `${objects.length} objects for ${shipped} segments shipped`);
  const text = cli(['restore', set, '--db', path.join(tmpdir(), 'x.db'), '--series', 'blufio', '--dry-run'], { env });
  assert.match(text.stderr + text.stdout, `It is made from ${objects.length} objects, read in this order:\n  ${objects[0]}\n`);
});

test('a writer that truncates its WAL after every commit makes every segment a gap: they are merged too, the merged span listed as a gap; restore --at exact', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { db, set, env } = place();
  const events = await fastRun(db, set, env, { tps: 100, checkpoint: 'TRUNCATE' });
  assert.ok(events.filter((e) => e.event === 'gap').length >= 30, 'segments that closed a gap');
  const merged = events.filter((e) => e.event === 'compacted');
  assert.ok(merged.length >= 1 && merged.every((e) => e.merged === 30), `compactions: ${JSON.stringify(merged)}`);
  const { ranges, backups } = JSON.parse(cli(['list', set, '--json'], { env }).stdout);
  const mergedGap = backups.filter((b: { name: string }) => /\.seg\d{8}-\d{8}\.\S+\.gap\.log/.test(b.name));
  assert.ok(mergedGap.length >= 1, 'a merged segment named as a gap');
  // Its whole span is listed as a gap.
  for (const b of mergedGap) {
    const m = /\.(\d{8}T\d{9}Z)-(\d{8}T\d{9}Z)\.gap/.exec(b.name)!;
    const to = Date.parse(m[2].replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\d{3})Z$/, '$1-$2-$3T$4:$5:$6.$7Z'));
    assert.ok(ranges[0].gaps.some((g: { from: string; to: string }) => Date.parse(g.to) === to), `a gap reaching ${new Date(to).toISOString()}: ${JSON.stringify(ranges[0].gaps)}`);
  }
  const all = rows(db);
  assert.is(restoreAt(set, env, all, null, ranges[0].gaps), all.length);
  acrossRange(set, env, all, ranges[0], 5);
  // A base is named after its time rounded up to the second, and its chain's first steps may come
  // before that name: at the name, never less than just before it (the base alone was restored
  // there, older than the steps before it: an attack run).
  const base = backups.find((b: { kind: string }) => b.kind === 'full');
  const named = Date.parse(base.time);
  const early = backups.filter((b: { kind: string; base?: string; from?: string }) => b.kind === 'log' && b.base === base.name && Date.parse(b.from!) < named);
  if (early.length > 0) assert.ok(restoreAt(set, env, all, named, ranges[0].gaps) >= restoreAt(set, env, all, named - 1, ranges[0].gaps), 'monotonic across the base\'s name');
});

test('a writer that truncates its WAL after every commit, and a new base every 2 s: at each base\'s name (its time rounded up), never fewer rows than a millisecond before', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { db, set, env } = place();
  await fastRun(db, set, env, { tps: 100, checkpoint: 'TRUNCATE' }, ['--interval', '0.2', '--new-base-every', '0.0006']);
  const { ranges, backups } = JSON.parse(cli(['list', set, '--json'], { env }).stdout);
  const all = rows(db);
  const bases = backups.filter((b: { kind: string }) => b.kind !== 'log').map((b: { time: string }) => Date.parse(b.time));
  assert.ok(bases.length >= 2, `${bases.length} bases`);
  for (const named of bases) {
    if (named <= Date.parse(ranges[0].from) || named > Date.parse(ranges[0].to)) continue;
    const before = restoreAt(set, env, all, named - 1, ranges[0].gaps);
    assert.ok(restoreAt(set, env, all, named, ranges[0].gaps) >= before, `at ${new Date(named).toISOString()}`);
  }
});

test('a database too big to read between two commits, whose WAL is truncated after every commit: the first base and then shipping wait, each saying why and what to do (never an exit); when the writes pause, the base is made, then the gap shipped; restore exact', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { db, set, env } = place();
  // ~47 MiB: a full pass takes ~20 ms here; the writer commits as fast as it can (~1 ms apart).
  assert.is(spawnSync('sqlite3', [db], { input: 'PRAGMA journal_mode=WAL; CREATE TABLE log(i INTEGER PRIMARY KEY, t REAL NOT NULL, pad BLOB); CREATE TABLE filler(x BLOB); INSERT INTO filler SELECT randomblob(4000) FROM generate_series(1, 12000);' }).status, 0);
  const w = await python('replwriter.py', [db, JSON.stringify({ tps: 0, checkpoint: 'TRUNCATE' })], true);
  // Started while the writer writes: no copy of it can be proven; said, and waited for.
  const rep = await replicator([process.execPath], [set, '--db', db, '--json', '--lag-warn', '1', '--retries', '2'], env, (err) => err.includes('the first base'));
  const said = () => rep.err().trim().split('\n').map((l) => JSON.parse(l)) as Array<{ event: string; why?: string; hint?: string; segment?: string; error?: string }>;
  const first = said().find((e) => e.event === 'retry')!;
  assert.match(first.error!, /the first base could not be copied yet \(\d+ tries: /);
  assert.match(first.hint!, /once the writes pause/);
  w.proc.kill('SIGSTOP');
  for (let t = 0; t < 100 && !said().some((e) => e.event === 'started'); t++) await sleep(100);
  w.proc.kill('SIGCONT');
  assert.ok(said().some((e) => e.event === 'started'), `no base made while the writer paused: ${rep.err()}`);
  for (let t = 0; t < 100 && !said().some((e) => e.event === 'lag' && e.why); t++) await sleep(100);
  const lag = said().find((e) => e.event === 'lag' && e.why);
  assert.ok(lag, `no lag event with a reason: ${rep.err()}`);
  assert.match(lag!.why!, /whole database file \(4\d MiB\)/);
  assert.match(lag!.hint!, /nothing is lost.*wal_autocheckpoint/);
  // Nothing shipped meanwhile but what came before the writer.
  const before = said().filter((e) => e.event === 'shipped').length;
  // The writes pause: the next full pass fits, and the gap is shipped.
  w.proc.kill('SIGSTOP');
  for (let t = 0; t < 50 && said().filter((e) => e.event === 'shipped').length === before; t++) await sleep(100);
  w.proc.kill('SIGCONT');
  const gap = said().find((e) => e.event === 'gap');
  assert.ok(gap, `no gap shipped while the writer paused: ${rep.err()}`);
  // Its lag counts the wait (commits in it were made more than a second before: the warning came first).
  const gapShipped = said().find((e) => e.event === 'shipped' && e.segment === gap!.segment) as { lagMs?: number } | undefined;
  assert.ok((gapShipped?.lagMs ?? 0) >= 1000, `the gap's segment shipped ${gapShipped?.lagMs} ms after its first commit`);
  await sleep(500);
  const { all, ranges } = await stopAndList(w, rep, db, set, env);
  assert.is(JSON.parse(w.out().trim().split('\n').pop()!).busy, 0, 'the server\'s checkpoints were never busy');
  assert.is(restoreAt(set, env, all, null, ranges[0].gaps), all.length);
  acrossRange(set, env, all, ranges[0], 3);
});

test('a new chain on a new base every --new-base-every (a differential against the first, full one): the chains overlap (no gap), restore --at exact across all; prune keeps the newest chain\'s differential and its full backup', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { db, set, env } = place();
  // 2 MB already there: what 100 commits a second change between two bases is a few % of it.
  assert.is(spawnSync('sqlite3', [db], { input: 'PRAGMA journal_mode=WAL; CREATE TABLE log(i INTEGER PRIMARY KEY, t REAL NOT NULL, pad BLOB); CREATE TABLE filler(x BLOB); INSERT INTO filler SELECT randomblob(4000) FROM generate_series(1, 500);' }).status, 0);
  const writer = await python('replwriter.py', [db, JSON.stringify({ tps: 100 })], true);
  // A new base every ~1.1 s, the writer never pausing.
  const rep = await replicator([process.execPath], [set, '--db', db, '--interval', '0.2', '--new-base-every', '0.0003', '--json'], env);
  await sleep(5500);
  assert.is(await stopped(writer.proc), 0);
  await sleep(400);
  assert.is(await stopped(rep.proc), 0, rep.err());
  const events = rep.err().trim().split('\n').map((l) => JSON.parse(l));
  // Each new chain is moved to while the writer writes (an attack run saw none for a minute, and
  // a segment a look meanwhile: ~30 a second instead of 5).
  assert.ok(events.filter((e) => e.event === 'new-base').length >= 2, rep.err());
  const shippedCount = events.filter((e) => e.event === 'shipped').length;
  assert.ok(shippedCount <= 6 * 6 + 10, `${shippedCount} segments in ~6 s at --interval 0.2`);
  const all = rows(db);
  const { ranges, backups } = JSON.parse(cli(['list', set, '--json'], { env }).stdout) as { ranges: Array<{ from: string; to: string; gaps: Array<{ from: string; to: string }> }>; backups: Array<{ name: string; kind: string; time: string }> };
  // The first base is a full backup; the next ones are differentials against it (a few pages changed).
  assert.is(backups.filter((b) => b.kind === 'full').length, 1, JSON.stringify(backups.map((b) => b.name)));
  const diffs = backups.filter((b) => b.kind === 'diff');
  assert.ok(diffs.length >= 1, 'a differential base');
  // No gap between the chains (one would end at the later base's time). (Gaps inside a chain
  // may come from the writer's own checkpoints racing a look: those are told, not hidden.)
  const bases = new Set(backups.filter((b) => b.kind !== 'log').map((b) => Date.parse(b.time)));
  assert.equal(ranges[0].gaps.filter((g) => bases.has(Date.parse(g.to))), [], 'no gap between the chains');
  assert.is(restoreAt(set, env, all, null, ranges[0].gaps), all.length);
  acrossRange(set, env, all, ranges[0], 8);
  // The newest state comes from the full backup, the differential, then segments.
  const dry = JSON.parse(cli(['restore', set, '--db', path.join(tmpdir(), 'x.db'), '--series', 'blufio', '--dry-run', '--json'], { env }).stdout) as { objects: string[] };
  // (A base made as the replicator stopped may have no segments: the chain before it reaches past it.)
  const newestDiff = diffs.find((d) => backups.some((b) => b.kind === 'log' && (b as { base?: string }).base === d.name))!.name;
  assert.ok(dry.objects[0].endsWith(backups.find((b) => b.kind === 'full')!.name) && dry.objects[1].endsWith(newestDiff), JSON.stringify(dry.objects.slice(0, 3)));
  // Pruned to the last backup: older chains go (the full backup kept as the differentials' base
  // does not stretch what the policy keeps back to its own time: an attack run's prune removed
  // nothing so), the one before the last stays (it covers until the move to the last).
  const dryPrune = JSON.parse(cli(['prune', set, '--keep-last', '1', '--dry-run', '--json'], { env }).stdout) as { removed: Array<{ name: string }> };
  assert.ok(diffs.length < 3 || dryPrune.removed.some((r) => r.name === diffs[diffs.length - 1].name), `${diffs.length} chains on differentials: ${JSON.stringify(dryPrune.removed)}`);
  // A new full backup, then pruned to the last backup: the newest chain stays restorable — its
  // differential, and the full backup that differential was made against.
  const firstFull = backups.find((b) => b.kind === 'full')!.name;
  const full = cli(['backup', set, '--db', db, '--full', '-q'], { env });
  assert.is(full.code, 0, full.stderr);
  const pruned = cli(['prune', set, '--keep-last', '1', '--json'], { env });
  assert.is(pruned.code, 0, pruned.stderr);
  const after = JSON.parse(cli(['list', set, '--json'], { env }).stdout) as { backups: Array<{ name: string; kind: string }>; ranges: typeof ranges };
  const names = after.backups.map((b) => b.name);
  assert.ok(names.includes(newestDiff) && names.includes(firstFull), JSON.stringify(names));
  assert.equal(diffs.map((d) => d.name).filter((n) => names.includes(n)), [newestDiff], 'the other chains\' bases pruned');
  restoreAt(set, env, all, Date.parse(diffs.find((d) => d.name === newestDiff)!.time) + 300, after.ranges[0].gaps);
  assert.is(restoreAt(set, env, all, null, after.ranges[0].gaps), all.length);
});

test('a database file replaced under the replicator (a restore, a copy moved over it) stops it with an error; started again, it goes on from the new file and every state restores', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { d, db, set, env } = place();
  let writer = await python('replwriter.py', [db, JSON.stringify({ tps: 100 })], true);
  let rep = await replicator([process.execPath], [set, '--db', db, '--interval', '0.2'], env);
  await sleep(1500);
  assert.is(await stopped(writer.proc), 0);
  await sleep(500);
  // An attack run shipped corrupt segments after this (the replicator read the old file).
  fs.copyFileSync(db, path.join(d, 'copy.db'));
  fs.renameSync(path.join(d, 'copy.db'), db);
  const code = await new Promise<number | null>((r) => rep.proc.on('exit', (c) => r(c)));
  assert.is(code, 1, rep.err());
  assert.match(rep.err(), 'was replaced by another file');
  writer = await python('replwriter.py', [db, JSON.stringify({ tps: 100 })], true);
  rep = await replicator([process.execPath], [set, '--db', db, '--interval', '0.2'], env);
  await sleep(1500);
  assert.is(await stopped(writer.proc), 0);
  await sleep(300);
  assert.is(await stopped(rep.proc), 0, rep.err());
  const all = rows(db);
  const { ranges } = JSON.parse(cli(['list', set, '--json'], { env }).stdout);
  assert.is(restoreAt(set, env, all, null, ranges[0].gaps), all.length);
});

test('replicate refuses a file destination, s3:// without recipients, a rollback-journal database, a second replicator of the same chain', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  spawnSync('sqlite3', [db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(x);']);
  let r = cli(['replicate', path.join(d, 'x.db.gz'), '--db', db]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, `blufio replicate ships to a set: ${path.join(d, 'x.db.gz')} does not exist (give a folder (mkdir -p`);
  fs.writeFileSync(path.join(d, 'x.db.gz'), '');
  r = cli(['replicate', path.join(d, 'x.db.gz'), '--db', db]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, 'x.db.gz is a file (give a folder or a prefix ending in /');
  r = cli(['replicate', 's3://backups/x', '--db', db]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, 's3://backups/x names an object, not a prefix (give a folder or a prefix ending in /: blufio replicate s3://backups/x/)');
  r = cli(['replicate', 's3://backups/x/', '--db', db], { env: { AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9' } });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, 'refusing to send an unencrypted backup off this machine');
  // A rollback-journal database has no WAL to follow: refused, nothing written (it once ran and
  // shipped nothing: every catch-up was given up as "left WAL mode", silently).
  const rb = path.join(d, 'rollback.db');
  spawnSync('sqlite3', [rb, 'CREATE TABLE t(x); INSERT INTO t VALUES (1);']);
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  r = cli(['replicate', `${set}/`, '--db', rb]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, 'is in rollback-journal mode: blufio replicate follows a WAL-mode database');
  assert.equal(fs.readdirSync(set), []);
  // Two of one chain on one machine: the second is refused while the first runs.
  const home = tmpdir('blufio-home-');
  const first = await replicator([process.execPath], [`${set}/`, '--db', db], { HOME: home });
  r = cli(['replicate', `${set}/`, '--db', db], { env: { HOME: home } });
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /another blufio replicate \(process \d+\) is shipping/);
  // The same file by a symbolic or a hard link, or from another user's state directory: the
  // same database, refused too (an attack run started second chains so).
  fs.symlinkSync(db, path.join(d, 'link.db'));
  fs.linkSync(db, path.join(d, 'hard.db'));
  for (const [other, env] of [[path.join(d, 'link.db'), { HOME: home }], [path.join(d, 'hard.db'), { HOME: home }], [db, { HOME: tmpdir('blufio-home-') }], [db, { HOME: tmpdir('blufio-home-'), TMPDIR: tmpdir() }]] as const) {
    r = cli(['replicate', `${set}/`, '--db', other], { env });
    assert.is(r.code, 3, `${other}: ${r.stderr}`);
    assert.match(r.stderr, /another blufio replicate \(process \d+\) is shipping/);
  }
  assert.is(await stopped(first.proc), 0);
  // A lock left by a killed replicator whose process number now belongs to another process is
  // taken over (an attack run found it blocking every start).
  const locks = fs.readdirSync('/dev/shm').filter((f) => f.startsWith('blufio-replicate-'));
  const again = await replicator([process.execPath], [`${set}/`, '--db', db], { HOME: home });
  const mine = fs.readdirSync('/dev/shm').filter((f) => f.startsWith('blufio-replicate-') && !locks.includes(f));
  assert.is(mine.length, 1, 'one lock per file and set in /dev/shm');
  await stopped(again.proc, 'SIGKILL');
  const lock = path.join('/dev/shm', mine[0]);
  const other = spawn('sleep', ['30']);
  try {
    fs.writeFileSync(lock, `${JSON.stringify({ pid: other.pid, since: '1', started: new Date().toISOString() })}\n`);
    const third = await replicator([process.execPath], [`${set}/`, '--db', db], { HOME: home });
    assert.is(await stopped(third.proc), 0);
  } finally {
    other.kill();
  }
  // --max-backlog takes a number of MiB, no more.
  for (const bad of ['0', 'abc', 'Infinity', '0x10', '-5']) {
    r = cli(['replicate', `${set}/`, '--db', db, '--max-backlog', bad], { env: { HOME: home } });
    assert.is(r.code, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, '--max-backlog must be a number of MiB');
  }
});

test('a clean stop, then a start with nothing written meanwhile: resumed without a full pass, no gap; a write made while stopped is a gap, and restored', async () => {
  const { d, db, set, env } = place();
  spawnSync('sqlite3', [db, 'PRAGMA journal_mode=WAL; CREATE TABLE log(i INTEGER PRIMARY KEY, t REAL NOT NULL, pad BLOB); INSERT INTO log(t) VALUES (1);']);
  for (let i = 0; i < 2; i++) {
    const r = await replicator([process.execPath], [set, '--db', db, '--json'], env);
    await sleep(600);
    assert.is(await stopped(r.proc), 0, r.err());
    if (i === 1) assert.not.match(r.err(), '"event":"gap"');
  }
  spawnSync('sqlite3', [db, 'INSERT INTO log(t) VALUES (2);']);
  const r = await replicator([process.execPath], [set, '--db', db, '--json'], env);
  await sleep(600);
  assert.is(await stopped(r.proc), 0, r.err());
  assert.match(r.err(), '"event":"gap"');
  const { ranges } = JSON.parse(cli(['list', set, '--json'], { env }).stdout);
  assert.is(ranges[0].gaps.length, 1);
  const target = path.join(d, 'restored.db');
  assert.is(cli(['restore', set, '--db', target, '--series', 'blufio', '-q'], { env }).code, 0);
  assert.is(spawnSync('sqlite3', [target, 'SELECT count(*) FROM log'], { encoding: 'utf8' }).stdout.trim(), '2');
});

test('one replicator per set across machines (the set\'s lease): a second database of the same name is refused (exit 3, nothing shipped); --take-over makes the holder stand down (exit 3); each chain restores its own database; a clean stop frees the lease', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  // Two machines: two state directories (HOMEs), two databases named blufio.db, one set.
  const { d, db, set, env } = place();
  const otherDir = path.join(d, 'machine-b');
  fs.mkdirSync(otherDir);
  const dbB = path.join(otherDir, 'blufio.db');
  const envB = { HOME: tmpdir('blufio-home-') };
  for (const [file, who] of [[db, 'A'], [dbB, 'B']]) {
    assert.is(spawnSync('sqlite3', [file, `PRAGMA journal_mode=WAL; CREATE TABLE who(x); INSERT INTO who VALUES ('${who}');`]).status, 0);
  }
  // A writes all along; B's database is idle (a take-over by an idle database once restored A's
  // database as the newest state: its chain was empty, A's reached past its base).
  const writerA = await python('replwriter.py', [db, JSON.stringify({ tps: 50 })], true);
  try {
    const a = await replicator([process.execPath], [set, '--db', db, '--interval', '0.2', '--json'], env);
    const started = JSON.parse(a.err().split('\n').find((l) => l.includes('"event":"started"'))!);
    assert.match(started.replicator, /^[0-9a-f]{16}$/);
    assert.is(started.lease, 1);
    await sleep(800);
    const whileA = new Date().toISOString();
    await sleep(800);
    // B at another path is refused by the series (exit 3): it is another database.
    let r = cli(['replicate', set, '--db', dbB], { env: envB });
    assert.is(r.code, 3, r.stderr);
    assert.match(r.stderr, `holds the series "blufio" of another database (${fs.realpathSync(db)})`);
    // At the same path on another machine the series cannot tell (simulated: its marker
    // removed): the lease refuses B, said with A's id and what to do, exit 3, nothing of B's
    // in the set.
    fs.rmSync(path.join(set, 'blufio.series'));
    const before = fs.readdirSync(set).filter((f) => !/\.log\./.test(f)).sort();
    r = cli(['replicate', set, '--db', dbB], { env: envB });
    assert.is(r.code, 3, r.stderr);
    const where = set.replace(/\/$/, '');
    assert.match(r.stderr, new RegExp(`^error: ${where.replace(/[/.]/g, '\\$&')} \\(blufio\\) is replicated by another blufio replicate \\(${started.replicator}, started \\S+, last seen \\S+\\): a second one would start a chain of its own \\(.*--take-over`));
    assert.is(r.stderr.trim().split('\n').length, 1);
    assert.equal(fs.readdirSync(set).filter((f) => !/\.log\./.test(f)).sort(), before);
    // --take-over: B takes the next lease and starts its own chain on its own base; A stands
    // down before its next segment (a HEAD every 10 s at most), exit 3, saying who took over.
    // A clock 10 minutes behind the store's (here the kernel's file times) is refused before
    // anything is taken (its chain would sort before A's: restores of later times would take
    // A's), and so is one 10 minutes ahead.
    if (faketime()) {
      const skewed = spawnSync('faketime', ['-f', '-10m', process.execPath, CLI, 'replicate', set, '--db', dbB, '--take-over'], { env: { PATH: process.env.PATH ?? '', ...envB }, encoding: 'utf8' });
      assert.is(skewed.status, 2, skewed.stderr);
      assert.match(skewed.stderr, /^error: this machine's clock is \d+ s behind .*'s \(/);
      // Ahead: its base would be named in the future (a restore of "now" would take A's chain).
      const fast = spawnSync('faketime', ['-f', '+10m', process.execPath, CLI, 'replicate', set, '--db', dbB, '--take-over'], { env: { PATH: process.env.PATH ?? '', ...envB }, encoding: 'utf8' });
      assert.is(fast.status, 2, fast.stderr);
      assert.match(fast.stderr, /^error: this machine's clock is \d+ s ahead of .*'s \(/);
      assert.not.ok(fs.readdirSync(set).includes('blufio.lease00000002'), 'nothing taken');
    }
    const b = await replicator([process.execPath], [set, '--db', dbB, '--interval', '0.2', '--json', '--take-over'], envB);
    assert.match(b.err(), '"event":"lease","lease":2');
    assert.match(b.err(), '"resumed":false');
    // Its first step is shipped at once: the newest state is B's from then on, while A still
    // ships its last segments (up to 10 s).
    await sleep(700);
    assert.is(a.proc.exitCode, null, 'A has not looked yet');
    const newest = path.join(tmpdir(), 'newest.db');
    const rn = cli(['restore', set, '--db', newest, '--series', 'blufio', '-q'], { env });
    assert.is(rn.code, 0, rn.stderr);
    assert.is(spawnSync('sqlite3', [newest, 'SELECT x FROM who'], { encoding: 'utf8' }).stdout.trim(), 'B');
    const code = await new Promise<number | null>((res) => {
      const t = setTimeout(() => res(-1), 30_000);
      a.proc.on('exit', (c) => {
        clearTimeout(t);
        res(c);
      });
    });
    assert.is(code, 3, a.err());
    const bStarted = JSON.parse(b.err().split('\n').find((l) => l.includes('"event":"started"'))!);
    assert.match(a.err(), `another replicator (${bStarted.replicator}) took over ${where} (blufio)`);
    // A started again is refused while B holds the lease.
    r = cli(['replicate', set, '--db', db], { env });
    assert.is(r.code, 3, r.stderr);
    await sleep(600);
    assert.is(await stopped(b.proc), 0, b.err());
    // Each chain is one database's: the newest state is B's; a time while A held it is A's.
    const restored = (at?: string) => {
      const target = path.join(tmpdir(), 'restored.db');
      const rr = cli(['restore', set, '--db', target, '--series', 'blufio', '-q', ...(at ? ['--at', at] : [])], { env });
      assert.is(rr.code, 0, rr.stderr);
      return spawnSync('sqlite3', [target, 'SELECT x FROM who'], { encoding: 'utf8' }).stdout.trim();
    };
    assert.is(restored(), 'B');
    assert.is(restored(whileA), 'A');
    // B stopped cleanly: its lease is free, but the series is B's database now (another path:
    // another database): A is refused by the series, and told --take-over; with it, A takes the
    // lease and the series on a new chain (never resuming the one it had before B's).
    r = cli(['replicate', set, '--db', db], { env });
    assert.is(r.code, 3, r.stderr);
    assert.match(r.stderr, `holds the series "blufio" of another database (${fs.realpathSync(dbB)})`);
    assert.match(r.stderr, 'start blufio replicate with --take-over if this is the same database moved');
    const a2 = await replicator([process.execPath], [set, '--db', db, '--interval', '0.2', '--json', '--take-over'], env);
    // (Refused before the lease was looked at: the lease B freed is the one taken.)
    assert.match(a2.err(), '"event":"lease","lease":3');
    assert.match(a2.err(), 'its holder stopped');
    assert.match(a2.err(), '"resumed":false');
    await sleep(600);
    assert.is(await stopped(a2.proc), 0, a2.err());
    assert.is(restored(), 'A');
    // The lease's objects are not backups: list, check and prune pass them by; list says who
    // holds each series.
    const listed = cli(['list', set, '--json'], { env });
    assert.is(listed.code, 0, listed.stderr);
    const j = JSON.parse(listed.stdout);
    assert.ok(j.backups.every((x: { name: string }) => !x.name.includes('.lease')));
    const a2Started = JSON.parse(a2.err().split('\n').find((l) => l.includes('"event":"started"'))!);
    assert.is(a2Started.replicator, started.replicator);
    assert.equal(j.replicators.map((x: Record<string, unknown>) => [x.series, x.lease, x.replicator, x.stopped]), [['blufio', 3, started.replicator, true]]);
    assert.match(cli(['list', set], { env }).stdout, new RegExp(`^replicator: blufio held by ${started.replicator} \\(lease 3\\) since \\S+, stopped \\S+$`, 'm'));
    assert.is(cli(['prune', set, '--keep-last', '1', '-q'], { env }).code, 0);
    assert.ok(fs.readdirSync(set).includes('blufio.lease00000003'));
  } finally {
    await stopped(writerA.proc);
  }
});

test('a database of many pieces whose WAL restarts every few commits: a restart after a kill -9 closes one gap, then every WAL restart is followed (the full pass looks at the WAL between its 4 MiB pieces, as does the hashing of the replica); restore --at exact', async () => {
  if (!hasPython()) return skip('python3 is not installed');
  const { db, set, env } = place();
  // ~190 MiB (47 pieces) of pages that compress to nothing (the base is quick); the WAL restarts
  // after ~16 pages written (every ~80 ms). A pass made in one call (~0.6 s) missed restarts,
  // and each gap's pass opened the next one.
  assert.is(spawnSync('sqlite3', [db], { input: 'PRAGMA journal_mode=WAL; CREATE TABLE filler(x BLOB); INSERT INTO filler SELECT zeroblob(4000) FROM generate_series(1, 48000);' }).status, 0);
  const writer = await python('replwriter.py', [db, JSON.stringify({ tps: 100, autocheckpoint: 16, pad: 2000 })], true);
  let rep = await replicator([process.execPath], [set, '--db', db, '--json'], env);
  await sleep(1500);
  await stopped(rep.proc, 'SIGKILL');
  await sleep(1000);
  rep = await replicator([process.execPath], [set, '--db', db, '--json'], env);
  await sleep(7000);
  // (What it said while the writer wrote: the writer's close removes its WAL, a gap of its own.)
  const said = rep.err();
  const { all, ranges } = await stopAndList(writer, rep, db, set, env);
  const events = said.trim().split('\n').map((l) => JSON.parse(l)) as Array<{ event: string; segment?: string; why?: string }>;
  const gaps = events.filter((e) => e.event === 'gap');
  assert.is(gaps.length, 1, `gaps after the restart: ${JSON.stringify(gaps)}`);
  assert.is(gaps[0].why, 'the replicator was not running');
  const after = events.filter((e) => e.event === 'shipped' && !e.segment!.includes('.gap.'));
  assert.ok(after.length >= 4, `${after.length} segments without a gap after the restart`);
  assert.is(restoreAt(set, env, all, null, ranges[0].gaps), all.length);
  acrossRange(set, env, all, ranges[0], 3);
});

test.run();
