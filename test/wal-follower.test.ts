/**
 * The WAL follower, driven with WAL files built byte by byte in memory and changed at exact points
 * between two looks: every kind of discontinuity is reported, and every continuous change is
 * followed without one.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { WalFollower } from '../src/wal-follower.ts';
import { WAL_HEADER_SIZE } from '../src/wal.ts';
import { MemWal, WalBuilder, concat } from './wal-builder.ts';

const test = suite('wal follower');

test('reads committed frames only; appended commits are followed without a discontinuity', () => {
  const wal = new MemWal();
  const g = new WalBuilder(10, 20).tx([2, 3], 5);
  wal.create(g.bytes);
  const f = new WalFollower(wal);
  f.start();
  assert.equal([...f.touched].sort(), [2, 3]);
  assert.is(f.nPages, 5);
  // an uncommitted frame after the commit is not taken in
  const withPending = concat(g.bytes, new WalBuilder(10, 20).tx([9], 0).bytes.subarray(WAL_HEADER_SIZE));
  wal.set(withPending);
  assert.equal(f.look(), { read: true, reason: null });
  assert.not.ok(f.touched.has(9));
  g.tx([4], 6);
  wal.set(g.bytes);
  const fresh = new Set<number>();
  assert.equal(f.look(fresh), { read: true, reason: null });
  assert.equal([...fresh], [4]);
  assert.is(f.nPages, 6);
  assert.is(f.changes, 1);
});

test('an unchanged stamp lets a look be skipped, and says so', () => {
  const wal = new MemWal();
  wal.create(new WalBuilder(1, 2).tx([2], 2).bytes);
  const f = new WalFollower(wal);
  f.start();
  assert.equal(f.look(undefined, { whenChanged: true }), { read: false, reason: null });
  assert.equal(f.look(), { read: true, reason: null });
});

test('a restart is followed when the old generation can be read to its end', () => {
  const wal = new MemWal();
  const old = new WalBuilder(100, 7).tx([2, 3], 4).tx([5], 5).tx([6], 6);
  wal.create(old.bytes);
  const f = new WalFollower(wal);
  f.start();
  // the old generation goes on (frame 5: page 8), then restarts; the new one writes 2 frames
  old.tx([8], 8);
  const next = new WalBuilder(101, 99).tx([2, 9], 9);
  const bytes = old.bytes.slice();
  bytes.set(next.bytes, 0);
  wal.set(bytes);
  const fresh = new Set<number>();
  assert.equal(f.look(fresh), { read: true, reason: null });
  assert.equal([...fresh].sort((a, b) => a - b), [2, 8, 9]);
  assert.is(f.restarts, 1);
  assert.is(f.nPages, 9);
});

test('a restart whose new generation reaches past where the old one stopped is a discontinuity', () => {
  const wal = new MemWal();
  const old = new WalBuilder(100, 7).tx([2], 4);
  wal.create(old.bytes);
  const f = new WalFollower(wal);
  f.start();
  const next = new WalBuilder(101, 99).tx([2, 3, 4], 9);
  wal.set(next.bytes);
  const r = f.look();
  assert.match(r.reason ?? '', /overwritten before they could be read/);
  assert.equal([...f.gen!.frames.keys()].sort(), [2, 3, 4], 'follows the new generation from frame 1');
});

test('a restart with salt-1 more than one higher is a discontinuity', () => {
  const wal = new MemWal();
  const old = new WalBuilder(100, 7).tx([2], 4).tx([3], 4).tx([4], 4);
  wal.create(old.bytes);
  const f = new WalFollower(wal);
  f.start();
  const bytes = old.bytes.slice();
  bytes.set(new WalBuilder(102, 5).tx([6], 6).bytes, 0);
  wal.set(bytes);
  assert.match(f.look().reason ?? '', /restarted more than once/);
});

test('truncation to 0 bytes is a discontinuity; so is a WAL written again after it', () => {
  const wal = new MemWal();
  wal.create(new WalBuilder(5, 6).tx([2, 3], 4).bytes);
  const f = new WalFollower(wal);
  f.start();
  wal.set(new Uint8Array(0));
  assert.match(f.look().reason ?? '', /truncated/);
  assert.is(f.gen, null);
  assert.equal(f.look(), { read: true, reason: null }, 'still empty: nothing happened');
  wal.set(new WalBuilder(6, 1).tx([7], 7).bytes);
  assert.match(f.look().reason ?? '', /WAL was written/);
  assert.ok(f.touched.has(7), 'the new generation is read from frame 1');
});

test('truncated and regrown to exactly the size seen before: a discontinuity, not the end of the old generation', () => {
  const wal = new MemWal();
  const old = new WalBuilder(5, 6).tx([2], 4).tx([3], 4);
  wal.create(old.bytes);
  const f = new WalFollower(wal);
  f.start();
  // unseen: old generation went on, was checkpointed and truncated; the new one has 2 frames too
  const next = new WalBuilder(6, 77).tx([9], 9).tx([10], 10);
  assert.is(next.bytes.length, old.bytes.length);
  wal.set(next.bytes);
  assert.match(f.look().reason ?? '', /truncated and restarted/);
});

test('a WAL deleted by its last connection: what it held is still read, then a discontinuity', () => {
  const wal = new MemWal();
  const g = new WalBuilder(5, 6).tx([2], 4);
  wal.create(g.bytes);
  const f = new WalFollower(wal);
  f.start();
  // appended, then deleted; our handle still sees the old file's bytes
  const file = wal.files!;
  g.tx([3], 4);
  file.bytes = g.bytes;
  file.version++;
  wal.remove();
  const r = f.look();
  assert.match(r.reason ?? '', /removed/);
  assert.ok(f.touched.has(3), 'frames committed before the deletion are read');
  assert.is(f.gen, null);
  assert.equal(f.look(), { read: true, reason: null, blind: true }, 'no WAL before, none now: blind');
  wal.create(new WalBuilder(1, 1).tx([8], 8).bytes);
  assert.match(f.look().reason ?? '', /appeared/);
  assert.ok(f.touched.has(8));
});

test('a WAL replaced by another file is a discontinuity', () => {
  const wal = new MemWal();
  wal.create(new WalBuilder(5, 6).tx([2], 4).bytes);
  const f = new WalFollower(wal);
  f.start();
  wal.create(new WalBuilder(9, 9).tx([4], 4).bytes);
  assert.match(f.look().reason ?? '', /replaced/);
});

test('a header rewritten with garbage is a discontinuity', () => {
  const wal = new MemWal();
  const g = new WalBuilder(5, 6).tx([2], 4);
  wal.create(g.bytes);
  const f = new WalFollower(wal);
  f.start();
  const bytes = g.bytes.slice();
  bytes[16] ^= 0xff; // salt changed without a valid checksum
  wal.set(bytes);
  assert.match(f.look().reason ?? '', /header was rewritten/);
});

test('a restart between reading the header and reading the frames is not taken for "nothing new"', () => {
  const wal = new MemWal();
  const g = new WalBuilder(40, 1).tx([2], 4);
  wal.create(g.bytes);
  const f = new WalFollower(wal);
  f.start();
  // the generation commits again (page 3) and is checkpointed; the next one overwrites frames
  // 1-3, all between our reading the header (still the old one) and reading the frames
  g.tx([3], 4);
  wal.set(g.bytes);
  let headerReads = 0;
  wal.beforeRead = (offset) => {
    if (offset === 0 && ++headerReads === 1) return;
    if (offset > 0 && headerReads === 1) {
      wal.set(new WalBuilder(41, 9).tx([5, 6, 7], 7).bytes);
      wal.beforeRead = undefined;
    }
  };
  const r = f.look();
  assert.match(r.reason ?? '', /overwritten/, 'the commit of page 3 may have been missed: a discontinuity');
  assert.ok(f.touched.has(5) && f.touched.has(7), 'the new generation is followed');
});

test.run();
