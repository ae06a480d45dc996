/**
 * blufio backup & restore as a library, for the blufio server to schedule its own backups.
 *
 *   import { backup, restore } from 'blufio-backup';
 *   const r = await backup('/var/lib/blufio/blufio.db', '/backups/b.db', { onProgress, signal });
 */
export { backup } from './backup.ts';
export type { BackupOptions, BackupResult } from './build.ts';
export { planRestore, restore, type RestoreOptions, type RestorePlan, type RestoreResult } from './restore.ts';
export { inspect, type InspectResult, type TableInfo } from './inspect.ts';
export { offThread } from './worker.ts';
export { BlufioError, type ErrorCode } from './errors.ts';
export { resolveConfig, type StorageConfig, type ConfigInput } from './config.ts';
export type { Progress, ProgressCallback } from './progress.ts';
export type { CopyOptions } from './copy.ts';
