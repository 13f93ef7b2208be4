// V8's code cache of the service side's program, for the single executable (scripts/sea-main.cjs
// compiles that program from it). Made by running scripts/sea-main.cjs on the pinned Node for this
// host (scripts/sea-code-cache-run.cjs), the command `devstreams connect` against a hub that is not
// there (127.0.0.1:1, refused at once): the program's start and a stream's opening up to the first
// connection are compiled, then the cache is written and checked. Only for the host's architecture,
// which the build can run; the executables for the other one carry none and compile as before.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNNER = join(ROOT, 'scripts/sea-code-cache-run.cjs');
const SEA_MAIN = join(ROOT, 'scripts/sea-main.cjs');
/** What the cache is made from: a refused `devstreams connect`, with nothing read from the user's environment. */
export const CACHE_COMMAND = ['connect', 'build-device', 'ssh', '--hub', 'https://127.0.0.1:1', '--token', 'not-a-token'];

/** The asset name scripts/sea-main.cjs reads for `program` on `arch`. */
export function codeCacheName(program, arch) {
  return `${program}.${arch}.cache`;
}

/**
 * Makes `assetDir/PROGRAM.ARCH.cache` for the service program in `assetDir`, with `node` (the pinned
 * Node for this host), and checks that V8 takes it; throws with the runner's output otherwise.
 */
export function makeCodeCache(node, assetDir, arch = process.arch) {
  const program = 'devstreams-service.cjs';
  const out = join(assetDir, codeCacheName(program, arch));
  rmSync(out, { force: true });
  const home = mkdtempSync(join(tmpdir(), 'devstreams-code-cache-'));
  try {
    const run = (mode, file) => {
      const r = spawnSync(node, [RUNNER, mode, SEA_MAIN, assetDir, file, ...CACHE_COMMAND], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, XDG_CACHE_HOME: join(home, 'cache') },
        encoding: 'utf8',
        timeout: 60_000,
      });
      if (r.error || !existsSync(file)) throw new Error(`code cache ${mode} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stdout}${r.stderr}`);
    };
    run('make', out);
    const verdict = join(home, 'check');
    run('check', verdict);
    const taken = readFileSync(verdict, 'utf8');
    if (taken !== 'accepted') throw new Error(`V8 did not take the code cache it made: ${taken}`);
    return out;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
