/**
 * Backup sets: timestamped backups in a folder or an s3:// prefix, page-level differentials,
 * restore by time, pruning by policy. Native sqlite3 is the oracle for every database; the
 * retention policy is checked against an independent implementation written here.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backup } from '../src/index.ts';
import { parseName, planPrune, type SetEntry } from '../src/sets/index.ts';
import { CLI, ROOT, RUNTIMES, cleanup, cli as runCli, faketime, fingerprint, makeSampleDb, s3Env, sql, startS3Server, tmpdir, type S3Server } from './helpers.ts';

const test = suite('sets');
test.after.each(cleanup);

const NAME = /^blufio-\d{8}T\d{6}Z(-\d+)?(\.from-\d{8}T\d{6}Z(-\d+)?\.diff|\.db)\.gz(\.age)?$/;

function sample(rows = 2000) {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows, wal: true });
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  return { d, db, set };
}

const listJson = (set: string, env: Record<string, string> = {}) => {
  const r = runCli(['list', set, '--json'], { env });
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).backups as Array<{ name: string; time: string; kind: string; bytes: number; base?: string }>;
};

/** Waits for the next whole second (backups are named by the second). */
const nextSecond = () => new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));

/**
 * The command prefix that runs `runtime` with its clock `i` seconds ahead (Debian's faketime), so
 * that backups made one after another are named in distinct seconds without waiting for them;
 * without faketime (or under Deno), it waits for the next second instead. (Backups made in one second need no
 * wait at all: they are numbered in the order they were made.)
 */
async function secondsAhead(i: number, runtime: string[] = [process.execPath]): Promise<string[]> {
  // Not Deno: it crashed under faketime's preload now and then (once in CI, 1 start in 60 here).
  if (faketime() && !runtime[0].endsWith('deno')) return ['faketime', '-f', `+${i}s`, ...runtime];
  if (i > 0) await nextSecond();
  return runtime;
}

for (const [runtimeName, runtime] of Object.entries(RUNTIMES)) {
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { runtime, env });

  test(`${runtimeName}: a full backup, then differentials against it; each restores to its own state`, async () => {
    const { d, db, set } = sample();
    const states: string[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) sql(db, `INSERT INTO sessions(name) VALUES ('run ${i}'); UPDATE memory SET content = 'changed ${i}' WHERE id = ${i * 7};`);
      states.push(fingerprint(db));
      const r = runCli(['backup', '--db', db, `${set}/`, '--json'], { runtime: await secondsAhead(i, runtime) });
      assert.is(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.is(j.kind, i === 0 ? 'full' : 'diff');
      assert.match(path.basename(j.path), NAME);
    }
    const list = listJson(set);
    assert.equal(list.map((b) => b.kind), ['diff', 'diff', 'full']);
    assert.is(list[0].base, list[2].name);
    assert.ok(list[0].bytes < list[2].bytes / 5, `a differential is small (${list[0].bytes} vs ${list[2].bytes})`);
    // Newest by default; --at picks the state of its time.
    for (let i = 2; i >= 0; i--) {
      const target = path.join(d, `restored-${i}.db`);
      // (The oldest by ISO 8601's basic form, the one backups are named in: 20261202T082645Z.)
      const at = i === 2 ? [] : ['--at', i === 0 ? list[2].time.replace(/[-:]|\.000/g, '') : list[2 - i].time];
      const r = cli(['restore', '--db', target, set, '--series', 'blufio', ...at]);
      assert.is(r.code, 0, r.stderr);
      assert.is(fingerprint(target), states[i], `state ${i}`);
      assert.is(sql(target, 'PRAGMA integrity_check'), 'ok');
    }
    // A single differential file verifies (rebuilt on its base beside it).
    const v = cli(['verify', path.join(set, list[0].name), '--json']);
    assert.is(v.code, 0, v.stderr);
    assert.is(JSON.parse(v.stdout).ok, true);
  });
}

test('list: newest first, one line each; nothing else in the folder is listed or touched', async () => {
  const { db, set } = sample(100);
  fs.writeFileSync(path.join(set, 'notes.txt'), 'mine');
  fs.writeFileSync(path.join(set, 'blufio-2026.db.gz'), 'not ours');
  assert.is(runCli(['backup', '--db', db, set]).code, 0);
  const r = runCli(['list', set]);
  assert.is(r.code, 0);
  assert.is(r.stderr, '');
  assert.match(r.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {2}full {2,}\d+\.\d MB {2}blufio-\d{8}T\d{6}Z\.db\.gz\n$/);
  assert.is(runCli(['prune', set, '--keep-last', '1']).code, 0);
  assert.ok(fs.existsSync(path.join(set, 'notes.txt')) && fs.existsSync(path.join(set, 'blufio-2026.db.gz')));
});

test('Ctrl-C while a backup into a folder set is compressed and encrypted: nothing published, nothing left', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  sql(db, 'CREATE TABLE big(x); INSERT INTO big SELECT randomblob(3000) FROM generate_series(1, 6000);');
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  execFileSync('age-keygen', ['-o', path.join(d, 'key.txt')], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', path.join(d, 'key.txt')], { encoding: 'utf8' }).trim();
  const controller = new AbortController();
  const err = await backup(db, `${set}/`, {
    recipients: [recipient], sleepMs: 0, signal: controller.signal,
    // Interrupted once the verified copy is being packed (the set's files are .db.gz.age).
    onProgress: (p) => {
      if (p.phase === 'compress' && p.remainingPages < p.totalPages) controller.abort();
    },
  }).then(() => null, (e: { code?: string }) => e);
  assert.is(err?.code, 'E_ABORTED');
  assert.equal(fs.readdirSync(set).filter((n) => n.endsWith('.age') || n.includes('.blufio-')), [], fs.readdirSync(set).join(' '));
});

test('two backups in the same second never overwrite each other; two at once both land', async () => {
  const { db, set } = sample(300);
  const run = () => new Promise<number>((resolve) => spawn(process.execPath, [CLI, 'backup', '--db', db, set, '--full', '--quiet']).on('exit', (c) => resolve(c ?? -1)));
  const codes = await Promise.all([run(), run(), run()]);
  assert.equal(codes, [0, 0, 0]);
  const list = listJson(set);
  assert.is(list.length, 3);
  assert.is(new Set(list.map((b) => b.name)).size, 3);
  assert.ok(list.every((b) => NAME.test(b.name)), list.map((b) => b.name).join(' '));
});

test('s3:// set: three backups at once land as three, each reporting its own object, on a server that ignores If-None-Match (found by an attack run)', async () => {
  const server: S3Server = await startS3Server();
  try {
    const { db } = sample(300);
    const env = { ...process.env, ...s3Env(server), HOME: tmpdir('blufio-home-') };
    const set = 's3://backups/race/';
    const run = () => new Promise<{ code: number; out: string }>((resolve) => {
      let out = '';
      const p = spawn(process.execPath, [CLI, 'backup', '--db', db, set, '--full', '--json', '--unencrypted'], { env });
      p.stdout.on('data', (b) => (out += b));
      p.on('exit', (c) => resolve({ code: c ?? -1, out }));
    });
    for (let round = 1; round <= 2; round++) {
      const runs = await Promise.all([run(), run(), run()]);
      assert.equal(runs.map((r) => r.code), [0, 0, 0]);
      const reported = runs.map((r) => JSON.parse(r.out) as { path: string; bytes: number });
      assert.is(new Set(reported.map((r) => r.path)).size, 3, reported.map((r) => r.path).join(' '));
      const list = listJson(set, s3Env(server));
      assert.is(list.length, 3 * round);
      for (const r of reported) {
        const entry = list.find((b) => `${set}${b.name}` === r.path);
        assert.ok(entry, `${r.path} is in the set`);
        assert.is(entry!.bytes, r.bytes, `${r.path} holds what its run sent`);
      }
    }
    // The set's prefix without its slash is a forgotten slash, not an object's name.
    const noSlash = set.slice(0, -1);
    let r = runCli(['backup', '--db', db, noSlash, '--unencrypted'], { env: s3Env(server) });
    assert.is(r.code, 2, r.stderr);
    assert.is(r.stderr, `error: ${noSlash} names one object, but ${set} holds objects (a backup set) (end it with / to back up into the set: ${set})\n`);
    r = runCli(['restore', '--db', path.join(tmpdir(), 'x.db'), noSlash], { env: s3Env(server) });
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, `error: no object at ${noSlash}, but ${set} holds objects (a backup set) (end it with / to restore from the set: ${set})`);
    assert.is(listJson(set, s3Env(server)).length, 6, 'nothing added');
    // Only objects right under the prefix make it a set: a backup deeper down does not.
    assert.is(runCli(['backup', '--db', db, 's3://backups/deep/a/b/c.db', '--quiet', '--unencrypted'], { env: s3Env(server) }).code, 0);
    r = runCli(['backup', '--db', db, 's3://backups/deep/a', '--quiet', '--unencrypted'], { env: s3Env(server) });
    assert.is(r.code, 0, r.stderr);
  } finally {
    await server.stop();
  }
});

test('page hashes that cannot be kept: the backup succeeds and says so, naming the directory (found by an attack run)', () => {
  const { d, db, set } = sample(100);
  const notDir = path.join(d, 'not-a-directory');
  fs.writeFileSync(notDir, '');
  execFileSync('age-keygen', ['-o', path.join(d, 'key.txt')], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', path.join(d, 'key.txt')], { encoding: 'utf8' }).trim();
  const args = ['backup', '--db', db, set, '--quiet', '--recipient', recipient];
  const r = runCli(args, { env: { XDG_STATE_HOME: notDir } });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`^warning: cannot keep this backup's page hashes in ${notDir}/blufio/sets/[0-9a-f]+ \\(ENOTDIR\\)`));
  const j = runCli([...args.filter((a) => a !== '--quiet'), '--json'], { env: { XDG_STATE_HOME: notDir } });
  assert.is(j.code, 0, j.stderr);
  assert.match(JSON.parse(j.stdout).warning, 'cannot keep this backup');
});

test('--at before the oldest backup: exit 1, nothing changed; --at on a file is a usage error', async () => {
  const { d, db, set } = sample(100);
  assert.is(runCli(['backup', '--db', db, set]).code, 0);
  const target = path.join(d, 'target.db');
  makeSampleDb(target, { rows: 10 });
  const before = fingerprint(target);
  let r = runCli(['restore', '--db', target, set, '--series', 'blufio', '--at', '2020-01-01T00:00Z']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^error: no backup in .* is at or before 2020-01-01T00:00:00.000Z \(the oldest is from /);
  assert.is(fingerprint(target), before);
  r = runCli(['restore', '--db', target, set, '--series', 'blufio', '--at', 'yesterday']);
  assert.is(r.code, 2);
  assert.match(r.stderr, '--at "yesterday" is not a time');
  r = runCli(['restore', '--db', target, path.join(set, listJson(set)[0].name), '--at', '2030-01-01']);
  assert.is(r.code, 2);
  assert.is(fingerprint(target), before);
});

test('a small change on a 100 MB database: the differential is under 10 % of the full backup', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  sql(db, `PRAGMA journal_mode=WAL; CREATE TABLE memory(id INTEGER PRIMARY KEY, content BLOB); INSERT INTO memory(content) SELECT randomblob(3000) FROM generate_series(1, 36000);`);
  assert.ok(fs.statSync(db).size > 100 * 2 ** 20);
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  assert.is(runCli(['backup', '--db', db, set]).code, 0);
  sql(db, `UPDATE memory SET content = randomblob(3000) WHERE id % 100 = 0; INSERT INTO memory(content) SELECT randomblob(3000) FROM generate_series(1, 50);`);
  const r = runCli(['backup', '--db', db, set, '--json']);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(j.kind, 'diff');
  const [diff, full] = listJson(set);
  assert.ok(diff.bytes < full.bytes * 0.1, `${diff.bytes} vs ${full.bytes}`);
  const target = path.join(d, 'restored.db');
  assert.is(runCli(['restore', '--db', target, set, '--series', 'blufio']).code, 0);
  const q = 'SELECT count(*), sum(length(content)), hex(substr(content, 1, 16)) FROM memory WHERE id % 97 = 0';
  assert.is(sql(target, q), sql(db, q));
  // Most of the database changed (a VACUUM-like churn): a full backup instead, saying why.
  sql(db, 'UPDATE memory SET content = randomblob(3000)');
  const again = runCli(['backup', '--db', db, set]);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stderr, /a full backup: \d+ % of the pages changed/);
});

/** restic's forget, written again independently: per rule, newest first, first of each period. */
function expectedKept(times: Date[], policy: Record<string, number>): Set<number> {
  const order = times.map((t, i) => ({ t, i })).sort((a, b) => b.t.getTime() - a.t.getTime());
  const kept = new Set<number>();
  const period: Record<string, (t: Date) => string> = {
    hourly: (t) => `${t.getUTCFullYear()}-${t.getUTCMonth()}-${t.getUTCDate()}-${t.getUTCHours()}`,
    daily: (t) => `${t.getUTCFullYear()}-${t.getUTCMonth()}-${t.getUTCDate()}`,
    weekly: (t) => {
      // ISO week: the Thursday of the week decides the year.
      const th = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate() - ((t.getUTCDay() + 6) % 7) + 3));
      const jan4 = new Date(Date.UTC(th.getUTCFullYear(), 0, 4));
      const week1Monday = Date.UTC(jan4.getUTCFullYear(), 0, 4 - ((jan4.getUTCDay() + 6) % 7));
      return `${th.getUTCFullYear()}w${Math.floor((th.getTime() - 3 * 86400000 - week1Monday) / (7 * 86400000)) + 1}`;
    },
    monthly: (t) => `${t.getUTCFullYear()}-${t.getUTCMonth()}`,
    yearly: (t) => `${t.getUTCFullYear()}`,
  };
  order.slice(0, policy.last ?? 0).forEach((o) => kept.add(o.i));
  for (const [rule, n] of Object.entries(policy)) {
    if (rule === 'last') continue;
    const seen = new Set<string>();
    for (const o of order) {
      const p = period[rule](o.t);
      if (seen.has(p)) continue;
      if (seen.size >= n) break;
      seen.add(p);
      kept.add(o.i);
    }
  }
  kept.add(order[0].i);
  return kept;
}

test('prune: restic\'s policy over a year of crafted backups, checked against an independent implementation', () => {
  // Irregular times over ~14 months (a fixed pseudo-random walk), all full backups.
  const times: Date[] = [];
  let t = Date.UTC(2025, 9, 3, 5, 17, 3);
  let seed = 7;
  for (let i = 0; i < 400; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    t += (seed % 40) * 3_600_000 + (seed % 3600) * 1000;
    times.push(new Date(t));
  }
  const entries: SetEntry[] = times.map((time) => ({ ...parseName(`blufio-${time.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}.db.gz`)!, bytes: 1 })).sort((a, b) => b.time.getTime() - a.time.getTime());
  const byName = new Map(entries.map((e) => [e.name, times.findIndex((x) => x.getTime() === e.time.getTime())]));
  const policies: Array<Record<string, number>> = [{ last: 3 }, { daily: 7 }, { daily: 7, weekly: 4, monthly: 12 }, { hourly: 24, yearly: 2 }, { weekly: 60 }, { last: 1, monthly: 3, yearly: 5 }];
  for (const policy of policies) {
    const decisions = planPrune(entries, policy);
    const got = new Set(decisions.filter((x) => x.keptBecause.length > 0).map((x) => byName.get(x.name)!));
    assert.equal([...got].sort((a, b) => a - b), [...expectedKept(times, policy)].sort((a, b) => a - b), JSON.stringify(policy));
  }
});

test('prune on disk: --dry-run removes nothing; differentials keep their base; foreign files stay; no rule is exit 2', async () => {
  const { db, set } = sample(200);
  for (let i = 0; i < 3; i++) {
    sql(db, `INSERT INTO sessions(name) VALUES ('p${i}')`);
    assert.is(runCli(['backup', '--db', db, set, ...(i === 1 ? ['--full'] : [])]).code, 0);
  }
  fs.writeFileSync(path.join(set, 'README'), 'keep me');
  // full(0) <- nothing; full(1) <- diff(2): keep-last 1 keeps diff(2) and so its base full(1).
  const before = listJson(set);
  assert.equal(before.map((b) => b.kind), ['diff', 'full', 'full']);
  let r = runCli(['prune', set, '--keep-last', '1', '--dry-run', '--json']);
  assert.is(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  assert.equal(plan.removed.map((x: { name: string }) => x.name), [before[2].name]);
  assert.ok(plan.kept.find((x: { name: string; keptBecause: string[] }) => x.name === before[1].name).keptBecause.some((w: string) => w.startsWith('base of')));
  assert.is(listJson(set).length, 3);
  r = runCli(['prune', set, '--keep-last', '1']);
  assert.is(r.code, 0, r.stderr);
  assert.equal(listJson(set).map((b) => b.name), [before[0].name, before[1].name]);
  assert.not.ok(fs.existsSync(path.join(set, `${before[2].name}.pages`)), 'its page hashes went with it');
  assert.ok(fs.existsSync(path.join(set, 'README')));
  r = runCli(['prune', set]);
  assert.is(r.code, 2);
  assert.match(r.stderr, 'prune needs a policy: no --keep-* rule was given and [backup.retention] in blufio.toml has none');
  // The differential left still restores.
  const target = path.join(path.dirname(set), 't.db');
  assert.is(runCli(['restore', '--db', target, set, '--series', 'blufio']).code, 0);
  assert.is(fingerprint(target), fingerprint(db));
});

test('prune removes this machine\'s copy of a removed full backup\'s page hashes too (they piled up for ever: an attack run), and keeps the others', async () => {
  const { db, set } = sample(200);
  const env = { HOME: tmpdir('blufio-home-') };
  for (let i = 0; i < 2; i++) {
    sql(db, `INSERT INTO sessions(name) VALUES ('k${i}')`);
    assert.is(runCli(['backup', '--db', db, set, '--full'], { env, runtime: await secondsAhead(i) }).code, 0);
  }
  const [newer, older] = listJson(set, env);
  const sets = path.join(env.HOME, '.local/state/blufio/sets');
  const [id] = fs.readdirSync(sets);
  const kept = () => fs.readdirSync(path.join(sets, id)).sort();
  assert.equal(kept(), [`${newer.name}.pages`, `${older.name}.pages`].sort());
  const r = runCli(['prune', set, '--keep-last', '1'], { env });
  assert.is(r.code, 0, r.stderr);
  assert.equal(kept(), [`${newer.name}.pages`]);
});

test('backup <set> --prune applies [backup.retention]; without a policy it is refused before anything', async () => {
  const { d, db, set } = sample(100);
  const toml = path.join(d, 'blufio.toml');
  fs.writeFileSync(toml, `[storage]\ndatabase_path = "${db}"\n`);
  let r = runCli(['backup', set, '--prune', '--config', toml]);
  assert.is(r.code, 2);
  assert.match(r.stderr, '--prune needs a policy');
  assert.is(listJson(set).length, 0);
  fs.appendFileSync(toml, '[backup]\nfull_every_days = 30\n[backup.retention]\nkeep_last = 2\n');
  for (let i = 0; i < 3; i++) {
    r = runCli(['backup', set, '--prune', '--config', toml, '--full']);
    assert.is(r.code, 0, r.stderr);
  }
  assert.is(listJson(set).length, 2);
});

test('kill -9 during a differential and during a prune leaves a set that lists, restores and prunes', async () => {
  const { d, db, set } = sample(20_000);
  assert.is(runCli(['backup', '--db', db, set]).code, 0);
  sql(db, "UPDATE memory SET content = 'x' || content WHERE id % 3 = 0");
  for (const delay of [50, 150, 300]) {
    const child = spawn(process.execPath, [CLI, 'backup', '--db', db, set, '--quiet']);
    await new Promise((r) => setTimeout(r, delay));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
  }
  const list = listJson(set);
  assert.ok(list.length >= 1);
  const target = path.join(d, 'after-kill.db');
  const r = runCli(['restore', '--db', target, set, '--series', 'blufio']);
  assert.is(r.code, 0, r.stderr);
  assert.is(sql(target, 'PRAGMA integrity_check'), 'ok');
  // A prune killed midway: whatever it removed, the rest still restores.
  for (let i = 0; i < 3; i++) {
    sql(db, `INSERT INTO sessions(name) VALUES ('k${i}')`);
    assert.is(runCli(['backup', '--db', db, set, ...(i === 1 ? ['--full'] : [])]).code, 0);
  }
  const child = spawn(process.execPath, [CLI, 'prune', set, '--keep-last', '1', '--quiet']);
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  for (const b of listJson(set)) {
    const v = runCli(['verify', path.join(set, b.name)]);
    assert.is(v.code, 0, `${b.name}: ${v.stderr}`);
  }
  assert.is(runCli(['prune', set, '--keep-last', '1']).code, 0);
  assert.is(runCli(['restore', '--db', target, set, '--series', 'blufio']).code, 0);
  assert.is(fingerprint(target), fingerprint(db));
});

test('s3:// sets of encrypted differentials: .db.gz.age and .diff.gz.age go up, list, restore by time, prune', async () => {
  const server: S3Server = await startS3Server();
  try {
    const { d, db } = sample(500);
    // One home for every run: an encrypted set keeps its page hashes only on this machine.
    const env = { ...s3Env(server), HOME: tmpdir('blufio-home-') };
    execFileSync('age-keygen', ['-o', path.join(d, 'key.txt')], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', path.join(d, 'key.txt')], { encoding: 'utf8' }).trim();
    const set = 's3://backups/blufio/';
    const states: string[] = [];
    for (let i = 0; i < 3; i++) {
      sql(db, `INSERT INTO sessions(name) VALUES ('s${i}')`);
      states.push(fingerprint(db));
      const r = runCli(['backup', '--db', db, set, '--recipient', recipient], { env, runtime: await secondsAhead(i) });
      assert.is(r.code, 0, r.stderr);
    }
    const list = listJson(set, env);
    assert.equal(list.map((b) => b.kind), ['diff', 'diff', 'full']);
    assert.ok(list.every((b) => b.name.endsWith('.gz.age')));
    const target = path.join(d, 't.db');
    let r = runCli(['restore', '--db', target, set, '--series', 'blufio', '--at', list[1].time, '--identity', path.join(d, 'key.txt')], { env });
    assert.is(r.code, 0, r.stderr);
    assert.is(fingerprint(target), states[1]);
    r = runCli(['verify', set, '--identity', path.join(d, 'key.txt')], { env });
    assert.is(r.code, 0, r.stderr);
    r = runCli(['restore', '--db', target, set, '--series', 'blufio'], { env });
    assert.is(r.code, 1);
    assert.match(r.stderr, 'is encrypted (age); no identity was given');
    r = runCli(['prune', set, '--keep-last', '1', '--json'], { env });
    assert.is(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).removed.map((x: { name: string }) => x.name), [list[1].name]);
    assert.equal(listJson(set, env).map((b) => b.name), [list[0].name, list[2].name]);
  } finally {
    await server.stop();
  }
});

test('--ping tells a monitor: URL on success, URL/fail on failure, and an unreachable monitor never fails the backup', async () => {
  const { d, db, set } = sample(100);
  const hits: string[] = [];
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    res.end('OK');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}/ping/abc`;
  const run = (args: string[]) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args]);
    let stderr = '';
    c.stderr.on('data', (x) => (stderr += x));
    c.on('exit', (code) => resolve({ code, stderr }));
  });
  try {
    assert.is((await run(['backup', '--db', db, set, '--ping', url, '--quiet'])).code, 0);
    assert.is((await run(['backup', '--db', path.join(d, 'missing.db'), set, '--ping', url, '--quiet'])).code, 1);
    assert.equal(hits, ['/ping/abc', '/ping/abc/fail']);
  } finally {
    server.close();
  }
  const r = await run(['backup', '--db', db, path.join(d, 'x.db'), '--ping', 'http://127.0.0.1:9/nowhere']);
  assert.is(r.code, 0);
  assert.match(r.stderr, 'warning: could not reach the monitor at 127.0.0.1:9');
});

test('restore --if-missing: seeds a missing database from the newest backup, leaves an existing one alone (exit 0 both); a set with no backup yet seeds nothing (exit 0, said)', async () => {
  const { d, db, set } = sample(100);
  const fresh = path.join(d, 'fresh', 'blufio.db');
  fs.mkdirSync(path.dirname(fresh));
  // A first deployment: the set is still empty (found by an attack run: exit 1 stopped the container).
  let r = runCli(['restore', '--db', fresh, set, '--if-missing', '--quiet']);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stderr, `the backup set ${set} holds no backups: nothing restored (--if-missing), the database starts empty\n`);
  assert.not.ok(fs.existsSync(fresh));
  r = runCli(['restore', '--db', fresh, set]);
  assert.is(r.code, 1, 'without --if-missing an empty set is an error');
  assert.is(runCli(['backup', '--db', db, set]).code, 0);
  r = runCli(['restore', '--db', fresh, set, '--if-missing']);
  assert.is(r.code, 0, r.stderr);
  assert.is(fingerprint(fresh), fingerprint(db));
  sql(fresh, "INSERT INTO sessions(name) VALUES ('after seeding')");
  const seeded = fingerprint(fresh);
  r = runCli(['restore', '--db', fresh, set, '--if-missing', '--json']);
  assert.is(r.code, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).restored, false);
  r = runCli(['restore', '--db', fresh, set, '--if-missing']);
  assert.is(r.code, 0);
  assert.is(r.stderr, `${fresh} exists: nothing restored (--if-missing)\n`);
  assert.is(fingerprint(fresh), seeded);
  assert.not.ok(fs.existsSync(`${fresh}.pre-restore`));
});

test('one series per database: another database of the same name is refused, a set of another database never restores into this one', () => {
  const { d, db, set } = sample(100);
  const other = path.join(d, 'elsewhere', 'blufio.db');
  fs.mkdirSync(path.dirname(other));
  makeSampleDb(other, { rows: 20 });
  assert.is(runCli(['backup', '--db', db, set]).code, 0);
  let r = runCli(['backup', '--db', other, set]);
  assert.is(r.code, 1);
  assert.match(r.stderr, `holds the series "blufio" of another database (${fs.realpathSync(db)})`);
  assert.is(listJson(set).length, 1);
  // A database of another name finds none of its own backups: refused, not given blufio's.
  const users = path.join(d, 'users.db');
  makeSampleDb(users, { rows: 5 });
  const before = fingerprint(users);
  r = runCli(['restore', '--db', users, set]);
  assert.is(r.code, 1);
  assert.match(r.stderr, 'holds no backups of "users" (it holds "blufio")');
  assert.is(fingerprint(users), before);
  r = runCli(['restore', '--db', path.join(d, 'fresh.db'), set, '--if-missing']);
  assert.is(r.code, 1);
  assert.not.ok(fs.existsSync(path.join(d, 'fresh.db')));
  // --force adopts the series (the same database moved).
  assert.is(runCli(['backup', '--db', other, set, '--force']).code, 0);
});

test('encrypted sets: a new key means a full backup; a plain backup into one is refused; a missing base is a clear error', async () => {
  const { d, db, set } = sample(200);
  const keys = [1, 2].map((i) => {
    execFileSync('age-keygen', ['-o', path.join(d, `k${i}.txt`)], { stdio: 'ignore' });
    return execFileSync('age-keygen', ['-y', path.join(d, `k${i}.txt`)], { encoding: 'utf8' }).trim();
  });
  const env = { HOME: tmpdir('blufio-home-') };
  assert.is(runCli(['backup', '--db', db, set, '--recipient', keys[0]], { env }).code, 0);
  sql(db, "INSERT INTO sessions(name) VALUES ('rotated')");
  let r = runCli(['backup', '--db', db, set, '--recipient', keys[1], '--json'], { env });
  assert.is(r.code, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).kind, 'full');
  assert.match(JSON.parse(r.stdout).fullBecause, 'the recipients changed');
  const target = path.join(d, 't.db');
  r = runCli(['restore', '--db', target, set, '--series', 'blufio', '--identity', path.join(d, 'k2.txt')], { env });
  assert.is(r.code, 0, r.stderr);
  assert.is(fingerprint(target), fingerprint(db));
  r = runCli(['backup', '--db', db, set], { env });
  assert.is(r.code, 2);
  assert.match(r.stderr, 'is encrypted, and no recipient was given for this one');
  // --force (which adopts a moved database's series) never lets plaintext in: only --unencrypted.
  const count = fs.readdirSync(set).length;
  r = runCli(['backup', '--db', db, set, '--force'], { env });
  assert.is(r.code, 2);
  assert.match(r.stderr, 'add --unencrypted to write an unencrypted backup there on purpose');
  // Nor another database (or this one renamed): the set's newest backup decides, not the series'.
  const other = path.join(d, 'other.db');
  fs.copyFileSync(db, other);
  r = runCli(['backup', '--db', other, set], { env });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, 'is encrypted, and no recipient was given for this one');
  assert.is(fs.readdirSync(set).length, count, 'nothing written');
  r = runCli(['backup', '--db', db, set, '--unencrypted', '--recipient', keys[1]], { env });
  assert.is(r.code, 2);
  assert.match(r.stderr, '--unencrypted was given with recipients');
  assert.is(runCli(['backup', '--db', db, set, '--recipient', keys[1]], { env }).code, 0);
  const [diff, base] = listJson(set);
  assert.is(diff.kind, 'diff');
  fs.rmSync(path.join(set, base.name));
  r = runCli(['verify', set, '--identity', path.join(d, 'k2.txt')], { env });
  assert.is(r.code, 1);
  assert.match(r.stderr, `error: the newest backup in ${set}, ${diff.name}, cannot be restored: its base ${base.name} is missing`);
  r = runCli(['backup', '--db', db, set, '--unencrypted', '--json'], { env });
  assert.is(r.code, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).kind, 'full');
  assert.match(JSON.parse(r.stdout).path, /\.db\.gz$/);
});

test('a backup named in the future (a clock that jumped ahead) is not restored by default, not a base, and stops prune', async () => {
  const { d, db, set } = sample(100);
  assert.is(runCli(['backup', '--db', db, set]).code, 0);
  const [first] = listJson(set);
  fs.renameSync(path.join(set, first.name), path.join(set, 'blufio-20991231T000000Z.db.gz'));
  sql(db, "INSERT INTO sessions(name) VALUES ('now')");
  const r = runCli(['backup', '--db', db, set, '--json']);
  assert.is(r.code, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).kind, 'full');
  const target = path.join(d, 't.db');
  assert.is(runCli(['restore', '--db', target, set, '--series', 'blufio']).code, 0);
  assert.is(fingerprint(target), fingerprint(db));
  const p = runCli(['prune', set, '--keep-last', '1']);
  assert.is(p.code, 2);
  assert.match(p.stderr, 'is named after now (a clock that jumped ahead?)');
  assert.is(listJson(set).length, 2);
  assert.is(runCli(['restore', '--db', target, set, '--series', 'blufio', '--at', '2026-02-30']).code, 2);
  assert.is(runCli(['prune', set, '--keep-last', '0x10']).code, 2);
});

test('the crontab line and the systemd ExecStart of docs/sets.md, run as written (bucket, monitor and blufio pointed at the test ones)', async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'sets.md'), 'utf8');
  const cron = /^0 \* \* \* \* {2}(blufio .*)$/m.exec(doc)![1];
  const exec = /^ExecStart=\/usr\/bin\/(blufio .*)$/m.exec(doc)![1];
  const server = await startS3Server();
  const hits: string[] = [];
  const http = await import('node:http');
  const monitor = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    res.end('OK');
  });
  await new Promise<void>((r) => monitor.listen(0, '127.0.0.1', r));
  try {
    const { d, db } = sample(200);
    const bin = path.join(d, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'blufio'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
    const toml = path.join(d, 'blufio.toml');
    // Off-site backups are encrypted: the server's blufio.toml names the public key.
    execFileSync('age-keygen', ['-o', path.join(d, 'key.txt')], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', path.join(d, 'key.txt')], { encoding: 'utf8' }).trim();
    fs.writeFileSync(toml, `[storage]\ndatabase_path = "${db}"\n[backup]\nage_recipients = ["${recipient}"]\n[backup.retention]\nkeep_last = 1\n`);
    const port = (monitor.address() as import('node:net').AddressInfo).port;
    const run = (line: string) => {
      const cmd = line.replace('s3://my-bucket/', 's3://backups/').replace('https://hc-ping.com/<uuid>', `http://127.0.0.1:${port}/uuid`);
      return spawn('sh', ['-c', cmd], { cwd: d, env: { ...process.env, ...s3Env(server), PATH: `${bin}:${process.env.PATH}`, HOME: d } });
    };
    for (const line of [cron, exec, cron]) {
      const child = run(line);
      let stderr = '';
      child.stderr.on('data', (c) => (stderr += c));
      assert.is(await new Promise((r) => child.on('exit', r)), 0, `${line}: ${stderr}`);
      assert.is(stderr, '', 'quiet: nothing for cron to mail');
    }
    assert.equal(hits, ['/uuid', '/uuid']);
    const list = listJson('s3://backups/blufio/', { ...s3Env(server), HOME: d });
    // keep_last = 1: the newest differential and its base stay, the one between them went.
    assert.equal(list.map((b) => b.kind), ['diff', 'full'], 'keep_last = 1 applied by --prune');
    const target = path.join(d, 'restored.db');
    const r = runCli(['restore', '--db', target, 's3://backups/blufio/', '--series', 'blufio', '--identity', path.join(d, 'key.txt')], { env: s3Env(server) });
    assert.is(r.code, 0, r.stderr);
    assert.is(fingerprint(target), fingerprint(db));
  } finally {
    monitor.close();
    await server.stop();
  }
});

test.run();
