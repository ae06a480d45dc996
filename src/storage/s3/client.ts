/**
 * A thin S3 layer: `s3://bucket/key` URLs, settings resolved the way every S3 tool resolves them,
 * SigV4 signing (aws4fetch's signer, ~10 KiB, the same on Node, Deno, Bun and browsers), requests
 * through node:http(s) (fetch copies every request body once more: an 8 MiB part per request
 * left a 100 MiB upload at 180 MiB peak RSS), retries, errors a person can act on, and the few
 * operations backups need: multipart upload, streamed download, list, delete.
 *
 * Why not the AWS SDK (measured, docs/object-storage.md): 590 KiB bundled against 10 KiB, its
 * newer versions need Node 22, and its default checksums broke uploads to R2 and B2. What we send
 * instead is cheap and understood everywhere: Content-MD5 on every PUT and part (the server
 * checks it), and after the upload the object's size and ETag are compared with what was sent.
 *
 * Secrets: the keys go into the signature only; no message, error, --json or debug trace here
 * ever contains them (errors carry the S3 error code, the bucket, the key and the endpoint).
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as Http from 'node:http';
import { Readable } from 'node:stream';
import { AwsV4Signer } from 'aws4fetch';
import { throwIfAborted } from '../../core/backup-loop.ts';
import { BlufioError } from '../../errors.ts';

/** Where an object is: `s3://bucket/key`. */
export interface S3Location {
  bucket: string;
  key: string;
}

export const isS3Url = (s: string) => /^s3:\/\//i.test(s);

/** Parses `s3://bucket/key` (`key` may be empty for a prefix: `s3://bucket/`). */
export function parseS3Url(url: string, needKey = true): S3Location {
  const m = /^s3:\/\/([^/]*)\/?([\s\S]*)$/i.exec(url);
  const bucket = m?.[1] ?? '';
  if (!m || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..')) {
    throw new BlufioError('E_USAGE', `"${url}" is not an s3://BUCKET/KEY address (bucket names are 3–63 lower-case letters, digits, dots and hyphens)`, needKey ? 'write it as s3://my-bucket/backups/blufio.db.gz' : 'write it as s3://my-bucket/backups/ (a set: a prefix ending in /)');
  }
  if (needKey && (m[2] === '' || m[2].endsWith('/'))) {
    throw new BlufioError('E_USAGE', `"${url}" names no object${m[2] === '' ? '' : ' (it ends in /)'}`, `give the object's key: s3://${bucket}/${m[2]}blufio.db.gz`);
  }
  // An empty segment (s3://b/p//k, s3://b//p/) is a key of its own on S3, beside the one meant:
  // a set there would never be listed with s3://b/p/ (found by an attack run).
  if (m[2].startsWith('/') || m[2].includes('//')) {
    throw new BlufioError('E_USAGE', `"${url}" has an empty segment (// or a / right after the bucket), which would name other keys than the ones meant`, `write it with single slashes: s3://${bucket}/${m[2].replace(/\/{2,}/g, '/').replace(/^\//, '')}`);
  }
  // HTTP clients resolve "." and ".." in a path (even as %2E): the request would go to another
  // object, or another bucket. S3 allows such keys; we refuse them rather than write elsewhere.
  if (m[2].split('/').some((seg) => seg === '.' || seg === '..')) {
    throw new BlufioError('E_USAGE', `"${url}" has a "." or ".." segment, which HTTP would resolve to another key`, 'write the key without "." and ".." segments');
  }
  if (/[\x00-\x1f\x7f]/.test(m[2])) {
    throw new BlufioError('E_USAGE', `"${url.replace(/[\x00-\x1f\x7f]/g, '?')}" has control characters (a line break?) in its key`, 'write the key on one line, without control characters');
  }
  return { bucket, key: m[2] };
}

export const s3Url = (l: S3Location) => `s3://${l.bucket}/${l.key}`;

/** [backup.s3] in blufio.toml. */
export interface S3Settings {
  endpoint?: string;
  region?: string;
  /** Address buckets as endpoint/bucket/key (default: whenever a custom endpoint is set). */
  forcePathStyle?: boolean;
  profile?: string;
}

/** What a client needs, resolved: never printed whole (it holds the secret). */
export interface S3Config {
  endpoint: string;
  region: string;
  pathStyle: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Where the keys came from, for messages ("AWS_ACCESS_KEY_ID", "profile backup in ~/.aws/credentials"). */
  credentialSource: string;
}

/** Reads an AWS-style INI file (~/.aws/credentials, ~/.aws/config) into sections. */
function readIni(file: string): Record<string, Record<string, string>> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const out: Record<string, Record<string, string>> = {};
  let section: Record<string, string> | null = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[\s*(.+?)\s*\]$/.exec(line);
    if (head) {
      section = out[head[1]] ??= {};
      continue;
    }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (kv && section && !/^\s/.test(raw)) section[kv[1].toLowerCase()] = kv[2];
  }
  return out;
}

/**
 * Resolves endpoint, region, addressing and keys. Later wins: [backup.s3] in blufio.toml, then
 * the AWS profile files (~/.aws/config, ~/.aws/credentials; AWS_PROFILE or backup.s3.profile),
 * then the AWS environment variables. No keys anywhere is an E_CONFIG error naming what to set.
 */
export function resolveS3(settings: S3Settings = {}, env: NodeJS.ProcessEnv = process.env, home = os.homedir()): S3Config {
  const profile = env.AWS_PROFILE || settings.profile || 'default';
  const credFile = env.AWS_SHARED_CREDENTIALS_FILE || path.join(home, '.aws', 'credentials');
  const confFile = env.AWS_CONFIG_FILE || path.join(home, '.aws', 'config');
  const creds = readIni(credFile)[profile] ?? {};
  const conf = readIni(confFile);
  const pconf = (profile === 'default' ? conf.default : conf[`profile ${profile}`]) ?? {};

  let accessKeyId: string | undefined;
  let secretAccessKey: string | undefined;
  let sessionToken: string | undefined;
  let credentialSource = '';
  if (!!env.AWS_ACCESS_KEY_ID !== !!env.AWS_SECRET_ACCESS_KEY) {
    // Half a pair is a mistake, never a reason to use other keys (a profile's) silently.
    throw new BlufioError('E_CONFIG', `object storage needs credentials: ${env.AWS_ACCESS_KEY_ID ? 'AWS_SECRET_ACCESS_KEY' : 'AWS_ACCESS_KEY_ID'} is not set, but ${env.AWS_ACCESS_KEY_ID ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is`,
      'set both, or neither (then ~/.aws/credentials is used)');
  }
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    accessKeyId = env.AWS_ACCESS_KEY_ID;
    secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    sessionToken = env.AWS_SESSION_TOKEN || undefined;
    credentialSource = 'AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY';
  } else if (creds.aws_access_key_id && creds.aws_secret_access_key) {
    accessKeyId = creds.aws_access_key_id;
    secretAccessKey = creds.aws_secret_access_key;
    sessionToken = creds.aws_session_token || undefined;
    credentialSource = `profile ${profile} in ${credFile}`;
  } else if (pconf.aws_access_key_id && pconf.aws_secret_access_key) {
    accessKeyId = pconf.aws_access_key_id;
    secretAccessKey = pconf.aws_secret_access_key;
    sessionToken = pconf.aws_session_token || undefined;
    credentialSource = `profile ${profile} in ${confFile}`;
  }
  if (!accessKeyId || !secretAccessKey) {
    const half = env.AWS_ACCESS_KEY_ID ? 'AWS_SECRET_ACCESS_KEY is not set' : env.AWS_SECRET_ACCESS_KEY ? 'AWS_ACCESS_KEY_ID is not set' : 'no credentials were found';
    throw new BlufioError('E_CONFIG', `object storage needs credentials: ${half}`,
      `set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put them under [${profile}] in ${credFile} (AWS_PROFILE picks another profile)`);
  }
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || pconf.region || settings.region || 'us-east-1';
  const custom = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || pconf.endpoint_url || settings.endpoint;
  let endpoint = custom ?? `https://s3.${region}.amazonaws.com`;
  if (!/^https?:\/\//i.test(endpoint)) endpoint = `https://${endpoint}`;
  let parsed: URL;
  try {
    parsed = new URL(endpoint);
  } catch {
    throw new BlufioError('E_CONFIG', `the S3 endpoint "${endpoint.replace(/\/\/[^/@]*@/, '//…@')}" is not a URL`, 'set it as https://host[:port] (AWS_ENDPOINT_URL_S3, or endpoint in [backup.s3])');
  }
  if (parsed.username || parsed.password) {
    throw new BlufioError('E_CONFIG', `the S3 endpoint ${parsed.protocol}//…@${parsed.host} has credentials in it`, 'keys do not go in the endpoint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials), and the endpoint as https://host[:port]');
  }
  return {
    endpoint: endpoint.replace(/\/+$/, ''),
    region,
    pathStyle: settings.forcePathStyle ?? custom !== undefined,
    accessKeyId,
    secretAccessKey,
    sessionToken,
    credentialSource,
  };
}

export interface ClientOptions {
  /** Most tries of one request on a 5xx, 429, timeout or dropped connection (default 5). */
  retries?: number;
  signal?: AbortSignal;
  /** How long one request may wait for a response before it is retried (default 120 s). */
  requestTimeoutMs?: number;
}

/** What a request answered: the status, the headers, and the body as a stream. */
export interface Res {
  status: number;
  headers: { get(name: string): string | null };
  body: Readable;
  text(): Promise<string>;
}

interface Req {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  loc: { bucket: string; key?: string };
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** Statuses that are answers, not failures (e.g. 404 for a HEAD that looks for an object). */
  ok?: number[];
}

/** One S3 endpoint with one set of keys. */
export class S3Client {
  constructor(readonly config: S3Config, private readonly opts: ClientOptions = {}) {
    // Each request in flight (parts, retries) listens to the job's signal for as long as it runs.
    if (opts.signal) setMaxListeners(64, opts.signal);
  }

  /** This client with another signal: its requests, in flight or waiting to be retried, end when it is aborted. */
  withSignal(signal: AbortSignal | undefined): S3Client {
    return signal === this.opts.signal ? this : new S3Client(this.config, { ...this.opts, signal });
  }

  /** The HTTP address of a bucket or object, path-style or virtual-hosted. */
  url(loc: { bucket: string; key?: string }, query: Record<string, string> = {}): string {
    const base = new URL(this.config.endpoint);
    const key = (loc.key ?? '').split('/').map(encodeRfc3986).join('/');
    let u: URL;
    if (this.config.pathStyle) {
      // No trailing slash for the bucket itself: "/bucket?list-type=2" (some servers sign it so).
      u = new URL(`${base.origin}${base.pathname.replace(/\/$/, '')}/${loc.bucket}${loc.key ? `/${key}` : ''}`);
    } else {
      u = new URL(`${base.protocol}//${loc.bucket}.${base.host}${base.pathname.replace(/\/$/, '')}/${key}`);
    }
    for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
    // URLSearchParams writes "+" for spaces and leaves some characters SigV4 wants encoded.
    u.search = u.search.replace(/\+/g, '%20');
    return u.toString();
  }

  /**
   * Sends one request, retried with exponential backoff and jitter on 5xx, 429, timeouts and
   * dropped connections; any other failure is a BlufioError that says what to do.
   */
  async send(r: Req): Promise<Res> {
    const tries = Math.max(1, this.opts.retries ?? 5);
    // A connection cut mid-transfer, and how far it got: said if every try fails.
    let cut = null as { bytes: number | undefined; times: number } | null;
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(this.opts.signal);
      let res: Res;
      let timedOut = false;
      try {
        res = await this.once(r, () => (timedOut = true));
      } catch (e) {
        throwIfAborted(this.opts.signal);
        if (isDroppedConnection(e)) cut = { bytes: (e as { sentBytes?: number }).sentBytes, times: (cut?.times ?? 0) + 1 };
        if ((timedOut || isDroppedConnection(e)) && attempt < tries) {
          await backoff(attempt, this.opts.signal);
          continue;
        }
        throw this.networkError(e, timedOut, r, attempt, cut);
      }
      if ((res.status >= 200 && res.status < 300) || r.ok?.includes(res.status)) {
        // A body nobody will read is drained, so that its connection closes.
        if (r.method === 'HEAD' || r.method === 'DELETE' || (r.method === 'PUT' && !r.query?.uploads)) res.body.resume();
        return res;
      }
      const text = r.method === 'HEAD' ? '' : await res.text().catch(() => '');
      if ((res.status >= 500 || res.status === 429) && attempt < tries) {
        await backoff(attempt, this.opts.signal);
        continue;
      }
      throw this.httpError(res.status, text, r);
    }
  }

  /** One signed request; resolves when the response's headers are in. */
  private async once(r: Req, onTimeout: () => void): Promise<Res> {
    const signed = await new AwsV4Signer({
      url: this.url(r.loc, r.query), method: r.method, headers: r.headers ?? {}, service: 's3', region: this.config.region,
      accessKeyId: this.config.accessKeyId, secretAccessKey: this.config.secretAccessKey, sessionToken: this.config.sessionToken,
    }).sign();
    const headers: Record<string, string> = Object.fromEntries(signed.headers as unknown as Iterable<[string, string]>);
    const body = typeof r.body === 'string' ? Buffer.from(r.body) : r.body;
    if (body) headers['content-length'] = String(body.length);
    const u = new URL(signed.url.toString());
    const limit = this.opts.requestTimeoutMs ?? 120_000;
    // Under Bun, node:http keeps more of a request's body around than Bun's fetch: a 100 MiB
    // upload in 8 MiB parts peaked at 140–143 MiB RSS with it, 115–120 with fetch (3 runs each;
    // under Node and Deno fetch copies every body once more, so they keep node:http).
    if (process.versions.bun && body) return this.onceByFetch(r.method, u, headers, body, limit, onTimeout);
    // Loaded when first needed: under Node 22+ node:http brings undici (~14 ms of every start-up,
    // S3 or not: docs/benchmarks.md, "Start-up per Node line").
    const request: typeof Http.request = u.protocol === 'https:' ? (await import('node:https')).request : (await import('node:http')).request;
    return new Promise<Res>((resolve, reject) => {
      const req = request(u, { method: r.method, headers, signal: this.opts.signal, agent: false });
      // Until the answer starts, and then between its bytes: a server that stalls is retried.
      const timer = setTimeout(() => {
        onTimeout();
        req.destroy(new Error('timed out'));
      }, limit);
      req.on('error', (e) => {
        clearTimeout(timer);
        // How much of the request went out before it failed (a cut connection is told so).
        if (body) Object.assign(e, { sentBytes: Math.min(body.length, Math.max(0, (req.socket?.bytesWritten ?? 0) - headerBytes(headers))) });
        reject(e);
      });
      req.on('response', (msg) => {
        clearTimeout(timer);
        msg.setTimeout(limit, () => msg.destroy(new Error('the server stopped sending')));
        resolve({
          status: msg.statusCode ?? 0,
          headers: { get: (name: string) => { const v = msg.headers[name.toLowerCase()]; return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v; } },
          body: msg,
          text: async () => {
            const parts: Buffer[] = [];
            for await (const c of msg) parts.push(c as Buffer);
            return Buffer.concat(parts).toString('utf8');
          },
        });
      });
      req.end(body);
    });
  }

  /** once() for a request with a body, through fetch: the same time limit; the answer is read. */
  private async onceByFetch(method: string, u: URL, headers: Record<string, string>, body: Uint8Array, limit: number, onTimeout: () => void): Promise<Res> {
    const ac = new AbortController();
    const timer = setTimeout(() => {
      onTimeout();
      ac.abort(new Error('timed out'));
    }, limit);
    const outer = this.opts.signal;
    const relay = () => ac.abort(outer?.reason);
    outer?.addEventListener('abort', relay, { once: true });
    try {
      const res = await fetch(u, { method, headers, body: body as unknown as BodyInit, signal: ac.signal });
      const text = await res.text();
      return { status: res.status, headers: { get: (name: string) => res.headers.get(name) }, body: Readable.from([]), text: async () => text };
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', relay);
    }
  }

  private networkError(e: unknown, timedOut: boolean, r: Req, attempts: number, cut: { bytes: number | undefined; times: number } | null): BlufioError {
    const where = this.config.endpoint;
    if (timedOut) return new BlufioError('E_IO', `the S3 endpoint ${where} did not answer in time`, 'check the endpoint and the network, or try again');
    const what = r.loc.key ? s3Url(r.loc as S3Location) : `s3://${r.loc.bucket}/`;
    const sending = r.body !== undefined && r.body.length > 0;
    if (cut && isDroppedConnection(e)) {
      const size = sending ? r.body!.length : undefined;
      const after = cut.bytes !== undefined && size !== undefined ? ` after ${cut.bytes} of ${size} bytes` : '';
      return new BlufioError('E_IO', `the connection to the S3 endpoint ${where} was cut while ${sending ? 'sending' : 'reading'} ${what}${after}; it was tried ${attempts} time${attempts === 1 ? '' : 's'} (--retries), cut each time`,
        'check the network between here and the endpoint (a proxy or firewall that drops long transfers?), then try again', { cause: e });
    }
    if (cut) {
      // Cut mid-transfer, then gone altogether: both are worth knowing.
      return new BlufioError('E_IO', `the connection to the S3 endpoint ${where} was cut while ${sending ? 'sending' : 'reading'} ${what}${cut.bytes !== undefined && sending ? ` after ${cut.bytes} of ${r.body!.length} bytes` : ''}, and retrying it failed: ${networkWhy(e)}`,
        'check that the server is up and the network, then try again', { cause: e });
    }
    const cause = (e as { cause?: { code?: string; message?: string } })?.cause ?? (e as { code?: string; message?: string });
    const code = cause?.code ?? '';
    if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/i.test(code) || /certificate|ssl|tls/i.test(cause?.message ?? '')) {
      return new BlufioError('E_IO', `TLS error talking to the S3 endpoint ${where}: ${code || cause?.message}`, 'check the endpoint\'s address and certificate (NODE_EXTRA_CA_CERTS adds a private CA)', { cause: e });
    }
    const why = networkWhy(e);
    return new BlufioError('E_IO', `cannot reach the S3 endpoint ${where}: ${why}`, 'check the endpoint (AWS_ENDPOINT_URL_S3, or endpoint in [backup.s3]) and that the server is up', { cause: e });
  }

  private httpError(status: number, body: string, r: Req): BlufioError {
    const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? '';
    const where = r.loc.key !== undefined && r.loc.key !== '' ? s3Url(r.loc as S3Location) : `s3://${r.loc.bucket}/`;
    const hint = (s: string) => s;
    if (code === 'SignatureDoesNotMatch') {
      return new BlufioError('E_PERMISSION', `the S3 server refused the signature (SignatureDoesNotMatch): the secret key does not match the access key (${this.config.credentialSource})`, hint('check AWS_SECRET_ACCESS_KEY (or the profile\'s aws_secret_access_key)'));
    }
    if (code === 'RequestTimeTooSkewed') {
      // Not a permission: this machine's clock and the server's differ by more than S3 allows.
      const t = (tag: string) => parseAmzTime(new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(body)?.[1] ?? '');
      const req = t('RequestTime');
      const srv = t('ServerTime');
      const by = !Number.isNaN(req) && !Number.isNaN(srv) ? `by ${Math.round(Math.abs(req - srv) / 1000)} s (${req > srv ? 'this machine is ahead' : 'this machine is behind'})` : 'by more than 15 minutes';
      return new BlufioError('E_CLOCK', `the S3 server refused the request because this machine's clock and the server's differ ${by} (RequestTimeTooSkewed: S3 allows 15 minutes)`, 'set this machine\'s clock right (timedatectl set-ntp true, or chronyd), then try again');
    }
    if (code === 'InvalidAccessKeyId') {
      return new BlufioError('E_PERMISSION', `the S3 server does not know the access key (InvalidAccessKeyId; from ${this.config.credentialSource})`, 'check AWS_ACCESS_KEY_ID, and that the endpoint is the one the key belongs to');
    }
    if (code === 'NoSuchBucket') {
      return new BlufioError('E_DEST_DIR', `bucket ${r.loc.bucket} does not exist or is not yours (at ${this.config.endpoint})`, 'create it first, or check the bucket name and the endpoint');
    }
    if (code === 'NoSuchKey' || (status === 404 && r.method === 'GET')) {
      return new BlufioError('E_SOURCE_MISSING', `no object at ${where}`, 'check the key');
    }
    if (code === 'AuthorizationHeaderMalformed' || code === 'PermanentRedirect' || status === 301) {
      return new BlufioError('E_CONFIG', `bucket ${r.loc.bucket} is in another region than ${this.config.region} (${code || status})`, 'set AWS_REGION (or region in [backup.s3]) to the bucket\'s region');
    }
    if (status === 403) {
      return new BlufioError('E_PERMISSION', `access to ${where} denied (${code || '403'}): the credentials from ${this.config.credentialSource} lack permission`, 'grant them s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject on the bucket, or use other keys');
    }
    if (status === 412) {
      return new BlufioError('E_DEST_EXISTS', `${where} appeared while the backup was made (another run?); it was left as it is`, 'choose another key, or add --force to replace it');
    }
    if (code === 'BadDigest' || code === 'InvalidDigest') {
      return new BlufioError('E_IO', `the S3 server received different bytes than were sent for ${where} (${code})`, 'try again; if it repeats, something between here and the server changes data');
    }
    if (code === 'EntityTooSmall' || code === 'EntityTooLarge' || code === 'InvalidPart' || code === 'NoSuchUpload') {
      return new BlufioError('E_IO', `the S3 server refused the upload of ${where} (${code})`, 'try again');
    }
    return new BlufioError('E_IO', `the S3 server answered ${status}${code ? ` ${code}` : ''} for ${r.method} ${where}`, status >= 500 ? 'the server has trouble: try again later' : 'check the settings of the bucket and the keys');
  }

  /**
   * The object's size and ETag, or null when there is none. A HEAD's errors have no body to say
   * what is wrong ("no such bucket" or "no such key", which refusal): then the bucket is listed,
   * whose errors say it.
   */
  async head(loc: S3Location): Promise<{ size: number; etag: string; lastModified: string | null } | null> {
    const res = await this.send({ method: 'HEAD', loc, ok: [403, 404] });
    if (res.status === 403 || res.status === 404) {
      await this.list(loc.bucket, loc.key, 1000);
      if (res.status === 403) throw this.httpError(403, '', { method: 'HEAD', loc });
      return null;
    }
    // Every S3 server gives an object an ETag; a captive portal or a web server does not.
    if (!res.headers.get('etag')) {
      throw new BlufioError('E_IO', `the endpoint ${this.config.endpoint} does not answer like an S3 server (a HEAD of ${s3Url(loc)} got 200 without an ETag)`, 'check the endpoint (AWS_ENDPOINT_URL_S3, or endpoint in [backup.s3])');
    }
    return { size: Number(res.headers.get('content-length') ?? -1), etag: res.headers.get('etag') ?? '', lastModified: res.headers.get('last-modified') };
  }

  /** The server's clock, from the Date header of a one-key listing of `prefix` (null: it sends none). */
  async serverTime(bucket: string, prefix: string): Promise<number | null> {
    const res = await this.send({ method: 'GET', loc: { bucket }, query: { 'list-type': '2', prefix, 'max-keys': '1' } });
    await res.text();
    const t = Date.parse(res.headers.get('date') ?? '');
    return Number.isNaN(t) ? null : t;
  }

  /** Objects under `prefix` (all pages; at most `max` when given). */
  async list(bucket: string, prefix: string, max = Infinity): Promise<Array<{ key: string; size: number; lastModified: string; etag: string }>> {
    const out: Array<{ key: string; size: number; lastModified: string; etag: string }> = [];
    let token: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix, 'max-keys': String(Math.min(1000, max)) };
      if (token) query['continuation-token'] = token;
      const xml = await (await this.send({ method: 'GET', loc: { bucket }, query })).text();
      for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
        const tag = (t: string) => unxml(new RegExp(`<${t}>([\\s\\S]*?)</${t}>`).exec(m[1])?.[1] ?? '');
        out.push({ key: tag('Key'), size: Number(tag('Size')), lastModified: tag('LastModified'), etag: tag('ETag') });
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? unxml(/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] ?? '') || undefined : undefined;
    } while (token && out.length < max);
    return out;
  }

  /** The object's first `bytes` bytes (all of it when it is shorter): one ranged GET. */
  async getPrefix(loc: S3Location, bytes: number): Promise<Buffer> {
    const res = await this.send({ method: 'GET', loc, headers: { range: `bytes=0-${bytes - 1}` } });
    const parts: Buffer[] = [];
    let got = 0;
    // A server that ignores Range sends it all: read no more than asked.
    for await (const c of res.body as AsyncIterable<Buffer>) {
      parts.push(c);
      got += c.length;
      if (got >= bytes) {
        (res.body as { destroy?: () => void }).destroy?.();
        break;
      }
    }
    return Buffer.concat(parts).subarray(0, bytes);
  }

  /** A streamed GET; the caller reads res.body. */
  get(loc: S3Location): Promise<Res> {
    return this.send({ method: 'GET', loc });
  }

  async delete(loc: S3Location): Promise<void> {
    await this.send({ method: 'DELETE', loc, ok: [404] });
  }

  /** One PUT of a whole (small) object, with its MD5 for the server to check. */
  async put(loc: S3Location, body: Uint8Array, noClobber: boolean): Promise<string> {
    const res = await this.send({ method: 'PUT', loc, body, headers: { 'content-md5': md5(body).toString('base64'), ...(noClobber ? { 'if-none-match': '*' } : {}) } });
    return res.headers.get('etag') ?? '';
  }

  async createUpload(loc: S3Location): Promise<string> {
    const xml = await (await this.send({ method: 'POST', loc, query: { uploads: '' } })).text();
    const id = /<UploadId>([^<]+)<\/UploadId>/.exec(xml)?.[1];
    if (!id) throw new BlufioError('E_IO', `the S3 server did not start a multipart upload of ${s3Url(loc)}`, 'try again');
    return unxml(id);
  }

  async uploadPart(loc: S3Location, uploadId: string, n: number, body: Uint8Array): Promise<string> {
    const res = await this.send({ method: 'PUT', loc, query: { partNumber: String(n), uploadId }, body, headers: { 'content-md5': md5(body).toString('base64') } });
    return res.headers.get('etag') ?? '';
  }

  async completeUpload(loc: S3Location, uploadId: string, etags: string[], noClobber: boolean): Promise<void> {
    const body = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
    const res = await this.send({ method: 'POST', loc, query: { uploadId }, body, headers: { 'content-type': 'application/xml', ...(noClobber ? { 'if-none-match': '*' } : {}) } });
    // A 200 can still carry an error (the server failed while completing): read it.
    const text = await res.text();
    if (/<Error>/.test(text)) throw this.httpError(500, text, { method: 'POST', loc });
  }

  /**
   * Aborts a multipart upload (its parts are deleted). True when aborted or already gone; false
   * when the server cannot abort uploads (405/501: some S3-compatible servers, the test server
   * among them), where only a lifecycle rule removes them.
   */
  async abortUpload(loc: S3Location, uploadId: string): Promise<boolean> {
    const res = await this.send({ method: 'DELETE', loc, query: { uploadId }, ok: [404, 405, 501] });
    res.body.resume();
    return res.status !== 405 && res.status !== 501;
  }
}

export const md5 = (b: Uint8Array) => createHash('md5').update(b).digest();

/** The ETag S3 gives an object made of these parts' MD5s ("<md5 of md5s>-<n>"), or one PUT's. */
export function expectedEtag(partMd5s: Buffer[], multipart: boolean): string {
  return multipart ? `"${md5(Buffer.concat(partMd5s)).toString('hex')}-${partMd5s.length}"` : `"${partMd5s[0].toString('hex')}"`;
}

/** An S3 time: ISO 8601 (2026-12-07T03:45:00Z) or SigV4's basic form (20261207T034500Z); NaN if neither. */
function parseAmzTime(s: string): number {
  const basic = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s.trim());
  return basic ? Date.UTC(+basic[1], +basic[2] - 1, +basic[3], +basic[4], +basic[5], +basic[6]) : s ? Date.parse(s) : NaN;
}

function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function unxml(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&');
}

/** What a network failure was, in a few words. */
function networkWhy(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause ?? (e as { code?: string; message?: string });
  const code = cause?.code ?? '';
  return code === 'ECONNREFUSED' ? 'connection refused' : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'its host name does not resolve' : code || (cause?.message ?? (e as Error).message);
}

/** The bytes a request's head takes on the wire (roughly: for telling how much of a body went out). */
function headerBytes(headers: Record<string, string>): number {
  return 64 + Object.entries(headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
}

/** A reset, a closed socket, a server that hung up: worth another try. Refused or unknown hosts are not. */
function isDroppedConnection(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? (e as { cause?: { code?: string } })?.cause?.code ?? '';
  return ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ECONNABORTED'].includes(code)
    || /other side closed|socket hang up|terminated/i.test(String((e as Error)?.message ?? ''));
}

/** Waits 0.2 s x 2^(attempt-1), at most 10 s, with full jitter. */
async function backoff(attempt: number, signal?: AbortSignal): Promise<void> {
  const ms = Math.random() * Math.min(10_000, 200 * 2 ** (attempt - 1));
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
  throwIfAborted(signal);
}
