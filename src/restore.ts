/**
 * restore(): plan -> build and verify the new database beside the target -> settle the old
 * database -> keep it as the safety copy -> swap.
 *
 * Whatever step a crash hits, the target path holds either the old database or the new one,
 * each intact, and `<db>.pre-restore` holds the old one once it has been kept:
 * 1. The new database is built in a hidden temporary file beside the target and verified:
 *    nothing is touched before the backup file has proven sound.
 * 2. The old database is *settled* through SQLite itself: its WAL is checkpointed into it and
 *    removed, or its hot journal rolled back. SQLite's own recovery makes a crash here safe, and
 *    afterwards the old file is self-contained. (Removing an old -wal without this would leave
 *    a torn old file; renaming without it would leave an old WAL beside the new file, which
 *    SQLite would replay into it on the next open and corrupt it.)
 * 3. The settled old file is kept as `<db>.pre-restore` by a hard link (no copy: the old inode
 *    is simply given a second name, and nothing writes to it after the swap).
 * 4. rename(temp, target), fsync the directory, then remove the stale -shm.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkSource, copyVerified, type BackupOptions } from './backup.ts';
import { BlufioError, fsError } from './errors.ts';
import { checkDestination, fsyncDir, fsyncFile, publishDatabase, removeStaleTemps, sameFile, tempPathBeside } from './files.ts';
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
  const db = realPath(path.resolve(dbPath));
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

  // Temporary names of runs that were killed: the new database's, and the safety copy's.
  const safetyName = `${db}.pre-restore`;
  removeStaleTemps(db, ...['', '-wal', '-journal'].map((suffix) => safetyName + suffix));
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

    // 2. The new file takes the target's owner, group and mode (a restore as root must not lock
    //    the server, running as its own user, out of its database) and the configured journal mode.
    fs.chmodSync(tmp, target ? target.mode & 0o777 : 0o600);
    takeOwner(tmp, db, target);
    setJournalMode(tmp, options.walMode ?? true); // made durable by the fsync when it is published

    // 3. Settle the old database, keep it as the safety copy, then swap.
    let safetyCopy: string | null = null;
    if (target) {
      await settle(db);
      crashPoint('settled');
      safetyCopy = safetyName;
      const earlier = moveEarlierSafetyCopy(safetyName);
      if (earlier) notice(`Earlier safety backup kept as ${earlier}`);
      notice(`Creating safety backup: ${safetyCopy}`);
      keepSafetyCopy(db, safetyCopy);
      crashPoint('safety-copy');
    }
    publishDatabase(tmp, db);
    crashPoint('renamed');

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

/**
 * Gives the new database the owner and group of the one it replaces; a database created fresh
 * by root in a directory owned by another user gets that directory's owner and group (the server
 * that owns the directory must be able to open it). Refused before anything is replaced when
 * the owner cannot be set.
 */
function takeOwner(tmp: string, db: string, target: fs.Stats | null): void {
  const want = target ?? (process.getuid?.() === 0 ? fs.statSync(path.dirname(db)) : null);
  if (!want) return;
  const have = fs.statSync(tmp);
  if (have.uid === want.uid && have.gid === want.gid) return;
  try {
    fs.chownSync(tmp, want.uid, want.gid);
  } catch (e) {
    throw new BlufioError('E_PERMISSION', `cannot give the restored database the owner of ${target ? 'the one it replaces' : 'its directory'} (uid ${want.uid}, gid ${want.gid}): ${(e as Error).message}`,
      'run the restore as that user or as root; nothing was changed', { cause: e });
  }
}

/**
 * A safety copy from an earlier restore is never deleted by a later one: it moves to
 * `<db>.pre-restore-<YYYYMMDDTHHMMSSZ>` (when it became a safety copy). Returns that name, or null.
 */
function moveEarlierSafetyCopy(safetyName: string): string | null {
  const st = fs.lstatSync(safetyName, { throwIfNoEntry: false });
  if (!st || !st.isFile()) return null;
  const stamp = new Date(st.ctimeMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let name = `${safetyName}-${stamp}`;
  for (let n = 2; fs.existsSync(name); n++) name = `${safetyName}-${stamp}-${n}`;
  try {
    fs.renameSync(safetyName, name);
    fsyncDir(path.dirname(name));
  } catch (e) {
    throw fsError(e, safetyName, 'cannot keep the earlier safety copy');
  }
  return name;
}

/**
 * A database path that is a symbolic link names the file it points to: that file is replaced
 * (and its -wal is the one SQLite uses), and the link stays a link.
 */
function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
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
 * Keeps the old database, as it is, at `dest`: its files are hard-linked there (a copy where the
 * file system has no hard links), so this costs nothing whatever the size, and the old file is
 * never rewritten. settle() has normally made it self-contained already; if it could not (a
 * database too damaged for SQLite to open), its -wal or -journal is kept beside it too, so that
 * opening the safety copy sees what opening the old database would have.
 *
 * The previous safety copy and its companions are removed first: a stale `-wal` left beside the
 * new one would be replayed into it. The database path still holds the old database throughout.
 */
function keepSafetyCopy(db: string, dest: string): void {
  const staged: Array<{ tmp: string; final: string }> = [];
  try {
    for (const suffix of ['-wal', '-journal', '']) {
      if (!fs.existsSync(db + suffix)) continue;
      const tmp = tempPathBeside(dest + suffix);
      staged.push({ tmp, final: dest + suffix });
      linkOrCopy(db + suffix, tmp);
    }
    crashPoint('linked');
    for (const suffix of ['-wal', '-journal', '-shm', '']) fs.rmSync(dest + suffix, { force: true });
    for (const { tmp, final } of staged) fs.renameSync(tmp, final); // the database itself last
    fsyncDir(path.dirname(dest));
  } catch (e) {
    throw fsError(e, dest, 'cannot keep the current database as the safety copy');
  } finally {
    for (const { tmp } of staged) fs.rmSync(tmp, { force: true });
  }
}

/** A second name for the file; a durable copy where the file system has no hard links. */
function linkOrCopy(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch (e) {
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EMLINK', 'ENOSYS'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    fs.copyFileSync(from, to);
    fsyncFile(to);
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
 * (damaged), its files are left as they are: keepSafetyCopy() keeps them all.
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
