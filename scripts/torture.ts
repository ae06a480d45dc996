/**
 * Torture run of the lock-free consistency proof: native writers (Python's sqlite3 module,
 * testkit/pywriter.py) in every pattern a server uses, and as many blufio backups and verifies as fit
 * in the time, each checked with native sqlite3 (integrity_check and the writer's invariant).
 *
 *   npm run torture -- --minutes 10 [--only TEXT] [--big] [--no-verify] [--write-docs]
 *
 * Counts per pattern: finished, consistent, inconsistent (a finished backup that fails either
 * check: must be 0), false alarms (a healthy database called damaged: must be 0), gave up
 * (E_TOO_BUSY), and other errors. --no-verify makes backups without blufio's own integrity check, so
 * that any flaw of the proof shows as an inconsistent backup. --write-docs puts the table into docs/consistency.md.
 * runTorture() is also used by test/torture.test.ts for a short run inside `npm test`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backup, backupToStream } from '../src/backup.ts';
import { BlufioError } from '../src/errors.ts';
import { inspect } from '../src/inspect.ts';
import { sql } from '../testkit/native.ts';
import { createLiveDb, invariantHolds } from '../testkit/writer.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface WriterPattern {
  tps?: number;
  checkpoint?: 'PASSIVE' | 'FULL' | 'RESTART' | 'TRUNCATE';
  every?: number;
  connPerTx?: boolean;
  autocheckpoint?: number;
  synchronous?: 'OFF' | 'NORMAL' | 'FULL';
  journal?: 'WAL' | 'DELETE' | 'TRUNCATE' | 'PERSIST';
  vacuumEvery?: number;
  grow?: number;
  shrinkEvery?: number;
  switchEvery?: number;
  journalSizeLimit?: number;
  trace?: string;
}

export interface Pattern {
  name: string;
  writer: WriterPattern;
  /** Rows in the ledger at the start (~3 KB each on average). */
  rows?: number;
  /** Rollback-journal mode: giving up under a writer that never pauses is expected, not a failure. */
  rollback?: boolean;
}

export const PATTERNS: Pattern[] = [
  { name: 'WAL, TRUNCATE checkpoint after every commit, 30 tx/s', writer: { tps: 30, checkpoint: 'TRUNCATE' } },
  { name: 'WAL, TRUNCATE checkpoint after every commit, no pause', writer: { checkpoint: 'TRUNCATE' } },
  { name: 'WAL, TRUNCATE checkpoint every 10 commits, no pause', writer: { checkpoint: 'TRUNCATE', every: 10 } },
  { name: 'WAL, RESTART checkpoint after every commit, no pause', writer: { checkpoint: 'RESTART' } },
  { name: 'WAL, PASSIVE checkpoint after every commit, no pause', writer: { checkpoint: 'PASSIVE' } },
  { name: 'WAL, connection per transaction, 5 tx/s', writer: { tps: 5, connPerTx: true } },
  { name: 'WAL, connection per transaction, no pause', writer: { connPerTx: true } },
  { name: 'WAL, autocheckpoint 1, no pause', writer: { autocheckpoint: 1 } },
  { name: 'WAL, autocheckpoint 10, no pause', writer: { autocheckpoint: 10 } },
  { name: 'WAL, autocheckpoint 100, no pause', writer: { autocheckpoint: 100 } },
  { name: 'WAL, default autocheckpoint, no pause', writer: {} },
  { name: 'WAL, synchronous OFF, no pause', writer: { synchronous: 'OFF' } },
  { name: 'WAL, synchronous OFF, autocheckpoint 10, no pause', writer: { synchronous: 'OFF', autocheckpoint: 10 } },
  { name: 'WAL, journal_size_limit 0, autocheckpoint 10, no pause', writer: { autocheckpoint: 10, journalSizeLimit: 0 } },
  { name: 'WAL, VACUUM every 50 commits', writer: { vacuumEvery: 50 } },
  { name: 'WAL, fast growth (20 KB rows), autocheckpoint 100', writer: { grow: 20000, autocheckpoint: 100 } },
  { name: 'WAL, shrinking (most rows deleted every 100 commits)', writer: { shrinkEvery: 100, autocheckpoint: 100 } },
  { name: 'WAL <-> DELETE journal-mode switch every 50 commits', writer: { switchEvery: 50 } },
  { name: 'rollback (DELETE), 30 tx/s', writer: { tps: 30, journal: 'DELETE' }, rollback: true },
  { name: 'rollback (TRUNCATE), no pause', writer: { journal: 'TRUNCATE' }, rollback: true },
  { name: 'rollback (PERSIST), 30 tx/s', writer: { tps: 30, journal: 'PERSIST' }, rollback: true },
];

export const BIG_PATTERNS: Pattern[] = [
  { name: 'WAL 200 MB, default autocheckpoint, no pause', writer: {}, rows: 140_000 },
  { name: 'WAL 200 MB, TRUNCATE checkpoint every 10 commits, 30 tx/s', writer: { tps: 30, checkpoint: 'TRUNCATE', every: 10 }, rows: 140_000 },
  { name: 'WAL 200 MB, connection per transaction, 5 tx/s', writer: { tps: 5, connPerTx: true }, rows: 140_000 },
];

type Kind = '.db' | '.gz' | 'stdout' | 'verify';
const KINDS: Kind[] = ['.db', '.gz', 'stdout', 'verify'];

export interface Row {
  pattern: string;
  runs: number;
  finished: number;
  consistent: number;
  inconsistent: number;
  falseAlarms: number;
  gaveUp: number;
  otherErrors: number;
  /** Of WAL-mode backups (not verifies): finished / runs. */
  attempts: number[];
  notes: string[];
  tps: number;
  mb: number;
}

function startWriter(db: string, w: WriterPattern): { proc: ChildProcess; stop: () => Promise<number> } {
  const proc = spawn('python3', [path.join(ROOT, 'testkit', 'pywriter.py'), db, JSON.stringify(w)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return {
    proc,
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(t);
      if (code !== 0) throw new Error(`native writer failed (exit ${code}): ${err.trim().split('\n').pop()}`);
      return Number(out.trim());
    },
  };
}

/** Runs one pattern for `ms`, backups back to back; returns its row. */
export async function runPattern(p: Pattern, ms: number, log: (s: string) => void = () => {}, verify = true): Promise<Row> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-torture-'));
  const db = path.join(dir, 'live.db');
  const row: Row = { pattern: p.name, runs: 0, finished: 0, consistent: 0, inconsistent: 0, falseAlarms: 0, gaveUp: 0, otherErrors: 0, attempts: [], notes: [], tps: 0, mb: 0 };
  try {
    createLiveDb(db, { mode: p.rollback || (p.writer.journal && p.writer.journal !== 'WAL') ? 'rollback' : 'wal', tps: 0, initialRows: p.rows ?? 1500, padAccounts: 1500 });
    const trace = process.env.BLUFIO_TORTURE_TRACE === '1' ? path.join(dir, 'trace.txt') : undefined;
    const writer = startWriter(db, { ...p.writer, trace });
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    let i = 0;
    try {
      while (Date.now() - started < ms) {
        const kind = KINDS[i % KINDS.length];
        const sleepMs = Math.floor(i / KINDS.length) % 2 === 0 ? undefined : 0;
        i++;
        row.runs++;
        const dest = path.join(dir, `b${i}${kind === '.gz' ? '.db.gz' : '.db'}`);
        (globalThis as { __blufioTrace?: string[] }).__blufioTrace = [];
        try {
          if (kind === 'verify') {
            const r = await inspect(db);
            row.finished++;
            if (r.ok) row.consistent++;
            else {
              row.falseAlarms++;
              row.notes.push(`verify said FAILED: ${r.problems[0]}`);
            }
            continue;
          }
          let r;
          if (kind === 'stdout') {
            const out = fs.createWriteStream(dest);
            r = await backupToStream(db, out, { sleepMs, verify });
            await new Promise((res) => out.end(res));
          } else {
            r = await backup(db, dest, { sleepMs, verify });
          }
          row.finished++;
          row.attempts.push(r.attempts);
          let plain = dest;
          if (kind === '.gz') {
            plain = path.join(dir, `b${i}.plain.db`);
            fs.writeFileSync(plain, (await import('node:zlib')).gunzipSync(fs.readFileSync(dest)));
          }
          const ok = oracleSays(plain);
          if (ok) row.consistent++;
          else {
            row.inconsistent++;
            const keep = path.join(os.tmpdir(), `blufio-torture-inconsistent-${Date.now()}.db`);
            fs.copyFileSync(plain, keep);
            const events = (globalThis as { __blufioTrace?: string[] }).__blufioTrace;
            if (events?.length) fs.writeFileSync(`${keep}.trace`, events.join('\n') + '\n');
            row.notes.push(`INCONSISTENT ${kind} backup (attempts ${r.attempts}) kept at ${keep}${trace ? `: ${diagnose(plain, trace)}` : ''}`);
          }
          if (plain !== dest) fs.rmSync(plain, { force: true });
        } catch (e) {
          const code = e instanceof BlufioError ? e.code : 'E_BUG';
          if (code === 'E_TOO_BUSY') row.gaveUp++;
          else if (['E_INTEGRITY', 'E_CORRUPT', 'E_NOT_SQLITE'].includes(code)) row.falseAlarms++;
          else row.otherErrors++;
          if (code !== 'E_TOO_BUSY' || row.notes.length < 3) row.notes.push(`${code}: ${(e as Error).message}`);
        } finally {
          fs.rmSync(dest, { force: true });
        }
      }
    } finally {
      const sent = await writer.stop();
      row.tps = Math.round(sent / ((Date.now() - started) / 1000));
    }
    row.mb = Math.round((fs.statSync(db).size / 1e6) * 10) / 10;
    if (!invariantHolds(db)) row.notes.push('the source itself broke its invariant');
    log(`${p.name}: ${row.finished}/${row.runs} finished, ${row.inconsistent} inconsistent, ${row.falseAlarms} false alarms, ${row.gaveUp} gave up, ${row.otherErrors} other`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return row;
}

/**
 * Which accounts of a torn backup are not as of its last commit, and as of which commit they are
 * (from the writer's trace): the first clue to which page came from which state.
 */
function diagnose(file: string, trace: string): string {
  try {
    const c = Number(sql(file, 'SELECT i FROM seq'));
    const log = fs.readFileSync(trace, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
    const bal = new Map<number, number>();
    for (let id = 1; id <= 100; id++) bal.set(id, 1000);
    const history = new Map<number, Array<[number, number]>>(); // id -> [(i, balance after i)]
    for (const [i, a, b, x] of log) {
      if (i > c) break;
      bal.set(a, bal.get(a)! - x);
      bal.set(b, bal.get(b)! + x);
      for (const id of [a, b]) (history.get(id) ?? history.set(id, []).get(id)!).push([i, bal.get(id)!]);
    }
    const got = new Map(sql(file, 'SELECT id, balance FROM accounts').split('\n').map((l) => l.split('|').map(Number) as [number, number]));
    const pages = sql(file, "SELECT pageno, path FROM dbstat WHERE name = 'accounts' AND pagetype = 'leaf' ORDER BY path");
    const wrong: string[] = [];
    for (const [id, want] of bal) {
      const have = got.get(id);
      if (have === want) continue;
      const h = history.get(id) ?? [];
      let asOf = -1;
      for (const [i, v] of h) if (v === have) asOf = i;
      wrong.push(`account ${id}: ${have} (as after tx ${asOf}), expected ${want} (last change tx ${h.at(-1)?.[0]})`);
    }
    return `last commit ${c}; ${wrong.join('; ')}; accounts leaves ${pages.split('\n').length}`;
  } catch (e) {
    return `(no diagnosis: ${(e as Error).message})`;
  }
}

/** Native sqlite3's word on a backup: sound and a committed state (the writer's invariant). */
function oracleSays(file: string): boolean {
  try {
    return sql(file, 'PRAGMA integrity_check') === 'ok' && invariantHolds(file);
  } catch {
    return false; // native sqlite3 could not even read it
  }
}

export async function runTorture(patterns: Pattern[], totalMs: number, log?: (s: string) => void, verify = true): Promise<Row[]> {
  const rows: Row[] = [];
  for (const p of patterns) rows.push(await runPattern(p, totalMs / patterns.length, log, verify));
  return rows;
}

export function table(rows: Row[]): string {
  const median = (a: number[]) => (a.length ? [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] : 0);
  const lines = [
    '| writer pattern | db MB | writer tx/s | runs | finished | consistent | inconsistent | false alarms | gave up | other errors | attempts (median / max) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(`| ${r.pattern} | ${r.mb} | ${r.tps} | ${r.runs} | ${r.finished} | ${r.consistent} | ${r.inconsistent} | ${r.falseAlarms} | ${r.gaveUp} | ${r.otherErrors} | ${median(r.attempts)} / ${Math.max(0, ...r.attempts)} |`);
  }
  const sum = (k: keyof Row) => rows.reduce((s, r) => s + (r[k] as number), 0);
  lines.push(`| **all** | | | ${sum('runs')} | ${sum('finished')} | ${sum('consistent')} | ${sum('inconsistent')} | ${sum('falseAlarms')} | ${sum('gaveUp')} | ${sum('otherErrors')} | |`);
  return lines.join('\n');
}

async function main() {
  const args = process.argv.slice(2);
  const arg = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const minutes = Number(arg('--minutes') ?? 2);
  const only = arg('--only');
  let patterns = [...PATTERNS, ...(args.includes('--big') ? BIG_PATTERNS : [])];
  if (only) patterns = patterns.filter((p) => p.name.includes(only));
  const rows = await runTorture(patterns, minutes * 60_000, (s) => console.error(s), !args.includes('--no-verify'));
  const t = table(rows);
  console.log(t);
  for (const r of rows) for (const n of [...new Set(r.notes)].slice(0, 3)) console.log(`- ${r.pattern}: ${n}`);
  if (args.includes('--write-docs')) {
    const doc = path.join(ROOT, 'docs', 'consistency.md');
    const text = fs.readFileSync(doc, 'utf8');
    const block = `<!-- torture-results:start -->\nMade by \`npm run torture -- ${args.join(' ').replace(' --write-docs', '')}\` on ${new Date().toISOString().slice(0, 10)}:\n${os.cpus().length} × ${os.cpus()[0]?.model.trim()}, Node ${process.version}, native SQLite ${sql(':memory:', 'SELECT sqlite_version()')} (sqlite3 oracle), Python ${fs.existsSync('/usr/bin/python3') ? 'sqlite3' : ''} writer.\n\n${t}\n<!-- torture-results:end -->`;
    const next = text.includes('<!-- torture-results:start -->')
      ? text.replace(/<!-- torture-results:start -->[\s\S]*<!-- torture-results:end -->/, block)
      : `${text.trimEnd()}\n\n${block}\n`;
    fs.writeFileSync(doc, next);
  }
  const bad = rows.reduce((s, r) => s + r.inconsistent + r.falseAlarms, 0);
  process.exit(bad > 0 ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main();
