import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { newestBinaryInput } from '../../scripts/binary-config.mjs';
import { ROOT } from './stack.mjs';

/**
 * Warns on stderr when a single executable given to a bench tool is older than what this
 * checkout builds it from: it would measure another build (`npm run build:binary` makes a current
 * one). Only a warning, since an A/B measures an older build on purpose.
 */
export function warnIfStale(exe) {
  if (!exe || !resolve(exe).startsWith(ROOT)) return; // another checkout's build: an A/B
  const newer = staleAgainst(exe);
  if (newer) console.error(`warning: ${exe} is older than ${newer}: it measures an older build (npm run build:binary)`);
}

/** The newest of this checkout's build inputs when the executable `exe` is older than it (stale), else null. */
export function staleAgainst(exe) {
  const newest = newestBinaryInput(ROOT);
  return statSync(exe).mtimeMs < newest.mtimeMs ? newest.file : null;
}
