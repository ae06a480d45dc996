/**
 * Sets that stay restorable, and say when they are not: a base deleted outside blufio, a clock
 * that stepped back, off-site copies encrypted unless the operator opts out, prune by the
 * configured policy, `blufio check`, and what messages name. Against real parts: native sqlite3
 * as the oracle, the signature-checking S3 test server and moto's server as a second S3, Debian's
 * `age` and `faketime`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AwsClient } from 'aws4fetch';
import { CLI, RUNTIMES, runtimesOf, cleanup, cli, cliAsync, faketime, fingerprint, makeSampleDb, s3Env, skip, sql, startMotoServer, startS3Server, tmpdir, type S3Server } from './helpers.ts';

const test = suite('set health');
test.after.each(cleanup);

interface Listed { name: string; time: string; kind: string; bytes: number; base?: string; restorable: boolean; problem?: string; checked: string }

function sample(rows = 1000) {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows, wal: true });
  return { d, db, home: tmpdir('blufio-home-') };
}

const listed = (set: string, env: Record<string, string>) => {
  const r = cli(['list', set, '--json'], { env });
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).backups as Listed[];
};

/** Where a set lives: a folder, or a prefix on one of two independent S3 servers. */
interface Place {
  name: string;
  set: string;
  env: Record<string, string>;
  /** Removes a file of the set the way another tool would (rm, a lifecycle rule, `aws s3 rm`). */
  remove(name: string): Promise<void>;
  stop(): Promise<void>;
}

async function folder(): Promise<Place> {
  const dir = tmpdir();
  return { name: 'folder', set: `${dir}/`, env: {}, remove: async (n) => fs.rmSync(path.join(dir, n)), stop: async () => {} };
}

async function bucket(name: string, start: () => Promise<S3Server | null>): Promise<Place | null> {
  const server = await start();
  if (!server) return null;
  const other = new AwsClient({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', service: 's3', region: 'us-east-1', retries: 0 });
  const prefix = `h${Math.random().toString(36).slice(2, 8)}/`;
  return {
    name,
    set: `s3://backups/${prefix}`,
    env: s3Env(server),
    remove: async (n) => {
      const res = await other.fetch(`http://127.0.0.1:${server.port}/backups/${prefix}${n}`, { method: 'DELETE' });
      assert.ok(res.status === 204 || res.status === 200, `deleted by another client: ${res.status}`);
    },
    stop: server.stop,
  };
}

const places: Array<[string, () => Promise<Place | null>]> = [
  ['folder', folder],
  ['s3rver', () => bucket('s3rver', () => startS3Server())],
  ['moto', () => bucket('moto', startMotoServer)],
];

for (const [placeName, open] of places) {
  test(`${placeName}: a base deleted outside blufio: list marks what cannot be restored, restore names what can, prune keeps the restorable, check fails until then`, async () => {
    const place = await open();
    if (!place) return skip(`${placeName}: moto's server is not installed (pip install "moto[server]")`);
    try {
      const { d, db, home } = sample();
      const env = { ...place.env, HOME: home };
      const states: string[] = [];
      const back = (...extra: string[]) => {
        const r = cli(['backup', '--db', db, place.set, '--json', ...(place.name === 'folder' ? [] : ['--unencrypted']), ...extra], { env });
        assert.is(r.code, 0, r.stderr);
        states.push(fingerprint(db));
        return JSON.parse(r.stdout) as { path: string; kind: string };
      };
      back(); // F1
      sql(db, "INSERT INTO sessions(name) VALUES ('one')");
      back(); // D1 from F1
      await new Promise((r) => setTimeout(r, 1100)); // the rest in a later second than D1
      sql(db, "INSERT INTO sessions(name) VALUES ('two')");
      const f2 = back('--full');
      sql(db, "INSERT INTO sessions(name) VALUES ('three')");
      assert.is(back().kind, 'diff');
      sql(db, "INSERT INTO sessions(name) VALUES ('four')");
      assert.is(back().kind, 'diff');
      const before = listed(place.set, env);
      assert.equal(before.map((b) => [b.kind, b.restorable]), [['diff', true], ['diff', true], ['full', true], ['diff', true], ['full', true]]);
      assert.ok(before.every((b) => b.checked === 'header'), 'plain backups: every header read');

      const f2Name = path.basename(f2.path);
      await place.remove(f2Name);
      const after = listed(place.set, env);
      assert.equal(after.map((b) => b.restorable), [false, false, true, true]);
      assert.is(after[0].problem, `its base ${f2Name} is missing`);
      const text = cli(['list', place.set], { env });
      assert.is(text.code, 0);
      assert.is(text.stdout.split('\n').filter((l) => l.includes(`UNRESTORABLE: its base ${f2Name} is missing`)).length, 2, text.stdout);
      assert.match(text.stderr, `warning: 2 backup(s) cannot be restored; the newest that can is ${after[2].name}`);

      // Restore without --at: exit 1, naming the newest that can be, and nothing is made.
      const target = path.join(d, 'restored.db');
      let r = cli(['restore', '--db', target, place.set, '--series', 'blufio'], { env });
      assert.is(r.code, 1, r.stderr);
      const at = after[2].time.replace('.000Z', 'Z');
      assert.match(r.stderr, `, ${after[0].name}, cannot be restored: its base ${f2Name} is missing (the newest one before it whose base is there is ${after[2].name}: take it with --at ${at};`);
      assert.not.ok(fs.existsSync(target));
      r = cli(['restore', '--db', target, place.set, '--series', 'blufio', '--at', at], { env });
      assert.is(r.code, 0, r.stderr);
      assert.is(fingerprint(target), states[1], 'the state of D1');
      r = cli(['verify', place.set, '--series', 'blufio'], { env });
      assert.is(r.code, 1, 'verify of the newest refuses the same way');

      // check: exit 1 naming both; prune --keep-last 2 removes them and keeps D1 and F1.
      r = cli(['check', place.set, '--json'], { env });
      assert.is(r.code, 1, r.stderr);
      const report = JSON.parse(r.stdout);
      assert.equal(report.problems.map((p: { name: string }) => p.name), [after[0].name, after[1].name]);
      const plan = cli(['prune', place.set, '--keep-last', '2', '--dry-run', '--json'], { env });
      assert.is(plan.code, 0, plan.stderr);
      const p = JSON.parse(plan.stdout);
      assert.equal(p.removed.map((x: { name: string }) => x.name).sort(), [after[0].name, after[1].name].sort());
      assert.equal(p.broken.map((x: { problem: string }) => x.problem), [`its base ${f2Name} is missing`, `its base ${f2Name} is missing`]);
      assert.equal(p.kept.map((x: { name: string }) => x.name), [after[2].name, after[3].name]);
      assert.is(cli(['prune', place.set, '--keep-last', '2'], { env }).code, 0);
      assert.equal(listed(place.set, env).map((b) => b.name), [after[2].name, after[3].name]);
      r = cli(['check', place.set, '--read-data'], { env });
      assert.is(r.code, 0, r.stderr);
      assert.match(r.stderr, 'OK, 2 backup(s), 2 header(s) read, 2 rebuilt and integrity_checked');
    } finally {
      await place.stop();
    }
  });
}

test('a base replaced by another file, and a backup whose header is damaged: each named by list and check', () => {
  const { d, db, home } = sample();
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const env = { HOME: home };
  assert.is(cli(['backup', '--db', db, `${set}/`], { env }).code, 0);
  sql(db, "INSERT INTO sessions(name) VALUES ('x')");
  assert.is(cli(['backup', '--db', db, `${set}/`], { env }).code, 0);
  const [diff, full] = listed(set, env);
  // Another database's backup put in the base's place (a sync tool, a copy by hand).
  const otherDb = path.join(d, 'other.db');
  makeSampleDb(otherDb, { rows: 50 });
  fs.writeFileSync(path.join(set, full.name), gzipSync(fs.readFileSync(otherDb)));
  let now = listed(set, env);
  assert.is(now[0].restorable, false);
  assert.match(now[0].problem!, `its base ${full.name} is not the file it was made from`);
  // A damaged header: not gzip any more.
  const bytes = fs.readFileSync(path.join(set, diff.name));
  bytes[0] = 0x00;
  fs.writeFileSync(path.join(set, diff.name), bytes);
  now = listed(set, env);
  assert.equal(now.map((b) => b.restorable), [false, true]);
  assert.match(now[0].problem!, /not a blufio differential|damaged/);
  const r = cli(['check', set], { env });
  assert.is(r.code, 1);
  assert.match(r.stderr, `PROBLEM  ${diff.name}: `);
});

test('prune counts only restorable backups: a damaged newest full is kept aside, never the reason the good ones go (found by an attack run)', () => {
  const { d, db, home } = sample();
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const env = { HOME: home };
  const back = (...extra: string[]) => assert.is(cli(['backup', '--db', db, `${set}/`, '-q', ...extra], { env }).code, 0);
  back();
  sql(db, "INSERT INTO sessions(name) VALUES ('a1')");
  back();
  const state = fingerprint(db);
  sql(db, "INSERT INTO sessions(name) VALUES ('b')");
  back('--full');
  const [b, a1, a] = listed(set, env);
  assert.equal([b.kind, a1.kind, a.kind], ['full', 'diff', 'full']);
  // The newest full backup damaged at rest (its gzip header).
  const bytes = fs.readFileSync(path.join(set, b.name));
  bytes[0] = 0;
  bytes[1] = 0;
  fs.writeFileSync(path.join(set, b.name), bytes);
  const r = cli(['prune', `${set}/`, '--keep-last', '1', '--json'], { env });
  assert.is(r.code, 0, r.stderr);
  const p = JSON.parse(r.stdout);
  assert.equal(p.removed, [], 'nothing that restores is removed');
  assert.equal(p.broken.map((x: { name: string; removed: boolean }) => [x.name, x.removed]), [[b.name, false]]);
  assert.equal(listed(set, env).map((x) => x.name), [b.name, a1.name, a.name]);
  // A restore of the set names the one that restores; it does restore.
  const target = path.join(d, 't.db');
  const rr = cli(['restore', '--db', target, `${set}/`, '--series', 'blufio'], { env });
  assert.is(rr.code, 1);
  assert.match(rr.stderr, `the newest one before it whose base is there is ${a1.name}`);
  assert.is(cli(['restore', '--db', target, path.join(set, a1.name)], { env }).code, 0);
  assert.is(fingerprint(target), state);
});

test('a damaged base: restore and verify never suggest it, nor a differential made from it (found by an attack run)', () => {
  const { d, db, home } = sample();
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const env = { HOME: home };
  assert.is(cli(['backup', '--db', db, `${set}/`, '-q'], { env }).code, 0);
  sql(db, "INSERT INTO sessions(name) VALUES ('x')");
  assert.is(cli(['backup', '--db', db, `${set}/`, '-q'], { env }).code, 0);
  const [, full] = listed(set, env);
  const bytes = fs.readFileSync(path.join(set, full.name));
  bytes[Math.floor(bytes.length / 2)] ^= 0xff;
  fs.writeFileSync(path.join(set, full.name), bytes);
  const r = cli(['verify', `${set}/`, '--series', 'blufio'], { env });
  assert.is(r.code, 1);
  assert.match(r.stderr, 'no older backup of it can be restored either');
  assert.not.match(r.stderr, `is ${full.name}:`);
});

test('check --read-data with a key that opens nothing fails; list reads a gzip header of any length (found by an attack run)', () => {
  const { d, db, home } = sample(300);
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const env = { HOME: home };
  const key = path.join(d, 'key.txt');
  const wrong = path.join(d, 'wrong.txt');
  execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
  execFileSync('age-keygen', ['-o', wrong], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();
  assert.is(cli(['backup', '--db', db, `${set}/`, '-q', '-r', recipient], { env }).code, 0);
  let r = cli(['check', `${set}/`, '--read-data', '-i', wrong], { env });
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, 'its data could not be read to be checked: it is not encrypted to any of the given identities');
  r = cli(['check', `${set}/`, '--read-data'], { env });
  assert.is(r.code, 1, 'asked to read the data, and nothing could be: not OK');
  assert.is(cli(['check', `${set}/`, '--read-data', '-i', key], { env }).code, 0);
  // A valid .db.gz whose FNAME field is 20,000 bytes long.
  const plainSet = path.join(d, 'plain');
  fs.mkdirSync(plainSet);
  const raw = path.join(d, 'raw.db');
  fs.copyFileSync(db, raw);
  sql(raw, 'PRAGMA journal_mode=DELETE');
  const gz = gzipSync(fs.readFileSync(raw));
  const header = Buffer.from(gz.subarray(0, 10));
  header[3] |= 0x08; // FNAME
  fs.writeFileSync(path.join(plainSet, 'blufio-20261201T000000Z.db.gz'), Buffer.concat([header, Buffer.alloc(20000, 0x78), Buffer.from([0]), gz.subarray(10)]));
  const [only] = listed(plainSet, env);
  assert.is(only.restorable, true, only.problem);
  assert.is(cli(['check', plainSet, '--read-data'], { env }).code, 0);
});

test('check --read-data finds damage that headers cannot show; --read-data-subset reads a share', () => {
  const { d, db, home } = sample(3000);
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const env = { HOME: home };
  assert.is(cli(['backup', '--db', db, `${set}/`], { env }).code, 0);
  const [full] = listed(set, env);
  // A page in the middle changed, the gzip stream remade: every header reads as it should.
  const plain = gunzipSync(fs.readFileSync(path.join(set, full.name)));
  const pageSize = plain.readUInt16BE(16);
  plain.fill(0x5a, pageSize * 5 + 8, pageSize * 6 - 8);
  fs.writeFileSync(path.join(set, full.name), gzipSync(plain));
  assert.is(cli(['check', set], { env }).code, 0, 'headers alone: nothing to see');
  for (const args of [['--read-data'], ['--read-data-subset', '100%']]) {
    const r = cli(['check', set, '--json', ...args], { env });
    assert.is(r.code, 1, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.is(j.dataRead, 1);
    assert.is(j.problems[0].name, full.name);
    assert.match(j.problems[0].problem, /damaged|SHA-256|integrity|malformed/);
  }
  const bad = cli(['check', set, '--read-data-subset', '0%'], { env });
  assert.equal([bad.code, bad.stderr], [2, 'error: --read-data-subset takes a share above 0 and at most 100%, not "0%" (e.g. --read-data-subset 10%)\n']);
});

// Node only: faketime preloads itself into the runtime, and Deno crashed under it now and then
// ("Caught Segmentation fault" before our code ran: 1 start in 60 here under load, once in CI).
// The clock logic is the same JavaScript under every runtime.
for (const runtimeName of runtimesOf(['node'])) {
  test(`${runtimeName}: the clock steps back less than five minutes (faketime): the next backup is named after the newest, and the newest state is restored`, () => {
    if (!faketime()) return skip('faketime is not installed (apt-get install faketime)');
    const runtime = RUNTIMES[runtimeName];
    const { d, db, home } = sample();
    const set = path.join(d, 'set');
    fs.mkdirSync(set);
    const env = { HOME: home };
    const run = (offset: string) => {
      const r = spawnSync('faketime', ['-f', offset, ...runtime, CLI, 'backup', '--db', db, `${set}/`, '--json'], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: home } });
      assert.is(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { path: string; kind: string; warning: string | null };
    };
    const full = run('+0');
    sql(db, "INSERT INTO sessions(name) VALUES ('after the step back')");
    const diff = run('-3m');
    assert.is(diff.kind, 'diff');
    assert.match(diff.warning ?? '', `is behind the set's newest backup ${path.basename(full.path)}: this one is named after it`);
    const names = listed(set, env).map((b) => b.name);
    assert.equal(names, [path.basename(diff.path), path.basename(full.path)], 'the differential sorts after its base');
    const target = path.join(d, 'restored.db');
    const r = cli(['restore', '--db', target, `${set}/`, '--series', 'blufio'], { env });
    assert.is(r.code, 0, r.stderr);
    assert.is(fingerprint(target), fingerprint(db), 'the newest state, not the older one');
    const plan = JSON.parse(cli(['prune', `${set}/`, '--keep-last', '1', '--dry-run', '--json'], { env }).stdout);
    assert.equal(plan.kept.map((k: { name: string }) => k.name), names, 'the newest is the differential (its base stays with it)');
  });
}

test('off-site means encrypted: s3:// without recipients is refused; --unencrypted, backup.unencrypted, BLUFIO_AGE_RECIPIENTS(_FILE); unknown BLUFIO_* named', async () => {
  const server = await startS3Server();
  try {
    const { d, db, home } = sample(200);
    const env = { ...s3Env(server), HOME: home };
    const hint = 'give recipients to encrypt to (--recipient age1…, --recipients-file <file>, backup.age_recipients[_file] in blufio.toml, or BLUFIO_AGE_RECIPIENTS / BLUFIO_AGE_RECIPIENTS_FILE; blufio keygen makes a key), or say --unencrypted (backup.unencrypted = true) to send it unencrypted on purpose';
    for (const dest of ['s3://backups/enc/b.db.gz', 's3://backups/enc/', 'S3://backups/enc2/']) {
      const r = cli(['backup', '--db', db, dest], { env });
      assert.equal([r.code, r.stderr], [2, `error: refusing to send an unencrypted backup off this machine to ${dest} (${hint})\n`]);
    }
    // A guessed variable is named, with the one that is read; the backup is still refused.
    const key = path.join(d, 'key.txt');
    execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();
    let r = cli(['backup', '--db', db, 's3://backups/enc/'], { env: { ...env, BLUFIO_BACKUP_AGE_RECIPIENTS: recipient } });
    assert.is(r.code, 2);
    assert.match(r.stderr, 'warning: environment: BLUFIO_BACKUP_AGE_RECIPIENTS is not read by blufio backup (did you mean BLUFIO_AGE_RECIPIENTS?)\n');
    for (const [typo, meant] of [['BLUFIO_RECIPIENTS', 'BLUFIO_AGE_RECIPIENTS'], ['BLUFIO_RECIPIENTS_FILE', 'BLUFIO_AGE_RECIPIENTS_FILE'], ['BLUFIO_IDENTITY_FILE', 'BLUFIO_AGE_IDENTITY_FILE']]) {
      r = cli(['backup', '--db', db, path.join(d, `${typo}.db`)], { env: { ...env, [typo]: recipient } });
      assert.match(r.stderr, `warning: environment: ${typo} is not read by blufio backup (did you mean ${meant}?)\n`);
    }
    assert.not.match(cli(['backup', '--db', db, path.join(d, 'agent.db')], { env: { ...env, BLUFIO_AGENT_MODEL: 'x', BLUFIO_SERVER_PORT: '1' } }).stderr, 'warning', "the server's own variables are not ours to judge");
    // The environment alone: every object is .age, and age decrypts it to the database.
    r = cli(['backup', '--db', db, 's3://backups/enc/', '--json'], { env: { ...env, BLUFIO_AGE_RECIPIENTS: recipient } });
    assert.is(r.code, 0, r.stderr);
    assert.match(JSON.parse(r.stdout).path, /\.db\.gz\.age$/);
    fs.writeFileSync(path.join(d, 'recipients.txt'), `# ours\n${recipient}\n`);
    r = cli(['backup', '--db', db, 's3://backups/enc/b.db.gz.age', '--json'], { env: { ...env, BLUFIO_AGE_RECIPIENTS_FILE: path.join(d, 'recipients.txt') } });
    assert.is(r.code, 0, r.stderr);
    const other = new AwsClient({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', service: 's3', region: 'us-east-1' });
    const object = Buffer.from(await (await other.fetch(`http://127.0.0.1:${server.port}/backups/enc/b.db.gz.age`)).arrayBuffer());
    const plain = gunzipSync(execFileSync('age', ['-d', '-i', key], { input: object }));
    assert.is(plain.subarray(0, 15).toString(), 'SQLite format 3');
    r = cli(['backup', '--db', db, 's3://backups/enc/c.db.gz'], { env: { ...env, BLUFIO_AGE_RECIPIENTS: '  ' } });
    assert.is(r.code, 2);
    assert.match(r.stderr, 'error: BLUFIO_AGE_RECIPIENTS is set but empty');
    // Opting out, on purpose: the flag, or blufio.toml.
    assert.is(cli(['backup', '--db', db, 's3://backups/plain/a.db.gz', '--unencrypted'], { env }).code, 0);
    const toml = path.join(d, 'blufio.toml');
    fs.writeFileSync(toml, '[backup]\nunencrypted = true\n');
    r = cli(['backup', '--db', db, 's3://backups/plain/', '--config', toml], { env });
    assert.is(r.code, 0, r.stderr);
    // Local destinations stay as they were.
    assert.is(cli(['backup', '--db', db, path.join(d, 'local.db')], { env }).code, 0);
  } finally {
    await server.stop();
  }
});

test('prune uses [backup.retention] when no --keep-* is given; its dry run is what backup --prune removes', () => {
  const { d, db, home } = sample(200);
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const toml = path.join(d, 'blufio.toml');
  fs.writeFileSync(toml, '[backup.retention]\nkeep_last = 2\n');
  const env = { HOME: home };
  for (let i = 0; i < 4; i++) {
    sql(db, `INSERT INTO sessions(name) VALUES ('p${i}')`);
    assert.is(cli(['backup', '--db', db, `${set}/`, '--full'], { env }).code, 0);
  }
  const plan = cli(['prune', `${set}/`, '--config', toml, '--dry-run', '--json'], { env });
  assert.is(plan.code, 0, plan.stderr);
  const p = JSON.parse(plan.stdout);
  assert.is(p.policy, 'backup.retention');
  const all = listed(set, env).map((b) => b.name);
  assert.equal(p.removed.map((x: { name: string }) => x.name), all.slice(2));
  assert.match(cli(['prune', `${set}/`, '--config', toml, '--dry-run'], { env }).stderr, 'Policy from [backup.retention]: keep_last = 2\n');
  // backup --prune removes exactly that (and its own new backup pushes one more out).
  const b = cli(['backup', '--db', db, `${set}/`, '--full', '--prune', '--config', toml, '--json'], { env });
  assert.is(b.code, 0, b.stderr);
  assert.equal(JSON.parse(b.stdout).pruned.removed.sort(), all.slice(1).sort());
  // Neither flags nor the file: a usage error.
  const none = cli(['prune', `${set}/`], { env });
  assert.is(none.code, 2);
  assert.match(none.stderr, 'error: prune needs a policy: no --keep-* rule was given and [backup.retention] in blufio.toml has none');
});

test('backup --prune whose prune fails: the backup is reported written, JSON ok with prune.ok false, exit 1, /fail pinged with the reason', async () => {
  const hits: Array<{ method: string; url: string; body: string }> = [];
  const monitor = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      hits.push({ method: req.method ?? '', url: req.url ?? '', body });
      res.end('OK');
    });
  });
  await new Promise<void>((r) => monitor.listen(0, '127.0.0.1', r));
  try {
    const { d, db, home } = sample(200);
    const set = path.join(d, 'set');
    fs.mkdirSync(set);
    const toml = path.join(d, 'blufio.toml');
    fs.writeFileSync(toml, '[backup.retention]\nkeep_last = 1\n');
    // A backup named a year ahead (a clock that jumped): prune refuses to count from it.
    assert.is(cli(['backup', '--db', db, `${set}/`], { env: { HOME: home } }).code, 0);
    const [only] = listed(set, { HOME: home });
    const ahead = only.name.replace(/^blufio-(\d{4})/, (_, y) => `blufio-${Number(y) + 1}`);
    fs.renameSync(path.join(set, only.name), path.join(set, ahead));
    const url = `http://127.0.0.1:${(monitor.address() as net.AddressInfo).port}/uuid`;
    const r = await cliAsync(['backup', '--db', db, `${set}/`, '--prune', '--config', toml, '--json', '--ping', url], { env: { HOME: home } });
    assert.is(r.code, 1, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.is(j.ok, true);
    assert.ok(fs.existsSync(j.path), 'the backup is there');
    assert.is(j.prune.ok, false);
    assert.is(j.prune.error.code, 'E_USAGE');
    assert.match(r.stderr, `error: the backup was written (${j.path}), but pruning failed: `);
    assert.is(hits.length, 1);
    assert.equal([hits[0].method, hits[0].url], ['POST', '/uuid/fail']);
    assert.match(hits[0].body, 'the backup was written');
  } finally {
    monitor.close();
  }
});

test('messages name what the user knows: an S3 set member, a damaged age header, a clock skewed against the server, a connection cut mid-upload', async () => {
  const server = await startS3Server();
  try {
    const { d, db, home } = sample(2000);
    const env = { ...s3Env(server), HOME: home };
    const key = path.join(d, 'key.txt');
    execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();
    let r = cli(['backup', '--db', db, 's3://backups/m/', '--recipient', recipient, '--json'], { env });
    assert.is(r.code, 0, r.stderr);
    const url = JSON.parse(r.stdout).path as string;
    r = cli(['restore', '--db', path.join(d, 'x.db'), 's3://backups/m/', '--series', 'blufio'], { env });
    assert.is(r.code, 1);
    assert.is(r.stderr, `error: ${url} is encrypted (age); no identity was given to decrypt it (pass --identity <key file>, or set backup.age_identity_file in blufio.toml or BLUFIO_AGE_IDENTITY_FILE)\n`);
    assert.not.match(r.stderr, /\/tmp|object-/);
    // An .age file whose first line was damaged.
    const local = path.join(d, 'b.db.gz.age');
    assert.is(cli(['backup', '--db', db, local, '--recipient', recipient], { env }).code, 0);
    const bytes = fs.readFileSync(local);
    bytes[3] = 0x2a;
    fs.writeFileSync(local, bytes);
    r = cli(['verify', local, '--identity', key], { env });
    assert.is(r.code, 1);
    assert.match(r.stderr + r.stdout, 'is an age file whose header is damaged');
    // This machine's clock 20 minutes ahead of the server's.
    if (faketime()) {
      const skewed = spawnSync('faketime', ['-f', '+20m', process.execPath, CLI, 'list', 's3://backups/m/'], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
      assert.is(skewed.status, 2, skewed.stderr);
      assert.match(skewed.stderr, /^error: the S3 server refused the request because this machine's clock and the server's differ by 1[12]\d\d s \(this machine is ahead\) \(RequestTimeTooSkewed/);
    } else {
      skip('faketime is not installed: the skewed clock was not tried');
    }
    // A connection that is cut after 64 KiB of each request's body (a proxy in between).
    const proxy = net.createServer((down) => {
      const up = net.connect(server.port, '127.0.0.1');
      let sent = 0;
      down.on('data', (c) => {
        sent += c.length;
        if (sent > 64 * 1024) {
          down.destroy();
          up.destroy();
          return;
        }
        up.write(c);
      });
      up.on('data', (c) => down.write(c));
      up.on('error', () => down.destroy());
      down.on('error', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    await new Promise<void>((res) => proxy.listen(0, '127.0.0.1', res));
    try {
      const port = (proxy.address() as net.AddressInfo).port;
      r = await cliAsync(['backup', '--db', db, 's3://backups/cut/b.db', '--unencrypted', '--retries', '2'], { env: { ...env, AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}` } });
      assert.is(r.code, 1);
      assert.match(r.stderr, /^error: the connection to the S3 endpoint http:\/\/127\.0\.0\.1:\d+ was cut while sending s3:\/\/backups\/cut\/b\.db after \d+ of \d+ bytes; it was tried 2 times/);
    } finally {
      proxy.close();
    }
  } finally {
    await server.stop();
  }
});

test.run();
