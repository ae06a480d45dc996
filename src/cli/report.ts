/**
 * How a failure ends the run: one line on stderr, `error: <what happened> (<what to do>)`, the
 * --json object's `error`, and the exit code (1 failure, 2 usage or setup, 3 in use by another
 * process, 130 interrupted); a
 * failure that is not a BlufioError is a bug and prints its stack.
 */
import { BlufioError } from '../errors.ts';
import { emit, Silent, type Io } from './io.ts';

/** Reports `e`, thrown by the command `command`, and returns the exit code. */
export function report(e: unknown, command: string, json: boolean, io: Io): number {
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
  if (err.code === 'E_USAGE' || err.code === 'E_CONFIG' || err.code === 'E_CLOCK') return 2;
  if (err.code === 'E_ABORTED') return 130;
  // Another process holds what it needs (a live database, a restore running, the set's
  // replicator): 3, so that a supervisor can leave it down (RestartPreventExitStatus=3) instead
  // of trying again every few seconds.
  if (err.code === 'E_IN_USE') return 3;
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
