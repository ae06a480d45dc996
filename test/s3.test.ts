/**
 * Object storage against a real S3-compatible server on 127.0.0.1 (@20minutes/s3rver in its own
 * process: it checks SigV4 signatures and supports multipart), under Node, Deno and Bun. Objects
 * are checked by another client (aws4fetch, signed requests of its own) and native sqlite3.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AwsClient } from 'aws4fetch';
import { backup, inspect, restore } from '../src/index.ts';
import { resolveS3 } from '../src/storage/s3/client.ts';
import { CLI, RUNTIMES, runtimesOf, cleanup, s3Env, startS3Server as startServer, type S3Server as Server, cli as runCli, fingerprint, makeSampleDb, rejects, sql, tmpdir } from './helpers.ts';
import { createLiveDb, invariantHolds, startWriter } from '../testkit/writer.ts';

const test = suite('s3');

let server: Server;
const env = () => s3Env(server);
/** Another client: plain signed requests of its own, for checking what is stored. */
const other = () => new AwsClient({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', service: 's3', region: 'us-east-1', retries: 0 });
const objectUrl = (key: string) => `http://127.0.0.1:${server.port}/backups/${key}`;

async function fetchObject(key: string, to: string): Promise<void> {
  const res = await other().fetch(objectUrl(key));
  assert.is(res.status, 200, `GET ${key}`);
  fs.writeFileSync(to, Buffer.from(await res.arrayBuffer()));
}
const objectStatus = async (key: string) => (await other().fetch(objectUrl(key), { method: 'HEAD' })).status;

test.before(async () => {
  server = await startServer();
});
test.after(async () => {
  await server.stop();
  cleanup();
});

function sample(rows = 2000) {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows, wal: true });
  return { d, db };
}

/** A free TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

for (const [runtimeName, runtime] of Object.entries(RUNTIMES)) {
  const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, { runtime, env: { ...env(), ...extra } });

  test(`${runtimeName}: .db, .db.gz and .db.gz.age to s3:// and back; the objects read by another client are the database`, async () => {
    const { d, db } = sample();
    const expected = fingerprint(db);
    execFileSync('age-keygen', ['-o', path.join(d, 'key.txt')], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', path.join(d, 'key.txt')], { encoding: 'utf8' }).trim();
    for (const name of ['b.db', 'b.db.gz', 'b.db.gz.age']) {
      const key = `${runtimeName}/${name}`;
      const url = `s3://backups/${key}`;
      const r = cli(['backup', '--db', db, url, '--json', ...(name.endsWith('.age') ? ['--recipient', recipient] : ['--unencrypted'])]);
      assert.is(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.is(j.path, url);
      assert.is(j.compressed, name.includes('.gz'));
      const raw = path.join(d, `raw-${name}`);
      await fetchObject(key, raw);
      assert.is(fs.statSync(raw).size, j.bytes);
      let plain = raw;
      if (name.endsWith('.age')) execFileSync('age', ['-d', '-i', path.join(d, 'key.txt'), '-o', (plain = `${raw}.dec`), raw]);
      if (name.includes('.gz')) fs.writeFileSync((plain = `${raw}.db`), execFileSync('gzip', ['-dc', name.endsWith('.age') ? `${raw}.dec` : raw], { maxBuffer: 1 << 28 }));
      assert.is(sql(plain, 'PRAGMA integrity_check'), 'ok');
      assert.is(fingerprint(plain), expected);
      const ident = name.endsWith('.age') ? ['--identity', path.join(d, 'key.txt')] : [];
      const v = cli(['verify', url, '--json', ...ident]);
      assert.is(v.code, 0, v.stderr);
      assert.is(JSON.parse(v.stdout).path, url);
      const target = path.join(d, `restored-${name}.db`);
      const rr = cli(['restore', '--db', target, url, ...ident]);
      assert.is(rr.code, 0, rr.stderr);
      assert.match(rr.stderr, `restored from ${url}`);
      assert.is(fingerprint(target), expected);
    }
    // Without --force an existing object is refused and left as it is; with it, replaced.
    const again = cli(['backup', '--unencrypted', '--db', db, `s3://backups/${runtimeName}/b.db`]);
    assert.is(again.code, 1);
    assert.is(again.stderr, `error: s3://backups/${runtimeName}/b.db already exists (choose another key, or add --force to replace it)\n`);
    assert.is(cli(['backup', '--unencrypted', '--db', db, `s3://backups/${runtimeName}/b.db`, '--force']).code, 0);
  });

  test(`${runtimeName}: wrong secret, missing bucket, missing key, unreachable endpoint, no credentials: one line each, exit 1`, async () => {
    const { db } = sample(50);
    let r = cli(['backup', '--unencrypted', '--db', db, `s3://backups/${runtimeName}/x.db`], { AWS_SECRET_ACCESS_KEY: 'not-the-secret-9f2c' });
    assert.is(r.code, 1);
    assert.is(r.stderr, 'error: the S3 server refused the signature (SignatureDoesNotMatch): the secret key does not match the access key (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) (check AWS_SECRET_ACCESS_KEY (or the profile\'s aws_secret_access_key))\n');
    r = cli(['backup', '--unencrypted', '--db', db, 's3://no-such-bucket/x.db']);
    assert.is(r.code, 1);
    assert.is(r.stderr, `error: bucket no-such-bucket does not exist or is not yours (at http://127.0.0.1:${server.port}) (create it first, or check the bucket name and the endpoint)\n`);
    r = cli(['restore', '--db', db, `s3://backups/${runtimeName}/missing.db`]);
    assert.is(r.code, 1);
    assert.is(r.stderr, `error: no object at s3://backups/${runtimeName}/missing.db (check the key)\n`);
    const port = await closedPort();
    r = cli(['verify', `s3://backups/${runtimeName}/x.db`], { AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}` });
    assert.is(r.code, 1);
    assert.is(r.stderr, `error: cannot reach the S3 endpoint http://127.0.0.1:${port}: connection refused (check the endpoint (AWS_ENDPOINT_URL_S3, or endpoint in [backup.s3]) and that the server is up)\n`);
    r = runCli(['backup', '--unencrypted', '--db', db, `s3://backups/${runtimeName}/x.db`], { runtime, env: { AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${server.port}` } });
    assert.is(r.code, 2, 'a configuration error: the job never started');
    assert.match(r.stderr, /^error: object storage needs credentials: no credentials were found \(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put them under \[default\] in .*\/\.aws\/credentials/);
    assert.is(await objectStatus(`${runtimeName}/x.db`), 404);
  });
}

test('keys with . or .. segments, credentials in the endpoint, half a key pair, and an endpoint that is not S3 are refused', async () => {
  const { db } = sample(50);
  let r = runCli(['backup', '--unencrypted', '--db', db, 's3://backups/sub/../top.db'], { env: env() });
  assert.is(r.code, 2);
  assert.match(r.stderr, 'has a "." or ".." segment');
  r = runCli(['backup', '--unencrypted', '--db', db, 's3://backups/x.db'], { env: { ...env(), AWS_ENDPOINT_URL_S3: `http://AKID:SECRETPW@127.0.0.1:${server.port}` } });
  assert.is(r.code, 2);
  assert.not.match(r.stderr, 'SECRETPW');
  assert.match(r.stderr, 'has credentials in it');
  r = runCli(['backup', '--unencrypted', '--db', db, 's3://backups/x.db'], { env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${server.port}` } });
  assert.is(r.code, 2);
  assert.match(r.stderr, 'AWS_SECRET_ACCESS_KEY is not set, but AWS_ACCESS_KEY_ID is');
  // A web server that answers 200 to everything (a captive portal, a wrong URL).
  const http = await import('node:http');
  const web = http.createServer((_req, res) => res.end('<html>hello</html>'));
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  try {
    const port = (web.address() as net.AddressInfo).port;
    const child = spawn(process.execPath, [CLI, 'backup', '--unencrypted', '--db', db, 's3://backups/x.db'], { env: { ...process.env, ...env(), AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}` } });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    assert.is(await new Promise((resolve) => child.on('exit', resolve)), 1);
    assert.match(stderr, 'does not answer like an S3 server');
  } finally {
    web.close();
  }
});

test('secrets never appear in any output, --json or debug trace', () => {
  const { db } = sample(50);
  const secret = 'SECRET-never-shown-7d1e';
  for (const args of [['backup', '--unencrypted', '--db', db, 's3://backups/s/x.db'], ['verify', 's3://backups/s/x.db'], ['backup', '--unencrypted', '--db', db, 's3://no-such-bucket/x.db']]) {
    const r = runCli([...args, '--json'], { env: { ...env(), AWS_SECRET_ACCESS_KEY: secret, AWS_SESSION_TOKEN: `${secret}-token`, BLUFIO_DEBUG: '1' } });
    assert.is(r.code, 1);
    assert.not.ok(r.stdout.includes(secret) || r.stderr.includes(secret), `${args.join(' ')}: ${r.stdout}${r.stderr}`);
  }
});

test('settings: [backup.s3] in blufio.toml, then ~/.aws files and AWS_PROFILE, then the environment', () => {
  const home = tmpdir();
  fs.mkdirSync(path.join(home, '.aws'));
  fs.writeFileSync(path.join(home, '.aws', 'credentials'), '[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = defaultsecret\n\n[backup]\naws_access_key_id = BACKUPKEY\naws_secret_access_key = backupsecret\n');
  fs.writeFileSync(path.join(home, '.aws', 'config'), '[profile backup]\nregion = eu-central-1\nendpoint_url = https://s3.example.net\n');
  let c = resolveS3({ endpoint: 'https://toml.example', region: 'auto' }, {}, home);
  assert.equal([c.endpoint, c.region, c.pathStyle, c.accessKeyId], ['https://toml.example', 'auto', true, 'DEFAULTKEY']);
  c = resolveS3({ endpoint: 'https://toml.example', profile: 'backup' }, {}, home);
  assert.equal([c.endpoint, c.region, c.accessKeyId, c.credentialSource], ['https://s3.example.net', 'eu-central-1', 'BACKUPKEY', `profile backup in ${path.join(home, '.aws', 'credentials')}`]);
  c = resolveS3({ profile: 'backup' }, { AWS_ACCESS_KEY_ID: 'ENVKEY', AWS_SECRET_ACCESS_KEY: 'envsecret', AWS_REGION: 'us-west-2', AWS_ENDPOINT_URL: 'http://127.0.0.1:9000' }, home);
  assert.equal([c.endpoint, c.region, c.accessKeyId, c.pathStyle], ['http://127.0.0.1:9000', 'us-west-2', 'ENVKEY', true]);
  c = resolveS3({}, { AWS_ACCESS_KEY_ID: 'K', AWS_SECRET_ACCESS_KEY: 'S', AWS_DEFAULT_REGION: 'ap-south-1' }, tmpdir());
  assert.equal([c.endpoint, c.pathStyle], ['https://s3.ap-south-1.amazonaws.com', false]);
  c = resolveS3({ forcePathStyle: false }, { AWS_ACCESS_KEY_ID: 'K', AWS_SECRET_ACCESS_KEY: 'S', AWS_ENDPOINT_URL_S3: 'https://acct.r2.cloudflarestorage.com' }, tmpdir());
  assert.is(c.pathStyle, false);
  assert.throws(() => resolveS3({}, { AWS_ACCESS_KEY_ID: 'K' }, tmpdir()), /AWS_SECRET_ACCESS_KEY is not set/);
});

test('blufio.toml [backup.s3] endpoint and a profile from ~/.aws reach the server; keys in blufio.toml are refused', () => {
  const { d, db } = sample(100);
  const home = tmpdir();
  fs.mkdirSync(path.join(home, '.aws'));
  fs.writeFileSync(path.join(home, '.aws', 'credentials'), '[blufio]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n');
  const toml = path.join(d, 'blufio.toml');
  fs.writeFileSync(toml, `[storage]\ndatabase_path = "${db}"\n[backup.s3]\nendpoint = "http://127.0.0.1:${server.port}"\nregion = "us-east-1"\nprofile = "blufio"\n`);
  let r = runCli(['backup', '--unencrypted', 's3://backups/toml/b.db.gz', '--config', toml], { env: { HOME: home } });
  assert.is(r.code, 0, r.stderr);
  fs.appendFileSync(toml, 'secret_access_key = "oops"\n');
  r = runCli(['backup', '--unencrypted', 's3://backups/toml/c.db.gz', '--config', toml], { env: { HOME: home } });
  assert.is(r.code, 2);
  assert.match(r.stderr, 'unknown key backup.s3.secret_access_key (keys do not go in blufio.toml');
  assert.not.match(r.stderr, 'oops');
});

test('a 100 MB+ database goes up in parts and comes back whole', async () => {
  const d = tmpdir();
  const db = path.join(d, 'big.db');
  sql(db, `PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB); INSERT INTO t(b) SELECT randomblob(3000) FROM generate_series(1, 36000);`);
  assert.ok(fs.statSync(db).size > 100 * 2 ** 20);
  const r = runCli(['backup', '--unencrypted', '--db', db, 's3://backups/big/b.db', '--json'], { env: env() });
  assert.is(r.code, 0, r.stderr);
  assert.ok(JSON.parse(r.stdout).bytes > 100 * 2 ** 20);
  const raw = path.join(d, 'raw.db');
  await fetchObject('big/b.db', raw);
  assert.is(sql(raw, 'PRAGMA quick_check; SELECT count(*), sum(length(b)) FROM t'), sql(db, "SELECT 'ok'; SELECT count(*), sum(length(b)) FROM t"));
  fs.rmSync(raw);
  const target = path.join(d, 'restored.db');
  const rr = runCli(['restore', '--db', target, 's3://backups/big/b.db'], { env: env() });
  assert.is(rr.code, 0, rr.stderr);
  assert.is(sql(target, 'SELECT count(*), sum(length(b)) FROM t'), sql(db, 'SELECT count(*), sum(length(b)) FROM t'));
});

// Under Bun, parts go up through fetch (src/storage/s3/client.ts): its failures are checked too.
for (const runtimeName of runtimesOf(['node', 'bun']))
test(`${runtimeName}: the server killed mid-upload: no object at the key; the next run aborts the leftover upload and succeeds`, async () => {
  const runtime = RUNTIMES[runtimeName];
  const own = await startServer();
  const d = tmpdir();
  const db = path.join(d, 'big.db');
  sql(db, `CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB); INSERT INTO t(b) SELECT randomblob(3000) FROM generate_series(1, 12000);`);
  const state = path.join(d, 'state');
  const e = { ...env(), AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${own.port}`, XDG_STATE_HOME: state };
  const uploads = path.join(state, 'blufio', 'uploads');
  const child = spawn(runtime[0], [...runtime.slice(1), CLI, 'backup', '--unencrypted', '--db', db, 's3://backups/k/b.db', '--quiet'], { env: { ...process.env, ...e }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  // Killed once the multipart upload has started (the journal holds it).
  for (let i = 0; i < 3000 && !(fs.existsSync(uploads) && fs.readdirSync(uploads).length > 0); i++) await new Promise((r) => setTimeout(r, 5));
  await own.stop();
  const code = await new Promise((r) => child.on('exit', r));
  assert.is(code, 1);
  assert.match(stderr, /^error: cannot reach the S3 endpoint .*|^error: .*S3/);
  const restarted = await startServer(own.dir, own.port);
  try {
    const head = await other().fetch(`http://127.0.0.1:${own.port}/backups/k/b.db`, { method: 'HEAD' });
    assert.is(head.status, 404, 'no object at the key');
    const r = runCli(['backup', '--unencrypted', '--db', db, 's3://backups/k/b.db'], { env: e, runtime });
    assert.is(r.code, 0, r.stderr);
    assert.equal(fs.readdirSync(uploads), [], 'the leftover upload was aborted and forgotten');
  } finally {
    await restarted.stop();
  }
});

test('kill -9 mid-upload: the journal keeps the upload; the next run to the prefix aborts it (this server cannot: forgets it)', async () => {
  const d = tmpdir();
  const db = path.join(d, 'big.db');
  sql(db, `CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB); INSERT INTO t(b) SELECT randomblob(3000) FROM generate_series(1, 12000);`);
  const state = path.join(d, 'state');
  const e = { ...env(), XDG_STATE_HOME: state };
  const uploads = path.join(state, 'blufio', 'uploads');
  const child = spawn(process.execPath, [CLI, 'backup', '--unencrypted', '--db', db, 's3://backups/k9/b.db', '--quiet'], { env: { ...process.env, ...e }, stdio: 'ignore' });
  for (let i = 0; i < 3000 && !(fs.existsSync(uploads) && fs.readdirSync(uploads).length > 0); i++) await new Promise((r) => setTimeout(r, 5));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  assert.is(fs.readdirSync(uploads).length, 1);
  assert.is(await objectStatus('k9/b.db'), 404);
  const r = runCli(['backup', '--unencrypted', '--db', db, 's3://backups/k9/other.db'], { env: e });
  assert.is(r.code, 0, r.stderr);
  assert.equal(fs.readdirSync(uploads), []);
  assert.is(await objectStatus('k9/b.db'), 404);
});

test('a live native writer during a backup to S3: the object is a committed state', async () => {
  const d = tmpdir();
  const db = path.join(d, 'live.db');
  createLiveDb(db, { mode: 'wal', tps: 300, initialRows: 1500, autocheckpoint: 100 });
  const writer = startWriter(db, { mode: 'wal', tps: 300, autocheckpoint: 100 });
  try {
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 3; i++) {
      const r = await backup(db, `s3://backups/live/b${i}.db`, { env: env(), sleepMs: 0, unencrypted: true });
      assert.is(r.path, `s3://backups/live/b${i}.db`);
      const raw = path.join(d, `raw${i}.db`);
      await fetchObject(`live/b${i}.db`, raw);
      assert.is(sql(raw, 'PRAGMA integrity_check'), 'ok');
      assert.ok(invariantHolds(raw), `backup ${i} is a committed state`);
    }
  } finally {
    await writer.stop();
  }
});

test('objects another client uploaded restore and verify; library API with explicit keys', async () => {
  const { d, db } = sample(300);
  const copy = path.join(d, 'copy.db');
  sql(db, `VACUUM INTO '${copy}'`);
  const put = await other().fetch(objectUrl('theirs/copy.db'), { method: 'PUT', body: fs.readFileSync(copy) });
  assert.is(put.status, 200);
  const s3 = { endpoint: `http://127.0.0.1:${server.port}`, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const v = await inspect('s3://backups/theirs/copy.db', { s3, env: {} });
  assert.is(v.ok, true);
  assert.is(v.path, 's3://backups/theirs/copy.db');
  const target = path.join(d, 'target.db');
  const r = await restore(target, 's3://backups/theirs/copy.db', { s3, env: {} });
  assert.is(r.path, 's3://backups/theirs/copy.db');
  assert.is(fingerprint(target), fingerprint(db));
  // A damaged object is a verdict, named by its URL, and restores nothing.
  const bytes = fs.readFileSync(copy);
  await other().fetch(objectUrl('theirs/cut.db'), { method: 'PUT', body: bytes.subarray(0, 1000) });
  const bad = await inspect('s3://backups/theirs/cut.db', { s3, env: {} });
  assert.is(bad.ok, false);
  assert.ok(bad.problems.every((p) => !p.includes('blufio-download-')), bad.problems.join(' '));
  await rejects(restore(target, 's3://backups/theirs/cut.db', { s3, env: {} }), 'E_CORRUPT', /^s3:\/\/backups\/theirs\/cut.db is truncated/);
  assert.is(fingerprint(target), fingerprint(db));
  void CLI;
});

test.run();
