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
 * 4. rename(temp, target), fsync the directory (a stale -shm is left: SQLite resets it on first
 *    open). Users of the database are looked for before each step and after the swap (below).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildVerifiedCopy, checkSource, sourceBytes, type BackupOptions } from './build.ts';
import { BlufioError, fsError, renamed } from './errors.ts';
import { assertNotLockedOut, claimForRestore, LOCKED_READ_VERSION, sweepStaleClaims, type Claim } from './claim.ts';
import { appliedCompanions, checkDestination, oneFileSystem, statOrNull, sweepWorkDirs, ensureRoom, workDirPath, fsyncDir, fsyncFile, publish, publishDatabase, removeStaleTemps, sameFile, tempPathBeside } from './files.ts';
import { compressed, encrypted, type Layers, layersOfFile, unpackFile } from './transforms/index.ts';
import { stemOf } from './sets/index.ts';
import { withSource } from './sources.ts';
import { describePid, holders, locksOn, openers } from './locks.ts';
import { checkBackupHeader, HEADER_BYTES, setJournalMode } from './core/header.ts';
import { signalsSeen } from './core/backup-loop.ts';
import { loadSqlite, openDb } from './sqlite.ts';
import { formatMB } from './progress.ts';
import { readFully, writeFully } from './vfs/disk-file.ts';

export interface RestoreOptions extends Omit<BackupOptions, 'verify' | 'mode' | 'recipients' | 'gzip'> {
  /** From a set: the newest backup at or before this time (default: the newest). */
  at?: Date;
  /** From a set: whose backups (the series: a database file's name without .db; default: the database's own). */
  series?: string;
  /** Journal mode of the restored database: WAL (blufio's default, storage.wal_mode) or rollback. */
  walMode?: boolean;
  /** Called with each notice a person should see (safety copy, in-use check unavailable). */
  onNotice?: (message: string) => void;
  /** For tests: runs after the last look for other users of the database, right before the swap. @internal */
  beforeSwap?: () => Promise<void> | void;
  /** For tests: runs right after the rename, before the looks that may undo it. @internal */
  afterSwap?: () => Promise<void> | void;
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
  /** Every safety copy beside the database now, newest first, with its size (and its -wal's). */
  safetyCopies: Array<{ path: string; bytes: number }>;
  /** Whether another process could be checked for ('unavailable' off Linux). */
  inUseCheck: 'passed' | 'forced' | 'unavailable';
}

/**
 * What a restore would do, found out without changing anything: every check a restore makes
 * before it touches the database, and the names it would use. `blufio restore --dry-run` prints it.
 */
export interface RestorePlan {
  command: 'restore';
  /** The database that would be replaced (a symbolic link resolved to the file it names). */
  database: string;
  /** The backup file. */
  path: string;
  compressed: boolean;
  /** An age-encrypted backup (the identities given open it: checked by the plan). */
  encrypted: boolean;
  /** Size of the database the backup holds, from its header (null for a .gz / .age: known once unpacked). */
  databaseBytes: number | null;
  /** Journal mode the restored database gets (storage.wal_mode). */
  journalMode: 'wal' | 'rollback';
  /** The database there now (its size with its -wal), or null when the restore would create it. */
  replaces: { bytes: number; files: string[] } | null;
  /** Where the current database would be kept. */
  safetyCopy: string | null;
  /** Where the previous safety copy would be moved (never deleted), or null. */
  earlierSafetyCopyMovesTo: string | null;
  /** Pids of other processes that have the database open (null: cannot tell on this system). */
  inUseBy: number[] | null;
}

/** Checks everything a restore checks before it changes anything, and says what it would do. */
export function planRestore(dbPath: string, fromPath: string, options: Pick<RestoreOptions, 'walMode' | 'identities'> = {}): RestorePlan & { fromStat: fs.Stats; target: fs.Stats | null; layers: Layers } {
  const db = realPath(path.resolve(dbPath));
  const from = path.resolve(fromPath);
  // What a killed restore left closed is opened again first (or, if that cannot be done here, refused).
  for (const dir of new Set([path.dirname(db), path.dirname(from)])) sweepStaleClaims(dir);
  assertNotLockedOut(from);
  const fromStat = checkSource(from, 'backup file', 'check the path of the backup file');
  if (fs.existsSync(db)) assertNotLockedOut(db);
  // An encrypted backup is opened far enough to know the identities fit, before anything else.
  const layers = layersOfFile(from, options);
  const declared = layers.length > 0 ? null : checkHeader(from, fromStat.size);
  const target = checkDestination(db, true, 'database');
  if (sameFile(fromStat, target)) {
    throw new BlufioError('E_SAME_FILE', `the backup file ${from} is the database itself`, 'give the path of a backup file');
  }
  const safetyName = `${db}.pre-restore`;
  const earlier = fs.lstatSync(safetyName, { throwIfNoEntry: false });
  const files = target ? [db, ...['-wal', '-journal'].map((s) => db + s).filter((p) => fs.existsSync(p))] : [];
  return {
    command: 'restore',
    database: db,
    path: from,
    compressed: compressed(layers),
    encrypted: encrypted(layers),
    databaseBytes: declared,
    journalMode: options.walMode ?? true ? 'wal' : 'rollback',
    replaces: target ? { bytes: files.reduce((n, p) => n + fs.statSync(p).size, 0), files } : null,
    safetyCopy: target ? safetyName : null,
    earlierSafetyCopyMovesTo: target && earlier?.isFile() ? datedName(safetyName, earlier) : null,
    inUseBy: target ? holders(db) : [],
    fromStat,
    target,
    layers,
  };
}

/**
 * Replaces the database at `dbPath` with the backup at `fromPath` (a file, or an s3://BUCKET/KEY
 * object: downloaded whole to a private work directory first, then restored like a file).
 */
export async function restore(dbPath: string, fromPath: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  sweepWorkDirs(options.workDir);
  // A set (a folder or an s3:// prefix): the newest backup at or before options.at; a
  // differential (alone, or picked from a set) is rebuilt on its base first.
  // A set, a differential or a remote object: restored from a local plain copy, named as given.
  const made = await withSource(fromPath, { ...options, stem: options.series ?? stemOf(dbPath) }, async (file, { where }) => ({ ...(await restore(dbPath, file, { ...options, at: undefined })), path: where }));
  if (made) return made.value;
  const started = performance.now();
  const notice = options.onNotice ?? (() => {});
  const plan = planRestore(dbPath, fromPath, options);
  const { database: db, path: from, compressed, encrypted, fromStat, layers } = plan;
  const force = options.force ?? false;
  const inUseCheck = checkNotInUse(db, plan.inUseBy, force, notice);
  const claim = await claimForRestore(db);
  // Looked at again once claimed: taking the claim may have repaired what a killed run left (its mode).
  const target = plan.target && (statOrNull(db) ?? plan.target);
  // What the database's files are now: any write from here on comes from a process that opened it meanwhile.
  const startStamp = target ? filesStamp(db) : '';

  // Temporary names of runs that were killed: the new database's, and the safety copy's.
  const safetyName = `${db}.pre-restore`;
  const tmp = tempPathBeside(db);
  let unpacked = `${tmp}.src`;
  try {
    if (options.workDir) unpacked = `${tempPathBeside(path.join(workDirPath(options.workDir), path.basename(db)))}.src`;
    removeStaleTemps(db, unpacked, ...['', '-wal', '-journal', '-shm'].map((suffix) => safetyName + suffix));
    // 0. A .gz / .age backup is unpacked first (beside the target, or in --work-dir), then
    //    treated like any other.
    let source = from;
    if (compressed || encrypted) {
      // An .age alone unpacks to about its own size, and the restored database is as big again:
      // on one file system, both are needed (a .gz's unpacked size is known only once unpacked).
      const both = encrypted && !compressed && oneFileSystem(path.dirname(unpacked), path.dirname(db));
      ensureRoom(path.dirname(unpacked), fromStat.size * (both ? 2 : 1),
        both ? 'the unpacked backup and the restored database' : 'the unpacked backup (at least as big as the .gz / .age)',
        'free some space there, or pass --work-dir <directory> on a file system with room');
      await unpackFile(from, unpacked, layers, options, options.signal);
      // What is judged is what came out of it: "the backup file x.age is empty" of a 200-byte file would mislead.
      checkHeader(unpacked, fs.statSync(unpacked).size, `${from} (${encrypted ? 'decrypted' : 'unpacked'})`);
      source = unpacked;
    }
    // 1. Build and verify the new database; nothing of the target is touched before this passes.
    ensureRoom(path.dirname(db), sourceBytes(source), 'the restored database',
      source !== from && !options.workDir
        ? 'free some space there first, or pass --work-dir <directory> on another file system for the unpacked copy; nothing was changed'
        : 'free some space there first; nothing was changed');
    const copy = await buildVerifiedCopy(source, tmp, { ...options, verify: true }, 'the backup file').catch((e: unknown) => {
      // Errors name the backup the user gave, never the private file it was unpacked into.
      throw renamed(e, source, from);
    });
    crashPoint('built');

    // 2. The new file takes the target's owner, group and mode (a restore as root must not lock
    //    the server, running as its own user, out of its database) and the configured journal mode.
    //    The header first: a read-only mode (0440) would keep even the owner from writing it.
    setFileJournalMode(tmp, options.walMode ?? true);
    fs.chmodSync(tmp, target ? target.mode & 0o777 : 0o600);
    takeOwner(tmp, db, target);
    // Made durable now, not at the swap: an fsync there (tens of ms for a big file) would widen
    // the window between the last look for other users of the database and the rename.
    fsyncFile(tmp);

    // 3. Settle the old database, keep it as the safety copy, then swap; before each of these
    //    steps and after the swap, look again for a process that opened the database meanwhile.
    //    A Ctrl-C or SIGTERM that came while the copy was checked stops it here, nothing changed.
    await signalsSeen(options.signal).catch((e: unknown) => {
      throw e instanceof BlufioError && e.code === 'E_ABORTED' ? new BlufioError('E_ABORTED', `interrupted; ${db} was not changed`, undefined, { cause: e }) : e;
    });
    const safetyCopy = target ? await replaceExisting(db, tmp, safetyName, force, notice, claim, startStamp, options) : null;
    if (!target) publishFresh(tmp, db);
    const safetyCopies = listSafetyCopies(db);
    if (safetyCopies.length > 0) {
      const total = safetyCopies.reduce((n, c) => n + c.bytes, 0);
      notice(`Safety copies (${formatMB(total)} in all; remove them when you no longer need them): ${safetyCopies.map((c) => `${c.path} (${formatMB(c.bytes)})`).join(', ')}`);
    }

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
      safetyCopies,
      inUseCheck,
    };
  } finally {
    fs.rmSync(tmp, { force: true });
    fs.rmSync(unpacked, { force: true });
    claim.release();
  }
}

/**
 * Swaps the built file `tmp` in for the existing database, keeping the old one as the safety
 * copy. A process that opens the database while this runs (a server restarted by systemd, an
 * operator) must never lose a write. Nothing stops a native process from opening the file
 * (JavaScript cannot take SQLite's POSIX locks), so the restore looks, at every step:
 * - before settling: for users, and for any change to the database's files since the restore
 *   started (a writer that came and went while the new file was built);
 * - after settling and before the swap: for users, for a -wal/-journal a settled database cannot
 *   have, and for any change since settling; then the old file is closed to others (lockOut())
 *   and looked at once more;
 * - after the swap: for a process holding the old file, or a write to it. Then the swap is undone
 *   (the old file renamed back, with its companions) and the restore fails.
 * Each refusal leaves the database as it was (settling only checkpoints it, as SQLite would).
 * With --force and a process using the database, nothing is settled: the old database and all of
 * its companions (-wal, -shm, -journal) are hard-linked to the safety copy's names first, so the
 * writes that process goes on making land in `<db>.pre-restore`, whole, and the notice says so.
 */
async function replaceExisting(db: string, tmp: string, safetyName: string, force: boolean, notice: (m: string) => void,
  claim: Claim, startStamp: string, hooks: Pick<RestoreOptions, 'beforeSwap' | 'afterSwap'> = {}): Promise<string> {
  let users = stillInUse(db, force, 'before the old database was settled');
  const live = users.length > 0; // only with --force
  if (!live && filesStamp(db) !== startStamp) throw writtenMeanwhile(db, 'while the new database was built');
  const rollbackWriter = live && !fs.existsSync(`${db}-wal`);
  const settled = live ? false : await settle(db);
  crashPoint('settled');
  const settledStamp = filesStamp(db);
  if (!live) {
    users = stillInUse(db, force, 'while the old database was settled');
    // A settled database has no -wal or -journal: one that is there now was made by a process
    // that opened the database meanwhile, even if it has closed it again.
    const appeared = settled ? appliedCompanions(db) : [];
    if (appeared.length > 0) throw openedMeanwhile(db, [], 'while the old database was settled', `${appeared[0]} appeared; nothing was replaced`);
  }
  const earlier = moveEarlierSafetyCopy(safetyName);
  if (earlier) notice(`Earlier safety backup kept as ${earlier}`);
  notice(`Creating safety backup: ${safetyName}`);
  const kept = keepSafetyCopy(db, safetyName, live);
  crashPoint('safety-copy');
  let unlock = () => {};
  let lockedStamp = '';
  if (!live) {
    try {
      lastLooks(db, settled, settledStamp);
      // Closed to others from here until the looks after the swap (see lockOut()), then looked
      // at once more: whoever opened it before is seen now, whoever opens it after cannot use it.
      unlock = lockOut(db, safetyName, claim);
      lockedStamp = contentStamp(db);
      lastLooks(db, settled, lockedStamp, true);
    } catch (e) {
      unlock();
      undoSafetyCopy(safetyName, kept, earlier);
      throw e;
    }
  } else if (rollbackWriter) {
    notice(`warning: process ${users.join(', ')} has the database open (rollback-journal mode); restoring anyway (--force). `
      + `SQLite refuses its writes to a moved database, so its next commit fails (nothing it committed is lost: ${safetyName} holds it); restart it now`);
  } else {
    notice(`warning: process ${users.join(', ')} has the database open and goes on writing to the old one: `
      + `its writes from now on are in ${safetyName} (kept with its ${kept.filter((s) => s).map((s) => s.slice(1)).join(', ') || 'file'}), not in the restored database; restart it now`);
  }
  // The old database's companions now have a second name beside the safety copy (or there are
  // none: settled), so removing these names loses nothing; a live writer's files stay whole there.
  // A settled database's -shm is left: no WAL refers to it, and SQLite resets it on first open.
  if (!settled) for (const suffix of ['-wal', '-journal', ...(live ? ['-shm'] : [])]) fs.rmSync(db + suffix, { force: true });
  await hooks.beforeSwap?.();
  publish(tmp, db, { synced: true });
  crashPoint('renamed');
  if (live) return safetyName;
  await hooks.afterSwap?.();
  // The old file is now reachable only as the safety copy: a process holding it, or a write to
  // it, got in between the last look and the rename.
  const late = holders(safetyName) ?? [];
  if (late.length > 0 || contentStamp(safetyName) !== lockedStamp) {
    const onNew = fileUsers(db);
    if (onNew.length > 0) {
      // Both files are in use: putting the old one back would pull the new one from under its users.
      unlock();
      throw new BlufioError('E_IN_USE', `process ${late.join(', ') || '(gone)'} opened the database ${db} while it was being replaced and wrote to the old one, now ${safetyName}, `
        + `while process ${onNew.join(', ')} opened the restored one; they may share ${db}-wal`,
        `stop them all, then check both files (sqlite3 <file> "PRAGMA integrity_check") before using either; the old database is ${safetyName}`);
    }
    undoSwap(db, safetyName, kept, earlier);
    unlock();
    throw openedMeanwhile(db, late, 'while it was being replaced', 'the restore was undone');
  }
  unlock();
  return safetyName;
}

/** The looks right before the swap: users, a -wal/-journal a settled database cannot have, any write. */
function lastLooks(db: string, settled: boolean, stamp: string, mainOnly = false): void {
  stillInUse(db, false, 'before the swap');
  const appeared = settled ? appliedCompanions(db) : [];
  if (appeared.length > 0) throw openedMeanwhile(db, [], 'before the swap', `${appeared[0]} appeared; nothing was replaced`);
  if ((mainOnly ? contentStamp(db) : filesStamp(db)) !== stamp) throw writtenMeanwhile(db, 'after it was settled');
}

/**
 * Closes the old database to everyone else for the last looks, the swap and the looks after it:
 * its permission bits are cleared (a server not running as root cannot open it), and its header's
 * read version (byte 19) is set to 255, so that SQLite, in any process, refuses to read or write
 * it ("file is not a database") instead of creating a WAL for it beside the new file. A process
 * that opened it before is seen by the looks; one that opens it now gets an error, never an
 * acknowledged write that would be lost. Returns the function that puts both back, through a
 * handle opened before, on the old file wherever its name is then. The claim records what to put
 * back first, so that a restore killed in this window has it repaired by the next one.
 */
function lockOut(db: string, safetyName: string, claim: Claim): () => void {
  let fd: number;
  try {
    fd = fs.openSync(db, 'r+');
  } catch {
    return () => {};
  }
  const st = fs.fstatSync(fd);
  const mode = st.mode & 0o7777;
  const version = new Uint8Array(1);
  readFully(fd, version, 19);
  try {
    claim.note({ lockedOut: [db, safetyName], ino: st.ino, mode, readVersion: version[0] });
    fs.fchmodSync(fd, 0);
    writeFully(fd, Uint8Array.of(LOCKED_READ_VERSION), 19);
  } catch {
    try {
      writeFully(fd, version, 19);
      fs.fchmodSync(fd, mode);
    } finally {
      fs.closeSync(fd);
    }
    return () => {};
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    try {
      writeFully(fd, version, 19);
      fs.fsyncSync(fd);
      fs.fchmodSync(fd, mode);
      claim.note({});
    } finally {
      fs.closeSync(fd);
    }
  };
}

/** Every file of the database that a write changes: itself, its -wal and -journal (inode, size, mtime). */
function filesStamp(db: string): string {
  return ['', '-wal', '-journal'].map((s) => `${s}:${fs.existsSync(db + s) ? contentStamp(db + s) : '-'}`).join('|');
}

function writtenMeanwhile(db: string, when: string): BlufioError {
  return new BlufioError('E_IN_USE', `the database ${db} was written to ${when} (a process opened it and closed it again); nothing was replaced: ${db} holds those writes`,
    'stop the blufio server and whatever restarts it (e.g. systemctl stop blufio), then run the restore again');
}

/**
 * Looks for processes using the database. With --force they are returned (the caller keeps their
 * files whole); otherwise one that appeared since the restore started stops it here.
 */
function stillInUse(db: string, force: boolean, when: string): number[] {
  const pids = holders(db) ?? [];
  if (pids.length === 0 || force) return pids;
  throw openedMeanwhile(db, pids, when, 'nothing was replaced');
}

function openedMeanwhile(db: string, pids: number[], when: string, outcome: string): BlufioError {
  const who = pids.length > 0 ? `process ${pids.map(describePid).join(', ')} opened the database ${db}` : `a process opened the database ${db}`;
  return new BlufioError('E_IN_USE', `${who} ${when}; ${outcome}: ${db} is still the database it uses, with all its writes`,
    'stop the blufio server and whatever restarts it (e.g. systemctl stop blufio), then run the restore again');
}

/** Other processes that hold this very file open or locked (not its -shm, which the old and new file share by name). */
function fileUsers(file: string): number[] {
  return [...new Set([...(locksOn(file) ?? []).map((l) => l.pid), ...openers(file)])];
}

/** Size and modification time (ns) of a file: what a write changes (a new link or name does not). */
function contentStamp(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${st.ino}:${st.size}:${st.mtimeNs}`;
}

/** A database created by a restore: never over one that appeared meanwhile (the server started). */
function publishFresh(tmp: string, db: string): void {
  try {
    publishDatabase(tmp, db, { noClobber: true });
  } catch (e) {
    if ((e as BlufioError).code !== 'E_DEST_EXISTS') throw e;
    throw new BlufioError('E_IN_USE', `the database ${db} was created by another process while the restore ran; it was left as it is`,
      'stop the blufio server and whatever restarts it, then run the restore again (it will keep a safety copy)');
  }
  crashPoint('renamed');
}

/** `<db>.pre-restore` and the dated ones earlier restores moved aside, newest first. */
function listSafetyCopies(db: string): Array<{ path: string; bytes: number }> {
  const base = path.basename(db);
  const re = /^\.pre-restore(?:-(\d{8}T\d{6}Z)(?:-(\d+))?)?$/;
  const found: Array<{ path: string; bytes: number; key: string }> = [];
  for (const name of fs.readdirSync(path.dirname(db))) {
    if (!name.startsWith(base)) continue;
    const m = re.exec(name.slice(base.length));
    if (!m) continue;
    const p = path.join(path.dirname(db), name);
    const bytes = [p, `${p}-wal`].reduce((n, f) => n + (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0);
    // The current one first, then the dated ones by time (and by their -N within one second).
    found.push({ path: p, bytes, key: m[1] ? `${m[1]}-${(m[2] ?? '1').padStart(6, '0')}` : '~' });
  }
  return found.sort((a, b) => (a.key < b.key ? 1 : -1)).map(({ path: p, bytes }) => ({ path: p, bytes }));
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
  const name = datedName(safetyName, st);
  try {
    fs.renameSync(safetyName, name);
    fsyncDir(path.dirname(name));
  } catch (e) {
    throw fsError(e, safetyName, 'cannot keep the earlier safety copy');
  }
  return name;
}

/** `<db>.pre-restore-<YYYYMMDDTHHMMSSZ>` (when it became a safety copy), `-2`, `-3`… if taken. */
function datedName(safetyName: string, st: fs.Stats): string {
  const stamp = new Date(st.ctimeMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let name = `${safetyName}-${stamp}`;
  for (let n = 2; fs.existsSync(name); n++) name = `${safetyName}-${stamp}-${n}`;
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

/** The first look at a backup file (core/header.ts): SQLite's header, not empty, a page at least. */
function checkHeader(file: string, size: number, shownAs = file): number {
  const head = new Uint8Array(HEADER_BYTES);
  const fd = fs.openSync(file, 'r');
  try {
    readFully(fd, head, 0);
  } finally {
    fs.closeSync(fd);
  }
  return checkBackupHeader(head, size, `the backup file ${shownAs}`,
    { notBackup: 'give the path of a file made by blufio backup', damaged: 'use another backup file' });
}

/** Refuses while another process has the database open, unless forced; says when it can't tell. */
function checkNotInUse(db: string, pids: number[] | null, force: boolean, notice: (m: string) => void): RestoreResult['inUseCheck'] {
  if (!fs.existsSync(db)) return 'passed';
  if (pids === null) {
    notice('Note: cannot tell whether another process has the database open here (no /proc/locks); stop the blufio server before restoring');
    return 'unavailable';
  }
  if (pids.length === 0) return 'passed';
  if (force) {
    notice(`warning: process ${pids.map(describePid).join(', ')} has the database open; restoring anyway (--force)`);
    return 'forced';
  }
  throw new BlufioError('E_IN_USE', `the database ${db} is in use by process ${pids.map(describePid).join(', ')}`,
    'stop the blufio server first, or add --force if you are sure');
}

/**
 * Keeps the old database, as it is, at `dest`: its files are hard-linked there (a copy where the
 * file system has no hard links), so this costs nothing whatever the size, and the old file is
 * never rewritten. settle() has normally made it self-contained already; if it could not (a
 * database too damaged for SQLite to open), its -wal or -journal is kept beside it too, so that
 * opening the safety copy sees what opening the old database would have. With `live` (--force
 * over a process using it) its -shm is kept too: that process's later writes go to these files,
 * and its wal-index must stay theirs. Returns the suffixes kept ('' for the database itself).
 *
 * The previous safety copy and its companions are removed first: a stale `-wal` left beside the
 * new one would be replayed into it. The database path still holds the old database throughout.
 */
function keepSafetyCopy(db: string, dest: string, live: boolean): string[] {
  const staged: Array<{ tmp: string; final: string; suffix: string }> = [];
  try {
    for (const suffix of ['-wal', '-journal', ...(live ? ['-shm'] : []), '']) {
      if (!fs.existsSync(db + suffix)) continue;
      const tmp = tempPathBeside(dest + suffix);
      staged.push({ tmp, final: dest + suffix, suffix });
      linkOrCopy(db + suffix, tmp, live && suffix !== '');
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
  return staged.map((s) => s.suffix);
}

/** Withdraws a safety copy made by this run (the database was not replaced): the earlier one is named back. */
function undoSafetyCopy(dest: string, kept: string[], earlier: string | null): void {
  for (const suffix of kept) fs.rmSync(dest + suffix, { force: true });
  if (earlier) fs.renameSync(earlier, dest);
  fsyncDir(path.dirname(dest));
}

/**
 * Puts the old database back at `db` (atomically over the new one, which is discarded) with the
 * companions that were moved aside, and the earlier safety copy back at its name.
 */
function undoSwap(db: string, dest: string, kept: string[], earlier: string | null): void {
  try {
    for (const suffix of kept.filter((s) => s !== '')) {
      // Never over a file that is there now: it belongs to the process that opened the old database.
      if (!fs.existsSync(db + suffix)) fs.renameSync(dest + suffix, db + suffix);
      else fs.rmSync(dest + suffix, { force: true });
    }
    fs.renameSync(dest, db);
    if (earlier) fs.renameSync(earlier, dest);
    fsyncDir(path.dirname(db));
  } catch (e) {
    throw fsError(e, db, `a process opened the database while it was being replaced, and putting the old one back failed (it is at ${dest})`);
  }
}

/**
 * A second name for the file; a durable copy where the file system has no hard links, except for
 * a live process's -wal/-shm (`mustLink`): a copy of those would not receive its later writes.
 */
function linkOrCopy(from: string, to: string, mustLink = false): void {
  try {
    fs.linkSync(from, to);
  } catch (e) {
    if (mustLink || !['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EMLINK', 'ENOSYS'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    fs.copyFileSync(from, to);
    fsyncFile(to);
  }
}

/** Header bytes 18 and 19 (core/header.ts) set on the private temp file. */
function setFileJournalMode(file: string, wal: boolean): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const head = new Uint8Array(HEADER_BYTES);
    readFully(fd, head, 0);
    writeFully(fd, setJournalMode(head, wal).subarray(18, 20), 18);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Makes the old database self-contained through SQLite's own recovery; true when done. Opening it
 * read-write in exclusive locking mode replays its WAL (or rolls back a hot journal); closing a
 * WAL database checkpoints the WAL into the file and removes it, and leaves it in WAL mode (an
 * aborted restore leaves the server's database as the server set it up). A rollback journal is
 * removed by switching to DELETE mode (not stored in the file). If the old database cannot be
 * opened (damaged), its files are left as they are (false): keepSafetyCopy() keeps them all.
 */
async function settle(db: string): Promise<boolean> {
  const hasWal = fs.existsSync(`${db}-wal`);
  const hasJournal = fs.existsSync(`${db}-journal`);
  if (!hasWal && !hasJournal) return true;
  const sqlite3 = await loadSqlite();
  let conn;
  try {
    conn = openDb(sqlite3, db, { readonly: false });
    conn.exec('PRAGMA locking_mode=EXCLUSIVE');
    conn.selectValue('SELECT count(*) FROM sqlite_schema');
    if (conn.selectValue('PRAGMA journal_mode') !== 'wal') conn.exec('PRAGMA journal_mode=DELETE');
    conn.close();
    conn = undefined;
  } catch {
    // Damaged beyond SQLite's recovery: the .pre-restore copy keeps its files as they are.
    return false;
  } finally {
    conn?.close();
  }
  return appliedCompanions(db).length === 0;
}

/** Test hook: BLUFIO_TEST_CRASH_AT=<step> kills the process at that step, as a power cut would. */
function crashPoint(step: string): void {
  if (process.env.BLUFIO_TEST_CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
}
