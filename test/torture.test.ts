/**
 * A short torture run inside `npm test` (the long one is `npm run torture`): native writers that
 * truncate their WAL after every commit, checkpoint after every commit, or open a connection per
 * transaction, and backups made without blufio's own integrity check, so that any flaw of the
 * proof would show as an inconsistent backup. Native sqlite3 checks every one.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runPattern, PATTERNS } from '../scripts/torture.ts';

const test = suite('torture (short)');

for (const name of [
  'WAL, TRUNCATE checkpoint after every commit, 30 tx/s',
  'WAL, TRUNCATE checkpoint after every commit, no pause',
  'WAL, connection per transaction, 5 tx/s',
]) {
  test(name, async () => {
    const pattern = PATTERNS.find((p) => p.name === name)!;
    const row = await runPattern(pattern, 4000, undefined, true);
    assert.ok(row.runs >= 4, `ran ${row.runs} backups and verifies`);
    assert.is(row.inconsistent, 0, `no inconsistent backup (${row.notes.join('; ')})`);
    assert.is(row.falseAlarms, 0, `no false alarm (${row.notes.join('; ')})`);
    assert.is(row.otherErrors, 0, row.notes.join('; '));
    // Giving up (E_TOO_BUSY) is a right answer under a writer that never pauses, and how often
    // depends on the machine's load: the finish rate is measured by `npm run torture`, not here
    // (at 90 % of 6–7 runs, one give-up failed this, 2 runs in 5 on 2026-12-07). Most finish.
    assert.ok(row.finished >= row.runs * 0.6, `most finish (${row.finished}/${row.runs}: ${row.notes.join('; ')})`);
  });
}

test.run();
