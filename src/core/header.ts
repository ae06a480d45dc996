/** The SQLite database header (fileformat2.html §1.3), shared by Node and browsers. */

export const SQLITE_HEADER = 'SQLite format 3\0';

/**
 * The size of the database a header declares (page size x in-header page count), when its page
 * count is valid (offset 92 equal to the change counter at 24, as in every file blufio writes);
 * null otherwise. `head` holds at least the first 100 bytes.
 */
export function declaredBytes(head: Uint8Array): number | null {
  if (head.length < 100) return null;
  const v = new DataView(head.buffer, head.byteOffset, 100);
  const pageSize = v.getUint16(16) === 1 ? 65536 : v.getUint16(16);
  const pages = v.getUint32(28);
  return pages > 0 && v.getUint32(92) === v.getUint32(24) ? pageSize * pages : null;
}
