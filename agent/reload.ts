import { isDeepStrictEqual } from 'node:util';
import { ConfigError, type Logger } from '../protocol/index.js';
import type { AgentConfig } from './config.js';

/** What a reload applied and what it could not. */
export interface ReloadResult {
  /** Changed settings that only a restart applies (the key itself is never named by value). */
  needRestart: string[];
}

/** The hub settings a reload applies: the device key (and the file it is read from), for the next connection. */
const APPLIED_HUB_KEYS: ReadonlySet<string> = new Set(['key', 'keyFile']);

/**
 * SIGHUP applies `allow`, `limits` and the device key (`hub.keyFile` re-read, or `hub.key`: used
 * from the next connection, so a key rotated with `hub rotate-key` needs no restart). Everything
 * else is compared so the operator learns which changes wait for a restart: the rest of the hub
 * connection (url, deviceId, auth, ca, proxy, reconnect, pingIntervalMs), log and shutdown.
 */
export function reloadProblems(current: AgentConfig, next: AgentConfig): ReloadResult {
  const needRestart: string[] = [];
  for (const k of Object.keys({ ...current.hub, ...next.hub }) as Array<keyof AgentConfig['hub']>) {
    if (!APPLIED_HUB_KEYS.has(k) && !isDeepStrictEqual(current.hub[k], next.hub[k])) needRestart.push(`hub.${k}`);
  }
  if (!isDeepStrictEqual(current.log, next.log)) needRestart.push('log');
  if (!isDeepStrictEqual(current.shutdown, next.shutdown)) needRestart.push('shutdown');
  return { needRestart: needRestart.sort() };
}

/**
 * Re-reads the config file and hands it to `apply` (the agent's reload). An unreadable or invalid
 * file is refused with one error log line naming the problem, and the running config stays.
 * Returns true when the new config was applied.
 */
export function reloadFromFile(
  file: string,
  load: (file: string) => AgentConfig,
  apply: (config: AgentConfig) => void,
  log: Logger,
): boolean {
  let next: AgentConfig;
  try {
    next = load(file);
  } catch (err) {
    // A ConfigError names the file, field and problem in one line; anything else is reported the same way.
    const message = err instanceof ConfigError ? err.message : `${file}: ${(err as Error).message}`;
    log.error({ err: message }, 'config reload refused, the running config stays');
    return false;
  }
  apply(next);
  return true;
}
