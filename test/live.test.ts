/**
 * Backups of a database that a native process keeps writing. Every backup must be a committed
 * state: it passes integrity_check and the writer's invariant, which every transaction keeps.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backup, BlufioError } from '../src/index.ts';
import { loadSqlite, openDb, vfsOf } from '../src/sqlite.ts';
import { cleanup, sql, tmpdir } from './helpers.ts';
import { createLiveDb, invariantHolds, startWriter, type WriterOptions } from '../testkit/writer.ts';

const test = suite('live');
test.after.each(cleanup);

/** The WAL header's checkpoint sequence: it grows by one at every restart of the WAL. */
function walRestarts(db: string): number {
  const b = fs.readFileSync(`${db}-wal`).subarray(0, 16);
  return b.readUInt32BE(12);
}

async function run(opts: WriterOptions, backups: number, extra: { retries?: number } = {}) {
  const d = tmpdir();
  const db = path.join(d, 'live.db');
  createLiveDb(db, { ...opts, initialRows: opts.initialRows ?? 1500 });
  const writer = startWriter(db, opts);
  const outcome = { complete: 0, busy: 0, attempts: [] as number[], restarts: 0 };
  try {
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < backups; i++) {
      const dest = path.join(d, `backup-${i}.db`);
      try {
        const r = await backup(db, dest, { retries: extra.retries });
        outcome.complete++;
        outcome.attempts.push(r.attempts);
        assert.is(sql(dest, 'PRAGMA integrity_check'), 'ok', `backup ${i} is sound`);
        assert.ok(invariantHolds(dest), `backup ${i} is a committed state`);
        fs.rmSync(dest);
      } catch (e) {
        if (!(e instanceof BlufioError) || e.code !== 'E_TOO_BUSY') throw e;
        assert.match(e.message, /gave up after \d+ attempts/);
        assert.not.ok(fs.existsSync(dest), 'nothing left behind');
        outcome.busy++;
      }
    }
    if (opts.mode === 'wal') outcome.restarts = walRestarts(db);
  } finally {
    const sent = await writer.stop();
    assert.ok(sent > 0, 'the writer ran');
  }
  assert.ok(invariantHolds(db), 'the source itself is intact');
  return { ...outcome, db, d };
}

test('WAL mode, ~400 tx/s, checkpoints every 100 pages: every backup completes, across WAL restarts', async () => {
  const r = await run({ mode: 'wal', tps: 400, autocheckpoint: 100 }, 8);
  assert.is(r.complete, 8, `all complete (attempts ${r.attempts})`);
  assert.ok(r.restarts >= 5, `the WAL restarted during the run (${r.restarts} times)`);
});

test('rollback-journal mode, ~30 tx/s: every backup completes', async () => {
  const r = await run({ mode: 'rollback', tps: 30 }, 6);
  assert.is(r.complete, 6, `all complete (attempts ${r.attempts})`);
});

test('rollback-journal mode, no pause between transactions: never a torn backup (clean errors allowed)', async () => {
  const r = await run({ mode: 'rollback', tps: 'max' }, 4, { retries: 4 });
  assert.is(r.complete + r.busy, 4);
});

test('the VFS refuses to open or delete any source file for writing while it is protected', async () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  sql(db, 'CREATE TABLE t(x); INSERT INTO t VALUES (1);');
  const before = fs.readFileSync(db);
  const sqlite3 = await loadSqlite();
  const unprotect = vfsOf(sqlite3).protect([db, `${db}-wal`, `${db}-journal`, `${db}-shm`]);
  try {
    assert.throws(() => openDb(sqlite3, db, { readonly: false }), /unable to open/);
    const ro = openDb(sqlite3, db);
    assert.is(ro.selectValue('SELECT x FROM t'), 1);
    assert.throws(() => ro.exec('INSERT INTO t VALUES (2)'), /readonly|read-only/i);
    ro.close();
  } finally {
    unprotect();
  }
  assert.equal(fs.readFileSync(db), before);
  const rw = openDb(sqlite3, db, { readonly: false });
  rw.close();
});

test.run();
