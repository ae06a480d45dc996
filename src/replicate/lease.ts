/**
 * One replicator per series of a set, across machines: a lease kept in the set itself.
 *
 * The lock files (replicator.ts) keep a second replicator of the same database off on one
 * machine. Two machines — a server moved to a new one while the old still runs, a staging copy
 * given production's bucket — would each start a chain of their own, and a restore would take
 * whichever chain has the newest base at the time asked for: one database's states at one
 * moment, the other's at the next. The lease refuses the second one:
 *
 *   <stem>.lease<k, 8 digits or more>  the k-th holder's claim, published if absent (the
 *                                      store's own exclusive put): {"id", "started"}; or a
 *                                      fence {"id", "fence": c} (below).
 *   <stem>.lease<k>.alive              its holder's last sign of life, replaced hourly:
 *                                      {"id", "seen", "run", "runStarted", "knew", "bases"
 *                                      [, "ended": true]} (ended: stopped cleanly; run, knew,
 *                                      bases: below).
 *
 * A replicator's id is random, kept in its state directory (status.json shows it): the same
 * replicator started again (after a kill -9, a reboot) holds its lease on. A holder j is
 * superseded once a claim j+1 exists; every holder not superseded, not ended and with a sign of
 * life in the last three hours blocks a start (refused, exit 3) unless --take-over. A start
 * claims the newest number + 1 and *fences* every older holder not superseded yet (puts a claim
 * j+1 for it, {"fence": c}), so that whatever the numbering — gaps, a stale higher lease copied
 * in, a claim deleted — every live holder finds its successor where it looks. A holder looks
 * before it ships, every 10 s at most: a HEAD of k+1 and a GET of its own claim (gone: put back
 * if absent; another's: stood down). Taken over, it stands down before its next segment. A
 * take-over's chain starts on a base of its own, its first step stamped with the base's time
 * (replicator.ts), so that no restore at or after that base takes the old holder's chain.
 *
 * When a holder was last alive is read off the store's own clock (the time the store gives its
 * sign of life), not off the time the holder wrote in it: a holder whose clock runs hours fast
 * or slow would otherwise never lapse, or lapse at once. The starting machine's clock is checked
 * against the store's before anything is taken (clock.ts), so the two compare.
 *
 * Each run writes its token in the sign of life (with the earlier runs' its state directory knew)
 * and the state directory keeps the tokens it wrote: a live token it never wrote is a copy of the
 * state directory running elsewhere
 * (refused at start; met while running — at a look while shipping, or at the hourly sign of
 * life — the younger run stands down). Each run names in its sign of life the bases it started
 * chains on ("bases"), before the first segment on each: the younger run takes its chains out
 * of the set when it stands down, and the older one takes out those it was told of when it
 * overrules the younger (which may have been killed before it could stand down).
 *
 * Costs: an hourly look and replace (24 GETs and 24 PUTs a day, idle or not) and, while
 * shipping, three GET-class requests every 10 s (25,920 a day, none of them a PUT or a LIST).
 * Nothing in it is secret (no host name, no path): the ids are random.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import { parseName } from '../sets/names.ts';
import type { Store, StoredFile } from '../storage/store.ts';

/** A sign of life this often. */
export const LEASE_RENEW_MS = 3_600_000;
/** No sign of life for this long: the holder is taken to be gone. */
export const LEASE_LAPSE_MS = 3 * LEASE_RENEW_MS;
/** While shipping, whether the lease was taken over is looked at this often at most. */
export const LEASE_CHECK_MS = 10_000;

const pad = (k: number) => String(k).padStart(8, '0');
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const ID_RE = /^[0-9a-f]{16}$/;
/** A run's token (newRun()). */
const TOKEN_RE = /^[0-9a-f]{16}$/;

export const leaseName = (stem: string, k: number) => `${stem}.lease${pad(k)}`;
export const aliveName = (stem: string, k: number) => `${leaseName(stem, k)}.alive`;

/** The lease numbers of `stem` in a listing: those with a claim, and those with a sign of life. */
export function leaseNumbers(files: StoredFile[], stem: string): { claims: Set<number>; all: number[] } {
  const re = new RegExp(`^${escape(stem)}\\.lease(\\d{8,})(\\.alive)?$`);
  const claims = new Set<number>();
  const all = new Set<number>();
  for (const f of files) {
    const m = re.exec(f.name);
    if (!m) continue;
    const k = Number(m[1]);
    if (!Number.isSafeInteger(k) || k < 1) continue;
    all.add(k);
    if (!m[2]) claims.add(k);
  }
  return { claims, all: [...all].sort((a, b) => a - b) };
}

/** The newest lease number of `stem` in a listing (0: none). */
export function newestLease(files: StoredFile[], stem: string): number {
  return leaseNumbers(files, stem).all.at(-1) ?? 0;
}

/** This state directory's replicator id (made once). */
export function replicatorId(dir: string): string {
  const file = path.join(dir, 'id');
  try {
    const id = fs.readFileSync(file, 'utf8').trim();
    if (ID_RE.test(id)) return id;
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
  /** Null when neither its claim nor its sign of life can be read (not one of ours). */
  id: string | null;
  started: string | null;
  /**
   * The last sign of life (ms; the claim's when none came yet), null when unknown: when the store
   * got it (its own clock, from a listing), or else the time its holder wrote in it.
   */
  seen: number | null;
  /** Stopped cleanly, or a fence (a number put in the way of an older holder): holds nothing. */
  ended: boolean;
  /** A fence, not a holder's claim. */
  fence: boolean;
  /** The run of the holder that wrote the sign of life, and when that run started (null: unknown). */
  run: string | null;
  runStarted: string | null;
}

/**
 * One run of a replicator: its token, when it started, and the tokens this state directory
 * wrote last (this one included). A sign of life with this id but a token this state directory
 * never wrote comes from a copy of it running elsewhere.
 */
export interface Run {
  token: string;
  started: string;
  known: string[];
}

/** A new run of the replicator whose state directory is `dir` (its token recorded there before any is written to the set). */
export function newRun(dir: string): Run {
  const file = path.join(dir, 'runs');
  let known: string[] = [];
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (Array.isArray(v)) known = v.filter((x) => typeof x === 'string');
  } catch {
    // none yet
  }
  const token = randomBytes(8).toString('hex');
  // The previous tokens stay known: a run killed after recording its token, before writing it
  // to the set, left the one before it there.
  known = [token, ...known].slice(0, 3);
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(known)}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
  return { token, started: new Date().toISOString(), known };
}

export type Took = 'first' | 'held' | 'ended' | 'lapsed' | 'forced';

/** Whether a holder still holds: not ended, and a sign of life within LEASE_LAPSE_MS. */
const alive = (h: Holder, now: number) => !h.ended && !(h.seen !== null && now - h.seen > LEASE_LAPSE_MS);

export class Lease {
  private renewedAt = -Infinity;
  private checkedAt = performance.now();
  private lostTo: Holder | null = null;
  private requests = 0;
  /** Lost to another run of the same id (a copy of the state directory): said as such. */
  private lostToCopy = false;
  /** How often a younger run of the same id was found and overruled (the replicator then makes a new base). */
  contests = 0;
  /** The bases this run started its chains on, newest first (said in its sign of life: announce()). */
  private bases: string[] = [];
  /**
   * The bases a younger run of this id (a copy of the state directory) said it started chains
   * on, when it was overruled: its chains are taken out of the set (takeOutBeaten()), since a
   * copy killed before it stood down would leave them there for restores to find.
   */
  beaten: string[] = [];
  /** The run token of the last younger run overruled (null: none). */
  beatenRun: string | null = null;
  /** Never taken out: every base this run started a chain on, and every backup in the set when it started. */
  private made = new Set<string>();
  /** The last contest was decided by what the state directories knew (not by the clocks: a guess). */
  private lineage = false;

  constructor(private store: Store, private stem: string, readonly id: string, readonly k: number, private scratch: string, readonly took: Took, readonly before: Holder | null, private started = new Date().toISOString(), readonly run: Run | null = null) {}

  /** The same lease, its requests through `store` from now on. */
  on(store: Store): Lease {
    this.store = store;
    return this;
  }

  /** Taken over (found by takenOver() or renewHourly()). */
  get lost(): boolean {
    return this.lostTo !== null;
  }

  /** Who took it over (null: no one). */
  get takenOverBy(): Holder | null {
    return this.lostTo;
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
    await this.write(aliveName(this.stem, this.k), { id: this.id, seen, ...(this.run ? { run: this.run.token, runStarted: this.run.started, knew: this.run.known.slice(1), bases: this.bases } : {}), ...(ended ? { ended: true } : {}) }, signal, true);
    this.renewedAt = performance.now();
  }

  /** Whether a sign of life is due (hourly, on the monotonic clock: a wall clock stepped back must not hold it off). */
  renewDue(): boolean {
    return performance.now() - this.renewedAt >= LEASE_RENEW_MS;
  }

  /**
   * Whether it was taken over (every 10 s at most; `force`: now): the next number claimed, or its
   * own claim now another's. Its own claim gone (removed by hand, or by a lifecycle rule) is put
   * back if absent. Who took it, or null.
   */
  async takenOver(force = false, signal?: AbortSignal): Promise<Holder | null> {
    if (this.lostTo) return this.lostTo;
    if (!force && performance.now() - this.checkedAt < LEASE_CHECK_MS) return null;
    // A store that hangs must not hold the segment behind this look for ever (a stat takes no
    // signal of its own): given up on with the signal, the request left to its fate.
    const where = this.store.where('');
    const next = await bounded(this.store.stat(leaseName(this.stem, this.k + 1)), signal, where);
    this.requests += 1;
    let by: Holder | null = next ? await bounded(readHolder(this.store, this.stem, this.k + 1), signal, where) : null;
    if (!by) {
      const own = await bounded(readJson(this.store, leaseName(this.stem, this.k)), signal, where);
      this.requests += 1;
      if (own === undefined) {
        if (!(await this.write(leaseName(this.stem, this.k), { id: this.id, started: this.started }, signal, false))) by = await bounded(readHolder(this.store, this.stem, this.k), signal, where);
      } else if (own === null || own.id !== this.id) by = await bounded(readHolder(this.store, this.stem, this.k), signal, where);
      if (by?.id === this.id) by = null;
    }
    if (!by) by = await this.otherRun(signal);
    this.checkedAt = performance.now();
    this.lostTo = by;
    return by;
  }

  /**
   * Another run with this id in the sign of life (a copy of this state directory, started
   * elsewhere)? The older run holds on and says so again (renewed: true); the younger stands
   * down (the older run returned).
   */
  private async otherRun(signal?: AbortSignal): Promise<Holder | null> {
    if (!this.run) return null;
    const sign = await bounded(readJson(this.store, aliveName(this.stem, this.k)), signal, this.store.where(''));
    this.requests += 1;
    if (!sign || sign.id !== this.id || sign.ended === true) return null;
    // Only a run's sign of life as runs write it counts: anything else (hand-edited, cut short)
    // is no evidence of another run, and is replaced by the next sign of life (an attack run's
    // sign without a start made the holder stand down and take its own chain out).
    const theirs = typeof sign.runStarted === 'string' && !Number.isNaN(Date.parse(sign.runStarted)) ? sign.runStarted : null;
    const knew = Array.isArray(sign.knew) && sign.knew.every((t) => typeof t === 'string') ? (sign.knew as string[]) : null;
    if (typeof sign.run !== 'string' || !TOKEN_RE.test(sign.run) || sign.run === this.run.token || theirs === null || knew === null) return null;
    // Which is the copy, by what each state directory knew (never by the clocks: an attack run's
    // copy, started later with its clock 4 s slow, made the original stand down): a state
    // directory copied while a run went on knows that run's token, and the original never knew
    // the copy's. Only when neither knew the other (copied before both started) the earlier
    // start, then the smaller token — a guess, so then neither side takes anything out of the set.
    const theyKnew = knew.includes(this.run.token);
    const iKnew = this.run.known.includes(sign.run);
    this.lineage = iKnew !== theyKnew;
    const older = this.lineage ? iKnew : theirs < this.run.started || (theirs === this.run.started && sign.run < this.run.token);
    if (older) {
      this.lostToCopy = true;
      return { k: this.k, id: this.id, started: theirs, seen: null, ended: false, fence: false, run: sign.run, runStarted: theirs };
    }
    this.contests++;
    this.beatenRun = sign.run;
    // Its chains, as it said them (a run names its last 4), when what the state directories knew
    // decided: only backups of this series named since this run started (the copy knew this run,
    // so it started after it), never one of this run's own.
    if (this.lineage && Array.isArray(sign.bases)) {
      const since = Date.parse(this.run.started) - 5_000;
      for (const b of sign.bases.slice(0, 4)) {
        if (typeof b !== 'string' || this.made.has(b) || this.beaten.includes(b)) continue;
        const p = parseName(b);
        if (p && !p.pages && p.stem === this.stem && p.time.getTime() >= since) this.beaten.push(b);
      }
    }
    await this.renew(signal);
    return null;
  }

  /**
   * Says, before the first segment on it is shipped, that this run started a chain on `base`: a
   * run that overrules this one (this is a copy of its state directory) then knows which chains
   * to take out of the set, even when this one was killed before it could stand down.
   */
  async announce(base: string, signal?: AbortSignal): Promise<void> {
    this.bases = [base, ...this.bases.filter((b) => b !== base)].slice(0, 4);
    this.made.add(base);
    // (A name a copy's sign gave ahead of time is this run's once it names it: an attack run's
    // forged sign listed the next seconds' names, and the original's new base was taken out.)
    this.beaten = this.beaten.filter((b) => b !== base);
    // Another run's sign of life there is settled first (replaced unseen, a contest would be
    // played twice): an older one's makes this run the copy (lost: it stands down).
    const by = await this.otherRun(signal);
    if (by) this.lostTo = by;
    else await this.renew(signal);
  }

  /**
   * Names never to take out as a copy's: what was in the set when this run started (a copy knew
   * this run, so its bases came later; an attack run's forged sign named the chain this run had
   * resumed from its own last run, and it was taken out).
   */
  keep(names: Iterable<string>): void {
    for (const n of names) if (!this.beaten.includes(n)) this.made.add(n);
  }

  /** Whether `name` is one this run must never take out (its own, or there when it started). */
  mine(name: string): boolean {
    return this.made.has(name);
  }

  /**
   * A new base's name, before it is put (`mine`), or after it turned out to be another's: named
   * in the sign of life first, so that a run killed between the put and its first segment leaves
   * no base no one knows of. Found to be the copy meanwhile: stood down (E_IN_USE), nothing put.
   */
  async naming(base: string, mine: boolean, signal?: AbortSignal): Promise<void> {
    if (!mine) {
      this.bases = this.bases.filter((b) => b !== base);
      this.made.delete(base);
      return;
    }
    await this.announce(base, signal);
    if (this.lostTo) throw this.standDown(this.lostTo, null);
  }

  /**
   * The hourly sign of life, after a look at the one there (one GET): an idle holder looks at
   * nothing else, and a copy of its state directory started meanwhile would otherwise have its
   * run's token replaced unseen — its segments in the chain, this holder none the wiser. Found,
   * it is settled as takenOver() settles it (the older run holds on and makes a new base).
   */
  async renewHourly(signal?: AbortSignal): Promise<void> {
    if (this.lostTo) return;
    const by = await this.otherRun(signal);
    if (by) this.lostTo = by;
    else if (this.renewDue()) await this.renew(signal);
  }

  /** Lost to an older run of the same id (a copy of this state directory). */
  get lostToACopy(): boolean {
    return this.lostToCopy;
  }

  /** Lost to an older run by what the state directories knew: this one is surely the copy, and takes its chains out. */
  get surelyTheCopy(): boolean {
    return this.lostToCopy && this.lineage;
  }

  /** The error a holder that was taken over stands down with. */
  standDown(by: Holder, lastShipped: string | null): BlufioError {
    if (this.lostToCopy) {
      return new BlufioError('E_IN_USE',
        `another run of this replicator's id (${this.id}, run ${by.run}, started ${by.runStarted ?? 'earlier'}) ships ${this.store.where('')} (${this.stem}): a copy of this state directory runs elsewhere; this one stood down and ${this.lineage ? 'took its own new chain out of the set' : 'left what it shipped in the set (which of the two is the copy was told by when each started: neither state directory knew the other)'}`,
        'on the copy, remove the file id in its state directory (it then has an id of its own, and is refused while the original runs); or give it its own set');
    }
    return new BlufioError('E_IN_USE',
      `another replicator${by.id ? ` (${by.id})` : ''} took over ${this.store.where('')} (${this.stem})${by.started ? ` at ${by.started}` : ''}: this one (${this.id}) stood down${lastShipped ? `; what it shipped stays restorable up to ${lastShipped}` : ''}`,
      'run one replicator per set and database; to move back here, stop the other one, then start this one (with --take-over if it cannot be stopped)');
  }

  private async write(name: string, value: object, signal: AbortSignal | undefined, replace: boolean): Promise<boolean> {
    this.requests += 1;
    return putJson(this.store, name, value, this.scratch, signal, replace);
  }

  /**
   * Puts `value` as `name` if absent: 'published', 'taken' (another's is there), or 'blocked'
   * (still free after a few tries: something that is not a file is in its place).
   */
  static async putIfAbsent(store: Store, name: string, value: object, scratch: string, signal?: AbortSignal): Promise<'published' | 'taken' | 'blocked'> {
    // Of two claims at once the store may refuse both (its exclusive put gives way on both
    // sides): tried again while the name stays free.
    for (let tries = 0; tries < 4; tries++) {
      if (await putJson(store, name, value, scratch, signal, false)) return 'published';
      if (await store.stat(name)) return 'taken';
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 300));
    }
    return 'blocked';
  }
}

/** Who holds each series' lease in a listing (`blufio list`): the newest number of each stem. */
export async function holdersOf(store: Store, files: StoredFile[]): Promise<Array<Holder & { series: string }>> {
  const stems = new Set<string>();
  for (const f of files) {
    const m = /^(.+)\.lease\d{8,}(?:\.alive)?$/.exec(f.name);
    if (m) stems.add(m[1]);
  }
  const out: Array<Holder & { series: string }> = [];
  for (const series of [...stems].sort()) out.push({ series, ...(await readHolder(store, series, newestLease(files, series), files)) });
  return out;
}

/** Puts a small JSON object as `name` (through the local file `scratch`): whether it was published. */
async function putJson(store: Store, name: string, value: object, scratch: string, signal: AbortSignal | undefined, replace: boolean): Promise<boolean> {
  fs.writeFileSync(scratch, `${JSON.stringify(value)}\n`, { mode: 0o600 });
  try {
    return (await store.put(name, { file: scratch }, { signal, replace })).published;
  } finally {
    fs.rmSync(scratch, { force: true });
  }
}

/**
 * `p`, or a rejection when `signal` aborts first (its reason when a BlufioError, else E_IO: `where`
 * did not answer `what`). A store's request takes no signal of its own: it is left to its fate.
 */
export function bounded<T>(p: Promise<T>, signal: AbortSignal | undefined, where: string, what = 'whether the lease was taken over'): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof BlufioError ? signal.reason : new BlufioError('E_IO', `${where} did not answer ${what}`, 'it is tried again'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** A small JSON object of the store: undefined when there is none, null when it is not one. */
async function readJson(store: Store, name: string): Promise<Record<string, unknown> | null | undefined> {
  let bytes: Buffer;
  try {
    bytes = await store.peek(name, 4096);
  } catch (e) {
    if (e instanceof BlufioError && e.code === 'E_SOURCE_MISSING') return undefined;
    if (e instanceof BlufioError && e.code !== 'E_CORRUPT' && e.code !== 'E_NOT_FILE') throw e;
    return null;
  }
  try {
    const v = JSON.parse(bytes.toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * Every older holder not superseded (below `c`) finds its successor where it looks (its number +
 * 1): a fence there. One that cannot be put stops the start (a holder left unfenced would go on
 * shipping beside it: found by an attack run).
 */
async function fence(store: Store, stem: string, id: string, c: number, open: Holder[], scratch: string, signal?: AbortSignal): Promise<void> {
  for (const h of open) {
    if (h.k >= c - 1) continue;
    const name = leaseName(stem, h.k + 1);
    if ((await Lease.putIfAbsent(store, name, { id, fence: c }, scratch, signal)) === 'blocked') {
      throw new BlufioError('E_IO', `${store.where(name)} cannot be written, yet is not there: is something that is not a file in its place?`, 'remove it, then start blufio replicate again');
    }
  }
}

/**
 * Lease k's holder, from its claim and its sign of life (the id from the sign of life when the
 * claim is gone); when they were last written by the store's clock when `files` (a listing) says.
 */
export async function readHolder(store: Store, stem: string, k: number, files?: StoredFile[]): Promise<Holder> {
  const claim = await readJson(store, leaseName(stem, k));
  const signOf = await readJson(store, aliveName(stem, k));
  const claimId = typeof claim?.id === 'string' && ID_RE.test(claim.id) ? claim.id : null;
  const id = claim === undefined ? (typeof signOf?.id === 'string' && ID_RE.test(signOf.id) ? signOf.id : null) : claimId;
  const started = typeof claim?.started === 'string' && !Number.isNaN(Date.parse(claim.started)) ? claim.started : null;
  const mine = !!id && signOf?.id === id;
  const seenAt = mine && typeof signOf!.seen === 'string' ? Date.parse(signOf!.seen) : NaN;
  const run = mine && typeof signOf!.run === 'string' ? signOf!.run : null;
  const runStarted = mine && typeof signOf!.runStarted === 'string' ? signOf!.runStarted : null;
  // The store's times of the claim and the sign of life, when listed: a holder's own clock may
  // be anything (a claim stamped a year ahead would never lapse).
  const at = (name: string) => files?.find((f) => f.name === name)?.modified;
  const claimAt = at(leaseName(stem, k));
  const signAt = mine ? at(aliveName(stem, k)) : undefined;
  const byStore = claimAt !== undefined || signAt !== undefined;
  const seen = byStore
    ? Math.max(claimAt ?? -Infinity, signAt ?? -Infinity)
    : Math.max(Number.isNaN(seenAt) ? -Infinity : seenAt, started ? Date.parse(started) : -Infinity);
  const fence = !!id && typeof claim?.fence === 'number';
  return { k, id, started, seen: Number.isFinite(seen) ? seen : null, ended: fence || (mine && signOf!.ended === true), fence, run, runStarted };
}

/**
 * Takes the lease of `stem` for replicator `id` (refused with E_IN_USE while another holds it),
 * given the set's listing (lease.k, .took and .before say what it took, and from whom).
 */
export async function takeLease(store: Store, files: StoredFile[], stem: string, id: string, scratch: string, opts: { takeOver?: boolean; signal?: AbortSignal; run?: Run; now?: () => number } = {}): Promise<Lease> {
  const now = opts.now ?? Date.now;
  for (let tries = 0; ; tries++) {
    const listing = tries === 0 ? files : await store.list();
    const { claims, all } = leaseNumbers(listing, stem);
    const newest = all.at(-1) ?? 0;
    // The holders not superseded (no claim after them), newest first.
    const open: Holder[] = [];
    for (const k of [...all].reverse()) if (!claims.has(k + 1)) open.push(await readHolder(store, stem, k, listing));
    const top = open[0] ?? null;
    // Its own (stopped cleanly or not: a restart after a stop, a crash, a reboot) holds on.
    // Its own lease, but a sign of life from a run this state directory never made, alive: a
    // copy of this state directory runs elsewhere (refused; --take-over claims the next number).
    const copy = !!(top && top.id === id && !top.fence && opts.run && top.run && !opts.run.known.includes(top.run) && alive(top, now()));
    if (top && top.k === newest && top.id === id && !top.fence && !copy) {
      // (Fenced again: a start killed between its claim and its fences left them undone.)
      await fence(store, stem, id, newest, open, scratch, opts.signal);
      const l = new Lease(store, stem, id, newest, scratch, 'held', top, top.started ?? undefined, opts.run ?? null);
      await l.renew(opts.signal);
      return l;
    }
    if (copy && !opts.takeOver) {
      throw new BlufioError('E_IN_USE',
        `${store.where('')} (${stem}) is shipped by another run of this replicator's id (${id}, run ${top!.run}, started ${top!.runStarted ?? 'at an unknown time'}) that this state directory never made: a copy of it runs elsewhere`,
        'on the copy, remove the file id in its state directory (it then has an id of its own); if that run is gone for good, start this one with --take-over');
    }
    const blockers = open.filter((h) => (h.id !== id || (copy && h === top)) && alive(h, now()));
    const blocker = blockers[0];
    if (blocker && !opts.takeOver) {
      const seen = blocker.seen !== null ? new Date(blocker.seen).toISOString() : null;
      throw new BlufioError('E_IN_USE',
        blocker.id
          ? `${store.where('')} (${stem}) is replicated by another blufio replicate (${blocker.id}, started ${blocker.started ?? 'at an unknown time'}, last seen ${seen ?? 'never'}): a second one would start a chain of its own`
          : `${store.where(leaseName(stem, blocker.k))} is not a lease blufio can read: ${store.where('')} (${stem}) may be replicated by another program`,
        `run one replicator per set and database: each one's id is in its status.json. If that one is gone for good (its machine lost), start this one with --take-over: the other stands down before its next segment if it still runs${blocker.id ? '; a lease with no sign of life for 3 hours also lapses by itself' : ''}`);
    }
    const took: Took = blocker ? 'forced' : !top ? 'first' : top.ended ? 'ended' : top.id === id ? 'held' : 'lapsed';
    const c = newest + 1;
    const claimed = await Lease.putIfAbsent(store, leaseName(stem, c), { id, started: new Date().toISOString() }, scratch, opts.signal);
    if (claimed === 'published') {
      await fence(store, stem, id, c, open, scratch, opts.signal);
      const l = new Lease(store, stem, id, c, scratch, took, blocker ?? top, undefined, opts.run ?? null);
      await l.renew(opts.signal);
      return l;
    }
    if (claimed === 'blocked') {
      throw new BlufioError('E_IO', `${store.where(leaseName(stem, c))} cannot be written, yet is not there: is something that is not a file in its place?`, 'remove it, then start blufio replicate again');
    }
    // Another replicator claimed the same number at the same moment: looked at again.
    if (tries >= 2) throw new BlufioError('E_IN_USE', `another blufio replicate claimed ${store.where('')} (${stem}) at the same moment`, 'run one replicator per set and database; stop the other one first');
  }
}
