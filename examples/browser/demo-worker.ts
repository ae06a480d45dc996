/**
 * The demo page's worker: owns the OPFS store and answers the page's requests. Messages in:
 * { id, op, ...args }; out: { id, ok, result | error } and { op: 'progress', ... } while copying.
 */
import { BlufioError, openOpfsStore, type OpfsStore } from '../../src/browser/index.ts';

const DB = 'blufio.db';
const BACKUP = 'backup.db';
let store: OpfsStore | undefined;

type Request = { id: number; op: string; rows?: number; bytes?: Uint8Array };

async function stats(name: string): Promise<Record<string, number> | null> {
  if (!(await store!.exists(name))) return null;
  const db = store!.open(name);
  try {
    const out: Record<string, number> = {};
    for (const t of db.selectValues("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name") as string[]) {
      out[t] = Number(db.selectValue(`SELECT count(*) FROM "${t}"`));
    }
    return out;
  } finally {
    db.close();
  }
}

const progress = (p: unknown) => postMessage({ op: 'progress', ...(p as object) });

async function handle(req: Request): Promise<unknown> {
  // ?vfs=opfs picks the "opfs" VFS (needs cross-origin isolation); opfs-sahpool otherwise.
  store ??= await openOpfsStore({ vfs: new URL(self.location.href).searchParams.get('vfs') === 'opfs' ? 'opfs' : 'opfs-sahpool' });
  switch (req.op) {
    case 'create': {
      await store.remove(DB);
      const db = store.open(DB, { create: true });
      try {
        db.exec(`
          CREATE TABLE sessions(id INTEGER PRIMARY KEY, agent TEXT);
          CREATE TABLE memory(id INTEGER PRIMARY KEY, session_id INTEGER, content TEXT);
          CREATE TABLE vault(name TEXT PRIMARY KEY, secret BLOB) WITHOUT ROWID;
          WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < 40) INSERT INTO sessions SELECT v, 'agent-' || v FROM s;
          WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < ${req.rows ?? 4000})
            INSERT INTO memory(session_id, content) SELECT 1 + v % 40, hex(randomblob(200)) FROM s;
          WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < 25) INSERT INTO vault SELECT 'credential-' || v, randomblob(48) FROM s;
        `);
      } finally {
        db.close();
      }
      return { stats: await stats(DB), files: await store.list() };
    }
    case 'backup': {
      const r = await store.backup(DB, BACKUP, { pagesPerStep: 20, sleepMs: 5, onProgress: progress });
      return { ...r, stats: await stats(BACKUP), files: await store.list() };
    }
    case 'export':
      return { bytes: await store.exportDatabase(DB, { onProgress: progress }) };
    case 'import': {
      const r = await store.importDatabase(DB, req.bytes!, { onProgress: progress });
      return { ...r, stats: await stats(DB), files: await store.list() };
    }
    case 'stats':
      return { vfs: store.vfs, stats: await stats(DB), backup: await stats(BACKUP), files: await store.list() };
    default:
      throw new Error(`unknown request ${req.op}`);
  }
}

onmessage = async (ev: MessageEvent<Request>) => {
  const { id } = ev.data;
  try {
    postMessage({ id, ok: true, result: await handle(ev.data) });
  } catch (e) {
    const err = e instanceof BlufioError ? { code: e.code, message: e.message, hint: e.hint } : { code: 'E_BUG', message: String((e as Error)?.message ?? e) };
    postMessage({ id, ok: false, error: err });
  }
};
postMessage({ op: 'ready' });
