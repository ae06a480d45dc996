/**
 * `blufio restore <path>`: the database replaced by a backup (a file, s3://, or a set's newest or
 * --at's); --if-missing only seeds a database that does not exist yet; --dry-run says what would
 * happen and changes nothing.
 */
import type { StorageConfig } from '../config.ts';
import { BlufioError } from '../errors.ts';
import { formatMB, type Progress } from '../progress.ts';
import { loadConfig } from './config.ts';
import { atFlag, pathFlag, type CommonFlags } from './flags.ts';
import { emit, Silent, type Io, type Say } from './io.ts';
import { jobOptions, progressView, type CopyOptions } from './job.ts';
import { identitiesFor } from './keys.ts';

export async function runRestore(target: string, f: CommonFlags, io: Io, say: Say, signal: AbortSignal): Promise<void> {
  const copyOpts = jobOptions(f, io, signal);
  const bar = progressView('Restoring', f, io);
  const notice = (line: string) => {
    bar?.done();
    say(line);
  };
  try {
    // Loaded here, not at start-up: --help and --version never load SQLite.
    const cfg = await loadConfig(f, io, say, pathFlag(f.db, '--db'));
    const onProgress = bar ? (p: Progress) => bar.update(p) : undefined;
    const present = f.ifMissing ? (await import('../files.ts')).statOrNull(cfg.databasePath) : null;
    if (present?.isDirectory()) {
      // Docker makes a directory where a bind-mounted file is missing: not a database to keep.
      throw new BlufioError('E_NOT_FILE', `${cfg.databasePath} is a directory, not a database`, 'remove it (a bind mount of a missing file?) or point storage.database_path at a file');
    }
    // A 0-byte file holds no database (SQLite makes one on first open): restored over like a missing one.
    if (present && present.size > 0) {
      if (f.dryRun) say('Dry run: nothing was changed.');
      say(`${cfg.databasePath} exists: nothing restored (--if-missing)`);
      if (f.json) emit(io, 'restore', { ok: true, database: cfg.databasePath, restored: false, dryRun: !!f.dryRun, skipped: 'the database exists (--if-missing)' });
      return;
    }
    if (f.dryRun) return await dryRun(target, f, io, say, cfg, copyOpts);
    const { restore } = await import('../restore.ts');
    let r;
    try {
      r = await restore(cfg.databasePath, target, { ...copyOpts, walMode: cfg.walMode, onNotice: notice, onProgress, identities: await identitiesFor(f, cfg), s3: cfg.backup.s3, env: io.env, at: await atFlag(f), series: pathFlag(f.series, '--series') });
    } catch (e) {
      // A first deployment seeds from a set that has no backup yet: it starts empty (said even
      // with --quiet: a mistyped set would look the same).
      if (!f.ifMissing || !(await import('../sets/index.ts')).isEmptySet(e)) throw e;
      bar?.done();
      io.stderr(`${(e as Error).message}: nothing restored (--if-missing), the database starts empty\n`);
      if (f.json) emit(io, 'restore', { ok: true, database: cfg.databasePath, restored: false, dryRun: false, skipped: 'the set holds no backups yet (--if-missing)' });
      return;
    }
    bar?.done();
    say(`Restore complete: ${formatMB(r.bytes)} restored from ${r.path}`);
    const { database, ...rest } = r;
    if (f.json) emit(io, 'restore', { ok: true, database, restored: true, dryRun: false, ...rest });
  } finally {
    bar?.done();
  }
}

/** `blufio restore --dry-run`: the plan (every check a restore makes first), said; nothing changed. */
async function dryRun(target: string, f: CommonFlags, io: Io, say: Say, cfg: StorageConfig, copyOpts: CopyOptions): Promise<void> {
  const { planRestore } = await import('../restore.ts');
  const { withSource } = await import('../sources.ts');
  const { stemOf } = await import('../sets/index.ts');
  const planOpts = { walMode: cfg.walMode, identities: await identitiesFor(f, cfg) };
  const remote = { ...copyOpts, ...planOpts, s3: cfg.backup.s3, env: io.env };
  // A set's backup or a differential is rebuilt, an object downloaded, to be planned on:
  // what they hold is only known from their bytes.
  const made = await withSource(target, { ...remote, at: await atFlag(f), stem: pathFlag(f.series, '--series') ?? stemOf(cfg.databasePath) }, async (file, { where, objects }) => ({ ...planRestore(cfg.databasePath, file, planOpts), path: where, objects }));
  const { fromStat: _s, target: _t, layers: _l, ...plan } = made?.value ?? { ...planRestore(cfg.databasePath, target, planOpts), objects: [target] };
  const refused = plan.inUseBy !== null && plan.inUseBy.length > 0 && !f.force;
  const { database, ...rest } = plan;
  if (f.json) emit(io, 'restore', { ok: !refused, database, restored: false, dryRun: true, wouldBeRefused: refused, ...rest });
  say('Dry run: nothing was changed.');
  const size = plan.databaseBytes === null ? [plan.compressed && 'compressed', plan.encrypted && 'encrypted'].filter(Boolean).join(', ') : formatMB(plan.databaseBytes);
  say(`Would restore ${plan.path} (${size}) into ${plan.database} (${plan.journalMode === 'wal' ? 'WAL' : 'rollback-journal'} mode)`);
  if (plan.objects.length > 1) say(`It is made from ${plan.objects.length} objects, read in this order:\n${plan.objects.map((o) => `  ${o}`).join('\n')}`);
  if (plan.replaces) say(`The current database (${formatMB(plan.replaces.bytes)}: ${plan.replaces.files.join(', ')}) would be kept as ${plan.safetyCopy}`);
  else say(`There is no database there now: it would be created`);
  if (plan.earlierSafetyCopyMovesTo) say(`The earlier safety copy ${plan.safetyCopy} would be kept as ${plan.earlierSafetyCopyMovesTo}`);
  if (plan.inUseBy === null) say('Cannot tell here whether another process has the database open: stop the blufio server first');
  else if (plan.inUseBy.length > 0) say(`In use by process ${plan.inUseBy.join(', ')}: ${f.force ? 'with --force its later writes would go to the safety copy' : 'the restore would be refused (stop the blufio server first)'}`);
  // The plan reads the backup's header (and first chunk, if encrypted), not all of it.
  say(`The backup was not read in full: blufio verify ${target} checks all of it (the restore itself refuses a damaged one)`);
  if (refused) throw new Silent();
}
