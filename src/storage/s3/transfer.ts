/**
 * Moving files to and from S3: a packed backup streamed up as one object (multipart, constant
 * memory, atomic), and an object streamed down to a private file. client.ts is the protocol,
 * bucket.ts the store (storage/store.ts) built on these.
 *
 * Atomic: the object appears at its key only when complete (one PUT, or CompleteMultipartUpload).
 * Any failure or Ctrl-C aborts the multipart upload. A `kill -9` cannot: the upload it started is
 * written down first in an upload journal (~/.local/state/blufio/uploads/, one small file per
 * upload, with our pid), and the next run to the same bucket and prefix aborts the uploads of
 * runs that are gone. A bucket lifecycle rule that aborts incomplete multipart uploads after a day
 * is the belt to those braces (docs/object-storage.md).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { throwIfAborted } from '../../core/backup-loop.ts';
import { readFully } from '../../vfs/disk-file.ts';
import { BlufioError, fsError, isFileSystemError } from '../../errors.ts';
import { pidAlive, stateDir } from '../../files.ts';
import type { ProgressCallback } from '../../core/progress.ts';
import type { Body, Chunks } from '../store.ts';
import { expectedEtag, md5, resolveS3, S3Client, s3Url, type S3Location, type S3Settings } from './client.ts';

/**
 * Parts of a multipart upload: S3's least, 5 MiB (8 MiB parts, the AWS CLI's, kept a .db.gz.age
 * upload ~8 MiB higher: three are held), larger for a file that would need more than 9,000 of
 * them (S3 takes 10,000).
 */
const partBytesFor = (total: number) => Math.max(5 * 1024 * 1024, Math.ceil(total / 9000 / 1048576) * 1048576);
/**
 * Parts in flight at once: 2 x 8 MiB (+ the one being filled) kept a 100 MiB upload near 128 MiB
 * peak RSS (4 in flight: 163 MiB, measured; no faster to a local server). Under Bun one: its
 * fetch holds a copy of each body, and a 400 MiB plain upload peaked at 132 MiB with two, 121–126
 * with one (a full collection after each part instead: 128–143, not kept; 2026-12-07).
 */
const IN_FLIGHT = process.versions.bun ? 1 : 2;

/** How the library and the CLI reach object storage. */
export interface ObjectStorageOptions {
  /** [backup.s3]; explicit keys here win over the environment and ~/.aws (for embedding). */
  s3?: S3Settings & { accessKeyId?: string; secretAccessKey?: string; sessionToken?: string };
  /** The environment to read AWS_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where the upload journal lives (default $XDG_STATE_HOME/blufio or ~/.local/state/blufio). */
  stateDir?: string;
}

/** A client for `opts`, with the job's retries and abort signal. */
export function clientFor(opts: ObjectStorageOptions & { signal?: AbortSignal; retries?: number }): S3Client {
  const env = opts.env ?? process.env;
  const explicit = opts.s3?.accessKeyId && opts.s3.secretAccessKey
    ? { AWS_ACCESS_KEY_ID: opts.s3.accessKeyId, AWS_SECRET_ACCESS_KEY: opts.s3.secretAccessKey, AWS_SESSION_TOKEN: opts.s3.sessionToken ?? '' }
    : {};
  const config = resolveS3(opts.s3, { ...env, ...explicit });
  if (explicit.AWS_ACCESS_KEY_ID) config.credentialSource = 'the s3 options';
  return new S3Client(config, { signal: opts.signal, retries: Math.min(opts.retries ?? 5, 8) });
}

// ---------------------------------------------------------------------------------------------
// The upload journal.

interface JournalEntry {
  endpoint: string;
  bucket: string;
  key: string;
  uploadId: string;
  pid: number;
}

/** Writes down an upload before it has parts; returns the entry's file (removed when it ends). */
function journalUpload(opts: ObjectStorageOptions, e: JournalEntry): string | null {
  const dir = path.join(stateDir(opts), 'uploads');
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, `${e.pid}-${randomBytes(6).toString('hex')}.json`);
    fs.writeFileSync(file, JSON.stringify(e), { mode: 0o600 });
    return file;
  } catch {
    // No place to write it down (a read-only home): the lifecycle rule is then the only cleanup.
    return null;
  }
}

/**
 * Aborts the multipart uploads that killed runs started on this endpoint and bucket under the
 * same prefix (the key's "directory"), and forgets them. Returns how many were aborted.
 */
async function abortAbandonedUploads(client: S3Client, loc: S3Location, opts: ObjectStorageOptions): Promise<number> {
  const dir = path.join(stateDir(opts), 'uploads');
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  const prefix = loc.key.includes('/') ? loc.key.slice(0, loc.key.lastIndexOf('/') + 1) : '';
  let aborted = 0;
  for (const name of names) {
    const file = path.join(dir, name);
    let e: JournalEntry;
    try {
      e = JSON.parse(fs.readFileSync(file, 'utf8')) as JournalEntry;
    } catch {
      continue;
    }
    if (pidAlive(e.pid) || e.endpoint !== client.config.endpoint || e.bucket !== loc.bucket || !e.key.startsWith(prefix)) continue;
    try {
      // Forgotten either way once the server has answered: aborted, or it cannot abort uploads.
      if (await client.abortUpload({ bucket: e.bucket, key: e.key }, e.uploadId)) aborted++;
    } catch {
      continue; // kept for a later run
    }
    fs.rmSync(file, { force: true });
  }
  return aborted;
}

// ---------------------------------------------------------------------------------------------
// Upload.

export interface UploadOptions extends ObjectStorageOptions {
  force?: boolean;
  /**
   * A name no other run can write (the replicator's segments, under its lock): a single PUT is
   * not looked at again afterwards — the server checked its Content-MD5, and its ETag answer is
   * compared — one request, not two.
   */
  fresh?: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
}

/**
 * Streams `body` (a local file, packed on the way: storage/store.ts) up to `loc`: parts of 5 MiB,
 * two in flight, each with its MD5; one PUT when the whole object is smaller than a part.
 * Afterwards the object's size (and ETag, where it is an MD5) must be what was sent. Returns the
 * bytes sent.
 */
export async function upload(client: S3Client, loc: S3Location, body: Body, opts: UploadOptions): Promise<number> {
  await abortAbandonedUploads(client, loc, opts);
  const total = fs.statSync(body.file).size;
  const pool: Buffer[] = [];
  const progress = (done: number) => opts.onProgress?.({ phase: 'upload', totalPages: total, remainingPages: total - done, attempt: 1, pageSize: 1 });
  // Nothing to add: the parts are read from the file straight into the pooled buffers (no
  // stream chunks: 1 MiB of garbage per MiB sent kept ~20 MiB more resident, measured).
  // (Packed, it is smaller, or bigger by age's 16 bytes a 64 KiB chunk.)
  const partBytes = partBytesFor(total * 1.001);
  if (!body.pack) return sendParts(client, loc, fileParts(body.file, pool, partBytes, progress, opts.signal), pool, opts, partBytes);
  return sendParts(client, loc, cutParts(body.pack.chunks(progress), pool, partBytes), pool, opts, partBytes);
}

async function sendParts(client: S3Client, loc: S3Location, parts: AsyncGenerator<Buffer>, pool: Buffer[], opts: UploadOptions, partBytes: number): Promise<number> {
  const first = await parts.next();
  const noClobber = !opts.force;
  if (first.done || (first.value as Buffer).length < partBytes) {
    // Smaller than one part: one PUT.
    const body = first.done ? Buffer.alloc(0) : (first.value as Buffer);
    const etag = await client.put(loc, body, noClobber);
    const expected = expectedEtag([md5(body)], false);
    if (opts.fresh) {
      if (/^"[0-9a-f]{32}"$/.test(etag) && etag !== expected) {
        throw new BlufioError('E_IO', `${s3Url(loc)} was stored with ETag ${etag}, not the ${expected} of what was sent`, 'it is sent again');
      }
    } else await checkUploaded(client, loc, body.length, [expected], false);
    return body.length;
  }
  const uploadId = await client.createUpload(loc);
  const journal = journalUpload(opts, { endpoint: client.config.endpoint, bucket: loc.bucket, key: loc.key, uploadId, pid: process.pid });
  const etags: string[] = [];
  const md5s: Buffer[] = [];
  const whole = createHash('md5');
  let bytes = 0;
  try {
    const inFlight = new Set<Promise<void>>();
    let failed: unknown = null;
    let n = 0;
    for (let part: IteratorResult<Buffer> = first; !part.done; part = await parts.next()) {
      throwIfAborted(opts.signal);
      const body = part.value;
      const number = ++n;
      bytes += body.length;
      md5s[number - 1] = md5(body);
      whole.update(body);
      const p: Promise<void> = client.uploadPart(loc, uploadId, number, body).then((etag) => {
        etags[number - 1] = etag;
        pool.push(body);
      }, (e) => {
        failed ??= e;
      }).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      if (failed) throw failed;
    }
    await Promise.all(inFlight);
    if (failed) throw failed;
    await client.completeUpload(loc, uploadId, etags, noClobber);
  } catch (e) {
    // Never leave a half-sent upload behind when we can help it (Ctrl-C included), but never
    // wait long for it either: a few seconds, then the journal keeps it for the next run.
    const aborted = await new S3Client(client.config, { retries: 1, requestTimeoutMs: 5_000 }).abortUpload(loc, uploadId).catch(() => false);
    if (journal && aborted) fs.rmSync(journal, { force: true });
    throw e;
  }
  if (journal) fs.rmSync(journal, { force: true });
  await checkUploaded(client, loc, bytes, [expectedEtag(md5s, true), `"${whole.digest('hex')}"`], true);
  return bytes;
}

/** The file's bytes as parts of `partBytes`, read into buffers from `pool` (see cutParts). */
async function* fileParts(src: string, pool: Buffer[], partBytes: number, progress: (done: number) => void, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const fd = fs.openSync(src, 'r');
  try {
    for (let at = 0; ; ) {
      throwIfAborted(signal);
      const part = pool.pop() ?? Buffer.allocUnsafe(partBytes);
      const filled = readFully(fd, part, at);
      at += filled;
      progress(at);
      if (filled === 0) return;
      yield filled === partBytes ? part : part.subarray(0, filled);
      if (filled < partBytes) return;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Cuts Chunks into parts of `partBytes` (the last one shorter), copied into buffers taken from
 * `pool` and given back with pool.push() once a part is sent: an upload holds IN_FLIGHT + 1
 * buffers whatever its size (a new buffer per part left up to ~64 MiB of garbage between
 * collections: 180 MiB peak RSS for 100 MiB, measured).
 */
async function* cutParts(input: Chunks, pool: Buffer[], partBytes: number): AsyncGenerator<Buffer> {
  let part = pool.pop() ?? Buffer.allocUnsafe(partBytes);
  let filled = 0;
  for await (const chunk of input) {
    for (let off = 0; off < chunk.length; ) {
      const n = Math.min(partBytes - filled, chunk.length - off);
      part.set(chunk.subarray(off, off + n), filled);
      off += n;
      filled += n;
      if (filled === partBytes) {
        yield part;
        part = pool.pop() ?? Buffer.allocUnsafe(partBytes);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield part.subarray(0, filled);
}

/**
 * The object at `loc` must have the size sent and an ETag that fits what was sent: the MD5 of
 * one PUT, or for a multipart upload S3's "<MD5 of the parts' MD5s>-<parts>" (some servers give
 * the whole object's MD5 instead: accepted too). An ETag of another form (SSE-KMS, providers
 * that hash otherwise) says nothing either way; each part's MD5 was checked by the server as it
 * arrived. A mismatch is an error, but the object is left alone: it may be another run's
 * (two runs to one key at once), which must not be deleted by this one.
 */
async function checkUploaded(client: S3Client, loc: S3Location, bytes: number, etags: string[], multipart: boolean): Promise<void> {
  const res = await client.send({ method: 'HEAD', loc });
  const size = Number(res.headers.get('content-length'));
  const kms = /kms|customer/i.test(`${res.headers.get('x-amz-server-side-encryption') ?? ''}${res.headers.get('x-amz-server-side-encryption-customer-algorithm') ?? ''}`);
  const got = res.headers.get('etag') ?? '';
  const comparable = !kms && (multipart ? /^"[0-9a-f]{32}-\d+"$/.test(got) : /^"[0-9a-f]{32}"$/.test(got));
  if (size !== bytes || (comparable && !etags.includes(got))) {
    throw new BlufioError('E_IO', `${s3Url(loc)} does not hold what this run sent (${size} bytes, ETag ${got}; sent ${bytes} bytes, ETag ${etags[0]}): another run wrote it meanwhile, or the upload was changed on the way`,
      'do not trust this object: run the backup again (one run at a time per key), then check it with blufio verify');
  }
}

// ---------------------------------------------------------------------------------------------
// Download.

/**
 * Streams the object at `loc` into a new private file `dest` (0600). The bytes must be as many as
 * the server announced, and match its ETag where that is the object's MD5; a connection dropped
 * midway starts the download over (up to three times).
 */
export async function download(client: S3Client, loc: S3Location, dest: string, opts: { signal?: AbortSignal; onProgress?: ProgressCallback } = {}): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const res = await client.get(loc);
    const total = Number(res.headers.get('content-length') ?? -1);
    const etag = res.headers.get('etag') ?? '';
    const hash = createHash('md5');
    let got = 0;
    try {
      const body = res.body;
      const count = async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          got += chunk.length;
          hash.update(chunk);
          opts.onProgress?.({ phase: 'download', totalPages: Math.max(total, got), remainingPages: Math.max(0, total - got), attempt, pageSize: 1 });
          yield chunk;
        }
      };
      await pipeline(body, count, fs.createWriteStream(dest, { mode: 0o600 }), { signal: opts.signal });
    } catch (e) {
      throwIfAborted(opts.signal);
      if (isFileSystemError(e)) throw fsError(e, dest, `cannot download ${s3Url(loc)}`);
      if (attempt < 3) continue;
      throw new BlufioError('E_IO', `the download of ${s3Url(loc)} was cut off after ${got} of ${total} bytes`, 'try again', { cause: e });
    }
    if (total >= 0 && got !== total) {
      if (attempt < 3) continue;
      throw new BlufioError('E_IO', `the download of ${s3Url(loc)} ended after ${got} of ${total} bytes`, 'try again');
    }
    if (/^"[0-9a-f]{32}"$/.test(etag) && !res.headers.get('x-amz-server-side-encryption')?.includes('kms') && `"${hash.digest('hex')}"` !== etag) {
      throw new BlufioError('E_CORRUPT', `${s3Url(loc)} arrived with other bytes than the server holds (MD5 differs from its ETag)`, 'try again; if it repeats, the stored object is damaged: use another backup');
    }
    return got;
  }
}
