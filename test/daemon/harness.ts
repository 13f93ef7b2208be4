import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { expect } from 'vitest';
import { parse, stringify } from 'yaml';
import { DevstreamsClient } from '../../service/index.js';
import { CliProcess, freePort, runCli } from '../helpers/proc.js';

type Yaml = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * One hub and one agent as real processes (`hub init`, `add-device`, run), with hooks to edit the
 * hub's and the agent's YAML before they start, and to kill and restart the hub on its port.
 */
export class DaemonStack {
  readonly dir = mkdtempSync(join(tmpdir(), 'devstreams-daemon-'));
  hub!: CliProcess;
  agent!: CliProcess;
  /** Every agent startAgent started, for stop(). */
  private readonly started: CliProcess[] = [];
  port = 0;
  readonly deviceId = 'pi-daemon';

  get hubYaml(): string {
    return join(this.dir, 'hub.yaml');
  }
  get agentYaml(): string {
    return join(this.dir, 'devices', `${this.deviceId}.yaml`);
  }
  get token(): string {
    return readFileSync(join(this.dir, 'service.token'), 'utf8').trim();
  }

  /** Init and add the device; `hub` and `agent` edit the two configs (after add-device). */
  async setup(opts: { allow: string[]; hub?: (c: Yaml) => void; agent?: (c: Yaml) => void; publicPort?: number }): Promise<this> {
    this.port = await freePort();
    await mustRun(['hub', 'init', '--dir', this.dir, '--listen', `127.0.0.1:${this.port}`]);
    const hub = this.readYaml(this.hubYaml);
    // Stream churn in these tests is far above a device's normal request rate: lift the per-device
    // and per-token request rates where the hub has them.
    hub.limits = { ...(hub.limits ?? {}), streamRequestsPerDevicePerSecond: 10_000, streamRequestsPerTokenPerSecond: 10_000 };
    if (opts.publicPort) hub.publicUrl = `https://localhost:${opts.publicPort}`;
    opts.hub?.(hub);
    writeFileSync(this.hubYaml, stringify(hub), { mode: 0o600 });
    await mustRun(['hub', 'add-device', this.deviceId, '--config', this.hubYaml, ...opts.allow.flatMap((a) => ['--allow', a])]);
    const agent = this.readYaml(this.agentYaml);
    agent.hub.reconnect = { initialDelayMs: 100, maxDelayMs: 1000 };
    opts.agent?.(agent);
    writeFileSync(this.agentYaml, stringify(agent), { mode: 0o600 });
    return this;
  }

  readYaml(file: string): Yaml {
    return parse(readFileSync(file, 'utf8')) as Yaml;
  }

  editAgentYaml(edit: (c: Yaml) => void): void {
    const c = this.readYaml(this.agentYaml);
    edit(c);
    writeFileSync(this.agentYaml, stringify(c), { mode: 0o600 });
  }

  async startHub(): Promise<CliProcess> {
    this.hub = new CliProcess(['hub', '--config', this.hubYaml]);
    await this.hub.waitForLog('hub listening', {}, 60_000);
    return this.hub;
  }

  /**
   * Starts the agent (extra environment optional) and, with `wait`, waits until the hub has the device
   * online. The agent's "agent connected" line alone is not enough: it is written while the online
   * status is still on its way to the hub (mqtt.js sends it on the next tick), so a stream opened
   * right after the line can still be refused 503 DEVICE_OFFLINE on a loaded machine.
   */
  async startAgent(env: NodeJS.ProcessEnv = {}, wait = true): Promise<CliProcess> {
    this.agent = new CliProcess(['agent', '--config', this.agentYaml], env);
    this.started.push(this.agent);
    if (!wait) return this.agent;
    await this.agent.waitForLog('agent connected', {}, 60_000); // generous: a loaded CI machine
    await this.waitForDevice(true);
    return this.agent;
  }

  /** An SDK client; `port` defaults to the hub's own (not a proxy's). */
  client(port = this.port, pingIntervalMs?: number): DevstreamsClient {
    return new DevstreamsClient({
      hub: `https://localhost:${port}`,
      token: this.token,
      ca: readFileSync(join(this.dir, 'tls', 'ca.crt')),
      ...(pingIntervalMs !== undefined ? { pingIntervalMs } : {}),
    });
  }

  /** Polls the hub (bounded) until the device has the wanted presence and, optionally, open-stream count. */
  async waitForDevice(online: boolean, openStreams?: number, timeoutMs = 20_000): Promise<void> {
    const client = this.client();
    try {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const d = await client.listDevices().then((l) => l.find((x) => x.id === this.deviceId), () => undefined);
        if (d && d.online === online && (openStreams === undefined || d.openStreams === openStreams)) return;
        if (Date.now() > deadline) throw new Error(`device not ${online ? 'online' : 'offline'}${openStreams !== undefined ? ` with ${openStreams} streams` : ''}: ${JSON.stringify(d)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      client.close();
    }
  }

  /** Stops the hub and every agent started (a test that failed before stopping its own leaves none running). */
  async stop(): Promise<void> {
    for (const a of new Set([...this.started, this.agent].filter(Boolean))) await a.stop('SIGKILL');
    await this.hub?.stop('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Open descriptors and sockets of a process, from /proc (shared with the soak). */
export { fdCounts } from '../../scripts/proc-stats.mjs';

async function mustRun(args: string[]): Promise<void> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`devstreams ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
}

/** Writes `n` random-ish bytes and reads the echo back; resolves when all of them came back equal. */
export async function echoRoundTrip(s: Duplex, n = 64 * 1024): Promise<void> {
  const data = Buffer.alloc(n, Math.floor(Math.random() * 256));
  for (let i = 0; i < n; i += 997) data[i] = i & 0xff;
  const chunks: Buffer[] = [];
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        s.off('data', onData);
        s.off('error', reject);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('error', reject);
  });
  s.write(data);
  await done;
  expect(Buffer.concat(chunks).equals(data)).toBe(true);
}

