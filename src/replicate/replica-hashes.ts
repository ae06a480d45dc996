/**
 * The hash of each page of the replica's state (segment.ts pageHash(), 16 bytes a page: 4 MiB
 * per GiB of 4 KiB pages), kept in a file beside the replica behind a bounded cache of its
 * blocks, so that the replicator's memory is the same at any database size (issue 29: RSS
 * ≤ 128 MiB at any size; in memory, the table alone was 40 MiB at 10 GiB, 400 MiB at 100 GiB).
 *
 * Up to CACHE_BLOCKS blocks of BLOCK bytes stay in memory (4 MiB: every page of a 1 GiB database
 * of 4 KiB pages); beyond that, the least recently used block is written back to the file and its
 * buffer reused. A step touches a few pages (a few blocks, used again step after step); a full
 * pass goes through them in order. The file is scratch: it is made again from the replica at
 * every start, so it is never fsynced, and removed on close.
 */
import * as fs from 'node:fs';
import { readFully, writeFully } from '../vfs/disk-file.ts';
import { CHECKSUM_BYTES } from './segment.ts';

/** Bytes of hashes read and written back at once (4,096 pages' hashes). */
const BLOCK = 64 * 1024;
/** Blocks kept in memory. */
const CACHE_BLOCKS = 64;

export class ReplicaHashes {
  private readonly fd: number;
  /** Cached blocks by number, least recently used first (a Map keeps the order of insertion). */
  private readonly blocks = new Map<number, { buf: Buffer; dirty: boolean }>();

  constructor(private path: string, private readonly cacheBlocks = CACHE_BLOCKS) {
    this.fd = fs.openSync(path, 'w+', 0o600);
  }

  /** Page `p`'s hash (pages from 1; a page never set reads as zeros): a view valid until the next call. */
  get(p: number): Buffer {
    const at = (p - 1) * CHECKSUM_BYTES;
    const off = at % BLOCK;
    return this.block(Math.floor(at / BLOCK), false).subarray(off, off + CHECKSUM_BYTES);
  }

  /** Sets page `p`'s hash. */
  set(p: number, h: Uint8Array): void {
    const at = (p - 1) * CHECKSUM_BYTES;
    this.block(Math.floor(at / BLOCK), true).set(h.subarray(0, CHECKSUM_BYTES), at % BLOCK);
  }

  /** Blocks in memory now (for tests). */
  get cached(): number {
    return this.blocks.size;
  }

  /** Renames the file (open: nothing else changes). */
  moveTo(path: string): void {
    fs.renameSync(this.path, path);
    this.path = path;
  }

  close(): void {
    this.blocks.clear();
    fs.closeSync(this.fd);
    fs.rmSync(this.path, { force: true });
  }

  private block(b: number, dirty: boolean): Buffer {
    let e = this.blocks.get(b);
    if (e) {
      // Most recently used: last.
      this.blocks.delete(b);
    } else {
      let buf: Buffer;
      if (this.blocks.size >= this.cacheBlocks) {
        const [old, least] = this.blocks.entries().next().value!;
        this.blocks.delete(old);
        if (least.dirty) writeFully(this.fd, least.buf, old * BLOCK);
        buf = least.buf;
      } else {
        buf = Buffer.allocUnsafe(BLOCK);
      }
      buf.fill(0, readFully(this.fd, buf, b * BLOCK));
      e = { buf, dirty: false };
    }
    e.dirty ||= dirty;
    this.blocks.set(b, e);
    return e.buf;
  }
}
