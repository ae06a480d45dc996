/** The keygen command: a new age key, its private half to a file or stdout. */
import * as path from 'node:path';
import { BlufioError } from '../errors.ts';
import { STDOUT, type CommonFlags } from './flags.ts';
import { emit, stdoutIsDevNull, type Io, type Say } from './io.ts';

/** `blufio keygen [file]`: a new age key; the private key to the file (0600, never over another) or stdout. */
export async function runKeygen(target: string, f: CommonFlags, io: Io, say: Say): Promise<void> {
  const { generateIdentity } = await import('../age/index.ts');
  const { publishText } = await import('../files.ts');
  const key = generateIdentity();
  if (target === STDOUT) {
    if (f.json) throw new BlufioError('E_USAGE', '--json needs a file for the key: stdout would carry both', 'give the key file: blufio keygen <file> --json');
    if (stdoutIsDevNull()) throw new BlufioError('E_USAGE', 'stdout goes nowhere (/dev/null, or it was closed): the private key would be lost', 'give the key file: blufio keygen <file>');
    io.stdout(key.file);
  } else {
    publishText(target, key.file, 0o600, 'key file');
  }
  if (f.json) emit(io, 'keygen', { ok: true, path: path.resolve(target), recipient: key.recipient });
  if (!f.quiet) io.stderr(`Public key: ${key.recipient}\n`);
  say(`Encrypt backups to it: blufio backup <path>.db.gz.age --recipient ${key.recipient}`);
  say(`  (or in blufio.toml: [backup] age_recipients = ["${key.recipient}"])`);
  say(`Keep the private key${target === STDOUT ? '' : ` (${path.resolve(target)})`} off this server, with a copy somewhere safe: without it no encrypted backup can be restored.`);
}
