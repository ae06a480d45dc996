/** Errors of the Node side: file-system failures named for people, the time limit. */
import { BlufioError } from './core/errors.ts';

export { BlufioError, type ErrorCode } from './core/errors.ts';

/** The whole job ran past --timeout (the reason of the abort signal that ends it). */
export function timeLimitError(): BlufioError {
  return new BlufioError('E_TIMEOUT', 'gave up: the time limit (--timeout) ran out; nothing was written',
    'raise --timeout, or leave it out: without it a job that makes progress is not limited');
}

/** Turns a node:fs error on `path` into a BlufioError that names the file and the next step. */
export function fsError(err: unknown, path: string, doing: string): BlufioError {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOENT':
      return new BlufioError('E_SOURCE_MISSING', `${doing}: ${path} does not exist`, 'check the path', { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new BlufioError('E_PERMISSION', `${doing}: permission denied on ${path}`,
        'run as the user that owns the file, or fix its permissions', { cause: err });
    case 'EISDIR':
      return new BlufioError('E_NOT_FILE', `${doing}: ${path} is a directory`, 'give the path of a file', { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new BlufioError('E_IO', `${doing}: no space left on the device holding ${path}`,
        'free some space and try again', { cause: err });
    case 'EFBIG':
      return new BlufioError('E_IO', `${doing}: ${path} reached the largest file allowed here (EFBIG: a file-size limit such as \`ulimit -f\`, or the file system's own)`,
        'raise the limit, or write to a file system that takes files this big', { cause: err });
    case 'EROFS':
      return new BlufioError('E_IO', `${doing}: ${path} is on a read-only file system`,
        'choose a place on a writable file system, or remount it read-write', { cause: err });
    case 'EPIPE':
      return new BlufioError('E_IO', `${doing}: the reader of ${path} closed it before everything was written`,
        'the receiving command stopped reading; what it got is incomplete, do not use it', { cause: err });
    default:
      return new BlufioError('E_IO', `${doing}: ${e?.message ?? String(err)}`, undefined, { cause: err });
  }
}

/**
 * True for a failure of the local file system (full, read-only, no permission) rather than of
 * the data passing through: Node and Bun give such errors a syscall and a code, Deno sometimes
 * only a message ("No space left on device (os error 28)").
 */
export function isFileSystemError(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException;
  if (err?.syscall) return true;
  if (['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS', 'EACCES', 'EPERM', 'EIO', 'EMFILE', 'ENAMETOOLONG'].includes(err?.code ?? '')) return true;
  return /No space left on device|Disk quota exceeded|File too large|Read-only file system|Permission denied|os error (27|28|30|13|122)\b/i.test(String(err?.message ?? ''));
}

/**
 * `e`, naming `shown` wherever it named `local`: errors about a private copy (a download, an
 * unpacked or rebuilt file) name what the user gave instead. Anything not ours passes unchanged.
 */
export function renamed(e: unknown, local: string, shown: string): unknown {
  if (!(e instanceof BlufioError) || local === shown) return e;
  return new BlufioError(e.code, e.message.replaceAll(local, shown), e.hint?.replaceAll(local, shown), { cause: e });
}
