/** The native sqlite3 program, the independent oracle of the tests and the benchmark scripts. */
import { execFileSync } from 'node:child_process';

/** Runs SQL with the native sqlite3 program; returns its stdout trimmed. */
export function sql(db: string, script: string): string {
  return execFileSync('sqlite3', ['-batch', db], { input: script, encoding: 'utf8', maxBuffer: 1 << 28 }).trim();
}
