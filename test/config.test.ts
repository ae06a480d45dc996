import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlufioError, resolveConfig } from '../src/index.ts';
import { configFiles } from '../src/config.ts';
import { cleanup, tmpdir } from './helpers.ts';

const test = suite('config');
test.after.each(cleanup);

function layout() {
  const home = tmpdir();
  const cwd = tmpdir();
  return { home, cwd, env: { XDG_CONFIG_HOME: path.join(home, 'cfg'), XDG_DATA_HOME: path.join(home, 'data') } as NodeJS.ProcessEnv };
}

function write(file: string, text: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

test('defaults follow the platform data directory', () => {
  const { home, cwd, env } = layout();
  assert.equal(resolveConfig({ home, cwd, env, platform: 'linux' }), { databasePath: path.join(home, 'data', 'blufio', 'blufio.db'), walMode: true, backup: { ageRecipients: [], s3: {}, retention: {} }, files: [], warnings: [] });
  assert.is(resolveConfig({ home, cwd, env: {}, platform: 'linux' }).databasePath, path.join(home, '.local', 'share', 'blufio', 'blufio.db'));
  assert.is(resolveConfig({ home, cwd, env: {}, platform: 'darwin' }).databasePath, path.join(home, 'Library', 'Application Support', 'blufio', 'blufio.db'));
  assert.is(resolveConfig({ home, cwd, env: { APPDATA: '/appdata' }, platform: 'win32' }).databasePath, path.join('/appdata', 'blufio', 'blufio.db'));
});

test('later files win: user config over /etc, ./blufio.toml over user config; env over files; --db over all', () => {
  const { home, cwd, env } = layout();
  const user = write(path.join(home, 'cfg', 'blufio', 'blufio.toml'), '[storage]\ndatabase_path = "/from/user.db"\nwal_mode = false\n');
  let c = resolveConfig({ home, cwd, env, platform: 'linux' });
  assert.is(c.databasePath, '/from/user.db');
  assert.is(c.walMode, false);
  assert.ok(c.files.includes(user));
  write(path.join(cwd, 'blufio.toml'), '[storage]\ndatabase_path = "local.db"\n');
  c = resolveConfig({ home, cwd, env, platform: 'linux' });
  assert.is(c.databasePath, path.join(cwd, 'local.db'), 'relative paths resolve against the directory of the file (here the working directory)');
  assert.is(c.walMode, false, 'keys a later file does not set keep their earlier value');
  c = resolveConfig({ home, cwd, env: { ...env, BLUFIO_STORAGE_DATABASE_PATH: '~/env.db', BLUFIO_STORAGE_WAL_MODE: 'true' }, platform: 'linux' });
  assert.is(c.databasePath, path.join(home, 'env.db'));
  assert.is(c.walMode, true);
  c = resolveConfig({ home, cwd, env: { ...env, BLUFIO_STORAGE_DATABASE_PATH: '/env.db' }, db: '/flag.db', platform: 'linux' });
  assert.is(c.databasePath, '/flag.db');
  assert.equal(configFiles({ home, cwd, env, platform: 'linux' }), ['/etc/blufio/blufio.toml', user, path.join(cwd, 'blufio.toml')]);
});

test('--config reads that file instead of the hierarchy', () => {
  const { home, cwd, env } = layout();
  write(path.join(cwd, 'blufio.toml'), '[storage]\ndatabase_path = "/ignored.db"\n');
  const only = write(path.join(home, 'only.toml'), '[storage]\ndatabase_path = "/only.db"\n');
  const c = resolveConfig({ home, cwd, env, configFile: only, platform: 'linux' });
  assert.is(c.databasePath, '/only.db');
  assert.equal(c.files, [only]);
  assert.throws(() => resolveConfig({ home, cwd, env, configFile: path.join(home, 'nope.toml') }), /config file not found/);
});

test('broken or ill-typed configuration names the file and the line', () => {
  const { home, cwd, env } = layout();
  const bad = write(path.join(cwd, 'blufio.toml'), '[storage]\ndatabase_path = "/x.db"\nwal_mode = maybe\n');
  try {
    resolveConfig({ home, cwd, env, platform: 'linux' });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, BlufioError);
    assert.is((e as BlufioError).code, 'E_CONFIG');
    assert.match((e as Error).message, `${bad}:3: invalid TOML`);
  }
  write(bad, '[storage]\nwal_mode = "yes"\n');
  assert.throws(() => resolveConfig({ home, cwd, env, platform: 'linux' }), /storage.wal_mode must be true or false/);
  write(bad, 'storage = 3\n');
  assert.throws(() => resolveConfig({ home, cwd, env, platform: 'linux' }), /storage must be a table/);
  fs.rmSync(bad);
  assert.throws(() => resolveConfig({ home, cwd, env: { ...env, BLUFIO_STORAGE_WAL_MODE: 'perhaps' } }), /BLUFIO_STORAGE_WAL_MODE must be true or false/);
});

test('a relative database_path is from the file that sets it (cron runs from /); env and --db from the working directory', () => {
  const { home, cwd, env } = layout();
  const etc = tmpdir();
  const file = write(path.join(etc, 'blufio.toml'), '[storage]\ndatabase_path = "data/blufio.db"\n');
  assert.is(resolveConfig({ home, cwd, env, configFile: file }).databasePath, path.join(etc, 'data', 'blufio.db'));
  assert.is(resolveConfig({ home, cwd, env, configFile: file, db: 'x.db' }).databasePath, path.join(cwd, 'x.db'));
});

test('misspelt keys and tables are errors naming file and line; other unknown keys in our tables are warnings; the server\'s tables are not ours', () => {
  const { home, cwd, env } = layout();
  const cfg = (text: string) => resolveConfig({ home, cwd, env, configFile: write(path.join(cwd, 'b.toml'), text) });
  const fails = (text: string, message: RegExp, hint: RegExp) => {
    try {
      cfg(text);
    } catch (e) {
      assert.instance(e, BlufioError);
      assert.is((e as BlufioError).code, 'E_CONFIG');
      assert.match((e as BlufioError).message, message);
      assert.match((e as BlufioError).hint ?? '', hint);
      return;
    }
    assert.unreachable(text);
  };
  const f = path.join(cwd, 'b.toml');
  fails('[agent]\nname = "x"\n\n[storage]\ndatabase_pth = "/x.db"\n', new RegExp(`^${f}:5: unknown key storage.database_pth$`), /did you mean storage.database_path\?/);
  fails('[storage]\nWAL_mode = true\n', /:2: unknown key storage.WAL_mode$/, /storage.wal_mode/);
  fails('[storge]\ndatabase_path = "/x.db"\n', /:1: unknown table \[storge\]$/, /did you mean \[storage\]\?/);
  fails('database_path = "/x.db"\n', /:1: database_path is outside any table, so it is not read$/, /put it under \[storage\]/);
  fails('[backup]\nage_recipient = ["age1x"]\n', /:2: unknown key backup.age_recipient$/, /backup.age_recipients/);
  // A key meant and not filled in: never unencrypted backups for it (found by an attack run).
  fails('[backup]\nage_recipients = []\n', /backup.age_recipients is empty$/, /remove the setting to make unencrypted backups/);
  const c = cfg('title = "mine"\n[agent]\nmodel = "x"\n[storage]\ndatabase_path = "/x.db"\npool_size = 4\n');
  assert.equal(c.warnings, [
    `${f}:1: title at the top level is not read by blufio backup`,
    `${f}:6: unknown key storage.pool_size is ignored (blufio backup reads storage.database_path, storage.wal_mode)`,
  ]);
  assert.is(c.databasePath, '/x.db');
});

test.run();
