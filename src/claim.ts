/**
 * One restore per database at a time, across Node, Deno and Bun, surviving `kill -9`.
 *
 * JavaScript has no flock()/fcntl() on every runtime, so the lock is a *claim file* beside the
 * database, named after its owner: `.<db name>.blufio-restore-<pid>-<start>.lock`, where
 * `<start>` is the process's start time from /proc/<pid>/stat (0 where there is none), so that a
 * pid reused by another program after a crash is not mistaken for the owner.
 *
 * Taking it: create our own claim (exclusive create, mode 0644: it holds no secret, and the
 * database's owner must be able to read it to repair a killed run's lock-out; fsync'd directory), then list the
 * directory. Claims of dead owners are stale and removed. If any other live claim is there, ours
 * is withdrawn. Two restores can never both proceed: each creates its claim before it looks, so
 * whichever looks last sees the other's. Two that start at the same instant may both see each
 * other: both withdraw and retry after a random pause (a few times), so one of them gets it.
 * Released by removing the claim (also on errors); a killed owner's claim is stale as soon as its
 * pid is gone.
 */
import * as fs from 'node:fs';
import { hasSqliteMagic } from './core/header.ts';
import * as path from 'node:path';
import { BlufioError, fsError } from './errors.ts';
import { fsyncDir, pidAlive, removeStaleTemps } from './files.ts';

const CLAIM_RE = /^\.(.+)\.blufio-restore-(\d+)-(\d+)\.lock$/;

export interface Claim {
  /** Removes the claim. Safe to call twice. */
  release(): void;
  /**
   * Records what a run killed now would leave for the next one to repair: `lockedOut` is a file
   * whose permission bits were cleared for the swap, `mode` the bits to put back.
   */
  note(state: LockedOut | Record<string, never>): void;
}

/** What restore's lockOut() changed on the old database file, to be put back. */
export interface LockedOut {
  /** The names the file may have (for people reading it; repair derives them from the claim's name). */
  lockedOut: string[];
  ino: number;
  mode: number;
  /** Header byte 19 as it was. */
  readVersion: number;
}

/** Header byte 19 (read version) while a restore keeps everyone out of the old database. */
export const LOCKED_READ_VERSION = 255;

/**
 * Puts back what a killed restore's lockOut() changed (its claim says what), on the file with the
 * recorded inode under whichever of its names it has now, if still changed. The mode first: the
 * file's owner (not only root) can chmod a mode-000 file, and only then open it to write byte 19.
 * True when nothing is left to put back (the claim may go); false when it could not be done (the
 * claim stays, so that a later run by root or the owner can).
 *
 * A claim is only a hint, and anyone who can write the directory can write one: it is acted on
 * only for the two names a restore of that database uses (derived from the claim's own name, never
 * from its content), only on a regular file with exactly the recorded inode whose mode is 000 and
 * whose header carries the lock-out mark, only if the claim belongs to root or to that file's
 * owner (who could change the file anyway), and only permission bits are put back (no setuid).
 */
function repair(claimFile: string, base: string): boolean {
  const claim = readClaim(claimFile);
  if (!claim) return true;
  const { owner: claimOwner, state } = claim;
  if (typeof state.mode !== 'number' || typeof state.readVersion !== 'number' || typeof state.ino !== 'number') return true;
  if (state.readVersion !== 1 && state.readVersion !== 2) return true;
  const db = path.join(path.dirname(claimFile), base);
  const me = process.getuid?.() ?? -1;
  let ok = true;
  for (const file of [db, `${db}.pre-restore`]) {
    const st = fs.lstatSync(file, { throwIfNoEntry: false });
    if (!st || !st.isFile() || st.ino !== state.ino || (st.mode & 0o7777) !== 0) continue;
    if (claimOwner !== 0 && claimOwner !== st.uid) continue; // not the word of anyone who may change it
    try {
      if (me === 0) repairAsRoot(file, state as LockedOut, claimOwner);
      else if (st.uid === me && (claimOwner === 0 || claimOwner === me)) repairAsOwner(file, state as LockedOut);
      else throw new Error('not ours');
    } catch {
      ok = false; // not ours to fix (another user's file): left for root or its owner
      unrepaired.add(path.resolve(file));
    }
  }
  return ok;
}

/**
 * As root, through one handle opened without following a symbolic link: what is checked is what
 * is changed (a name swapped for a link between a look and a chmod cannot redirect it).
 */
function repairAsRoot(file: string, state: LockedOut, claimOwner: number): void {
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.ino !== state.ino || (st.mode & 0o7777) !== 0 || (claimOwner !== 0 && claimOwner !== st.uid)) return;
    const b = Buffer.alloc(1);
    if (fs.readSync(fd, b, 0, 1, 19) === 1 && b[0] === LOCKED_READ_VERSION) fs.writeSync(fd, Uint8Array.of(state.readVersion), 0, 1, 19);
    fs.fsyncSync(fd);
    fs.fchmodSync(fd, state.mode & 0o777);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * As the file's owner, whose own claim it is (so nobody else's word is acted on): the mode first,
 * by name (an owner cannot open a mode-000 file), which can only ever reach files this user owns;
 * then the byte, through a handle that does not follow links and is checked to be that file.
 */
function repairAsOwner(file: string, state: LockedOut): void {
  fs.chmodSync(file, state.mode & 0o777);
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.ino !== state.ino) return;
    const b = Buffer.alloc(1);
    if (fs.readSync(fd, b, 0, 1, 19) === 1 && b[0] === LOCKED_READ_VERSION) fs.writeSync(fd, Uint8Array.of(state.readVersion), 0, 1, 19);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A claim file's owner and content, read without following a link or blocking on a FIFO; null
 * when it is gone, is not a regular file, or holds no JSON (a run killed before writing it).
 */
function readClaim(claimFile: string): { owner: number; state: Partial<LockedOut> } | null {
  let fd: number;
  try {
    fd = fs.openSync(claimFile, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size > 4096) return null;
    const buf = Buffer.alloc(st.size);
    fs.readSync(fd, buf, 0, st.size, 0);
    try {
      return { owner: st.uid, state: JSON.parse(buf.toString('utf8')) };
    } catch {
      return { owner: st.uid, state: {} };
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Whether a claim is anyone's word here: one by root, by the database's owner, or by us. A claim
 * planted by another user (in a directory others can write) neither blocks a restore nor is acted on.
 */
function trusted(claimFile: string, db: string): boolean {
  const st = fs.lstatSync(claimFile, { throwIfNoEntry: false });
  if (!st || !st.isFile()) return false;
  const dbOwner = fs.statSync(db, { throwIfNoEntry: false })?.uid;
  return st.uid === 0 || st.uid === (process.getuid?.() ?? -1) || st.uid === dbOwner;
}

/** Files a killed restore closed that this process could not open again (for the error). */
const unrepaired = new Set<string>();

/**
 * True when the header of `file` still carries the mark of a killed restore's lock-out: an SQLite
 * header whose byte 19 is 255 (any other file — a .gz, an .age — may have 255 there by chance:
 * one .gz in 256 was refused as "closed by a restore" before the magic was checked).
 */
export function lockedByKilledRestore(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(20);
      return fs.readSync(fd, b, 0, 20, 0) === 20 && hasSqliteMagic(b) && b[19] === LOCKED_READ_VERSION;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/**
 * Refuses a file that a restore has closed to others (see restore's lockOut()): one running now
 * (E_IN_USE), or a killed one whose changes could not be put back by this user.
 */
export function assertNotLockedOut(file: string): void {
  if (unrepaired.has(path.resolve(file))) throw lockedError(file);
  if (!lockedByKilledRestore(file)) return;
  const base = file.replace(/\.pre-restore(-\d{8}T\d{6}Z(-\d+)?)?$/, '');
  const running = restoresRunning(base);
  if (running.length > 0) {
    throw new BlufioError('E_IN_USE', `a restore (process ${running.join(', ')}) is replacing ${base} right now`, 'wait for it to finish');
  }
  throw lockedError(file);
}

/** The error for a file a killed restore left closed when it could not be opened again here. */
function lockedError(file: string): BlufioError {
  if (unrepaired.has(path.resolve(file))) {
    return new BlufioError('E_NEEDS_RECOVERY', `${file} was left closed by a restore that was killed (no permissions, header marked) and this user cannot open it again`,
      'run any blufio command on it as root or as its owner: what to put back is in the claim file beside it');
  }
  return new BlufioError('E_NEEDS_RECOVERY', `${file} is marked as closed by a restore (header byte 19 is 255) and no record of what to put back was found`,
    'if no restore is running, set byte 19 back to byte 18\'s value (2 for WAL: printf \'\\002\' | dd of=FILE bs=1 seek=19 conv=notrunc), or restore from another backup');
}

/** The start time of a process (clock ticks since boot), or 0 where it cannot be read. */
function startTime(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may hold spaces and parentheses: count from its end.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) || 0;
  } catch {
    return 0;
  }
}

/** True while the process that wrote a claim is still running (a reused pid is not). */
export function ownerAlive(pid: number, start: number): boolean {
  if (pid === process.pid) return true;
  if (!pidAlive(pid)) return false;
  const now = startTime(pid);
  return start === 0 || now === 0 || now === start;
}

/** Live restore claims on `db` other than `mine`, as pids; stale ones are removed on the way. */
function otherClaims(db: string, mine: string | null): number[] {
  const dir = path.dirname(db);
  const base = path.basename(db);
  const others: number[] = [];
  for (const name of fs.readdirSync(dir)) {
    const m = CLAIM_RE.exec(name);
    if (!m || m[1] !== base || name === mine) continue;
    const file = path.join(dir, name);
    if (!trusted(file, db)) continue;
    const pid = Number(m[2]);
    if (ownerAlive(pid, Number(m[3]))) others.push(pid);
    else if (repair(file, m[1])) fs.rmSync(file, { force: true });
  }
  return others;
}

/**
 * Repairs and removes the claims that killed restores left in `dir`, for any database there: run
 * by every command before it reads a file there, so that a database or safety copy a killed
 * restore had closed to others (see restore's lockOut()) is readable again whatever runs next.
 */
export function sweepStaleClaims(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = CLAIM_RE.exec(name);
    if (!m || !trusted(path.join(dir, name), path.join(dir, m[1])) || ownerAlive(Number(m[2]), Number(m[3]))) continue;
    if (repair(path.join(dir, name), m[1])) {
      fs.rmSync(path.join(dir, name), { force: true });
      // Its staged copy there, with any other dead process's temporary files (a live one's stay).
      removeStaleTemps(path.join(dir, m[1]));
    }
  }
}

/** Pids of restores of `db` running now (used by backup to refuse writing the safety copy's name). */
export function restoresRunning(db: string): number[] {
  try {
    return otherClaims(db, null).filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

/**
 * Claims `db` for a restore, or throws E_IN_USE naming the restore that holds it. Two restores
 * started at the same instant may each see the other's claim: both withdraw and try again after
 * a random pause, so one of them gets it; one that still sees a claim after a few tries is refused.
 */
export async function claimForRestore(db: string, tries = 6): Promise<Claim> {
  const name = `.${path.basename(db)}.blufio-restore-${process.pid}-${startTime(process.pid)}.lock`;
  const file = path.join(path.dirname(db), name);
  for (let attempt = 1; ; attempt++) {
    try {
      fs.writeFileSync(file, `{"pid":${process.pid}}\n`, { flag: 'wx', mode: 0o644 });
      fsyncDir(path.dirname(db));
    } catch (e) {
      throw fsError(e, file, 'cannot claim the database for the restore');
    }
    let others: number[];
    try {
      others = otherClaims(db, name);
    } catch (e) {
      fs.rmSync(file, { force: true });
      throw fsError(e, path.dirname(db), 'cannot look for other restores');
    }
    if (others.length === 0) {
      let held = true;
      return {
        release() {
          if (held) fs.rmSync(file, { force: true });
          held = false;
        },
        note(state) {
          // Written in place and synced: it must be on disk before the step it describes.
          const fd = fs.openSync(file, 'r+');
          try {
            const text = `${JSON.stringify({ pid: process.pid, ...state })}\n`;
            fs.ftruncateSync(fd, 0);
            fs.writeSync(fd, text, 0);
            fs.fsyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
        },
      };
    }
    fs.rmSync(file, { force: true });
    if (attempt >= tries) {
      throw new BlufioError('E_IN_USE', `another restore of ${db} is running (process ${others.join(', ')})`,
        'wait for it to finish, then check the database before restoring again');
    }
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80));
  }
}
