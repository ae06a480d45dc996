/** The verify command: a backup (or any database file) checked in full, a report for people or --json. */
import { throwIfAborted } from '../core/backup-loop.ts';
import { formatMB } from '../progress.ts';
import { loadConfig } from './config.ts';
import { atFlag, pathFlag, workDir, type CommonFlags } from './flags.ts';
import { emit, Silent, type Io, type Say } from './io.ts';
import { jobOptions } from './job.ts';
import { identitiesFor } from './keys.ts';

/** `blufio verify`: a report for people (or JSON), exit 1 when the file is not sound. */
export async function runVerify(target: string, f: CommonFlags, io: Io, say: Say, signal: AbortSignal): Promise<void> {
  const { signal: jobSignal, deadline } = jobOptions(f, io, signal);
  const { inspect } = await import('../inspect.ts');
  const cfg = await loadConfig(f, io, say);
  const r = await inspect(target, { quick: !!f.quick, workDir: workDir(f, io), identities: await identitiesFor(f, cfg), s3: cfg.backup.s3, env: io.env, at: await atFlag(f), series: pathFlag(f.series, '--series'), signal: jobSignal, deadline });
  // A check is one synchronous call that a signal cannot cut short: an interruption that came
  // meanwhile is honoured now, before a verdict is printed.
  throwIfAborted(jobSignal);
  if (f.json) emit(io, 'verify', r);
  if (r.ok) {
    const empty = r.tables.length === 0;
    say(`${r.path}: OK, ${empty ? 'sound, but an empty database (no tables)' : 'sound and ready to restore'}`);
    say(`  integrity     ok (${r.check})`);
    say(`  size          ${formatMB(r.bytes)}${r.compressed ? ' compressed' : ''}${r.encrypted ? ' encrypted' : ''}, ${r.pages} page${r.pages === 1 ? '' : 's'} of ${r.pageSize} bytes`);
    say(`  journal mode  ${r.journalMode === 'wal' ? 'WAL (needs its -wal file beside it)' : 'rollback journal (self-contained)'}`);
    say(`  written by    SQLite ${r.sqliteVersion}`);
    say(`  tables        ${r.tables.length ? r.tables.map((t) => `${t.name} ${t.virtual ? '(virtual)' : (t.rows ?? '?')}`).join(', ') : '(none)'}`);
    for (const w of r.warnings) if (!(empty && w.startsWith('empty database'))) say(`  note          ${w}`);
    return;
  }
  say(`${r.path}: FAILED, do not restore from this file`);
  for (const p of r.problems.slice(0, 5)) say(`  ${p}`);
  if (r.problems.length > 5) say(`  … and ${r.problems.length - 5} more`);
  throw new Silent();
}
