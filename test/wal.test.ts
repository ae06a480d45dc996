/**
 * The WAL reader (src/wal.ts), fed bytes built in memory: which headers are valid, which frames
 * count as committed, where a scan stops, and how a later scan continues. No files, no SQLite.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, WalIndex, frameOffset, parseWalHeader, type WalReader } from '../src/wal.ts';
import { PS, WalBuilder, concat } from './wal-builder.ts';

const test = suite('wal reader');

const reader = (bytes: Uint8Array): WalReader => ({
  read(dst, offset) {
    const part = bytes.subarray(offset, offset + dst.length);
    dst.set(part);
    return part.length;
  },
});

function indexOf(bytes: Uint8Array): WalIndex {
  const h = parseWalHeader(bytes.subarray(0, WAL_HEADER_SIZE));
  assert.ok(h, 'a valid header');
  return new WalIndex(h!);
}

test('a header is valid only with the magic, version, a page size SQLite can have and its checksum', () => {
  const good = new WalBuilder(7, 8, 3).bytes;
  const h = parseWalHeader(good)!;
  assert.equal([h.pageSize, h.checkpointSeq, h.salt1, h.salt2, h.bigEndCksum], [PS, 3, 7, 8, false]);
  const spoilt = (at: number, value: number) => {
    const b = good.slice();
    new DataView(b.buffer).setUint32(at, value);
    return parseWalHeader(b);
  };
  assert.is(spoilt(0, 0x12345678), null, 'magic');
  assert.is(spoilt(4, 3007001), null, 'version');
  assert.is(spoilt(8, 1000), null, 'page size not a power of two');
  assert.is(spoilt(8, 256), null, 'page size under 512');
  assert.is(spoilt(16, 99), null, 'salt changed: checksum no longer matches');
  assert.is(parseWalHeader(good.subarray(0, 31)), null, 'short');
});

test('only committed transactions count; the newest frame of a page wins; the size is the last commit\'s', () => {
  const g = new WalBuilder(1, 2).tx([2, 3], 4).tx([3, 5], 6);
  const idx = indexOf(g.bytes);
  const touched = new Set<number>();
  assert.is(idx.scan(reader(g.bytes), touched), 2);
  assert.equal([...idx.frames].sort((a, b) => a[0] - b[0]), [[2, 1], [3, 3], [5, 4]]);
  assert.equal([idx.lastCommit, idx.nPages], [4, 6]);
  assert.equal([...touched].sort(), [2, 3, 5]);
  assert.equal(idx.stop, { index: 5, head: null });
});

test('an uncommitted tail is left out, and taken in by the next scan once it commits', () => {
  const g = new WalBuilder(1, 2).tx([2], 3);
  const pending = new WalBuilder(1, 2).tx([2], 3).tx([7, 8], 0);
  const idx = indexOf(g.bytes);
  idx.scan(reader(pending.bytes));
  assert.equal([idx.lastCommit, idx.nPages, [...idx.frames.keys()]], [1, 3, [2]]);
  // the writer commits: frames 2..3 were pending, frame 4 commits them
  const committed = new WalBuilder(1, 2).tx([2], 3).tx([7, 8, 9], 9);
  const touched = new Set<number>();
  assert.is(idx.scan(reader(committed.bytes), touched), 1);
  assert.equal([idx.lastCommit, idx.nPages], [4, 9]);
  assert.equal([...touched].sort(), [7, 8, 9]);
});

test('a scan stops at a frame of another generation (salts), a broken checksum chain or page 0, keeping that frame\'s header', () => {
  const base = new WalBuilder(1, 2).tx([2], 3);
  // frames of the next generation (other salts) written over the old file's tail
  const next = new WalBuilder(5, 6).tx([4], 4).bytes.subarray(WAL_HEADER_SIZE);
  const mixed = concat(base.bytes, next);
  const a = indexOf(mixed);
  assert.is(a.scan(reader(mixed)), 1);
  assert.is(a.stop.index, 2);
  assert.equal(a.stop.head, next.subarray(0, WAL_FRAME_HEADER_SIZE));

  const twoTx = new WalBuilder(1, 2).tx([2], 3).tx([3], 3);
  const flipped = twoTx.bytes.slice();
  flipped[frameOffset(2, PS) + WAL_FRAME_HEADER_SIZE + 10] ^= 1; // a byte of frame 2's page
  const b = indexOf(flipped);
  assert.is(b.scan(reader(flipped)), 1);
  assert.equal([b.lastCommit, b.stop.index], [1, 2]);

  const zero = twoTx.bytes.slice();
  new DataView(zero.buffer).setUint32(frameOffset(2, PS), 0);
  const c = indexOf(zero);
  c.scan(reader(zero));
  assert.is(c.lastCommit, 1);
});

test('a partial frame at the end is the end of the file; a clone is unaffected by later scans', () => {
  const g = new WalBuilder(1, 2).tx([2], 3).tx([4], 4);
  const cut = g.bytes.subarray(0, g.bytes.length - 100);
  const idx = indexOf(cut);
  idx.scan(reader(cut));
  assert.equal([idx.lastCommit, idx.stop], [1, { index: 2, head: null }]);
  const before = idx.clone();
  idx.scan(reader(g.bytes));
  assert.equal([idx.lastCommit, before.lastCommit, before.frames.has(4)], [2, 1, false]);
});

test('many frames (more than one read of the scan) are all taken in', () => {
  const g = new WalBuilder(3, 4);
  for (let t = 0; t < 300; t++) g.tx([1 + (t % 50), 60 + t], 400);
  const idx = indexOf(g.bytes);
  assert.is(idx.scan(reader(g.bytes)), 300);
  assert.is(idx.lastCommit, 600);
  assert.is(idx.frames.get(60 + 299), 600);
});

test.run();
