/** File-system steps that make publishing a file atomic and crash-safe. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { BlufioError, fsError } from './errors.ts';

const TEMP_RE = /^\.(.+)\.blufio-(\d+)-[0-9a-f]+\.tmp(?:\.out|\.gz|\.src)?$/;

/**
 * A temporary path beside `target` (same directory, so the final rename is atomic), hidden and
 * named after our pid so that a later run can tell an abandoned one from a running one.
 */
export function tempPathBeside(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.blufio-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Removes every blufio temporary file in the directories of `targets` that a killed run left
 * (its pid is gone), whatever destination it was for: with dated backup names, leftovers of
 * other names would otherwise pile up forever. Each directory is read once.
 */
export function removeStaleTemps(...targets: string[]): void {
  removeTemps(targets, 0);
}

/**
 * The same, in a folder other machines may write too (a backup set on a network share, or seen
 * from another process-id namespace): a pid that is not alive here may be alive there, so a
 * temporary file is removed only when it was also not written for `quietMs` (an attack run's
 * copy in a namespace of its own removed the original's segment on its way).
 */
export function removeSharedStaleTemps(target: string, quietMs: number): void {
  removeTemps([target], quietMs);
}

function removeTemps(targets: string[], quietMs: number): void {
  for (const dir of new Set(targets.map((t) => path.dirname(t)))) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = TEMP_RE.exec(name);
      if (!m || pidAlive(Number(m[2]))) continue;
      if (quietMs > 0 && Date.now() - (statOrNull(path.join(dir, name))?.mtimeMs ?? 0) < quietMs) continue;
      fs.rmSync(path.join(dir, name), { force: true });
    }
  }
}

/** Private work directories in the system's temporary directory: `blufio-<kind>-<pid>-XXXXXX`. */
const WORK_DIR_RE = /^blufio-[a-z]+-(\d+)-[A-Za-z0-9]{6}$/;

/** --work-dir, resolved; it must be an existing directory. */
export function workDirPath(dir: string): string {
  const abs = path.resolve(dir);
  if (!statOrNull(abs)?.isDirectory()) {
    throw new BlufioError('E_DEST_DIR', `the work directory ${abs} does not exist or is not a directory`,
      'create it, or pass --work-dir <directory> with room for a copy of the database');
  }
  return abs;
}

/**
 * Removes the private work directories that killed runs left in `parent` (their pid is gone):
 * what they hold is a whole plaintext copy of a database. Only our own user's (another user's
 * cannot be removed, and is not ours to judge), never through a link; a directory that cannot be
 * removed is left for its owner's next run.
 */
function sweepWorkDirsIn(parent: string): void {
  let names: string[] = [];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return; // not listable: nothing to clean
  }
  for (const name of names) {
    const m = WORK_DIR_RE.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    const dir = path.join(parent, name);
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (!st?.isDirectory() || (process.getuid && st.uid !== process.getuid())) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // left for a later run
    }
  }
}

/**
 * Every backup, restore and verify starts by removing what killed runs left in the system's
 * temporary directory and in `workDir` (a run that stages nothing itself too: a plaintext copy
 * must not wait for the next encrypted backup to be removed).
 */
export function sweepWorkDirs(workDir?: string): void {
  sweepWorkDirsIn(os.tmpdir());
  if (workDir && statOrNull(path.resolve(workDir))?.isDirectory()) sweepWorkDirsIn(path.resolve(workDir));
}

/**
 * Refuses to stage an encrypted backup's plaintext under the directory its ciphertext goes to: a
 * --work-dir that is that directory or inside it, or a $TMPDIR inside it (a synced or shared
 * folder would carry the plaintext copy). A backup written into $TMPDIR itself is allowed (the
 * copy is staged in a private subdirectory of a temporary directory), and so is one written to
 * the root directory (every directory is inside it).
 */
export function refusePlaintextBeside(dest: string, base?: string): void {
  const destDir = path.dirname(canonicalPath(dest));
  // Where makeWorkDir would make the staging directory, spelled canonically.
  const parent = path.dirname(canonicalPath(path.join(base ? workDirPath(base) : os.tmpdir(), 'staging')));
  if (destDir === path.parse(destDir).root) return;
  if ((base && parent === destDir) || parent.startsWith(destDir + path.sep)) {
    throw new BlufioError('E_USAGE', `the work directory ${parent} is inside ${destDir}, where the encrypted backup goes: its plaintext copy would be staged there`,
      `pass --work-dir <directory> outside ${destDir}${base ? '' : ' (or set TMPDIR elsewhere)'}: a synced or shared folder would carry the plaintext`);
  }
}

/**
 * A private directory (mode 0700: what is staged there holds the vault) for staging a whole
 * database, in `base` (--work-dir) or the system's temporary directory, named after our pid.
 * Directories that killed runs left there are removed first (their pid is gone).
 */
export function makeWorkDir(kind: string, base?: string): string {
  const parent = base ? workDirPath(base) : os.tmpdir();
  sweepWorkDirsIn(parent);
  try {
    return fs.mkdtempSync(path.join(parent, `blufio-${kind}-${process.pid}-`));
  } catch (e) {
    if (!base && (e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new BlufioError('E_DEST_DIR', `cannot make a private work directory: the system's temporary directory ${parent} ($TMPDIR) does not exist`,
        'set TMPDIR to an existing directory with room, or pass --work-dir <directory>');
    }
    throw fsError(e, parent, 'cannot make a private work directory');
  }
}

/**
 * Checks up front that the file system holding `dir` has room for `bytes` more (with 1% and
 * 1 MiB to spare), so that a long job does not fail at its end; says which one is short and by
 * how much. Skipped where the runtime cannot tell (no statfs).
 */
export function ensureRoom(dir: string, bytes: number, what: string, hint: string): void {
  let free: number;
  try {
    const st = fs.statfsSync(dir);
    free = Number(st.bavail) * Number(st.bsize);
  } catch {
    return;
  }
  const need = Math.ceil(bytes * 1.01) + (1 << 20);
  if (free >= need) return;
  const mb = (n: number) => `${(n / 1048576).toFixed(1)} MB`;
  throw new BlufioError('E_IO', `not enough free space on the file system holding ${dir}: ${what} needs about ${mb(need)}, ${mb(free)} are free`, hint);
}

/** True while a process with this pid exists (ours, or one we may not signal). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** fsync through a read-only handle (enough on Linux): the file's mode may forbid writing it. */
export function fsyncFile(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Makes a rename or unlink in `dir` durable. Some platforms cannot open a directory: skip there. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    // EISDIR/EINVAL on platforms without directory fsync.
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Files SQLite pairs with a database by name. A leftover `-wal` or `-journal` beside a new
 * database is applied to it when it is opened (a WAL is replayed into it, a hot journal rolled
 * back over it), silently changing its content; a `-shm` is only an index and is rebuilt.
 */
const APPLIED_COMPANIONS = ['-wal', '-journal'];

/** The `-wal`/`-journal` files beside `db` that SQLite would apply to a file published there. */
export function appliedCompanions(db: string): string[] {
  return APPLIED_COMPANIONS.map((s) => db + s).filter((p) => statOrNull(p) !== null);
}

/**
 * Publishes a database file: removes the companions of the file it replaces (they would be
 * applied to the new one), renames it into place (publish()'s directory fsync makes the removals
 * durable too), then removes the stale index, which needs no fsync: SQLite rebuilds a stale one.
 * A crash between the removal and the rename leaves the replaced file without its WAL: callers
 * either replace it on purpose (--force) or have settled it first (restore).
 */
export function publishDatabase(tmp: string, dest: string, opts: PublishOptions = {}): void {
  for (const p of appliedCompanions(dest)) fs.rmSync(p, { force: true });
  publish(tmp, dest, opts);
  fs.rmSync(`${dest}-shm`, { force: true });
}

export interface PublishOptions {
  /**
   * Never replace a file that appeared at `dest` meanwhile (another backup to the same new
   * path): the file is put in place with link(), which fails if the name exists, instead of
   * rename(), which replaces it.
   */
  noClobber?: boolean;
  /** `tmp` is already fsync'd: nothing but the rename lies between the caller's last look and it. */
  synced?: boolean;
}

/**
 * Writes a small file (a key) whole or not at all: a temporary file beside it with `mode`,
 * fsynced, then linked into place without replacing anything already there.
 */
export function publishText(dest: string, text: string, mode: number, what: string): void {
  const abs = path.resolve(dest);
  if (fs.lstatSync(abs, { throwIfNoEntry: false })) throw new BlufioError('E_DEST_EXISTS', `${abs} already exists`, `a ${what} is never written over another file (or link): choose another path`);
  checkDestination(abs, false, what);
  const tmp = tempPathBeside(abs);
  try {
    fs.writeFileSync(tmp, text, { mode, flag: 'wx' });
    publish(tmp, abs, { noClobber: true });
  } catch (e) {
    if (e instanceof BlufioError && e.code === 'E_DEST_EXISTS') throw new BlufioError('E_DEST_EXISTS', `${abs} appeared meanwhile; it was left as it is`, 'choose another path');
    throw e instanceof BlufioError ? e : fsError(e, abs, `cannot write ${what}`);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** fsync `tmp`, move it to `dest` (rename, or link + unlink with noClobber), fsync the directory. */
export function publish(tmp: string, dest: string, opts: PublishOptions = {}): void {
  if (!opts.synced) fsyncFile(tmp);
  try {
    if (opts.noClobber && linkNoClobber(tmp, dest)) fs.rmSync(tmp, { force: true });
    else fs.renameSync(tmp, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new BlufioError('E_DEST_EXISTS', `${dest} appeared while the backup was made (another run?); it was left as it is`,
        'choose another path, or add --force to replace it');
    }
    throw fsError(e, dest, 'cannot move the finished file into place');
  }
  fsyncDir(path.dirname(dest));
}

/**
 * link(tmp, dest): true when done; false where the file system has no hard links (the caller
 * renames then, after one more look that nothing is at `dest`). Throws EEXIST if `dest` exists.
 */
function linkNoClobber(tmp: string, dest: string): boolean {
  try {
    fs.linkSync(tmp, dest);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV' && code !== 'EMLINK') throw e;
    if (statOrNull(dest)) throw Object.assign(new Error(`${dest} exists`), { code: 'EEXIST' });
    return false;
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a named pipe';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

/** stat, or null when the path does not exist. */
export function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw fsError(e, p, 'cannot inspect');
  }
}

/** True when both directories are on one file system (or neither can be looked at). */
export function oneFileSystem(dirA: string, dirB: string): boolean {
  return statOrNull(dirA)?.dev === statOrNull(dirB)?.dev;
}

/** True when both paths name the same file (through links too). */
export function sameFile(a: fs.Stats | null, b: fs.Stats | null): boolean {
  return !!a && !!b && a.dev === b.dev && a.ino === b.ino;
}

/**
 * The path as the file system resolves it: its directory through every symbolic link, then its
 * name (the name itself may not exist yet). Two spellings of one place compare equal.
 */
export function canonicalPath(p: string): string {
  const abs = path.resolve(p);
  try {
    return path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

/**
 * Every file SQLite keeps for the database at `db` (it, its -wal, -shm and -journal), spelled
 * canonically: beside the path as given and beside the file a symbolic link leads to, which is
 * where a native SQLite keeps them.
 */
export function databaseFiles(db: string): Set<string> {
  const bases = new Set([canonicalPath(db)]);
  try {
    bases.add(fs.realpathSync(db));
  } catch {
    // not there (yet): the given spelling is all there is
  }
  return new Set([...bases].flatMap((b) => [b, `${b}-wal`, `${b}-shm`, `${b}-journal`]));
}

/** Checks that a file can be written at `dest`: parent directory exists, not a directory itself. */
export function checkDestination(dest: string, force: boolean, what: string, database = false): fs.Stats | null {
  const parent = statOrNull(path.dirname(dest));
  if (!parent || !parent.isDirectory()) {
    throw new BlufioError('E_DEST_DIR', `the directory ${path.dirname(dest)} does not exist`,
      `create it first with mkdir -p ${path.dirname(dest)}, or choose another ${what} path`);
  }
  try {
    fs.accessSync(path.dirname(dest), fs.constants.W_OK | fs.constants.X_OK);
    // Deno's access() does not report a read-only file system: one empty directory made and
    // removed tells (an attack run saw a read-only destination end in a stack trace there).
    if (process.versions.deno) {
      try {
        fs.rmdirSync(fs.mkdtempSync(path.join(path.dirname(dest), '.blufio-probe-')));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EROFS') throw e;
      }
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EROFS') {
      throw new BlufioError('E_IO', `cannot write in ${path.dirname(dest)}: it is on a read-only file system`,
        `choose another ${what} path on a writable file system, or remount it read-write`);
    }
    throw new BlufioError('E_PERMISSION', `cannot write in ${path.dirname(dest)}: permission denied`,
      `run as a user who may write there, or choose another ${what} path`);
  }
  const st = statOrNull(dest);
  // A symbolic link to nothing: writing through it would create its target somewhere else, and
  // the checks after the write would see a file "appear" (an attack run found both confusing).
  if (!st && fs.lstatSync(dest, { throwIfNoEntry: false })?.isSymbolicLink()) {
    throw new BlufioError('E_NOT_FILE', `${dest} is a symbolic link to a missing file (${fs.readlinkSync(dest)})`, `give the real path of the ${what}, or remove the link`);
  }
  if (st?.isDirectory()) {
    throw new BlufioError('E_NOT_FILE', `${dest} is a directory`, `give a file path for the ${what}, e.g. ${path.join(dest, 'blufio-backup.db')}`);
  }
  if (st && !st.isFile()) {
    throw new BlufioError('E_NOT_FILE', `${dest} is not a regular file (${kindOf(st)}); --force replaces regular files only`,
      `choose a file path for the ${what}`);
  }
  if (st && !force) {
    throw new BlufioError('E_DEST_EXISTS', `${dest} already exists`, 'choose another path, or add --force to replace it');
  }
  const leftovers = database && !force ? appliedCompanions(dest) : [];
  if (leftovers.length > 0) {
    throw new BlufioError('E_DEST_EXISTS', `${leftovers[0]} is left beside the ${what} path, and SQLite would apply it to the new file`,
      'remove it, choose another path, or add --force to replace it');
  }
  return st;
}

/** blufio's state directory: $XDG_STATE_HOME/blufio, or ~/.local/state/blufio (opts.stateDir first). */
export function stateDir(opts: { stateDir?: string; env?: NodeJS.ProcessEnv }): string {
  const env = opts.env ?? process.env;
  return opts.stateDir ?? path.join(env.XDG_STATE_HOME && path.isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : path.join(os.homedir(), '.local', 'state'), 'blufio');
}
