/**
 * The `blufio` command line: `blufio backup <path>` and `blufio restore <path>`.
 *
 * stdout carries only the --json result; everything for people goes to stderr. Exit codes:
 * 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C). An expected failure prints one
 * line, `error: <what happened> (<what to do>)`; anything else is a bug and prints its stack.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { helpText, parseArgs, type CommandSpec, type OptionSpec } from './args.ts';
import type { StorageConfig } from './config.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import { BlufioError, timeLimitError } from './errors.ts';
import { formatMB, ProgressBar, ProgressLines, progressMode, type Progress } from './progress.ts';

declare const __BLUFIO_VERSION__: string | undefined;
export const VERSION = typeof __BLUFIO_VERSION__ === 'string' ? __BLUFIO_VERSION__ : '0.0.0-dev';

export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  /** Where `blufio backup -` streams the backup. */
  stdoutStream: NodeJS.WritableStream & { isTTY?: boolean };
  stderrIsTTY: boolean;
  /** The terminal's width, for --help (undefined: not a terminal). */
  columns?: number;
  /** stderr's width now (it follows a resize), for the progress bar. */
  stderrColumns?: () => number | undefined;
}

/**
 * What the CLI prints on stdout (JSON, help, a key) is written synchronously, so that a failure
 * (a reader that went away, a full disk, a closed stdout) is an error here, reported in one line,
 * and never an uncaught stream error after the fact. A non-blocking pipe that is full is waited on.
 */
function writeStdout(s: string): void {
  const bytes = Buffer.from(s);
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (let off = 0; off < bytes.length; ) {
    try {
      off += fs.writeSync(1, bytes, off, bytes.length - off);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        Atomics.wait(wait, 0, 0, 5);
        continue;
      }
      const why = code === 'EPIPE' ? 'its reader closed it' : code === 'ENOSPC' ? 'no space left on the device' : code === 'EBADF' ? 'it is closed' : (e as Error).message;
      throw new (code === 'EPIPE' ? ReaderGone : BlufioError)('E_IO', `cannot write to stdout: ${why}`, 'check where stdout goes (a full disk, a closed pipe)', { cause: e });
    }
  }
}

let sigxfszIgnored = false;
/** SIGXFSZ ignored from now on (main()): once per process, never taken back. */
function ignoreSigxfsz(): void {
  if (sigxfszIgnored) return;
  sigxfszIgnored = true;
  process.on('SIGXFSZ', () => {});
}

/** stdout's reader closed it (EPIPE): an error, except after a listing (main()). */
class ReaderGone extends BlufioError {}

const defaultIo: Io = {
  stdout: (s) => writeStdout(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  stdoutStream: process.stdout,
  stderrIsTTY: !!process.stderr.isTTY,
  columns: process.stdout.columns,
  stderrColumns: () => process.stderr.columns,
};

type CommandName = 'backup' | 'restore' | 'verify' | 'keygen' | 'list' | 'prune' | 'check';
const STDOUT = '\0stdout';
/** Timers hold at most 2^31 - 1 ms. */
const MAX_TIMEOUT_S = 2_073_600;

interface CommonFlags {
  db?: string;
  config?: string;
  force?: boolean;
  quiet?: boolean;
  json?: boolean;
  pagesPerStep?: number;
  sleepMs?: number;
  retries: number;
  timeout?: number;
  verify: boolean;
  quick?: boolean;
  workDir?: string;
  dryRun?: boolean;
  recipient?: string[];
  recipientsFile?: string[];
  identity?: string[];
  gzip?: boolean;
  at?: string;
  full?: boolean;
  unencrypted?: boolean;
  prune?: boolean;
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  ping?: string;
  ifMissing?: boolean;
  progress?: boolean;
  series?: string[];
  readData?: boolean;
  readDataSubset?: string;
}

const opt = (name: string, help: string, value?: string, repeatable?: boolean, short?: string): OptionSpec => ({ name, help, value, repeatable, short });
const DB = opt('db', 'Database path (overrides storage.database_path in blufio.toml)', '<path>');
const CONFIG = opt('config', 'Read this blufio.toml instead of the usual ones', '<file>', false, 'c');
const QUIET = opt('quiet', 'Print nothing but errors', undefined, false, 'q');
const JSON_OUT = opt('json', 'Print one JSON object with the result on stdout');
const TIMEOUT = opt('timeout', 'Give up on the whole job after this long, leaving nothing behind (default: no limit; a live database\'s retries stop after 60 s)', '<seconds>');
const WORK_DIR = opt('work-dir', 'Where a whole uncompressed copy is staged for .gz, .age and - (default: beside a .gz file, a private folder in $TMPDIR for .age and -; env BLUFIO_WORK_DIR)', '<dir>');
const IDENTITY = opt('identity', 'Decrypt an .age backup with this age key file (repeatable; default: backup.age_identity_file, env BLUFIO_AGE_IDENTITY_FILE)', '<file>', true, 'i');
const PROGRESS = opt('progress', 'Show progress even when stderr is not a terminal: a plain line every 5 s, for logs (or BLUFIO_PROGRESS=lines; =none: never)');
const SLEEP = opt('sleep-ms', 'Pause between copy steps in ms (default: 10 while another process has the database open, else 0)', '<n>');
const AT = opt('at', 'From a set: the newest backup at or before this time (ISO 8601, UTC unless a zone is given)', '<time>');
const SERIES = opt('series', 'From a set holding several databases\' backups: whose (default: the database file\'s name without .db)', '<name>');

/** Every command, its argument and the options that mean something for it (help is made from this). */
const COMMANDS: CommandSpec[] = [
  {
    name: 'backup', arg: '<path>',
    summary: 'Back up the database to <path>, s3://BUCKET/KEY, or a set (a folder or prefix ending in /: timestamped, differential). .gz compresses, .age encrypts, - writes to stdout.',
    options: [
      DB, CONFIG,
      opt('force', 'Replace an existing file at <path>', undefined, false, 'f'),
      opt('no-verify', 'Skip the integrity check of the finished backup (it is checked unless this is given)'),
      opt('recipient', 'Encrypt to this age public key (repeatable; default: backup.age_recipients, env BLUFIO_AGE_RECIPIENTS); required for s3:// unless --unencrypted', '<age1…>', true, 'r'),
      opt('recipients-file', 'Encrypt an .age backup to the keys in this file, one per line (repeatable; default: backup.age_recipients_file)', '<file>', true),
      opt('gzip', 'Compress what "-" writes to stdout (a file\'s name says it: .gz)'),
      opt('full', 'In a set: a full backup, not a differential'),
      opt('unencrypted', 'To s3:// without recipients, or into a set whose newest backup is encrypted: send this one unencrypted, on purpose (or backup.unencrypted = true)'),
      opt('prune', 'In a set: afterwards remove what [backup.retention] in blufio.toml does not keep'),
      opt('ping', 'Tell a monitor (healthchecks.io-style): GET <url> on success, <url>/fail on failure', '<url>'),
      QUIET, JSON_OUT, PROGRESS,
      opt('pages-per-step', 'Pages copied per step of SQLite\'s backup API (default: 100, or 1000 with no pause)', '<n>'),
      SLEEP,
      opt('retries', 'Most copy attempts while a live database keeps changing (default: 10)', '<n>'),
      TIMEOUT, WORK_DIR,
    ],
    examples: [
      'blufio backup /var/backups/blufio-$(date +%F).db',
      'blufio backup /var/backups/blufio-$(date +%F).db.gz',
      'blufio backup /mnt/offsite/blufio-$(date +%F).db.gz.age --recipient age1…',
      'blufio backup s3://my-bucket/blufio/blufio-$(date +%F).db.gz',
      'blufio backup /var/backups/blufio/ --prune   # a set: timestamped, differential',
      'blufio backup - | ssh backup-host "cat > blufio.db"',
    ],
  },
  {
    name: 'restore', arg: '<path>',
    summary: 'Replace the database with the backup at <path>, s3://BUCKET/KEY, or the newest in a set (--at: as of a time). The current database is kept as <db>.pre-restore.',
    options: [
      DB, CONFIG,
      opt('dry-run', 'Check the plan (the backup\'s header and key, the target, who has it open) and say what would be replaced, kept and moved; change nothing', undefined, false, 'n'),
      AT, SERIES, IDENTITY,
      opt('if-missing', 'Restore only when the database does not exist yet (a fresh container seeding itself); exit 0 either way'),
      opt('force', 'Restore while another process has the database open (its later writes then go to <db>.pre-restore)', undefined, false, 'f'),
      QUIET, JSON_OUT, PROGRESS, SLEEP, TIMEOUT, WORK_DIR,
    ],
    examples: ['blufio restore /var/backups/blufio-2026-11-24.db --dry-run', 'blufio restore /var/backups/blufio-2026-11-24.db', 'blufio restore /var/backups/blufio/ --at 2026-11-24T08:00Z'],
  },
  {
    name: 'verify', arg: '<path>',
    summary: 'Check a backup (or any database file) and report what it holds; exit 0 if it is sound.',
    options: [
      CONFIG, opt('quick', 'Run quick_check instead of the full integrity_check'), AT, SERIES, IDENTITY,
      opt('quiet', 'Print nothing; the exit code tells', undefined, false, 'q'), JSON_OUT,
      opt('timeout', 'Give up after this long (a download, decrypting, the check)', '<seconds>'),
      opt('work-dir', 'Where a .gz or .age is unpacked to be checked (default: $TMPDIR; env BLUFIO_WORK_DIR)', '<dir>'),
    ],
    examples: ['blufio verify /var/backups/blufio-2026-11-24.db.gz'],
  },
  {
    name: 'list', arg: '<set>',
    summary: 'List the backups of a set (a folder or an s3:// prefix), newest first, and which cannot be restored (and why).',
    options: [CONFIG, opt('identity', 'Read the headers of encrypted backups with this age key file too (repeatable; default: backup.age_identity_file, env BLUFIO_AGE_IDENTITY_FILE)', '<file>', true, 'i'), JSON_OUT],
    examples: ['blufio list /var/backups/blufio/'],
  },
  {
    name: 'check', arg: '<set>',
    summary: 'Check that every backup of a set can be restored: names, headers, every differential\'s base; with --read-data, rebuild and integrity_check them. Exit 0 only when all is sound.',
    options: [
      opt('read-data', 'Also rebuild every backup and run integrity_check on it (downloads everything)'),
      opt('read-data-subset', 'Rebuild and integrity_check a random share of the backups, e.g. 10%', '<n%>'),
      opt('identity', 'Decrypt encrypted backups with this age key file (repeatable; default: backup.age_identity_file, env BLUFIO_AGE_IDENTITY_FILE)', '<file>', true, 'i'),
      SERIES, QUIET, JSON_OUT, CONFIG,
      opt('work-dir', 'Where backups are rebuilt to be checked (default: $TMPDIR; env BLUFIO_WORK_DIR)', '<dir>'),
    ],
    examples: ['blufio check s3://my-bucket/blufio/', 'blufio check /var/backups/blufio/ --read-data-subset 10%'],
  },
  {
    name: 'prune', arg: '<set>',
    summary: 'Remove the backups of a set that no --keep-* rule keeps (restic\'s forget, in UTC).',
    options: [
      opt('keep-last', 'Keep the n newest', '<n>'),
      opt('keep-hourly', 'Keep the newest of each of the n most recent hours that have one', '<n>'),
      opt('keep-daily', 'Same, days', '<n>'), opt('keep-weekly', 'Same, ISO weeks', '<n>'),
      opt('keep-monthly', 'Same, months', '<n>'), opt('keep-yearly', 'Same, years', '<n>'),
      opt('dry-run', 'Say what would be removed; remove nothing', undefined, false, 'n'),
      QUIET, opt('json', 'Print one JSON object with what was kept (and why) and removed'), CONFIG,
    ],
    examples: ['blufio prune /var/backups/blufio/ --keep-daily 7 --keep-weekly 4 --keep-monthly 12'],
  },
  {
    name: 'keygen', arg: '[file]',
    summary: 'Make an age key for encrypted backups: writes the private key to [file] (or stdout), prints its public key.',
    options: [JSON_OUT, QUIET],
    examples: ['blufio keygen ~/blufio-backup-key.txt'],
  },
];

/** Runs the CLI on `argv` (without node and script) and resolves to the exit code. */
export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  let json = false;
  let command = 'blufio';
  const controller = new AbortController();
  // Exit 128 + the signal (130 for SIGINT, 143 for SIGTERM): what systemd and shells read.
  let signalled = 'SIGINT' as 'SIGINT' | 'SIGTERM';
  const onSigint = () => controller.abort(new Error('interrupted'));
  const onSigterm = () => {
    if (!controller.signal.aborted) signalled = 'SIGTERM';
    onSigint();
  };
  // A file-size limit (`ulimit -f`) must be the error EFBIG from the write, not a silent kill:
  // Node and Bun ignore SIGXFSZ; under Deno its default action ended the process, leaving its
  // temporary file behind. A listener makes Deno ignore it too — for the rest of the process's
  // life: taken off when main() ended, it let a SIGXFSZ still on its way (raised by the failed
  // write, handled by Deno's event loop later) kill the process after the error was printed
  // (exit status null, 2 runs in 3 of the test under load). A listener does not keep Deno alive.
  ignoreSigxfsz();
  configWarnings.clear();
  try {
    const parsed = parseArgs(COMMANDS, argv);
    if (parsed.kind === 'version') {
      io.stdout(`blufio ${VERSION}\n`);
      return 0;
    }
    if (parsed.kind === 'help') {
      io.stdout(helpText(COMMANDS, VERSION, parsed.command, io.columns || Number(io.env.COLUMNS) || undefined));
      return 0;
    }
    const flags = parsed.flags as unknown as CommonFlags;
    command = parsed.command.name;
    json = !!flags.json;
    const target = parsed.arg === undefined ? (command === 'keygen' ? STDOUT : '') : parsed.arg === '-' ? STDOUT : parsed.arg;
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    await runCommand(command as CommandName, target, flags, io, controller.signal);
    return 0;
  } catch (e) {
    // A usage error is found before the flags are known: --json anywhere still asks for JSON.
    const named = COMMANDS.find((c) => c.name === argv[0]);
    if (command === 'blufio' && named) command = named.name;
    if (!json && argv.slice(0, argv.indexOf('--') >>> 0).some((a) => a === '--json' || a.startsWith('--json='))) json = true;
    // A listing's reader that went away (`blufio list … | head`) ends it quietly, as ls and
    // restic do; a key or a backup to a closed pipe is still a failure.
    if (e instanceof ReaderGone && (command === 'list' || command === 'blufio' || argv.includes('--help') || argv.includes('-h'))) return 0;
    const code = report(e, command, json, io);
    return code === 130 && signalled === 'SIGTERM' ? 143 : code;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  }
}

async function runCommand(name: CommandName, target: string, f: CommonFlags, io: Io, signal: AbortSignal): Promise<void> {
  const limitController = new AbortController();
  if (target.trim() === '' || /[\n\r]/.test(target)) {
    throw new BlufioError('E_USAGE', `blufio ${name} needs a path`, `run blufio ${name} --help`);
  }
  const say = (line: string) => {
    if (!f.quiet && !f.json) io.stderr(`${line}\n`);
  };
  if (name === 'keygen') return runKeygen(target, f, io, say);
  // Only backup writes to "-" and keygen prints to it; the others read files and sets.
  if (target === STDOUT && name !== 'backup') {
    throw new BlufioError('E_USAGE', `blufio ${name} reads a file or a set, not "-" (stdin)`, `give its path: blufio ${name} <path>`);
  }
  if (name === 'list') return runList(target, f, io, say);
  if (name === 'prune') return runPrune(target, f, io, say, signal);
  if (name === 'check') return runCheck(target, f, io, say, signal);

  // --timeout bounds the whole job: its abort signal ends the asynchronous steps, the deadline
  // the synchronous ones (the integrity check).
  const limit = f.timeout === undefined ? undefined : intFlag(f.timeout, '--timeout', 1);
  if (limit !== undefined && limit > MAX_TIMEOUT_S) {
    throw new BlufioError('E_USAGE', `--timeout must be at most ${MAX_TIMEOUT_S} seconds (24 days)`, 'leave --timeout out for no limit');
  }
  if (limit !== undefined) {
    const timer = setTimeout(() => limitController.abort(timeLimitError()), limit * 1000);
    (timer as { unref?: () => void }).unref?.();
    signal.addEventListener('abort', () => limitController.abort(signal.reason), { once: true });
    signal = limitController.signal;
  }
  const copyOpts = {
    pagesPerStep: f.pagesPerStep === undefined ? undefined : intFlag(f.pagesPerStep, '--pages-per-step', 1),
    sleepMs: f.sleepMs === undefined ? undefined : intFlag(f.sleepMs, '--sleep-ms', 0),
    retries: intFlag(f.retries ?? 10, '--retries', 1),
    timeoutMs: limit === undefined ? undefined : limit * 1000,
    deadline: limit === undefined ? undefined : Date.now() + limit * 1000,
    force: !!f.force,
    workDir: workDir(f, io),
    signal,
  };
  if (name === 'verify') return runVerify(target, f, io, say, signal, copyOpts.deadline);
  const toStdout = name === 'backup' && target === STDOUT;
  if (toStdout && io.stdoutStream.isTTY) {
    throw new BlufioError('E_USAGE', 'refusing to write a database to the terminal', 'redirect or pipe it: blufio backup - > backup.db');
  }
  if (toStdout && f.json) throw new BlufioError('E_USAGE', '--json cannot be used with "-": stdout carries the backup', 'drop --json');
  const mode = progressMode({ isTTY: io.stderrIsTTY }, io.env, !!f.quiet || !!f.json, !!f.progress);
  const label = name === 'backup' ? 'Backing up' : 'Restoring';
  const bar = mode === 'bar' ? new ProgressBar(io.stderr, label, () => io.stderrColumns?.() || Number(io.env.COLUMNS) || io.columns) : mode === 'lines' ? new ProgressLines(io.stderr, label) : null;
  const notice = (line: string) => {
    bar?.done();
    say(line);
  };
  try {
    // Loaded here, not at start-up: --help and --version never load SQLite.
    const cfg = await loadConfig(f, io, say, pathFlag(f.db, '--db'));
    const onProgress = bar ? (p: Progress) => bar.update(p) : undefined;
    if (name === 'backup' && f.ping !== undefined) {
      const url = pathFlag(f.ping, '--ping')!;
      if (!/^https?:\/\//i.test(url) || !URL.canParse(url)) throw new BlufioError('E_USAGE', `--ping needs an http(s) URL, not "${url}"`, 'e.g. --ping https://hc-ping.com/<uuid>');
      try {
        await runCommand(name, target, { ...f, ping: undefined }, io, signal);
      } catch (e) {
        // The reason goes in the body (healthchecks.io keeps it): what the log would have said.
        const why = e instanceof BlufioError ? `error: ${e.message}${e.hint ? ` (${e.hint})` : ''}` : `error: ${(e as Error)?.message ?? String(e)}`;
        await ping(`${url.replace(/\/+$/, '')}/fail`, say, why);
        throw e;
      }
      await ping(url, say);
      return;
    }
    const present = name === 'restore' && f.ifMissing ? (await import('./files.ts')).statOrNull(cfg.databasePath) : null;
    if (present?.isDirectory()) {
      // Docker makes a directory where a bind-mounted file is missing: not a database to keep.
      throw new BlufioError('E_NOT_FILE', `${cfg.databasePath} is a directory, not a database`, 'remove it (a bind mount of a missing file?) or point storage.database_path at a file');
    }
    // A 0-byte file holds no database (SQLite makes one on first open): restored over like a missing one.
    if (present && present.size > 0) {
      if (f.dryRun) say('Dry run: nothing was changed.');
      say(`${cfg.databasePath} exists: nothing restored (--if-missing)`);
      if (f.json) emit(io, 'restore', { ok: true, database: cfg.databasePath, restored: false, dryRun: !!f.dryRun, skipped: 'the database exists (--if-missing)' });
      return;
    }
    if (name === 'backup') {
      const { backup, backupToStream } = await import('./backup.ts');
      if (f.gzip && !toStdout) throw new BlufioError('E_USAGE', '--gzip is for "-" (stdout): a file\'s name says whether it is compressed', `name it ${target}.gz instead`);
      const { isSet } = await import('./sets.ts');
      const toSet = !toStdout && isSet(target);
      const { isS3Url } = await import('./s3.ts');
      const offsite = !toStdout && isS3Url(target);
      const setOnly = f.full ? '--full' : f.prune ? '--prune' : f.unencrypted && !offsite ? '--unencrypted' : null;
      if (setOnly && !toSet) throw new BlufioError('E_USAGE', `${setOnly} is for a backup set (a folder, or a path or s3:// prefix ending in /)${setOnly === '--unencrypted' ? ' or object storage' : ''}`, `back up to a set: blufio backup ${path.dirname(target)}/`);
      if (f.prune && !Object.values(cfg.backup.retention).some((n) => n && n > 0)) {
        throw new BlufioError('E_USAGE', '--prune needs a policy: [backup.retention] in blufio.toml has no keep_* rule', 'add e.g. keep_daily = 7 and keep_weekly = 4 under [backup.retention], or run blufio prune with --keep-* rules');
      }
      const recipients = await recipientsFor(toStdout || toSet ? null : target, f, cfg);
      // Off the machine means encrypted unless the operator says otherwise: backup() refuses
      // s3:// without recipients; blufio.toml's backup.unencrypted is the opt-out beside the flag.
      const unencrypted = !!f.unencrypted || (offsite && cfg.backup.unencrypted === true && recipients.length === 0);
      const opts = {
        ...copyOpts, verify: f.verify !== false, onProgress, gzip: !!f.gzip, recipients, s3: cfg.backup.s3, env: io.env,
        full: !!f.full, unencrypted, fullEveryMs: cfg.backup.fullEveryDays === undefined ? undefined : cfg.backup.fullEveryDays * 86_400_000,
      };
      const r = toStdout ? await backupToStream(cfg.databasePath, io.stdoutStream, opts) : await backup(cfg.databasePath, target, opts);
      bar?.done();
      const set = r as Partial<import('./sets.ts').SetBackupResult>;
      const how = set.kind === 'diff' ? ` (a differential: ${set.changedPages} of ${r.pages} pages changed since ${path.basename(set.base!)})` : set.kind === 'full' ? ` (a full backup${set.fullBecause ? `: ${set.fullBecause}` : ''})` : '';
      say(`Backup complete: ${formatMB(r.bytes)} written to ${toStdout ? 'stdout' : r.path}${how}`);
      if (set.warning && !f.json) io.stderr(`warning: ${set.warning}\n`);
      let pruned: unknown;
      if (f.prune) {
        const { prune } = await import('./sets.ts');
        try {
          const p = await prune(target, cfg.backup.retention, { s3: cfg.backup.s3, env: io.env, signal, identities: await identitiesFor(f, cfg) });
          pruned = { removed: p.removed.map((d) => d.name), kept: p.kept.length, ...(p.broken.length ? { broken: p.broken } : {}) };
          say(p.removed.length ? `Pruned ${p.removed.length} backup(s): ${p.removed.map((d) => d.name).join(', ')}` : 'Pruned nothing: every backup is kept by the policy');
          for (const b of p.broken) say(`  ${b.name} cannot be restored: ${b.problem}; ${b.removed ? 'removed' : 'kept for you to look at (blufio check)'}`);
        } catch (e) {
          // The backup was written: said as such, and the run still fails (exit 1, /fail), so
          // that a prune that keeps failing is seen before the set fills up.
          if (!(e instanceof BlufioError)) throw e;
          io.stderr(`error: the backup was written (${r.path}), but pruning failed: ${e.message}${e.hint ? ` (${e.hint})` : ''}\n`);
          if (f.json) emit(io, 'backup', { ok: true, ...r, prune: { ok: false, error: { code: e.code, message: e.message, hint: e.hint } } });
          throw new Silent(`the backup was written (${r.path}), but pruning failed: ${e.message}`);
        }
      }
      if (f.json) emit(io, 'backup', { ok: true, ...r, ...(pruned ? { pruned } : {}) });
    } else if (f.dryRun) {
      const { planRestore } = await import('./restore.ts');
      const { withDownloaded } = await import('./object-storage.ts');
      const { isSet, withSetBackup, withSetFile, stemOf } = await import('./sets.ts');
      const planOpts = { walMode: cfg.walMode, identities: await identitiesFor(f, cfg) };
      const remote = { ...copyOpts, ...planOpts, s3: cfg.backup.s3, env: io.env };
      const planOn = async (file: string, _e: unknown, where: string) => ({ ...planRestore(cfg.databasePath, file, planOpts), path: where });
      // A set's backup or a differential is rebuilt, an object downloaded, to be planned on:
      // what they hold is only known from their bytes.
      const { fromStat: _s, target: _t, layers: _l, ...plan } = isSet(target)
        ? await withSetBackup(target, { ...remote, at: await atFlag(f), stem: pathFlag(f.series, '--series') ?? stemOf(cfg.databasePath) }, planOn)
        : (await withSetFile(target, remote, planOn)) ?? (target.startsWith('s3://')
          ? { ...(await withDownloaded(target, remote, async (file) => planRestore(cfg.databasePath, file, planOpts))), path: target }
          : planRestore(cfg.databasePath, target, planOpts));
      const refused = plan.inUseBy !== null && plan.inUseBy.length > 0 && !f.force;
      const { database, ...rest } = plan;
      if (f.json) emit(io, 'restore', { ok: !refused, database, restored: false, dryRun: true, wouldBeRefused: refused, ...rest });
      say('Dry run: nothing was changed.');
      const size = plan.databaseBytes === null ? [plan.compressed && 'compressed', plan.encrypted && 'encrypted'].filter(Boolean).join(', ') : formatMB(plan.databaseBytes);
      say(`Would restore ${plan.path} (${size}) into ${plan.database} (${plan.journalMode === 'wal' ? 'WAL' : 'rollback-journal'} mode)`);
      if (plan.replaces) say(`The current database (${formatMB(plan.replaces.bytes)}: ${plan.replaces.files.join(', ')}) would be kept as ${plan.safetyCopy}`);
      else say(`There is no database there now: it would be created`);
      if (plan.earlierSafetyCopyMovesTo) say(`The earlier safety copy ${plan.safetyCopy} would be kept as ${plan.earlierSafetyCopyMovesTo}`);
      if (plan.inUseBy === null) say('Cannot tell here whether another process has the database open: stop the blufio server first');
      else if (plan.inUseBy.length > 0) say(`In use by process ${plan.inUseBy.join(', ')}: ${f.force ? 'with --force its later writes would go to the safety copy' : 'the restore would be refused (stop the blufio server first)'}`);
      // The plan reads the backup's header (and first chunk, if encrypted), not all of it.
      say(`The backup was not read in full: blufio verify ${target} checks all of it (the restore itself refuses a damaged one)`);
      if (refused) throw new Silent();
    } else {
      const { restore } = await import('./restore.ts');
      let r;
      try {
        r = await restore(cfg.databasePath, target, { ...copyOpts, walMode: cfg.walMode, onNotice: notice, onProgress, identities: await identitiesFor(f, cfg), s3: cfg.backup.s3, env: io.env, at: await atFlag(f), series: pathFlag(f.series, '--series') });
      } catch (e) {
        // A first deployment seeds from a set that has no backup yet: it starts empty (said even
        // with --quiet: a mistyped set would look the same).
        if (!f.ifMissing || !(await import('./sets.ts')).isEmptySet(e)) throw e;
        bar?.done();
        io.stderr(`${(e as Error).message}: nothing restored (--if-missing), the database starts empty\n`);
        if (f.json) emit(io, 'restore', { ok: true, database: cfg.databasePath, restored: false, dryRun: false, skipped: 'the set holds no backups yet (--if-missing)' });
        return;
      }
      bar?.done();
      say(`Restore complete: ${formatMB(r.bytes)} restored from ${r.path}`);
      const { database, ...rest } = r;
      if (f.json) emit(io, 'restore', { ok: true, database, restored: true, dryRun: false, ...rest });
    }
  } finally {
    bar?.done();
  }
}

/** `blufio verify`: a report for people (or JSON), exit 1 when the file is not sound. */
async function runVerify(target: string, f: CommonFlags, io: Io, say: (line: string) => void, signal: AbortSignal, deadline?: number): Promise<void> {
  const { inspect } = await import('./inspect.ts');
  const cfg = await loadConfig(f, io, say);
  const r = await inspect(target, { quick: !!f.quick, workDir: workDir(f, io), identities: await identitiesFor(f, cfg), s3: cfg.backup.s3, env: io.env, at: await atFlag(f), series: pathFlag(f.series, '--series'), signal, deadline });
  // A check is one synchronous call that a signal cannot cut short: an interruption that came
  // meanwhile is honoured now, before a verdict is printed.
  throwIfAborted(signal);
  if (f.json) emit(io, 'verify', r);
  if (r.ok) {
    const empty = r.tables.length === 0;
    say(`${r.path}: OK, ${empty ? 'sound, but an empty database (no tables)' : 'sound and ready to restore'}`);
    say(`  integrity     ok (${r.check})`);
    say(`  size          ${formatMB(r.bytes)}${r.compressed ? ' compressed' : ''}${r.encrypted ? ' encrypted' : ''}, ${r.pages} page${r.pages === 1 ? '' : 's'} of ${r.pageSize} bytes`);
    say(`  journal mode  ${r.journalMode === 'wal' ? 'WAL (needs its -wal file beside it)' : 'rollback journal (self-contained)'}`);
    say(`  written by    SQLite ${r.sqliteVersion}`);
    say(`  tables        ${r.tables.length ? r.tables.map((t) => `${t.name} ${t.virtual ? '(virtual)' : (t.rows ?? '?')}`).join(', ') : '(none)'}`);
    for (const w of r.warnings) if (!(empty && w.startsWith('empty database'))) say(`  note          ${w}`);
    return;
  }
  say(`${r.path}: FAILED, do not restore from this file`);
  for (const p of r.problems.slice(0, 5)) say(`  ${p}`);
  if (r.problems.length > 5) say(`  … and ${r.problems.length - 5} more`);
  throw new Silent();
}

/**
 * Tells a monitor how the run went (healthchecks.io's convention: GET the URL, or URL/fail).
 * A monitor that cannot be reached never fails the backup: a warning, within 10 s.
 */
async function ping(url: string, say: (line: string) => void, body?: string): Promise<void> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000), ...(body === undefined ? {} : { method: 'POST', body }) });
    await res.arrayBuffer().catch(() => {});
    if (!res.ok) say(`warning: the monitor at ${hostOf(url)} answered ${res.status}`);
  } catch (e) {
    // The host only: a monitor's URL often holds its secret.
    say(`warning: could not reach the monitor at ${hostOf(url)}: ${(e as Error).message}`);
  }
}

/** True when stdout is /dev/null (Node opens it there for a closed stdout). */
function stdoutIsDevNull(): boolean {
  try {
    const out = fs.fstatSync(1);
    const nul = fs.statSync('/dev/null');
    return out.isCharacterDevice() && out.rdev === nul.rdev;
  } catch {
    return false;
  }
}

const hostOf = (url: string) => (URL.canParse(url) ? new URL(url).host : 'the --ping URL');

/** blufio.toml and the environment (config.ts), its warnings said (loaded only when needed). */
async function loadConfig(f: CommonFlags, io: Io, say: (line: string) => void, db?: string): Promise<StorageConfig> {
  const { resolveConfig } = await import('./config.ts');
  const cfg = resolveConfig({ configFile: pathFlag(f.config, '--config'), db, env: io.env });
  // Printed even with --quiet: a key that is not read can mean another database is backed up.
  // With --json they go in the object instead (configWarnings).
  // Said once each per run (a backup with --ping reads the configuration again).
  for (const w of cfg.warnings) {
    if (configWarnings.has(w)) continue;
    configWarnings.add(w);
    if (!f.json) io.stderr(`warning: ${w}\n`);
  }
  return cfg;
}

/** --at, parsed (ISO 8601), or undefined. */
async function atFlag(f: CommonFlags): Promise<Date | undefined> {
  if (f.at === undefined) return undefined;
  if (typeof f.at !== 'string' || f.at.trim() === '') throw new BlufioError('E_USAGE', '--at needs a time', 'e.g. --at 2026-11-24T08:00Z');
  return (await import('./sets.ts')).parseAt(f.at);
}

/**
 * `blufio list <set>`: newest first, one line each, and which cannot be restored (and why); --json
 * for scripts. Each backup's first bytes are read (its header; a key opens an encrypted one).
 */
async function runList(target: string, f: CommonFlags, io: Io, say: (line: string) => void): Promise<void> {
  const { listMembers } = await import('./sets.ts');
  const cfg = await loadConfig(f, io, say);
  const entries = await listMembers(target, { s3: cfg.backup.s3, env: io.env, identities: await identitiesFor(f, cfg) });
  if (f.json) {
    emit(io, 'list', {
      ok: true,
      backups: entries.map((e) => ({
        name: e.name, time: e.time.toISOString(), kind: e.kind, bytes: e.bytes, ...(e.base ? { base: e.base } : {}),
        restorable: e.restorable, ...(e.problem ? { problem: e.problem } : {}), checked: e.checked, ...(e.future ? { future: true } : {}),
      })),
    });
    return;
  }
  if (entries.length === 0) say(`${target}: no backups`);
  // The listing is what the command is for: on stdout, for grep and files (notes stay on stderr).
  for (const e of entries) {
    const mark = !e.restorable ? `  UNRESTORABLE: ${e.problem}` : e.future ? '  (named in the future: a clock that jumped?)' : '';
    io.stdout(`${e.time.toISOString().replace('.000Z', 'Z')}  ${e.kind === 'full' ? 'full' : 'diff'}  ${formatMB(e.bytes).padStart(10)}  ${e.name}${e.base ? `  (base ${e.base})` : ''}${mark}\n`);
  }
  const broken = entries.filter((e) => !e.restorable).length;
  if (broken > 0) {
    const newest = entries.find((e) => e.restorable && !e.future);
    say(`warning: ${broken} backup(s) cannot be restored${newest ? `; the newest that can is ${newest.name}` : '; none can'} (blufio prune removes differentials whose base is gone; blufio check tells more)`);
  }
}

/** `blufio prune <set> --keep-…`: what goes and what stays (and why). */
async function runPrune(target: string, f: CommonFlags, io: Io, say: (line: string) => void, signal: AbortSignal): Promise<void> {
  const { prune } = await import('./sets.ts');
  const cfg = await loadConfig(f, io, say);
  const keep = (v: unknown, name: string) => (v === undefined ? undefined : intFlag(v, name, 0));
  const given = {
    last: keep(f.keepLast, '--keep-last'), hourly: keep(f.keepHourly, '--keep-hourly'), daily: keep(f.keepDaily, '--keep-daily'),
    weekly: keep(f.keepWeekly, '--keep-weekly'), monthly: keep(f.keepMonthly, '--keep-monthly'), yearly: keep(f.keepYearly, '--keep-yearly'),
  };
  // No --keep-* given: blufio.toml's [backup.retention], the policy `backup --prune` applies (so
  // that `prune --dry-run` previews exactly what the nightly run removes).
  const fromFlags = Object.values(given).some((n) => n !== undefined);
  const policy = fromFlags ? given : cfg.backup.retention;
  const r = await prune(target, policy, { dryRun: !!f.dryRun, s3: cfg.backup.s3, env: io.env, signal, identities: await identitiesFor(f, cfg) });
  if (f.json) emit(io, 'prune', { ok: true, policy: fromFlags ? 'flags' : 'backup.retention', ...r });
  if (!fromFlags) say(`Policy from [backup.retention]: ${Object.entries(policy).filter(([, n]) => n).map(([k, n]) => `keep_${k} = ${n}`).join(', ')}`);
  for (const d of r.removed) say(`${r.dryRun ? 'would remove' : 'removed'}  ${d.name}${d.problem ? ` — it can never be restored: ${d.problem}` : ''}`);
  for (const d of r.kept) say(`keep          ${d.name}  (${d.keptBecause.join(', ')})`);
  say(`${r.dryRun ? 'Dry run: would remove' : 'Removed'} ${r.removed.length} backup(s), kept ${r.kept.length}`);
}

/** `blufio check <set>`: every backup restorable? A report (or JSON); exit 1 when anything checked is not sound. */
async function runCheck(target: string, f: CommonFlags, io: Io, say: (line: string) => void, signal: AbortSignal): Promise<void> {
  if (f.readData && f.readDataSubset !== undefined) throw new BlufioError('E_USAGE', '--read-data and --read-data-subset were both given', 'give one: --read-data reads every backup');
  let pct = f.readData ? 100 : 0;
  if (f.readDataSubset !== undefined) {
    const m = /^(\d+(?:\.\d+)?)%?$/.exec(String(f.readDataSubset).trim());
    pct = m ? Number(m[1]) : NaN;
    if (!(pct > 0 && pct <= 100)) throw new BlufioError('E_USAGE', `--read-data-subset takes a share above 0 and at most 100%, not "${String(f.readDataSubset)}"`, 'e.g. --read-data-subset 10%');
  }
  const { checkSet } = await import('./set-check.ts');
  const cfg = await loadConfig(f, io, say);
  const r = await checkSet(target, { readDataPercent: pct, s3: cfg.backup.s3, env: io.env, identities: await identitiesFor(f, cfg), stem: pathFlag(f.series, '--series'), workDir: workDir(f, io), signal });
  if (f.json) emit(io, 'check', r);
  for (const p of r.problems) say(`PROBLEM  ${p.name}: ${p.problem}`);
  for (const n of r.notes) say(`note     ${n}`);
  say(`${r.set}: ${r.ok ? 'OK' : 'FAILED'}, ${r.backups} backup(s), ${r.headersRead} header(s) read, ${r.dataRead} rebuilt and integrity_checked${r.ok ? '' : `, ${r.problems.length} problem(s)`}`);
  if (!r.ok) throw new Silent(`${r.problems.length} problem(s) in ${r.set}: ${r.problems[0].name}: ${r.problems[0].problem}`);
}

/** `blufio keygen [file]`: a new age key; the private key to the file (0600, never over another) or stdout. */
async function runKeygen(target: string, f: CommonFlags, io: Io, say: (line: string) => void): Promise<void> {
  const { generateIdentity } = await import('./age.ts');
  const { publishText } = await import('./files.ts');
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

/**
 * Who an encrypted backup goes to: --recipient and --recipients-file, else blufio.toml's. A file
 * destination whose name does not end in .age gets none from blufio.toml: it is refused there,
 * naming the setting (backups are meant to be encrypted; a plain file would silently not be).
 */
async function recipientsFor(dest: string | null, f: CommonFlags, cfg: StorageConfig): Promise<string[]> {
  // Loaded here, not at start-up: most commands never need the age code.
  const { parseRecipientsFile } = await import('./age.ts');
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
  if (configured.length > 0 && dest !== null && !dest.toLowerCase().endsWith('.age')) {
    const from = cfg.backup.recipientsFrom?.startsWith('BLUFIO_') ? `the environment sets ${cfg.backup.recipientsFrom}` : `blufio.toml sets backup.age_recipients${cfg.backup.ageRecipientsFile ? '_file' : ''}`;
    throw new BlufioError('E_USAGE', `${from}, so backups are encrypted, but ${dest} does not end in .age`,
      `name it ${dest}.age${dest.toLowerCase().endsWith('.gz') ? '' : ` (or ${dest}.gz.age)`} to encrypt it`);
  }
  return configured;
}

/** The recipients in an age recipients file, each checked (a bad line is named with its number). */
function readRecipientsFile(file: string, parseRecipientsFile: typeof import('./age.ts').parseRecipientsFile): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new BlufioError('E_KEY', `cannot read the recipients file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`, 'check the path');
  }
  return parseRecipientsFile(text, file).map((r) => r.text);
}

/** The texts of the identity files to decrypt with: --identity, else blufio.toml / BLUFIO_AGE_IDENTITY_FILE. */
async function identitiesFor(f: CommonFlags, cfg: StorageConfig): Promise<string[]> {
  const { parseIdentityFile } = await import('./age.ts');
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

/** `~` and `~/…` as the shell would have expanded them (it does not after `--opt=`). */
function home(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/** A repeatable option: each value given, none empty. */
function listFlag(v: unknown, name: string): string[] {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return all.map((x) => {
    if (typeof x === 'boolean' || String(x).trim() === '') throw new BlufioError('E_USAGE', `${name} needs a value`, 'run blufio --help');
    return String(x);
  });
}

/**
 * The one JSON object a command prints with --json (docs/json-schema.json): `ok` and `command`
 * first, then the command's own fields, or `error` ({code, message, hint}) when it could not run.
 */
function emit<T extends { ok: boolean; command?: string }>(io: Io, command: string, fields: T): void {
  const { ok, command: _c, ...rest } = fields;
  const warned = configWarnings.size > 0 ? { configWarnings: [...configWarnings] } : {};
  io.stdout(`${JSON.stringify({ ok, command, ...rest, ...warned })}\n`);
}

/** What blufio.toml set that is not read (config.ts), for the JSON object of this run (main() empties it). */
const configWarnings = new Set<string>();

/** A failure already reported in full: exit 1, print nothing more (its message is for a --ping's /fail). */
class Silent extends Error {}

/** --work-dir, else BLUFIO_WORK_DIR, else none (each operation's default place). */
function workDir(f: CommonFlags, io: Io): string | undefined {
  return pathFlag(f.workDir, '--work-dir') ?? (io.env.BLUFIO_WORK_DIR || undefined);
}

/** A path option: absent, or one non-empty path (given twice or empty is a usage error, never ignored). */
function pathFlag(v: unknown, name: string): string | undefined {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  if (all.length === 0) return undefined;
  if (all.length > 1) throw new BlufioError('E_USAGE', `${name} was given ${all.length} times`, `give ${name} once`);
  v = all[0];
  if (typeof v === 'boolean' || String(v).trim() === '') {
    throw new BlufioError('E_USAGE', `${name} needs a path`, `give ${name} <path>, or leave it out to use blufio.toml`);
  }
  return home(String(v));
}

function intFlag(v: unknown, name: string, min: number): number {
  // Digits only: Number() would also take "0x10", "1e3" and " 7 ".
  const n = typeof v === 'string' ? (/^\d+$/.test(v) ? Number(v) : NaN) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min) {
    throw new BlufioError('E_USAGE', `${name} must be a whole number of at least ${min}, not "${String(v)}"`, `run blufio --help`);
  }
  return n;
}

function report(e: unknown, command: string, json: boolean, io: Io): number {
  if (e instanceof Silent) return 1;
  const usage = e instanceof BlufioError && e.code === 'E_USAGE';
  // A stream ended by Ctrl-C rejects with the runtime's AbortError: an interruption, not a bug.
  const aborted = (e as Error)?.name === 'AbortError';
  const err = e instanceof BlufioError
    ? e
    : denoDenied(e)
      ? new BlufioError('E_USAGE', `Deno did not grant a permission blufio needs: ${lowerFirst(String((e as Error).message).replace(/, run again with.*$/, ''))}`,
        'run it with deno run -A, or grant --allow-read --allow-write --allow-env --allow-sys --allow-net --allow-run')
    : aborted
      ? new BlufioError('E_ABORTED', 'interrupted; nothing was written')
      : usage
      ? new BlufioError('E_USAGE', lowerFirst((e as Error).message), 'run blufio --help')
      : null;
  if (!err) {
    io.stderr(`error: unexpected failure (a bug in blufio; please report it): ${(e as Error)?.stack ?? String(e)}\n`);
    if (json) {
      try {
        emit(io, command, { ok: false, error: { code: 'E_BUG', message: String((e as Error)?.message ?? e) } });
      } catch {
        // stdout failed too
      }
    }
    return 1;
  }
  io.stderr(`error: ${err.message}${err.hint ? ` (${err.hint})` : ''}\n`);
  if (debugging(io) && err.stack) io.stderr(`${err.stack}\n`);
  if (json) {
    try {
      emit(io, command, { ok: false, error: { code: err.code, message: err.message, hint: err.hint } });
    } catch {
      // stdout itself is what failed: the line on stderr above is all there is.
    }
  }
  // A setup that is wrong (usage, blufio.toml, a bad value) is 2: a monitor tells "it never
  // started" from "the backup failed" (1).
  if (err.code === 'E_USAGE' || err.code === 'E_CONFIG') return 2;
  if (err.code === 'E_ABORTED') return 130;
  return 1;
}

/** Deno refusing an operation it was not granted (NotCapable since Deno 2, PermissionDenied before). */
const denoDenied = (e: unknown) => ['NotCapable', 'PermissionDenied'].includes((e as Error)?.name) && typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';

/** BLUFIO_DEBUG=1, asked safely: under Deno without --allow-env the question itself throws. */
function debugging(io: Io): boolean {
  try {
    return io.env.BLUFIO_DEBUG === '1';
  } catch {
    return false;
  }
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
