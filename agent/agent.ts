import { EventEmitter } from 'node:events';
import { rootCertificates } from 'node:tls';
import type { Logger } from '../protocol/index.js';
import { Allowlist } from './allowlist.js';
import type { AgentConfig } from './config.js';
import { ControlChannel } from './control-channel.js';
import { RelayDialer } from './relay-dialer.js';
import { StreamRequestHandler } from './stream-request-handler.js';
import { StreamTable } from './stream-table.js';
import { TargetDialer } from './target-dialer.js';

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  /** MQTT reconnect delay (default 2 s). */
  reconnectPeriodMs?: number;
}

/**
 * The device daemon's composition root. Builds its components (no I/O), starts them in order
 * (streams, request handler, control channel) and stops them in reverse: stop accepting requests,
 * close the control channel (retained offline status), then end the open streams.
 * Events: 'connected' and 'disconnected' (the control channel).
 */
export class Agent extends EventEmitter {
  readonly deviceId: string;
  private readonly allow: AgentConfig['allow'];
  private readonly log: Logger;
  private readonly table: StreamTable;
  private readonly handler: StreamRequestHandler;
  private readonly channel: ControlChannel;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(opts: AgentOptions) {
    super();
    const { config } = opts;
    this.deviceId = config.hub.deviceId;
    this.allow = config.allow;
    this.log = opts.log.child({ deviceId: this.deviceId });
    // The configured CA is an extra trust anchor: it adds to the system's roots, never replaces them.
    const ca = config.hub.ca !== undefined ? [...rootCertificates, config.hub.ca] : undefined;

    this.table = new StreamTable({
      maxStreams: config.limits.maxStreams,
      onChange: () => this.channel.streamsChanged(),
    });
    this.handler = new StreamRequestHandler({
      deviceId: this.deviceId,
      hubHostname: new URL(config.hub.url).hostname,
      allowlist: new Allowlist(config.allow),
      table: this.table,
      targetDialer: new TargetDialer({ connectTimeoutMs: config.limits.connectTimeoutMs }),
      relayDialer: new RelayDialer(ca ? { ca } : {}),
      respond: (topic, response) => this.channel.respond(topic, response),
      log: this.log,
    });
    this.channel = new ControlChannel({
      url: config.hub.url,
      deviceId: this.deviceId,
      key: config.hub.key,
      ...(ca ? { ca } : {}),
      log: this.log,
      onRequest: (payload) => void this.handler.handle(payload),
      openStreams: () => this.table.size,
      ...(opts.reconnectPeriodMs !== undefined ? { reconnectPeriodMs: opts.reconnectPeriodMs } : {}),
    });
    this.channel.on('connected', () => {
      this.log.info('agent connected');
      this.emit('connected');
    });
    this.channel.on('disconnected', () => this.emit('disconnected'));
  }

  /** True while the control channel is connected and subscribed. */
  get connected(): boolean {
    return this.channel.connected;
  }

  /** Streams being set up or open. */
  get openStreams(): number {
    return this.table.size;
  }

  /** Starts the agent; the control channel connects (and reconnects) in the background. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.table.start();
    await this.handler.start();
    await this.channel.start();
    this.log.info({ allow: this.describeAllowlist() }, 'agent started');
  }

  /** Resolves once the control channel is connected (or at once if it is). */
  waitConnected(): Promise<void> {
    return this.connected ? Promise.resolve() : new Promise((resolve) => this.once('connected', () => resolve()));
  }

  /** Idempotent: stop accepting, go offline, end the streams. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.handler.stop();
      await this.channel.stop();
      await this.table.stop();
      await this.handler.settled();
      this.log.info('agent stopped');
    })();
    return this.stopping;
  }

  private describeAllowlist(): string[] {
    return this.allow.map((e) => (e.kind === 'builtin' ? `${e.name}=builtin:${e.builtin}` : `${e.name}=${e.host}:${e.port}`));
  }
}
