/**
 * What a backup unpacks to is looked at on the way (a gzip bomb never fills the disk): the SQLite
 * guard for a database; sets/diff.ts has the one for a differential.
 */
import { declaredBytes, hasSqliteMagic } from '../core/header.ts';
import { BlufioError } from '../errors.ts';

/** Looks at each piece of what a backup unpacks to, and throws when it cannot be what it should. */
export type Guard = (piece: Uint8Array) => void;

/**
 * Lets bytes through while they can be an SQLite database: the first 16 must be its magic, and
 * no more than the header's page size x in-header page count may follow (when the header says
 * its page count is valid: offset 92 equal to the change counter at 24, as in every backup
 * blufio writes); when it does not, no more than `room` (the free space where it goes, less a
 * margin).
 */
export function sqliteSizeGuard(src: string, room = Infinity, roomWhere = ''): Guard {
  let seen = 0;
  let head = Buffer.alloc(0);
  let limit = Infinity;
  return (piece) => {
    if (head.length < 100) {
      head = Buffer.concat([head, piece.subarray(0, 100 - head.length)]);
      if (head.length >= 16 && !hasSqliteMagic(head)) {
        throw new BlufioError('E_NOT_SQLITE', `${src} does not hold an SQLite database (what it unpacks to has no SQLite header)`, 'use a backup file made by blufio backup');
      }
      if (head.length === 100) {
        limit = declaredBytes(head) ?? Infinity;
        // A size that cannot fit is refused before it fills the disk (a bomb that claims 1 TiB).
        if (limit !== Infinity && limit > room) {
          throw new BlufioError('E_IO', `no space left on the device holding ${roomWhere || 'the destination'} for what ${src} unpacks to: ${limit} bytes, its database header says, and ${room} bytes are free (less a 64 MiB margin); stopped, nothing was replaced`,
            'if the backup is that big, free some space there or pass --work-dir <directory> on a file system with room; if not, the file is damaged: use another backup file');
        }
      }
    }
    seen += piece.length;
    // A header that does not declare its size (older SQLite, or crafted) is bounded by the room
    // there is: a bomb never fills the disk the live database is on.
    if (limit === Infinity && seen > room) {
      throw new BlufioError('E_IO', `${src}'s database header does not declare its size, and it unpacks to more than the free space${roomWhere ? ` in ${roomWhere}` : ''}; stopped, nothing was replaced`,
        'free some space there, or pass --work-dir <directory> on a file system with room');
    }
    if (seen > limit) {
      throw new BlufioError('E_CORRUPT', `${src} decompresses to more than the ${limit} bytes its database header declares; stopped`, 'the file is damaged or not a backup: use another backup file');
    }
  };
}
