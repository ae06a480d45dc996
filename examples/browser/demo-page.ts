/** The demo page: buttons that ask the worker to create, back up, export and import databases. */
const vfs = new URL(location.href).searchParams.get('vfs') === 'opfs' ? 'opfs' : 'opfs-sahpool';
const worker = new Worker(new URL(`./demo-worker.js?vfs=${vfs}`, import.meta.url), { type: 'module' });
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const bar = $<HTMLProgressElement>('progress');
const status = $('status');
const log = $('log');
let next = 0;
const pending = new Map<number, { resolve: (v: any) => void; reject: (e: any) => void }>();

worker.onmessage = (ev) => {
  const m = ev.data;
  if (m.op === 'ready') {
    refresh().then(() => (document.body.dataset.ready = '1'));
    return;
  }
  if (m.op === 'progress') {
    bar.max = m.totalPages;
    bar.value = m.totalPages - m.remainingPages;
    $('progress-label').textContent = `${Math.floor((100 * bar.value) / Math.max(1, bar.max))}% (${bar.value}/${bar.max} pages)`;
    return;
  }
  const p = pending.get(m.id);
  pending.delete(m.id);
  if (m.ok) p?.resolve(m.result);
  else p?.reject(m.error);
};

function ask(op: string, extra: object = {}, transfer: Transferable[] = []): Promise<any> {
  const id = ++next;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, op, ...extra }, transfer);
  });
}

const show = (s: Record<string, number> | null) => (s ? Object.entries(s).map(([k, v]) => `${k} ${v}`).join(', ') : '(none)');

function say(text: string, kind: 'ok' | 'error' = 'ok') {
  status.textContent = text;
  status.className = kind;
  const li = document.createElement('li');
  li.textContent = text;
  li.className = kind;
  log.prepend(li);
}

/** One operation at a time: a click while another runs waits for it. */
let queue: Promise<void> = Promise.resolve();
function run(name: string, f: () => Promise<string>): Promise<void> {
  queue = queue.then(() => runNow(name, f));
  return queue;
}

async function runNow(name: string, f: () => Promise<string>) {
  document.querySelectorAll('button').forEach((b) => (b.disabled = true));
  try {
    say(await f());
  } catch (e: any) {
    say(`${name} failed: ${e.message}${e.hint ? ` (${e.hint})` : ''} [${e.code}]`, 'error');
  } finally {
    await refresh();
    document.querySelectorAll('button').forEach((b) => (b.disabled = false));
  }
}

/** What the store holds now, shown under the buttons. */
async function refresh() {
  const s = await ask('stats');
  $('current').textContent = `blufio.db: ${show(s.stats)} · backup.db: ${show(s.backup)}`;
  $('vfs').textContent = s.vfs;
}

$('create').onclick = () => run('create', async () => `Created blufio.db in OPFS: ${show((await ask('create')).stats)}`);
$('backup').onclick = () =>
  run('backup', async () => {
    const r = await ask('backup');
    return `Backup complete: ${(r.bytes / 1048576).toFixed(1)} MB written to ${r.destination} (${r.pages} pages, integrity ${r.integrity}): ${show(r.stats)}`;
  });
$('export').onclick = () =>
  run('export', async () => {
    const { bytes } = await ask('export');
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/vnd.sqlite3' }));
    const a = $<HTMLAnchorElement>('download');
    a.href = url;
    a.download = 'blufio-backup.db';
    a.textContent = `Download blufio-backup.db (${(bytes.length / 1048576).toFixed(1)} MB)`;
    a.click();
    return `Exported a verified copy of blufio.db (${bytes.length} bytes)`;
  });
$<HTMLInputElement>('import').onchange = (ev) => {
  const file = (ev.target as HTMLInputElement).files?.[0];
  if (!file) return;
  run('import', async () => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const r = await ask('import', { bytes }, [bytes.buffer]);
    return `Imported ${file.name} as blufio.db: ${show(r.stats)}${r.safetyCopy ? `; previous kept as ${r.safetyCopy}` : ''}${r.earlierSafetyCopy ? ` (the one before as ${r.earlierSafetyCopy})` : ''}`;
  });
  (ev.target as HTMLInputElement).value = '';
};
