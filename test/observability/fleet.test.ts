import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { DeviceStatusSchema, DeviceSystemSchema, HubEndpointsSchema, LIMITS, StreamListSchema } from '../../protocol/index.js';
import { CliProcess, runCli } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { parsePrometheusText, valueOf, type Family } from './prom-text.js';

/**
 * The fleet as an operator sees it, against a real hub and real agents: device status, stream
 * history (surviving a restart), /metrics, the agent's metrics listener, endpoints, and a device
 * that vanishes (SIGKILL) or goes silent (SIGSTOP) shown offline within the keep-alive.
 */

let stack: Stack;
let obs: CliProcess;
let agentMetricsPort = 0;
const KEEPALIVE_SEC = 2;

function configureAgent(id: string, extra: Record<string, Record<string, unknown>>): void {
  const file = stack.agentConfig(id);
  const cfg = parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
  for (const [k, v] of Object.entries(extra)) cfg[k] = { ...cfg[k], ...v };
  writeFileSync(file, stringify(cfg), { mode: 0o600 });
}

function get(url: string, token?: string): Promise<{ status: number; body: string; type: string }> {
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      { ca: readFileSync(stack.caFile), headers: token ? { authorization: `Bearer ${token}` } : {}, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function hubMetrics(): Promise<Map<string, Family>> {
  const r = await get(`${stack.hubUrl}/metrics`, stack.token);
  expect(r.status).toBe(200);
  expect(r.type).toContain('text/plain');
  return parsePrometheusText(r.body);
}

async function agentMetrics(): Promise<Map<string, Family>> {
  const r = await get(`http://127.0.0.1:${agentMetricsPort}/metrics`);
  expect(r.status).toBe(200);
  return parsePrometheusText(r.body);
}

beforeAll(async () => {
  stack = new Stack();
  await stack.start([
    { id: 'pi-obs', allow: ['echo'], start: false },
    { id: 'pi-silent', allow: ['echo'], start: false },
  ]);
  configureAgent('pi-obs', { hub: { keepaliveSec: KEEPALIVE_SEC }, metrics: { listen: '127.0.0.1:0' } });
  configureAgent('pi-silent', { hub: { keepaliveSec: KEEPALIVE_SEC } });
  obs = await stack.startAgent('pi-obs');
  agentMetricsPort = Number((await obs.waitForLog('agent metrics listening')).port);
  await stack.startAgent('pi-silent');
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('device status', () => {
  it("a real agent's status carries its machine's facts, typed, well under the payload limit", async () => {
    const d = await stack.waitForDeviceInfo('pi-obs', () => true, 'known');
    const client = stack.client();
    let full;
    try {
      const deadline = Date.now() + 20_000;
      for (;;) {
        full = await client.getDevice('pi-obs');
        if (full.system?.kernel && full.system.memAvailableBytes !== null) break;
        if (Date.now() > deadline) throw new Error(`status never carried the probes: ${JSON.stringify(full)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      client.close();
    }
    expect(d.online).toBe(true);
    const s = DeviceSystemSchema.parse(full.system); // strict: every field present, typed, bounded
    expect(s.kernel).toBe(os.release());
    expect(s.arch).toBe(os.arch());
    expect(s.hostname).toBe(os.hostname());
    expect(s.memTotalBytes).toBe(os.totalmem());
    expect(s.cpuCount).toBe(os.cpus().length);
    expect(typeof s.os).toBe('string');
    expect(s.uptimeSec).toBeGreaterThan(0);
    expect(s.agentUptimeSec).toBeGreaterThanOrEqual(0);
    expect(s.loadAvg).toHaveLength(3);
    expect(s.diskTotalBytes).toBeGreaterThan(0);
    expect(s.diskUsedBytes).toBeGreaterThan(0);
    expect(s.cpuTempC === null || typeof s.cpuTempC === 'number').toBe(true);
    expect(s.interfaces!.length).toBeLessThanOrEqual(LIMITS.maxStatusInterfaces);
    expect(full.agentVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(full.lastError).toBeNull();
    const status = { v: 1, online: true, at: Date.now(), agentVersion: full.agentVersion!, openStreams: 0, system: s, lastError: null };
    expect(DeviceStatusSchema.parse(status)).toBeTruthy();
    expect(Buffer.byteLength(JSON.stringify(status))).toBeLessThan(LIMITS.maxControlPayloadBytes / 2);

    const one = await runCli(['device', 'pi-obs', '--json'], { env: stack.env });
    expect(one.code).toBe(0);
    expect(JSON.parse(one.stdout)).toMatchObject({ id: 'pi-obs', online: true, system: { kernel: os.release() } });
    const text = await runCli(['device', 'pi-obs'], { env: stack.env });
    expect(text.stdout).toMatch(new RegExp(`^kernel: +${os.release().replace(/[.+]/g, '\\$&')}$`, 'm'));
    expect(text.stdout).toMatch(/^state: +online$/m);
    const table = await runCli(['devices'], { env: stack.env });
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +STATE +LAST SEEN +VERSION +SYSTEM UPTIME +STREAMS$/);
    // LAST SEEN: `just now` under a second (service/tables.ts), else `12s ago` and the like.
    expect(table.stdout).toMatch(/^pi-obs +online +(just now|\S+( ago)?) +\d+\.\d+\.\d+\S* +\d+(ms|\.\d+s|m\d\ds|h\d\dm|\.\ds) +0$/m);
    const unknown = await runCli(['device', 'ghost'], { env: stack.env });
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('no device "ghost"');
  }, 40_000);
});

describe('stream history and metrics', () => {
  it('records every stream with who asked, filters it, and moves the counters', async () => {
    const before = await hubMetrics();
    const agentBefore = await agentMetrics();
    const n = (m: Map<string, Family>, name: string, labels: Record<string, string> = {}) => valueOf(m, name, labels) ?? 0;
    const startedAt = Date.now();
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['echo', 'pi-obs', '--bytes', '100000'], { env: stack.env });
      expect(r.code, r.stderr).toBe(0);
    }
    const refused = await runCli(['connect', 'pi-obs', 'ssh'], { env: stack.env });
    expect(refused.code).not.toBe(0);
    const bad = await get(`${stack.hubUrl}/api/v1/devices`, 'x'.repeat(43));
    expect(bad.status).toBe(401);
    expect((await get(`${stack.hubUrl}/metrics`)).status).toBe(401);

    // The echo's record is written when its relay legs close, a moment after the CLI exits.
    const client = stack.client();
    let mine;
    try {
      const deadline = Date.now() + 10_000;
      for (;;) {
        mine = await client.listStreams({ device: 'pi-obs', since: startedAt });
        if (mine.length >= 3 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(mine.map((s) => s.result).sort()).toEqual(['ok', 'ok', 'refused']);
      const names = new Set(mine.map((s) => s.requestedBy));
      expect(names.size).toBe(1);
      expect(typeof [...names][0]).toBe('string');
      for (const s of mine.filter((x) => x.result === 'ok')) {
        expect(s.bytesToDevice).toBe(100_000);
        expect(s.bytesFromDevice).toBe(100_000);
        expect(s.closedAt).toBeGreaterThanOrEqual(s.openedAt);
      }
      const denied = await client.listStreams({ device: 'pi-obs', result: 'refused' });
      expect(denied).toHaveLength(1);
      expect(denied[0]).toMatchObject({ status: 403, code: 'SERVICE_DENIED', service: 'ssh' });
      expect(await client.listStreams({ since: Date.now() + 60_000 })).toEqual([]);
      expect(await client.listStreams({ device: 'pi-silent' })).toEqual([]);
      expect(await client.listStreams({ limit: 1 })).toHaveLength(1);
    } finally {
      client.close();
    }
    const cli = await runCli(['streams', '--device', 'pi-obs', '--since', '1h', '--result', 'refused', '--json'], { env: stack.env });
    expect(cli.code, cli.stderr).toBe(0);
    expect(StreamListSchema.shape.streams.parse(JSON.parse(cli.stdout)).map((s) => s.code)).toEqual(['SERVICE_DENIED']);
    const badSince = await runCli(['streams', '--since', 'yesterday'], { env: stack.env });
    expect(badSince.code).not.toBe(0);
    expect(badSince.stderr).toContain('--since');
    const badQuery = await get(`${stack.hubUrl}/api/v1/streams?result=maybe`, stack.token);
    expect(badQuery.status).toBe(400);
    expect(badQuery.body).toContain('result');

    const after = await hubMetrics();
    const d = (name: string, labels: Record<string, string> = {}) => n(after, name, labels) - n(before, name, labels);
    expect(d('devstreams_hub_streams_total', { result: 'ok' })).toBe(2);
    expect(d('devstreams_hub_streams_total', { result: 'refused' })).toBe(1);
    expect(d('devstreams_hub_relayed_bytes_total', { direction: 'to_device' })).toBe(200_000);
    expect(d('devstreams_hub_relayed_bytes_total', { direction: 'from_device' })).toBe(200_000);
    expect(d('devstreams_hub_stream_setup_seconds_count')).toBe(2);
    expect(d('devstreams_hub_auth_failures_total', { endpoint: 'api' })).toBe(1);
    expect(d('devstreams_hub_auth_failures_total', { endpoint: 'metrics' })).toBe(1);
    expect(n(after, 'devstreams_hub_devices_online')).toBe(2);
    expect(n(after, 'devstreams_hub_streams_open')).toBe(0);
    // The agent carried the echo streams on its multiplexed connection, open until an idle minute
    // passes; `devstreams echo` opens its one stream without one.
    expect(n(after, 'devstreams_hub_mux_connections', { side: 'device' })).toBe(1);
    expect(n(after, 'devstreams_hub_mux_connections', { side: 'service' })).toBe(0);
    expect(after.get('devstreams_hub_stream_setup_seconds')?.type).toBe('histogram');
    expect(valueOf(after, 'devstreams_hub_handshake_timeouts_total', { stage: 'device' })).toBeDefined();

    const agentAfter = await agentMetrics();
    const a = (name: string, labels: Record<string, string> = {}) => n(agentAfter, name, labels) - n(agentBefore, name, labels);
    expect(a('devstreams_agent_stream_requests_total', { code: 'OK' })).toBe(2);
    expect(a('devstreams_agent_stream_requests_total', { code: 'SERVICE_DENIED' })).toBe(1);
    expect(a('devstreams_agent_stream_bytes_total', { direction: 'to_target' })).toBe(200_000);
    expect(a('devstreams_agent_stream_bytes_total', { direction: 'from_target' })).toBe(200_000);
    expect(n(agentAfter, 'devstreams_agent_control_connected')).toBe(1);
    expect(n(agentAfter, 'devstreams_agent_control_last_connected_seconds')).toBeGreaterThan(startedAt / 1000 - 120);
  }, 60_000);

  it('prints the public endpoints for firewall rules', async () => {
    const r = await runCli(['endpoints'], { env: stack.env });
    expect(r.code, r.stderr).toBe(0);
    const e = HubEndpointsSchema.parse(JSON.parse(r.stdout));
    expect(e).toMatchObject({
      api: `${stack.hubUrl}/api/v1`,
      mqttWebSocket: `wss://localhost:${stack.port}/mqtt`,
      streaming: `wss://localhost:${stack.port}/api/v1/streams/{streamId}/connect`,
      mqtts: null,
    });
    expect(e.ports).toEqual([expect.objectContaining({ port: stack.port, protocol: 'tcp' })]);
  });

  it('keeps the history across a hub restart', async () => {
    const client = stack.client();
    const before = (await client.listStreams()).map((s) => s.streamId);
    client.close();
    expect(before.length).toBeGreaterThanOrEqual(3);
    await stack.hub.stop();
    stack.hub = new CliProcess(['hub', '--config', join(stack.dir, 'hub.yaml')]);
    await stack.hub.waitForLog('hub listening');
    const again = stack.client();
    try {
      expect((await again.listStreams()).map((s) => s.streamId)).toEqual(before);
      expect((await again.listStreams({ result: 'refused' })).map((s) => s.code)).toEqual(['SERVICE_DENIED']);
    } finally {
      again.close();
    }
    await stack.waitForDevice('pi-obs', true, 20_000);
    await stack.waitForDevice('pi-silent', true, 20_000);
  }, 60_000);
});

describe('devices that vanish', () => {
  it('a silent device (SIGSTOP) is offline within 1.5 keep-alives; a killed one (SIGKILL) at once', async () => {
    const silent = stack.agents.get('pi-silent')!;
    const t0 = Date.now();
    silent.child.kill('SIGSTOP');
    try {
      await stack.waitForDevice('pi-silent', false, KEEPALIVE_SEC * 1500 + 5000);
    } finally {
      silent.child.kill('SIGKILL');
    }
    const silentMs = Date.now() - t0;
    expect(silentMs).toBeLessThanOrEqual(KEEPALIVE_SEC * 1500 + 5000);

    const t1 = Date.now();
    obs.child.kill('SIGKILL');
    await stack.waitForDevice('pi-obs', false, KEEPALIVE_SEC * 1500 + 2000);
    expect(Date.now() - t1).toBeLessThanOrEqual(KEEPALIVE_SEC * 1500 + 2000);
    // Offline, but what it last said about itself is kept for the operator.
    const client = stack.client();
    try {
      const d = await client.getDevice('pi-obs');
      expect(d).toMatchObject({ online: false, openStreams: 0 });
      expect(d.system?.kernel).toBe(os.release());
    } finally {
      client.close();
    }
    const m = await hubMetrics();
    expect(valueOf(m, 'devstreams_hub_devices_online')).toBe(0);
  }, 30_000);
});
