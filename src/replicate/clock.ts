/**
 * The replicator's clock, checked before it takes a set's lease.
 *
 * Every time in a set is a replicator's wall clock: a base's name, a segment's commit times. A
 * restore `--at T` and the newest restore pick by those times, so a replicator whose clock is off
 * puts its states at the wrong place among the others':
 * - behind: its new chain sorts before what is already there, and a restore of a later time takes
 *   the older chain (another machine's database, or a state before a gap);
 * - ahead: its times are in the future; a restore of "now" misses its newest states, and the next
 *   replicator with a right clock is refused as "behind" until real time catches up.
 * A machine cannot tell from its own clock that it is wrong, so it is compared with the store's
 * (Store.clock(): S3's Date header; a folder's file times, the file server's on a network share)
 * and refused when they differ by more than CLOCK_SLACK_MS, before anything is written to the set.
 * The lease's lapse is read off the same store clock (lease.ts).
 */
import { BlufioError } from '../errors.ts';
import { logsOf } from '../sets/logs.ts';
import { parseName } from '../sets/names.ts';
import { CLOCK_SLACK_MS, clockOffset, type Store, type StoredFile } from '../storage/store.ts';
import { bounded } from './lease.ts';

/** How far this machine's clock may be from the store's (storage/store.ts). */
export { CLOCK_SLACK_MS };
/**
 * How far the set's newest time may be ahead of this machine's clock: two clocks each allowed
 * CLOCK_SLACK_MS off the store's (the one that wrote it fast, this one slow), and a base's name
 * rounded up to the second (an attack run's taker, 2 s slow, was refused by a holder 4.5 s fast).
 */
export const SET_AHEAD_SLACK_MS = 2 * CLOCK_SLACK_MS + 1_000;

/**
 * Refuses (E_CLOCK, exit 2) a start whose clock differs from the store's by more than CLOCK_SLACK_MS.
 * Whether the store's clock was read (a store that shows none cannot be checked against).
 */
export async function refuseClockOff(store: Store, now: () => number = Date.now): Promise<boolean> {
  const off = await clockOffset(store, now, CLOCK_SLACK_MS);
  if (off === null) return false;
  // An answer slower than the slack says nothing about the clock (it may have stepped meanwhile:
  // an attack run's paused store answered after 42 s, and a right clock was called 279 s ahead).
  if ('slow' in off) throw new BlufioError('E_IO', `${store.where('')} took ${Math.round(off.slow / 1000)} s to tell its time: too long to check this machine's clock against`, 'it is tried again');
  const { ahead, behind, t0, t1, theirs } = off;
  // Said as the middle of what it can be (the bound decides: "5 s ahead" read oddly past 5 s).
  const by = Math.round(Math.abs((t0 + t1) / 2 - (theirs + 500)) / 1000);
  const fix = 'set this machine\'s clock right (timedatectl set-ntp true, or chronyd), then start blufio replicate again; if the store\'s clock is the wrong one, have it set right';
  if (ahead > CLOCK_SLACK_MS) {
    throw new BlufioError('E_CLOCK', `this machine's clock is ${by} s ahead of ${store.where('')}'s (${new Date(t0).toISOString()} here, ${new Date(theirs).toISOString()} there): its times would be in the future, a restore of "now" would miss them, and a replicator with a right clock would be refused after it`, fix);
  }
  if (behind > CLOCK_SLACK_MS) {
    throw new BlufioError('E_CLOCK', `this machine's clock is ${by} s behind ${store.where('')}'s (${new Date(t1).toISOString()} here, ${new Date(theirs).toISOString()} there): a chain started now would sort before newer states, and a restore of a later time would take an older chain`, fix);
  }
  return true;
}

/**
 * A new chain's times must come after every chain of its series in the set: refused (E_CLOCK)
 * when the set's newest time is ahead of this machine's clock by more than CLOCK_SLACK_MS.
 * `checked`: this machine's clock was found to agree with the store's (then the set's time is
 * the wrong one: written by a machine whose clock ran fast).
 */
export function refuseClockBehind(files: StoredFile[], stem: string, set: string, checked: boolean, now = Date.now()): void {
  let newest = -Infinity;
  let what = '';
  // Chains only: a restore takes the chain of the newest base that has steps by the time asked,
  // so a backup with no chain (`blufio backup` from a machine whose clock ran fast) never shadows
  // a new chain, and does not hold replication off (an attack run's backup an hour fast did).
  const logs = logsOf(files, stem);
  const bases = new Set(logs.map((l) => l.base));
  for (const f of files) {
    const b = parseName(f.name);
    if (b && b.stem === stem && bases.has(f.name) && b.time.getTime() > newest) {
      newest = b.time.getTime();
      what = f.name;
    }
  }
  for (const l of logs) {
    if (l.to.getTime() > newest) {
      newest = l.to.getTime();
      what = l.name;
    }
  }
  const behind = newest - now;
  if (behind <= SET_AHEAD_SLACK_MS) return;
  const at = new Date(newest).toISOString();
  if (checked) {
    throw new BlufioError('E_CLOCK', `${set} holds times ${Math.round(behind / 1000)} s in the future (${what}, up to ${at}) by this machine's clock and the store's, which agree: a clock that ran fast wrote them (another machine's, or this one's before it was set right); a chain started now would sort before them, and a restore of a time until then would take the older chain`,
      `if that clock is another machine's, set it right; then start blufio replicate again after ${at} (a service restarted on failure starts then by itself), or move the files of "${stem}" named after now out of the set (kept elsewhere), or replicate into another set`);
  }
  throw new BlufioError('E_CLOCK', `this machine's clock is ${Math.round(behind / 1000)} s behind the newest time in ${set} (${what}): a chain started now would sort before it, and a restore of a later time would take the older chain`,
    'set the clock right (NTP), then start blufio replicate again');
}

/**
 * While a replicator runs: whether the wall clock stepped (moved more than CLOCK_SLACK_MS away
 * from where the monotonic clock says it should be since it was last found right). Step times
 * are the wall clock (live-replica.ts), so a step ahead would ship states stamped in the future
 * (an attack run: a clock set 10 minutes ahead, then back, left the newest restore 10 minutes
 * stale, said nowhere). A step is not shipped past until the store's clock says which is right:
 * the wall clock (a paused VM resumed, NTP correcting a slow start) — then it is right again from
 * here — or not, and the replicator stops (E_CLOCK, exit 2) before shipping a step stamped by it.
 */
export class WallWatch {
  private wall0 = Date.now();
  private mono0 = performance.now();

  /** How far (ms) the wall clock is from where it should be: 0 within CLOCK_SLACK_MS. */
  drift(): number {
    const d = Date.now() - (this.wall0 + (performance.now() - this.mono0));
    return Math.abs(d) > CLOCK_SLACK_MS ? d : 0;
  }

  /** The wall clock found right (by the store's): measured from here. */
  settle(): void {
    this.wall0 = Date.now();
    this.mono0 = performance.now();
  }
}

/**
 * After WallWatch saw a step: the store's clock decides (refuseClockOff(): E_CLOCK when this
 * machine's is now off it). Said with how far it stepped.
 */
export async function confirmStep(store: Store, drift: number): Promise<void> {
  try {
    // Bounded: a store that hangs must not hold a stop (which waits for this answer) for ever.
    await bounded(refuseClockOff(store), AbortSignal.timeout(10_000), store.where(''), 'its time within 10 s');
  } catch (e) {
    if (!(e instanceof BlufioError) || e.code !== 'E_CLOCK') throw e;
    throw new BlufioError('E_CLOCK', `this machine's clock stepped ${Math.round(Math.abs(drift) / 1000)} s ${drift > 0 ? 'ahead' : 'back'} while replicating, and ${e.message.replace(/^this machine's clock is /, 'it is now ')}; nothing stamped by it was shipped`, e.hint);
  }
}
