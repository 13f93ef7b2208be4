import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CliProcess, freePort } from '../helpers/proc.js';
import { canBuild, command, ensureBinaries, run, runnerFor } from './binaries.js';
import { executableSuite } from './exe-suite.js';

// The x64 executable natively, as agent and as ssh's ProxyCommand (`devstreams connect`).
executableSuite('x64', { serviceSide: 'executable' });

describe.skipIf(!runnerFor('x64') || !canBuild)('the x64 single executable holds the hub too', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-exe-hub-'));
  let hub: CliProcess | undefined;
  afterAll(async () => {
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('hub init, hub, and a fleet query, all from the executable', async () => {
    await ensureBinaries();
    const exe = command('x64');
    const port = await freePort();
    const init = await run([...exe, 'hub', 'init', '--dir', dir, '--listen', `127.0.0.1:${port}`]);
    expect(init.code, init.stderr).toBe(0);
    hub = new CliProcess(['hub', '--config', join(dir, 'hub.yaml')], {}, exe);
    await hub.waitForLog('hub listening');
    const token = readFileSync(join(dir, 'service.token'), 'utf8').trim();
    const env = { DEVSTREAMS_HUB: `https://localhost:${port}`, DEVSTREAMS_TOKEN: token, DEVSTREAMS_CA: join(dir, 'tls/ca.crt') };
    const devices = await run([...exe, 'devices', '--json'], { env });
    expect(devices.code, devices.stderr).toBe(0);
    expect(JSON.parse(devices.stdout.toString())).toEqual([]);
  }, 10 * 60_000);
});
