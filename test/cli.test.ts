/** The bundled CLI end to end: dist/blufio.mjs spawned as a user would run it. */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI, RUNTIMES, asNobody, cleanup, cli as runCli, fingerprint, holdOpen, makeSampleDb, sql, tmpdir, type Run, skip } from './helpers.ts';

for (const [runtimeName, runtime] of Object.entries(RUNTIMES)) {
const test = suite(`cli (${runtimeName})`);
test.after.each(cleanup);
const cli = (args: string[], opts: Parameters<typeof runCli>[1] = {}): Run => runCli(args, { runtime, ...opts });

function sample() {
  const home = tmpdir();
  const db = path.join(home, 'blufio.db');
  makeSampleDb(db);
  return { home, db, env: { HOME: home, BLUFIO_STORAGE_DATABASE_PATH: db } };
}

const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

test('backup: exact success line on stderr, nothing on stdout, exit 0', () => {
  const { home, db, env } = sample();
  const dest = path.join(home, 'b.db');
  const r = cli(['backup', dest], { env });
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, '');
  assert.is(r.stderr, `Backup complete: ${mb(fs.statSync(dest).size)} written to ${dest}\n`);
  assert.is(fingerprint(dest), fingerprint(db));
});

test('relative paths are resolved against the working directory and printed absolute', () => {
  const { home, env } = sample();
  const r = cli(['backup', 'rel.db'], { env, cwd: home });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, `written to ${path.join(home, 'rel.db')}\n`);
});

test('--json: one JSON object on stdout and nothing else', () => {
  const { home, db, env } = sample();
  const dest = path.join(home, 'b.db');
  const r = cli(['backup', dest, '--json'], { env });
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stderr, '');
  const lines = r.stdout.trim().split('\n');
  assert.is(lines.length, 1);
  const j = JSON.parse(lines[0]);
  assert.is(j.ok, true);
  assert.is(j.command, 'backup');
  assert.is(j.database, db);
  assert.is(j.path, dest);
  assert.is(j.bytes, fs.statSync(dest).size);
  assert.is(j.integrity, 'ok');
  assert.is(j.attempts, 1);
  assert.type(j.pages, 'number');
  assert.type(j.durationMs, 'number');

  const rr = cli(['restore', dest, '--json'], { env });
  assert.is(rr.code, 0, rr.stderr);
  const jr = JSON.parse(rr.stdout);
  assert.is(jr.command, 'restore');
  assert.is(jr.safetyCopy, `${db}.pre-restore`);

  const bad = cli(['restore', path.join(home, 'missing.db'), '--json'], { env });
  assert.is(bad.code, 1);
  const je = JSON.parse(bad.stdout);
  assert.equal(je.ok, false);
  assert.is(je.error.code, 'E_SOURCE_MISSING');
});

test('restore: safety copy line, then the exact success line', () => {
  const { home, db, env } = sample();
  const dest = path.join(home, 'b.db');
  assert.is(cli(['backup', dest, '--quiet'], { env }).code, 0);
  const r = cli(['restore', dest], { env });
  assert.is(r.code, 0, r.stderr);
  const kept = mb(fs.statSync(`${db}.pre-restore`).size);
  assert.is(r.stderr, `Creating safety backup: ${db}.pre-restore\n`
    + `Safety copies (${kept} in all; remove them when you no longer need them): ${db}.pre-restore (${kept})\n`
    + `Restore complete: ${mb(fs.statSync(db).size)} restored from ${dest}\n`);
  assert.is(cli(['restore', dest, '--quiet'], { env }).stderr, '');
});

test('failures: one line "error: ..." with what to do, exit 1, no stack trace', () => {
  const { home, db, env } = sample();
  const cases: Array<[string[], string]> = [
    [['restore', path.join(home, 'missing.db')], `error: backup file not found: ${path.join(home, 'missing.db')} (check the path of the backup file)\n`],
    [['backup', db], `error: the backup path ${db} is the database itself (choose a backup path outside the database's own files)\n`],
    [['restore', home], `error: the backup set ${home} holds no backups (check the path; blufio list shows what is there)\n`],
  ];
  for (const [args, expected] of cases) {
    const r = cli(args, { env });
    assert.is(r.code, 1, args.join(' '));
    assert.is(r.stderr, expected);
    assert.is(r.stdout, '');
  }
  const missingDb = cli(['backup', path.join(home, 'x.db')], { env: { HOME: home, BLUFIO_STORAGE_DATABASE_PATH: path.join(home, 'nope.db') } });
  assert.is(missingDb.code, 1);
  assert.is(missingDb.stderr, `error: database not found: ${path.join(home, 'nope.db')} (set storage.database_path in blufio.toml, or pass --db <path>)\n`);
  const text = path.join(home, 'notes.txt');
  fs.writeFileSync(text, 'just text\n'.repeat(100));
  const notDb = cli(['restore', text], { env });
  assert.is(notDb.code, 1);
  assert.match(notDb.stderr, /^error: .*notes.txt is not an SQLite database \(no SQLite header\) \(give the path of a file made by blufio backup\)\n$/);
  const debug = cli(['restore', text], { env: { ...env, BLUFIO_DEBUG: '1' } });
  assert.match(debug.stderr, /\n\s+at /, 'BLUFIO_DEBUG=1 shows the stack');
});

test('usage errors exit 2', () => {
  const { env } = sample();
  for (const args of [[], ['frobnicate'], ['backup'], ['backup', 'x.db', '--bogus'], ['backup', 'x.db', '--sleep-ms', '-1'], ['backup', 'x.db', '--pages-per-step', 'lots']]) {
    const r = cli(args, { env });
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^error: /);
    assert.ok(r.stderr.trim().split('\n').length === 1, r.stderr);
  }
});

test('an empty or repeated --db / --config is a usage error, never ignored (a restore must not go to the configured database)', () => {
  const { env } = sample();
  const cases: Array<[string[], string]> = [
    [['restore', 'x.db', '--db', ''], 'error: --db needs a path (give --db <path>, or leave it out to use blufio.toml)\n'],
    [['restore', 'x.db', '--db='], 'error: --db needs a path (give --db <path>, or leave it out to use blufio.toml)\n'],
    [['backup', 'x.db', '--config', ''], 'error: --config needs a path (give --config <path>, or leave it out to use blufio.toml)\n'],
    [['backup', 'x.db', '--db', 'a.db', '--db', 'b.db'], 'error: --db was given 2 times (give --db once)\n'],
  ];
  for (const [args, expected] of cases) {
    const r = cli(args, { env });
    assert.is(r.code, 2, args.join(' '));
    assert.is(r.stderr, expected);
  }
});

test('backup - into a reader that stops early, or onto a full device: one line saying so, exit 1', () => {
  const { db } = sample();
  const run = (shell: string) => spawnSync('bash', ['-c', shell], { encoding: 'utf8', env: { ...process.env, DB: db, CLI } });
  const runner = RUNTIMES[runtimeName].map((a) => `'${a}'`).join(' ');
  const early = run(`${runner} "$CLI" backup --db "$DB" - 2>/tmp/blufio-epipe-$$.txt | head -c 1000 >/dev/null; echo "\${PIPESTATUS[0]}"; cat /tmp/blufio-epipe-$$.txt; rm -f /tmp/blufio-epipe-$$.txt`);
  assert.is(early.stdout, '1\nerror: cannot stream the backup: the reader of stdout closed it before everything was written (the receiving command stopped reading; what it got is incomplete, do not use it)\n');
  // Deno's own stdout throws a full device's error where no caller can catch it (known, not ours
  // to mend here): checked under Node and Bun.
  if (runtimeName === 'deno') return;
  const full = run(`${runner} "$CLI" backup --db "$DB" - >/dev/full`);
  assert.is(full.status, 1);
  assert.is(full.stderr, 'error: cannot stream the backup: no space left on the device holding stdout (free some space and try again)\n');
});

test('a file-size limit (ulimit -f) is an error that says so, exit 1, nothing left (Deno was killed by SIGXFSZ, leaving its temporary file)', () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  makeSampleDb(db, { rows: 3000 });
  assert.ok(fs.statSync(db).size > 2 * 1024 * 1024);
  const out = tmpdir();
  const runner = RUNTIMES[runtimeName].map((a) => `'${a}'`).join(' ');
  for (const name of ['b.db', 'b.db.gz']) {
    const r = spawnSync('bash', ['-c', `ulimit -f 2048; ${runner} "$CLI" backup "$OUT" --db "$DB"`], { encoding: 'utf8', env: { ...process.env, DB: db, CLI, OUT: path.join(out, name) } });
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr, /^error: cannot write the copy: .* reached the largest file allowed here \(EFBIG: a file-size limit such as `ulimit -f`, or the file system's own\) \(raise the limit, or write to a file system that takes files this big\)\n$/);
    assert.equal(fs.readdirSync(out), []);
  }
});

test('--help and --version exit 0', () => {
  const h = cli(['--help']);
  assert.is(h.code, 0);
  assert.match(h.stdout, 'backup <path>');
  assert.match(h.stdout, 'restore <path>');
  assert.match(cli(['backup', '--help']).stdout, '--sleep-ms <n>');
  const v = cli(['--version']);
  assert.is(v.code, 0);
  assert.match(v.stdout, JSON.parse(fs.readFileSync(path.join(CLI, '..', '..', 'package.json'), 'utf8')).version);
});

test('configuration: ./blufio.toml, --config, --db, a broken file names its line', () => {
  const home = tmpdir();
  const a = path.join(home, 'a.db');
  const b = path.join(home, 'b.db');
  makeSampleDb(a, { rows: 10 });
  makeSampleDb(b, { rows: 20 });
  fs.writeFileSync(path.join(home, 'blufio.toml'), `[storage]\ndatabase_path = "${a}"\n`);
  let r = cli(['backup', path.join(home, 'out1.db'), '--json'], { env: { HOME: home }, cwd: home });
  assert.is(JSON.parse(r.stdout).database, a);
  fs.writeFileSync(path.join(home, 'other.toml'), `[storage]\ndatabase_path = "${b}"\n`);
  r = cli(['backup', path.join(home, 'out2.db'), '--json', '--config', path.join(home, 'other.toml')], { env: { HOME: home }, cwd: home });
  assert.is(JSON.parse(r.stdout).database, b);
  r = cli(['backup', path.join(home, 'out3.db'), '--json', '--db', b], { env: { HOME: home }, cwd: home });
  assert.is(JSON.parse(r.stdout).database, b);
  fs.mkdirSync(path.join(home, '.config', 'blufio'), { recursive: true });
  fs.writeFileSync(path.join(home, '.config', 'blufio', 'blufio.toml'), `[storage]\ndatabase_path = "${b}"\n`);
  fs.writeFileSync(path.join(home, 'blufio.toml'), `[storage]\n\ndatabase_path = "${a}\n`);
  r = cli(['backup', path.join(home, 'out4.db')], { env: { HOME: home }, cwd: home });
  assert.is(r.code, 2, 'a configuration error: the job never started');
  assert.match(r.stderr, `error: ${path.join(home, 'blufio.toml')}:3: invalid TOML`);
  assert.not.ok(fs.existsSync(path.join(home, 'out4.db')));
});

test('an unreadable database or backup file: permission error', () => {
  const { home, db, env } = sample();
  const bak = path.join(home, 'b.db');
  assert.is(cli(['backup', bak, '--quiet'], { env }).code, 0);
  fs.chmodSync(home, 0o755);
  fs.chmodSync(db, 0o000);
  fs.chmodSync(bak, 0o000);
  // Root reads anything: run as nobody then, from wherever the checkout is.
  const nobody = asNobody(runtime);
  if (process.getuid?.() === 0 && !nobody) return skip('no runtime can run as nobody here');
  const asUser = nobody ?? { runtime };
  const r1 = cli(['backup', path.join(home, 'x.db')], { env, ...asUser });
  assert.is(r1.code, 1);
  assert.match(r1.stderr, `error: cannot read the database ${db}: permission denied`);
  fs.chmodSync(db, 0o666);
  fs.chmodSync(home, 0o555);
  const r3 = cli(['backup', path.join(home, 'x.db')], { env, ...asUser });
  fs.chmodSync(home, 0o755);
  assert.is(r3.code, 1);
  assert.match(r3.stderr, `error: cannot write in ${home}: permission denied (run as a user who may write there, or choose another backup path)`);
  const r2 = cli(['restore', bak, '--force'], { env, ...asUser });
  assert.is(r2.code, 1);
  assert.match(r2.stderr, `error: cannot read the backup file ${bak}: permission denied`);
});

test('backup - streams a complete database on stdout (flushed before exit)', () => {
  const { home, db } = sample();
  const r = spawnSync(runtime[0], [...runtime.slice(1), CLI, 'backup', '-', '--db', db], { maxBuffer: 1 << 28, env: { PATH: process.env.PATH ?? '', HOME: home } });
  assert.is(r.status, 0, String(r.stderr));
  const out = path.join(home, 'streamed.db');
  fs.writeFileSync(out, r.stdout);
  assert.is(fingerprint(out), fingerprint(db));
  assert.match(String(r.stderr), /^Backup complete: \d+\.\d MB written to stdout\n$/);
});

test('restore refuses while a native process has the database open', async () => {
  const { home, db, env } = sample();
  const bak = path.join(home, 'b.db');
  assert.is(cli(['backup', bak, '--quiet'], { env }).code, 0);
  const h = await holdOpen(db, 'SELECT count(*) FROM vault;');
  try {
    const r = cli(['restore', bak], { env });
    assert.is(r.code, 3);
    assert.is(r.stderr.replace(/\(sqlite3 -batch \S*blufio\.db\)/, '(sqlite3 -batch …)'), `error: the database ${db} is in use by process ${h.proc.pid} (sqlite3 -batch …) (stop the blufio server first, or add --force if you are sure)\n`);
  } finally {
    await h.stop();
  }
});

test('Ctrl-C during a backup: exit 130, nothing left behind', async () => {
  const home = tmpdir();
  const db = path.join(home, 'big.db');
  sql(db, 'CREATE TABLE t(b); INSERT INTO t SELECT randomblob(4000) FROM generate_series(1, 3000);');
  const child = spawn(runtime[0], [...runtime.slice(1), CLI, 'backup', path.join(home, 'b.db'), '--db', db, '--pages-per-step', '10', '--sleep-ms', '20', '--progress'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise((r) => child.on('exit', (c) => r(c)));
  // Sent once the process says its copy began (a fixed delay met a process that had not started).
  await Promise.race([exited, new Promise<void>((r) => child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.includes('Backing up:')) r();
  }))]);
  child.kill('SIGINT');
  const code = await exited;
  assert.is(code, 130, stderr);
  assert.match(stderr.slice(stderr.lastIndexOf('error:')), /^error: interrupted/);
  assert.equal(fs.readdirSync(home), ['big.db']);
});

test.run();
}
