/**
 * A store in an S3 bucket under a prefix (store.ts): s3://bucket/prefix/ — the objects directly
 * under the prefix are its files. Uploads are atomic (one PUT, or a multipart upload completed
 * only when every part is there: transfer.ts); put-if-absent is a claim protocol, since some
 * S3-compatible servers ignore If-None-Match (see put()).
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { BlufioError } from '../../errors.ts';
import { clientFor, download, upload, type ObjectStorageOptions } from './transfer.ts';
import { parseS3Url, S3Client } from './client.ts';
import { pidAlive } from '../../files.ts';
import type { Body, PutOptions, Store, StoreOptions } from '../store.ts';

/** A run's claim on a name it is about to publish (BucketStore.put). */
const CLAIM = '.claim-';
const CLAIM_KEY = /\.claim-[0-9a-f]{16}$/;

/** An S3 time as a StoredFile's `modified` (nothing when the server gave none). */
const modified = (t: string | null) => {
  const ms = t ? Date.parse(t) : NaN;
  return Number.isNaN(ms) ? {} : { modified: ms };
};

export class BucketStore implements Store {
  constructor(readonly client: S3Client, readonly bucket: string, readonly prefix: string, readonly opts: ObjectStorageOptions & StoreOptions = {}) {}

  /** The store at `url` (s3://bucket/prefix/, the trailing / optional). */
  static open(url: string, opts: ObjectStorageOptions & StoreOptions): BucketStore {
    const loc = parseS3Url(url.endsWith('/') ? url : `${url}/`, false);
    return new BucketStore(clientFor(opts), loc.bucket, loc.key, opts);
  }

  /** The store holding the object at `url` (s3://bucket/dir/key), and the object's name in it. */
  static openFile(url: string, opts: ObjectStorageOptions & StoreOptions): { store: BucketStore; name: string } {
    const loc = parseS3Url(url);
    const cut = loc.key.lastIndexOf('/') + 1;
    return { store: new BucketStore(clientFor(opts), loc.bucket, loc.key.slice(0, cut), opts), name: loc.key.slice(cut) };
  }

  where = (name: string) => `s3://${this.bucket}/${this.prefix}${name}`;

  async list() {
    return (await this.client.list(this.bucket, this.prefix))
      .filter((o) => !o.key.slice(this.prefix.length).includes('/'))
      .map((o) => ({ name: o.key.slice(this.prefix.length), bytes: o.size, ...modified(o.lastModified) }));
  }

  async stat(name: string) {
    const head = await this.client.head({ bucket: this.bucket, key: this.prefix + name });
    return head ? { name, bytes: head.size, ...modified(head.lastModified) } : null;
  }

  /** The server's clock: the Date header of one small listing (to the second). */
  clock() {
    return this.client.serverTime(this.bucket, `${this.prefix}.blufio-clock`);
  }

  peek(name: string, bytes: number) {
    return this.client.getPrefix({ bucket: this.bucket, key: this.prefix + name }, bytes);
  }

  private fetched = 0;
  async fetch(name: string, workDir: string, opts: PutOptions = {}) {
    // Not named after the key: a name may be longer than a file name may be.
    const file = path.join(workDir, `object-${++this.fetched}`);
    const signal = opts.signal ?? this.opts.signal;
    await download(this.client.withSignal(signal), { bucket: this.bucket, key: this.prefix + name }, file, { signal, onProgress: opts.onProgress });
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
  async put(name: string, body: Body, opts: PutOptions = {}) {
    const loc = { bucket: this.bucket, key: this.prefix + name };
    const sending = { ...this.opts, signal: opts.signal ?? this.opts.signal, onProgress: opts.onProgress };
    // The put's own signal reaches the requests in flight too (a hung server must not outlast it).
    const client = this.client.withSignal(sending.signal);
    // Replacing needs no claim: the object is whole before and after (S3's PUTs are atomic).
    if (opts.replace) return { published: true, bytes: await upload(client, loc, body, { ...sending, force: true }) };
    if (!(opts.alone && opts.fresh) && (await client.head(loc))) return { published: false, bytes: 0 };
    if (opts.alone) {
      try {
        return { published: true, bytes: await upload(client, loc, body, { ...sending, force: false, fresh: opts.fresh }) };
      } catch (e) {
        if (e instanceof BlufioError && e.code === 'E_DEST_EXISTS') return { published: false, bytes: 0 };
        throw e;
      }
    }
    const claim = { bucket: this.bucket, key: `${loc.key}${CLAIM}${randomBytes(8).toString('hex')}` };
    // Who holds it: a claim of this machine whose process is gone (killed, or its server went
    // down before it could remove the claim) is stale at once.
    await client.put(claim, Buffer.from(JSON.stringify({ host: os.hostname(), pid: process.pid })), true);
    try {
      const listed = await client.list(this.bucket, this.prefix);
      // Any other claim on this name counts, however old (a killed run's blocks only its own
      // second's name). Others' claims an hour older than ours, by the server's clock (never by
      // this machine's, which may be off), were left by killed runs: removed.
      const ours = listed.find((o) => o.key === claim.key);
      const stale = ours ? Date.parse(ours.lastModified) - 3_600_000 : NaN;
      for (const o of listed) {
        if (o.key !== claim.key && CLAIM_KEY.test(o.key) && !o.key.startsWith(`${loc.key}${CLAIM}`) && Date.parse(o.lastModified) < stale) {
          await client.delete({ bucket: this.bucket, key: o.key }).catch(() => {});
        }
      }
      const rivals: typeof listed = [];
      for (const o of listed) {
        if (!o.key.startsWith(`${loc.key}${CLAIM}`) || o.key === claim.key) continue;
        if (Date.parse(o.lastModified) < stale || (await this.deadHolder(o.key))) {
          await client.delete({ bucket: this.bucket, key: o.key }).catch(() => {});
          continue;
        }
        rivals.push(o);
      }
      // Our own claim not listed yet: the argument above does not hold, so give way too.
      if (!ours || rivals.length > 0 || listed.some((o) => o.key === loc.key)) {
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 200));
        return { published: false, bytes: 0 };
      }
      return { published: true, bytes: await upload(client, loc, body, { ...sending, force: false }) };
    } catch (e) {
      if (e instanceof BlufioError && e.code === 'E_DEST_EXISTS') return { published: false, bytes: 0 };
      throw e;
    } finally {
      // Not through the job's client: after a Ctrl-C or --timeout its signal is aborted, and the
      // claim would stay behind (found by an attack run). A few seconds at most.
      await new S3Client(this.client.config, { retries: 1, requestTimeoutMs: 5_000 }).delete(claim).catch(() => {});
    }
  }

  /** True when the claim at `key` was made by a process of this machine that is gone. */
  private async deadHolder(key: string): Promise<boolean> {
    try {
      const holder = JSON.parse((await this.client.getPrefix({ bucket: this.bucket, key }, 512)).toString('utf8')) as { host?: string; pid?: number };
      return holder.host === os.hostname() && typeof holder.pid === 'number' && holder.pid !== process.pid && !pidAlive(holder.pid);
    } catch {
      return false;
    }
  }

  async remove(name: string) {
    await this.client.delete({ bucket: this.bucket, key: this.prefix + name });
  }
}
