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
  assert.equal(resolveConfig({ home, cwd, env, platform: 'linux' }), { databasePath: path.join(home, 'data', 'blufio', 'blufio.db'), walMode: true, backup: { ageRecipients: [], s3: {}, retention: {} }, files: [] });
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
  assert.is(c.databasePath, path.join(cwd, 'local.db'), 'relative paths resolve against the working directory');
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

test.run();
