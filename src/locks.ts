/**
 * What other processes hold on a file, read from Linux's /proc/locks. JavaScript cannot take or
 * test POSIX fcntl locks, so this is detection only, and racy: a lock can appear right after we
 * look. Used to wait for a native writer to finish a commit (rollback mode) and to refuse a
 * restore while the server has the database open. Elsewhere than Linux it answers "unknown".
 */
import * as fs from 'node:fs';

/** SQLite's lock bytes in the database file (src/os.h). */
export const PENDING_BYTE = 0x40000000;
const SHARED_FIRST = PENDING_BYTE + 2;
const SHARED_SIZE = 510;

export interface FileLock {
  pid: number;
  write: boolean;
  start: number;
  /** Inclusive; Infinity for "to end of file". */
  end: number;
}

/** Linux's encoding of st_dev into major and minor numbers. */
function devParts(dev: number): [number, number] {
  const big = BigInt(dev);
  const major = Number(((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn));
  const minor = Number((big & 0xffn) | ((big >> 12n) & ~0xffn));
  return [major, minor];
}

/**
 * The text of /proc/locks, or null where there is none. The kernel takes a global write lock to
 * list it, which can cost an RCU grace period (5–20 ms measured here) when it was not read in
 * the last few milliseconds: read it once per question, and off the main thread at start-up.
 */
const PROC_LOCKS = '/proc/locks';

function readProcLocks(): string | null {
  try {
    return fs.readFileSync(PROC_LOCKS, 'utf8');
  } catch {
    return null;
  }
}

/** The locks listed in `text` that other processes hold on the file `st`. */
function parseLocks(text: string, st: fs.Stats): FileLock[] {
  const [major, minor] = devParts(st.dev);
  const out: FileLock[] = [];
  for (const line of text.split('\n')) {
    // "12: POSIX  ADVISORY  WRITE 4242 08:01:1310722 1073741824 1073741825"; blocked waiters
    // are listed with "->" and hold nothing yet.
    if (line.includes('->')) continue;
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [maj, min, ino] = f[5].split(':');
    if (Number(ino) !== st.ino || parseInt(maj, 16) !== major || parseInt(min, 16) !== minor) continue;
    const pid = Number(f[4]);
    if (pid === process.pid) continue;
    out.push({ pid, write: f[3] === 'WRITE', start: Number(f[6]), end: f[7] === 'EOF' ? Infinity : Number(f[7]) });
  }
  return out;
}

/**
 * Locks other processes hold on `path`, or null when that cannot be known (no /proc/locks, or
 * the file does not exist).
 */
export function locksOn(path: string, text = readProcLocks()): FileLock[] | null {
  if (text === null) return null;
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch {
    return null;
  }
  return parseLocks(text, st);
}

const covers = (l: FileLock, from: number, to: number) => l.start <= to && l.end >= from;

/**
 * True when another process holds a write lock on the RESERVED, PENDING or SHARED bytes of a
 * database: a rollback-mode writer is committing or about to. null when this can't be known.
 */
export function writerActive(dbPath: string): boolean | null {
  const locks = locksOn(dbPath);
  if (locks === null) return null;
  return locks.some((l) => l.write && covers(l, PENDING_BYTE, SHARED_FIRST + SHARED_SIZE - 1));
}

/**
 * Pids of other processes that have the database open: those holding a lock on it or its -shm
 * (every WAL-mode connection does), and those with a file descriptor on it in /proc/<pid>/fd (a
 * rollback-mode connection holds no lock between transactions). null if this can't be known.
 */
export function holders(dbPath: string, text = readProcLocks()): number[] | null {
  const onDb = locksOn(dbPath, text);
  if (onDb === null) return null;
  const onShm = locksOn(`${dbPath}-shm`, text) ?? [];
  return [...new Set([...onDb, ...onShm].map((l) => l.pid).concat(openers(dbPath)))].sort((a, b) => a - b);
}

/** holders(), with /proc/locks read in the thread pool: for start-up, beside loading SQLite. */
export async function holdersSoon(dbPath: string): Promise<number[] | null> {
  const text = await fs.promises.readFile(PROC_LOCKS, 'utf8').catch(() => null);
  return holders(dbPath, text);
}

/** "1234 (python3 server.py)": a pid with its command line, as far as /proc tells. */
export function describePid(pid: number): string {
  try {
    const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const shown = args.slice(0, 3).map((a, i) => (i === 0 || a.length > 40 ? a.split('/').pop()! : a)).join(' ').replace(/[\s\x00-\x1f]+/g, ' ').trim();
    return shown ? `${pid} (${shown.slice(0, 60)}${args.length > 3 ? ' …' : ''})` : String(pid);
  } catch {
    return String(pid);
  }
}

/** Pids whose open file descriptors include `file` (those we may look at; others are skipped). */
export function openers(file: string): number[] {
  let target: fs.Stats;
  let pids: string[];
  try {
    target = fs.statSync(file);
    pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const st = fs.statSync(`/proc/${pid}/fd/${fd}`);
        if (st.ino === target.ino && st.dev === target.dev) {
          out.push(Number(pid));
          break;
        }
      } catch {
        // closed meanwhile, or not ours to look at
      }
    }
  }
  return out;
}
