import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import { revokeKey, rotateKey } from '../../hub/device-admin.js';
import { startTestHub, tempDir, until, type TestHub } from '../hub/helpers.js';
import { newSecret } from '../../protocol/index.js';
import { captureLog } from './helpers.js';

/**
 * `hub rotate-key`, the new key copied to the device, `systemctl reload` (SIGHUP), `hub revoke-key`
 * of the old: the agent proves the new key at its next connection, with no restart. Before, the
 * reload reported `needRestart: ["hub.key"]` and the agent, dropped by the hub when the old key was
 * revoked, retried with the old key until restarted.
 */
let t: TestHub;
let agent: Agent | undefined;
const DEVICE = 'pi-rot';
const others: Agent[] = [];

beforeAll(async () => {
  t = await startTestHub();
});
afterAll(async () => {
  for (const a of others) await a.stop();
  await agent?.stop();
  await t?.stop();
});

describe('a rotated device key, reloaded', () => {
  it('is used from the next connection: the agent is back online after the old key is revoked', async () => {
    const dir = tempDir('devstreams-agent-key-');
    const keyFile = join(dir, 'device.key');
    writeFileSync(keyFile, `${t.addDevice(DEVICE)}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.crt'), t.ca);
    const configFile = join(dir, 'agent.yaml');
    writeFileSync(
      configFile,
      ['hub:', `  url: wss://localhost:${t.port}/mqtt`, `  deviceId: ${DEVICE}`, '  keyFile: device.key', '  ca: ca.crt',
        '  reconnect: { initialDelayMs: 50, maxDelayMs: 200 }', 'allow:', '  - { name: echo, builtin: echo }'].join('\n'),
    );
    const logs = captureLog();
    agent = new Agent({ config: loadAgentConfig(configFile), log: logs.log });
    await agent.start();
    await agent.waitConnected();

    const hubYaml = join(t.dir, 'hub.yaml');
    const rotated = rotateKey({ configFile: hubYaml, deviceId: DEVICE, slot: 'secondary' });
    writeFileSync(keyFile, readFileSync(rotated.keyFile!), { mode: 0o600 });
    const result = agent.reload(loadAgentConfig(configFile));
    expect(result.needRestart).toEqual([]);
    expect(logs.lines.find((l) => l.msg?.startsWith('config reloaded'))).toMatchObject({ keyChanged: 'used from the next connection' });
    expect(agent.connected).toBe(true); // the connection that is up stays

    const before = logs.lines.length;
    revokeKey({ configFile: hubYaml, deviceId: DEVICE, slot: 'primary' }); // the hub drops the old key's session
    await logs.waitFor((l) => logs.lines.indexOf(l) >= before && l.msg === 'control channel disconnected');
    await logs.waitFor((l) => logs.lines.indexOf(l) >= before && l.msg === 'agent connected');
    await until(() => t.hub.presence.isOnline(DEVICE), 5000, 'online again');
    expect(logs.lines.slice(before).filter((l) => l.msg === 'control channel error' && l.code === 4)).toEqual([]);
    expect(logs.text()).not.toContain(readFileSync(rotated.keyFile!, 'utf8').trim());
  });
});

/** A device whose keyFile holds `key` (mode 0600), and its agent config; reconnect delays as given. */
function deviceWithKey(id: string, key: string, reconnect: string): { keyFile: string; configFile: string } {
  const dir = tempDir('devstreams-agent-key-');
  const keyFile = join(dir, 'device.key');
  writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.crt'), t.ca);
  const configFile = join(dir, 'agent.yaml');
  writeFileSync(
    configFile,
    ['hub:', `  url: wss://localhost:${t.port}/mqtt`, `  deviceId: ${id}`, '  keyFile: device.key', '  ca: ca.crt',
      `  reconnect: ${reconnect}`, 'allow: []'].join('\n'),
  );
  return { keyFile, configFile };
}

describe('an agent refused with an old key (code 4)', () => {
  it('a reload that brings the new key reconnects at once, not after the rest of its backoff (here up to 60 s)', async () => {
    const key = t.addDevice('pi-late');
    const { keyFile, configFile } = deviceWithKey('pi-late', newSecret(), '{ initialDelayMs: 60000, maxDelayMs: 60000 }');
    const logs = captureLog();
    const a = new Agent({ config: loadAgentConfig(configFile), log: logs.log });
    others.push(a);
    await a.start();
    await logs.waitFor((l) => l.msg === 'control channel error' && l.code === 4);
    const waiting = await logs.waitFor((l) => l.msg === 'control channel reconnecting');
    writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    const started = Date.now();
    a.reload(loadAgentConfig(configFile));
    expect(logs.lines.find((l) => l.msg?.startsWith('config reloaded'))).toMatchObject({ keyChanged: 'used now: reconnecting' });
    expect(logs.lines.find((l) => l.msg === 'control channel reconnecting now')).toMatchObject({ why: 'the device key changed' });
    await a.waitConnected();
    // Well inside the backoff the agent was waiting out (unless the draw happened to be short).
    expect(Date.now() - started).toBeLessThan(Math.max(5000, Number(waiting.delayMs)));
    await until(() => t.hub.presence.isOnline('pi-late'), 5000, 'online');
  });

  it('when keyFile on disk holds another key than the one in use, the hint says to reload the agent', async () => {
    const key = t.addDevice('pi-stale');
    const { keyFile, configFile } = deviceWithKey('pi-stale', newSecret(), '{ initialDelayMs: 20, maxDelayMs: 100 }');
    const logs = captureLog();
    const a = new Agent({ config: loadAgentConfig(configFile), log: logs.log });
    others.push(a);
    await a.start();
    const first = await logs.waitFor((l) => l.msg === 'control channel error' && l.code === 4 && l.level === 40);
    expect(String(first.hint)).toContain('check hub.deviceId and hub.keyFile');
    writeFileSync(keyFile, `${key}\n`, { mode: 0o600 }); // rotated on disk, not reloaded
    const stale = await logs.waitFor((l) => l.msg === 'control channel error' && l.code === 4 && l.level === 40 && l !== first);
    expect(stale.hint).toBe(`hub.keyFile ${keyFile} changed since the agent read it: reload the agent (systemctl reload devstreams-agent, or kill -HUP its pid) to use the key it holds now`);
    expect(logs.text()).not.toContain(key);
    a.reload(loadAgentConfig(configFile));
    await a.waitConnected();
  });
});
