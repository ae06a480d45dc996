/**
 * What the VFS needs of an open file. Two kinds implement it: DiskFile (a real file, for the
 * destination and for verification) and SnapshotFile (a read-only, consistent view of a live
 * source database, see ../snapshot.ts).
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
