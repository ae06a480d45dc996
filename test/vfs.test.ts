/**
 * The VFS's file layer against plain reads and writes: read-ahead windows (sequential and random),
 * coalesced writes, reads past the end of a file; and SQLite on top of it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadSqlite, openDb, vfsOf } from '../src/sqlite.ts';
import { DiskFile, IO_CHUNK, ReadAhead } from '../src/vfs/disk-file.ts';
import { jsMemory, type IoMemory } from '../src/vfs/file.ts';
import { cleanup, sql, tmpdir } from './helpers.ts';

const test = suite('vfs');
test.after.each(cleanup);

/** A deterministic pseudo-random generator, so a failure can be replayed. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
}

function fileOf(bytes: number): { file: string; data: Buffer } {
  const file = path.join(tmpdir(), 'data.bin');
  const data = Buffer.alloc(bytes);
  const r = rng(7);
  for (let i = 0; i < bytes; i++) data[i] = (r() * 256) | 0;
  fs.writeFileSync(file, data);
  return { file, data };
}

/** The memories the file layer runs on: SQLite's WebAssembly heap (as the VFS uses it) and plain JavaScript memory. */
async function memories(): Promise<[string, IoMemory][]> {
  return [['the WebAssembly heap', vfsOf(await loadSqlite()).memory], ['JavaScript memory', jsMemory()]];
}

test('read-ahead returns exactly the file, for sequential, random and mixed reads, across windows and the end', async () => {
  const size = 3 * IO_CHUNK + 12345;
  const { file, data } = fileOf(size);
  const fd = fs.openSync(file, 'r');
  try {
    for (const [what, memory] of await memories()) {
      const ra = new ReadAhead(fd, memory);
      // Reads land in the same memory as the windows (as SQLite's do), or in an array of their own.
      const inMemory = memory.alloc(8192);
      const r = rng(42);
      let pos = 0;
      for (let i = 0; i < 5000; i++) {
        const kind = r();
        const n = kind < 0.1 ? 16 : kind < 0.2 ? 100 : 4096;
        // Mostly sequential, sometimes a jump (as SQLite's header reads and b-tree walks do).
        if (r() < 0.3) pos = Math.floor(r() * (size + 8192));
        const own = i % 2 === 0;
        const mem = own ? new Uint8Array(n + 7) : memory.bytes();
        const at = own ? 7 : inMemory;
        mem.fill(0xee, at, at + n);
        const got = ra.read(mem, at, n, pos);
        const want = Math.max(0, Math.min(n, size - pos));
        assert.is(got, want, `${what}: bytes at ${pos}`);
        assert.ok(Buffer.from(mem.subarray(at, at + got)).equals(data.subarray(pos, pos + got)), `${what}: content at ${pos} (${n} bytes)`);
        if (own) assert.is(mem[6], 0, `${what}: nothing written before the range`);
        pos += n;
      }
      memory.free(inMemory);
      ra.dispose();
    }
  } finally {
    fs.closeSync(fd);
  }
});

test('coalesced writes land where they were written, whatever the order; reads see them at once', async () => {
  for (const [what, memory] of await memories()) {
    const file = path.join(tmpdir(), 'out.bin');
    const fd = fs.openSync(file, 'w+');
    const f = new DiskFile(fd, file, false, memory);
    const expected = Buffer.alloc(2 * IO_CHUNK + 8192);
    const page = memory.alloc(4096);
    const r = rng(3);
    let pos = 0;
    for (let i = 0; i < 800; i++) {
      if (r() < 0.2) pos = Math.floor(r() * (expected.length - 4096) / 512) * 512;
      const chunk = Buffer.alloc(4096, i & 0xff);
      if (pos + chunk.length > expected.length) pos = 0;
      // Written from the shared memory (as SQLite writes) or from an array of its own.
      if (i % 2 === 0) f.write(chunk, 0, chunk.length, pos);
      else {
        memory.bytes().set(chunk, page);
        f.write(memory.bytes(), page, 4096, pos);
        memory.bytes().fill(0x55, page, page + 4096); // reused at once, as SQLite does
      }
      chunk.copy(expected, pos);
      if (i % 97 === 0) {
        const back = new Uint8Array(4096);
        f.read(back, 0, back.length, pos);
        assert.ok(Buffer.from(back).equals(chunk), `${what}: a read sees a write still being gathered`);
      }
      pos += chunk.length;
    }
    memory.free(page);
    f.sync();
    f.close();
    const onDisk = fs.readFileSync(file);
    assert.ok(onDisk.subarray(0, expected.length).equals(expected.subarray(0, onDisk.length)), what);
    fs.rmSync(file);
  }
});

test('SQLite through the VFS: a database round-trips, and a file cut mid-page is reported damaged, as natively', async () => {
  const d = tmpdir();
  const db = path.join(d, 'x.db');
  const sqlite3 = await loadSqlite();
  const conn = openDb(sqlite3, db, { create: true });
  conn.exec(`CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000) INSERT INTO t SELECT i, randomblob(i % 900) FROM s;`);
  conn.close();
  assert.is(sql(db, 'PRAGMA integrity_check; SELECT count(*) FROM t;'), 'ok\n3000');
  // A file cut in the middle of a page: SQLite sees zeros past the end (the VFS zero-fills a
  // short read) and its integrity check reports the damage, as native SQLite's does.
  const cut = path.join(d, 'cut.db');
  fs.writeFileSync(cut, fs.readFileSync(db).subarray(0, fs.statSync(db).size - 3000));
  const c = openDb(sqlite3, cut);
  let verdict: string;
  try {
    verdict = String(c.selectValue('PRAGMA integrity_check'));
  } catch (e) {
    verdict = (e as Error).message;
  } finally {
    c.close();
  }
  assert.is.not(verdict, 'ok');
  const native = (() => {
    try {
      return sql(cut, 'PRAGMA integrity_check');
    } catch (e) {
      return String((e as Error).message);
    }
  })();
  assert.is.not(native, 'ok', 'native SQLite agrees the cut file is damaged');
});

test('the VFS is an object: a failure leaves its message, and the next call that can fail clears it (never attached to a later failure)', async () => {
  const d = tmpdir();
  const db = path.join(d, 'x.db');
  sql(db, 'CREATE TABLE t(x)');
  const sqlite3 = await loadSqlite();
  const vfs = vfsOf(sqlite3);
  const unprotect = vfs.protect([db]);
  assert.ok(vfs.isProtected(path.join(d, '.', 'x.db')));
  assert.throws(() => openDb(sqlite3, db, { readonly: false }));
  assert.match(vfs.takeLastError() ?? '', /refusing to open .*x\.db for writing/);
  assert.throws(() => openDb(sqlite3, db, { readonly: false }));
  unprotect();
  assert.not.ok(vfs.isProtected(db));
  const ok = openDb(sqlite3, db);
  assert.is(ok.selectValue('SELECT count(*) FROM t'), 0);
  ok.close();
  assert.is(vfs.takeLastError(), undefined, 'the earlier failure\'s message is gone');
});

test.run();
