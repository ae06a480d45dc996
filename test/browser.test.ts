/**
 * The OPFS demo in a real headless Chromium (Debian's chromium, driven by playwright-core), served
 * from a local static server that sends the COOP/COEP headers. What the page downloads is checked
 * with native sqlite3; screenshots land in test-output/ to be looked at.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { serveBrowserDemo } from '../scripts/serve-browser.mjs';
import { ROOT, sql, tmpdir, cleanup, skip } from './helpers.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'test-output');

if (!fs.existsSync(CHROMIUM)) {
  // CI installs chromium (.ci/run); on a developer's machine without it, say so loudly.
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  skip(`browser tests: ${CHROMIUM} not found (apt-get install -y chromium)`);
} else {
  const { chromium } = await import('playwright-core');
  for (const vfs of ['opfs-sahpool', 'opfs']) {
  const test = suite(`browser (${vfs})`);
  type Browser = Awaited<ReturnType<typeof chromium.launch>>;
  type Page = Awaited<ReturnType<Browser['newPage']>>;
  let server: http.Server;
  let base: string;
  let browser: Browser;
  let page: Page;

  test.before(async () => {
    ({ server, url: base } = await serveBrowserDemo());
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
    });
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 900, height: 700 } });
    page = await context.newPage();
    page.on('pageerror', (e) => console.error('page error:', e));
    await page.goto(`${base}?vfs=${vfs}`);
    await page.waitForSelector('body[data-ready="1"]', { timeout: 30_000 });
    fs.mkdirSync(SHOTS, { recursive: true });
  });

  test.after(async () => {
    await browser?.close();
    server?.close();
    cleanup();
  });

  async function click(id: string, expect: RegExp): Promise<string> {
    const before = await page.textContent('#status');
    await page.click(`#${id}`);
    await page.waitForFunction((prev) => {
      const s = document.querySelector('#status')!.textContent;
      return s !== prev && !document.querySelector('button')!.disabled;
    }, before, { timeout: 60_000 });
    const status = (await page.textContent('#status')) ?? '';
    assert.match(status, expect);
    return status;
  }

  test('creates a database in OPFS and backs it up with a progress bar', async () => {
    assert.is(await page.textContent('#vfs'), vfs);
    await click('create', /^Created blufio\.db in OPFS: memory 4000, sessions 40, vault 25$/);
    await click('backup', /^Backup complete: \d+\.\d MB written to backup\.db \(\d+ pages, integrity ok\): memory 4000, sessions 40, vault 25$/);
    assert.is(await page.textContent('#progress-label'), `100% (${await page.evaluate(() => (document.querySelector('#progress') as HTMLProgressElement).max)}/${await page.evaluate(() => (document.querySelector('#progress') as HTMLProgressElement).max)} pages)`);
    await page.screenshot({ path: path.join(SHOTS, `browser-${vfs}-backup.png`) });
  });

  test('exports a verified copy that native sqlite3 reads, and imports a file back', async () => {
    const d = tmpdir();
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const exported = path.join(d, 'exported.db');
    await download.saveAs(exported);
    assert.is(sql(exported, 'PRAGMA integrity_check'), 'ok');
    assert.is(sql(exported, 'SELECT count(*) FROM memory; SELECT count(*) FROM vault;'), '4000\n25');

    // Import a different database made by native sqlite3: it replaces blufio.db, the old one is kept.
    const other = path.join(d, 'other.db');
    sql(other, "PRAGMA journal_mode=WAL; CREATE TABLE vault(name TEXT PRIMARY KEY, secret BLOB); INSERT INTO vault VALUES ('only-one', x'00ff');");
    execFileSync('sqlite3', [other, 'PRAGMA wal_checkpoint(TRUNCATE)']);
    await page.setInputFiles('#import', other);
    await page.waitForFunction(() => /^Imported|failed/.test(document.querySelector('#status')!.textContent ?? '') && !document.querySelector('button')!.disabled, null, { timeout: 60_000 });
    assert.is(await page.textContent('#status'), 'Imported other.db as blufio.db: vault 1; previous kept as blufio.db.pre-restore');
    assert.match((await page.textContent('#current')) ?? '', /^blufio\.db: vault 1 · backup\.db: memory 4000/, await page.textContent('#current') ?? '');
    // A second import keeps the first safety copy under a dated name: never overwritten.
    await page.setInputFiles('#import', []);
    await page.setInputFiles('#import', other);
    await page.waitForFunction(() => /^Imported .*the one before|failed/.test(document.querySelector('#status')!.textContent ?? '') && !document.querySelector('button')!.disabled, null, { timeout: 60_000 });
    assert.match((await page.textContent('#status')) ?? '', /^Imported other\.db as blufio\.db: vault 1; previous kept as blufio\.db\.pre-restore \(the one before as blufio\.db\.pre-restore-\d{8}T\d{6}Z\)$/);
    await page.screenshot({ path: path.join(SHOTS, `browser-${vfs}-import.png`) });
  });

  test('a non-SQLite or corrupted file is refused and nothing is replaced', async () => {
    const d = tmpdir();
    const junk = path.join(d, 'junk.db');
    fs.writeFileSync(junk, 'this is not a database\n'.repeat(100));
    await page.setInputFiles('#import', junk);
    await page.waitForFunction(() => /failed/.test(document.querySelector('#status')!.textContent ?? '') && !document.querySelector('button')!.disabled, null, { timeout: 60_000 });
    assert.match((await page.textContent('#status')) ?? '', /^import failed: the file is not an SQLite database \(no SQLite header\) .*\[E_NOT_SQLITE\]$/);

    const good = path.join(d, 'good.db');
    sql(good, 'CREATE TABLE t(x); INSERT INTO t SELECT randomblob(2000) FROM generate_series(1, 200);');
    const bytes = fs.readFileSync(good);
    bytes.fill(0x77, 4096 * 3, 4096 * 4);
    const corrupt = path.join(d, 'corrupt.db');
    fs.writeFileSync(corrupt, bytes);
    await page.setInputFiles('#import', corrupt);
    await page.waitForFunction(() => /E_INTEGRITY|E_CORRUPT/.test(document.querySelector('#status')!.textContent ?? '') && !document.querySelector('button')!.disabled, null, { timeout: 60_000 });
    assert.match((await page.textContent('#status')) ?? '', /^import failed: the imported file failed the integrity check/);
    assert.match((await page.textContent('#current')) ?? '', /^blufio\.db: vault 1 · /, 'blufio.db is still the one imported before');
    await page.screenshot({ path: path.join(SHOTS, `browser-${vfs}-refused.png`) });
  });

  test.run();
  }
}
