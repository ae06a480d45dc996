/**
 * `node --import tsx scripts/live-bench.ts [--quick]`: backups of a database that a native
 * sqlite3 process keeps writing, by blufio and by native `sqlite3 .backup`, scenario by scenario.
 * Every backup produced is checked with native sqlite3 (integrity_check and the writer's
 * invariant). Writes the results into docs/consistency.md (between the live-results markers).
 */
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { backup, BlufioError } from '../src/index.ts';
import { sql } from '../testkit/native.ts';
import { createLiveDb, invariantHolds, startWriter, type WriterOptions } from '../testkit/writer.ts';

const quick = process.argv.includes('--quick');
const N = quick ? 4 : 20;

interface Scenario {
  name: string;
  writer: WriterOptions;
  sleepMs?: number;
}
const scenarios: Scenario[] = [
  { name: 'WAL, ~400 tx/s, autocheckpoint 1000 (default)', writer: { mode: 'wal', tps: 400, initialRows: 3000 } },
  { name: 'WAL, ~400 tx/s, autocheckpoint 100', writer: { mode: 'wal', tps: 400, autocheckpoint: 100, initialRows: 3000 } },
  { name: 'WAL, no pause (as fast as sqlite3 runs), autocheckpoint 1000', writer: { mode: 'wal', tps: 'max', initialRows: 3000 } },
  { name: 'rollback journal, ~30 tx/s', writer: { mode: 'rollback', tps: 30, initialRows: 3000 } },
  { name: 'rollback journal, no pause', writer: { mode: 'rollback', tps: 'max', initialRows: 3000 } },
];

interface Outcome {
  ok: number;
  inconsistent: number;
  failed: number;
  attempts: number[];
  ms: number[];
  note?: string;
}

const median = (a: number[]) => (a.length ? [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] : NaN);

function check(dest: string): boolean {
  try {
    return sql(dest, 'PRAGMA integrity_check') === 'ok' && invariantHolds(dest);
  } catch {
    return false;
  }
}

async function blufioRuns(db: string, dir: string, s: Scenario): Promise<Outcome> {
  const o: Outcome = { ok: 0, inconsistent: 0, failed: 0, attempts: [], ms: [] };
  for (let i = 0; i < N; i++) {
    const dest = path.join(dir, `b-${i}.db`);
    const t = performance.now();
    try {
      const r = await backup(db, dest, { sleepMs: s.sleepMs, timeoutMs: 30_000 });
      o.ms.push(performance.now() - t);
      o.attempts.push(r.attempts);
      if (check(dest)) o.ok++;
      else o.inconsistent++;
    } catch (e) {
      if (!(e instanceof BlufioError) || e.code !== 'E_TOO_BUSY') throw e;
      o.failed++;
      o.note = e.message;
    }
    fs.rmSync(dest, { force: true });
  }
  return o;
}

async function nativeRuns(db: string, dir: string): Promise<Outcome> {
  const o: Outcome = { ok: 0, inconsistent: 0, failed: 0, attempts: [], ms: [] };
  for (let i = 0; i < Math.min(N, 5); i++) {
    const dest = path.join(dir, `n-${i}.db`);
    const t = performance.now();
    const done = await new Promise<boolean>((resolve) => {
      const p = spawn('sqlite3', [db, `.timeout 10000`, `.backup ${dest}`], { stdio: 'ignore' });
      const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
      p.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code === 0);
      });
    });
    if (!done) {
      o.failed++;
      o.note = 'did not finish within 30 s (killed)';
    } else {
      o.ms.push(performance.now() - t);
      if (check(dest)) o.ok++;
      else o.inconsistent++;
    }
    fs.rmSync(dest, { force: true });
  }
  return o;
}

const rows: string[] = [];
for (const s of scenarios) {
  for (const who of ['blufio', 'native'] as const) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-live-'));
    const db = path.join(dir, 'live.db');
    createLiveDb(db, s.writer);
    const size = fs.statSync(db).size;
    const w = startWriter(db, s.writer);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    const sent0 = w.sent();
    const o = who === 'blufio' ? await blufioRuns(db, dir, s) : await nativeRuns(db, dir);
    const secs = (Date.now() - t0) / 1000;
    const sent = w.sent() - sent0;
    await w.stop();
    const total = o.ok + o.inconsistent + o.failed;
    const row = `| ${s.name} | ${who === 'blufio' ? 'blufio backup' : 'sqlite3 .backup'} | ${(size / 1048576).toFixed(1)} MB | ${Math.round(sent / secs)} | ${o.ok}/${total} | ${o.inconsistent} | ${o.failed} | ${o.attempts.length ? `${median(o.attempts)} / ${Math.max(...o.attempts)}` : '–'} | ${o.ms.length ? Math.round(median(o.ms)) : '–'} | ${o.note ?? ''} |`;
    console.log(row);
    rows.push(row);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const sqliteVersion = execFileSync('sqlite3', ['--version'], { encoding: 'utf8' }).split(' ')[0];
const out = `Made by \`node --import tsx scripts/live-bench.ts${quick ? ' --quick' : ''}\` on ${new Date().toISOString().slice(0, 10)}:
${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version},
native sqlite3 ${sqliteVersion} (writer and oracle), blufio with SQLite ${'3.54.1'} (WASM).

A native \`sqlite3\` process writes transactions that keep an invariant across three tables
(testkit/writer.ts); ${N} backups per scenario for blufio (default settings: 100 pages per step,
10 ms pause, 10 attempts, 30 s limit), ${Math.min(N, 5)} for native \`.backup\` (30 s limit each).
Every finished backup is checked with native sqlite3: \`integrity_check\` and the invariant.
"Inconsistent" counts finished backups that failed either check.

| scenario | tool | db size | writer tx/s | consistent / runs | inconsistent | gave up | attempts (median / max) | time ms (median) | note |
|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
const doc = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'docs', 'consistency.md');
const text = fs.readFileSync(doc, 'utf8');
const start = '<!-- live-results:start -->';
const end = '<!-- live-results:end -->';
fs.writeFileSync(doc, `${text.slice(0, text.indexOf(start) + start.length)}\n${out}${text.slice(text.indexOf(end))}`);
console.log('wrote the results into docs/consistency.md');
