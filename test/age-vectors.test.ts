/**
 * The age format against the CCTV test vectors (the `cctv-age` package: the vectors of
 * https://github.com/C2SP/CCTV/tree/main/age, which typage's and age's own tests run). Every
 * vector's file is decrypted by openChunks with its identities (through dearmorChunks when it is
 * armored), with both ciphers, fed whole and in pieces, and must end as the vector says: the
 * exact payload (its SHA-256) for `success`, for a failure the error blufio gives that kind of
 * failure. peekAge, the other reader of a header, must agree with it.
 *
 * blufio decrypts files encrypted to X25519 keys only: the vectors of passphrases (scrypt) and of
 * post-quantum (ML-KEM-768 + X25519 hybrid) identities are skipped by their type, and counted in
 * the tests' names, as is every vector that ran.
 */
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cctv from 'cctv-age';
import { dearmorChunks, openChunks, parseIdentityFile, peekAge } from '../src/age/index.ts';
import type { BlufioError } from '../src/errors.ts';

const test = suite('age vectors');

interface Vector {
  name: string;
  expect: string;
  /** SHA-256 (hex) of what a reader gives out, even when it then fails. */
  payload?: string;
  fileKey: Buffer;
  identities: string[];
  passphrases: string[];
  armored: boolean;
  /** The age file (inflated when the vector's is compressed). */
  file: Buffer;
}

/** A vector file: `key: value` lines, an empty line, then the age file. */
function parseVector(name: string, bytes: Uint8Array): Vector {
  const b = Buffer.from(bytes);
  const end = b.indexOf('\n\n');
  const h = new Map<string, string[]>();
  for (const line of b.subarray(0, end).toString('utf8').split('\n')) {
    const i = line.indexOf(': ');
    assert.ok(i > 0, `${name}: header line ${JSON.stringify(line)}`);
    h.set(line.slice(0, i), [...(h.get(line.slice(0, i)) ?? []), line.slice(i + 2)]);
  }
  const known = ['expect', 'payload', 'file key', 'identity', 'passphrase', 'armored', 'compressed', 'comment'];
  const unknown = [...h.keys()].filter((k) => !known.includes(k));
  // The format says to ignore a vector with unknown keys: none may be, unnoticed.
  assert.equal(unknown, [], `${name}: unknown keys`);
  const compressed = h.get('compressed')?.[0];
  assert.ok(compressed === undefined || compressed === 'zlib', `${name}: compressed: ${compressed}`);
  const file = b.subarray(end + 2);
  return {
    name,
    expect: h.get('expect')![0],
    payload: h.get('payload')?.[0],
    fileKey: Buffer.from(h.get('file key')![0], 'hex'),
    identities: h.get('identity') ?? [],
    passphrases: h.get('passphrase') ?? [],
    armored: h.get('armored')?.[0] === 'yes',
    file: compressed ? zlib.inflateSync(file) : file,
  };
}

const all = Object.entries(cctv as Record<string, Uint8Array>).map(([name, bytes]) => parseVector(name, bytes));

/** Why blufio cannot run a vector (a recipient type it does not implement), or null. */
function unsupported(v: Vector): string | null {
  if (v.passphrases.length > 0) return 'scrypt';
  if (v.identities.some((i) => i.startsWith('AGE-SECRET-KEY-PQ-1'))) return 'ML-KEM-768 + X25519 hybrid';
  if (v.identities.some((i) => !i.startsWith('AGE-SECRET-KEY-1'))) return 'an unknown identity type';
  return null;
}

const ran = all.filter((v) => !unsupported(v));
const skipped = new Map<string, number>();
for (const v of all) {
  const why = unsupported(v);
  if (why) skipped.set(why, (skipped.get(why) ?? 0) + 1);
}
const skippedText = [...skipped].map(([why, n]) => `${n} ${why}`).join(', ');

/** How blufio tells each kind of failure (its error code, and what the message says). */
const FAILURES: Record<string, { code: string; message: RegExp }> = {
  'no match': { code: 'E_KEY', message: /is not encrypted to any of the given identities/ },
  'HMAC failure': { code: 'E_CORRUPT', message: /its MAC does not match/ },
  'header failure': { code: 'E_CORRUPT', message: /is not a valid age file|inside its header|is empty$/ },
  'payload failure': { code: 'E_CORRUPT', message: /fails its authentication|its last chunk is missing/ },
  'armor failure': { code: 'E_CORRUPT', message: /is not a valid armored age file/ },
};

const sha256 = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

async function* pieces(file: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < file.length; off += size) yield file.subarray(off, off + size);
}

/** What openChunks gives out before it ends, and how it ends (null: it ended without an error). */
async function decrypt(v: Vector, cipher: 'node' | 'wasm', size: number): Promise<{ out: Buffer; error: BlufioError | null }> {
  const ids = v.identities.length ? parseIdentityFile(v.identities.join('\n'), `${v.name} identities`) : [];
  const input = v.armored ? dearmorChunks(pieces(v.file, size), v.name) : pieces(v.file, size);
  const out: Buffer[] = [];
  try {
    for await (const piece of openChunks(input, ids, v.name, cipher)) out.push(Buffer.from(piece));
    return { out: Buffer.concat(out), error: null };
  } catch (e) {
    return { out: Buffer.concat(out), error: e as BlufioError };
  }
}

/**
 * The payload of a vector that fails in its payload, decrypted here with the vector's file key as
 * a reader that gives out each chunk once it opens would (age's): up to the chunk that fails, or
 * all of it if what is wrong comes after its last chunk. Its hash is the vector's own.
 */
function releasedPayload(v: Vector): Buffer {
  let file = v.file;
  if (v.armored) file = Buffer.from(file.toString('latin1').trim().split(/\r?\n/).slice(1, -1).join(''), 'base64');
  const macLine = file.indexOf('\n--- ');
  const headerEnd = file.indexOf('\n', macLine + 1) + 1;
  const nonce = file.subarray(headerEnd, headerEnd + 16);
  const key = Buffer.from(crypto.hkdfSync('sha256', v.fileKey, nonce, 'payload', 32));
  const payload = file.subarray(headerEnd + 16);
  const open = (i: number, last: boolean, sealed: Buffer): Buffer | null => {
    if (sealed.length < 16) return null;
    const n = Buffer.alloc(12);
    n.writeUIntBE(i, 5, 6);
    n[11] = last ? 1 : 0;
    const d = crypto.createDecipheriv('chacha20-poly1305', key, n, { authTagLength: 16 });
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    const plain = d.update(sealed.subarray(0, sealed.length - 16));
    try {
      d.final();
      return plain;
    } catch {
      return null;
    }
  };
  const out: Buffer[] = [];
  for (let i = 0, off = 0; off < payload.length; i++, off += 65536 + 16) {
    const record = payload.subarray(off, off + 65536 + 16);
    // A short chunk must be the last one; a full one is a middle one, or else a full last one,
    // given out before what follows it (if anything) fails.
    const middle = record.length === 65536 + 16 ? open(i, false, record) : null;
    const plain = middle ?? open(i, true, record);
    if (plain) out.push(plain);
    if (!middle) break;
  }
  return Buffer.concat(out);
}

test(`CCTV: ${ran.length} vectors of ${all.length} decrypted by openChunks (armored ones through dearmorChunks), both ciphers, whole and in pieces, end as expected (skipped, by type: ${skippedText})`, async () => {
  assert.ok(all.length >= 143, `${all.length} vectors`);
  assert.is(ran.length + [...skipped.values()].reduce((a, b) => a + b, 0), all.length);
  const problems: string[] = [];
  for (const v of ran) {
    const released = v.expect === 'payload failure' ? releasedPayload(v) : null;
    // The reference decryption of the failing payloads is itself checked against the vector.
    if (released) assert.is(sha256(released), v.payload, `${v.name}: what age gives out before it fails`);
    for (const cipher of ['node', 'wasm'] as const) {
      for (const size of [v.file.length || 1, 4099]) {
        const { out, error } = await decrypt(v, cipher, size);
        const where = `${v.name} (${v.expect}; ${cipher} cipher, pieces of ${size})`;
        if (v.expect === 'success') {
          if (error) problems.push(`${where}: failed: ${error.message}`);
          else if (sha256(out) !== v.payload) problems.push(`${where}: the payload differs`);
          continue;
        }
        const want = FAILURES[v.expect];
        if (!want) {
          problems.push(`${where}: an unknown expectation`);
        } else if (!error) {
          problems.push(`${where}: decrypted (${out.length} bytes)`);
        } else if (error.code !== want.code || !want.message.test(error.message)) {
          problems.push(`${where}: ${error.code}: ${error.message}`);
        } else if (released ? !released.subarray(0, out.length).equals(out) : out.length > 0) {
          // Nothing unauthenticated is given out: at most what age gives out (blufio gives out a
          // group of 16 chunks at a time, the last group only once the file's last chunk opened).
          problems.push(`${where}: gave out ${out.length} bytes that it should not have`);
        }
      }
    }
  }
  assert.equal(problems, []);
});

test(`CCTV: peekAge agrees with openChunks on every vector that its header decides (the ${ran.length} run, less payload and armor failures)`, async () => {
  const problems: string[] = [];
  for (const v of ran.filter((v) => v.expect !== 'payload failure' && v.expect !== 'armor failure')) {
    const ids = v.identities.length ? parseIdentityFile(v.identities.join('\n'), `${v.name} identities`) : [];
    const full = await decrypt(v, 'wasm', v.file.length || 1);
    let first: Uint8Array | null = null;
    let error: BlufioError | null = null;
    try {
      first = peekAge(v.file, ids, v.name);
    } catch (e) {
      error = e as BlufioError;
    }
    if (v.expect === 'success') {
      if (!first) problems.push(`${v.name}: peekAge failed: ${error?.message}`);
      else if (!Buffer.from(first).equals(full.out.subarray(0, 65536))) problems.push(`${v.name}: peekAge gave another first chunk`);
    } else if (!error) {
      problems.push(`${v.name}: peekAge opened it`);
    } else if (error.code !== FAILURES[v.expect].code || !FAILURES[v.expect].message.test(error.message)) {
      problems.push(`${v.name}: peekAge: ${error.code}: ${error.message}`);
    }
  }
  assert.equal(problems, []);
});

test.run();
