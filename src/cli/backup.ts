/**
 * `blufio backup <path>`: to a file, stdout ("-"), s3:// or a set; with --prune, the set pruned
 * afterwards; with --ping, a monitor told how the run went.
 */
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import { formatMB, type Progress } from '../progress.ts';
import { loadConfig } from './config.ts';
import { pathFlag, STDOUT, type CommonFlags } from './flags.ts';
import { emit, Silent, type Io, type Say } from './io.ts';
import { jobOptions, progressView } from './job.ts';
import { identitiesFor, recipientsFor } from './keys.ts';

export async function runBackup(target: string, f: CommonFlags, io: Io, say: Say, signal: AbortSignal): Promise<void> {
  const copyOpts = jobOptions(f, io, signal);
  signal = copyOpts.signal;
  const toStdout = target === STDOUT;
  if (toStdout && io.stdoutStream.isTTY) {
    throw new BlufioError('E_USAGE', 'refusing to write a database to the terminal', 'redirect or pipe it: blufio backup - > backup.db');
  }
  if (toStdout && f.json) throw new BlufioError('E_USAGE', '--json cannot be used with "-": stdout carries the backup', 'drop --json');
  const bar = progressView('Backing up', f, io);
  try {
    // Loaded here, not at start-up: --help and --version never load SQLite.
    const cfg = await loadConfig(f, io, say, pathFlag(f.db, '--db'));
    const onProgress = bar ? (p: Progress) => bar.update(p) : undefined;
    if (f.ping !== undefined) {
      const url = pathFlag(f.ping, '--ping')!;
      if (!/^https?:\/\//i.test(url) || !URL.canParse(url)) throw new BlufioError('E_USAGE', `--ping needs an http(s) URL, not "${url}"`, 'e.g. --ping https://hc-ping.com/<uuid>');
      try {
        await runBackup(target, { ...f, ping: undefined }, io, say, signal);
      } catch (e) {
        // The reason goes in the body (healthchecks.io keeps it): what the log would have said.
        const why = e instanceof BlufioError ? `error: ${e.message}${e.hint ? ` (${e.hint})` : ''}` : `error: ${(e as Error)?.message ?? String(e)}`;
        await ping(`${url.replace(/\/+$/, '')}/fail`, say, why);
        throw e;
      }
      await ping(url, say);
      return;
    }
    const { backup, backupToStream } = await import('../backup.ts');
    if (f.gzip && !toStdout) {
      const intoSet = (await import('../storage/index.ts')).locate(target).kind === 'set';
      throw new BlufioError('E_USAGE', `--gzip is for "-" (stdout): ${intoSet ? 'a set\'s backups are always compressed' : 'a file\'s name says whether it is compressed'}`, intoSet ? 'drop --gzip' : `name it ${target}.gz instead`);
    }
    const { locate } = await import('../storage/index.ts');
    const dest = locate(toStdout ? '-' : target);
    const toSet = dest.kind === 'set';
    const offsite = dest.kind !== 'stdout' && dest.remote !== null;
    const setOnly = f.full ? '--full' : f.prune ? '--prune' : f.unencrypted && !offsite ? '--unencrypted' : null;
    if (setOnly && !toSet) throw new BlufioError('E_USAGE', `${setOnly} is for a backup set (a folder, or a path or s3:// prefix ending in /)${setOnly === '--unencrypted' ? ' or object storage' : ''}`, `back up to a set: blufio backup ${path.dirname(target)}/`);
    if (f.prune && !Object.values(cfg.backup.retention).some((n) => n && n > 0)) {
      throw new BlufioError('E_USAGE', '--prune needs a policy: [backup.retention] in blufio.toml has no keep_* rule', 'add e.g. keep_daily = 7 and keep_weekly = 4 under [backup.retention], or run blufio prune with --keep-* rules');
    }
    const recipients = await recipientsFor(toStdout || toSet ? null : target, f, cfg);
    // Off the machine means encrypted unless the operator says otherwise: backup() refuses
    // s3:// without recipients; blufio.toml's backup.unencrypted is the opt-out beside the flag.
    const unencrypted = !!f.unencrypted || (offsite && cfg.backup.unencrypted === true && recipients.length === 0);
    const opts = {
      ...copyOpts, verify: f.verify !== false, onProgress, gzip: !!f.gzip, recipients, s3: cfg.backup.s3, env: io.env,
      full: !!f.full, unencrypted, fullEveryMs: cfg.backup.fullEveryDays === undefined ? undefined : cfg.backup.fullEveryDays * 86_400_000,
    };
    const r = toStdout ? await backupToStream(cfg.databasePath, io.stdoutStream, opts) : await backup(cfg.databasePath, target, opts);
    bar?.done();
    const set = r as Partial<import('../sets/index.ts').SetBackupResult>;
    const how = set.kind === 'diff' ? ` (a differential: ${set.changedPages} of ${r.pages} pages changed since ${path.basename(set.base!)})` : set.kind === 'full' ? ` (a full backup${set.fullBecause ? `: ${set.fullBecause}` : ''})` : '';
    say(`Backup complete: ${formatMB(r.bytes)} written to ${toStdout ? 'stdout' : r.path}${how}`);
    if (set.warning && !f.json) io.stderr(`warning: ${set.warning}\n`);
    let pruned: unknown;
    if (f.prune) {
      const { prune } = await import('../sets/index.ts');
      try {
        const p = await prune(target, cfg.backup.retention, { s3: cfg.backup.s3, env: io.env, signal, identities: await identitiesFor(f, cfg) });
        pruned = { removed: p.removed.map((d) => d.name), kept: p.kept.length, ...(p.broken.length ? { broken: p.broken } : {}) };
        say(p.removed.length ? `Pruned ${p.removed.length} backup(s): ${p.removed.map((d) => d.name).join(', ')}` : 'Pruned nothing: every backup is kept by the policy');
        for (const b of p.broken) say(`  ${b.name} cannot be restored: ${b.problem}; ${b.removed ? 'removed' : 'kept for you to look at (blufio check)'}`);
      } catch (e) {
        // The backup was written: said as such, and the run still fails (exit 1, /fail), so
        // that a prune that keeps failing is seen before the set fills up.
        if (!(e instanceof BlufioError)) throw e;
        io.stderr(`error: the backup was written (${r.path}), but pruning failed: ${e.message}${e.hint ? ` (${e.hint})` : ''}\n`);
        if (f.json) emit(io, 'backup', { ok: true, ...r, prune: { ok: false, error: { code: e.code, message: e.message, hint: e.hint } } });
        throw new Silent(`the backup was written (${r.path}), but pruning failed: ${e.message}`);
      }
    }
    if (f.json) emit(io, 'backup', { ok: true, ...r, ...(pruned ? { pruned } : {}) });
  } finally {
    bar?.done();
  }
}

/**
 * Tells a monitor how the run went (healthchecks.io's convention: GET the URL, or URL/fail).
 * A monitor that cannot be reached never fails the backup: a warning, within 10 s.
 */
export async function ping(url: string, say: Say, body?: string): Promise<void> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000), ...(body === undefined ? {} : { method: 'POST', body }) });
    await res.arrayBuffer().catch(() => {});
    if (!res.ok) say(`warning: the monitor at ${hostOf(url)} answered ${res.status}`);
  } catch (e) {
    // The host only: a monitor's URL often holds its secret.
    say(`warning: could not reach the monitor at ${hostOf(url)}: ${(e as Error).message}`);
  }
}

const hostOf = (url: string) => (URL.canParse(url) ? new URL(url).host : 'the --ping URL');
