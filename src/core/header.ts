/**
 * The SQLite database header (fileformat2.html §1.3): every place that reads or changes it, shared
 * by Node and browsers (no node: imports). Offsets used here: 16 page size, 18/19 write/read
 * version (1 = rollback journal, 2 = WAL), 24 change counter, 28 in-header page count, 92
 * version-valid-for.
 */
import { BlufioError } from './errors.ts';

export const SQLITE_HEADER = 'SQLite format 3\0';
export const HEADER_BYTES = 100;

/** True if `head` starts with SQLite's 16-byte magic string. */
export function hasSqliteMagic(head: Uint8Array): boolean {
  if (head.length < 16) return false;
  for (let i = 0; i < 16; i++) if (head[i] !== SQLITE_HEADER.charCodeAt(i)) return false;
  return true;
}

/** The page size the header declares (1 means 65536); not validated. */
export function pageSizeOf(head: Uint8Array): number {
  const ps = (head[16] << 8) | head[17];
  return ps === 1 ? 65536 : ps;
}

/** A page size SQLite can have: a power of two from 512 to 65536. */
export function validPageSize(ps: number): boolean {
  return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) === 0;
}

/**
 * The size of the database a header declares (page size x in-header page count), when its page
 * count is valid (offset 92 equal to the change counter at 24, as in every file blufio writes);
 * null otherwise. `head` holds at least the first 100 bytes.
 */
export function declaredBytes(head: Uint8Array): number | null {
  if (head.length < HEADER_BYTES) return null;
  const v = new DataView(head.buffer, head.byteOffset, HEADER_BYTES);
  const pages = v.getUint32(28);
  return pages > 0 && v.getUint32(92) === v.getUint32(24) ? pageSizeOf(head) * pages : null;
}

/** The journal mode the header says the database opens in (byte 18). */
export function journalModeOf(head: Uint8Array): 'wal' | 'rollback' {
  return head[18] === 2 ? 'wal' : 'rollback';
}

/** Sets the journal mode a database opens in: bytes 18/19 = 2 (WAL) or 1 (rollback journal). */
export function setJournalMode(head: Uint8Array, wal: boolean): Uint8Array {
  head[18] = head[19] = wal ? 2 : 1;
  return head;
}

/**
 * Page 1's first 100 bytes made those of a self-contained rollback-journal database of `nPages`
 * pages: legacy file format bytes (18/19 = 1), and an in-header page count that SQLite trusts
 * (offset 92, version-valid-for, equal to the change counter at 24). Changes `head` in place.
 */
export function selfContainedHeader(head: Uint8Array, nPages: number): Uint8Array {
  setJournalMode(head, false);
  new DataView(head.buffer, head.byteOffset, head.length).setUint32(28, nPages);
  head.copyWithin(92, 24, 28);
  return head;
}

/**
 * The first look at a file offered as a backup (its first bytes and its size): refused if empty,
 * without SQLite's header, or too short to hold one page. Returns the size its header declares,
 * or `size`. `shownAs` names the file for people ("the backup file x.db"); the hints say what to
 * do about a file that is not a backup at all, and about a damaged one.
 */
export function checkBackupHeader(head: Uint8Array, size: number, shownAs: string, hints: { notBackup: string; damaged: string }): number {
  if (size === 0) throw new BlufioError('E_NOT_SQLITE', `${shownAs} is empty (0 bytes)`, hints.notBackup);
  if (!hasSqliteMagic(head)) throw new BlufioError('E_NOT_SQLITE', `${shownAs} is not an SQLite database (no SQLite header)`, hints.notBackup);
  if (size < 512) throw new BlufioError('E_CORRUPT', `${shownAs} is truncated (${size} bytes)`, hints.damaged);
  return declaredBytes(head) ?? size;
}
