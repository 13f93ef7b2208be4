import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { DeviceInfo } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import { CliProcess, freePort, runCli } from './proc.js';

export interface DeviceSpec {
  id: string;
  /** `--allow` values for `hub add-device`: `NAME=[HOST:]PORT` or `echo`. */
  allow: string[];
  limits?: { maxStreams?: number; connectTimeoutMs?: number };
  /** Start its agent (default true). */
  start?: boolean;
}

/** An external MQTT broker for the stack (test/fleet/mosquitto.ts): started after `hub init`. */
export interface StackBroker {
  /** Starts the broker using the stack's folder (its TLS files); resolves to the hub config's `mqtt` section. */
  setUp(dir: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** A hub and its agents as real processes, set up the way a user does it: init, add-device, run. */
export class Stack {
  readonly dir = mkdtempSync(join(tmpdir(), 'devstreams-e2e-'));
  hub!: CliProcess;
  port = 0;
  readonly agents = new Map<string, CliProcess>();
  /** With a broker, the hub uses it instead of its embedded one (hub config `mqtt`). */
  constructor(readonly opts: { broker?: StackBroker } = {}) {}

  get hubUrl(): string {
    return `https://localhost:${this.port}`;
  }
  get token(): string {
    return readFileSync(join(this.dir, 'service.token'), 'utf8').trim();
  }
  get caFile(): string {
    return join(this.dir, 'tls', 'ca.crt');
  }
  /** The environment a service-side shell gets from `hub init`'s export lines. */
  get env(): NodeJS.ProcessEnv {
    return { DEVSTREAMS_HUB: this.hubUrl, DEVSTREAMS_TOKEN: this.token, DEVSTREAMS_CA: this.caFile };
  }
  agentConfig(id: string): string {
    return join(this.dir, 'devices', `${id}.yaml`);
  }

  async start(devices: DeviceSpec[]): Promise<this> {
    this.port = await freePort();
    await mustRun(['hub', 'init', '--dir', this.dir, '--listen', `127.0.0.1:${this.port}`]);
    if (this.opts.broker) {
      const file = join(this.dir, 'hub.yaml');
      const cfg = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      cfg.mqtt = await this.opts.broker.setUp(this.dir);
      writeFileSync(file, stringify(cfg), { mode: 0o600 });
    }
    for (const d of devices) await this.addDevice(d);
    this.hub = new CliProcess(['hub', '--config', join(this.dir, 'hub.yaml')]);
    await this.hub.waitForLog('hub listening');
    for (const d of devices) if (d.start !== false) await this.startAgent(d.id);
    return this;
  }

  async addDevice(d: DeviceSpec): Promise<void> {
    await mustRun(['hub', 'add-device', d.id, '--config', join(this.dir, 'hub.yaml'), ...d.allow.flatMap((a) => ['--allow', a])]);
    if (d.limits) {
      const file = this.agentConfig(d.id);
      const cfg = parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
      cfg.limits = { ...cfg.limits, ...d.limits };
      writeFileSync(file, stringify(cfg), { mode: 0o600 });
    }
  }

  /** Starts the device's agent (with `env` added to its environment) and waits until the hub sees it online. */
  async startAgent(id: string, env: NodeJS.ProcessEnv = {}): Promise<CliProcess> {
    const agent = new CliProcess(['agent', '--config', this.agentConfig(id)], env);
    this.agents.set(id, agent);
    await agent.waitForLog('agent connected');
    await this.waitForDevice(id, true);
    return agent;
  }

  /** An SDK client for this hub (the caller closes it). */
  client(): DevstreamsClient {
    return new DevstreamsClient({ hub: this.hubUrl, token: this.token, ca: readFileSync(this.caFile) });
  }

  /** Polls the hub's device list (bounded) until the device has the wanted state. */
  async waitForDevice(id: string, online: boolean, timeoutMs = 15_000): Promise<void> {
    await this.waitForDeviceInfo(id, (d) => d.online === online, `${online ? 'online' : 'offline'}`, timeoutMs);
  }

  /** Polls the hub's device list (bounded) until `pred` holds for the device. */
  async waitForDeviceInfo(id: string, pred: (d: DeviceInfo) => boolean, what: string, timeoutMs = 15_000): Promise<DeviceInfo> {
    const client = this.client();
    try {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const d = (await client.listDevices()).find((x) => x.id === id);
        if (d && pred(d)) return d;
        if (Date.now() > deadline) throw new Error(`device ${id} not ${what}: ${JSON.stringify(d)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      client.close();
    }
  }

  async stop(): Promise<void> {
    for (const a of this.agents.values()) await a.stop();
    if (this.hub) await this.hub.stop();
    if (this.opts.broker) await this.opts.broker.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function mustRun(args: string[]): Promise<void> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`devstreams ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
}
