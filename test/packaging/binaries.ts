import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { binaryName, newestBinaryInput, NODE_VERSION, TARGETS } from '../../scripts/binary-config.mjs';
import { ROOT } from '../helpers/proc.js';

/** The single executables under test (issue 5): built on demand, run natively or under qemu. */

export { NODE_VERSION };
export type Arch = 'arm64' | 'x64';
export const ARCHES: Arch[] = ['arm64', 'x64'];
export const PKG_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

export function exePath(arch: Arch): string {
  return join(ROOT, 'dist/bin', binaryName(arch));
}

const QEMU = '/usr/bin/qemu-aarch64-static';
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu'; // libc6-arm64-cross, libstdc++6-arm64-cross, libgcc-s1-arm64-cross

/** How to run an executable of `arch` here: [] natively, qemu's prefix, or null when this host cannot. */
export function runnerFor(arch: Arch): string[] | null {
  if (arch === process.arch) return [];
  if (arch === 'arm64' && process.arch === 'x64') {
    return existsSync(QEMU) && existsSync(join(ARM64_SYSROOT, 'lib/ld-linux-aarch64.so.1')) ? [QEMU, '-L', ARM64_SYSROOT] : null;
  }
  return null;
}

export const CANNOT_RUN =
  'qemu-aarch64-static or the arm64 libraries are missing (apt-get install qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)';

/**
 * Tools the build needs (scripts/binary-config.mjs TARGETS: each architecture's strip and C compiler),
 * as "tool (Debian package)", that this host lacks: with any missing it cannot build here (CI
 * installs them in .ci/run).
 */
export const MISSING_BUILD_TOOLS = Object.values(TARGETS)
  .flatMap((t) => [`${t.strip} (${t.stripPackage})`, `${t.cc} (${t.ccPackage})`])
  .filter((tool) => !existsSync(`/usr/bin/${tool.split(' ')[0]}`));
export const canBuild = MISSING_BUILD_TOOLS.length === 0;

/** The command that runs the executable of `arch` (qemu prefix included). */
export function command(arch: Arch): string[] {
  const runner = runnerFor(arch);
  if (!runner) throw new Error(`cannot run ${arch} executables here: ${CANNOT_RUN}`);
  return [...runner, exePath(arch)];
}

const LOCK = join(ROOT, 'node_modules/.cache/devstreams-node/build.lock');

/**
 * Builds dist/bin/devstreams-linux-{arm64,x64} (npm run build:binary) unless both are newer than every
 * source file. One build at a time across test files (a lock folder); bounded waits.
 */
export async function ensureBinaries(): Promise<void> {
  if (fresh()) return;
  mkdirSync(join(LOCK, '..'), { recursive: true });
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock left by a killed run is older than any build takes.
      if (Date.now() - statSync(LOCK).mtimeMs > 15 * 60_000) rmdirSync(LOCK);
      if (Date.now() > deadline) throw new Error(`another build holds ${LOCK} for too long`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    if (fresh()) return;
    await promisify(execFile)(process.execPath, [join(ROOT, 'scripts/build-binary.mjs')], { cwd: ROOT, timeout: 9 * 60_000 });
  } finally {
    rmdirSync(LOCK);
  }
}

function fresh(): boolean {
  const exes = ARCHES.map(exePath);
  if (!exes.every((f) => existsSync(f))) return false;
  const built = Math.min(...exes.map((f) => statSync(f).mtimeMs));
  return newestBinaryInput(ROOT).mtimeMs < built;
}

export interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a command to completion (killed after timeoutMs), feeding `input` to its stdin. */
export function run(cmd: readonly string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const [exe, ...args] = cmd;
    const child = spawn(exe!, args, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}
