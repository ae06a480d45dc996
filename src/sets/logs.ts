/**
 * Log segments in a set (`blufio replicate`): their names, and the chains they make.
 *
 *   <stem>-<base time>[-<n>][.from-<its full backup's time>[-<n>]].seg<chain number, 8 digits>[-<last number>].<first step>-<last step>[.gap].log.gz[.age]
 *
 * e.g. blufio-20261207T070000Z.seg00000042.20261207T071500250Z-20261207T071501100Z.log.gz: the
 * 42nd segment after the full backup blufio-20261207T070000Z.db.gz, holding the steps observed
 * from 07:15:00.250 to 07:15:01.100 UTC. A chain on a differential names it as the differential
 * is named: blufio-20261207T130000Z.from-20261207T070000Z.seg00000001… follows
 * blufio-20261207T130000Z.from-20261207T070000Z.diff.gz. `seg00000031-00000060` is a compacted segment: the steps
 * of segments 31 to 60, merged by the replicator (fewer objects for a restore, nothing lost). A
 * chain is its base and segments covering 1, 2, … without a hole; the names alone say where it
 * breaks (list and prune read no segment to know that), the checksums inside prove it. `.gap`: commits before its first step were not seen one
 * by one (the WAL was checkpointed unread): closed from the database file, and times between the
 * segment before and its first step restore to the state before the gap. A compacted segment
 * marked `.gap` holds a gap somewhere inside: its whole span is shown as one.
 */
import type { StoredFile } from '../storage/store.ts';
import { compressed, encrypted, layersOfName, suffixOf, type Layers } from '../transforms/index.ts';
import { SUFFIX, TIME } from './names.ts';

const MS_TIME = String.raw`\d{8}T\d{9}Z`;
const LOG_RE = new RegExp(String.raw`^(?<stem>.+?)-(?<base>${TIME}(?:-\d+)?)(?:\.from-(?<full>${TIME}(?:-\d+)?))?\.seg(?<n>\d{8})(?:-(?<last>\d{8}))?\.(?<from>${MS_TIME})-(?<to>${MS_TIME})(?<gap>\.gap)?\.log(?<layers>(?:${SUFFIX})*)$`);

export interface LogEntry {
  name: string;
  stem: string;
  /** The backup the chain starts from (a full one, or a differential). */
  base: string;
  /** Its place in the chain (1: the first after the base), and the last place it covers (n, unless compacted). */
  n: number;
  last: number;
  /** When its first and last steps were observed. */
  from: Date;
  to: Date;
  bytes: number;
  encrypted: boolean;
  /** Commits before its first step were not seen one by one (a gap, closed by this segment). */
  gap: boolean;
}

const msStamp = (t: Date) => t.toISOString().replace(/[-:.]/g, '');
const parseMsStamp = (s: string) => new Date(`${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}.${s.slice(15, 18)}Z`);

/** A segment's name. `base` is its base's name. */
export function logNameFor(stem: string, base: string, n: number, from: Date, to: Date, layers: Layers, gap = false, last = n): string {
  // The base's name without its stem and kind: "<time>" (full) or "<time>.from-<time>" (differential).
  const baseTime = base.slice(stem.length + 1).replace(/\.(?:db|diff)(?:\.[a-z]+)*$/, '');
  const span = `${String(n).padStart(8, '0')}${last > n ? `-${String(last).padStart(8, '0')}` : ''}`;
  return `${stem}-${baseTime}.seg${span}.${msStamp(from)}-${msStamp(to)}${gap ? '.gap' : ''}.log${suffixOf(layers)}`;
}

/** A segment's name parsed; null for anything else. */
export function parseLogName(name: string): Omit<LogEntry, 'bytes'> | null {
  const g = LOG_RE.exec(name)?.groups;
  if (!g) return null;
  const layers = layersOfName(g.layers);
  if (suffixOf(layers) !== g.layers || !compressed(layers)) return null;
  const from = parseMsStamp(g.from);
  const to = parseMsStamp(g.to);
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || msStamp(from) !== g.from || msStamp(to) !== g.to || to < from) return null;
  const n = Number(g.n);
  const last = g.last === undefined ? n : Number(g.last);
  if (n < 1 || last <= n - (g.last === undefined ? 1 : 0)) return null;
  return { name, stem: g.stem, base: g.full ? `${g.stem}-${g.base}.from-${g.full}.diff${g.layers}` : `${g.stem}-${g.base}.db${g.layers}`, n, last, from, to, encrypted: encrypted(layers), gap: !!g.gap };
}

/** The segments of a listing (of one series when `stem` is given), by base, then chain order. */
export function logsOf(files: StoredFile[], stem?: string): LogEntry[] {
  const out: LogEntry[] = [];
  for (const f of files) {
    const p = parseLogName(f.name);
    if (p && (stem === undefined || p.stem === stem)) out.push({ ...p, bytes: f.bytes });
  }
  return out.sort((a, b) => (a.base === b.base ? a.n - b.n || a.last - b.last : a.base < b.base ? -1 : 1));
}

/**
 * The unbroken chain of segments of `base`, fewest objects first: from place 1, at each place the
 * segment that covers the most places (a compacted one over the segments it merged, which stay
 * until they are removed), up to the first place no segment starts at (a later segment past a
 * hole cannot be applied: its state before is unknown).
 */
export function chainOf(logs: LogEntry[], base: string): LogEntry[] {
  // The furthest place reachable from 1 without a hole, by the fewest segments (segments that
  // overlap — merged ones beside what they merged — are paths of their own, never a hole).
  const mine = logs.filter((l) => l.base === base).sort((a, b) => a.n - b.n || b.last - a.last);
  const best = new Map<number, { count: number; via: LogEntry | null; from: number }>([[1, { count: 0, via: null, from: 0 }]]);
  let far = 1;
  for (const l of mine) {
    const at = best.get(l.n);
    if (!at) continue;
    const next = l.last + 1;
    const had = best.get(next);
    if (!had || had.count > at.count + 1) best.set(next, { count: at.count + 1, via: l, from: l.n });
    far = Math.max(far, next);
  }
  const chain: LogEntry[] = [];
  for (let p = far; p > 1; ) {
    const step = best.get(p)!;
    chain.unshift(step.via!);
    p = step.from;
  }
  return chain;
}

/** The last place the chain of `base` covers without a hole (0: none). */
export function chainEnd(logs: LogEntry[], base: string): number {
  const chain = chainOf(logs, base);
  return chain.length ? chain[chain.length - 1].last : 0;
}

export interface Range {
  series: string;
  /** The oldest and newest time `restore --at` reaches (ISO 8601). */
  from: string;
  to: string;
  /** Where commits were not seen one by one: a time inside restores to the state at the gap's start. */
  gaps: Array<{ from: string; to: string }>;
}

/**
 * What `--at` can reach, per series: from its oldest restorable backup to the newest of its
 * backups and its chains' last steps; gaps inside chains (a `.gap` segment: from the step before
 * it to its first) and between one chain's end and the next chain's base.
 */
export function rangesOf(backups: Array<{ name: string; stem: string; time: Date; kind: string; restorable: boolean }>, logs: LogEntry[]): Range[] {
  const out: Range[] = [];
  for (const series of [...new Set(backups.map((b) => b.stem))].sort()) {
    const mine = backups.filter((b) => b.stem === series && b.restorable);
    if (mine.length === 0) continue;
    let from = Math.min(...mine.map((b) => b.time.getTime()));
    let to = Math.max(...mine.map((b) => b.time.getTime()));
    const gaps: Range['gaps'] = [];
    const chains = mine.map((b) => ({ base: b, chain: chainOf(logs, b.name) })).filter((c) => c.chain.length > 0)
      .sort((a, b) => a.base.time.getTime() - b.base.time.getTime());
    let prevEnd: number | null = null;
    for (const { base, chain } of chains) {
      const start = Math.min(base.time.getTime(), chain[0].from.getTime());
      if (prevEnd !== null && start > prevEnd) gaps.push({ from: new Date(prevEnd).toISOString(), to: new Date(start).toISOString() });
      // Up to this chain's first step, a time is restored from the chain before (restore takes a
      // chain only from its first segment's first step), as far as that one reaches: a gap at
      // this chain's start begins where the one before stops, or at this chain's first step when
      // the one before goes on past it (a stood-down holder's last seconds after a take-over:
      // shadowed from there; an attack run's `list` showed them as exact).
      let last: number = prevEnd === null ? start : Math.max(start, Math.min(prevEnd, chain[0].from.getTime()));
      for (const l of chain) {
        // A merged segment that holds a gap is a gap over its whole span (where inside it the
        // gaps were is in its steps, not its name).
        const end = l.gap ? (l.last > l.n ? l.to : l.from).getTime() : 0;
        if (l.gap && end > last) gaps.push({ from: new Date(last).toISOString(), to: new Date(end).toISOString() });
        last = l.to.getTime();
      }
      prevEnd = last;
      to = Math.max(to, last);
      from = Math.min(from, start);
    }
    out.push({ series, from: new Date(from).toISOString(), to: new Date(to).toISOString(), gaps });
  }
  return out;
}
