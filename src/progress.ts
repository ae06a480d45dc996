/** What the CLI shows of progress events: a bar on a terminal, or plain lines for logs. */
import { BlufioError } from './core/errors.ts';
import type { Progress } from './core/progress.ts';

export type { Progress, ProgressCallback } from './core/progress.ts';

/** Formats bytes as blufio prints them: MB = 2^20 bytes, one decimal. */
export function formatMB(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

/**
 * How to show progress: a bar for a person at a terminal; plain lines every few seconds when
 * asked for (--progress, or BLUFIO_PROGRESS=lines: logs of a cron job or a systemd unit); nothing
 * with --quiet/--json, on a dumb terminal, or with BLUFIO_PROGRESS=none. NO_COLOR does not turn it
 * off: it asks for no colour, and the bar has none.
 */
export function progressMode(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv, quiet: boolean, asked = false): 'bar' | 'lines' | null {
  const setting = env.BLUFIO_PROGRESS?.trim().toLowerCase();
  if (setting && !['bar', 'lines', 'none'].includes(setting)) {
    throw new BlufioError('E_USAGE', `BLUFIO_PROGRESS is "${env.BLUFIO_PROGRESS}"`, 'set it to bar, lines or none, or unset it');
  }
  if (quiet || setting === 'none') return null;
  if (setting === 'lines') return 'lines';
  if (asked) return stream.isTTY && env.TERM !== 'dumb' ? 'bar' : 'lines';
  if (!stream.isTTY || env.TERM === 'dumb') return null;
  return 'bar';
}

/** What each phase is called on screen (the copy's own label is the command's: "Backing up"). */
const PHASES: Record<Progress['phase'], string | null> = {
  copy: null, verify: 'Verifying integrity', compress: 'Compressing', encrypt: 'Encrypting', stream: 'Writing to stdout', upload: 'Uploading', download: 'Downloading',
};

const REDRAW_MS = 100;
const BAR = 24;

/** Numbers of one progress event: done and total bytes, rate and time left since the phase began. */
function figures(p: Progress, since: number, now: number) {
  const total = Math.max(1, p.totalPages);
  const done = total - p.remainingPages;
  const frac = Math.min(1, done / total);
  const secs = (now - since) / 1000;
  const rate = secs > 0 ? (done * p.pageSize) / secs : 0;
  return { frac, doneBytes: done * p.pageSize, totalBytes: total * p.pageSize, rate, left: rate > 0 ? (p.remainingPages * p.pageSize) / rate : 0 };
}

abstract class ProgressView {
  protected started = performance.now();
  protected attempt = 1;
  protected phase: Progress['phase'] = 'copy';

  constructor(protected readonly label: string) {}

  /** Takes in an event; true when it begins a new phase or attempt (the clock starts again). */
  protected turn(p: Progress, now: number): boolean {
    const fresh = p.attempt !== this.attempt || p.phase !== this.phase;
    if (fresh) {
      this.attempt = p.attempt;
      this.phase = p.phase;
      this.started = now;
    }
    return fresh;
  }

  protected name(p: Progress): string {
    return PHASES[p.phase] ?? this.label;
  }

  abstract update(p: Progress): void;
  abstract done(): void;
}

/**
 * A one-line bar redrawn in place (carriage return, erase to end of line) at most every 100 ms:
 * what is being done, percent, MB of total, MB/s, time left, and the attempt when retrying. It
 * fits the terminal's width as it is at each redraw (a resize is followed), dropping fields as it
 * narrows rather than wrapping.
 */
export class ProgressBar extends ProgressView {
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly write: (s: string) => void,
    label: string,
    private readonly columns: () => number | undefined = () => undefined,
  ) {
    super(label);
  }

  update(p: Progress): void {
    const now = performance.now();
    const fresh = this.turn(p, now);
    const last = p.phase !== 'verify' && p.remainingPages === 0;
    if (this.drawn && !last && !fresh && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.drawn = true;
    // A terminal that does not say its width (0, as under script(1)) is taken as 80 columns.
    const cols = this.columns();
    this.write(`\r${this.line(p, now, (cols && cols > 0 ? cols : 80) - 1)}\x1b[K`);
  }

  /** Erases the bar so the next line starts clean. */
  done(): void {
    if (this.drawn) this.write('\r\x1b[K');
    this.drawn = false;
  }

  private line(p: Progress, now: number, width: number): string {
    const name = this.name(p);
    const retry = this.attempt > 1 ? `(attempt ${this.attempt})` : '';
    if (p.phase === 'verify') return fit([`${name}…`, retry], width);
    const f = figures(p, this.started, now);
    const pct = `${String(Math.floor(f.frac * 100)).padStart(3)}%`;
    const sizes = `${(f.doneBytes / 1048576).toFixed(1)}/${formatMB(f.totalBytes)}`;
    const rate = `${(f.rate / 1048576).toFixed(1)} MB/s`;
    const left = `${clock(f.left)} left`;
    // Widest first; each next form leaves out what matters least.
    for (const bar of [BAR, 16, 10]) {
      const drawn = `[${'#'.repeat(Math.round(f.frac * bar))}${'-'.repeat(bar - Math.round(f.frac * bar))}]`;
      for (const parts of [[`${name} ${drawn} ${pct}`, sizes, rate, left, retry], [`${name} ${drawn} ${pct}`, sizes, left, retry], [`${name} ${drawn} ${pct}`, left, retry]]) {
        const s = join(parts);
        if (s.length <= width) return s;
      }
    }
    return fit([`${name} ${pct}`, left, retry], width);
  }
}

/**
 * Plain progress lines for logs, at most one every 5 s and one when each phase begins:
 * "Backing up: 45% (45.0/100.0 MB), 120.3 MB/s, 0:03 left".
 */
export class ProgressLines extends ProgressView {
  private lastLine = -Infinity;

  constructor(
    private readonly write: (s: string) => void,
    label: string,
    private readonly everyMs = 5000,
  ) {
    super(label);
  }

  update(p: Progress): void {
    const now = performance.now();
    const fresh = this.turn(p, now);
    // The check reports only its start and its end: said once.
    if (p.phase === 'verify' && !fresh) return;
    if (!fresh && now - this.lastLine < this.everyMs) return;
    this.lastLine = now;
    const retry = this.attempt > 1 ? ` (attempt ${this.attempt})` : '';
    if (p.phase === 'verify') {
      this.write(`${this.name(p)}…${retry}\n`);
      return;
    }
    const f = figures(p, this.started, now);
    const speed = f.rate > 0 ? `, ${(f.rate / 1048576).toFixed(1)} MB/s, ${clock(f.left)} left` : '';
    this.write(`${this.name(p)}: ${Math.floor(f.frac * 100)}% (${(f.doneBytes / 1048576).toFixed(1)}/${formatMB(f.totalBytes)})${speed}${retry}\n`);
  }

  done(): void {}
}

const join = (parts: string[]) => parts.filter(Boolean).join('  ');

/** The parts joined, cut to `width` (never wrapped). */
function fit(parts: string[], width: number): string {
  const s = join(parts);
  return s.length <= width ? s : `${s.slice(0, Math.max(0, width - 1))}…`;
}

function clock(s: number): string {
  const t = Math.ceil(s);
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, '0')}`;
}
