import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a build script in plain JavaScript
import { shippedNode } from '../../scripts/shipped-node.mjs';

// bin/compile-cache.ts: the service commands keep V8's compile cache in the user's cache folder.
// Run on the Node the executables carry (24: module.enableCompileCache exists from 22.1).

const CLI = join(import.meta.dirname, '../../dist/devstreams.mjs');
let node: string;
let home: string;

beforeAll(() => {
  node = shippedNode() as string;
  home = mkdtempSync(join(tmpdir(), 'devstreams-cache-'));
}, 600_000);
afterAll(() => rmSync(home, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string>): number | null {
  const r = spawnSync(node, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', HOME: home, ...env }, encoding: 'utf8', timeout: 60_000 });
  return r.status;
}

const UNREACHABLE = ['devices', '--hub', 'https://127.0.0.1:1', '--token', 'x'];

describe('compile cache', () => {
  it('a service command fills $XDG_CACHE_HOME/devstreams/compile-cache, made 0700', () => {
    const xdg = join(home, 'xdg');
    expect(run(UNREACHABLE, { XDG_CACHE_HOME: xdg })).toBe(1); // the hub is not there: exit 1, after loading everything
    const dir = join(xdg, 'devstreams', 'compile-cache');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const entries = readdirSync(dir, { recursive: true });
    expect(entries.length).toBeGreaterThan(1);
  });

  it('falls back to ~/.cache without XDG_CACHE_HOME', () => {
    expect(run(UNREACHABLE, {})).toBe(1);
    expect(existsSync(join(home, '.cache', 'devstreams', 'compile-cache'))).toBe(true);
  });

  it('NODE_DISABLE_COMPILE_CACHE turns it off; the daemons keep none', () => {
    const off = join(home, 'off');
    expect(run(UNREACHABLE, { XDG_CACHE_HOME: off, NODE_DISABLE_COMPILE_CACHE: '1' })).toBe(1);
    const daemon = join(home, 'daemon');
    expect(run(['agent', '--config', join(home, 'no-such.yaml')], { XDG_CACHE_HOME: daemon })).toBe(2);
    expect(existsSync(off) || existsSync(daemon)).toBe(false);
  });

  it('a cache folder that cannot be made changes nothing else', () => {
    expect(run(['--version'], { XDG_CACHE_HOME: '/proc/no-such-place' })).toBe(0);
  });
});
