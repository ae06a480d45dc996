/**
 * WAL files built byte by byte in memory, for the unit suites of the WAL reader, the follower and
 * the guards: a generation with real headers, frames and cumulative checksums, and a "file system"
 * of one WAL file that a test can replace, delete or re-create between two looks.
 */
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, walChecksum } from '../src/wal.ts';
import type { WalHandle, WalSource } from '../src/wal-follower.ts';

export const PS = 512;

/** Builds one WAL generation: a header, then frames with the cumulative checksum. */
export class WalBuilder {
  bytes: Uint8Array;
  private s: [number, number];
  constructor(readonly salt1: number, readonly salt2: number, ckptSeq = 0) {
    const h = new Uint8Array(WAL_HEADER_SIZE);
    const dv = new DataView(h.buffer);
    dv.setUint32(0, 0x377f0682);
    dv.setUint32(4, 3007000);
    dv.setUint32(8, PS);
    dv.setUint32(12, ckptSeq);
    dv.setUint32(16, salt1);
    dv.setUint32(20, salt2);
    this.s = walChecksum(h.subarray(0, 24), false, 0, 0);
    dv.setUint32(24, this.s[0]);
    dv.setUint32(28, this.s[1]);
    this.bytes = h;
  }
  /** Appends a transaction: one frame per page, the last one the commit frame. */
  tx(pages: number[], dbSize: number, fill = 1): this {
    for (let i = 0; i < pages.length; i++) {
      const f = new Uint8Array(WAL_FRAME_HEADER_SIZE + PS);
      const dv = new DataView(f.buffer);
      dv.setUint32(0, pages[i]);
      dv.setUint32(4, i === pages.length - 1 ? dbSize : 0);
      dv.setUint32(8, this.salt1);
      dv.setUint32(12, this.salt2);
      f.fill(fill, WAL_FRAME_HEADER_SIZE);
      this.s = walChecksum(f.subarray(0, 8), false, ...this.s);
      this.s = walChecksum(f.subarray(WAL_FRAME_HEADER_SIZE), false, ...this.s);
      dv.setUint32(16, this.s[0]);
      dv.setUint32(20, this.s[1]);
      this.bytes = concat(this.bytes, f);
    }
    return this;
  }
  frames(): number {
    return (this.bytes.length - WAL_HEADER_SIZE) / (WAL_FRAME_HEADER_SIZE + PS);
  }
}

export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}

/** A WAL "on disk" in memory: replace its bytes, delete it, re-create it between looks. */
export class MemWal implements WalSource {
  files: { ino: number; bytes: Uint8Array; version: number } | null = null;
  /** Called before each read of the file, with its offset: lets a test change the file mid-look. */
  beforeRead?: (offset: number) => void;
  private nextIno = 1;
  create(bytes: Uint8Array): void {
    this.files = { ino: this.nextIno++, bytes, version: 0 };
  }
  /** Writes in place (same file): the stamp changes. */
  set(bytes: Uint8Array): void {
    this.files!.bytes = bytes;
    this.files!.version++;
  }
  remove(): void {
    this.files = null;
  }
  pathIno(): number {
    return this.files?.ino ?? 0;
  }
  open(): WalHandle | null {
    const file = this.files;
    if (!file) return null;
    const self = this;
    return {
      ino: file.ino,
      read(dst, offset) {
        self.beforeRead?.(offset);
        const part = file.bytes.subarray(offset, offset + dst.length);
        dst.set(part);
        return part.length;
      },
      stamp: () => ({ size: file.bytes.length, key: `${file.bytes.length}:${file.version}` }),
      close() {},
    };
  }
}

