/**
 * The `blufio` command line: `blufio backup <path>` and `blufio restore <path>`.
 *
 * stdout carries only the --json result; everything for people goes to stderr. Exit codes:
 * 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C). An expected failure prints one
 * line, `error: <what happened> (<what to do>)`; anything else is a bug and prints its stack.
 *
 * This file parses the command line, handles the signals and dispatches to one file per command;
 * each loads what its job needs when it runs (--help and --version never load SQLite).
 */
import { helpText, parseArgs } from '../args.ts';
import { BlufioError } from '../errors.ts';
import { runBackup } from './backup.ts';
import { runReplicate } from './replicate.ts';
import { runCheck } from './check.ts';
import { COMMANDS, type CommandName } from './commands.ts';
import { STDOUT, type CommonFlags } from './flags.ts';
import { configWarnings, defaultIo, ignoreSigxfsz, ReaderGone, type Io, type Say } from './io.ts';
import { runKeygen } from './keygen.ts';
import { runList } from './list.ts';
import { runPrune } from './prune.ts';
import { report } from './report.ts';
import { runRestore } from './restore.ts';
import { runVerify } from './verify.ts';

export type { Io } from './io.ts';

declare const __BLUFIO_VERSION__: string | undefined;
export const VERSION = typeof __BLUFIO_VERSION__ === 'string' ? __BLUFIO_VERSION__ : '0.0.0-dev';

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

/** One command, on its argument ("-" is STDOUT): the checks every command shares, then its file's run. */
async function runCommand(name: CommandName, target: string, f: CommonFlags, io: Io, signal: AbortSignal): Promise<void> {
  if (target.trim() === '' || /[\n\r]/.test(target)) {
    throw new BlufioError('E_USAGE', `blufio ${name} needs a path`, `run blufio ${name} --help`);
  }
  const say: Say = (line) => {
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
  // The jobs: each bounds itself by --timeout and takes the copy options (job.ts).
  if (name === 'verify') return runVerify(target, f, io, say, signal);
  if (name === 'backup') return runBackup(target, f, io, say, signal);
  if (name === 'replicate') return runReplicate(target, f, io, say, signal);
  return runRestore(target, f, io, say, signal);
}
