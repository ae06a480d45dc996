/**
 * The command line's parser (src/args.ts) through the real CLI bundle: every rough edge an
 * operator hit (issue 16) gets its exact line and exit code. Quick: no SQLite is loaded for any of
 * these (a usage error is found before).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { CLI, ROOT, cleanup, cli, holdOpen, makeSampleDb, sql, tmpdir } from './helpers.ts';

const test = suite('command line');
test.after.each(cleanup);

test('bad values name the option as typed and say what is allowed; a value may start with "-"', () => {
  const cases: Array<[string[], string]> = [
    [['backup', 'x.db', '--retries', '-1'], 'error: --retries must be a whole number of at least 1, not "-1"'],
    [['backup', 'x.db', '--sleep-ms', '-5'], 'error: --sleep-ms must be a whole number of at least 0, not "-5"'],
    [['backup', 'x.db', '--pages-per-step', '-1'], 'error: --pages-per-step must be a whole number of at least 1, not "-1"'],
    [['backup', 'x.db', '--sleep-ms', 'abc'], 'error: --sleep-ms must be a whole number of at least 0, not "abc"'],
    [['backup', 'x.db', '--timeout', '0'], 'error: --timeout must be a whole number of at least 1, not "0"'],
    [['backup', 'x.db', '--timeout=-3'], 'error: --timeout must be a whole number of at least 1, not "-3"'],
    [['backup', 'x.db', '--retries'], 'error: --retries needs a value (give --retries <n>)'],
    [['backup', 'x.db', '--retries', '--quiet'], 'error: --retries needs a value (give --retries <n>)'],
    [['backup', 'x.db', '--force=yes'], 'error: --force takes no value (write --force alone)'],
  ];
  for (const [args, start] of cases) {
    const r = cli(args);
    assert.is(r.code, 2, args.join(' '));
    assert.ok(r.stderr.startsWith(start), `${args.join(' ')}: ${r.stderr}`);
    assert.is(r.stderr.split('\n').length, 2, 'one line');
  }
});

test('unknown options are named as typed, with the nearest real one; options of another command say so', () => {
  const cases: Array<[string[], string]> = [
    [['restore', 'x.db', '--dryrun'], 'error: unknown option --dryrun (did you mean --dry-run? run blufio restore --help for the others)\n'],
    [['backup', 'x.db', '--gzipp'], 'error: unknown option --gzipp (did you mean --gzip? run blufio backup --help for the others)\n'],
    [['backup', 'x.db', '--dry-run'], 'error: blufio backup has no option --dry-run (it is an option of blufio restore and prune; run blufio backup --help to see this command\'s)\n'],
    [['restore', 'x.db', '--no-verify'], 'error: blufio restore has no option --no-verify (it is an option of blufio backup; run blufio restore --help to see this command\'s)\n'],
    [['backup', 'x.db', '-x'], 'error: unknown option -x (run blufio backup --help)\n'],
    [['bakup', 'x.db'], 'error: unknown command "bakup" (did you mean blufio backup? blufio --help lists the commands)\n'],
    [['backup', 'a.db', 'b.db'], 'error: unexpected argument "b.db": blufio backup takes one path (quote a name with spaces; put -- before a name that starts with "-")\n'],
    [['backup', 'x.db', '--retries', '2', '--retries', '3'], 'error: --retries was given 2 times (give --retries once)\n'],
    [['backup'], 'error: blufio backup needs a path (run blufio backup --help)\n'],
  ];
  for (const [args, expected] of cases) {
    const r = cli(args);
    assert.is(r.code, 2, args.join(' '));
    assert.is(r.stderr, expected);
  }
});

test('-- ends the options: a file name starting with "-" is backed up to; --version and --help work after a command', () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  makeSampleDb(db);
  const r = cli(['backup', '--db', db, '--quiet', '--', '-x.db'], { cwd: d });
  assert.is(r.code, 0, r.stderr);
  assert.is(sql(path.join(d, '-x.db'), 'PRAGMA integrity_check'), 'ok');
  const v = cli(['backup', '--version']);
  assert.equal([v.code, v.stdout.trim()], [0, `blufio ${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}`]);
  const h = cli(['restore', 'x.db', '--help']);
  assert.is(h.code, 0);
  assert.match(h.stdout, /^Usage: blufio restore <path> \[options\]/);
  // restore shows only what means something for it; --no-verify reads as what it does
  assert.not.match(h.stdout, /--retries|--pages-per-step|--no-verify/);
  assert.match(cli(['backup', '--help']).stdout, /--no-verify\s+Skip the integrity check/);
  assert.not.match(cli(['backup', '--help']).stdout, /default: true/);
});

test('Deno without the permissions it needs: one line saying which to grant, no stack, nothing written', () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  makeSampleDb(db);
  for (const [flags, what] of [[[], /env access/], [['--allow-env', '--allow-sys', '--allow-read'], /write access/]] as const) {
    const r = cli(['backup', '--db', db, path.join(d, 'b.db')], { runtime: [path.join(ROOT, 'node_modules', '.bin', 'deno'), 'run', ...flags] });
    assert.is(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error: Deno did not grant a permission blufio needs: requires .* \(run it with deno run -A, or grant --allow-read --allow-write --allow-env --allow-sys --allow-net --allow-run\)\n$/);
    assert.match(r.stderr, what);
    assert.equal(fs.readdirSync(d), ['src.db']);
  }
});

test('operator mistakes found by an attack run: a live database as the destination, a bad --ping, stdout that goes nowhere, help with a typo', async () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  makeSampleDb(db);
  // The destination is another process's live WAL database: never replaced, --force or not.
  const other = path.join(d, 'other.db');
  const holder = await holdOpen(other, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE precious(x); INSERT INTO precious VALUES ('irreplaceable');");
  try {
    const r = cli(['backup', other, '--db', db, '--force']);
    assert.is(r.code, 3, r.stderr);
    assert.match(r.stderr, /^error: .*other\.db is a live database \(in use by process \d+/);
    assert.is(r.stderr.split('\n').length, 2);
  } finally {
    await holder.stop();
  }
  // Killed holder: its commits are still in other.db-wal, which a replacement would have deleted.
  assert.ok(fs.statSync(`${other}-wal`).size > 0);
  assert.match(cli(['backup', other, '--db', db, '--force']).stderr, /holding data in .*other\.db-wal that is not in the file yet/);
  assert.is(sql(other, 'SELECT x FROM precious'), 'irreplaceable');

  const ping = cli(['backup', path.join(d, 'p.db'), '--db', db, '--ping', 'http://exa mple.com']);
  assert.equal([ping.code, ping.stderr], [2, 'error: --ping needs an http(s) URL, not "http://exa mple.com" (e.g. --ping https://hc-ping.com/<uuid>)\n']);
  assert.not.ok(fs.existsSync(path.join(d, 'p.db')));

  const full = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" keygen > /dev/full`], { encoding: 'utf8' });
  assert.equal([full.status, full.stderr], [1, 'error: cannot write to stdout: no space left on the device (check where stdout goes (a full disk, a closed pipe))\n'], 'no public key announced for a key never saved');
  const nowhere = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" keygen >&-`], { encoding: 'utf8' });
  assert.is(nowhere.status, 2);
  assert.match(nowhere.stderr, /^error: stdout goes nowhere/);
  const jsonFull = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" verify "${db}" --json > /dev/full`], { encoding: 'utf8' });
  assert.is(jsonFull.status, 1);
  assert.match(jsonFull.stderr, /^error: cannot write to stdout/);
  assert.not.match(jsonFull.stderr, /\n\s+at /, 'no stack');

  const help = cli(['backup', '--frce', '--help']);
  assert.equal([help.code, help.stdout.split('\n')[0]], [0, 'Usage: blufio backup <path> [options]']);
  const early = cli(['--json', 'backup', 'x.db']);
  assert.is(early.code, 2);
  assert.is(JSON.parse(early.stdout).error.message, '--json before a command');
});

test('config mistakes: a path-like unknown [storage] key is an error, not another database backed up; warnings survive --quiet and go in --json', () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  makeSampleDb(db);
  const bad = path.join(d, 'bad.toml');
  fs.writeFileSync(bad, '[storage]\ndatabase = "data.db"\n');
  const r = cli(['backup', path.join(d, 'b.db'), '--config', bad, '--quiet']);
  assert.equal([r.code, r.stderr], [2, `error: ${bad}:2: unknown key storage.database (did you mean storage.database_path?)\n`]);
  const sub = path.join(d, 'sub.toml');
  fs.writeFileSync(sub, '[backup.retension]\nkeep_last = 1\n');
  assert.match(cli(['backup', path.join(d, 'b.db'), '--config', sub]).stderr, new RegExp(`^error: ${sub}:1: unknown key backup.retension`));
  const odd = path.join(d, 'odd.toml');
  fs.writeFileSync(odd, `[storage]\ndatabase_path = "${db}"\npool_size = 4\n`);
  const quiet = cli(['backup', path.join(d, 'q.db'), '--config', odd, '--quiet']);
  assert.equal([quiet.code, quiet.stderr], [0, `warning: ${odd}:3: unknown key storage.pool_size is ignored (blufio backup reads storage.database_path, storage.wal_mode)\n`]);
  const json = cli(['backup', path.join(d, 'j.db'), '--config', odd, '--json']);
  assert.equal([json.stderr, JSON.parse(json.stdout).configWarnings.length], ['', 1]);
  // A backup with --ping reads the configuration twice: each warning is still said once.
  const ping = ['--ping', 'http://127.0.0.1:9/x'];
  const pinged = cli(['backup', path.join(d, 'p.db'), '--config', odd, '--json', ...ping]);
  assert.equal(JSON.parse(pinged.stdout).configWarnings.length, 1);
  assert.is(cli(['backup', path.join(d, 'p2.db'), '--config', odd, '--quiet', ...ping]).stderr.split('unknown key storage.pool_size').length - 1, 1);
  const dir = path.join(d, 'adir');
  fs.mkdirSync(dir);
  const seeded = cli(['restore', path.join(d, 'q.db'), '--db', dir, '--if-missing']);
  assert.equal([seeded.code, seeded.stderr.startsWith(`error: ${dir} is a directory, not a database`)], [1, true]);
});

test.run();
