/**
 * Page hashes of set backups (src/sets/pages.ts) and the differentials made from them
 * (src/sets/diff.ts), from bytes: the hashes live in files, read a block of 4,096 pages at a time,
 * so the pages here cross blocks.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { countChanged, readDiffHeader, writeDiff } from '../src/sets/diff.ts';
import type { SetEntry } from '../src/sets/names.ts';
import { HashBlocks, hashPages, openPages, sha256Of, writePages } from '../src/sets/pages.ts';
import { cleanup, tmpdir } from './helpers.ts';

const test = suite('pages');
test.after.each(cleanup);

const PS = 512;
const PAGES = 2 * 4096 + 100;
const pageHash = (b: Buffer) => createHash('sha256').update(b).digest().subarray(0, 16);

test('hashPages: one 16-byte hash a page and the SHA-256 of the whole, in a file; written with its header and opened again in place; a file cut short is no page hashes', () => {
  const d = tmpdir();
  const db = path.join(d, 'a.db');
  const bytes = randomBytes(PAGES * PS);
  fs.writeFileSync(db, bytes);
  const h = hashPages(db, PS, path.join(d, 'hashes'));
  assert.is(h.pages, PAGES);
  assert.is(h.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.is(sha256Of(db, PS), h.sha256);
  const raw = fs.readFileSync(h.file);
  assert.is(raw.length, PAGES * 16);
  for (const p of [0, 1, 4095, 4096, 8191, 8192, PAGES - 1]) assert.ok(raw.subarray(p * 16, p * 16 + 16).equals(pageHash(bytes.subarray(p * PS, (p + 1) * PS))), `page ${p}`);

  const file = path.join(d, 'a.pages');
  writePages({ ...h, bytes: 12345, recipients: 'abc' }, file);
  const opened = openPages(file)!;
  assert.ok(opened);
  assert.equal([opened.pageSize, opened.pages, opened.sha256, opened.bytes, opened.recipients], [PS, PAGES, h.sha256, 12345, 'abc']);
  const blocks = new HashBlocks(opened);
  try {
    for (let p = 0; p < PAGES; p++) assert.ok(blocks.at(p).equals(raw.subarray(p * 16, p * 16 + 16)), `page ${p} read back`);
    // Backwards too (a block read again).
    assert.ok(blocks.at(3).equals(raw.subarray(48, 64)));
  } finally {
    blocks.close();
  }
  fs.truncateSync(file, fs.statSync(file).size - 1);
  assert.is(openPages(file), null);
  fs.writeFileSync(file, 'not page hashes\n');
  assert.is(openPages(file), null);
});

test('a differential: exactly the pages whose hashes changed and those past the base\'s end, in order, each with its bytes; the header says how many', () => {
  const d = tmpdir();
  const before = randomBytes(PAGES * PS);
  const changedAt = [0, 4095, 4096, 8000];
  const after = Buffer.concat([before, randomBytes(50 * PS)]);
  for (const p of changedAt) randomBytes(PS).copy(after, p * PS);
  fs.writeFileSync(path.join(d, 'base.db'), before);
  fs.writeFileSync(path.join(d, 'now.db'), after);
  const base = hashPages(path.join(d, 'base.db'), PS, path.join(d, 'base.hashes'));
  const now = hashPages(path.join(d, 'now.db'), PS, path.join(d, 'now.hashes'));
  const want = [...changedAt, ...Array.from({ length: 50 }, (_, i) => PAGES + i)];
  assert.is(countChanged(now, base), want.length);
  assert.is(countChanged(base, base), 0);
  const out = path.join(d, 'x.diff');
  writeDiff(path.join(d, 'now.db'), now, base, { name: 'a-20261207T000000Z.db.gz', bytes: 99 } as SetEntry, out, want.length);
  const { header, offset } = readDiffHeader(out, 'x.diff');
  assert.equal([header.changed, header.pages, header.sha256, header.baseSha256, header.baseBytes], [want.length, PAGES + 50, now.sha256, base.sha256, 99]);
  const body = fs.readFileSync(out).subarray(offset);
  assert.is(body.length, want.length * (4 + PS));
  want.forEach((p, i) => {
    const rec = body.subarray(i * (4 + PS), (i + 1) * (4 + PS));
    assert.is(rec.readUInt32BE(0), p + 1);
    assert.ok(rec.subarray(4).equals(after.subarray(p * PS, (p + 1) * PS)), `page ${p + 1}'s bytes`);
  });
  // A count that does not match what is there now is refused, not written short.
  assert.throws(() => writeDiff(path.join(d, 'now.db'), now, base, { name: 'b', bytes: 1 } as SetEntry, path.join(d, 'y.diff'), want.length - 1), /changed while/);
});

test.run();
