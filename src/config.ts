/**
 * blufio's storage configuration, resolved the way the blufio server resolves it:
 * defaults, then /etc/blufio/blufio.toml, <config dir>/blufio/blufio.toml, ./blufio.toml
 * (each later file wins), then BLUFIO_STORAGE_* environment variables, then flags.
 * `--config <file>` reads that one file instead of the three.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { BlufioError } from './errors.ts';
import { nearest } from './typos.ts';
import type { S3Settings } from './storage/s3/client.ts';

export interface StorageConfig {
  databasePath: string;
  walMode: boolean;
  /** The [backup] table: keys for encrypted backups (relative paths: from the file that set them). */
  backup: BackupConfig;
  /** The [replicate] table: `blufio replicate`'s settings. */
  replicate?: { interval?: number; maxBacklogMb?: number; lagWarn?: number };
  /** The configuration files that were read, in order (for `--json` and error messages). */
  files: string[];
  /** Keys blufio's backup reads nothing from, each "file:line: …" (the CLI prints them). */
  warnings: string[];
}

export interface BackupConfig {
  /** backup.age_recipients: encrypt `.age` backups to these (`age1…`). */
  ageRecipients: string[];
  /** backup.age_recipients_file: a file of recipients, one per line. */
  ageRecipientsFile?: string;
  /** backup.age_identity_file, or BLUFIO_AGE_IDENTITY_FILE: the key that decrypts, for restore and verify. */
  ageIdentityFile?: string;
  /** [backup.s3]: endpoint, region, force_path_style, profile (the AWS environment wins over them). */
  s3: S3Settings;
  /** [backup.retention]: keep_last, keep_hourly, …: what `backup <set> --prune` applies. */
  retention: Partial<Record<'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly', number>>;
  /** backup.full_every_days: in a set, a new full backup once the newest is older (default 7). */
  fullEveryDays?: number;
  /** backup.unencrypted: send backups to object storage unencrypted on purpose (they are refused otherwise without recipients). */
  unencrypted?: boolean;
  /** Where the recipients come from, for messages ("backup.age_recipients in blufio.toml", "BLUFIO_AGE_RECIPIENTS"). */
  recipientsFrom?: string;
}

export interface ConfigInput {
  /** --config: read this file instead of the hierarchy. */
  configFile?: string;
  /** --db: overrides storage.database_path. */
  db?: string;
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  home?: string;
  cwd?: string;
}

/** Per-user data and config directories, as Rust's `dirs` crate (which blufio uses) has them. */
function platformDirs(platform: NodeJS.Platform, env: NodeJS.ProcessEnv, home: string): { data: string; config: string } {
  if (platform === 'darwin') {
    const d = path.join(home, 'Library', 'Application Support');
    return { data: d, config: d };
  }
  if (platform === 'win32') {
    const d = env.APPDATA ?? path.join(home, 'AppData', 'Roaming');
    return { data: d, config: d };
  }
  const abs = (v: string | undefined) => (v && path.isAbsolute(v) ? v : undefined);
  return {
    data: abs(env.XDG_DATA_HOME) ?? path.join(home, '.local', 'share'),
    config: abs(env.XDG_CONFIG_HOME) ?? path.join(home, '.config'),
  };
}

/** The configuration files blufio reads, lowest precedence first. */
export function configFiles(input: ConfigInput = {}): string[] {
  const env = input.env ?? process.env;
  const dirs = platformDirs(input.platform ?? process.platform, env, input.home ?? os.homedir());
  return ['/etc/blufio/blufio.toml', path.join(dirs.config, 'blufio', 'blufio.toml'), path.join(input.cwd ?? process.cwd(), 'blufio.toml')];
}

export function resolveConfig(input: ConfigInput = {}): StorageConfig {
  const env = input.env ?? process.env;
  const home = input.home ?? os.homedir();
  const cwd = input.cwd ?? process.cwd();
  const dirs = platformDirs(input.platform ?? process.platform, env, home);
  const cfg: StorageConfig = { databasePath: path.join(dirs.data, 'blufio', 'blufio.db'), walMode: true, backup: { ageRecipients: [], s3: {}, retention: {} }, files: [], warnings: [] };

  let candidates: string[];
  if (input.configFile) {
    const file = path.resolve(cwd, input.configFile);
    if (!fs.existsSync(file)) {
      throw new BlufioError('E_CONFIG', `config file not found: ${file}`, 'check the --config path');
    }
    candidates = [file];
  } else {
    candidates = configFiles(input).filter((f) => fs.existsSync(f));
  }
  for (const file of candidates) {
    applyFile(cfg, file, home);
    cfg.files.push(file);
  }

  if (env.BLUFIO_STORAGE_DATABASE_PATH) cfg.databasePath = expandPath(env.BLUFIO_STORAGE_DATABASE_PATH, home, cwd);
  if (env.BLUFIO_STORAGE_WAL_MODE !== undefined && env.BLUFIO_STORAGE_WAL_MODE !== '') {
    cfg.walMode = parseBool(env.BLUFIO_STORAGE_WAL_MODE, 'BLUFIO_STORAGE_WAL_MODE');
  }
  if (env.BLUFIO_AGE_IDENTITY_FILE) cfg.backup.ageIdentityFile = expandPath(env.BLUFIO_AGE_IDENTITY_FILE, home, cwd);
  // Recipients from the environment alone (a container, a systemd unit's Environment=) replace
  // blufio.toml's. Set and empty is a key that was meant and not filled in (an unset variable in
  // a compose file): an error, never an unencrypted backup.
  for (const name of ['BLUFIO_AGE_RECIPIENTS', 'BLUFIO_AGE_RECIPIENTS_FILE'] as const) {
    if (env[name] !== undefined && env[name]!.trim() === '') {
      throw new BlufioError('E_CONFIG', `${name} is set but empty`, `put ${name === 'BLUFIO_AGE_RECIPIENTS' ? 'the age1… key that blufio keygen prints in it' : 'the path of a recipients file in it'}, or unset it`);
    }
  }
  if (env.BLUFIO_AGE_RECIPIENTS !== undefined || env.BLUFIO_AGE_RECIPIENTS_FILE !== undefined) {
    cfg.backup.ageRecipients = (env.BLUFIO_AGE_RECIPIENTS ?? '').split(/[\s,]+/).filter(Boolean);
    cfg.backup.ageRecipientsFile = env.BLUFIO_AGE_RECIPIENTS_FILE ? expandPath(env.BLUFIO_AGE_RECIPIENTS_FILE, home, cwd) : undefined;
    cfg.backup.recipientsFrom = env.BLUFIO_AGE_RECIPIENTS_FILE ? 'BLUFIO_AGE_RECIPIENTS_FILE' : 'BLUFIO_AGE_RECIPIENTS';
  }
  cfg.warnings.push(...envWarnings(env));
  if (input.db) cfg.databasePath = expandPath(input.db, home, cwd);
  return cfg;
}

function applyFile(cfg: StorageConfig, file: string, home: string): void {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw new BlufioError('E_CONFIG', `the config file ${file} is a directory`, 'remove it or give --config the path of a blufio.toml file');
    throw new BlufioError('E_CONFIG', `cannot read config file ${file}: ${(e as Error).message}`, 'fix its permissions, or pass --config <file>');
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const err = e as { line?: number; message: string };
    const first = err.message.split('\n')[0].replace(/^Invalid TOML document: /, '');
    throw new BlufioError('E_CONFIG', `${file}:${err.line ?? '?'}: invalid TOML: ${first}`, 'fix that line of the file');
  }
  checkKeys(cfg, doc, file, text);
  applyBackup(cfg, doc.backup, file, home);
  applyReplicate(cfg, doc.replicate, file);
  const storage = doc.storage;
  if (storage === undefined) return;
  if (typeof storage !== 'object' || storage === null || Array.isArray(storage)) {
    throw new BlufioError('E_CONFIG', `${file}: storage must be a table ([storage])`, 'fix the file');
  }
  const s = storage as Record<string, unknown>;
  if (s.database_path !== undefined) {
    if (typeof s.database_path !== 'string' || s.database_path === '') {
      throw new BlufioError('E_CONFIG', `${file}: storage.database_path must be a non-empty string`, 'fix the file');
    }
    // Relative to the file that says it, as every path in the file: cron runs from /.
    cfg.databasePath = expandPath(s.database_path, home, path.dirname(file));
  }
  if (s.wal_mode !== undefined) {
    if (typeof s.wal_mode !== 'boolean') {
      throw new BlufioError('E_CONFIG', `${file}: storage.wal_mode must be true or false`, 'fix the file');
    }
    cfg.walMode = s.wal_mode;
  }
}

/** The [replicate] table: interval (seconds, fractions allowed), max_backlog_mb, lag_warn (seconds). */
function applyReplicate(cfg: StorageConfig, replicate: unknown, file: string): void {
  if (replicate === undefined) return;
  if (typeof replicate !== 'object' || replicate === null || Array.isArray(replicate)) {
    throw new BlufioError('E_CONFIG', `${file}: replicate must be a table ([replicate])`, 'fix the file');
  }
  const r = replicate as Record<string, unknown>;
  if (r.interval !== undefined) {
    if (typeof r.interval !== 'number' || !(r.interval >= 0.05 && r.interval <= 3600)) throw new BlufioError('E_CONFIG', `${file}: replicate.interval must be a number of seconds from 0.05 to 3600`, 'fix the file, e.g. interval = 1');
    cfg.replicate = { ...cfg.replicate, interval: r.interval };
  }
  if (r.max_backlog_mb !== undefined) {
    if (typeof r.max_backlog_mb !== 'number' || !(r.max_backlog_mb >= 1 && r.max_backlog_mb <= 2 ** 30)) throw new BlufioError('E_CONFIG', `${file}: replicate.max_backlog_mb must be a number of MiB, at least 1`, 'fix the file, e.g. max_backlog_mb = 1024');
    cfg.replicate = { ...cfg.replicate, maxBacklogMb: r.max_backlog_mb };
  }
  if (r.lag_warn !== undefined) {
    if (typeof r.lag_warn !== 'number' || !(r.lag_warn >= 1 && r.lag_warn <= 86400)) throw new BlufioError('E_CONFIG', `${file}: replicate.lag_warn must be a number of seconds from 1 to 86400`, 'fix the file, e.g. lag_warn = 10');
    cfg.replicate = { ...cfg.replicate, lagWarn: r.lag_warn };
  }
}

/** The [backup] table. Paths in it are relative to the file's own directory (cron runs from /). */
function applyBackup(cfg: StorageConfig, backup: unknown, file: string, home: string): void {
  if (backup === undefined) return;
  if (typeof backup !== 'object' || backup === null || Array.isArray(backup)) {
    throw new BlufioError('E_CONFIG', `${file}: backup must be a table ([backup])`, 'fix the file');
  }
  const b = backup as Record<string, unknown>;
  const here = path.dirname(file);
  if (b.age_recipients !== undefined) {
    if (!Array.isArray(b.age_recipients) || b.age_recipients.some((r) => typeof r !== 'string')) {
      throw new BlufioError('E_CONFIG', `${file}: backup.age_recipients must be a list of strings (["age1…"])`, 'fix the file');
    }
    // An empty list is a key that was meant and not filled in: never unencrypted backups for it.
    if (b.age_recipients.length === 0) {
      throw new BlufioError('E_CONFIG', `${file}: backup.age_recipients is empty`, 'put the age1… line that blufio keygen prints in it, or remove the setting to make unencrypted backups');
    }
    cfg.backup.ageRecipients = b.age_recipients as string[];
    cfg.backup.recipientsFrom = 'backup.age_recipients in blufio.toml';
  }
  if (b.unencrypted !== undefined) {
    if (typeof b.unencrypted !== 'boolean') throw new BlufioError('E_CONFIG', `${file}: backup.unencrypted must be true or false`, 'fix the file');
    cfg.backup.unencrypted = b.unencrypted;
  }
  if (b.s3 !== undefined) {
    if (typeof b.s3 !== 'object' || b.s3 === null || Array.isArray(b.s3)) throw new BlufioError('E_CONFIG', `${file}: backup.s3 must be a table ([backup.s3])`, 'fix the file');
    const s3 = b.s3 as Record<string, unknown>;
    for (const [key, field] of [['endpoint', 'endpoint'], ['region', 'region'], ['profile', 'profile']] as const) {
      if (s3[key] === undefined) continue;
      if (typeof s3[key] !== 'string' || s3[key] === '') throw new BlufioError('E_CONFIG', `${file}: backup.s3.${key} must be a non-empty string`, 'fix the file');
      cfg.backup.s3[field] = s3[key] as string;
    }
    if (s3.force_path_style !== undefined) {
      if (typeof s3.force_path_style !== 'boolean') throw new BlufioError('E_CONFIG', `${file}: backup.s3.force_path_style must be true or false`, 'fix the file');
      cfg.backup.s3.forcePathStyle = s3.force_path_style;
    }
    for (const key of Object.keys(s3)) {
      if (!['endpoint', 'region', 'profile', 'force_path_style'].includes(key)) {
        throw new BlufioError('E_CONFIG', `${file}: unknown key backup.s3.${key}${/secret|access_key|key_id|token/i.test(key) ? ' (keys do not go in blufio.toml: use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws/credentials)' : ''}`,
          'the keys of [backup.s3] are endpoint, region, force_path_style and profile');
      }
    }
  }
  if (b.retention !== undefined) {
    if (typeof b.retention !== 'object' || b.retention === null || Array.isArray(b.retention)) throw new BlufioError('E_CONFIG', `${file}: backup.retention must be a table ([backup.retention])`, 'fix the file');
    for (const [key, v] of Object.entries(b.retention as Record<string, unknown>)) {
      const rule = /^keep_(last|hourly|daily|weekly|monthly|yearly)$/.exec(key)?.[1] as keyof BackupConfig['retention'] | undefined;
      if (!rule) throw new BlufioError('E_CONFIG', `${file}: unknown key backup.retention.${key}`, 'the keys are keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly and keep_yearly');
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new BlufioError('E_CONFIG', `${file}: backup.retention.${key} must be a whole number of at least 0`, 'fix the file');
      cfg.backup.retention[rule] = v;
    }
  }
  if (b.full_every_days !== undefined) {
    if (typeof b.full_every_days !== 'number' || !(b.full_every_days > 0)) throw new BlufioError('E_CONFIG', `${file}: backup.full_every_days must be a number above 0`, 'fix the file');
    cfg.backup.fullEveryDays = b.full_every_days;
  }
  for (const [key, field] of [['age_recipients_file', 'ageRecipientsFile'], ['age_identity_file', 'ageIdentityFile']] as const) {
    if (b[key] === undefined) continue;
    if (typeof b[key] !== 'string' || b[key] === '') throw new BlufioError('E_CONFIG', `${file}: backup.${key} must be a non-empty string (a path)`, 'fix the file');
    cfg.backup[field] = expandPath(b[key] as string, home, here);
  }
}

/** The keys blufio's backup reads, by table ("" is the top level: only tables there). */
const KNOWN: Record<string, string[]> = {
  storage: ['database_path', 'wal_mode'],
  backup: ['age_recipients', 'age_recipients_file', 'age_identity_file', 'full_every_days', 's3', 'retention', 'unencrypted'],
  replicate: ['interval', 'max_backlog_mb', 'lag_warn'],
};

/**
 * Keys that are not read. blufio.toml is the blufio server's file too: its other tables ([agent],
 * …) are not ours to judge. But a table or key that is a misspelling of one we read is an error
 * (a `database_pth` would otherwise back up the default database and exit 0), and any other
 * unknown key in [storage] or [backup], or a bare key at the top level, is named in a warning.
 * ([backup.s3] and [backup.retention] refuse unknown keys outright: applyBackup.)
 */
function checkKeys(cfg: StorageConfig, doc: Record<string, unknown>, file: string, text: string): void {
  const at = (table: string, key: string) => `${file}:${lineOf(text, table, key) ?? '?'}`;
  for (const [key, v] of Object.entries(doc)) {
    if (key in KNOWN) continue;
    const isTable = typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
    const near = closeTo(key, Object.keys(KNOWN));
    if (isTable && near) throw new BlufioError('E_CONFIG', `${at('', key)}: unknown table [${key}]`, `did you mean [${near}]?`);
    if (isTable) continue;
    const owner = Object.keys(KNOWN).find((t) => KNOWN[t].includes(key));
    if (owner) throw new BlufioError('E_CONFIG', `${at('', key)}: ${key} is outside any table, so it is not read`, `put it under [${owner}]`);
    cfg.warnings.push(`${at('', key)}: ${key} at the top level is not read by blufio backup`);
  }
  for (const [table, keys] of Object.entries(KNOWN)) {
    const t = doc[table];
    if (typeof t !== 'object' || t === null || Array.isArray(t)) continue;
    for (const key of Object.keys(t)) {
      if (keys.includes(key)) continue;
      const near = closeTo(key, keys) ?? (table === 'storage' && /path|file|db|database|dir/i.test(key) ? 'database_path' : undefined);
      if (near) throw new BlufioError('E_CONFIG', `${at(table, key)}: unknown key ${table}.${key}`, `did you mean ${table}.${near}?`);
      cfg.warnings.push(`${at(table, key)}: unknown key ${table}.${key} is ignored (blufio backup reads ${table}.${keys.join(`, ${table}.`)})`);
    }
  }
}

/** The BLUFIO_* variables blufio backup reads. */
export const KNOWN_ENV = [
  'BLUFIO_STORAGE_DATABASE_PATH', 'BLUFIO_STORAGE_WAL_MODE', 'BLUFIO_AGE_IDENTITY_FILE', 'BLUFIO_AGE_RECIPIENTS', 'BLUFIO_AGE_RECIPIENTS_FILE',
  'BLUFIO_WORK_DIR', 'BLUFIO_PROGRESS', 'BLUFIO_DEBUG',
];
/** Read by the tests and tracing only: never named in a suggestion, never warned about. */
const QUIET_ENV = ['BLUFIO_TRACE', 'BLUFIO_TEST_CRASH_AT'];

/**
 * BLUFIO_* variables that look meant for blufio backup and are not read: a guessed
 * BLUFIO_BACKUP_AGE_RECIPIENTS (or BLUFIO_RECIPIENTS) was silently ignored, and backups went out
 * unencrypted. The blufio server has variables of its own: only those that speak of what blufio
 * backup does (recipients, identities, encryption, age, backups, S3), or are close to one it
 * reads, are named, with the one meant.
 */
function envWarnings(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  const lower = KNOWN_ENV.map((k) => k.toLowerCase());
  for (const name of Object.keys(env)) {
    if (!name.startsWith('BLUFIO_') || KNOWN_ENV.includes(name) || QUIET_ENV.includes(name)) continue;
    const upper = name.toUpperCase();
    const plain = upper.replace(/^BLUFIO_(BACKUP_)+/, 'BLUFIO_').replace(/^BLUFIO_S3_/, 'BLUFIO_');
    const meant = KNOWN_ENV.includes(plain) ? plain
      : (nearest(name, lower, 3) ?? nearest(plain, lower, 3))?.toUpperCase()
      ?? (/RECIP/.test(upper) ? (/FILE/.test(upper) ? 'BLUFIO_AGE_RECIPIENTS_FILE' : 'BLUFIO_AGE_RECIPIENTS')
        : /IDENT|KEY_?FILE|SECRET_?KEY/.test(upper) ? 'BLUFIO_AGE_IDENTITY_FILE'
          : /UNENCRYPT|PLAIN|NO_?ENCRYPT/.test(upper) ? '--unencrypted (or backup.unencrypted = true in blufio.toml)'
            : /ENCRYPT|(^|_)AGE(_|$)/.test(upper) ? 'BLUFIO_AGE_RECIPIENTS'
              : /WORK_?DIR|TMP/.test(upper) ? 'BLUFIO_WORK_DIR'
                : /DB|DATABASE/.test(upper) && /BACKUP/.test(upper) ? 'BLUFIO_STORAGE_DATABASE_PATH' : undefined);
    if (!meant && !/^BLUFIO_(AGE|BACKUP|S3)_/.test(upper)) continue;
    out.push(`environment: ${name} is not read by blufio backup${meant ? ` (did you mean ${meant}?)` : ` (it reads ${KNOWN_ENV.join(', ')}; S3 settings come from the AWS_* variables)`}`);
  }
  return out;
}

/** The line where `key` is set in `table` ("" for the top level, or [key] itself), by a plain scan. */
function lineOf(text: string, table: string, key: string): number | undefined {
  let current = '';
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    const header = /^\[\s*([^\]]+?)\s*\]/.exec(line);
    if (header) {
      current = header[1].replace(/\s+/g, '');
      if (table === '' && current === key) return i + 1;
      continue;
    }
    if (current === table && new RegExp(`^["']?${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}["']?\\s*=`).test(line)) return i + 1;
  }
  // A table of its own ([backup.retension]) or a dotted key (storage.database_pth = …).
  const dotted = table ? `${table}.${key}` : key;
  const found = lines.findIndex((l) => {
    const t = l.trim();
    return t.replace(/\s+/g, '') === `[${dotted}]` || t.startsWith(`${dotted} `) || t.startsWith(`${dotted}=`) || (table === '' && t.startsWith(`${key}.`));
  });
  return found >= 0 ? found + 1 : undefined;
}

/** A known name `typed` is a misspelling of (two edits at most, one for short names), if any. */
function closeTo(typed: string, known: string[]): string | undefined {
  const t = typed.toLowerCase().replace(/-/g, '_');
  return known.find((k) => k === t) ?? nearest(t, known, t.length > 6 ? 2 : 1);
}

function expandPath(p: string, home: string, cwd: string): string {
  if (p === '~' || p.startsWith('~/')) return path.join(home, p.slice(1));
  return path.resolve(cwd, p);
}

function parseBool(v: string, name: string): boolean {
  const s = v.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off'].includes(s)) return false;
  throw new BlufioError('E_CONFIG', `${name} must be true or false, not "${v}"`, `set ${name}=true or ${name}=false`);
}
