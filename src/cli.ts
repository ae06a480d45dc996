/**
 * The `blufio` command line: `blufio backup <path>` and `blufio restore <path>`.
 *
 * stdout carries only the --json result; everything for people goes to stderr. Exit codes:
 * 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C). An expected failure prints one
 * line, `error: <what happened> (<what to do>)`; anything else is a bug and prints its stack.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cac, type CAC } from 'cac';
import type { StorageConfig } from './config.ts';
import { throwIfAborted } from './core/backup-loop.ts';
import { BlufioError, timeLimitError } from './errors.ts';
import { formatMB, ProgressBar, wantsBar, type Progress } from './progress.ts';

declare const __BLUFIO_VERSION__: string | undefined;
export const VERSION = typeof __BLUFIO_VERSION__ === 'string' ? __BLUFIO_VERSION__ : '0.0.0-dev';

export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  /** Where `blufio backup -` streams the backup. */
  stdoutStream: NodeJS.WritableStream & { isTTY?: boolean };
  stderrIsTTY: boolean;
}

const defaultIo: Io = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  stdoutStream: process.stdout,
  stderrIsTTY: !!process.stderr.isTTY,
};

type CommandName = 'backup' | 'restore' | 'verify' | 'keygen' | 'list' | 'prune';
const STDOUT = '\0stdout';
/** Timers hold at most 2^31 - 1 ms. */
const MAX_TIMEOUT_S = 2_073_600;
/** An empty argument, carried through mri (which turns "" into 0) as a name no path can have. */
const EMPTY = '\u0000(empty)';

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
  prune?: boolean;
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  ping?: string;
  ifMissing?: boolean;
  series?: string[];
}

function build(run: (name: CommandName, target: string, flags: CommonFlags) => Promise<void>): CAC {
  const cli = cac('blufio');
  const common = (c: ReturnType<CAC['command']>) =>
    c
      .option('--db <path>', 'Database path (overrides storage.database_path)', { type: [String] })
      .option('--config <file>', 'Read this blufio.toml instead of the usual ones', { type: [String] })
      .option('--force', 'Replace an existing file / restore while the database is in use (its user\'s later writes then go to <db>.pre-restore)')
      .option('--quiet', 'Print nothing but errors')
      .option('--json', 'Print one JSON object with the result on stdout')
      .option('--pages-per-step <n>', 'Pages copied per step of the backup API (default: 100, or 1000 with no pause)')
      .option('--sleep-ms <n>', 'Pause between steps in ms (default: 10 while another process has the database open, else 0)')
      .option('--retries <n>', 'Most attempts when a live database keeps changing', { default: 10 })
      .option('--timeout <seconds>', 'Give up on the whole job after this long, leaving nothing behind (default: no limit; retries stop after 60 s)')
      .option('--work-dir <dir>', 'Where a whole uncompressed copy is staged for .gz and - (default: beside the file, or $TMPDIR for -; env BLUFIO_WORK_DIR)', { type: [String] });
  const identity = (c: ReturnType<CAC['command']>) =>
    c.option('--identity <file>', 'Decrypt an .age backup with this age key file (repeatable; default: backup.age_identity_file, env BLUFIO_AGE_IDENTITY_FILE)', { type: [String] });
  common(cli.command('backup <path>', 'Back up the database to <path>, s3://BUCKET/KEY, or a set (a folder or prefix ending in /: timestamped, differential); .gz compresses, .age encrypts, - writes to stdout'))
    .option('--no-verify', 'Skip the integrity check of the finished backup')
    .option('--recipient <age1…>', 'Encrypt an .age backup to this age public key (repeatable; default: backup.age_recipients)', { type: [String] })
    .option('--recipients-file <file>', 'Encrypt an .age backup to the keys in this file, one per line (repeatable; default: backup.age_recipients_file)', { type: [String] })
    .option('--gzip', 'Compress what "-" writes to stdout (a file\'s name says it: .gz)')
    .option('--full', 'In a set (a folder or s3:// prefix ending in /): a full backup, not a differential')
    .option('--prune', 'In a set: afterwards remove what [backup.retention] in blufio.toml does not keep')
    .option('--ping <url>', 'Tell a monitor (healthchecks.io-style): GET <url> on success, <url>/fail on failure', { type: [String] })
    .example('blufio backup /var/backups/blufio-$(date +%F).db')
    .example('blufio backup /var/backups/blufio-$(date +%F).db.gz')
    .example('blufio backup /mnt/offsite/blufio-$(date +%F).db.gz.age --recipient age1…')
    .example('blufio backup s3://my-bucket/blufio/blufio-$(date +%F).db.gz')
    .example('blufio backup /var/backups/blufio/ --prune   # a set: timestamped, differential')
    .example('blufio backup - | ssh backup-host "cat > blufio.db"')
    .action((p: string, f: CommonFlags) => run('backup', p, f));
  identity(common(cli.command('restore <path>', 'Replace the database with the backup at <path>, s3://BUCKET/KEY, or the newest in a set (--at: as of a time); keeps <db>.pre-restore')))
    .option('--dry-run', 'Check everything and say what would be replaced, kept and moved; change nothing')
    .option('--at <time>', 'From a set: the newest backup at or before this time (ISO 8601, UTC unless a zone is given)')
    .option('--if-missing', 'Restore only when the database does not exist yet (a fresh container seeding itself); exit 0 either way')
    .option('--series <name>', 'From a set: whose backups (default: the database\'s own file name without .db)', { type: [String] })
    .example('blufio restore /var/backups/blufio-2026-11-24.db --dry-run')
    .example('blufio restore /var/backups/blufio-2026-11-24.db')
    .action((p: string, f: CommonFlags) => run('restore', p, f));
  identity(cli.command('verify <path>', 'Check a backup (or any database file) and report what it holds; exit 0 if it is sound'))
    .option('--config <file>', 'Read this blufio.toml instead of the usual ones', { type: [String] })
    .option('--quick', 'Run quick_check instead of the full integrity_check')
    .option('--at <time>', 'From a set: the newest backup at or before this time (ISO 8601)')
    .option('--series <name>', 'From a set holding several databases\' backups: whose', { type: [String] })
    .option('--json', 'Print one JSON object with the report on stdout')
    .option('--quiet', 'Print nothing; the exit code tells')
    .option('--timeout <seconds>', 'Give up after this long (a download, decrypting, the check)')
    .option('--work-dir <dir>', 'Where a .gz is decompressed to be checked (default: $TMPDIR; env BLUFIO_WORK_DIR)', { type: [String] })
    .example('blufio verify /var/backups/blufio-2026-11-24.db.gz')
    .action((p: string, f: CommonFlags) => run('verify', p, f));
  cli.command('list <set>', 'List the backups of a set (a folder or an s3:// prefix), newest first')
    .option('--json', 'Print one JSON object with the backups on stdout')
    .option('--config <file>', 'Read this blufio.toml instead of the usual ones', { type: [String] })
    .example('blufio list /var/backups/blufio/')
    .action((p: string, f: CommonFlags) => run('list', p, f));
  cli.command('prune <set>', 'Remove the backups of a set that no --keep-* rule keeps (restic\'s forget, in UTC)')
    .option('--keep-last <n>', 'Keep the n newest')
    .option('--keep-hourly <n>', 'Keep the newest of each of the n most recent hours that have one')
    .option('--keep-daily <n>', 'Same, days')
    .option('--keep-weekly <n>', 'Same, ISO weeks')
    .option('--keep-monthly <n>', 'Same, months')
    .option('--keep-yearly <n>', 'Same, years')
    .option('--dry-run', 'Say what would be removed; remove nothing')
    .option('--json', 'Print one JSON object with what was kept (and why) and removed')
    .option('--quiet', 'Print nothing but errors')
    .option('--config <file>', 'Read this blufio.toml instead of the usual ones', { type: [String] })
    .example('blufio prune /var/backups/blufio/ --keep-daily 7 --keep-weekly 4 --keep-monthly 12')
    .action((p: string, f: CommonFlags) => run('prune', p, f));
  cli.command('keygen [file]', 'Make an age key for encrypted backups: writes the private key to [file] (or stdout), prints its public key')
    .option('--json', 'Print one JSON object with the result on stdout')
    .option('--quiet', 'Print nothing but errors')
    .example('blufio keygen ~/blufio-backup-key.txt')
    .action((p: string | undefined, f: CommonFlags) => run('keygen', p ?? STDOUT, f));
  cli.help();
  cli.version(VERSION);
  return cli;
}

/** Runs the CLI on `argv` (without node and script) and resolves to the exit code. */
export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  let json = false;
  let command = 'blufio';
  const controller = new AbortController();
  const onSigint = () => controller.abort(new Error('interrupted'));
  try {
    let job: Promise<void> | undefined;
    const cli = build((name, target, flags) => {
      json = !!flags.json;
      command = name;
      job = runCommand(name, target, flags, io, controller.signal);
      return job;
    });
    // mri, under cac, drops a lone "-" and turns "" into 0: carry both through as names no path
    // can have.
    const carried = argv.map((a) => (a === '-' ? STDOUT : a === '' ? EMPTY : /^--[\w-]+=$/.test(a) ? a + EMPTY : a));
    const parsed = cli.parse(['node', 'blufio', ...carried], { run: false });
    if (parsed.options.help || parsed.options.version) return 0;
    if (!cli.matchedCommand) {
      const what = cli.args.length ? `unknown command "${cli.args[0]}"` : 'no command given';
      throw new BlufioError('E_USAGE', what, 'run blufio --help to see the commands');
    }
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    await cli.runMatchedCommand();
    await job;
    return 0;
  } catch (e) {
    return report(e, command, json, io);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

async function runCommand(name: CommandName, target: string, f: CommonFlags, io: Io, signal: AbortSignal): Promise<void> {
  const limitController = new AbortController();
  if (typeof target !== 'string' || target === '' || target === EMPTY) {
    throw new BlufioError('E_USAGE', `blufio ${name} needs a path`, `run blufio ${name} --help`);
  }
  const say = (line: string) => {
    if (!f.quiet && !f.json) io.stderr(`${line}\n`);
  };
  if (name === 'keygen') return runKeygen(target, f, io, say);
  if (name === 'list') return runList(target, f, io, say);
  if (name === 'prune') return runPrune(target, f, io, say, signal);

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
  if (target === STDOUT && name !== 'backup') {
    throw new BlufioError('E_USAGE', `blufio ${name} reads a file, not "-"`, 'give the path of the file');
  }
  if (toStdout && io.stdoutStream.isTTY) {
    throw new BlufioError('E_USAGE', 'refusing to write a database to the terminal', 'redirect or pipe it: blufio backup - > backup.db');
  }
  if (toStdout && f.json) throw new BlufioError('E_USAGE', '--json cannot be used with "-": stdout carries the backup', 'drop --json');
  const bar = wantsBar({ isTTY: io.stderrIsTTY }, io.env, !!f.quiet || !!f.json)
    ? new ProgressBar(io.stderr, name === 'backup' ? 'Backing up' : 'Restoring')
    : null;
  const notice = (line: string) => {
    bar?.done();
    say(line);
  };
  try {
    // Loaded here, not at start-up: --help and --version never load SQLite.
    const { resolveConfig } = await import('./config.ts');
    const cfg = resolveConfig({ configFile: pathFlag(f.config, '--config'), db: pathFlag(f.db, '--db'), env: io.env });
    const onProgress = bar ? (p: Progress) => bar.update(p) : undefined;
    if (name === 'backup' && f.ping !== undefined) {
      const url = pathFlag(f.ping, '--ping')!;
      if (!/^https?:\/\//i.test(url)) throw new BlufioError('E_USAGE', `--ping needs an http(s) URL, not "${url}"`, 'e.g. --ping https://hc-ping.com/<uuid>');
      try {
        await runCommand(name, target, { ...f, ping: undefined }, io, signal);
      } catch (e) {
        await ping(`${url.replace(/\/+$/, '')}/fail`, say);
        throw e;
      }
      await ping(url, say);
      return;
    }
    if (name === 'restore' && f.ifMissing && fs.existsSync(cfg.databasePath)) {
      if (f.dryRun) say('Dry run: nothing was changed.');
      say(`${cfg.databasePath} exists: nothing restored (--if-missing)`);
      if (f.json) io.stdout(`${JSON.stringify({ ok: true, command: 'restore', database: cfg.databasePath, restored: false })}\n`);
      return;
    }
    if (name === 'backup') {
      const { backup, backupToStream } = await import('./backup.ts');
      if (f.gzip && !toStdout) throw new BlufioError('E_USAGE', '--gzip is for "-" (stdout): a file\'s name says whether it is compressed', `name it ${target}.gz instead`);
      const { isSet } = await import('./sets.ts');
      const toSet = !toStdout && isSet(target);
      if ((f.full || f.prune) && !toSet) throw new BlufioError('E_USAGE', `${f.full ? '--full' : '--prune'} is for a backup set (a folder, or a path or s3:// prefix ending in /)`, `back up to a set: blufio backup ${path.dirname(target)}/`);
      if (f.prune && !Object.values(cfg.backup.retention).some((n) => n && n > 0)) {
        throw new BlufioError('E_USAGE', '--prune needs a policy: [backup.retention] in blufio.toml has no keep_* rule', 'add e.g. keep_daily = 7 and keep_weekly = 4 under [backup.retention], or run blufio prune with --keep-* rules');
      }
      const opts = {
        ...copyOpts, verify: f.verify !== false, onProgress, gzip: !!f.gzip, recipients: await recipientsFor(toStdout || toSet ? null : target, f, cfg), s3: cfg.backup.s3, env: io.env,
        full: !!f.full, fullEveryMs: cfg.backup.fullEveryDays === undefined ? undefined : cfg.backup.fullEveryDays * 86_400_000,
      };
      const r = toStdout ? await backupToStream(cfg.databasePath, io.stdoutStream, opts) : await backup(cfg.databasePath, target, opts);
      bar?.done();
      const set = r as Partial<import('./sets.ts').SetBackupResult>;
      const how = set.kind === 'diff' ? ` (a differential: ${set.changedPages} of ${r.pages} pages changed since ${path.basename(set.base!)})` : set.kind === 'full' ? ` (a full backup${set.fullBecause ? `: ${set.fullBecause}` : ''})` : '';
      say(`Backup complete: ${formatMB(r.bytes)} written to ${toStdout ? 'stdout' : r.path}${how}`);
      let pruned: unknown;
      if (f.prune) {
        const { prune } = await import('./sets.ts');
        const p = await prune(target, cfg.backup.retention, { s3: cfg.backup.s3, env: io.env, signal });
        pruned = { removed: p.removed.map((d) => d.name), kept: p.kept.length };
        say(p.removed.length ? `Pruned ${p.removed.length} backup(s): ${p.removed.map((d) => d.name).join(', ')}` : 'Pruned nothing: every backup is kept by the policy');
      }
      if (f.json) io.stdout(`${JSON.stringify({ ok: true, ...r, ...(pruned ? { pruned } : {}) })}\n`);
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
      if (f.json) io.stdout(`${JSON.stringify({ ok: true, dryRun: true, wouldBeRefused: refused, ...plan })}\n`);
      say('Dry run: nothing was changed.');
      const size = plan.databaseBytes === null ? [plan.compressed && 'compressed', plan.encrypted && 'encrypted'].filter(Boolean).join(', ') : formatMB(plan.databaseBytes);
      say(`Would restore ${plan.path} (${size}) into ${plan.database} (${plan.journalMode === 'wal' ? 'WAL' : 'rollback-journal'} mode)`);
      if (plan.replaces) say(`The current database (${formatMB(plan.replaces.bytes)}: ${plan.replaces.files.join(', ')}) would be kept as ${plan.safetyCopy}`);
      else say(`There is no database there now: it would be created`);
      if (plan.earlierSafetyCopyMovesTo) say(`The earlier safety copy ${plan.safetyCopy} would be kept as ${plan.earlierSafetyCopyMovesTo}`);
      if (plan.inUseBy === null) say('Cannot tell here whether another process has the database open: stop the blufio server first');
      else if (plan.inUseBy.length > 0) say(`In use by process ${plan.inUseBy.join(', ')}: ${f.force ? 'with --force its later writes would go to the safety copy' : 'the restore would be refused (stop the blufio server first)'}`);
      if (refused) throw new Silent();
    } else {
      const { restore } = await import('./restore.ts');
      const r = await restore(cfg.databasePath, target, { ...copyOpts, walMode: cfg.walMode, onNotice: notice, onProgress, identities: await identitiesFor(f, cfg), s3: cfg.backup.s3, env: io.env, at: await atFlag(f), series: pathFlag(f.series, '--series') });
      bar?.done();
      say(`Restore complete: ${formatMB(r.bytes)} restored from ${r.path}`);
      if (f.json) io.stdout(`${JSON.stringify({ ok: true, ...r })}\n`);
    }
  } finally {
    bar?.done();
  }
}

/** `blufio verify`: a report for people (or JSON), exit 1 when the file is not sound. */
async function runVerify(target: string, f: CommonFlags, io: Io, say: (line: string) => void, signal: AbortSignal, deadline?: number): Promise<void> {
  const { inspect } = await import('./inspect.ts');
  const { resolveConfig } = await import('./config.ts');
  const cfg = resolveConfig({ configFile: pathFlag(f.config, '--config'), env: io.env });
  const r = await inspect(target, { quick: !!f.quick, workDir: workDir(f, io), identities: await identitiesFor(f, cfg), s3: cfg.backup.s3, env: io.env, at: await atFlag(f), series: pathFlag(f.series, '--series'), signal, deadline });
  // A check is one synchronous call that a signal cannot cut short: an interruption that came
  // meanwhile is honoured now, before a verdict is printed.
  throwIfAborted(signal);
  if (f.json) io.stdout(`${JSON.stringify(r)}\n`);
  if (r.ok) {
    say(`${r.path}: OK, sound and ready to restore`);
    say(`  integrity     ok (${r.check})`);
    say(`  size          ${formatMB(r.bytes)}${r.compressed ? ' compressed' : ''}${r.encrypted ? ' encrypted' : ''}, ${r.pages} pages of ${r.pageSize} bytes`);
    say(`  journal mode  ${r.journalMode === 'wal' ? 'WAL (needs its -wal file beside it)' : 'rollback journal (self-contained)'}`);
    say(`  written by    SQLite ${r.sqliteVersion}`);
    say(`  tables        ${r.tables.length ? r.tables.map((t) => `${t.name} ${t.rows ?? '?'}`).join(', ') : '(none)'}`);
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
async function ping(url: string, say: (line: string) => void): Promise<void> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer().catch(() => {});
    if (!res.ok) say(`Warning: the monitor at ${new URL(url).host} answered ${res.status}`);
  } catch (e) {
    // The host only: a monitor's URL often holds its secret.
    say(`Warning: could not reach the monitor at ${new URL(url).host}: ${(e as Error).message}`);
  }
}

/** --at, parsed (ISO 8601), or undefined. */
async function atFlag(f: CommonFlags): Promise<Date | undefined> {
  if (f.at === undefined) return undefined;
  if (typeof f.at !== 'string' || f.at === EMPTY) throw new BlufioError('E_USAGE', '--at needs a time', 'e.g. --at 2026-11-24T08:00Z');
  return (await import('./sets.ts')).parseAt(f.at);
}

/** `blufio list <set>`: newest first, one line each; --json for scripts. */
async function runList(target: string, f: CommonFlags, io: Io, say: (line: string) => void): Promise<void> {
  const { listSet } = await import('./sets.ts');
  const { resolveConfig } = await import('./config.ts');
  const cfg = resolveConfig({ configFile: pathFlag(f.config, '--config'), env: io.env });
  const entries = await listSet(target === STDOUT ? '-' : target, { s3: cfg.backup.s3, env: io.env });
  if (f.json) {
    io.stdout(`${JSON.stringify({ ok: true, command: 'list', backups: entries.map((e) => ({ name: e.name, time: e.time.toISOString(), kind: e.kind, bytes: e.bytes, ...(e.base ? { base: e.base } : {}) })) })}\n`);
    return;
  }
  if (entries.length === 0) say(`${target}: no backups`);
  for (const e of entries) {
    say(`${e.time.toISOString().replace('.000Z', 'Z')}  ${e.kind === 'full' ? 'full' : 'diff'}  ${formatMB(e.bytes).padStart(10)}  ${e.name}${e.base ? `  (base ${e.base})` : ''}`);
  }
}

/** `blufio prune <set> --keep-…`: what goes and what stays (and why). */
async function runPrune(target: string, f: CommonFlags, io: Io, say: (line: string) => void, signal: AbortSignal): Promise<void> {
  const { prune } = await import('./sets.ts');
  const { resolveConfig } = await import('./config.ts');
  const cfg = resolveConfig({ configFile: pathFlag(f.config, '--config'), env: io.env });
  const keep = (v: unknown, name: string) => (v === undefined ? undefined : intFlag(v, name, 0));
  const policy = {
    last: keep(f.keepLast, '--keep-last'), hourly: keep(f.keepHourly, '--keep-hourly'), daily: keep(f.keepDaily, '--keep-daily'),
    weekly: keep(f.keepWeekly, '--keep-weekly'), monthly: keep(f.keepMonthly, '--keep-monthly'), yearly: keep(f.keepYearly, '--keep-yearly'),
  };
  const r = await prune(target, policy, { dryRun: !!f.dryRun, s3: cfg.backup.s3, env: io.env, signal });
  if (f.json) io.stdout(`${JSON.stringify({ ok: true, ...r })}\n`);
  for (const d of r.removed) say(`${r.dryRun ? 'would remove' : 'removed'}  ${d.name}`);
  for (const d of r.kept) say(`keep          ${d.name}  (${d.keptBecause.join(', ')})`);
  say(`${r.dryRun ? 'Dry run: would remove' : 'Removed'} ${r.removed.length} backup(s), kept ${r.kept.length}`);
}

/** `blufio keygen [file]`: a new age key; the private key to the file (0600, never over another) or stdout. */
async function runKeygen(target: string, f: CommonFlags, io: Io, say: (line: string) => void): Promise<void> {
  const { generateIdentity } = await import('./age.ts');
  const { publishText } = await import('./files.ts');
  const key = generateIdentity();
  if (target === STDOUT) {
    if (f.json) throw new BlufioError('E_USAGE', '--json needs a file for the key: stdout would carry both', 'give the key file: blufio keygen <file> --json');
    io.stdout(key.file);
  } else {
    publishText(target, key.file, 0o600, 'key file');
  }
  if (f.json) io.stdout(`${JSON.stringify({ ok: true, command: 'keygen', path: path.resolve(target), recipient: key.recipient })}\n`);
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
  const fromFlags = [...listFlag(f.recipient, '--recipient'), ...listFlag(f.recipientsFile, '--recipients-file').flatMap((file) => recipientsInFile(file))];
  if (fromFlags.length > 0 || f.recipient !== undefined || f.recipientsFile !== undefined) {
    if (fromFlags.length === 0) throw new BlufioError('E_KEY', 'the recipients files given hold no recipient', 'add age1… lines to them');
    return fromFlags;
  }
  const configured = [...cfg.backup.ageRecipients, ...(cfg.backup.ageRecipientsFile ? recipientsInFile(cfg.backup.ageRecipientsFile) : [])];
  if (configured.length > 0 && dest !== null && !dest.toLowerCase().endsWith('.age')) {
    throw new BlufioError('E_USAGE', `blufio.toml sets backup.age_recipients${cfg.backup.ageRecipientsFile ? '_file' : ''}, so backups are encrypted, but ${dest} does not end in .age`,
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
  const files = listFlag(f.identity, '--identity');
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

/** A repeatable option: each value given, none empty. */
function listFlag(v: unknown, name: string): string[] {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return all.map((x) => {
    if (typeof x === 'boolean' || String(x).trim() === '' || x === EMPTY) throw new BlufioError('E_USAGE', `${name} needs a value`, 'run blufio --help');
    return String(x);
  });
}

/** A failure already reported in full: exit 1, print nothing more. */
class Silent extends Error {}

/** --work-dir, else BLUFIO_WORK_DIR, else none (each operation's default place). */
function workDir(f: CommonFlags, io: Io): string | undefined {
  return pathFlag(f.workDir, '--work-dir') ?? (io.env.BLUFIO_WORK_DIR || undefined);
}

/** A path option: absent, or one non-empty path (given twice or empty is a usage error, never ignored). */
function pathFlag(v: unknown, name: string): string | undefined {
  // Declared with type [String]: cac then keeps the text as typed ("" and "0" stay strings) in a list.
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  if (all.length === 0) return undefined;
  if (all.length > 1) throw new BlufioError('E_USAGE', `${name} was given ${all.length} times`, `give ${name} once`);
  v = all[0];
  if (typeof v === 'boolean' || String(v).trim() === '' || v === EMPTY) {
    throw new BlufioError('E_USAGE', `${name} needs a path`, `give ${name} <path>, or leave it out to use blufio.toml`);
  }
  return String(v);
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
  const usage = (e as Error)?.name === 'CACError' || (e instanceof BlufioError && e.code === 'E_USAGE');
  // A stream ended by Ctrl-C rejects with the runtime's AbortError: an interruption, not a bug.
  const aborted = (e as Error)?.name === 'AbortError';
  const err = e instanceof BlufioError
    ? e
    : aborted
      ? new BlufioError('E_ABORTED', 'interrupted; nothing was written')
      : usage
      ? new BlufioError('E_USAGE', lowerFirst((e as Error).message), 'run blufio --help')
      : null;
  if (!err) {
    io.stderr(`error: unexpected failure (a bug in blufio; please report it): ${(e as Error)?.stack ?? String(e)}\n`);
    if (json) io.stdout(`${JSON.stringify({ ok: false, command, error: { code: 'E_BUG', message: String((e as Error)?.message ?? e) } })}\n`);
    return 1;
  }
  io.stderr(`error: ${err.message}${err.hint ? ` (${err.hint})` : ''}\n`);
  if (io.env.BLUFIO_DEBUG === '1' && err.stack) io.stderr(`${err.stack}\n`);
  if (json) io.stdout(`${JSON.stringify({ ok: false, command, error: { code: err.code, message: err.message, hint: err.hint } })}\n`);
  if (err.code === 'E_USAGE') return 2;
  if (err.code === 'E_ABORTED') return 130;
  return 1;
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
