/** Test helpers: temp dirs, the native sqlite3 program as the oracle, and the bundled CLI. */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import { BlufioError } from '../src/errors.ts';
import { backup } from '../src/index.ts';

import { sql } from '../testkit/native.ts';
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = path.join(ROOT, 'dist', 'blufio.mjs');

/**
 * How each runtime runs the bundled CLI (deno and bun come from devDependencies).
 * BLUFIO_TEST_RUNTIMES=node keeps only those named: .ci/run's second pass under another Node
 * line (Deno and Bun do not change with the Node that runs the tests; the first pass ran them).
 */
const ALL_RUNTIMES: Record<string, string[]> = {
  node: [process.execPath],
  deno: [path.join(ROOT, 'node_modules', '.bin', 'deno'), 'run', '-A'],
  bun: [path.join(ROOT, 'node_modules', '.bin', 'bun')],
};
const only = process.env.BLUFIO_TEST_RUNTIMES?.split(',').map((r) => r.trim()).filter(Boolean);
export const RUNTIMES: Record<string, string[]> = only ? Object.fromEntries(Object.entries(ALL_RUNTIMES).filter(([name]) => only.includes(name))) : ALL_RUNTIMES;
/** Of these runtimes, the ones this run tests (RUNTIMES). */
export const runtimesOf = (names: string[]) => names.filter((n) => n in RUNTIMES);

const made: string[] = [];
/** A fresh temporary directory, removed by cleanup(). */
/**
 * Says that a test did not run here, and why, in the one form scripts/test.mjs counts
 * ("N passed, N failed, N skipped"): a test that returns early must never pass for one that ran.
 */
export function skip(why: string): void {
  console.log(`  SKIPPED: ${why}`);
}

export function tmpdir(prefix = 'blufio-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}
export function cleanup(): void {
  for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export { sql };

/** A sample blufio-like database: sessions, memory (FTS-less), a vault of random blobs, and schema objects. */
export function makeSampleDb(db: string, opts: { wal?: boolean; rows?: number } = {}): void {
  const rows = opts.rows ?? 200;
  sql(db, `
    ${opts.wal ? 'PRAGMA journal_mode=WAL;' : ''}
    CREATE TABLE sessions(id INTEGER PRIMARY KEY, name TEXT NOT NULL, created TEXT DEFAULT CURRENT_TIMESTAMP);
    CREATE TABLE memory(id INTEGER PRIMARY KEY, session_id INTEGER REFERENCES sessions(id), content TEXT);
    CREATE TABLE vault(key TEXT PRIMARY KEY, secret BLOB NOT NULL) WITHOUT ROWID;
    CREATE INDEX memory_by_session ON memory(session_id);
    CREATE VIEW session_sizes AS SELECT session_id, count(*) AS n FROM memory GROUP BY session_id;
    CREATE TABLE audit(at INTEGER, what TEXT);
    CREATE TRIGGER vault_audit AFTER INSERT ON vault BEGIN INSERT INTO audit VALUES (1, new.key); END;
    INSERT INTO sessions(name) SELECT 'session-' || value FROM generate_series(1, ${Math.max(1, rows / 10)});
    INSERT INTO memory(session_id, content) SELECT 1 + value % ${Math.max(1, rows / 10)}, hex(randomblob(100 + value % 400)) FROM generate_series(1, ${rows});
    INSERT INTO vault SELECT 'key-' || value, randomblob(32 + value % 200) FROM generate_series(1, ${rows});
  `);
}

/** Everything that identifies a database's content, as native sqlite3 sees it. */
export function fingerprint(db: string): string {
  return sql(db, `
    SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name;
    SELECT id, name, created FROM sessions ORDER BY id;
    SELECT id, session_id, content FROM memory ORDER BY id;
    SELECT key, hex(secret) FROM vault ORDER BY key;
    SELECT * FROM audit ORDER BY rowid;
    SELECT * FROM session_sizes;
  `);
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the bundled CLI with `args`; env is added to a clean environment. */
export function cli(args: string[], opts: { env?: Record<string, string>; cwd?: string; runtime?: string[]; cliPath?: string } = {}): Run {
  const home = opts.env?.HOME ?? tmpdir('blufio-home-');
  const r = spawnSync((opts.runtime ?? [process.execPath])[0], [...(opts.runtime ?? [process.execPath]).slice(1), opts.cliPath ?? CLI, ...args], {
    encoding: 'utf8',
    cwd: opts.cwd ?? home,
    env: { PATH: process.env.PATH ?? '', HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), XDG_DATA_HOME: path.join(home, '.local/share'), ...opts.env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * cli() without blocking this process: for tests whose servers (a monitor, a proxy) run in it
 * and must answer while the CLI runs.
 */
export function cliAsync(args: string[], opts: { env?: Record<string, string>; runtime?: string[] } = {}): Promise<Run> {
  const home = opts.env?.HOME ?? tmpdir('blufio-home-');
  const rt = opts.runtime ?? [process.execPath];
  const child = spawn(rt[0], [...rt.slice(1), CLI, ...args], {
    cwd: home,
    env: { PATH: process.env.PATH ?? '', HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), XDG_DATA_HOME: path.join(home, '.local/share'), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => (stdout += c));
  child.stderr!.on('data', (c) => (stderr += c));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/**
 * How to run the CLI as user nobody (root reads anything: dropping to nobody makes permission
 * bits count), from wherever the checkout is: the bundle is copied to a directory nobody can
 * read, and a runtime that nobody cannot reach (under /root, say) is replaced by this Node.
 * null when not root, or when not even Node can be run as nobody (then there is nothing to test).
 */
export function asNobody(runtime: string[]): { runtime: string[]; cliPath: string } | null {
  if (process.getuid?.() !== 0) return null;
  const drop = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
  const canRun = (bin: string) => spawnSync(drop[0], [...drop.slice(1), 'test', '-x', fs.realpathSync(bin)]).status === 0;
  const dir = tmpdir('blufio-as-nobody-');
  fs.chmodSync(dir, 0o755);
  const cliPath = path.join(dir, 'blufio.mjs');
  fs.copyFileSync(CLI, cliPath);
  fs.chmodSync(cliPath, 0o644);
  const use = canRun(runtime[0]) ? runtime : canRun(process.execPath) ? [process.execPath] : null;
  return use && { runtime: [...drop, ...use], cliPath };
}

/** Bytes and modification times of a database's files, to prove they were not touched. */
export function fileState(db: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of [db, `${db}-wal`, `${db}-shm`, `${db}-journal`]) {
    if (!fs.existsSync(f)) continue;
    const st = fs.statSync(f);
    out[f] = `${st.size}:${st.mtimeMs}:${Buffer.from(fs.readFileSync(f)).toString('base64').length}:${hash(fs.readFileSync(f))}`;
  }
  return out;
}

function hash(b: Buffer): string {
  return execFileSync('sha256sum', { input: b, encoding: 'utf8' }).split(' ')[0];
}

/**
 * A native sqlite3 process holding `db` open, with `setup` run first. It keeps the connection
 * (and with WAL autocheckpoint off, its un-checkpointed frames) until stop() is called.
 */
export async function holdOpen(db: string, setup: string): Promise<{ proc: ChildProcess; stop: () => Promise<void> }> {
  const proc = spawn('sqlite3', ['-batch', db], { stdio: ['pipe', 'pipe', 'inherit'] });
  proc.stdin!.write(`${setup}\n.print ready\n`);
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d) => {
      buf += d;
      if (buf.includes('ready')) resolve();
    });
    proc.on('exit', (c) => reject(new Error(`sqlite3 exited early (${c})`)));
  });
  return {
    proc,
    stop: () =>
      new Promise<void>((resolve) => {
        proc.removeAllListeners('exit');
        proc.on('exit', () => resolve());
        proc.kill('SIGKILL');
      }),
  };
}

export function header(db: string, start: number, len: number): number[] {
  const fd = fs.openSync(db, 'r');
  const b = Buffer.alloc(len);
  fs.readSync(fd, b, 0, len, start);
  fs.closeSync(fd);
  return [...b];
}

/** Awaits `p`, which must reject with a BlufioError of this code (and message); returns it. */
export async function rejects(p: Promise<unknown>, code: string, match?: RegExp | string): Promise<BlufioError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, BlufioError, String(e));
    assert.is((e as BlufioError).code, code, (e as Error).message);
    if (match) assert.match((e as Error).message, match);
    return e as BlufioError;
  }
  return assert.unreachable('should have failed') as never;
}

/** A sample blufio database in a new directory, and a backup of it at `name` (.gz compresses). */
export async function sampleWithBackup(rows: number, name = 'backup.db') {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows });
  const bak = path.join(d, name);
  const r = await backup(db, bak, { sleepMs: 0 });
  return { d, db, bak, r };
}

/** A real S3-compatible server (test/s3-server.mjs) in its own process. */
export interface S3Server {
  port: number;
  dir: string;
  proc: ChildProcess;
  stop: () => Promise<void>;
}

/** Starts the S3 server in its own process (on `port`, or a free one) over `dir`. */
export async function startS3Server(dir = tmpdir('blufio-s3-'), port = 0): Promise<S3Server> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'test', 's3-server.mjs'), dir, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got = await new Promise<number>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d) => {
      buf += d;
      const m = /\{"port":(\d+)\}/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (c) => reject(new Error(`the S3 server exited (${c})`)));
  });
  return { port: got, dir, proc, stop: () => killed(proc) };
}

/** Kills a server process (SIGKILL) and resolves once it is gone. */
function killed(proc: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    proc.removeAllListeners('exit');
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.on('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}

/** The environment that points the CLI at `server` (credentials S3RVER / S3RVER). */
export const s3Env = (server: S3Server) => ({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${server.port}`, AWS_REGION: 'us-east-1' });

/**
 * moto's S3 server (Python, `pip install "moto[server]"`): a second, independent S3
 * implementation, so that behaviour does not rest on one server's quirks. Any credentials are
 * accepted (s3Env's work); the bucket "backups" is made here. null when moto is not installed.
 */
export async function startMotoServer(): Promise<S3Server | null> {
  if (spawnSync('python3', ['-c', 'import moto.server, flask'], { stdio: 'ignore' }).status !== 0) return null;
  const proc = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    proc.stderr!.on('data', (d) => {
      buf += d;
      const m = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (c) => reject(new Error(`moto's server exited (${c}): ${buf}`)));
  });
  proc.stderr!.resume();
  const { AwsClient } = await import('aws4fetch');
  const client = new AwsClient({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', service: 's3', region: 'us-east-1' });
  const made = await client.fetch(`http://127.0.0.1:${port}/backups`, { method: 'PUT' });
  assert.ok(made.ok, `moto made the bucket: ${made.status}`);
  return { port, dir: '', proc, stop: () => killed(proc) };
}

/** `faketime` (Debian's package) runs a command with its clock moved; null when it is not installed. */
export function faketime(): string | null {
  return spawnSync('faketime', ['-f', '+0', 'true'], { stdio: 'ignore' }).status === 0 ? 'faketime' : null;
}
