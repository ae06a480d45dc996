/** The list command: a set's backups on stdout, newest first, and which cannot be restored. */
import { formatMB } from '../progress.ts';
import { loadConfig } from './config.ts';
import type { CommonFlags } from './flags.ts';
import { emit, type Io, type Say } from './io.ts';
import { identitiesFor } from './keys.ts';

/**
 * `blufio list <set>`: newest first, one line each, and which cannot be restored (and why); --json
 * for scripts. Each backup's first bytes are read (its header; a key opens an encrypted one).
 */
export async function runList(target: string, f: CommonFlags, io: Io, say: Say): Promise<void> {
  const { listSetContents } = await import('../sets/index.ts');
  const cfg = await loadConfig(f, io, say);
  await (await import('../storage/index.ts')).refuseFileAsSet(target, 'list', { s3: cfg.backup.s3, env: io.env });
  const { backups: entries, logs, ranges, replicators } = await listSetContents(target, { s3: cfg.backup.s3, env: io.env, identities: await identitiesFor(f, cfg), leases: true });
  const holders = replicators.map((h) => ({ series: h.series, lease: h.k, replicator: h.id, started: h.started, seen: h.seen === null ? null : new Date(h.seen).toISOString(), stopped: h.ended }));
  if (f.json) {
    emit(io, 'list', {
      ok: true,
      backups: [
        ...entries.map((e) => ({
          name: e.name, time: e.time.toISOString(), kind: e.kind, bytes: e.bytes, ...(e.base ? { base: e.base } : {}),
          restorable: e.restorable, ...(e.problem ? { problem: e.problem } : {}), checked: e.checked, ...(e.future ? { future: true } : {}),
        })),
        // Log segments (blufio replicate), newest first after the backups: by their names only.
        ...[...logs].reverse().map((l) => ({
          name: l.name, time: l.to.toISOString(), kind: 'log', bytes: l.bytes, base: l.base, segment: l.n, from: l.from.toISOString(), to: l.to.toISOString(),
          restorable: l.restorable, ...(l.problem ? { problem: l.problem } : {}), checked: 'name', ...(l.gap ? { gap: true } : {}),
        })),
      ],
      ...(logs.length > 0 ? { ranges } : {}),
      // The set's leases (blufio replicate): who ships each series, and its last sign of life.
      ...(holders.length > 0 ? { replicators: holders } : {}),
    });
    return;
  }
  if (entries.length === 0) say(`${target}: no backups`);
  // The listing is what the command is for: on stdout, for grep and files (notes stay on stderr).
  for (const e of entries) {
    const mark = !e.restorable ? `  UNRESTORABLE: ${e.problem}` : e.future ? '  (named in the future: a clock that jumped?)' : '';
    io.stdout(`${e.time.toISOString().replace('.000Z', 'Z')}  ${e.kind === 'full' ? 'full' : 'diff'}  ${formatMB(e.bytes).padStart(10)}  ${e.name}${e.base ? `  (base ${e.base})` : ''}${mark}\n`);
  }
  if (logs.length > 0) {
    // Segments are many (one a second): summed up per chain, not one line each.
    for (const base of [...new Set(logs.map((l) => l.base))]) {
      const mine = logs.filter((l) => l.base === base);
      const bad = mine.filter((l) => !l.restorable);
      const bytes = mine.reduce((a, l) => a + l.bytes, 0);
      io.stdout(`${mine[mine.length - 1].to.toISOString()}  log   ${formatMB(bytes).padStart(10)}  ${mine.length} segment(s) from ${mine[0].from.toISOString()} on ${base}${bad.length ? `  UNRESTORABLE from segment ${bad[0].n}: ${bad[0].problem}` : ''}\n`);
    }
    for (const r of ranges) {
      io.stdout(`restorable: ${r.series} from ${r.from} to ${r.to}${r.gaps.length ? `; gaps (commits inside were not all seen one by one: a time inside restores to the newest state seen by then, at least the state at its start): ${r.gaps.map((g) => `${g.from}..${g.to}`).join(', ')}` : ''}\n`);
    }
  }
  for (const h of holders) {
    io.stdout(`replicator: ${h.series} ${h.replicator ? `held by ${h.replicator}` : 'held by an unreadable lease'} (lease ${h.lease})${h.started ? ` since ${h.started}` : ''}${h.seen ? `, ${h.stopped ? 'stopped' : 'last sign of life'} ${h.seen}` : ''}\n`);
  }
  const broken = entries.filter((e) => !e.restorable).length;
  if (broken > 0) {
    const newest = entries.find((e) => e.restorable && !e.future);
    say(`warning: ${broken} backup(s) cannot be restored${newest ? `; the newest that can is ${newest.name}` : '; none can'} (blufio prune removes differentials whose base is gone; blufio check tells more)`);
  }
}
