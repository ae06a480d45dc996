/**
 * The age keys a command uses: the recipients a backup is encrypted to and the identities that
 * decrypt, from the flags or blufio.toml (the age code is loaded only when asked for).
 */
import * as fs from 'node:fs';
import type { StorageConfig } from '../config.ts';
import { BlufioError } from '../errors.ts';
import { home, listFlag, type CommonFlags } from './flags.ts';

/**
 * Who an encrypted backup goes to: --recipient and --recipients-file, else blufio.toml's. A file
 * destination whose name does not end in .age gets none from blufio.toml: it is refused there,
 * naming the setting (backups are meant to be encrypted; a plain file would silently not be).
 */
export async function recipientsFor(dest: string | null, f: CommonFlags, cfg: StorageConfig): Promise<string[]> {
  // Loaded here, not at start-up: most commands never need the age code.
  const { parseRecipientsFile } = await import('../age/index.ts');
  const recipientsInFile = (file: string) => readRecipientsFile(file, parseRecipientsFile);
  const fromFlags = [...listFlag(f.recipient, '--recipient'), ...listFlag(f.recipientsFile, '--recipients-file').flatMap((file) => recipientsInFile(home(file)))];
  if (fromFlags.length > 0 || f.recipient !== undefined || f.recipientsFile !== undefined) {
    if (fromFlags.length === 0) throw new BlufioError('E_KEY', 'the recipients files given hold no recipient', 'add age1… lines to them');
    return fromFlags;
  }
  const fromFile = cfg.backup.ageRecipientsFile ? recipientsInFile(cfg.backup.ageRecipientsFile) : [];
  // A configured file that holds no key means encryption is meant and broken: never plaintext.
  if (cfg.backup.ageRecipientsFile && fromFile.length === 0) {
    throw new BlufioError('E_KEY', `the recipients file ${cfg.backup.ageRecipientsFile} (${cfg.backup.recipientsFrom === 'BLUFIO_AGE_RECIPIENTS_FILE' ? 'BLUFIO_AGE_RECIPIENTS_FILE' : 'backup.age_recipients_file in blufio.toml'}) holds no recipient`,
      'add the age1… line that blufio keygen prints to it, or remove the setting to make unencrypted backups');
  }
  const configured = [...cfg.backup.ageRecipients, ...fromFile];
  const { compressed, encrypted, layersOfName } = await import('../transforms/index.ts');
  if (configured.length > 0 && dest !== null && !encrypted(layersOfName(dest))) {
    const from = cfg.backup.recipientsFrom?.startsWith('BLUFIO_') ? `the environment sets ${cfg.backup.recipientsFrom}` : `blufio.toml sets backup.age_recipients${cfg.backup.ageRecipientsFile ? '_file' : ''}`;
    throw new BlufioError('E_USAGE', `${from}, so backups are encrypted, but ${dest} does not end in .age`,
      `name it ${dest}.age${compressed(layersOfName(dest)) ? '' : ` (or ${dest}.gz.age)`} to encrypt it`);
  }
  return configured;
}

/** The recipients in an age recipients file, each checked (a bad line is named with its number). */
function readRecipientsFile(file: string, parseRecipientsFile: typeof import('../age/index.ts').parseRecipientsFile): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new BlufioError('E_KEY', `cannot read the recipients file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`, 'check the path');
  }
  return parseRecipientsFile(text, file).map((r) => r.text);
}

/** The texts of the identity files to decrypt with: --identity, else blufio.toml / BLUFIO_AGE_IDENTITY_FILE. */
export async function identitiesFor(f: CommonFlags, cfg: StorageConfig): Promise<string[]> {
  const { parseIdentityFile } = await import('../age/index.ts');
  const files = listFlag(f.identity, '--identity').map(home);
  return (files.length > 0 ? files : cfg.backup.ageIdentityFile ? [cfg.backup.ageIdentityFile] : []).map((file) => {
    try {
      const st = fs.statSync(file);
      if (!st.isFile() && !st.isFIFO() && !st.isCharacterDevice()) throw Object.assign(new Error('it is not a file'), { code: 'ENOTFILE' });
      // A key file is small: never read more than 64 KiB (/dev/zero given by mistake).
      const fd = fs.openSync(file, 'r');
      const buf = Buffer.alloc(65536);
      let n = 0;
      try {
        for (let got; n < buf.length && (got = fs.readSync(fd, buf, n, buf.length - n, null)) > 0; ) n += got;
      } finally {
        fs.closeSync(fd);
      }
      const text = buf.subarray(0, n).toString('utf8');
      parseIdentityFile(text, file); // checked here, so that errors name the file
      return text;
    } catch (e) {
      if (e instanceof BlufioError) throw e;
      throw new BlufioError('E_KEY', `cannot read the identity file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`, 'check the path given to --identity (or backup.age_identity_file, BLUFIO_AGE_IDENTITY_FILE)');
    }
  });
}
