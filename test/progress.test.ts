import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatMB, ProgressBar, ProgressLines, progressMode } from '../src/progress.ts';

const test = suite('progress');

test('formatMB: 2^20 bytes, one decimal', () => {
  assert.is(formatMB(0), '0.0 MB');
  assert.is(formatMB(1258291), '1.2 MB');
  assert.is(formatMB(5 * 1048576), '5.0 MB');
});

test('progressMode: a bar at a terminal; lines when asked (--progress, BLUFIO_PROGRESS=lines); NO_COLOR only removes colour', () => {
  assert.is(progressMode({ isTTY: true }, {}, false), 'bar');
  assert.is(progressMode({ isTTY: false }, {}, false), null);
  assert.is(progressMode({}, {}, false), null);
  assert.is(progressMode({ isTTY: true }, {}, true), null, '--quiet or --json');
  assert.is(progressMode({ isTTY: true }, { NO_COLOR: '1' }, false), 'bar', 'NO_COLOR asks for no colour, not for no progress');
  assert.is(progressMode({ isTTY: true }, { TERM: 'dumb' }, false), null);
  assert.is(progressMode({ isTTY: false }, {}, false, true), 'lines', '--progress into a log');
  assert.is(progressMode({ isTTY: false }, { BLUFIO_PROGRESS: 'lines' }, false), 'lines');
  assert.is(progressMode({ isTTY: true }, { BLUFIO_PROGRESS: 'lines' }, false), 'lines');
  assert.is(progressMode({ isTTY: true }, { BLUFIO_PROGRESS: 'none' }, false, true), null);
  assert.is(progressMode({ isTTY: false }, { BLUFIO_PROGRESS: 'lines' }, true), null, '--quiet wins');
  assert.is(progressMode({ isTTY: false }, { BLUFIO_PROGRESS: 'LINES' }, false), 'lines', 'any case');
  assert.throws(() => progressMode({ isTTY: true }, { BLUFIO_PROGRESS: 'off' }, false), /BLUFIO_PROGRESS is "off"/);
});

test('the bar fits the terminal: fields are dropped as it narrows, never wrapped; a resize is followed', () => {
  let width = 120;
  let out = '';
  const bar = new ProgressBar((s) => (out = s), 'Backing up', () => width);
  const at = (remaining: number, phase: 'copy' | 'compress' = 'copy') => bar.update({ phase, totalPages: 1000, remainingPages: remaining, attempt: 1, pageSize: 4096 });
  const shown = () => out.replace(/^\r/, '').replace(/\x1b\[K$/, '');
  at(500);
  assert.match(shown(), /MB\/s/);
  for (const w of [100, 72, 60, 50, 40, 30, 20]) {
    width = w;
    at(0); // the last step is always drawn
    assert.ok(shown().length <= w - 1, `${w}: ${JSON.stringify(shown())}`);
    assert.match(shown(), /^Backing up/);
  }
  width = 50;
  at(0);
  assert.match(shown(), /100%/);
  assert.not.match(shown(), /MB\/s/, 'the rate goes first');
  width = 120;
  at(0, 'compress');
  assert.match(shown(), /^Compressing \[/, 'each phase has its own label');
});

test('progress lines for logs: one when each phase begins, then at most one every few seconds', () => {
  const lines: string[] = [];
  const view = new ProgressLines((s) => lines.push(s), 'Backing up', 60_000);
  view.update({ phase: 'copy', totalPages: 1000, remainingPages: 1000, attempt: 1, pageSize: 4096 });
  view.update({ phase: 'copy', totalPages: 1000, remainingPages: 500, attempt: 1, pageSize: 4096 });
  view.update({ phase: 'verify', totalPages: 1000, remainingPages: 1000, attempt: 1, pageSize: 4096 });
  view.update({ phase: 'compress', totalPages: 4096000, remainingPages: 0, attempt: 1, pageSize: 1 });
  assert.equal(lines.map((l) => l.replace(/, [\d.]+ MB\/s.*/, '')), ['Backing up: 0% (0.0/3.9 MB)\n', 'Verifying integrity…\n', 'Compressing: 100% (3.9/3.9 MB)\n']);
  assert.ok(lines.every((l) => !l.includes('\r') && !l.includes('\x1b')), 'plain text');
  // Lines every 0 ms: the copy repeats its line, the check (start and end) says itself once.
  const every: string[] = [];
  const often = new ProgressLines((s) => every.push(s), 'Backing up', 0);
  for (const remaining of [1000, 500]) often.update({ phase: 'copy', totalPages: 1000, remainingPages: remaining, attempt: 1, pageSize: 4096 });
  for (const remaining of [1000, 0]) often.update({ phase: 'verify', totalPages: 1000, remainingPages: remaining, attempt: 1, pageSize: 4096 });
  assert.equal(every.map((l) => l.replace(/:.*/s, '')), ['Backing up', 'Backing up', 'Verifying integrity…\n']);
});

test('the bar: percent, MB of total, rate, time left; the attempt when retrying; erased at the end', () => {
  let out = '';
  // Wide: the first draw's rate can be huge (a microsecond into the phase), and a line that does not
  // fit drops it (the width test below is about that).
  const bar = new ProgressBar((s) => (out += s), 'Backing up', () => 200);
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
