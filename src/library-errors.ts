/**
 * Errors as the library's users read them. The messages and hints are written for the command
 * line ("add --force if you are sure"); a program that called backup() needs the option it can
 * pass instead ("force: true"). The library entry (index.ts) passes every BlufioError through
 * forLibrary(); the command line never does.
 */
import { BlufioError } from './errors.ts';

/** Command-line words -> the library's, most specific first. */
const WORDS: Array<[RegExp, string]> = [
  [/run blufio(?: [a-z]+)? --help(?: for the others| to see [^)]*)?/g, 'see the options in the types (dist/types)'],
  [/add --force/g, 'pass force: true'],
  [/--force/g, 'force: true'],
  [/--identity(?: <key file>)?/g, 'identities: [key file text]'],
  [/--recipients-file(?: <file>)?/g, 'recipients'],
  [/--recipient(?: age1…)?/g, 'recipients: ["age1…"]'],
  [/--work-dir(?: <directory>| <dir>)?/g, 'workDir'],
  [/--timeout/g, 'timeoutMs'],
  [/--db(?: <path>)?/g, 'the database path argument'],
  [/--no-verify/g, 'verify: false'],
  [/--dry-run/g, 'planRestore()'],
  [/--if-missing/g, 'a check that the database exists'],
  [/--sleep-ms/g, 'sleepMs'],
  [/--pages-per-step/g, 'pagesPerStep'],
  [/--retries/g, 'retries'],
  [/--series/g, 'series'],
  [/--at\b/g, 'at'],
  [/--gzip/g, 'gzip: true'],
  [/--full/g, 'full: true'],
  [/--unencrypted/g, 'unencrypted: true'],
];

const translate = (s: string | undefined) => (s === undefined ? s : WORDS.reduce((t, [re, word]) => t.replace(re, word), s));

/** The same error in the library's words (other kinds of errors pass unchanged). */
export function libraryError(e: unknown): unknown {
  if (!(e instanceof BlufioError)) return e;
  const message = translate(e.message)!;
  const hint = translate(e.hint);
  if (message === e.message && hint === e.hint) return e;
  const out = new BlufioError(e.code, message, hint, { cause: e });
  // Whatever else the error carries (an integrity error's problems, say) comes along.
  for (const [k, v] of Object.entries(e)) if (!['code', 'hint', 'message'].includes(k)) (out as unknown as Record<string, unknown>)[k] = v;
  return out;
}

/** `fn` with its BlufioErrors in the library's words. */
export function forLibrary<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return (...args: A): R => {
    try {
      const r = fn(...args);
      return (r instanceof Promise ? r.catch((e) => Promise.reject(libraryError(e))) : r) as R;
    } catch (e) {
      throw libraryError(e);
    }
  };
}
