/**
 * The flags as the parser hands them over (CommonFlags) and their checks: a path, a whole number,
 * a repeatable value, `~` expanded, --work-dir and --at. A bad value is a usage error, never ignored.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import type { Io } from './io.ts';

/** The argument "-": stdout for backup and keygen (the others refuse it). */
export const STDOUT = '\0stdout';

export interface CommonFlags {
  db?: string;
  config?: string;
  force?: boolean;
  quiet?: boolean;
  json?: boolean;
  pagesPerStep?: number;
  sleepMs?: number;
  retries: number;
  timeout?: number;
  verify: boolean;
  quick?: boolean;
  workDir?: string;
  dryRun?: boolean;
  recipient?: string[];
  recipientsFile?: string[];
  identity?: string[];
  gzip?: boolean;
  at?: string;
  full?: boolean;
  unencrypted?: boolean;
  prune?: boolean;
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  ping?: string;
  ifMissing?: boolean;
  progress?: boolean;
  series?: string[];
  readData?: boolean;
  readDataSubset?: string;
}

/** --at, parsed (ISO 8601), or undefined. */
export async function atFlag(f: CommonFlags): Promise<Date | undefined> {
  if (f.at === undefined) return undefined;
  if (typeof f.at !== 'string' || f.at.trim() === '') throw new BlufioError('E_USAGE', '--at needs a time', 'e.g. --at 2026-11-24T08:00Z');
  return (await import('../sets/index.ts')).parseAt(f.at);
}

/** `~` and `~/…` as the shell would have expanded them (it does not after `--opt=`). */
export function home(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/** A repeatable option: each value given, none empty. */
export function listFlag(v: unknown, name: string): string[] {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return all.map((x) => {
    if (typeof x === 'boolean' || String(x).trim() === '') throw new BlufioError('E_USAGE', `${name} needs a value`, 'run blufio --help');
    return String(x);
  });
}

/** --work-dir, else BLUFIO_WORK_DIR, else none (each operation's default place). */
export function workDir(f: CommonFlags, io: Io): string | undefined {
  return pathFlag(f.workDir, '--work-dir') ?? (io.env.BLUFIO_WORK_DIR || undefined);
}

/** A path option: absent, or one non-empty path (given twice or empty is a usage error, never ignored). */
export function pathFlag(v: unknown, name: string): string | undefined {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  if (all.length === 0) return undefined;
  if (all.length > 1) throw new BlufioError('E_USAGE', `${name} was given ${all.length} times`, `give ${name} once`);
  v = all[0];
  if (typeof v === 'boolean' || String(v).trim() === '') {
    throw new BlufioError('E_USAGE', `${name} needs a path`, `give ${name} <path>, or leave it out to use blufio.toml`);
  }
  // "-" is stdin/stdout for the command's argument, never a database's name: `restore --db -`
  // made a database file named "-" in the current directory (found by an attack run).
  if (name === '--db' && String(v) === '-') throw new BlufioError('E_USAGE', '--db names the database file; "-" is not one', 'give its path: --db /var/lib/blufio/blufio.db (or ./- for a file really named so)');
  return home(String(v));
}

export function intFlag(v: unknown, name: string, min: number): number {
  // Digits only: Number() would also take "0x10", "1e3" and " 7 ".
  const n = typeof v === 'string' ? (/^\d+$/.test(v) ? Number(v) : NaN) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min) {
    throw new BlufioError('E_USAGE', `${name} must be a whole number of at least ${min}, not "${String(v)}"`, `run blufio --help`);
  }
  return n;
}
