/**
 * A native writer for live tests and measurements: the sqlite3 program reading a stream of
 * transactions on stdin. Every transaction keeps an invariant across tables (money moves between
 * accounts; a ledger and its running totals agree), inserts rows of varied sizes (overflow pages)
 * and every 20th deletes a slice of the ledger (freed pages get reused), so pages move around.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { sql } from './native.ts';

export const INVARIANT = `SELECT (SELECT sum(balance) FROM accounts) = 100000
  AND (SELECT n FROM totals) = (SELECT count(*) FROM ledger)
  AND (SELECT s FROM totals) = (SELECT coalesce(sum(amount), 0) FROM ledger);`;

export interface WriterOptions {
  mode: 'wal' | 'rollback';
  /** Transactions per second, or 'max' for no pause at all. */
  tps: number | 'max';
  /** Rows to start with (database size). */
  initialRows?: number;
  /** WAL mode: pages after which the writer checkpoints (SQLite's default: 1000). */
  autocheckpoint?: number;
  /** Bytes of padding per account row: 1500 puts two accounts on a page, so a transfer touches pages far apart. */
  padAccounts?: number;
}

export function createLiveDb(db: string, opts: WriterOptions): void {
  sql(db, `
    PRAGMA journal_mode=${opts.mode === 'wal' ? 'WAL' : 'DELETE'};
    CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB);
    CREATE TABLE ledger(id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, payload BLOB);
    CREATE TABLE totals(n INTEGER NOT NULL, s INTEGER NOT NULL);
    CREATE INDEX ledger_amount ON ledger(amount);
    INSERT INTO accounts SELECT value, 1000, zeroblob(${opts.padAccounts ?? 0}) FROM generate_series(1, 100);
    INSERT INTO ledger(amount, payload) SELECT value % 97, randomblob(abs(random()) % 3000) FROM generate_series(1, ${opts.initialRows ?? 500});
    INSERT INTO totals SELECT count(*), sum(amount) FROM ledger;
  `);
}

function transaction(i: number): string {
  if (i % 20 === 19) {
    const k = i % 7;
    return `BEGIN; UPDATE totals SET n = n - (SELECT count(*) FROM ledger WHERE id % 7 = ${k}), s = s - (SELECT coalesce(sum(amount), 0) FROM ledger WHERE id % 7 = ${k}); DELETE FROM ledger WHERE id % 7 = ${k}; COMMIT;\n`;
  }
  const a = 1 + (i * 37) % 100;
  const b = 1 + (i * 61 + 13) % 100;
  const x = 1 + (i % 50);
  const size = [10, 200, 1500, 5000, 9000][i % 5];
  return `BEGIN; UPDATE accounts SET balance = balance - ${x} WHERE id = ${a}; UPDATE accounts SET balance = balance + ${x} WHERE id = ${b}; INSERT INTO ledger(amount, payload) VALUES (${x}, randomblob(${size})); UPDATE totals SET n = n + 1, s = s + ${x}; COMMIT;\n`;
}

export interface Writer {
  proc: ChildProcess;
  /** Transactions sent so far. */
  sent(): number;
  /** Stops the writer; resolves to the transactions sent. */
  stop(): Promise<number>;
}

export function startWriter(db: string, opts: WriterOptions): Writer {
  const proc = spawn('sqlite3', ['-batch', db], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  proc.stdin!.on('error', () => {});
  proc.stdin!.write(`PRAGMA busy_timeout=10000; ${opts.mode === 'wal' ? `PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=${opts.autocheckpoint ?? 1000};` : ''}\n`);
  let sent = 0;
  let running = true;
  const loop = (async () => {
    const started = Date.now();
    while (running) {
      if (opts.tps === 'max') {
        let chunk = '';
        for (let k = 0; k < 50; k++) chunk += transaction(sent++);
        if (!proc.stdin!.write(chunk)) await new Promise((r) => proc.stdin!.once('drain', r));
        continue;
      }
      const due = Math.floor(((Date.now() - started) / 1000) * opts.tps);
      let chunk = '';
      while (sent < due) chunk += transaction(sent++);
      if (chunk && !proc.stdin!.write(chunk)) await new Promise((r) => proc.stdin!.once('drain', r));
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    proc,
    sent: () => sent,
    async stop() {
      running = false;
      await loop;
      await new Promise<void>((resolve) => {
        proc.on('exit', () => resolve());
        proc.stdin!.end();
        setTimeout(() => proc.kill('SIGKILL'), 5000);
      });
      if (/error/i.test(stderr)) throw new Error(`native writer failed: ${stderr}`);
      return sent;
    },
  };
}

/** Is the invariant true in `db` (as the native sqlite3 sees it)? */
export function invariantHolds(db: string): boolean {
  return sql(db, INVARIANT) === '1';
}
