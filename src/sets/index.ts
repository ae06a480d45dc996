/**
 * Backup sets: timestamped backups of one database in a store (a folder or an s3:// prefix),
 * full ones and page-level differentials against the newest full one, restore by time, pruning
 * by policy. One file per concern:
 *
 *   names.ts      what a file's name says (series, time, number, kind, base, layers)
 *   pages.ts      page hashes (and where this machine keeps them)
 *   diff.ts       the differential format
 *   rebuild.ts    a backup made local and plain: unpacked, a differential rebuilt on its base
 *   health.ts     what is restorable (names, then each file's first bytes), listings
 *   backup.ts     a backup into a set
 *   restore.ts    the backup to restore or verify (by time), and --at
 *   retention.ts  restic's rules, pure
 *   prune.ts      the rules applied to a set
 *
 * docs/sets.md has the format, the decisions and measurements.
 */
export { backupToSet, type SetBackupOptions, type SetBackupResult } from './backup.ts';
export { parseDiffHeader } from './diff.ts';
export { aboutIt, assess, listMembers, listSet, listSetContents, type LogMember, type SetMember } from './health.ts';
export { logsOf, type LogEntry, type Range } from './logs.ts';
export { entriesOf, FUTURE_SLACK, parseName, stemOf, type SetEntry } from './names.ts';
export { hashCacheDir } from './pages.ts';
export { prune, type PruneResult } from './prune.ts';
export { materialize } from './rebuild.ts';
export { isEmptySet, parseAt, withSetBackup, withSetFile } from './restore.ts';
export { planPrune, type PruneDecision, type RetentionPolicy } from './retention.ts';
export { isSet, openStore } from '../storage/index.ts';
