/**
 * `npm run bench [-- --sizes 100M,2G --runs 5 --huge --smoke]`: times whole processes, blufio
 * against native sqlite3 and cp, interleaved pair by pair, and writes docs/benchmarks.md and
 * docs/benchmarks.svg from its own measurements. A benchmark, not a test: it asserts nothing
 * about time, but every result file is checked for correctness with native sqlite3.
 *
 *   --sizes 100M,2G   databases to generate (cached in $TMPDIR/blufio-bench)
 *   --shaped-sizes 200M,2G  blufio-shaped databases (indexes, FTS5, a blob key; issue 12), default 200M
 *   --runs N          timed runs per command (after one warm-up), default 5
 *   --huge            also back up and restore a database larger than 4 GiB (correctness + time)
 *   --smoke           tiny and quick (CI): 8M, 1 run; does not write docs/
 *   --only <text>     only the groups whose title holds <text>; prints, does not write docs/
 *
 * Replication's goals (lag, RPO, requests a day, a big restore) are measured by
 * scripts/replication-bench.ts: `npm run bench:replication`.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { argv, CLI, flag, ROOT, startS3, value } from './bench-kit.ts';

const args = argv;
const smoke = flag('smoke');
const sizes = (smoke ? '8M' : value('sizes', '100M,2G')).split(',').map(parseSize);
const runs = Number(value('runs', smoke ? '1' : '5'));
const CACHE = path.join(os.tmpdir(), 'blufio-bench');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-bench-run-'));
fs.mkdirSync(CACHE, { recursive: true });

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad size ${s}: use e.g. 100M or 2G`);
  return Math.round(Number(m[1]) * { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G']);
}
const label = (bytes: number) => (bytes >= 2 ** 30 ? `${+(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`);

/** A database of about `bytes`, made once with native sqlite3: rows of varied sizes and an index. */
function database(bytes: number): string {
  const file = path.join(CACHE, `db-${bytes}.db`);
  if (fs.existsSync(file)) return file;
  const rows = Math.ceil(bytes / 2800); // ~2.8 KB a row, overhead and index included
  console.error(`generating ${label(bytes)} (${rows} rows)…`);
  const tmp = `${file}.partial`;
  fs.rmSync(tmp, { force: true });
  execFileSync('sqlite3', [tmp], {
    input: `PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-200000;
      CREATE TABLE memory(id INTEGER PRIMARY KEY, session INTEGER, content BLOB);
      INSERT INTO memory(session, content) SELECT value % 1000, randomblob(200 + (value * 7919) % 3600) FROM generate_series(1, ${rows});
      CREATE INDEX memory_session ON memory(session);`,
  });
  fs.renameSync(tmp, file);
  return file;
}

/**
 * A database shaped like blufio's, of about `bytes` (issue 12): sessions with a composite index,
 * memory rows with text, a 768-byte embedding and an index, an FTS5 index over the text, a vault
 * of blobs (WITHOUT ROWID: an index on a blob key). Made once with native sqlite3, WAL mode.
 */
function shapedDatabase(bytes: number): string {
  const file = path.join(CACHE, `shaped-${bytes}.db`);
  if (fs.existsSync(file)) return file;
  const rows = Math.ceil(bytes / 1240); // ~1.24 KB a memory row with its indexes and FTS entries
  console.error(`generating a blufio-shaped ${label(bytes)} (${rows} memory rows)…`);
  const tmp = `${file}.partial`;
  for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) fs.rmSync(f, { force: true });
  execFileSync('sqlite3', [tmp], {
    input: `PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-200000;
      CREATE TABLE sessions(id INTEGER PRIMARY KEY, user TEXT, started INTEGER, title TEXT);
      CREATE INDEX sessions_user_started ON sessions(user, started);
      CREATE TABLE memory(id INTEGER PRIMARY KEY, session INTEGER, created INTEGER, content TEXT, embedding BLOB);
      CREATE INDEX memory_session_created ON memory(session, created);
      CREATE VIRTUAL TABLE memory_fts USING fts5(content, content='memory', content_rowid='id');
      CREATE TABLE vault(name TEXT PRIMARY KEY, secret BLOB) WITHOUT ROWID;
      INSERT INTO sessions SELECT value, 'user' || (value % 97), 1700000000 + value * 13, 'session ' || value FROM generate_series(1, ${Math.ceil(rows / 9)});
      WITH words(w) AS (VALUES ('agent'),('memory'),('tool'),('call'),('result'),('user'),('asked'),('about'),('the'),('weather'),('database'),('backup'),('restore'),('vault'),('secret'),('session'),('plan'),('task'),('done'),('error'))
      INSERT INTO memory(id, session, created, content, embedding)
        SELECT value, value % ${Math.ceil(rows / 9)}, 1700000000 + value,
          (SELECT group_concat(w, ' ') FROM (SELECT w FROM words ORDER BY random() LIMIT 12)) || ' ' || hex(randomblob(40)), randomblob(768)
        FROM generate_series(1, ${rows});
      INSERT INTO memory_fts(memory_fts) VALUES ('rebuild');
      INSERT INTO vault SELECT 'key-' || value, randomblob(2000 + value % 3000) FROM generate_series(1, 2000);
      PRAGMA wal_checkpoint(TRUNCATE);`,
  });
  fs.renameSync(tmp, file);
  return file;
}

/** What native SQLite 3.40 needs to do the checks blufio's integrity_check (SQLite 3.54) does: FTS5's own check too. */
const NATIVE_CHECKS = "PRAGMA integrity_check; INSERT INTO memory_fts(memory_fts, rank) VALUES('integrity-check', 1);";

interface Sample {
  ms: number;
  rssKiB: number;
}

/** Runs a command; resolves to wall time and the peak RSS the kernel recorded (VmHWM), polled. */
function timed(cmd: string[], opts: { stdout?: string } = {}): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const out = opts.stdout ? fs.openSync(opts.stdout, 'w') : 'ignore';
    const t0 = performance.now();
    const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', out, 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    let hwm = 0;
    const poll = () => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) hwm = Math.max(hwm, Number(m[1]));
      } catch {
        // exited
      }
    };
    const timer = setInterval(poll, 5);
    child.on('exit', (code) => {
      const ms = performance.now() - t0;
      clearInterval(timer);
      if (typeof out === 'number') fs.closeSync(out);
      if (code !== 0) reject(new Error(`${cmd.join(' ')} failed (${code}): ${stderr}`));
      else resolve({ ms, rssKiB: hwm });
    });
    poll();
  });
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface Command {
  name: string;
  /** Prepares (outside the timing) and returns the command lines to run one after the other. */
  make: (src: string, dst: string) => string[][];
  check?: (src: string, dst: string) => void;
}

const node = process.execPath;
const bin = (name: string) => path.join(ROOT, 'node_modules', '.bin', name);
const sameRows = (src: string, dst: string) => {
  const q = 'SELECT count(*), sum(length(content)) FROM memory';
  const a = execFileSync('sqlite3', [src, q], { encoding: 'utf8' });
  const b = execFileSync('sqlite3', [dst, q], { encoding: 'utf8' });
  if (a !== b) throw new Error(`${dst} differs from ${src}: ${a} vs ${b}`);
};

/** An age key for the encrypted groups, made once with blufio keygen. */
const KEY = path.join(CACHE, 'bench-key.txt');
if (!fs.existsSync(KEY)) execFileSync(node, [CLI, 'keygen', KEY, '--quiet']);
const RECIPIENT = /# public key: (age1\w+)/.exec(fs.readFileSync(KEY, 'utf8'))![1];
/** Checks an encrypted backup at `${d}${suffix}`: decrypted with the age CLI (and gunzipped), the same rows. */
const decrypted = (suffix: string) => (s: string, d: string) => {
  const plain = `${d}.plain`;
  execFileSync('age', ['-d', '-i', KEY, '-o', plain, `${d}${suffix}`]);
  if (suffix.includes('.gz')) execFileSync('bash', ['-c', 'gzip -dc "$1" > "$1.db" && mv "$1.db" "$1"', '-', plain]);
  sameRows(s, plain);
};
const gunzipped = (s: string, d: string) => {
  execFileSync('bash', ['-c', 'gzip -dc "$1.gz" > "$1"', '-', d]);
  sameRows(s, d);
};
const blufioBackup = (runtime: string[], d: string, s: string, ...more: string[]) => [[...runtime, CLI, 'backup', d, '--db', s, '--quiet', ...more]];

/**
 * The S3 test server (test/s3-server.mjs, a devDependency) for the off-site group: started once,
 * on 127.0.0.1, in its own process; the AWS_* variables point every blufio run at it.
 */
const s3 = await startS3();
Object.assign(process.env, s3.env);
let uploaded = 0;
/** A .db.gz.age backup to a new key on the S3 test server; checked by blufio verify (decrypt, gunzip, integrity_check). */
const toS3 = (runtime: string[]): Command => {
  let url = '';
  return {
    name: `blufio backup s3://…/x.db.gz.age, under ${runtime === NODE ? 'Node' : runtime[0].includes('bun') ? 'Bun' : 'Deno'}`,
    make: (s) => {
      url = `s3://backups/bench/${process.pid}-${++uploaded}.db.gz.age`;
      return [[...runtime, CLI, 'backup', url, '--db', s, '--quiet', '--recipient', RECIPIENT]];
    },
    check: () => {
      execFileSync(node, [CLI, 'verify', url, '--identity', KEY, '--quiet']);
      // The objects go (files of the server's own layout); the bucket stays.
      fs.rmSync(path.join(s3.dir, 'backups', 'bench'), { recursive: true, force: true });
    },
  };
};
const NODE = [node];
/** Issue 27's goal: every path under 128 MiB peak RSS on every runtime, an encrypted upload included. */
const offsite = {
  title: 'off-site: .db.gz.age to S3 (peak RSS)',
  commands: [
    { name: 'blufio backup x.db.gz.age (file, for comparison)', make: (s: string, d: string) => blufioBackup([node], `${d}.gz.age`, s, '--recipient', RECIPIENT), check: decrypted('.gz.age') },
    toS3(NODE), toS3([bin('bun')]), toS3([bin('deno'), 'run', '-A']),
  ],
};

/** Groups: each timed against the first entry (native), interleaved A B A B. */
const groups: Array<{ title: string; commands: Command[]; backupFirst?: boolean }> = [
  {
    title: 'backup copy (no verification)',
    commands: [
      { name: 'sqlite3 .backup', make: (s, d) => [['sqlite3', s, `.backup ${d}`]], check: sameRows },
      { name: 'blufio backup --sleep-ms 0 --no-verify', make: (s, d) => [[node, CLI, 'backup', d, '--db', s, '--sleep-ms', '0', '--no-verify', '--quiet']], check: sameRows },
      { name: 'cp', make: (s, d) => [['cp', s, d]] },
      // The same bundle under the other runtimes: start-up is most of the difference at 100 MiB.
      { name: 'same, under Bun', make: (s, d) => [[bin('bun'), CLI, 'backup', d, '--db', s, '--sleep-ms', '0', '--no-verify', '--quiet']], check: sameRows },
      { name: 'same, under Deno', make: (s, d) => [[bin('deno'), 'run', '-A', CLI, 'backup', d, '--db', s, '--sleep-ms', '0', '--no-verify', '--quiet']], check: sameRows },
    ],
  },
  {
    title: 'backup, verified',
    commands: [
      { name: 'sqlite3 .backup + integrity_check', make: (s, d) => [['sqlite3', s, `.backup ${d}`], ['sqlite3', d, 'PRAGMA integrity_check']], check: sameRows },
      { name: 'blufio backup (default)', make: (s, d) => [[node, CLI, 'backup', d, '--db', s, '--quiet']], check: sameRows },
    ],
  },
  {
    // What the age layer costs (issue 14's goal: at most 1.3x the same backup unencrypted).
    title: 'encrypted backup (.db.age vs .db)',
    commands: [
      { name: 'blufio backup x.db', make: (s, d) => blufioBackup([node], d, s), check: sameRows },
      { name: 'blufio backup x.db.age', make: (s, d) => blufioBackup([node], `${d}.age`, s, '--recipient', RECIPIENT), check: decrypted('.age') },
      // The goal holds per runtime: each encrypted backup against the same runtime's plain one.
      { name: 'blufio backup x.db, under Bun', make: (s, d) => blufioBackup([bin('bun')], d, s), check: sameRows },
      { name: 'blufio backup x.db.age, under Bun (WebAssembly cipher)', make: (s, d) => blufioBackup([bin('bun')], `${d}.age`, s, '--recipient', RECIPIENT), check: decrypted('.age') },
      { name: 'blufio backup x.db, under Deno', make: (s, d) => blufioBackup([bin('deno'), 'run', '-A'], d, s), check: sameRows },
      { name: 'blufio backup x.db.age, under Deno', make: (s, d) => blufioBackup([bin('deno'), 'run', '-A'], `${d}.age`, s, '--recipient', RECIPIENT), check: decrypted('.age') },
    ],
  },
  {
    title: 'encrypted backup (.db.gz.age vs .db.gz)',
    commands: [
      { name: 'blufio backup x.db.gz', make: (s, d) => blufioBackup([node], `${d}.gz`, s), check: gunzipped },
      { name: 'blufio backup x.db.gz.age', make: (s, d) => blufioBackup([node], `${d}.gz.age`, s, '--recipient', RECIPIENT), check: decrypted('.gz.age') },
    ],
  },
  {
    title: 'restore',
    commands: [
      { name: 'sqlite3 .restore', make: (s, d) => [['sqlite3', d, `.restore ${s}`]], check: (s, d) => sameRows(s, d) },
      { name: 'blufio restore', make: (s, d) => [[node, CLI, 'restore', s, '--db', d, '--quiet']], check: (s, d) => sameRows(s, d) },
    ],
  },
  {
    // What users do: replace a database that is there. Native overwrites it in place; blufio
    // keeps it as <db>.pre-restore.
    title: 'restore over an existing database',
    commands: [
      { name: 'sqlite3 .restore', make: (s, d) => (existing(s, d), [['sqlite3', d, `.restore ${s}`]]), check: (s, d) => sameRows(s, d) },
      { name: 'blufio restore', make: (s, d) => (existing(s, d), [[node, CLI, 'restore', s, '--db', d, '--quiet']]), check: (s, d) => sameRows(s, d) },
    ],
  },
  offsite,
];

/** The same work on blufio-shaped databases (indexes, FTS5, a blob key): issue 12's goals. */
const shapedGroups: typeof groups = [
  {
    title: 'blufio-shaped: backup, verified',
    commands: [
      { name: 'sqlite3 .backup + integrity_check + FTS5 check', make: (s, d) => [['sqlite3', s, `.backup ${d}`], ['sqlite3', d, NATIVE_CHECKS]], check: sameRows },
      { name: 'blufio backup (default)', make: (s, d) => [[node, CLI, 'backup', d, '--db', s, '--quiet']], check: sameRows },
    ],
  },
  {
    title: 'blufio-shaped: verify',
    commands: [
      { name: 'sqlite3 integrity_check + FTS5 check', make: (s) => [['sqlite3', s, NATIVE_CHECKS]] },
      { name: 'blufio verify', make: (s) => [[node, CLI, 'verify', s, '--quiet']] },
    ],
  },
  {
    title: 'blufio-shaped: restore',
    commands: [
      { name: 'sqlite3 .restore + integrity_check + FTS5 check', make: (s, d) => [['sqlite3', d, `.restore ${s}`], ['sqlite3', d, NATIVE_CHECKS]], check: (s, d) => sameRows(s, d) },
      { name: 'blufio restore', make: (s, d) => [[node, CLI, 'restore', s, '--db', d, '--quiet']], check: (s, d) => sameRows(s, d) },
    ],
  },
  {
    // What a blufio user does: replace the server's database, which is in WAL mode. Native
    // `.restore` then writes every page through the WAL and checkpoints it.
    title: 'blufio-shaped: restore over an existing WAL database',
    commands: [
      { name: 'sqlite3 .restore + integrity_check + FTS5 check', make: (s, d) => (existingWal(s, d), [['sqlite3', d, `.restore ${s}`], ['sqlite3', d, NATIVE_CHECKS]]), check: (s, d) => sameRows(s, d) },
      { name: 'blufio restore', make: (s, d) => (existingWal(s, d), [[node, CLI, 'restore', s, '--db', d, '--quiet']]), check: (s, d) => sameRows(s, d) },
    ],
  },
  { ...offsite, title: `blufio-shaped: ${offsite.title}` },
];
const shapedSizes = (smoke ? '8M' : value('shaped-sizes', '200M')).split(',').map(parseSize);

/** A database of the same size at `d`, to be replaced (made outside the timing). */
function existing(s: string, d: string): void {
  fs.copyFileSync(s, d);
  execFileSync('sqlite3', [d, 'UPDATE memory SET session = session + 1 WHERE id % 100 = 0']);
}

/** As existing(), in WAL mode (made outside the timing). */
function existingWal(s: string, d: string): void {
  for (const f of [d, `${d}-wal`, `${d}-shm`]) fs.rmSync(f, { force: true });
  fs.copyFileSync(s, d);
  execFileSync('sqlite3', [d, 'PRAGMA journal_mode=WAL; UPDATE memory SET session = session + 1 WHERE id % 100 = 0'], { stdio: 'ignore' });
}

interface Row {
  size: number;
  group: string;
  name: string;
  ms: number[];
  rss: number[];
  ratio: number[];
}
const results: Row[] = [];

async function runOnce(c: Command, src: string): Promise<Sample> {
  const dst = path.join(WORK, 'out.db');
  for (const f of fs.readdirSync(WORK)) fs.rmSync(path.join(WORK, f), { force: true });
  const lines = c.make(src, dst);
  // Start every run with no dirty pages waiting to be written: otherwise one command pays for the
  // write-back of the one before it (or of its own preparation).
  execFileSync('sync');
  let ms = 0;
  let rss = 0;
  for (const line of lines) {
    const s = await timed(line);
    ms += s.ms;
    rss = Math.max(rss, s.rssKiB);
  }
  c.check?.(src, dst);
  return { ms, rssKiB: rss };
}

/** The order of round `r`: a rotation, then reversed every other round, so each command follows each other. */
function rotation(n: number, r: number): number[] {
  const order = Array.from({ length: n }, (_, i) => (i + Math.floor(r / 2)) % n);
  return r % 2 ? order.reverse() : order;
}

const runs_: Array<[number, string, typeof groups]> = [
  ...sizes.map((size) => [size, 'plain', groups] as [number, string, typeof groups]),
  ...shapedSizes.map((size) => [size, 'shaped', shapedGroups] as [number, string, typeof groups]),
];
for (const [size, shape, list] of runs_) {
  const src = shape === 'shaped' ? shapedDatabase(size) : database(size);
  for (const g of list.filter((x) => x.title.includes(value('only', '')))) {
    // The restore groups restore from a backup file made by blufio.
    let source = src;
    if (g.title.includes('restore')) {
      source = path.join(CACHE, `backup-${shape}-${size}.db`);
      if (!fs.existsSync(source)) execFileSync(node, [CLI, 'backup', source, '--db', src, '--quiet', '--sleep-ms', '0']);
    }
    const rows = g.commands.map((c) => ({ size, group: g.title, name: c.name, ms: [] as number[], rss: [] as number[], ratio: [] as number[] }));
    for (const c of g.commands) await runOnce(c, source); // warm-up
    for (let r = 0; r < runs; r++) {
      // Each round runs the group's commands in a new order: what a command leaves behind (the
      // virtual disk still flushing a 2 GB fsync, say) must not always land on the same next one.
      const samples: Sample[] = new Array(g.commands.length);
      for (const i of rotation(g.commands.length, r)) samples[i] = await runOnce(g.commands[i], source);
      samples.forEach((s, i) => {
        rows[i].ms.push(s.ms);
        rows[i].rss.push(s.rssKiB);
        rows[i].ratio.push(s.ms / samples[0].ms);
      });
      console.error(`${label(size)} ${g.title} run ${r + 1}: ${samples.map((s, i) => `${g.commands[i].name} ${Math.round(s.ms)} ms`).join(', ')}`);
    }
    results.push(...rows);
  }
}

// Start-up: --version must not load the WASM module.
const startup: Record<string, number> = {};
for (const [name, cmd] of Object.entries({ 'blufio --version': [node, CLI, '--version'], 'node -e 0': [node, '-e', '0'], 'sqlite3 --version': ['sqlite3', '--version'] })) {
  const ms: number[] = [];
  for (let i = 0; i < Math.max(5, runs); i++) ms.push((await timed(cmd)).ms);
  startup[name] = median(ms);
}

let huge = '';
if (flag('huge')) {
  const size = parseSize(value('huge-size', '4.5G'));
  const src = database(size);
  const bak = path.join(WORK, 'huge-backup.db');
  const back = path.join(WORK, 'huge-restored.db');
  const b = await timed([node, CLI, 'backup', bak, '--db', src, '--quiet']);
  const r = await timed([node, CLI, 'restore', bak, '--db', back, '--quiet']);
  sameRows(src, back);
  const ok = execFileSync('sqlite3', [back, 'PRAGMA quick_check'], { encoding: 'utf8' }).trim();
  huge = `\n## Larger than 4 GiB\n\nA ${label(fs.statSync(src).size)} database (more than a 32-bit WASM heap could hold): backup (verified) ${(b.ms / 1000).toFixed(1)} s at ${Math.round(b.rssKiB / 1024)} MiB peak RSS; restore ${(r.ms / 1000).toFixed(1)} s at ${Math.round(r.rssKiB / 1024)} MiB; the restored database has the same rows and passes native \`quick_check\`: ${ok}.\n`;
  fs.rmSync(bak, { force: true });
  fs.rmSync(back, { force: true });
}
fs.rmSync(WORK, { recursive: true, force: true });

const fmt = (ms: number) => (ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
const table = results
  .map((r) => `| ${label(r.size)} | ${r.group} | ${r.name} | ${fmt(median(r.ms))} | ${fmt(Math.min(...r.ms))} – ${fmt(Math.max(...r.ms))} | ${median(r.ratio).toFixed(2)}× | ${Math.round(Math.max(...r.rss) / 1024)} MiB |`)
  .join('\n');
console.log(table);
console.log(startup);
// A run of some groups (--only) prints its table; only a whole run rewrites docs/benchmarks.md.
if (smoke || value('only', '')) process.exit(0);

const sqliteVersion = execFileSync('sqlite3', ['--version'], { encoding: 'utf8' }).split(' ')[0];
const md = `Written by \`npm run bench -- ${args.join(' ')}\` on ${new Date().toISOString().slice(0, 10)} from its own measurements.
Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()};
Node ${process.version}; native sqlite3 ${sqliteVersion}; blufio ${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version} on SQLite 3.54.1 (WASM).
Sources are in the page cache (the machine has far more memory than the databases), and every
run starts after \`sync\`, so no command pays for another's write-back; commands that fsync
(native \`.backup\` at its default synchronous=FULL, and blufio before publishing) wait for their
own data to reach the disk.

Each row is a whole process (start-up included), timed ${runs} times after a warm-up, interleaved
with the other commands of its group run by run (in a different order each round). "vs native" is the median of the run-by-run
ratios to the first command of the group. Peak RSS is the kernel's high-water mark (VmHWM).
Every output was checked against the source with native sqlite3.

| size | group | command | median | min – max | vs native | peak RSS |
|---|---|---|---|---|---|---|
${table}

Start-up (median of ${Math.max(5, runs)}): \`blufio --version\` ${fmt(startup['blufio --version'])}, bare \`node -e 0\` ${fmt(startup['node -e 0'])}, \`sqlite3 --version\` ${fmt(startup['sqlite3 --version'])}.
\`--version\` and \`--help\` do not load the WASM module.
${huge}
![chart](benchmarks.svg)
`;
// The measurements go between the markers of docs/benchmarks.md; the text around them is written
// by people, from these numbers.
const doc = path.join(ROOT, 'docs', 'benchmarks.md');
const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';
const text = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : `# Benchmarks\n\n${START}\n${END}\n`;
fs.writeFileSync(doc, `${text.slice(0, text.indexOf(START) + START.length)}\n${md}${text.slice(text.indexOf(END))}`);
fs.writeFileSync(path.join(ROOT, 'docs', 'benchmarks.svg'), chart(results));
console.error('wrote docs/benchmarks.md and docs/benchmarks.svg');

/** A horizontal bar chart of median times, one panel per size and group, ratios to native labelled. */
function chart(rows: Row[]): string {
  const W = 960;
  const barH = 18;
  const left = 330;
  let y = 44;
  const parts: string[] = [];
  for (const size of sizes) {
    parts.push(`<text x="10" y="${y}" font-weight="bold" font-size="15">${label(size)}</text>`);
    y += 12;
    for (const g of groups) {
      const rs = rows.filter((r) => r.size === size && r.group === g.title);
      const max = Math.max(...rows.filter((r) => r.size === size).map((r) => median(r.ms)));
      parts.push(`<text x="10" y="${y + 12}" font-size="12" fill="#555">${g.title}</text>`);
      y += 18;
      for (const r of rs) {
        const m = median(r.ms);
        const w = Math.max(1, ((W - left - 190) * m) / max);
        const native = r.name.startsWith('sqlite3') || r.name === 'cp';
        parts.push(`<text x="${left - 8}" y="${y + 13}" text-anchor="end" font-size="12">${r.name}</text>`);
        parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${native ? '#9aa5b1' : '#2f7de1'}"/>`);
        parts.push(`<text x="${left + w + 6}" y="${y + 13}" font-size="12">${fmt(m)}${native ? '' : ` (${median(r.ratio).toFixed(2)}× native)`}</text>`);
        y += barH + 5;
      }
      y += 6;
    }
    y += 16;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="14">blufio vs native sqlite3 and cp: median wall time of the whole command (blue: blufio, grey: native)</text>
${parts.join('\n')}
</svg>
`;
}
