/**
 * The source database's own file, as every part of a snapshot reads it: one read-only descriptor
 * opened at begin(), its stamp (size and times to the nanosecond), its header, and whether a
 * rollback journal beside it is hot. Nothing here writes anything.
 */
import * as fs from 'node:fs';
import { BlufioError, fsError } from '../errors.ts';
import { HEADER_BYTES } from '../core/header.ts';
import { readFully } from '../vfs/disk-file.ts';
import { parseWalHeader, WAL_HEADER_SIZE } from '../wal.ts';

const JOURNAL_MAGIC = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

export class SourceFile {
  readonly journalPath: string;

  private constructor(
    readonly path: string,
    readonly fd: number,
    /** The file as it was opened (its inode tells whether the name was replaced since). */
    readonly opened: fs.Stats,
  ) {
    this.journalPath = `${path}-journal`;
  }

  /** Opens the database file read-only; refuses anything but a regular file. */
  static open(dbPath: string): SourceFile {
    let fd: number;
    let st: fs.Stats;
    try {
      fd = fs.openSync(dbPath, 'r');
      st = fs.fstatSync(fd);
    } catch (e) {
      throw fsError(e, dbPath, 'cannot read the database');
    }
    if (!st.isFile()) {
      fs.closeSync(fd);
      throw new BlufioError('E_NOT_FILE', `${dbPath} is not a regular file`, 'give the path of an SQLite database file');
    }
    return new SourceFile(dbPath, fd, st);
  }

  /** Size and change times, to the nanosecond: any write since the last stamp changes it. */
  stamp(): string {
    const st = fs.fstatSync(this.fd, { bigint: true });
    return `${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  }

  size(): number {
    return fs.fstatSync(this.fd).size;
  }

  read(dst: Uint8Array, offset: number): number {
    return readFully(this.fd, dst, offset);
  }

  /** The first 100 bytes now (fewer for a shorter file). */
  header(): Uint8Array {
    const head = new Uint8Array(HEADER_BYTES);
    return head.subarray(0, this.read(head, 0));
  }

  /** One header byte now, or -1 past the end. */
  headerByte(at: number): number {
    const b = new Uint8Array(1);
    return this.read(b, at) === 1 ? b[0] : -1;
  }

  /** Pages in the database file alone: its in-header page count where valid, else its size. */
  dbPages(pageSize: number): number {
    const head = this.header();
    const bySize = Math.floor(this.size() / pageSize);
    if (head.length < HEADER_BYTES) return bySize;
    const dv = new DataView(head.buffer, head.byteOffset, HEADER_BYTES);
    if (dv.getUint32(24) === dv.getUint32(92) && dv.getUint32(28) > 0) return Math.min(dv.getUint32(28), bySize);
    return bySize;
  }

  /** True if the name now leads to another file, or to none. */
  replaced(): boolean {
    try {
      return fs.statSync(this.path).ino !== this.opened.ino;
    } catch {
      return true;
    }
  }

  /** A rollback journal with a valid header: a commit is being written (or a crash left one). */
  journalIsHot(): boolean {
    return journalIsHot(this.journalPath);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export function journalIsHot(journalPath: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(journalPath, 'r');
  } catch {
    return false;
  }
  try {
    const head = new Uint8Array(8);
    return readFully(fd, head, 0) === 8 && head.every((b, i) => b === JOURNAL_MAGIC[i]);
  } finally {
    fs.closeSync(fd);
  }
}

/** A WAL file with a valid header and at least one frame after it: commits not in the database file yet. */
export function walHoldsFrames(walPath: string): boolean {
  const st = fs.statSync(walPath, { throwIfNoEntry: false });
  if (!st?.isFile() || st.size <= WAL_HEADER_SIZE) return false;
  const head = new Uint8Array(WAL_HEADER_SIZE);
  const fd = fs.openSync(walPath, 'r');
  try {
    return readFully(fd, head, 0) === WAL_HEADER_SIZE && parseWalHeader(head) !== null;
  } finally {
    fs.closeSync(fd);
  }
}
