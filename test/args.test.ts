/**
 * The command line's parser (src/args.ts) through the real CLI bundle: every rough edge an
 * operator hit (issue 16) gets its exact line and exit code. Quick: no SQLite is loaded for any of
 * these (a usage error is found before).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, cleanup, cli, makeSampleDb, sql, tmpdir } from './helpers.ts';

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

test.run();
