/**
 * The age v1 file format (https://age-encryption.org/v1) with X25519 recipients, as streams.
 *
 * A backup encrypted here decrypts with the `age` CLI (`age -d -i key.txt`), and files the `age`
 * CLI writes (`age -r age1…`) decrypt here: the format is the standard one, byte for byte —
 *
 *   age-encryption.org/v1
 *   -> X25519 <ephemeral share, base64>
 *   <file key wrapped with ChaCha20-Poly1305, base64>
 *   --- <HMAC-SHA256 of the header, base64>
 *   <16-byte nonce><payload: 64 KiB chunks, each ChaCha20-Poly1305 sealed, the last one flagged>
 *
 * Why our own code and not the `age-encryption` package (measured, docs/encryption.md): its pure
 * JavaScript cipher ran 38 MiB/s on Node 20, which would make an encrypted backup of a 200 MB
 * database take 5 s longer than a plain one; the runtime's own ChaCha20-Poly1305 (OpenSSL) runs at
 * ~740 MiB/s. X25519, HKDF and HMAC come from node:crypto on every runtime; only the AEAD falls
 * back to our WebAssembly ChaCha20-Poly1305 (src/cipher/) where node:crypto lacks it (Bun). The
 * format is tested against the `age` CLI and the `age-encryption` package in both directions
 * (test/age.test.ts), and against the CCTV test vectors (test/age-vectors.test.ts).
 *
 * Laid out like typage's lib/: keys.ts (recipients and identities as text), header.ts (the header:
 * stanzas, file key, MAC), armor.ts (age -a), stream.ts (the STREAM payload), sealers.ts (its
 * chunks a group at a time), primitives.ts (X25519, HKDF, HMAC, the AEAD), thread.ts and
 * seal-worker.ts (encrypting on a worker thread). This file is what the rest of blufio uses.
 */
export { AGE_MAGIC, checkAgeHeader, isAgeFile, looksLikeDamagedAge, type Identity, type Recipient } from './header.ts';
export { generateIdentity, parseIdentityFile, parseRecipient, parseRecipientsFile } from './keys.ts';
export { dearmorChunks, isArmoredAgeFile } from './armor.ts';
export { CHUNK as CHUNK_BYTES } from './sealers.ts';
export { openChunks, peekAge, peekAgeFile, sealChunks } from './stream.ts';
export { EncryptionThread } from './thread.ts';
