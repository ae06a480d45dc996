/**
 * One replicator per series of a set, across machines: a lease kept in the set itself.
 *
 * The lock files (replicator.ts) keep a second replicator of the same database off on one
 * machine. Two machines — a server moved to a new one while the old still runs, a staging copy
 * given production's bucket — would each start a chain of their own, and a restore would take
 * whichever chain has the newest base at the time asked for: one database's states at one
 * moment, the other's at the next. The lease refuses the second one:
 *
 *   <stem>.lease<k, 8 digits>        the k-th holder's claim, published if absent (the store's
 *                                    own exclusive put): {"id", "started"}; the newest k holds.
 *   <stem>.lease<k>.alive            its holder's last sign of life, replaced hourly:
 *                                    {"id", "seen"[, "ended": true]} (ended: stopped cleanly).
 *
 * A replicator's id is random, kept in its state directory (status.json shows it): the same
 * replicator started again (after a kill -9, a reboot) holds its lease on. Another one is
 * refused while the lease is alive; it takes the next number when the holder ended cleanly, when
 * no sign of life came for three hours (a lost machine), or when told to (--take-over). A holder
 * looks for the next number before it ships, every 10 s at most (one HEAD): taken over, it
 * stands down before its next segment. A take-over's chain starts on a base of its own, so that
 * no restore mixes the two: each chain is one database's.
 *
 * Costs: an hourly replace (24 PUTs a day, idle or not) and, while shipping, a HEAD every 10 s
 * (8,640 a day: a GET-class request, not a PUT).
 * Nothing in it is secret (no host name, no path): the ids are random.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import type { Store, StoredFile } from '../storage/store.ts';

/** A sign of life this often. */
export const LEASE_RENEW_MS = 3_600_000;
/** No sign of life for this long: the holder is taken to be gone. */
export const LEASE_LAPSE_MS = 3 * LEASE_RENEW_MS;
/** While shipping, whether the lease was taken over is looked at this often at most. */
export const LEASE_CHECK_MS = 10_000;

const pad = (k: number) => String(k).padStart(8, '0');
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The lease names of `stem` in a listing: the newest claim's number (0: none). */
export function newestLease(files: StoredFile[], stem: string): number {
  const re = new RegExp(`^${escape(stem)}\\.lease(\\d{8})$`);
  let k = 0;
  for (const f of files) {
    const m = re.exec(f.name);
    if (m) k = Math.max(k, Number(m[1]));
  }
  return k;
}

export const leaseName = (stem: string, k: number) => `${stem}.lease${pad(k)}`;
export const aliveName = (stem: string, k: number) => `${leaseName(stem, k)}.alive`;

/** This state directory's replicator id (made once). */
export function replicatorId(dir: string): string {
  const file = path.join(dir, 'id');
  try {
    const id = fs.readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{16}$/.test(id)) return id;
  } catch {
    // none yet
  }
  const id = randomBytes(8).toString('hex');
  fs.writeFileSync(`${file}.tmp`, `${id}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
  return id;
}

/** Who holds lease k, as its claim and sign of life say. */
export interface Holder {
  k: number;
  /** Null when the claim cannot be read (not one of ours). */
  id: string | null;
  started: string | null;
  /** The last sign of life (ms; the claim's start when none came yet), null when unknown. */
  seen: number | null;
  ended: boolean;
}

export type Took = 'first' | 'held' | 'ended' | 'lapsed' | 'forced';

export class Lease {
  private renewedAt = -Infinity;
  private checkedAt = performance.now();
  private lostTo: Holder | null = null;
  private requests = 0;

  constructor(private store: Store, private stem: string, readonly id: string, readonly k: number, private scratch: string, readonly took: Took, readonly before: Holder | null) {}

  /** The same lease, its requests through `store` from now on. */
  on(store: Store): Lease {
    this.store = store;
    return this;
  }

  /** Taken over (found by takenOver()). */
  get lost(): boolean {
    return this.lostTo !== null;
  }

  /** The requests made since the last call (for the status file's count). */
  takeRequests(): number {
    const n = this.requests;
    this.requests = 0;
    return n;
  }

  /** Says it is alive (replaces its sign of life); ended: stopped cleanly, free for the next one. */
  async renew(signal?: AbortSignal, ended = false): Promise<void> {
    const seen = new Date().toISOString();
    await this.write(aliveName(this.stem, this.k), { id: this.id, seen, ...(ended ? { ended: true } : {}) }, signal, true);
    this.renewedAt = performance.now();
  }

  /** Whether a sign of life is due (hourly, on the monotonic clock: a wall clock stepped back must not hold it off). */
  renewDue(): boolean {
    return performance.now() - this.renewedAt >= LEASE_RENEW_MS;
  }

  /** Whether the next number was claimed (one HEAD, every 10 s at most): who took it, or null. */
  async takenOver(force = false, signal?: AbortSignal): Promise<Holder | null> {
    if (this.lostTo) return this.lostTo;
    if (!force && performance.now() - this.checkedAt < LEASE_CHECK_MS) return null;
    // A store that hangs must not hold the segment behind this look for ever (a stat takes no
    // signal of its own): given up on with the signal, the request left to its fate.
    const next = await bounded(this.store.stat(leaseName(this.stem, this.k + 1)), signal, this.store.where(''));
    this.requests += 1;
    this.checkedAt = performance.now();
    if (!next) return null;
    this.lostTo = await readHolder(this.store, this.stem, this.k + 1).catch(() => ({ k: this.k + 1, id: null, started: null, seen: null, ended: false }));
    return this.lostTo;
  }

  /** The error a holder that was taken over stands down with. */
  standDown(by: Holder, lastShipped: string | null): BlufioError {
    return new BlufioError('E_IN_USE',
      `another replicator${by.id ? ` (${by.id})` : ''} took over ${this.store.where('')} (${this.stem})${by.started ? ` at ${by.started}` : ''}: this one (${this.id}) stood down${lastShipped ? `; what it shipped stays restorable up to ${lastShipped}` : ''}`,
      'run one replicator per set and database; to move back here, stop the other one, then start this one (with --take-over if it cannot be stopped)');
  }

  private async write(name: string, value: object, signal: AbortSignal | undefined, replace: boolean): Promise<boolean> {
    fs.writeFileSync(this.scratch, `${JSON.stringify(value)}\n`, { mode: 0o600 });
    try {
      const put = await this.store.put(name, { file: this.scratch }, { signal, replace });
      this.requests += 1;
      return put.published;
    } finally {
      fs.rmSync(this.scratch, { force: true });
    }
  }

  /** Claims number k (published only if no one else has it). */
  static async claim(store: Store, stem: string, id: string, k: number, scratch: string, signal?: AbortSignal): Promise<boolean> {
    const l = new Lease(store, stem, id, k, scratch, 'first', null);
    // Of two claims at once the store may refuse both (its exclusive put gives way on both
    // sides): tried again while the name stays free.
    for (let tries = 0; tries < 4; tries++) {
      if (await l.write(leaseName(stem, k), { id, started: new Date().toISOString() }, signal, false)) return true;
      if (await store.stat(leaseName(stem, k))) return false;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 300));
    }
    return false;
  }
}

/** `p`, or a rejection when `signal` aborts first. */
function bounded<T>(p: Promise<T>, signal: AbortSignal | undefined, where: string): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof BlufioError ? signal.reason : new BlufioError('E_IO', `${where} did not answer whether the lease was taken over`, 'it is tried again'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Lease k's holder, from its claim and its sign of life. */
export async function readHolder(store: Store, stem: string, k: number): Promise<Holder> {
  const read = async (name: string): Promise<Record<string, unknown> | null> => {
    try {
      const v = JSON.parse((await store.peek(name, 4096)).toString('utf8'));
      return v && typeof v === 'object' ? v : null;
    } catch (e) {
      if (e instanceof BlufioError && e.code !== 'E_SOURCE_MISSING' && e.code !== 'E_CORRUPT') throw e;
      return null;
    }
  };
  const claim = await read(leaseName(stem, k));
  const id = typeof claim?.id === 'string' && /^[0-9a-f]{16}$/.test(claim.id) ? claim.id : null;
  const started = typeof claim?.started === 'string' && !Number.isNaN(Date.parse(claim.started)) ? claim.started : null;
  const alive = id ? await read(aliveName(stem, k)) : null;
  const mine = alive && alive.id === id;
  const seenAt = mine && typeof alive.seen === 'string' ? Date.parse(alive.seen) : NaN;
  const seen = Math.max(Number.isNaN(seenAt) ? -Infinity : seenAt, started ? Date.parse(started) : -Infinity);
  return { k, id, started, seen: Number.isFinite(seen) ? seen : null, ended: !!(mine && alive.ended === true) };
}

/**
 * Takes the lease of `stem` for replicator `id` (refused with E_IN_USE while another holds it),
 * given the set's listing. `continues`: the lease is the one this replicator's chain was made
 * under, so that the chain may be resumed.
 */
export async function takeLease(store: Store, files: StoredFile[], stem: string, id: string, scratch: string, opts: { takeOver?: boolean; signal?: AbortSignal } = {}): Promise<Lease> {
  for (let tries = 0; ; tries++) {
    const k = tries === 0 ? newestLease(files, stem) : newestLease(await store.list(), stem);
    let took: Took = 'first';
    let before: Holder | null = null;
    if (k > 0) {
      before = await readHolder(store, stem, k);
      if (before.id === id) {
        const l = new Lease(store, stem, id, k, scratch, 'held', before);
        await l.renew(opts.signal);
        return l;
      }
      const lapsed = before.seen !== null && Date.now() - before.seen > LEASE_LAPSE_MS;
      took = before.ended ? 'ended' : lapsed ? 'lapsed' : 'forced';
      if (took === 'forced' && !opts.takeOver) {
        const seen = before.seen !== null ? new Date(before.seen).toISOString() : null;
        throw new BlufioError('E_IN_USE',
          before.id
            ? `${store.where('')} (${stem}) is replicated by another blufio replicate (${before.id}, started ${before.started}, last seen ${seen}): a second one would start a chain of its own`
            : `${store.where(leaseName(stem, k))} is not a lease blufio can read: ${store.where('')} (${stem}) may be replicated by another program`,
          `run one replicator per set and database: each one's id is in its status.json. If that one is gone for good (its machine lost), start this one with --take-over: the other stands down before its next segment if it still runs${before.id ? '; a lease with no sign of life for 3 hours also lapses by itself' : ''}`);
      }
    }
    if (await Lease.claim(store, stem, id, k + 1, scratch, opts.signal)) {
      const l = new Lease(store, stem, id, k + 1, scratch, took, before);
      await l.renew(opts.signal);
      // The claims before stay (two small objects a take-over): a holder that was taken over
      // finds the next number whenever it looks.
      return l;
    }
    // Another replicator claimed the same number at the same moment: looked at again.
    if (tries >= 2) throw new BlufioError('E_IN_USE', `another blufio replicate claimed ${store.where('')} (${stem}) at the same moment`, 'run one replicator per set and database; stop the other one first');
  }
}
