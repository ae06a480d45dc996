/**
 * prune: the retention policy applied to every series of a set, counting only backups that can
 * be restored; removes differentials before full backups, so that a killed run never leaves a
 * differential without its base.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import type { KeyOptions } from '../transforms/index.ts';
import type { ObjectStorageOptions } from '../storage/index.ts';
import { openStore } from '../storage/index.ts';
import { assess, type SetMember } from './health.ts';
import { chainOf, logsOf } from './logs.ts';
import { entriesOf, FUTURE_SLACK, parseName } from './names.ts';
import { hashCacheDir } from './pages.ts';
import { planPrune, type PruneDecision, type RetentionPolicy } from './retention.ts';

export interface PruneResult {
  command: 'prune';
  set: string;
  dryRun: boolean;
  kept: PruneDecision[];
  removed: PruneDecision[];
  /** Backups that cannot be restored, with why; differentials whose base is gone are removed (removed: true), the others kept for the operator. */
  broken: Array<{ name: string; problem: string; removed: boolean }>;
  /** Log segments (blufio replicate) removed with their base, and kept; only when the set holds any. */
  segmentsRemoved?: number;
  segmentsKept?: number;
}

/** Applies `policy` to every series in the set; removes what no rule keeps (not with dryRun). */
/** The reasons (planPrune) that say which times the policy keeps, as opposed to what those need. */
const WINDOW_RULES = new Set(['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly', 'newest']);

export async function prune(set: string, policy: RetentionPolicy, opts: ObjectStorageOptions & KeyOptions & { dryRun?: boolean; signal?: AbortSignal; stem?: string } = {}): Promise<PruneResult> {
  if (!Object.values(policy).some((n) => typeof n === 'number' && n > 0)) {
    const zeros = Object.values(policy).some((n) => n === 0);
    throw new BlufioError('E_USAGE', zeros ? 'every --keep-* rule given is 0: nothing would be kept, so nothing is pruned' : 'prune needs a policy: no --keep-* rule was given and [backup.retention] in blufio.toml has none',
      'e.g. blufio prune <set> --keep-daily 7 --keep-weekly 4, or keep_daily = 7 under [backup.retention] (at least one rule above 0)');
  }
  const store = openStore(set, opts);
  const files = await store.list();
  const all = entriesOf(files, opts.stem);
  const future = all.filter((e) => e.time.getTime() > Date.now() + FUTURE_SLACK);
  if (future.length > 0) {
    // Rules count periods back from the newest backup: one named in the future would push the real ones out.
    throw new BlufioError('E_USAGE', `${store.where(future[0].name)}${future.length > 1 ? ` and ${future.length - 1} more are` : ' is'} named after now (a clock that jumped ahead?); pruning would count from it`,
      'check this machine\'s clock, and rename or remove that backup first');
  }
  const names = new Set(files.map((f) => f.name));
  // The rules count only backups that can be restored (names and headers, as list reads them):
  // a --keep-last 2 that kept two broken ones would remove the only backup that restores. A
  // differential whose base is gone can never be restored: it is removed. Any other broken
  // backup (a damaged header, a base that is not the file it was made from) is kept and said,
  // counted by no rule: the operator decides (blufio check names them).
  const members = await assess(store, files, all, { headers: true, keys: opts, cacheDir: hashCacheDir(set, opts) });
  const broken = members.filter((m) => !m.restorable);
  const orphan = (m: SetMember) => m.kind === 'diff' && !names.has(m.base!);
  const sound = all.filter((e) => !broken.some((b) => b.name === e.name));
  const decisions: PruneDecision[] = [];
  for (const stem of new Set(sound.map((e) => e.stem))) decisions.push(...planPrune(sound.filter((e) => e.stem === stem), policy));
  // Log segments (blufio replicate) live and go with their chain's base: a base whose chain
  // reaches into what the policy keeps (after the oldest backup kept of its series) stays, so
  // that the range restore --at reaches is never cut inside the kept window; the newest chain's
  // base always stays (a replicator may be shipping to it).
  const logs = logsOf(files, opts.stem);
  const keptSince = new Map<string, number>();
  for (const d of decisions) {
    // Kept by a rule of the policy, not only as a base or as the full backup differentials are
    // made against (a full one kept so would stretch the window back to its own time and keep
    // every chain since: an attack run's prune --keep-last 3 removed none of 11 chains on
    // differentials).
    if (!d.keptBecause.some((r) => WINDOW_RULES.has(r))) continue;
    const stem = all.find((e) => e.name === d.name)!.stem;
    keptSince.set(stem, Math.min(keptSince.get(stem) ?? Infinity, Date.parse(d.time)));
  }
  const newestChain = new Map<string, { base: string; to: number }>();
  for (const l of logs) {
    const cur = newestChain.get(l.stem);
    if (!cur || l.to.getTime() > cur.to) newestChain.set(l.stem, { base: l.base, to: l.to.getTime() });
  }
  for (const d of decisions) {
    const chain = chainOf(logs, d.name);
    if (chain.length === 0) continue;
    const entry = all.find((e) => e.name === d.name)!;
    const before = d.keptBecause.length;
    if (newestChain.get(entry.stem)?.base === d.name) d.keptBecause.push('base of the newest log segments (blufio replicate)');
    else if (chain[chain.length - 1].to.getTime() > (keptSince.get(entry.stem) ?? Infinity)) d.keptBecause.push('base of log segments inside the kept range');
    // A chain on a differential needs the differential's full backup too.
    const full = entry.kind === 'diff' && d.keptBecause.length > before ? decisions.find((x) => x.name === entry.base) : undefined;
    if (full && !full.keptBecause.includes(`base of ${d.name}`)) full.keptBecause.push(`base of ${d.name}`);
  }
  const goneBases = new Set(decisions.filter((d) => d.keptBecause.length === 0).map((d) => d.name));
  // Segments of a base that goes, or whose base is already gone or broken, go too (never one without its base).
  const logsRemoved = logs.filter((l) => goneBases.has(l.base) || !names.has(l.base) || broken.some((b) => b.name === l.base && orphan(b)));
  const removed = [
    ...decisions.filter((d) => d.keptBecause.length === 0),
    ...broken.filter(orphan).map((m) => ({ name: m.name, time: m.time.toISOString(), kind: m.kind, keptBecause: [], problem: m.problem! })),
  ];
  // A broken full backup that a kept differential names stays with it, as any base does.
  const keptBroken = broken.filter((m) => !orphan(m)).map((m) => ({ name: m.name, time: m.time.toISOString(), kind: m.kind, keptBecause: ['cannot be restored: counted by no rule, kept for you to look at (blufio check)'], problem: m.problem! }));
  if (!opts.dryRun) {
    // Differentials first, then full backups: a run killed midway never leaves a differential
    // without its base (a base goes only when none of its differentials stays).
    removed.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'diff' ? -1 : 1));
    // Segments before their base, newest first: a killed prune leaves a chain that is whole up to where it was cut.
    for (const l of [...logsRemoved].sort((a, b) => b.n - a.n)) await store.remove(l.name);
    const cacheDir = hashCacheDir(set, opts);
    for (const d of removed) {
      await store.remove(d.name);
      if (names.has(`${d.name}.pages`)) await store.remove(`${d.name}.pages`);
      // And this machine's copy of its page hashes (it grew by 16 bytes a page per full backup,
      // for ever: an attack run). Only what this prune removed: a backup published since its
      // listing may have just written its own.
      fs.rmSync(path.join(cacheDir, `${d.name}.pages`), { force: true });
    }
    // Page hashes whose backup is gone (a prune killed between the two removals).
    const kept = new Set(entriesOf(files).map((e) => e.name));
    for (const f of files) {
      const p = parseName(f.name);
      if (p?.pages && !kept.has(f.name.slice(0, -'.pages'.length)) && (opts.stem === undefined || p.stem === opts.stem)) await store.remove(f.name);
    }
  }
  return { command: 'prune', set: store.where(''), dryRun: !!opts.dryRun, ...(logs.length > 0 ? { segmentsRemoved: logsRemoved.length, segmentsKept: logs.length - logsRemoved.length } : {}), kept: [...decisions.filter((d) => d.keptBecause.length > 0), ...keptBroken], removed, broken: broken.map((b) => ({ name: b.name, problem: b.problem!, removed: orphan(b) })) };
}
