import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '../protocol/index.js';
import type { HubMqttConfig } from './config.js';
import type { ControlBus, MessageHandler, PublishOptions } from './control-bus.js';

/**
 * ControlBus on an external MQTT broker (hub config `mqtt`): one mqtt.js connection per hub node,
 * with the hub's own broker account. Subscriptions are kept across reconnects (mqtt.js
 * resubscribes; retained status messages then arrive again). A publish while the connection is
 * down fails at once (the caller answers 503) instead of queueing a stale stream request.
 */

const MQTT_REFUSED: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'client id rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
  134: 'bad user name or password',
  135: 'not authorized',
};

/** True if `topic` matches the MQTT filter (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

export class MqttControlBus implements ControlBus {
  private readonly config: HubMqttConfig;
  private readonly clientId: string;
  private readonly log: Logger;
  private client: MqttClient | null = null;
  private readonly handlers = new Map<string, Set<MessageHandler>>();
  private stopping: Promise<void> | null = null;

  constructor(opts: { config: HubMqttConfig; clientId: string; log: Logger }) {
    this.config = opts.config;
    this.clientId = opts.clientId;
    this.log = opts.log.child({ component: 'control-bus' });
  }

  /** Connects; rejects with a clear reason if the broker cannot be reached or refuses the hub's account. */
  async start(): Promise<void> {
    if (this.client) return;
    const c = this.config;
    const password = c.password ?? readSecret(c.passwordFile!);
    const opts: IClientOptions = {
      clientId: this.clientId,
      username: c.username,
      password,
      clean: true,
      keepalive: 30,
      reconnectPeriod: 1000,
      connectTimeout: c.connectTimeoutMs,
      protocolVersion: 4,
      resubscribe: true,
      queueQoSZero: false,
      ...(c.ca ? { ca: readFileSync(c.ca) } : {}),
      rejectUnauthorized: true,
    };
    const client = mqtt.connect(c.url, opts);
    this.client = client;
    client.on('message', (topic, payload) => this.deliver(topic, payload));
    // No Nagle on the small, latency-bound packets (mqtt.js leaves it on for mqtt:// and mqtts://):
    // measured with Mosquitto in the commit that added this.
    client.on('connect', () => (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true));
    client.on('close', () => this.log.debug('broker connection closed'));
    client.on('offline', () => this.log.warn({ url: c.url }, 'broker connection lost; reconnecting'));
    client.on('reconnect', () => this.log.debug('reconnecting to the broker'));
    client.on('error', (err) => this.log.warn({ err: describe(err) }, 'broker connection error'));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`no answer from ${c.url} within ${c.connectTimeoutMs} ms`)), c.connectTimeoutMs);
        const onConnect = (): void => done();
        const onError = (err: Error): void => done(new Error(describe(err)));
        function done(err?: Error): void {
          clearTimeout(timer);
          client.off('connect', onConnect);
          client.off('error', onError);
          if (err) reject(err);
          else resolve();
        }
        client.once('connect', onConnect);
        client.once('error', onError);
      });
    } catch (err) {
      this.client = null;
      client.end(true);
      throw new Error(`mqtt.url: cannot connect to the broker as "${c.username}": ${(err as Error).message}`);
    }
    client.on('connect', () => this.log.info({ url: c.url }, 'broker connection restored'));
    this.log.info({ url: c.url, clientId: this.clientId }, 'connected to the external broker');
  }

  /** Whether the broker connection is up now. */
  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  async stop(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.stopping ??= client.endAsync().catch(() => undefined);
    await this.stopping;
  }

  async publish(topic: string, payload: string | Buffer, opts: PublishOptions): Promise<void> {
    const client = this.client;
    if (!client || !client.connected) throw new Error('the broker connection is down');
    await client.publishAsync(topic, payload, { qos: opts.qos, retain: opts.retain ?? false });
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>> {
    const client = this.client;
    if (!client) throw new Error('control bus is not started');
    let set = this.handlers.get(filter);
    if (!set) {
      set = new Set();
      this.handlers.set(filter, set);
    }
    const first = set.size === 0;
    set.add(handler);
    if (first) {
      const granted = await client.subscribeAsync(filter, { qos: 1 });
      const refused = granted.find((g) => g.qos === 128);
      if (refused) {
        set.delete(handler);
        throw new Error(
          `the broker refused the hub's subscription to ${filter}: the hub's broker account must be allowed to subscribe to ` +
            `devstreams/v1/devices/+/status and devstreams/v1/devices/+/streams/response/+ (the README's "Fleet scale")`,
        );
      }
    }
    return async () => {
      const s = this.handlers.get(filter);
      if (!s?.delete(handler) || s.size > 0) return;
      this.handlers.delete(filter);
      if (this.client?.connected && !this.stopping) await this.client.unsubscribeAsync(filter).catch(() => undefined);
    };
  }

  private deliver(topic: string, payload: Buffer): void {
    for (const [filter, set] of this.handlers) {
      if (!topicMatches(filter, topic)) continue;
      for (const handler of set) {
        try {
          handler(topic, payload);
        } catch (err) {
          this.log.error({ topic, err: (err as Error).message }, 'control message handler failed');
        }
      }
    }
  }
}

function readSecret(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new Error(`mqtt.passwordFile: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function describe(err: Error): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'number' && MQTT_REFUSED[code]) {
    // 4/5 (134/135 in MQTT 5): the hub's own account; say where it is set.
    const login = [4, 5, 134, 135].includes(code) ? ' (check mqtt.username and mqtt.passwordFile or mqtt.password in hub.yaml, and the account on the broker)' : '';
    return `broker refused the connection: ${MQTT_REFUSED[code]}${login}`;
  }
  if (typeof code === 'string') return `${code}: ${err.message}`;
  return err.message;
}
