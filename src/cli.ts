/**
 * The `blufio` command line: `blufio backup <path>` and `blufio restore <path>`.
 *
 * stdout carries only the --json result; everything for people goes to stderr. Exit codes:
 * 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C). An expected failure prints one
 * line, `error: <what happened> (<what to do>)`; anything else is a bug and prints its stack.
 */
import { cac, type CAC } from 'cac';
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

type CommandName = 'backup' | 'restore' | 'verify';
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
  common(cli.command('backup <path>', 'Back up the database to <path> (a consistent copy, even while blufio runs); .gz compresses, - writes to stdout'))
    .option('--no-verify', 'Skip the integrity check of the finished backup')
    .example('blufio backup /var/backups/blufio-$(date +%F).db')
    .example('blufio backup /var/backups/blufio-$(date +%F).db.gz')
    .example('blufio backup - | ssh backup-host "cat > blufio.db"')
    .action((p: string, f: CommonFlags) => run('backup', p, f));
  common(cli.command('restore <path>', 'Replace the database with the backup at <path> (keeps <db>.pre-restore); .gz is read as is'))
    .option('--dry-run', 'Check everything and say what would be replaced, kept and moved; change nothing')
    .example('blufio restore /var/backups/blufio-2026-11-24.db --dry-run')
    .example('blufio restore /var/backups/blufio-2026-11-24.db')
    .action((p: string, f: CommonFlags) => run('restore', p, f));
  cli.command('verify <path>', 'Check a backup (or any database file) and report what it holds; exit 0 if it is sound')
    .option('--quick', 'Run quick_check instead of the full integrity_check')
    .option('--json', 'Print one JSON object with the report on stdout')
    .option('--quiet', 'Print nothing; the exit code tells')
    .option('--work-dir <dir>', 'Where a .gz is decompressed to be checked (default: $TMPDIR; env BLUFIO_WORK_DIR)', { type: [String] })
    .example('blufio verify /var/backups/blufio-2026-11-24.db.gz')
    .action((p: string, f: CommonFlags) => run('verify', p, f));
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
  if (name === 'verify') return runVerify(target, f, io, say);

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
    retries: intFlag(f.retries, '--retries', 1),
    timeoutMs: limit === undefined ? undefined : limit * 1000,
    deadline: limit === undefined ? undefined : Date.now() + limit * 1000,
    force: !!f.force,
    workDir: workDir(f, io),
    signal,
  };
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
    if (name === 'backup') {
      const { backup, backupToStream } = await import('./backup.ts');
      const opts = { ...copyOpts, verify: f.verify !== false, onProgress };
      const r = toStdout ? await backupToStream(cfg.databasePath, io.stdoutStream, opts) : await backup(cfg.databasePath, target, opts);
      bar?.done();
      say(`Backup complete: ${formatMB(r.bytes)} written to ${toStdout ? 'stdout' : r.path}`);
      if (f.json) io.stdout(`${JSON.stringify({ ok: true, ...r })}\n`);
    } else if (f.dryRun) {
      const { planRestore } = await import('./restore.ts');
      const { fromStat: _s, target: _t, ...plan } = planRestore(cfg.databasePath, target, { walMode: cfg.walMode });
      const refused = plan.inUseBy !== null && plan.inUseBy.length > 0 && !f.force;
      if (f.json) io.stdout(`${JSON.stringify({ ok: true, dryRun: true, wouldBeRefused: refused, ...plan })}\n`);
      say('Dry run: nothing was changed.');
      const size = plan.databaseBytes === null ? 'compressed' : formatMB(plan.databaseBytes);
      say(`Would restore ${plan.path} (${size}) into ${plan.database} (${plan.journalMode === 'wal' ? 'WAL' : 'rollback-journal'} mode)`);
      if (plan.replaces) say(`The current database (${formatMB(plan.replaces.bytes)}: ${plan.replaces.files.join(', ')}) would be kept as ${plan.safetyCopy}`);
      else say(`There is no database there now: it would be created`);
      if (plan.earlierSafetyCopyMovesTo) say(`The earlier safety copy ${plan.safetyCopy} would be kept as ${plan.earlierSafetyCopyMovesTo}`);
      if (plan.inUseBy === null) say('Cannot tell here whether another process has the database open: stop the blufio server first');
      else if (plan.inUseBy.length > 0) say(`In use by process ${plan.inUseBy.join(', ')}: ${f.force ? 'with --force its later writes would go to the safety copy' : 'the restore would be refused (stop the blufio server first)'}`);
      if (refused) throw new Silent();
    } else {
      const { restore } = await import('./restore.ts');
      const r = await restore(cfg.databasePath, target, { ...copyOpts, walMode: cfg.walMode, onNotice: notice, onProgress });
      bar?.done();
      say(`Restore complete: ${formatMB(r.bytes)} restored from ${r.path}`);
      if (f.json) io.stdout(`${JSON.stringify({ ok: true, ...r })}\n`);
    }
  } finally {
    bar?.done();
  }
}

/** `blufio verify`: a report for people (or JSON), exit 1 when the file is not sound. */
async function runVerify(target: string, f: CommonFlags, io: Io, say: (line: string) => void): Promise<void> {
  const { inspect } = await import('./inspect.ts');
  const r = await inspect(target, { quick: !!f.quick, workDir: workDir(f, io) });
  if (f.json) io.stdout(`${JSON.stringify(r)}\n`);
  if (r.ok) {
    say(`${r.path}: OK, sound and ready to restore`);
    say(`  integrity     ok (${r.check})`);
    say(`  size          ${formatMB(r.bytes)}${r.compressed ? ' compressed' : ''}, ${r.pages} pages of ${r.pageSize} bytes`);
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
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
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
