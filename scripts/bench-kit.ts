/**
 * What the two benchmark scripts (bench.ts, replication-bench.ts) share: where the project and
 * its bundled CLI are, their flags, and the S3 test server in its own process.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = path.join(ROOT, 'dist', 'blufio.mjs');
const args = process.argv.slice(2);
/** The command line's arguments, as given. */
export const argv = args;
/** True when `--name` was given. */
export const flag = (name: string) => args.includes(`--${name}`);
/** The value after `--name`, or `dflt`. */
export const value = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1] : dflt;
};

/**
 * The S3 test server (test/s3-server.mjs: s3rver, a devDependency) on 127.0.0.1 over a new
 * directory, killed and removed when the script exits; `env` points a blufio run at it.
 */
export async function startS3(): Promise<{ dir: string; port: number; env: Record<string, string> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blufio-bench-s3-'));
  const proc = spawn(process.execPath, [path.join(ROOT, 'test', 's3-server.mjs'), dir, '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d) => {
      buf += d;
      const m = /\{"port":(\d+)\}/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (c) => reject(new Error(`the S3 test server exited (${c})`)));
  });
  process.on('exit', () => {
    proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, port, env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`, AWS_REGION: 'us-east-1' } };
}
