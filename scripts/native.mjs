// devstreams' native helper (native/malloc-trim.c: glibc's malloc_trim for the idle agent and
// `devstreams forward`, protocol/malloc-trim.ts), compiled with a plain C compiler: no node-gyp, no
// Node headers (the file declares the Node-API functions it calls). The single executables carry
// one per architecture as an asset (scripts/build-binary.mjs); the development build puts the
// host's next to its program (scripts/build.mjs: dist/native/).
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS } from './binary-config.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SOURCE = join(ROOT, 'native/malloc-trim.c');

/** The file name protocol/malloc-trim.ts looks for: malloc-trim-linux-ARCH.node */
export function nativeName(arch) {
  return `malloc-trim-linux-${arch}.node`;
}

/**
 * Compiles the helper for `arch` into `dir` and returns its path; throws with the Debian package
 * to install when the compiler is missing. The build host's own architecture may also use `cc`.
 */
export function buildNative(arch, dir) {
  const target = TARGETS[arch];
  if (!target) throw new Error(`unknown architecture ${JSON.stringify(arch)}`);
  const compilers = arch === process.arch ? [target.cc, 'cc'] : [target.cc];
  const cc = compilers.find((c) => !spawnSync(c, ['--version']).error);
  if (!cc) throw new Error(`${target.cc} not found (Debian: apt-get install ${target.ccPackage})`);
  mkdirSync(dir, { recursive: true });
  const out = join(dir, nativeName(arch));
  // -fvisibility=hidden: the two Node-API entry points are the only symbols it exports.
  const args = ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-fvisibility=hidden', '-s', '-o', `${out}.tmp`, SOURCE];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`${cc} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}`);
  if (r.stderr.trim()) process.stderr.write(r.stderr); // warnings: shown, not fatal
  renameSync(`${out}.tmp`, out);
  return out;
}
