/**
 * The set's lease (src/replicate/lease.ts): one replicator per set and series across machines.
 * From the objects themselves, on a folder and on the signature-checking S3 test server: who
 * takes it, who is refused and with what, a clean stop, a lapse, a take-over and the holder's
 * finding it, junk where a lease should be, and two claims at one moment.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { aliveName, LEASE_LAPSE_MS, leaseName, newestLease, readHolder, replicatorId, takeLease } from '../src/replicate/lease.ts';
import { openStore, type Store } from '../src/storage/index.ts';
import { refuseClockBehind, refuseClockOff } from '../src/replicate/clock.ts';
import { spawn, spawnSync } from 'node:child_process';
import { CLI, cleanup, faketime, makeSampleDb, rejects, s3Env, skip, startS3Server, tmpdir, type S3Server } from './helpers.ts';
import { backupToSet } from '../src/sets/index.ts';
import { BlufioError } from '../src/errors.ts';

const test = suite('lease');
test.after(cleanup);

let server: S3Server | null = null;
let buckets = 0;
test.after(async () => {
  await server?.stop();
});

/** An empty store of each kind. */
const kinds: Record<string, () => Promise<Store>> = {
  folder: async () => openStore(`${tmpdir()}/`),
  s3: async () => {
    server ??= await startS3Server();
    const bucket = `lease${++buckets}`;
    fs.mkdirSync(path.join(server.dir, bucket));
    return openStore(`s3://${bucket}/p/`, { env: s3Env(server) });
  },
};

const scratch = () => path.join(tmpdir(), 'lease.tmp');
const A = 'aaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbb';

/** Writes `name` in `store` with `text`, replacing it. */
async function write(store: Store, name: string, text: string): Promise<void> {
  const f = scratch();
  fs.writeFileSync(f, text);
  await store.put(name, { file: f }, { replace: true });
}

for (const [kind, fresh] of Object.entries(kinds)) {
  test(`${kind}: the first takes it, itself again holds it on, another is refused with who holds it, a take-over is found by the holder`, async () => {
    const store = await fresh();
    const a = await takeLease(store, await store.list(), 'blufio', A, scratch());
    assert.equal([a.k, a.took], [1, 'first']);
    assert.equal(newestLease(await store.list(), 'blufio'), 1);
    assert.equal(newestLease(await store.list(), 'other'), 0);
    const h = await readHolder(store, 'blufio', 1);
    assert.equal([h.id, h.ended], [A, false]);
    assert.ok(Math.abs(h.seen! - Date.now()) < 60_000);
    // Restarted (a kill -9, a reboot): the same id holds the same lease.
    const again = await takeLease(store, await store.list(), 'blufio', A, scratch());
    assert.equal([again.k, again.took], [1, 'held']);
    // Another series in the same set is another lease.
    assert.is((await takeLease(store, await store.list(), 'vault', B, scratch())).k, 1);
    // Another replicator: refused, told who holds it and what to do; nothing claimed.
    const e = await rejects(takeLease(store, await store.list(), 'blufio', B, scratch()), 'E_IN_USE', new RegExp(`is replicated by another blufio replicate \\(${A}, started \\S+, last seen \\S+\\)`));
    assert.match(e.hint ?? '', '--take-over');
    assert.is(newestLease(await store.list(), 'blufio'), 1);
    // The holder finds nothing while no one took it…
    assert.is(await a.takenOver(true), null);
    assert.is(a.lost, false);
    // …and the taker after --take-over.
    const b = await takeLease(store, await store.list(), 'blufio', B, scratch(), { takeOver: true });
    assert.equal([b.k, b.took, b.before?.id], [2, 'forced', A]);
    const by = await a.takenOver(true);
    assert.is(by?.id, B);
    assert.is(a.lost, true);
    assert.match(a.standDown(by!, '2026-12-07T10:00:00.000Z').message, `another replicator (${B}) took over`);
    // The old holder started again is refused now (the lease is the newer one's).
    await rejects(takeLease(store, await store.list(), 'blufio', A, scratch()), 'E_IN_USE', new RegExp(B));
  });

  test(`${kind}: a clean stop frees it; a lease without a sign of life for 3 hours lapses; junk where a lease should be is refused, not taken`, async () => {
    const store = await fresh();
    const a0 = await takeLease(store, await store.list(), 'blufio', A, scratch());
    await a0.renew(undefined, true);
    // Its own lease, stopped cleanly: held on by itself (a restart resumes its chain)…
    const a = await takeLease(store, await store.list(), 'blufio', A, scratch());
    assert.equal([a.k, a.took], [1, 'held']);
    await a.renew(undefined, true);
    // …and free for another.
    const b = await takeLease(store, await store.list(), 'blufio', B, scratch());
    assert.equal([b.k, b.took], [2, 'ended']);
    // B's last sign of life (by the store's clock) 3 hours and a minute before a start (its
    // machine lost): A takes it back. (The start's clock moved on: the store's times are the
    // ones that count, lease.ts.)
    await write(store, leaseName('blufio', 2), JSON.stringify({ id: B, started: new Date().toISOString() }));
    await write(store, aliveName('blufio', 2), JSON.stringify({ id: B, seen: new Date().toISOString() }));
    const later = (ms: number) => () => Date.now() + ms;
    await rejects(takeLease(store, await store.list(), 'blufio', A, scratch(), { now: later(LEASE_LAPSE_MS - 30 * 60_000) }), 'E_IN_USE', new RegExp(B));
    const a2 = await takeLease(store, await store.list(), 'blufio', A, scratch(), { now: later(LEASE_LAPSE_MS + 60_000) });
    assert.equal([a2.k, a2.took], [3, 'lapsed']);
    // Two hours and a half: still alive.
    await write(store, leaseName('blufio', 3), JSON.stringify({ id: A, started: new Date().toISOString() }));
    await write(store, aliveName('blufio', 3), JSON.stringify({ id: A, seen: new Date().toISOString() }));
    await rejects(takeLease(store, await store.list(), 'blufio', B, scratch(), { now: later(LEASE_LAPSE_MS - 30 * 60_000) }), 'E_IN_USE');
    // A sign of life written by someone else (another id) does not count for the holder.
    await write(store, aliveName('blufio', 3), JSON.stringify({ id: B, seen: new Date().toISOString(), ended: true }));
    const h = await readHolder(store, 'blufio', 3);
    assert.equal([h.id, h.ended], [A, false]);
    // Junk under the next number: never taken as free, never as ours.
    await write(store, leaseName('blufio', 4), 'not json');
    await rejects(takeLease(store, await store.list(), 'blufio', A, scratch()), 'E_IN_USE', /is not a lease blufio can read/);
    const c = await takeLease(store, await store.list(), 'blufio', B, scratch(), { takeOver: true });
    assert.is(c.k, 5);
  });

  test(`${kind}: whatever the numbering, every live holder finds its successor — a stale higher lease copied in, its own claim removed (a lifecycle rule), both of its objects removed, numbers past 8 digits`, async () => {
    // A stale, ended lease 5 copied in while A holds 1: B is refused (A is alive); taken over,
    // B claims 6 and fences 2, which A finds.
    let store = await fresh();
    const a = await takeLease(store, await store.list(), 'blufio', A, scratch());
    await write(store, leaseName('blufio', 5), JSON.stringify({ id: 'cccccccccccccccc', started: new Date(Date.now() - 86_400_000).toISOString() }));
    await write(store, aliveName('blufio', 5), JSON.stringify({ id: 'cccccccccccccccc', seen: new Date(Date.now() - 86_000_000).toISOString(), ended: true }));
    await rejects(takeLease(store, await store.list(), 'blufio', B, scratch()), 'E_IN_USE', new RegExp(A));
    const b = await takeLease(store, await store.list(), 'blufio', B, scratch(), { takeOver: true });
    assert.equal([b.k, b.took], [6, 'forced']);
    assert.is((await a.takenOver(true))?.id, B);
    // A taker killed between its claim and its fences fences at its restart (an attack run had
    // two replicators so).
    const s2 = await fresh();
    const a3 = await takeLease(s2, await s2.list(), 'blufio', A, scratch());
    await write(s2, leaseName('blufio', 5), JSON.stringify({ id: 'cccccccccccccccc', fence: 9 }));
    await write(s2, leaseName('blufio', 6), JSON.stringify({ id: B, started: new Date().toISOString() }));
    assert.is(await a3.takenOver(true), null, 'not fenced yet');
    assert.equal([(await takeLease(s2, await s2.list(), 'blufio', B, scratch())).took], ['held']);
    assert.is((await a3.takenOver(true))?.id, B);
    // The fence holds nothing: B stopped cleanly, a third takes the series without --take-over.
    await b.renew(undefined, true);
    assert.is((await takeLease(store, await store.list(), 'blufio', 'dddddddddddddddd', scratch())).took, 'ended');
    // A's claim removed while it runs: B is refused (A's sign of life is there); A puts its
    // claim back at its next look and holds on.
    store = await fresh();
    const a2 = await takeLease(store, await store.list(), 'blufio', A, scratch());
    await store.remove(leaseName('blufio', 1));
    await rejects(takeLease(store, await store.list(), 'blufio', B, scratch()), 'E_IN_USE', new RegExp(A));
    assert.is(await a2.takenOver(true), null);
    assert.is((await readHolder(store, 'blufio', 1)).id, A);
    // Both of A's objects removed: B takes number 1 afresh; A finds its claim is B's.
    await store.remove(leaseName('blufio', 1));
    await store.remove(aliveName('blufio', 1));
    const b2 = await takeLease(store, await store.list(), 'blufio', B, scratch());
    assert.equal([b2.k, b2.took], [1, 'first']);
    assert.is((await a2.takenOver(true))?.id, B);
    // A number past 8 digits is still a number.
    store = await fresh();
    await write(store, leaseName('blufio', 99999999), JSON.stringify({ id: A, started: new Date().toISOString() }));
    const c = await takeLease(store, await store.list(), 'blufio', B, scratch(), { now: () => Date.now() + LEASE_LAPSE_MS + 60_000 });
    assert.equal([c.k, c.took], [100000000, 'lapsed']);
    assert.is((await takeLease(store, await store.list(), 'blufio', B, scratch())).took, 'held');
  });

  test(`${kind}: a copy of a state directory (the same id) — refused at start when the original ran since the copy; started while the original runs, the younger run stands down and the older holds on`, async () => {
    const store = await fresh();
    const r1 = { token: '1111111111111111', started: '2026-12-07T10:00:00.000Z', known: ['1111111111111111'] };
    const a = await takeLease(store, await store.list(), 'blufio', A, scratch(), { run: r1 });
    // Restarted after a kill -9 (its state directory knows the run it wrote): held on.
    const r1b = { token: '1111111111111112', started: '2026-12-07T10:05:00.000Z', known: ['1111111111111112', '1111111111111111'] };
    const again = await takeLease(store, await store.list(), 'blufio', A, scratch(), { run: r1b });
    assert.equal([again.k, again.took], [1, 'held']);
    // A copy made before that restart: it never wrote run …112, which is alive: refused.
    const copyRun = { token: '2222222222222222', started: '2026-12-07T10:06:00.000Z', known: ['2222222222222222', '1111111111111111'] };
    await rejects(takeLease(store, await store.list(), 'blufio', A, scratch(), { run: copyRun }), 'E_IN_USE', /another run of this replicator's id .* a copy of it runs elsewhere/);
    // A copy made while run …112 runs knows it: it starts, and the two find each other.
    const copyRun2 = { token: '3333333333333333', started: '2026-12-07T10:07:00.000Z', known: ['3333333333333333', '1111111111111112'] };
    const copy = await takeLease(store, await store.list(), 'blufio', A, scratch(), { run: copyRun2 });
    assert.is(copy.took, 'held');
    assert.is(await again.takenOver(true), null, 'the older run holds on');
    assert.is(again.contests, 1);
    const by = await copy.takenOver(true);
    assert.is(by?.run, '1111111111111112');
    assert.ok(copy.lostToACopy);
    assert.match(copy.standDown(by!, null).message, 'a copy of this state directory runs elsewhere');
    assert.is(await again.takenOver(true), null);
    assert.is(again.contests, 1, 'settled');
    // --take-over from a copy claims the next number: the other run stands down.
    const t = await takeLease(store, await store.list(), 'blufio', A, scratch(), { run: copyRun, takeOver: true });
    assert.equal([t.k, t.took], [2, 'forced']);
    assert.ok(await again.takenOver(true));
    void a;
    // An idle original looks at nothing but its hourly sign of life: that look finds a copy
    // started meanwhile (a contest: it makes a new base), and the copy stands down at its next
    // look; a copy's own hourly look finds the older run and stands down.
    const s2 = await fresh();
    const orig = await takeLease(s2, await s2.list(), 'blufio', A, scratch(), { run: r1b });
    const idleCopy = await takeLease(s2, await s2.list(), 'blufio', A, scratch(), { run: copyRun2 });
    assert.is(idleCopy.took, 'held');
    await orig.renewHourly();
    assert.equal([orig.contests, orig.lost], [1, false]);
    assert.is((await idleCopy.takenOver(true))?.run, r1b.token);
    const idleCopy2 = await takeLease(s2, await s2.list(), 'blufio', A, scratch(), { run: { ...copyRun2, token: '4444444444444444', known: ['4444444444444444', r1b.token] } });
    await orig.renewHourly();
    assert.is(orig.contests, 2);
    await idleCopy2.renewHourly();
    assert.ok(idleCopy2.lost && idleCopy2.lostToACopy);
    assert.is(idleCopy2.takenOverBy?.run, r1b.token);
    assert.is((await readHolder(s2, 'blufio', 1)).run, r1b.token, 'the stood-down copy wrote nothing');
    // A copy whose clock is slow says it started before the original: what its state directory
    // knew decides, not the clocks (an attack run's original stood down so).
    const s3 = await fresh();
    const orig3 = await takeLease(s3, await s3.list(), 'blufio', A, scratch(), { run: r1b });
    const slowCopy = await takeLease(s3, await s3.list(), 'blufio', A, scratch(), { run: { token: '5555555555555555', started: '2026-12-07T09:00:00.000Z', known: ['5555555555555555', r1b.token] } });
    assert.is(await orig3.takenOver(true), null, 'the original holds on');
    assert.is(orig3.contests, 1);
    assert.is((await slowCopy.takenOver(true))?.run, r1b.token);
    assert.ok(slowCopy.lostToACopy);
  });

  test(`${kind}: a holder's own clock does not decide its lapse, the store's does — a claim stamped a year ahead lapses, a holder 4 hours behind holds on; \`list\` says the store's time`, async () => {
    const store = await fresh();
    // A fast clock stamped its claim and sign of life a year ahead: 3 hours after the store got
    // them (and no later), the lease has lapsed all the same.
    const ahead = new Date(Date.now() + 365 * 86_400_000).toISOString();
    await write(store, leaseName('blufio', 1), JSON.stringify({ id: A, started: ahead }));
    await write(store, aliveName('blufio', 1), JSON.stringify({ id: A, seen: ahead }));
    const written = Date.now();
    const holder = await readHolder(store, 'blufio', 1, await store.list());
    assert.ok(Math.abs(holder.seen! - written) < 5_000, 'the store\'s time, not the holder\'s');
    assert.is(holder.started, ahead, 'what the holder said is still shown as its own');
    await rejects(takeLease(store, await store.list(), 'blufio', B, scratch(), { now: () => Date.now() + LEASE_LAPSE_MS - 60_000 }), 'E_IN_USE');
    const b = await takeLease(store, await store.list(), 'blufio', B, scratch(), { now: () => Date.now() + LEASE_LAPSE_MS + 60_000 });
    assert.equal([b.k, b.took], [2, 'lapsed']);
    // A slow clock (4 hours behind) renewing now: alive, whatever time it wrote.
    const behind = new Date(Date.now() - 4 * 3_600_000).toISOString();
    await write(store, leaseName('blufio', 3), JSON.stringify({ id: A, started: behind }));
    await write(store, aliveName('blufio', 3), JSON.stringify({ id: A, seen: behind }));
    const e = await rejects(takeLease(store, await store.list(), 'blufio', B, scratch()), 'E_IN_USE', `(${A}, started ${behind}, last seen `);
    const seen = Date.parse(/last seen (\S+)\)/.exec(e.message)?.[1] ?? '');
    assert.ok(Math.abs(seen - Date.now()) < 60_000, e.message);
  });

  test(`${kind}: two claims at one moment — exactly one holds it`, async () => {
    for (let round = 0; round < 4; round++) {
      const store = await fresh();
      const listed = await store.list();
      const got = await Promise.allSettled([A, B].map((id) => takeLease(store, listed, 'blufio', id, scratch())));
      const won = got.filter((g) => g.status === 'fulfilled');
      assert.is(won.length, 1, JSON.stringify(got.map((g) => (g.status === 'rejected' ? String(g.reason) : 'ok'))));
      const lost = got.find((g) => g.status === 'rejected') as PromiseRejectedResult;
      assert.is(lost.reason.code, 'E_IN_USE');
      const holder = await readHolder(store, 'blufio', 1);
      assert.is(holder.id, (won[0] as PromiseFulfilledResult<{ id: string }>).value.id);
      assert.is(newestLease(await store.list(), 'blufio'), 1);
    }
  });
}

test('a sign of life is evidence of another run only as runs write it; an overruled copy\'s chains are taken out only when what the state directories knew decided, and only backups of the series made since this run started, never its own', async () => {
  const store = openStore(`${tmpdir()}/`);
  const started = new Date().toISOString();
  const me = { token: '1111111111111111', started, known: ['1111111111111111'] };
  const orig = await takeLease(store, await store.list(), 'blufio', A, scratch(), { run: me });
  const t = (ms: number) => new Date(Date.parse(started) + ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  const mine = `blufio-${t(2000)}.db.gz`;
  await orig.announce(mine);
  // In the set when it started (a chain resumed from its own last run, restarted within seconds).
  const resumed = `blufio-${t(-1000)}.db.gz`;
  orig.keep([resumed]);
  const alive = aliveName('blufio', 1);
  // Hand-edited or cut short (no start, knew not a list, a token not a run's): no contest, held.
  for (const junk of [
    { id: A, run: 'dddddddddddddddd', runStarted: null, knew: 'x', bases: null },
    { id: A, run: 'gggg', runStarted: '0000', knew: [] },
    { id: A, run: 'dddddddddddddddd', knew: [] },
    { id: A, run: 'dddddddddddddddd', runStarted: '2026-01-01T00:00:00.000Z', knew: [1] },
  ]) {
    await write(store, alive, JSON.stringify(junk));
    assert.is(await orig.takenOver(true), null, JSON.stringify(junk));
    assert.equal([orig.lost, orig.contests], [false, 0]);
  }
  // A younger copy (it knew this run) names its chains, and junk beside them: only its own
  // backups of the series since this run started are taken out.
  const copyBase = `blufio-${t(4000)}.db.gz`;
  // (A run names its last 4: the first 4 are read.)
  await write(store, alive, JSON.stringify({ id: A, seen: started, run: '2222222222222222', runStarted: started, knew: [me.token], bases: ['blufio.series', leaseName('blufio', 1), `other-${t(4000)}.db.gz`, `${copyBase}.pages`, copyBase] }));
  assert.is(await orig.takenOver(true), null, 'the original holds on');
  assert.is(orig.contests, 1);
  assert.equal(orig.beaten, []);
  await write(store, alive, JSON.stringify({ id: A, seen: started, run: '2222222222222223', runStarted: started, knew: [me.token], bases: [mine, resumed, `blufio-${t(-3_600_000)}.db.gz`, copyBase] }));
  assert.is(await orig.takenOver(true), null);
  assert.is(orig.contests, 2);
  assert.equal(orig.beaten, [copyBase]);
  // A name given ahead of time is this run's once it names it (a forged sign listed the next
  // seconds' names, and the original's own new base was taken out).
  await write(store, alive, JSON.stringify({ id: A, seen: started, run: '2222222222222224', runStarted: started, knew: [me.token], bases: [`blufio-${t(9000)}.db.gz`] }));
  assert.is(await orig.takenOver(true), null);
  assert.equal(orig.beaten, [copyBase, `blufio-${t(9000)}.db.gz`]);
  await orig.announce(`blufio-${t(9000)}.db.gz`);
  assert.equal(orig.beaten, [copyBase]);
  assert.ok(orig.mine(`blufio-${t(9000)}.db.gz`));
  // Neither knew the other (copied before both started): the earlier start holds on — a guess,
  // so the later one stands down without taking its chain out, and the earlier takes nothing.
  await write(store, alive, JSON.stringify({ id: A, seen: started, run: '3333333333333333', runStarted: new Date(Date.parse(started) + 60_000).toISOString(), knew: [], bases: [`blufio-${t(6000)}.db.gz`] }));
  assert.is(await orig.takenOver(true), null);
  assert.is(orig.contests, 4);
  assert.equal(orig.beaten, [copyBase], 'nothing more to take out');
  const later = await takeLease(store, await store.list(), 'blufio', A, scratch(), { run: { token: '4444444444444444', started: new Date(Date.parse(started) + 60_000).toISOString(), known: ['4444444444444444'] } }).catch(() => null);
  assert.is(later, null, 'refused at start: a live run its state directory never made');
  const earlier = { token: '5555555555555555', started: new Date(Date.parse(started) - 60_000).toISOString(), known: ['5555555555555555'] };
  await write(store, alive, JSON.stringify({ id: A, seen: started, run: earlier.token, runStarted: earlier.started, knew: [] }));
  assert.ok(await orig.takenOver(true), 'the earlier start holds on');
  assert.ok(orig.lostToACopy);
  assert.not.ok(orig.surelyTheCopy, 'told by the clocks: it takes nothing out');
  assert.match(orig.standDown(orig.takenOverBy!, null).message, 'left what it shipped in the set');
});

test('a new base is named in the lease before it is put (a copy killed between its put and naming it left a base no one knew of): a set backup tells each name first, and a refusal there puts nothing', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { wal: true, rows: 50 });
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const told: Array<[string, boolean, boolean]> = [];
  const r = await backupToSet(db, `${set}/`, { naming: async (n, mine) => void told.push([n, mine, fs.existsSync(path.join(set, n))]) });
  assert.equal(told, [[path.basename(r.path), true, false]], 'told before it was there');
  await rejects(backupToSet(db, `${set}/`, { naming: async () => { throw new BlufioError('E_IN_USE', 'stood down'); } }), 'E_IN_USE');
  assert.equal(fs.readdirSync(set).filter((f) => f.endsWith('.gz')), [path.basename(r.path)], 'nothing put after a refusal');
});

test('a store that never answers the holder\'s look does not hold it: given up on with its signal (E_IO), and looked at again next time', async () => {
  const store = openStore(`${tmpdir()}/`);
  const l = await takeLease(store, [], 'blufio', A, scratch());
  const hung = { ...store, where: (n: string) => store.where(n), stat: () => new Promise<null>(() => {}) } as unknown as Store;
  l.on(hung);
  await rejects(l.takenOver(true, AbortSignal.timeout(100)), 'E_IO', /did not answer whether the lease was taken over/);
  l.on(store);
  assert.is(await l.takenOver(true, AbortSignal.timeout(5000)), null);
});

test('something that is not a file where the claim would go: said as such, not as another replicator', async () => {
  const d = tmpdir();
  fs.mkdirSync(path.join(d, 'blufio.lease00000001'));
  const store = openStore(`${d}/`);
  await rejects(takeLease(store, await store.list(), 'blufio', A, scratch()), 'E_IO', /blufio\.lease00000001 cannot be written, yet is not there: is something that is not a file in its place\?/);
});

test('the clock before the lease (clock.ts): a machine\'s clock more than 5 s off the store\'s is refused, ahead or behind, said with both times; a store that shows no clock is not checked; a set with future times after a checked clock is said as such', async () => {
  const store = openStore(`${tmpdir()}/`);
  const at = (t: number | null) => ({ ...store, where: (n: string) => store.where(n), clock: async () => t }) as unknown as Store;
  const now = Date.now();
  // (Its clock to the second, truncated: up to 1 s more in this machine's favour.)
  for (const off of [0, 4_000, -4_000]) assert.is(await refuseClockOff(at(now), () => now + off), true, `${off}`);
  assert.is(await refuseClockOff(at(null)), false);
  const ahead = await rejects(refuseClockOff(at(now), () => now + 600_000), 'E_CLOCK', /^this machine's clock is 60[01] s ahead of .*'s \(\S+ here, \S+ there\): its times would be in the future/);
  assert.match(ahead.hint ?? '', 'timedatectl');
  await rejects(refuseClockOff(at(now), () => now - 600_000), 'E_CLOCK', /^this machine's clock is 60[01] s behind /);
  await rejects(refuseClockOff(at(now), () => now + 6_500), 'E_CLOCK', /^this machine's clock is 6 s ahead/);
  // The folder's own clock: the file times the kernel gives, this machine's.
  assert.is(await refuseClockOff(store), true);
  const base = { name: 'blufio-20261207T100000Z.db.gz', bytes: 1 };
  const seg = { name: 'blufio-20261207T100000Z.seg00000001.20261207T095959500Z-20261207T100000000Z.log.gz', bytes: 1 };
  const t = Date.parse('2026-12-07T10:00:00Z');
  // A backup with no chain (a `blufio backup` an hour fast) holds nothing off: a restore takes
  // the chain of the newest base that has steps by then.
  refuseClockBehind([base], 'blufio', 'set', true, t - 3_600_000);
  const files = [base, seg];
  // Up to 11 s: a holder 5 s fast, this machine 5 s slow, and a name rounded up to the second.
  refuseClockBehind(files, 'blufio', 'set', true, t - 11_000);
  assert.throws(() => refuseClockBehind(files, 'blufio', 'set', true, t - 60_000), /^set holds times 60 s in the future \(blufio-20261207T100000Z\.db\.gz, up to 2026-12-07T10:00:00\.000Z\) by this machine's clock and the store's, which agree: a clock that ran fast wrote them/);
  assert.throws(() => refuseClockBehind(files, 'blufio', 'set', false, t - 60_000), /^this machine's clock is 60 s behind the newest time in set/);
  refuseClockBehind(files, 'other', 'set', true, t - 60_000);
});

/** A folder set and a WAL database made by native sqlite3 with `schema`, and `sql` to write to it. */
function folderSample(schema: string) {
  const d = tmpdir();
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const db = path.join(d, 'blufio.db');
  const sql = (q: string) => assert.is(spawnSync('sqlite3', [db, q], { stdio: 'ignore' }).status, 0);
  sql(`PRAGMA journal_mode=WAL; ${schema}`);
  return { d, set, db, sql };
}

/** A new bucket on the S3 test server, a WAL database and a home for a CLI run. */
async function s3Sample(): Promise<{ bucket: string; db: string; home: string; env: Record<string, string> }> {
  server ??= await startS3Server();
  const bucket = `lease${++buckets}`;
  fs.mkdirSync(path.join(server.dir, bucket));
  const db = path.join(tmpdir(), 'blufio.db');
  assert.is(spawnSync('sqlite3', [db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);'], { stdio: 'ignore' }).status, 0);
  return { bucket, db, home: tmpdir(), env: s3Env(server) };
}

test('blufio replicate with a clock 10 minutes ahead of the S3 server\'s (faketime): refused, exit 2, nothing written to the bucket', async () => {
  if (!faketime()) return skip('faketime is not installed (apt-get install faketime)');
  const { bucket, db, home, env } = await s3Sample();
  const r = spawnSync('faketime', ['-f', '+10m', process.execPath, CLI, 'replicate', `s3://${bucket}/p/`, '--db', db, '--unencrypted'], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', HOME: home, ...env } });
  assert.is(r.status, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`^error: this machine's clock is (599|600|601) s ahead of s3://${bucket}/p/'s \\(`));
  // Past S3's own 15 minutes the server refuses every request: said at once, exit 2, not
  // "shipping failed" tried again for ever (an attack run).
  const far = spawnSync('faketime', ['-f', '+20m', process.execPath, CLI, 'replicate', `s3://${bucket}/p/`, '--db', db, '--unencrypted'], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', HOME: home, ...env } });
  assert.is(far.status, 2, far.stderr);
  assert.match(far.stderr, /^error: the S3 server refused the request because this machine's clock and the server's differ by 1[12]\d\d s \(this machine is ahead\)/);
  assert.equal(await openStore(`s3://${bucket}/p/`, { env: env }).list(), []);
});

// libfaketime's clock read from a file at each call (the monotonic clock left alone): a step
// of the wall clock while the replicator runs, as NTP or an operator makes it.
const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1'].find((f) => fs.existsSync(f));

test('blufio backup into an S3 set from a machine 10 minutes ahead or behind (faketime): named by the store\'s clock, said, exit 0', async () => {
  if (!faketime()) return skip('faketime is not installed (apt-get install faketime)');
  const { bucket, db, home, env } = await s3Sample();
  for (const [skew, said] of [['+10m', 'ahead of'], ['-10m', 'behind']]) {
    const before = Date.now();
    const r = spawnSync('faketime', ['-f', skew, process.execPath, CLI, 'backup', `s3://${bucket}/p/`, '--db', db, '--unencrypted', '--full'], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', HOME: home, ...env } });
    const after = Date.now();
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`warning: this machine's clock is (59\\d|60\\d) s ${said} s3://${bucket}/p/'s .*this backup is named by the store's clock`));
    const names = (await openStore(`s3://${bucket}/p/`, { env: env }).list()).map((f) => f.name).filter((n) => n.endsWith('.db.gz'));
    const m = /-(\d{8}T\d{6})Z(?:-\d+)?\.db\.gz$/.exec(names.sort().at(-1)!)!;
    const at = Date.parse(`${m[1].slice(0, 4)}-${m[1].slice(4, 6)}-${m[1].slice(6, 8)}T${m[1].slice(9, 11)}:${m[1].slice(11, 13)}:${m[1].slice(13, 15)}Z`);
    // Never before the state (the store's time is to the second), a few seconds after it at most.
    assert.ok(at >= before - 1000 && at <= after + 4000, `${names.join(', ')}: named ${new Date(at).toISOString()}, taken between ${new Date(before).toISOString()} and ${new Date(after).toISOString()}`);
  }
});

test('a wall clock stepped 10 minutes ahead while replicating: nothing stamped by it is shipped, and the replicator stops with exit 2 saying so', async () => {
  if (!LIBFAKETIME) return skip('libfaketime is not installed (apt-get install faketime)');
  const { d, set, db, sql } = folderSample('CREATE TABLE t(x);');
  const ft = path.join(d, 'ft');
  fs.writeFileSync(ft, '+0\n');
  const child = spawn(process.execPath, [CLI, 'replicate', `${set}/`, '--db', db, '--interval', '0.2', '--json'], {
    env: { PATH: process.env.PATH ?? '', HOME: d, LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: ft, FAKETIME_NO_CACHE: '1', DONT_FAKE_MONOTONIC: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  for (let i = 0; i < 100 && !err.includes('"event":"started"'); i++) await new Promise((r) => setTimeout(r, 100));
  sql('INSERT INTO t VALUES (1);');
  for (let i = 0; i < 50 && !err.includes('"event":"shipped"'); i++) await new Promise((r) => setTimeout(r, 100));
  fs.writeFileSync(ft, '+10m\n');
  const stepped = Date.now();
  for (let i = 0; i < 5; i++) {
    sql(`INSERT INTO t VALUES (${i + 2});`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 20_000))]);
  if (code === 'still running') child.kill('SIGKILL');
  assert.is(code, 2, err);
  assert.match(err, '"event":"clock","steppedMs":');
  assert.match(err, /this machine's clock stepped 600 s ahead while replicating, and it is now 60[01] s ahead of .*nothing stamped by it was shipped/);
  // Every time in the set is from before the step (or within the second a base is rounded to).
  const times = fs.readdirSync(set).flatMap((f) => [...f.matchAll(/(\d{8}T\d{6,9})Z/g)].map((m) => Date.parse(`${m[1].slice(0, 4)}-${m[1].slice(4, 6)}-${m[1].slice(6, 8)}T${m[1].slice(9, 11)}:${m[1].slice(11, 13)}:${m[1].slice(13, 15)}.${m[1].slice(15) || '000'}Z`)));
  assert.ok(times.length > 0);
  for (const t of times) assert.ok(t <= stepped + 1000, `${new Date(t).toISOString()} is after the step at ${new Date(stepped).toISOString()}`);
});

test('a chain is resumed only when the last run of its state directory is known to be over: killed on this boot (resumed), or a lock from another boot with its run still alive in the set (a copy of the state directory elsewhere, or a reboot: a new chain)', async () => {
  const d = tmpdir();
  const set = path.join(d, 'set');
  fs.mkdirSync(set);
  const db = path.join(d, 'blufio.db');
  assert.is(spawnSync('sqlite3', [db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);'], { stdio: 'ignore' }).status, 0);
  const start = async () => {
    const child = spawn(process.execPath, [CLI, 'replicate', `${set}/`, '--db', db, '--interval', '0.2', '--json'], { env: { PATH: process.env.PATH ?? '', HOME: d }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (c) => (err += c));
    for (let i = 0; i < 150 && !err.includes('"event":"shipped"'); i++) await new Promise((r) => setTimeout(r, 100));
    const gone = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await gone;
    const started = JSON.parse(err.split('\n').find((l) => l.includes('"event":"started"'))!);
    return started as { resumed: boolean; base: string };
  };
  const first = await start();
  assert.is(first.resumed, false);
  // Killed on this boot: its lock names a process of this boot that is gone — resumed.
  const again = await start();
  assert.equal([again.resumed, again.base], [true, first.base]);
  const lock = fs.readdirSync(path.join(d, '.local/state/blufio/replicate')).map((x) => path.join(d, '.local/state/blufio/replicate', x, 'lock')).find((f) => fs.existsSync(f))!;
  const held = JSON.parse(fs.readFileSync(lock, 'utf8'));
  assert.is(typeof held.boot, 'string', 'the lock says which boot');
  // The same lock from another boot, its run not stopped cleanly in the set: it may run elsewhere.
  fs.writeFileSync(lock, JSON.stringify({ ...held, boot: 'another-boot' }));
  const copy = await start();
  assert.is(copy.resumed, false);
  assert.is.not(copy.base, first.base);
});

/**
 * A replicator started on `set` and `db` with HOME `home` (its state directory there; --json events
 * collected); `until(text)` waits for an event, `exit()` for its end (null: still running after 30 s).
 */
function startReplicator(set: string, db: string, home: string) {
  const child = spawn(process.execPath, [CLI, 'replicate', `${set}/`, '--db', db, '--interval', '0.2', '--json'], { env: { PATH: process.env.PATH ?? '', HOME: home }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return {
    get err() {
      return err;
    },
    until: async (text: string, after = 0) => {
      for (let i = 0; i < 300 && !err.slice(after).includes(text); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(err.slice(after).includes(text), `no ${text} in:\n${err}`);
    },
    exit: async () => {
      const code = await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 30_000))]);
      if (code === 'running') {
        child.kill('SIGKILL');
        return null;
      }
      return code;
    },
    kill: () => child.kill('SIGKILL'),
  };
}

test('a contest with a copy of the state directory, end to end: the original makes its next base a full backup at once and takes out the chains the copy said it started (a copy killed before it stood down); a copy that stands down takes out its segments, and its base only when no differential was made on it', async () => {
  const { d, set, db, sql } = folderSample('CREATE TABLE t(x); INSERT INTO t VALUES (0);');
  const alive = path.join(set, aliveName('blufio', 1));
  const sign = () => JSON.parse(fs.readFileSync(alive, 'utf8')) as { id: string; run: string; knew: string[]; runStarted: string; bases: string[] };
  const segmentsOn = (base: string) => fs.readdirSync(set).filter((f) => f.startsWith(`${base.replace(/\.db\.gz$/, '')}.seg`));
  let row = 1;
  const writeUntil = async (done: () => Promise<unknown>) => {
    let over = false;
    const p = done().finally(() => (over = true));
    while (!over) {
      sql(`INSERT INTO t VALUES (${row++});`);
      await new Promise((r) => setTimeout(r, 150));
    }
    return p;
  };

  // The original. A younger copy's sign of life (it knew the original's run) appears: the
  // original holds on and its new base, made at once, is a full backup (a differential would
  // be made on the newest full, which may be the copy's: taken out when it stands down).
  const orig = startReplicator(set, db, d);
  await orig.until('"event":"shipped"');
  const mine = sign();
  const firstBase = JSON.parse(orig.err.split('\n').find((l) => l.includes('"event":"started"'))!).base as string;
  const mark = orig.err.length;
  // The copy's chain, as it said it in its sign of life (killed before it could stand down):
  // taken out by the original — never the original's own base, even when named there.
  const t = firstBase.slice('blufio-'.length, 'blufio-'.length + 16);
  const copyBase = `blufio-${t}-7.db.gz`;
  const copySegment = `blufio-${t}-7.seg00000001.${t.slice(0, -1)}500Z-${t.slice(0, -1)}900Z.log.gz`;
  for (const f of [copyBase, `${copyBase}.pages`, copySegment]) fs.writeFileSync(path.join(set, f), 'the copy\'s\n');
  fs.writeFileSync(alive, JSON.stringify({ id: mine.id, seen: new Date().toISOString(), run: '9999999999999999', runStarted: new Date().toISOString(), knew: [mine.run], bases: [copyBase, firstBase] }));
  await writeUntil(() => orig.until('"event":"new-base"', mark));
  await orig.until('"removed":["', mark);
  for (const f of [copyBase, `${copyBase}.pages`, copySegment]) assert.not.ok(fs.existsSync(path.join(set, f)), `${f} is taken out`);
  assert.ok(fs.existsSync(path.join(set, firstBase)), 'its own base stays');
  assert.ok(fs.readdirSync(set).some((f) => f.startsWith(`${firstBase.replace(/\.db\.gz$/, '')}.seg`)), 'and its own chain');
  assert.ok(sign().bases.includes(firstBase), 'its sign of life names its own chains');
  const newBase = JSON.parse(orig.err.slice(mark).split('\n').find((l) => l.includes('"event":"new-base"'))!).base as string;
  assert.match(newBase, /^blufio-\d{8}T\d{6}Z(-\d+)?\.db\.gz$/, 'a full backup');
  assert.is.not(newBase, firstBase);
  assert.is(sign().run, mine.run, 'the original said it is alive again');
  const stop = orig.exit();
  orig.kill();
  await stop;

  // Killed before its later passes, the original's next run takes out what its state directory
  // says was left (an attack run's copy base, put after the first pass, stayed for good).
  const state0 = path.join(d, '.local/state/blufio/replicate');
  const leftBase = `blufio-${t}-8.db.gz`;
  const leftSegment = `blufio-${t}-8.seg00000001.${t.slice(0, -1)}500Z-${t.slice(0, -1)}900Z.log.gz`;
  for (const f of [leftBase, leftSegment]) fs.writeFileSync(path.join(set, f), 'the copy\'s\n');
  fs.writeFileSync(path.join(state0, fs.readdirSync(state0)[0], 'beaten.json'), JSON.stringify([leftBase]));
  const again = startReplicator(set, db, d);
  await writeUntil(() => again.until('"removed":["'));
  for (const f of [leftBase, leftSegment]) assert.not.ok(fs.existsSync(path.join(set, f)), `${f} is taken out`);
  const last = sign();
  const stop2 = again.exit();
  again.kill();
  await stop2;

  // The copy: its state directory knew run last.run (as one copied while that run went on),
  // whose sign of life then appears — the older run. Where a differential was made on the
  // copy's base meanwhile, the base stays.
  const state = path.join(d, '.local/state/blufio/replicate');
  const sd = path.join(state, fs.readdirSync(state)[0]);
  for (const withDiff of [true, false]) {
    fs.rmSync(set, { recursive: true });
    fs.mkdirSync(set);
    fs.rmSync(path.join(sd, 'chain.json'));
    const h = startReplicator(set, db, d);
    await h.until('"event":"shipped"');
    const base = (JSON.parse(h.err.split('\n').find((l) => l.includes('"event":"started"'))!) as { base: string }).base;
    const copy = sign();
    assert.ok(copy.knew.includes(last.run), 'its state directory knew the older run');
    if (withDiff) {
      sql('INSERT INTO t VALUES (-1);');
      const b = spawnSync(process.execPath, [CLI, 'backup', `${set}/`, '--db', db, '--json'], { env: { PATH: process.env.PATH ?? '', HOME: d }, encoding: 'utf8' });
      assert.is(b.status, 0, b.stderr);
      assert.match(JSON.parse(b.stdout).path, `.from-${base.replace(/^blufio-/, '').replace(/\.db\.gz$/, '')}.diff`);
    }
    fs.writeFileSync(alive, JSON.stringify({ id: copy.id, seen: new Date().toISOString(), run: last.run, runStarted: '2026-01-01T00:00:00.000Z', knew: [] }));
    const code = await writeUntil(() => h.exit());
    assert.is(code, 3, h.err);
    assert.match(h.err, 'a copy of this state directory runs elsewhere');
    assert.equal(segmentsOn(base), [], 'its segments are taken out');
    assert.is(fs.existsSync(path.join(set, base)), withDiff, withDiff ? 'a differential was made on it: kept' : 'taken out');
    if (withDiff) {
      // The set stays whole: the differential's base is there, no segment without its base.
      const c = spawnSync(process.execPath, [CLI, 'check', `${set}/`], { env: { PATH: process.env.PATH ?? '', HOME: d }, encoding: 'utf8' });
      assert.is(c.status, 0, c.stdout + c.stderr);
    } else {
      assert.equal(fs.readdirSync(set).filter((f) => !f.includes('.lease') && f !== 'blufio.series'), [], 'nothing of the copy is left');
    }
  }
});

test('a replicator id is made once per state directory and kept', () => {
  const d = tmpdir();
  const id = replicatorId(d);
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.is(replicatorId(d), id);
  assert.is.not(replicatorId(tmpdir()), id);
  fs.writeFileSync(path.join(d, 'id'), 'junk\n');
  assert.match(replicatorId(d), /^[0-9a-f]{16}$/);
});

test.run();
