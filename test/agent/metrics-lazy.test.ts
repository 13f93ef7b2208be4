import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub } from './fake-hub.js';
import { captureLog } from './helpers.js';

/**
 * prom-client (and the metrics listener) are loaded only by an agent whose config sets
 * metrics.listen (issue 6: idle footprint). Node's CommonJS cache says whether prom-client was
 * loaded in this test process (vitest runs each file in its own process).
 */
let tls: TestTls;
let hub: FakeHub;
let dir: string;
const agents: Agent[] = [];
const promClientLoaded = (): boolean => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes('/node_modules/prom-client/'));

beforeAll(async () => {
  tls = makeTestTls();
  hub = new FakeHub(tls);
  await hub.start();
  dir = mkdtempSync(join(tmpdir(), 'devstreams-metrics-lazy-'));
  writeFileSync(join(dir, 'ca.pem'), tls.ca);
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  await hub?.stop();
});

async function startAgent(id: string, extra: string): Promise<Agent> {
  writeFileSync(join(dir, `${id}.key`), hub.addDevice(id));
  const file = join(dir, `${id}.yaml`);
  writeFileSync(file, `hub:\n  url: ${hub.url}\n  deviceId: ${id}\n  keyFile: ${id}.key\n  ca: ca.pem\nallow:\n  - { name: echo, builtin: echo }\n${extra}`, { mode: 0o600 });
  const agent = new Agent({ config: loadAgentConfig(file), log: captureLog().log });
  agents.push(agent);
  await agent.start();
  await agent.waitConnected();
  return agent;
}

describe('agent metrics, loaded on demand', () => {
  it('an agent without metrics.listen never loads prom-client; one with it does and serves /metrics', async () => {
    const plain = await startAgent('lazy-a', '');
    expect(plain.metrics).toBeNull();
    expect(plain.metricsServer).toBeNull();
    expect(promClientLoaded()).toBe(false);

    const observed = await startAgent('lazy-b', 'metrics:\n  listen: 127.0.0.1:0\n');
    expect(promClientLoaded()).toBe(true);
    const res = await fetch(`http://127.0.0.1:${observed.metricsServer!.port}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^devstreams_agent_control_connected 1$/m);
  });
});
