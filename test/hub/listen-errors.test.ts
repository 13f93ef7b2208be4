import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../protocol/index.js';
import { runHubCli } from '../../hub/cli.js';
import { initHub } from '../../hub/init.js';
import { CLI } from '../helpers/proc.js';
import { tempDir } from './helpers.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function takenPort(): Promise<number> {
  const s: Server = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  cleanup.push(() => new Promise((r) => s.close(r)));
  return (s.address() as AddressInfo).port;
}

/** `under`: a folder other users can enter (the test run's own temporary folder is root's, 0700). */
function hubDir(listen: string, under?: string): { dir: string; file: string } {
  const dir = under === undefined ? tempDir() : mkdtempSync(join(under, 'devstreams-listen-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  initHub({ dir, listen });
  return { dir, file: join(dir, 'hub.yaml') };
}

async function startError(args: string[]): Promise<ConfigError> {
  const err = await runHubCli(args, { out: () => {}, err: () => {}, logDestination: { write: () => true } as never }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as Error).message).not.toContain('\n');
  return err as ConfigError;
}

describe('the hub cannot listen', () => {
  it("a port in use: names hub.yaml's listen and says another program or hub uses it", async () => {
    const port = await takenPort();
    const { file } = hubDir(`127.0.0.1:${port}`);
    const err = await startError(['--config', file]);
    expect(err.message).toMatch(
      new RegExp(`^${file}: listen: cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\): another program, or another hub, already uses this port .*change listen in ${file}$`),
    );
  });

  it('a port in use given with --listen: names the flag', async () => {
    const port = await takenPort();
    const { file } = hubDir('127.0.0.1:9591');
    const err = await startError(['--config', file, '--listen', `127.0.0.1:${port}`]);
    expect(err.message).toMatch(new RegExp(`^--listen: cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\): another program, or another hub.*change --listen$`));
  });

  const canDropToNobody = typeof process.getuid === 'function' && process.getuid() === 0;
  it.skipIf(!canDropToNobody)('a port below 1024 without the capability: says CAP_NET_BIND_SERVICE, the unit and its drop-ins', async () => {
    const { dir, file } = hubDir('127.0.0.1:1', '/tmp');
    const chownTree = (p: string): void => {
      chownSync(p, 65534, 65534);
      if (statSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(join(p, e));
    };
    chownTree(dir);
    // The hub as an unprivileged user (nobody), as under systemd without the capability.
    const child = spawn(process.execPath, [CLI, 'hub', '--config', file], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.resume();
    const [code] = (await once(child, 'close')) as [number | null];
    expect(code, stderr).toBe(2);
    expect(stderr).toContain(`${file}: listen: cannot listen on 127.0.0.1:1 (EACCES): ports below 1024 need the capability CAP_NET_BIND_SERVICE or root.`);
    expect(stderr).toContain('check that no drop-in emptied AmbientCapabilities= or CapabilityBoundingSet=');
    expect(stderr).toContain(`or use a port above 1023 in listen in ${file}`);
  });
});
