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
import type { Store, StoredFile } from '../storage/store.ts';

/**
 * How far this machine's clock may be from the store's, and the set's newest time from this
 * machine's, before a start is refused. NTP keeps machines within milliseconds; S3 gives its time
 * to the second (and refuses requests 15 minutes off); a base is named after its time rounded up
 * to the second.
 */
export const CLOCK_SLACK_MS = 5_000;
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
  const t0 = now();
  const theirs = await store.clock();
  const t1 = now();
  if (theirs === null) return false;
  // The store's time is to the second at worst (truncated), read between t0 and t1: the true
  // difference (this machine's minus the store's) lies in [t0 - theirs - 1000, t1 - theirs].
  const ahead = t0 - (theirs + 1000);
  const behind = theirs - t1;
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
 * A new chain's times must come after everything of its series in the set: refused (E_CLOCK)
 * when the set's newest time is ahead of this machine's clock by more than CLOCK_SLACK_MS.
 * `checked`: this machine's clock was found to agree with the store's (then the set's time is
 * the wrong one: written by a machine whose clock ran fast).
 */
export function refuseClockBehind(files: StoredFile[], stem: string, set: string, checked: boolean, now = Date.now()): void {
  let newest = -Infinity;
  let what = '';
  for (const f of files) {
    const b = parseName(f.name);
    if (b && b.stem === stem && b.time.getTime() > newest) {
      newest = b.time.getTime();
      what = f.name;
    }
  }
  for (const l of logsOf(files, stem)) {
    if (l.to.getTime() > newest) {
      newest = l.to.getTime();
      what = l.name;
    }
  }
  const behind = newest - now;
  if (behind <= SET_AHEAD_SLACK_MS) return;
  const at = new Date(newest).toISOString();
  if (checked) {
    throw new BlufioError('E_CLOCK', `${set} holds times ${Math.round(behind / 1000)} s in the future (${what}, up to ${at}) by this machine's clock and the store's, which agree: a machine whose clock ran fast wrote them; a chain started now would sort before them, and a restore of a time until then would take the older chain`,
      `set that machine's clock right; then start blufio replicate again after ${at} (a service restarted on failure starts then by itself), or move the files of "${stem}" named after now out of the set (kept elsewhere), or replicate into another set`);
  }
  throw new BlufioError('E_CLOCK', `this machine's clock is ${Math.round(behind / 1000)} s behind the newest time in ${set} (${what}): a chain started now would sort before it, and a restore of a later time would take the older chain`,
    'set the clock right (NTP), then start blufio replicate again');
}
