/** Progress events for long work, shared by Node and browsers. */
export interface Progress {
  /**
   * 'copy' while pages are copied; 'verify' while the copy is checked; 'compress' / 'encrypt'
   * while a finished copy is packed into a .gz / .age file, 'stream' while it is written to
   * stdout as it is; 'upload' / 'download' while a backup
   * goes to or comes from object storage. In all but copy and verify, pageSize is 1: the "pages"
   * are bytes (of the database read into the packing streams, for compress, encrypt and upload).
   */
  phase: 'copy' | 'verify' | 'compress' | 'encrypt' | 'stream' | 'upload' | 'download';
  totalPages: number;
  remainingPages: number;
  /** 1 for the first try; higher when a live source changed and the copy started over. */
  attempt: number;
  pageSize: number;
}

export type ProgressCallback = (p: Progress) => void;
