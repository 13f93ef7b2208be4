import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '../protocol/index.js';
import { DEFAULT_HUB_DIR } from './init.js';

/** Where the hub commands look for hub.yaml without --config: under the current directory. */
export const DEFAULT_HUB_CONFIG = join(DEFAULT_HUB_DIR, 'hub.yaml');

/**
 * The hub.yaml a hub command acts on: `--config FILE`, or ./.devstreams/hub.yaml. A missing file is
 * a ConfigError that says which file was tried, and for the default, what to pass instead.
 */
export function hubConfigPath(given: string | undefined): string {
  const file = given ?? DEFAULT_HUB_CONFIG;
  if (existsSync(file)) return file;
  if (given !== undefined) {
    throw new ConfigError(resolve(file), ['no such file; create one with `devstreams hub init` (with --dir DIR it writes DIR/hub.yaml) or check the --config path']);
  }
  throw new ConfigError(resolve(file), [
    `no such file (without --config the hub commands read ${DEFAULT_HUB_CONFIG} under the current directory); ` +
      'pass --config DIR/hub.yaml for the folder `devstreams hub init --dir DIR` made, or run from the directory that holds .devstreams',
  ]);
}
