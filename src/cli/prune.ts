/** The prune command: the backups of a set that the retention policy does not keep, removed. */
import { loadConfig } from './config.ts';
import { intFlag, type CommonFlags } from './flags.ts';
import { emit, type Io, type Say } from './io.ts';
import { identitiesFor } from './keys.ts';

/** `blufio prune <set> --keep-…`: what goes and what stays (and why). */
export async function runPrune(target: string, f: CommonFlags, io: Io, say: Say, signal: AbortSignal): Promise<void> {
  const { prune } = await import('../sets/index.ts');
  const cfg = await loadConfig(f, io, say);
  await (await import('../storage/index.ts')).refuseFileAsSet(target, 'prune', { s3: cfg.backup.s3, env: io.env });
  const keep = (v: unknown, name: string) => (v === undefined ? undefined : intFlag(v, name, 0));
  const given = {
    last: keep(f.keepLast, '--keep-last'), hourly: keep(f.keepHourly, '--keep-hourly'), daily: keep(f.keepDaily, '--keep-daily'),
    weekly: keep(f.keepWeekly, '--keep-weekly'), monthly: keep(f.keepMonthly, '--keep-monthly'), yearly: keep(f.keepYearly, '--keep-yearly'),
  };
  // No --keep-* given: blufio.toml's [backup.retention], the policy `backup --prune` applies (so
  // that `prune --dry-run` previews exactly what the nightly run removes).
  const fromFlags = Object.values(given).some((n) => n !== undefined);
  const policy = fromFlags ? given : cfg.backup.retention;
  const r = await prune(target, policy, { dryRun: !!f.dryRun, s3: cfg.backup.s3, env: io.env, signal, identities: await identitiesFor(f, cfg) });
  if (f.json) emit(io, 'prune', { ok: true, policy: fromFlags ? 'flags' : 'backup.retention', ...r });
  if (!fromFlags) say(`Policy from [backup.retention]: ${Object.entries(policy).filter(([, n]) => n).map(([k, n]) => `keep_${k} = ${n}`).join(', ')}`);
  for (const d of r.removed) say(`${r.dryRun ? 'would remove' : 'removed'}  ${d.name}${d.problem ? ` — it can never be restored: ${d.problem}` : ''}`);
  for (const d of r.kept) say(`keep          ${d.name}  (${d.keptBecause.join(', ')})`);
  say(`${r.dryRun ? 'Dry run: would remove' : 'Removed'} ${r.removed.length} backup(s), kept ${r.kept.length}`);
  if (r.segmentsRemoved !== undefined) say(`Log segments: ${r.dryRun ? 'would remove' : 'removed'} ${r.segmentsRemoved} with their base, kept ${r.segmentsKept}`);
}
