/**
 * The view SQLite reads (registered with the VFS under a name of its own): one attempt's fixed
 * state of the source, page by page. A page comes from its newest committed frame at begin()
 * (checked, as it is read, to still carry that WAL generation's salts), else from the database
 * file through a read-ahead window. Page 1's header is presented as that of a self-contained
 * rollback-journal database of the view's size (in WAL mode), so SQLite never looks for a WAL.
 * Read-only: writes are refused.
 */
import { HEADER_BYTES, selfContainedHeader } from '../core/header.ts';
import type { ReadAhead } from '../vfs/disk-file.ts';
import { copyBytes, ReadOnlyFile } from '../vfs/file.ts';
import { WAL_FRAME_HEADER_SIZE, frameOffset, type WalIndex } from '../wal.ts';
import { readU32, type WalHandle } from '../wal-follower.ts';
import type { JournalMode } from './guard.ts';

export class SnapshotView extends ReadOnlyFile {
  private readonly frameBuf: Uint8Array;
  /** Page 1's first 100 bytes as the view shows them. */
  private readonly page1Head: Uint8Array;

  /**
   * `index`/`wal`: the committed frames at begin() and a descriptor of the WAL file they are in
   * (its own: the follower lets go of a WAL that is deleted or replaced, the view must keep
   * reading the one it started with). `fileHeader`: the database file's first bytes at begin().
   */
  constructor(
    readonly pageSize: number,
    readonly nPages: number,
    private readonly index: WalIndex | null,
    private readonly wal: WalHandle | null,
    fileHeader: Uint8Array,
    mode: JournalMode,
    /** The snapshot's read-ahead over the database file, pointed at this attempt's descriptor. */
    private readonly ahead: ReadAhead,
  ) {
    super();
    this.frameBuf = new Uint8Array(WAL_FRAME_HEADER_SIZE + pageSize);
    this.page1Head = new Uint8Array(0);
    if (nPages > 0) {
      const head = new Uint8Array(HEADER_BYTES);
      const frame = index?.frames.get(1);
      if (frame === undefined || !this.readFrame(frame, head, 0, HEADER_BYTES, 0)) head.set(fileHeader);
      this.page1Head = mode === 'wal' ? selfContainedHeader(head, nPages) : head;
    }
  }

  read(mem: Uint8Array, at: number, n: number, offset: number): number {
    const ps = this.pageSize;
    let done = 0;
    while (done < n) {
      const pos = offset + done;
      const pgno = Math.floor(pos / ps) + 1;
      if (pgno > this.nPages) return done;
      const inPage = pos - (pgno - 1) * ps;
      const len = Math.min(ps - inPage, n - done);
      const to = at + done;
      const frame = this.index?.frames.get(pgno);
      const got = frame !== undefined && this.readFrame(frame, mem, to, len, inPage) ? len : this.ahead.read(mem, to, len, pos);
      if (pgno === 1 && inPage < HEADER_BYTES) {
        const end = Math.min(HEADER_BYTES, inPage + len);
        mem.set(this.page1Head.subarray(inPage, end), to);
      }
      if (got < len) return done + got;
      done += len;
    }
    return done;
  }

  /**
   * Reads part of a frame of the begin() generation, checking that it still carries that
   * generation's salts. A frame overwritten by a restart is not served: its page was checkpointed
   * into the database file before the restart, and the WAL guard rewrites every page it saw.
   */
  private readFrame(frame: number, mem: Uint8Array, to: number, len: number, inPage: number): boolean {
    const buf = this.frameBuf;
    if (this.wal!.read(buf, frameOffset(frame, this.pageSize)) !== buf.length) return false;
    const h = this.index!.header;
    if (readU32(buf, 8) !== h.salt1 || readU32(buf, 12) !== h.salt2) return false;
    copyBytes(buf, WAL_FRAME_HEADER_SIZE + inPage, mem, to, len);
    return true;
  }

  size(): number {
    return this.nPages * this.pageSize;
  }
}
