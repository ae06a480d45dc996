/**
 * Backup sets: timestamped backups of one database in a folder or an s3:// prefix, full ones
 * and page-level differentials against the newest full one, restore by time, pruning by policy.
 *
 * Names (nothing else in the folder or prefix is ever touched):
 *
 *   <stem>-<YYYYMMDDTHHMMSSZ>[-<n>].db.gz[.age]                          a full backup
 *   <stem>-<YYYYMMDDTHHMMSSZ>[-<n>].from-<base time>[-<m>].diff.gz[.age] a differential
 *   <full backup's name>.pages                                           its page hashes
 *
 * The time is UTC when the copied state was current; -<n> tells apart backups taken in the same
 * second (a run never overwrites another's file). A differential names its base, so `list` and
 * `prune` know it without opening anything (encrypted files cannot be opened without a key).
 *
 * A differential holds the pages of the new database that differ from its base (single step:
 * never a chain), with the base's SHA-256 and the rebuilt database's: a restore gets at most two
 * files, rebuilds the database in a private directory, checks both hashes, and then goes through
 * the usual verified restore. docs/sets.md has the format, the decisions and measurements.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Guard } from './gzip.ts';
import type { ProgressCallback } from './core/progress.ts';
import { buildVerifiedCopy, checkSource, result, sourceBytes, type BackupOptions, type BackupResult } from './build.ts';
import { assertNotLockedOut, sweepStaleClaims } from './claim.ts';
import { readFully } from './vfs/disk-file.ts';
import { BlufioError, fsError, renamed } from './errors.ts';
import { ensureRoom, makeWorkDir, publish, removeStaleTemps, statOrNull, tempPathBeside } from './files.ts';
import { firstBytes, layersOfFile, packFile, packing, plainPrefix, recipientsOf, unpackFile, type KeyOptions, type Layers } from './layers.ts';
import { hasSqliteMagic } from './core/header.ts';
import { clientFor, download, stateDir, uploadPacked, type ObjectStorageOptions } from './object-storage.ts';
import { isS3Url, parseS3Url, type S3Client } from './s3.ts';

// ---------------------------------------------------------------------------------------------
// Names.

const TIME = String.raw`\d{8}T\d{6}Z`;
const NAME_RE = new RegExp(String.raw`^(?<stem>.+?)-(?<time>${TIME})(?:-(?<seq>\d+))?(?:\.from-(?<base>${TIME}(?:-\d+)?))?(?<kind>\.db|\.diff)(?<gz>\.gz)?(?<age>\.age)?(?<pages>\.pages)?$`);

export interface SetEntry {
  name: string;
  stem: string;
  /** When the backup's state was current (UTC). */
  time: Date;
  /** Tells apart backups of the same second (0 for the first). */
  seq: number;
  kind: 'full' | 'diff';
  /** For a differential: its base's name. */
  base: string | null;
  bytes: number;
  encrypted: boolean;
}

/** A set is a destination that is an existing directory or ends in "/" (a folder or an s3:// prefix). */
export function isSet(dest: string): boolean {
  if (dest.endsWith('/')) return true;
  return !isS3Url(dest) && !!statOrNull(path.resolve(dest))?.isDirectory();
}

/** The series a database's backups belong to: its file name without .db / .sqlite / .sqlite3. */
export const stemOf = (db: string) => path.basename(db).replace(/\.(db|sqlite3?)$/i, '') || 'database';

const stamp = (t: Date) => t.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
const parseStamp = (s: string) => new Date(`${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}Z`);

/** Parses a set file's name; null for anything that is not one of ours. */
export function parseName(name: string): (Omit<SetEntry, 'bytes'> & { pages: boolean }) | null {
  const m = NAME_RE.exec(name);
  if (!m?.groups) return null;
  const g = m.groups;
  const time = parseStamp(g.time);
  if (Number.isNaN(time.getTime()) || stamp(time) !== g.time) return null;
  const kind = g.kind === '.db' ? 'full' : 'diff';
  if ((kind === 'diff') !== (g.base !== undefined) || !g.gz || (kind === 'diff' && g.pages)) return null;
  return {
    name,
    stem: g.stem,
    time,
    seq: Number(g.seq ?? 0),
    kind,
    base: g.base ? `${g.stem}-${g.base}.db.gz${g.age ? '.age' : ''}` : null,
    encrypted: !!g.age,
    pages: !!g.pages,
  };
}

function nameFor(stem: string, time: Date, seq: number, kind: 'full' | 'diff', layers: Layers, base?: SetEntry): string {
  const t = `${stamp(time)}${seq > 0 ? `-${seq}` : ''}`;
  const from = kind === 'diff' ? `.from-${base!.name.slice(stem.length + 1).replace(/\.db\.gz(\.age)?$/, '')}` : '';
  return `${stem}-${t}${from}${kind === 'full' ? '.db' : '.diff'}.gz${layers.age ? '.age' : ''}`;
}

// ---------------------------------------------------------------------------------------------
// Where a set lives: a folder or an s3:// prefix, behind one small interface.

export interface SetStore {
  /** What to call a file of the set in messages and results (a path or an s3:// URL). */
  where(name: string): string;
  list(): Promise<Array<{ name: string; bytes: number }>>;
  /** A local file with the content of `name` (the file itself, or a private download). */
  fetch(name: string, workDir: string): Promise<string>;
  /** Publishes the local file as `name`; false when a file of that name exists (never replaced). */
  put(file: string, name: string, layers: Layers, keys: KeyOptions & { signal?: AbortSignal; onProgress?: ProgressCallback }): Promise<{ published: boolean; bytes: number }>;
  remove(name: string): Promise<void>;
  /** The first `bytes` bytes of `name` (all of it when shorter): headers, without fetching whole files. */
  peek(name: string, bytes: number): Promise<Buffer>;
}

class FolderStore implements SetStore {
  constructor(readonly dir: string) {}
  where = (name: string) => path.join(this.dir, name);
  async list() {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      throw fsError(e, this.dir, 'cannot list the backup set');
    }
    return names.flatMap((name) => {
      const st = statOrNull(path.join(this.dir, name));
      return st?.isFile() ? [{ name, bytes: st.size }] : [];
    });
  }
  async fetch(name: string) {
    const file = this.where(name);
    if (!statOrNull(file)?.isFile()) throw new BlufioError('E_SOURCE_MISSING', `${file} does not exist`, 'check the set; blufio list shows what is there');
    return file;
  }
  async put(file: string, name: string, layers: Layers, keys: KeyOptions & { signal?: AbortSignal; onProgress?: ProgressCallback }) {
    const dest = this.where(name);
    if (statOrNull(dest)) return { published: false, bytes: 0 };
    removeStaleTemps(dest);
    const tmp = `${tempPathBeside(dest)}.out`;
    try {
      const bytes = await packFile(file, tmp, layers, recipientsOf(keys), keys.signal, packing(file, layers, keys.onProgress));
      fs.chmodSync(tmp, 0o600);
      publish(tmp, dest, { noClobber: true });
      return { published: true, bytes };
    } catch (e) {
      if (e instanceof BlufioError && e.code === 'E_DEST_EXISTS') return { published: false, bytes: 0 };
      throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  async remove(name: string) {
    fs.rmSync(this.where(name), { force: true });
  }
  async peek(name: string, bytes: number) {
    const file = this.where(name);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw fsError(e, file, 'cannot read the backup set');
    }
    try {
      const b = Buffer.alloc(bytes);
      return b.subarray(0, readFully(fd, b, 0));
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** A run's claim on a name it is about to publish in a bucket (BucketStore.put). */
const CLAIM = '.claim-';
const CLAIM_KEY = /\.claim-[0-9a-f]{16}$/;

class BucketStore implements SetStore {
  constructor(readonly client: S3Client, readonly bucket: string, readonly prefix: string, readonly opts: ObjectStorageOptions & { signal?: AbortSignal }) {}
  where = (name: string) => `s3://${this.bucket}/${this.prefix}${name}`;
  async list() {
    return (await this.client.list(this.bucket, this.prefix))
      .filter((o) => !o.key.slice(this.prefix.length).includes('/'))
      .map((o) => ({ name: o.key.slice(this.prefix.length), bytes: o.size }));
  }
  private fetched = 0;
  async fetch(name: string, workDir: string) {
    const file = path.join(workDir, `object-${++this.fetched}`);
    await download(this.client, { bucket: this.bucket, key: this.prefix + name }, file, { signal: this.opts.signal });
    return file;
  }
  /**
   * Publishes under `name` only if no other run does. If-None-Match alone is not enough: some
   * S3-compatible servers ignore it (the test server did: two runs in one second both reported
   * the same name, and one of their backups was gone). So a run first writes a claim object
   * (`<name>.claim-<random>`), then lists the claims on that name: it goes on only if its claim is
   * the only one, and keeps it until its upload is done. Two runs cannot both go on: each listed
   * after writing its own claim, so the later of the two lists sees the earlier claim (S3 lists
   * what was written before, strongly consistent since 2020). Both may see each other and give
   * way: they take the next number (after a random pause, so that they do not meet again).
   * Claims left by a killed run are removed an hour later (the server's time) by the next put.
   */
  async put(file: string, name: string, layers: Layers, keys: KeyOptions & { signal?: AbortSignal }) {
    const loc = { bucket: this.bucket, key: this.prefix + name };
    if (await this.client.head(loc)) return { published: false, bytes: 0 };
    const claim = { bucket: this.bucket, key: `${loc.key}${CLAIM}${randomBytes(8).toString('hex')}` };
    await this.client.put(claim, Buffer.alloc(0), true);
    try {
      const listed = await this.client.list(this.bucket, this.prefix);
      // Any other claim on this name counts, however old (a killed run's blocks only its own
      // second's name). Others' claims an hour older than ours, by the server's clock (never by
      // this machine's, which may be off), were left by killed runs: removed.
      const ours = listed.find((o) => o.key === claim.key);
      const stale = ours ? Date.parse(ours.lastModified) - 3_600_000 : NaN;
      for (const o of listed) {
        if (o.key !== claim.key && CLAIM_KEY.test(o.key) && !o.key.startsWith(`${loc.key}${CLAIM}`) && Date.parse(o.lastModified) < stale) {
          await this.client.delete({ bucket: this.bucket, key: o.key }).catch(() => {});
        }
      }
      const rivals = listed.filter((o) => o.key.startsWith(`${loc.key}${CLAIM}`) && o.key !== claim.key);
      // Our own claim not listed yet: the argument above does not hold, so give way too.
      if (!ours || rivals.length > 0 || listed.some((o) => o.key === loc.key)) {
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 200));
        return { published: false, bytes: 0 };
      }
      return { published: true, bytes: await uploadPacked(this.client, loc, file, layers, recipientsOf(keys), { ...this.opts, force: false }) };
    } catch (e) {
      if (e instanceof BlufioError && e.code === 'E_DEST_EXISTS') return { published: false, bytes: 0 };
      throw e;
    } finally {
      await this.client.delete(claim).catch(() => {});
    }
  }
  async remove(name: string) {
    await this.client.delete({ bucket: this.bucket, key: this.prefix + name });
  }
  peek(name: string, bytes: number) {
    return this.client.getPrefix({ bucket: this.bucket, key: this.prefix + name }, bytes);
  }
}

export function openStore(set: string, opts: ObjectStorageOptions & { signal?: AbortSignal; retries?: number }): SetStore {
  if (isS3Url(set)) {
    const loc = parseS3Url(set.endsWith('/') ? set : `${set}/`, false);
    return new BucketStore(clientFor(opts), loc.bucket, loc.key, opts);
  }
  const dir = path.resolve(set);
  const st = statOrNull(dir);
  if (!st) throw new BlufioError('E_DEST_DIR', `the backup set ${dir} does not exist`, `create it first: mkdir -p ${dir}`);
  if (!st.isDirectory()) throw new BlufioError('E_NOT_FILE', `${dir} is a file, not a backup set (a directory)`, 'give the directory that holds the backups, or the file itself without a trailing /');
  return new FolderStore(dir);
}

/** The backups of a set (of one series when `stem` is given), newest first. */
export async function listSet(set: string, opts: ObjectStorageOptions & { stem?: string; signal?: AbortSignal } = {}): Promise<SetEntry[]> {
  return entriesOf(await openStore(set, opts).list(), opts.stem);
}

export function entriesOf(files: Array<{ name: string; bytes: number }>, stem?: string): SetEntry[] {
  const out: SetEntry[] = [];
  for (const f of files) {
    const p = parseName(f.name);
    if (!p || p.pages || (stem !== undefined && p.stem !== stem)) continue;
    const { pages: _p, ...entry } = p;
    out.push({ ...entry, bytes: f.bytes });
  }
  return out.sort((a, b) => b.time.getTime() - a.time.getTime() || b.seq - a.seq);
}

// ---------------------------------------------------------------------------------------------
// What is restorable. A set changes outside blufio (a lifecycle rule that expires old objects,
// `aws s3 rm`, a sync tool): every listing says which backups would fail to restore, and why.

/** A backup of a set, and whether it can be restored. */
export interface SetMember extends SetEntry {
  /** False when its restore would fail: its base is gone or is not the file it was made from, its header is damaged. */
  restorable: boolean;
  /** Why not, for people (null when restorable). */
  problem: string | null;
  /** How far it was checked: its name against the listing, or its header too (an encrypted one needs a key). */
  checked: 'name' | 'header';
  /** Named more than 5 minutes after this machine's now (a clock that jumped ahead, or is behind now). */
  future: boolean;
}

/** Bytes read from the start of each backup to check its header: an age header and its first chunk. */
const HEAD_BYTES = 96 * 1024;

/** A message about `shown`, said of "it" ("`shown` is cut off" -> "it is cut off"). */
export function aboutIt(message: string, shown: string): string {
  return message.replaceAll(shown, 'it');
}

/** What the listing alone shows is wrong with a backup: a differential whose base is gone. */
function problemByName(e: SetEntry, names: ReadonlySet<string>): string | null {
  return e.kind === 'diff' && !names.has(e.base!) ? `its base ${e.base} is missing` : null;
}

/**
 * Every backup of the listing, with what can be told of its restorability: from the names (a
 * differential's base is there), and with `headers`, from the first bytes of each file (its
 * layers open, it holds a database or a differential, a differential's header names its base
 * and the base's size, and the base's SHA-256 where its page hashes are known). A backup that
 * cannot be read without a key is checked by name only: never called damaged for that.
 */
export async function assess(store: SetStore, files: Array<{ name: string; bytes: number }>, entries: SetEntry[], opts: { headers: boolean; keys?: KeyOptions; cacheDir?: string }): Promise<SetMember[]> {
  const names = new Set(files.map((f) => f.name));
  const byName = new Map(entries.map((e) => [e.name, e]));
  const now = Date.now();
  const found = new Map<string, { problem: string | null; checked: 'name' | 'header' }>();
  const headerOf = async (e: SetEntry): Promise<{ problem: string | null; checked: 'name' | 'header' }> => {
    const shown = store.where(e.name);
    let plain: Uint8Array;
    try {
      plain = await plainPrefix(await store.peek(e.name, HEAD_BYTES), opts.keys ?? {}, shown);
    } catch (err) {
      if (err instanceof BlufioError && err.code === 'E_KEY') return { problem: null, checked: 'name' };
      if (err instanceof BlufioError && (err.code === 'E_CORRUPT' || err.code === 'E_NOT_SQLITE')) return { problem: aboutIt(err.message, shown), checked: 'header' };
      // Removed between the listing and this read (a prune running beside it): not there to restore.
      if (err instanceof BlufioError && err.code === 'E_SOURCE_MISSING') return { problem: 'it was removed while the set was read', checked: 'header' };
      throw err;
    }
    if (e.kind === 'full') return { problem: hasSqliteMagic(plain) ? null : 'it does not hold an SQLite database', checked: 'header' };
    let header: DiffHeader;
    try {
      header = parseDiffHeader(plain, shown).header;
    } catch (err) {
      return { problem: aboutIt((err as Error).message, shown), checked: 'header' };
    }
    if (header.base !== e.base) return { problem: `it names ${header.base} as its base inside, ${e.base} in its name (renamed?)`, checked: 'header' };
    const base = byName.get(e.base!);
    if (base && header.baseBytes !== undefined && header.baseBytes !== base.bytes) {
      return { problem: `its base ${e.base} is not the file it was made from (${base.bytes} bytes; it was made from one of ${header.baseBytes})`, checked: 'header' };
    }
    const baseSha = base ? await pagesSha256(store, names, base.name, opts.cacheDir) : null;
    if (baseSha && baseSha !== header.baseSha256) return { problem: `its base ${e.base} is not the backup it was made from (the SHA-256 its page hashes record differs)`, checked: 'header' };
    return { problem: null, checked: 'header' };
  };
  if (opts.headers) {
    // A few at a time: one request each on object storage.
    const queue = [...entries];
    await Promise.all(Array.from({ length: Math.min(8, queue.length) }, async () => {
      for (let e = queue.shift(); e; e = queue.shift()) found.set(e.name, await headerOf(e));
    }));
  }
  const problemOf = (e: SetEntry): string | null => {
    const own = problemByName(e, names) ?? found.get(e.name)?.problem ?? null;
    if (own || e.kind === 'full') return own;
    const baseProblem = found.get(e.base!)?.problem;
    return baseProblem ? `its base ${e.base} cannot be restored (${baseProblem})` : null;
  };
  return entries.map((e) => {
    const problem = problemOf(e);
    return { ...e, restorable: problem === null, problem, checked: found.get(e.name)?.checked ?? 'name', future: e.time.getTime() > now + FUTURE_SLACK };
  });
}

/** The SHA-256 a full backup's page hashes record (this machine's copy, else the set's), or null. */
async function pagesSha256(store: SetStore, names: ReadonlySet<string>, name: string, cacheDir?: string): Promise<string | null> {
  const local = cacheDir ? path.join(cacheDir, `${name}.pages`) : null;
  try {
    let head: Buffer | null = null;
    if (local && fs.existsSync(local)) {
      const fd = fs.openSync(local, 'r');
      try {
        head = Buffer.alloc(4096);
        head = head.subarray(0, fs.readSync(fd, head, 0, head.length, 0));
      } finally {
        fs.closeSync(fd);
      }
    } else if (names.has(`${name}.pages`)) {
      head = await store.peek(`${name}.pages`, 4096);
    }
    return head ? pagesMeta(head)?.sha256 ?? null : null;
  } catch {
    return null;
  }
}

/** The backups of a set (of one series when `stem` is given), newest first, each with whether it can be restored. */
export async function listMembers(set: string, opts: ObjectStorageOptions & KeyOptions & { stem?: string; signal?: AbortSignal; headers?: boolean } = {}): Promise<SetMember[]> {
  const store = openStore(set, opts);
  const files = await store.list();
  return assess(store, files, entriesOf(files, opts.stem), { headers: opts.headers ?? true, keys: opts, cacheDir: hashCacheDir(set, opts) });
}

// ---------------------------------------------------------------------------------------------
// Page hashes: 16 bytes of SHA-256 per page, and the SHA-256 of the whole database.

const HASH_BYTES = 16;

interface PageHashes {
  pageSize: number;
  pages: number;
  /** SHA-256 of the whole database file, hex. */
  sha256: string;
  hashes: Buffer;
  /** The published backup these hashes describe: its size (a base swapped or rewritten since is not used). */
  bytes?: number;
  /** Who it was encrypted to (a fingerprint of the sorted recipients): a new key means a new full backup. */
  recipients?: string;
}

/** Hashes a database file page by page, and as a whole. */
function hashPages(file: string, pageSize: number): PageHashes {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const pages = Math.floor(size / pageSize);
    const hashes = Buffer.alloc(pages * HASH_BYTES);
    const whole = createHash('sha256');
    const buf = Buffer.allocUnsafe(pageSize * 256);
    for (let p = 0; p < pages; ) {
      const n = Math.min(256, pages - p);
      readAt(fd, buf, n * pageSize, p * pageSize);
      whole.update(buf.subarray(0, n * pageSize));
      for (let i = 0; i < n; i++) createHash('sha256').update(buf.subarray(i * pageSize, (i + 1) * pageSize)).digest().copy(hashes, (p + i) * HASH_BYTES, 0, HASH_BYTES);
      p += n;
    }
    return { pageSize, pages, sha256: whole.digest('hex'), hashes };
  } finally {
    fs.closeSync(fd);
  }
}

function readAt(fd: number, buf: Buffer, len: number, at: number): void {
  if (readFully(fd, buf.subarray(0, len), at) !== len) throw new BlufioError('E_IO', 'a file changed size while it was read', 'try again');
}

const PAGES_MAGIC = 'blufio-pages 1\n';

function encodePages(h: PageHashes): Buffer {
  return Buffer.concat([Buffer.from(PAGES_MAGIC), Buffer.from(`${JSON.stringify({ pageSize: h.pageSize, pages: h.pages, sha256: h.sha256, bytes: h.bytes, recipients: h.recipients })}\n`), h.hashes]);
}

const recipientsKey = (recipients: string[]) => (recipients.length ? createHash('sha256').update([...recipients].sort().join('\n')).digest('hex').slice(0, 32) : '');

/** The first line of a page-hashes file (its size, SHA-256, …), from its first bytes. */
function pagesMeta(b: Buffer): { pageSize: number; pages: number; sha256: string; bytes?: number; recipients?: string } | null {
  if (!b.subarray(0, PAGES_MAGIC.length).equals(Buffer.from(PAGES_MAGIC))) return null;
  const nl = b.indexOf(0x0a, PAGES_MAGIC.length);
  if (nl < 0) return null;
  try {
    const meta = JSON.parse(b.subarray(PAGES_MAGIC.length, nl).toString('utf8'));
    return typeof meta?.sha256 === 'string' ? meta : null;
  } catch {
    return null;
  }
}

function decodePages(b: Buffer): PageHashes | null {
  const meta = pagesMeta(b);
  if (!meta) return null;
  const hashes = b.subarray(b.indexOf(0x0a, PAGES_MAGIC.length) + 1);
  if (!validGeometry(meta.pageSize, meta.pages) || hashes.length !== meta.pages * HASH_BYTES) return null;
  return { ...meta, hashes };
}

/**
 * Where the page hashes of a set's full backups are kept on this machine: the state directory,
 * one folder per set. Encrypted sets keep them only here (hashes of plaintext pages would tell
 * whoever holds the storage which pages are equal); plain sets also keep them in the set, beside
 * their backup (`<name>.pages`), so that another machine can go on making differentials.
 */
export function hashCacheDir(set: string, opts: ObjectStorageOptions): string {
  // One set, one id, however it is spelled (a link, a relative path, a trailing slash).
  let where = isS3Url(set) ? set.replace(/\/?$/, '/') : path.resolve(set);
  try {
    if (!isS3Url(set)) where = fs.realpathSync(where);
  } catch {
    // not there: its spelling will do
  }
  const id = createHash('sha256').update(where).digest('hex').slice(0, 16);
  return path.join(stateDir(opts), 'sets', id);
}

// ---------------------------------------------------------------------------------------------
// Differentials.

const DIFF_MAGIC = 'blufio-diff 1\n';

/** A page size SQLite can have and a page count it can reach. */
const validGeometry = (pageSize: unknown, pages: unknown) =>
  typeof pageSize === 'number' && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0 && typeof pages === 'number' && Number.isInteger(pages) && pages >= 0 && pages < 2 ** 32;

interface DiffHeader {
  /** The base's name. */
  base: string;
  baseSha256: string;
  pageSize: number;
  /** Pages of the rebuilt database. */
  pages: number;
  /** SHA-256 of the rebuilt database. */
  sha256: string;
  /** Pages the differential holds. */
  changed: number;
  /** The base's size as published (packed): a base replaced by another file is told from the listing. Since 0.2. */
  baseBytes?: number;
}

/** Writes the pages of `file` whose hashes differ from `base`'s (or lie past its end) to `out`. */
function writeDiff(file: string, now: PageHashes, base: PageHashes, baseEntry: SetEntry, out: string): number {
  const changed: number[] = [];
  for (let p = 0; p < now.pages; p++) {
    if (p >= base.pages || !now.hashes.subarray(p * HASH_BYTES, (p + 1) * HASH_BYTES).equals(base.hashes.subarray(p * HASH_BYTES, (p + 1) * HASH_BYTES))) changed.push(p);
  }
  const header: DiffHeader = { base: baseEntry.name, baseSha256: base.sha256, pageSize: now.pageSize, pages: now.pages, sha256: now.sha256, changed: changed.length, baseBytes: baseEntry.bytes };
  const fdIn = fs.openSync(file, 'r');
  const fdOut = fs.openSync(out, 'wx', 0o600);
  try {
    fs.writeSync(fdOut, Buffer.from(`${DIFF_MAGIC}${JSON.stringify(header)}\n`));
    const rec = Buffer.allocUnsafe(4 + now.pageSize);
    for (const p of changed) {
      rec.writeUInt32BE(p + 1, 0);
      readAt(fdIn, rec.subarray(4), now.pageSize, p * now.pageSize);
      fs.writeSync(fdOut, rec);
    }
  } finally {
    fs.closeSync(fdIn);
    fs.closeSync(fdOut);
  }
  return changed.length;
}

/** Reads a differential's header (from its unpacked file). */
function readDiffHeader(file: string, shown: string): { header: DiffHeader; offset: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    return parseDiffHeader(buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)), shown);
  } finally {
    fs.closeSync(fd);
  }
}

/** A differential's header from its first bytes (4 KiB hold it), and where its pages start. */
export function parseDiffHeader(buf: Uint8Array, shown: string): { header: DiffHeader; offset: number } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, 4096));
  const nl = b.indexOf(0x0a, DIFF_MAGIC.length);
  if (!b.subarray(0, DIFF_MAGIC.length).equals(Buffer.from(DIFF_MAGIC)) || nl < 0) {
    throw new BlufioError('E_CORRUPT', `${shown} is not a blufio differential (no header)`, 'use another backup');
  }
  try {
    const header = JSON.parse(b.subarray(DIFF_MAGIC.length, nl).toString('utf8')) as DiffHeader;
    if (!validGeometry(header.pageSize, header.pages) || !Number.isInteger(header.changed) || header.changed < 0 || header.changed > header.pages
      || typeof header.sha256 !== 'string' || typeof header.baseSha256 !== 'string' || typeof header.base !== 'string'
      || (header.baseBytes !== undefined && !Number.isSafeInteger(header.baseBytes))) throw new Error('bad header');
    return { header, offset: nl + 1 };
  } catch (e) {
    throw new BlufioError('E_CORRUPT', `${shown} has a damaged header`, 'use another backup', { cause: e });
  }
}

/** The local, plain database of a set's entry in `work`: unpacked, and for a differential rebuilt from its base. */
export async function materialize(store: SetStore, entry: SetEntry, work: string, keys: KeyOptions, signal?: AbortSignal): Promise<string> {
  let unpacked = 0;
  const plainOf = async (name: string): Promise<string> => {
    const packed = await store.fetch(name, work);
    const plain = path.join(work, `plain-${++unpacked}`);
    try {
      const layers = layersOfFile(packed, keys);
      await unpackPlain(packed, plain, layers, keys, signal, parseName(name)?.kind === 'diff' ? diffSizeGuard(store.where(name)) : undefined);
    } catch (e) {
      // Named as the user knows it (s3://… or the set's file), never by the private download;
      // and which file it was (a differential's base, say), for the caller's advice.
      throw Object.assign(renamed(renamed(e, packed, store.where(name)), plain, store.where(name)) as object, { member: name });
    }
    return plain;
  };
  if (entry.kind === 'full') {
    const plain = await plainOf(entry.name);
    // What a full backup holds must be a database: said here, as a set's member (restore would
    // only say "not an SQLite database" of the file it was given).
    if (!hasSqliteMagic(firstBytes(plain, 16))) throw Object.assign(new BlufioError('E_NOT_SQLITE', `${store.where(entry.name)} does not hold an SQLite database`, 'use another backup'), { member: entry.name });
    return plain;
  }
  const diff = await plainOf(entry.name);
  const { header, offset } = readDiffHeader(diff, store.where(entry.name));
  if (header.base !== entry.base) {
    throw new BlufioError('E_CORRUPT', `${store.where(entry.name)} names ${header.base} as its base inside, ${entry.base} in its file name`, 'the file was renamed or damaged; use another backup');
  }
  let basePlain: string;
  try {
    basePlain = await plainOf(header.base);
  } catch (e) {
    if (e instanceof BlufioError && e.code === 'E_SOURCE_MISSING') {
      throw Object.assign(new BlufioError('E_SOURCE_MISSING', `the base of ${store.where(entry.name)}, ${store.where(header.base)}, is missing`, 'restore from another backup; blufio list shows them'), { member: header.base });
    }
    throw e;
  }
  const base = hashPages(basePlain, header.pageSize);
  if (base.sha256 !== header.baseSha256) {
    throw Object.assign(new BlufioError('E_CORRUPT', `${store.where(header.base)} is not the base ${store.where(entry.name)} was made against (its SHA-256 differs)`, 'use another backup'), { member: header.base });
  }
  // Apply the pages, cut to the new size, and the result must be the database that was backed up.
  const out = path.join(work, 'rebuilt.db');
  fs.renameSync(basePlain, out);
  const fdIn = fs.openSync(diff, 'r');
  const fdOut = fs.openSync(out, 'r+');
  try {
    const rec = Buffer.allocUnsafe(4 + header.pageSize);
    const size = fs.fstatSync(fdIn).size;
    if (size !== offset + header.changed * rec.length) {
      throw new BlufioError('E_CORRUPT', `${store.where(entry.name)} is cut off or damaged (${size} bytes, its header says ${offset + header.changed * rec.length})`, 'use another backup');
    }
    for (let i = 0; i < header.changed; i++) {
      readAt(fdIn, rec, rec.length, offset + i * rec.length);
      const page = rec.readUInt32BE(0);
      if (page < 1 || page > header.pages) throw new BlufioError('E_CORRUPT', `${store.where(entry.name)} holds page ${page} of a ${header.pages}-page database`, 'use another backup');
      fs.writeSync(fdOut, rec, 4, header.pageSize, (page - 1) * header.pageSize);
    }
    fs.ftruncateSync(fdOut, header.pages * header.pageSize);
  } finally {
    fs.closeSync(fdIn);
    fs.closeSync(fdOut);
  }
  fs.rmSync(diff, { force: true });
  if (hashPages(out, header.pageSize).sha256 !== header.sha256) {
    throw new BlufioError('E_CORRUPT', `rebuilding ${store.where(entry.name)} on its base did not give the database that was backed up (SHA-256 differs)`, 'use another backup');
  }
  return out;
}

/** unpackFile for a set file: plain files are copied, so that the caller owns the result. */
async function unpackPlain(src: string, dest: string, layers: Layers, keys: KeyOptions, signal?: AbortSignal, guard?: Guard): Promise<void> {
  if (layers.gzip || layers.age) return unpackFile(src, dest, layers, keys, signal, guard);
  fs.copyFileSync(src, dest);
}

/**
 * Passes a differential through while it can be one: its magic first, then no more bytes than
 * its header says it holds (changed x (4 + page size)): a gzip bomb never fills the disk.
 */
function diffSizeGuard(shown: string): Guard {
  let head = Buffer.alloc(0);
  let limit = Infinity;
  let seen = 0;
  const bad = (why: string) => new BlufioError('E_CORRUPT', `${shown} ${why}`, 'use another backup');
  return (piece) => {
    seen += piece.length;
    if (limit === Infinity) {
      head = Buffer.concat([head, piece.subarray(0, 8192)]);
      if (!Buffer.from(DIFF_MAGIC).subarray(0, Math.min(head.length, DIFF_MAGIC.length)).equals(head.subarray(0, Math.min(head.length, DIFF_MAGIC.length)))) throw bad('is not a blufio differential');
      const nl = head.indexOf(0x0a, DIFF_MAGIC.length);
      if (nl > 0) {
        let h: DiffHeader;
        try {
          h = JSON.parse(head.subarray(DIFF_MAGIC.length, nl).toString('utf8')) as DiffHeader;
        } catch {
          throw bad('has a damaged header');
        }
        limit = nl + 1 + h.changed * (4 + h.pageSize);
        if (!Number.isSafeInteger(limit)) throw bad('has a damaged header');
      } else if (head.length >= 8192) {
        throw bad('has a damaged header');
      }
    }
    if (seen > limit) throw bad(`unpacks to more than the ${limit} bytes its header declares; stopped`);
  };
}

// ---------------------------------------------------------------------------------------------
// Backup to a set.

export interface SetBackupOptions extends BackupOptions {
  /** Write a full backup even when a differential could be made. */
  full?: boolean;
  /** Write an unencrypted backup into a set whose newest backup is encrypted (never implied by force). */
  unencrypted?: boolean;
  /** A new full backup when the newest full one is older than this (default 7 days). */
  fullEveryMs?: number;
}

export interface SetBackupResult extends BackupResult {
  kind: 'full' | 'diff';
  /** The base, for a differential (its path or URL). */
  base: string | null;
  /** Pages the differential holds (all pages for a full backup). */
  changedPages: number;
  /** Why a full backup was made when a differential could have been: a reason for people, or null. */
  fullBecause: string | null;
  /** Something the operator should fix though the backup succeeded (its page hashes not kept), or null. */
  warning: string | null;
}

const DAY = 86_400_000;
/** How far ahead of this machine's clock a backup's name may be before it counts as "in the future". */
export const FUTURE_SLACK = 5 * 60_000;

/**
 * One series per database: the first backup of a stem into a set records the database's path
 * (`<stem>.series`); a backup of another database with the same file name (another directory,
 * app.db beside app.sqlite) is refused instead of mixing into its series (force: adopt the
 * series, e.g. after moving the server).
 */
async function claimSeries(store: SetStore, files: Array<{ name: string }>, stem: string, db: string, opts: SetBackupOptions): Promise<void> {
  const marker = `${stem}.series`;
  let real = db;
  try {
    real = fs.realpathSync(db);
  } catch {
    // kept as given
  }
  if (files.some((f) => f.name === marker)) {
    const work = makeWorkDir('set', opts.workDir);
    try {
      const recorded = (JSON.parse(fs.readFileSync(await store.fetch(marker, work), 'utf8')) as { database?: string }).database;
      if (recorded === real) return;
      if (!opts.force) {
        throw new BlufioError('E_DEST_EXISTS', `${store.where('')} holds the series "${stem}" of another database (${recorded}); this is ${real}`,
          'back it up into another set, or add --force if this is the same database moved to a new place');
      }
    } catch (e) {
      if (e instanceof BlufioError && e.code === 'E_DEST_EXISTS') throw e;
      // An unreadable marker is rewritten below.
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    await store.remove(marker);
  }
  const work = makeWorkDir('set', opts.workDir);
  try {
    const tmp = path.join(work, 'series');
    fs.writeFileSync(tmp, `${JSON.stringify({ database: real })}\n`, { mode: 0o600 });
    await store.put(tmp, marker, { gzip: false, age: false }, {});
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Backs up `db` into the set `set`: a differential against the newest full backup of its series
 * when there is one with known page hashes, younger than fullEveryMs, and the change is under
 * half the database; a full backup otherwise.
 */
export async function backupToSet(dbPath: string, set: string, opts: SetBackupOptions = {}): Promise<SetBackupResult> {
  const started = performance.now();
  const db = path.resolve(dbPath);
  sweepStaleClaims(path.dirname(db));
  assertNotLockedOut(db);
  checkSource(db, 'database', 'set storage.database_path in blufio.toml, or pass --db <path>');
  const recipients = recipientsOf(opts);
  const layers: Layers = { gzip: true, age: recipients.length > 0 };
  const store = openStore(set, opts);
  const stem = stemOf(db);
  const files = await store.list();
  const before = entriesOf(files, stem);
  // Encryption never turns off by a forgotten option: a plain backup into a set whose newest
  // backup is encrypted is refused unless asked for by its own option (force, which adopts a
  // moved database's series, once let plaintext in too: found by an attack run). Checked before
  // the series, so that an operator fixing that refusal has already seen this one.
  // The newest of the whole set, any database's: a second database (or this one renamed) must not
  // bring plaintext into an encrypted set either (found by an attack run).
  const newest = entriesOf(files)[0];
  if (!layers.age && opts.unencrypted !== true && newest?.encrypted) {
    throw new BlufioError('E_USAGE', `the newest backup in ${store.where('')} (${newest.name}) is encrypted, and no recipient was given for this one`,
      'give --recipient (or backup.age_recipients in blufio.toml), or add --unencrypted to write an unencrypted backup there on purpose');
  }
  if (layers.age && opts.unencrypted) throw new BlufioError('E_USAGE', '--unencrypted was given with recipients to encrypt to', 'drop --unencrypted, or the recipients');
  await claimSeries(store, files, stem, db, opts);
  const work = makeWorkDir('set', opts.workDir);
  try {
    ensureRoom(work, sourceBytes(db) * 2, 'the copy staged before it is packed', 'free some space there, or pass --work-dir <directory> on a file system with room');
    const plain = path.join(work, 'backup.db');
    const copy = await buildVerifiedCopy(db, plain, opts, 'the backup', { staging: true });
    const now: PageHashes = { ...hashPages(plain, copy.pageSize), recipients: recipientsKey(opts.recipients ?? []) };
    const cacheDir = hashCacheDir(set, opts);

    // A differential, if it may and pays.
    const decision = await chooseBase(store, before, now, layers, opts, cacheDir, work);
    let kind: 'full' | 'diff' = 'full';
    let file = plain;
    let changed = now.pages;
    if (decision.base) {
      const diffFile = path.join(work, 'backup.diff');
      changed = writeDiff(plain, now, decision.base.hashes, decision.base.entry, diffFile);
      if (changed * now.pageSize * 2 > now.pages * now.pageSize) {
        decision.fullBecause = `${Math.round((100 * changed) / Math.max(1, now.pages))} % of the pages changed (a differential pays below 50 %)`;
        changed = now.pages;
      } else {
        kind = 'diff';
        file = diffFile;
      }
    }
    // Named after the time the state was taken, rounded up to the second (the state is never
    // newer than its name); a name already there (another run in the same second) is never
    // replaced: the next number is taken.
    // Never named before the newest backup of its series (nor so before its base): a clock that
    // stepped back (NTP correcting a fast clock) would make "newest" an older state. Then it is
    // named in the newest's second, after it. (Names more than 5 minutes ahead are from a clock
    // that jumped: not trusted as newest, never a base; blufio check and prune name them.)
    let taken = new Date(Math.ceil(copy.takenAt / 1000) * 1000);
    let firstSeq = 0;
    const newestOfSeries = before.find((e) => e.time.getTime() <= Date.now() + FUTURE_SLACK);
    const clockWarning = newestOfSeries && taken.getTime() < newestOfSeries.time.getTime()
      ? `this machine's clock (${new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')}) is behind the set's newest backup ${newestOfSeries.name}: this one is named after it, so that it is the newest state; check the clock (timedatectl)`
      : null;
    if (newestOfSeries && taken.getTime() <= newestOfSeries.time.getTime()) {
      taken = newestOfSeries.time;
      firstSeq = newestOfSeries.seq + 1;
    }
    const publishAs = async (k: 'full' | 'diff', f: string) => {
      for (let seq = firstSeq; ; seq++) {
        const n = nameFor(stem, taken, seq, k, layers, k === 'diff' ? decision.base!.entry : undefined);
        const r = await store.put(f, n, layers, opts);
        if (r.published) return { name: n, bytes: r.bytes };
        if (seq >= firstSeq + 99) throw new BlufioError('E_DEST_EXISTS', `${store.where(n)} and 99 others of the same second exist`, 'try again in a second');
      }
    };
    let { name, bytes } = await publishAs(kind, file);
    if (kind === 'diff' && !(await store.list()).some((f) => f.name === decision.base!.entry.name)) {
      // Its base went while it was made (a prune beside a newer full backup): a differential
      // without a base restores nothing, so this backup becomes a full one.
      await store.remove(name);
      decision.fullBecause = `its base ${decision.base!.entry.name} was removed while it was made`;
      kind = 'full';
      changed = now.pages;
      ({ name, bytes } = await publishAs('full', plain));
    }
    let warning: string | null = clockWarning;
    if (kind === 'full') {
      // Its page hashes: here for the next differential, and in a plain set beside it too. A
      // failure here costs the next backup a differential, never this backup.
      const pages = encodePages({ ...now, bytes });
      try {
        fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
        fs.writeFileSync(path.join(cacheDir, `${name}.pages`), pages, { mode: 0o600 });
      } catch (e) {
        // No state directory: differentials then need the set's copy (plain sets) or wait for one.
        // Said, or a cron job would upload full backups forever without anyone knowing why.
        warning = `${warning ? `${warning}; ` : ''}cannot keep this backup's page hashes in ${cacheDir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): ${layers.age ? 'the next backup into this encrypted set will be a full one too' : 'the next backup reads them from the set'}; make that directory writable, or set XDG_STATE_HOME`;
      }
      if (!layers.age) {
        try {
          const tmp = path.join(work, 'pages');
          fs.writeFileSync(tmp, pages, { mode: 0o600 });
          await store.put(tmp, `${name}.pages`, { gzip: false, age: false }, {});
        } catch (e) {
          if (!(e instanceof BlufioError)) throw e;
        }
      }
    }
    return {
      ...result(db, store.where(name), { ...copy, bytes }, layers, opts, started),
      kind,
      base: kind === 'diff' ? store.where(decision.base!.entry.name) : null,
      changedPages: changed,
      fullBecause: kind === 'full' ? decision.fullBecause : null,
      warning,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The base for a differential, or why there is none. */
async function chooseBase(store: SetStore, entries: SetEntry[], now: PageHashes, layers: Layers, opts: SetBackupOptions, cacheDir: string, work: string): Promise<{ base: { entry: SetEntry; hashes: PageHashes } | null; fullBecause: string | null }> {
  const none = (why: string | null) => ({ base: null, fullBecause: why });
  if (opts.full) return none(null);
  // A full backup named in the future (a clock that jumped ahead) is never a base.
  const newestFull = entries.find((e) => e.kind === 'full' && e.time.getTime() <= Date.now() + FUTURE_SLACK);
  if (!newestFull) return none(null);
  if (newestFull.encrypted !== layers.age) return none(`the newest full backup is ${newestFull.encrypted ? 'encrypted and this one is not' : 'not encrypted and this one is'}`);
  const maxAge = opts.fullEveryMs ?? 7 * DAY;
  if (Date.now() - newestFull.time.getTime() > maxAge) return none(`the newest full backup is older than ${Math.round(maxAge / DAY * 10) / 10} days`);
  let hashes: PageHashes | null = null;
  const cached = path.join(cacheDir, `${newestFull.name}.pages`);
  if (fs.existsSync(cached)) hashes = decodePages(fs.readFileSync(cached));
  if (!hashes && !newestFull.encrypted) {
    try {
      hashes = decodePages(fs.readFileSync(await store.fetch(`${newestFull.name}.pages`, work)));
    } catch {
      hashes = null;
    }
  }
  if (!hashes) return none(`the page hashes of ${newestFull.name} are not on this machine${newestFull.encrypted ? ' (an encrypted set keeps them only where its full backups were made)' : ''}`);
  if (hashes.pageSize !== now.pageSize) return none('the page size changed');
  if ((hashes.recipients ?? '') !== (now.recipients ?? '') && newestFull.encrypted) return none('the recipients changed (a differential must open with the same keys as its base)');
  if (hashes.bytes !== undefined && hashes.bytes !== newestFull.bytes) return none(`${newestFull.name} is not the file its page hashes were taken from (its size changed)`);
  // Its header read as list reads it: a differential on a damaged base could never be restored.
  const [health] = await assess(store, [{ name: newestFull.name, bytes: newestFull.bytes }], [newestFull], { headers: true, keys: {} });
  if (!health.restorable) return none(`the newest full backup ${newestFull.name} cannot be restored (${health.problem})`);
  return { base: { entry: newestFull, hashes }, fullBecause: null };
}

// ---------------------------------------------------------------------------------------------
// Restore and verify from a set.

/** The newest backup at or before `at` (default: the newest), or an error saying what there is. */
function pickEntry(entries: SetEntry[], set: string, at?: Date): SetEntry {
  if (entries.length === 0) throw Object.assign(new BlufioError('E_SOURCE_MISSING', `the backup set ${set} holds no backups`, 'check the path; blufio list shows what is there'), { emptySet: true });
  // By default the newest that is not named in the future (a clock that jumped ahead).
  const limit = at ? at.getTime() : Date.now() + FUTURE_SLACK;
  const pick = entries.find((e) => e.time.getTime() <= limit);
  if (!pick) {
    const oldest = entries[entries.length - 1];
    throw new BlufioError('E_SOURCE_MISSING', `no backup in ${set} is at or before ${new Date(limit).toISOString()} (the oldest is from ${oldest.time.toISOString()})`,
      at ? 'give a later --at, or leave it out for the newest' : 'every backup there is named in the future (a clock that jumped ahead?): give --at to pick one');
  }
  return pick;
}

/**
 * Runs `fn` on a local, plain database of the set's backup at `at`: a full backup unpacked, or
 * a differential rebuilt on its base and checked against both hashes (in a private directory,
 * removed afterwards). `fn` gets the file and the backup's entry and location.
 */
export async function withSetBackup<T>(set: string, opts: ObjectStorageOptions & KeyOptions & { at?: Date; stem?: string; workDir?: string; signal?: AbortSignal; retries?: number }, fn: (file: string, entry: SetEntry, where: string) => Promise<T>): Promise<T> {
  const store = openStore(set, opts);
  const files = await store.list();
  const all = entriesOf(files);
  const entries = opts.stem === undefined ? all : all.filter((e) => e.stem === opts.stem);
  const stems = new Set(all.map((e) => e.stem));
  if (opts.stem !== undefined && entries.length === 0 && stems.size > 0) {
    // Never another database's backups in place of this one's.
    throw new BlufioError('E_SOURCE_MISSING', `the backup set ${set} holds no backups of "${opts.stem}" (it holds ${[...stems].map((x) => `"${x}"`).join(', ')})`,
      `if you mean to, say whose: --series ${[...stems][0]}; blufio list shows them`);
  }
  if (opts.stem === undefined && stems.size > 1) {
    throw new BlufioError('E_USAGE', `the backup set ${set} holds backups of several databases (${[...stems].join(', ')})`, `say whose: --series ${[...stems][0]}`);
  }
  const entry = pickEntry(entries, set, opts.at);
  const names = new Set(files.map((f) => f.name));
  const work = makeWorkDir('set', opts.workDir);
  try {
    let file: string;
    try {
      const missing = problemByName(entry, names);
      if (missing) throw new BlufioError('E_SOURCE_MISSING', missing);
      file = await materialize(store, entry, work, opts, opts.signal);
    } catch (e) {
      // Never an older state in its place, and never without saying which one can be restored.
      if (!(e instanceof BlufioError) || !['E_SOURCE_MISSING', 'E_CORRUPT', 'E_NOT_SQLITE'].includes(e.code)) throw e;
      // The newest older one that may be restored: not the file that failed (a differential's base,
      // say), nor one made from it, and its name and header sound.
      const failed = new Set([entry.name, (e as { member?: string }).member ?? entry.name]);
      const candidates = entries.slice(entries.indexOf(entry) + 1).filter((x) => !failed.has(x.name) && !(x.base && failed.has(x.base)));
      const members = await assess(store, files, candidates.slice(0, 8), { headers: true, keys: opts, cacheDir: hashCacheDir(set, opts) }).catch(() => null);
      const older = members ? members.find((m) => m.restorable) : candidates.find((x) => !problemByName(x, names));
      const which = opts.at ? `the newest backup at or before ${opts.at.toISOString()}` : 'the newest backup';
      // --at takes the newest of its second: when the older one shares it, it is named by its file.
      const take = older && (older.time.getTime() === entry.time.getTime() ? `give its file instead of the set: ${store.where(older.name)}` : `take it with --at ${older.time.toISOString().replace('.000Z', 'Z')}`);
      throw new BlufioError(e.code, `${which} in ${store.where('')}, ${entry.name}, cannot be restored: ${aboutIt(e.message, store.where(entry.name))}`,
        older ? `the newest one before it whose base is there is ${older.name}: ${take}; blufio check ${set} tells which are sound` : `no older backup of it can be restored either; blufio check ${set} tells more`, { cause: e });
    }
    const where = store.where(entry.name);
    try {
      return await fn(file, entry, where);
    } catch (e) {
      throw renamed(e, file, where);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * withSetBackup() for one named file of a set (`verify /backups/blufio-….from-….diff.gz`): a
 * differential is rebuilt on its base, found beside it; anything else is left to the caller
 * (null: not a set file, or a full backup that reads as it is).
 */
export async function withSetFile<T>(file: string, opts: ObjectStorageOptions & KeyOptions & { workDir?: string; signal?: AbortSignal; retries?: number }, fn: (file: string, entry: SetEntry, where: string) => Promise<T>): Promise<T | null> {
  const name = isS3Url(file) ? file.slice(file.lastIndexOf('/') + 1) : path.basename(file);
  const parsed = parseName(name);
  if (!parsed || parsed.kind !== 'diff' || parsed.pages) return null;
  const dir = isS3Url(file) ? file.slice(0, file.lastIndexOf('/') + 1) : path.dirname(path.resolve(file));
  const store = openStore(dir, opts);
  const found = (await store.list()).find((f) => f.name === name);
  if (!found) return null;
  const { pages: _p, ...entry } = parsed;
  const work = makeWorkDir('set', opts.workDir);
  try {
    const plain = await materialize(store, { ...entry, bytes: found.bytes }, work, opts, opts.signal);
    return await fn(plain, { ...entry, bytes: found.bytes }, store.where(name));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** True for the error of a set that holds no backups at all (restore --if-missing starts empty then). */
export function isEmptySet(e: unknown): boolean {
  return e instanceof BlufioError && (e as BlufioError & { emptySet?: boolean }).emptySet === true;
}

/** Parses --at: ISO 8601, extended or basic (a date alone is its midnight UTC; no zone means UTC). */
export function parseAt(text: string): Date {
  // ISO 8601's basic form too, the one backups are named in (20261202T082645Z).
  // (t and z as T and Z: ISO 8601 allows lower case.)
  const given = text.trim().replace(/t/, 'T').replace(/z$/, 'Z');
  const basic = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})?)?(Z?)$/.exec(given);
  const t = basic ? `${basic[1]}-${basic[2]}-${basic[3]}${basic[4] ? `T${basic[4]}:${basic[5]}${basic[6] ? `:${basic[6]}` : ''}` : ''}${basic[7]}` : given;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(t);
  const bad = () => new BlufioError('E_USAGE', `--at "${text}" is not a time`, 'write it in ISO 8601, e.g. --at 2026-11-24T08:00Z (UTC unless a zone is given)');
  if (!m) throw bad();
  const [, y, mo, d, h = '0', mi = '0', sec = '0'] = m;
  // Each field in its range (JavaScript would roll February 30 over into March).
  const days = new Date(Date.UTC(Number(y), Number(mo), 0)).getUTCDate();
  if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > days || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) throw bad();
  const date = new Date(m[7] ? t.replace(' ', 'T') : `${t.replace(' ', 'T')}${m[4] === undefined ? 'T00:00:00' : ''}Z`);
  if (Number.isNaN(date.getTime())) throw bad();
  return date;
}

// ---------------------------------------------------------------------------------------------
// Pruning.

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

export interface PruneDecision {
  name: string;
  time: string;
  kind: 'full' | 'diff';
  /** Why it stays ("last", "daily", "base of …", "newest full"), or null when it goes. */
  keptBecause: string[];
  /** For a backup that can never be restored (a differential whose base is gone): why. Such a backup is removed and counts for no rule. */
  problem?: string;
}

/** The UTC bucket of a time for each rule (ISO weeks for weekly). */
function bucketOf(rule: keyof RetentionPolicy, t: Date): string {
  const iso = t.toISOString();
  switch (rule) {
    case 'hourly':
      return iso.slice(0, 13);
    case 'daily':
      return iso.slice(0, 10);
    case 'monthly':
      return iso.slice(0, 7);
    case 'yearly':
      return iso.slice(0, 4);
    case 'weekly': {
      const d = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
      const day = d.getUTCDay() || 7;
      d.setUTCDate(d.getUTCDate() + 4 - day);
      const year = d.getUTCFullYear();
      const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / DAY + 1) / 7);
      return `${year}-W${week}`;
    }
    default:
      return iso;
  }
}

/**
 * restic's `forget` on one series (newest first): each rule keeps the newest backup of each of
 * its N most recent periods that have one (--keep-last: the N newest); a backup kept by any rule
 * stays; the newest always stays; so do the newest full backup (new differentials are made
 * against it) and the base of every differential that stays.
 */
export function planPrune(entries: SetEntry[], policy: RetentionPolicy): PruneDecision[] {
  const reasons = new Map<string, string[]>(entries.map((e) => [e.name, []]));
  const keep = (e: SetEntry, why: string) => reasons.get(e.name)!.push(why);
  if (policy.last) entries.slice(0, policy.last).forEach((e) => keep(e, 'last'));
  for (const rule of ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const) {
    const n = policy[rule];
    if (!n) continue;
    let last: string | null = null;
    let count = 0;
    for (const e of entries) {
      const b = bucketOf(rule, e.time);
      if (b === last) continue;
      last = b;
      if (count++ >= n) break;
      keep(e, rule);
    }
  }
  if (entries[0]) keep(entries[0], 'newest');
  const newestFull = entries.find((e) => e.kind === 'full');
  if (newestFull) keep(newestFull, 'newest full (new differentials are made against it)');
  for (const e of entries) {
    if (e.kind === 'diff' && reasons.get(e.name)!.length > 0 && e.base && reasons.has(e.base)) keep(entries.find((x) => x.name === e.base)!, `base of ${e.name}`);
  }
  return entries.map((e) => ({ name: e.name, time: e.time.toISOString(), kind: e.kind, keptBecause: [...new Set(reasons.get(e.name)!)] }));
}

export interface PruneResult {
  command: 'prune';
  set: string;
  dryRun: boolean;
  kept: PruneDecision[];
  removed: PruneDecision[];
  /** Backups that cannot be restored, with why; differentials whose base is gone are removed (removed: true), the others kept for the operator. */
  broken: Array<{ name: string; problem: string; removed: boolean }>;
}

/** Applies `policy` to every series in the set; removes what no rule keeps (not with dryRun). */
export async function prune(set: string, policy: RetentionPolicy, opts: ObjectStorageOptions & KeyOptions & { dryRun?: boolean; signal?: AbortSignal; stem?: string } = {}): Promise<PruneResult> {
  if (!Object.values(policy).some((n) => typeof n === 'number' && n > 0)) {
    const zeros = Object.values(policy).some((n) => n === 0);
    throw new BlufioError('E_USAGE', zeros ? 'every --keep-* rule given is 0: nothing would be kept, so nothing is pruned' : 'prune needs a policy: no --keep-* rule was given and [backup.retention] in blufio.toml has none',
      'e.g. blufio prune <set> --keep-daily 7 --keep-weekly 4, or keep_daily = 7 under [backup.retention] (at least one rule above 0)');
  }
  const store = openStore(set, opts);
  const files = await store.list();
  const all = entriesOf(files, opts.stem);
  const future = all.filter((e) => e.time.getTime() > Date.now() + FUTURE_SLACK);
  if (future.length > 0) {
    // Rules count periods back from the newest backup: one named in the future would push the real ones out.
    throw new BlufioError('E_USAGE', `${store.where(future[0].name)}${future.length > 1 ? ` and ${future.length - 1} more are` : ' is'} named after now (a clock that jumped ahead?); pruning would count from it`,
      'check this machine\'s clock, and rename or remove that backup first');
  }
  const names = new Set(files.map((f) => f.name));
  // The rules count only backups that can be restored (names and headers, as list reads them):
  // a --keep-last 2 that kept two broken ones would remove the only backup that restores. A
  // differential whose base is gone can never be restored: it is removed. Any other broken
  // backup (a damaged header, a base that is not the file it was made from) is kept and said,
  // counted by no rule: the operator decides (blufio check names them).
  const members = await assess(store, files, all, { headers: true, keys: opts, cacheDir: hashCacheDir(set, opts) });
  const broken = members.filter((m) => !m.restorable);
  const orphan = (m: SetMember) => m.kind === 'diff' && !names.has(m.base!);
  const sound = all.filter((e) => !broken.some((b) => b.name === e.name));
  const decisions: PruneDecision[] = [];
  for (const stem of new Set(sound.map((e) => e.stem))) decisions.push(...planPrune(sound.filter((e) => e.stem === stem), policy));
  const removed = [
    ...decisions.filter((d) => d.keptBecause.length === 0),
    ...broken.filter(orphan).map((m) => ({ name: m.name, time: m.time.toISOString(), kind: m.kind, keptBecause: [], problem: m.problem! })),
  ];
  // A broken full backup that a kept differential names stays with it, as any base does.
  const keptBroken = broken.filter((m) => !orphan(m)).map((m) => ({ name: m.name, time: m.time.toISOString(), kind: m.kind, keptBecause: ['cannot be restored: counted by no rule, kept for you to look at (blufio check)'], problem: m.problem! }));
  if (!opts.dryRun) {
    // Differentials first, then full backups: a run killed midway never leaves a differential
    // without its base (a base goes only when none of its differentials stays).
    removed.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'diff' ? -1 : 1));
    for (const d of removed) {
      await store.remove(d.name);
      if (names.has(`${d.name}.pages`)) await store.remove(`${d.name}.pages`);
    }
    // Page hashes whose backup is gone (a prune killed between the two removals).
    const kept = new Set(entriesOf(files).map((e) => e.name));
    for (const f of files) {
      const p = parseName(f.name);
      if (p?.pages && !kept.has(f.name.slice(0, -'.pages'.length)) && (opts.stem === undefined || p.stem === opts.stem)) await store.remove(f.name);
    }
  }
  return { command: 'prune', set: store.where(''), dryRun: !!opts.dryRun, kept: [...decisions.filter((d) => d.keptBecause.length > 0), ...keptBroken], removed, broken: broken.map((b) => ({ name: b.name, problem: b.problem!, removed: orphan(b) })) };
}
