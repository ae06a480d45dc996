/** The bar the CLI draws from progress events on a terminal. */
import type { Progress } from './core/progress.ts';

export type { Progress, ProgressCallback } from './core/progress.ts';

/** Formats bytes as blufio prints them: MB = 2^20 bytes, one decimal. */
export function formatMB(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

/** Should the CLI draw a bar? Only for a person at a terminal who did not ask for plain output. */
export function wantsBar(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv, quiet: boolean): boolean {
  if (quiet || !stream.isTTY) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return env.TERM !== 'dumb';
}

const REDRAW_MS = 100;
const WIDTH = 24;

/**
 * A one-line progress bar redrawn in place (carriage return, erase to end of line) at most every
 * 100 ms: percent of pages, MB copied of total, MB/s, time left, and the attempt when retrying.
 */
export class ProgressBar {
  private lastDraw = 0;
  private started = performance.now();
  private attempt = 1;
  private phase: Progress['phase'] = 'copy';
  private drawn = false;

  constructor(
    private readonly write: (s: string) => void,
    private readonly label: string,
  ) {}

  update(p: Progress): void {
    const now = performance.now();
    const newAttempt = p.attempt !== this.attempt || p.phase !== this.phase;
    this.phase = p.phase;
    if (newAttempt) {
      this.attempt = p.attempt;
      this.started = now;
    }
    const last = p.phase !== 'verify' && p.remainingPages === 0;
    if (this.drawn && !last && !newAttempt && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.drawn = true;
    this.write(`\r${this.line(p, now)}\x1b[K`);
  }

  /** Erases the bar so the next line starts clean. */
  done(): void {
    if (this.drawn) this.write('\r\x1b[K');
    this.drawn = false;
  }

  private line(p: Progress, now: number): string {
    if (p.phase === 'verify') return `${this.label}: verifying integrity…${this.attempt > 1 ? ` (attempt ${this.attempt})` : ''}`;
    const total = Math.max(1, p.totalPages);
    const done = total - p.remainingPages;
    const frac = Math.min(1, done / total);
    const filled = Math.round(frac * WIDTH);
    const ps = p.pageSize;
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? (done * ps) / secs : 0;
    const left = rate > 0 ? (p.remainingPages * ps) / rate : 0;
    const label = p.phase === 'upload' ? 'Uploading' : p.phase === 'download' ? 'Downloading' : this.label;
    return `${label} [${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}%  `
      + `${(done * ps / 1048576).toFixed(1)}/${formatMB(total * ps)}  ${(rate / 1048576).toFixed(1)} MB/s  ${clock(left)} left`
      + (this.attempt > 1 ? `  (attempt ${this.attempt})` : '');
  }
}

function clock(s: number): string {
  const t = Math.ceil(s);
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, '0')}`;
}
