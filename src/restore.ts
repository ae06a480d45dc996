/**
 * restore(): plan -> build and verify the new database beside the target -> safety copy ->
 * settle the old database -> swap.
 *
 * Whatever step a crash hits, the target path holds either the old database or the new one,
 * each intact, and `<db>.pre-restore` holds the old one once it has been written:
 * 1. The new database is built in a hidden temporary file beside the target and verified:
 *    nothing is touched before the backup file has proven sound.
 * 2. The safety copy `<db>.pre-restore` is made with the backup code (so it includes WAL
 *    content not yet checkpointed) and published atomically.
 * 3. The old database is *settled* through SQLite itself: its WAL is checkpointed into it and
 *    removed, or its hot journal rolled back. SQLite's own recovery makes a crash here safe, and
 *    afterwards the old file is self-contained. (Removing an old -wal without this would leave
 *    a torn old file; renaming without it would leave an old WAL beside the new file, which
 *    SQLite would replay into it on the next open and corrupt it.)
 * 4. rename(temp, target), fsync the directory, then remove the stale -shm.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backup, checkSource, copyVerified, type BackupOptions } from './backup.ts';
import { BlufioError } from './errors.ts';
import { checkDestination, fsyncDir, publish, removeStaleTemps, sameFile, tempPathBeside } from './files.ts';
import { gunzipFile, isGzip } from './gzip.ts';
import { holders } from './locks.ts';
import { SQLITE_HEADER } from './snapshot.ts';
import { loadSqlite, openDb } from './sqlite.ts';
import { readFully, writeFully } from './vfs/disk-file.ts';

export interface RestoreOptions extends Omit<BackupOptions, 'verify' | 'mode'> {
  /** Journal mode of the restored database: WAL (blufio's default, storage.wal_mode) or rollback. */
  walMode?: boolean;
  /** Called with each notice a person should see (safety copy, in-use check unavailable). */
  onNotice?: (message: string) => void;
}

export interface RestoreResult {
  command: 'restore';
  database: string;
  path: string;
  bytes: number;
  pages: number;
  pageSize: number;
  durationMs: number;
  integrity: 'ok';
  attempts: number;
  /** Where the previous database was saved, or null when there was none. */
  safetyCopy: string | null;
  /** Whether another process could be checked for ('unavailable' off Linux). */
  inUseCheck: 'passed' | 'forced' | 'unavailable';
}

/** Replaces the database at `dbPath` with the backup at `fromPath`. */
export async function restore(dbPath: string, fromPath: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  const started = performance.now();
  const db = path.resolve(dbPath);
  const from = path.resolve(fromPath);
  const notice = options.onNotice ?? (() => {});

  const fromStat = checkSource(from, 'backup file', 'check the path of the backup file');
  const compressed = fromStat.size >= 2 && isGzip(from);
  if (!compressed) checkHeader(from, fromStat.size);
  const target = checkDestination(db, true, 'database');
  if (sameFile(fromStat, target)) {
    throw new BlufioError('E_SAME_FILE', `the backup file ${from} is the database itself`, 'give the path of a backup file');
  }
  const inUseCheck = checkNotInUse(db, options.force ?? false, notice);

  removeStaleTemps(db);
  const tmp = tempPathBeside(db);
  const unpacked = `${tmp}.src`;
  try {
    // 0. A .gz backup is decompressed beside the target first, then treated like any other.
    let source = from;
    if (compressed) {
      await gunzipFile(from, unpacked, options.signal);
      checkHeader(unpacked, fs.statSync(unpacked).size, from);
      source = unpacked;
    }
    // 1. Build and verify the new database; nothing of the target is touched before this passes.
    const copy = await copyVerified(source, tmp, { ...options, verify: true, force: true }, 'the backup file');
    crashPoint('built');

    // 2. The safety copy of what is there now.
    let safetyCopy: string | null = null;
    if (target) {
      safetyCopy = `${db}.pre-restore`;
      notice(`Creating safety backup: ${safetyCopy}`);
      await makeSafetyCopy(db, safetyCopy, options, target.mode & 0o777);
      crashPoint('safety-copy');
    }

    // 3. The new file takes the target's mode and the configured journal mode.
    fs.chmodSync(tmp, target ? target.mode & 0o777 : 0o600);
    setJournalMode(tmp, options.walMode ?? true); // made durable by publish()'s fsync below

    // 4. Settle the old database, then swap.
    if (target) {
      await settle(db);
      crashPoint('settled');
    }
    fs.rmSync(`${db}-journal`, { force: true });
    fs.rmSync(`${db}-wal`, { force: true });
    publish(tmp, db);
    crashPoint('renamed');
    fs.rmSync(`${db}-shm`, { force: true });
    fsyncDir(path.dirname(db));

    return {
      command: 'restore',
      database: db,
      path: from,
      bytes: fs.statSync(db).size,
      pages: copy.pages,
      pageSize: copy.pageSize,
      durationMs: Math.round(performance.now() - started),
      integrity: 'ok',
      attempts: copy.attempts,
      safetyCopy,
      inUseCheck,
    };
  } finally {
    fs.rmSync(tmp, { force: true });
    fs.rmSync(unpacked, { force: true });
  }
}

/** A file too short for a header, or without SQLite's, is refused before anything else. */
function checkHeader(file: string, size: number, shownAs = file): void {
  const head = new Uint8Array(16);
  const fd = fs.openSync(file, 'r');
  try {
    readFully(fd, head, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (size === 0) throw new BlufioError('E_NOT_SQLITE', `the backup file ${shownAs} is empty`, 'use another backup file');
  if (new TextDecoder().decode(head) !== SQLITE_HEADER) {
    throw new BlufioError('E_NOT_SQLITE', `${shownAs} is not an SQLite database (no SQLite header)`, 'give the path of a file made by blufio backup');
  }
  if (size < 512) throw new BlufioError('E_CORRUPT', `the backup file ${shownAs} is truncated (${size} bytes)`, 'use another backup file');
}

/** Refuses while another process has the database open, unless forced; says when it can't tell. */
function checkNotInUse(db: string, force: boolean, notice: (m: string) => void): RestoreResult['inUseCheck'] {
  if (!fs.existsSync(db)) return 'passed';
  const pids = holders(db);
  if (pids === null) {
    notice('Note: cannot tell whether another process has the database open here (no /proc/locks); stop the blufio server before restoring');
    return 'unavailable';
  }
  if (pids.length === 0) return 'passed';
  if (force) {
    notice(`Warning: process ${pids.join(', ')} has the database open; restoring anyway (--force)`);
    return 'forced';
  }
  throw new BlufioError('E_IN_USE', `the database ${db} is in use by process ${pids.join(', ')}`,
    'stop the blufio server first, or add --force if you are sure');
}

/**
 * The safety copy goes through the backup code so that it holds un-checkpointed WAL content. If
 * the current database is too damaged to copy that way (which is often why people restore), its
 * files are copied byte for byte instead, so that nothing is lost either way.
 */
async function makeSafetyCopy(db: string, dest: string, options: RestoreOptions, mode: number): Promise<void> {
  try {
    await backup(db, dest, { ...options, verify: true, force: true, mode });
  } catch (e) {
    if (!(e instanceof BlufioError) || !['E_INTEGRITY', 'E_CORRUPT', 'E_NOT_SQLITE'].includes(e.code)) throw e;
    for (const suffix of ['', '-wal']) {
      if (!fs.existsSync(db + suffix)) continue;
      const tmp = tempPathBeside(dest + suffix);
      try {
        fs.copyFileSync(db + suffix, tmp);
        fs.chmodSync(tmp, mode);
        publish(tmp, dest + suffix);
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    }
    options.onNotice?.(`Warning: the current database is damaged (${e.message}); its files were copied as they are`);
  }
}

/** Header bytes 18 and 19: 2 = WAL, 1 = rollback journal. Set on the private temp file. */
function setJournalMode(file: string, wal: boolean): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = new Uint8Array(2);
    readFully(fd, b, 18);
    b.fill(wal ? 2 : 1);
    writeFully(fd, b, 18);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Makes the old database self-contained through SQLite's own recovery: opening it read-write in
 * exclusive locking mode replays its WAL (or rolls back a hot journal), and switching to DELETE
 * mode checkpoints the WAL into the file and removes it. If the old database cannot be opened
 * (damaged), its files are left for the swap to replace; the safety copy holds them already.
 */
async function settle(db: string): Promise<void> {
  const hasWal = fs.existsSync(`${db}-wal`);
  const hasJournal = fs.existsSync(`${db}-journal`);
  if (!hasWal && !hasJournal) return;
  const sqlite3 = await loadSqlite();
  let conn;
  try {
    conn = openDb(sqlite3, db, { readonly: false });
    conn.exec('PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=DELETE;');
    conn.selectValue('SELECT count(*) FROM sqlite_schema');
  } catch {
    // Damaged beyond SQLite's recovery: the .pre-restore copy already holds its files.
  } finally {
    conn?.close();
  }
}

/** Test hook: BLUFIO_TEST_CRASH_AT=<step> kills the process at that step, as a power cut would. */
function crashPoint(step: string): void {
  if (process.env.BLUFIO_TEST_CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
}
