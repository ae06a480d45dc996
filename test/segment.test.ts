/**
 * Log segments from bytes: the format, the chain check (a missing, reordered, foreign or altered
 * segment is found from the segments alone), names and ranges, and the live replica's gap
 * detection driven by WALs built in memory (test/wal-builder.ts) over a database file of bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlufioError } from '../src/errors.ts';
import { LiveReplica, type Watch } from '../src/replicate/live-replica.ts';
import { ReplicaHashes } from '../src/replicate/replica-hashes.ts';
import { applySegment, checksumOf, decodeSegment, encodeSegment, hex, pageHash, segmentHead, StepWriter, xorInto, type Step } from '../src/replicate/segment.ts';
import { chainOf, logNameFor, logsOf, parseLogName, rangesOf } from '../src/sets/logs.ts';
import { SourceFile } from '../src/snapshot/source-file.ts';
import { layersFor } from '../src/transforms/index.ts';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from '../src/wal.ts';
import { WalFollower } from '../src/wal-follower.ts';
import { cleanup, tmpdir } from './helpers.ts';
import { MemWal, PS, WalBuilder } from './wal-builder.ts';

const test = suite('segment');
test.after.each(cleanup);

/** A database file of `n` pages of `PS` bytes: page 1 an SQLite WAL-mode header, page k filled with k. */
function dbFile(n: number): string {
  const file = path.join(tmpdir(), 'db');
  const b = Buffer.alloc(n * PS);
  for (let p = 2; p <= n; p++) b.fill(p, (p - 1) * PS, p * PS);
  b.write('SQLite format 3\0', 0, 'latin1');
  b.writeUInt16BE(PS, 16);
  b[18] = 2;
  b[19] = 2;
  b.writeUInt32BE(1, 24);
  b.writeUInt32BE(n, 28);
  b.writeUInt32BE(1, 92);
  fs.writeFileSync(file, b);
  return file;
}

const page = (fill: number) => new Uint8Array(PS).fill(fill);

/** A step changing `pages` (page number -> fill) of a database whose checksum is `sum` (updated) and whose pages are `state`. */
function step(time: number, state: Map<number, Uint8Array>, sum: Uint8Array, changes: Array<[number, number]>, pages: number): Step {
  for (const [pgno, old] of [...state]) {
    if (pgno <= pages) continue;
    xorInto(sum, pageHash(pgno, old));
    state.delete(pgno);
  }
  const records = changes.map(([pgno, fill]) => {
    const old = state.get(pgno);
    if (old) xorInto(sum, pageHash(pgno, old));
    const p = page(fill);
    xorInto(sum, pageHash(pgno, p));
    state.set(pgno, p);
    return { pgno, page: p };
  });
  return { time, pages, checksum: Uint8Array.from(sum), records };
}

function stateOf(file: string): Map<number, Uint8Array> {
  const b = fs.readFileSync(file);
  const m = new Map<number, Uint8Array>();
  for (let p = 1; p * PS <= b.length; p++) m.set(p, new Uint8Array(b.subarray((p - 1) * PS, p * PS)));
  return m;
}

function segmentFile(bytes: Buffer): string {
  const f = path.join(tmpdir(), 'seg');
  fs.writeFileSync(f, bytes);
  return f;
}

function corrupt(fn: () => unknown, match: string): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, BlufioError);
    assert.is((e as BlufioError).code, 'E_CORRUPT');
    assert.match((e as Error).message, match);
    return;
  }
  assert.unreachable(`expected E_CORRUPT (${match})`);
}

test('a chain of two segments rebuilds every step\'s state; a time between steps gives the earlier one', () => {
  const db = dbFile(4);
  const state = stateOf(db);
  const sum = checksumOf(db, PS);
  const pre1 = hex(sum);
  const s1 = [step(1000, state, sum, [[2, 20]], 4), step(2000, state, sum, [[3, 30], [5, 50]], 5)];
  const seg1 = encodeSegment({ base: 'b', n: 1, pageSize: PS, pre: pre1, post: hex(sum), from: new Date(1000).toISOString(), to: new Date(2000).toISOString() }, s1);
  const pre2 = hex(sum);
  const s2 = [step(3000, state, sum, [[2, 21]], 3)];
  const seg2 = encodeSegment({ base: 'b', n: 2, pageSize: PS, pre: pre2, post: hex(sum), from: new Date(3000).toISOString(), to: new Date(3000).toISOString() }, s2);
  assert.is(decodeSegment(seg1, 's1').steps.length, 2);
  // Up to 1500: only the first step.
  const a = path.join(tmpdir(), 'a.db');
  fs.copyFileSync(db, a);
  const sa = checksumOf(a, PS);
  const r = applySegment(segmentFile(seg1), a, sa, 1500, 's1');
  assert.equal([r.applied, r.whole], [1000, false]);
  assert.equal(fs.readFileSync(a).subarray(PS, 2 * PS), Buffer.from(page(20)));
  assert.equal(fs.readFileSync(a).subarray(2 * PS, 3 * PS), Buffer.from(fs.readFileSync(db).subarray(2 * PS, 3 * PS)));
  // Everything: grows to 5 pages, then shrinks to 3; the checksum is the file's own.
  const b = path.join(tmpdir(), 'b.db');
  fs.copyFileSync(db, b);
  const sb = checksumOf(b, PS);
  assert.is(applySegment(segmentFile(seg1), b, sb, Infinity, 's1').whole, true);
  assert.is(fs.statSync(b).size, 5 * PS);
  assert.is(applySegment(segmentFile(seg2), b, sb, Infinity, 's2').whole, true);
  assert.is(fs.statSync(b).size, 3 * PS);
  assert.is(hex(checksumOf(b, PS)), hex(sum));
  assert.is(hex(sb), hex(sum));
});

test('a missing, reordered or foreign segment, an altered page, a cut-off file: each refused, said as such', () => {
  const db = dbFile(3);
  const state = stateOf(db);
  const sum = checksumOf(db, PS);
  const pre = hex(sum);
  const steps = [step(10, state, sum, [[2, 9]], 3)];
  const seg = encodeSegment({ base: 'b', n: 1, pageSize: PS, pre, post: hex(sum), from: new Date(10).toISOString(), to: new Date(10).toISOString() }, steps);
  const next = encodeSegment({ base: 'b', n: 2, pageSize: PS, pre: hex(sum), post: hex(step(20, state, sum, [[3, 7]], 3).checksum), from: new Date(20).toISOString(), to: new Date(20).toISOString() }, [step(20, stateOf(db), Uint8Array.from(Buffer.from(hex(steps[0].checksum), 'hex')), [[3, 7]], 3)]);
  const fresh = () => {
    const f = path.join(tmpdir(), 'x.db');
    fs.copyFileSync(db, f);
    return { f, s: checksumOf(f, PS) };
  };
  // Segment 2 first (segment 1 missing, or out of order): its state before is not the database's.
  let x = fresh();
  corrupt(() => applySegment(segmentFile(next), x.f, x.s, Infinity, 'seg2'), 'does not follow the state before it');
  // A page altered in transit: its step's checksum does not come out.
  const altered = Buffer.from(seg);
  altered[altered.length - 10] ^= 1;
  x = fresh();
  corrupt(() => applySegment(segmentFile(altered), x.f, x.s, Infinity, 'alt'), 'does not give the state it says');
  // Cut off.
  x = fresh();
  corrupt(() => applySegment(segmentFile(seg.subarray(0, seg.length - 100)), x.f, x.s, Infinity, 'cut'), 'malformed');
  corrupt(() => decodeSegment(seg.subarray(0, seg.length - 1), 'cut'), 'cut off or malformed');
  // Not a segment at all.
  x = fresh();
  corrupt(() => applySegment(segmentFile(Buffer.from('blufio-diff 1\n{}\n')), x.f, x.s, Infinity, 'diff'), 'not a blufio log segment');
});

test('the spool writer makes what encodeSegment makes; a step that changed nothing is taken back', () => {
  const db = dbFile(3);
  const state = stateOf(db);
  const sum = checksumOf(db, PS);
  const pre = hex(sum);
  const steps = [step(5, state, sum, [[2, 1], [3, 2]], 3), step(6, state, sum, [[2, 3]], 3)];
  const header = { base: 'b', n: 1, pageSize: PS, pre, post: hex(sum), from: new Date(5).toISOString(), to: new Date(6).toISOString() };
  const spool = path.join(tmpdir(), 'spool');
  const fd = fs.openSync(spool, 'w+');
  const w = new StepWriter(fd, PS);
  for (const s of steps) {
    w.begin(s.time, s.pages);
    for (const r of s.records) w.record(r.pgno, r.page);
    w.end(s.checksum);
    w.begin(s.time + 0.5, s.pages);
    w.end(s.checksum);
    w.drop();
  }
  fs.closeSync(fd);
  assert.equal(Buffer.concat([segmentHead({ ...header, steps: 2 }), fs.readFileSync(spool)]), encodeSegment(header, steps));
});

test('the spool keeps what was written after the steps shipped: shift() moves it to the start', () => {
  const db = dbFile(3);
  const state = stateOf(db);
  const sum = checksumOf(db, PS);
  const pre = hex(sum);
  const first = step(5, state, sum, [[2, 1], [3, 2]], 3);
  const mid = hex(sum);
  const later = [step(6, state, sum, [[2, 3]], 3), step(7, state, sum, [[3, 4]], 3)];
  const fd = fs.openSync(path.join(tmpdir(), 'spool'), 'w+');
  const w = new StepWriter(fd, PS);
  const write = (s: Step) => {
    w.begin(s.time, s.pages);
    for (const r of s.records) w.record(r.pgno, r.page);
    w.end(s.checksum);
  };
  write(first);
  const shipped = w.bytes;
  for (const s of later) write(s);
  w.shift(shipped);
  // What is left is exactly the later steps, and the spool goes on after them.
  const header = { base: 'b', n: 2, pageSize: PS, pre: mid, post: hex(sum), from: new Date(6).toISOString(), to: new Date(7).toISOString() };
  const left = Buffer.alloc(w.bytes);
  fs.readSync(fd, left, 0, left.length, 0);
  assert.equal(Buffer.concat([segmentHead({ ...header, steps: 2 }), left]), encodeSegment(header, later));
  assert.is(fs.fstatSync(fd).size, w.bytes);
  assert.throws(() => w.shift(w.bytes + 1), /past the spool/);
  w.shift(w.bytes);
  assert.is(w.bytes, 0);
  fs.closeSync(fd);
  assert.ok(pre !== mid);
});

test('a backlog folded into one step (collapse) gives the same state as its steps: newest image of each page, pages past the end left out', () => {
  const db = dbFile(4);
  const state = stateOf(db);
  const sum = checksumOf(db, PS);
  const pre = hex(sum);
  // Page 2 changed twice, the database grown to 6 pages, then cut to 5 (page 6 dropped).
  const steps = [step(5, state, sum, [[2, 1], [3, 2]], 4), step(6, state, sum, [[2, 3], [5, 9], [6, 8]], 6), step(7, state, sum, [[4, 7]], 5)];
  const fd = fs.openSync(path.join(tmpdir(), 'spool'), 'w+');
  const w = new StepWriter(fd, PS);
  for (const st of steps) {
    w.begin(st.time, st.pages);
    for (const r of st.records) w.record(r.pgno, r.page);
    w.end(st.checksum);
  }
  const whole = w.bytes;
  const c = w.collapse(path.join(tmpdir(), 'fold'));
  assert.equal([c.time, c.pages, c.count, c.folded, hex(c.checksum)], [7, 5, 4, 3, hex(sum)]);
  assert.ok(w.bytes < whole);
  const body = Buffer.alloc(w.bytes);
  fs.readSync(fd, body, 0, body.length, 0);
  fs.closeSync(fd);
  // Applied to the first state, it is a valid segment ending in the last state.
  const header = { base: 'b', n: 1, pageSize: PS, pre, post: hex(sum), from: new Date(7).toISOString(), to: new Date(7).toISOString(), steps: 1 };
  const seg = segmentFile(Buffer.concat([segmentHead(header), body]));
  const target = path.join(tmpdir(), 'target');
  fs.copyFileSync(db, target);
  applySegment(seg, target, checksumOf(target, PS), Infinity, 'folded');
  assert.is(hex(checksumOf(target, PS)), hex(sum));
  assert.is(fs.statSync(target).size, 5 * PS);
  assert.equal(new Uint8Array(fs.readFileSync(target).subarray(PS, 2 * PS)), page(3));

  // Folding only what follows a step on its way (from its end): that step stays as it was.
  const fd2 = fs.openSync(path.join(tmpdir(), 'spool2'), 'w+');
  const w2 = new StepWriter(fd2, PS);
  const state2 = stateOf(db);
  const sum2 = checksumOf(db, PS);
  const kept = step(5, state2, sum2, [[2, 1]], 4);
  const later = [step(6, state2, sum2, [[3, 5]], 4), step(7, state2, sum2, [[3, 6], [4, 2]], 4)];
  for (const st of [kept, ...later]) {
    w2.begin(st.time, st.pages);
    for (const r of st.records) w2.record(r.pgno, r.page);
    w2.end(st.checksum);
  }
  const keptBytes = STEP_BYTES(kept);
  const c2 = w2.collapse(path.join(tmpdir(), 'fold2'), keptBytes);
  assert.equal([c2.time, c2.count, c2.folded, hex(c2.checksum)], [7, 2, 2, hex(sum2)]);
  const body2 = Buffer.alloc(w2.bytes);
  fs.readSync(fd2, body2, 0, body2.length, 0);
  fs.closeSync(fd2);
  const folded = { time: 7, pages: 4, checksum: c2.checksum, records: [{ pgno: 3, page: page(6) }, { pgno: 4, page: page(2) }] };
  assert.equal(body2, encodeSegment({ base: 'b', n: 1, pageSize: PS, pre: '', post: hex(sum2), from: '', to: '' }, [kept, folded]).subarray(segmentHead({ base: 'b', n: 1, pageSize: PS, pre: '', post: hex(sum2), from: '', to: '', steps: 2 }).length));
});

/** The bytes a step takes in a spool. */
const STEP_BYTES = (st: Step) => 36 + st.records.length * (4 + PS);

test('names: a segment\'s name says its base, number, times and a gap; chains stop at a hole; ranges show gaps', () => {
  const layers = layersFor({ compress: true, encrypt: true });
  const name = logNameFor('blufio', 'blufio-20261207T070000Z.db.gz.age', 42, new Date('2026-12-07T07:15:00.250Z'), new Date('2026-12-07T07:15:01.100Z'), layers, true);
  assert.is(name, 'blufio-20261207T070000Z.seg00000042.20261207T071500250Z-20261207T071501100Z.gap.log.gz.age');
  const p = parseLogName(name)!;
  assert.equal([p.base, p.n, p.from.toISOString(), p.to.toISOString(), p.gap, p.encrypted], ['blufio-20261207T070000Z.db.gz.age', 42, '2026-12-07T07:15:00.250Z', '2026-12-07T07:15:01.100Z', true, true]);
  for (const bad of ['blufio-20261207T070000Z.seg00000042.20261207T071500250Z-20261207T071501100Z.log', 'blufio-20261207T070000Z.seg42.20261207T071500250Z-20261207T071501100Z.log.gz', 'blufio-20261207T070000Z.seg00000042.20261207T071501100Z-20261207T071500250Z.log.gz', 'blufio-20261207T070000Z.db.gz']) {
    assert.is(parseLogName(bad), null, bad);
  }
  const base = 'blufio-20261207T070000Z.db.gz';
  const t = (s: number) => new Date(Date.parse('2026-12-07T07:00:00Z') + s * 1000);
  const seg = (n: number, from: number, to: number, gap = false) => ({ name: logNameFor('blufio', base, n, t(from), t(to), layersFor({ compress: true, encrypt: false }), gap), bytes: 1 });
  const logs = logsOf([seg(1, 1, 2), seg(2, 3, 4), seg(3, 10, 11, true), seg(5, 12, 13), { name: base, bytes: 1 }]);
  assert.equal(chainOf(logs, base).map((l) => l.n), [1, 2, 3]);
  // A compacted segment (1-2) stands for the two it merged, still beside it: the chain takes it.
  const merged = logsOf([seg(1, 1, 2), seg(2, 3, 4), { name: logNameFor('blufio', base, 1, t(1), t(4), layersFor({ compress: true, encrypt: false }), false, 2), bytes: 1 }, seg(3, 10, 11, true)]);
  assert.equal(chainOf(merged, base).map((l) => [l.n, l.last]), [[1, 2], [3, 3]]);
  // Overlapping merged segments (a removal failed midway once): the chain still reaches as far
  // as any path goes, by the fewest objects.
  const overlap = logsOf([seg(1, 1, 2), seg(2, 3, 4), seg(3, 5, 6), seg(4, 7, 8), { name: logNameFor('blufio', base, 1, t(1), t(4), layersFor({ compress: true, encrypt: false }), false, 2), bytes: 1 }, { name: logNameFor('blufio', base, 2, t(3), t(8), layersFor({ compress: true, encrypt: false }), false, 4), bytes: 1 }]);
  assert.equal(chainOf(overlap, base).map((l) => [l.n, l.last]), [[1, 1], [2, 4]]);
  const ranges = rangesOf([{ name: base, stem: 'blufio', time: t(0), kind: 'full', restorable: true }], chainOf(logs, base));
  assert.equal(ranges, [{ series: 'blufio', from: t(0).toISOString(), to: t(11).toISOString(), gaps: [{ from: t(4).toISOString(), to: t(10).toISOString() }] }]);
  // A compacted segment that holds a gap (3-4, from 10 to 20) is a gap over its whole span.
  const gapMerged = logsOf([seg(1, 1, 2), seg(2, 3, 4), { name: logNameFor('blufio', base, 3, t(10), t(20), layersFor({ compress: true, encrypt: false }), true, 4), bytes: 1 }, seg(5, 21, 22)]);
  assert.equal(rangesOf([{ name: base, stem: 'blufio', time: t(0), kind: 'full', restorable: true }], chainOf(gapMerged, base))[0].gaps, [{ from: t(4).toISOString(), to: t(20).toISOString() }]);
  // A new chain (on a differential at 3 s) whose first segment closed a gap: up to where the chain
  // before reaches (4 s), times restore from that one; the gap begins there, not at the base.
  const next = 'blufio-20261207T070003Z.from-20261207T070000Z.diff.gz';
  const two = logsOf([seg(1, 1, 2), seg(2, 3, 4), { name: logNameFor('blufio', next, 1, t(6), t(7), layersFor({ compress: true, encrypt: false }), true), bytes: 1 }]);
  assert.equal(rangesOf([{ name: base, stem: 'blufio', time: t(0), kind: 'full', restorable: true }, { name: next, stem: 'blufio', time: t(3), kind: 'diff', restorable: true }], two)[0].gaps, [{ from: t(4).toISOString(), to: t(6).toISOString() }]);
  // A take-over: the new chain's first (merged, gap) segment starts at 2 s, while the stood-down
  // chain went on to 4 s. Restores take the new chain from 2 s: the gap is from there.
  const taken = logsOf([seg(1, 1, 2), seg(2, 3, 4), { name: logNameFor('blufio', next, 1, t(2), t(5), layersFor({ compress: true, encrypt: false }), true, 30), bytes: 1 }]);
  assert.equal(rangesOf([{ name: base, stem: 'blufio', time: t(0), kind: 'full', restorable: true }, { name: next, stem: 'blufio', time: t(3), kind: 'diff', restorable: true }], taken)[0].gaps, [{ from: t(2).toISOString(), to: t(5).toISOString() }]);
});

/** A database file of bytes, its replica (a backup's copy) and a WAL in memory, followed from now. */
function watched(n: number) {
  const db = dbFile(n);
  // The replica is a backup's copy: its header says rollback journal (backups are self-contained).
  const replica = path.join(path.dirname(db), 'replica');
  const copy = fs.readFileSync(db);
  copy[18] = 1;
  copy[19] = 1;
  fs.writeFileSync(replica, copy);
  const wal = new MemWal();
  const src = SourceFile.open(db);
  const follower = new WalFollower(wal);
  follower.start();
  const out = new StepWriter(fs.openSync(path.join(path.dirname(db), 'spool'), 'w+'), PS);
  return { db, wal, replica, out, watch: { src, follower, lastPre: src.stamp(), gap: null } as Watch };
}

/** A live replica over a database file of bytes and a WAL in memory. */
function live(n: number) {
  const { db, wal, replica, out, watch } = watched(n);
  return { db, wal, r: LiveReplica.open(watch, replica, PS, n), out };
}

test('page hashes behind a cache of 3 blocks (4,096 pages each): after random sets and gets over 40,000 pages, each reads what was set last (never set: zeros); the blocks in memory stay at 3; the file is removed on close', () => {
  const file = path.join(tmpdir(), 'replica.db.hashes');
  const h = new ReplicaHashes(file, 3);
  const truth = new Map<number, Buffer>();
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const zeros = Buffer.alloc(16);
  for (let i = 0; i < 20_000; i++) {
    // Mostly a hot block (a step's pages), sometimes anywhere (a full pass, a grown database).
    const p = 1 + (rand(4) === 0 ? rand(40_000) : 30_000 + rand(4_096));
    if (rand(2) === 0) {
      const v = Buffer.alloc(16);
      v.writeUInt32BE(p, 0);
      v.writeUInt32BE(i, 12);
      h.set(p, v);
      truth.set(p, v);
    } else {
      assert.ok(h.get(p).equals(truth.get(p) ?? zeros), `page ${p} at op ${i}`);
    }
    assert.ok(h.cached <= 3);
  }
  for (const [p, v] of truth) assert.ok(h.get(p).equals(v), `page ${p}`);
  assert.ok(fs.statSync(file).size > 0, 'blocks were written back');
  h.close();
  assert.not.ok(fs.existsSync(file));
});

test('live replica: what is committed while its base is made is followed by looks ahead: WAL restarts seen one by one leave no gap (the first step holds exactly their pages); left unseen while the file changed, the first step closes a gap', () => {
  for (const ahead of [true, false]) {
    const { db, wal, replica, out, watch } = watched(4);
    const look = () => ahead && LiveReplica.lookAhead(watch);
    // A restarted WAL is written over the old one from its first frame, as SQLite does.
    const over = (old: Uint8Array, next: Uint8Array) => Buffer.concat([next, old.subarray(next.length)]);
    const g1 = new WalBuilder(7, 8).tx([2], 4, 0x21).tx([2], 4, 0x22).tx([2], 4, 0x22).bytes;
    wal.create(g1);
    look();
    // Checkpointed (the file takes page 2), restarted (salt + 1), committed again; twice.
    const b = fs.readFileSync(db);
    b.fill(0x22, PS, 2 * PS);
    fs.writeFileSync(db, b);
    const g2 = over(g1, new WalBuilder(8, 3).tx([3], 4, 0x31).tx([3], 4, 0x33).bytes);
    wal.set(g2);
    look();
    b.fill(0x33, 2 * PS, 3 * PS);
    fs.writeFileSync(db, b);
    wal.set(over(g2, new WalBuilder(9, 5).tx([4], 4, 0x44).bytes));
    // The base is made: the replica starts where the follower started.
    const r = LiveReplica.open(watch, replica, PS, 4);
    const s = r.catchUp(out, { now: 1 })!;
    if (ahead) assert.equal([s.count, s.gap], [3, null]);
    else assert.ok(s.gap, 'a gap');
    r.close();
  }
});

test('live replica: commits seen in the WAL are steps of exactly their pages; a WAL checkpointed and restarted unseen while the file changed is a gap closed by comparing every page', () => {
  const { db, wal, r, out } = live(4);
  // Nothing committed: no step.
  assert.is(r.catchUp(out, { now: 1 }), null);
  // One transaction touching pages 2 and 3.
  const g = new WalBuilder(7, 8).tx([2, 3], 4, 0x22);
  wal.create(g.bytes);
  const s1 = r.catchUp(out, { now: 2 })!;
  assert.equal([s1.count, s1.gap], [2, null]);
  // The writer checkpoints (the file takes the frames), restarts the WAL with new salts and
  // commits again, all between two looks, and the file changed: frames were never seen one by one.
  const b = fs.readFileSync(db);
  b.fill(0x22, PS, 3 * PS);
  b.fill(0x44, 3 * PS, 4 * PS);
  fs.writeFileSync(db, b);
  wal.set(new WalBuilder(9, 1).tx([2], 4, 0x55).bytes);
  // Not at every look: a full pass waits for the interval.
  assert.is(r.catchUp(out, { now: 3, fullPass: false }), null);
  const s2 = r.catchUp(out, { now: 4 })!;
  assert.ok(s2.gap, 'a gap');
  // Page 4 changed in the file only (checkpointed unseen), page 2 in the new WAL: both, nothing else.
  assert.is(s2.count, 2);
  // Quiet again: nothing.
  assert.is(r.catchUp(out, { now: 5 }), null);
  r.close();
});

/** A StepWriter that keeps each step's pages in memory. */
function pagesOut() {
  const pages = new Map<number, Buffer>();
  const out = { begin() {}, record(p: number, page: Uint8Array) { pages.set(p, Buffer.from(page)); }, end() {} } as unknown as StepWriter;
  return { pages, out };
}

test('live replica: a full pass is made in pieces with a look between two: a WAL restart under it (the frame being read overwritten) is followed, that page read again, and the step is exactly the committed state; a gap seen between two pieces voids the pass, and the next one closes it', async () => {
  const { db, wal, replica, out, watch } = watched(8);
  // Pieces of two pages: 1-2, 3-4, 5-6, 7-8.
  const r = LiveReplica.open(watch, replica, PS, 8, { pieceBytes: 2 * PS });
  const over = (old: Uint8Array, next: Uint8Array) => Buffer.concat([next, old.subarray(next.length)]);
  const g1 = new WalBuilder(7, 8).tx([3], 8, 0x31).tx([7], 8, 0x71).bytes;
  wal.create(g1);
  assert.is(r.catchUp(out, { now: 1 })!.count, 2);
  r.forceFullPass('a test gap');
  // While the pass reads page 3 from its frame (the first), the writer checkpoints (the file takes
  // pages 3 and 7), restarts and commits page 5 over that very frame: what is read is page 5's.
  const b = fs.readFileSync(db);
  let armed = true;
  wal.beforeRead = (offset) => {
    if (!armed || offset !== WAL_HEADER_SIZE + WAL_FRAME_HEADER_SIZE) return;
    armed = false;
    b.fill(0x31, 2 * PS, 3 * PS);
    b.fill(0x71, 6 * PS, 7 * PS);
    fs.writeFileSync(db, b);
    wal.set(over(g1, new WalBuilder(8, 3).tx([5], 8, 0x55).bytes));
  };
  await r.passInPieces();
  assert.not.ok(armed, 'the frame was read during the pass');
  assert.is(r.voidedPasses, 0);
  const a = pagesOut();
  const s = r.catchUp(a.out, { now: 2, fullPass: false })!;
  assert.is(s.gap, 'a test gap');
  // Page 5 is the only change (page 3 read again: its frame had been overwritten).
  assert.equal([...a.pages.keys()], [5]);
  assert.ok(a.pages.get(5)!.every((x) => x === 0x55));
  wal.beforeRead = undefined;

  // Between two pieces the WAL restarts twice unseen while the file changes: the pass is void.
  r.forceFullPass('a second test gap');
  const pass = r.passInPieces();
  b.fill(0x55, 4 * PS, 5 * PS);
  b.fill(0x66, 5 * PS, 6 * PS);
  fs.writeFileSync(db, b);
  wal.set(new WalBuilder(10, 1).tx([4], 8, 0x44).bytes);
  await pass;
  assert.is(r.voidedPasses, 1);
  assert.ok(r.needsPass());
  assert.is(r.catchUp(out, { now: 3, fullPass: false }), null);
  await r.passInPieces();
  const c = pagesOut();
  const s2 = r.catchUp(c.out, { now: 4, fullPass: false })!;
  assert.is(s2.gap, 'a second test gap');
  assert.equal([...c.pages.keys()].sort(), [4, 6]);
  assert.ok(c.pages.get(4)!.every((x) => x === 0x44) && c.pages.get(6)!.every((x) => x === 0x66));
  r.close();
});

test.run();
