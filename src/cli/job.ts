/**
 * What backup, restore and verify share: --timeout wired into the job's abort signal and deadline,
 * the copy options (--pages-per-step, --sleep-ms, --retries, --force, --work-dir), and the
 * progress shown on stderr (a bar, plain lines or none).
 */
import { BlufioError, timeLimitError } from '../errors.ts';
import { ProgressBar, ProgressLines, progressMode } from '../progress.ts';
import { intFlag, workDir, type CommonFlags } from './flags.ts';
import type { Io } from './io.ts';

/** Timers hold at most 2^31 - 1 ms. */
const MAX_TIMEOUT_S = 2_073_600;

/** The options every copy takes, from the flags. */
export interface CopyOptions {
  pagesPerStep: number | undefined;
  sleepMs: number | undefined;
  retries: number;
  timeoutMs: number | undefined;
  deadline: number | undefined;
  force: boolean;
  workDir: string | undefined;
  signal: AbortSignal;
}

/**
 * The job's copy options; their signal is `signal` (Ctrl-C, SIGTERM), bounded by --timeout when
 * given. A bad value is a usage error, before anything is read.
 */
export function jobOptions(f: CommonFlags, io: Io, signal: AbortSignal): CopyOptions {
  const limitController = new AbortController();
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
  return {
    pagesPerStep: f.pagesPerStep === undefined ? undefined : intFlag(f.pagesPerStep, '--pages-per-step', 1),
    sleepMs: f.sleepMs === undefined ? undefined : intFlag(f.sleepMs, '--sleep-ms', 0),
    retries: intFlag(f.retries ?? 10, '--retries', 1),
    timeoutMs: limit === undefined ? undefined : limit * 1000,
    deadline: limit === undefined ? undefined : Date.now() + limit * 1000,
    force: !!f.force,
    workDir: workDir(f, io),
    signal,
  };
}

/** The progress of a copy on stderr: a bar on a terminal, a line every 5 s with --progress, else none. */
export function progressView(label: string, f: CommonFlags, io: Io): ProgressBar | ProgressLines | null {
  const mode = progressMode({ isTTY: io.stderrIsTTY }, io.env, !!f.quiet || !!f.json, !!f.progress);
  return mode === 'bar' ? new ProgressBar(io.stderr, label, () => io.stderrColumns?.() || Number(io.env.COLUMNS) || io.columns) : mode === 'lines' ? new ProgressLines(io.stderr, label) : null;
}
