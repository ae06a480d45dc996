#!/usr/bin/env node
// Runs the uvu suites (TypeScript through tsx) and ends with one plain line, "N passed, N failed,
// N skipped", that any CI can read (a skipped test says "SKIPPED: why", test/helpers.ts skip()).
// The exit code is non-zero when any suite failed.
//
// `node scripts/test.mjs [regex]`: the test files matching regex (default: all of them), in two
// phases. First the suites whose outcome does not hang on timing run two at once (the machine has
// two cores and they mostly wait on the processes they start), each in a process of its own,
// taken from a queue; then, alone, the ones that race a live writer, send signals or time a
// browser (TIMED below), one after another as before. Each suite's output is printed whole when
// it ends. BLUFIO_TEST_SHARDS=1 runs everything
// in one process, in order (the old way).
//
// uvu runs with --no-color: with colour on it sets FORCE_COLOR in its process, which every CLI the
// tests start then inherits beside NO_COLOR (Node 24 warns on stderr about the pair).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

/** Suites that race a writer, a signal or a clock: never beside another suite (cli: Deno's SIGXFSZ under ulimit -f was killed once beside a shard). */
const TIMED = new Set(['torture', 'live', 'restore-race', 'replicate', 'interrupt', 'habits', 'browser', 'lease', 'cli']);
/** Seconds per suite under npm test on 2026-12-07 (the queue's order: heaviest first; a suite not named counts 3). */
const WEIGHT = { sets: 81, s3: 77, age: 66, 'set-health': 52, restore: 38, stream: 33, storage: 31, workdir: 19, args: 13, json: 10, worker: 10, verify: 8, gzip: 8, backup: 6, 'age-vectors': 5 };

const pattern = new RegExp(process.argv[2] ?? '\\.test\\.ts$');
const files = fs.readdirSync('test').filter((f) => f.endsWith('.test.ts') && pattern.test(f)).sort();
const name = (f) => f.replace(/\.test\.ts$/, '');
const shards = Number(process.env.BLUFIO_TEST_SHARDS ?? 2);

const results = [];
if (shards <= 1 || files.length <= 1) {
  results.push(await run(files, true));
} else {
  const free = files.filter((f) => !TIMED.has(name(f)));
  const timed = files.filter((f) => TIMED.has(name(f)));
  // A queue, heaviest first: each shard runs one suite at a time and takes the next when it is
  // done, so a wrong weight costs little (fixed halves made from the weights ran 105 s and 244 s
  // on 2026-12-07). A process per suite costs ~1 s.
  const queue = [...free].sort((a, b) => (WEIGHT[name(b)] ?? 3) - (WEIGHT[name(a)] ?? 3));
  const shard = async () => {
    const out = [];
    for (let f = queue.shift(); f; f = queue.shift()) out.push(await run([f], false));
    return out;
  };
  results.push(...(await Promise.all(Array.from({ length: shards }, shard))).flat());
  if (timed.length > 0) results.push(await run(timed, true));
}

let total = 0;
let passed = 0;
const skipped = [];
for (const r of results) {
  total += Number(/Total:\s+(\d+)/.exec(r.out)?.[1] ?? 0);
  passed += Number(/Passed:\s+(\d+)/.exec(r.out)?.[1] ?? 0);
  skipped.push(...[...r.out.matchAll(/SKIPPED: (.*)/g)].map((m) => m[1]));
}
// A shard that died before its summary counts as a failure even with nothing counted.
const failed = results.some((r) => r.code !== 0);
console.log(`\n${passed} passed, ${total - passed + (failed && total === passed ? 1 : 0)} failed, ${skipped.length} skipped${skipped.length ? ` (${skipped.join('; ')})` : ''}`);
process.exit(failed ? 1 : 0);

/** One uvu process over `list`; its output streamed (`live`) or printed whole when it ends. */
function run(list, live) {
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = `^(${list.map(escape).join('|')})$`;
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'node_modules/uvu/bin.js', 'test', re, '--no-color'], {
      stdio: ['inherit', 'pipe', live ? 'inherit' : 'pipe'],
      env: { ...withoutColor(process.env), NO_COLOR: '1' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (live) process.stdout.write(d);
    });
    child.stderr?.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code, signal) => {
      if (!live) {
        process.stdout.write(`\n=== ${list.map(name).join(', ')} (${Math.round((Date.now() - started) / 1000)} s) ===\n${out}`);
        if (err) process.stderr.write(err);
      } else {
        process.stdout.write(`(${list.map(name).join(', ')}: ${Math.round((Date.now() - started) / 1000)} s)\n`);
      }
      resolve({ out, code: code ?? (signal ? 1 : 0) });
    });
  });
}

function withoutColor(env) {
  const { FORCE_COLOR: _, ...rest } = env;
  return rest;
}
