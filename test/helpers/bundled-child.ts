import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';

/**
 * A TypeScript fixture bundled with esbuild into a fresh folder under the checkout (its dependencies
 * stay packages, resolved from the checkout's node_modules). Returns the bundle's path; the caller
 * removes its folder (dirname).
 */
export async function bundleFixture(entry: string): Promise<string> {
  const cache = join(import.meta.dirname, '../../node_modules/.cache');
  mkdirSync(cache, { recursive: true });
  const outfile = join(mkdtempSync(join(cache, 'devstreams-child-')), 'child.mjs');
  await build({ entryPoints: [entry], outfile, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'warning' });
  return outfile;
}

/**
 * Runs a TypeScript fixture as its own process: bundled (bundleFixture), then started with `node`
 * (default: the Node running the tests; a test passes the executables' Node,
 * scripts/shipped-node.mjs, for what only its V8 does). For what a process sets for itself once
 * (V8 flags, NODE_EXTRA_CA_CERTS) without touching the test's own process. Resolves with the exit
 * status and both outputs; the bundle is removed.
 */
export async function runBundledChild(
  entry: string,
  opts: { node?: string; args?: string[]; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const outfile = await bundleFixture(entry);
  try {
    // Not spawnSync: the child may talk to servers in the test's own process.
    const child = spawn(opts.node ?? process.execPath, [...(opts.args ?? []), outfile], {
      env: { PATH: process.env.PATH ?? '', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 60_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [status] = (await once(child, 'close')) as [number | null];
    return { status, stdout, stderr };
  } finally {
    rmSync(dirname(outfile), { recursive: true, force: true });
  }
}
