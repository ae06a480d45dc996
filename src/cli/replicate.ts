/**
 * `blufio replicate <set>`: runs in the foreground (a systemd service) until SIGTERM or SIGINT,
 * shipping every commit to the set within the interval; on the signal, what was committed is
 * shipped and it exits 0. One line per event on stderr (--json: JSON lines); the status file in
 * the state directory tells the lag and what was sent without parsing logs.
 */
import * as fs from 'node:fs';
import { BlufioError } from '../errors.ts';
import { loadConfig } from './config.ts';
import { pathFlag, type CommonFlags } from './flags.ts';
import type { Io, Say } from './io.ts';
import { jobOptions } from './job.ts';
import { recipientsFor } from './keys.ts';
import { ping } from './backup.ts';

export async function runReplicate(target: string, f: CommonFlags & { interval?: string; newBaseEvery?: string; maxBacklog?: string; lagWarn?: string; takeOver?: boolean }, io: Io, say: Say, signal: AbortSignal): Promise<void> {
  const copyOpts = jobOptions(f, io, signal);
  const cfg = await loadConfig(f, io, say, pathFlag(f.db, '--db'));
  const { locate } = await import('../storage/index.ts');
  const dest = locate(target);
  if (dest.kind !== 'set') {
    const remote = dest.kind === 'file' && dest.remote !== null;
    const what = dest.kind === 'stdout' ? 'is standard output' : remote ? 'names an object, not a prefix' : fs.existsSync(target) ? 'is a file' : 'does not exist';
    throw new BlufioError('E_USAGE', `blufio replicate ships to a set: ${target} ${what}`, remote || fs.existsSync(target) ? `give a folder or a prefix ending in /: blufio replicate ${target}/` : `give a folder (mkdir -p ${target} first) or a prefix ending in /`);
  }
  // Plain decimals only (Number() took "0x10" and "1e-9").
  const decimal = (v: string) => (/^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : NaN);
  const seconds = f.interval === undefined ? cfg.replicate?.interval ?? 1 : decimal(f.interval);
  if (!(seconds >= 0.05 && seconds <= 3600)) throw new BlufioError('E_USAGE', `--interval must be a number of seconds from 0.05 to 3600, not "${f.interval}"`, 'e.g. --interval 1, the default');
  const everyHours = f.newBaseEvery === undefined ? 6 : decimal(f.newBaseEvery);
  if (!(everyHours >= 0.0001 && everyHours <= 24 * 366)) throw new BlufioError('E_USAGE', `--new-base-every must be a number of hours from 0.0001 to 8784, not "${f.newBaseEvery}"`, 'e.g. --new-base-every 6, the default');
  const backlogMb = f.maxBacklog === undefined ? cfg.replicate?.maxBacklogMb ?? 1024 : decimal(f.maxBacklog);
  if (!(backlogMb >= 1 && backlogMb <= 2 ** 30)) throw new BlufioError('E_USAGE', `--max-backlog must be a number of MiB, at least 1, not "${f.maxBacklog}"`, 'e.g. --max-backlog 1024, the default');
  const lagWarn = f.lagWarn === undefined ? cfg.replicate?.lagWarn ?? 10 : decimal(f.lagWarn);
  if (!(lagWarn >= 1 && lagWarn <= 86400)) throw new BlufioError('E_USAGE', `--lag-warn must be a number of seconds from 1 to 86400, not "${f.lagWarn}"`, 'e.g. --lag-warn 10, the default');
  const recipients = await recipientsFor(null, f, cfg);
  const offsite = dest.remote !== null;
  const unencrypted = !!f.unencrypted || (offsite && cfg.backup.unencrypted === true && recipients.length === 0);
  const url = f.ping === undefined ? null : pathFlag(f.ping, '--ping')!;
  if (url !== null && (!/^https?:\/\//i.test(url) || !URL.canParse(url))) throw new BlufioError('E_USAGE', `--ping needs an http(s) URL, not "${url}"`, 'e.g. --ping https://hc-ping.com/<uuid>');
  let lastPing = 0;
  let failedSaid = false;
  const onInterval = (ok: boolean, why?: string) => {
    if (url === null) return;
    const now = Date.now();
    if (ok && now - lastPing < 60_000 && !failedSaid) return;
    if (!ok && failedSaid) return;
    lastPing = now;
    failedSaid = !ok;
    void ping(ok ? url : `${url.replace(/\/+$/, '')}/fail`, () => {}, ok ? undefined : `error: ${why}`);
  };
  // A writer that closes its last connection after each commit leaves no WAL to follow: every
  // step is then a gap closed from the file. Said once, then at most once a minute with a count.
  let gapSaid = 0;
  let gapsSince = 0;
  const line = (e: Record<string, unknown> & { event: string }) => {
    if (e.event === 'gap' && !f.json) {
      gapsSince++;
      if (gapSaid && Date.now() - gapSaid < 60_000) return;
      if (gapSaid) e = { ...e, why: `${e.why}; ${gapsSince} gap(s) in the last minute` };
      gapSaid = Date.now();
      gapsSince = 0;
    }
    if (f.json) {
      io.stderr(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
      return;
    }
    if (f.quiet && e.event !== 'retry' && e.event !== 'lag' && e.event !== 'gap' && e.event !== 'backlog') return;
    io.stderr(`${describe(e)}\n`);
  };
  const { replicate } = await import('../replicate/replicator.ts');
  // A process that runs for months: SQLite's WebAssembly on V8's baseline compiler whatever the
  // database's size (src/bin.ts; the first load's hint counts). Optimised code sped up only the
  // copy of a new base, and kept more memory for the process's life (a 1 GiB database, its base
  // to S3 beside 100 tx/s: peak RSS 137 -> 126 MiB, 2026-12-07).
  await (await import('../sqlite.ts')).loadSqlite(0);
  // A second SIGTERM or Ctrl-C: stop now, without waiting for the segment on its way.
  const hurry = new AbortController();
  let signals = 0;
  const again = () => {
    if (++signals >= 2) hurry.abort();
  };
  process.on('SIGTERM', again);
  process.on('SIGINT', again);
  try {
    await replicate(cfg.databasePath, target, {
      ...copyOpts, signal, hurry: hurry.signal, recipients, unencrypted, s3: cfg.backup.s3, env: io.env, intervalMs: Math.round(seconds * 1000), newBaseEveryMs: Math.round(everyHours * 3_600_000), maxBacklogBytes: Math.round(backlogMb * 2 ** 20), lagWarnMs: Math.round(lagWarn * 1000), takeOver: f.takeOver === true, onEvent: line, onInterval,
    });
  } finally {
    process.off('SIGTERM', again);
    process.off('SIGINT', again);
  }
}

function describe(e: Record<string, unknown> & { event: string }): string {
  switch (e.event) {
    case 'started':
      return `Replicating ${e.database} to ${e.set} (${e.resumed ? 'resuming the chain of' : 'a new chain on'} ${e.base}; replicator ${e.replicator}, lease ${e.lease})`;
    case 'lease':
      return `The set's lease ${e.lease} taken from replicator ${e.from ?? '(unreadable)'}: ${e.why}`;
    case 'shipped':
      return `Shipped ${e.segment} (${e.steps} step(s), ${e.pages} page(s), ${e.bytes} bytes, ${e.lagMs} ms after the first commit in it)`;
    case 'gap':
      return `warning: commits were not seen one by one before ${e.segment} (${e.why}): closed from the database file; a time inside the gap restores to the newest state seen by then (at least the state before the gap)`;
    case 'retry':
      return `warning: shipping failed (${e.error}); ${e.backlogSteps} step(s) kept here, trying again in ${Math.round(Number(e.nextInMs) / 1000)} s${e.hint ? `\n  ${e.hint}` : ''}`;
    case 'new-base':
      return `A new chain on ${e.base} (restores need its base and a few segments)`;
    case 'compacted':
      return `Compacted ${e.merged} segments into ${e.segment} (${e.bytes} bytes)`;
    case 'caught-up':
      return `Caught up after ${Math.round(Number(e.afterMs) / 1000)} s`;
    case 'backlog':
      return `warning: the set could not be reached: the ${e.folded} step(s) kept here (${(Number(e.bytes) / 2 ** 20).toFixed(1)} MiB after folding) were folded into one state at the --max-backlog bound; times from ${e.from} to ${e.to} will restore to the state before them`;
    case 'lag':
      return e.why ? `warning: ${e.why}\n  ${e.hint}` : `warning: the oldest commit not shipped was seen ${Math.round(Number(e.lagMs) / 1000)} s ago`;
    case 'clock':
      return e.right === null
        ? `warning: this machine's clock stepped ${Math.round(Math.abs(Number(e.steppedMs)) / 1000)} s ${Number(e.steppedMs) > 0 ? 'ahead' : 'back'}: nothing more is shipped until the store's clock says it is right`
        : `The clock's step of ${Math.round(Math.abs(Number(e.steppedMs)) / 1000)} s is right by the store's clock: shipping on`;
    case 'copy':
      return (e.removed as string[]).length === 0
        ? `warning: another run of this replicator's id (run ${e.run ?? 'unknown'}) shipped this set: a copy of this state directory runs elsewhere. This one holds on (it is the original); the copy stands down at its next look, and its chains are taken out of the set`
        : `Took the copy's chains out of the set (run ${e.run ?? 'unknown'}): ${(e.removed as string[]).length} object(s), ${(e.removed as string[]).slice(0, 3).join(', ')}${(e.removed as string[]).length > 3 ? ', …' : ''}`;
    case 'stopped':
      return `Stopped: ${e.segments} segment(s) in the chain; the last commit shipped was seen at ${e.lastCommit ?? '(none this run)'}`;
    default:
      return JSON.stringify(e);
  }
}
