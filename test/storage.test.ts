/**
 * The storage seam (src/storage/): one conformance suite that every store passes — restic's
 * internal/backend/test is the model — run against a folder, the signature-checking S3 test
 * server (s3rver) and moto's server, a second S3 implementation. Then locate(), the one place
 * that reads what the user typed, including the spellings that once went astray (S3://…).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlufioError } from '../src/errors.ts';
import { locate, openStore, splitFile, canonicalSet, type Store } from '../src/storage/index.ts';
import type { StoredFile } from '../src/storage/store.ts';
import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { cleanup, cli, cliAsync, makeSampleDb, s3Env, skip, startMotoServer, startS3Server, tmpdir, type S3Server } from './helpers.ts';

/** A way to make empty stores of one kind. */
interface Kind {
  name: string;
  /** A new, empty store, and the text that names it. */
  fresh(): { store: Store; text: string };
  /** The store at `text` (with the kind's credentials). */
  open(text: string): Store;
  stop(): Promise<void>;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function localFile(bytes: Uint8Array): string {
  const f = path.join(tmpdir(), 'body');
  fs.writeFileSync(f, bytes);
  return f;
}

/** A packed body: the file's bytes in pieces of `piece`, each xor'ed with 0x5a (any transform will do). */
function xorBody(file: string, piece = 64 * 1024) {
  return {
    file,
    pack: {
      phase: 'compress' as const,
      async *chunks(onRead?: (n: number) => void) {
        const all = fs.readFileSync(file);
        const buf = new Uint8Array(piece);
        for (let at = 0; at < all.length; at += piece) {
          const n = Math.min(piece, all.length - at);
          for (let i = 0; i < n; i++) buf[i] = all[at + i] ^ 0x5a;
          onRead?.(at + n);
          yield buf.subarray(0, n);
        }
      },
    },
  };
}

/** A body of an 8 MiB file whose packed bytes are what `chunks` yields. */
const bodyOf = (chunks: () => AsyncGenerator<Uint8Array>) => ({ file: localFile(randomBytes(8 * 1024 * 1024)), pack: { phase: 'compress' as const, chunks } });

const xor = (b: Uint8Array) => Buffer.from(b.map((x) => x ^ 0x5a));

/** A listing's names and sizes (their times are checked by the test of the store's clock). */
const nameAndSize = (f: StoredFile | null) => f && { name: f.name, bytes: f.bytes };
const listed = async (store: Store) => (await store.list()).map(nameAndSize);

async function content(store: Store, name: string): Promise<Buffer> {
  const work = tmpdir();
  return fs.readFileSync(await store.fetch(name, work));
}

async function rejects(p: Promise<unknown>, code: string): Promise<BlufioError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, BlufioError, String(e));
    assert.is((e as BlufioError).code, code, (e as Error).message);
    return e as BlufioError;
  }
  assert.unreachable(`expected ${code}`);
  throw new Error('unreachable');
}

function conformance(kind: () => Promise<Kind | null>, label: string): void {
  const test = suite(`store conformance: ${label}`);
  let k: Kind | null = null;
  test.before(async () => {
    k = await kind();
  });
  test.after(async () => {
    await k?.stop();
  });
  test.after.each(cleanup);
  const run = (name: string, fn: (store: Store, text: string) => Promise<void>) =>
    test(name, async () => {
      if (!k) return skip(`${label} is not installed here (.ci/run installs it)`);
      const { store, text } = k.fresh();
      await fn(store, text);
    });

  run('an empty store lists nothing; names are said as the user knows them', async (store, text) => {
    assert.equal(await listed(store), []);
    const where = store.where('x.db.gz');
    if (text.startsWith('s3://')) assert.is(where, `${text}x.db.gz`);
    else assert.is(where, path.join(path.resolve(text), 'x.db.gz'));
  });

  run('the store\'s clock, and the times of its files as listed and stat()ed, are this machine\'s within seconds (the test servers run here); reading the clock leaves nothing behind', async (store) => {
    const t0 = Date.now();
    const clock = await store.clock();
    const t1 = Date.now();
    assert.ok(clock !== null, 'a clock is read');
    // To the second at worst, never rounded up.
    assert.ok(clock! <= t1 && clock! > t0 - 2000, `${clock} in [${t0}, ${t1}]`);
    assert.equal(await listed(store), []);
    await store.put('t.db.gz', { file: localFile(randomBytes(10)) });
    const t2 = Date.now();
    const [f] = await store.list();
    const st = await store.stat('t.db.gz');
    for (const m of [f.modified, st?.modified]) assert.ok(m !== undefined && m <= t2 && m > t1 - 2000, `${m} in [${t1}, ${t2}]`);
  });

  run('put publishes a file as it is: listed with its size, read back whole and by its first bytes', async (store) => {
    const bytes = randomBytes(100_000);
    const r = await store.put('a.db.gz', { file: localFile(bytes) });
    assert.equal(r, { published: true, bytes: bytes.length });
    assert.equal(await listed(store), [{ name: 'a.db.gz', bytes: bytes.length }]);
    assert.is(sha(await content(store, 'a.db.gz')), sha(bytes));
    assert.equal(await store.peek('a.db.gz', 1000), bytes.subarray(0, 1000));
    // Asked for more than there is: all of it.
    assert.is(sha(await store.peek('a.db.gz', 200_000)), sha(bytes));
  });

  run('put of a packed body stores the packed bytes, and reports how much of the file it read', async (store) => {
    const bytes = randomBytes(300_000);
    const reads: number[] = [];
    const r = await store.put('p.db.gz', xorBody(localFile(bytes)), { onProgress: (p) => reads.push(p.totalPages - p.remainingPages) });
    assert.equal(r, { published: true, bytes: bytes.length });
    assert.is(sha(await content(store, 'p.db.gz')), sha(xor(bytes)));
    assert.ok(reads.length > 0 && reads[reads.length - 1] === bytes.length, `progress ${reads.join(',')}`);
  });

  run('stat gives a file\'s size, or null when there is none', async (store) => {
    assert.is(await store.stat('s.db.gz'), null);
    await store.put('s.db.gz', { file: localFile(randomBytes(1234)) });
    assert.equal(nameAndSize(await store.stat('s.db.gz')), { name: 's.db.gz', bytes: 1234 });
  });

  run('put never replaces: a second put of a name is not published, and the first file stays', async (store) => {
    const first = randomBytes(5000);
    assert.ok((await store.put('n.db.gz', { file: localFile(first) })).published);
    const second = await store.put('n.db.gz', { file: localFile(randomBytes(7000)) });
    assert.equal(second, { published: false, bytes: 0 });
    assert.is(sha(await content(store, 'n.db.gz')), sha(first));
    assert.equal(await listed(store), [{ name: 'n.db.gz', bytes: 5000 }]);
  });

  run('put with replace takes the place of a file (a single backup with --force), whole', async (store) => {
    await store.put('one.db.gz', { file: localFile(randomBytes(3000)) });
    const next = randomBytes(9000);
    assert.equal(await store.put('one.db.gz', { file: localFile(next) }, { replace: true }), { published: true, bytes: 9000 });
    assert.is(sha(await content(store, 'one.db.gz')), sha(next));
    assert.equal(await listed(store), [{ name: 'one.db.gz', bytes: 9000 }]);
  });

  run('a fresh put alone (a replicator\'s segment: a name unique by construction, no look first) publishes, packed or not, nothing beside it', async (store) => {
    const bytes = randomBytes(3000);
    assert.equal(await store.put('seg.log.gz', { file: localFile(bytes) }, { alone: true, fresh: true }), { published: true, bytes: 3000 });
    const packed = await store.put('seg2.log.gz', xorBody(localFile(bytes)), { alone: true, fresh: true });
    assert.ok(packed.published);
    assert.equal((await store.list()).map((f) => f.name).sort(), ['seg.log.gz', 'seg2.log.gz']);
    assert.equal(fs.readFileSync(await store.fetch('seg.log.gz', tmpdir())), bytes);
  });

  run('a put alone (a single backup) publishes without leaving anything beside it, and still never replaces', async (store) => {
    assert.ok((await store.put('alone.db.gz', { file: localFile(randomBytes(100)) }, { alone: true })).published);
    assert.equal(await store.put('alone.db.gz', { file: localFile(randomBytes(200)) }, { alone: true }), { published: false, bytes: 0 });
    assert.equal(await listed(store), [{ name: 'alone.db.gz', bytes: 100 }]);
  });

  run('of puts of one name at once, at most one publishes, whole; one that gave way can try again', async (store) => {
    for (let round = 0; round < 3; round++) {
      const name = `race-${round}.db.gz`;
      const bodies = [randomBytes(40_000), randomBytes(50_000), randomBytes(60_000)];
      const results = await Promise.all(bodies.map((b) => store.put(name, { file: localFile(b) })));
      const won = results.map((r, i) => (r.published ? i : -1)).filter((i) => i >= 0);
      assert.ok(won.length <= 1, JSON.stringify(results));
      if (won.length === 1) {
        assert.is(sha(await content(store, name)), sha(bodies[won[0]]));
      } else {
        // All gave way: the name is free, and a put alone takes it.
        assert.not.ok((await store.list()).some((f) => f.name === name));
        assert.ok((await store.put(name, { file: localFile(bodies[0]) })).published);
      }
      assert.ok((await store.list()).some((f) => f.name === name));
    }
    // Nothing else was left behind (no claim, no temporary file).
    assert.equal((await store.list()).map((f) => f.name).sort(), ['race-0.db.gz', 'race-1.db.gz', 'race-2.db.gz']);
  });

  run('a body larger than one upload part arrives whole (multipart on S3)', async (store) => {
    const bytes = randomBytes(12 * 1024 * 1024 + 12345);
    const r = await store.put('big.db.gz', xorBody(localFile(bytes), 1 << 20));
    assert.equal(r, { published: true, bytes: bytes.length });
    assert.is(sha(await content(store, 'big.db.gz')), sha(xor(bytes)));
  });

  run('a put that fails midway (its body breaks) leaves nothing under the name', async (store) => {
    const broken = bodyOf(async function* () {
      yield new Uint8Array(6 * 1024 * 1024);
      throw new BlufioError('E_IO', 'the body broke', 'test');
    });
    await rejects(store.put('broken.db.gz', broken), 'E_IO');
    assert.equal(await listed(store), []);
    // The name is free: a later put takes it.
    assert.ok((await store.put('broken.db.gz', { file: localFile(randomBytes(10)) })).published);
  });

  run('an aborted put leaves nothing under the name', async (store) => {
    const ac = new AbortController();
    const body = bodyOf(async function* () {
      yield new Uint8Array(6 * 1024 * 1024);
      ac.abort(new BlufioError('E_ABORTED', 'stopped', 'test'));
      yield new Uint8Array(6 * 1024 * 1024);
    });
    await store.put('aborted.db.gz', body, { signal: ac.signal }).then(() => assert.unreachable('the put went on'), () => {});
    assert.equal(await listed(store), []);
  });

  run('peek and fetch of a missing name fail with E_SOURCE_MISSING; remove of one succeeds', async (store) => {
    await rejects(store.peek('nothing.db.gz', 10), 'E_SOURCE_MISSING');
    await rejects(store.fetch('nothing.db.gz', tmpdir()), 'E_SOURCE_MISSING');
    await store.remove('nothing.db.gz');
  });

  run('remove takes a file out of the listing, and only that file', async (store) => {
    await store.put('r1.db.gz', { file: localFile(randomBytes(10)) });
    await store.put('r2.db.gz', { file: localFile(randomBytes(20)) });
    await store.remove('r1.db.gz');
    assert.equal(await listed(store), [{ name: 'r2.db.gz', bytes: 20 }]);
    await rejects(store.peek('r1.db.gz', 10), 'E_SOURCE_MISSING');
  });

  run('files under a deeper folder or prefix are not the store\'s', async (store, text) => {
    if (!text.startsWith('s3://')) fs.mkdirSync(path.join(text, 'inner'));
    const fresh = k!.open(text.startsWith('s3://') ? `${text}inner/` : path.join(text, 'inner'));
    await fresh.put('deep.db.gz', { file: localFile(randomBytes(10)) });
    await store.put('top.db.gz', { file: localFile(randomBytes(10)) });
    assert.equal((await store.list()).map((f) => f.name), ['top.db.gz']);
    assert.equal((await fresh.list()).map((f) => f.name), ['deep.db.gz']);
  });

  test.run();
}

function folderKind(): Promise<Kind> {
  return Promise.resolve({
    name: 'folder',
    fresh: () => {
      const dir = tmpdir();
      return { store: openStore(dir), text: dir };
    },
    open: (text) => openStore(text),
    stop: async () => {},
  });
}

/** A store kind on an S3 server: each store is a new prefix of the bucket "backups". */
async function bucketKind(start: () => Promise<S3Server | null>): Promise<Kind | null> {
  const server = await start();
  if (!server) return null;
  const env = s3Env(server);
  return {
    name: 's3',
    fresh: () => {
      const text = `s3://backups/c${randomBytes(4).toString('hex')}/`;
      return { store: openStore(text, { env, retries: 2 }), text };
    },
    open: (text) => openStore(text, { env, retries: 2 }),
    stop: async () => {
      await server.stop();
      if (server.dir) fs.rmSync(server.dir, { recursive: true, force: true });
    },
  };
}

conformance(folderKind, 'a folder');
// (Its data directory outside tmpdir(): cleanup() after each test would remove it under the server.)
conformance(() => bucketKind(() => startS3Server(fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-s3-conf-')))), 'S3 (s3rver, signature-checking)');
conformance(() => bucketKind(startMotoServer), 'S3 (moto)');

// ---------------------------------------------------------------------------------------------

const where = suite('locate: what the user typed');
where.after.each(cleanup);

where('"-", paths, folders, s3:// in any case, sets ending in /', () => {
  const dir = tmpdir();
  const file = path.join(dir, 'x.db');
  fs.writeFileSync(file, '');
  assert.equal(locate('-'), { kind: 'stdout', text: '-' });
  assert.equal(locate(file), { kind: 'file', text: file, remote: null });
  assert.equal(locate(dir), { kind: 'set', text: dir, remote: null });
  assert.equal(locate(`${dir}/new/`), { kind: 'set', text: `${dir}/new/`, remote: null });
  assert.equal(locate('s3://b/k.db.gz'), { kind: 'file', text: 's3://b/k.db.gz', remote: 's3' });
  assert.equal(locate('S3://b/k.db.gz'), { kind: 'file', text: 'S3://b/k.db.gz', remote: 's3' });
  assert.equal(locate('S3://b/prefix/'), { kind: 'set', text: 'S3://b/prefix/', remote: 's3' });
  // A scheme no store speaks is a local path (a file named so), never a remote.
  assert.equal(locate('ftp://x/y'), { kind: 'file', text: 'ftp://x/y', remote: null });
});

where('a file of a set is its store and its name; a set has one spelling', () => {
  assert.equal(splitFile('s3://b/p/x.diff.gz'), { store: 's3://b/p/', name: 'x.diff.gz' });
  assert.equal(splitFile('/backups/x.diff.gz'), { store: '/backups', name: 'x.diff.gz' });
  assert.is(canonicalSet('s3://b/p'), 's3://b/p/');
  assert.is(canonicalSet('S3://b/p/'), 's3://b/p/');
  const dir = tmpdir();
  fs.symlinkSync(dir, `${dir}-link`);
  assert.is(canonicalSet(`${dir}-link/`), fs.realpathSync(dir));
  fs.rmSync(`${dir}-link`);
});

where('restore S3://… --dry-run reads the object, not a local path of that name (it once did)', async () => {
  const server = await startS3Server();
  try {
    const d = tmpdir();
    const db = path.join(d, 'blufio.db');
    makeSampleDb(db, { rows: 100, wal: true });
    const env = { ...s3Env(server), HOME: tmpdir('blufio-home-') };
    const up = cli(['backup', 's3://backups/dry/blufio.db.gz', '--db', db, '--unencrypted', '-q'], { env });
    assert.is(up.code, 0, up.stderr);
    const r = cli(['restore', 'S3://backups/dry/blufio.db.gz', '--db', path.join(d, 'new.db'), '--dry-run', '--json'], { env });
    assert.is(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout);
    assert.is(plan.path, 'S3://backups/dry/blufio.db.gz');
    assert.is(plan.compressed, true);
    assert.ok(!fs.existsSync(path.join(d, 'new.db')));
  } finally {
    await server.stop();
  }
});

where.run();

// ---------------------------------------------------------------------------------------------

const found = suite('storage: what an attack run found');
found.after.each(cleanup);

found('three backups to one S3 key at once, on a server that ignores If-None-Match: at most one says it was written, and that one is there', async () => {
  const server = await startS3Server(fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-s3-race-')));
  try {
    const d = tmpdir();
    const env = { ...s3Env(server), HOME: tmpdir('blufio-home-') };
    const dbs = [3000, 2000, 1000].map((rows, i) => {
      const db = path.join(d, `db${i}.db`);
      makeSampleDb(db, { rows, wal: true });
      return db;
    });
    const runs = await Promise.all(dbs.map((db) => cliAsync(['backup', '--db', db, 's3://backups/race/one.db.gz', '--unencrypted', '--json'], { env })));
    const ok = runs.filter((r) => r.code === 0);
    assert.ok(ok.length <= 1, runs.map((r) => `${r.code}: ${r.stderr.trim()}`).join('\n'));
    const v = cli(['verify', 's3://backups/race/one.db.gz', '--json'], { env });
    if (ok.length === 1) assert.is(JSON.parse(v.stdout).bytes, JSON.parse(ok[0].stdout).bytes, 'the object is the one reported');
    const listed = cli(['list', 's3://backups/race/', '--json'], { env });
    assert.not.match(listed.stdout, '.claim-');
  } finally {
    await server.stop();
  }
});

found('a set backup to S3 stopped by --timeout leaves no claim behind; an object key or an empty prefix is not a healthy set; // is refused', async () => {
  const server = await startS3Server(fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-s3-found-')));
  try {
    const d = tmpdir();
    const env = { ...s3Env(server), HOME: tmpdir('blufio-home-') };
    const db = path.join(d, 'big.db');
    spawnSync('sqlite3', [db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(b); INSERT INTO t SELECT randomblob(4000) FROM generate_series(1, 30000);']);
    const r = cli(['backup', '--db', db, 's3://backups/to/', '--unencrypted', '--timeout', '2'], { env });
    assert.is(r.code, 1, r.stderr);
    const { AwsClient } = await import('aws4fetch');
    const s3 = new AwsClient({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', service: 's3', region: 'us-east-1' });
    const keys = await (await s3.fetch(`http://127.0.0.1:${server.port}/backups?prefix=to/`)).text();
    assert.not.match(keys, '.claim-', keys);
    // One object named as a set: refused, not an empty healthy set.
    const small = path.join(d, 'small.db');
    makeSampleDb(small, { rows: 10, wal: true });
    assert.is(cli(['backup', '--db', small, 's3://backups/obj/a.db.gz', '--unencrypted'], { env }).code, 0);
    for (const cmd of [['list'], ['check'], ['prune', '--keep-last', '1']]) {
      const x = cli([cmd[0], 's3://backups/obj/a.db.gz', ...cmd.slice(1)], { env });
      assert.is(x.code, 2, `${cmd[0]}: ${x.stderr}`);
      assert.match(x.stderr, 'is one backup, not a set');
    }
    // An empty (mistyped) prefix fails check.
    const c = cli(['check', 's3://backups/typo/'], { env });
    assert.is(c.code, 1, c.stderr);
    assert.match(c.stderr, 'it holds no backups');
    const slash = cli(['backup', '--db', small, 's3://backups/m1//', '--unencrypted'], { env });
    assert.is(slash.code, 2);
    assert.match(slash.stderr, 'has an empty segment');
  } finally {
    await server.stop();
  }
});

found('an age file inside gzip (gzip x.db.age) verifies with its key, and without one says a key is needed; --db - is refused', () => {
  const d = tmpdir();
  const db = path.join(d, 'x.db');
  makeSampleDb(db, { rows: 50 });
  const key = path.join(d, 'k.txt');
  spawnSync('age-keygen', ['-o', key], { stdio: 'ignore' });
  const recipient = spawnSync('age-keygen', ['-y', key], { encoding: 'utf8' }).stdout.trim();
  if (!recipient) return skip('age is not installed');
  spawnSync('age', ['-r', recipient, '-o', `${db}.age`, db]);
  fs.writeFileSync(`${db}.age.gz`, gzipSync(fs.readFileSync(`${db}.age`)));
  const ok = cli(['verify', `${db}.age.gz`, '-i', key, '--json']);
  assert.is(ok.code, 0, ok.stderr);
  assert.equal([JSON.parse(ok.stdout).compressed, JSON.parse(ok.stdout).encrypted], [true, true]);
  const nokey = cli(['verify', `${db}.age.gz`]);
  assert.is(nokey.code, 1);
  assert.match(nokey.stderr, 'no identity was given');
  assert.not.match(nokey.stderr, 'FAILED');
  const dash = cli(['restore', '--db', '-', `${db}.age.gz`, '-i', key], { cwd: d });
  assert.is(dash.code, 2);
  assert.match(dash.stderr, '--db names the database file');
  assert.not.ok(fs.existsSync(path.join(d, '-')));
});

found.run();
