/**
 * What the VFS needs of an open file. Two kinds implement it: DiskFile (a real file, for the
 * destination and for verification) and the snapshot of a live source (read-only, consistent:
 * ../snapshot/snapshot.ts, which serves its current attempt's view, ../snapshot/view.ts).
 */
export interface VfsFile {
  readonly readOnly: boolean;
  /** Fills `dst` from byte `offset`; returns how many bytes the file really had there. */
  read(dst: Uint8Array, offset: number): number;
  write(src: Uint8Array, offset: number): void;
  truncate(size: number): void;
  sync(): void;
  size(): number;
  close(): void;
}

/** A file SQLite may only read: writes are refused; closing it is its owner's business. */
export abstract class ReadOnlyFile implements VfsFile {
  readonly readOnly = true;
  abstract read(dst: Uint8Array, offset: number): number;
  abstract size(): number;

  write(): void {
    throw new Error('the source database is read-only');
  }

  truncate(): void {
    throw new Error('the source database is read-only');
  }

  sync(): void {}

  close(): void {
    // SQLite closing it does not end it: its owner releases it.
  }
}
