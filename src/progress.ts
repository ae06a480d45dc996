/** Progress events for long work, as the library reports them. */
export interface Progress {
  /** 'copy' while pages are copied; 'verify' while the copy is checked. */
  phase: 'copy' | 'verify';
  totalPages: number;
  remainingPages: number;
  /** 1 for the first try; higher when a live source changed and the copy started over. */
  attempt: number;
}

export type ProgressCallback = (p: Progress) => void;

/** Formats bytes as blufio prints them: MB = 2^20 bytes, one decimal. */
export function formatMB(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}
