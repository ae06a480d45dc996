/**
 * A store in a local folder (store.ts): a file is written beside its name under a private
 * temporary name, fsynced and linked into place without replacing anything (files.ts publish()),
 * so a reader never sees half a file and two runs never both get one name.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlufioError, fsError } from '../errors.ts';
import { publish, removeSharedStaleTemps, statOrNull, tempPathBeside } from '../files.ts';
import { readFully } from '../vfs/disk-file.ts';
import { writeChunks } from '../transforms/index.ts';
import type { Body, PutOptions, Store } from './store.ts';

export class FolderStore implements Store {
  constructor(readonly dir: string) {}

  where = (name: string) => path.join(this.dir, name);

  async list() {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      throw fsError(e, this.dir, 'cannot list the backup set');
    }
    return names.flatMap((name) => {
      const st = statOrNull(path.join(this.dir, name));
      return st?.isFile() ? [{ name, bytes: st.size, modified: st.mtimeMs }] : [];
    });
  }

  async stat(name: string) {
    const st = statOrNull(this.where(name));
    return st?.isFile() ? { name, bytes: st.size, modified: st.mtimeMs } : null;
  }

  /**
   * The clock that stamps the folder's files: a file's time as written there (on a local disk,
   * this machine's own; on a network share, the file server's), the file removed at once.
   */
  async clock() {
    const probe = `${tempPathBeside(path.join(this.dir, '.clock'))}.out`;
    let fd: number;
    try {
      fd = fs.openSync(probe, 'wx', 0o600);
    } catch (e) {
      throw fsError(e, probe, 'cannot write in the backup set');
    }
    try {
      fs.writeSync(fd, 'blufio: the clock of this folder\n');
      return Math.floor(fs.fstatSync(fd).mtimeMs);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(probe, { force: true });
    }
  }

  async peek(name: string, bytes: number) {
    const file = this.where(name);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw fsError(e, file, 'cannot read the backup set');
    }
    try {
      const b = Buffer.alloc(bytes);
      return b.subarray(0, readFully(fd, b, 0));
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The file itself: a folder's files are read where they are. */
  async fetch(name: string) {
    const file = this.where(name);
    if (!statOrNull(file)?.isFile()) throw new BlufioError('E_SOURCE_MISSING', `${file} does not exist`, 'check the set; blufio list shows what is there');
    return file;
  }

  async put(name: string, body: Body, opts: PutOptions = {}) {
    const dest = this.where(name);
    if (!opts.replace && statOrNull(dest)) return { published: false, bytes: 0 };
    removeSharedStaleTemps(dest, 15 * 60_000);
    const tmp = `${tempPathBeside(dest)}.out`;
    try {
      let bytes: number;
      if (body.pack) {
        const { phase } = body.pack;
        const total = fs.statSync(body.file).size;
        const progress = opts.onProgress && ((read: number) => opts.onProgress!({ phase, totalPages: total, remainingPages: Math.max(0, total - read), attempt: 1, pageSize: 1 }));
        progress?.(0);
        bytes = await writeChunks(body.pack.chunks(progress), tmp, opts.signal);
      } else {
        try {
          fs.copyFileSync(body.file, tmp, fs.constants.COPYFILE_EXCL);
        } catch (e) {
          throw fsError(e, tmp, 'cannot write the backup');
        }
        bytes = fs.statSync(tmp).size;
      }
      fs.chmodSync(tmp, 0o600);
      publish(tmp, dest, { noClobber: !opts.replace });
      return { published: true, bytes };
    } catch (e) {
      if (e instanceof BlufioError && e.code === 'E_DEST_EXISTS') return { published: false, bytes: 0 };
      throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  async remove(name: string) {
    fs.rmSync(this.where(name), { force: true });
  }
}
