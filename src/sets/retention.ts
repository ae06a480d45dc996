/**
 * The retention policy: restic's `forget` rules on one series, as a pure function of the
 * backups' names (tested against restic's golden files in test/sets.test.ts).
 */
import { DAY, type SetEntry } from './names.ts';

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

export interface PruneDecision {
  name: string;
  time: string;
  kind: 'full' | 'diff';
  /** Why it stays ("last", "daily", "base of …", "newest full"), or null when it goes. */
  keptBecause: string[];
  /** For a backup that can never be restored (a differential whose base is gone): why. Such a backup is removed and counts for no rule. */
  problem?: string;
}

/** The UTC bucket of a time for each rule (ISO weeks for weekly). */
function bucketOf(rule: keyof RetentionPolicy, t: Date): string {
  const iso = t.toISOString();
  switch (rule) {
    case 'hourly':
      return iso.slice(0, 13);
    case 'daily':
      return iso.slice(0, 10);
    case 'monthly':
      return iso.slice(0, 7);
    case 'yearly':
      return iso.slice(0, 4);
    case 'weekly': {
      const d = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
      const day = d.getUTCDay() || 7;
      d.setUTCDate(d.getUTCDate() + 4 - day);
      const year = d.getUTCFullYear();
      const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / DAY + 1) / 7);
      return `${year}-W${week}`;
    }
    default:
      return iso;
  }
}

/**
 * restic's `forget` on one series (newest first): each rule keeps the newest backup of each of
 * its N most recent periods that have one (--keep-last: the N newest); a backup kept by any rule
 * stays; the newest always stays; so do the newest full backup (new differentials are made
 * against it) and the base of every differential that stays.
 */
export function planPrune(entries: SetEntry[], policy: RetentionPolicy): PruneDecision[] {
  const reasons = new Map<string, string[]>(entries.map((e) => [e.name, []]));
  const keep = (e: SetEntry, why: string) => reasons.get(e.name)!.push(why);
  if (policy.last) entries.slice(0, policy.last).forEach((e) => keep(e, 'last'));
  for (const rule of ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const) {
    const n = policy[rule];
    if (!n) continue;
    let last: string | null = null;
    let count = 0;
    for (const e of entries) {
      const b = bucketOf(rule, e.time);
      if (b === last) continue;
      last = b;
      if (count++ >= n) break;
      keep(e, rule);
    }
  }
  if (entries[0]) keep(entries[0], 'newest');
  const newestFull = entries.find((e) => e.kind === 'full');
  if (newestFull) keep(newestFull, 'newest full (new differentials are made against it)');
  for (const e of entries) {
    if (e.kind === 'diff' && reasons.get(e.name)!.length > 0 && e.base && reasons.has(e.base)) keep(entries.find((x) => x.name === e.base)!, `base of ${e.name}`);
  }
  return entries.map((e) => ({ name: e.name, time: e.time.toISOString(), kind: e.kind, keptBecause: [...new Set(reasons.get(e.name)!)] }));
}

