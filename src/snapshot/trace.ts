/**
 * Diagnostic trace (BLUFIO_TRACE=1): the attempts' begins, looks and finishing rounds, kept in
 * memory; the torture script writes it beside an inconsistent backup (that is how the last flaw
 * of the proof was found). Costs nothing when off.
 */
export const tracing = typeof process !== 'undefined' && process.env.BLUFIO_TRACE === '1';

export function trace(event: string): void {
  if (tracing) ((globalThis as { __blufioTrace?: string[] }).__blufioTrace ??= []).push(`${performance.now().toFixed(2)} ${event}`);
}
