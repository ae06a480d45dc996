/**
 * The small habits of the command line, under Node, Deno and Bun: a listing piped into `head`
 * stops quietly, SIGTERM exits 143, a broken configuration exits 2, one-letter options,
 * `blufio help <command>`, one spelling of `warning:`.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI, RUNTIMES, cleanup, cli, fingerprint, makeSampleDb, sql, tmpdir } from './helpers.ts';

const test = suite('habits');
test.after.each(cleanup);

for (const [runtimeName, runtime] of Object.entries(RUNTIMES)) {
  const run = (args: string[], env: Record<string, string> = {}) => cli(args, { runtime, env });
  // A clean environment, as cli() gives (Node 24 warns about NO_COLOR beside FORCE_COLOR).
  const shell = (line: string) => spawnSync('bash', ['-c', line], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: tmpdir('blufio-home-') } });
  const blufio = [...runtime, CLI].map((a) => `'${a}'`).join(' ');

  test(`${runtimeName}: a listing whose reader went away stops quietly (exit 0); a key or a backup into a closed pipe still fails`, () => {
    const d = tmpdir();
    const db = path.join(d, 'blufio.db');
    makeSampleDb(db, { rows: 50 });
    const set = path.join(d, 'set');
    fs.mkdirSync(set);
    for (let i = 0; i < 3; i++) assert.is(run(['backup', '--db', db, `${set}/`, '--full', '-q']).code, 0);
    // `true` reads nothing and is gone long before the runtime has started.
    let r = shell(`${blufio} list '${set}/' | true; echo "status \${PIPESTATUS[0]}" >&2`);
    assert.is(r.stderr, 'status 0\n');
    r = shell(`${blufio} list '${set}/' | head -1; echo "status \${PIPESTATUS[0]}" >&2`);
    assert.is(r.stdout.split('\n').length, 2, r.stdout);
    assert.is(r.stderr, 'status 0\n');
    r = shell(`${blufio} --help | true; echo "status \${PIPESTATUS[0]}" >&2`);
    assert.is(r.stderr, 'status 0\n');
    r = shell(`${blufio} keygen | true; echo "status \${PIPESTATUS[0]}" >&2`);
    assert.match(r.stderr, /^error: cannot write to stdout: its reader closed it .*\nstatus 1\n$/);
  });

  // Under Deno this failed 3 runs in 8 until the copy loop took timer turns (core/backup-loop.ts):
  // Deno hands a signal to its listener only when it runs timers.
  test(`${runtimeName}: SIGTERM stops a restore like Ctrl-C, with 143 (128 + 15), nothing changed`, async () => {
    const d = tmpdir();
    const db = path.join(d, 'live.db');
    makeSampleDb(db, { rows: 200 });
    const before = fingerprint(db);
    const bak = path.join(d, 'big.db');
    sql(bak, 'CREATE TABLE t(b); INSERT INTO t SELECT randomblob(4000) FROM generate_series(1, 12000);');
    const child = spawn(runtime[0], [...runtime.slice(1), CLI, 'restore', bak, '--db', db, '--progress'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const started = new Promise<void>((resolve) => child.stderr!.on('data', (c) => {
      stderr += c;
      // The process's own line that its job has begun: never a fixed delay.
      if (stderr.includes('Restoring:') || stderr.includes('Creating safety backup')) resolve();
    }));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await Promise.race([started, exited]);
    child.kill('SIGTERM');
    const code = await exited;
    assert.is(code, 143, stderr);
    assert.match(stderr, 'error: interrupted');
    assert.is(fingerprint(db), before, 'the database as it was');
  });

  test(`${runtimeName}: a broken blufio.toml exits 2 (never started), not 1 (failed)`, () => {
    const d = tmpdir();
    const toml = path.join(d, 'blufio.toml');
    fs.writeFileSync(toml, '[storage\n');
    const r = run(['backup', path.join(d, 'b.db'), '-c', toml]);
    assert.is(r.code, 2);
    assert.match(r.stderr, `error: ${toml}:1: invalid TOML`);
    assert.not.ok(fs.existsSync(path.join(d, 'b.db')));
  });
}

test('one-letter options: -q -f -n -c -r -i, combined switches, and errors that name them', () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 50 });
  const key = path.join(d, 'key.txt');
  spawnSync('age-keygen', ['-o', key]);
  const recipient = spawnSync('age-keygen', ['-y', key], { encoding: 'utf8' }).stdout.trim();
  const toml = path.join(d, 'blufio.toml');
  fs.writeFileSync(toml, `[storage]\ndatabase_path = "${db}"\n`);
  const bak = path.join(d, 'b.db.gz.age');
  let r = cli(['backup', bak, '-q', '-c', toml, '-r', recipient]);
  assert.equal([r.code, r.stderr], [0, '']);
  r = cli(['backup', bak, '-qf', '-c', toml, '-r', recipient]);
  assert.equal([r.code, r.stderr], [0, ''], 'combined: quiet and force');
  const target = path.join(d, 'restored.db');
  r = cli(['restore', bak, '--db', target, '-n', '-i', key]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, 'Dry run: nothing was changed.');
  assert.not.ok(fs.existsSync(target));
  r = cli(['restore', bak, '--db', target, '-qi', key]);
  assert.equal([r.code, r.stderr], [0, '']);
  assert.is(fingerprint(target), fingerprint(db));
  r = cli(['backup', bak, '-x']);
  assert.equal([r.code, r.stderr], [2, 'error: unknown option -x (run blufio backup --help)\n']);
  r = cli(['backup', bak, '-cq', toml]);
  assert.equal([r.code, r.stderr], [2, 'error: -c takes a value, so it must come last in -cq (write -c <file> on its own)\n']);
  r = cli(['backup', bak, '-q', '--quiet']);
  assert.equal([r.code, r.stderr], [2, 'error: --quiet was given 2 times (give --quiet once)\n']);
  const help = cli(['backup', '--help']).stdout;
  assert.match(help, '  -q, --quiet');
  assert.match(help, '  -r, --recipient <age1…>');
});

test('blufio help <command> is blufio <command> --help; blufio help lists the commands', () => {
  for (const name of ['backup', 'restore', 'verify', 'list', 'prune', 'check', 'keygen']) {
    const a = cli(['help', name]);
    assert.is(a.code, 0);
    assert.is(a.stdout, cli([name, '--help']).stdout);
  }
  assert.is(cli(['help']).stdout, cli(['--help']).stdout);
  const r = cli(['help', 'restor']);
  assert.equal([r.code, r.stderr], [2, 'error: no command "restor" to help with (did you mean blufio help restore?)\n']);
});

test.run();
