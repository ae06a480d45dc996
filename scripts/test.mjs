#!/usr/bin/env node
// Runs the uvu suites (TypeScript through tsx) and ends with one plain line, "N passed, N failed,
// N skipped", that any CI can read (a skipped test says "SKIPPED: why", test/helpers.ts skip()).
// The exit code is uvu's.
// uvu runs with --no-color: with colour on it sets FORCE_COLOR in its process, which every CLI the
// tests start then inherits beside NO_COLOR (Node 24 warns on stderr about the pair).
import { spawn } from 'node:child_process';

const child = spawn(process.execPath, ['--import', 'tsx', 'node_modules/uvu/bin.js', 'test', process.argv[2] ?? '\\.test\\.ts$', '--no-color'], {
  stdio: ['inherit', 'pipe', 'inherit'],
  env: { ...withoutColor(process.env), NO_COLOR: '1' },
});
let out = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
child.on('exit', (code, signal) => {
  const total = Number(/Total:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const passed = Number(/Passed:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const skipped = [...out.matchAll(/SKIPPED: (.*)/g)].map((m) => m[1]);
  console.log(`\n${passed} passed, ${total - passed} failed, ${skipped.length} skipped${skipped.length ? ` (${skipped.join('; ')})` : ''}`);
  process.exit(code ?? (signal ? 1 : 0));
});

function withoutColor(env) {
  const { FORCE_COLOR: _, ...rest } = env;
  return rest;
}
