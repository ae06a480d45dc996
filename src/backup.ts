/**
 * backup(): validate -> copy a committed state with the backup API -> verify -> publish.
 *
 * The destination only ever holds a complete, verified backup: everything is written to a hidden
 * temporary file beside it, which is fsynced, checked and renamed into place. A failure or an
 * interruption removes the temporary file and leaves the destination as it was.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError, fsError } from './errors.ts';
import { buildVerifiedCopy, checkSource, result, sourceBytes, STAGING_HINT, type BackupOptions, type BackupResult, type BuiltCopy } from './build.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import { afterBlockingCall } from './integrity.ts';
import { isRemote, locate, openRemoteFile, setBeside } from './storage/index.ts';
import { checkKeysFor, compressed, encrypted, type Layers, layersFor, layersOfName, packedBody, packerAhead, packFile, packing, recipientsOf, streamWriter } from './transforms/index.ts';
import { backupToSet } from './sets/index.ts';
import { assertNotLockedOut, restoresRunning, sweepStaleClaims } from './claim.ts';
import { describePid, holders } from './locks.ts';
import { journalIsHot, walHoldsFrames } from './snapshot/source-file.ts';
import { canonicalPath, checkDestination, ensureRoom, fsyncFile, makeWorkDir, oneFileSystem, refusePlaintextBeside, sweepWorkDirs, workDirPath, databaseFiles, publish, publishDatabase, removeStaleTemps, sameFile, statOrNull, tempPathBeside } from './files.ts';

/** Backs up the live database at `dbPath` to `destPath` (a file, or an s3://BUCKET/KEY object). */
export async function backup(dbPath: string, destPath: string, options: BackupOptions = {}): Promise<BackupResult> {
  sweepWorkDirs(options.workDir);
  refuseUnencryptedOffsite(destPath, options);
  // A set (an existing folder, or a path or s3:// prefix ending in /): timestamped, differential.
  const where = locate(destPath);
  if (where.kind === 'stdout') throw new BlufioError('E_USAGE', 'backup() writes a file, a set or an object; "-" is for the command line', 'call backupToStream() to write a backup to a stream');
  if (where.kind === 'set') return backupToSet(dbPath, destPath, options);
  if (where.remote) return backupToRemoteFile(dbPath, destPath, options);
  const started = performance.now();
  const db = path.resolve(dbPath);
  const dest = path.resolve(destPath);
  sweepStaleClaims(path.dirname(db));
  assertNotLockedOut(db);
  const srcStat = checkSource(db, 'database', 'set storage.database_path in blufio.toml, or pass --db <path>');
  // Compared as the file system resolves them: a symlinked directory must not let a backup land
  // on the source's own -wal (found: that emptied a live database's WAL, losing committed rows).
  if (sameFile(srcStat, statOrNull(dest))) {
    throw new BlufioError('E_SAME_FILE', `the backup path ${dest} is the database itself`, 'choose a backup path outside the database\'s own files');
  }
  if (databaseFiles(db).has(canonicalPath(dest))) {
    throw new BlufioError('E_SAME_FILE', `the backup path ${dest} is one of the database's own files (SQLite keeps its -wal, -shm and -journal there)`,
      'choose a backup path outside the database\'s own files');
  }
  // A restore running on a database keeps its safety copy at <db>.pre-restore: never write there then.
  const safetyOf = /^(.*)\.pre-restore(?:-wal|-shm|-journal)?$/.exec(canonicalPath(dest))?.[1];
  const restoring = safetyOf ? restoresRunning(safetyOf) : [];
  if (restoring.length > 0) {
    throw new BlufioError('E_IN_USE', `a restore of ${safetyOf} (process ${restoring.join(', ')}) is running and keeps its safety copy at ${dest}`,
      'wait for the restore to finish, or choose another backup path');
  }
  const layers = layersOfName(dest);
  const recipients = recipientsOf(options);
  checkKeysFor(dest, layers, recipients);
  refuseLiveDatabase(dest);
  checkDestination(dest, options.force ?? false, 'backup', layers.length === 0);
  const copy = await backupToFile(db, dest, options, layers);
  return result(db, dest, copy, layers, options, started);
}

/**
 * Backs up the database at `dbPath` into a writable stream (stdout for `blufio backup -`): the
 * backup is made and verified in a private temporary file first, so the stream only ever
 * receives a complete, verified database — compressed with options.gzip, encrypted when
 * options.recipients are given.
 */
export async function backupToStream(dbPath: string, out: NodeJS.WritableStream, options: BackupOptions = {}): Promise<BackupResult> {
  const started = performance.now();
  const db = path.resolve(dbPath);
  const recipients = recipientsOf(options);
  const layers = layersFor({ compress: !!options.gzip, encrypt: recipients.length > 0 });
  sweepStaleClaims(path.dirname(db));
  assertNotLockedOut(db);
  checkSource(db, 'database', 'set storage.database_path in blufio.toml, or pass --db <path>');
  const dir = makeWorkDir('stream', options.workDir);
  const tmp = path.join(dir, 'backup.db');
  try {
    ensureRoom(dir, sourceBytes(db), 'the copy staged before it is streamed', STAGING_HINT);
    const copy = await buildVerifiedCopy(db, tmp, options, 'the backup', { staging: true });
    let bytes: number;
    const writer = streamWriter(out, options.signal);
    try {
      bytes = await packFile(tmp, writer.write, layers, recipients, options.signal, packing(tmp, layers, options.onProgress, true));
    } catch (e) {
      if (options.signal?.aborted) {
        // Part of the database may already be with the reader: say so, never "nothing was written".
        const why = options.signal.reason instanceof BlufioError ? 'the time limit (--timeout) ran out' : 'interrupted';
        throw new BlufioError(options.signal.reason instanceof BlufioError ? options.signal.reason.code : 'E_ABORTED',
          `${why} while streaming the backup: what the reader received is incomplete, do not use it`,
          options.signal.reason instanceof BlufioError ? options.signal.reason.hint : undefined, { cause: e });
      }
      throw e instanceof BlufioError && e.code === 'E_IO' ? fsError(e.cause, 'stdout', 'cannot stream the backup') : e;
    } finally {
      writer.done();
    }
    return result(db, '-', { ...copy, bytes }, layers, options, started);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Off the machine means encrypted, unless asked otherwise (options.unencrypted). */
export function refuseUnencryptedOffsite(dest: string, options: BackupOptions): void {
  if (!isRemote(dest) || (options.recipients ?? []).length > 0) return;
  if (options.unencrypted) return;
  throw new BlufioError('E_USAGE', `refusing to send an unencrypted backup off this machine to ${dest}`,
    'give recipients to encrypt to (--recipient age1…, --recipients-file <file>, backup.age_recipients[_file] in blufio.toml, or BLUFIO_AGE_RECIPIENTS / BLUFIO_AGE_RECIPIENTS_FILE; blufio keygen makes a key), or say --unencrypted (backup.unencrypted = true) to send it unencrypted on purpose');
}

/**
 * Backs up to one remote file (s3://BUCKET/KEY): the keys and the destination are checked first
 * (an existing file is refused without force, a set beside the name is a forgotten slash), the
 * verified copy is built in a private work directory, then streamed through the layers its name
 * asks for into the store (an object appears whole or not at all).
 */
async function backupToRemoteFile(dbPath: string, url: string, options: BackupOptions): Promise<BackupResult> {
  const started = performance.now();
  const db = path.resolve(dbPath);
  const { store, name } = openRemoteFile(url, options);
  const shown = store.where(name);
  const layers = layersOfName(name);
  const recipients = recipientsOf(options);
  checkKeysFor(url, layers, recipients);
  sweepStaleClaims(path.dirname(db));
  assertNotLockedOut(db);
  checkSource(db, 'database', 'set storage.database_path in blufio.toml, or pass --db <path>');
  // s3://b/blufio beside a set at s3://b/blufio/ is a forgotten slash, not a new object's name
  // (an attack run wrote a plain, unencrypted object there, which restore then took for the set).
  const set = await setBeside(shown, options);
  if (set) throw new BlufioError('E_USAGE', `${shown} names one object, but ${set} holds objects (a backup set)`, `end it with / to back up into the set: ${set}`);
  // (Also proves the bucket and the keys work before the copy is made.)
  if (!options.force && (await store.stat(name))) throw new BlufioError('E_DEST_EXISTS', `${shown} already exists`, 'choose another key, or add --force to replace it');
  const dir = makeWorkDir('upload', options.workDir);
  try {
    ensureRoom(dir, sourceBytes(db), 'the copy staged before it is uploaded', STAGING_HINT);
    const tmp = path.join(dir, 'backup.db');
    const copy = await buildVerifiedCopy(db, tmp, options, 'the backup', { staging: true });
    const put = await store.put(name, packedBody(tmp, layers, recipients, options.signal), { signal: options.signal, onProgress: options.onProgress, replace: options.force });
    if (!put.published) throw new BlufioError('E_DEST_EXISTS', `${shown} appeared while the backup was made (another run?); it was left as it is`, 'choose another key, or add --force to replace it');
    return result(db, url, { ...copy, bytes: put.bytes }, layers, options, started);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Backs up `src` to the file `dest`: a verified copy built in a temporary file beside it, or, for
 * a `.gz` or `.age`, staged elsewhere and streamed through the layers into a temporary file
 * beside it; published by an atomic rename or, without --force, an atomic no-clobber link.
 */
async function backupToFile(src: string, dest: string, opts: BackupOptions, layers: Layers) {
  if (layers.length === 0) return backupToPlainFile(src, dest, opts);
  // The plaintext of an encrypted backup never lands in the destination's directory (it may be
  // synced or shared): it is staged in a private directory. A .gz is staged beside it, or in
  // --work-dir.
  if (encrypted(layers)) refusePlaintextBeside(dest, opts.workDir);
  const privateDir = encrypted(layers) ? makeWorkDir('backup', opts.workDir) : null;
  const staged = privateDir ? path.join(privateDir, 'backup.db') : opts.workDir ? path.join(workDirPath(opts.workDir), path.basename(dest)) : dest;
  removeStaleTemps(dest, staged);
  const tmp = privateDir ? staged : tempPathBeside(staged);
  const tmpOut = `${tempPathBeside(dest)}.out`;
  try {
    ensureRoom(path.dirname(staged), sourceBytes(src), `the uncompressed copy staged before ${encrypted(layers) ? 'encrypting' : 'compressing'}`, STAGING_HINT);
    // An encrypted backup is as big as the database (a compressed one's size is not known).
    if (!compressed(layers)) {
      const both = oneFileSystem(path.dirname(staged), path.dirname(dest));
      ensureRoom(path.dirname(dest), sourceBytes(src) * (both ? 2 : 1), both ? 'the encrypted backup and the plaintext copy staged before it' : 'the encrypted backup (as big as the database)',
        both ? STAGING_HINT : 'free some space there, or choose a path on another file system');
    }
    // Encryption alone runs in a worker thread (made now: its start overlaps the copy) that seals
    // the copy while the main thread checks it (docs/encryption.md): the age transform's packer
    // ahead. Started again if the copy is made again; nothing of it is used unless the check passes.
    const encryption = await packerAhead(layers, recipientsOf(opts));
    let bytes: number;
    let copy: BuiltCopy;
    try {
      const startEncrypting = encryption
        ? async () => {
          fs.rmSync(tmpOut, { force: true });
          await encryption.start(tmp, tmpOut).catch((e: NodeJS.ErrnoException) => {
            throw encryptionError(e, tmpOut);
          });
        }
        : undefined;
      copy = await buildVerifiedCopy(src, tmp, opts, 'the backup', { onCopied: startEncrypting, staging: true });
      if (encryption) {
        bytes = await encryption.finish(() => afterBlockingCall(opts.signal)).catch((e: NodeJS.ErrnoException) => {
          throw encryptionError(e, tmpOut);
        });
      } else {
        bytes = await packFile(tmp, tmpOut, layers, recipientsOf(opts), opts.signal, packing(tmp, layers, opts.onProgress));
      }
    } finally {
      await encryption?.stop();
    }
    throwIfAborted(opts.signal);
    fs.chmodSync(tmpOut, opts.mode ?? 0o600);
    // Without --force a file that appeared at dest meanwhile is never replaced.
    await syncThenPublish(tmpOut, opts.signal, () => publish(tmpOut, dest, { noClobber: !opts.force, synced: true }));
    return { ...copy, bytes };
  } finally {
    fs.rmSync(tmp, { force: true });
    fs.rmSync(tmpOut, { force: true });
    if (privateDir) fs.rmSync(privateDir, { recursive: true, force: true });
  }
}

/**
 * fsync `tmp`, then `publishIt` (which must not fsync again): the fsync is one long synchronous
 * call, and one event-loop turn after it lets a Ctrl-C that came meanwhile stop the job before
 * anything is published.
 */
async function syncThenPublish(tmp: string, signal: AbortSignal | undefined, publishIt: () => void): Promise<void> {
  fsyncFile(tmp);
  await afterBlockingCall(signal);
  publishIt();
}

/** What the encrypting thread's failure is: the disk's (named), or the encryption's. */
function encryptionError(e: NodeJS.ErrnoException, out: string): BlufioError {
  if (e instanceof BlufioError) return e;
  return e.code && e.code !== 'ECHANGED' ? fsError(e, out, 'cannot write the backup') : new BlufioError('E_IO', `cannot encrypt the backup: ${e.message}`, 'try again');
}

/** A plain backup: built in a temporary file beside `dest`, then renamed into place. */
async function backupToPlainFile(src: string, dest: string, opts: BackupOptions) {
  removeStaleTemps(dest);
  const tmp = tempPathBeside(dest);
  try {
    ensureRoom(path.dirname(dest), sourceBytes(src), 'the backup (as big as the database)', 'free some space there, or choose a path on another file system');
    const copy = await buildVerifiedCopy(src, tmp, opts, 'the backup');
    await syncThenPublish(tmp, opts.signal, () => publishDatabase(tmp, dest, { noClobber: !opts.force, synced: true }));
    return { ...copy, bytes: copy.databaseBytes };
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}


/**
 * A backup never replaces a database someone is using, --force or not: a file another process
 * has open or locked, or one with committed data still in its -wal (or a hot -journal). Replacing
 * it deleted those commits (found by an operator-style attack run: the destination given where
 * the source was meant).
 */
function refuseLiveDatabase(dest: string): void {
  const st = statOrNull(dest);
  if (!st?.isFile()) return;
  const users = holders(dest) ?? [];
  const wal = walHoldsFrames(`${dest}-wal`);
  const journal = journalIsHot(`${dest}-journal`);
  if (users.length === 0 && !wal && !journal) return;
  const why = users.length > 0 ? `in use by process ${users.map(describePid).join(', ')}` : `holding data in ${dest}${wal ? '-wal' : '-journal'} that is not in the file yet`;
  throw new BlufioError('E_IN_USE', `${dest} is a live database (${why}): a backup never replaces one`,
    'choose another backup path; if it is the database you meant to back up, pass it with --db; to replace a database, use blufio restore, which keeps a .pre-restore copy');
}

