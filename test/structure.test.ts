/**
 * The structure docs/design.md promises, kept true: no import cycles among src/ modules (type-only
 * imports aside), and core/ (what Node and browsers share) imports nothing from node: and nothing
 * from src/ outside core/. Reads the sources; well under a second.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from './helpers.ts';

const test = suite('structure');
const SRC = path.join(ROOT, 'src');

function sources(dir = SRC): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The modules a file imports at run time (static and dynamic; `import type` left out). */
function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/^(?:import|export)(?!\s+type\b)[^;]*?\sfrom\s+'([^']+)'/gms)].map((m) => m[1]);
  specs.push(...[...text.matchAll(/^import\s+'([^']+)'/gm)].map((m) => m[1]));
  specs.push(...[...text.matchAll(/import\('([^']+)'\)/g)].map((m) => m[1]));
  return specs;
}

test('no import cycles in src/', () => {
  const files = sources();
  const graph = new Map(files.map((f) => [f, imports(f).filter((s) => s.startsWith('.')).map((s) => path.resolve(path.dirname(f), s))]));
  const state = new Map<string, 1 | 2>();
  const cycles: string[] = [];
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 1);
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 1) cycles.push([...stack.slice(stack.indexOf(d)), d].map((p) => path.relative(SRC, p)).join(' -> '));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of files) if (!state.has(f)) visit(f);
  assert.equal(cycles, []);
  assert.ok(files.length > 30, 'the sources were found');
});

test('core/ imports nothing from node: and nothing outside core/', () => {
  const core = sources(path.join(SRC, 'core'));
  assert.ok(core.length >= 5);
  const bad = core.flatMap((f) => imports(f).filter((s) => s.startsWith('node:') || (s.startsWith('.') && !path.resolve(path.dirname(f), s).startsWith(path.join(SRC, 'core') + path.sep))).map((s) => `${path.relative(SRC, f)}: ${s}`));
  assert.equal(bad, []);
});

test.run();
