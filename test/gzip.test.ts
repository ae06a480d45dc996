import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { inspect, restore } from '../src/index.ts';
import { cleanup, cli, fingerprint, makeSampleDb, rejects, sampleWithBackup } from './helpers.ts';

const test = suite('gzip');
test.after.each(cleanup);

async function gzBackup() {
  const { d, db, bak: gz, r } = await sampleWithBackup(2000, 'backup.db.gz');
  return { d, db, gz, r };
}

test('a .gz destination is a gzip stream of the verified backup, mode 0600, nothing else left', async () => {
  const { d, db, gz, r } = await gzBackup();
  assert.is(r.compressed, true);
  assert.is(r.bytes, fs.statSync(gz).size);
  assert.ok(r.bytes < r.databaseBytes, 'compressed');
  assert.is(fs.statSync(gz).mode & 0o777, 0o600);
  const plain = path.join(d, 'plain.db');
  fs.writeFileSync(plain, execFileSync('gzip', ['-dc', gz], { maxBuffer: 1 << 28 }));
  assert.is(fingerprint(plain), fingerprint(db));
  assert.is(fs.statSync(plain).size, r.databaseBytes);
  assert.equal(fs.readdirSync(d).sort(), ['backup.db.gz', 'blufio.db', 'plain.db']);
});

test('restore and verify read .gz files as they are', async () => {
  const { d, db, gz } = await gzBackup();
  const expected = fingerprint(db);
  const target = path.join(d, 'restored.db');
  await restore(target, gz);
  assert.is(fingerprint(target), expected);
  const v = await inspect(gz);
  assert.is(v.ok, true);
  assert.is(v.compressed, true);
  assert.is(v.bytes, fs.statSync(gz).size);
  assert.ok(v.tables.some((t) => t.name === 'vault' && t.rows === 2000));
  const c = cli(['verify', gz]);
  assert.is(c.code, 0, c.stderr);
  assert.match(c.stderr, 'compressed');
});

test('a corrupted or truncated .gz: clear error, target untouched, no temp files', async () => {
  const { d, db, gz } = await gzBackup();
  const target = path.join(d, 'target.db');
  makeSampleDb(target, { rows: 10 });
  const before = fingerprint(target);
  const bytes = fs.readFileSync(gz);
  const cut = path.join(d, 'cut.db.gz');
  fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await rejects(restore(target, cut), 'E_CORRUPT', /cut off \(truncated\)/);
  const bad = path.join(d, 'bad.db.gz');
  const flipped = Buffer.from(bytes);
  for (let i = 200; i < 400; i++) flipped[i] ^= 0xff;
  fs.writeFileSync(bad, flipped);
  await rejects(restore(target, bad), 'E_CORRUPT', /cannot decompress/);
  assert.is(fingerprint(target), before);
  for (const f of [cut, bad]) {
    assert.is((await inspect(f)).ok, false);
    const r = cli(['verify', f]);
    assert.is(r.code, 1);
    assert.match(r.stderr, 'FAILED');
    const rr = cli(['restore', f, '--db', target]);
    assert.is(rr.code, 1);
    assert.match(rr.stderr, /^error: cannot decompress/);
  }
  assert.is(fingerprint(target), before);
  assert.equal(fs.readdirSync(d).filter((f) => f.includes('.tmp')), []);
  void db;
});

test('a gzip bomb stops at the size its database header declares; a .gz of something else is not SQLite; the target is untouched', async () => {
  const { d, db } = await gzBackup();
  const before = fingerprint(db);
  // a real database header declaring 2 pages of 4096 bytes, then 20 MB of zeros
  const head = fs.readFileSync(db).subarray(0, 100);
  head.writeUInt16BE(4096, 16);
  head.writeUInt32BE(2, 28);
  head.copy(head, 92, 24, 28);
  const bomb = path.join(d, 'bomb.db.gz');
  fs.writeFileSync(bomb, gzipSync(Buffer.concat([head, Buffer.alloc(20 << 20)])));
  await rejects(restore(db, bomb, { sleepMs: 0, force: true }), 'E_CORRUPT', /decompresses to more than the 8192 bytes its database header declares/);
  const text = path.join(d, 'notes.db.gz');
  fs.writeFileSync(text, gzipSync(Buffer.from('just some text, not a database\n'.repeat(100))));
  await rejects(restore(db, text, { sleepMs: 0, force: true }), 'E_NOT_SQLITE', /does not hold an SQLite database/);
  assert.is(fingerprint(db), before);
  assert.equal(fs.readdirSync(d).filter((n) => n.includes('.blufio-')), [], 'no temporary file left');
});

test('a bomb whose header claims more than the disk holds is refused before anything is unpacked', async () => {
  const { d, db } = await gzBackup();
  const before = fingerprint(db);
  // 2^28 pages of 4096 bytes: 1 TiB, more than any disk this runs on has free.
  const head = fs.readFileSync(db).subarray(0, 100);
  head.writeUInt16BE(4096, 16);
  head.writeUInt32BE(2 ** 28, 28);
  head.copy(head, 92, 24, 28);
  const bomb = path.join(d, 'claims-1tib.db.gz');
  fs.writeFileSync(bomb, gzipSync(Buffer.concat([head, Buffer.alloc(64 << 20)])));
  await rejects(restore(db, bomb, { sleepMs: 0, force: true }), 'E_IO', /^no space left on the device holding .* for what .*claims-1tib.db.gz unpacks to: 1099511627776 bytes, its database header says, and \d+ bytes are free \(less a 64 MiB margin\); stopped, nothing was replaced$/);
  await rejects(inspect(bomb), 'E_IO', /unpacks to: 1099511627776 bytes.*\(the backup itself was not judged\)/);
  assert.is(fingerprint(db), before);
  assert.equal(fs.readdirSync(d).filter((n) => n.includes('.blufio-')), [], 'no temporary file left');
});

test.run();
