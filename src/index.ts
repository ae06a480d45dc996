/**
 * blufio backup & restore as a library, for the blufio server to schedule its own backups.
 *
 *   import { backup, restore } from 'blufio-backup';
 *   const r = await backup('/var/lib/blufio/blufio.db', '/backups/b.db', { onProgress, signal });
 */
import { backup as backupCli } from './backup.ts';
import { inspect as inspectCli } from './inspect.ts';
import { forLibrary } from './library-errors.ts';
import { planRestore as planRestoreCli, restore as restoreCli } from './restore.ts';
import { offThread as offThreadCli } from './worker.ts';
export { setOffThreadModule } from './worker.ts';

// Errors speak the library's words here (force: true), the command line's in the CLI (--force).
export const backup = forLibrary(backupCli);
export const restore = forLibrary(restoreCli);
export const planRestore = forLibrary(planRestoreCli);
export const inspect = forLibrary(inspectCli);
/** backup(), inspect() and restore() on a worker thread each (src/worker.ts). */
export const offThread = {
  backup: forLibrary(offThreadCli.backup),
  inspect: forLibrary(offThreadCli.inspect),
  restore: forLibrary(offThreadCli.restore),
};
export type { BackupOptions, BackupResult } from './build.ts';
export type { RestoreOptions, RestorePlan, RestoreResult } from './restore.ts';
export type { InspectResult, TableInfo } from './inspect.ts';
export { BlufioError, type ErrorCode } from './errors.ts';
export { resolveConfig, type StorageConfig, type ConfigInput } from './config.ts';
export type { Progress, ProgressCallback } from './progress.ts';
export type { CopyOptions } from './copy.ts';
