/** Progress events for long work, shared by Node and browsers. */
export interface Progress {
  /**
   * 'copy' while pages are copied; 'verify' while the copy is checked; 'upload' / 'download'
   * while a backup goes to or comes from object storage (then pageSize is 1: pages are bytes;
   * an upload counts the database's bytes read into the compressing/encrypting stream).
   */
  phase: 'copy' | 'verify' | 'upload' | 'download';
  totalPages: number;
  remainingPages: number;
  /** 1 for the first try; higher when a live source changed and the copy started over. */
  attempt: number;
  pageSize: number;
}

export type ProgressCallback = (p: Progress) => void;
