/** `blufio backup -` and the progress bar: what a person at a terminal, or a pipe, receives. */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI, RUNTIMES, runtimesOf, cleanup, cli, fingerprint, makeSampleDb, sql, tmpdir } from './helpers.ts';

const test = suite('stream and progress');
test.after.each(cleanup);

/** Runs the CLI under a pseudo-terminal (util-linux `script`); returns what the screen received. */
function underTty(args: string[], env: Record<string, string> = {}): { code: number | null; screen: string } {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', TERM: 'xterm', ...env } });
  return { code: r.status, screen: r.stdout };
}

function bigDb(): { d: string; db: string } {
  const d = tmpdir();
  const db = path.join(d, 'big.db');
  sql(db, 'CREATE TABLE b(x); INSERT INTO b SELECT randomblob(3000) FROM generate_series(1, 2500);');
  return { d, db };
}

test('backup - writes the verified database to stdout, and nothing else', () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  const r = spawnSync(process.execPath, [CLI, 'backup', '-', '--db', db], { maxBuffer: 1 << 28 });
  assert.is(r.status, 0, String(r.stderr));
  const out = path.join(d, 'from-stdout.db');
  fs.writeFileSync(out, r.stdout);
  assert.is(fingerprint(out), fingerprint(db));
  assert.match(String(r.stderr), /^Backup complete: \d+\.\d MB written to stdout\n$/);
  const viaPipe = execFileSync('sh', ['-c', `"${process.execPath}" "${CLI}" backup - --db "${db}" --quiet | gzip -c | gzip -dc | wc -c`], { encoding: 'utf8' });
  assert.is(Number(viaPipe.trim()), fs.statSync(out).size);
  assert.equal(fs.readdirSync(d).sort(), ['blufio.db', 'from-stdout.db']);
});

/** A sample database with ~9 MiB of blobs besides (several 1 MiB pieces), and an age key. */
function streamSample(): { d: string; db: string; key: string; recipient: string } {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  sql(db, 'CREATE TABLE big(x); INSERT INTO big SELECT randomblob(3000) FROM generate_series(1, 3000);');
  const key = path.join(d, 'key.txt');
  execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
  return { d, db, key, recipient: execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim() };
}

const q = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;

for (const [runtimeName, runtime] of Object.entries(RUNTIMES)) {
  test(`${runtimeName}: backup - into a pipe read late: plain, --gzip, encrypted and both decode to the database`, () => {
    const { d, db, key, recipient } = streamSample();
    const want = sql(db, '.sha3sum');
    const run = [...runtime, CLI, 'backup', '-', '--db', db, '--quiet'].map(q).join(' ');
    const cases: Array<[string, string]> = [
      ['', ''],
      ['--gzip', '| gzip -dc'],
      [`--recipient ${recipient}`, `| age -d -i ${q(key)}`],
      [`--gzip --recipient ${recipient}`, `| age -d -i ${q(key)} | gzip -dc`],
    ];
    for (const [flags, decode] of cases) {
      const out = path.join(d, 'out.db');
      fs.rmSync(out, { force: true });
      // The reader starts late: blufio finds the pipe full and waits (its buffers are reused
      // from piece to piece, so what it wrote must not change while it waits).
      execFileSync('sh', ['-c', `set -e; ${run} ${flags} | (sleep 0.3; cat) ${decode} > ${q(out)}`]);
      assert.is(sql(out, '.sha3sum'), want, `${runtimeName} ${flags}`);
      assert.is(sql(out, 'PRAGMA integrity_check'), 'ok');
    }
  });
}

// Deno writes to a pipe with a blocking write, which holds the process until the reader reads.
for (const runtimeName of runtimesOf(['node', 'bun'])) {
  test(`${runtimeName}: --timeout ends backup - while its reader has stopped reading`, () => {
    const { d, db } = streamSample();
    const run = [...RUNTIMES[runtimeName], CLI, 'backup', '-', '--db', db, '--no-verify', '--timeout', '1'].map(q).join(' ');
    const err = path.join(d, 'err');
    const got = execFileSync('sh', ['-c', `(${run} 2> ${q(err)}; echo $? >> ${q(err)}) | (sleep 4; wc -c)`], { encoding: 'utf8' });
    const stderr = fs.readFileSync(err, 'utf8');
    assert.match(stderr, /the time limit \(--timeout\) ran out while streaming the backup: what the reader received is incomplete/);
    assert.match(stderr, /\n1\n$/);
    // Gone before the reader came back: it found no more than what the pipe held.
    assert.ok(Number(got.trim()) < 1 << 20, `${got.trim()} bytes reached the reader`);
  });
}

test('backup - refuses a terminal; - is only for backup; --json cannot share stdout', () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db);
  const t = underTty(['backup', '-', '--db', db]);
  assert.is(t.code, 2);
  assert.match(t.screen, 'error: refusing to write a database to the terminal');
  const j = cli(['backup', '-', '--json', '--db', db]);
  assert.is(j.code, 2);
  assert.is(JSON.parse(j.stdout).error.code, 'E_USAGE', 'only the JSON error, no database bytes');
  assert.is(cli(['restore', '-', '--db', db]).code, 2);
  for (const cmd of ['verify', 'list']) {
    const r = cli([cmd, '-']);
    assert.is(r.code, 2);
    assert.is(r.stderr, `error: blufio ${cmd} reads a file or a set, not "-" (stdin) (give its path: blufio ${cmd} <path>)\n`);
  }
});

test('on a terminal: a progress bar redrawn in place, then the complete line', () => {
  const { d, db } = bigDb();
  const dest = path.join(d, 'b.db');
  const t = underTty(['backup', dest, '--db', db, '--pages-per-step', '50', '--sleep-ms', '5']);
  assert.is(t.code, 0, t.screen);
  assert.match(t.screen, /\rBacking up \[#*-*\] +\d+%  \d+\.\d\/\d+\.\d MB  \d+\.\d MB\/s  \d+:\d\d left\x1b\[K/);
  assert.match(t.screen, /\[#{24}\] 100%/);
  assert.match(t.screen, /\r\x1b\[KBackup complete: \d+\.\d MB written to /);
  assert.ok((t.screen.match(/\rBacking up/g) ?? []).length >= 2, 'redrawn');
  assert.is(sql(dest, 'SELECT count(*) FROM b'), '2500');
});

test('no bar and no control characters: not a terminal, --quiet, --json, TERM=dumb, BLUFIO_PROGRESS=none; NO_COLOR keeps it (it has no colour)', () => {
  const { d, db } = bigDb();
  const plain = cli(['backup', path.join(d, 'p.db'), '--db', db, '--sleep-ms', '1']);
  assert.is(plain.code, 0);
  assert.not.match(plain.stderr, /[\r\x1b]/);
  assert.match(plain.stderr, /^Backup complete: /);
  for (const [args, env] of [[['--quiet'], {}], [['--json'], {}], [[], { TERM: 'dumb' }], [[], { BLUFIO_PROGRESS: 'none' }]] as const) {
    const out = path.join(d, `t${Math.random()}.db`);
    const t = underTty(['backup', out, '--db', db, '--sleep-ms', '1', ...args], env);
    assert.is(t.code, 0, t.screen);
    assert.not.match(t.screen, /\x1b|Backing up/, `${args.join(' ')} ${JSON.stringify(env)}`);
  }
  const noColor = underTty(['backup', path.join(d, 'nc.db'), '--db', db, '--sleep-ms', '1'], { NO_COLOR: '1' });
  assert.match(noColor.screen, /\rBacking up \[/);
  assert.not.match(noColor.screen, /\x1b\[[0-9;]*m/, 'no colour codes');
  // For logs: --progress without a terminal prints plain lines, one per phase at least.
  const logged = cli(['backup', path.join(d, 'l.db.gz'), '--db', db, '--progress']);
  assert.is(logged.code, 0, logged.stderr);
  assert.not.match(logged.stderr, /[\r\x1b]/);
  assert.match(logged.stderr, /^Backing up: \d+% \([\d.]+\/[\d.]+ MB\)/m);
  assert.match(logged.stderr, /^Verifying integrity…$/m);
  assert.match(logged.stderr, /^Compressing: \d+% /m);
  // Written to stdout as it is: said so, never "Encrypting".
  const streamed = spawnSync(process.execPath, [CLI, 'backup', '-', '--db', db, '--progress'], { maxBuffer: 1 << 28 });
  assert.is(streamed.status, 0, String(streamed.stderr));
  assert.match(String(streamed.stderr), /^Writing to stdout: \d+% /m);
  assert.not.match(String(streamed.stderr), /Encrypting|Compressing/);
});

test('restore shows the bar too, and the safety-copy line on its own line', () => {
  const { d, db } = bigDb();
  const bak = path.join(d, 'b.db');
  assert.is(cli(['backup', bak, '--db', db, '--quiet']).code, 0);
  const t = underTty(['restore', bak, '--db', db, '--sleep-ms', '2']);
  assert.is(t.code, 0, t.screen);
  assert.match(t.screen, /\rRestoring \[/);
  // The bar is erased before the safety-copy lines, which are followed by the result line.
  assert.match(t.screen, /\r\x1b\[KCreating safety backup: [^\r\n]+\.pre-restore\r?\nSafety copies \([^\r\n]+\r?\nRestore complete: /);
});

test.run();
