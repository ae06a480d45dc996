/**
 * --json output, for scripts: every command's real output, on success and on failure, is one line
 * holding one object that docs/json-schema.json accepts, with `ok` and `command` first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Ajv2020 from 'ajv/dist/2020.js';
import { ROOT, cleanup, cli, makeSampleDb, sql, tmpdir } from './helpers.ts';

const test = suite('json');
test.after.each(cleanup);

const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'docs', 'json-schema.json'), 'utf8'));
type Validator = ((data: unknown) => boolean) & { errors?: unknown };
// ajv's default export, as Node's ESM loader hands over a CommonJS module.
const Ajv = Ajv2020 as unknown as new (o: object) => { compile(schema: object): Validator };
const validate = new Ajv({ allErrors: true, validateFormats: false }).compile(schema);

function json(args: string[], cwd: string, expectOk: boolean | 'either' = true): Record<string, unknown> {
  const r = cli([...args, '--json'], { cwd });
  const lines = r.stdout.split('\n');
  assert.is(lines.length, 2, `${args.join(' ')}: one line on stdout: ${r.stdout}`);
  const out = JSON.parse(lines[0]);
  assert.ok(validate(out), `${args.join(' ')}: ${JSON.stringify(validate.errors)}\n${lines[0]}`);
  assert.equal(Object.keys(out).slice(0, 2), ['ok', 'command']);
  if (expectOk !== 'either') assert.is(out.ok, expectOk, `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
  assert.is(r.code, out.ok ? 0 : out.error && ['E_USAGE', 'E_CONFIG'].includes((out.error as { code: string }).code) ? 2 : 1);
  return out;
}

test('every command, success and failure, prints one object the published schema accepts', () => {
  const d = tmpdir();
  const db = path.join(d, 'src.db');
  makeSampleDb(db, { wal: true });
  fs.mkdirSync(path.join(d, 'set'));
  const dbArgs = ['--db', db];
  json(['backup', ...dbArgs, 'b.db'], d);
  json(['backup', ...dbArgs, 'b.db'], d, false); // exists: error
  json(['backup', ...dbArgs, 'n.db.gz', '--no-verify'], d);
  const full = json(['backup', ...dbArgs, 'set/'], d);
  sql(db, 'CREATE TABLE later(x); INSERT INTO later VALUES (1);');
  const diff = json(['backup', ...dbArgs, 'set/'], d);
  assert.equal([full.kind, diff.kind], ['full', 'diff']);
  json(['list', 'set/'], d);
  json(['prune', 'set/', '--keep-last', '1', '--dry-run'], d);
  json(['prune', 'set/', '--keep-last', '5'], d);
  json(['check', 'set/', '--read-data'], d);
  fs.writeFileSync(path.join(d, 'set', 'src-20261201T000000Z.from-20261130T000000Z.diff.gz'), 'x');
  const broken = json(['check', 'set/'], d, false);
  assert.is((broken.problems as unknown[]).length, 1);
  const target = path.join(d, 'restored.db');
  const dry = json(['restore', '--db', target, 'b.db', '--dry-run'], d);
  assert.equal([dry.restored, dry.dryRun], [false, true]);
  const done = json(['restore', '--db', target, 'b.db'], d);
  assert.equal([done.restored, done.dryRun, done.database], [true, false, target]);
  const skipped = json(['restore', '--db', target, 'b.db', '--if-missing'], d);
  assert.equal([skipped.restored, typeof skipped.skipped], [false, 'string']);
  json(['restore', '--db', target, 'missing.db'], d, false);
  const sound = json(['verify', 'b.db'], d);
  assert.equal([sound.integrity, sound.problems, sound.warnings], ['ok', [], []]);
  fs.writeFileSync(path.join(d, 'zero.db'), '');
  const zero = json(['verify', 'zero.db'], d, false);
  assert.is(zero.integrity, 'failed', 'a 0-byte file is not "integrity: ok"');
  assert.ok(Array.isArray(zero.problems) && (zero.problems as string[]).length === 1);
  json(['verify', 'nowhere.db'], d, false);
  json(['keygen', 'k.txt'], d);
  const usage = json(['backup', 'x.db', '--bogus'], d, false);
  assert.equal([usage.command, (usage.error as { code: string }).code], ['backup', 'E_USAGE']);
});

test('a damaged file: ok false, integrity failed, one problem per item (never one string with newlines)', () => {
  const d = tmpdir();
  const db = path.join(d, 'c.db');
  sql(db, 'CREATE TABLE t(x, y); CREATE INDEX ti ON t(x); INSERT INTO t SELECT randomblob(100), randomblob(200) FROM generate_series(1, 3000);');
  const fd = fs.openSync(db, 'r+');
  fs.writeSync(fd, Buffer.alloc(300, 0xff), 0, 300, 4096 * 5 + 200);
  fs.closeSync(fd);
  const r = json(['verify', 'c.db'], d, false);
  assert.is(r.integrity, 'failed');
  const problems = r.problems as string[];
  assert.ok(problems.length > 1 && problems.every((p) => !p.includes('\n')), problems.join(' | '));
});

test.run();
