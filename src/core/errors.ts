/**
 * Shared by Node and browsers (no node: imports). Every failure the tool expects has a stable `code`, a one-line `message` that says what went
 * wrong, and a `hint` that says what to do next. Anything that is not a BlufioError is a bug.
 */
export type ErrorCode =
  | 'E_USAGE'
  | 'E_CONFIG'
  | 'E_SOURCE_MISSING'
  | 'E_NOT_FILE'
  | 'E_NOT_SQLITE'
  | 'E_CORRUPT'
  | 'E_PERMISSION'
  | 'E_DEST_EXISTS'
  | 'E_DEST_DIR'
  | 'E_SAME_FILE'
  | 'E_IN_USE'
  | 'E_INTEGRITY'
  | 'E_TOO_BUSY'
  | 'E_NEEDS_RECOVERY'
  | 'E_ABORTED'
  | 'E_TIMEOUT'
  | 'E_IO'
  /** This machine's clock is off the store's, or the set holds times in the future: exit 2, never started. */
  | 'E_CLOCK'
  /** An encryption key: missing, malformed, or not one the file was encrypted to. */
  | 'E_KEY'
  /** Not thrown: what --json reports for an unexpected failure (a bug). */
  | 'E_BUG';

export class BlufioError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlufioError';
    this.code = code;
    this.hint = hint;
  }
}

