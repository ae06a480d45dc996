/** Progress events for long work, shared by Node and browsers. */
export interface Progress {
  /** 'copy' while pages are copied; 'verify' while the copy is checked. */
  phase: 'copy' | 'verify';
  totalPages: number;
  remainingPages: number;
  /** 1 for the first try; higher when a live source changed and the copy started over. */
  attempt: number;
  pageSize: number;
}

export type ProgressCallback = (p: Progress) => void;
