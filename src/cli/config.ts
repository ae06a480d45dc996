/** blufio.toml for a command (src/config.ts, loaded only when needed): its warnings said once per run. */
import type { StorageConfig } from '../config.ts';
import { pathFlag, type CommonFlags } from './flags.ts';
import { configWarnings, type Io, type Say } from './io.ts';

/** blufio.toml and the environment (config.ts), its warnings said (loaded only when needed). */
export async function loadConfig(f: CommonFlags, io: Io, say: Say, db?: string): Promise<StorageConfig> {
  const { resolveConfig } = await import('../config.ts');
  const cfg = resolveConfig({ configFile: pathFlag(f.config, '--config'), db, env: io.env });
  // Printed even with --quiet: a key that is not read can mean another database is backed up.
  // With --json they go in the object instead (configWarnings).
  // Said once each per run (a backup with --ping reads the configuration again).
  for (const w of cfg.warnings) {
    if (configWarnings.has(w)) continue;
    configWarnings.add(w);
    if (!f.json) io.stderr(`warning: ${w}\n`);
  }
  return cfg;
}
