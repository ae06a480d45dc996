/**
 * The consistency proof at exact points: a native process commits or checkpoints right after an
 * attempt has fixed its state and before SQLite has read anything (the schema parse, the first
 * page). The result must be a committed state, and an SQLite error on the torn view a retry,
 * never a verdict on the database.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { copyDatabase } from '../src/copy.ts';
import { cleanup, sql, tmpdir } from './helpers.ts';

const test = suite('snapshot at exact points');
test.after.each(cleanup);

/** A WAL database (its WAL checkpointed and gone when sqlite3 exits) with `rows` rows. */
function walDb(dir: string, rows = 300): string {
  const db = path.join(dir, 'src.db');
  sql(db, `PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
    INSERT INTO t(v) SELECT randomblob(500) FROM generate_series(1, ${rows});`);
  return db;
}

const oracle = (file: string) => sql(file, 'PRAGMA integrity_check; SELECT count(*) FROM sqlite_schema;');

test('a schema change committed and checkpointed between begin() and the first read: retried, never "malformed"', async () => {
  const d = tmpdir();
  const db = walDb(d);
  const dest = path.join(d, 'copy.db');
  const r = await copyDatabase(db, dest, {
    sleepMs: 0,
    afterBegin: (attempt) => {
      // sqlite3 writes in WAL mode, then checkpoints into the file and deletes the WAL on exit:
      // the view's page 1 header (read at begin) no longer matches the file's schema.
      if (attempt === 1) sql(db, `CREATE TABLE u(x); INSERT INTO u SELECT randomblob(3000) FROM generate_series(1, 200);`);
    },
  });
  assert.is(r.attempts, 2, 'the first attempt is not trusted');
  assert.is(oracle(dest), 'ok\n2');
});

test('a TRUNCATE checkpoint between begin() and the first read: the copy is the state after it', async () => {
  const d = tmpdir();
  const db = walDb(d);
  const dest = path.join(d, 'copy.db');
  await copyDatabase(db, dest, {
    sleepMs: 0,
    afterBegin: (attempt) => {
      if (attempt === 1) sql(db, `PRAGMA wal_autocheckpoint=0; DELETE FROM t WHERE id % 2 = 0; INSERT INTO t(v) SELECT randomblob(700) FROM generate_series(1, 100); PRAGMA wal_checkpoint(TRUNCATE);`);
    },
  });
  assert.is(sql(dest, 'PRAGMA integrity_check'), 'ok');
  assert.is(sql(dest, 'SELECT count(*) FROM t'), sql(db, 'SELECT count(*) FROM t'));
  assert.is(sql(dest, 'SELECT sum(length(v)) FROM t'), sql(db, 'SELECT sum(length(v)) FROM t'));
});

test('a transaction that opens, commits, checkpoints and deletes its WAL mid-copy, with no WAL before or after: never torn', async () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  sql(db, `PRAGMA journal_mode=WAL; CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER, pad BLOB);
    INSERT INTO acct SELECT value, 100, zeroblob(1500) FROM generate_series(1, 100);`);
  const dest = path.join(d, 'copy.db');
  let moved = false;
  await copyDatabase(db, dest, {
    sleepMs: 0,
    pagesPerStep: 5,
    onProgress: (p) => {
      // after the first step: money moves from the first account (already copied) to the last
      // (not yet copied); sqlite3 checkpoints and deletes the WAL as it exits
      if (!moved && p.phase === 'copy' && p.remainingPages > 0) {
        moved = true;
        sql(db, 'UPDATE acct SET bal = bal - 7 WHERE id = 1; UPDATE acct SET bal = bal + 7 WHERE id = 100;');
      }
    },
  });
  assert.ok(moved);
  assert.is(sql(dest, 'PRAGMA integrity_check'), 'ok');
  assert.is(sql(dest, 'SELECT sum(bal) FROM acct'), '10000', 'a committed state');
});

test('the database file replaced (renamed over) during an attempt: retried, the copy is the new file', async () => {
  const d = tmpdir();
  const db = walDb(d, 100);
  const other = path.join(d, 'other.db');
  sql(other, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO t(v) SELECT randomblob(100) FROM generate_series(1, 7);`);
  const dest = path.join(d, 'copy.db');
  const r = await copyDatabase(db, dest, { sleepMs: 0, afterBegin: (attempt) => { if (attempt === 1) fs.renameSync(other, db); } });
  assert.is(r.attempts, 2);
  assert.is(sql(dest, 'SELECT count(*) FROM t'), '7');
});

test('a database switched out of WAL mode during an attempt: retried, copied as a rollback-journal database', async () => {
  const d = tmpdir();
  const db = walDb(d, 100);
  const dest = path.join(d, 'copy.db');
  const r = await copyDatabase(db, dest, {
    sleepMs: 0,
    afterBegin: (attempt) => { if (attempt === 1) sql(db, 'PRAGMA journal_mode=DELETE; INSERT INTO t(v) VALUES (zeroblob(10));'); },
  });
  assert.is(r.attempts, 2);
  assert.is(r.journalMode, 'rollback');
  assert.is(sql(dest, 'SELECT count(*) FROM t'), '101');
});

test('the time limit runs out during a copy: a clean E_TOO_BUSY naming it', async () => {
  const d = tmpdir();
  const db = walDb(d, 300);
  const dest = path.join(d, 'copy.db');
  try {
    await copyDatabase(db, dest, { sleepMs: 50, pagesPerStep: 1, timeoutMs: 30, retries: 1 });
    assert.unreachable('should have given up');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_TOO_BUSY');
    assert.match((e as Error).message, /time limit/);
  }
});

test('nothing changes after begin(): one attempt, and the copy is the source', async () => {
  const d = tmpdir();
  const db = walDb(d);
  const dest = path.join(d, 'copy.db');
  const r = await copyDatabase(db, dest, { sleepMs: 0, afterBegin: () => {} });
  assert.is(r.attempts, 1);
  assert.is(sql(dest, 'SELECT count(*), sum(length(v)) FROM t'), sql(db, 'SELECT count(*), sum(length(v)) FROM t'));
});

test.run();
