/**
 * The names of a set's files, which say what each is without opening it (encrypted files cannot
 * be opened without a key):
 *
 *   <stem>-<YYYYMMDDTHHMMSSZ>[-<n>].db.gz[.age]                          a full backup
 *   <stem>-<YYYYMMDDTHHMMSSZ>[-<n>].from-<base time>[-<m>].diff.gz[.age] a differential
 *   <full backup's name>.pages                                           its page hashes
 *
 * The time is UTC when the copied state was current; -<n> tells apart backups taken in the same
 * second (a run never overwrites another's file). A differential names its base. Nothing else in
 * a set's folder or prefix is ever touched.
 */
import * as path from 'node:path';
import { compressed, encrypted, layersOfName, suffixOf, TRANSFORMS, type Layers } from '../transforms/index.ts';
import type { StoredFile } from '../storage/store.ts';

export const TIME = String.raw`\d{8}T\d{6}Z`;
/** Any transform's suffix (transforms/registry.ts): which and in what order is checked by layersOfName. */
export const SUFFIX = TRANSFORMS.map((t) => t.suffix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
const NAME_RE = new RegExp(String.raw`^(?<stem>.+?)-(?<time>${TIME})(?:-(?<seq>\d+))?(?:\.from-(?<base>${TIME}(?:-\d+)?))?(?<kind>\.db|\.diff)(?<layers>(?:${SUFFIX})*)(?<pages>\.pages)?$`);

export interface SetEntry {
  name: string;
  stem: string;
  /** When the backup's state was current (UTC). */
  time: Date;
  /** Tells apart backups of the same second (0 for the first). */
  seq: number;
  kind: 'full' | 'diff';
  /** For a differential: its base's name. */
  base: string | null;
  bytes: number;
  encrypted: boolean;
}

/** The series a database's backups belong to: its file name without .db / .sqlite / .sqlite3. */
export const stemOf = (db: string) => path.basename(db).replace(/\.(db|sqlite3?)$/i, '') || 'database';

const stamp = (t: Date) => t.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
const parseStamp = (s: string) => new Date(`${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}Z`);

/** Parses a set file's name; null for anything that is not one of ours. */
export function parseName(name: string): (Omit<SetEntry, 'bytes'> & { pages: boolean }) | null {
  const m = NAME_RE.exec(name);
  if (!m?.groups) return null;
  const g = m.groups;
  const time = parseStamp(g.time);
  if (Number.isNaN(time.getTime()) || stamp(time) !== g.time) return null;
  const kind = g.kind === '.db' ? 'full' : 'diff';
  // A set's files are always compressed, their suffixes each once and in packing order.
  const layers = layersOfName(g.layers);
  if (suffixOf(layers) !== g.layers || !compressed(layers)) return null;
  if ((kind === 'diff') !== (g.base !== undefined) || (kind === 'diff' && g.pages)) return null;
  return {
    name,
    stem: g.stem,
    time,
    seq: Number(g.seq ?? 0),
    kind,
    base: g.base ? `${g.stem}-${g.base}.db${g.layers}` : null,
    encrypted: encrypted(layers),
    pages: !!g.pages,
  };
}

export function nameFor(stem: string, time: Date, seq: number, kind: 'full' | 'diff', layers: Layers, base?: SetEntry): string {
  const t = `${stamp(time)}${seq > 0 ? `-${seq}` : ''}`;
  const from = kind === 'diff' ? `.from-${stamp(base!.time)}${base!.seq > 0 ? `-${base!.seq}` : ''}` : '';
  return `${stem}-${t}${from}${kind === 'full' ? '.db' : '.diff'}${suffixOf(layers)}`;
}

export function entriesOf(files: StoredFile[], stem?: string): SetEntry[] {
  const out: SetEntry[] = [];
  for (const f of files) {
    const p = parseName(f.name);
    if (!p || p.pages || (stem !== undefined && p.stem !== stem)) continue;
    const { pages: _p, ...entry } = p;
    out.push({ ...entry, bytes: f.bytes });
  }
  return out.sort((a, b) => b.time.getTime() - a.time.getTime() || b.seq - a.seq);
}


export const DAY = 86_400_000;
/** How far ahead of this machine's clock a backup's name may be before it counts as "in the future". */
export const FUTURE_SLACK = 5 * 60_000;

