/**
 * The verified copy every destination and transform starts from, and what all of them share:
 * the options and result of a backup, the checks of a source. backup.ts (files, streams,
 * objects), sets.ts (backup sets) and restore.ts build on it; it builds on none of them.
 */
import * as fs from 'node:fs';
import { BlufioError } from './errors.ts';
import { copyDatabase, type CopyOptions } from './copy.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import type { ObjectStorageOptions } from './storage/index.ts';
import { compressed, encrypted, type KeyOptions, type Layers } from './transforms/index.ts';
import { statOrNull } from './files.ts';
import type { JournalMode } from './snapshot/snapshot.ts';
import { afterBlockingCall, integrityProblems } from './integrity.ts';
import { integrityError } from './core/sqlite-errors.ts';

export interface BackupOptions extends CopyOptions, KeyOptions, ObjectStorageOptions {
  /** Run PRAGMA integrity_check on the copy before publishing it (default true). */
  verify?: boolean;
  /** Replace an existing file at the destination (default false). */
  force?: boolean;
  /** File mode of the backup (default 0o600: it holds the vault's credentials). */
  mode?: number;
  /**
   * Where a whole uncompressed copy is staged when the result is not that file itself: a `.gz`
   * backup (default: beside it), an encrypted backup or a backup to a stream (default: a private
   * directory in the system's temporary directory: plaintext never lands beside an encrypted
   * backup), a restore of a `.gz` or `.age` (default: beside the database). --work-dir,
   * BLUFIO_WORK_DIR.
   */
  workDir?: string;
  /** For a backup to a stream: compress it (a file's name says so itself). */
  gzip?: boolean;
  /**
   * Send a backup to object storage (an s3:// object or set) without encrypting it, on purpose:
   * without recipients such a backup is refused otherwise. In a set whose newest backup is
   * encrypted, also needed for a plain one.
   */
  unencrypted?: boolean;
}

export interface BackupResult {
  command: 'backup';
  database: string;
  /** Where the backup went: an absolute path, an s3:// URL, or "-" for a stream. */
  path: string;
  /** Bytes written (compressed and/or encrypted, for a .gz / .age destination). */
  bytes: number;
  /** Size of the database itself (equal to bytes unless compressed or encrypted). */
  databaseBytes: number;
  compressed: boolean;
  /** Encrypted in the age format (to `recipients` recipients). */
  encrypted: boolean;
  recipients: number;
  pages: number;
  pageSize: number;
  durationMs: number;
  integrity: 'ok' | 'skipped';
  attempts: number;
  /** The source's journal mode; the backup itself is always a rollback-journal database. */
  sourceJournalMode: JournalMode;
}

/** The result object every way of backing up reports. */
export function result(db: string, where: string, copy: BuiltCopy & { bytes: number }, layers: Layers, options: BackupOptions, started: number): BackupResult {
  return {
    command: 'backup',
    database: db,
    path: where,
    bytes: copy.bytes,
    databaseBytes: copy.databaseBytes,
    compressed: compressed(layers),
    encrypted: encrypted(layers),
    recipients: encrypted(layers) ? options.recipients?.length ?? 0 : 0,
    pages: copy.pages,
    pageSize: copy.pageSize,
    durationMs: Math.round(performance.now() - started),
    integrity: options.verify === false ? 'skipped' : 'ok',
    attempts: copy.attempts,
    sourceJournalMode: copy.journalMode,
  };
}

/** What building a verified copy found: the copy's own facts, and its size on disk. */
export type BuiltCopy = Awaited<ReturnType<typeof copyDatabase>> & { databaseBytes: number };

export interface CopyExtras {
  /** Called each time a copy is made, before it is checked (encryption starts beside the check). */
  onCopied?: () => Promise<void>;
  /** The copy is a staging file, read back at once and removed: not written to the disk early. */
  staging?: boolean;
}

/**
 * Builds a verified copy of `src` at `out`, a private path the caller owns (a temporary file, or
 * a file in a private directory): copy, verify (unless opts.verify is false), set the mode. What
 * happens to it then is the caller's: publish it as a file, compress it, stream it, swap it in for
 * a database. This is the seam every destination and transform plugs into.
 */
export async function buildVerifiedCopy(src: string, out: string, opts: BackupOptions, what: string, extra: CopyExtras = {}): Promise<BuiltCopy> {
  const { onCopied, staging } = extra;
  let copy = await copyDatabase(src, out, opts, staging);
  throwIfAborted(opts.signal);
  await onCopied?.();
  if (opts.verify !== false) {
    // A copy is one committed state (docs/consistency.md), so a failed check means the source
    // itself is damaged. Never say so on one look: the copy is made again, and only the same
    // problems twice are reported.
    let seen: string | null = null;
    for (let copies = 1; ; copies++) {
      opts.onProgress?.({ phase: 'verify', totalPages: copy.pages, remainingPages: copy.pages, attempt: copy.attempts, pageSize: copy.pageSize });
      // (whileBusy from inside the check: SQLite's progress handler calls what stops it.)
      const busy = opts.whileBusy;
      const interrupted = busy ? () => (busy(), opts.interrupted?.() ?? false) : opts.interrupted;
      const problems = await integrityProblems(out, false, 20, opts.signal, opts.deadline, interrupted);
      if (problems.length === 0) break;
      const key = problems.join('\n');
      if (key === seen || copies === 3) {
        throw integrityError(`${what} of ${src}`, problems,
          what === 'the backup' ? `the database itself may be damaged: check it with sqlite3 ${src} "PRAGMA integrity_check"` : 'this backup is damaged: use another one');
      }
      seen = key;
      copy = await copyDatabase(src, out, opts, staging);
      throwIfAborted(opts.signal);
      await onCopied?.();
    }
    opts.onProgress?.({ phase: 'verify', totalPages: copy.pages, remainingPages: 0, attempt: copy.attempts, pageSize: copy.pageSize });
  }
  opts.interrupted?.();
  await afterBlockingCall(opts.signal);
  fs.chmodSync(out, opts.mode ?? 0o600);
  return { ...copy, databaseBytes: fs.statSync(out).size };
}

export const STAGING_HINT = 'free some space there, or pass --work-dir <directory> on a file system with room';

/** An upper bound of a copy's size: the database file and its WAL (0 for what cannot be read). */
export function sourceBytes(db: string): number {
  return [db, `${db}-wal`].reduce((n, f) => n + (statOrNull(f)?.size ?? 0), 0);
}

/** The source must exist and be a readable regular file. */
export function checkSource(p: string, what: string, hint: string): fs.Stats {
  const st = statOrNull(p);
  if (!st) throw new BlufioError('E_SOURCE_MISSING', `${what} not found: ${p}`, hint);
  if (!st.isFile()) throw new BlufioError('E_NOT_FILE', `${what} ${p} is not a regular file`, 'give the path of an SQLite database file');
  try {
    fs.accessSync(p, fs.constants.R_OK);
  } catch {
    throw new BlufioError('E_PERMISSION', `cannot read the ${what} ${p}: permission denied`, 'run as the user that owns it, or fix its permissions');
  }
  return st;
}
