/**
 * Encrypted backups in the age format, checked against Debian's `age` CLI (the independent
 * decoder and encoder) and the `age-encryption` package, under Node, Deno and Bun.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Decrypter, identityToRecipient } from 'age-encryption';
import { backup, inspect, restore } from '../src/index.ts';
import { dearmorChunks, EncryptionThread, openChunks, parseIdentityFile, parseRecipient, sealChunks } from '../src/age/index.ts';
import { CLI, RUNTIMES, cleanup, cli as runCli, fingerprint, makeSampleDb, rejects, sql, tmpdir } from './helpers.ts';

const test = suite('age');
test.after.each(cleanup);

/** A key made by age-keygen: its file and public key. */
function ageKey(dir: string, name = 'key.txt'): { file: string; recipient: string; text: string } {
  const file = path.join(dir, name);
  execFileSync('age-keygen', ['-o', file], { stdio: 'ignore' });
  return { file, recipient: execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim(), text: fs.readFileSync(file, 'utf8') };
}

/** Decrypts `file` with the age CLI into `out`. */
const ageDecrypt = (file: string, key: string, out: string) => execFileSync('age', ['-d', '-i', key, '-o', out, file]);

function sample(rows = 2000) {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows, wal: true });
  return { d, db, key: ageKey(d) };
}

for (const [runtimeName, runtime] of Object.entries(RUNTIMES)) {
  const cli = (args: string[], opts: Parameters<typeof runCli>[1] = {}) => runCli(args, { runtime, ...opts });

  test(`${runtimeName}: .db.gz.age and .db.age decrypt with the age CLI to the database; blufio restores both`, () => {
    const { d, db, key } = sample();
    const expected = fingerprint(db);
    for (const name of ['b.db.gz.age', 'b.db.age']) {
      const out = path.join(d, name);
      const r = cli(['backup', '--db', db, out, '--recipient', key.recipient, '--json']);
      assert.is(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.is(j.encrypted, true);
      assert.is(j.compressed, name.includes('.gz'));
      assert.is(j.bytes, fs.statSync(out).size);
      assert.is(fs.statSync(out).mode & 0o777, 0o600);
      assert.is(fs.readFileSync(out).subarray(0, 22).toString(), 'age-encryption.org/v1\n');
      const plain = path.join(d, `${name}.plain`);
      ageDecrypt(out, key.file, plain);
      if (name.includes('.gz')) fs.writeFileSync(plain, execFileSync('gzip', ['-dc', plain], { maxBuffer: 1 << 28 }));
      assert.is(sql(plain, 'PRAGMA integrity_check'), 'ok');
      assert.is(fingerprint(plain), expected);
      const target = path.join(d, `restored-${name}.db`);
      const rr = cli(['restore', '--db', target, out, '--identity', key.file]);
      assert.is(rr.code, 0, rr.stderr);
      assert.is(fingerprint(target), expected);
    }
    // Only the backups, the keys and the databases: nothing staged was left anywhere near.
    assert.ok(fs.readdirSync(d).every((f) => !f.startsWith('.')), fs.readdirSync(d).join(' '));
  });

  test(`${runtimeName}: files the age CLI encrypted (plain and gzip inside) restore and verify`, () => {
    const { d, db, key } = sample();
    const expected = fingerprint(db);
    const copy = path.join(d, 'copy.db');
    sql(db, `VACUUM INTO '${copy}'`);
    execFileSync('age', ['-r', key.recipient, '-o', path.join(d, 'x.db.age'), copy]);
    fs.writeFileSync(path.join(d, 'copy.db.gz'), execFileSync('gzip', ['-c', copy], { maxBuffer: 1 << 28 }));
    // Recognised by content, not by name.
    execFileSync('age', ['-r', key.recipient, '-o', path.join(d, 'named-plain.db'), path.join(d, 'copy.db.gz')]);
    for (const name of ['x.db.age', 'named-plain.db']) {
      const v = cli(['verify', path.join(d, name), '--identity', key.file, '--json']);
      assert.is(v.code, 0, v.stderr);
      const j = JSON.parse(v.stdout);
      assert.is(j.encrypted, true);
      assert.is(j.compressed, name === 'named-plain.db');
      const target = path.join(d, `r-${name}`);
      const r = cli(['restore', '--db', target, path.join(d, name), '--identity', key.file]);
      assert.is(r.code, 0, r.stderr);
      assert.is(fingerprint(target), expected);
    }
  });

  test(`${runtimeName}: the wrong key, no key, a cut-off and a tampered file: told apart, nothing replaced`, () => {
    const { d, db, key } = sample();
    const out = path.join(d, 'b.db.gz.age');
    assert.is(cli(['backup', '--db', db, out, '--recipient', key.recipient]).code, 0);
    const target = path.join(d, 'target.db');
    makeSampleDb(target, { rows: 50 });
    const before = fingerprint(target);
    const other = ageKey(d, 'other.txt');
    let r = cli(['restore', '--db', target, out, '--identity', other.file]);
    assert.is(r.code, 1);
    assert.is(r.stderr, `error: ${out} is not encrypted to any of the given identities (give the key file of one of the recipients it was encrypted to: --identity <file> (or backup.age_identity_file, BLUFIO_AGE_IDENTITY_FILE))\n`);
    r = cli(['verify', out, '--identity', other.file]);
    assert.is(r.code, 1);
    assert.match(r.stderr, 'is not encrypted to any of the given identities');
    assert.not.match(r.stderr, /damaged|FAILED/);
    r = cli(['restore', '--db', target, out]);
    assert.is(r.code, 1);
    assert.match(r.stderr, `error: ${out} is encrypted (age); no identity was given to decrypt it (pass --identity <key file>`);
    const whole = fs.readFileSync(out);
    const cut = path.join(d, 'cut.db.gz.age');
    fs.writeFileSync(cut, whole.subarray(0, whole.length - 100));
    const flipped = path.join(d, 'flipped.db.gz.age');
    const f = Buffer.from(whole);
    f[Math.floor(f.length / 2)] ^= 0x01;
    fs.writeFileSync(flipped, f);
    const inHeader = path.join(d, 'header.db.gz.age');
    fs.writeFileSync(inHeader, whole.subarray(0, 60));
    for (const [file, why] of [[cut, /cut off|damaged/], [flipped, /damaged or was tampered with/], [inHeader, /cut off \(truncated\) inside its header/]] as const) {
      r = cli(['restore', '--db', target, file, '--identity', key.file]);
      assert.is(r.code, 1, file);
      assert.match(r.stderr, why);
      assert.match(r.stderr, 'nothing was replaced');
      const v = cli(['verify', file, '--identity', key.file, '--json']);
      assert.is(v.code, 1);
      assert.is(JSON.parse(v.stdout).ok, false);
      // The age CLI refuses them too.
      assert.throws(() => execFileSync('age', ['-d', '-i', key.file, '-o', path.join(d, 'junk'), file], { stdio: 'ignore' }));
    }
    assert.is(fingerprint(target), before);
    assert.not.ok(fs.existsSync(`${target}.pre-restore`));
    assert.ok(fs.readdirSync(d).every((n) => !n.startsWith('.')), fs.readdirSync(d).join(' '));
  });
}

for (const cipher of ['runtime', 'wasm'] as const)
test(`encryption thread (${cipher} cipher) and the main thread beside it: any size, a job abandoned and started again, several in one process; the age CLI reads each`, async () => {
  const d = tmpdir();
  const key = ageKey(d);
  const recipients = [parseRecipient(key.recipient)];
  // Empty, one byte, exactly one chunk, one chunk and a byte, exactly one group of 16 chunks,
  // a group and a chunk and some: the last chunk's flag and every offset.
  const sizes = [0, 1, 65536, 65537, (1 << 20), (1 << 20) + 65536 + 123, 5 * (1 << 20) + 7];
  for (const [i, size] of sizes.entries()) {
    const src = path.join(d, `plain-${i}`);
    fs.writeFileSync(src, Buffer.from(Array.from({ length: size }, (_, k) => (k * 7 + i) & 255)));
    // A new encrypter each time after the first: later threads start after the first one set
    // V8's flags (a thread once failed there: "Identifier 'gc' has already been declared").
    const enc = await EncryptionThread.create(recipients, cipher === 'wasm' ? 'wasm' : undefined);
    assert.ok(enc, 'worker threads under Node');
    const out = path.join(d, `enc-${i}.age`);
    try {
      if (i === 2) {
        // A job abandoned (the copy is made again) and started afresh on the same encrypter.
        await enc.start(src, out);
        fs.rmSync(out, { force: true });
      }
      await enc.start(src, out);
      const bytes = await enc.finish();
      assert.is(bytes, fs.statSync(out).size);
      // Called at once, finish() has the main thread seal beside the thread: both write groups.
      if (size > 4 * (1 << 20)) assert.ok(enc.helped > 0 && enc.helped <= Math.ceil(size / (1 << 20)), `the main thread sealed ${enc.helped} groups`);
    } finally {
      await enc.stop();
    }
    assert.is(fs.statSync(out).mode & 0o777, 0o600);
    const back = execFileSync('age', ['-d', '-i', key.file, out], { maxBuffer: 1 << 26 });
    assert.ok(back.equals(fs.readFileSync(src)), `size ${size} round trip`);
  }
  // Never over a file that is there.
  const enc = await EncryptionThread.create(recipients, cipher === 'wasm' ? 'wasm' : undefined);
  const out = path.join(d, 'never.age');
  fs.writeFileSync(out, 'x');
  const err = await enc!.start(path.join(d, 'plain-1'), out).then(() => null, (e: NodeJS.ErrnoException) => e);
  await enc!.stop();
  assert.is(err?.code, 'EEXIST');
  assert.is(fs.readFileSync(out, 'utf8'), 'x');
});

/**
 * `bytes` in pieces of random sizes, each a view of one scratch buffer that is overwritten as
 * soon as the next piece is asked for: a stage that kept a piece would give wrong bytes.
 */
async function* reusedPieces(bytes: Uint8Array, seed: number): AsyncGenerator<Uint8Array> {
  const scratch = Buffer.alloc(300_000);
  let r = seed;
  for (let off = 0; off < bytes.length; ) {
    r = (r * 1103515245 + 12345) % 2 ** 31;
    const n = Math.min(bytes.length - off, 1 + (r % scratch.length));
    scratch.set(bytes.subarray(off, off + n));
    yield scratch.subarray(0, n);
    scratch.fill(0xee);
    off += n;
  }
}

async function collected(pieces: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const p of pieces) out.push(Buffer.from(p));
  return Buffer.concat(out);
}

for (const cipher of ['node', 'wasm'] as const)
test(`streams (${cipher} cipher): sealChunks and openChunks at every size edge, fed from a reused buffer; the age CLI agrees both ways; any cut or changed byte is refused`, async () => {
  const d = tmpdir();
  const key = ageKey(d);
  const recipients = [parseRecipient(key.recipient)];
  const ids = parseIdentityFile(key.text, 'key');
  const C = 65536;
  const sizes = [0, 1, C - 1, C, C + 1, 16 * C - 1, 16 * C, 16 * C + 1, 17 * C, 32 * C, 3 * (1 << 20) + 12345];
  for (const [i, size] of sizes.entries()) {
    const plain = Buffer.from(Array.from({ length: size }, (_, k) => (k * 13 + i) & 255));
    const ours = await collected(sealChunks(reusedPieces(plain, i + 1), recipients, cipher));
    const viaCli = execFileSync('age', ['-d', '-i', key.file], { input: ours, maxBuffer: 1 << 26 });
    assert.ok(viaCli.equals(plain), `size ${size}: ours, decrypted by age`);
    const theirs = execFileSync('age', ['-r', key.recipient], { input: plain, maxBuffer: 1 << 26 });
    for (const [what, file] of [['theirs', theirs], ['ours', ours]] as const) {
      const back = await collected(openChunks(reusedPieces(file, i + 7), ids, 'x.age', cipher));
      assert.ok(back.equals(plain), `size ${size}: ${what}, decrypted here`);
    }
  }
  // Tampering and cuts, on a file of 17 chunks (a group and one more), told apart.
  const plain = Buffer.alloc(17 * C, 7);
  const file = execFileSync('age', ['-r', key.recipient], { input: plain, maxBuffer: 1 << 26 });
  const start = file.length - 17 * (C + 16); // where chunk 1 starts (every chunk is a full one)
  const open = (f: Buffer) => collected(openChunks(reusedPieces(f, 3), ids, 'x.age', cipher)).then(() => 'opened', (e: Error) => e.message);
  const flipped = (at: number) => {
    const f = Buffer.from(file);
    f[at] ^= 1;
    return f;
  };
  assert.is(await open(flipped(start)), 'x.age is damaged or was tampered with (chunk 1 fails its authentication)');
  assert.is(await open(flipped(start + 16 * (C + 16) + 5)), 'x.age is damaged or was tampered with (chunk 17 fails its authentication)');
  assert.is(await open(flipped(file.length - 1)), 'x.age is damaged or was tampered with (chunk 17 fails its authentication)');
  assert.is(await open(flipped(start + 16 * (C + 16) - 1)), 'x.age is damaged or was tampered with (chunk 16 fails its authentication)');
  assert.is(await open(file.subarray(0, file.length - (C + 16))), 'x.age is cut off (truncated): its last chunk is missing');
  assert.is(await open(file.subarray(0, file.length - 100)), 'x.age is damaged or was tampered with (chunk 17 fails its authentication)');
  assert.is(await open(file.subarray(0, start)), 'x.age is cut off (truncated): its last chunk is missing');
  assert.is(await open(file.subarray(0, 40)), 'x.age is cut off (truncated) inside its header');
  assert.is(await open(Buffer.alloc(0)), 'x.age is empty');
  assert.is(await open(file), 'opened');
});

test('an armored file with a line longer than any armor line is refused at once, not gathered', async () => {
  const long = Buffer.concat([Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----\n'), Buffer.alloc(3 << 20, 0x41)]);
  const err = await collected(dearmorChunks(reusedPieces(long, 5), 'x.age')).then(() => null, (e: Error) => e);
  assert.is(err?.message, 'x.age is not a valid armored age file: a line is longer than 64 columns');
});

test('two recipients: each identity decrypts; a recipients file with comments and blank lines', () => {
  const { d, db, key } = sample(200);
  const second = ageKey(d, 'second.txt');
  const list = path.join(d, 'recipients.txt');
  fs.writeFileSync(list, `# the backup host\n${key.recipient}\n\n   # the operator's laptop\n${second.recipient}\n`);
  const viaFlags = path.join(d, 'a.db.age');
  const viaFile = path.join(d, 'b.db.age');
  assert.is(runCli(['backup', '--db', db, viaFlags, '--recipient', key.recipient, '--recipient', second.recipient]).code, 0);
  const r = runCli(['backup', '--db', db, viaFile, '--recipients-file', list, '--json']);
  assert.is(r.code, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).recipients, 2);
  for (const file of [viaFlags, viaFile]) {
    for (const k of [key.file, second.file]) {
      const plain = path.join(d, 'plain.db');
      ageDecrypt(file, k, plain);
      assert.is(fingerprint(plain), fingerprint(db));
      fs.rmSync(plain);
    }
  }
  fs.writeFileSync(list, `${key.recipient}\nage1notakey\n`);
  const bad = runCli(['backup', '--db', db, path.join(d, 'c.db.age'), '--recipients-file', list]);
  assert.is(bad.code, 1);
  assert.is(bad.stderr, `error: ${list}:2: recipient "age1notakey" is not an age public key (age1… with 58 more letters and digits) (copy the "public key" line that blufio keygen or age-keygen printed)\n`);
  assert.not.ok(fs.existsSync(path.join(d, 'c.db.age')));
});

test('usage: .age without a recipient, a recipient without .age, a malformed or SSH recipient: exit 1 or 2, nothing written', () => {
  const { d, db, key } = sample(50);
  const cases: Array<[string[], number, string]> = [
    [['x.db.age'], 2, `error: ${path.join(d, 'x.db.age')} ends in .age but no recipient was given to encrypt it to (pass --recipient age1… or --recipients-file <file>, or set backup.age_recipients in blufio.toml (blufio keygen makes a key))\n`],
    [['x.db.gz', '--recipient', key.recipient], 2, `error: a recipient was given but ${path.join(d, 'x.db.gz')} does not end in .age, so it would not be encrypted (add .age to the name (${path.join(d, 'x.db.gz')}.age) to encrypt it, or leave the recipients out)\n`],
    [['x.db.age', '--recipient', 'ssh-ed25519 AAAAC3Nza'], 1, 'error: recipient "ssh-ed25519 AAAAC3Nza" is an SSH key; blufio encrypts to age X25519 keys only (make one with blufio keygen (or age-keygen) and use its public key (age1…))\n'],
    [['x.db.age', '--recipient', key.recipient.slice(0, -1) + (key.recipient.endsWith('q') ? 'p' : 'q')], 1, 'is not an age public key'],
    [['x.db.age', '--recipients-file', path.join(d, 'missing.txt')], 1, `error: cannot read the recipients file ${path.join(d, 'missing.txt')}: it does not exist (check the path)\n`],
  ];
  for (const [args, code, err] of cases) {
    const r = runCli(['backup', '--db', db, path.join(d, args[0]), ...args.slice(1)]);
    assert.is(r.code, code, args.join(' '));
    if (err.startsWith('error:')) assert.is(r.stderr, err);
    else assert.match(r.stderr, err);
  }
  assert.equal(fs.readdirSync(d).sort(), ['blufio.db', 'blufio.db-shm', 'blufio.db-wal', 'key.txt'].filter((f) => fs.existsSync(path.join(d, f))).sort());
});

test('keygen: an age-keygen key file, 0600, never over another file; its public key encrypts what age -d -i reads', () => {
  const { d, db } = sample(50);
  const keyFile = path.join(d, 'backup-key.txt');
  const r = runCli(['keygen', keyFile, '--json']);
  assert.is(r.code, 0, r.stderr);
  const { recipient } = JSON.parse(r.stdout);
  assert.match(recipient, /^age1[0-9a-z]{58}$/);
  assert.is(fs.statSync(keyFile).mode & 0o777, 0o600);
  assert.is(execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim(), recipient);
  assert.match(fs.readFileSync(keyFile, 'utf8'), new RegExp(`^# created: \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\n# public key: ${recipient}\\nAGE-SECRET-KEY-1[0-9A-Z]{58}\\n$`));
  const again = runCli(['keygen', keyFile]);
  assert.is(again.code, 1);
  assert.is(again.stderr, `error: ${keyFile} already exists (a key file is never written over another file (or link): choose another path)\n`);
  assert.is(execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim(), recipient);
  const toStdout = runCli(['keygen']);
  assert.is(toStdout.code, 0);
  assert.match(toStdout.stdout, /^# created: .*\n# public key: age1.*\nAGE-SECRET-KEY-1[0-9A-Z]{58}\n$/);
  assert.match(toStdout.stderr, /^Public key: age1[0-9a-z]{58}\n/);
  const out = path.join(d, 'b.db.gz.age');
  assert.is(runCli(['backup', '--db', db, out, '--recipient', recipient]).code, 0);
  const plain = path.join(d, 'plain.db.gz');
  ageDecrypt(out, keyFile, plain);
  fs.writeFileSync(path.join(d, 'plain.db'), execFileSync('gzip', ['-dc', plain], { maxBuffer: 1 << 28 }));
  assert.is(fingerprint(path.join(d, 'plain.db')), fingerprint(db));
});

test('blufio.toml [backup]: age_recipients encrypt, age_identity_file (relative to the file) decrypts, a plain name is refused', () => {
  const { d, db, key } = sample(100);
  const conf = path.join(d, 'conf');
  fs.mkdirSync(conf);
  fs.copyFileSync(key.file, path.join(conf, 'key.txt'));
  fs.writeFileSync(path.join(conf, 'blufio.toml'), `[storage]\ndatabase_path = "${db}"\n[backup]\nage_recipients = ["${key.recipient}"]\nage_identity_file = "key.txt"\n`);
  const opts = { cwd: '/' };
  const c = ['--config', path.join(conf, 'blufio.toml')];
  const out = path.join(d, 'b.db.gz.age');
  let r = runCli(['backup', out, ...c], opts);
  assert.is(r.code, 0, r.stderr);
  r = runCli(['verify', out, ...c, '--json'], opts);
  assert.is(r.code, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).encrypted, true);
  r = runCli(['verify', out], { env: { BLUFIO_AGE_IDENTITY_FILE: key.file } });
  assert.is(r.code, 0, r.stderr);
  r = runCli(['backup', path.join(d, 'plain.db'), ...c], opts);
  assert.is(r.code, 2);
  assert.is(r.stderr, `error: blufio.toml sets backup.age_recipients, so backups are encrypted, but ${path.join(d, 'plain.db')} does not end in .age (name it ${path.join(d, 'plain.db')}.age (or ${path.join(d, 'plain.db')}.gz.age) to encrypt it)\n`);
  assert.not.ok(fs.existsSync(path.join(d, 'plain.db')));
});

test('blufio.toml [backup]: an age_recipients_file with no key in it is an error, never an unencrypted backup (found by an attack run)', () => {
  const { d, db } = sample(50);
  const conf = path.join(d, 'conf');
  fs.mkdirSync(conf);
  fs.writeFileSync(path.join(conf, 'recipients.txt'), '# the backup key goes here\n\n');
  fs.writeFileSync(path.join(conf, 'blufio.toml'), `[storage]\ndatabase_path = "${db}"\n[backup]\nage_recipients_file = "recipients.txt"\n`);
  const c = ['--config', path.join(conf, 'blufio.toml')];
  const before = fs.readdirSync(d).sort();
  for (const dest of ['plain.db', 'b.db.gz.age', 'set/']) {
    const r = runCli(['backup', path.join(d, dest), ...c], { cwd: '/' });
    assert.is(r.code, 1, `${dest}: ${r.stderr}`);
    assert.is(r.stderr, `error: the recipients file ${path.join(conf, 'recipients.txt')} (backup.age_recipients_file in blufio.toml) holds no recipient (add the age1… line that blufio keygen prints to it, or remove the setting to make unencrypted backups)\n`);
  }
  assert.equal(fs.readdirSync(d).sort(), before, 'nothing written');
});

test('backup - with recipients writes an age stream (gzip inside with --gzip) that the age CLI decrypts', () => {
  const { d, db, key } = sample(300);
  const out = path.join(d, 'piped.age');
  execFileSync('bash', ['-c', `"${process.execPath}" "${CLI}" backup --db "${db}" - --quiet --gzip --recipient ${key.recipient} > "${out}"`]);
  const gz = path.join(d, 'piped.gz');
  ageDecrypt(out, key.file, gz);
  fs.writeFileSync(path.join(d, 'piped.db'), execFileSync('gzip', ['-dc', gz], { maxBuffer: 1 << 28 }));
  assert.is(fingerprint(path.join(d, 'piped.db')), fingerprint(db));
});

test('our files decrypt with the age-encryption package too (the second decoder)', async () => {
  const { d, db, key } = sample(300);
  const out = path.join(d, 'b.db.age');
  await backup(db, out, { recipients: [key.recipient] });
  const dec = new Decrypter();
  dec.addIdentity(key.text.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!);
  const plain = await dec.decrypt(fs.readFileSync(out));
  fs.writeFileSync(path.join(d, 'plain.db'), plain);
  assert.is(fingerprint(path.join(d, 'plain.db')), fingerprint(db));
  assert.is(await identityToRecipient(key.text.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!), key.recipient);
});

test('library: recipients and identities as strings; restore of an encrypted backup', async () => {
  const { d, db, key } = sample(300);
  const out = path.join(d, 'b.db.gz.age');
  const r = await backup(db, out, { recipients: [key.recipient] });
  assert.is(r.encrypted, true);
  await rejects(inspect(out), 'E_KEY', /no identity was given/);
  const v = await inspect(out, { identities: [key.text] });
  assert.is(v.ok, true);
  const target = path.join(d, 'target.db');
  await restore(target, out, { identities: [key.text] });
  assert.is(fingerprint(target), fingerprint(db));
  await rejects(backup(db, path.join(d, 'x.db.age'), {}), 'E_USAGE', /no recipient/);
});

test('the plaintext never appears in the destination directory, not even while the backup is made', async () => {
  const d = tmpdir();
  const db = path.join(d, 'src', 'blufio.db');
  fs.mkdirSync(path.dirname(db));
  makeSampleDb(db, { rows: 60_000, wal: true });
  const key = ageKey(d);
  const dest = path.join(d, 'dest');
  fs.mkdirSync(dest);
  // Watch the directory for the whole run: every file seen there starts as an age file does.
  const seen = new Set<string>();
  const bad: string[] = [];
  let running = true;
  const watcher = (async () => {
    while (running) {
      for (const f of fs.readdirSync(dest)) {
        seen.add(f);
        let head: Buffer;
        try {
          head = fs.readFileSync(path.join(dest, f)).subarray(0, 22);
        } catch {
          continue;
        }
        if (!Buffer.from('age-encryption.org/v1\n').subarray(0, head.length).equals(head)) bad.push(`${f}: ${JSON.stringify(head.toString('latin1'))}`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  const child = spawn(process.execPath, [CLI, 'backup', '--db', db, path.join(dest, 'b.db.age'), '--recipient', key.recipient, '--quiet']);
  const code = await new Promise((r) => child.on('exit', r));
  running = false;
  await watcher;
  assert.is(code, 0);
  assert.equal(bad, []);
  // The watcher did look while the file was written (it saw the temporary file, not only the result).
  assert.ok([...seen].some((f) => f.startsWith('.b.db.age.blufio-')), [...seen].join(' '));
  assert.equal(fs.readdirSync(dest), ['b.db.age']);
});

test('Ctrl-C during an encrypted backup: nothing at the destination, no staged plaintext left in the work directory', async () => {
  const d = tmpdir();
  const db = path.join(d, 'blufio.db');
  makeSampleDb(db, { rows: 60_000 });
  const key = ageKey(d);
  const work = path.join(d, 'work');
  fs.mkdirSync(work);
  const dest = path.join(d, 'out');
  fs.mkdirSync(dest);
  // .db.gz.age goes through streams; .db.age is encrypted by a worker thread while the copy is checked.
  for (const name of ['b.db.gz.age', 'b.db.age']) {
    const child = spawn(process.execPath, [CLI, 'backup', '--db', db, path.join(dest, name), '--recipient', key.recipient, '--work-dir', work, '--quiet']);
    // Interrupted once the copy is staged (the private directory holds a file).
    for (let i = 0; i < 2000 && !fs.readdirSync(work).some((w) => fs.readdirSync(path.join(work, w)).length > 0); i++) await new Promise((r) => setTimeout(r, 2));
    child.kill('SIGINT');
    const code = await new Promise((r) => child.on('exit', r));
    assert.is(code, 130, name);
    assert.equal(fs.readdirSync(dest), [], name);
    assert.equal(fs.readdirSync(work), [], name);
  }
  // kill -9 leaves the private directory; the next run with that work directory removes it.
  const killed = spawn(process.execPath, [CLI, 'backup', '--db', db, path.join(dest, 'c.db.age'), '--recipient', key.recipient, '--work-dir', work, '--quiet']);
  for (let i = 0; i < 2000 && !fs.readdirSync(work).some((w) => fs.readdirSync(path.join(work, w)).length > 0); i++) await new Promise((r) => setTimeout(r, 2));
  killed.kill('SIGKILL');
  await new Promise((r) => killed.on('exit', r));
  assert.is(fs.readdirSync(work).length, 1);
  const next = runCli(['backup', '--db', db, path.join(dest, 'd.db.age'), '--recipient', key.recipient, '--work-dir', work]);
  assert.is(next.code, 0, next.stderr);
  assert.equal(fs.readdirSync(work), []);
  assert.equal(fs.readdirSync(dest).filter((f) => !f.startsWith('.')), ['d.db.age']);
});

test('armored files (age -a) restore and verify; a secret key given as a recipient is never printed; identity errors name the file', () => {
  const { d, db, key } = sample(300);
  const copy = path.join(d, 'copy.db');
  sql(db, `VACUUM INTO '${copy}'`);
  const armored = path.join(d, 'armored.db.age');
  execFileSync('age', ['-a', '-r', key.recipient, '-o', armored, copy]);
  assert.match(fs.readFileSync(armored, 'utf8'), /^-----BEGIN AGE ENCRYPTED FILE-----\n/);
  const target = path.join(d, 'target.db');
  let r = runCli(['restore', '--db', target, armored, '--identity', key.file]);
  assert.is(r.code, 0, r.stderr);
  assert.is(fingerprint(target), fingerprint(db));
  const secret = key.text.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  const list = path.join(d, 'recipients.txt');
  fs.writeFileSync(list, `${secret}\n`);
  for (const args of [['--recipient', secret], ['--recipients-file', list]]) {
    r = runCli(['backup', '--db', db, path.join(d, 'x.db.age'), ...args, '--json']);
    assert.is(r.code, 1);
    assert.not.ok(r.stderr.includes(secret.slice(16)) || r.stdout.includes(secret.slice(16)), 'the secret key is not printed');
    assert.match(r.stderr, 'is a secret key (AGE-SECRET-KEY-…), not a public key');
  }
  const garbage = path.join(d, 'garbage.txt');
  fs.writeFileSync(garbage, '# a comment\nnot a key\n');
  r = runCli(['verify', armored, '--identity', garbage]);
  assert.is(r.code, 1);
  assert.is(r.stderr, `error: ${garbage}:2: not an age secret key (AGE-SECRET-KEY-1…) (give the key file that blufio keygen or age-keygen wrote)\n`);
  // The other way round: a public key where the private one is needed.
  const pub = path.join(d, 'public.txt');
  fs.writeFileSync(pub, `${key.recipient}\n`);
  r = runCli(['verify', armored, '--identity', pub]);
  assert.is(r.code, 1);
  assert.is(r.stderr, `error: ${pub}:1: a public key (what backups are encrypted to), not the private key that decrypts them (give the key file that blufio keygen or age-keygen wrote)\n`);
});

test('an encrypted backup given as --identity is named as such; verify names the backup, never its private decrypted copy', () => {
  const { d, db, key } = sample(50);
  const backupFile = path.join(d, 'one.db.age');
  assert.is(runCli(['backup', '--db', db, backupFile, '--recipient', key.recipient]).code, 0);
  const swapped = runCli(['restore', '--db', path.join(d, 'target.db'), key.file, '--identity', backupFile]);
  assert.is(swapped.code, 1);
  assert.match(swapped.stderr, `${backupFile} is an age-encrypted file (a backup?), not a key file`);
  assert.not.match(swapped.stderr, 'age -d -o key.txt');
  assert.not.ok(fs.existsSync(path.join(d, 'target.db')));
  // Encrypted plaintext that is not a database: the verdict names the .age file.
  const notDb = path.join(d, 'hi.age');
  execFileSync('age', ['-r', key.recipient, '-o', notDb], { input: 'hi\n' });
  const r = runCli(['verify', notDb, '--identity', key.file, '--json']);
  assert.is(r.code, 1);
  const problems: string[] = JSON.parse(r.stdout).problems;
  assert.ok(problems.length > 0);
  for (const p of problems) {
    assert.match(p, `${notDb} (decrypted)`);
    assert.not.match(p, 'blufio-verify-');
  }
  // A file whose plaintext is empty: the restore says that of what it decrypted, not of the file.
  const empty = path.join(d, 'empty.age');
  execFileSync('age', ['-r', key.recipient, '-o', empty], { input: '' });
  const rr = runCli(['restore', '--db', path.join(d, 'target.db'), empty, '--identity', key.file]);
  assert.is(rr.code, 1);
  assert.match(rr.stderr, `the backup file ${empty} (decrypted) is empty (0 bytes)`);
  assert.not.ok(fs.existsSync(path.join(d, 'target.db')));
});

test.run();
