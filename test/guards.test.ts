/**
 * The consistency guards (src/snapshot/), one journal mode at a time, at exact points: a database
 * file made by native sqlite3, a WAL built in memory (test/wal-builder.ts) that the test changes
 * between begin(), the copy and finish(), and the "copy" done by reading the view page by page.
 * What each guard must do: count an attempt only when the copy is (or is made) one committed
 * state, and say RetryAttempt otherwise. Well under a second, no SQLite in-process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RetryAttempt } from '../src/retry.ts';
import { SourceSnapshot } from '../src/snapshot/snapshot.ts';
import { WAL_HEADER_SIZE } from '../src/wal.ts';
import { cleanup, sql, tmpdir } from './helpers.ts';
import { MemWal, PS, WalBuilder, concat } from './wal-builder.ts';

const test = suite('consistency guards');
test.after.each(cleanup);

const JOURNAL_MAGIC = Uint8Array.from([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);

/** A database of 512-byte pages (the builder's page size) in the given mode, made natively. */
function database(mode: 'wal' | 'delete'): string {
  const db = path.join(tmpdir(), 'src.db');
  sql(db, `PRAGMA page_size=${PS}; PRAGMA journal_mode=${mode}; CREATE TABLE t(x); INSERT INTO t SELECT randomblob(300) FROM generate_series(1, 8);`);
  return db;
}

/** What the backup API does with the view, reduced to bytes: every page, in order, into `dest`. */
function copyView(s: SourceSnapshot, dest: string): void {
  const buf = new Uint8Array(s.size());
  assert.is(s.read(buf, 0, buf.length, 0), buf.length);
  fs.writeFileSync(dest, buf);
}

const page = (file: string, pgno: number) => fs.readFileSync(file).subarray((pgno - 1) * PS, pgno * PS);
const retries = (f: () => unknown, why: RegExp) => {
  try {
    f();
  } catch (e) {
    assert.instance(e, RetryAttempt);
    assert.match((e as RetryAttempt).reason, why);
    return;
  }
  assert.unreachable('expected RetryAttempt');
};

// ---- rollback journal ----------------------------------------------------------------------

test('rollback: nothing committed from begin to finish: the attempt counts, the copy is the file', () => {
  const db = database('delete');
  const s = new SourceSnapshot(db);
  s.begin();
  assert.is(s.mode, 'rollback');
  const dest = `${db}.copy`;
  copyView(s, dest);
  assert.is(s.movedSinceBegin(), false);
  s.finish(dest);
  assert.equal(fs.readFileSync(dest), fs.readFileSync(db));
  s.release();
});

test('a new attempt reads the file as it is now: nothing the last attempt read ahead is served again', () => {
  const db = database('delete');
  const s = new SourceSnapshot(db);
  s.begin();
  copyView(s, `${db}.first`); // every page now sits in the read-ahead windows
  s.release();
  sql(db, 'UPDATE t SET x = zeroblob(300)');
  s.begin();
  const dest = `${db}.copy`;
  copyView(s, dest);
  s.finish(dest);
  assert.equal(fs.readFileSync(dest), fs.readFileSync(db));
  assert.not.equal(fs.readFileSync(dest), fs.readFileSync(`${db}.first`));
  s.release();
  s.dispose();
});

test('rollback: a commit during the copy (page 1 rewritten) ends the attempt, at the next look or at finish', () => {
  const db = database('delete');
  const s = new SourceSnapshot(db);
  s.begin();
  sql(db, 'INSERT INTO t VALUES (1)');
  retries(() => s.watch(), /committed during the copy/);
  assert.is(s.movedSinceBegin(), true);
  retries(() => s.finish(`${db}.copy`), /committed during the copy/);
  s.release();
});

test('rollback: a hot journal means a commit under way (retry), or, with nobody to finish it, a database to recover', () => {
  const db = database('delete');
  const s = new SourceSnapshot(db);
  s.begin();
  fs.writeFileSync(`${db}-journal`, concat(JOURNAL_MAGIC, new Uint8Array(504)));
  retries(() => s.watch(), /hot rollback journal/);
  s.release();
  // At begin, with no process holding the database: nobody will roll it back but SQLite itself.
  assert.throws(() => s.begin(), (e: Error) => (e as { code?: string }).code === 'E_NEEDS_RECOVERY' && /hot journal/.test(e.message));
  s.release();
});

test('rollback: a stale, empty -wal beside a rollback-mode file is ignored', () => {
  const db = database('delete');
  fs.writeFileSync(`${db}-wal`, '');
  const s = new SourceSnapshot(db);
  s.begin();
  assert.is(s.mode, 'rollback');
  s.release();
});

// ---- WAL -----------------------------------------------------------------------------------

/** A WAL-mode file (its WAL checkpointed into it by sqlite3) and a WAL in memory beside it. */
function walSetup() {
  const db = database('wal');
  const pages = fs.statSync(db).size / PS;
  const wal = new MemWal();
  return { db, pages, wal, dest: `${db}.copy` };
}

test('WAL: the view serves committed frames over the file; a commit after begin is laid into the copy by finish', () => {
  const { db, pages, wal, dest } = walSetup();
  const g = new WalBuilder(11, 12).tx([2], pages, 0xaa);
  wal.create(g.bytes);
  const s = new SourceSnapshot(db, wal);
  s.begin();
  assert.is(s.mode, 'wal');
  copyView(s, dest);
  assert.ok(page(dest, 2).every((b) => b === 0xaa), 'page 2 from its frame');
  // page 3 and a new page past the end are committed while the copy runs
  wal.set(g.tx([3, pages + 1], pages + 1, 0xbb).bytes);
  s.watch();
  s.finish(dest);
  assert.is(fs.statSync(dest).size, (pages + 1) * PS);
  assert.ok(page(dest, 3).every((b) => b === 0xbb) && page(dest, pages + 1).every((b) => b === 0xbb));
  assert.ok(page(dest, 2).every((b) => b === 0xaa));
  assert.equal(page(dest, 4), page(db, 4), 'untouched pages are the file\'s');
  // page 1 is a self-contained rollback-journal header with the new page count
  const head = page(dest, 1);
  assert.equal([head[18], head[19], new DataView(head.buffer, head.byteOffset).getUint32(28)], [1, 1, pages + 1]);
  s.release();
});

test('WAL: an uncommitted transaction at finish is not in the copy', () => {
  const { db, pages, wal, dest } = walSetup();
  const g = new WalBuilder(1, 2).tx([2], pages, 0x11);
  wal.create(g.bytes);
  const s = new SourceSnapshot(db, wal);
  s.begin();
  copyView(s, dest);
  wal.set(concat(g.bytes, new WalBuilder(1, 2).tx([2], pages).tx([3], 0, 0x99).bytes.subarray(g.bytes.length)));
  s.finish(dest);
  assert.equal(page(dest, 3), page(db, 3));
  s.release();
});

test('WAL without a WAL yet (blind): the database file changing during the copy forces a full pass that makes the copy the file', () => {
  const { db, wal, dest } = walSetup();
  const s = new SourceSnapshot(db, wal);
  s.begin();
  assert.is(s.mode, 'wal');
  copyView(s, dest);
  // a "checkpoint" we could not see: bytes of page 3 change in the database file
  const fd = fs.openSync(db, 'r+');
  fs.writeSync(fd, new Uint8Array(PS).fill(0x5c), 0, PS, 2 * PS);
  fs.closeSync(fd);
  s.finish(dest);
  assert.is(s.fullPasses, 1);
  assert.ok(page(dest, 3).every((b) => b === 0x5c));
  assert.equal(fs.readFileSync(dest).subarray(100), fs.readFileSync(db).subarray(100));
  s.release();
});

test('WAL: a database switched to a rollback journal during the copy is retried', () => {
  const { db, wal, dest } = walSetup();
  wal.create(new WalBuilder(1, 2).tx([2], fs.statSync(db).size / PS).bytes);
  const s = new SourceSnapshot(db, wal);
  s.begin();
  copyView(s, dest);
  const fd = fs.openSync(db, 'r+');
  fs.writeSync(fd, Uint8Array.from([1, 1]), 0, 2, 18);
  fs.closeSync(fd);
  retries(() => s.finish(dest), /left WAL mode/);
  s.release();
});

test('WAL: the WAL deleted and re-created unseen while the file changed: a full pass, never a torn copy', () => {
  const { db, pages, wal, dest } = walSetup();
  wal.create(new WalBuilder(1, 2).tx([2], pages, 0x21).bytes);
  const s = new SourceSnapshot(db, wal);
  s.begin();
  copyView(s, dest);
  // checkpoint of frame 2 into the file, WAL deleted, a new generation with page 4
  const fd = fs.openSync(db, 'r+');
  fs.writeSync(fd, new Uint8Array(PS).fill(0x21), 0, PS, PS);
  fs.closeSync(fd);
  wal.remove();
  wal.create(new WalBuilder(3, 4, 1).tx([4], pages, 0x44).bytes);
  s.finish(dest);
  assert.ok(s.fullPasses >= 1);
  assert.ok(page(dest, 2).every((b) => b === 0x21) && page(dest, 4).every((b) => b === 0x44));
  s.release();
});

test('an empty file: refused as not a database, or retried while a WAL beside it has bytes but no commit', async () => {
  const d = tmpdir();
  const db = path.join(d, 'empty.db');
  fs.writeFileSync(db, '');
  const s = new SourceSnapshot(db, new MemWal());
  assert.throws(() => s.begin(), /is empty \(0 bytes/);
  s.release();
  fs.writeFileSync(`${db}-wal`, new WalBuilder(1, 2).bytes.subarray(0, WAL_HEADER_SIZE));
  retries(() => new SourceSnapshot(db).begin(), /showed no commit/);
});

test.run();
