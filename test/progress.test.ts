import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatMB, ProgressBar, wantsBar } from '../src/progress.ts';

const test = suite('progress');

test('formatMB: 2^20 bytes, one decimal', () => {
  assert.is(formatMB(0), '0.0 MB');
  assert.is(formatMB(1258291), '1.2 MB');
  assert.is(formatMB(5 * 1048576), '5.0 MB');
});

test('wantsBar: only for a terminal, and not when plain output is asked for', () => {
  assert.is(wantsBar({ isTTY: true }, {}, false), true);
  assert.is(wantsBar({ isTTY: false }, {}, false), false);
  assert.is(wantsBar({}, {}, false), false);
  assert.is(wantsBar({ isTTY: true }, {}, true), false, '--quiet or --json');
  assert.is(wantsBar({ isTTY: true }, { NO_COLOR: '1' }, false), false);
  assert.is(wantsBar({ isTTY: true }, { NO_COLOR: '' }, false), true, 'an empty NO_COLOR does not count');
  assert.is(wantsBar({ isTTY: true }, { TERM: 'dumb' }, false), false);
});

test('the bar: percent, MB of total, rate, time left; the attempt when retrying; erased at the end', () => {
  let out = '';
  const bar = new ProgressBar((s) => (out += s), 'Backing up');
  bar.update({ phase: 'copy', totalPages: 1000, remainingPages: 750, attempt: 1, pageSize: 4096 });
  assert.match(out, /^\rBacking up \[######-{18}\]  25%  1\.0\/3\.9 MB  [\d.]+ MB\/s  \d+:\d\d left\x1b\[K$/);
  out = '';
  bar.update({ phase: 'copy', totalPages: 1000, remainingPages: 700, attempt: 2, pageSize: 4096 });
  assert.match(out, /  \(attempt 2\)\x1b\[K$/, 'a new attempt is drawn at once, and named');
  out = '';
  bar.update({ phase: 'copy', totalPages: 1000, remainingPages: 650, attempt: 2, pageSize: 4096 });
  assert.is(out, '', 'redraws at most every 100 ms');
  bar.update({ phase: 'copy', totalPages: 1000, remainingPages: 0, attempt: 2, pageSize: 4096 });
  assert.match(out, /\[#{24}\] 100%/, 'the last step is always drawn');
  out = '';
  bar.done();
  assert.is(out, '\r\x1b[K');
  out = '';
  bar.done();
  assert.is(out, '', 'erased once');
});

test.run();
