/**
 * What the VFS needs of an open file. Two kinds implement it: DiskFile (a real file, for the
 * destination and for verification) and the snapshot of a live source (read-only, consistent:
 * ../snapshot/snapshot.ts, which serves its current attempt's view, ../snapshot/view.ts).
 *
 * Reads and writes name a range of a byte array instead of taking a view of it: SQLite's pages
 * live in the WebAssembly heap, and a view per call (a check makes ~200,000 reads of a 200 MiB
 * database) is garbage that JavaScriptCore collected late (Bun's check peaked ~30 MiB higher).
 */
export interface VfsFile {
  readonly readOnly: boolean;
  /** Fills bytes [at, at + n) of `mem` from byte `offset`; returns how many bytes the file really had there. */
  read(mem: Uint8Array, at: number, n: number, offset: number): number;
  /** Writes bytes [at, at + n) of `mem` at byte `offset`. */
  write(mem: Uint8Array, at: number, n: number, offset: number): void;
  truncate(size: number): void;
  sync(): void;
  size(): number;
  close(): void;
}

/**
 * Where the I/O buffers of the files (read-ahead windows, gathered writes) live. The VFS gives
 * the WebAssembly heap that SQLite reads into and writes from, so that a page moves between a
 * buffer and SQLite with `copyWithin`, allocating nothing (src/vfs/node-vfs.ts); jsMemory() is
 * the same in plain JavaScript memory, for code and tests that run without SQLite.
 */
export interface IoMemory {
  /** All of the memory as bytes now (a new array after it grew: never keep it across calls). */
  bytes(): Uint8Array;
  /** A block of `n` bytes; its offset in bytes() stays valid until free(). */
  alloc(n: number): number;
  free(at: number): void;
}

/** JavaScript memory that grows by doubling; free() reclaims nothing (meant for short-lived users). */
export function jsMemory(): IoMemory {
  let mem = new Uint8Array(0);
  let used = 0;
  return {
    bytes: () => mem,
    alloc(n: number): number {
      const at = used;
      used += n;
      if (used > mem.length) {
        const grown = new Uint8Array(Math.max(used, mem.length * 2));
        grown.set(mem);
        mem = grown;
      }
      return at;
    },
    free() {},
  };
}

/** Copies `n` bytes from `src` at `from` to `dst` at `to`: within one buffer without allocating. */
export function copyBytes(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
  if (src === dst) dst.copyWithin(to, from, from + n);
  else dst.set(src.subarray(from, from + n), to);
}

/** A file SQLite may only read: writes are refused; closing it is its owner's business. */
export abstract class ReadOnlyFile implements VfsFile {
  readonly readOnly = true;
  abstract read(mem: Uint8Array, at: number, n: number, offset: number): number;
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
