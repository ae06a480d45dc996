/**
 * The age transform: `.age`, encrypted to X25519 recipients (src/age/ is the format). Reads
 * armored files too (age -a), never writes them. Alone, it packs whole files on the encrypting
 * thread (src/age/thread.ts).
 */
import { AGE_MAGIC, checkAgeHeader, dearmorChunks, EncryptionThread, looksLikeDamagedAge, openChunks, parseIdentityFile, peekAge, peekAgeFile, sealChunks, type Identity } from '../age/index.ts';
import { isArmored } from '../age/armor.ts';
import { BlufioError } from '../errors.ts';
import type { Chunks, KeyOptions, Transform } from './transform.ts';

/** options.identities, parsed (a malformed one is an E_KEY error that names it). */
export const identitiesOf = (opts: KeyOptions): Identity[] => (opts.identities ?? []).flatMap((text, i) => parseIdentityFile(text, `identity ${i + 1}`));

const NEEDS_IDENTITY = 'pass --identity <key file>, or set backup.age_identity_file in blufio.toml or BLUFIO_AGE_IDENTITY_FILE';

/** `input`, dearmored when it is armored (told from its first piece). */
async function* dearmoredIfArmored(input: Chunks, shown: string): AsyncGenerator<Uint8Array> {
  const it = input[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return;
  const all = (async function* () {
    yield first.value;
    for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
  })();
  yield* isArmored(first.value) ? dearmorChunks(all, shown) : all;
}

export const age: Transform = {
  name: 'age',
  suffix: '.age',
  does: 'encrypt',
  detect: (head) => (head.length >= AGE_MAGIC.length && Buffer.from(head.buffer, head.byteOffset, AGE_MAGIC.length).equals(AGE_MAGIC)) || (head.length > 0 && isArmored(head)),
  refuseDamaged(head, shown) {
    if (looksLikeDamagedAge(head)) {
      throw new BlufioError('E_CORRUPT', `${shown} is an age file whose header is damaged (its first line is not age-encryption.org/v1)`, 'use another backup file');
    }
  },
  pack: (input, recipients) => sealChunks(input, recipients),
  unpack(input, keys, shown) {
    const ids = identitiesOf(keys);
    if (ids.length === 0) throw new BlufioError('E_KEY', `${shown} is encrypted (age); no identity was given to decrypt it`, NEEDS_IDENTITY);
    return openChunks(dearmoredIfArmored(input, shown), ids, shown);
  },
  async peek(packed, keys, shown) {
    const ids = identitiesOf(keys);
    const buf = Buffer.from(packed.buffer, packed.byteOffset, packed.length);
    if (ids.length === 0) {
      checkAgeHeader(buf, shown);
      throw new BlufioError('E_KEY', `${shown} is encrypted (age); no identity was given to read it`, NEEDS_IDENTITY);
    }
    return peekAge(buf, ids, shown);
  },
  innerHead(file, keys) {
    const ids = identitiesOf(keys);
    if (ids.length === 0) throw new BlufioError('E_KEY', `${file} is encrypted (age); no identity was given to decrypt it`, NEEDS_IDENTITY);
    return peekAgeFile(file, ids, file);
  },
  packerAhead: (recipients) => EncryptionThread.create(recipients),
};
