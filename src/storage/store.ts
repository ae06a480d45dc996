/**
 * The one interface every place that holds backups implements: a folder, an S3 bucket's prefix,
 * and whatever comes next (one file in this folder, one line in index.ts). It is deliberately
 * small — list, read the first bytes, fetch, put if absent, remove — and knows nothing of what
 * the bytes are: sets (src/sets/) decide names, transforms (layers.ts) decide the bytes.
 *
 * The contract, checked for every store by one conformance suite (test/storage.test.ts, run
 * against a folder, the signature-checking S3 test server and moto's server):
 * - `list()` gives the store's own files (not those under a deeper folder or prefix), each with
 *   its size, in any order; an empty store lists nothing.
 * - `put()` publishes a file completely or not at all, and never replaces one (unless told to): of two puts of one
 *   name at once, at most one publishes; the other gets `published: false` (both may give way,
 *   leaving the name free: a caller takes another name or tries again). A failed or aborted put
 *   leaves nothing under the name.
 * - `peek()`, `fetch()` of a name that is not there fail with E_SOURCE_MISSING; `remove()` of one
 *   that is not there succeeds.
 * - `stat()` and `list()` give when a file was written by the store's clock (`modified`) where it
 *   keeps one; `clock()` reads that clock now (both within seconds of the test machine's).
 * - Messages and results name a file as `where(name)`: a path or an s3:// URL, never a private
 *   download.
 * Retries (a dropped connection, a 503) are the store's own business, below this interface.
 */
import type { ProgressCallback } from '../core/progress.ts';

/**
 * Bytes in pieces, each valid only until the next one is asked for (layers.ts explains why every
 * stage reuses its buffers).
 */
export type Chunks = AsyncIterable<Uint8Array>;

/** A file of a store, as listed. */
export interface StoredFile {
  name: string;
  bytes: number;
  /** When it was written, by the store's own clock (ms since 1970; to the second at worst), where the store keeps one. */
  modified?: number;
}

/**
 * What a put stores: the bytes of a local file, as they are or packed (compressed, encrypted) on
 * the way. `pack` may be called again for each attempt (a put that gave way to another run's
 * name is retried under the next name by its caller).
 */
export interface Body {
  /** The local file. */
  file: string;
  /** Its bytes packed, read as they are needed (onRead: how much of `file` has been read). */
  pack?: {
    chunks(onRead?: (bytesOfFile: number) => void): Chunks;
    /** What packing is called in progress events while it is the slow part (a local write). */
    phase: 'compress' | 'encrypt';
  };
}

export interface PutOptions {
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  /**
   * Replace a file of that name (a single backup with --force). Never for a set's files, which
   * are never replaced; a replaced file is still never seen half-written.
   */
  replace?: boolean;
  /**
   * The name is not shared with other runs (a single backup, checked absent just before): no
   * claim protocol, only what the store itself offers against a file appearing meanwhile (S3's
   * If-None-Match). A killed run's claim would otherwise hold the name for an hour.
   */
  alone?: boolean;
  /**
   * With `alone`: the name cannot exist yet (made unique by its writer, which holds a lock: the
   * replicator's segments), so no request is spent looking for it first. A server that honours
   * If-None-Match still refuses a name that does exist; one that ignores it would replace it.
   */
  fresh?: boolean;
}

export interface Store {
  /** What to call the store's file `name` in messages and results ('' names the store itself). */
  where(name: string): string;
  /** The store's files. */
  list(): Promise<StoredFile[]>;
  /** The size of `name`, or null when there is none (and, remote, proof that the store answers as one). */
  stat(name: string): Promise<StoredFile | null>;
  /** The first `bytes` bytes of `name` (all of it when shorter): headers, without fetching whole files. */
  peek(name: string, bytes: number): Promise<Buffer>;
  /** A local file with the content of `name`: the file itself, or a private copy in `workDir`. */
  fetch(name: string, workDir: string, opts?: PutOptions): Promise<string>;
  /** Publishes `body` as `name` if no file of that name exists; `published: false` when one does. */
  put(name: string, body: Body, opts?: PutOptions): Promise<{ published: boolean; bytes: number }>;
  /** Removes `name`; nothing to remove is not an error. */
  remove(name: string): Promise<void>;
  /**
   * The store's own clock, read during the call (ms since 1970, to the second at worst, never
   * rounded up), or null when it shows none: a machine's clock is checked against it (a
   * replicator whose clock runs fast would stamp the set's times in the future).
   */
  clock(): Promise<number | null>;
}

/** Options every store may be opened with (each takes what it needs). */
export interface StoreOptions {
  signal?: AbortSignal;
  retries?: number;
}

/**
 * How far a machine's clock may be from the store's: NTP keeps machines within milliseconds; S3
 * gives its time to the second (and refuses requests 15 minutes off). A replicator off by more is
 * refused (replicate/clock.ts); a backup into an S3 set is then named by the store's clock.
 */
export const CLOCK_SLACK_MS = 5_000;

/**
 * How far this machine's clock is from `store`'s, read now: the least it can be ahead and the
 * least it can be behind (ms; at most one of them is above zero by more than the store's
 * rounding), or null when the store shows no clock. The store's time is to the second at worst
 * (truncated), read between t0 and t1: this machine's minus the store's lies in
 * [t0 - theirs - 1000, t1 - theirs]. `slowMs`: an answer slower than this says nothing about the
 * clock (it may have stepped meanwhile) — null too, with `slow` set.
 */
export async function clockOffset(store: Store, now: () => number = Date.now, slowMs = CLOCK_SLACK_MS): Promise<{ ahead: number; behind: number; t0: number; t1: number; theirs: number } | { slow: number } | null> {
  const t0 = now();
  const theirs = await store.clock();
  const t1 = now();
  if (theirs === null) return null;
  if (t1 - t0 > slowMs) return { slow: t1 - t0 };
  return { ahead: t0 - (theirs + 1000), behind: theirs - t1, t0, t1, theirs };
}
