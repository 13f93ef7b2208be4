import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ROOT } from './stack.mjs';

const SOURCES = ['bin', 'protocol', 'hub', 'agent', 'service', 'scripts'];

/**
 * Warns on stderr when a single executable given to a bench tool is older than this checkout's
 * sources: it would measure another build (`npm run build:binary` makes a current one). Only a
 * warning, since an A/B measures an older build on purpose.
 */
export function warnIfStale(exe) {
  if (!exe || !resolve(exe).startsWith(ROOT)) return; // another checkout's build: an A/B
  let newest = 0;
  let newestFile = '';
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mjs|cjs)$/.test(e.name) && statSync(p).mtimeMs > newest) {
        newest = statSync(p).mtimeMs;
        newestFile = p;
      }
    }
  };
  for (const d of SOURCES) walk(join(ROOT, d));
  if (statSync(exe).mtimeMs < newest) {
    console.error(`warning: ${exe} is older than ${newestFile.slice(ROOT.length)}: it measures an older build (npm run build:binary)`);
  }
}
