/**
 * The CLI's input and output: the Io it writes through (stdout, stderr, the environment), stdout
 * written synchronously (ReaderGone when its reader went away), SIGXFSZ ignored, the one --json
 * object (emit(), with blufio.toml's warnings) and Silent (a failure already reported).
 */
import * as fs from 'node:fs';
import { BlufioError } from '../errors.ts';

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

/** A line for people on stderr (nothing with --quiet or --json). */
export type Say = (line: string) => void;

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
export function ignoreSigxfsz(): void {
  if (sigxfszIgnored) return;
  sigxfszIgnored = true;
  process.on('SIGXFSZ', () => {});
}

/** stdout's reader closed it (EPIPE): an error, except after a listing (main()). */
export class ReaderGone extends BlufioError {}

export const defaultIo: Io = {
  stdout: (s) => writeStdout(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  stdoutStream: process.stdout,
  stderrIsTTY: !!process.stderr.isTTY,
  columns: process.stdout.columns,
  stderrColumns: () => process.stderr.columns,
};

/** True when stdout is /dev/null (Node opens it there for a closed stdout). */
export function stdoutIsDevNull(): boolean {
  try {
    const out = fs.fstatSync(1);
    const nul = fs.statSync('/dev/null');
    return out.isCharacterDevice() && out.rdev === nul.rdev;
  } catch {
    return false;
  }
}

/**
 * The one JSON object a command prints with --json (docs/json-schema.json): `ok` and `command`
 * first, then the command's own fields, or `error` ({code, message, hint}) when it could not run.
 */
export function emit<T extends { ok: boolean; command?: string }>(io: Io, command: string, fields: T): void {
  const { ok, command: _c, ...rest } = fields;
  const warned = configWarnings.size > 0 ? { configWarnings: [...configWarnings] } : {};
  io.stdout(`${JSON.stringify({ ok, command, ...rest, ...warned })}\n`);
}

/** What blufio.toml set that is not read (config.ts), for the JSON object of this run (main() empties it). */
export const configWarnings = new Set<string>();

/** A failure already reported in full: exit 1, print nothing more (its message is for a --ping's /fail). */
export class Silent extends Error {}
