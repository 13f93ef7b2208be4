import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CliProcess, ROOT, freePort } from '../helpers/proc.js';
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

describe.skipIf(!canBuild)('the executable compiles only the role a command runs', () => {
  // scripts/build-binary.mjs: one program per role, as assets of the executable; each without the
  // other roles' code, so that `connect` and the agent do not compile or hold the hub's (sql.js, aedes).
  // Markers: a function that only one role's modules define.
  const markers = { hub: 'function runHubCli(', agent: 'function runAgentCli(', service: 'function runServiceCli(' } as const;
  const roles = Object.keys(markers) as Array<keyof typeof markers>;
  it.each(roles)('the %s program holds its own command and no other role\'s', async (role) => {
    await ensureBinaries();
    const code = readFileSync(join(ROOT, 'dist/sea', `devstreams-${role}.cjs`), 'utf8');
    for (const other of roles) expect(code.includes(markers[other]), `${other} in the ${role} program`).toBe(other === role);
  });
  // What keeps the programs small (protocol/zod.ts, scripts/build-binary.mjs REPLACED): Zod's
  // classic API, which cannot be tree-shaken, would add some 560 KB to each; mqtt.js's real SOCKS
  // client (with ip-address and smart-buffer) about 90 KB to the agent's and the hub's.
  it.each(roles)('the %s program carries Zod Mini, not Zod\'s classic API, nor a SOCKS client', async (role) => {
    await ensureBinaries();
    const code = readFileSync(join(ROOT, 'dist/sea', `devstreams-${role}.cjs`), 'utf8');
    expect(code.includes('$constructor("ZodMiniObject"'), 'Zod Mini').toBe(true);
    expect(code.includes('$constructor("ZodObject"'), "Zod's classic API").toBe(false);
    expect(code.includes('SocksClientError'), 'the socks package').toBe(false);
    if (role !== 'service') expect(code.includes('SOCKS proxies are not supported by this build'), 'the replacement').toBe(true);
    // ws's zlib is replaced in the agent's and the service side's programs: every WebSocket they
    // dial turns permessage-deflate off, while the hub's MQTT client may use it with an external broker.
    expect(code.includes('permessage-deflate is not supported by this build'), "ws's zlib replaced").toBe(role !== 'hub');
    // The agent's mqtt.js runs on Node's own streams, not on readable-stream's copy of them.
    if (role === 'agent') expect(code.includes('node_modules/readable-stream/'), 'readable-stream').toBe(false);
    // debug without its colours (no tty), and mqtt.js's browser checks answered ahead (no navigator).
    expect(code.includes('require("tty")'), 'tty').toBe(false);
    expect(code.includes('navigator.product'), "mqtt.js's browser checks").toBe(false);
    // The agent reads YAML only for its config: the parser is an asset of its own, compiled for each
    // read. The hub keeps it (hub.yaml); the service side reads no YAML.
    expect(code.includes('node_modules/yaml/'), 'the YAML parser').toBe(role === 'hub');
  });
});

