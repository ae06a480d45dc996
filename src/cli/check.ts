/** The check command: every backup of a set checked for being restorable (--read-data: rebuilt too). */
import { BlufioError } from '../errors.ts';
import { loadConfig } from './config.ts';
import { pathFlag, workDir, type CommonFlags } from './flags.ts';
import { emit, Silent, type Io, type Say } from './io.ts';
import { identitiesFor } from './keys.ts';

/** `blufio check <set>`: every backup restorable? A report (or JSON); exit 1 when anything checked is not sound. */
export async function runCheck(target: string, f: CommonFlags, io: Io, say: Say, signal: AbortSignal): Promise<void> {
  if (f.readData && f.readDataSubset !== undefined) throw new BlufioError('E_USAGE', '--read-data and --read-data-subset were both given', 'give one: --read-data reads every backup');
  let pct = f.readData ? 100 : 0;
  if (f.readDataSubset !== undefined) {
    const m = /^(\d+(?:\.\d+)?)%?$/.exec(String(f.readDataSubset).trim());
    pct = m ? Number(m[1]) : NaN;
    if (!(pct > 0 && pct <= 100)) throw new BlufioError('E_USAGE', `--read-data-subset takes a share above 0 and at most 100%, not "${String(f.readDataSubset)}"`, 'e.g. --read-data-subset 10%');
  }
  const { checkSet } = await import('../set-check.ts');
  const cfg = await loadConfig(f, io, say);
  await (await import('../storage/index.ts')).refuseFileAsSet(target, 'check', { s3: cfg.backup.s3, env: io.env });
  const r = await checkSet(target, { readDataPercent: pct, s3: cfg.backup.s3, env: io.env, identities: await identitiesFor(f, cfg), stem: pathFlag(f.series, '--series'), workDir: workDir(f, io), signal });
  if (f.json) emit(io, 'check', r);
  for (const p of r.problems) say(`PROBLEM  ${p.name}: ${p.problem}`);
  for (const n of r.notes) say(`note     ${n}`);
  say(`${r.set}: ${r.ok ? 'OK' : 'FAILED'}, ${r.backups} backup(s), ${r.headersRead} header(s) read, ${r.dataRead} rebuilt and integrity_checked${r.ok ? '' : `, ${r.problems.length} problem(s)`}`);
  if (!r.ok) throw new Silent(`${r.problems.length} problem(s) in ${r.set}: ${r.problems[0].name}: ${r.problems[0].problem}`);
}
