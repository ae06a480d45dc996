/**
 * offThread (src/worker.ts) as an embedding server uses it: from the library bundle
 * dist/index.mjs, the jobs run on a worker thread and answer exactly as on the main thread —
 * results, progress events, BlufioErrors with their codes and hints, and an AbortSignal that
 * stops the job with nothing left behind.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, cleanup, fingerprint, makeSampleDb, sql, tmpdir } from './helpers.ts';

type Lib = typeof import('../src/index.ts');
const lib = (): Promise<Lib> => import(path.join(ROOT, 'dist', 'index.mjs'));

const test = suite('off the main thread');
test.after.each(cleanup);

test('backup, inspect and restore on a worker thread: same results as on the main thread, progress carried across', async () => {
  const { offThread, inspect } = await lib();
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  makeSampleDb(db, { wal: true, rows: 3000 });
  const phases = new Set<string>();
  const r = await offThread.backup(db, path.join(d, 'b.db'), { onProgress: (p) => phases.add(p.phase) });
  assert.ok(phases.has('copy') && phases.has('verify'), [...phases].join());
  assert.is(sql(path.join(d, 'b.db'), 'PRAGMA integrity_check'), 'ok');
  assert.is(fingerprint(path.join(d, 'b.db')), fingerprint(db));
  assert.is(r.pages, fs.statSync(path.join(d, 'b.db')).size / r.pageSize);
  const off = await offThread.inspect(path.join(d, 'b.db'));
  const on = await inspect(path.join(d, 'b.db'));
  assert.equal({ ...off, durationMs: 0 }, { ...on, durationMs: 0 });
  const target = path.join(d, 'restored.db');
  await offThread.restore(target, path.join(d, 'b.db'));
  assert.is(fingerprint(target), fingerprint(db));
});

test('errors come back as BlufioErrors with their code and hint; an abort stops the job and leaves nothing', async () => {
  const { offThread, BlufioError } = await lib();
  const d = tmpdir();
  try {
    await offThread.inspect(path.join(d, 'missing.db'));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, BlufioError);
    assert.is((e as InstanceType<typeof BlufioError>).code, 'E_SOURCE_MISSING');
    assert.ok((e as InstanceType<typeof BlufioError>).hint);
  }
  const db = path.join(d, 'src.db');
  makeSampleDb(db, { rows: 20000 });
  const ac = new AbortController();
  const job = offThread.backup(db, path.join(d, 'b.db'), { signal: ac.signal, onProgress: () => ac.abort() });
  try {
    await job;
    assert.unreachable();
  } catch (e) {
    assert.is((e as InstanceType<typeof BlufioError>).code, 'E_ABORTED');
  }
  assert.equal(fs.readdirSync(d).sort(), ['src.db']);
});

test('a hook that throws ends the job with its error; an abort during the check stops it before anything is published; test hooks are refused', async () => {
  const { offThread } = await lib();
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  // Big enough that the integrity check runs for a while after its progress event is sent.
  sql(db, 'CREATE TABLE t(x); CREATE INDEX tx ON t(x); INSERT INTO t SELECT randomblob(800) FROM generate_series(1, 40000);');
  try {
    await offThread.backup(db, path.join(d, 'a.db'), { onProgress: () => { throw new Error('the caller\'s own failure'); } });
    assert.unreachable();
  } catch (e) {
    assert.is((e as Error).message, 'the caller\'s own failure');
  }
  const ac = new AbortController();
  try {
    await offThread.backup(db, path.join(d, 'b.db'), { signal: ac.signal, onProgress: (p) => p.phase === 'verify' && ac.abort() });
    assert.unreachable();
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_ABORTED');
  }
  assert.equal(fs.readdirSync(d), ['src.db'], 'no backup and no temporary file left');
  try {
    await offThread.restore(path.join(d, 'r.db'), db, { beforeSwap: () => {} } as object);
    assert.unreachable();
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_USAGE');
    assert.match((e as Error).message, /cannot carry the option beforeSwap/);
  }
});

test.run();
